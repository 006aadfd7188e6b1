// Package wistro is the Go SDK for Wistro steps.
//
// A Go step is a file named *.step.go in a Wistro project. It registers one step from a
// package-level variable (or an init function); the file that calls Register is the step's
// file, so errors and panics point at it:
//
//	package steps
//
//	import "wistro.dev/sdk/wistro"
//
//	type Order struct {
//		OrderID string `json:"order_id"`
//		Amount  int    `json:"amount_cents"`
//	}
//
//	var _ = wistro.Register(wistro.StepConfig{
//		Name:       "score_fraud",
//		Subscribes: []string{"order.placed"},
//		Emits:      []any{"order.scored"},
//		Input:      map[string]any{"type": "object", "required": []string{"order_id"}},
//	}, wistro.Handle(func(ctx *wistro.Context, o Order) (any, error) {
//		ctx.Logger.Info("scoring", "order", o.OrderID)
//		return nil, ctx.Emit("order.scored", map[string]any{"order_id": o.OrderID, "score": 0.1})
//	}))
//
// Wistro compiles all Go step files of a project into one long-lived worker binary (each step
// file in a package of its own, its package clause rewritten, so two step files may use the
// same names); the generated main package calls Main, which speaks the worker protocol
// (docs/worker-protocol.md) on stdin/stdout. Anything a step prints to os.Stdout goes to
// stderr, which is the worker's log.
package wistro

// Version is the SDK version, sent in the worker's hello frame.
const Version = "0.1.0"

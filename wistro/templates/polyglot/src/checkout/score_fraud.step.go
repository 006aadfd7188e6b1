// Go: scores the fraud risk of a captured payment.
package steps

import (
	"wistro.dev/sdk/wistro"
)

type Payment struct {
	OrderID     string `json:"order_id"`
	AmountCents int    `json:"amount_cents"`
}

var _ = wistro.Register(wistro.StepConfig{
	Name:       "Score fraud",
	Subscribes: []string{"payment.captured"},
	Input: map[string]any{
		"type": "object",
		"properties": map[string]any{
			"order_id":     map[string]any{"type": "string", "minLength": 1},
			"amount_cents": map[string]any{"type": "integer", "exclusiveMinimum": 0},
		},
		"required": []string{"order_id", "amount_cents"},
	},
	Emits: []any{"fraud.scored"},
	Flows: []string{"checkout"},
}, wistro.Handle(func(ctx *wistro.Context, p Payment) (any, error) {
	score := float64(p.AmountCents) / 100000.0 // large orders look riskier
	ctx.Logger.Info("scored", "order_id", p.OrderID, "score", score)
	return nil, ctx.Emit("fraud.scored", map[string]any{"order_id": p.OrderID, "score": score})
}))

package wistro

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func decodeTestFrame(t *testing.T, frame []byte) map[string]any {
	t.Helper()
	if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-4 {
		t.Fatalf("length header %d, body %d", n, len(frame)-4)
	}
	var m map[string]any
	if err := json.Unmarshal(frame[4:], &m); err != nil {
		t.Fatalf("frame is not JSON: %v: %s", err, frame[4:])
	}
	return m
}

func TestEmitFrameIsValidJSON(t *testing.T) {
	for _, topic := range []string{"order.placed", `we"ird\topic`, "ünïcode", "tab\there"} {
		m := decodeTestFrame(t, emitFrame(7, 3, topic, []byte(`{"a":1}`)))
		args := m["args"].(map[string]any)
		if m["t"] != "call" || m["id"] != 7.0 || m["invoke"] != 3.0 || m["op"] != "emit" || args["topic"] != topic {
			t.Fatalf("unexpected frame %v", m)
		}
		if args["data"].(map[string]any)["a"] != 1.0 {
			t.Fatalf("data lost: %v", args)
		}
	}
}

func TestErrorTypes(t *testing.T) {
	step := &Step{File: "/x/a.step.go"}
	if got := errorInfo(errors.New("boom"), step); got.Type != "error" || got.Message != "boom" || got.File != step.File {
		t.Fatalf("errors.New: %+v", got)
	}
	wrapped := fmt.Errorf("emitting: %w", &EngineError{Type: "PayloadError", Message: "bad"})
	if got := errorInfo(wrapped, step); got.Type != "PayloadError" || !strings.Contains(got.Message, "emitting") {
		t.Fatalf("wrapped EngineError: %+v", got)
	}
}

func TestTrimStack(t *testing.T) {
	stack := "goroutine 5 [running]:\nruntime/debug.Stack()\n\t/go/debug.go:26\nwistro.run.func2()\n\t/sdk/worker.go:1\npanic({0x1, 0x2})\n\t/go/panic.go:860\nsteps.handler()\n\t/p/a.step.go:15 +0x28\n"
	got := trimStack(stack)
	want := "goroutine 5 [running]:\nsteps.handler()\n\t/p/a.step.go:15 +0x28\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLoadReportsFilesWithoutSteps(t *testing.T) {
	ans := loadFiles([]string{"/nowhere/x.step.go"})
	if len(ans.Steps) != 0 || len(ans.Errors) != 1 || !strings.Contains(ans.Errors[0].Message, "no step registered") {
		t.Fatalf("unexpected answer %+v", ans)
	}
}

func TestHandleDecodesInput(t *testing.T) {
	type in struct {
		ID int `json:"id"`
	}
	h := Handle(func(ctx *Context, v in) (any, error) { return v.ID * 2, nil })
	if v, err := h(nil, json.RawMessage(`{"id":21}`)); err != nil || v != 42 {
		t.Fatalf("got %v, %v", v, err)
	}
	_, err := h(nil, json.RawMessage(`{"id":"x"}`))
	var ee *EngineError
	if !errors.As(err, &ee) || ee.Type != "DecodeError" {
		t.Fatalf("want a DecodeError, got %v", err)
	}
}

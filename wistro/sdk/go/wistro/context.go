package wistro

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Context is what a handler receives. It is a context.Context, cancelled when the engine gives
// up on the delivery (its timeout), so pass it to anything that blocks.
type Context struct {
	context.Context
	TraceID string   // the run's trace id
	SpanID  string   // this delivery's span
	Step    string   // the step's name
	Flows   []string // the step's flows
	State   *State
	Logger  *Logger

	w      *worker
	invoke int64
	calls  sync.WaitGroup // calls not answered yet
}

// StepName returns the step's name.
func (c *Context) StepName() string { return c.Step }

// Emit publishes data on topic. The engine validates it now: an undeclared topic or a payload
// that does not match the topic's schema returns an *EngineError (Type "UndeclaredEmitError" /
// "PayloadError") and nothing is emitted.
func (c *Context) Emit(topic string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return &EngineError{Type: "PayloadError", Message: fmt.Sprintf("topic %q: payload is not JSON: %v", topic, err)}
	}
	_, err = c.callWith(func(id int64) { c.w.write(emitFrame(id, c.invoke, topic, raw)) })
	return err
}

// EngineError is an error the engine answered a call with (or a worker-side error with a
// Python-like type name). Use errors.As to inspect Type.
type EngineError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *EngineError) Error() string { return e.Type + ": " + e.Message }

// State is ctx.State: JSON values in groups (usually the trace id); every operation is traced.
type State struct{ c *Context }

type stateArgs struct {
	Group string          `json:"group"`
	Key   *string         `json:"key,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Get decodes the value of key in group into out (a pointer). found is false (and out left
// alone) when there is no such key.
func (s *State) Get(group, key string, out any) (found bool, err error) {
	raw, err := s.c.call("state.get", stateArgs{Group: group, Key: &key})
	if err != nil {
		return false, err
	}
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	if out == nil {
		return true, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return true, &EngineError{Type: "StateError", Message: fmt.Sprintf("decoding %q/%q: %v", group, key, err)}
	}
	return true, nil
}

// GetRaw returns the JSON of key in group (nil when there is no such key).
func (s *State) GetRaw(group, key string) (json.RawMessage, error) {
	raw, err := s.c.call("state.get", stateArgs{Group: group, Key: &key})
	if err != nil || string(raw) == "null" {
		return nil, err
	}
	return raw, nil
}

// Set stores value (JSON-encodable) under key in group.
func (s *State) Set(group, key string, value any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return &EngineError{Type: "StateError", Message: fmt.Sprintf("value for key %q in group %q is not JSON: %v", key, group, err)}
	}
	_, err = s.c.call("state.set", stateArgs{Group: group, Key: &key, Value: raw})
	return err
}

// Delete removes key from group.
func (s *State) Delete(group, key string) error {
	_, err := s.c.call("state.delete", stateArgs{Group: group, Key: &key})
	return err
}

// GetGroup returns every key of group with its JSON value.
func (s *State) GetGroup(group string) (map[string]json.RawMessage, error) {
	raw, err := s.c.call("state.get_group", stateArgs{Group: group})
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, &EngineError{Type: "StateError", Message: err.Error()}
		}
	}
	return out, nil
}

// Clear removes every key of group.
func (s *State) Clear(group string) error {
	_, err := s.c.call("state.clear", stateArgs{Group: group})
	return err
}

// Logger is ctx.Logger: structured logs bound to the trace, the span and the step. Fields are
// key/value pairs (slog style: "order", id, "amount", 10) or a single map[string]any.
type Logger struct{ c *Context }

type logArgs struct {
	Level   string         `json:"level"`
	Message string         `json:"message"`
	Fields  map[string]any `json:"fields"`
}

func (l *Logger) log(level, message string, fields []any) {
	f := map[string]any{}
	if len(fields) == 1 {
		if m, ok := fields[0].(map[string]any); ok {
			f = m
			fields = nil
		}
	}
	for i := 0; i < len(fields); i += 2 {
		key := fmt.Sprint(fields[i])
		if i+1 < len(fields) {
			f[key] = fields[i+1]
		} else {
			f["!BADKEY"] = fields[i]
		}
	}
	args := logArgs{Level: level, Message: message, Fields: f}
	if _, err := json.Marshal(args); err != nil {
		for k, v := range f {
			f[k] = fmt.Sprint(v)
		}
	}
	l.c.notify("log", args)
}

// Debug logs at level debug.
func (l *Logger) Debug(message string, fields ...any) { l.log("debug", message, fields) }

// Info logs at level info.
func (l *Logger) Info(message string, fields ...any) { l.log("info", message, fields) }

// Warn logs at level warning.
func (l *Logger) Warn(message string, fields ...any) { l.log("warning", message, fields) }

// Error logs at level error.
func (l *Logger) Error(message string, fields ...any) { l.log("error", message, fields) }

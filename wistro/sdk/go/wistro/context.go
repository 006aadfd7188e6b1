package wistro

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
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
	calls  sync.WaitGroup   // calls not answered yet
	checks map[string]check // the step's emit check, by topic (nil: every emit is a call)

	pmu     sync.Mutex  // pending, done, timer; held while their frame is written (order)
	pending []byte      // deferred emits not sent yet: `{"topic":..,"data":..},...`
	done    bool        // the handler returned: later emits are calls (the engine refuses them)
	timer   *time.Timer // sends pending if the handler goes on with something else
}

// emitFlushDelay: how long deferred emits may wait for the handler's answer (or its next call)
// before they are sent on their own.
const emitFlushDelay = time.Millisecond

// StepName returns the step's name.
func (c *Context) StepName() string { return c.Step }

// Emit publishes data on topic. An undeclared topic or a payload that does not match the
// topic's schema returns an *EngineError (Type "UndeclaredEmitError" / "PayloadError") and
// nothing is emitted.
//
// The payload is encoded now (later changes to data do not matter). When the worker's own check
// of the step's declared topics and their schemas accepts it, Emit returns nil at once and the
// emit travels to the engine with the handler's answer (or with its next call, or within a
// millisecond if the handler goes on with something else); the engine validates it again and
// publishes it in order. Otherwise (refused, or outside what the worker checks) Emit asks the
// engine and waits for its verdict. See docs/worker-protocol.md.
func (c *Context) Emit(topic string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return &EngineError{Type: "PayloadError", Message: fmt.Sprintf("topic %q: payload is not JSON: %v", topic, err)}
	}
	if chk, ok := c.checks[topic]; ok && c.deferEmit(topic, raw, chk) {
		return nil
	}
	_, err = c.callWith(func(id int64) { c.w.write(emitFrame(id, c.invoke, topic, raw)) })
	return err
}

// deferEmit queues a locally valid emit for the invoke's next frame; false: it must be a call.
func (c *Context) deferEmit(topic string, raw []byte, chk check) bool {
	v, err := decodeJSON(raw)
	if err != nil || chk(v) != valid {
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.done || c.Err() != nil {
		return false
	}
	if len(c.pending) == 0 {
		if c.timer == nil {
			c.timer = time.AfterFunc(emitFlushDelay, c.flushPending)
		} else {
			c.timer.Reset(emitFlushDelay)
		}
	} else {
		c.pending = append(c.pending, ',')
	}
	c.pending = append(c.pending, `{"topic":`...)
	c.pending = appendString(c.pending, topic)
	c.pending = append(c.pending, `,"data":`...)
	c.pending = append(append(c.pending, raw...), '}')
	return true
}

// writePending sends the deferred emits as an "emits" frame (pmu held).
func (c *Context) writePending() {
	if len(c.pending) == 0 {
		return
	}
	b := make([]byte, 4, 48+len(c.pending))
	b = strconv.AppendInt(append(b, `{"t":"emits","invoke":`...), c.invoke, 10)
	b = append(append(append(b, `,"emits":[`...), c.pending...), "]}"...)
	c.pending = c.pending[:0]
	if c.timer != nil {
		c.timer.Stop()
	}
	c.w.write(frameOf(b))
}

func (c *Context) flushPending() {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if !c.done {
		c.writePending()
	}
}

// finish marks the handler done and returns the deferred emits for its answer.
func (c *Context) finish() []byte {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	emits := c.pending
	c.pending = nil
	return emits
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

package wistro

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
)

// StepConfig is a step's config: the same keys as a Python step's config dict. Zero values are
// left out, so the engine's defaults apply.
type StepConfig struct {
	Type              string   `json:"type,omitempty"` // "event" (default), "api", "cron", "noop"
	Name              string   `json:"name"`
	Description       string   `json:"description,omitempty"`
	Subscribes        []string `json:"subscribes,omitempty"`
	Emits             []any    `json:"emits,omitempty"` // topic strings or Emit values
	VirtualSubscribes []string `json:"virtual_subscribes,omitempty"`
	VirtualEmits      []any    `json:"virtual_emits,omitempty"`
	Input             any      `json:"input,omitempty"` // a JSON Schema (map, struct or json.RawMessage)
	Flows             []string `json:"flows,omitempty"`
	Concurrency       int      `json:"concurrency,omitempty"`
	TimeoutS          float64  `json:"timeout_s,omitempty"`
	Retries           *int     `json:"retries,omitempty"` // nil: the project default
	RetryBackoffS     *float64 `json:"retry_backoff_s,omitempty"`
	// api steps
	Path      string         `json:"path,omitempty"`
	Method    string         `json:"method,omitempty"`
	Body      any            `json:"body,omitempty"`
	Query     any            `json:"query,omitempty"`
	Responses map[string]any `json:"responses,omitempty"`
	Auth      map[string]any `json:"auth,omitempty"`
	// cron steps
	Cron         string `json:"cron,omitempty"`
	Timezone     string `json:"timezone,omitempty"`
	AllowOverlap bool   `json:"allow_overlap,omitempty"`
}

// Emit declares an emitted topic with details (a plain topic string is enough otherwise).
type Emit struct {
	Topic       string `json:"topic"`
	Label       string `json:"label,omitempty"`
	Conditional bool   `json:"conditional,omitempty"`
	Schema      any    `json:"schema,omitempty"`
}

// Response is what an api step returns.
type Response struct {
	Status  int               `json:"status"`
	Body    any               `json:"body,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// Int returns a pointer to n, for StepConfig.Retries.
func Int(n int) *int { return &n }

// Float returns a pointer to f, for StepConfig.RetryBackoffS.
func Float(f float64) *float64 { return &f }

// Handler runs a step once. input is the event's payload as JSON (null for a cron step). The
// returned value (JSON-encodable) is the step's result; an error fails the delivery, which
// then follows the step's retry policy.
type Handler func(ctx *Context, input json.RawMessage) (any, error)

// Handle adapts a typed handler: the payload is decoded into a T first.
func Handle[T any](f func(ctx *Context, input T) (any, error)) Handler {
	return func(ctx *Context, input json.RawMessage) (any, error) {
		var v T
		if len(input) > 0 {
			if err := json.Unmarshal(input, &v); err != nil {
				return nil, &EngineError{Type: "DecodeError", Message: fmt.Sprintf("decoding the input into %T: %v", v, err)}
			}
		}
		return f(ctx, v)
	}
}

// Step is a registered step.
type Step struct {
	Config  StepConfig
	Handler Handler
	File    string // the absolute path of the file that called Register
	Line    int
	problem string // why the step cannot load (reported in answer to "load")
}

var (
	regMu    sync.Mutex
	registry []*Step
	byKey    = map[stepKey]*Step{}
)

type stepKey struct{ file, name string }

// Register adds a step; call it from a package-level variable or an init function of a
// *.step.go file. It returns the step so that `var _ = wistro.Register(...)` works.
func Register(config StepConfig, handler Handler) *Step {
	_, file, line, _ := runtime.Caller(1)
	s := &Step{Config: config, Handler: handler, File: filepath.Clean(file), Line: line}
	if handler == nil && config.Type != "noop" {
		s.problem = "Register was given a nil handler"
	}
	regMu.Lock()
	defer regMu.Unlock()
	registry = append(registry, s)
	key := stepKey{s.File, config.Name}
	if _, dup := byKey[key]; dup {
		s.problem = fmt.Sprintf("step %q is registered twice in this file", config.Name)
	}
	byKey[key] = s
	return s
}

func lookup(file, name string) *Step {
	regMu.Lock()
	defer regMu.Unlock()
	return byKey[stepKey{filepath.Clean(file), name}]
}

func stepFiles() map[string]bool {
	regMu.Lock()
	defer regMu.Unlock()
	files := make(map[string]bool, len(registry))
	for _, s := range registry {
		files[s.File] = true
	}
	return files
}

type loadedStep struct {
	File   string          `json:"file"`
	Config json.RawMessage `json:"config"`
	Line   int             `json:"line"`
}

type loadError struct {
	File    string `json:"file"`
	Message string `json:"message"`
	Line    *int   `json:"line"`
}

type loadAnswer struct {
	Steps  []loadedStep `json:"steps"`
	Errors []loadError  `json:"errors"`
}

func loadFiles(files []string) loadAnswer {
	ans := loadAnswer{Steps: []loadedStep{}, Errors: []loadError{}}
	regMu.Lock()
	defer regMu.Unlock()
	for _, f := range files {
		clean := filepath.Clean(f)
		found := false
		for _, s := range registry {
			if s.File != clean {
				continue
			}
			found = true
			line := s.Line
			if s.problem != "" {
				ans.Errors = append(ans.Errors, loadError{f, s.problem, &line})
				continue
			}
			raw, err := json.Marshal(s.Config)
			if err != nil {
				ans.Errors = append(ans.Errors, loadError{f, "the config is not JSON: " + err.Error(), &line})
				continue
			}
			ans.Steps = append(ans.Steps, loadedStep{File: f, Config: raw, Line: line})
		}
		if !found {
			ans.Errors = append(ans.Errors, loadError{f, "no step registered: call wistro.Register(wistro.StepConfig{...}, handler) from this file", nil})
		}
	}
	return ans
}

package wistro

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxFrame is the largest frame the protocol allows (64 MiB).
const MaxFrame = 64 << 20

// The protocol's stdout, saved before any step's init runs; os.Stdout then points at stderr so
// a step that prints never corrupts the protocol.
var protoOut = os.Stdout

func init() { os.Stdout = os.Stderr }

type invokeCtx struct {
	TraceID string   `json:"trace_id"`
	SpanID  string   `json:"span_id"`
	Step    string   `json:"step"`
	Flows   []string `json:"flows"`
}

// ErrorInfo is the "error" of an error frame.
type ErrorInfo struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
}

// inFrame is any message the engine sends.
type inFrame struct {
	T     string          `json:"t"`
	ID    int64           `json:"id"`
	Files []string        `json:"files"`
	File  string          `json:"file"`
	Step  string          `json:"step"`
	Data  json.RawMessage `json:"data"`
	Ctx   invokeCtx       `json:"ctx"`
	Value json.RawMessage `json:"value"`
	Error *ErrorInfo      `json:"error"`
	Emits json.RawMessage `json:"emits"` // invoke: the step's emit check (topic -> schema)
}

type helloFrame struct {
	T        string `json:"t"`
	Language string `json:"language"`
	Version  string `json:"version"`
	Pid      int    `json:"pid"`
}

type resultFrame struct {
	T     string `json:"t"`
	ID    int64  `json:"id"`
	OK    bool   `json:"ok"`
	Value any    `json:"value"`
}

type errorFrame struct {
	T     string    `json:"t"`
	ID    int64     `json:"id"`
	Error ErrorInfo `json:"error"`
}

type callFrame struct {
	T      string `json:"t"`
	ID     int64  `json:"id"`
	Invoke int64  `json:"invoke"`
	Op     string `json:"op"`
	Args   any    `json:"args"`
}

type reply struct {
	value json.RawMessage
	err   *ErrorInfo
}

// pendingCall is a call the engine has not answered yet. Whoever removes it from the pending
// map (the reader on the answer, or the caller giving up) marks it done on its invoke.
type pendingCall struct {
	ch    chan reply // nil for a call nobody waits for (log)
	calls *sync.WaitGroup
}

type worker struct {
	wmu      sync.Mutex
	bw       *bufio.Writer
	closed   bool
	waiting  atomic.Int32 // goroutines about to write: the last one flushes
	nextCall atomic.Int64
	mu       sync.Mutex
	pending  map[int64]pendingCall        // the worker's calls waiting for an answer
	cancels  map[int64]context.CancelFunc // invokes in flight
	inflight sync.WaitGroup
	readers  chan *reader // idle serve goroutines wait here for their turn to read
	closing  atomic.Bool
	checks   map[stepKey]map[string]check // each step's emit check (invoke.emits), under mu
}

var stopProfile = func() {}

func exit(code int) {
	stopProfile()
	os.Exit(code)
}

// Main runs the worker loop: it answers the engine's requests on stdin/stdout until stdin
// closes or the engine sends "shutdown". The generated main package of the Go worker calls it.
func Main() {
	w := &worker{
		bw:      bufio.NewWriterSize(protoOut, 1<<16),
		pending: map[int64]pendingCall{},
		cancels: map[int64]context.CancelFunc{},
		readers: make(chan *reader),
		checks:  map[stepKey]map[string]check{},
	}
	if path := os.Getenv("WISTRO_GO_CPUPROFILE"); path != "" { // a diagnostic for benchmarks
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			stopProfile = pprof.StopCPUProfile
		}
	}
	w.send(helloFrame{T: "hello", Language: "go", Version: Version, Pid: os.Getpid()})
	w.serve(&reader{r: bufio.NewReaderSize(pollable(os.Stdin), 1<<16)})
}

// readFailed ends the worker when stdin closes or breaks the protocol.
func (w *worker) readFailed(err error) {
	if !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "wistro worker: protocol error:", err)
		exit(2)
	}
	if w.closing.Load() {
		// stdin closed after "shutdown": nothing can answer a call any more.
		w.cancelAll()
		// the shutdown goroutine exits once the in-flight invokes are done; a handler that
		// ignores its cancelled context does not keep the worker alive without its engine
		time.Sleep(5 * time.Second)
	}
	exit(0)
}

func (w *worker) cancelAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cancel := range w.cancels {
		cancel()
	}
}

// write writes one frame. Frames are buffered and flushed by the last writer in line: one
// syscall for a burst, and no hand-off to another goroutine (so no extra latency).
func (w *worker) write(frame []byte) {
	w.waiting.Add(1)
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closed {
		w.waiting.Add(-1)
		return
	}
	_, err := w.bw.Write(frame)
	if w.waiting.Add(-1) == 0 && err == nil {
		err = w.bw.Flush()
	}
	if err != nil {
		exit(0) // the engine is gone
	}
}

// flushAndClose flushes what is buffered; later frames are dropped.
func (w *worker) flushAndClose() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	_ = w.bw.Flush()
	w.closed = true
}

func (w *worker) send(v any) { w.sendWithEmits(v, nil) }

// sendWithEmits sends v (a JSON object) with an "emits" field of the given list items (the
// deferred emits of the invoke a result or error frame answers), if any.
func (w *worker) sendWithEmits(v any, emits []byte) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a result value can fail to encode; report that instead.
		if r, ok := v.(resultFrame); ok {
			w.sendErrorWithEmits(r.ID, ErrorInfo{Type: "EncodeError", Message: "the handler's result is not JSON: " + err.Error()}, emits)
			return
		}
		body, _ = json.Marshal(errorFrame{T: "error", Error: ErrorInfo{Type: "EncodeError", Message: err.Error()}})
	}
	size := 4 + len(body)
	if len(emits) > 0 {
		size += len(emits) + 11
	}
	frame := append(make([]byte, 4, size), body...)
	if len(emits) > 0 {
		frame = append(append(append(frame[:len(frame)-1], `,"emits":[`...), emits...), "]}"...)
	}
	w.write(frameOf(frame))
}

func (w *worker) sendError(id int64, e ErrorInfo) { w.sendErrorWithEmits(id, e, nil) }

func (w *worker) sendErrorWithEmits(id int64, e ErrorInfo, emits []byte) {
	w.sendWithEmits(errorFrame{T: "error", ID: id, Error: e}, emits)
}

// reader is stdin; one goroutine at a time holds it.
type reader struct {
	r    *bufio.Reader
	head [4]byte
	buf  []byte
}

// serve reads frames and handles them. On an invoke it hands the reader to another goroutine
// and runs the handler itself, so an invoke starts without a hand-off to another goroutine
// (the latency of one hop); then it waits, idle, until it is handed the reader again.
// There are as many of these goroutines as the most invokes ever in flight at once, plus one.
func (w *worker) serve(rd *reader) {
	for {
		j, err := w.readUntilInvoke(rd)
		if err != nil {
			w.readFailed(err)
			return
		}
		select {
		case w.readers <- rd: // an idle goroutine reads on
		default:
			go w.serve(rd)
		}
		w.run(j.id, j.step, j.ctx, j.data, j.cancel)
		rd = <-w.readers
	}
}

// readUntilInvoke handles frames until an invoke, which it returns to run.
func (w *worker) readUntilInvoke(rd *reader) (job, error) {
	r, head := rd.r, rd.head[:]
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return job{}, err
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > MaxFrame {
			return job{}, fmt.Errorf("frame of %d bytes (limit %d)", n, MaxFrame)
		}
		if cap(rd.buf) < int(n) {
			rd.buf = make([]byte, n)
		}
		buf := rd.buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return job{}, fmt.Errorf("truncated frame: %w", err)
		}
		var m inFrame
		if err := decodeFrame(buf, &m); err != nil {
			return job{}, fmt.Errorf("bad frame: %w", err)
		}
		switch m.T {
		case "load":
			w.send(resultFrame{T: "result", ID: m.ID, OK: true, Value: loadFiles(m.Files)})
		case "invoke":
			if j, ok := w.startInvoke(m); ok {
				return j, nil
			}
		case "cancel":
			w.mu.Lock()
			cancel := w.cancels[m.ID]
			w.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		case "result", "error":
			w.mu.Lock()
			p, ok := w.pending[m.ID]
			delete(w.pending, m.ID)
			w.mu.Unlock()
			if ok {
				if p.ch != nil {
					p.ch <- reply{value: m.Value, err: m.Error}
				}
				p.calls.Done()
			}
		case "shutdown":
			if w.closing.Swap(true) {
				continue
			}
			go func() {
				w.inflight.Wait()
				w.flushAndClose()
				exit(0)
			}()
		default:
			if m.ID != 0 {
				w.sendError(m.ID, ErrorInfo{Type: "ProtocolError", Message: fmt.Sprintf("unknown message type %q", m.T)})
			}
		}
	}
}

func (w *worker) startInvoke(m inFrame) (job, bool) {
	if w.closing.Load() {
		return job{}, false // after "shutdown" the engine sends no invoke; never write after the close
	}
	step := lookup(m.File, m.Step)
	if step == nil || step.Handler == nil {
		w.sendError(m.ID, ErrorInfo{Type: "StepNotFound", Message: fmt.Sprintf("no step %q registered in %s", m.Step, m.File), File: m.File})
		return job{}, false
	}
	key := stepKey{step.File, step.Config.Name}
	var checks map[string]check
	if m.Emits != nil {
		checks = compileChecks(m.Emits)
	}
	base, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.cancels[m.ID] = cancel
	if m.Emits != nil {
		w.checks[key] = checks
	} else {
		checks = w.checks[key]
	}
	w.mu.Unlock()
	w.inflight.Add(1)
	ctx := &Context{Context: base, TraceID: m.Ctx.TraceID, SpanID: m.Ctx.SpanID, Step: m.Ctx.Step, Flows: m.Ctx.Flows, w: w, invoke: m.ID, checks: checks}
	ctx.State = &State{ctx}
	ctx.Logger = &Logger{ctx}
	return job{m.ID, step, ctx, m.Data, cancel}, true
}

type job struct {
	id     int64
	step   *Step
	ctx    *Context
	data   json.RawMessage
	cancel context.CancelFunc
}

func (w *worker) run(id int64, step *Step, ctx *Context, data json.RawMessage, cancel context.CancelFunc) {
	defer w.inflight.Done()
	defer func() {
		w.mu.Lock()
		delete(w.cancels, id)
		w.mu.Unlock()
		cancel()
	}()
	defer func() {
		if p := recover(); p != nil {
			info := ErrorInfo{Type: "panic", Message: fmt.Sprint(p), Stack: trimStack(string(debug.Stack()))}
			if e, ok := p.(error); ok {
				info.Message = e.Error()
			}
			info.File, info.Line = stepFrame(step.File)
			ctx.calls.Wait()
			w.sendErrorWithEmits(id, info, ctx.finish())
		}
	}()
	value, err := step.Handler(ctx, data)
	// The answer goes out only once every call of this invoke was answered (logs included), so
	// nothing is recorded after the span ended. The deferred emits travel in it.
	ctx.calls.Wait()
	emits := ctx.finish()
	if err != nil {
		w.sendErrorWithEmits(id, errorInfo(err, step), emits)
		return
	}
	if value == nil {
		b := make([]byte, 4, 64+len(emits))
		b = strconv.AppendInt(append(b, `{"t":"result","id":`...), id, 10)
		b = append(b, `,"ok":true,"value":null`...)
		if len(emits) > 0 {
			b = append(append(append(b, `,"emits":[`...), emits...), ']')
		}
		w.write(frameOf(append(b, '}')))
		return
	}
	w.sendWithEmits(resultFrame{T: "result", ID: id, OK: true, Value: value}, emits)
}

// frameOf fills in the length header of a frame built after 4 placeholder bytes.
func frameOf(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// emitFrame is the "call" frame of an emit, built by hand (the hot path of a hop).
func emitFrame(id, invoke int64, topic string, data []byte) []byte {
	b := make([]byte, 4, 64+len(topic)+len(data))
	b = append(b, `{"t":"call","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"invoke":`...)
	b = strconv.AppendInt(b, invoke, 10)
	b = append(b, `,"op":"emit","args":{"topic":`...)
	b = appendString(b, topic)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return frameOf(append(b, "}}"...))
}

func errorInfo(err error, step *Step) ErrorInfo {
	info := ErrorInfo{Message: err.Error(), File: step.File}
	var ee *EngineError
	if errors.As(err, &ee) {
		info.Type, info.Message = ee.Type, ee.Message
		if err != ee { // wrapped: keep the whole chain's text
			info.Message = err.Error()
		}
	} else {
		t := reflect.TypeOf(err)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		info.Type = t.String()
		if pkg := t.PkgPath(); pkg == "errors" || pkg == "fmt" { // errors.New, fmt.Errorf
			info.Type = "error"
		}
	}
	return info
}

// trimStack drops the frames of the recovery itself: the stack starts at the panicking frame.
func trimStack(s string) string {
	head, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return s
	}
	i := strings.Index(rest, "\npanic(")
	if i < 0 {
		return s
	}
	after := rest[i+1:]
	for n := 0; n < 2; n++ { // the panic( line and its file:line
		if _, tail, ok := strings.Cut(after, "\n"); ok {
			after = tail
		}
	}
	return head + "\n" + after
}

// stepFrame finds the innermost frame of the panicking goroutine in the step's file (or, if
// none, in any registered step file).
func stepFrame(file string) (string, int) {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	files := stepFiles()
	anyFile, anyLine := "", 0
	for {
		f, more := frames.Next()
		clean := filepath.Clean(f.File)
		if clean == file {
			return file, f.Line
		}
		if anyFile == "" && files[clean] && !strings.HasPrefix(f.Function, "wistro.dev/sdk/") {
			anyFile, anyLine = clean, f.Line
		}
		if !more {
			break
		}
	}
	return anyFile, anyLine
}

// call sends a request to the engine on behalf of an invoke and waits for its answer.
func (c *Context) call(op string, args any) (json.RawMessage, error) {
	return c.callWith(func(id int64) { c.w.send(callFrame{T: "call", ID: id, Invoke: c.invoke, Op: op, Args: args}) })
}

// callWith registers a call, lets send write its frame (with the call's id), and waits.
func (c *Context) callWith(send func(id int64)) (json.RawMessage, error) {
	w := c.w
	id := w.nextCall.Add(1)
	ch := make(chan reply, 1)
	c.calls.Add(1)
	w.mu.Lock()
	w.pending[id] = pendingCall{ch: ch, calls: &c.calls}
	w.mu.Unlock()
	c.pmu.Lock() // the deferred emits go first: the engine sees them in order
	c.writePending()
	send(id)
	c.pmu.Unlock()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, &EngineError{Type: r.err.Type, Message: r.err.Message}
		}
		return r.value, nil
	case <-c.Done():
		w.mu.Lock()
		_, mine := w.pending[id]
		delete(w.pending, id)
		w.mu.Unlock()
		if mine {
			c.calls.Done()
		}
		return nil, c.Err()
	}
}

// notify sends a call whose answer the handler does not wait for (logs); the invoke's answer
// still waits for it.
func (c *Context) notify(op string, args any) {
	w := c.w
	id := w.nextCall.Add(1)
	c.calls.Add(1)
	w.mu.Lock()
	w.pending[id] = pendingCall{calls: &c.calls}
	w.mu.Unlock()
	c.pmu.Lock()
	c.writePending()
	w.send(callFrame{T: "call", ID: id, Invoke: c.invoke, Op: op, Args: args})
	c.pmu.Unlock()
}

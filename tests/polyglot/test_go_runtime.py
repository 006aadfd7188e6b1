"""Go steps through the real toolchain: one worker binary per project, the worker protocol,
errors, crashes, timeouts, the build cache and a missing toolchain."""

from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

import wistro
import wistro.app
from wistro.errors import StepLoadError
from wistro.runtimes import PythonRuntime
from wistro.runtimes.golang import GoRuntime

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")

ORDER_SCHEMA = """{"type": "object", "properties": {"order_id": {"type": "string"},
    "amount": {"type": "integer"}}, "required": ["order_id", "amount"]}"""

START_PY = f"""
config = {{
    "name": "start",
    "subscribes": ["order.placed"],
    "emits": [{{"topic": "order.check", "schema": {ORDER_SCHEMA}}}],
    "input": {ORDER_SCHEMA},
}}

async def handler(data, ctx):
    ctx.logger.info("python start", order=data["order_id"])
    await ctx.emit("order.check", data)
"""

FINISH_PY = """
config = {"name": "finish", "subscribes": ["order.scored"]}

async def handler(data, ctx):
    await ctx.state.set("done", data["order_id"], data)
"""

SCORE_GO = """
package steps

import (
	"errors"

	"wistro.dev/sdk/wistro"
)

type Order struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

var _ = wistro.Register(wistro.StepConfig{
	Name:       "score",
	Subscribes: []string{"order.check"},
	Emits: []any{
		wistro.Emit{Topic: "order.scored", Schema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"order_id": map[string]any{"type": "string"}, "score": map[string]any{"type": "number"}},
			"required":   []string{"order_id", "score"},
		}},
	},
	Flows: []string{"checkout"},
}, wistro.Handle(func(ctx *wistro.Context, o Order) (any, error) {
	ctx.Logger.Info("scoring in go", "order", o.OrderID, "amount", o.Amount)
	if err := ctx.State.Set(ctx.TraceID, "amount", o.Amount); err != nil {
		return nil, err
	}
	var amount int
	if found, err := ctx.State.Get(ctx.TraceID, "amount", &amount); err != nil || !found {
		return nil, errors.New("state round trip failed")
	}
	return nil, ctx.Emit("order.scored", map[string]any{"order_id": o.OrderID, "score": float64(amount) / 100})
}))
"""

BOOM_GO = """
package steps

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{Name: "boom", Subscribes: []string{"go.panic"}, Retries: wistro.Int(0)},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		var m map[string]int
		m["x"] = 1 // PANIC HERE
		return nil, nil
	})

var _ = wistro.Register(wistro.StepConfig{Name: "crash", Subscribes: []string{"go.crash"}, Retries: wistro.Int(2), RetryBackoffS: wistro.Float(0)},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		var n int
		if _, err := ctx.State.Get("crash", "n", &n); err != nil {
			return nil, err
		}
		if err := ctx.State.Set("crash", "n", n+1); err != nil {
			return nil, err
		}
		if n == 0 {
			os.Exit(3) // the worker dies with this delivery in flight
		}
		return nil, ctx.State.Set("crash", "done", true)
	})

var _ = wistro.Register(wistro.StepConfig{Name: "badpay", Subscribes: []string{"go.bad"}, Emits: []any{"order.scored"}, Retries: wistro.Int(0)},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		// An invalid payload: the engine refuses it and the handler sees the error.
		err := ctx.Emit("order.scored", map[string]any{"order_id": "X", "score": "high"})
		var ee *wistro.EngineError
		if !errors.As(err, &ee) {
			return nil, errors.New("no error for an invalid payload")
		}
		if err := ctx.State.Set("go", "invalid_emit", ee.Type); err != nil {
			return nil, err
		}
		undeclared := ctx.Emit("order.check", map[string]any{})
		if errors.As(undeclared, &ee) {
			return nil, ctx.State.Set("go", "undeclared_emit", ee.Type)
		}
		return nil, nil
	})

var _ = wistro.Register(wistro.StepConfig{Name: "fails", Subscribes: []string{"go.fail"}, Retries: wistro.Int(1), RetryBackoffS: wistro.Float(0)},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		ctx.Logger.Warn("about to fail", map[string]any{"why": "declined"})
		return nil, fmt.Errorf("card declined: %s", "insufficient funds")
	})

var _ = wistro.Register(wistro.StepConfig{Name: "slow", Subscribes: []string{"go.slow"}, TimeoutS: 0.5, Retries: wistro.Int(0)},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return nil, nil
		}
	})
"""


BROKEN_GO = """
package steps

import (
	"encoding/json"

	"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{Name: "broken", Subscribes: []string{"x"}},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		return undefinedThing, nil
	})
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def go_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until GoRuntime is in default_runtimes: load projects with it."""
    monkeypatch.setattr(wistro.app, "default_runtimes", lambda: [PythonRuntime(), GoRuntime()])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("goproj")
    return write(
        root,
        {
            "wistro.yml": "name: polyglot\n",
            "src/start.step.py": START_PY,
            "src/finish.step.py": FINISH_PY,
            "src/go/score.step.go": SCORE_GO,
            "src/go/boom.step.go": BOOM_GO,
        },
    )


def go_of(app: wistro.App) -> GoRuntime:
    return next(rt for rt in app.runtimes if isinstance(rt, GoRuntime))


def load(path: Path, **kw: Any) -> wistro.App:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(wistro.app, "default_runtimes", lambda: [PythonRuntime(), GoRuntime()])
        return wistro.load(path, state="memory", traces="memory", **kw)


async def test_configs_are_read_from_the_worker(project: Path) -> None:
    app = load(project)
    assert app.errors == []
    score = app.step("score")
    assert score.language == "go"
    assert score.subscribes == ("order.check",)
    assert score.flows == ("checkout",)
    assert score.rel_file == "src/go/score.step.go"
    assert (
        score.line
        == (project / "src/go/score.step.go")
        .read_text()
        .splitlines()
        .index("var _ = wistro.Register(wistro.StepConfig{")
        + 1
    )
    assert app.step("boom").rel_file == "src/go/boom.step.go"
    assert app.registry.topics.topics["order.scored"].schema is not None
    await app.aclose()


async def test_python_go_python_in_one_trace(project: Path) -> None:
    async with load(project) as app:
        run = await app.emit("order.placed", {"order_id": "A1", "amount": 250})
        assert run.status == "ok", run.failures
        spans = {s.step: s for s in run.span_records}
        assert set(spans) == {"start", "score", "finish"}
        assert {s.trace_id for s in run.span_records} == {run.trace_id}
        assert await app.state.get("done", "A1") == {"order_id": "A1", "score": 2.5}
        # Go's logs and state ops are in the trace, on the Go step's span
        go_logs = [log for log in run.log_records if log.step == "score"]
        assert [log.message for log in go_logs] == ["scoring in go"]
        assert go_logs[0].span_id == spans["score"].id
        assert '"amount":250' in go_logs[0].fields_json
        ops = [(op.op, op.key) for op in run.state_records if op.step == "score"]
        assert ("set", "amount") in ops and ("get", "amount") in ops


async def test_invalid_payload_from_go_is_an_error_in_the_handler(project: Path) -> None:
    async with load(project) as app:
        run = await app.emit("go.bad", {})
        assert [s.status for s in run.span_records] == ["ok"]
        refused = [e for e in run.event_records if e.error]
        assert [e.topic for e in refused] == ["order.scored", "order.check"]
        assert "score" in (refused[0].error or "")
        assert await app.state.get("go", "invalid_emit") == "PayloadError"
        assert await app.state.get("go", "undeclared_emit") == "UndeclaredEmitError"


async def test_go_panic_is_a_failed_span_naming_file_and_line(project: Path) -> None:
    line = (project / "src/go/boom.step.go").read_text().splitlines().index(
        '\t\tm["x"] = 1 // PANIC HERE'
    ) + 1
    async with load(project) as app:
        run = await app.emit("go.panic", {})
        (span,) = run.span_records
        assert span.status == "error"
        assert f"src/go/boom.step.go:{line}" in (span.error or "")
        assert "panic" in (span.error or "") and "nil map" in (span.error or "")
        assert "boom.step.go" in (span.traceback or "")
        assert len(run.dead_letters) == 1


async def test_returned_error_fails_the_span_and_follows_retries(project: Path) -> None:
    async with load(project) as app:
        run = await app.emit("go.fail", {})
        assert [s.status for s in run.span_records] == ["error", "error"]
        err = run.span_records[0].error or ""
        assert "src/go/boom.step.go" in err and "step 'fails'" in err
        assert "error: card declined: insufficient funds" in err
        assert len(run.dead_letters) == 1
        logs = [(log.level, log.message, log.fields_json) for log in run.log_records]
        assert logs[0] == ("warning", "about to fail", '{"why":"declined"}')


async def test_worker_crash_is_retried_and_the_next_event_works(project: Path) -> None:
    async with load(project) as app:
        go = go_of(app)
        run = await app.emit("go.crash", {})
        statuses = [s.status for s in run.span_records]
        assert statuses == ["error", "ok"], [s.error for s in run.span_records]
        assert "WorkerCrashed" in (run.span_records[0].error or "") or "exit" in (
            run.span_records[0].error or ""
        )
        assert await app.state.get("crash", "done") is True
        assert go.restarts >= 1 and len(set(go.pids)) >= 2
        run = await app.emit("order.placed", {"order_id": "B2", "amount": 100})
        assert run.status == "ok"


async def test_timeout_cancels_and_the_worker_keeps_going(project: Path) -> None:
    async with load(project) as app:
        run = await app.emit("go.slow", {})
        (span,) = run.span_records
        assert span.status == "timeout"
        run = await app.emit("order.placed", {"order_id": "C3", "amount": 1})
        assert run.status == "ok"
        assert len(set(go_of(app).pids)) == 1  # the same worker: no restart for a timeout


def test_binary_is_cached(project: Path) -> None:
    app = load(project)  # built by earlier tests (or now)
    go = go_of(app)
    root = project.resolve()
    binary = go.binary_path(root, go.files_of(root))
    assert binary.is_file()
    mtime = binary.stat().st_mtime_ns
    app2 = load(project)
    assert go_of(app2).builds == 0
    assert binary.stat().st_mtime_ns == mtime
    assert app2.errors == []


def test_changed_source_rebuilds(tmp_path: Path) -> None:
    root = write(tmp_path, {"src/score.step.go": SCORE_GO})
    app = load(root)
    assert app.errors == [] and go_of(app).builds == 1
    path = root / "src/score.step.go"
    path.write_text(path.read_text().replace("scoring in go", "scoring in Go"))
    app = load(root)
    assert go_of(app).builds == 1


def _path_without_go() -> str:
    return os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "go").exists()
    )


async def test_missing_toolchain_is_a_clear_error_and_python_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write(
        tmp_path,
        {
            "src/start.step.py": START_PY,
            "src/finish.step.py": FINISH_PY,
            "src/score.step.go": SCORE_GO,
        },
    )
    monkeypatch.setenv("PATH", _path_without_go())
    monkeypatch.delenv("WISTRO_GO", raising=False)
    app = load(root)
    (err,) = app.errors
    assert isinstance(err, StepLoadError)
    assert err.file == "src/score.step.go"
    assert "Go toolchain" in str(err) and "score.step.go" in str(err)
    assert "Python steps still run" in str(err)
    async with app:
        assert [r.name for r in app.registry] == ["finish", "start"]
        assert "order.check" in app.registry.topics
        run = await app.emit("order.placed", {"order_id": "D4", "amount": 1})
        assert [s.step for s in run.span_records] == ["start"]


def test_compile_error_names_file_and_line_and_other_go_steps_load(tmp_path: Path) -> None:
    root = write(tmp_path, {"src/broken.step.go": BROKEN_GO, "src/score.step.go": SCORE_GO})
    app = load(root)
    (err,) = app.errors
    assert err.file == "src/broken.step.go"
    assert err.line == 11
    assert "undefined: undefinedThing" in str(err)
    assert "src/broken.step.go:11" in str(err)
    assert [r.name for r in app.registry] == ["score"]


async def test_start_from_lock_needs_no_go_once_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wistro.project.lock import build_lock, write_lock

    root = write(
        tmp_path,
        {
            "src/start.step.py": START_PY,
            "src/finish.step.py": FINISH_PY,
            "src/score.step.go": SCORE_GO,
        },
    )
    app = load(root)
    assert app.errors == []
    write_lock(app.project.lock_path, build_lock(app.project, app.registry))
    monkeypatch.setenv("PATH", _path_without_go())
    locked = wistro.App.from_lock(root, state="memory", traces="memory")
    async with locked:
        run = await locked.emit("order.placed", {"order_id": "E5", "amount": 300})
        assert run.status == "ok", run.failures
        assert await locked.state.get("done", "E5") == {"order_id": "E5", "score": 3.0}


def test_many_concurrent_invokes(project: Path) -> None:
    app = load(project)

    async def go() -> None:
        async with app:
            runs = [
                await app.emit("order.placed", {"order_id": f"N{i}", "amount": i}, wait=False)
                for i in range(200)
            ]
            await app.drain()
            assert all(r.status == "ok" for r in runs)

    asyncio.run(go())


async def test_lock_holds_the_configs_building_on_first_delivery_needs_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wistro.project.lock import build_lock, write_lock

    root = write(
        tmp_path,
        {
            "src/start.step.py": START_PY,
            "src/finish.step.py": FINISH_PY,
            "src/score.step.go": SCORE_GO,
        },
    )
    app = load(root)
    write_lock(app.project.lock_path, build_lock(app.project, app.registry))
    shutil.rmtree(root / ".wistro" / "build")
    monkeypatch.setenv("PATH", _path_without_go())
    app = load(root)  # no go, no binary: the configs come from the lock
    assert app.errors == []
    assert app.step("score").language == "go"
    async with app:
        run = await app.emit("order.placed", {"order_id": "F6", "amount": 1})
        spans = {s.step: s for s in run.span_records}
        assert spans["start"].status == "ok"
        assert spans["score"].status == "error"
        assert "Go toolchain" in (spans["score"].error or "")


NO_REGISTER_GO = """
package steps

func helper() int { return 1 }
"""

BAD_CONFIG_GO = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{Name: "nosubs"},
\tfunc(ctx *wistro.Context, input json.RawMessage) (any, error) { return nil, nil })
"""


def test_config_errors_name_the_go_file(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "src/empty.step.go": NO_REGISTER_GO,
            "src/nosubs.step.go": BAD_CONFIG_GO,
            "src/score.step.go": SCORE_GO,
        },
    )
    app = load(root)
    errors = {e.file: e for e in app.errors}
    assert set(errors) == {"src/empty.step.go", "src/nosubs.step.go"}
    assert "no step registered" in str(errors["src/empty.step.go"])
    assert errors["src/nosubs.step.go"].line == 9
    assert "subscribes" in str(errors["src/nosubs.step.go"])
    assert [r.name for r in app.registry] == ["score"]


API_GO = """
package steps

import (
\t"encoding/json"

\t"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{Type: "api", Name: "hello_api", Path: "/hello", Method: "POST", Emits: []any{"order.placed"}},
\tfunc(ctx *wistro.Context, input json.RawMessage) (any, error) {
\t\tif err := ctx.Emit("order.placed", map[string]any{"order_id": "API", "amount": 7}); err != nil {
\t\t\treturn nil, err
\t\t}
\t\treturn wistro.Response{Status: 201, Body: map[string]any{"echo": input}, Headers: map[string]string{"x-lang": "go"}}, nil
\t})
"""


async def test_api_step_returns_a_response(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "src/start.step.py": START_PY,
            "src/finish.step.py": FINISH_PY,
            "src/score.step.go": SCORE_GO,
            "src/api.step.go": API_GO,
        },
    )
    async with load(root) as app:
        assert app.errors == []
        step = app.step("hello_api")
        assert step.type == "api" and step.trigger["path"] == "/hello"
        result, run = await app.engine.call(step, {"name": "x"}, trigger="api", topic="POST /hello")
        assert result == {
            "status": 201,
            "body": {"echo": {"name": "x"}},
            "headers": {"x-lang": "go"},
        }
        await run.wait()
        assert await app.state.get("done", "API") == {"order_id": "API", "score": 0.07}

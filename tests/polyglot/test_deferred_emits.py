"""Deferred emits (docs/worker-protocol.md): a JS or Go step's emits that the worker's own check
accepts travel with the invoke's answer, one round trip per hop. What a user sees must not
change: every run and span of hundreds in flight, emits in order and published promptly, a
refused emit failing where it is awaited (naming the step file and line), emits made before a
throw still published. And the worker's check never says "valid" where the engine refuses.

Real ``node`` and a real ``go build``; no mocks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

import wistro
import wistro.app
from wistro.core.topics import TopicCatalog
from wistro.errors import PayloadError
from wistro.runtimes import PythonRuntime
from wistro.runtimes.golang import SDK_DIR, build_env
from wistro.runtimes.node import WORKER_JS
from wistro.runtimes.worker import WorkerProcess, WorkerRuntime

NODE = shutil.which("node")
GO = shutil.which("go")
needs_node = pytest.mark.skipif(NODE is None, reason="needs node")
needs_go = pytest.mark.skipif(GO is None, reason="needs the Go toolchain")

HOP = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "hop": {"type": "integer"}},
    "required": ["id", "hop"],
}
SEQ = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
PATTERNED = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"pattern": "^x"}}}
STRICT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
HOPS = 5


def _js_chain() -> dict[str, str]:
    files = {}
    for i in range(HOPS):
        last = i == HOPS - 1
        emits = [] if last else [{"topic": f"jt{i + 1}", "schema": HOP}]
        cfg = {"name": f"j{i}", "subscribes": [f"jt{i}"], "emits": emits, "input": HOP}
        body = (
            "  return null;"
            if last
            else f'  await ctx.emit("jt{i + 1}", {{ id: input.id, hop: {i + 1} }});'
        )
        files[f"src/js/chain{i}.step.js"] = (
            f"export const config = {json.dumps(cfg)};\n\n"
            f"export async function handler(input, ctx) {{\n{body}\n}}\n"
        )
    return files


def _go_chain() -> dict[str, str]:
    files = {}
    for i in range(HOPS):
        last = i == HOPS - 1
        emits = "" if last else f'wistro.Emit{{Topic: "gt{i + 1}", Schema: hop}}'
        body = (
            "return nil, nil"
            if last
            else f'return nil, ctx.Emit("gt{i + 1}", Hop{{ID: p.ID, Hop: {i + 1}}})'
        )
        files[f"src/go/chain{i}.step.go"] = GO_HEAD + (
            f"var _ = wistro.Register(wistro.StepConfig{{\n"
            f'\tName: "g{i}", Subscribes: []string{{"gt{i}"}}, Emits: []any{{{emits}}}, Input: hop,\n'
            "}, wistro.Handle(func(ctx *wistro.Context, p Hop) (any, error) {\n"
            f"\t{body}\n}}))\n"
        )

    return files


GO_HEAD = (
    'package steps\n\nimport (\n\t"encoding/json"\n\t"errors"\n\t"time"\n\n'
    '\t"wistro.dev/sdk/wistro"\n)\n\n'
    "var _, _ = errors.New, time.Sleep\n\n"
    'type Hop struct {\n\tID  int `json:"id"`\n\tHop int `json:"hop"`\n}\n\n'
    f"var hop = json.RawMessage(`{json.dumps(HOP)}`)\n"
    f"var seq = json.RawMessage(`{json.dumps(SEQ)}`)\n"
    f"var patterned = json.RawMessage(`{json.dumps(PATTERNED)}`)\n"
    f"var strict = json.RawMessage(`{json.dumps(STRICT)}`)\n"
)

JS_STEPS = {
    # emits in order: deferred, a call (the check cannot decide "pattern"), deferred around a
    # state call and a log, deferred at the end
    "src/js/order.step.js": f"""
        export const config = {{
          name: "jorder", subscribes: ["jorder"],
          emits: [{{ topic: "jseq", schema: {json.dumps(SEQ)} }},
                  {{ topic: "jseq.pat", schema: {json.dumps(PATTERNED)} }}],
        }};

        export async function handler(input, ctx) {{
          ctx.emit("jseq", {{ n: 1 }});
          await ctx.emit("jseq.pat", {{ n: 2, s: "xy" }});
          const obj = {{ n: 3 }};
          await ctx.emit("jseq", obj);
          obj.n = 99; // the emit was a snapshot
          await ctx.state.set("order", ctx.traceId, 1);
          ctx.emit("jseq", {{ n: 4 }});
          ctx.logger.info("between");
          await ctx.emit("jseq", {{ n: 5 }});
        }}
    """,
    # an emit is published while the handler goes on waiting: its subscriber runs meanwhile
    "src/js/wait.step.js": """
        export const config = {
          name: "jwait", subscribes: ["jwait"],
          emits: [{ topic: "ping", schema: { type: "object" } }, "seen"],
        };

        export async function handler(input, ctx) {
          await ctx.emit("ping", { from: "js" });
          await new Promise((r) => setTimeout(r, 300)); // no call: the emit goes out on its own
          await ctx.emit("seen", { seen: (await ctx.state.get("pong", ctx.traceId)) !== null });
        }
    """,
    "src/js/throw.step.js": """
        export const config = {
          name: "jthrow", subscribes: ["jthrow"], retries: 0,
          emits: [{ topic: "thrown", schema: { type: "object", required: ["id"] } }],
        };

        export async function handler(input, ctx) {
          await ctx.emit("thrown", { id: "js-1" });
          ctx.emit("thrown", { id: "js-2" });
          throw new Error("after emitting"); // JS-THROW-LINE
        }
    """,
    "src/js/bad.step.js": f"""
        export const config = {{
          name: "jbad", subscribes: ["jbad"], retries: 0,
          emits: [{{ topic: "strict", schema: {json.dumps(STRICT)} }}],
        }};

        export async function handler(input, ctx) {{
          if (input.undeclared) {{
            await ctx.emit("not.declared", {{ n: 1 }}); // JS-UNDECLARED-LINE
          }}
          await ctx.emit("strict", {{ n: 1 }});
          await ctx.emit("strict", {{ n: "one" }}); // JS-BAD-LINE
          await ctx.emit("strict", {{ n: 3 }});
        }}
    """,
}

GO_STEPS = {
    "src/go/order.step.go": GO_HEAD
    + """
var _ = wistro.Register(wistro.StepConfig{
	Name:       "gorder",
	Subscribes: []string{"gorder"},
	Emits:      []any{wistro.Emit{Topic: "gseq", Schema: seq}, wistro.Emit{Topic: "gseq.pat", Schema: patterned}},
}, func(ctx *wistro.Context, _ json.RawMessage) (any, error) {
	_ = ctx.Emit("gseq", map[string]any{"n": 1})
	if err := ctx.Emit("gseq.pat", map[string]any{"n": 2, "s": "xy"}); err != nil {
		return nil, err
	}
	obj := map[string]any{"n": 3}
	_ = ctx.Emit("gseq", obj)
	obj["n"] = 99 // the emit was a snapshot
	if err := ctx.State.Set("order", ctx.TraceID, 1); err != nil {
		return nil, err
	}
	_ = ctx.Emit("gseq", map[string]any{"n": 4})
	ctx.Logger.Info("between")
	return nil, ctx.Emit("gseq", map[string]any{"n": 5})
})
""",
    "src/go/wait.step.go": GO_HEAD
    + """
var _ = wistro.Register(wistro.StepConfig{
	Name:       "gwait",
	Subscribes: []string{"gwait"},
	Emits:      []any{wistro.Emit{Topic: "ping", Schema: map[string]any{"type": "object"}}, "seen"},
}, func(ctx *wistro.Context, _ json.RawMessage) (any, error) {
	if err := ctx.Emit("ping", map[string]any{"from": "go"}); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // no call: the emit goes out on its own
	raw, err := ctx.State.GetRaw("pong", ctx.TraceID)
	if err != nil {
		return nil, err
	}
	return nil, ctx.Emit("seen", map[string]any{"seen": raw != nil})
})
""",
    "src/go/throw.step.go": GO_HEAD
    + """
var _ = wistro.Register(wistro.StepConfig{
	Name:       "gthrow",
	Subscribes: []string{"gthrow"},
	Emits:      []any{wistro.Emit{Topic: "thrown", Schema: map[string]any{"type": "object", "required": []string{"id"}}}},
	Retries:    wistro.Int(0),
}, func(ctx *wistro.Context, input json.RawMessage) (any, error) {
	if err := ctx.Emit("thrown", map[string]any{"id": "go-1"}); err != nil {
		return nil, err
	}
	_ = ctx.Emit("thrown", map[string]any{"id": "go-2"})
	if string(input) == `{"panic":true}` {
		panic("after emitting") // GO-PANIC-LINE
	}
	return nil, errors.New("after emitting")
})
""",
    "src/go/bad.step.go": GO_HEAD
    + """
var _ = wistro.Register(wistro.StepConfig{
	Name:       "gbad",
	Subscribes: []string{"gbad"},
	Emits:      []any{wistro.Emit{Topic: "strict", Schema: strict}},
	Retries:    wistro.Int(0),
}, func(ctx *wistro.Context, _ json.RawMessage) (any, error) {
	if err := ctx.Emit("strict", map[string]any{"n": 1}); err != nil {
		return nil, err
	}
	if err := ctx.Emit("strict", map[string]any{"n": "one"}); err != nil {
		return nil, err
	}
	return nil, ctx.Emit("strict", map[string]any{"n": 3})
})
""",
}

PY_STEPS = {
    "src/py/pong.step.py": """
        config = {"name": "pong", "subscribes": ["ping"]}

        async def handler(data, ctx):
            await ctx.state.set("pong", ctx.trace_id, data)
    """,
    "src/py/thrown.step.py": """
        config = {"name": "thrown_sink", "subscribes": ["thrown"]}

        async def handler(data, ctx):
            await ctx.state.set("thrown", data["id"], True)
    """,
    "src/py/strict.step.py": """
        config = {"name": "strict_sink", "subscribes": ["strict"]}

        async def handler(data, ctx):
            await ctx.state.set("strict", str(data["n"]), True)
    """,
}


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    (root / "wistro.yml").write_text("name: deferred\n", encoding="utf-8")
    return root


def line_of(path: Path, marker: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = {**PY_STEPS}
    if NODE is not None:
        files.update(_js_chain())
        files.update(JS_STEPS)
    if GO is not None:
        files.update(_go_chain())
        files.update(GO_STEPS)
    return write(tmp_path_factory.mktemp("deferred"), files)


@pytest.fixture
async def app(project: Path) -> AsyncIterator[wistro.App]:
    app = wistro.load(project, traces="memory", state="memory")
    assert app.errors == []
    try:
        yield app
    finally:
        await app.aclose()


LANGS = [pytest.param("j", marks=needs_node, id="js"), pytest.param("g", marks=needs_go, id="go")]


# ---------------------------------------------------------------- many in flight
async def test_hundreds_in_flight_through_js_and_go_chains(app: wistro.App) -> None:
    langs = [p for p, ok in (("j", NODE), ("g", GO)) if ok]
    runs = []
    for i in range(300):
        for lang in langs:
            runs.append((lang, await app.emit(f"{lang}t0", {"id": i, "hop": 0}, wait=False)))
    await app.drain()
    for lang, run in runs:
        assert run.status == "ok", run.errors
        assert sorted(s.step for s in run.span_records) == [f"{lang}{h}" for h in range(HOPS)]
        assert all(s.status == "ok" for s in run.span_records)
        events = [(e.topic, json.loads(e.data_json)["hop"]) for e in run.event_records]
        assert events == [(f"{lang}t{h}", h) for h in range(HOPS)]
        assert all(e.error is None for e in run.event_records)
        # each event's parent is the span of the step that emitted it
        spans = {s.step: s.id for s in run.span_records}
        for e in run.event_records[1:]:
            assert e.parent_span_id == spans[e.source]


# ---------------------------------------------------------------- order, snapshot, promptness
@pytest.mark.parametrize("lang", LANGS)
async def test_emits_keep_their_order(app: wistro.App, lang: str) -> None:
    run = await app.emit(f"{lang}order", {})
    assert run.status == "ok", run.errors
    got = [(e.topic, json.loads(e.data_json)["n"]) for e in run.event_records[1:]]
    seq = f"{lang}seq"
    assert got == [(seq, 1), (f"{seq}.pat", 2), (seq, 3), (seq, 4), (seq, 5)]
    [span] = run.span_records
    assert all(e.parent_span_id == span.id for e in run.event_records[1:])
    # the state call and the log are recorded between the emits they came between
    emitted = {json.loads(e.data_json)["n"]: e.ts for e in run.event_records[1:]}
    [state_op] = run.state_records
    [log] = run.log_records
    assert emitted[3] <= state_op.ts <= emitted[4] <= log.ts <= emitted[5]


@pytest.mark.parametrize("lang", LANGS)
async def test_an_emit_is_published_while_the_handler_waits(app: wistro.App, lang: str) -> None:
    run = await app.emit(f"{lang}wait", {})
    assert run.status == "ok", run.errors
    assert run.ran("pong")
    assert run.payloads("seen") == [{"seen": True}]
    # published about when the handler emitted it, not with its next frame 300 ms later
    [pong] = [s for s in run.span_records if s.step == "pong"]
    [ping] = [e for e in run.event_records if e.topic == "ping"]
    [seen] = [e for e in run.event_records if e.topic == "seen"]
    assert seen.ts - ping.ts > 0.15
    assert pong.start < seen.ts - 0.1


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("lang", LANGS)
async def test_emits_before_a_throw_are_published(
    app: wistro.App, project: Path, lang: str
) -> None:
    cases = [({}, "error")] if lang == "j" else [({}, "error"), ({"panic": True}, "panic")]
    for payload, kind in cases:
        run = await app.emit(f"{lang}throw", payload)
        [span] = [s for s in run.span_records if s.step == f"{lang}throw"]
        assert span.status == "error"
        assert span.error is not None and "\n" not in span.error
        if lang == "j":
            line = line_of(project / "src/js/throw.step.js", "JS-THROW-LINE")
            assert span.error == (
                f"StepError: src/js/throw.step.js:{line}, step 'jthrow': Error: after emitting"
            )
        elif kind == "panic":
            line = line_of(project / "src/go/throw.step.go", "GO-PANIC-LINE")
            assert span.error.startswith(f"StepError: src/go/throw.step.go:{line}, step 'gthrow'")
        else:
            assert span.error.startswith("StepError: src/go/throw.step.go, step 'gthrow'")
        who = "js" if lang == "j" else "go"
        assert run.payloads("thrown") == [{"id": f"{who}-1"}, {"id": f"{who}-2"}]
        assert [s.status for s in run.span_records if s.step == "thrown_sink"] == ["ok", "ok"]
        assert await app.state.get("thrown", f"{who}-2") is True


@needs_node
async def test_an_invalid_js_emit_fails_where_it_is_awaited(app: wistro.App, project: Path) -> None:
    file = project / "src/js/bad.step.js"
    run = await app.emit("jbad", {})
    [span] = [s for s in run.span_records if s.step == "jbad"]
    line = line_of(file, "JS-BAD-LINE")
    assert span.error is not None
    assert span.error.startswith(
        f"StepError: src/js/bad.step.js:{line}, step 'jbad': PayloadError: "
    ), span.error
    assert "field 'n'" in span.error and "\n" not in span.error
    # the valid emit before it was published, the refused one recorded, nothing after it
    assert [(e.topic, e.error is None) for e in run.event_records[1:]] == [
        ("strict", True),
        ("strict", False),
    ]
    assert run.payloads("strict") == [{"n": 1}]

    run = await app.emit("jbad", {"undeclared": True})
    [span] = [s for s in run.span_records if s.step == "jbad"]
    line = line_of(file, "JS-UNDECLARED-LINE")
    assert span.error is not None
    assert span.error.startswith(
        f"StepError: src/js/bad.step.js:{line}, step 'jbad': UndeclaredEmitError: "
    ), span.error


@needs_go
async def test_an_invalid_go_emit_is_returned_where_it_is_made(app: wistro.App) -> None:
    run = await app.emit("gbad", {})
    [span] = [s for s in run.span_records if s.step == "gbad"]
    assert span.error is not None and "\n" not in span.error
    assert span.error.startswith("StepError: src/go/bad.step.go, step 'gbad': PayloadError: ")
    assert "field 'n'" in span.error
    assert [(e.topic, e.error is None) for e in run.event_records[1:]] == [
        ("strict", True),
        ("strict", False),
    ]


# ---------------------------------------------------------------- the check against the engine
class _Sub(BaseModel):
    x: int
    tags: list[str] = []


class _Model(BaseModel):
    id: int
    name: str
    amount: float
    ok: bool = True
    note: str | None = None
    kind: Literal["a", "b"] = "a"
    sub: _Sub | None = None
    count: int = Field(default=0, ge=0, le=10)
    code: str = Field(default="ab", min_length=2, max_length=4)


SCHEMAS: list[Any] = [
    _Model.model_json_schema(),
    HOP,
    {**HOP, "additionalProperties": False},
    {"type": ["string", "null"], "maxLength": 3},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    {"not": {"type": "string"}},
    {"items": {"type": "integer", "exclusiveMinimum": 0}, "minItems": 1, "maxItems": 3},
    {"type": "object", "minProperties": 1, "additionalProperties": {"type": "boolean"}},
    {"enum": ["a", None]},
    {"const": "k"},
    {"type": "string", "format": "date-time"},  # unknown: format
    {"type": "string", "pattern": "^a"},  # unknown: pattern
    {"enum": [1, True]},  # unknown: numbers and bools in an enum
    True,  # no schema
]
_M = {"id": 1, "name": "n", "amount": 1.5}
PAYLOADS: list[Any] = [
    _M,
    {**_M, "amount": 2},
    {**_M, "id": 1.0},
    {**_M, "id": 1.5},
    {**_M, "id": True},
    {**_M, "id": 2**70},
    {**_M, "note": None},
    {**_M, "note": 5},
    {**_M, "kind": "c"},
    {**_M, "sub": {"x": 1, "tags": ["a"]}},
    {**_M, "sub": {"x": 1, "tags": [1]}},
    {**_M, "sub": {"tags": []}},
    {**_M, "count": 11},
    {**_M, "count": 10},
    {**_M, "code": "abcde"},
    {**_M, "code": "🙂🙂"},
    {"id": 1, "name": "n"},
    {"id": 1, "hop": 2},
    {"id": 1, "hop": 2, "x": 3},
    {"id": "1", "hop": 2},
    {"x": True},
    {"x": 1},
    {},
    [1, 2],
    [0],
    [1, 2, 3, 4],
    [],
    "abc",
    "abcd",
    "a",
    "k",
    "2024-01-01T00:00:00Z",
    None,
    1,
    2.5,
    True,
]


def _engine_ok(schema: Any, payload: Any) -> bool:
    validate = TopicCatalog.from_schemas({"t": None if schema is True else schema}).validator("t")
    try:
        validate(json.loads(json.dumps(payload)))
    except PayloadError:
        return False
    return True


def _decided(schema: Any) -> bool:
    """The schemas in the check's subset: it must decide every payload here (no unknown)."""
    return any(schema is s for s in SCHEMAS[:10]) or schema is True


def _cases() -> list[dict[str, Any]]:
    return [
        {"schema": s, "payload": p, "engine_ok": _engine_ok(s, p), "decided": _decided(s)}
        for s in SCHEMAS
        for p in PAYLOADS
    ]


@needs_go
def test_the_go_check_agrees_with_the_engine(tmp_path: Path) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(_cases()))
    env = {**build_env(), "WISTRO_CHECK_CASES": str(cases)}
    result = subprocess.run(
        [str(GO), "test", "-count=1", "-run", "TestCheck", "-v", "./wistro/"],
        cwd=SDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--- PASS: TestCheckAgainstEngine" in result.stdout, result.stdout


@needs_node
async def test_the_js_check_agrees_with_the_engine(tmp_path: Path) -> None:
    """Drives the real JS worker: a step emits each payload under each schema (sent as the
    invoke's ``emits``); a deferred emit (the check said valid) must be one the engine accepts,
    and the schemas the check should decide are always deferred when the engine accepts."""
    step = tmp_path / "emitter.step.js"
    step.write_text(
        'export const config = { name: "emitter", subscribes: ["x"], emits: ["t"] };\n'
        "export async function handler(input, ctx) {\n"
        "  try { await ctx.emit('t', input.payload); } catch (e) { return 'refused'; }\n"
        "  return 'done';\n}\n"
    )
    deferred: dict[int, list[Any]] = {}
    called: dict[int, list[Any]] = {}

    def on_call(msg: dict[str, Any]) -> None:
        assert msg["op"] == "emit"
        called.setdefault(msg["invoke"], []).append(msg["args"]["data"])

    def on_emits(invoke: Any, emits: list[Any]) -> None:
        deferred.setdefault(invoke, []).extend(e["data"] for e in emits)

    proc = WorkerProcess(
        [str(NODE), str(WORKER_JS)],
        language="javascript",
        cwd=tmp_path,
        on_call=on_call,
        on_emits=on_emits,
    )
    await proc.start()
    try:
        loaded = await proc.request({"t": "load", "files": [str(step)]})
        assert loaded["errors"] == [], loaded
        cases = _cases()
        futures, ids = [], []
        for case in cases:
            msg = {
                "t": "invoke",
                "file": str(step),
                "step": "emitter",
                "data": {"payload": case["payload"]},
                "ctx": {"trace_id": "t", "span_id": "s", "step": "emitter", "flows": []},
                "emits": {"t": case["schema"]},
            }
            futures.append(proc.start_request(msg))
            ids.append(msg["id"])
        results = await asyncio.gather(*futures)
    finally:
        await proc.close()
    assert all(r == "done" for r in results)
    assert all((rid in deferred) != (rid in called) for rid in ids)  # each emit went one way
    undecided = []
    for rid, case in zip(ids, cases, strict=True):
        if rid in deferred:
            [data] = deferred[rid]
            assert _engine_ok(case["schema"], data), case
        elif case["decided"] and _engine_ok(case["schema"], case["payload"]):
            undecided.append(case)
    assert undecided == []
    # everything the engine accepts under a schema in the subset skips the round trip
    in_subset = [
        rid
        for rid, case in zip(ids, cases, strict=True)
        if case["decided"] and _engine_ok(case["schema"], case["payload"])
    ]
    assert all(rid in deferred for rid in in_subset)
    assert os.environ.get("WISTRO_CHECK_CASES") is None  # (the Go test's variable stays local)


# ---------------------------------------------------------------- the engine refuses after all
# A worker whose check would be wrong: it defers an invalid emit. The engine must still refuse
# it, drop the invoke's later emits and fail the span in one line naming the step file.
LIAR = r"""
import json, os, sys
out, inp = sys.stdout.buffer, sys.stdin.buffer

def send(msg):
    body = json.dumps(msg).encode()
    out.write(len(body).to_bytes(4, "big") + body)
    out.flush()

def recv():
    head = inp.read(4)
    if len(head) < 4:
        sys.exit(0)
    return json.loads(inp.read(int.from_bytes(head, "big")))

send({"t": "hello", "language": "liar", "version": "1", "pid": os.getpid()})
config = {"name": "liar", "subscribes": ["lie"], "emits": [{"topic": "strict", "schema": SCHEMA}]}
while True:
    msg = recv()
    if msg["t"] == "shutdown":
        sys.exit(0)
    if msg["t"] == "load":
        steps = [{"file": f, "config": config, "line": 1} for f in msg["files"]]
        send({"t": "result", "id": msg["id"], "ok": True, "value": {"steps": steps, "errors": []}})
    elif msg["t"] == "invoke":
        assert msg["emits"] == {"strict": config["emits"][0]["schema"]}, msg
        emits = [{"topic": "strict", "data": {"n": n}} for n in (1, "two", 3)]
        send({"t": "emits", "invoke": msg["id"], "emits": emits[:1]})
        send({"t": "result", "id": msg["id"], "ok": True, "value": None, "emits": emits[1:]})
""".replace("SCHEMA", json.dumps(STRICT))


async def test_a_deferred_emit_the_engine_refuses_fails_the_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = tmp_path / "liar_worker.py"
    worker.write_text(LIAR)

    class LiarRuntime(WorkerRuntime):
        language = "liar"
        suffixes = (".liar",)

        def command(self, root: Path) -> list[str] | None:
            return [sys.executable, str(worker)]

    monkeypatch.setattr(wistro.app, "default_runtimes", lambda: [PythonRuntime(), LiarRuntime()])
    root = write(
        tmp_path / "proj", {"src/liar.step.liar": "(a step of the fake language)\n", **PY_STEPS}
    )
    app = wistro.load(root, traces="memory", state="memory")
    try:
        assert app.errors == []
        run = await app.emit("lie", {})
        [span] = [s for s in run.span_records if s.step == "liar"]
        assert span.status == "error"
        assert span.error is not None and "\n" not in span.error
        assert span.error.startswith("StepError: src/liar.step.liar, step 'liar': PayloadError: ")
        assert "field 'n'" in span.error and "refused once the handler went on" in span.error
        events = [(json.loads(e.data_json)["n"], e.error is None) for e in run.event_records[1:]]
        assert events == [(1, True), ("two", False)]  # 3 came after the refused one: dropped
        assert run.payloads("strict") == [{"n": 1}]
    finally:
        await app.aclose()


# ---------------------------------------------------------------- uvloop (wistro dev's loop)
@pytest.mark.parametrize("lang", LANGS)
def test_workers_run_in_uvloop(project: Path, lang: str) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        app = wistro.load(project, traces="memory", state="memory")
        try:
            runs = [
                await app.emit(f"{lang}t0", {"id": i, "hop": 0}, wait=False) for i in range(100)
            ]
            await app.drain()
            assert all(r.status == "ok" for r in runs), runs[0].errors
            assert all(len(r.span_records) == HOPS for r in runs)
            run = await app.emit(f"{lang}order", {})  # calls, state, logs and deferred emits
            assert run.status == "ok", run.errors
            assert [json.loads(e.data_json)["n"] for e in run.event_records[1:]] == [1, 2, 3, 4, 5]
        finally:
            await app.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())

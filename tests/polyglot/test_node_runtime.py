"""JavaScript / TypeScript steps through the long-lived Node.js worker, with a real ``node``.

TypeScript needs esbuild: it is installed from the npm registry once into wistro's cache
(``~/.cache/wistro/esbuild``, or ``$WISTRO_CACHE_DIR``) and reused by every later run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import wistro
import wistro.app
from wistro.project.lock import build_lock, render
from wistro.runtimes.base import LanguageRuntime
from wistro.runtimes.node import ESBUILD_VERSION, NodeRuntime, ensure_esbuild
from wistro.runtimes.python import PythonRuntime

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


def _runtimes() -> list[LanguageRuntime]:
    return [PythonRuntime(), NodeRuntime()]


@pytest.fixture(autouse=True)
def _with_node_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    # Until NodeRuntime is in wistro.runtimes.default_runtimes(): use it for these tests.
    monkeypatch.setattr(wistro.app, "default_runtimes", _runtimes)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    (root / "wistro.yml").write_text("name: polyglot\n", encoding="utf-8")
    return root


def node_runtime(app: wistro.App) -> NodeRuntime:
    [rt] = [r for r in app.runtimes if isinstance(r, NodeRuntime)]
    return rt


def line_of(path: Path, marker: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


@pytest.fixture
async def app_factory() -> AsyncIterator[list[wistro.App]]:
    apps: list[wistro.App] = []
    yield apps
    for app in apps:  # stop workers left behind by a failed test
        await app.aclose()


def load(root: Path, apps: list[wistro.App], **kw: Any) -> wistro.App:
    app = wistro.load(root, traces="memory", state="memory", **kw)
    apps.append(app)
    return app


# ---------------------------------------------------------------- the four-language chain
CHAIN = {
    "src/checkout/place.step.py": """
        config = {
            "name": "place",
            "subscribes": ["order.placed"],
            "emits": ["order.scored"],
            "input": {"type": "object", "properties": {"id": {"type": "string"}},
                      "required": ["id"]},
        }

        async def handler(data, ctx):
            await ctx.emit("order.scored", {"id": data["id"], "hops": ["py"]})
    """,
    "src/checkout/score.step.js": """
        export const config = {
          name: "score",
          subscribes: ["order.scored"],
          emits: ["order.charged"],
          input: {
            type: "object",
            properties: { id: { type: "string" }, hops: { type: "array" } },
            required: ["id", "hops"],
          },
          flows: ["checkout"],
        };

        export async function handler(input, ctx) {
          ctx.logger.info("scored", { id: input.id, pid: process.pid });
          console.log("printed by", ctx.step); // stdout is the protocol: this goes to stderr
          process.stdout.write("written to stdout\\n");
          await ctx.state.set(ctx.traceId, "score", { value: 7 });
          await ctx.emit("order.charged", { id: input.id, hops: [...input.hops, "js"] });
        }
    """,
    "src/checkout/charge.step.mjs": """
        export const config = {
          name: "charge",
          subscribes: ["order.charged"],
          emits: ["order.receipt"],
        };

        export const handler = async (input, { emit, state, logger, traceId, step }) => {
          const { get } = state; // ctx, ctx.state and ctx.logger may be destructured
          const score = await get(traceId, "score");
          logger.warn("charging", { score: score.value, step });
          await emit("order.receipt", { ...input, hops: [...input.hops, "mjs"], score: score.value });
        };
    """,
    "src/checkout/receipt.step.ts": """
        import { label } from "./receipt_helper";

        interface Receipt { id: string; hops: string[]; score: number }

        export const config = {
          name: "receipt",
          subscribes: ["order.receipt"],
          emits: ["order.done"],
        };

        export async function handler(input: Receipt, ctx: any): Promise<void> {
          const all: Record<string, unknown> = await ctx.state.getGroup(ctx.traceId);
          await ctx.emit("order.done", { ...input, hops: [...input.hops, label()], keys: Object.keys(all) });
        }
    """,
    "src/checkout/receipt_helper.ts": """
        export function label(): string {
          return "ts";
        }
    """,
    "src/checkout/done.step.py": """
        config = {"name": "done", "subscribes": ["order.done"], "emits": []}

        async def handler(data, ctx):
            ctx.logger.info("finished", hops=data["hops"], keys=data["keys"])
    """,
}


async def test_one_trace_crosses_python_js_mjs_ts(
    tmp_path: Path,
    esbuild_dir: Path,
    app_factory: list[wistro.App],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wistro.worker.javascript")
    root = write(tmp_path, CHAIN)
    app = load(root, app_factory)
    assert app.errors == []
    languages = {r.name: r.language for r in app.registry}
    assert languages == {
        "place": "python",
        "score": "javascript",
        "charge": "javascript",
        "receipt": "typescript",
        "done": "python",
    }
    assert app.step("score").input_schema is not None
    assert app.step("score").flows == ("checkout",)
    assert app.step("score").line == 1

    run = await app.emit("order.placed", {"id": "A1"})
    assert run.status == "ok", run.errors
    by_start = sorted(run.span_records, key=lambda s: s.start)
    assert [s.step for s in by_start] == ["place", "score", "charge", "receipt", "done"]
    assert all(s.status == "ok" for s in run.span_records)
    assert {s.trace_id for s in run.span_records} == {run.trace_id}
    assert run.payloads("order.done") == [
        {"id": "A1", "hops": ["py", "js", "mjs", "ts"], "score": 7, "keys": ["score"]}
    ]
    # logs and state from JS are in the trace, bound to the JS spans
    logs = {(log.step, log.level, log.message) for log in run.log_records}
    assert ("score", "info", "scored") in logs
    assert ("charge", "warning", "charging") in logs
    charging = next(log for log in run.log_records if log.message == "charging")
    assert json.loads(charging.fields_json) == {"score": 7, "step": "charge"}
    spans = {s.step: s.id for s in run.span_records}
    assert charging.span_id == spans["charge"]
    ops = [(op.step, op.op, op.key) for op in run.state_records]
    assert ("score", "set", "score") in ops
    assert ("charge", "get", "score") in ops
    assert ("receipt", "get_group", None) in ops

    await app.drain()
    stored = app.trace(run.trace_id)
    assert {s["step"] for s in stored["spans"]} == set(spans)

    assert "printed by score" in caplog.text and "written to stdout" in caplog.text

    # compiled TypeScript is cached by source hash under .wistro/build
    assert list((root / ".wistro" / "build").glob("receipt.step.*.mjs"))
    await app.aclose()
    assert node_runtime(app).worker is None


# ---------------------------------------------------------------- validation and errors
ERRORS = {
    "src/start.step.py": """
        config = {"name": "start", "subscribes": ["go"], "emits": ["checked", "boom", "tsboom"]}

        async def handler(data, ctx):
            await ctx.emit(data["to"], {})
    """,
    "src/check.step.js": """
        export const config = {
          name: "check",
          subscribes: ["checked"],
          emits: [{ topic: "amount", schema: {
            type: "object", properties: { cents: { type: "integer" } }, required: ["cents"] } }],
        };

        export async function handler(input, ctx) {
          try {
            await ctx.emit("amount", { cents: "ten" });
          } catch (e) {
            ctx.logger.error("refused", { name: e.name, message: e.message });
          }
          try {
            await ctx.emit("not.declared", {});
          } catch (e) {
            ctx.logger.error("undeclared", { name: e.name });
          }
          await ctx.emit("amount", { cents: "still wrong" }); // uncaught: fails the step
        }
    """,
    "src/sink.step.py": """
        config = {"name": "sink", "subscribes": ["amount"], "emits": []}

        async def handler(data, ctx):
            pass
    """,
    "src/boom.step.js": """
        export const config = { name: "boom", subscribes: ["boom"], emits: [] };

        function deeper(x) {
          return x.missing.field; // BOOM-LINE
        }

        export async function handler(input, ctx) {
          deeper({});
        }
    """,
    "src/tsboom.step.ts": """
        export const config = { name: "tsboom", subscribes: ["tsboom"], emits: [] };

        type In = Record<string, unknown>;

        export async function handler(input: In, ctx: unknown): Promise<void> {
          throw new RangeError("out of range"); // TS-BOOM-LINE
        }
    """,
}


async def test_js_emit_is_validated_by_the_engine(
    tmp_path: Path, esbuild_dir: Path, app_factory: list[wistro.App]
) -> None:
    app = load(write(tmp_path, ERRORS), app_factory)
    assert app.errors == []
    run = await app.emit("go", {"to": "checked"})
    check = next(s for s in run.span_records if s.step == "check")
    assert check.status == "error"
    assert check.error is not None
    assert "PayloadError" in check.error and "field 'cents'" in check.error
    logs = {log.message: json.loads(log.fields_json) for log in run.log_records}
    assert logs["refused"]["name"] == "PayloadError"
    assert "topic 'amount'" in logs["refused"]["message_"]  # `message` is Logger.log's own
    assert logs["undeclared"] == {"name": "UndeclaredEmitError"}
    refused = [e for e in run.event_records if e.error]
    assert [e.topic for e in refused] == ["amount", "not.declared", "amount"]
    assert all(e.source == "check" for e in refused)
    assert not run.ran("sink")  # nothing invalid was delivered
    await app.aclose()


async def test_js_exception_points_at_the_step_file_and_line(
    tmp_path: Path, esbuild_dir: Path, app_factory: list[wistro.App]
) -> None:
    root = write(tmp_path, ERRORS)
    app = load(root, app_factory)
    run = await app.emit("go", {"to": "boom"})
    [span] = [s for s in run.span_records if s.step == "boom"]
    line = line_of(root / "src/boom.step.js", "BOOM-LINE")
    assert span.status == "error"
    assert span.error is not None
    assert span.error.startswith(f"StepError: src/boom.step.js:{line}, step 'boom': TypeError:")
    assert "\n" not in span.error
    assert span.traceback is not None
    assert f"boom.step.js:{line}" in span.traceback  # the JS stack is in the traceback
    assert run.dead_letters and run.dead_letters[0].step == "boom"

    run = await app.emit("go", {"to": "tsboom"})
    [span] = [s for s in run.span_records if s.step == "tsboom"]
    line = line_of(root / "src/tsboom.step.ts", "TS-BOOM-LINE")
    assert span.error is not None
    assert f"src/tsboom.step.ts:{line}, step 'tsboom': RangeError: out of range" in span.error
    assert span.traceback is not None and f"tsboom.step.ts:{line}" in span.traceback
    await app.aclose()


async def test_broken_js_files_are_load_errors_and_the_rest_loads(
    tmp_path: Path, app_factory: list[wistro.App]
) -> None:
    root = write(
        tmp_path,
        {
            "src/syntax.step.js": "export const config = {name: 'syntax', subscribes: ['a']\n\nlet = ;\n",
            "src/noconfig.step.js": "export async function handler() {}\n",
            "src/badcfg.step.js": "export const config = {name: 'bad', subscribes: ['a'], colour: 1};\n"
            "export async function handler() {}\n",
            "src/ok.step.mjs": "export const config = {name: 'ok', subscribes: ['a']};\n"
            "export async function handler() {}\n",
        },
    )
    app = load(root, app_factory)
    errors = {Path(str(e.file)).name: e for e in app.errors}
    assert set(errors) == {"syntax.step.js", "noconfig.step.js", "badcfg.step.js"}
    assert "syntax error" in errors["syntax.step.js"].message
    assert errors["syntax.step.js"].line == 3
    assert "no `config`" in errors["noconfig.step.js"].message
    assert "unknown key" in errors["badcfg.step.js"].message
    assert [r.name for r in app.registry] == ["ok"]


# ---------------------------------------------------------------- crash, timeout
CRASH = {
    "src/start.step.py": """
        config = {"name": "start", "subscribes": ["go"], "emits": ["crash", "slow"]}

        async def handler(data, ctx):
            await ctx.emit(data["to"], data)
    """,
    "src/crash.step.js": """
        import { existsSync, writeFileSync } from "node:fs";

        export const config = {
          name: "crash", subscribes: ["crash"], emits: ["after"], retries: 1, retry_backoff_s: 0.01,
        };

        export async function handler(input, ctx) {
          if (!existsSync(input.marker)) {
            writeFileSync(input.marker, String(process.pid));
            process.exit(1); // the worker dies with this delivery (and others) in flight
          }
          await ctx.emit("after", { pid: process.pid });
        }
    """,
    "src/slow.step.js": """
        export const config = {
          name: "slow", subscribes: ["slow"], emits: ["after"], retries: 1, retry_backoff_s: 0.01,
        };

        export async function handler(input, ctx) {
          await new Promise((r) => setTimeout(r, input.ms));
          await ctx.emit("after", { pid: process.pid });
        }
    """,
    "src/after.step.py": """
        config = {"name": "after", "subscribes": ["after"], "emits": []}

        async def handler(data, ctx):
            pass
    """,
    "src/hang.step.js": """
        export const config = { name: "hang", subscribes: ["hang"], emits: [], timeout_s: 0.3 };

        export async function handler(input, ctx) {
          await new Promise(() => {}); // never resolves
        }
    """,
    "src/hangstart.step.py": """
        config = {"name": "hangstart", "subscribes": ["go.hang"], "emits": ["hang"]}

        async def handler(data, ctx):
            await ctx.emit("hang", {})
    """,
}


async def test_worker_crash_is_detected_and_in_flight_deliveries_are_retried(
    tmp_path: Path, app_factory: list[wistro.App]
) -> None:
    app = load(write(tmp_path, CRASH), app_factory)
    assert app.errors == []
    rt = node_runtime(app)
    marker = str(tmp_path / "crashed")
    slow = [await app.emit("go", {"to": "slow", "ms": 300}, wait=False) for _ in range(5)]
    crash = await app.emit("go", {"to": "crash", "marker": marker})
    for run in slow:
        await run.wait()
    first_pid = int(Path(marker).read_text())

    assert crash.status == "ok", crash.errors
    attempts = [(s.attempt, s.status) for s in crash.span_records if s.step == "crash"]
    assert attempts == [(1, "error"), (2, "ok")]
    failed = next(s for s in crash.span_records if s.step == "crash" and s.attempt == 1)
    assert failed.error is not None and "WorkerCrashed" in failed.error
    assert "exit code 1" in failed.error
    assert crash.dead_letters == []
    # the slow deliveries that were in flight on the dead worker were retried: none lost
    for run in slow:
        assert run.status == "ok", run.errors
        assert run.ran("slow") and run.ran("after")
        assert run.dead_letters == []
    assert first_pid not in {json.loads(e.data_json).get("pid") for e in crash.event_records}
    assert rt.restarts == 1
    assert len(rt.pids) == 2 and rt.pids[0] == first_pid

    # the next event works, on the restarted worker
    again = await app.emit("go", {"to": "crash", "marker": marker})
    assert again.status == "ok" and [
        s.attempt for s in again.span_records if s.step == "crash"
    ] == [1]
    assert len(rt.pids) == 2
    await app.aclose()


async def test_a_handler_that_never_answers_hits_the_step_timeout(
    tmp_path: Path, app_factory: list[wistro.App]
) -> None:
    app = load(write(tmp_path, CRASH), app_factory)
    rt = node_runtime(app)
    run = await app.emit("go.hang", {})
    [span] = [s for s in run.span_records if s.step == "hang"]
    assert span.status == "timeout"
    assert span.error is not None and "timed out after 0.3s" in span.error
    assert [d.step for d in run.dead_letters] == ["hang"]
    assert rt.worker is not None and rt.worker.alive  # the worker is fine
    assert rt.worker.in_flight == 0  # the engine forgot the invoke (and sent `cancel`)
    ok = await app.emit("go", {"to": "slow", "ms": 1})
    assert ok.status == "ok"
    assert len(rt.pids) == 1
    t = time.perf_counter()
    await app.aclose()  # `shutdown` does not wait for the cancelled invoke
    assert time.perf_counter() - t < 2.0


# ---------------------------------------------------------------- missing toolchain
async def test_missing_node_names_the_js_files_and_python_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_factory: list[wistro.App]
) -> None:
    root = write(tmp_path, CRASH)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("WISTRO_NODE", raising=False)
    app = load(root, app_factory)
    errors = {str(e.file): e for e in app.errors}
    assert set(errors) == {"src/crash.step.js", "src/slow.step.js", "src/hang.step.js"}
    for e in errors.values():
        assert "`node`" in e.message and "not on PATH" in e.message
        assert "crash.step.js" in e.message and "slow.step.js" in e.message
        assert e.hint is not None and "nodejs.org" in e.hint
    assert {r.name for r in app.registry} == {"start", "after", "hangstart"}
    run = await app.emit("go", {"to": "crash"})  # nothing subscribes: the JS step is not loaded
    assert run.status == "ok" and run.ran("start")
    await app.aclose()


async def test_from_lock_needs_no_node_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_factory: list[wistro.App]
) -> None:
    root = write(tmp_path, CRASH)
    app = load(root, app_factory)
    (root / "wistro.yml.lock").write_text(render(build_lock(app.project, app.registry)))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    locked = wistro.App.from_lock(root, traces="memory", state="memory")
    app_factory.append(locked)
    assert locked.step("slow").language == "javascript"
    run = await locked.emit("go", {"to": "slow", "ms": 1})
    [span] = [s for s in run.span_records if s.step == "slow" and s.attempt == 2]
    assert span.error is not None and "`node`" in span.error and "not installed" in span.error
    assert run.ran("start")
    monkeypatch.setenv("PATH", str(Path(str(NODE)).parent) + os.pathsep + os.environ["PATH"])
    run = await locked.emit("go", {"to": "slow", "ms": 1})  # node is back: lazily started
    assert run.status == "ok", run.errors
    await locked.aclose()


# ---------------------------------------------------------------- one worker, many deliveries
async def test_many_concurrent_deliveries_share_one_worker(
    tmp_path: Path, app_factory: list[wistro.App]
) -> None:
    app = load(write(tmp_path, CRASH), app_factory)
    rt = node_runtime(app)
    runs = [await app.emit("go", {"to": "slow", "ms": 20}, wait=False) for _ in range(200)]
    await app.drain()
    assert all(r.status == "ok" for r in runs)
    assert sum(1 for r in runs for s in r.span_records if s.step == "slow") == 200
    pids = {p["pid"] for r in runs for p in r.payloads("after")}
    assert len(rt.pids) == 1 and pids == set(rt.pids)
    assert rt.restarts == 0
    await app.aclose()


# ---------------------------------------------------------------- zod (optional)
@pytest.fixture(scope="session")
def zod_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("needs npm")
    cache = Path(os.environ.get("WISTRO_TEST_NPM_CACHE", Path.home() / ".cache" / "wistro"))
    prefix = cache / "test-zod"
    if not (prefix / "node_modules" / "zod" / "package.json").is_file():
        proc = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "zod@4",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot install zod: {proc.stderr[-300:]}")
    return prefix / "node_modules"


async def test_zod_input_schema_becomes_json_schema(
    tmp_path: Path, zod_modules: Path, esbuild_dir: Path, app_factory: list[wistro.App]
) -> None:
    root = write(
        tmp_path,
        {
            "src/typed.step.ts": """
                import { z } from "zod";

                export const config = {
                  name: "typed",
                  subscribes: ["typed"],
                  emits: [],
                  input: z.object({ id: z.string(), qty: z.number().int() }),
                };

                export async function handler(input: { id: string; qty: number }, ctx: any) {
                  ctx.logger.info("got", input);
                }
            """,
        },
    )
    (root / "node_modules").symlink_to(zod_modules)
    app = load(root, app_factory)
    assert app.errors == []
    schema = app.step("typed").input_schema
    assert schema is not None and schema["properties"]["qty"]["type"] == "integer"
    assert "$schema" not in schema
    with pytest.raises(wistro.errors.PayloadError):
        await app.emit("typed", {"id": "x", "qty": "many"})
    run = await app.emit("typed", {"id": "x", "qty": 2})
    assert run.status == "ok", run.errors
    await app.aclose()


# ---------------------------------------------------------------- api steps, un-awaited emits
async def test_js_api_step_and_unawaited_failing_emit(
    tmp_path: Path, app_factory: list[wistro.App]
) -> None:
    from wistro.triggers.http import ApiRequest

    root = write(
        tmp_path,
        {
            "src/api.step.js": """
                export const config = {
                  type: "api", name: "api", path: "/orders/{id}", method: "POST",
                  emits: [{ topic: "created", schema: { type: "object", required: ["id"] } }],
                };

                export async function handler(req, ctx) {
                  await ctx.emit("created", { id: req.path_params.id });
                  return { status: 201, body: { id: req.path_params.id, got: req.body, raw: req.raw_body } };
                }
            """,
            "src/careless.step.js": """
                export const config = { name: "careless", subscribes: ["created"], emits: ["created"] };

                export async function handler(input, ctx) {
                  ctx.emit("created", { nope: 1 }); // not awaited, invalid: the step still fails
                }
            """,
        },
    )
    app = load(root, app_factory)
    assert app.errors == []
    request = ApiRequest("POST", "/orders/7", {"id": "7"}, {}, {}, {"a": 1}, b'{"a":1}')
    result, run = await app.engine.call(app.step("api"), request, trigger="api", topic="api")
    assert result == {"status": 201, "body": {"id": "7", "got": {"a": 1}, "raw": '{"a":1}'}}
    await run.wait()
    [span] = [s for s in run.span_records if s.step == "careless"]
    assert span.status == "error"
    assert span.error is not None and "PayloadError" in span.error
    assert "src/careless.step.js:4" in span.error


async def test_unchanged_js_configs_are_read_from_the_lock_without_node(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    esbuild_dir: Path,
    app_factory: list[wistro.App],
) -> None:
    files = {
        **CHAIN,
        "src/api.step.ts": """
            export const config = {
              type: "api", name: "api", path: "/x", method: "PUT", emits: ["order.placed"],
              body: { type: "object", properties: { id: { type: "string" } } },
              responses: { 200: { type: "object" } },
            };
            export async function handler(req: unknown) { return { status: 200 }; }
        """,
        "src/tick.step.mjs": """
            export const config = {
              type: "cron", name: "tick", cron: "*/5 * * * *", emits: ["order.placed"],
              virtual_emits: [{ topic: "audit", label: "later" }], allow_overlap: true,
            };
            export async function handler(ctx) {}
        """,
    }
    root = write(tmp_path, files)
    app = load(root, app_factory)
    assert app.errors == []
    lock = build_lock(app.project, app.registry)
    (root / "wistro.yml.lock").write_text(render(lock))

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no node: the lock has every JS/TS config
    again = load(root, app_factory)
    assert again.errors == []
    assert build_lock(again.project, again.registry) == lock
    assert {r.name: r.language for r in again.registry} == {
        r.name: r.language for r in app.registry
    }

    (root / "src/checkout/score.step.js").write_text(
        (root / "src/checkout/score.step.js").read_text() + "\n// changed\n"
    )
    changed = load(root, app_factory)
    assert [str(e.file) for e in changed.errors] == ["src/checkout/score.step.js"]
    assert "`node`" in changed.errors[0].message


# ---------------------------------------------------------------- esbuild lookup
def test_esbuild_is_taken_from_the_project_first(tmp_path: Path, esbuild_dir: Path) -> None:
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "esbuild").symlink_to(esbuild_dir)
    assert ensure_esbuild(tmp_path) == tmp_path / "node_modules" / "esbuild"


async def test_no_esbuild_fails_only_the_typescript_steps_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_factory: list[wistro.App]
) -> None:
    root = write(
        tmp_path / "p",
        {
            "src/a.step.js": "export const config = {name: 'a', subscribes: ['x']};\n"
            "export async function handler() {}\n",
            "src/b.step.ts": "export const config = {name: 'b', subscribes: ['x']};\n"
            "export async function handler(): Promise<void> {}\n",
        },
    )
    only_node = tmp_path / "bin"
    only_node.mkdir()
    (only_node / "node").symlink_to(str(NODE))
    npm = shutil.which("npm")
    assert npm is not None
    (only_node / "npm").symlink_to(npm)  # npm at hand: still nothing is fetched at first use
    monkeypatch.setenv("PATH", str(only_node))
    monkeypatch.setenv("WISTRO_CACHE_DIR", str(tmp_path / "empty-cache"))
    app = load(root, app_factory)
    assert [r.name for r in app.registry] == ["a"]
    [err] = app.errors
    assert err.file == "src/b.step.ts"
    assert err.message == "TypeScript steps need esbuild, which is not installed in the project"
    assert err.hint == f"run `npm install --save-dev esbuild@{ESBUILD_VERSION}` in the project"
    assert not (tmp_path / "empty-cache").exists() and not (root / "node_modules").exists()
    # a package.json that pins esbuild: the hint is to install it
    (root / "package.json").write_text('{"devDependencies": {"esbuild": "0.28.2"}}')
    app = load(root, app_factory)
    [err] = app.errors
    assert err.hint == "run `npm install` in the project (its package.json pins esbuild)"

"""``runtime: process`` Python steps (issue #14): run in Python worker processes over the worker
protocol, with real processes. Emits, state and logs land in the trace as in-process; a pydantic
input arrives as a model instance; a refused emit fails in one line naming the step file; many
deliveries share the pool; a CPU-bound step runs on two cores at once and never blocks the
engine's loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import wistro
from tests.projects import load_app as load
from tests.projects import write_project as write
from wistro.runtimes.python import PythonRuntime
from wistro.runtimes.python_process import PythonProcessRuntime


def process_runtime(app: wistro.App) -> PythonProcessRuntime:
    python = next(r for r in app.runtimes if isinstance(r, PythonRuntime))
    return python.process


CHAIN = {
    "src/place.step.py": """
        config = {"name": "place", "subscribes": ["order.placed"], "emits": ["order.scored"]}

        async def handler(data, ctx):
            await ctx.emit("order.scored", {"id": data["id"], "pid": 0})
    """,
    "src/models.py": """
        from pydantic import BaseModel

        class Scored(BaseModel):
            id: str
            pid: int
    """,
    "src/score.step.py": """
        import os

        from models import Scored

        config = {
            "name": "score",
            "subscribes": ["order.scored"],
            "emits": ["order.done"],
            "input": Scored,
            "runtime": "process",
        }

        async def handler(data, ctx):
            assert isinstance(data, Scored), type(data)
            ctx.logger.info("scoring", id=data.id, model=type(data).__name__)
            await ctx.state.set(ctx.trace_id, "score", 7)
            print("printed by score")
            await ctx.emit("order.done", {"id": data.id, "pid": os.getpid()})
    """,
    "src/sync.step.py": """
        import os

        config = {
            "name": "sync",
            "subscribes": ["order.done"],
            "emits": ["order.synced"],
            "runtime": "process",
        }

        def handler(data, ctx):
            score = ctx.state.get(ctx.trace_id, "score")
            ctx.logger.warning("synced", score=score)
            ctx.emit("order.synced", {"id": data["id"], "score": score, "pid": os.getpid()})
    """,
    "src/done.step.py": """
        config = {"name": "done", "subscribes": ["order.synced"], "emits": []}

        async def handler(data, ctx):
            ctx.logger.info("finished", score=data["score"])
    """,
}


async def test_a_chain_through_process_steps(
    tmp_path: Path, apps: list[wistro.App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    app = load(write(tmp_path, CHAIN), apps)
    assert app.step("score").runtime == "process" and app.step("place").runtime is None
    run = await app.emit("order.placed", {"id": "A1"})
    assert run.status == "ok", run.errors
    by_start = sorted(run.span_records, key=lambda s: s.start)
    assert [s.step for s in by_start] == ["place", "score", "sync", "done"]
    [done] = run.payloads("order.done")
    [synced] = run.payloads("order.synced")
    assert done["pid"] != os.getpid() and synced["pid"] == done["pid"]
    assert synced["score"] == 7
    logs = {(log.step, log.level, log.message) for log in run.log_records}
    assert {("score", "info", "scoring"), ("sync", "warning", "synced")} <= logs
    scoring = next(log for log in run.log_records if log.message == "scoring")
    assert json.loads(scoring.fields_json)["model"] == "Scored"
    spans = {s.step: s.id for s in run.span_records}
    assert scoring.span_id == spans["score"]
    ops = [(op.step, op.op, op.key) for op in run.state_records]
    assert ("score", "set", "score") in ops and ("sync", "get", "score") in ops
    assert "printed by score" in caplog.text
    rt = process_runtime(app)
    assert len(rt.pids) == 1 and rt.pids[0] == done["pid"]
    await app.aclose()
    assert rt.worker is None


BAD = {
    "src/start.step.py": """
        config = {"name": "start", "subscribes": ["go"], "emits": ["amount"]}

        async def handler(data, ctx):
            await ctx.emit("amount", {"cents": "many"})
    """,
    "src/sink.step.py": """
        config = {
            "name": "sink",
            "subscribes": ["amount"],
            "input": {"type": "object", "properties": {"cents": {"type": "integer"}}},
            "emits": [],
        }

        async def handler(data, ctx):
            pass
    """,
}


async def test_a_refused_emit_fails_in_one_line_naming_the_file(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    write(tmp_path, BAD)
    (tmp_path / "wistro.yml").write_text("runtimes:\n  python:\n    mode: process\n")
    app = load(tmp_path, apps)
    assert app.step("start").runtime is None
    run = await app.emit("go", {})
    [span] = [s for s in run.span_records if s.step == "start"]
    assert span.status == "error"
    assert span.error is not None and "\n" not in span.error
    assert "src/start.step.py:4" in span.error and "PayloadError" in span.error, span.error
    assert "field 'cents'" in span.error
    assert not run.ran("sink")
    assert process_runtime(app).pids  # the project's default: in a worker


MANY = {
    "src/fan.step.py": """
        import asyncio
        import os

        config = {"name": "fan", "subscribes": ["go"], "emits": ["after"], "runtime": "process"}

        async def handler(data, ctx):
            await asyncio.sleep(0.02)
            await ctx.emit("after", {"pid": os.getpid(), "n": data["n"]})
    """,
}


async def test_many_concurrent_deliveries(tmp_path: Path, apps: list[wistro.App]) -> None:
    app = load(write(tmp_path, MANY), apps)
    runs = [await app.emit("go", {"n": i}, wait=False) for i in range(200)]
    await app.drain()
    assert all(r.status == "ok" for r in runs), [r.errors for r in runs if r.status != "ok"]
    assert sorted(p["n"] for r in runs for p in r.payloads("after")) == list(range(200))
    rt = process_runtime(app)
    assert len(rt.pids) == 1 and rt.restarts == 0


CPU = {
    "src/crunch.step.py": """
        import os
        import time

        config = {"name": "crunch", "subscribes": ["crunch"], "emits": [], "runtime": "process"}

        def handler(data, ctx):
            start = time.thread_time()
            n, x = 0, 0
            while time.thread_time() - start < data["cpu_s"]:
                for i in range(2000):
                    x += i * i
                n += 1
            cpu = time.thread_time() - start
            ctx.state.set("cpu", data["k"], {"cpu": cpu, "pid": os.getpid()})
    """,
    "src/ping.step.py": """
        config = {"name": "ping", "subscribes": ["ping"], "emits": []}

        async def handler(data, ctx):
            pass
    """,
}


async def _crunch_round(app: wistro.App, n: int) -> tuple[float, float, float, set[int]]:
    """Four CPU-bound deliveries at once, and an in-process one meanwhile: (wall time, the
    handlers' CPU time, the in-process run's time, the worker pids)."""
    start = time.monotonic()
    runs = [
        await app.emit("crunch", {"k": f"r{n}.{i}", "cpu_s": 0.3}, wait=False) for i in range(4)
    ]
    await asyncio.sleep(0.1)
    ping_start = time.monotonic()
    ping = await app.emit("ping", {})  # in-process, while the workers compute
    ping_s = time.monotonic() - ping_start
    await app.drain()
    wall = time.monotonic() - start
    assert ping.status == "ok" and all(r.status == "ok" for r in runs)
    done = [await app.state.get("cpu", f"r{n}.{i}") for i in range(4)]
    return wall, sum(d["cpu"] for d in done), ping_s, {d["pid"] for d in done}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
async def test_a_cpu_bound_step_runs_on_two_cores(tmp_path: Path, apps: list[wistro.App]) -> None:
    """Wall time under the CPU time the handlers used is impossible on one core (there it is
    1x or more). On a machine other work is loading, a round can miss it: a few rounds, one
    must show it, under 0.9x (0.5x on two idle cores; rounds of 0.81-0.88x were seen on a
    loaded CI machine, which two plain processes at once did not show as loaded)."""
    write(tmp_path, CPU)
    (tmp_path / "wistro.yml").write_text("runtimes:\n  python:\n    workers: 2\n")
    app = load(tmp_path, apps)
    warm = await app.emit("crunch", {"k": "warm", "cpu_s": 0.01})  # both workers started
    assert warm.status == "ok", warm.errors
    await asyncio.sleep(0.3)
    assert len(process_runtime(app).workers) == 2
    seen = []
    for n in range(5):
        wall, cpu, ping_s, pids = await _crunch_round(app, n)
        seen.append((round(wall, 3), round(cpu, 3)))
        print(f"round {n}: wall {wall:.3f}s, CPU {cpu:.3f}s, in-process run {ping_s * 1e3:.1f}ms")
        assert cpu >= 1.15 and len(pids) == 2  # both workers computed
        assert ping_s < 0.25, ping_s  # the engine's loop was never blocked
        if wall < 0.9 * cpu:  # two cores at once
            break
    else:
        probe = _two_plain_processes()
        if probe > 0.9:  # the machine itself ran nothing on two cores at once meanwhile
            pytest.skip(f"the machine is loaded: two plain processes ran at {probe:.2f}x wall/CPU")
        pytest.fail(f"never on two cores at once: (wall, cpu) of each round {seen}")


def _two_plain_processes(cpu_s: float = 0.3) -> float:
    """Wall time / CPU time of two plain Python processes spinning ``cpu_s`` each (about 0.5
    on two idle cores, 1 or more on a machine other work keeps busy)."""
    code = (
        f"import time\ns = time.thread_time()\nwhile time.thread_time() - s < {cpu_s}:\n    pass\n"
    )
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    for proc in procs:
        proc.wait(30)
    return (time.monotonic() - start) / (2 * cpu_s)


API = {
    "src/create.step.py": """
        import os

        from pydantic import BaseModel

        class Body(BaseModel):
            name: str

        config = {
            "type": "api",
            "name": "create",
            "path": "/items/{id}",
            "method": "POST",
            "body": Body,
            "emits": [],
            "runtime": "process",
        }

        async def handler(req, ctx):
            assert isinstance(req.body, Body), type(req.body)
            return {
                "status": 201,
                "body": {"id": req.path_params["id"], "name": req.body.name, "pid": os.getpid()},
            }
    """,
}


async def test_an_api_step_in_a_process(tmp_path: Path, apps: list[wistro.App]) -> None:
    import httpx

    from wistro.triggers.http import serve_http

    app = load(write(tmp_path, API), apps)
    bound: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_http(app, "127.0.0.1", 0, bound))
    server = await asyncio.wait_for(bound, 10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            got = await client.post("/items/7", json={"name": "lamp"})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert got.status_code == 201, got.text
    body = got.json()
    assert body["id"] == "7" and body["name"] == "lamp" and body["pid"] != os.getpid()


async def test_started_from_the_lock(tmp_path: Path, apps: list[wistro.App]) -> None:
    """The lock keeps ``runtime: process``; started from it, the step runs in a worker (and
    its pydantic input still arrives as a model there)."""
    from wistro.project.lock import build_lock, write_lock

    app = load(write(tmp_path, CHAIN), apps)
    write_lock(app.project.lock_path, build_lock(app.project, app.registry))
    locked = wistro.App.from_lock(tmp_path, state="memory", traces="memory")
    apps.append(locked)
    assert locked.step("score").runtime == "process" and locked.step("place").runtime is None
    run = await locked.emit("order.placed", {"id": "L1"})
    assert run.status == "ok", run.errors
    [synced] = run.payloads("order.synced")
    assert synced["score"] == 7 and synced["pid"] != os.getpid()
    assert process_runtime(locked).pids == [synced["pid"]]


STUCK = {
    "src/stuck.step.py": """
        import os

        config = {
            "name": "stuck",
            "subscribes": ["go"],
            "emits": ["after"],
            "timeout_s": 1.0,
            "runtime": "process",
        }

        def handler(data, ctx):
            while data["spin"]:
                pass
            ctx.emit("after", {"pid": os.getpid()})
    """,
}


async def test_a_stuck_handler_gets_its_worker_replaced(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    write(tmp_path, STUCK)
    (tmp_path / "wistro.yml").write_text("runtimes:\n  python:\n    kill_grace_s: 0.2\n")
    app = load(tmp_path, apps)
    first = await app.emit("go", {"spin": False})
    assert first.status == "ok", first.errors
    stuck = await app.emit("go", {"spin": True})
    [span] = [s for s in stuck.span_records if s.step == "stuck"]
    assert span.status == "timeout"
    rt = process_runtime(app)
    for _ in range(100):  # killed after the grace, replaced at once
        if rt.restarts and len(rt.pids) == 2:
            break
        await asyncio.sleep(0.05)
    again = await app.emit("go", {"spin": False})
    assert again.status == "ok", again.errors
    [after] = again.payloads("after")
    assert after["pid"] == rt.pids[-1] != first.payloads("after")[0]["pid"]

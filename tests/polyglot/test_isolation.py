"""Isolation of language workers (issue #14), with a real ``node`` and a real ``go``: a stuck
handler gets its worker killed and replaced, deliveries not at fault on a dead worker are sent
again without using up an attempt, a pool of workers keeps one stuck step from stalling the
rest, and no worker outlives its engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import wistro
import wistro.app
from tests.projects import load_app as load
from tests.projects import write_project as write
from wistro.runtimes.base import LanguageRuntime
from wistro.runtimes.node import NodeRuntime
from wistro.runtimes.python import PythonRuntime

NODE = shutil.which("node")
GO = shutil.which("go")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


def _runtimes() -> list[LanguageRuntime]:
    return [PythonRuntime(), NodeRuntime()]


@pytest.fixture(autouse=True)
def _node_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wistro.app, "default_runtimes", _runtimes)


def node_of(app: wistro.App) -> NodeRuntime:
    return next(r for r in app.runtimes if isinstance(r, NodeRuntime))


def line_of(path: Path, marker: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


WORK = """
    export const config = { name: "work", subscribes: ["work"], emits: [] };

    export async function handler(input, ctx) {
      await new Promise((r) => setTimeout(r, input.ms));
      return null;
    }
"""

STUCK = {
    "busy": "while (true) {} // never yields: the worker's event loop is stuck",
    "hung": "await new Promise(() => {}); // never settles",
}


def stuck_step(kind: str, timeout_s: float) -> str:
    return f"""
        export const config = {{
          name: "stuck", subscribes: ["stuck"], emits: [], timeout_s: {timeout_s}, retries: 0,
        }};

        export async function handler(input, ctx) {{
          {STUCK[kind]}
        }}
    """


MANY = "engine: {default_concurrency: 1000}\n"  # every delivery of a step in flight at once


def project(root: Path, yml: str, files: dict[str, str]) -> Path:
    return write(root, {"wistro.yml": yml, "src/work.step.js": WORK, **files})


def work_spans(run: Any) -> list[tuple[int, str]]:
    return [(s.attempt, s.status) for s in run.span_records if s.step == "work"]


async def sent(rt: NodeRuntime, n: int) -> None:
    """Until the workers hold ``n`` requests (emits start their deliveries soon after)."""
    async with asyncio.timeout(5):
        while sum(w.in_flight for w in rt.workers) < n:
            await asyncio.sleep(0.001)


async def wait_all(runs: list[Any], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        for run in runs:
            await run.wait()


# ---------------------------------------------------------------- a stuck handler
@pytest.mark.parametrize("kind", ["busy", "hung"])
async def test_a_stuck_handler_gets_its_worker_killed_and_replaced(
    kind: str, tmp_path: Path, apps: list[wistro.App]
) -> None:
    yml = "name: iso\n" + MANY + "runtimes: {node: {kill_grace_s: 0.3}}\n"
    app = load(project(tmp_path, yml, {"src/stuck.step.js": stuck_step(kind, 0.4)}), apps)
    rt = node_of(app)
    await app.emit("work", {"ms": 1})  # the worker is up
    before = [await app.emit("work", {"ms": 300}, wait=False) for _ in range(20)]
    t0 = time.monotonic()
    stuck = await app.emit("stuck", {})
    after = [await app.emit("work", {"ms": 1}, wait=False) for _ in range(20)]
    await wait_all(before + after, 10)

    [span] = stuck.span_records
    assert span.status == "timeout" and "timed out after 0.4s" in (span.error or "")
    # killed at timeout + grace, replaced: the neighbours in flight then and sent since all
    # succeeded, each in its first attempt (sent again to the new worker, not retried)
    for run in before + after:
        assert run.status == "ok", run.errors
        assert work_spans(run) == [(1, "ok")]
    assert time.monotonic() - t0 < 5
    for _ in range(50):
        if len(rt.pids) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(rt.pids) == 2 and rt.restarts == 1
    assert not os.path.exists(f"/proc/{rt.pids[0]}") or _zombie(rt.pids[0])
    if kind == "busy":
        assert rt.redeliveries >= 20  # the 20 slow ones at least were on the stuck worker
    ok = await app.emit("work", {"ms": 1})
    assert work_spans(ok) == [(1, "ok")] and len(rt.pids) == 2


async def test_a_handler_that_ends_when_cancelled_keeps_its_worker(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    polite = """
        export const config = { name: "polite", subscribes: ["polite"], emits: [], timeout_s: 0.2 };

        export async function handler(input, ctx) {
          await new Promise((r) => ctx.signal.addEventListener("abort", r)); // ends on cancel
        }
    """
    yml = "name: iso\nruntimes: {node: {kill_grace_s: 0.5}}\n"
    app = load(project(tmp_path, yml, {"src/polite.step.js": polite}), apps)
    await app.emit("work", {"ms": 1})
    run = await app.emit("polite", {})
    assert [s.status for s in run.span_records] == ["timeout"]
    await asyncio.sleep(0.8)  # past the grace: the late answer came, no kill
    assert len(node_of(app).pids) == 1 and node_of(app).worker is not None
    assert node_of(app).worker.alive  # type: ignore[union-attr]


# ---------------------------------------------------------------- process.exit in a handler
CRASH = """
    export const config = { name: "crash", subscribes: ["crash"], emits: [], retries: 0 };

    export async function handler(input, ctx) {
      ctx.logger.warn("about to exit", { why: "testing" });
      process.exit(1); // EXIT HERE
    }
"""


async def test_process_exit_fails_its_delivery_and_the_innocent_ones_are_redelivered(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    root = project(tmp_path, "name: iso\n" + MANY, {"src/crash.step.js": CRASH})
    app = load(root, apps)
    rt = node_of(app)
    await app.emit("work", {"ms": 1})
    innocent = [await app.emit("work", {"ms": 300}, wait=False) for _ in range(30)]
    await asyncio.sleep(0.05)  # they are on the worker
    crash = await app.emit("crash", {})
    await wait_all(innocent, 10)

    [span] = crash.span_records
    assert span.status == "error" and span.attempt == 1
    line = line_of(root / "src/crash.step.js", "EXIT HERE")
    error = span.error or ""
    assert "\n" not in error
    assert f"src/crash.step.js:{line}, step 'crash'" in error, error
    assert "WorkerCrashed: process.exit(1) called in the handler" in error
    assert [d.step for d in crash.dead_letters] == ["crash"]
    # the line it logged just before exiting is in its trace
    logs = [(log.level, log.message, log.fields_json) for log in crash.log_records]
    assert ("warning", "about to exit", '{"why":"testing"}') in logs
    for run in innocent:
        assert run.status == "ok", run.errors
        assert work_spans(run) == [(1, "ok")]
    assert rt.restarts == 1 and rt.redeliveries >= 30


# ---------------------------------------------------------------- a pool of workers
async def pool_with_a_busy_step(
    tmp_path: Path, apps: list[wistro.App]
) -> tuple[wistro.App, NodeRuntime]:
    """A pool of two node workers, both started, and a step that never yields (timeout 5 s)."""
    yml = "name: iso\nruntimes: {node: {workers: 2, kill_grace_s: 5}}\n"
    app = load(project(tmp_path, yml, {"src/stuck.step.js": stuck_step("busy", 5)}), apps)
    rt = node_of(app)
    await app.emit("work", {"ms": 1})
    for _ in range(100):
        if len(rt.workers) == 2 and all(w.alive for w in rt.workers):
            break
        await asyncio.sleep(0.02)
    return app, rt


async def test_with_two_workers_a_stuck_step_does_not_stall_the_others(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    app, rt = await pool_with_a_busy_step(tmp_path, apps)
    assert len(rt.pids) == 2
    stuck = await app.emit("stuck", {}, wait=False)
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    runs = [await app.emit("work", {"ms": 5}, wait=False) for _ in range(100)]
    await wait_all(runs, 3)  # long before the stuck one's timeout (5 s) and kill (10 s)
    assert time.monotonic() - t0 < 3
    assert all(r.status == "ok" and work_spans(r) == [(1, "ok")] for r in runs)
    assert stuck.status == "running"
    assert len(rt.pids) == 2 and rt.redeliveries == 0
    [held] = [w for w in rt.workers if w.in_flight]
    os.kill(held.pid or 0, signal.SIGKILL)  # alone on its worker: its own failure, no redelivery
    await wait_all([stuck], 5)
    error = stuck.span_records[0].error or ""
    assert "WorkerCrashed" in error and "(killed by SIGKILL)" in error, error
    assert rt.redeliveries == 0


async def test_a_healthy_worker_silent_for_a_moment_is_still_preferred_to_a_stuck_one(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    """A busy machine can keep a healthy worker from answering for a moment: then both workers
    look quiet. The invokes go to the one heard from last, not to the stuck one because it
    holds fewer requests (they would wait there for its timeout and kill)."""
    app, rt = await pool_with_a_busy_step(tmp_path, apps)
    stuck = await app.emit("stuck", {}, wait=False)
    await asyncio.sleep(0.3)  # the stuck worker has been silent for 0.3 s
    [healthy] = [w for w in rt.workers if not w.in_flight]
    first = [await app.emit("work", {"ms": 300}, wait=False) for _ in range(5)]
    await sent(rt, 1 + 5)
    assert healthy.in_flight == 5
    os.kill(healthy.pid or 0, signal.SIGSTOP)  # silent too, holding 5 requests
    try:
        await asyncio.sleep(0.15)
        later = [await app.emit("work", {"ms": 5}, wait=False) for _ in range(10)]
        await sent(rt, 1 + 5 + 10)  # the step's concurrency (16) holds them all
        assert healthy.in_flight == 15  # none went to the stuck worker
    finally:
        os.kill(healthy.pid or 0, signal.SIGCONT)
    await wait_all(first + later, 3)  # long before the stuck one's timeout (5 s) and kill
    assert all(r.status == "ok" and work_spans(r) == [(1, "ok")] for r in first + later)
    assert stuck.status == "running" and rt.redeliveries == 0
    [held] = [w for w in rt.workers if w.in_flight]
    os.kill(held.pid or 0, signal.SIGKILL)  # rather than wait for its timeout
    await wait_all([stuck], 5)


async def test_hundreds_of_deliveries_across_two_workers_while_one_is_killed(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    yml = "name: iso\n" + MANY + "runtimes: {node: {workers: 2}}\n"
    app = load(project(tmp_path, yml, {}), apps)
    rt = node_of(app)
    await app.emit("work", {"ms": 1})
    for _ in range(100):
        if len(rt.workers) == 2 and all(w.alive for w in rt.workers):
            break
        await asyncio.sleep(0.02)
    runs = [await app.emit("work", {"ms": 100 + i % 200}, wait=False) for i in range(300)]
    await asyncio.sleep(0.05)
    victim = rt.workers[0]
    assert victim.in_flight > 1
    os.kill(victim.pid or 0, signal.SIGKILL)  # nothing to blame: each in flight goes again once
    await wait_all(runs, 20)
    assert [r.status for r in runs] == ["ok"] * 300
    assert all(work_spans(r) == [(1, "ok")] for r in runs)
    assert rt.redeliveries > 0 and rt.restarts == 1


RELAY = """
    export const config = { name: "relay", subscribes: ["relay"], emits: ["work"] };

    export async function handler(input, ctx) {
      await new Promise((r) => setTimeout(r, input.ms));
      await ctx.emit("work", { ms: 1 });
      return null;
    }
"""


async def test_workers_stopped_and_killed_at_random_leave_no_run_unfinished(
    tmp_path: Path, apps: list[wistro.App]
) -> None:
    """A busy machine stops workers for a moment (SIGSTOP), an operator or the OOM killer kills
    one: whatever comes when, every run ends (ok, or a one-line error naming the step and the
    signal) and none waits forever for an answer that will never come."""
    yml = "name: iso\n" + MANY + "runtimes: {node: {workers: 2, kill_grace_s: 0.3}}\n"
    app = load(project(tmp_path, yml, {"src/relay.step.js": RELAY}), apps)
    rt = node_of(app)
    await app.emit("work", {"ms": 1})
    rng = random.Random(7)
    runs = []
    for _ in range(2):
        batch = [
            await app.emit("relay", {"ms": rng.randint(50, 600)}, wait=False) for _ in range(200)
        ]
        runs += batch
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            live = [w for w in rt.workers if w.alive and w.pid]
            if live:
                pid = rng.choice(live).pid or 0
                with contextlib.suppress(ProcessLookupError):
                    if rng.random() < 0.2:
                        os.kill(pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGSTOP)
                        try:
                            await asyncio.sleep(rng.uniform(0.01, 0.1))
                        finally:
                            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(rng.uniform(0, 0.03))
        await wait_all(batch, 20)
    assert {r.status for r in runs} <= {"ok", "error"} and "ok" in {r.status for r in runs}
    errors = [s.error or "" for r in runs for s in r.span_records if s.status != "ok"]
    assert all("WorkerCrashed" in e and "(killed by SIGKILL)" in e for e in errors), errors
    assert rt.restarts >= 1 and rt.redeliveries > 0  # kills came with requests in flight


# ---------------------------------------------------------------- workers die with the engine
ENGINE = """
import asyncio, json, sys
import wistro

async def main():
    app = wistro.load(sys.argv[1], traces="memory", state="memory")
    assert app.errors == [], app.errors
    await app.emit("work", {"ms": 1})
    await app.emit("gowork", {})
    await app.emit("spin", {}, wait=False)
    await app.emit("gospin", {}, wait=False)
    await asyncio.sleep(0.5)
    pids = [p for rt in app.runtimes for p in getattr(rt, "pids", [])]
    print(json.dumps(pids), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""

GO_STEPS = """
package steps

import (
	"encoding/json"

	"wistro.dev/sdk/wistro"
)

var _ = wistro.Register(wistro.StepConfig{Name: "gowork", Subscribes: []string{"gowork"}},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) { return nil, nil })

var n int

var _ = wistro.Register(wistro.StepConfig{Name: "gospin", Subscribes: []string{"gospin"}},
	func(ctx *wistro.Context, input json.RawMessage) (any, error) {
		for {
			n++
		}
	})
"""

SPIN = """
    export const config = { name: "spin", subscribes: ["spin"], emits: [] };

    export async function handler() {
      while (true) {}
    }
"""


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or _zombie(pid)


@pytest.mark.skipif(GO is None, reason="needs go")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_engine_leaves_no_worker_behind(tmp_path: Path) -> None:
    root = write(
        tmp_path / "proj",
        {
            "wistro.yml": "name: orphans\nruntimes: {node: {workers: 2}}\n",
            "src/work.step.js": WORK,
            "src/spin.step.js": SPIN,
            "src/go/steps.step.go": GO_STEPS,
        },
    )
    script = tmp_path / "engine.py"
    script.write_text(ENGINE, encoding="utf-8")
    engine = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
        assert line, engine.stderr.read() if engine.stderr else ""
        import json

        pids = json.loads(line)
        assert len(pids) == 3, pids  # two node workers (one spinning), a go worker (spinning)
        assert all(not _gone(p) for p in pids)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.02)
    left = [p for p in pids if not _gone(p)]
    for p in left:  # do not leave them to the next tests
        os.kill(p, signal.SIGKILL)
    assert left == []

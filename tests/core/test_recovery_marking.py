"""After a crash, ``mark_interrupted`` marks the runs nothing will finish, and never one that this
process has finished meanwhile but whose end is still in its recorder (not yet in the store)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

from tests.projects import step
from wistro.core.recovery import mark_interrupted
from wistro.tracing.records import RunRecord


def dead_worker() -> str:
    """A worker name of this machine whose process is gone."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return f"{socket.gethostname()}:{proc.stdout.strip()}"


async def test_a_run_ended_here_but_not_yet_written_is_not_marked(make_app) -> None:
    app = make_app({"src/a.step.py": step("A", ["go"])})
    engine = app.engine
    store = engine.store
    assert store is not None
    worker = dead_worker()
    now = time.time()
    left, finished = "a" * 32, "b" * 32
    # two runs a crashed process left `running` in the store
    for trace_id in (left, finished):
        engine.recorder.run_ended(RunRecord(trace_id, "api", "go", "running", now, worker=worker))
    await engine.recorder.flush()
    assert {r["trace_id"] for r in store.list_runs(10, "running")} == {left, finished}
    # this process has since finished one of them: its end is recorded, not written yet
    engine.recorder.run_ended(RunRecord(finished, "api", "go", "ok", now, now + 0.01, 1, 0, worker))
    marked = await mark_interrupted(engine)
    assert marked == [left]  # the one nothing will finish, and only that one
    await engine.recorder.flush()
    await asyncio.sleep(0)
    statuses = {r["trace_id"]: r["status"] for r in store.list_runs(10)}
    assert statuses == {left: "interrupted", finished: "ok"}

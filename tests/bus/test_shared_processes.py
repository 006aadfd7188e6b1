"""Several processes on one shared bus, played by several apps of one project in this process,
each with its own bus instance on the same journal (as ``wistro start`` and ``wistro worker``
processes would be): a cron tick fires once across them; activate/deactivate reach them live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

import wistro
from wistro.triggers.cron import CronScheduler, ManualClock

TICK = """
config = {"type": "cron", "name": "Tick", "cron": "*/5 * * * *", "emits": ["ticked"]}

async def handler(ctx):
    await ctx.emit("ticked", {})
"""
COUNT = """
config = {"name": "Count", "subscribes": ["ticked"]}

async def handler(data, ctx):
    await ctx.state.update("ticks", "n", lambda n: (n or 0) + 1)
"""


@pytest.fixture(params=["local", "redis"])
def bus_kind(request: pytest.FixtureRequest) -> str:
    """The shared bus of the project: the local journal, or the session's Redis (a prefix of
    the test's own)."""
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        request.node.wistro_yml = f"redis: {{url: '{url}', prefix: '{prefix}'}}\n"
    else:
        request.node.wistro_yml = ""
    return str(request.param)


def _apps(
    make_app: Callable[..., wistro.App],
    files: dict[str, str],
    n: int,
    bus: str,
    request: pytest.FixtureRequest,
    **kw: Any,
) -> list[wistro.App]:
    """``n`` apps of one project (one folder), each with its own bus instance on the project's
    shared bus (as ``n`` processes would be), and one file state."""
    files = {**files, "wistro.yml": "name: shared\n" + request.node.wistro_yml}
    first = make_app(files, folder="proj", bus=bus, state="file", **kw)
    return [first] + [
        wistro.load(first.project.root, bus=bus, state="file", **kw) for _ in range(n - 1)
    ]


async def test_a_cron_tick_fires_once_across_processes(
    make_app: Callable[..., wistro.App], bus_kind: str, request: pytest.FixtureRequest
) -> None:
    files = {"src/tick.step.py": TICK, "src/count.step.py": COUNT}
    apps = _apps(make_app, files, 3, bus_kind, request)
    clock = ManualClock(datetime(2026, 1, 10, 1, 0, tzinfo=UTC))
    scheds = [CronScheduler(app, clock) for app in apps]
    try:
        for sched in scheds:
            await sched.start()
        async with asyncio.timeout(60):
            for tick in range(1, 7):  # 01:05 ... 01:30: each tick seen by all 3 schedulers
                await clock.run_until(datetime(2026, 1, 10, 1, 5 * tick, tzinfo=UTC))
                while (
                    sum(s.stats["Tick"].fired + s.stats["Tick"].fired_elsewhere for s in scheds)
                    < 3 * tick
                ):
                    await asyncio.sleep(0.005)
                for sched in scheds:
                    await sched.wait_idle()
            while (await apps[0].engine.state.get("ticks", "n")) != "6":
                await asyncio.sleep(0.02)
        assert sum(s.stats["Tick"].fired for s in scheds) == 6
        assert sum(s.stats["Tick"].fired_elsewhere for s in scheds) == 12
    finally:
        for sched in scheds:
            await sched.stop()
        for app in apps[1:]:
            await app.aclose()


SPLIT = """
config = {"name": "Split", "subscribes": ["job"], "emits": ["part"]}

async def handler(data, ctx):
    await ctx.emit("part", data)
"""
RECORD = """
config = {"name": "Record", "subscribes": ["part"]}

async def handler(data, ctx):
    await ctx.state.set("done", str(data["n"]), ctx.delivery_id)
"""


async def test_deactivate_reaches_every_process_live(
    make_app: Callable[..., wistro.App], bus_kind: str, request: pytest.FixtureRequest
) -> None:
    files = {"src/split.step.py": SPLIT, "src/record.step.py": RECORD}
    origin, worker = _apps(make_app, files, 2, bus_kind, request)
    origin.engine.start()
    worker.engine.start()
    try:
        async with asyncio.timeout(30):
            origin.deactivate("Record")  # as `wistro deactivate` would tell a running worker
            while worker.registry.steps["Record"].active:
                await asyncio.sleep(0.01)
            runs = await asyncio.gather(*(origin.emit("job", {"n": i}) for i in range(20)))
            assert {r.status for r in runs} == {"ok"}
            assert await origin.engine.state.get_group("done") == {}  # Record got nothing
            origin.activate("Record")
            while not worker.registry.steps["Record"].active:
                await asyncio.sleep(0.01)
            runs = await asyncio.gather(*(origin.emit("job", {"n": i}) for i in range(20)))
        assert {r.status for r in runs} == {"ok"}
        done = await origin.engine.state.get_group("done")
        assert sorted(map(int, done)) == list(range(20))
        assert all(v.strip('"').endswith("/Record") for v in done.values())  # ctx.delivery_id
    finally:
        await worker.aclose()


async def test_an_emit_returns_the_whole_run_when_workers_ran_it(
    make_app: Callable[..., wistro.App], bus_kind: str, request: pytest.FixtureRequest
) -> None:
    """The origin only publishes (a notebook or `wistro emit` attached to the project's bus);
    a worker runs every step: `await app.emit(...)` returns once the run ended there, with the
    spans, events and logs the worker recorded, read back from the shared trace store."""
    files = {
        "src/split.step.py": SPLIT,
        "src/record.step.py": RECORD,
        "wistro.yml": "name: shared\n" + request.node.wistro_yml,
    }
    worker = make_app(files, folder="proj", bus=bus_kind, state="file", traces=None)
    origin = wistro.load(worker.project.root, bus=bus_kind, state="file", consume=False)
    worker.engine.start()
    try:
        async with asyncio.timeout(30):
            runs = await asyncio.gather(*(origin.emit("job", {"n": i}) for i in range(50)))
        for run in runs:
            assert run.status == "ok"
            assert [s.step for s in run.span_records] == ["Split", "Record"]
            assert len(run.event_records) == run.record.n_events == 2
        assert list(runs[0].spans["step"]) == ["Split", "Record"]  # the DataFrames too
    finally:
        await origin.aclose()

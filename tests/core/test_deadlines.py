"""Handler time limits, kept for the whole engine by one timer (``wistro.core.deadlines``): many
at once, limits shorter than the ones already running, a worker going on after a time-out, and a
cancel from outside that must not be taken for a time-out."""

from __future__ import annotations

import asyncio
import time

import pytest
from projects import step

from wistro.core.deadlines import Deadlines


async def test_hundreds_of_concurrent_handlers_time_out_exactly_the_slow_ones(make_app) -> None:
    files = {
        "src/work.step.py": step(
            "Work",
            ["t"],
            header="import asyncio",
            extra="'timeout_s': 0.2, 'concurrency': 1000",
            body="await asyncio.sleep(5 if data['n'] % 3 == 0 else 0.01)",
        )
    }
    app = make_app(files)
    started = time.monotonic()
    runs = await asyncio.gather(*(app.emit("t", {"n": n}) for n in range(600)))
    took = time.monotonic() - started
    slow = [r for n, r in enumerate(runs) if n % 3 == 0]
    fast = [r for n, r in enumerate(runs) if n % 3]
    assert {r.status for r in fast} == {"ok"}
    assert {r.status for r in slow} == {"error"}
    for run in slow:
        [status] = run.spans["status"]
        assert status == "timeout"
        assert "timed out after 0.2s" in run.spans.iloc[0]["error"]
        [dead] = run.dead_letters
        assert dead.step == "Work"
    assert took < 4  # every slow one was cut at its limit, none slept its 5 s
    assert len(app.engine.deadlines) == 0  # nothing left behind


async def test_a_short_limit_started_after_long_ones_still_ends_on_time(make_app) -> None:
    files = {
        "src/long.step.py": step(
            "Long",
            ["long"],
            header="import asyncio",
            extra="'timeout_s': 30, 'concurrency': 100",
            body="await asyncio.sleep(data['s'])",
        ),
        "src/short.step.py": step(
            "Short",
            ["short"],
            header="import asyncio",
            extra="'timeout_s': 0.1",
            body="await asyncio.sleep(10)",
        ),
    }
    app = make_app(files)
    longs = [asyncio.ensure_future(app.emit("long", {"s": 1.0})) for _ in range(50)]
    await asyncio.sleep(0.05)  # the long limits are armed first
    started = time.monotonic()
    short = await app.emit("short", {})
    assert time.monotonic() - started < 0.9  # not held until a long limit's timer
    assert list(short.spans["status"]) == ["timeout"]
    assert {r.status for r in await asyncio.gather(*longs)} == {"ok"}


async def test_a_worker_goes_on_with_its_next_deliveries_after_a_time_out(make_app) -> None:
    files = {
        "src/one.step.py": step(
            "One",
            ["t"],
            header="import asyncio",
            extra="'timeout_s': 0.05, 'concurrency': 1",
            body="""
                if data['slow']:
                    await asyncio.sleep(10)
                await asyncio.sleep(0.001)
            """,
        )
    }
    app = make_app(files)
    runs = await asyncio.gather(*(app.emit("t", {"slow": n % 10 == 0}) for n in range(100)))
    statuses = [r.spans.iloc[0]["status"] for r in runs]
    assert statuses == ["timeout" if n % 10 == 0 else "ok" for n in range(100)]
    for task in app.engine.bus._lanes._tasks:  # the withdrawn cancels left no request behind
        assert task.cancelling() == 0


async def test_a_handler_that_swallows_the_cancel_is_still_failed_as_timed_out(make_app) -> None:
    files = {
        "src/stubborn.step.py": step(
            "Stubborn",
            ["t"],
            header="import asyncio",
            extra="'timeout_s': 0.05",
            body="""
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    await asyncio.sleep(0.1)  # goes on past its limit
            """,
        )
    }
    app = make_app(files)
    run = await app.emit("t", {})
    [span] = run.spans.to_dict("records")
    assert span["status"] == "timeout" and "timed out after 0.05s" in span["error"]
    again = await app.emit("t", {})  # the worker is not left with a cancel request
    assert list(again.spans["status"]) == ["timeout"]


async def test_a_cancel_from_outside_is_not_taken_for_a_time_out() -> None:
    deadlines = Deadlines()
    outcome: list[str] = []

    async def handler() -> None:
        task = asyncio.current_task()
        assert task is not None
        deadline = deadlines.start(task, 0.02)
        time.sleep(0.05)  # past its limit without yielding: the limit's timer is due
        # The engine stopping asks to cancel the task in the same loop turn as the limit does.
        asyncio.get_running_loop().call_soon(task.cancel)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            outcome.append("time-out" if deadlines.end(deadline) else "cancelled")
            raise

    task = asyncio.ensure_future(handler())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]  # the cancel from outside goes on up


async def test_limits_on_a_new_event_loop_start_afresh() -> None:
    deadlines = Deadlines()

    async def timed_out_on_this_loop() -> bool:
        task = asyncio.current_task()
        assert task is not None
        deadline = deadlines.start(task, 0.02)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return deadlines.end(deadline)
        return False

    assert await timed_out_on_this_loop()
    other = await asyncio.to_thread(asyncio.run, timed_out_on_this_loop())
    assert other and len(deadlines) == 0


class _Late(Exception):
    pass


async def test_within_times_out_hundreds_at_once_and_says_when_a_result_came_in_late() -> None:
    """``Deadlines.within``, how the HTTP body reads run under their limit (the engine's
    ``invoke`` inlines the same steps): the slow ones raise the caller's error, the rest return,
    and one that caught the limit's cancel and went on comes back marked late."""
    deadlines = Deadlines()

    async def work(n: int) -> int:
        await asyncio.sleep(5 if n % 4 == 0 else 0.01)
        return n

    async def one(n: int) -> str:
        try:
            value, late = await deadlines.within(work(n), 0.2, _Late)
        except _Late:
            return "timed out"
        return f"{value} late" if late else f"{value}"

    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "went on"
        return "slept"

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(n) for n in range(400)))
    assert time.monotonic() - started < 3  # one timer for all of them, nothing waits 5 s
    assert outcomes == ["timed out" if n % 4 == 0 else f"{n}" for n in range(400)]
    assert await deadlines.within(stubborn(), 0.02, _Late) == ("went on", True)
    assert len(deadlines) == 0  # nothing left behind

    async def cancelled_from_outside() -> None:
        await deadlines.within(asyncio.sleep(5), 1.0, _Late)

    task = asyncio.ensure_future(cancelled_from_outside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # not taken for a time-out
        await task
    assert len(deadlines) == 0

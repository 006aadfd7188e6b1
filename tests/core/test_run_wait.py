"""Waiting for a run: many waiters, and a cancelled waiter leaves the others waiting."""

from __future__ import annotations

import asyncio

from tests.projects import step


async def test_a_cancelled_waiter_leaves_the_other_waiters_of_the_run(make_app) -> None:
    app = make_app(
        {
            "src/slow.step.py": step(
                "Slow", ["go"], body="await asyncio.sleep(0.2)", header="import asyncio"
            )
        }
    )
    run = await app.emit("go", {}, wait=False)
    waiters = [asyncio.ensure_future(run.wait()) for _ in range(5)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()
    done = await asyncio.gather(*waiters[1:])
    assert all(r is run and r.status == "ok" for r in done)
    assert waiters[0].cancelled()
    assert (await run).status == "ok"  # and awaiting a finished run returns at once


async def test_hundreds_of_runs_awaited_at_once(make_app) -> None:
    app = make_app(
        {"src/a.step.py": step("A", ["go"], body="await asyncio.sleep(0)", header="import asyncio")}
    )
    runs = [await app.emit("go", {"i": i}, wait=False) for i in range(300)]
    finished = await asyncio.gather(*(r.wait() for r in runs), *(r.wait() for r in runs[::3]))
    assert {r.status for r in finished} == {"ok"}

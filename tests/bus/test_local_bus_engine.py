"""The engine on the local bus: runs end, across processes too; accepted work survives a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import wistro

CHAIN = {
    "src/a.step.py": """
config = {"name": "A", "subscribes": ["go"], "emits": ["b"]}
async def handler(data, ctx):
    await ctx.emit("b", {"n": data["n"]})
""",
    "src/b.step.py": """
config = {"name": "B", "subscribes": ["b"], "emits": ["c"]}
async def handler(data, ctx):
    await ctx.emit("c", {"n": data["n"]})
""",
    "src/c.step.py": """
config = {"name": "C", "subscribes": ["c"], "emits": []}
async def handler(data, ctx):
    await ctx.state.set("seen", str(data["n"]), data["n"])
""",
}


async def test_a_chain_on_the_local_bus_ends_every_run(
    make_app: Callable[..., wistro.App], tmp_path: Path
) -> None:
    app = make_app(CHAIN, bus="local")
    async with asyncio.timeout(60):
        runs = await asyncio.gather(*(app.emit("go", {"n": i}) for i in range(300)))
    assert {r.status for r in runs} == {"ok"}
    assert len(await app.engine.state.get_group("seen")) == 300
    assert runs[0].record.n_events == 3


async def test_a_run_opened_run_and_settled_in_one_commit_ends(
    make_app: Callable[..., wistro.App],
) -> None:
    """A call (cron, api) whose whole run fits in one group commit — open, publish, take, ack,
    release — changes the run's ledger by 0 in that commit; it must still end."""
    files = {
        **CHAIN,
        "src/tick.step.py": """
config = {"name": "Tick", "type": "cron", "cron": "* * * * *", "emits": ["c"]}
async def handler(ctx):
    await ctx.emit("c", {"n": 1})
""",
    }
    app = make_app(files, bus="local")
    step = app.registry.get("Tick")
    async with asyncio.timeout(60):
        runs = []
        for _ in range(50):
            _, run = await app.engine.call(step, None, trigger="cron", topic="cron Tick")
            runs.append(run)
        await asyncio.gather(*(r.wait() for r in runs))
    assert {r.status for r in runs} == {"ok"}

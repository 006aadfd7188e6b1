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

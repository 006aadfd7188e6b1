"""Projects on the redis bus: two environments of one project share one Redis and never see
each other's streams, state, traces or traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import wistro

STEP = """
config = {"name": "Record", "subscribes": ["job"]}

async def handler(data, ctx):
    await ctx.state.set("done", str(data["n"]), data["env"])
"""


async def test_two_environments_on_one_redis_do_not_meet(
    make_app: Callable[..., wistro.App],
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    yml = (
        f"name: {redis_prefix}\n"
        "bus: {adapter: redis}\n"
        "state: {adapter: redis}\n"
        'redis: {url: "${REDIS_URL}"}\n'
        "environments:\n  prod: {}\n"
    )
    dev = make_app(
        {"wistro.yml": yml, "src/record.step.py": STEP}, folder="p", state=None, traces=None
    )
    root: Path = dev.project.root
    prod = wistro.load(root, env="prod")
    try:
        assert dev.project.redis_prefix == f"wistro:{redis_prefix}:dev"
        assert prod.project.redis_prefix == f"wistro:{redis_prefix}:prod"
        async with asyncio.timeout(60):
            dev_runs, prod_runs = await asyncio.gather(
                asyncio.gather(*(dev.emit("job", {"n": i, "env": "dev"}) for i in range(30))),
                asyncio.gather(*(prod.emit("job", {"n": i, "env": "prod"}) for i in range(20))),
            )
        assert {r.status for r in [*dev_runs, *prod_runs]} == {"ok"}
        dev_done = await dev.engine.state.get_group("done")
        prod_done = await prod.engine.state.get_group("done")
        assert set(dev_done.values()) == {'"dev"'} and len(dev_done) == 30
        assert set(prod_done.values()) == {'"prod"'} and len(prod_done) == 20
        # traces: each environment lists its own runs only, once written (the background
        # writes come every 50 ms: a fast machine ran all 50 runs in less)
        await asyncio.gather(dev.drain(), prod.drain())
        assert set(dev.runs(limit=100)["trace_id"]) == {r.trace_id for r in dev_runs}
        assert set(prod.runs(limit=100)["trace_id"]) == {r.trace_id for r in prod_runs}
        # every key either environment wrote carries its prefix
        client = redis.Redis.from_url(redis_url)
        keys = [k.decode() for k in client.scan_iter(match=f"wistro:{redis_prefix}:*")]
        assert keys and all(
            k.startswith((dev.project.redis_prefix, prod.project.redis_prefix)) for k in keys
        )
        client.close()
    finally:
        await prod.aclose()

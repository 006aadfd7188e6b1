"""The Redis bus beyond the bus contract: a redis-server killed and restarted mid-run, prefixes
that never meet, an idle bus that leaves Redis alone, a thousand hosted steps, heartbeats that
keep a long handler, a full step that does not hold up the others, and the engine on it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as redis_sync
from redis_support import RedisServer

import wistro
from wistro.bus import BusHooks, Delivery, RunEnded, RunOpened
from wistro.bus.redis import RedisBus
from wistro.tracing.records import EventRecord


def delivery(step: str, n: int, trace_id: str = "t" * 32) -> Delivery:
    event = EventRecord(f"e{n}", trace_id, "topic.x", f'{{"n":{n}}}', "emit", None, 1.5)
    return Delivery(step, event)


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def calls(client: redis_sync.Redis) -> int:
    """Commands Redis has run so far, the INFO calls that count them excepted."""
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


async def test_a_restarted_redis_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """300 deliveries to S, each publishing one to T, in one run; redis-server (append-only
    file, fsync always) is killed and started again in the middle. Every delivery is handled at
    least once, the run ends exactly once, and the bus goes on as before."""
    server = RedisServer(tmp_path / "r", aof=True).start()
    trace = "r" * 32
    ended: list[RunEnded] = []
    finished: list[RunEnded] = []
    seen: dict[str, set[str]] = {"S": set(), "T": set()}
    bus = RedisBus(server.url, "restart", steps=["S", "T"], visibility_timeout_s=2.0)

    async def deliver(d: Delivery) -> None:
        await asyncio.sleep(0.01)
        seen[d.step].add(d.event.id)
        if d.step == "S":
            bus.publish(delivery("T", int(d.event.id[1:]) + 1000, trace))

    async def on_ended(runs: list[RunEnded]) -> None:
        ended.extend(runs)

    async def poisoned(d: Delivery, tries: int) -> None:
        raise AssertionError("nothing is poison here")

    try:
        with caplog.at_level(logging.WARNING, logger="wistro.bus"):
            bus.start(deliver, lambda step: 4, BusHooks(on_ended, finished.append, poisoned))
            bus.open_run(RunOpened(trace, "emit", "topic.x", time.time(), "me"), holds=1)
            for i in range(300):
                bus.publish(delivery("S", i, trace))
            async with asyncio.timeout(10):
                await bus.flush()
            await until(lambda: len(seen["T"]) >= 60)
            await asyncio.to_thread(server.restart)
            assert len(seen["T"]) < 250  # in the middle of it
            await until(lambda: len(seen["S"]) == 300 and len(seen["T"]) == 300, timeout=60)
            bus.release(trace)
            async with asyncio.timeout(30):
                await bus.flush()
            await until(lambda: bool(finished), timeout=30)
            # And it goes on: a new delivery flows at once.
            bus.publish(delivery("T", 5000))
            await until(lambda: "e5000" in seen["T"], timeout=10)
        assert seen["T"] == {f"e{i + 1000}" for i in range(300)} | {"e5000"}
        assert len(ended) == 1 and ended[0].trace_id == trace
        assert finished == ended
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings and all(server.url in r.getMessage() for r in warnings)
        assert len(warnings) <= 3  # one line per outage, not one per retry
    finally:
        async with asyncio.timeout(20):
            await bus.aclose()
        server.stop()


async def test_two_prefixes_never_meet(redis_server: RedisServer, redis_prefix: str) -> None:
    seen: dict[str, list[str]] = {"a": [], "b": []}
    buses = {
        name: RedisBus(redis_server.url, f"{redis_prefix}-{name}", steps=["S"])
        for name in ("a", "b")
    }
    try:
        for name, bus in buses.items():

            async def deliver(d: Delivery, name: str = name) -> None:
                seen[name].append(d.event.id)

            bus.start(deliver, lambda step: 4)
        for i in range(10):
            buses["a"].publish(delivery("S", i))
            buses["b"].publish(delivery("S", 100 + i))
        await until(lambda: len(seen["a"]) == 10 and len(seen["b"]) == 10)
        await asyncio.sleep(0.3)
        assert sorted(seen["a"]) == sorted(f"e{i}" for i in range(10))
        assert sorted(seen["b"]) == sorted(f"e{100 + i}" for i in range(10))
        client = redis_server.client()
        keys = {k.decode() for k in client.keys(f"{redis_prefix}-*")}
        assert keys and all(
            k.startswith((f"{redis_prefix}-a:", f"{redis_prefix}-b:")) for k in keys
        )
        client.close()
    finally:
        async with asyncio.timeout(20):
            for bus in buses.values():
                await bus.aclose()


async def test_an_idle_bus_leaves_redis_alone(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    client = server.client()
    bus = RedisBus(server.url, "idle", steps=["A", "B", "C"])

    async def ended(runs: list[RunEnded]) -> None:
        pass

    async def poisoned(d: Delivery, tries: int) -> None:
        pass

    try:
        bus.start(lambda d: asyncio.sleep(0), lambda step: 8, BusHooks(ended, print, poisoned))
        bus.publish(delivery("A", 1))
        await bus.flush()
        await asyncio.sleep(0.5)  # started: groups made, first reclaim pass done
        before = calls(client)
        await asyncio.sleep(2.0)
        made = calls(client) - before
        # A blocking read per second, the mover once a second, the ended-runs reader once in
        # five: a handful, not a poll loop.
        assert made <= 8, made
    finally:
        async with asyncio.timeout(20):
            await bus.aclose()
        client.close()
        server.stop()


async def test_a_thousand_hosted_steps_start_and_deliver_quickly(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    steps = [f"step{i}" for i in range(1000)]
    seen: list[str] = []

    async def deliver(d: Delivery) -> None:
        seen.append(d.step)

    bus = RedisBus(redis_server.url, redis_prefix, steps=steps)
    try:
        started = time.monotonic()
        bus.start(deliver, lambda step: 4)
        bus.publish(delivery("step999", 1))
        bus.publish(delivery("step0", 2))
        await until(lambda: len(seen) == 2, timeout=10)
        assert time.monotonic() - started < 3.0
        assert sorted(seen) == ["step0", "step999"]
    finally:
        async with asyncio.timeout(20):
            await bus.aclose()


async def test_a_long_handler_keeps_its_delivery(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    """A handler running for four visibility timeouts is not taken from its live worker."""
    ran: list[str] = []

    async def slow(d: Delivery) -> None:
        ran.append(f"slow:{d.event.id}")
        await asyncio.sleep(2.0)

    async def other(d: Delivery) -> None:
        ran.append(f"other:{d.event.id}")

    first = RedisBus(redis_server.url, redis_prefix, steps=["S"], visibility_timeout_s=0.5)
    second = RedisBus(redis_server.url, redis_prefix, steps=["S"], visibility_timeout_s=0.5)
    try:
        first.start(slow, lambda step: 1)
        first.publish(delivery("S", 1))
        await until(lambda: bool(ran))
        second.start(other, lambda step: 1)
        async with asyncio.timeout(10):
            await asyncio.sleep(2.5)
        assert ran == ["slow:e1"]
    finally:
        async with asyncio.timeout(20):
            await first.aclose()
            await second.aclose()


async def test_a_full_step_holds_up_no_other(redis_server: RedisServer, redis_prefix: str) -> None:
    """A (concurrency 1) runs 0.3 s handlers; B's deliveries still start at once, and A's next
    one starts as soon as A has room, not when the reader's wait in Redis ends."""
    times: dict[str, float] = {}

    async def deliver(d: Delivery) -> None:
        times[d.event.id] = time.monotonic()
        if d.step == "A":
            await asyncio.sleep(0.3)

    bus = RedisBus(redis_server.url, redis_prefix, steps=["A", "B"])
    try:
        bus.start(deliver, lambda step: 1)
        t0 = time.monotonic()
        for i in range(3):
            bus.publish(delivery("A", i))
        await until(lambda: "e0" in times)
        await asyncio.sleep(0.05)
        b_sent = time.monotonic()
        bus.publish(delivery("B", 10))
        await until(lambda: len(times) == 4, timeout=10)
        assert times["e10"] - b_sent < 0.2
        assert times["e2"] - t0 < 1.2  # three 0.3 s handlers back to back, no 1 s waits between
    finally:
        async with asyncio.timeout(20):
            await bus.aclose()


CHAIN = {
    "src/a.step.py": """
config = {"name": "A", "subscribes": ["go"], "emits": ["b"]}
async def handler(data, ctx):
    await ctx.emit("b", {"n": data["n"]})
""",
    "src/b.step.py": """
config = {"name": "B", "subscribes": ["b"], "emits": ["c"], "retries": 2, "retry_backoff_s": 0.05}
async def handler(data, ctx):
    if data["n"] % 10 == 0 and not await ctx.state.get("failed", str(data["n"])):
        await ctx.state.set("failed", str(data["n"]), True)
        raise RuntimeError("once")
    await ctx.emit("c", {"n": data["n"]})
""",
    "src/c.step.py": """
config = {"name": "C", "subscribes": ["c"], "emits": []}
async def handler(data, ctx):
    await ctx.state.set("seen", str(data["n"]), data["n"])
""",
}


async def test_the_engine_on_the_redis_bus_ends_every_run(
    make_app: Callable[..., wistro.App], redis_server: RedisServer, redis_prefix: str
) -> None:
    """A 3-step chain, every tenth run failing once in B and retried after a backoff (through the
    delayed set): every run ends, ok, with all its events."""
    config = (
        f"redis:\n  url: {redis_server.url}\n  prefix: {redis_prefix}\nbus:\n  adapter: redis\n"
    )
    app = make_app({**CHAIN, "wistro.yml": config})
    async with asyncio.timeout(60):
        runs = await asyncio.gather(*(app.emit("go", {"n": i}) for i in range(100)))
    assert {r.status for r in runs} == {"ok"}
    assert len(await app.engine.state.get_group("seen")) == 100
    assert {r.record.n_events for r in runs} == {3}
    assert await app.engine.drain(10)

"""The Redis bus against raw Redis Streams: a 5-hop chain, hops/s and the ratio, both measured in
the same run (median of ``--runs``).

    .venv/bin/python bench/bench_redis_bus.py                  # its own redis-server, 3 runs
    .venv/bin/python bench/bench_redis_bus.py --events 5000    # quicker
    .venv/bin/python bench/bench_redis_bus.py --url redis://127.0.0.1:6379/0   # a Redis you run

Without ``--url`` the script starts ``redis-server`` itself (a free loopback port, no
persistence, a temp folder) and stops it at the end; every run uses fresh keys.

* **raw**: five streams ``q0``..``q4``, a consumer group on each, two consumer tasks, each a plain
  redis-py asyncio loop: one ``XREADGROUP ... COUNT 256 BLOCK 100 STREAMS q0 .. q4 > .. >``, then
  one pipeline holding, per entry read, ``XADD`` of the same body to the next stream (none after
  ``q4``) and ``XACK``. The entry's body is a delivery's JSON, as the bus writes it.
* **bus**: the same chain through ``RedisBus`` (steps ``s0``..``s4``, concurrency 64 each): a
  deliver that publishes the next hop's delivery and returns (acknowledged by the bus), with what
  the bus does on top: group commits in a script (the entries, the acknowledgements with
  ``XDEL``), decoding each entry into a ``Delivery``, the lanes.

Both start from ``--events`` entries already in the first stream (written before the clock
starts) and stop when every entry has made its five hops. The goal is bus ≥ 50 % of raw.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _redis import redis_server  # noqa: E402

HOPS = 5
TARGET_RATIO = 0.5
_runs = itertools.count()


def _delivery(step: str, n: int):  # type: ignore[no-untyped-def]
    from wistro.bus import Delivery
    from wistro.tracing.records import EventRecord

    event = EventRecord(
        f"{n:032x}", "b" * 32, "chain.t0", f'{{"n":{n},"name":"x"}}', "emit", None, time.time()
    )
    return Delivery(step, event)


# ---------------------------------------------------------------------------------- raw
async def raw_chain(url: str, n: int) -> float:
    """Seconds for ``n`` entries to make 5 hops through raw consumer groups."""
    import redis.asyncio as aioredis

    run = next(_runs)
    keys = [f"bench-raw-{os.getpid()}-{run}:q{i}" for i in range(HOPS)]
    body = _delivery("s0", 0).to_json()
    client = aioredis.Redis.from_url(url)
    for key in keys:
        await client.xgroup_create(key, "g", id="0", mkstream=True)
    for start in range(0, n, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, n - start)):
                pipe.xadd(keys[0], {"d": body})
            await pipe.execute()
    done = asyncio.Event()
    left = [n * HOPS]
    nxt = {key.encode(): (keys[i + 1] if i + 1 < HOPS else None) for i, key in enumerate(keys)}

    async def consumer(name: str) -> None:
        reader = aioredis.Redis.from_url(url, single_connection_client=True)
        streams = dict.fromkeys(keys, ">")
        try:
            while not done.is_set():  # (no cancel: one landing mid-pipeline upsets redis-py)
                got = await reader.xreadgroup("g", name, streams, count=256, block=100)
                if not got:
                    continue
                async with client.pipeline(transaction=False) as pipe:
                    handled = 0
                    for stream, entries in got:
                        to = nxt[stream]
                        ids = []
                        for entry_id, fields in entries:
                            if to is not None:
                                pipe.xadd(to, {"d": fields[b"d"]})
                            ids.append(entry_id)
                        pipe.xack(stream, "g", *ids)
                        handled += len(ids)
                    await pipe.execute()
                left[0] -= handled
                if left[0] <= 0:
                    done.set()
        finally:
            await reader.aclose()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(consumer(f"c{i}")) for i in range(2)]
    await done.wait()
    dt = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    await client.delete(*keys)
    await client.aclose()
    return dt


# ---------------------------------------------------------------------------------- bus
async def bus_chain(url: str, n: int) -> float:
    """Seconds for ``n`` deliveries to make 5 hops through ``RedisBus``."""
    from wistro.bus import Delivery
    from wistro.bus.redis import RedisBus

    prefix = f"bench-bus-{os.getpid()}-{next(_runs)}"
    steps = [f"s{i}" for i in range(HOPS)]
    nxt = {step: (steps[i + 1] if i + 1 < HOPS else None) for i, step in enumerate(steps)}

    async def nothing(d: Delivery) -> None:
        return None

    seeder = RedisBus(url, prefix)  # publish only
    seeder.start(nothing, lambda step: 64)
    for i in range(n):
        seeder.publish(_delivery("s0", i))
    await seeder.flush()
    await seeder.aclose()

    done = asyncio.Event()
    left = [n * HOPS]
    bus = RedisBus(url, prefix, steps=steps)

    async def deliver(d: Delivery) -> None:
        to = nxt[d.step]
        if to is not None:
            bus.publish(Delivery(to, d.event))
        left[0] -= 1
        if left[0] == 0:
            done.set()

    t0 = time.perf_counter()
    bus.start(deliver, lambda step: 64)
    await done.wait()
    await bus.flush()  # the last acknowledgements are committed
    dt = time.perf_counter() - t0
    await bus.aclose()
    return dt


# ---------------------------------------------------------------------------------- main
async def measure(url: str, n: int, runs: int) -> None:
    raw_rates, bus_rates, ratios = [], [], []
    for r in range(runs):
        first_raw = r % 2 == 0  # which goes first alternates
        if first_raw:
            raw_s = await raw_chain(url, n)
            bus_s = await bus_chain(url, n)
        else:
            bus_s = await bus_chain(url, n)
            raw_s = await raw_chain(url, n)
        raw_rate, bus_rate = n * HOPS / raw_s, n * HOPS / bus_s
        raw_rates.append(raw_rate)
        bus_rates.append(bus_rate)
        ratios.append(bus_rate / raw_rate)
        print(
            f"  run {r + 1}: raw {raw_rate:9,.0f} hops/s   bus {bus_rate:9,.0f} hops/s   "
            f"bus/raw {bus_rate / raw_rate:5.2f}",
            flush=True,
        )
    raw, bus, ratio = (statistics.median(x) for x in (raw_rates, bus_rates, ratios))
    print()
    print(f"5-hop chain, {n:,} events ({n * HOPS:,} hops), median of {runs}:")
    print(f"  raw Redis Streams (2 consumers, pipelined) {raw:9,.0f} hops/s")
    print(f"  RedisBus (group commit, lanes)             {bus:9,.0f} hops/s")
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"  bus/raw {ratio:.2f}   (target >= {TARGET_RATIO:.2f}: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="entries per chain run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", help="a Redis to use instead of a private redis-server")
    args = parser.parse_args()
    if args.url:
        asyncio.run(measure(args.url, args.events, args.runs))
        return
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as url:
        asyncio.run(measure(url, args.events, args.runs))


if __name__ == "__main__":
    main()

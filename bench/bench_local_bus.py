"""What durability costs: the 5-hop chain of ``bench_engine.py`` on the local bus (a SQLite
journal, group commit), or on the Redis bus (``--bus redis``), against the memory bus, per hop,
in the same run; and how long a process takes to finish 2,000 deliveries a ``kill -9`` left
pending, against the same process finishing 2,000 deliveries it was handed fresh. Target:
local/memory <= 2.

    .venv/bin/python bench/bench_local_bus.py                 # 5 pairs of runs per case
    .venv/bin/python bench/bench_local_bus.py --pairs 7 --events 5000
    .venv/bin/python bench/bench_local_bus.py --only recovery
    .venv/bin/python bench/bench_local_bus.py --bus redis --only hops   # its own redis-server

With ``--bus redis`` every run gets a fresh key prefix on a ``redis-server`` the script starts
(or ``--url``); its traces go to that Redis, as shipped (``traces`` defaults to redis with the
redis bus), where the memory bus's go to SQLite.

Hop cases: *amortised* (N events with ``wait=False`` one after the other, then ``drain()``: each
emit waits for the commit of its own run's rows before the next), *32 producers* (the same N
emitted by 32 tasks at once, as an HTTP server's clients would) and *1 in flight*
(``await app.emit(...)`` per event: every emit waits for its journal commit, then for its run).
Runs alternate memory/local, and which goes first alternates between pairs; the figure is the
median of the per-pair ratios. Traces go to SQLite as shipped; state is memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

HOPS = P.CHAIN_HOPS
TARGET_RATIO = 2.0
WARMUP = 200
PENDING = 2_000


REDIS_URL: list[str] = []  # the Redis of --bus redis
_prefixes = iter(range(10**9))


async def chain_run(root: Path, bus: str, n: int, one_in_flight: bool, producers: int = 1) -> float:
    """Seconds for ``n`` events through the chain (drain and trace flush included)."""
    import wistro

    proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)))
    if bus == "redis":
        prefix = f"wistro-bench-{os.getpid()}-{next(_prefixes)}"
        (proj / "wistro.yml").write_text(
            f"name: chain\nredis: {{url: '{REDIS_URL[0]}', prefix: {prefix}}}\n"
        )
    app = wistro.load(proj, state="memory", bus=bus)
    assert not app.errors, app.errors
    for i in range(WARMUP):
        await app.emit("t0", P.chain_first_payload(i), wait=False)
    await app.drain()
    payloads = [P.chain_first_payload(i) for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    if one_in_flight:
        for p in payloads:
            await app.emit("t0", p)
    elif producers > 1:  # like an HTTP server's clients: each emit waits for its own commit

        async def produce(share: list[dict]) -> None:
            for p in share:
                await app.emit("t0", p, wait=False)

        await asyncio.gather(*(produce(payloads[i::producers]) for i in range(producers)))
    else:
        for p in payloads:
            await app.emit("t0", p, wait=False)
    await app.drain()
    dt = time.perf_counter() - t0
    runs = app.runs(limit=1)
    assert len(runs) and runs["status"].iloc[0] == "ok", runs
    await app.aclose()
    return dt


# ----------------------------------------------------------------------- recovery after kill -9
_PRODUCER = """
import asyncio, os, sys
import wistro

async def main():
    app = wistro.load(sys.argv[1], state="memory", bus="local", consume=False)
    for i in range({n}):
        await app.emit("t0", {{"id": i, "name": "x"}}, wait=False)
    await app.engine.bus.flush()
    print("accepted", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _consume_pending(proj: Path, n: int) -> float:
    """Start a consuming app on the journal; seconds until ``n`` runs of the chain ended."""
    import wistro

    t0 = time.perf_counter()
    app = wistro.load(proj, state="memory", bus="local")
    ended = 0
    done = asyncio.Event()

    def ended_one(batch: list) -> None:
        nonlocal ended
        ended += len(batch)
        if ended >= n:
            done.set()

    original = app.engine._ended

    async def counting(batch: list) -> None:
        await original(batch)
        ended_one(batch)

    app.engine._ended = counting  # type: ignore[method-assign]
    app.engine.start()
    await asyncio.wait_for(done.wait(), 300)
    dt = time.perf_counter() - t0
    await app.aclose()
    return dt


def _pending_after_kill(root: Path, n: int) -> Path:
    proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PRODUCER.format(n=n)), str(proj)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "accepted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proj


def recovery(root: Path, rounds: int) -> tuple[float, float]:
    """(seconds to finish what a kill -9 left pending, seconds to finish as many handed over by
    a producer that exited cleanly), medians of ``rounds``."""
    crashed, clean = [], []
    for _ in range(rounds):
        proj = _pending_after_kill(root, PENDING)
        crashed.append(asyncio.run(_consume_pending(proj, PENDING)))
        proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)))
        code = textwrap.dedent(_PRODUCER.format(n=PENDING)).replace(
            'print("accepted", flush=True)\n    await asyncio.sleep(3600)',
            "await app.aclose(timeout=0)",
        )
        subprocess.run([sys.executable, "-c", code, str(proj)], check=True)
        clean.append(asyncio.run(_consume_pending(proj, PENDING)))
    return statistics.median(crashed), statistics.median(clean)


def hops(root: Path, args: argparse.Namespace) -> None:
    """The hop cases, the durable bus next to the memory bus."""
    durable = args.bus
    rows = []
    cases = [
        ("5-hop chain, amortised", False, args.events, 1),
        ("amortised, 32 producers", False, args.events, 32),
        ("5-hop chain, 1 in flight", True, args.events_one, 1),
    ]
    for label, one, n, producers in cases:
        per_hop: dict[str, list[float]] = {"memory": [], durable: []}
        ratios = []
        for pair in range(args.pairs):
            order = ("memory", durable) if pair % 2 == 0 else (durable, "memory")
            got = {}
            for bus in order:
                secs = asyncio.run(chain_run(root, bus, n, one, producers))
                got[bus] = secs / (n * HOPS) * 1e6
                per_hop[bus].append(got[bus])
            ratios.append(got[durable] / got["memory"])
            print(
                f"  {label} pair {pair + 1}: memory {got['memory']:.2f}, {durable} "
                f"{got[durable]:.2f} µs/hop ({ratios[-1]:.2f})",
                flush=True,
            )
        mem, loc = statistics.median(per_hop["memory"]), statistics.median(per_hop[durable])
        rows.append((label, n, mem, loc, statistics.median(ratios)))
    print(
        f"\n{durable.capitalize()} (durable) bus vs memory bus, µs per hop, median of {args.pairs} "
        f"alternating pairs, traces as shipped, {os.cpu_count()} CPUs"
    )
    print(f"{'case':<28}{'events':>8}{'memory':>9}{durable:>9}{'ratio':>8}{'target':>8}")
    for label, n, mem, loc, ratio in rows:
        if durable == "local":
            ok = "yes" if ratio <= TARGET_RATIO else "NO"
            target = f"{TARGET_RATIO:>8.1f}  {ok}"
        else:  # reported, no target
            target = f"{'-':>8}"
        print(f"{label:<28}{n:>8}{mem:>9.2f}{loc:>9.2f}{ratio:>8.2f}{target}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000, help="events per amortised run")
    ap.add_argument("--events-one", type=int, default=2_000, help="events per 1-in-flight run")
    ap.add_argument("--pairs", type=int, default=5, help="memory/local pairs per case; median")
    ap.add_argument("--rounds", type=int, default=3, help="recovery rounds; median")
    ap.add_argument("--only", choices=["hops", "recovery"])
    ap.add_argument("--bus", choices=["local", "redis"], default="local", help="the durable bus")
    ap.add_argument("--url", help="--bus redis: a Redis to use instead of starting one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wistro-bench-local-bus-") as tmp:
        root = Path(tmp)
        if args.bus == "redis":
            from _redis import redis_server

            if args.url:
                REDIS_URL.append(args.url)
                hops(root, args)
            else:
                (root / "redis").mkdir()
                with redis_server(root / "redis") as url:
                    REDIS_URL.append(url)
                    hops(root, args)
            return
        if args.only != "recovery":
            hops(root, args)
        if args.only != "hops":
            crashed, clean = recovery(root, args.rounds)
            print(
                f"\nRecovery: {PENDING:,} chains left pending by kill -9 finished in "
                f"{crashed:.2f} s (from process start); {PENDING:,} left by a clean exit in "
                f"{clean:.2f} s: ratio {crashed / clean:.2f} (median of {args.rounds})"
            )


if __name__ == "__main__":
    main()

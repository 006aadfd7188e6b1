"""Engine throughput and memory, each figure as a ratio against a plain-asyncio baseline
measured in the same run (the machine is noisy: absolute numbers alone mean little).

    .venv/bin/python bench/bench_engine.py                 # 20,000 events, all sections
    .venv/bin/python bench/bench_engine.py --events 2000   # quicker
    .venv/bin/python bench/bench_engine.py --only mem      # just the memory section
    .venv/bin/python bench/bench_engine.py --profile       # cProfile of the 5-hop amortised path

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

HOPS = P.CHAIN_HOPS
FAN = P.FANOUT
TARGET_US_PER_HOP = 10.0
TARGET_RSS_MB = 500.0
WARMUP = 200


# ---------------------------------------------------------------------------------- baselines
async def base_chain(n: int, one_in_flight: bool) -> float:
    """5 consumer tasks passing a dict along 5 asyncio.Queues. Returns seconds."""
    loop = asyncio.get_running_loop()
    queues = [asyncio.Queue() for _ in range(HOPS)]
    done = loop.create_future()
    state = {"left": n, "waiter": None}

    async def consumer(i: int) -> None:
        q_in = queues[i]
        q_out = queues[i + 1] if i + 1 < HOPS else None
        while True:
            item = await q_in.get()
            item = {"id": item["id"], "name": "x", "hop": i}  # a new payload per hop, like a step
            if q_out is not None:
                q_out.put_nowait(item)
            else:
                w = state["waiter"]
                if w is not None and not w.done():
                    w.set_result(None)
                state["left"] -= 1
                if state["left"] == 0 and not done.done():
                    done.set_result(None)

    tasks = [loop.create_task(consumer(i)) for i in range(HOPS)]
    t0 = time.perf_counter()
    if one_in_flight:
        for i in range(n):
            state["waiter"] = w = loop.create_future()
            queues[0].put_nowait({"id": i, "name": "x"})
            await w
    else:
        for i in range(n):
            queues[0].put_nowait({"id": i, "name": "x"})
    await done
    dt = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dt


async def base_fanout(n: int) -> float:
    """One producer putting each dict on 10 queues, 10 consumer tasks. Returns seconds."""
    loop = asyncio.get_running_loop()
    queues = [asyncio.Queue() for _ in range(FAN)]
    done = loop.create_future()
    state = {"left": n * FAN}

    async def consumer(q: asyncio.Queue) -> None:
        while True:
            item = await q.get()
            item = {"id": item["id"], "name": item["name"]}
            state["left"] -= 1
            if state["left"] == 0 and not done.done():
                done.set_result(None)

    tasks = [loop.create_task(consumer(q)) for q in queues]
    t0 = time.perf_counter()
    for i in range(n):
        d = {"id": i, "name": "x"}
        for q in queues:
            q.put_nowait(d)
    await done
    dt = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dt


# ---------------------------------------------------------------------------------- wistro
def _null_store():
    """A store that drops every batch: isolates the engine from trace persistence."""
    from wistro.tracing.store import TraceStore

    class NullStore(TraceStore):
        def write(self, batch):
            pass

        def list_runs(self, limit=50, status=None, topic=None):
            return []

        def get_run(self, trace_id):
            raise KeyError(trace_id)

        def logs(self, after=0, limit=1000, trace_id=None):
            return []

        def dead_letters(self, include_replayed=False):
            return []

        def get_dead_letter(self, id_or_prefix):
            raise KeyError(id_or_prefix)

        def mark_replayed(self, dead_letter_id):
            pass

    return NullStore()


WRITER_SECONDS = [0.0]


def _timed_writes(store) -> None:
    """Accumulate the writer thread's time in ``store.write`` into WRITER_SECONDS."""
    write = store.write

    def timed(batch):
        t = time.perf_counter()
        try:
            write(batch)
        finally:
            WRITER_SECONDS[0] += time.perf_counter() - t

    store.write = timed


def _load(kind: str, traces: str | None, tmp: Path):
    import wistro

    root = Path(tempfile.mkdtemp(dir=tmp))
    proj = P.write_chain(root) if kind == "chain" else P.write_fanout(root)
    kwargs = {"state": "memory"}
    if traces == "null":
        kwargs["traces"] = _null_store()
    elif traces is not None:
        kwargs["traces"] = traces
    app = wistro.load(proj, **kwargs)
    assert not app.errors, app.errors
    return app


async def wistro_run(
    kind: str, n: int, traces: str | None, tmp: Path, one_in_flight: bool, profile: bool = False
) -> float:
    """Seconds to push ``n`` events through the chain/fan-out project, drain (flush) included."""
    app = _load(kind, traces, tmp)
    topic, payload = ("t0", P.chain_first_payload) if kind == "chain" else ("fan", P.fanout_payload)
    for i in range(WARMUP):  # import/bind, first SQLite writes, pydantic caches
        await app.emit(topic, payload(i), wait=False)
    await app.drain()
    payloads = [payload(i) for i in range(n)]
    _timed_writes(app.engine.store)
    WRITER_SECONDS[0] = 0.0
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    if one_in_flight:
        for p in payloads:
            await app.emit(topic, p)
    else:
        for p in payloads:
            await app.emit(topic, p, wait=False)
    await app.drain()
    dt = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
        import pstats

        print("\n--- cProfile, 5-hop amortised path (main thread), top by tottime ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        print("--- same, by cumulative ---")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    if traces != "null":
        runs = app.engine.store.list_runs(limit=1)
        assert runs and runs[0]["status"] == "ok", runs
    await app.aclose()
    return dt


def _best(vals: list[float]) -> float:
    return min(vals)


async def section_throughput(n: int, repeat: int, tmp: Path) -> list[tuple]:
    rows = []
    hops_total = n * HOPS
    deliveries = n * FAN

    base_amort = _best([await base_chain(n, False) for _ in range(3)]) / hops_total * 1e6
    base_one = _best([await base_chain(n, True) for _ in range(3)]) / hops_total * 1e6
    base_fan = _best([await base_fanout(n) for _ in range(3)]) / deliveries * 1e6

    cases = [
        ("5-hop chain, amortised", "chain", False, hops_total, base_amort, "µs/hop", True),
        ("5-hop chain, 1 in flight", "chain", True, hops_total, base_one, "µs/hop", False),
        ("1→10 fan-out, amortised", "fan", False, deliveries, base_fan, "µs/delivery", True),
    ]
    for label, kind, one, units, base, unit, targeted in cases:
        for traces, tlabel in ((None, "sqlite"), ("memory", "memory"), ("null", "no store")):
            gc.collect()
            best, writer = float("inf"), 0.0
            for _ in range(repeat):
                secs = await wistro_run(kind, n, traces, tmp, one)
                if secs < best:
                    best, writer = secs, WRITER_SECONDS[0]
            us = best / units * 1e6
            target = TARGET_US_PER_HOP if targeted else None
            rows.append((f"{label} [{tlabel}]", unit, us, base, target, writer / units * 1e6))
            print(f"  done: {label} [{tlabel}] {us:.1f} {unit} ({best:.2f}s)", flush=True)
    return rows


def print_throughput(rows: list[tuple], n: int) -> None:
    print(f"\nThroughput, {n:,} events (validation on, traces recorded; drain+flush included)")
    hdr = (
        f"{'case':38} {'unit':12} {'wistro':>8} {'asyncio':>8} {'ratio':>7} {'target':>8}"
        f"  {'ok?':3} {'writer':>7}"
    )
    print(hdr)
    print("-" * len(hdr))
    for label, unit, us, base, target, writer in rows:
        tgt = f"≤{target:g}" if target is not None else "-"
        ok = ("yes" if us <= target else "NO") if target is not None else ""
        print(
            f"{label:38} {unit:12} {us:8.2f} {base:8.2f} {us / base:6.1f}x {tgt:>8}  {ok:3}"
            f" {writer:7.2f}"
        )
    print(
        "(wistro/asyncio in µs per unit; writer = µs per unit the trace-writer thread spent in"
        " store.write, overlapping or not with the loop)"
    )


# ---------------------------------------------------------------------------------- memory
def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def mem_child(kind: str, runs: int) -> None:
    """Run in a fresh interpreter; prints JSON {before, after} RSS in MB."""
    if kind == "baseline":
        before = _rss_mb()
        held = [
            {
                "id": f"{i:016x}",
                "trace_id": os.urandom(16).hex(),
                "topic": f"t{i % HOPS}",
                "data_json": json.dumps({"id": i, "name": "x"}),
                "source": f"s{i % HOPS}",
                "parent_span_id": f"{i:016x}",
                "ts": time.time(),
                "error": None,
            }
            for i in range(runs * HOPS)
        ]
        after = _rss_mb()
        print(json.dumps({"before": before, "after": after, "n": len(held)}))
        return

    traces = None if kind == "sqlite" else "memory"

    async def go() -> dict:
        with tempfile.TemporaryDirectory(prefix="wistro-bench-") as tmp:
            app = _load("chain", traces, Path(tmp))
            for i in range(WARMUP):
                await app.emit("t0", P.chain_first_payload(i), wait=False)
            await app.drain()
            gc.collect()
            before = _rss_mb()
            peak = before
            for i in range(runs):
                await app.emit("t0", P.chain_first_payload(i), wait=False)
                if i % 2000 == 0:
                    peak = max(peak, _rss_mb())
            await app.drain()
            gc.collect()
            after = _rss_mb()
            peak = max(peak, after)
            n_runs = len(app.engine.store.list_runs(limit=10**9))
            await app.aclose()
            return {"before": before, "after": after, "peak": peak, "stored_runs": n_runs}

    print(json.dumps(asyncio.run(go())))


def _child(kind: str, runs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--_mem-child", kind, "--events", str(runs)],
        capture_output=True,
        text=True,
        timeout=110,
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_memory(runs: int) -> None:
    events = runs * HOPS
    base = _child("baseline", runs)
    base_growth = base["after"] - base["before"]
    print(
        f"\nMemory: {runs:,} runs of the 5-hop chain = {events:,} traced events "
        f"(each in a fresh interpreter)"
    )
    hdr = (
        f"{'case':28} {'before':>8} {'after':>8} {'peak':>8} {'growth':>8} "
        f"{'baseline':>9} {'ratio':>7} {'target':>8}  ok?"
    )
    print(hdr)
    print("-" * len(hdr))
    for kind in ("sqlite", "memory"):
        r = _child(kind, runs)
        growth = r["after"] - r["before"]
        print(
            f"{'wistro traces=' + kind:28} {r['before']:8.1f} {r['after']:8.1f} {r['peak']:8.1f} "
            f"{growth:8.1f} {base_growth:9.1f} {growth / base_growth:6.2f}x "
            f"{'<' + format(TARGET_RSS_MB, 'g'):>8}  {'yes' if growth < TARGET_RSS_MB else 'NO'}"
            f"   (runs kept by store: {r['stored_runs']:,})"
        )
    print(f"(baseline: {base['n']:,} event-like dicts held in a list; MB of RSS)")


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="events per case (default 20000)")
    ap.add_argument(
        "--mem-runs",
        type=int,
        default=20_000,
        help="runs for the memory section (default 20000 = 100k events)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="repeats of each wistro case (best kept)")
    ap.add_argument("--only", choices=["throughput", "mem"], default=None)
    ap.add_argument(
        "--profile", action="store_true", help="only profile the 5-hop amortised path with cProfile"
    )
    ap.add_argument(
        "--traces",
        choices=["sqlite", "memory", "null"],
        default="sqlite",
        help="trace store for --profile (default sqlite)",
    )
    ap.add_argument("--_mem-child", dest="mem_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.mem_child:
        mem_child(a.mem_child, a.events)
        return
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wistro-bench-") as tmp:
        if a.profile:
            traces = None if a.traces == "sqlite" else a.traces
            asyncio.run(wistro_run("chain", a.events, traces, Path(tmp), False, profile=True))
            return
        if a.only in (None, "throughput"):
            rows = asyncio.run(section_throughput(a.events, a.repeat, Path(tmp)))
            print_throughput(rows, a.events)
            sq = {r[0]: r[2] for r in rows}
            for label in (
                "5-hop chain, amortised",
                "5-hop chain, 1 in flight",
                "1→10 fan-out, amortised",
            ):
                s, m = sq[f"{label} [sqlite]"], sq[f"{label} [memory]"]
                z = sq[f"{label} [no store]"]
                print(
                    f"  {label}: SQLite store {s - z:+.2f} µs/unit over no store ({s / z:.2f}x),"
                    f" memory store {m - z:+.2f} µs/unit ({m / z:.2f}x)"
                )
    if a.only in (None, "mem"):
        section_memory(a.mem_runs)
    print(
        f"\n(total bench time {time.perf_counter() - t_start:.1f}s; python {sys.version.split()[0]},"
        f" {os.cpu_count()} cpus)"
    )


if __name__ == "__main__":
    main()

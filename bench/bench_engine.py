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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402
from _cpu import process_cpu  # noqa: E402

HOPS = P.CHAIN_HOPS
FAN = P.FANOUT
TARGET_US_PER_HOP = 10.0
TARGET_US_FANOUT = 4.0
TARGET_X_ONE_FLOOR = 3.0
# The warm-up: the first SQLite writes, pydantic's caches, and enough trace rows (20,000) for
# the writer process of `traces.writer: auto` to take over before the clock starts.
WARMUP = 3_000


# ---------------------------------------------------------------------------------- baselines
async def base_chain(n: int, one_in_flight: bool, switch: bool = False) -> float:
    """5 consumer tasks passing a dict along 5 asyncio.Queues. Returns seconds. ``switch``: each
    consumer awaits ``asyncio.sleep(0)`` once per item (as a handler that awaits anything
    does), so every hop goes through the loop's ready queue: a task switch per hop."""
    loop = asyncio.get_running_loop()
    queues = [asyncio.Queue() for _ in range(HOPS)]
    done = loop.create_future()
    state = {"left": n, "waiter": None}

    async def consumer(i: int) -> None:
        q_in = queues[i]
        q_out = queues[i + 1] if i + 1 < HOPS else None
        while True:
            item = await q_in.get()
            if switch:
                await asyncio.sleep(0)
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
WRITER_PROCESS = [False]
CHILD_SECONDS = [0.0]  # CPU the writer process used while the clock ran


def _timed_writes(recorder) -> None:
    """Accumulate the CPU time of the recorder's thread handing each batch on (to the writer
    process or the store) into WRITER_SECONDS: what it takes from the loop under the GIL."""
    write = recorder._write

    def timed(*args):
        t = time.thread_time()
        try:
            write(*args)
        finally:
            WRITER_SECONDS[0] += time.thread_time() - t

    recorder._write = timed


def _load(kind: str, traces, tmp: Path, **kwargs):
    import wistro

    root = Path(tempfile.mkdtemp(dir=tmp))
    if kind.startswith("chain"):  # "chain", or "chain:<variant>" (_projects.CHAIN_VARIANTS)
        proj = P.write_chain(root, variant=kind.partition(":")[2] or "plain")
    else:
        proj = P.write_fanout(root)
    kwargs.setdefault("state", "memory")
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
    chain = kind.startswith("chain")
    topic, payload = ("t0", P.chain_first_payload) if chain else ("fan", P.fanout_payload)
    for i in range(WARMUP):  # import/bind, first SQLite writes, pydantic caches
        await app.emit(topic, payload(i), wait=False)
    await app.drain()
    recorder = app.engine.recorder
    store = app.engine.store
    if getattr(store, "writer_spec", lambda: None)() is not None:  # auto: the process takes over
        deadline = time.monotonic() + 10
        while recorder.writer_pid is None and time.monotonic() < deadline:
            await app.emit(topic, payload(0))
            await app.drain()
    payloads = [payload(i) for i in range(n)]
    _timed_writes(recorder)
    WRITER_SECONDS[0] = 0.0
    child = getattr(recorder, "writer_pid", None)
    child_cpu = process_cpu(child)
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
    CHILD_SECONDS[0] = process_cpu(child) - child_cpu
    if prof is not None:
        prof.disable()
        import pstats

        print("\n--- cProfile, 5-hop amortised path (main thread), top by tottime ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        print("--- same, by cumulative ---")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    WRITER_PROCESS[0] = getattr(recorder, "writer_pid", None) is not None
    if traces != "null":
        runs = app.engine.store.list_runs(limit=1)
        assert runs and runs[0]["status"] == "ok", runs
    await app.aclose()
    return dt


def _median(vals: list[float]) -> float:
    return statistics.median(vals)


STORES = (("sqlite", None), ("memory", "memory"), ("no store", "null"))
CASES = [  # label, kind, one in flight, unit, floor key, target (µs) or None, target x floor
    ("5-hop chain, amortised", "chain", False, "µs/hop", "chain", TARGET_US_PER_HOP, None),
    ("5-hop chain, 1 in flight", "chain", True, "µs/hop", "one", None, TARGET_X_ONE_FLOOR),
    ("1→10 fan-out, amortised", "fan", False, "µs/delivery", "fan", TARGET_US_FANOUT, None),
]


async def section_throughput(n: int, runs: int, tmp: Path) -> tuple[list[tuple], dict]:
    """Every case and every floor ``runs`` times, interleaved (floors, then each case, per
    round), each figure the median of its rounds."""
    hops_total, deliveries = n * HOPS, n * FAN
    floors: dict[str, list[float]] = {"chain": [], "switch": [], "one": [], "fan": []}
    times: dict[tuple[str, str], list[float]] = {}
    writers: dict[tuple[str, str], list[float]] = {}
    processes: dict[tuple[str, str], list[bool]] = {}
    children: dict[tuple[str, str], list[float]] = {}
    for r in range(runs):
        floors["chain"].append(await base_chain(n, False) / hops_total * 1e6)
        floors["switch"].append(await base_chain(n, False, switch=True) / hops_total * 1e6)
        floors["one"].append(await base_chain(n, True) / hops_total * 1e6)
        floors["fan"].append(await base_fanout(n) / deliveries * 1e6)
        for label, kind, one, _unit, _f, _t, _x in CASES:
            units = hops_total if kind == "chain" else deliveries
            for tlabel, traces in STORES:
                gc.collect()
                secs = await wistro_run(kind, n, traces, tmp, one)
                key = (label, tlabel)
                times.setdefault(key, []).append(secs / units * 1e6)
                writers.setdefault(key, []).append(WRITER_SECONDS[0] / units * 1e6)
                processes.setdefault(key, []).append(WRITER_PROCESS[0])
                children.setdefault(key, []).append(CHILD_SECONDS[0] / units * 1e6)
        print(f"  round {r + 1}/{runs} done", flush=True)
    base = {k: _median(v) for k, v in floors.items()}
    rows = []
    for label, _kind, _one, unit, fkey, target, x_floor in CASES:
        for tlabel, _ in STORES:
            key = (label, tlabel)
            us = _median(times[key])
            limit = target if target is not None else (x_floor * base[fkey] if x_floor else None)
            proc = (
                f"process ({_median(children[key]):.2f} µs CPU)"
                if all(processes[key])
                else "thread"
            )
            rows.append(
                (f"{label} [{tlabel}]", unit, us, base[fkey], limit, _median(writers[key]), proc)
            )
    return rows, base


def print_throughput(rows: list[tuple], base: dict, n: int, runs: int) -> None:
    print(
        f"\nThroughput, {n:,} events per case (validation on, traces recorded, drain and flush"
        f" included); medians of {runs} rounds"
    )
    hdr = (
        f"{'case':38} {'unit':12} {'wistro':>8} {'floor':>8} {'ratio':>7} {'target':>8}"
        f"  {'ok?':3} {'writer':>7}  writes by"
    )
    print(hdr)
    print("-" * len(hdr))
    for label, unit, us, floor, target, writer, proc in rows:
        tgt = f"≤{target:.3g}" if target is not None else "-"
        ok = ("yes" if us <= target else "NO") if target is not None else ""
        writes = "-" if "no store" in label else proc
        print(
            f"{label:38} {unit:12} {us:8.2f} {floor:8.2f} {us / floor:6.1f}x {tgt:>8}  {ok:3}"
            f" {writer:7.2f}  {writes}"
        )
    print(
        f"floors (plain asyncio, same run, medians): chain without a task switch"
        f" {base['chain']:.2f} µs/hop, with one switch per hop {base['switch']:.2f}, one in"
        f" flight {base['one']:.2f}, fan-out {base['fan']:.2f} µs/delivery.\n"
        f"(ratio = wistro / floor; the 1-in-flight target is {TARGET_X_ONE_FLOOR:g}x its floor;"
        f" writer = µs per unit the recorder's thread spent handing batches on (to the writer"
        f" process, or writing them itself); writes by = who wrote the SQLite/memory batches,"
        f" with the CPU per unit the writer process used on its own core while the clock ran)"
    )


# ---------------------------------------------------------------------------------- llama-index
async def llama_run(n: int, one_in_flight: bool) -> float | None:
    """The same 5-hop chain as a llama-index-workflows Workflow (a typed event per hop), one
    run per event; amortised = all runs started at once with ``asyncio.gather``. Seconds, or
    None when the package is not installed (``pip install -e ".[bench]"``)."""
    try:
        from workflows import Workflow, step
        from workflows.events import Event, StartEvent, StopEvent
    except ImportError:
        return None

    class E1(Event):
        id: int
        name: str
        amount: float

    class E2(Event):
        id: int
        amount: float

    class E3(Event):
        id: int
        name: str
        ok: bool

    class E4(Event):
        id: int
        ok: bool

    class Chain(Workflow):
        @step
        async def s0(self, ev: StartEvent) -> E1:
            return E1(id=ev.id, name="x", amount=1.5)

        @step
        async def s1(self, ev: E1) -> E2:
            return E2(id=ev.id, amount=1.5)

        @step
        async def s2(self, ev: E2) -> E3:
            return E3(id=ev.id, name="x", ok=True)

        @step
        async def s3(self, ev: E3) -> E4:
            return E4(id=ev.id, ok=True)

        @step
        async def s4(self, ev: E4) -> StopEvent:
            return StopEvent(result=ev.id)

    wf = Chain(timeout=600)
    for i in range(50):
        await wf.run(id=i, name="x")
    t0 = time.perf_counter()
    if one_in_flight:
        for i in range(n):
            await wf.run(id=i, name="x")
    else:
        await asyncio.gather(*(wf.run(id=i, name="x") for i in range(n)))
    return time.perf_counter() - t0


async def section_llama(n: int, runs: int, tmp: Path) -> None:
    """llama-index-workflows and wistro (SQLite traces, validation) on the same chain, the
    pairs alternating; the ratio is the median of the per-pair ratios."""
    print(f"\nllama-index-workflows, the same 5-hop chain, {n:,} runs, {runs} pairs")
    for label, one in (("amortised", False), ("1 in flight", True)):
        llama, ours, ratios = [], [], []
        for _ in range(runs):
            secs = await llama_run(n, one)
            if secs is None:
                print('  not installed: pip install -e ".[bench]" (llama-index-workflows)')
                return
            mine = await wistro_run("chain", n, None, tmp, one)
            llama.append(secs / (n * HOPS) * 1e6)
            ours.append(mine / (n * HOPS) * 1e6)
            ratios.append(secs / mine)
        print(
            f"  {label:12} llama-index {_median(llama):8.1f} µs/hop   wistro {_median(ours):6.1f}"
            f" µs/hop   wistro is {_median(ratios):.1f}x faster"
        )


# ---------------------------------------------------------------------------------- memory
def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class _DictListStore:
    """The baseline of the memory section: every record the memory store keeps (the events, the
    spans, each run's last state), as a plain dict of its fields in one list."""

    @staticmethod
    def make():
        from wistro.tracing.records import as_dict
        from wistro.tracing.store import TraceStore

        class DictList(_null_store().__class__, TraceStore):  # type: ignore[misc]
            def __init__(self):
                self.rows: list[dict] = []
                self.runs: dict[str, dict] = {}

            def write(self, batch):
                self.rows.extend(as_dict(r) for r in batch.events)
                self.rows.extend(as_dict(r) for r in batch.spans)
                for run in batch.runs:
                    self.runs[run.trace_id] = as_dict(run)

            def list_runs(self, limit=50, status=None, topic=None):
                return list(self.runs.values())[:limit]

        return DictList()


def mem_child(kind: str, runs: int) -> None:
    """Run in a fresh interpreter; prints JSON {before, after, peak, kept} RSS in MB. Every
    store keeps every run (retention above ``runs``): 5 events and 5 spans a run."""
    from wistro.tracing.memory import MemoryTraceStore
    from wistro.tracing.sqlite import SQLiteTraceStore

    async def go() -> dict:
        with tempfile.TemporaryDirectory(prefix="wistro-bench-") as tmp:
            if kind == "dicts":
                store = _DictListStore.make()
            elif kind == "memory":
                store = MemoryTraceStore(retention_runs=runs + WARMUP + 100)
            else:
                store = SQLiteTraceStore(Path(tmp) / "traces.db", runs + WARMUP + 100)
            app = _load("chain", store, Path(tmp))
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
            kept = len(store.list_runs(limit=10**9))
            await app.aclose()
            return {"before": before, "after": after, "peak": peak, "kept": kept}

    print(json.dumps(asyncio.run(go())))


def _child(kind: str, runs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--_mem-child", kind, "--events", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_memory(runs: int) -> None:
    events = runs * HOPS
    print(
        f"\nMemory: {runs:,} runs of the 5-hop chain = {events:,} traced events and {events:,}"
        f" spans, all kept (each case in a fresh interpreter, RSS growth in MB)"
    )
    base = _child("dicts", runs)
    base_growth = base["after"] - base["before"]
    hdr = (
        f"{'case':34} {'before':>8} {'after':>8} {'peak':>8} {'growth':>8} "
        f"{'baseline':>9} {'ratio':>7} {'target':>7}  ok?"
    )
    print(hdr)
    print("-" * len(hdr))
    print(
        f"{'baseline: the same records as dicts':34} {base['before']:8.1f} {base['after']:8.1f}"
        f" {base['peak']:8.1f} {base_growth:8.1f}"
    )
    for kind, target in (("memory", 1.0), ("sqlite", None)):
        r = _child(kind, runs)
        growth = r["after"] - r["before"]
        ratio = growth / base_growth
        tgt = f"≤{target:g}x" if target else "-"
        ok = ("yes" if ratio <= target else "NO") if target else ""
        print(
            f"{'wistro traces=' + kind:34} {r['before']:8.1f} {r['after']:8.1f} {r['peak']:8.1f} "
            f"{growth:8.1f} {base_growth:9.1f} {ratio:6.2f}x {tgt:>7}  {ok:3}"
            f" (runs kept: {r['kept']:,})"
        )
    print(
        "(baseline: the same engine and runs with a store that keeps each event, span and run as"
        " a dict of its fields in a list)"
    )


# ---------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--events",
        type=int,
        default=10_000,
        help="events per case (default 10000: every run in flight at once stays within"
        " engine.max_in_flight)",
    )
    ap.add_argument(
        "--mem-runs",
        type=int,
        default=20_000,
        help="runs for the memory section (default 20000 = 100k events)",
    )
    ap.add_argument("--runs", type=int, default=5, help="rounds; each figure is their median")
    ap.add_argument("--llama-events", type=int, default=1_000, help="runs of the llama-index case")
    ap.add_argument("--only", choices=["throughput", "llama", "mem"], default=None)
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
            rows, base = asyncio.run(section_throughput(a.events, a.runs, Path(tmp)))
            print_throughput(rows, base, a.events, a.runs)
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
        if a.only in (None, "llama"):
            asyncio.run(section_llama(a.llama_events, a.runs, Path(tmp)))
    if a.only in (None, "mem"):
        section_memory(a.mem_runs)
    print(
        f"\n(total bench time {time.perf_counter() - t_start:.1f}s; python {sys.version.split()[0]},"
        f" {os.cpu_count()} cpus)"
    )


if __name__ == "__main__":
    main()

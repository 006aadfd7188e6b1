"""The Redis trace store against the SQLite one, in the same run: write throughput of realistic
batches (what the recorder hands a store) and ``get_run`` latency.

    .venv/bin/python bench/bench_redis_traces.py                 # its own redis-server, 3 runs
    .venv/bin/python bench/bench_redis_traces.py --runs 5 --traces 20000
    .venv/bin/python bench/bench_redis_traces.py --url redis://127.0.0.1:6379/0   # a Redis you run

Without ``--url`` the script starts ``redis-server`` itself (a free loopback port, no
persistence, a temp folder) and stops it at the end; each run writes under a fresh key prefix,
the SQLite store to a fresh file in a temp folder (WAL, as in a project's ``.wistro/``).

* **write**: ``--traces`` (10,000) runs, each a 5-span chain: its run written twice (started,
  then ended, as the engine records it), 5 events, 5 spans (each the parent of the next, with a
  worker), ``--logs`` (1) log lines; written in batches of ``--batch`` (500) runs, as the recorder
  does under load. The batches are built before the clock starts. Runs per second, and this
  process's CPU time per run (the recorder thread's cost to the engine: it holds the GIL; the
  Redis store's is the encoding and the socket, Redis's own work is in another process); the
  redis and SQLite stores alternate which goes first.
* **get_run**: ``--reads`` (1,000) ``get_run`` of random stored trace ids, full ids and 8-character
  prefixes, after a write run: median and p99 in µs.

Every figure is the median of ``--runs`` (3); ratios are the medians of the per-run ratios
(redis / SQLite: above 1 the Redis store is faster to write, slower to read). Redis memory per
run is ``used_memory`` before and after the first write run; SQLite's is the file's size.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _redis import redis_server  # noqa: E402

from wistro.tracing.records import (  # noqa: E402 - after the path
    Batch,
    EventRecord,
    LogRecord,
    RunRecord,
    SpanRecord,
    new_trace_id,
)
from wistro.tracing.redis import RedisTraceStore  # noqa: E402
from wistro.tracing.sqlite import SQLiteTraceStore  # noqa: E402
from wistro.tracing.store import TraceStore  # noqa: E402

HOPS = 5
_prefixes = itertools.count()


# ---------------------------------------------------------------------------------- the traces
def chain_trace(trace_id: str, t0: float, logs: int, worker: str) -> Batch:
    """One run of a 5-step chain, as the engine records it."""
    started = RunRecord(trace_id, "emit", "t0", "running", t0, worker=worker)
    events, spans, lines = [], [], []
    parent: str | None = None
    for hop in range(HOPS):
        event_id, span_id = f"{trace_id[:8]}e{hop}", f"{trace_id[:8]}s{hop}"
        ts = t0 + hop * 0.001
        data = f'{{"order_id": "A{hop}", "amount_cents": {1200 + hop}, "note": "hop {hop}"}}'
        source = "emit" if hop == 0 else f"Step {hop - 1}"
        events.append(EventRecord(event_id, trace_id, f"t{hop}", data, source, parent, ts))
        spans.append(
            SpanRecord(
                span_id, trace_id, f"Step {hop}", f"t{hop}", event_id, 1, ts, ts + 0.0008, "ok",
                parent_span_id=parent, worker=worker,
            )
        )  # fmt: skip
        parent = span_id
    for n in range(logs):
        lines.append(
            LogRecord(trace_id, parent, f"Step {HOPS - 1}", "info", f"done {n}", '{"n": 1}', t0)
        )
    ended = RunRecord(trace_id, "emit", "t0", "ok", t0, t0 + 0.005, HOPS, 0, worker)
    return Batch(runs=[started, ended], events=events, spans=spans, logs=lines)


def make_batches(n: int, per_batch: int, logs: int) -> tuple[list[Batch], list[str]]:
    batches: list[Batch] = []
    ids: list[str] = []
    t0 = 1_700_000_000.0
    for start in range(0, n, per_batch):
        batch = Batch()
        for i in range(start, min(n, start + per_batch)):
            trace_id = new_trace_id()
            ids.append(trace_id)
            one = chain_trace(trace_id, t0 + i * 0.01, logs, "bench:1")
            batch.runs += one.runs
            batch.events += one.events
            batch.spans += one.spans
            batch.logs += one.logs
        batches.append(batch)
    return batches, ids


# ---------------------------------------------------------------------------------- measuring
def write_all(store: TraceStore, batches: list[Batch]) -> tuple[float, float]:
    """Wall time and this process's CPU time (what the recorder's thread costs the engine: the
    GIL it holds), in seconds."""
    cpu, t0 = time.process_time(), time.perf_counter()
    for batch in batches:
        store.write(batch)
    return time.perf_counter() - t0, time.process_time() - cpu


def read_times(store: TraceStore, ids: list[str], n: int, prefix: bool) -> list[float]:
    rng = random.Random(7)
    wanted = [rng.choice(ids) for _ in range(n)]
    times = []
    for trace_id in wanted:
        key = trace_id[:8] if prefix else trace_id
        t0 = time.perf_counter()
        got = store.get_run(key)
        times.append(time.perf_counter() - t0)
        assert len(got["spans"]) == HOPS and got["run"]["status"] == "ok"
    return times


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def one_run(
    run: int, url: str, folder: Path, batches: list[Batch], ids: list[str], reads: int
) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    prefix = f"bench-traces-{os.getpid()}-{next(_prefixes)}"
    stores: dict[str, Callable[[], TraceStore]] = {
        "redis": lambda: RedisTraceStore(url, prefix, retention_runs=len(ids)),
        "sqlite": lambda: SQLiteTraceStore(folder / f"traces-{run}.db", retention_runs=len(ids)),
    }
    order = ["redis", "sqlite"] if run % 2 == 0 else ["sqlite", "redis"]
    out: dict[str, Any] = {}
    for kind in order:
        store = stores[kind]()
        before = int(client.info("memory")["used_memory"])
        seconds, cpu = write_all(store, batches)
        if kind == "redis":
            out["redis_bytes"] = int(client.info("memory")["used_memory"]) - before
        else:
            out["sqlite_bytes"] = sum(
                p.stat().st_size for p in folder.glob(f"traces-{run}.db*") if p.is_file()
            )
        out[f"{kind}_write"] = len(ids) / seconds
        out[f"{kind}_cpu"] = cpu / len(ids) * 1e6
        out[f"{kind}_get"] = read_times(store, ids, reads, prefix=False)
        out[f"{kind}_prefix"] = read_times(store, ids, reads, prefix=True)
        assert len(store.list_runs(limit=len(ids))) == len(ids)
        store.close()
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis to use (default: start redis-server)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--traces", type=int, default=10_000, help="runs written per run")
    parser.add_argument("--batch", type=int, default=500, help="runs per batch")
    parser.add_argument("--logs", type=int, default=1, help="log lines per run")
    parser.add_argument("--reads", type=int, default=1_000, help="get_run calls per store")
    args = parser.parse_args()

    batches, ids = make_batches(args.traces, args.batch, args.logs)
    records = sum(len(b) for b in batches)
    print(
        f"{args.traces:,} runs of a {HOPS}-span chain ({records / args.traces:.0f} records a run: "
        f"2 run writes, {HOPS} events, {HOPS} spans, {args.logs} log), batches of "
        f"{args.batch} runs; {args.reads:,} get_run per store; median of {args.runs} runs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "redis").mkdir()
        server = nullcontext(args.url) if args.url else redis_server(folder / "redis")
        with server as url:
            results = [one_run(r, url, folder, batches, ids, args.reads) for r in range(args.runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    def ratio(a: str, b: str, fn: Callable[[Any], float] = float) -> float:
        return statistics.median(fn(r[a]) / fn(r[b]) for r in results)

    us = 1e6
    print(f"\n{'':24}{'redis':>12}{'sqlite':>12}{'redis/sqlite':>14}")
    print(
        f"{'write, runs/s':24}{med('redis_write'):>12,.0f}{med('sqlite_write'):>12,.0f}"
        f"{ratio('redis_write', 'sqlite_write'):>14.2f}"
    )
    print(
        f"{'write, CPU µs per run':24}{med('redis_cpu'):>12,.1f}{med('sqlite_cpu'):>12,.1f}"
        f"{ratio('redis_cpu', 'sqlite_cpu'):>14.2f}"
    )
    for label, key in (("get_run", "get"), ("get_run by prefix", "prefix")):
        for stat, fn in (("median", statistics.median), ("p99", p99)):
            redis_us = statistics.median(fn(r[f"redis_{key}"]) for r in results) * us
            sqlite_us = statistics.median(fn(r[f"sqlite_{key}"]) for r in results) * us
            print(
                f"{f'{label}, {stat} µs':24}{redis_us:>12,.0f}{sqlite_us:>12,.0f}"
                f"{ratio(f'redis_{key}', f'sqlite_{key}', fn):>14.2f}"
            )
    first = results[0]
    print(
        f"{'bytes per run stored':24}{first['redis_bytes'] / args.traces:>12,.0f}"
        f"{first['sqlite_bytes'] / args.traces:>12,.0f}"
    )


if __name__ == "__main__":
    main()

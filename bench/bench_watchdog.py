"""What the event-loop watchdog costs: the 5-hop chain of ``bench_engine.py`` with the watchdog
on (``engine.block_warn_ms: 100``, the default) against off (``0``), per hop, in the same run.
Target: on/off <= 1.05.

    .venv/bin/python bench/bench_watchdog.py                 # 7 pairs of runs per case
    .venv/bin/python bench/bench_watchdog.py --pairs 11 --events 5000
    .venv/bin/python bench/bench_watchdog.py --traces memory  # default: SQLite, as shipped

The chain is ``_projects.write_chain`` (5 async steps, pydantic inputs, validation on) with an
``engine: {block_warn_ms: N}`` in its wistro.yml; a fresh project and app per run, 200 warm-up
events first. Cases: *amortised* (N events with ``wait=False``, then ``drain()``) and *1 in
flight* (``await app.emit(...)`` per event). Runs alternate off/on, and which goes first
alternates between pairs; the figure is the median of the per-pair ratios on/off (the ratio of
the medians is printed too). The watchdog's cost is a timer callback on the loop every
``block_warn_ms / 2`` and a thread that wakes every ``block_warn_ms / 4``; nothing per event.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

HOPS = P.CHAIN_HOPS
TARGET_RATIO = 1.05
WARMUP = 200
ON_MS = 100


class _Reports(logging.Handler):
    """Counts the watchdog's "event loop was blocked" warnings (logged by ``wistro.core.engine`` when
    no observer is attached). The chain's handlers never block, so each one is a false report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "event loop was blocked" in message:
            self.count += 1
            self.first = self.first or message


REPORTS = _Reports()


def _watchdog_running() -> bool:
    return any(t.name == "wistro-watchdog" and t.is_alive() for t in threading.enumerate())


async def chain_run(root: Path, block_warn_ms: int, n: int, one_in_flight: bool, traces: str):
    """Seconds for ``n`` events through the chain (drain and trace flush included)."""
    import wistro

    proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)))
    with (proj / "wistro.yml").open("a", encoding="utf-8") as f:
        f.write(f"engine:\n  block_warn_ms: {block_warn_ms}\n")
    kwargs: dict[str, str] = {"state": "memory"}
    if traces != "sqlite":
        kwargs["traces"] = traces
    app = wistro.load(proj, **kwargs)
    assert not app.errors, app.errors
    assert app.engine.config.block_warn_ms == block_warn_ms
    for i in range(WARMUP):
        await app.emit("t0", P.chain_first_payload(i), wait=False)
    await app.drain()
    assert _watchdog_running() == (block_warn_ms > 0), "watchdog thread on/off as configured"
    payloads = [P.chain_first_payload(i) for i in range(n)]
    gc.collect()
    t0 = time.perf_counter()
    if one_in_flight:
        for p in payloads:
            await app.emit("t0", p)
    else:
        for p in payloads:
            await app.emit("t0", p, wait=False)
    await app.drain()
    dt = time.perf_counter() - t0
    runs = app.runs(limit=1)
    assert len(runs) and runs["status"].iloc[0] == "ok", runs
    await app.aclose()
    return dt


def _wait_watchdog_gone(timeout: float = 2.0) -> None:
    """The previous app's watchdog thread exits on its next wake-up: let it go first."""
    deadline = time.monotonic() + timeout
    while _watchdog_running() and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000, help="events per amortised run")
    ap.add_argument("--events-one", type=int, default=3_000, help="events per 1-in-flight run")
    ap.add_argument("--pairs", type=int, default=7, help="off/on pairs per case; median")
    ap.add_argument("--traces", choices=["sqlite", "memory"], default="sqlite")
    args = ap.parse_args()
    engine_log = logging.getLogger("wistro.engine")
    engine_log.addHandler(REPORTS)
    engine_log.propagate = False  # counted, not printed

    cases = [
        ("5-hop chain, amortised", False, args.events),
        ("5-hop chain, 1 in flight", True, args.events_one),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wistro-bench-watchdog-") as tmp:
        root = Path(tmp)
        for label, one, n in cases:
            per_hop: dict[int, list[float]] = {0: [], ON_MS: []}
            ratios = []
            REPORTS.count = 0
            for pair in range(args.pairs):
                order = (0, ON_MS) if pair % 2 == 0 else (ON_MS, 0)
                got = {}
                for ms in order:
                    _wait_watchdog_gone()
                    secs = asyncio.run(chain_run(root, ms, n, one, args.traces))
                    got[ms] = secs / (n * HOPS) * 1e6
                    per_hop[ms].append(got[ms])
                ratios.append(got[ON_MS] / got[0])
                print(
                    f"  {label} pair {pair + 1}: off {got[0]:.2f}, on {got[ON_MS]:.2f} µs/hop "
                    f"({ratios[-1]:.3f})",
                    flush=True,
                )
            off, on = statistics.median(per_hop[0]), statistics.median(per_hop[ON_MS])
            rows.append((label, n, off, on, statistics.median(ratios), on / off, REPORTS.count))

    print(
        f"\nWatchdog on (block_warn_ms {ON_MS}) vs off (0), µs per hop, median of {args.pairs} "
        f"alternating pairs, traces: {args.traces}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'case':<28}{'events':>8}{'off':>8}{'on':>8}{'on/off':>8}{'of medians':>12}"
        f"{'target':>8}  {'ok?':<5}{'reports':>8}"
    )
    for label, n, off, on, ratio, of_medians, reports in rows:
        ok = "yes" if ratio <= TARGET_RATIO else "NO"
        print(
            f"{label:<28}{n:>8}{off:>8.2f}{on:>8.2f}{ratio:>8.3f}{of_medians:>12.3f}"
            f"{TARGET_RATIO:>8.2f}  {ok:<5}{reports:>8}"
        )
    print(
        "on/off = median of the per-pair ratios; 'of medians' = median(on) / median(off); "
        "reports = 'event loop was blocked' warnings during the on runs (none of these handlers "
        "blocks: each is a false report)."
    )
    if REPORTS.first:
        print(f"first report: {REPORTS.first}")


if __name__ == "__main__":
    main()

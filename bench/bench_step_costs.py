"""What the things a step does besides emitting cost per hop: a time limit (``timeout_s``), a log
line, a state write, a plain ``def`` handler (run on a handler thread), and a plain ``def``
handler writing state, each added to every step of the 5-hop chain of ``bench_engine.py``, next
to the same chain without it, defaults on (validation, SQLite traces), in the same run.

    .venv/bin/python bench/bench_step_costs.py                 # 5 rounds, 5,000 events a case
    .venv/bin/python bench/bench_step_costs.py --runs 3 --events 2000 --cases plain,timeout

Every case runs once per round, in the same order, each in a fresh temp project and app
(``bench_engine.wistro_run``: warm-up until the trace writer process has taken over, then N
events with ``wait=False`` and ``drain()``). Per case: the median µs/hop of the rounds, the
median of the per-round ratios to the plain chain of the same round, and the difference in µs.
Also in each round, as the reference for the time limit: one ``await`` of a coroutine that
returns at once, bare and inside ``async with asyncio.timeout(10)`` (a timer armed and
cancelled per call, what a limit cost before ``wistro.core.deadlines``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402
import bench_engine as B  # noqa: E402

CASES = list(P.CHAIN_VARIANTS)


async def _awaits(n: int, limited: bool) -> float:
    """µs per ``await`` of a coroutine that returns at once, with or without asyncio.timeout."""

    async def nothing() -> None:
        return None

    started = time.perf_counter()
    if limited:
        for _ in range(n):
            async with asyncio.timeout(10):
                await nothing()
    else:
        for _ in range(n):
            await nothing()
    return (time.perf_counter() - started) / n * 1e6


async def measure(cases: list[str], events: int, runs: int, tmp: Path) -> None:
    hops = events * B.HOPS
    per_hop: dict[str, list[float]] = {c: [] for c in cases}
    ratios: dict[str, list[float]] = {c: [] for c in cases}
    refs: dict[str, list[float]] = {"await": [], "await in asyncio.timeout": []}
    for r in range(runs):
        refs["await"].append(await _awaits(100_000, False))
        refs["await in asyncio.timeout"].append(await _awaits(100_000, True))
        this: dict[str, float] = {}
        for case in cases:
            secs = await B.wistro_run(f"chain:{case}", events, None, tmp, False)
            this[case] = secs / hops * 1e6
            per_hop[case].append(this[case])
        if "plain" in this:
            for case in cases:
                ratios[case].append(this[case] / this["plain"])
        print(f"  round {r + 1}/{runs} done", file=sys.stderr)

    med = statistics.median
    base = med(per_hop["plain"]) if "plain" in per_hop else None
    print(
        f"\nWhat a step does besides emitting, per hop: 5-hop chain, {events:,} events a case, "
        f"amortised, SQLite traces; medians of {runs} rounds"
    )
    print(f"{'case':<14}{'µs/hop':>9}{'vs plain':>10}{'extra µs':>10}")
    print("-" * 43)
    for case in cases:
        value = med(per_hop[case])
        ratio = f"{med(ratios[case]):.2f}x" if ratios[case] else "-"
        extra = f"{value - base:+.2f}" if base is not None else "-"
        print(f"{case:<14}{value:>9.2f}{ratio:>10}{extra:>10}")
    bare, limited = med(refs["await"]), med(refs["await in asyncio.timeout"])
    print(
        f"reference, same rounds: an await {bare:.2f} µs; inside asyncio.timeout {limited:.2f} µs "
        f"(+{limited - bare:.2f} µs a call: a timer per call)"
    )
    print(
        "(vs plain = median of the per-round ratios to the plain chain; extra = the medians' "
        "difference; each case adds its thing to every one of the 5 steps)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {CASES}")
    a = ap.parse_args()
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in P.CHAIN_VARIANTS]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {CASES}")
    if "plain" not in cases:
        cases.insert(0, "plain")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wistro-bench-") as tmp:
        asyncio.run(measure(cases, a.events, a.runs, Path(tmp)))
    print(f"(total bench time {time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    main()

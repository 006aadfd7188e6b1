"""What routing costs at the root of a trace: one-hop runs (``write_chain(hops=1)``) emitted
with a traffic split of 3 live versions applied at each root (sticky on a payload field, or by
trace id) against the same runs emitted without routing, in the same run. Memory bus, memory
traces, so the root's own cost is what is measured.

    .venv/bin/python bench/bench_traffic_routing.py            # 7 pairs
    .venv/bin/python bench/bench_traffic_routing.py --pairs 11 --events 20000

Each run: a fresh app, 200 warm-up emits, then N ``await app.emit(..., wait=False)`` and
``drain()``; µs per root. Runs alternate plain/routed (which goes first alternates); the figure
is the median of the per-pair ratios. The routed engine's ``route`` is its ``Router.choose``
over a split of three versions that are all live, the work every root does on a shared bus
(the live versions and the split are read from the bus every 2 s, off the emit path).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

WARMUP = 200


async def one_run(root: Path, n: int, routed: str | None) -> float:
    import wistro
    from wistro.versions.live import LiveVersion
    from wistro.versions.split import Split

    proj = P.write_chain(Path(tempfile.mkdtemp(dir=root)), hops=1)
    app = wistro.load(proj, state="memory", traces="memory", bus="memory")
    engine = app.engine
    if routed is not None:
        router = engine.router
        router.default = Split.parse(
            {"v1": 25, "v2": 25, "v3": 50, **({"sticky": routed} if routed != "trace" else {})}
        )
        live = [LiveVersion(f"{i:012x}", f"v{i}", 1, 0.0) for i in (1, 2, 3)]
        router.update(live, None)
        engine.route = router.choose  # type: ignore[method-assign]
    payloads = [P.chain_first_payload(i) for i in range(n)]
    for i in range(WARMUP):
        await app.emit("t0", P.chain_first_payload(i), wait=False)
    await app.drain()
    gc.collect()
    t0 = time.perf_counter()
    for p in payloads:
        await app.emit("t0", p, wait=False)
    await app.drain()
    dt = time.perf_counter() - t0
    await app.aclose()
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="wistro-bench-routing-") as tmp:
        root = Path(tmp)
        for label, key in (("sticky on a field", "id"), ("by trace id", "trace")):
            plain, routed, ratios = [], [], []
            for pair in range(args.pairs):
                order = (None, key) if pair % 2 == 0 else (key, None)
                got = {k: asyncio.run(one_run(root, args.events, k)) for k in order}
                plain.append(got[None])
                routed.append(got[key])
                ratios.append(got[key] / got[None])
            rows.append((label, statistics.median(plain), statistics.median(routed), ratios))
    print(
        f"\nRouting at the trace root, µs per root (1-hop runs, memory bus), median of {args.pairs}"
    )
    print(f"{'case':<22}{'plain':>9}{'routed':>9}{'extra':>9}{'ratio':>8}")
    for label, p, r, ratios in rows:
        print(f"{label:<22}{p:>9.2f}{r:>9.2f}{r - p:>9.2f}{statistics.median(ratios):>8.3f}")


if __name__ == "__main__":
    main()

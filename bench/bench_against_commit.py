"""The engine hop of this checkout against the same hop at another commit, in one run.

    .venv/bin/python bench/bench_against_commit.py 66dc98b            # 9 cases, 6 pairs each
    .venv/bin/python bench/bench_against_commit.py HEAD~3 --pairs 8 --cases "fan 0 null"
    .venv/bin/python bench/bench_against_commit.py HEAD~1 --cases "js 0 sqlite" "go 1 sqlite"

The commit is exported (``git archive``) into a temp folder; every case then runs in fresh
subprocesses, one per tree, alternating which goes first, each importing ``wistro`` from its own
tree (as do the processes it starts, such as the trace writer: ``PYTHONPATH``) and running the
*same* measuring code (``bench_engine.wistro_run`` of this checkout: the 5-hop chain or the
1->10 fan-out, SQLite / memory / no trace store, amortised or one event in flight). Printed per
case: the median µs per hop (or delivery) of each tree, the median of the per-pair ratios
this/baseline, and the same for the CPU time of the whole subprocess (warm-up included, so
closer to 1). A ratio under 1 means this checkout is cheaper. The machine is noisy:
trust the medians of several pairs, never one pair.

Cases ``js`` and ``go`` (SQLite traces only) run the polyglot benches' 5-hop chain in JavaScript
or Go instead (``_polyglot.one_run``, the tree's own worker runtime and SDK): amortised, with the
engine's CPU per hop of the timed part in the CPU column (steadier than the wall clock), or one
event in flight (CPU column empty).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CASES = [
    f"{kind} {one} {traces}"
    for kind, one in (("chain", 0), ("chain", 1), ("fan", 0))
    for traces in ("sqlite", "memory", "null")
]

_CHILD = textwrap.dedent(
    """
    import asyncio, sys, tempfile, time
    from pathlib import Path
    tree, bench = sys.argv[1], sys.argv[2]
    sys.path.insert(0, tree)
    import wistro
    assert wistro.__file__.startswith(tree), wistro.__file__
    sys.path.append(bench)
    import bench_engine as B
    kind, one, traces, n = sys.argv[3], sys.argv[4] == "1", sys.argv[5], int(sys.argv[6])
    if kind in ("js", "go"):
        import _polyglot as PG
        root = Path(tempfile.mkdtemp())
        proj = (PG.write_js_chain if kind == "js" else PG.write_go_chain)(root)
        got = asyncio.run(PG.one_run(proj, root / "traces.db", 300 if one else n, n if one else 1))
        if one:
            print(got["one"], "nan")  # no CPU figure one in flight
        else:
            print(got["amortised"], got["engine_cpu"])
        sys.exit(0)
    cpu = time.process_time()
    secs = asyncio.run(
        B.wistro_run(kind, n, None if traces == "sqlite" else traces,
                     Path(tempfile.mkdtemp()), one)
    )
    cpu = time.process_time() - cpu
    if traces == "sqlite" and not B.WRITER_PROCESS[0]:
        sys.exit("the trace writer process did not write the batches")
    units = n * (B.HOPS if kind == "chain" else B.FAN)
    print(secs / units * 1e6, cpu / units * 1e6)
    """
)


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (its ``wistro`` package) in ``into``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "wistro"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def one(tree: Path, case: str, n: int) -> tuple[float, float]:
    kind, flight, traces = case.split()
    # The processes it starts (the trace writer: ``python -c``, which looks in its working folder
    # first) import the same tree's wistro.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), str(HERE), kind, flight, traces, str(n)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if out.returncode:
        sys.exit(f"error: {case} on {tree}: {out.stderr.strip().splitlines()[-1]}")
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("rev", help="the baseline commit (anything git names)")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--events", type=int, default=5000, help="amortised events per run")
    ap.add_argument("--events-one", type=int, default=2000, help="one-in-flight events per run")
    ap.add_argument("--cases", nargs="*", default=CASES, help='e.g. "chain 0 sqlite" "fan 0 null"')
    args = ap.parse_args()
    base = export(args.rev, Path(tempfile.mkdtemp(prefix="wistro-baseline-")))
    trees = {"baseline": base, "this": ROOT}
    print(f"baseline {args.rev} exported to {base}; {args.pairs} alternating pairs per case\n")
    print(f"{'case':26} {'baseline µs':>12} {'this µs':>9} {'this/base':>10} {'cpu ratio':>10}")
    for case in args.cases:
        kind, flight, traces = case.split()
        if kind in ("js", "go") and traces != "sqlite":
            sys.exit(f"error: {case}: the {kind} chain runs with SQLite traces only")
        n = args.events_one if flight == "1" else args.events
        if kind in ("js", "go"):  # a worker hop costs 2-10 Python hops: fewer events
            n = max(200, n // 5 if flight == "1" else n // 2)
        got: dict[str, list[tuple[float, float]]] = {"baseline": [], "this": []}
        for pair in range(args.pairs):
            order = ("baseline", "this") if pair % 2 == 0 else ("this", "baseline")
            for name in order:
                got[name].append(one(trees[name], case, n))
        wall = statistics.median(
            t[0] / b[0] for b, t in zip(got["baseline"], got["this"], strict=True)
        )
        cpu = statistics.median(
            t[1] / b[1] for b, t in zip(got["baseline"], got["this"], strict=True)
        )
        b_us = statistics.median(x[0] for x in got["baseline"])
        t_us = statistics.median(x[0] for x in got["this"])
        label = f"{kind} {'1 in flight' if flight == '1' else 'amortised'} [{traces}]"
        shown = "-" if cpu != cpu else f"{cpu:.3f}"  # nan: not measured
        print(f"{label:26} {b_us:12.2f} {t_us:9.2f} {wall:10.3f} {shown:>10}", flush=True)


if __name__ == "__main__":
    main()

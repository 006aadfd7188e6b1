"""Eval benchmarks, each figure next to a baseline measured in the same run.

    .venv/bin/python bench/bench_eval.py                     # 1,000 samples, compare of 10,000
    .venv/bin/python bench/bench_eval.py --samples 200 --compare-samples 2000   # quicker

1. **Eval vs app.emit, per sample**: 1,000 samples through the 5-step chain (bench/_projects.py
   ``write_chain``) with 3 scorers (error_free, emitted, sequence), results stored under
   ``.wistro/evals/``, ``resume=False``. The eval's figure is ``EvalResult.samples_s``: the
   wall time of running, recording, scoring and storing the samples on a loaded version (what
   ``we.run`` adds per sample; the whole call, loading the version included, is shown apart).
   Baseline, measured the same way: the same 1,000 events through ``await app.emit`` of one
   loaded app (memory state, in-memory traces), after 50 warm-up emits, then ``drain()``; and
   with the default SQLite trace store. The three are interleaved over ``--rounds`` rounds
   (their order alternating), so that load from other processes hits all of them; the ratio is
   the **median of the per-round ratios** (target <= 1.3x, one at a time). 8 at a time is
   shown too.
2. **compare**: two evals of 10,000 samples with 3 scorers (2 pass/fail, 1 numeric), built
   synthetically through the public constructors (``EvalMeta``, ``SampleResult``,
   ``EvalResult``): 5 events and 5 spans per sample, 5% of samples changed at step s2 in b.
   Target <= 2 s. Baseline: building the two pandas DataFrames of raw scores (``.frame``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _projects as P  # noqa: E402

import wistro  # noqa: E402
from wistro import eval as we  # noqa: E402
from wistro.eval import scorers as sc  # noqa: E402
from wistro.eval.results import EvalMeta, EvalResult, SampleResult  # noqa: E402
from wistro.eval.version import ProjectVersion  # noqa: E402

TARGET_RATIO = 1.3
TARGET_COMPARE_S = 2.0
SCORERS = [sc.error_free(), sc.emitted("t4"), sc.sequence(["t0", "t2", "t4"])]


# ---------------------------------------------------------------------------------- 1. eval
async def baseline_emit(root: Path, n: int, concurrency: int, traces: str | None) -> float:
    """``await app.emit`` of the same n events on one loaded app (memory state)."""
    app = wistro.load(root, state="memory", traces=traces)
    try:
        for i in range(50):  # warm-up
            await app.emit("t0", P.chain_first_payload(i))
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                run = await app.emit("t0", P.chain_first_payload(i))
                assert run.status == "ok", run.errors

        t0 = time.perf_counter()
        if concurrency == 1:
            for i in range(n):
                await one(i)
        else:
            await asyncio.gather(*(one(i) for i in range(n)))
        await app.drain()  # traces written, like the eval's results
        return time.perf_counter() - t0
    finally:
        await app.aclose()


async def eval_run(ds: we.Dataset, concurrency: int) -> tuple[float, float]:
    """(seconds spent on the samples, seconds of the whole ``we.run`` call)."""
    t0 = time.perf_counter()
    r = await we.run(ds, scorers=SCORERS, concurrency=concurrency, resume=False, progress=False)
    dt = time.perf_counter() - t0
    assert len(r) == len(ds) and all(not x.failed for x in r), "eval samples failed"
    assert r.samples_s is not None
    return r.samples_s, dt


async def bench_eval(n: int, rounds: int) -> list[float]:
    """Prints the table; returns the per-round ratios eval / app.emit (memory), one at a time."""
    tmp = P.new_root("wistro-bench-eval-")
    ratios: list[float] = []
    try:
        root = P.write_chain(tmp)
        ds = we.Dataset("bench", root=root, autosave=False)
        ds.extend(
            we.Sample(input={"topic": "t0", "data": P.chain_first_payload(i)}) for i in range(n)
        )
        ds.save()
        warm = we.Dataset("warm", root=root, autosave=False)
        warm.extend(ds.samples[:50])
        await we.run(warm, scorers=SCORERS, resume=False, progress=False)
        print(
            f"## 1. eval of {n:,} samples through a 5-step chain, 3 scorers "
            f"(median of {rounds} interleaved rounds)\n"
        )
        print(
            "| at a time | app.emit, memory traces µs/sample | app.emit, SQLite traces µs/sample "
            "| eval µs/sample | eval / memory, median (range) | eval / SQLite | "
            "whole we.run µs/sample | target |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for conc in (1, 8):
            mem, sql, ev, whole, r_mem, r_sql = [], [], [], [], [], []
            for k in range(rounds):  # interleaved, so that load from elsewhere hits all three
                if k % 2:
                    e, w = await eval_run(ds, conc)
                    m = await baseline_emit(root, n, conc, "memory")
                    q = await baseline_emit(root, n, conc, None)
                else:
                    m = await baseline_emit(root, n, conc, "memory")
                    q = await baseline_emit(root, n, conc, None)
                    e, w = await eval_run(ds, conc)
                mem.append(m)
                sql.append(q)
                ev.append(e)
                whole.append(w)
                r_mem.append(e / m)
                r_sql.append(e / q)
            ratio = statistics.median(r_mem)
            if conc == 1:
                ratios = r_mem
            target = (
                f"≤ {TARGET_RATIO}x {'✓' if ratio <= TARGET_RATIO else '✗'}" if conc == 1 else ""
            )
            us = [statistics.median(x) / n * 1e6 for x in (mem, sql, ev, whole)]
            print(
                f"| {conc} | {us[0]:,.0f} | {us[1]:,.0f} | {us[2]:,.0f} | {ratio:.2f}x "
                f"({min(r_mem):.2f} to {max(r_mem):.2f}) | {statistics.median(r_sql):.2f}x | "
                f"{us[3]:,.0f} | {target} |"
            )
        print(
            "\neval µs/sample: each sample run with fresh memory state, its events, spans and "
            "state recorded, 3 scorers, its result appended to results.jsonl. whole we.run: that "
            "plus loading the version, hashing the dataset and writing meta.json.\n"
        )
        med = statistics.median(ratios)
        print(f"ratio eval / app.emit, one at a time (median of {rounds} rounds): {med:.2f}x\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ratios


# ---------------------------------------------------------------------------------- 2. compare
def synthetic_eval(label: str, n: int, changed: set[int], seed: int) -> EvalResult:
    rng = random.Random(seed)
    steps = {f"s{i}": f"h{i}" for i in range(5)}
    if label == "b":
        steps["s2"] = "h2-changed"
    version = ProjectVersion(label * 16, steps, {k: f"src/{k}.step.py" for k in steps}, label=label)
    meta = EvalMeta("bench", "d1", version, ["error_free", "emitted(t4)", "quality"])
    meta.status = "complete"
    rows = []
    for i in range(n):
        bad = i in changed
        r = SampleResult(f"s{i:05d}", f"h{i:05d}", "t0", latency_ms=rng.uniform(1, 3))
        r.spans = [
            {
                "step": f"s{k}",
                "topic": f"t{k}",
                "status": "ok",
                "error": None,
                "start_ms": k * 0.1,
                "end_ms": k * 0.1 + 0.05,
            }
            for k in range(5)
        ]
        r.events = [{"topic": "t0", "data": {"id": i, "name": "x"}, "source": "eval", "span": None}]
        for k in range(4):
            value = 1.5 if not (bad and k >= 2) else 2.5
            r.events.append(
                {
                    "topic": f"t{k + 1}",
                    "data": {"id": i, "amount": value},
                    "source": f"s{k}",
                    "span": k,
                }
            )
        quality = rng.uniform(0.6, 0.9) - (0.3 if bad else 0.0)
        r.scores = {
            "error_free": {"value": 1.0, "passed": True, "rationale": "no errors"},
            "emitted(t4)": {"value": 0.0 if bad else 1.0, "passed": not bad, "rationale": ""},
            "quality": {"value": quality, "passed": quality >= 0.5, "rationale": ""},
        }
        rows.append(r)
    return EvalResult(f"eval-{label}", meta, rows)


def bench_compare(n: int) -> None:
    rng = random.Random(0)
    changed = set(rng.sample(range(n), n // 20))
    t0 = time.perf_counter()
    a = synthetic_eval("a", n, set(), 1)
    b = synthetic_eval("b", n, changed, 2)
    build = time.perf_counter() - t0
    base = []
    for _ in range(3):
        t0 = time.perf_counter()
        _ = a.frame, b.frame
        base.append(time.perf_counter() - t0)
    times = []
    cmp = None
    for _ in range(3):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmp = we.compare(a, b)
        times.append(time.perf_counter() - t0)
    assert cmp is not None
    best = min(times)
    print(f"## 2. compare of two evals of {n:,} samples, 3 scorers (best of 3)\n")
    print("| what | seconds | ratio to baseline | target |")
    print("|---|---:|---:|---:|")
    print(f"| baseline: `.frame` of both evals | {min(base):.3f} | 1.00x | |")
    print(
        f"| `compare(a, b)` | {best:.3f} | {best / min(base):.1f}x | ≤ {TARGET_COMPARE_S} s "
        f"{'✓' if best <= TARGET_COMPARE_S else '✗'} |"
    )
    print(f"\n(building the synthetic evals: {build:.2f} s)")
    reg = cmp.regressions
    first = reg["first_divergent_step"].value_counts().to_dict()
    print(f"check: {len(reg):,} regressions (expected {len(changed):,}), first divergent: {first}")
    print(cmp.summary.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--compare-samples", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--only", choices=["eval", "compare"])
    args = ap.parse_args()
    if args.only in (None, "eval"):
        asyncio.run(bench_eval(args.samples, args.rounds))
    if args.only in (None, "compare"):
        bench_compare(args.compare_samples)


if __name__ == "__main__":
    main()

"""Compare of two stored evals loaded by id, and the regression gate on it.

    .venv/bin/python bench/bench_eval_compare.py                 # 10,000 samples, 5 rounds
    .venv/bin/python bench/bench_eval_compare.py --samples 2000 --rounds 3

Two evals of ``--samples`` samples (bench_eval.py's synthetic ones: 5 steps, 5 events, 3 scorers,
5% of b's samples regressed at step s2) are written in the real storage format under a temporary
project's ``.wistro/evals/``. Timed, interleaved, median of the rounds:

* baseline: reading both ``results.jsonl`` files line by line with ``json.loads`` (the floor of
  any compare that loads from disk);
* ``we.compare(id_a, id_b)``: loading both evals by id and comparing them (pairing, tests,
  first divergent steps, per-step metrics, flaky lookup among the other evals of a version);
* ``cmp.gate()`` on the comparison.

The issue's target: the compare by id within 2 s at 10,000 samples (an absolute figure, for this
machine; the ratio is what compares across machines).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import synthetic_eval

from wistro import eval as we

TARGET_S = 2.0


def write_eval(root: Path, label: str, n: int, changed: set[int], seed: int) -> str:
    """bench_eval's synthetic eval, stored as ``we.run`` stores one."""
    e = synthetic_eval(label, n, changed, seed)
    folder = root / ".wistro" / "evals" / e.eval_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(e.meta.to_dict()), encoding="utf-8")
    with (folder / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in e.results:
            fh.write(json.dumps(r.to_dict()) + "\n")
    return folder.name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.samples
    tmp = Path(tempfile.mkdtemp(prefix="wistro-bench-compare-"))
    try:
        (tmp / "wistro.yml").write_text("name: bench\n")
        changed = set(random.Random(0).sample(range(n), n // 20))
        ids = write_eval(tmp, "a", n, set(), 1), write_eval(tmp, "b", n, changed, 2)
        files = [tmp / ".wistro" / "evals" / i / "results.jsonl" for i in ids]
        base, cmp_t, gate_t = [], [], []
        cmp = None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for f in files:
                with f.open(encoding="utf-8") as fh:
                    _ = [json.loads(line) for line in fh]
            base.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cmp = we.compare(ids[0], ids[1], root=tmp)
            cmp_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gate = cmp.gate()
            gate_t.append(time.perf_counter() - t0)
        assert cmp is not None
        b, c, g = (statistics.median(x) for x in (base, cmp_t, gate_t))
        print(f"## compare of two stored evals of {n:,} samples, by id (median of {args.rounds})\n")
        print("| what | seconds | ratio to baseline | target |")
        print("|---|---:|---:|---:|")
        print(f"| baseline: `json.loads` of both results.jsonl | {b:.3f} | 1.00x | |")
        mark = "✓" if c <= TARGET_S else "✗"
        print(f"| `we.compare(id_a, id_b)` | {c:.3f} | {c / b:.2f}x | ≤ {TARGET_S:g} s {mark} |")
        print(f"| `cmp.gate()` | {g:.4f} | {g / b:.3f}x | |")
        reg = cmp.regressions
        print(f"\ncheck: {len(reg):,} regressions (expected {len(changed):,}); {gate.line[:100]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

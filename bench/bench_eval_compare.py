"""Compare of two stored evals loaded by id, and the regression gate on it.

    .venv/bin/python bench/bench_eval_compare.py                 # 10,000 samples, 5 rounds
    .venv/bin/python bench/bench_eval_compare.py --samples 2000 --rounds 3

Two evals of ``--samples`` samples (5 steps, 5 events, 3 scorers: 2 pass/fail, 1 numeric; 5% of
b's samples regressed at step s2) are written in the real storage format under a temporary
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
import tempfile
import time
import warnings
from pathlib import Path

from wistro import eval as we
from wistro.eval.results import EvalMeta, SampleResult
from wistro.eval.version import ProjectVersion

TARGET_S = 2.0


def write_eval(root: Path, label: str, n: int, changed: set[int], seed: int) -> str:
    rng = random.Random(seed)
    steps = {f"s{i}": f"h{i}" for i in range(5)}
    if label == "b":
        steps["s2"] = "h2-changed"
    version = ProjectVersion(label * 16, steps, {k: f"src/{k}.step.py" for k in steps}, label=label)
    meta = EvalMeta("bench", "d1", version, ["error_free", "emitted(t4)", "quality"])
    meta.status = "complete"
    folder = root / ".wistro" / "evals" / f"eval-{label}"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta.to_dict()), encoding="utf-8")
    with (folder / "results.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(n):
            bad = i in changed
            r = SampleResult(f"s{i:05d}", f"h{i:05d}", "t0", latency_ms=rng.uniform(1, 3))
            r.spans = [
                {"step": f"s{k}", "topic": f"t{k}", "status": "ok", "start_ms": k * 0.1,
                 "end_ms": k * 0.1 + 0.05}
                for k in range(5)
            ]  # fmt: skip
            r.events = [{"topic": "t0", "data": {"id": i}, "source": "eval", "span": None}]
            r.events += [
                {"topic": f"t{k + 1}", "data": {"id": i, "v": 2.5 if bad and k >= 2 else 1.5},
                 "source": f"s{k}", "span": k}
                for k in range(4)
            ]  # fmt: skip
            quality = rng.uniform(0.6, 0.9) - (0.3 if bad else 0.0)
            r.scores = {
                "error_free": {"value": 1.0, "passed": True, "rationale": ""},
                "emitted(t4)": {"value": 0.0 if bad else 1.0, "passed": not bad, "rationale": ""},
                "quality": {"value": quality, "passed": quality >= 0.5, "rationale": ""},
            }
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

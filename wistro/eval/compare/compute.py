"""Computing comparisons: ``compare`` (two evals, or several against a baseline, by object or
stored id) and ``compare_two`` (pair the samples, test each scorer, find where the runs diverge,
count the regressions through each step)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wistro.errors import WistroError
from wistro.eval.compare.comparison import Comparison, MultiComparison
from wistro.eval.compare.divergence import _outputs_equal, first_divergent_step
from wistro.eval.compare.samples import (
    BAD,
    FIXED_ERROR,
    IMPROVED_S,
    NEW_ERROR,
    ONLY_A,
    ONLY_B,
    REGRESSED_S,
    UNCHANGED_S,
    _aggregate,
)
from wistro.eval.results import EvalResult, SampleResult


class EvalComparisonWarning(UserWarning):
    """The two evals are not strictly comparable (different datasets or scorers)."""


def _load(x: EvalResult | str, root: str | Path | None) -> EvalResult:
    return x if isinstance(x, EvalResult) else EvalResult.load(x, root)


def compare(
    a: EvalResult | str | Sequence[EvalResult | str],
    b: EvalResult | str | None = None,
    *,
    baseline: EvalResult | str | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    root: str | Path | None = None,
) -> Any:
    """Compare two evals (``EvalResult``s or stored eval ids, ``latest``), or several against a
    baseline: ``compare([v1, v2, v3], baseline=v1)``. Returns a ``Comparison`` (two) or a
    ``MultiComparison``."""
    if isinstance(a, EvalResult | str):
        if b is None:
            raise WistroError("compare needs two evals, or a list of evals")
        return compare_two(_load(a, root), _load(b, root), alpha=alpha, n_boot=n_boot, seed=seed)
    evals = [_load(x, root) for x in a]
    if b is not None:
        evals.append(_load(b, root))
    base = _load(baseline, root) if baseline is not None else evals[0]
    others = [e for e in evals if e.eval_id != base.eval_id]
    if not others:
        raise WistroError("compare needs at least one eval besides the baseline")
    if len(others) == 1 and len(evals) == 2:
        return compare_two(base, others[0], alpha=alpha, n_boot=n_boot, seed=seed)
    return _compare_many(base, others, alpha=alpha, n_boot=n_boot, seed=seed)


def _compare_many(
    base: EvalResult, others: list[EvalResult], *, alpha: float, n_boot: int, seed: int
) -> MultiComparison:
    import pandas as pd

    comps: dict[str, Comparison] = {}
    summaries = []
    rows = []
    for other in others:
        key = other.label if other.label not in comps else other.eval_id
        c = compare_two(base, other, alpha=alpha, n_boot=n_boot, seed=seed)
        comps[key] = c
        s = c.summary.copy()
        s.insert(0, "version", key)
        s.insert(1, "eval_id", other.eval_id)
        summaries.append(s)
        r = c.rows.copy()
        r.insert(0, "version", key)
        rows.append(r)
    return MultiComparison(
        base, comps, pd.concat(summaries, ignore_index=True), pd.concat(rows, ignore_index=True)
    )


def compare_two(
    a: EvalResult, b: EvalResult, *, alpha: float = 0.05, n_boot: int = 2000, seed: int = 0
) -> Comparison:
    import numpy as np
    import pandas as pd

    from wistro.eval.stats import paired_test

    notes: list[str] = []
    if a.meta.dataset != b.meta.dataset or a.meta.dataset_version != b.meta.dataset_version:
        notes.append(
            f"the evals used different dataset versions ({a.meta.dataset}@"
            f"{a.meta.dataset_version} vs {b.meta.dataset}@{b.meta.dataset_version}): "
            "only the samples both have are compared"
        )
    scorers = [s for s in a.scorers if s in b.scorers]
    dropped = sorted(set(a.scorers) ^ set(b.scorers))
    if dropped:
        notes.append(f"scorers not in both evals are left out: {', '.join(dropped)}")
    if not a.complete or not b.complete:
        notes.append("an eval is incomplete: its missing samples are unpaired")
    for note in notes:
        warnings.warn(note, EvalComparisonWarning, stacklevel=3)

    agg_a = {sid: _aggregate(rs, scorers) for sid, rs in a.by_sample().items()}
    agg_b = {sid: _aggregate(rs, scorers) for sid, rs in b.by_sample().items()}

    # pair by sample id, then by input hash
    paired: list[tuple[str, str]] = [(sid, sid) for sid in agg_a if sid in agg_b]
    left_a = [sid for sid in agg_a if sid not in agg_b]
    left_b = {sid for sid in agg_b if sid not in agg_a}
    by_hash_b: dict[str, str] = {}
    for sid in agg_b:
        if sid in left_b:
            by_hash_b.setdefault(agg_b[sid].first.input_hash, sid)
    only_a: list[str] = []
    for sid in left_a:
        match = by_hash_b.pop(agg_a[sid].first.input_hash, None)
        if match is not None:
            paired.append((sid, match))
            left_b.discard(match)
        else:
            only_a.append(sid)
    only_b = [sid for sid in agg_b if sid in left_b]

    changed = a.version.changed_steps(b.version)
    rows: list[dict[str, Any]] = []
    pairs: dict[str, tuple[SampleResult | None, SampleResult | None]] = {}
    va = {s: np.full(len(paired), np.nan) for s in scorers}
    vb = {s: np.full(len(paired), np.nan) for s in scorers}
    through: dict[str, int] = {}
    first_at: dict[str, int] = {}
    for i, (sa, sb) in enumerate(paired):
        x, y = agg_a[sa], agg_b[sb]
        worse: list[str] = []
        better: list[str] = []
        for s in scorers:
            xa, yb = x.values[s], y.values[s]
            if xa is not None:
                va[s][i] = xa
            if yb is not None:
                vb[s][i] = yb
            pa, pb = x.passed[s], y.passed[s]
            if pa is not None and pb is not None and pa != pb:
                (worse if pa else better).append(s)
        if y.failed and not x.failed:
            status = NEW_ERROR
        elif x.failed and not y.failed:
            status = FIXED_ERROR
        elif worse:
            status = REGRESSED_S
        elif better:
            status = IMPROVED_S
        else:
            status = UNCHANGED_S
        same = _outputs_equal(x.first, y.first)
        divergent = None if same else first_divergent_step(x.first, y.first)
        if status in BAD:
            for step in {*x.first.steps, *y.first.steps}:
                through[step] = through.get(step, 0) + 1
            if divergent is not None:
                first_at[divergent] = first_at.get(divergent, 0) + 1
        pairs[sa] = (x.first, y.first)
        row: dict[str, Any] = {
            "sample_id": sa,
            "sample_id_b": sb,
            "topic": x.first.topic,
            "status": status,
            "output_changed": not same,
            "first_divergent_step": divergent,
            "error_a": x.first.error or ("; ".join(x.first.errors) or None),
            "error_b": y.first.error or ("; ".join(y.first.errors) or None),
            "latency_ms_a": x.first.latency_ms,
            "latency_ms_b": y.first.latency_ms,
            "worse": worse,
            "better": better,
        }
        for s in scorers:
            row[f"{s}:a"] = x.values[s]
            row[f"{s}:b"] = y.values[s]
        rows.append(row)
    for sid, status in [(s, ONLY_A) for s in only_a] + [(s, ONLY_B) for s in only_b]:
        agg = (agg_a if status == ONLY_A else agg_b)[sid]
        pairs[sid] = (agg.first, None) if status == ONLY_A else (None, agg.first)
        row = {
            "sample_id": sid,
            "sample_id_b": sid if status == ONLY_B else None,
            "topic": agg.first.topic,
            "status": status,
            "output_changed": None,
            "first_divergent_step": None,
            "error_a": agg.first.error if status == ONLY_A else None,
            "error_b": agg.first.error if status == ONLY_B else None,
            "latency_ms_a": agg.first.latency_ms if status == ONLY_A else None,
            "latency_ms_b": agg.first.latency_ms if status == ONLY_B else None,
            "worse": [],
            "better": [],
        }
        for s in scorers:
            row[f"{s}:a"] = agg.values[s] if status == ONLY_A else None
            row[f"{s}:b"] = agg.values[s] if status == ONLY_B else None
        rows.append(row)
    if only_a or only_b:
        notes.append(f"unpaired samples: {len(only_a)} only in a, {len(only_b)} only in b")

    summary_rows = []
    for s in scorers:
        ok = ~(np.isnan(va[s]) | np.isnan(vb[s]))
        t = paired_test(va[s][ok], vb[s][ok], alpha=alpha, n_boot=n_boot, seed=seed)
        summary_rows.append(
            {
                "scorer": s,
                "n_paired": t.n,
                "mean_a": t.mean_a,
                "mean_b": t.mean_b,
                "diff": t.diff,
                "ci_low": t.ci_low,
                "ci_high": t.ci_high,
                "p_value": t.p_value,
                "test": t.test,
                "verdict": t.verdict,
            }
        )
    summary = pd.DataFrame(
        summary_rows,
        columns=[
            "scorer",
            "n_paired",
            "mean_a",
            "mean_b",
            "diff",
            "ci_low",
            "ci_high",
            "p_value",
            "test",
            "verdict",
        ],
    )
    row_cols = [
        "sample_id",
        "sample_id_b",
        "topic",
        "status",
        "output_changed",
        "first_divergent_step",
        "error_a",
        "error_b",
        "latency_ms_a",
        "latency_ms_b",
        "worse",
        "better",
        *[f"{s}:{side}" for s in scorers for side in ("a", "b")],
    ]
    rows_df = pd.DataFrame(rows, columns=row_cols)

    step_rows = []
    for step in sorted(set(a.version.steps) | set(b.version.steps) | set(through)):
        step_rows.append(
            {
                "step": step,
                "change": changed.get(step, "unchanged"),
                "file": b.version.files.get(step) or a.version.files.get(step),
                "n_regressions": through.get(step, 0),
                "n_first_divergent": first_at.get(step, 0),
            }
        )
    steps_df = pd.DataFrame(
        step_rows, columns=["step", "change", "file", "n_regressions", "n_first_divergent"]
    )
    return Comparison(a, b, summary, rows_df, steps_df, notes, pairs)

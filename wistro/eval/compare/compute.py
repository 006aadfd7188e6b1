"""Computing comparisons: ``compare`` (two evals, or several against a baseline, by object or
stored id) and ``compare_two`` (pair the samples, test each scorer, find where the runs diverge,
count the regressions through each step)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wistro.collector import collector_paused
from wistro.errors import WistroError
from wistro.eval.compare.comparison import Comparison, MultiComparison
from wistro.eval.compare.divergence import _outputs_equal, first_divergent_step
from wistro.eval.compare.samples import (
    BAD,
    FIXED_ERROR,
    FLAKY,
    IMPROVED_S,
    NEW_ERROR,
    ONLY_A,
    ONLY_B,
    REGRESSED_S,
    UNCHANGED_S,
    _Agg,
    _aggregate,
)
from wistro.eval.compare.sources import stored_root
from wistro.eval.results import EvalResult, SampleResult, list_evals


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
    """Pair the samples of ``a`` and ``b``, test each scorer, find where runs diverge (see the
    package docstring). The cyclic collector is paused meanwhile: what is built is acyclic."""
    with collector_paused():
        return _compare_two(a, b, alpha=alpha, n_boot=n_boot, seed=seed)


def _compare_two(
    a: EvalResult, b: EvalResult, *, alpha: float, n_boot: int, seed: int
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
        warnings.warn(note, EvalComparisonWarning, stacklevel=4)
    n_warned = len(notes)

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
    same_version = a.version.id == b.version.id
    if same_version:
        notes.append(
            f"both evals ran the same version ({a.version.short}): a sample that flips between "
            "them is flaky, not a regression"
        )
    sibling_flaky = _flaky_in_siblings(a, scorers) | _flaky_in_siblings(b, scorers)
    rows: list[dict[str, Any]] = []
    pairs: dict[str, tuple[SampleResult | None, SampleResult | None]] = {}
    va = {s: np.full(len(paired), np.nan) for s in scorers}
    vb = {s: np.full(len(paired), np.nan) for s in scorers}
    counts = {s: dict.fromkeys(_COUNTS, 0) for s in scorers}
    for by_id, side in ((agg_a, "a"), (agg_b, "b")):
        for one in by_id.values():
            for s in one.errors:
                counts[s][f"n_errors_{side}"] += 1
    through: dict[str, int] = {}
    first_at: dict[str, int] = {}
    diverge_at: dict[str, int] = {}
    n_flaky = 0
    for i, (sa, sb) in enumerate(paired):
        x, y = agg_a[sa], agg_b[sb]
        worse: list[str] = []
        better: list[str] = []
        flaky: list[str] = []
        for s in scorers:
            xa, yb = x.values[s], y.values[s]
            pa, pb = x.passed[s], y.passed[s]
            flips = pa is not None and pb is not None and pa != pb
            if s in x.flaky or s in y.flaky or (sa, s) in sibling_flaky or (same_version and flips):
                flaky.append(s)  # left out of the test and the gate
                counts[s]["n_flaky"] += 1
                continue
            if xa is not None:
                va[s][i] = xa
            if yb is not None:
                vb[s][i] = yb
            if not flips:
                continue
            if _within_tolerance(x, y, s, worse=bool(pa)):
                vb[s][i] = va[s][i]  # jitter within the relative tolerance: no change
                continue
            (worse if pa else better).append(s)
            counts[s]["n_regressed" if pa else "n_improved"] += 1
        flaky_run = x.flaky_failed or y.flaky_failed or (same_version and x.failed != y.failed)
        if x.failed != y.failed and flaky_run:
            status = FLAKY
        elif y.failed and not x.failed:
            status = NEW_ERROR
        elif x.failed and not y.failed:
            status = FIXED_ERROR
        elif worse:
            status = REGRESSED_S
        elif better:
            status = IMPROVED_S
        elif flaky:
            status = FLAKY
        else:
            status = UNCHANGED_S
        n_flaky += status == FLAKY
        same = _outputs_equal(x.first, y.first)
        divergent = None if same else first_divergent_step(x.first, y.first)
        if divergent is not None:
            diverge_at[divergent] = diverge_at.get(divergent, 0) + 1
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
            "error_a": _error_of(x),
            "error_b": _error_of(y),
            "latency_ms_a": x.first.latency_ms,
            "latency_ms_b": y.first.latency_ms,
            "worse": worse,
            "better": better,
            "flaky": flaky,
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
            "flaky": [],
        }
        for s in scorers:
            row[f"{s}:a"] = agg.values[s] if status == ONLY_A else None
            row[f"{s}:b"] = agg.values[s] if status == ONLY_B else None
        rows.append(row)
    if only_a or only_b:
        notes.append(f"unpaired samples: {len(only_a)} only in a, {len(only_b)} only in b")

    if n_flaky:
        notes.append(
            f"{n_flaky} flaky sample(s) (their repeats disagree, or they flip between evals of "
            "one version): left out of the tests and the gate"
        )
    min_d = min_discordant(alpha)
    summary_rows = []
    for s in scorers:
        ok = ~(np.isnan(va[s]) | np.isnan(vb[s]))
        xa_, yb_ = va[s][ok], vb[s][ok]
        t = paired_test(xa_, yb_, alpha=alpha, n_boot=n_boot, seed=seed)
        n_disc = int(np.sum(xa_ != yb_))
        c = counts[s]
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
                "n_discordant": n_disc,
                "can_reach_significance": n_disc >= min_d,
                **c,
            }
        )
        notes.extend(_scorer_notes(s, t, c, n_disc, min_d, alpha))
    summary = pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS)
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
        "flaky",
        *[f"{s}:{side}" for s in scorers for side in ("a", "b")],
    ]
    rows_df = pd.DataFrame(rows, columns=row_cols)

    metrics_a, metrics_b = step_metrics(a), step_metrics(b)
    step_rows = []
    for step in sorted(set(a.version.steps) | set(b.version.steps) | set(through)):
        ma, mb = metrics_a.get(step, _NO_SPANS), metrics_b.get(step, _NO_SPANS)
        step_rows.append(
            {
                "step": step,
                "change": changed.get(step, "unchanged"),
                "file": b.version.files.get(step) or a.version.files.get(step),
                "n_regressions": through.get(step, 0),
                "n_first_divergent": first_at.get(step, 0),
                "n_divergent": diverge_at.get(step, 0),
                "spans_a": ma[0],
                "spans_b": mb[0],
                "error_rate_a": ma[1],
                "error_rate_b": mb[1],
                "p50_ms_a": ma[2],
                "p50_ms_b": mb[2],
            }
        )
    steps_df = pd.DataFrame(step_rows, columns=STEP_COLUMNS)
    for note in notes[n_warned:]:
        if not note.startswith("unpaired samples"):  # that one is in the report only
            warnings.warn(note, EvalComparisonWarning, stacklevel=4)
    return Comparison(
        a, b, summary, rows_df, steps_df, notes, pairs, alpha=alpha, n_boot=n_boot, seed=seed
    )


_COUNTS = ("n_regressed", "n_improved", "n_flaky", "n_errors_a", "n_errors_b")
SUMMARY_COLUMNS = [
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
    "n_discordant",
    "can_reach_significance",
    *_COUNTS,
]
STEP_COLUMNS = [
    "step",
    "change",
    "file",
    "n_regressions",
    "n_first_divergent",
    "n_divergent",
    "spans_a",
    "spans_b",
    "error_rate_a",
    "error_rate_b",
    "p50_ms_a",
    "p50_ms_b",
]
_NO_SPANS = (0, math.nan, math.nan)


def min_discordant(alpha: float) -> int:
    """The fewest discordant pairs (pass/fail: samples that flipped; numeric: non-zero
    differences) with which the exact two-sided McNemar / signed-rank test can reach
    ``p < alpha``: its smallest p-value with ``d`` of them, all one way, is ``2 * 0.5**d``
    (6 at 0.05)."""
    d = 1
    while 2 * 0.5**d >= alpha and d < 64:
        d += 1
    return d


def _scorer_notes(
    s: str, t: Any, c: dict[str, int], n_disc: int, min_d: int, alpha: float
) -> list[str]:
    notes = []
    if c["n_errors_a"] or c["n_errors_b"]:
        notes.append(
            f"scorer {s} raised on {c['n_errors_a']} sample(s) of a and {c['n_errors_b']} of b: "
            "those samples are left out of its test"
        )
    if t.n and 0 < n_disc < min_d:
        notes.append(
            f"{s}: {n_disc} discordant pair(s) of {t.n}: the {t.test} test cannot reach "
            f"p < {alpha:g} with fewer than {min_d}; the default gate fails on any regression "
            f"of {s} instead"
        )
    if t.n and t.ci_low == t.ci_high and t.diff != 0:
        notes.append(
            f"{s}: the 95% interval [{t.ci_low:+.3f}, {t.ci_high:+.3f}] is zero-width: all "
            f"{t.n} paired differences are {t.diff:+.3f}, so resampling cannot vary them"
        )
    return notes


def _error_of(x: _Agg) -> str | None:
    r = x.first
    return r.error or ("; ".join(r.errors) or None)


def _within_tolerance(x: _Agg, y: _Agg, s: str, *, worse: bool) -> bool:
    """Whether a latency scorer's flip is jitter: the measured quantity (lower is better) moved
    by no more than the scorer's relative tolerance in the direction of the flip."""
    ox, oy = x.observed.get(s), y.observed.get(s)
    if ox is None or oy is None:
        return False
    (ma, tol), (mb, _) = ox, oy
    return mb <= ma * (1 + tol) if worse else mb >= ma * (1 - tol)


def _flaky_in_siblings(e: EvalResult, scorers: list[str]) -> set[tuple[str, str]]:
    """``(sample id, scorer)`` pairs that flip between ``e`` and the other stored evals of the
    same version and dataset version (the newest three): flaky, whatever the code did."""
    root = stored_root(e) if e.path is not None else None  # an eval built in memory: none
    if root is None:
        return set()
    siblings = [
        (info.meta.created, info.eval_id)
        for info in list_evals(root)
        if info.eval_id != e.eval_id
        and info.meta.version.id == e.version.id
        and info.meta.dataset == e.meta.dataset
        and info.meta.dataset_version == e.meta.dataset_version
    ]
    if not siblings:
        return set()
    mine = {sid: _aggregate(rs, scorers) for sid, rs in e.by_sample().items()}
    out: set[tuple[str, str]] = set()
    for _, eval_id in sorted(siblings)[-3:]:
        try:
            other = EvalResult.load(eval_id, stored_root(e))
        except WistroError:
            continue
        for sid, rs in other.by_sample().items():
            x = mine.get(sid)
            if x is None:
                continue
            y = _aggregate(rs, scorers)
            for s in scorers:
                if None not in (x.passed[s], y.passed[s]) and x.passed[s] != y.passed[s]:
                    out.add((sid, s))
    return out


def step_metrics(e: EvalResult) -> dict[str, tuple[int, float, float]]:
    """Per step over every result of ``e``: ``(spans, error rate, median duration in ms)``."""
    spans: dict[str, int] = {}
    errors: dict[str, int] = {}
    durations: dict[str, list[float]] = {}
    for r in e.results:
        for span in r.spans:
            step = span["step"]
            spans[step] = spans.get(step, 0) + 1
            if span.get("status") != "ok":
                errors[step] = errors.get(step, 0) + 1
            start, end = span.get("start_ms"), span.get("end_ms")
            if start is not None and end is not None:
                durations.setdefault(step, []).append(float(end) - float(start))
    out = {}
    for step, n in spans.items():
        d = sorted(durations.get(step, ()))
        out[step] = (n, errors.get(step, 0) / n, d[len(d) // 2] if d else math.nan)
    return out

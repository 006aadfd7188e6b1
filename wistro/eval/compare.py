"""Comparing evals: pair the samples of two versions, test each scorer, find where runs diverge.

``compare(a, b)`` returns a ``Comparison``: ``.summary`` (per scorer), ``.rows`` (per sample),
``.steps`` (per step: changed or not, regressions through it), ``.regressions``, ``.warnings``,
and the paired results themselves (``.pair(sample_id)``, ``.step_diff(sample_id)``) on which
richer views (a run-diff widget, charts) are built. ``compare([v1, v2, v3], baseline=v1)``
compares each version against the baseline (a ``MultiComparison``).

Per sample (``.rows["status"]``): ``new_error`` / ``fixed_error`` when the run failed (did not
run, a step failed, an emit was refused) on one side only; else ``regressed`` when a scorer that
passed now fails (``worse`` lists them), ``improved`` when one that failed now passes and none got
worse, ``unchanged`` otherwise; ``only_a`` / ``only_b`` for unpaired samples. Numeric drifts that
flip no pass/fail are not per-sample regressions: the per-scorer summary tests them (Wilcoxon).
With ``repeats``, a sample's value is the mean over repeats and it passes by majority.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.eval.results import EvalResult, SampleResult

if TYPE_CHECKING:
    import pandas as pd

IMPROVED_S = "improved"
REGRESSED_S = "regressed"
UNCHANGED_S = "unchanged"
NEW_ERROR = "new_error"
FIXED_ERROR = "fixed_error"
ONLY_A = "only_a"
ONLY_B = "only_b"
BAD = (REGRESSED_S, NEW_ERROR)
VERDICT_REGRESSED = "regressed"  # wistro.eval.stats.REGRESSED (stats loads numpy and scipy)
STATUS_ORDER = {
    REGRESSED_S: 0,
    NEW_ERROR: 1,
    IMPROVED_S: 2,
    FIXED_ERROR: 3,
    UNCHANGED_S: 4,
    ONLY_A: 5,
    ONLY_B: 6,
}


class EvalComparisonWarning(UserWarning):
    """The two evals are not strictly comparable (different datasets or scorers)."""


@dataclass
class _Agg:
    """One sample's results (all repeats) in one eval, reduced to what compare needs."""

    first: SampleResult
    values: dict[str, float | None]
    passed: dict[str, bool | None]
    failed: bool


def _aggregate(results: list[SampleResult], scorers: list[str]) -> _Agg:
    values: dict[str, float | None] = {}
    passed: dict[str, bool | None] = {}
    for name in scorers:
        vs = []
        ps = []
        for r in results:
            s = r.scores.get(name)
            if s is not None and s.get("value") is not None:
                vs.append(float(s["value"]))
                ps.append(bool(s.get("passed")))
        values[name] = sum(vs) / len(vs) if vs else None
        passed[name] = (sum(ps) * 2 >= len(ps)) if ps else None
    failed = sum(r.failed for r in results) * 2 > len(results)
    return _Agg(min(results, key=lambda r: r.repeat), values, passed, failed)


def _outputs_equal(a: SampleResult, b: SampleResult) -> bool:
    if a.error != b.error or a.status != b.status or a.state != b.state:
        return False
    if [(e["topic"], e["data"], e.get("error") is None) for e in a.events] != [
        (e["topic"], e["data"], e.get("error") is None) for e in b.events
    ]:
        return False
    return [(s["step"], s["status"], s.get("writes")) for s in a.spans] == [
        (s["step"], s["status"], s.get("writes")) for s in b.spans
    ]


def first_divergent_step(a: SampleResult, b: SampleResult) -> str | None:
    """The first step, in causal (start) order, whose output (emitted topics and payloads,
    status, state writes) differs between the two runs; None when no step differs."""
    out_a, out_b = a.step_outputs(), b.step_outputs()
    start: dict[str, float] = {}
    for s in b.spans:
        start.setdefault(s["step"], s["start_ms"])
    for s in a.spans:  # run a's order wins for steps in both
        if s["step"] not in start or start[s["step"]] > s["start_ms"]:
            start[s["step"]] = s["start_ms"]
    for step in sorted(set(out_a) | set(out_b), key=lambda n: (start.get(n, 0.0), n)):
        if out_a.get(step) != out_b.get(step):
            return step
    return None


def _load(x: EvalResult | str, root: str | Path | None) -> EvalResult:
    return x if isinstance(x, EvalResult) else EvalResult.load(x, root)


@dataclass
class Comparison:
    a: EvalResult
    b: EvalResult
    summary: pd.DataFrame
    rows: pd.DataFrame
    steps: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    pairs: dict[str, tuple[SampleResult | None, SampleResult | None]] = field(default_factory=dict)

    @property
    def regressions(self) -> pd.DataFrame:
        """Per-sample rows that got worse (regressed or new error)."""
        return self.rows[self.rows["status"].isin(BAD)].reset_index(drop=True)

    @property
    def has_regression(self) -> bool:
        return bool(len(self.regressions)) or bool(
            (self.summary["verdict"] == VERDICT_REGRESSED).any()
        )

    def pair(self, sample_id: str) -> tuple[SampleResult | None, SampleResult | None]:
        """The two results (first repeat) of a sample: ``(a, b)``, None on the missing side."""
        return self.pairs[sample_id]

    def step_diff(self, sample_id: str) -> pd.DataFrame:
        """The two runs of a sample aligned by step: per step its status and emits in a and b,
        and whether they differ (the data a side-by-side run-diff view shows)."""
        import pandas as pd

        ra, rb = self.pair(sample_id)
        out_a = ra.step_outputs() if ra else {}
        out_b = rb.step_outputs() if rb else {}
        order = list(dict.fromkeys([*(ra.steps if ra else []), *(rb.steps if rb else [])]))
        changed = self.a.version.changed_steps(self.b.version)
        rows = []
        for step in order:
            a_, b_ = out_a.get(step), out_b.get(step)
            rows.append(
                {
                    "step": step,
                    "status_a": ",".join(o[1] for o in a_) if a_ else None,
                    "status_b": ",".join(o[1] for o in b_) if b_ else None,
                    "emits_a": [list(e) for o in a_ for e in o[2]] if a_ else [],
                    "emits_b": [list(e) for o in b_ for e in o[2]] if b_ else [],
                    "differs": a_ != b_,
                    "source_changed": changed.get(step),
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "step",
                "status_a",
                "status_b",
                "emits_a",
                "emits_b",
                "differs",
                "source_changed",
            ],
        )

    def report(self, max_rows: int = 20) -> str:
        """A plain-text report: the summary, then the regressions."""
        lines = [f"compare {self.a.eval_id} ({self.a.label}) -> {self.b.eval_id} ({self.b.label})"]
        lines += [f"warning: {w}" for w in self.warnings]
        for r in self.summary.itertuples(index=False):
            lines.append(
                f"  {r.scorer}: {r.mean_a:.3f} -> {r.mean_b:.3f} (diff {r.diff:+.3f}, "
                f"95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}], p={r.p_value:.3g}, "
                f"n={r.n_paired}): {r.verdict}"
            )
        counts = self.rows["status"].value_counts().to_dict() if len(self.rows) else {}
        lines.append(
            "  samples: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        )
        reg = self.regressions
        if len(reg):
            lines.append(f"regressions ({len(reg)}):")
            for row in reg.head(max_rows).to_dict(orient="records"):
                where = row["first_divergent_step"] or "-"
                failing = row["worse"]
                lines.append(
                    f"  {row['sample_id']} [{row['status']}] first divergent step: {where}"
                    + (f"; now failing: {', '.join(failing)}" if failing else "")
                    + (f"; error: {row['error_b']}" if row.get("error_b") else "")
                )
            if len(reg) > max_rows:
                lines.append(f"  ... and {len(reg) - max_rows} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.eval_id,
            "b": self.b.eval_id,
            "warnings": self.warnings,
            "has_regression": self.has_regression,
            "summary": self.summary.to_dict(orient="records"),
            "regressions": self.regressions.to_dict(orient="records"),
            "steps": self.steps.to_dict(orient="records"),
            "counts": self.rows["status"].value_counts().to_dict() if len(self.rows) else {},
        }

    def _repr_html_(self) -> str:
        head = (
            f"<b>{html.escape(self.a.label)}</b> → <b>{html.escape(self.b.label)}</b> · "
            f"{len(self.rows)} samples · {len(self.regressions)} regression(s)"
        )
        parts = [f"<div>{head}</div>"]
        parts += [f"<div style='color:#b45309'>⚠ {html.escape(w)}</div>" for w in self.warnings]
        if len(self.regressions):
            parts.append("<h4>Regressions</h4>" + self.regressions.head(50).to_html(index=False))
        parts.append("<h4>Scorers</h4>" + self.summary.to_html(index=False))
        changed = self.steps[self.steps["change"] != "unchanged"]
        if len(changed):
            parts.append("<h4>Changed steps</h4>" + changed.to_html(index=False))
        ordered = self.rows.sort_values("status", key=lambda s: s.map(STATUS_ORDER), kind="stable")
        parts.append("<h4>Samples</h4>" + ordered.head(200).to_html(index=False))
        return "<div class='wistro-compare'>" + "".join(parts) + "</div>"

    def __repr__(self) -> str:
        return f"<Comparison {self.a.eval_id} -> {self.b.eval_id}>\n{self.report()}"


@dataclass
class MultiComparison:
    baseline: EvalResult
    comparisons: dict[str, Comparison]
    summary: pd.DataFrame
    rows: pd.DataFrame

    @property
    def regressions(self) -> pd.DataFrame:
        return self.rows[self.rows["status"].isin(BAD)].reset_index(drop=True)

    @property
    def warnings(self) -> list[str]:
        return [w for c in self.comparisons.values() for w in c.warnings]

    @property
    def has_regression(self) -> bool:
        return any(c.has_regression for c in self.comparisons.values())

    def _repr_html_(self) -> str:
        parts = [f"<b>baseline {html.escape(self.baseline.label)}</b>"]
        if len(self.regressions):
            parts.append("<h4>Regressions</h4>" + self.regressions.head(50).to_html(index=False))
        parts.append("<h4>Scorers</h4>" + self.summary.to_html(index=False))
        return "<div class='wistro-compare'>" + "".join(parts) + "</div>"


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

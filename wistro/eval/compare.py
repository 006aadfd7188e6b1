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
from typing import TYPE_CHECKING, Any, Protocol

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

    # ------------------------------------------------------------ seeing it (chart, run diff)
    def chart(self, n_boot: int = 2000, seed: int = 0) -> Chart:
        """Each scorer's mean per version with its seeded bootstrap 95% interval (paired
        samples), as a static SVG chart (``_repr_svg_`` / ``_repr_html_``, no plotting library)."""
        paired = self.rows[~self.rows["status"].isin((ONLY_A, ONLY_B))]
        versions = [self.a.label, self.b.label]
        if versions[0] == versions[1]:
            versions = [f"{self.a.label} ({self.a.eval_id[:8]})", f"{self.b.label} (b)"]
        series = []
        for r in self.summary.itertuples(index=False):
            name = str(r.scorer)
            points = [
                Comparison._mean_ci(paired[f"{name}:{side}"], n_boot, seed) for side in ("a", "b")
            ]
            series.append((name, points, str(r.verdict)))
        return Chart(
            f"{self.a.label} → {self.b.label}: mean per scorer, 95% bootstrap interval",
            versions,
            series,
        )

    @staticmethod
    def _mean_ci(values: Any, n_boot: int, seed: int) -> tuple[float, float, float] | None:
        import numpy as np

        from wistro.eval.stats import bootstrap_ci

        arr = np.asarray([v for v in values if v is not None], dtype=float)
        arr = arr[~np.isnan(arr)]
        if not len(arr):
            return None
        low, high = bootstrap_ci(arr, n_boot=n_boot, seed=seed)
        return float(arr.mean()), low, high

    def project_root(self, side: str = "b") -> Path | None:
        """The folder of the project an eval was stored in (``side``: ``"a"`` or ``"b"``)."""
        e = self.a if side == "a" else self.b
        if e.path is not None:
            return Path(e.path).resolve().parents[2]  # <root>/.wistro/evals/<id>
        try:
            from wistro.project.paths import find_root

            return find_root(None)
        except WistroError:
            return None

    def step_source(self, step: str, side: str) -> tuple[str | None, str]:
        """The source of ``step`` as version ``side`` (``"a"`` / ``"b"``) ran it: from git
        (``git show COMMIT:path``), the version's folder or the working tree, whichever has the
        file with the hash the version recorded. ``(text, where)``, or ``(None, why not)``."""
        import hashlib

        from wistro.eval.version import _git

        e = self.a if side == "a" else self.b
        v = e.version
        rel = v.files.get(step)
        if rel is None:
            return "", f"{step} is not in {e.label}"
        want = (v.steps.get(step) or "").split(":")[0]
        root = self.project_root(side)
        candidates: list[tuple[str, Any]] = []
        if root is not None and v.git_commit:
            candidates.append((f"git {v.git_commit[:10]}:{rel}", ("git", root, v.git_commit)))
        if root is not None and v.revision:  # a folder version (a git revision is no folder)
            folder = Path(v.revision).expanduser()
            folder = folder if folder.is_absolute() else root / folder
            if folder.is_dir():
                candidates.append((str(folder / rel), folder / rel))
        if root is not None:
            candidates.append((f"working tree {rel}", root / rel))
        found_other = False
        for where, how in candidates:
            data: bytes | None = None
            if isinstance(how, tuple):
                try:
                    out = _git(how[1], "show", f"{how[2]}:./{rel}")
                except WistroError:
                    continue
                if out.returncode == 0:
                    data = out.stdout.encode("utf-8")
            elif how.is_file():
                data = how.read_bytes()
            if data is None:
                continue
            if not want or hashlib.sha256(data).hexdigest() == want:
                return data.decode("utf-8", errors="replace"), where
            found_other = True
        why = "the file has changed since" if found_other else "no copy of it was found"
        return None, (
            f"the source of {step} ({rel}) as {e.label} ran it is no longer available: {why}"
        )

    def code_diff(
        self, steps: Sequence[str] | None = None, context: int = 3
    ) -> list[dict[str, Any]]:
        """Per changed step (all by default): ``{step, change, file, diff, available, note}``,
        ``diff`` a unified diff of its source from a to b (empty when unavailable)."""
        import difflib

        changed = self.a.version.changed_steps(self.b.version)
        out = []
        for step in steps if steps is not None else sorted(changed):
            change = changed.get(step, "unchanged")
            src_a, where_a = self.step_source(step, "a")
            src_b, where_b = self.step_source(step, "b")
            file = self.b.version.files.get(step) or self.a.version.files.get(step)
            notes = [w for s, w in ((src_a, where_a), (src_b, where_b)) if s is None]
            text = ""
            if src_a is not None and src_b is not None:
                text = "".join(
                    difflib.unified_diff(
                        src_a.splitlines(keepends=True),
                        src_b.splitlines(keepends=True),
                        f"a/{self.a.version.files.get(step, file)} ({self.a.label})",
                        f"b/{self.b.version.files.get(step, file)} ({self.b.label})",
                        n=context,
                    )
                )
                if change == "modified" and not text:
                    notes.append("same source: the step's config changed")
            out.append(
                {
                    "step": step,
                    "change": change,
                    "file": file,
                    "diff": text,
                    "available": src_a is not None and src_b is not None,
                    "note": "; ".join(notes),
                }
            )
        return out

    @staticmethod
    def json_diff(a: Any, b: Any, path: str = "$") -> list[dict[str, Any]]:
        """Paths added, removed and changed from ``a`` to ``b`` (dicts by key, lists by index):
        ``[{path, change, a, b}]``."""
        if isinstance(a, dict) and isinstance(b, dict):
            out: list[dict[str, Any]] = []
            for k in list(a) + [k for k in b if k not in a]:
                p = f"{path}.{k}"
                if k not in b:
                    out.append({"path": p, "change": "removed", "a": a[k], "b": None})
                elif k not in a:
                    out.append({"path": p, "change": "added", "a": None, "b": b[k]})
                else:
                    out += Comparison.json_diff(a[k], b[k], p)
            return out
        if isinstance(a, list) and isinstance(b, list):
            out = []
            for i in range(max(len(a), len(b))):
                p = f"{path}[{i}]"
                if i >= len(b):
                    out.append({"path": p, "change": "removed", "a": a[i], "b": None})
                elif i >= len(a):
                    out.append({"path": p, "change": "added", "a": None, "b": b[i]})
                else:
                    out += Comparison.json_diff(a[i], b[i], p)
            return out
        if a == b and type(a) is type(b):
            return []
        return [{"path": path, "change": "changed", "a": a, "b": b}]

    def run_diff(self, sample_id: str) -> dict[str, Any]:
        """What the run-diff view shows for one sample: its row, the two runs side by side
        aligned by step (status, emitted topics and payloads, state writes), a JSON diff of the
        payloads each step emitted and of the final state, and the code diff of the changed
        steps (the first divergent one first)."""
        ra, rb = self.pair(sample_id)
        match = self.rows[self.rows["sample_id"] == sample_id]
        row = Comparison._plain(match.iloc[0].to_dict()) if len(match) else {}
        changed = self.a.version.changed_steps(self.b.version)

        def per_step(r: SampleResult | None) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            if r is None:
                return out
            for i, s in enumerate(r.spans):
                d = out.setdefault(
                    s["step"], {"status": [], "emits": [], "writes": [], "errors": []}
                )
                d["status"].append(s["status"])
                d["writes"] += s.get("writes") or []
                if s.get("error"):
                    d["errors"].append(s["error"])
                d["emits"] += [
                    {"topic": e["topic"], "data": e["data"], "error": e.get("error")}
                    for e in r.events
                    if e.get("span") == i
                ]
            return out

        sa, sb = per_step(ra), per_step(rb)
        out_a = ra.step_outputs() if ra else {}
        out_b = rb.step_outputs() if rb else {}
        order = list(dict.fromkeys([*(ra.steps if ra else []), *(rb.steps if rb else [])]))
        steps = []
        payload_diff: list[dict[str, Any]] = []
        for step in order:
            a_, b_ = sa.get(step), sb.get(step)
            steps.append(
                {
                    "step": step,
                    "differs": out_a.get(step) != out_b.get(step),
                    "source_changed": changed.get(step),
                    "a": a_,
                    "b": b_,
                }
            )
            ea = a_["emits"] if a_ else []
            eb = b_["emits"] if b_ else []
            for topic in dict.fromkeys([e["topic"] for e in ea] + [e["topic"] for e in eb]):
                xa = [e["data"] for e in ea if e["topic"] == topic]
                xb = [e["data"] for e in eb if e["topic"] == topic]
                for i in range(max(len(xa), len(xb))):
                    if i >= len(xb):
                        items = [{"path": "$", "change": "removed", "a": xa[i], "b": None}]
                    elif i >= len(xa):
                        items = [{"path": "$", "change": "added", "a": None, "b": xb[i]}]
                    else:
                        items = Comparison.json_diff(xa[i], xb[i])
                    payload_diff += [{"step": step, "topic": topic, **d} for d in items]
        first = row.get("first_divergent_step")
        code_steps = sorted(changed, key=lambda s: (s != first, s not in order, s))
        code = self.code_diff(code_steps)
        for c in code:
            c["in_run"] = c["step"] in order
        scores = [
            {"scorer": s, "a": row.get(f"{s}:a"), "b": row.get(f"{s}:b")}
            for s in self.summary["scorer"]
        ]

        def side(e: EvalResult, r: SampleResult | None) -> dict[str, Any]:
            return {
                "label": e.label,
                "eval_id": e.eval_id,
                "version": e.version.short,
                "git_commit": e.version.git_commit,
                "status": r.status if r else None,
                "error": (r.error or "; ".join(r.errors) or None) if r else None,
                "latency_ms": r.latency_ms if r else None,
                "trace_id": r.trace_id if r else None,
            }

        sample = self.a.samples.get(sample_id) or self.b.samples.get(sample_id)
        return {
            "sample_id": sample_id,
            "status": row.get("status"),
            "topic": row.get("topic"),
            "first_divergent_step": first,
            "worse": row.get("worse") or [],
            "better": row.get("better") or [],
            "input": Comparison._plain(sample.data) if sample is not None else None,
            "a": side(self.a, ra),
            "b": side(self.b, rb),
            "scores": scores,
            "steps": Comparison._plain(steps),
            "payload_diff": Comparison._plain(payload_diff),
            "state_diff": Comparison._plain(
                Comparison.json_diff(ra.state if ra else {}, rb.state if rb else {})
            ),
            "code_diff": code,
        }

    @staticmethod
    def _plain(x: Any) -> Any:
        """JSON-friendly: NaN to None, numpy scalars to Python ones, tuples to lists."""
        import math

        if isinstance(x, dict):
            return {str(k): Comparison._plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [Comparison._plain(v) for v in x]
        if hasattr(x, "item") and callable(x.item) and not isinstance(x, str | bytes):
            try:
                x = x.item()
            except (ValueError, TypeError):
                return [Comparison._plain(v) for v in list(x)]
        if isinstance(x, float) and math.isnan(x):
            return None
        return x

    def widget(self, selected: str | None = None) -> Any:
        """The richer view a front end registered with ``register_view`` (the notebook package's
        run-diff widget, ``wistro_jupyter.eval_widgets.RunDiff``, once that module is loaded:
        ``%load_ext wistro_jupyter`` loads it); else this comparison (its HTML view)."""
        return self if _view is None else _view.widget(self, selected)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The registered view's bundle (in a Jupyter kernel: the run-diff widget, with its static
        HTML as the fallback); None without one or outside a kernel (IPython then uses
        ``_repr_html_`` and ``__repr__``)."""
        return None if _view is None else _view.mimebundle(self, **kwargs)

    def __repr__(self) -> str:
        return f"<Comparison {self.a.eval_id} -> {self.b.eval_id}>\n{self.report()}"


# ---------------------------------------------------------------- views registered by front ends


class ComparisonView(Protocol):
    """A richer view of a ``Comparison`` that a front end registers with ``register_view``:
    ``wistro_jupyter.eval_widgets`` registers its run-diff widget when it is imported. The
    dependency goes one way: the front end imports this module, never the reverse."""

    def widget(self, cmp: Comparison, selected: str | None = None) -> Any:
        """What ``cmp.widget(selected)`` returns."""
        ...

    def mimebundle(
        self, cmp: Comparison, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What ``cmp._repr_mimebundle_(**kwargs)`` returns (None: IPython's other formatters)."""
        ...


_view: ComparisonView | None = None


def register_view(view: ComparisonView | None) -> ComparisonView | None:
    """Make ``view`` the one ``Comparison.widget`` and ``Comparison._repr_mimebundle_`` use
    (None: no view, the HTML view alone); returns the one it replaces."""
    global _view
    previous, _view = _view, view
    return previous


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

    def chart(self, n_boot: int = 2000, seed: int = 0) -> Chart:
        """Each scorer's mean for the baseline and every other version, with its seeded bootstrap
        95% interval (the samples each version shares with the baseline)."""
        comps = list(self.comparisons.items())
        versions = [self.baseline.label, *[k for k, _ in comps]]
        scorers = list(dict.fromkeys(s for _, c in comps for s in c.summary["scorer"]))
        series = []
        for s in scorers:
            points: list[tuple[float, float, float] | None] = []
            verdicts = []
            for i, (_, c) in enumerate(comps):
                paired = c.rows[~c.rows["status"].isin((ONLY_A, ONLY_B))]
                if f"{s}:a" not in paired:
                    points += [None] if i else [None, None]
                    continue
                if i == 0:
                    points.append(Comparison._mean_ci(paired[f"{s}:a"], n_boot, seed))
                points.append(Comparison._mean_ci(paired[f"{s}:b"], n_boot, seed))
                verdicts += list(c.summary.loc[c.summary["scorer"] == s, "verdict"])
            verdict = next((v for v in ("regressed", "improved") if v in verdicts), "")
            series.append((s, points, verdict))
        return Chart(
            f"baseline {self.baseline.label}: mean per scorer, 95% bootstrap interval",
            versions,
            series,
        )


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


# ---------------------------------------------------------------- chart (static SVG)
CHART_COLORS = ("#3b82f6", "#f59e0b", "#10b981", "#ec4899", "#8b5cf6", "#06b6d4")


@dataclass
class Chart:
    """Each scorer's mean per version with its interval: a static SVG (no plotting library).
    Text and axes use ``currentColor`` inline (``_repr_html_``: the notebook's text colour, light
    or dark theme) and a mid grey standalone (``_repr_svg_``); series colours read on both."""

    title: str
    versions: list[str]
    # (scorer, one (mean, ci_low, ci_high) or None per version, verdict)
    series: list[tuple[str, list[tuple[float, float, float] | None], str]]

    def to_svg(self, ink: str = "#808080") -> str:
        esc = html.escape
        row_h = 18 * max(1, len(self.versions)) + 14
        label_w, plot_w, right = 200, 360, 130
        top = 44
        height = top + row_h * max(1, len(self.series)) + 36
        width = label_w + plot_w + right
        values = [x for _, pts, _ in self.series for p in pts if p is not None for x in p]
        lo, hi = min([0.0, *values]), max([1.0, *values])
        if hi - lo < 1e-9:
            hi = lo + 1.0

        def x(v: float) -> float:
            return label_w + (v - lo) / (hi - lo) * plot_w

        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" class="wistro-chart" role="img" '
            f'font-family="system-ui, sans-serif" font-size="12" fill="{ink}" '
            f'stroke="none"><title>{esc(self.title)}</title>',
            f'<text x="8" y="16" font-weight="600">{esc(self.title)}</text>',
        ]
        for i, name in enumerate(self.versions):  # legend
            lx = 8 + i * 170
            c = CHART_COLORS[i % len(CHART_COLORS)]
            out.append(
                f'<circle cx="{lx + 5}" cy="30" r="5" fill="{c}"/>'
                f'<text x="{lx + 14}" y="34">{esc(name[:24])}</text>'
            )
        bottom = top + row_h * max(1, len(self.series))
        for k in range(5):  # axis
            v = lo + (hi - lo) * k / 4
            gx = x(v)
            out.append(
                f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="{top}" y2="{bottom}" stroke="{ink}" '
                f'stroke-opacity="0.25" stroke-dasharray="3 3"/>'
                f'<text x="{gx:.1f}" y="{bottom + 16}" text-anchor="middle">{v:.2g}</text>'
            )
        for j, (scorer, points, verdict) in enumerate(self.series):
            y0 = top + j * row_h
            mark = {"regressed": " ▼", "improved": " ▲"}.get(verdict, "")
            out.append(
                f'<g class="wistro-chart-scorer" data-scorer="{esc(scorer)}">'
                f'<text x="{label_w - 8}" y="{y0 + row_h / 2 + 4:.1f}" text-anchor="end">'
                f"{esc(scorer[:30])}{mark}</text>"
            )
            for i, p in enumerate(points):
                cy = y0 + 12 + i * 18
                c = CHART_COLORS[i % len(CHART_COLORS)]
                if p is None:
                    out.append(
                        f'<text x="{label_w + 4}" y="{cy + 4}" fill-opacity="0.6">n/a</text>'
                    )
                    continue
                mean, low, high = p
                out.append(
                    f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{cy}" y2="{cy}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<line x1="{x(low):.1f}" x2="{x(low):.1f}" y1="{cy - 4}" y2="{cy + 4}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<line x1="{x(high):.1f}" x2="{x(high):.1f}" y1="{cy - 4}" y2="{cy + 4}" '
                    f'stroke="{c}" stroke-width="2"/>'
                    f'<circle cx="{x(mean):.1f}" cy="{cy}" r="4.5" fill="{c}">'
                    f"<title>{esc(self.versions[i])}: {mean:.3f} [{low:.3f}, {high:.3f}]</title>"
                    f"</circle>"
                    f'<text x="{label_w + plot_w + 10}" y="{cy + 4}">{mean:.3f} '
                    f'<tspan fill-opacity="0.7">[{low:.2f}, {high:.2f}]</tspan></text>'
                )
            out.append("</g>")
        out.append("</svg>")
        return "".join(out)

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div class='wistro-chart-box'>{self.to_svg('currentColor')}</div>"

    def __repr__(self) -> str:
        lines = [self.title]
        for scorer, points, verdict in self.series:
            vals = ", ".join(
                f"{v}: " + ("n/a" if p is None else f"{p[0]:.3f} [{p[1]:.3f}, {p[2]:.3f}]")
                for v, p in zip(self.versions, points, strict=False)
            )
            lines.append(f"  {scorer}: {vals} ({verdict})")
        return "\n".join(lines)

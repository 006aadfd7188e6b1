"""``Comparison`` (two evals) and ``MultiComparison`` (several against a baseline): the frames
``compare`` computes and what is read from them (regressions, report, HTML, chart, step and code
diffs, the run diff of a sample), and the hook a front end registers a richer view with
(``register_view``). The hook lives beside ``Comparison``: its protocol names the class and the
class reads the registered view, so one module holds both and nothing imports back."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wistro.eval.compare.chart import Chart
from wistro.eval.compare.divergence import diff_json, to_plain
from wistro.eval.compare.gate import DEFAULT_MAX_ERROR_SHARE, GateResult, gate_rule, judge
from wistro.eval.compare.samples import BAD, ONLY_A, ONLY_B, STATUS_ORDER, VERDICT_REGRESSED
from wistro.eval.compare.sources import diff_sources, source_as_run, stored_root
from wistro.eval.results import EvalResult, SampleResult

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Comparison:
    a: EvalResult
    b: EvalResult
    summary: pd.DataFrame
    rows: pd.DataFrame
    steps: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    pairs: dict[str, tuple[SampleResult | None, SampleResult | None]] = field(default_factory=dict)
    alpha: float = field(default=0.05, kw_only=True)
    n_boot: int = field(default=2000, kw_only=True)  # bootstrap resamples of the intervals
    seed: int = field(default=0, kw_only=True)  # their seed: the same evals, the same interval

    @property
    def regressions(self) -> pd.DataFrame:
        """Per-sample rows that got worse (regressed or new error)."""
        return self.rows[self.rows["status"].isin(BAD)].reset_index(drop=True)

    def gate(
        self,
        scorers: Iterable[str] | None = None,
        *,
        max_regressions: int | None = None,
        min_effect: float = 0.0,
        max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
    ) -> GateResult:
        """Whether b may replace a (``wistro.eval.compare.gate``): by default it fails on a
        significant regression of any scorer, on any regression where the data are too few for
        significance, when nothing could be paired, and when a scorer raised on more than 10% of
        the samples. ``scorers`` gates on those only."""
        rule = gate_rule(
            scorers,
            max_regressions=max_regressions,
            min_effect=min_effect,
            max_error_share=max_error_share,
        )
        return judge(self, rule)

    @property
    def has_regression(self) -> bool:
        """Whether the default gate fails (``not self.gate().passed``)."""
        return not self.gate().passed

    @property
    def any_worse(self) -> bool:
        """Whether any sample got worse or any scorer's verdict is ``regressed`` (noise
        included: the gate is what judges)."""
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

    def report(self, max_rows: int = 20, gate: GateResult | None = None) -> str:
        """A plain-text report: the summary, the regressions, and the gate's line (the default
        gate, or ``gate``). A value that does not exist is shown as "—"."""
        lines = [self._title()]
        lines += [f"warning: {w}" for w in self.warnings]
        for r in self.summary.itertuples(index=False):
            flaky = getattr(r, "n_flaky", 0) or 0
            lines.append(
                f"  {r.scorer}: {_num(r.mean_a)} -> {_num(r.mean_b)} (diff "
                f"{_num(r.diff, '+.3f')}, 95% CI [{_num(r.ci_low, '+.3f')}, "
                f"{_num(r.ci_high, '+.3f')}], p={_num(r.p_value, '.3g')}, "
                f"{self._n_text(r)}{f', {flaky} flaky' if flaky else ''}): {r.verdict}"
            )
        counts = self.rows["status"].value_counts().to_dict() if len(self.rows) else {}
        lines.append(
            "  samples: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        )
        reg = self.regressions
        if len(reg):
            lines.append(f"regressions ({len(reg)}):")
            for row in reg.head(max_rows).to_dict(orient="records"):
                where = row["first_divergent_step"] or "—"
                failing = row["worse"]
                lines.append(
                    f"  {row['sample_id']} [{row['status']}] first divergent step: {where}"
                    + (f"; now failing: {', '.join(failing)}" if failing else "")
                    + (f"; error: {row['error_b']}" if _present(row.get("error_b")) else "")
                )
            if len(reg) > max_rows:
                lines.append(f"  ... and {len(reg) - max_rows} more")
        result = gate if gate is not None else self.gate()
        lines.append(result.line)
        lines += [f"  {reason}" for reason in result.reasons[1:]]
        lines += [f"  note: {note}" for note in result.notes]
        return "\n".join(lines)

    def _title(self) -> str:
        """The first line of ``report()``."""
        return f"compare {self.a.eval_id} ({self.a.label}) -> {self.b.eval_id} ({self.b.label})"

    def _n_text(self, row: Any) -> str:
        """How many samples a summary row's test saw, as ``report()`` shows it."""
        return f"n={row.n_paired}"

    def to_dict(self, gate: GateResult | None = None) -> dict[str, Any]:
        """Strict JSON data (NaN is None): the summary, regressions, steps, counts and the gate
        (the default one, or ``gate``)."""
        result = gate if gate is not None else self.gate()
        return to_plain(
            {
                "a": self.a.eval_id,
                "b": self.b.eval_id,
                "warnings": self.warnings,
                "has_regression": not result.passed,
                "gate": result.to_dict(),
                "alpha": self.alpha,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "summary": self.summary.to_dict(orient="records"),
                "regressions": self.regressions.to_dict(orient="records"),
                "steps": self.steps.to_dict(orient="records"),
                "counts": self.rows["status"].value_counts().to_dict() if len(self.rows) else {},
            }
        )

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
        return stored_root(self.a if side == "a" else self.b)

    def step_source(self, step: str, side: str) -> tuple[str | None, str]:
        """The source of ``step`` as version ``side`` (``"a"`` / ``"b"``) ran it: from git
        (``git show COMMIT:path``), the version's folder or the working tree, whichever has the
        file with the hash the version recorded. ``(text, where)``, or ``(None, why not)``."""
        return source_as_run(self.a if side == "a" else self.b, step)

    def code_diff(
        self, steps: Sequence[str] | None = None, context: int = 3
    ) -> list[dict[str, Any]]:
        """Per changed step (all by default): ``{step, change, file, diff, available, note}``,
        ``diff`` a unified diff of its source from a to b (empty when unavailable)."""
        return diff_sources(self.a, self.b, steps, context)

    @staticmethod
    def json_diff(a: Any, b: Any, path: str = "$") -> list[dict[str, Any]]:
        """Paths added, removed and changed from ``a`` to ``b`` (dicts by key, lists by index):
        ``[{path, change, a, b}]``."""
        return diff_json(a, b, path)

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
        return to_plain(x)

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


def _num(x: Any, spec: str = ".3f") -> str:
    """A number for the text report; "—" for one that does not exist (None, NaN)."""
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if v != v else format(v, spec)


def _present(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and x != x)


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

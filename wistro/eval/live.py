"""Comparing two live versions over their recorded production runs (``compare_live``).

The runs of each version since a time become an ``EvalResult`` (one ``SampleResult`` per run,
``recorded.result_from_trace``; the sample id is the input hash, so the runs of one input are
that sample's repeats) scored with ``error_free``, ``latency_ms`` and any scorer that can judge a
recorded run (``emitted``, ``not_emitted``, ``sequence``, ``latency_budget``, a function...). The
two results go through ``compare_two``: the same per-sample rows, step table, pairs and run diffs
as an offline compare. The per-scorer summary is then tested on what the runs allow:

* **paired** when at least half of each version's inputs also ran on the other (the same topic
  and payload: ``input_hash``): a sample's value is its mean over its runs, and the paired tests
  of evals apply (bootstrap interval of the mean paired difference; McNemar for pass/fail,
  Wilcoxon signed-rank for numeric values);
* **unpaired** otherwise (production inputs mostly differ): every run is an observation, the
  interval is a bootstrap of the difference of the means, the test Fisher's exact test for
  pass/fail scores and Mann-Whitney U for numeric ones.

The verdict rule is the evals' one (p < alpha and the interval excludes 0); for ``latency_ms``
a rise is the regression, and only one beyond ``latency_tolerance`` (default 10% of a's mean)
counts: with thousands of production runs any drift is significant, not every one matters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.eval.compare import Chart, Comparison, compare_two
from wistro.eval.compare.gate import GateResult
from wistro.eval.compare.samples import ONLY_A, ONLY_B
from wistro.eval.dataset import Sample
from wistro.eval.recorded import (
    Since,
    known_labels,
    recorded_runs,
    resolve_version,
    result_from_trace,
    sample_from_trace,
    since_timestamp,
    store_of,
    version_runs,
)
from wistro.eval.results import EvalMeta, EvalResult, SampleResult
from wistro.eval.runner import ScorerLike, resolve_scorers, score_result
from wistro.eval.scorers import Score, Scorer, error_free
from wistro.eval.version import ProjectVersion

if TYPE_CHECKING:
    import pandas as pd

    from wistro.app import App
    from wistro.tracing.store import TraceStore
    from wistro.versions.live import LiveVersion

log = logging.getLogger("wistro.eval")

LATENCY = "latency_ms"
LOWER_IS_BETTER = frozenset({LATENCY})
PAIRED, UNPAIRED = "paired", "unpaired"
MAX_RUNS = 10_000


def latency_ms() -> Scorer:
    """The run's latency in ms (lower is better): compared, never a per-sample failure."""

    def score(sample: Sample, output: SampleResult) -> Score:
        if output.latency_ms is None:
            raise ValueError("no latency recorded")
        return Score(float(output.latency_ms), True, f"{output.latency_ms:.1f} ms")

    return Scorer(LATENCY, score, kind="latency")


def live_eval(
    store: TraceStore,
    version: str,
    rows: list[dict[str, Any]],
    scorers: list[Scorer],
    label: str | None = None,
    since: float | None = None,
) -> EvalResult:
    """The runs ``rows`` (oldest first) of ``version`` as a complete ``EvalResult``."""
    results: list[SampleResult] = []
    samples: dict[str, Sample] = {}
    seen: dict[str, int] = {}
    for row in rows:
        trace = store.get_run(row["trace_id"])
        result = result_from_trace(trace)
        result.repeat = seen.get(result.sample_id, 0)
        seen[result.sample_id] = result.repeat + 1
        if trace.get("events"):
            sample = sample_from_trace(trace)
        else:
            sample = Sample({"topic": result.topic, "data": None}, source_trace=result.trace_id)
        samples.setdefault(result.sample_id, sample)
        score_result(sample, result, scorers)
        results.append(result)
    first = min((float(r["start"]) for r in rows), default=time.time())
    meta = EvalMeta(
        dataset="runs",
        dataset_version="live",
        version=ProjectVersion(version, label=label),
        scorers=[s.name for s in scorers],
        repeats=max(seen.values(), default=1),
        label=label or version,
        key=f"live:{version}",
        created=since if since is not None else first,
        finished=time.time(),
        status="complete",
    )
    return EvalResult(f"{version}@live", meta, results, samples.values())


@dataclass
class LiveComparison(Comparison):
    """A ``Comparison`` of two live versions: the same frames, plus ``since`` (epoch seconds,
    None: all recorded runs), ``pairing`` (``paired`` / ``unpaired``: which tests the summary
    used) and ``values`` (per scorer, the per-run values of a and b)."""

    since: float | None = None
    pairing: str = UNPAIRED
    values: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    @property
    def versions(self) -> tuple[str, str]:
        return self.a.version.id, self.b.version.id

    def verdict(self) -> str:
        """One line: what b did against a."""
        s = self.summary
        worse = list(s.loc[s["verdict"] == "regressed", "scorer"])
        better = list(s.loc[s["verdict"] == "improved", "scorer"])
        if self.has_regression:
            why = ", ".join(worse) or f"{len(self.regressions)} sample(s) worse"
            return f"verdict: {self.b.label} regressed against {self.a.label} ({why})"
        if better:
            return f"verdict: {self.b.label} improved on {self.a.label} ({', '.join(better)})"
        return f"verdict: no significant change from {self.a.label} to {self.b.label}"

    def _title(self) -> str:
        when = (
            "all recorded runs"
            if self.since is None
            else "runs since " + datetime.fromtimestamp(self.since).isoformat(timespec="seconds")
        )
        head = (
            f"compare live {self.a.label} ({self.a.version.id}) -> {self.b.label} "
            f"({self.b.version.id}), {when}, {self.pairing}"
        )
        stats = []
        for e in (self.a, self.b):
            n = len(e.results)
            err = sum(r.failed for r in e.results) / n if n else float("nan")
            lat = sorted(r.latency_ms for r in e.results if r.latency_ms is not None)
            p50 = lat[len(lat) // 2] if lat else float("nan")
            stats.append(f"{n} runs, error rate {err:.1%}, p50 {p50:.1f} ms")
        return head + f"\n  {self.a.label}: {stats[0]}\n  {self.b.label}: {stats[1]}"

    def _n_text(self, row: Any) -> str:
        if self.pairing == PAIRED:
            return f"n={row.n_paired} inputs"
        return f"n={row.n_a}+{row.n_b} runs"

    def report(self, max_rows: int = 20, gate: GateResult | None = None) -> str:
        return super().report(max_rows, gate) + "\n" + self.verdict()

    def to_dict(self, gate: GateResult | None = None) -> dict[str, Any]:
        out = super().to_dict(gate)
        out.update(
            {
                "live": True,
                "version_a": self.a.version.id,
                "version_b": self.b.version.id,
                "label_a": self.a.label,
                "label_b": self.b.label,
                "since": self.since,
                "pairing": self.pairing,
                "n_runs_a": len(self.a.results),
                "n_runs_b": len(self.b.results),
                "verdict": self.verdict(),
            }
        )
        return out

    def chart(
        self, n_boot: int = 2000, seed: int = 0, scorers: Iterable[str] | None = None
    ) -> Chart:
        """Each scorer's mean per version with its seeded bootstrap 95% interval (paired: over
        the inputs both ran; unpaired: over every run). ``latency_ms`` (on its own scale) is left
        out unless named in ``scorers`` or alone."""
        names = list(self.summary["scorer"])
        if scorers is not None:
            names = [s for s in scorers if s in names]
        elif any(s not in LOWER_IS_BETTER for s in names):
            names = [s for s in names if s not in LOWER_IS_BETTER]
        paired = self.rows[~self.rows["status"].isin((ONLY_A, ONLY_B))]
        series = []
        for name in names:
            sides: list[Any] = (
                [paired[f"{name}:{side}"] for side in ("a", "b")]
                if self.pairing == PAIRED
                else list(self.values.get(name, ([], [])))
            )
            points = [Comparison._mean_ci(v, n_boot, seed) for v in sides]
            verdict = self.summary.loc[self.summary["scorer"] == name, "verdict"].iloc[0]
            series.append((name, points, str(verdict)))
        return Chart(
            f"{self.a.label} → {self.b.label} (live, {self.pairing}): mean per scorer, "
            "95% bootstrap interval",
            [self.a.label, self.b.label],
            series,
        )


def _summary(
    rows: pd.DataFrame,
    values: dict[str, tuple[list[float], list[float]]],
    pairing: str,
    *,
    alpha: float,
    n_boot: int,
    seed: int,
    latency_tolerance: float,
) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from wistro.eval.stats import (
        NO_CHANGE,
        PairedTest,
        UnpairedTest,
        paired_test,
        unpaired_test,
    )

    paired = rows[~rows["status"].isin((ONLY_A, ONLY_B))]
    out = []
    for name, (run_a, run_b) in values.items():
        better_up = name not in LOWER_IS_BETTER
        t: PairedTest | UnpairedTest
        if pairing == PAIRED:
            x = pd.to_numeric(paired[f"{name}:a"], errors="coerce").to_numpy(dtype=float)
            y = pd.to_numeric(paired[f"{name}:b"], errors="coerce").to_numpy(dtype=float)
            ok = ~(np.isnan(x) | np.isnan(y))
            t = paired_test(
                x[ok], y[ok], alpha=alpha, n_boot=n_boot, seed=seed, higher_is_better=better_up
            )
            n_paired, n_a, n_b = t.n, t.n, t.n
        else:
            t = unpaired_test(
                np.asarray(run_a, dtype=float),
                np.asarray(run_b, dtype=float),
                alpha=alpha,
                n_boot=n_boot,
                seed=seed,
                higher_is_better=better_up,
            )
            n_paired, n_a, n_b = 0, t.n_a, t.n_b
        verdict = t.verdict
        if not better_up and verdict != NO_CHANGE:  # a change within the tolerance is none
            margin = latency_tolerance * abs(t.mean_a)
            if not (t.ci_low > margin or t.ci_high < -margin):
                verdict = NO_CHANGE
        row = {"scorer": name, "n_paired": n_paired, **{k: getattr(t, k) for k in _TESTED}}
        out.append({**row, "verdict": verdict, "n_a": n_a, "n_b": n_b})
    cols = ["scorer", "n_paired", *_TESTED, "verdict", "n_a", "n_b"]
    return pd.DataFrame(out, columns=cols)


_TESTED = ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "test")


def _values(e: EvalResult, name: str) -> list[float]:
    out = []
    for r in e.results:
        v = (r.scores.get(name) or {}).get("value")
        if v is not None:
            out.append(float(v))
    return out


def compare_live(
    source: App | TraceStore,
    a: str,
    b: str,
    since: Since = "1h",
    scorers: Iterable[ScorerLike] | None = None,
    labels: Mapping[str, str] | None = None,
    *,
    live: Iterable[LiveVersion] = (),
    pairing: str = "auto",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    max_runs: int = MAX_RUNS,
    latency_tolerance: float = 0.1,
) -> LiveComparison:
    """Compare version ``b`` with ``a`` (the baseline) over the runs each recorded since
    ``since`` (``"1h"``, ``"30m"``, ``"2d"``, seconds, a ``datetime``; None: all) in the trace
    store of ``source`` (an ``App`` or a ``TraceStore``). A version is named by a label
    (``labels``: label -> id, the app's own version's label, ``live`` versions' labels), its id,
    or a prefix of it (4+ characters). Scored: ``error_free`` and ``latency_ms``, then
    ``scorers``. ``pairing``: ``auto`` (paired when at least half of each version's inputs ran
    on both), ``paired`` or ``unpaired``. ``max_runs``: the newest runs per version read.
    ``latency_tolerance``: a latency change within this share of a's mean is no change."""
    if pairing not in ("auto", PAIRED, UNPAIRED):
        raise WistroError(f"pairing must be auto, paired or unpaired, not {pairing!r}")
    store = store_of(source)
    t_since = since_timestamp(since)
    rows = recorded_runs(store, t_since)
    recorded = [r["version"] for r in rows if r.get("version")]
    names = known_labels(source, labels)
    live = list(live)
    va = resolve_version(a, recorded, names, live)
    vb = resolve_version(b, recorded, names, live)
    if va == vb:
        raise WistroError(f"{a} and {b} are the same version ({va}): compare two versions")
    label_of = {v.id: v.label for v in live if v.label}
    label_of.update({vid: name for name, vid in names.items()})
    resolved = resolve_scorers([error_free(), latency_ms(), *(scorers or [])])
    when = "recorded" if t_since is None else f"since {since}"
    evals = []
    for name, vid in ((a, va), (b, vb)):
        mine = version_runs(rows, vid, max_runs)
        if not mine:
            raise WistroError(
                f"version {name} ({vid}) has no finished runs {when}",
                hint="a longer --since, or check `wistro traces`",
            )
        evals.append(live_eval(store, vid, mine, resolved, label_of.get(vid), t_since))
    ea, eb = evals
    base = compare_two(ea, eb, alpha=alpha, n_boot=n_boot, seed=seed)
    n_paired = int((~base.rows["status"].isin((ONLY_A, ONLY_B))).sum())
    n_in_a, n_in_b = len(ea.by_sample()), len(eb.by_sample())
    if pairing == "auto":
        pairing = PAIRED if n_paired * 2 >= max(n_in_a, n_in_b) else UNPAIRED
    notes = [w for w in base.warnings if not w.startswith("unpaired samples")]
    if pairing == UNPAIRED:
        notes.append(
            f"{n_paired} of {n_in_a} / {n_in_b} inputs ran on both versions: the scorers are "
            "compared unpaired over every run (Fisher exact / Mann-Whitney U)"
        )
    elif n_paired < max(n_in_a, n_in_b):
        notes.append(
            f"paired over the {n_paired} inputs both versions ran; "
            f"{n_in_a - n_paired} only in {ea.label}, {n_in_b - n_paired} only in {eb.label}"
        )
    values = {s.name: (_values(ea, s.name), _values(eb, s.name)) for s in resolved}
    summary = _summary(
        base.rows,
        values,
        pairing,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
        latency_tolerance=latency_tolerance,
    )
    steps = base.steps.copy()
    steps["change"] = "unknown"  # a live version's step hashes are not recorded with its runs
    return LiveComparison(
        ea,
        eb,
        summary,
        base.rows,
        steps,
        notes,
        base.pairs,
        since=t_since,
        pairing=pairing,
        values=values,
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
    )


async def live_versions_of(app: App) -> list[LiveVersion]:
    """The versions with live workers on the app's bus (their labels name them); none when
    the bus cannot say (a warning is logged)."""
    from wistro.versions.live import live_versions

    try:
        return live_versions(await app.engine.bus.workers())
    except Exception as e:  # the bus unreachable: versions can still be named by id
        log.warning("live versions: the bus did not answer (%s); name versions by id", e)
        return []


async def acompare_live(app: App, a: str, b: str, **kwargs: Any) -> LiveComparison:
    """``compare_live`` with the labels of the versions live on the app's bus."""
    live = [*kwargs.pop("live", ()), *await live_versions_of(app)]
    return compare_live(app, a, b, live=live, **kwargs)

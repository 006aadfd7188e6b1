"""The regression gate: whether a comparison lets a version through (``Comparison.gate``,
``wistro eval compare --fail-on-regression``, ``assert_no_regression``).

The rule, for each gated scorer (all by default):

1. **Significance.** A verdict of ``regressed`` fails the gate: the paired test's p-value is
   below ``alpha`` and the bootstrap interval of the mean difference excludes 0 (with
   ``min_effect``, the mean must also drop by at least that much).
2. **Too few to test.** When the discordant pairs (samples that flipped) are too few for the
   test ever to reach ``p < alpha`` (``min_discordant``: 6 at 0.05), significance can never be
   shown, so any regressed sample of that scorer fails the gate instead, and the reason says so.
3. **Nothing judged.** The gate fails when there is nothing to compare (no samples on either
   side), when no sample could be paired, when a gated scorer scored no paired sample on both
   sides (not scored: nothing to check), and when a gated scorer raised on more than
   ``max_error_share`` of a side's samples.

``max_regressions=N`` replaces 1 and 2 with a count: the gate fails when more than N samples got
worse on a gated scorer (regressed, or a new error). Flaky samples (repeats that disagree, or a
flip between evals of one version) are left out of every rule; latency flips within their
scorer's relative tolerance are not regressions (``compare_two``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from wistro.errors import WistroError
from wistro.eval.compare.samples import NEW_ERROR, ONLY_A, ONLY_B, REGRESSED_S, VERDICT_REGRESSED

if TYPE_CHECKING:
    from wistro.eval.compare.comparison import Comparison

DEFAULT_MAX_ERROR_SHARE = 0.1


@dataclass(frozen=True)
class GateRule:
    """How the gate judges (see the module docstring)."""

    scorers: tuple[str, ...] | None = None  # the gated scorers; None: all
    max_regressions: int | None = None
    min_effect: float = 0.0
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE

    def __post_init__(self) -> None:
        if self.max_regressions is not None and self.max_regressions < 0:
            raise WistroError(f"max_regressions must be >= 0, not {self.max_regressions}")
        if not 0.0 <= self.max_error_share <= 1.0:
            raise WistroError(f"max_error_share must be within 0..1, not {self.max_error_share}")
        if self.min_effect < 0:
            raise WistroError(f"min_effect must be >= 0, not {self.min_effect}")


@dataclass(frozen=True)
class GateResult:
    """The gate's judgement: ``passed``, one line per reason it failed, and notes."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scorers: list[str] = field(default_factory=list)
    rule: GateRule = field(default_factory=GateRule)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def line(self) -> str:
        """One line: ``gate: passed (...)`` or ``gate failed: <first reason> (and N more)``."""
        if self.passed:
            return f"gate: passed ({', '.join(self.scorers) or 'no scorers'})"
        more = f" (and {len(self.reasons) - 1} more)" if len(self.reasons) > 1 else ""
        return f"gate failed: {self.reasons[0]}{more}"

    def to_dict(self) -> dict[str, Any]:
        rule = asdict(self.rule)
        rule["scorers"] = list(self.rule.scorers) if self.rule.scorers is not None else None
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "notes": self.notes,
            "scorers": self.scorers,
            "rule": rule,
        }


def judge(cmp: Comparison, rule: GateRule) -> GateResult:
    """Apply ``rule`` to ``cmp`` (see the module docstring)."""
    summary = cmp.summary
    known = [str(s) for s in summary["scorer"]]
    gated = list(rule.scorers) if rule.scorers is not None else known
    unknown = [s for s in gated if s not in known]
    if unknown:
        raise WistroError(
            f"cannot gate on {', '.join(unknown)}: not a scorer of both evals",
            hint=f"scorers: {', '.join(known) or 'none'}",
        )
    reasons: list[str] = []
    notes: list[str] = []
    rows = cmp.rows
    n_a, n_b = len(cmp.a.by_sample()), len(cmp.b.by_sample())
    if n_a == 0 and n_b == 0:
        reasons.append("nothing to compare: both evals have no samples (an empty dataset?)")
    paired = rows[~rows["status"].isin((ONLY_A, ONLY_B))] if len(rows) else rows
    if (n_a or n_b) and not len(paired) and getattr(cmp, "pairing", "paired") == "paired":
        reasons.append(
            f"no sample could be paired ({n_a} in {cmp.a.label}, {n_b} in {cmp.b.label}; "
            "different datasets?)"
        )
    worse_by = {s: 0 for s in gated}
    bad_ids: list[str] = []
    bad_rows = rows[rows["status"].isin((REGRESSED_S, NEW_ERROR))] if len(rows) else rows
    for row in bad_rows.to_dict(orient="records"):
        worse: list[str] = list(row["worse"])
        hit = [s for s in worse if s in worse_by]
        for s in hit:
            worse_by[s] += 1
        if hit or (row["status"] == NEW_ERROR and not worse):
            bad_ids.append(str(row["sample_id"]))
    for r in summary[summary["scorer"].isin(gated)].to_dict(orient="records"):
        s = str(r["scorer"])
        for side, n in (("a", n_a), ("b", n_b)):
            errors = int(r.get(f"n_errors_{side}", 0) or 0)
            if n and errors / n > rule.max_error_share:
                label = cmp.a.label if side == "a" else cmp.b.label
                reasons.append(
                    f"scorer {s} raised on {errors} of {n} samples of {label} "
                    f"({errors / n:.0%} > {rule.max_error_share:.0%})"
                )
        if len(paired) and not r["n_paired"] and getattr(cmp, "pairing", "paired") == "paired":
            reasons.append(
                f"{s}: no paired sample was scored on both sides (not scored, or the scorer "
                "raised), so it cannot be judged; gate on other scorers with --gate"
            )
        if rule.max_regressions is not None:
            continue
        if r["verdict"] == VERDICT_REGRESSED:
            if abs(float(r["diff"])) >= rule.min_effect:
                reasons.append(
                    f"{s} regressed: {_f(r['mean_a'])} -> {_f(r['mean_b'])} (diff "
                    f"{float(r['diff']):+.3f}, 95% CI [{float(r['ci_low']):+.3f}, "
                    f"{float(r['ci_high']):+.3f}], p={float(r['p_value']):.3g}, {_n(r)})"
                )
            else:
                notes.append(
                    f"{s} regressed significantly but by {abs(float(r['diff'])):.3f}, less than "
                    f"the minimum effect {rule.min_effect:g}"
                )
        elif not r.get("can_reach_significance", True) and worse_by[s]:
            reasons.append(
                f"{s}: {worse_by[s]} sample(s) regressed, and {r['n_discordant']} discordant "
                f"pair(s) are too few for the {r['test']} test to reach p < {cmp.alpha:g}, so "
                "any regression fails the gate"
            )
    if rule.max_regressions is not None and len(bad_ids) > rule.max_regressions:
        reasons.append(
            f"{len(bad_ids)} sample(s) worse on {', '.join(gated)} "
            f"(more than --max-regressions {rule.max_regressions})"
        )
    n_flaky = int((rows["status"] == "flaky").sum()) if len(rows) else 0
    if n_flaky:
        notes.append(f"{n_flaky} flaky sample(s) left out of the gate")
    if reasons:
        where = _where(cmp, set(bad_ids))
        if where:
            reasons.append(where)
    return GateResult(not reasons, reasons, notes, gated, rule)


def _where(cmp: Comparison, bad: set[str]) -> str | None:
    """Which step the worse samples first diverge at, by count."""
    rows = cmp.rows[cmp.rows["sample_id"].isin(bad)]
    steps = rows["first_divergent_step"].dropna()
    if not len(steps):
        return None
    counts = steps.value_counts()
    step, n = str(counts.index[0]), int(counts.iloc[0])
    return f"the worse samples first diverge at step {step!r} ({n} of {len(rows)})"


def _n(r: Mapping[Any, Any]) -> str:
    if not r.get("n_paired") and r.get("n_a") is not None:  # unpaired (live runs)
        return f"n={r['n_a']}+{r['n_b']} runs"
    return f"n={r['n_paired']}"


def _f(x: Any) -> str:
    v = float(x)
    return "—" if math.isnan(v) else f"{v:.3f}"


def gate_rule(
    scorers: Iterable[str] | None = None,
    *,
    max_regressions: int | None = None,
    min_effect: float = 0.0,
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
) -> GateRule:
    """A ``GateRule`` from the options ``Comparison.gate`` and the CLI take."""
    return GateRule(
        tuple(scorers) if scorers is not None else None,
        max_regressions,
        float(min_effect),
        float(max_error_share),
    )

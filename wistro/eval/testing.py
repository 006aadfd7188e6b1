"""pytest helper: fail a test when a version regressed against a baseline eval, by the rule of
the regression gate (``wistro.eval.compare.gate``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

from wistro.eval.compare import Comparison, compare_two
from wistro.eval.compare.gate import DEFAULT_MAX_ERROR_SHARE
from wistro.eval.results import EvalResult


def assert_no_regression(
    result_a: EvalResult | str,
    result_b: EvalResult | str,
    scorers: Iterable[str] | None = None,
    *,
    root: str | Path | None = None,
    alpha: float = 0.05,
    max_regressions: int | None = None,
    min_effect: float = 0.0,
    max_error_share: float = DEFAULT_MAX_ERROR_SHARE,
) -> Comparison:
    """Raise ``AssertionError`` with the gate's reasons and a readable report when the gate
    fails for ``result_b`` against ``result_a`` (``Comparison.gate``: a significant regression
    of a gated scorer, any regression where the samples are too few for significance, nothing
    paired, scorer errors over ``max_error_share``; ``max_regressions`` / ``min_effect`` as
    there). ``scorers`` gates on those only. Returns the comparison when the gate passes."""
    a = result_a if isinstance(result_a, EvalResult) else EvalResult.load(result_a, root)
    b = result_b if isinstance(result_b, EvalResult) else EvalResult.load(result_b, root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notes are in the report
        cmp = compare_two(a, b, alpha=alpha)
    known = list(cmp.summary["scorer"])
    wanted = list(scorers) if scorers is not None else None
    unknown = [s for s in wanted or () if s not in known]
    if unknown:
        raise AssertionError(
            f"no such scorer in both evals: {', '.join(unknown)} (have: {', '.join(known)})"
        )
    result = cmp.gate(
        wanted,
        max_regressions=max_regressions,
        min_effect=min_effect,
        max_error_share=max_error_share,
    )
    if not result.passed:
        head = f"{cmp.b.label} against {cmp.a.label}: {result.line}"
        raise AssertionError(head + "\n" + cmp.report(gate=result))
    return cmp

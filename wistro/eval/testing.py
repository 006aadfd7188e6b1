"""pytest helper: fail a test when a version regressed against a baseline eval."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from wistro.eval.compare import BAD, Comparison, compare_two
from wistro.eval.compare import VERDICT_REGRESSED as REGRESSED
from wistro.eval.results import EvalResult


def assert_no_regression(
    result_a: EvalResult | str,
    result_b: EvalResult | str,
    scorers: Iterable[str] | None = None,
    *,
    root: str | Path | None = None,
    alpha: float = 0.05,
) -> Comparison:
    """Raise ``AssertionError`` with a readable report when ``result_b`` is worse than
    ``result_a``: a sample regressed or got a new error, or a scorer's verdict is ``regressed``.
    ``scorers`` limits the check to those scorers (sample errors always count). Returns the
    comparison when there is no regression."""
    import warnings

    a = result_a if isinstance(result_a, EvalResult) else EvalResult.load(result_a, root)
    b = result_b if isinstance(result_b, EvalResult) else EvalResult.load(result_b, root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = compare_two(a, b, alpha=alpha)
    wanted = list(scorers) if scorers is not None else list(cmp.summary["scorer"])
    unknown = [s for s in wanted if s not in set(cmp.summary["scorer"])]
    if unknown:
        raise AssertionError(
            f"no such scorer in both evals: {', '.join(unknown)} "
            f"(have: {', '.join(cmp.summary['scorer'])})"
        )
    summary = cmp.summary[cmp.summary["scorer"].isin(wanted)]
    bad_scorers = list(summary[summary["verdict"] == REGRESSED]["scorer"])
    rows = cmp.rows
    bad_rows = rows[rows["status"] == "new_error"]
    regressed = rows[rows["status"].isin(BAD) & (rows["status"] != "new_error")]
    if len(regressed) and scorers is not None:
        mask = [bool(set(r["worse"]) & set(wanted)) for r in regressed.to_dict(orient="records")]
        regressed = regressed[mask]
    if bad_scorers or len(bad_rows) or len(regressed):
        n = len(bad_rows) + len(regressed)
        head = f"{cmp.b.label} regressed against {cmp.a.label}: {n} sample(s) worse" + (
            f", scorer verdict regressed: {', '.join(bad_scorers)}" if bad_scorers else ""
        )
        raise AssertionError(head + "\n" + cmp.report())
    return cmp

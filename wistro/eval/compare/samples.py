"""Per sample: the status a paired sample gets (and the order views list them in), and one
sample's results over its repeats reduced to what compare needs (``_aggregate``: the mean value
per scorer, pass by majority, failed by majority; the scorers whose repeats disagree, those that
raised, and a measured quantity with its relative tolerance, for latency scorers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wistro.eval.results import SampleResult

IMPROVED_S = "improved"
REGRESSED_S = "regressed"
UNCHANGED_S = "unchanged"
NEW_ERROR = "new_error"
FIXED_ERROR = "fixed_error"
ONLY_A = "only_a"
ONLY_B = "only_b"
FLAKY = "flaky"
BAD = (REGRESSED_S, NEW_ERROR)
VERDICT_REGRESSED = "regressed"  # wistro.eval.stats.REGRESSED (stats loads numpy and scipy)
STATUS_ORDER = {
    REGRESSED_S: 0,
    NEW_ERROR: 1,
    IMPROVED_S: 2,
    FIXED_ERROR: 3,
    UNCHANGED_S: 4,
    FLAKY: 5,
    ONLY_A: 6,
    ONLY_B: 7,
}


@dataclass
class _Agg:
    """One sample's results (all repeats) in one eval, reduced to what compare needs."""

    first: SampleResult
    values: dict[str, float | None]
    passed: dict[str, bool | None]
    failed: bool
    flaky: set[str] = field(default_factory=set)  # scorers whose repeats disagree on passed
    flaky_failed: bool = False  # the repeats disagree on whether the run failed
    errors: set[str] = field(default_factory=set)  # scorers that raised on some repeat
    observed: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, rel_tol)


def _aggregate(results: list[SampleResult], scorers: list[str]) -> _Agg:
    if len(results) == 1:
        return _one(results[0], scorers)
    values: dict[str, float | None] = {}
    passed: dict[str, bool | None] = {}
    flaky: set[str] = set()
    errors: set[str] = set()
    observed: dict[str, tuple[float, float]] = {}
    for name in scorers:
        vs = []
        ps = []
        seen = []
        tol = None
        for r in results:
            s = r.scores.get(name)
            if s is None:
                continue
            if s.get("error"):
                errors.add(name)
                continue
            if s.get("value") is not None:
                vs.append(float(s["value"]))
            if s.get("passed") is not None:
                ps.append(bool(s["passed"]))
            if s.get("observed") is not None and s.get("rel_tolerance") is not None:
                seen.append(float(s["observed"]))
                tol = float(s["rel_tolerance"])
        values[name] = sum(vs) / len(vs) if vs else None
        passed[name] = (sum(ps) * 2 >= len(ps)) if ps else None
        if ps and 0 < sum(ps) < len(ps):
            flaky.add(name)
        if seen and tol is not None:
            observed[name] = (sum(seen) / len(seen), tol)
    n_failed = sum(r.failed for r in results)
    return _Agg(
        min(results, key=lambda r: r.repeat),
        values,
        passed,
        n_failed * 2 > len(results),
        flaky,
        0 < n_failed < len(results),
        errors,
        observed,
    )


def _one(r: SampleResult, scorers: list[str]) -> _Agg:
    """``_aggregate`` of a sample that ran once (the common case, and the one 10k-sample
    compares spend their time on): no repeats to disagree."""
    values: dict[str, float | None] = {}
    passed: dict[str, bool | None] = {}
    errors: set[str] = set()
    observed: dict[str, tuple[float, float]] = {}
    scores = r.scores
    for name in scorers:
        s = scores.get(name)
        if s is None:
            values[name] = passed[name] = None
            continue
        if s.get("error"):
            errors.add(name)
            values[name] = passed[name] = None
            continue
        v, p = s.get("value"), s.get("passed")
        values[name] = None if v is None else float(v)
        passed[name] = None if p is None else bool(p)
        seen, tol = s.get("observed"), s.get("rel_tolerance")
        if seen is not None and tol is not None:
            observed[name] = (float(seen), float(tol))
    return _Agg(r, values, passed, r.failed, set(), False, errors, observed)

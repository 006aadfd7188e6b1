"""Per sample: the status a paired sample gets (and the order views list them in), and one
sample's results over its repeats reduced to what compare needs (``_aggregate``: the mean value
per scorer, pass by majority, failed by majority)."""

from __future__ import annotations

from dataclasses import dataclass

from wistro.eval.results import SampleResult

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

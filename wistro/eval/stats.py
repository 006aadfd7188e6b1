"""Paired statistics for comparing two versions on the same samples.

* a seeded bootstrap confidence interval of the mean paired difference (``b - a``),
* an exact McNemar test (a two-sided binomial test on the discordant pairs) for pass/fail
  scores, a Wilcoxon signed-rank test for numeric ones,
* a verdict: ``improved`` / ``regressed`` when the p-value is below ``alpha`` *and* the interval
  excludes 0, else ``no significant change``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IMPROVED = "improved"
REGRESSED = "regressed"
NO_CHANGE = "no significant change"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PairedTest:
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # mcnemar | wilcoxon | none
    verdict: str


def is_binary(a: FloatArray, b: FloatArray) -> bool:
    both = np.concatenate([a, b])
    return bool(np.all((both == 0.0) | (both == 1.0)))


def bootstrap_ci(
    diffs: FloatArray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` resampled with replacement (seeded: the same
    input gives the same interval). When the differences take few distinct values (pass/fail),
    resampling is done on their counts (a multinomial draw), which is the same distribution and
    independent of n."""
    n = len(diffs)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    values, counts = np.unique(diffs, return_counts=True)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    if len(values) <= 64:
        draws = rng.multinomial(n, counts / n, size=n_boot)
        means = draws @ values / n
    else:
        means = np.empty(n_boot)
        chunk = max(1, 4_000_000 // n)
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            idx = rng.integers(0, n, size=(stop - start, n))
            means[start:stop] = diffs[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def mcnemar_exact(a: FloatArray, b: FloatArray) -> float:
    """Exact McNemar p-value for paired pass (1) / fail (0) outcomes."""
    from scipy.stats import binomtest  # type: ignore[import-untyped]

    worse = int(np.sum((a == 1.0) & (b == 0.0)))
    better = int(np.sum((a == 0.0) & (b == 1.0)))
    if worse + better == 0:
        return 1.0
    return float(binomtest(better, worse + better, 0.5).pvalue)


def wilcoxon_p(diffs: FloatArray) -> float:
    """Wilcoxon signed-rank p-value of paired differences (1.0 when they are all zero)."""
    from scipy.stats import wilcoxon

    nonzero = diffs[diffs != 0.0]
    if len(nonzero) == 0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(wilcoxon(nonzero).pvalue)
        except ValueError:
            return 1.0


def paired_test(
    a: FloatArray,
    b: FloatArray,
    *,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    binary: bool | None = None,
) -> PairedTest:
    """Compare paired scores ``a`` and ``b`` (higher is better)."""
    n = len(a)
    if n == 0:
        nan = math.nan
        return PairedTest(0, nan, nan, nan, nan, nan, nan, "none", NO_CHANGE)
    diffs = b - a
    low, high = bootstrap_ci(diffs, n_boot=n_boot, seed=seed, alpha=alpha)
    binary = is_binary(a, b) if binary is None else binary
    if binary:
        p, test = mcnemar_exact(a, b), "mcnemar"
    else:
        p, test = wilcoxon_p(diffs), "wilcoxon"
    diff = float(diffs.mean())
    verdict = NO_CHANGE
    if p < alpha and not (low <= 0.0 <= high):
        verdict = IMPROVED if diff > 0 else REGRESSED
    return PairedTest(n, float(a.mean()), float(b.mean()), diff, low, high, p, test, verdict)

"""Statistics for comparing two versions: paired (the same samples) and unpaired.

* paired: a seeded bootstrap confidence interval of the mean paired difference (``b - a``); an
  exact McNemar test (a two-sided binomial test on the discordant pairs) for pass/fail scores, a
  Wilcoxon signed-rank test for numeric ones;
* unpaired (two independent samples, e.g. the production runs of two live versions): a seeded
  bootstrap interval of the difference of the means (each side resampled on its own); Fisher's
  exact test for pass/fail scores, a Mann-Whitney U test for numeric ones;
* a verdict: ``improved`` / ``regressed`` when the p-value is below ``alpha`` *and* the interval
  excludes 0, else ``no significant change`` (``higher_is_better=False`` for a score such as a
  latency, where a rise is the regression).
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


def _resampled_means(x: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """``n_boot`` means of ``x`` resampled with replacement. When ``x`` takes few distinct
    values (pass/fail), resampling is done on their counts (a multinomial draw), which is the
    same distribution and independent of n."""
    n = len(x)
    values, counts = np.unique(x, return_counts=True)
    if len(values) == 1:
        return np.full(n_boot, float(values[0]))
    if len(values) <= 64:
        draws = rng.multinomial(n, counts / n, size=n_boot)
        means: FloatArray = draws @ values / n
        return means
    means = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    return means


def bootstrap_ci(
    diffs: FloatArray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` resampled with replacement (seeded: the same
    input gives the same interval)."""
    if len(diffs) == 0:
        return math.nan, math.nan
    if len(np.unique(diffs)) == 1:
        return float(diffs[0]), float(diffs[0])
    means = _resampled_means(diffs, n_boot, np.random.default_rng(seed))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci_diff(
    a: FloatArray, b: FloatArray, *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile interval of ``mean(b) - mean(a)`` for two independent samples, each
    resampled with replacement on its own (seeded)."""
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = _resampled_means(b, n_boot, rng) - _resampled_means(a, n_boot, rng)
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


def fisher_p(a: FloatArray, b: FloatArray) -> float:
    """Two-sided Fisher exact p-value for independent pass (1) / fail (0) outcomes."""
    from scipy.stats import fisher_exact

    pass_a, pass_b = int(np.sum(a == 1.0)), int(np.sum(b == 1.0))
    table = [[pass_a, len(a) - pass_a], [pass_b, len(b) - pass_b]]
    return float(fisher_exact(table).pvalue)


def mannwhitney_p(a: FloatArray, b: FloatArray) -> float:
    """Two-sided Mann-Whitney U p-value of two independent samples (1.0 when undefined)."""
    from scipy.stats import mannwhitneyu

    if len(a) == 0 or len(b) == 0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
        except ValueError:
            return 1.0
    return 1.0 if math.isnan(p) else p


def verdict_of(
    p: float, low: float, high: float, diff: float, alpha: float, higher_is_better: bool = True
) -> str:
    """``improved`` / ``regressed`` when ``p < alpha`` and ``[low, high]`` excludes 0."""
    if not (p < alpha) or low <= 0.0 <= high or math.isnan(low):
        return NO_CHANGE
    return IMPROVED if (diff > 0) == higher_is_better else REGRESSED


@dataclass(frozen=True, slots=True)
class UnpairedTest:
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # fisher | mannwhitney | none
    verdict: str


def unpaired_test(
    a: FloatArray,
    b: FloatArray,
    *,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    binary: bool | None = None,
    higher_is_better: bool = True,
) -> UnpairedTest:
    """Compare scores ``a`` and ``b`` of two independent samples (``diff``: mean b - mean a)."""
    if len(a) == 0 or len(b) == 0:
        nan = math.nan
        mean_a = float(a.mean()) if len(a) else nan
        mean_b = float(b.mean()) if len(b) else nan
        return UnpairedTest(len(a), len(b), mean_a, mean_b, nan, nan, nan, nan, "none", NO_CHANGE)
    low, high = bootstrap_ci_diff(a, b, n_boot=n_boot, seed=seed, alpha=alpha)
    binary = is_binary(a, b) if binary is None else binary
    if binary:
        p, test = fisher_p(a, b), "fisher"
    else:
        p, test = mannwhitney_p(a, b), "mannwhitney"
    mean_a, mean_b = float(a.mean()), float(b.mean())
    diff = mean_b - mean_a
    verdict = verdict_of(p, low, high, diff, alpha, higher_is_better)
    return UnpairedTest(len(a), len(b), mean_a, mean_b, diff, low, high, p, test, verdict)


def paired_test(
    a: FloatArray,
    b: FloatArray,
    *,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    binary: bool | None = None,
    higher_is_better: bool = True,
) -> PairedTest:
    """Compare paired scores ``a`` and ``b`` (``diff``: the mean of ``b - a``)."""
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
    verdict = verdict_of(p, low, high, diff, alpha, higher_is_better)
    return PairedTest(n, float(a.mean()), float(b.mean()), diff, low, high, p, test, verdict)

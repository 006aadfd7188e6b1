"""The statistics on synthetic cases where the answer is known."""

from __future__ import annotations

import numpy as np

from wistro.eval import stats


def test_all_pairs_improved_is_significant() -> None:
    a, b = np.zeros(30), np.ones(30)
    t = stats.paired_test(a, b)
    assert t.test == "mcnemar"
    assert t.p_value < 0.05
    assert t.p_value == 2 * 0.5**30
    assert (t.ci_low, t.ci_high) == (1.0, 1.0)
    assert t.verdict == stats.IMPROVED


def test_all_equal_is_no_change() -> None:
    a = b = np.array([1.0, 0.0] * 15)
    t = stats.paired_test(a, b)
    assert t.p_value == 1.0 and t.diff == 0.0
    assert t.verdict == stats.NO_CHANGE


def test_regression_and_small_samples() -> None:
    t = stats.paired_test(np.ones(30), np.zeros(30))
    assert t.verdict == stats.REGRESSED and t.diff == -1.0
    few = stats.paired_test(np.ones(3), np.zeros(3))  # p = 0.25: not enough evidence
    assert few.verdict == stats.NO_CHANGE


def test_mcnemar_exact_matches_the_binomial() -> None:
    a = np.array([1.0] * 10 + [0.0] * 10)
    b = np.array([0.0] * 2 + [1.0] * 8 + [1.0] * 9 + [0.0])  # 2 worse, 9 better
    from scipy.stats import binomtest

    assert stats.mcnemar_exact(a, b) == binomtest(9, 11, 0.5).pvalue


def test_bootstrap_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, 200)
    ci1 = stats.bootstrap_ci(d, seed=7)
    ci2 = stats.bootstrap_ci(d, seed=7)
    assert ci1 == ci2
    assert ci1[0] < d.mean() < ci1[1]
    assert stats.bootstrap_ci(d, seed=8) != ci1


def test_numeric_scores_use_wilcoxon() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(0.2, 0.8, 40)
    t = stats.paired_test(a, a + 0.1 + rng.normal(0, 0.01, 40))
    assert t.test == "wilcoxon" and t.p_value < 0.001 and t.verdict == stats.IMPROVED
    same = stats.paired_test(a, a.copy())
    assert same.p_value == 1.0 and same.verdict == stats.NO_CHANGE

"""The two-sample ratio and its interval (bench.analysis.ratio): the null counts against
enumeration, the interval against the exact Mann-Whitney test it inverts, and its
coverage labels."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.analysis.ratio import order_statistic, ratio_interval, u_counts


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 3), (3, 3), (4, 2), (5, 5)])
def test_u_counts_match_enumeration(n: int, m: int) -> None:
    counts = [0] * (n * m + 1)
    for base_ranks in itertools.combinations(range(n + m), n):  # ranks held by base values
        new_ranks = set(range(n + m)) - set(base_ranks)
        counts[sum(b > a for b in base_ranks for a in new_ranks)] += 1
    assert list(u_counts(n, m)) == counts


def test_coverage_labels() -> None:
    assert order_statistic(3, 3, 0.95) == (1, pytest.approx(0.9))  # the range: 1 - 2/20
    assert order_statistic(5, 5, 0.95) == (3, pytest.approx(1 - 2 * 4 / 252))
    k, coverage = order_statistic(10, 10, 0.95)
    assert coverage >= 0.95 and k > 1
    # one step narrower would fall below the level
    assert 1 - 2 * sum(u_counts(10, 10)[: k + 1]) / math.comb(20, 10) < 0.95


def test_estimate_is_the_median_ratio_of_every_pair() -> None:
    base, new = [100.0, 110.0, 95.0], [90.0, 99.0, 93.0]  # 9 pairs: one middle ratio
    found = ratio_interval(base, new)
    assert found.estimate == pytest.approx(statistics.median(y / x for x in base for y in new))
    assert found.low <= found.estimate <= found.high
    assert ratio_interval([], new).estimate != ratio_interval([], new).estimate  # nan
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([0.0, 1.0, 2.0], new)


def test_the_interval_excludes_1_exactly_when_the_exact_test_rejects() -> None:
    """On 500 random tie-free samples of 3-9 a side, shifted by up to 30%: the interval
    misses 1 exactly when scipy's exact Mann-Whitney p is at most 1 - coverage."""
    rng = np.random.default_rng(27)
    agreements = rejections = 0
    for _ in range(500):
        n, m = rng.integers(3, 10, size=2)
        base = np.exp(rng.normal(0, 0.1, n))
        new = np.exp(rng.normal(rng.uniform(-0.3, 0.3), 0.1, m))
        found = ratio_interval(list(base), list(new))
        p = mannwhitneyu(new, base, alternative="two-sided", method="exact").pvalue
        excludes = not found.low <= 1 <= found.high
        rejects = p <= 1 - found.coverage + 1e-12
        agreements += excludes == rejects
        rejections += rejects
    assert agreements == 500
    assert 50 < rejections < 450  # both outcomes were exercised

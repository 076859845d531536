"""bench.analysis.paired: the exact tests, intervals and Holm's correction on numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench.analysis.paired import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    PairedChange,
    affected_change,
    hodges_lehmann,
    holm,
    judge,
    paired_change,
    signed_rank_counts,
    signed_rank_p,
    smallest_p,
)


def test_the_signed_rank_distribution_is_counted_exactly() -> None:
    assert signed_rank_counts(3) == (1, 1, 1, 2, 1, 1, 1)  # T+ over the 8 sign patterns
    assert sum(signed_rank_counts(11)) == 2**11


@pytest.mark.parametrize("seed", range(6))
def test_signed_rank_p_agrees_with_scipy(seed: int) -> None:
    diffs = np.random.default_rng(seed).normal(0.02, 0.05, size=9)
    assert signed_rank_p(diffs) == pytest.approx(wilcoxon(diffs, method="exact").pvalue)


def test_n_pairs_cannot_give_p_below_two_to_the_one_minus_n() -> None:
    assert signed_rank_p([0.1, 0.2, 0.3, 0.4, 0.5]) == smallest_p(5) == 0.0625
    assert smallest_p(11) < 0.05 / 40  # 11 pairs can pass Holm over 40 tests


@pytest.mark.parametrize("seed", range(20))
def test_the_interval_excludes_zero_exactly_when_the_test_rejects(seed: int) -> None:
    diffs = np.random.default_rng(seed).normal(0.03, 0.05, size=10)
    estimate, low, high = hodges_lehmann(diffs, 0.95)
    assert low <= estimate <= high
    assert (low > 0 or high < 0) == (signed_rank_p(diffs) <= 0.05)


def test_an_unreachable_level_gives_the_whole_range() -> None:
    diffs = [0.05, 0.07, 0.06, 0.08]  # 4 pairs: p >= 0.125
    _, low, high = hodges_lehmann(diffs, 0.999)
    assert (low, high) == (0.05, 0.08)


def test_holm_steps_down_and_stays_monotone() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def _pairs(ratio: float, n: int, noise: float = 0.01, seed: int = 1) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    base = [100_000.0 * (1 + rng.normal(0, 0.05)) for _ in range(n)]  # the machine drifts
    new = [b * ratio * math.exp(rng.normal(0, noise)) for b in base]  # the pair does not
    return base, new


def test_a_ten_percent_drop_over_eleven_pairs_is_a_regression() -> None:
    level = 1 - 0.05 / 4
    drop = paired_change("throughput", *_pairs(0.90, 11), higher_is_better=True, level=level)
    same = paired_change("throughput", *_pairs(1.00, 11), higher_is_better=True, level=level)
    p99 = paired_change("p99", *_pairs(0.85, 11), higher_is_better=False, level=level)
    few = paired_change("throughput", *_pairs(0.90, 5), higher_is_better=True, level=level)
    judged = judge([drop, same, p99, few], alpha=0.05, threshold=0.05)
    assert [c.verdict for c in judged] == [REGRESSION, NO_CHANGE, IMPROVEMENT, NO_CHANGE]
    assert isinstance(judged[0], PairedChange) and judged[0].high < 0.95
    assert judged[3].p >= smallest_p(5)


def test_a_drop_inside_the_threshold_is_not_a_regression() -> None:
    small = paired_change("throughput", *_pairs(0.97, 11, 0.002), True, 1 - 0.05 / 2)
    [judged] = judge([small], alpha=0.05, threshold=0.05)
    assert judged.p <= 0.001 and judged.verdict == NO_CHANGE  # real, but under 5%


def test_counts_compare_the_share_of_repeats_affected() -> None:
    always = affected_change("errors", [False] * 11, [True] * 11)
    flips = affected_change("client-bound", [True, False] * 5 + [False], [False, True] * 5 + [True])
    never = affected_change("mismatches", [False] * 11, [False] * 11)
    judged = judge([always, flips, never], alpha=0.05, threshold=0.05)
    assert [c.verdict for c in judged] == [REGRESSION, NO_CHANGE, NO_CHANGE]
    assert judged[2].p == 1.0

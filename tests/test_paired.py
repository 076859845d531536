"""bench.analysis.paired: the exact tests, intervals and Holm's correction on numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata, wilcoxon

from bench.analysis.paired import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    PairedChange,
    ShiftInterval,
    affected_change,
    hodges_lehmann,
    judge,
    null_counts,
    paired_change,
    signed_rank_p,
    smallest_p,
)


def test_the_signed_rank_distribution_is_counted_exactly() -> None:
    """Over doubled ranks (integers, so midranks fit): ranks 1, 2, 3 are 2, 4, 6."""
    assert list(null_counts((2, 4, 6))[::2]) == [1, 1, 1, 2, 1, 1, 1]  # T+ over 8 patterns
    assert list(null_counts((3, 3))) == [1, 0, 0, 2, 0, 0, 1]  # two tied at rank 1.5
    assert null_counts(tuple(range(2, 23, 2))).sum() == 2**11


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
    estimate, low, high = hodges_lehmann(diffs, 0.95)[:3]
    assert low <= estimate <= high
    assert (low > 0 or high < 0) == (signed_rank_p(diffs) <= 0.05)


def test_an_unreachable_level_gives_the_range_of_the_pairs_and_says_its_coverage() -> None:
    diffs = [0.05, 0.07, 0.06, 0.08]  # 4 pairs: p >= 0.125
    interval = hodges_lehmann(diffs, 0.999)
    assert interval[1:3] == (0.05, 0.08)
    assert interval.coverage == 1 - 2**-3 == 0.875  # not 99.9%: P(all four on one side)
    assert interval.ends == "[]"


# -- ties and zeros (issue 27, item 1) ------------------------------------------------


def _enumerated_p(diffs: list[float]) -> float:
    """The exact conditional p by brute force: Pratt's rule (rank |d| with the zeros,
    midranks for ties, then drop the zeros), every sign pattern of the nonzero ones."""
    d = np.asarray(diffs, dtype=float)
    ranks = rankdata(np.abs(d))[d != 0]
    signs = d[d != 0] > 0
    if not len(ranks):
        return 1.0
    patterns = (np.arange(2 ** len(ranks))[:, None] >> np.arange(len(ranks))) & 1
    sums, observed, total = patterns @ ranks, ranks[signs].sum(), ranks.sum()
    return min(1.0, 2 * float(np.mean(sums <= min(observed, total - observed) + 1e-9)))


def _tied(rng: np.random.Generator) -> list[float]:
    """6-16 differences on a coarse grid: ties (of either sign) and zeros are common."""
    grid, shift = int(rng.choice([2, 3, 5, 8])), int(rng.integers(-2, 5))
    return [int(v) / 100 for v in rng.integers(-grid, grid + 1, rng.integers(6, 17)) + shift]


TIED = [_tied(rng) for rng in [np.random.default_rng(27)] for _ in range(1000)]


def test_tied_differences_get_the_exact_conditional_p() -> None:
    """The issue's examples: midranks with the tie-free null gave 0.004883 and 0.109."""
    eleven = [v / 100 for v in (-3, 1, 3, 3, 3, 4, 6, 8, 8, 9, 9)]
    assert signed_rank_p(eleven) == _enumerated_p(eleven) == 12 / 2048  # 0.005859
    seven = [v / 100 for v in (-2, -1, 2, 2, 4, 5, 5)]
    assert signed_rank_p(seven) == _enumerated_p(seven) == 16 / 128  # 0.125


def test_zeros_count_alike_for_the_test_and_the_interval() -> None:
    """Five zeros and six differences of 0.03-0.08: p = 2/64 rejects at 0.05, so the 95%
    interval cannot hold 0 (it was [0.0, 0.055]): it is open there, (0, ...]."""
    diffs = [0.0] * 5 + [0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
    assert signed_rank_p(diffs) == _enumerated_p(diffs) == 2 / 64
    interval = hodges_lehmann(diffs, 0.95)
    assert interval.excludes(0.0) and not interval.excludes(0.001)
    assert (interval.low, interval.ends[0]) == (0.0, "(")
    assert not hodges_lehmann(diffs, 0.99).excludes(0.0)  # p = 0.031 > 0.01


def test_p_is_the_enumerated_exact_conditional_p_on_tied_and_zero_laden_inputs() -> None:
    assert sum(0.0 in d for d in TIED) > 300 and sum(len(set(d)) < len(d) for d in TIED) > 900
    wrong = [(d, signed_rank_p(d), _enumerated_p(d)) for d in TIED]
    assert [w for w in wrong if w[1] != w[2]] == []


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_the_interval_excludes_zero_exactly_when_p_is_at_most_the_level(alpha: float) -> None:
    """Where the level is out of reach (2^(1-n) > alpha), the interval is the pairs' range
    and its coverage says so; else it is the test inverted, zero and all."""
    disagree, unreachable = [], 0
    for d in TIED:
        interval = hodges_lehmann(d, 1 - alpha)
        if smallest_p(len(d)) > alpha:
            unreachable += 1
            assert interval.coverage == 1 - smallest_p(len(d)) < 1 - alpha
            assert interval[1:3] == (min(d), max(d))
        elif interval.excludes(0.0) != (signed_rank_p(d) <= alpha):
            disagree.append(d)
        else:
            assert interval.coverage >= 1 - alpha
    assert disagree == []
    assert unreachable == (0 if alpha == 0.05 else sum(len(d) < 8 for d in TIED))


def _inside(interval: ShiftInterval, shift: float) -> bool:
    return not interval.excludes(shift)


@pytest.mark.parametrize("seed", range(4))
def test_the_interval_is_every_shift_the_test_accepts_and_no_other(seed: int) -> None:
    """Each candidate shift (every Walsh average and a point between each two) is in the
    interval exactly when the test on diffs - shift does not reject, the ends included:
    whole-number diffs, so that the shifted values are exact."""
    rng = np.random.default_rng(seed)
    for draw in range(40):
        n = int(rng.integers(6, 13))
        whole = rng.integers(-4, 8, n) if draw % 2 else rng.choice(np.arange(-9, 21), n, False)
        diffs = [float(v) for v in whole]  # ties and zeros, or none (every value apart)
        walsh = sorted({(a + b) / 2 for i, a in enumerate(diffs) for b in diffs[i:]})
        between = [(a + b) / 2 for a, b in zip(walsh, walsh[1:], strict=False)]
        shifts = [walsh[0] - 1, *walsh, *between, walsh[-1] + 1]
        for level in (0.95, 0.99):
            interval = hodges_lehmann(diffs, level)
            if smallest_p(len(diffs)) > 1 - level:
                continue
            for shift in shifts:
                accepted = signed_rank_p([x - shift for x in diffs]) > 1 - level
                assert accepted == _inside(interval, shift), (diffs, level, shift)


@pytest.mark.parametrize(("pairs", "level"), [(9, 0.95), (5, 0.99)])
def test_the_coverage_is_what_the_interval_covers(pairs: int, level: float) -> None:
    """Symmetric noise around a true shift of 0: the share of intervals that hold it is
    the coverage they state (5 pairs cannot reach 99%: their range covers 15/16)."""
    rng = np.random.default_rng(pairs)
    intervals = [hodges_lehmann(rng.standard_t(3, pairs), level) for _ in range(2000)]
    [coverage] = {i.coverage for i in intervals}
    held = np.mean([not i.excludes(0.0) for i in intervals])
    assert abs(held - coverage) < 3 * math.sqrt(coverage * (1 - coverage) / len(intervals))
    assert coverage == (1 - 2**-4 if pairs == 5 else 1 - 20 / 512)  # 9: P(T+ <= 5) = 10/512


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

"""bench.analysis.stats: exact order-statistic intervals of the median, adjacent-pair tests."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from bench.analysis.stats import (
    TEST_NAME,
    compare_adjacent,
    holm,
    median_interval,
    min_p_value,
)


def coverage(n: int, k: int) -> float:
    """1 - 2 P(Binomial(n, 1/2) <= k-1), straight from the definition."""
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


# --- median_interval -------------------------------------------------------------------


def test_three_values_give_min_max_with_coverage_075() -> None:
    iv = median_interval([5.0, 1.0, 3.0])
    assert (iv.low, iv.high, iv.n) == (1.0, 5.0, 3)
    assert iv.coverage == 0.75


def test_two_values_cover_half() -> None:
    iv = median_interval([2.0, 1.0])
    assert (iv.low, iv.high, iv.coverage) == (1.0, 2.0, 0.5)


def test_six_values_give_min_max_with_coverage_096875() -> None:
    iv = median_interval([6.0, 2.0, 4.0, 1.0, 5.0, 3.0])
    assert (iv.low, iv.high) == (1.0, 6.0)
    assert iv.coverage == 0.96875


def test_ten_values_take_the_narrowest_k_reaching_95() -> None:
    xs = [float(v) for v in range(10, 0, -1)]
    iv = median_interval(xs)
    k = int(iv.low)  # sorted values are 1..10, so x_(k) == k
    assert iv.high == 10 + 1 - k
    assert iv.coverage == pytest.approx(coverage(10, k))
    assert iv.coverage >= 0.95
    assert coverage(10, k + 1) < 0.95
    assert k == 2 and iv.coverage == pytest.approx(1 - 22 / 1024)


def test_coverage_equal_to_confidence_is_enough() -> None:
    assert median_interval([1.0, 2.0, 3.0], confidence=0.75).coverage == 0.75


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", range(2, 60))
def test_chosen_k_is_the_largest_reaching_confidence(n: int, confidence: float) -> None:
    iv = median_interval([float(v) for v in range(1, n + 1)], confidence)
    k = int(iv.low)
    assert iv.high == n + 1 - k
    assert iv.coverage == pytest.approx(coverage(n, k))
    if k > 1 or n > 7:  # [min, max] reaches 0.99 from n = 8 on
        assert iv.coverage >= confidence
    if k + 1 <= n - k:
        assert coverage(n, k + 1) < confidence


@pytest.mark.parametrize("values", [[], [1.0], [math.nan, 2.0], [math.nan, math.nan]])
def test_fewer_than_two_values_give_nan(values: list[float]) -> None:
    iv = median_interval(values)
    assert math.isnan(iv.low) and math.isnan(iv.high) and math.isnan(iv.coverage)
    assert iv.n == len([v for v in values if not math.isnan(v)])


def test_nans_are_dropped_first() -> None:
    iv = median_interval([math.nan, 3.0, 1.0, math.nan, 2.0])
    assert (iv.low, iv.high, iv.coverage, iv.n) == (1.0, 3.0, 0.75, 3)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_confidence_outside_0_1_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError):
        median_interval([1.0, 2.0, 3.0], confidence)


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_empirical_coverage_matches_stated(confidence: float) -> None:
    rng = random.Random(20240611)
    median = math.log(2)  # of the exponential distribution with rate 1
    draws, hits, stated = 2000, 0, set()
    for _ in range(draws):
        iv = median_interval([rng.expovariate(1.0) for _ in range(9)], confidence)
        stated.add(iv.coverage)
        hits += iv.low <= median <= iv.high
    (cov,) = stated  # n fixed, so the same k every draw
    assert cov >= confidence
    se = math.sqrt(cov * (1 - cov) / draws)
    assert abs(hits / draws - cov) < 4 * se


# --- compare_adjacent ------------------------------------------------------------------


def test_clearly_separated_samples_are_significant() -> None:
    tests = compare_adjacent(
        {
            "epoll": [1000.0, 1010.0, 990.0, 1005.0, 995.0, 1002.0],
            "select": [500.0, 510.0, 490.0, 505.0, 495.0, 502.0],
        }
    )
    (t,) = tests
    assert (t.higher, t.lower, t.n_higher, t.n_lower) == ("epoll", "select", 6, 6)
    assert t.ratio == pytest.approx(1001.0 / 501.0)
    assert t.p == pytest.approx(2 / math.comb(12, 6))  # exact, fully separated
    assert t.p == pytest.approx(t.min_p)
    assert t.significant


def test_same_values_shuffled_are_not_significant() -> None:
    values = [100.0, 103.0, 97.0, 101.0, 99.0, 102.0]
    shuffled = values[:]
    random.Random(1).shuffle(shuffled)
    (t,) = compare_adjacent({"a": values, "b": shuffled})
    assert t.p == pytest.approx(1.0)
    assert not t.significant
    assert t.ratio == 1.0
    assert (t.higher, t.lower) == ("a", "b")  # equal medians: ties broken by name


def test_heavily_overlapping_samples_are_not_significant() -> None:
    tests = compare_adjacent(
        {
            "threads": [100.0, 104.0, 98.0, 103.0, 99.0, 101.0],
            "poll": [101.5, 97.0, 102.0, 99.5, 100.5, 98.5],
        }
    )
    (t,) = tests
    assert t.p > 0.3 and not t.significant


def test_ranking_is_by_median_and_pairs_are_adjacent() -> None:
    tests = compare_adjacent(
        {
            "c": [10.0, 11.0, 12.0],
            "a": [30.0, 31.0, 32.0],
            "b": [20.0, 21.0, 22.0],
        }
    )
    assert [(t.higher, t.lower) for t in tests] == [("a", "b"), ("b", "c")]


def test_names_with_fewer_than_two_values_are_left_out() -> None:
    tests = compare_adjacent(
        {
            "a": [30.0, 31.0, 32.0],
            "lonely": [25.0],
            "failed": [math.nan, 24.0],
            "b": [20.0, 21.0, 22.0],
        }
    )
    assert [(t.higher, t.lower) for t in tests] == [("a", "b")]


def test_fewer_than_two_testable_names_give_no_tests() -> None:
    assert compare_adjacent({}) == []
    assert compare_adjacent({"a": [1.0, 2.0], "b": [3.0]}) == []


def test_three_vs_three_can_never_be_significant() -> None:
    (t,) = compare_adjacent({"a": [4.0, 5.0, 6.0], "b": [1.0, 2.0, 3.0]})
    assert t.min_p == pytest.approx(0.1)
    assert t.p == pytest.approx(0.1)
    assert not t.significant
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(2, 2) == pytest.approx(1 / 3)
    assert min_p_value(5, 5) == pytest.approx(2 / 252)


# --- ties: the exact permutation distribution over the observed values ----------------


def midranks(values: list[float]) -> list[float]:
    """Ranks 1..N, tied values sharing the mean of their ranks, from the definition."""
    return [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]


def enumerated_p(a: list[float], b: list[float]) -> Fraction:
    """The two-sided exact p by brute force: every split of the pooled values into
    len(a) and len(b), twice the smaller tail of a's midrank sum, at most 1."""
    ranks = midranks(a + b)
    observed = sum(ranks[: len(a)])
    sums = [
        sum(ranks[i] for i in split) for split in itertools.combinations(range(len(ranks)), len(a))
    ]
    low = sum(s <= observed for s in sums)
    high = sum(s >= observed for s in sums)
    return min(Fraction(1), Fraction(2 * min(low, high), len(sums)))


def test_the_issues_tied_example_is_exact() -> None:
    # scipy's normal approximation, its fallback with ties, gave 0.047 here
    (t,) = compare_adjacent({"a": [10.0, 10.0, 10.0], "b": [5.0, 5.0, 5.0]})
    assert t.p == pytest.approx(2 / math.comb(6, 3))  # 2 of 20 splits are this extreme
    assert t.p >= t.min_p
    assert not t.significant


def test_three_vs_three_can_never_be_significant_even_with_ties() -> None:
    every_sample = list(itertools.combinations_with_replacement([1.0, 2.0, 3.0], 3))
    ps = [
        compare_adjacent({"a": list(a), "b": list(b)})[0].p
        for a, b in itertools.product(every_sample, repeat=2)
    ]
    assert min(ps) == pytest.approx(0.1)
    assert min(ps) >= min_p_value(3, 3) - 1e-12


def _tied_sample(rng: random.Random, n: int, levels: int) -> list[float]:
    return [float(100 + rng.randint(1, levels)) for _ in range(n)]  # few values: many ties


def test_p_is_the_enumerated_exact_p_for_small_tied_samples() -> None:
    rng = random.Random(27)
    sizes = [(rng.randint(2, 6), rng.randint(2, 6)) for _ in range(250)]
    sizes += [(rng.randint(2, 3), rng.randint(10, 20)) for _ in range(30)]  # one side >= 10
    for n, m in sizes:
        levels = rng.randint(2, 6)
        a, b = _tied_sample(rng, n, levels), _tied_sample(rng, m, levels)
        (t,) = compare_adjacent({"a": a, "b": b})
        assert t.p == pytest.approx(float(enumerated_p(a, b)), rel=1e-12), (a, b)
        assert t.p >= min_p_value(n, m) * (1 - 1e-12), (a, b)


def test_p_agrees_with_scipys_permutation_test() -> None:
    # an oracle outside this repository: scipy enumerates every split when it can, and
    # its two-sided p doubles the smaller tail, as ours does
    from scipy.stats import mannwhitneyu, permutation_test

    def u(x: object, y: object, axis: int) -> object:
        return mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic

    rng = random.Random(5)
    for _ in range(8):
        n, m, levels = rng.randint(2, 6), rng.randint(2, 6), rng.randint(2, 5)
        a, b = _tied_sample(rng, n, levels), _tied_sample(rng, m, levels)
        oracle = permutation_test(
            (a, b), u, permutation_type="independent", n_resamples=math.inf, vectorized=True
        )
        (t,) = compare_adjacent({"a": a, "b": b})
        assert t.p == pytest.approx(float(oracle.pvalue), rel=1e-9), (a, b)


def test_pairs_with_a_lower_bound_are_ranked_but_not_tested() -> None:
    samples = {
        "a": [30.0, 31.0, 32.0, 33.0, 34.0, 35.0],
        "b": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0],
        "c": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
    }
    ab, bc = compare_adjacent(samples, lower_bounds={"a"})
    assert (ab.higher, ab.lower, ab.tested, ab.significant) == ("a", "b", False, False)
    assert math.isnan(ab.p) and math.isnan(ab.p_adjusted)
    assert bc.tested and bc.significant
    assert bc.p_adjusted == pytest.approx(2 / math.comb(12, 6))  # Holm over 1 pair, not 2
    assert [t.tested for t in compare_adjacent(samples, lower_bounds={"b"})] == [False, False]


def test_zero_lower_median_gives_nan_ratio() -> None:
    (t,) = compare_adjacent({"a": [1.0, 2.0, 3.0], "b": [0.0, 0.0, 0.0]})
    assert math.isnan(t.ratio)


def test_holm_adjustment_is_monotone_and_not_below_raw() -> None:
    rng = random.Random(7)
    samples = {
        f"m{i}": [100.0 * (1 + 0.05 * i) + rng.gauss(0, 3) for _ in range(6)] for i in range(6)
    }
    tests = compare_adjacent(samples)
    assert len(tests) == 5
    for t in tests:
        assert t.p <= t.p_adjusted <= 1.0
        assert t.significant == (t.p_adjusted < 0.05)
    by_raw = sorted(tests, key=lambda t: t.p)
    adjusted = [t.p_adjusted for t in by_raw]
    assert adjusted == sorted(adjusted)


def test_holm_by_hand() -> None:
    # m=3: sorted raw 0.01, 0.02, 0.04 -> 0.03, 0.04, max(0.04, 0.04) = 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_test_name_mentions_the_test_and_correction() -> None:
    assert "Mann-Whitney" in TEST_NAME and "Holm" in TEST_NAME


def test_median_interval_textbook_order_statistics() -> None:
    # 95% for the median: x(6)..x(15) of 20, x(2)..x(9) of 10; 3 values: [min, max] at 75%.
    twenty = median_interval([float(i) for i in range(1, 21)])
    assert (twenty.low, twenty.high) == (6.0, 15.0)
    ten = median_interval([float(i) for i in range(1, 11)])
    assert (ten.low, ten.high) == (2.0, 9.0)
    three = median_interval([3.0, 1.0, 2.0])
    assert (three.low, three.high, three.coverage) == (1.0, 3.0, 0.75)

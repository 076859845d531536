"""bench.analysis.slope: Theil-Sen with Sen's interval, on exact made-up lines, against
scipy.stats.theilslopes on random data, and its coverage against a count by hand."""

from __future__ import annotations

import random
from math import comb, factorial, isclose

import pytest
from scipy.stats import theilslopes

from bench.analysis.slope import exact_coverage, inversions, normal_coverage, sen_ranks, slope

IDLE = (0, 1000, 5000, 10000, 19000)  # five counts of held connections, three repeats each


def test_an_exact_line_has_its_slope_and_a_zero_width_interval() -> None:
    points = [(x, 0.52 * x + 16_900) for x in IDLE for _ in range(3)]
    found = slope(points)
    assert found is not None
    assert isclose(found.value, 0.52) and isclose(found.low, 0.52) and isclose(found.high, 0.52)
    assert found.n == 15 and found.confidence == 0.95
    assert "Theil-Sen" in found.method and "exact" in found.method


def test_fewer_than_two_distinct_x_has_no_slope() -> None:
    assert slope([]) is None
    assert slope([(5.0, 1.0)]) is None
    assert slope([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]) is None
    assert slope([(1.0, 1.0), (2.0, 3.0)]) is not None


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="confidence"):
        slope([(0, 0), (1, 1)], confidence=1.5)
    with pytest.raises(ValueError, match="finite"):
        slope([(0, 0), (1, float("nan"))])


def test_an_outlier_moves_it_little() -> None:
    points = [(x, 2.0 * x) for x in range(10)]
    points[9] = (9, 1000.0)
    found = slope(points)
    assert found is not None and found.value == 2.0


@pytest.mark.parametrize("seed", range(12))
def test_it_matches_scipy_theilslopes(seed: int) -> None:
    rng = random.Random(seed)
    if seed % 3 == 0:  # repeats at a few x, as the idle sweep makes
        xs = [float(x) for x in IDLE for _ in range(3)]
    elif seed % 3 == 1:  # integer y with ties, as KiB are
        xs = [float(rng.randint(0, 6)) for _ in range(rng.randint(3, 30))]
    else:
        xs = [rng.uniform(0, 100) for _ in range(rng.randint(2, 40))]
    ys = [3 * x + (rng.randint(-5, 5) if seed % 3 == 1 else rng.gauss(0, 10)) for x in xs]
    if len(set(xs)) < 2:
        xs[0] += 1
    confidence = (0.9, 0.95, 0.99)[seed % 3]
    found = slope(list(zip(xs, ys, strict=True)), confidence)
    expected = theilslopes(ys, xs, confidence)
    assert found is not None
    assert found.value == pytest.approx(expected.slope, rel=1e-12, abs=1e-12)
    assert found.low == pytest.approx(expected.low_slope, rel=1e-12, abs=1e-12)
    assert found.high == pytest.approx(expected.high_slope, rel=1e-12, abs=1e-12)


def test_inversions_are_the_q_multinomial() -> None:
    assert inversions([1, 1, 1]) == [1, 2, 2, 1]  # permutations of 3 by inversions
    assert inversions([2, 2]) == [1, 1, 2, 1, 1]  # [4; 2]_q
    counts = inversions([3, 3, 3, 3, 3])
    assert sum(counts) == factorial(15) // factorial(3) ** 5
    assert len(counts) == comb(15, 2) - 5 * comb(3, 2) + 1  # 0 .. the 90 pairwise slopes
    assert counts == counts[::-1]  # symmetric about the middle


def test_the_coverage_is_counted_exactly() -> None:
    # four distinct x: 6 slopes, D uniform over the 24 permutations' inversion counts
    # [1, 3, 5, 6, 5, 3, 1]; the interval between slopes 2 and 5 misses D of 0, 1, 5, 6
    assert exact_coverage([1, 1, 1, 1], 2, 5) == pytest.approx(1 - 8 / 24)
    # the widest, smallest to largest slope, misses only D of 0 and 6
    assert exact_coverage([1, 1, 1, 1], 1, 6) == pytest.approx(22 / 24)


def test_the_coverage_is_near_the_confidence_and_normal_agrees_for_many_points() -> None:
    groups = [3] * 5
    n, pairs = 15, 90
    lower, upper = sen_ranks(n, pairs, groups, [1] * n, 0.95)
    exact = exact_coverage(groups, lower, upper)
    assert 0.93 < exact < 0.97
    assert normal_coverage(n, pairs, groups, lower, upper) == pytest.approx(exact, abs=0.01)
    groups = [4] * 20
    n, pairs = 80, comb(80, 2) - 20 * comb(4, 2)
    lower, upper = sen_ranks(n, pairs, groups, [1] * n, 0.95)
    assert normal_coverage(n, pairs, groups, lower, upper) == pytest.approx(
        exact_coverage(groups, lower, upper), abs=0.002
    )


def test_the_reported_coverage_is_what_a_simulation_sees() -> None:
    rng = random.Random(25)
    xs = [x for x in IDLE for _ in range(3)]
    trials, hits, reported = 2000, 0, 0.0
    for _ in range(trials):
        found = slope([(x, 0.5 * x + rng.gauss(0, 300)) for x in xs])
        assert found is not None
        hits += found.low <= 0.5 <= found.high
        reported = found.coverage
    # about 0.953; a binomial's standard error at 2,000 trials is 0.005
    assert abs(hits / trials - reported) < 0.02

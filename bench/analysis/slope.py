"""A line's slope with its interval: the Theil-Sen estimator and Sen's distribution-free
interval (Sen 1968), for "server CPU per request per 1,000 idle connections" and "KiB per
connection" from a few counts of held connections with repeats.

The estimate is the median of the slopes between every two points of distinct x; the
interval is two order statistics of those slopes, picked from Kendall's tau as
scipy.stats.theilslopes picks them (its normal approximation, with Sen's correction for
tied x and y), so a value repeated at each x counts as what it is. Those ranks are a
normal approximation, so the interval's true coverage is worked out too: exactly, from the
distribution of the number of pairwise slopes below the true one when the errors are
exchangeable and continuous (the inversions of a random arrangement of the tied x groups,
a q-multinomial coefficient), and by the normal approximation where that is too long to
count. Pure: no numpy, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from statistics import NormalDist, median

# The exact coverage costs about (2 x points) passes over N + 1 big integers, N the count
# of pairwise slopes; above this N (about 100 points) the normal approximation is used,
# and it is then within a fraction of a percent.
EXACT_PAIRS = 5_000
METHOD = "Theil-Sen slope, Sen (1968) interval from Kendall's tau"


@dataclass(frozen=True)
class Slope:
    value: float  # the median pairwise slope
    low: float
    high: float
    n: int  # points
    coverage: float  # the interval's true coverage (for continuous, exchangeable errors)
    confidence: float  # what was asked: the ranks aim at it
    method: str  # the estimator, and how the coverage was worked out


def slope(points: Sequence[tuple[float, float]], confidence: float = 0.95) -> Slope | None:
    """The Theil-Sen slope of (x, y) points with its Sen interval at `confidence`; None
    with fewer than two distinct x. Raises ValueError for a point that is not finite or a
    confidence outside (0, 1)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in points):
        raise ValueError("every point must be finite")
    xs = Counter(x for x, _ in points)
    if len(xs) < 2:
        return None
    slopes = sorted(
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    )
    pairs, n = len(slopes), len(points)
    lower, upper = sen_ranks(
        n, pairs, xs.values(), Counter(y for _, y in points).values(), confidence
    )
    if pairs <= EXACT_PAIRS:
        covered = exact_coverage(list(xs.values()), lower, upper)
        how = "coverage exact"
    else:
        covered = normal_coverage(n, pairs, xs.values(), lower, upper)
        how = "coverage by normal approximation"
    return Slope(
        value=median(slopes),
        low=slopes[lower - 1],
        high=slopes[upper - 1],
        n=n,
        coverage=covered,
        confidence=confidence,
        method=f"{METHOD}; {how}",
    )


def _ties(counts: Iterable[int]) -> float:
    return float(sum(k * (k - 1) * (2 * k + 5) for k in counts))


def sen_ranks(
    n: int, pairs: int, x_counts: Iterable[int], y_counts: Iterable[int], confidence: float
) -> tuple[int, int]:
    """The 1-based ranks (lower, upper) among the `pairs` sorted slopes that bound Sen's
    interval, as scipy.stats.theilslopes picks them: Kendall's S has variance (Sen's
    equation 2.6, ties in x and in y taken off) sigma^2, and the bounds sit
    z * sigma / 2 either side of the middle rank, rounded half to even as numpy does."""
    variance = (n * (n - 1) * (2 * n + 5) - _ties(x_counts) - _ties(y_counts)) / 18
    half = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * math.sqrt(max(variance, 0.0))
    upper = min(round((pairs + half) / 2), pairs - 1) + 1
    lower = max(round((pairs - half) / 2) - 1, 0) + 1
    return lower, upper


def inversions(groups: Sequence[int]) -> list[int]:
    """How many arrangements of a multiset with these group sizes, taken in order, have
    k inversions, for k = 0 .. N (N the pairs between different groups): the
    q-multinomial coefficient [n; n1, n2, ...]_q, as exact integers. Built group by group,
    multiplying by the q-integers [t + i]_q and dividing by [i]_q in turn, so that every
    step is a polynomial (a q-binomial coefficient times the previous one)."""
    poly, total = [1], 0
    for size in groups:
        for i in range(1, size + 1):
            poly = _times_q_integer(poly, total + i)
            poly = _over_q_integer(poly, i)
        total += size
    return poly


def _times_q_integer(poly: list[int], k: int) -> list[int]:
    """poly * (1 + q + ... + q^(k-1))."""
    sums = [0, *accumulate(poly)]
    last = len(poly)
    return [sums[min(m + 1, last)] - sums[max(m - k + 1, 0)] for m in range(last + k - 1)]


def _over_q_integer(poly: list[int], k: int) -> list[int]:
    """poly / (1 + q + ... + q^(k-1)), which divides it: poly * (1 - q) / (1 - q^k)."""
    if k == 1:
        return poly
    moved = [a - b for a, b in zip([*poly, 0], [0, *poly], strict=True)]
    quotient: list[int] = []
    for m in range(len(poly) - k + 1):
        quotient.append(moved[m] + (quotient[m - k] if m >= k else 0))
    return quotient


def exact_coverage(groups: Sequence[int], lower: int, upper: int) -> float:
    """P(lower <= D <= upper - 1): the chance that the true slope lies between the slopes
    of ranks lower and upper, D being how many pairwise slopes fall below it. With errors
    exchangeable and continuous, D is the count of inversions of the errors' ranks
    against the x groups (a slope below the truth is a pair whose errors fall)."""
    counts = inversions(groups)
    return sum(counts[lower:upper]) / sum(counts)


def normal_coverage(n: int, pairs: int, x_counts: Iterable[int], lower: int, upper: int) -> float:
    """exact_coverage's figure by the normal approximation (continuity corrected): D has
    mean pairs / 2 and a quarter of Kendall's S variance with the ties in x (continuous
    errors have none)."""
    spread = math.sqrt((n * (n - 1) * (2 * n + 5) - _ties(x_counts)) / 18) / 2
    normal = NormalDist(pairs / 2, spread)
    return normal.cdf(upper - 1 + 0.5) - normal.cdf(lower - 0.5)

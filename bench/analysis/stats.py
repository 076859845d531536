"""Small-sample statistics for the report: an interval of the median, and which ranks differ.

Every figure in a report is a median over a handful of repeats, so the statistics here are
distribution-free and exact for small n rather than resting on normality:

- `median_interval` gives the confidence interval that belongs beside a median: an
  interval OF THE MEDIAN, built from order statistics (the binomial argument: each value
  falls below the population median with probability 1/2). A mean +- t*sd interval beside
  a median would describe a different statistic and break on one wild repeat. Its
  coverage is reported exactly, so with very few repeats (n <= 5 at 95%) the reader sees
  that [min, max] covers less than asked instead of a silently overstated interval.
- `compare_adjacent` answers the question a ranking raises: is 1st really ahead of 2nd,
  2nd of 3rd, ...? It tests only the ADJACENT pairs of the ranking by median (a reader
  learns which ranks are distinguishable from noise; far-apart pairs follow), with a
  two-sided Mann-Whitney U test over the repeats and Holm's correction over the pairs of
  one call (one set of competitors, e.g. the models at one connection count). Each test
  also carries the smallest p its sample sizes allow, so "not significant" because of too
  few repeats is told apart from "not significant" because the samples overlap. A name
  whose values are lower bounds keeps its place in the ranking, but its pairs are not
  tested (and not counted by Holm): its true values could sit anywhere above.
- `mann_whitney_p` is that test's p. Where a side has fewer than EXACT_BELOW values it is
  exact with ties: the permutation distribution of the rank sum (midranks) over the
  observed pooled values, counted by a DP over doubled midranks, so that whole
  microseconds or other tied figures get no normal approximation (scipy's fallback with
  ties, which gave p 0.047 for [10, 10, 10] vs [5, 5, 5], whose exact p is 0.1).

NaN values (failed repeats) are dropped first everywhere. Pure Python apart from
scipy.stats.mannwhitneyu for two large samples; no pandas, no matplotlib.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from scipy.stats import mannwhitneyu

TEST_NAME = (
    "two-sided Mann-Whitney U test over repeats (exact, ties included, where a side has "
    "fewer than 10), "
    "Holm-corrected over the adjacent pairs tested at each connection count"
)

# Exact p wherever a side has fewer values than this; two larger samples take scipy's
# normal approximation, which corrects its variance for ties and is close there.
EXACT_BELOW = 10


@dataclass(frozen=True)
class MedianInterval:
    """[low, high] covers the population median with probability `coverage` (exact)."""

    low: float
    high: float
    coverage: float
    n: int


@dataclass(frozen=True)
class PairTest:
    """One adjacent pair of a ranking by median: `higher` ranks just above `lower`."""

    higher: str
    lower: str
    ratio: float  # median(higher) / median(lower); nan if median(lower) == 0
    p: float  # raw two-sided Mann-Whitney p; nan if not tested
    p_adjusted: float  # Holm over the pairs tested in one compare_adjacent call; nan if not
    significant: bool  # p_adjusted < alpha
    n_higher: int
    n_lower: int
    min_p: float  # smallest two-sided p possible for n_higher vs n_lower values
    tested: bool = True  # False where either side's values are lower bounds


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if not math.isnan(v)]


def median_interval(values: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """The narrowest order-statistic interval [x_(k), x_(n+1-k)] with coverage >= confidence.

    Coverage of [x_(k), x_(n+1-k)] is 1 - 2 P(Binomial(n, 1/2) <= k-1), computed exactly in
    integers. If even [min, max] (k=1) falls short, [min, max] is returned with its true,
    smaller coverage (n=3: 0.75, n=2: 0.5). NaNs are dropped first; with fewer than 2
    values left, low, high and coverage are nan. For data with ties the coverage is a
    lower bound.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    xs = sorted(_clean(values))
    n = len(xs)
    if n < 2:
        return MedianInterval(math.nan, math.nan, math.nan, n)
    total = 2**n
    conf = Fraction(confidence)
    # coverage(k) >= confidence  <=>  (total - 2 * tail) * denominator >= numerator * total
    need = conf.numerator * total
    k = 1
    tail = 1  # sum of comb(n, i) for i < k
    term = n  # comb(n, k), updated exactly as k grows
    # Narrow the interval (k += 1) while the next one still reaches the confidence.
    while 2 * (k + 1) <= n + 1 and (total - 2 * (tail + term)) * conf.denominator >= need:
        tail += term
        term = term * (n - k) // (k + 1)
        k += 1
    coverage = (total - 2 * tail) / total
    return MedianInterval(xs[k - 1], xs[n - k], coverage, n)


def min_p_value(n: int, m: int) -> float:
    """The smallest two-sided p the exact Mann-Whitney test can give for n vs m values.

    Tie-free, the most extreme split of the pooled values is 1 of C(n+m, n) and the p
    doubles that tail. Ties can only make it larger: each tail still holds at least that
    one split, and tied values let more splits share the extreme rank sum."""
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2 / math.comb(n + m, n))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (monotone in the raw p)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _doubled_midranks(pooled: Sequence[float]) -> list[int]:
    """2 x the midrank of each value (ranks 1..N, ties sharing their mean): integers."""
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    doubled = [0] * len(pooled)
    start = 0
    while start < len(order):
        end = start  # the tie group is order[start:end + 1], ranks start+1 .. end+1
        while end + 1 < len(order) and pooled[order[end + 1]] == pooled[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            doubled[i] = (start + 1) + (end + 1)
        start = end + 1
    return doubled


@lru_cache(maxsize=1024)
def _rank_sum_counts(doubled: tuple[int, ...], k: int) -> dict[int, int]:
    """How many of the C(N, k) choices of k values have each sum of doubled midranks:
    the permutation distribution of a k-sample's rank sum given the observed ties.
    Cached by the sorted ranks (without ties always 2, 4, ..., 2N); callers only read it."""
    # counts[j][s]: the ways to pick j of the values seen so far with doubled-rank sum s
    counts: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(k)]
    for rank in doubled:
        for j in range(k - 1, -1, -1):  # downwards, so each value is picked at most once
            into = counts[j + 1]
            for s, ways in counts[j].items():
                into[s + rank] = into.get(s + rank, 0) + ways
    return counts[k]


def exact_mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> Fraction:
    """Two-sided exact p of the Mann-Whitney test, ties included, as a fraction.

    The null distribution is the permutation distribution of the rank sum (midranks)
    over the observed pooled values: every split of them into len(a) and len(b) is
    equally likely. With ties it need not be symmetric, so "two-sided" is twice the
    smaller tail (P(W <= w) or P(W >= w), each counting the observed split), at most 1:
    scipy's two-sided sense (its exact test doubles a tail, its permutation_test the
    smaller one), and never below min_p_value (each tail holds the extreme split).
    """
    if not a or not b:
        return Fraction(1)
    doubled = _doubled_midranks([*a, *b])
    # the smaller side's rank sum carries the same information and a smaller DP
    side, k = (doubled[: len(a)], len(a)) if len(a) <= len(b) else (doubled[len(a) :], len(b))
    observed = sum(side)
    counts = _rank_sum_counts(tuple(sorted(doubled)), k)
    total = sum(counts.values())  # C(N, k)
    low = sum(ways for s, ways in counts.items() if s <= observed)
    high = sum(ways for s, ways in counts.items() if s >= observed)
    return min(Fraction(1), Fraction(2 * min(low, high), total))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney p of a vs b: exact with ties (exact_mann_whitney_p) where a
    side has fewer than EXACT_BELOW values, else scipy's normal approximation (corrected
    for ties). Symmetric in a and b; 1.0 where nothing can be told (an empty side)."""
    if min(len(a), len(b)) < EXACT_BELOW:
        return float(exact_mann_whitney_p(a, b))
    p = float(mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue)
    return 1.0 if math.isnan(p) else p  # nan only when every value is tied: no evidence


def compare_adjacent(
    samples: Mapping[str, Sequence[float]],
    alpha: float = 0.05,
    lower_bounds: Collection[str] = (),
) -> list[PairTest]:
    """Test each adjacent pair of the ranking of `samples` by median, highest first.

    The ranking is by median (highest first, ties broken by name); pair i compares rank i
    with rank i+1 by a two-sided Mann-Whitney U test (mann_whitney_p: exact with ties when
    a side has fewer than 10 values), and the p-values are Holm-adjusted over the pairs
    tested in this call. A pair with a name from `lower_bounds` on either side (its values
    are only lower bounds, e.g. client-bound throughput) keeps its place in the ranking
    but is not tested: `tested` False, p nan, never significant, not counted by Holm. The
    result lists the pairs in ranking order. NaNs are dropped first; names left with
    fewer than 2 values cannot be tested and are left out of the ranking entirely (their
    neighbours are then compared with each other). Fewer than two testable names give an
    empty list.
    """
    cleaned = {name: _clean(values) for name, values in samples.items()}
    medians = {name: statistics.median(xs) for name, xs in cleaned.items() if len(xs) >= 2}
    ranking = sorted(medians, key=lambda name: (-medians[name], name))
    pairs = list(zip(ranking, ranking[1:], strict=False))
    bounded = set(lower_bounds)
    tested = [hi not in bounded and lo not in bounded for hi, lo in pairs]
    raw = [
        mann_whitney_p(cleaned[hi], cleaned[lo]) if ok else math.nan
        for (hi, lo), ok in zip(pairs, tested, strict=True)
    ]
    adjusted_tested = iter(holm([p for p, ok in zip(raw, tested, strict=True) if ok]))
    adjusted = [next(adjusted_tested) if ok else math.nan for ok in tested]
    tests = []
    for (hi, lo), p, p_adj, ok in zip(pairs, raw, adjusted, tested, strict=True):
        ratio = medians[hi] / medians[lo] if medians[lo] != 0 else math.nan
        n_hi, n_lo = len(cleaned[hi]), len(cleaned[lo])
        tests.append(
            PairTest(
                higher=hi,
                lower=lo,
                ratio=ratio,
                p=p,
                p_adjusted=p_adj,
                significant=ok and p_adj < alpha,
                n_higher=n_hi,
                n_lower=n_lo,
                min_p=min_p_value(n_hi, n_lo),
                tested=ok,
            )
        )
    return tests

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
  few repeats is told apart from "not significant" because the samples overlap.

NaN values (failed repeats) are dropped first everywhere. Pure Python apart from
scipy.stats.mannwhitneyu; no pandas, no matplotlib.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from scipy.stats import mannwhitneyu

TEST_NAME = (
    "two-sided Mann-Whitney U test over repeats, "
    "Holm-corrected over the adjacent pairs at each connection count"
)

EXACT_MAX_N = 8  # exact Mann-Whitney p when both samples are this small and tie-free


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
    p: float  # raw two-sided Mann-Whitney p
    p_adjusted: float  # Holm over the pairs of one compare_adjacent call
    significant: bool  # p_adjusted < alpha
    n_higher: int
    n_lower: int
    min_p: float  # smallest two-sided p possible for n_higher vs n_lower values


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
    """The smallest two-sided p the exact Mann-Whitney test can give for n vs m values."""
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


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    tie_free = len(set(a + b)) == len(a) + len(b)
    method = "exact" if tie_free and len(a) <= EXACT_MAX_N and len(b) <= EXACT_MAX_N else "auto"
    p = float(mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)
    return 1.0 if math.isnan(p) else p  # nan only for degenerate input: no evidence


def compare_adjacent(samples: Mapping[str, Sequence[float]], alpha: float = 0.05) -> list[PairTest]:
    """Test each adjacent pair of the ranking of `samples` by median, highest first.

    The ranking is by median (highest first, ties broken by name); pair i compares rank i
    with rank i+1 by a two-sided Mann-Whitney U test (exact when tie-free and both n <= 8),
    and the p-values are Holm-adjusted over the pairs of this call. The result lists the
    pairs in ranking order. NaNs are dropped first; names left with fewer than 2 values
    cannot be tested and are left out of the ranking entirely (their neighbours are then
    compared with each other). Fewer than two testable names give an empty list.
    """
    cleaned = {name: _clean(values) for name, values in samples.items()}
    medians = {name: statistics.median(xs) for name, xs in cleaned.items() if len(xs) >= 2}
    ranking = sorted(medians, key=lambda name: (-medians[name], name))
    pairs = list(zip(ranking, ranking[1:], strict=False))
    raw = [_mann_whitney_p(cleaned[hi], cleaned[lo]) for hi, lo in pairs]
    adjusted = holm(raw)
    tests = []
    for (hi, lo), p, p_adj in zip(pairs, raw, adjusted, strict=True):
        ratio = medians[hi] / medians[lo] if medians[lo] != 0 else math.nan
        n_hi, n_lo = len(cleaned[hi]), len(cleaned[lo])
        tests.append(
            PairTest(
                higher=hi,
                lower=lo,
                ratio=ratio,
                p=p,
                p_adjusted=p_adj,
                significant=p_adj < alpha,
                n_higher=n_hi,
                n_lower=n_lo,
                min_p=min_p_value(n_hi, n_lo),
            )
        )
    return tests

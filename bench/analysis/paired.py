"""The paired statistics of `bench ab`: one test per cell and metric, sized together.

Each pair is one base and one new measurement of a cell taken back to back on the same
CPUs, so a shift of the whole machine moves both and cancels in their ratio. For a
continuous metric (throughput, p99, worst wait) the data are the pairs' log ratios
new / base:

- the test is the exact Wilcoxon signed-rank test, two-sided: distribution-free, and
  one wild pair moves it by one rank. On n pairs it cannot give p below 2^(1-n);
- the estimate is the Hodges-Lehmann median of the Walsh averages, and its interval
  the set of shifts d that the same test, run on the differences minus d, does not
  reject (below);
- the tests of one comparison form one family, corrected by Holm (which controls the
  chance of any false alarm per comparison), and each interval has level 1 - alpha/m
  (Bonferroni), the width that Holm's first step implies;
- `regression` needs Holm's rejection AND the whole interval beyond the threshold in
  the bad direction; `improvement` symmetrically; otherwise `no change`.

Ties and zeros (issue 27): p99 and the worst wait were whole microseconds, so two pairs
can have the same |difference| and a pair none at all. The test is exact conditional on
them: tied |differences| get their mean rank, and the null distribution is that of the
observed ranks under every sign pattern (counted over doubled ranks, whole numbers,
`null_counts`), not the tie-free one. Zeros follow Pratt's rule (Pratt 1959): every
|difference| is ranked, the zeros too, then the zeros' ranks are left out of the sum and
of the sign patterns. Not Wilcoxon's (drop the zeros, rank the rest) because the
interval must be the test inverted: with Wilcoxon's rule the shifts the test accepts
are not always one interval (a shift that makes a pair's difference zero can reject
while shifts on both sides of it do not, zero itself included), so no interval could
agree with the test; with Pratt's rule they were one interval on every input checked
(`tests/test_paired.py`; and 1,500 random inputs of 6-16 whole numbers at four levels:
Wilcoxon's rule had holes in 76 of the 6,000, 3 of them at zero; Pratt's in none). The
same rule serves the test and the interval.

The interval is found by running that test: the test on diffs - d changes only where d
crosses a Walsh average, so each Walsh average and one shift between each two neighbours
are the candidates; from each end inwards, the first accepted one is the interval's end.
An end where the test rejects (d exactly at a Walsh average, its ties and zeros making
the test reject there) is left out, and `ends` says so: `(0, 0.055]` holds no zero and
every shift above it up to 0.055. So at the same level, the interval excludes a shift
exactly when the test rejects it; at d = 0, exactly when p <= 1 - level.

Its coverage (`ShiftInterval.coverage`): the exact test rejects a true shift with a
chance of at most 1 - level, so the interval covers it with at least `level`; the exact
figure, 1 - the test's size, is computed for the pairs' ties as they lie at the estimate
(for pairs without equal values it is the same everywhere, the coverage exactly). Where n
pairs cannot reach the level (2^(1-n) > 1 - level: below 11 pairs for the gate's 32
tests), the test could never reject and the set would be every shift: the interval is
then the pairs' range (the test inverted at 2^(1-n)), whose coverage, 1 - 2^(1-n), is
below the level asked (87.5% on 4 pairs), and is labelled so.

For a count or flag (starved connections, errors, mismatches, a failed or suspect
repeat) the data are how many repeats on each side were affected, and the test is
Fisher's exact test, one-sided (new affected more often): a cell near a line flips
between identical runs, so "any" would fire on noise. It joins the same Holm family.
The power calculation for the nightly matrix is in docs/nightly.md.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.stats import fisher_exact

from bench.analysis.stats import holm

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"


class ShiftInterval(NamedTuple):
    """The Hodges-Lehmann estimate of the pairs' shift and the interval of the shifts
    that the signed-rank test does not reject (the module's docstring)."""

    estimate: float
    low: float
    high: float
    ends: str  # "[]" both ends in; "(" or ")": that end is out (the test rejects it)
    coverage: float  # the chance it holds the true shift: >= level, or less for the range

    def excludes(self, shift: float) -> bool:
        """Whether the test on diffs - shift rejects at the interval's level."""
        if shift < self.low or shift > self.high:
            return True
        return (shift == self.low and self.ends[0] == "(") or (
            shift == self.high and self.ends[1] == ")"
        )


@lru_cache(maxsize=512)
def null_counts(doubled_ranks: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """How many of the 2^n sign patterns of n values with these doubled (mid)ranks give
    each doubled signed-rank sum 0 .. sum(doubled_ranks). Doubled, midranks are whole
    numbers. Counted in floats: exact integers up to 53 values (2^53), rounded above."""
    counts = np.zeros(sum(doubled_ranks) + 1, dtype=np.float64)
    counts[0], top = 1, 0
    for rank in sorted(doubled_ranks):
        counts[rank : top + rank + 1] = counts[rank : top + rank + 1] + counts[: top + 1]
        top += rank
    counts.setflags(write=False)  # cached: shared by every caller
    return counts


@lru_cache(maxsize=512)
def _cumulative(doubled_ranks: tuple[int, ...]) -> npt.NDArray[np.float64]:
    cumulative = np.cumsum(null_counts(doubled_ranks))
    cumulative.setflags(write=False)
    return cumulative


def signed_rank_p(diffs: Iterable[float]) -> float:
    """The exact two-sided p of the signed-rank test, conditional on the pairs' ties and
    zeros (Pratt's rule: the module's docstring)."""
    values = _finite(diffs)
    return _p(*_statistic(_on_one_scale(values))) if values else 1.0


def hodges_lehmann(diffs: Iterable[float], level: float) -> ShiftInterval:
    """The Hodges-Lehmann estimate of the pairs' shift (the median of the Walsh averages)
    and the set of shifts d for which the signed-rank test on diffs - d does not reject
    at 1 - level, found by running the test at each candidate (every Walsh average and
    one shift between each two neighbours) inwards from both ends. Where the test cannot
    reject at 1 - level on this many pairs, the interval is the pairs' range, inverted at
    the smallest p they can give, and its coverage says how much less it holds. `level`
    above 0.5 (below, the test may accept no shift at all)."""
    values = _finite(diffs)
    n = len(values)
    if not n or not 0.5 < level < 1:
        raise ValueError(f"hodges_lehmann: {n} pairs at level {level}")
    d = np.asarray(values)
    estimate = float(np.median((d[:, None] + d[None, :])[np.triu_indices(n)] / 2))
    x = _on_one_scale(values)
    every: list[int] = []  # each Walsh average, twice and exactly (on x's scale)
    average: dict[int, float] = {}  # and as a float, for the ends
    for i in range(n):
        for j in range(i, n):
            every.append(x[i] + x[j])
            average.setdefault(x[i] + x[j], (values[i] + values[j]) / 2)
    every.sort()
    sums = sorted(average)
    # candidate k, as 4x - shifts[k]: even k the gap below sums[k // 2], odd k that sum
    shifts = [2 * sums[0] - 2]
    for here, above in zip(sums, [*sums[1:], sums[-1] + 2], strict=True):
        shifts += [2 * here, here + above]
    alpha = max(1 - level, smallest_p(n))
    # between Walsh averages no value is zero or tied with another of its own sign, and
    # T+ counts the Walsh averages above: without equal values, no ranking is needed
    plain = len(set(x)) == n
    untied = tuple(range(2, 2 * n + 1, 2))

    def accepted(k: int) -> bool:
        if plain and k % 2 == 0:
            above = len(every) - bisect_left(every, sums[k // 2]) if k < len(shifts) - 1 else 0
            return _p(2 * above, untied) > alpha
        return _p(*_statistic([4 * v - shifts[k] for v in x])) > alpha

    first = next(k for k in range(len(shifts)) if accepted(k))
    last = next(k for k in reversed(range(first, len(shifts))) if accepted(k))
    # the farthest gaps hold every pair on one side: p = 2^(1-n) <= alpha, never accepted
    low, high = sums[(first - 1) // 2], sums[last // 2]
    ends = ("[" if first % 2 else "(") + ("]" if last % 2 else ")")
    middle = sums.index(every[(len(every) - 1) // 2])
    gap = shifts[2 * middle + 2]  # the gap above the estimate, or holding it
    coverage = _coverage([4 * v - gap for v in x], alpha)
    return ShiftInterval(estimate, average[low], average[high], ends, coverage)


def smallest_p(n: int) -> float:
    """The smallest two-sided p the signed-rank test can give on n pairs: 2^(1-n)
    (more where some are zero: 2^(1 - the nonzero ones))."""
    return 2.0 ** (1 - n)


def _finite(diffs: Iterable[float]) -> list[float]:
    values = [float(v) for v in diffs]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("signed-rank test: a difference is not finite")
    return values


def _on_one_scale(values: Sequence[float]) -> list[int]:
    """The values as integers on one scale: a float is an integer over a power of two,
    so over the largest denominator every sum and difference below is exact, and a tie
    or a zero is one exactly (float arithmetic would make and break them)."""
    ratios = [v.as_integer_ratio() for v in values]
    scale = max(den for _, den in ratios)
    return [num * (scale // den) for num, den in ratios]


def _statistic(shifted: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """Pratt's signed-rank statistic, doubled: every |value| ranked (zeros too, ties
    given their mean rank), then the zeros left out: (the sum of the positive values'
    doubled ranks, the nonzero values' doubled ranks, in order)."""
    size = [v if v > 0 else -v for v in shifted]
    order = sorted(range(len(size)), key=size.__getitem__)
    plus, kept, start = 0, [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and size[order[end]] == size[order[start]]:
            end += 1
        rank = start + end + 1  # twice the mean of the 1-based positions start+1 .. end
        for i in order[start:end]:
            if shifted[i]:
                kept.append(rank)
                plus += rank if shifted[i] > 0 else 0
        start = end
    return plus, tuple(kept)


def _p(plus: int, doubled_ranks: tuple[int, ...]) -> float:
    """Two-sided: twice the smaller tail at the observed sum (the null is symmetric)."""
    if not doubled_ranks:
        return 1.0
    cumulative = _cumulative(doubled_ranks)
    tail = int(cumulative[min(plus, len(cumulative) - 1 - plus)])
    return min(1.0, 2 * tail / (1 << len(doubled_ranks)))


def _coverage(shifted: Sequence[int], alpha: float) -> float:
    """1 - the exact test's size at alpha for values tied as `shifted` are (none zero):
    the chance that the interval holds the true shift when it lies there."""
    _, ranks = _statistic(shifted)
    counts, cumulative = null_counts(ranks), _cumulative(ranks)
    sums = np.arange(len(counts))
    patterns = float(1 << len(ranks))
    p = 2 * cumulative[np.minimum(sums, len(counts) - 1 - sums)] / patterns
    return 1 - float(counts[p <= alpha].sum()) / patterns


@dataclass(frozen=True)
class PairedChange:
    """One cell's metric over the pairs: new / base."""

    metric: str
    pairs: int
    ratio: float  # the Hodges-Lehmann estimate, as a ratio
    low: float  # the interval at 1 - alpha/m, as ratios
    high: float
    p: float
    higher_is_better: bool
    p_holm: float = 1.0
    verdict: str = NO_CHANGE
    coverage: float | None = None  # the interval's (ShiftInterval); None: not tested
    ends: str = "[]"  # which of its ends it holds (ShiftInterval)


@dataclass(frozen=True)
class AffectedChange:
    """One cell's count or flag: how many repeats it affected on each side."""

    metric: str
    base_affected: int
    base_repeats: int
    new_affected: int
    new_repeats: int
    p: float
    p_holm: float = 1.0
    verdict: str = NO_CHANGE


def paired_change(
    metric: str, base: Sequence[float], new: Sequence[float], higher_is_better: bool, level: float
) -> PairedChange:
    """The pairs' change, tested and estimated on log ratios (verdict set by `judge`)."""
    diffs = [math.log(b / a) for a, b in zip(base, new, strict=True)]
    interval = hodges_lehmann(diffs, level)
    return PairedChange(
        metric, len(diffs), math.exp(interval.estimate), math.exp(interval.low),
        math.exp(interval.high), signed_rank_p(diffs), higher_is_better,
        coverage=interval.coverage, ends=interval.ends,
    )  # fmt: skip


def affected_change(metric: str, base: Sequence[bool], new: Sequence[bool]) -> AffectedChange:
    """Fisher's exact test, one-sided: is `new` affected more often than `base`?"""
    a, b = sum(base), sum(new)
    table = [[b, len(new) - b], [a, len(base) - a]]
    p = 1.0 if a == b == 0 else float(fisher_exact(table, alternative="greater").pvalue)
    return AffectedChange(metric, a, len(base), b, len(new), p)


def judge(
    changes: Sequence[PairedChange | AffectedChange], alpha: float, threshold: float
) -> list[PairedChange | AffectedChange]:
    """Holm over the whole family, then each change's verdict (see the module)."""
    adjusted = holm([c.p for c in changes])
    judged: list[PairedChange | AffectedChange] = []
    for change, p_holm in zip(changes, adjusted, strict=True):
        verdict = NO_CHANGE
        if p_holm <= alpha:
            if isinstance(change, AffectedChange):
                verdict = REGRESSION
            else:
                below, above = change.high < 1 - threshold, change.low > 1 + threshold
                worse, better = (below, above) if change.higher_is_better else (above, below)
                verdict = REGRESSION if worse else IMPROVEMENT if better else NO_CHANGE
        judged.append(replace(change, p_holm=p_holm, verdict=verdict))
    return judged

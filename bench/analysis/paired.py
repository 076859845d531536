"""The paired statistics of `bench ab`: one test per cell and metric, sized together.

Each pair is one base and one new measurement of a cell taken back to back on the same
CPUs, so a shift of the whole machine moves both and cancels in their ratio. For a
continuous metric (throughput, p99, worst wait) the data are the pairs' log ratios
new / base:

- the test is the exact Wilcoxon signed-rank test, two-sided: distribution-free, and
  one wild pair moves it by one rank. On n pairs it cannot give p below 2^(1-n);
- the estimate is the Hodges-Lehmann median of the Walsh averages, and its interval
  the exact one that inverts the same test (order statistics of the Walsh averages);
- the tests of one comparison form one family, corrected by Holm (which controls the
  chance of any false alarm per comparison), and each interval has level 1 - alpha/m
  (Bonferroni), the width that Holm's first step implies;
- `regression` needs Holm's rejection AND the whole interval beyond the threshold in
  the bad direction; `improvement` symmetrically; otherwise `no change`.

For a count or flag (starved connections, errors, mismatches, a failed or suspect
repeat) the data are how many repeats on each side were affected, and the test is
Fisher's exact test, one-sided (new affected more often): a cell near a line flips
between identical runs, so "any" would fire on noise. It joins the same Holm family.
The power calculation for the nightly matrix is in docs/nightly.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import numpy.typing as npt
from scipy.stats import fisher_exact

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"


@cache
def signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2^n sign patterns give each signed-rank sum T+ = 0 .. n(n+1)/2."""
    counts = [1]
    for rank in range(1, n + 1):
        grown = counts + [0] * rank
        for t, c in enumerate(counts):
            grown[t + rank] += c
        counts = grown
    return tuple(counts)


def signed_rank_p(diffs: Iterable[float]) -> float:
    """The exact two-sided p of the Wilcoxon signed-rank test (zeros dropped)."""
    d = np.asarray([x for x in diffs if x != 0.0], dtype=float)
    n = len(d)
    if n == 0:
        return 1.0
    ranks = _ranks(np.abs(d))
    t_plus = float(ranks[d > 0].sum())
    counts = signed_rank_counts(n)
    total = 2**n
    low = sum(counts[: math.floor(min(t_plus, n * (n + 1) / 2 - t_plus)) + 1])
    return float(min(1.0, 2 * low / total))


def hodges_lehmann(diffs: Iterable[float], level: float) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of the pairs' shift and its exact interval at
    `level` (the signed-rank test inverted): (estimate, low, high). Where the test
    cannot reach 1 - level on this many pairs, the interval is the whole range."""
    d = np.sort(np.fromiter(diffs, dtype=float))
    n = len(d)
    walsh = np.sort((d[:, None] + d[None, :])[np.triu_indices(n)] / 2)
    estimate = float(np.median(walsh))
    counts = signed_rank_counts(n)
    total, tail, k = 2**n, (1 - level) / 2, 0
    # k: how many Walsh averages to cut from each end, the most with P(T+ < k) <= tail
    while k < len(counts) and sum(counts[: k + 1]) / total <= tail:
        k += 1
    k = max(k, 1)
    return estimate, float(walsh[k - 1]), float(walsh[len(walsh) - k])


def smallest_p(n: int) -> float:
    """The smallest two-sided p the signed-rank test can give on n pairs: 2^(1-n)."""
    return 2.0 ** (1 - n)


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
    estimate, low, high = hodges_lehmann(diffs, level)
    return PairedChange(
        metric, len(diffs), math.exp(estimate), math.exp(low), math.exp(high),
        signed_rank_p(diffs), higher_is_better,
    )  # fmt: skip


def affected_change(metric: str, base: Sequence[bool], new: Sequence[bool]) -> AffectedChange:
    """Fisher's exact test, one-sided: is `new` affected more often than `base`?"""
    a, b = sum(base), sum(new)
    table = [[b, len(new) - b], [a, len(base) - a]]
    p = 1.0 if a == b == 0 else float(fisher_exact(table, alternative="greater").pvalue)
    return AffectedChange(metric, a, len(base), b, len(new), p)


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values, in the given order."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted, running = [1.0] * m, 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * ps[i]))
        adjusted[i] = running
    return adjusted


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


def _ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ranks 1..n, ties given their mean rank."""
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(1, len(values) + 1, dtype=float)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks

"""How much two independent samples differ as a ratio: the two-sample Hodges-Lehmann
estimate and the interval that inverts the Mann-Whitney test.

On log values, new = base + d under a pure shift d (a ratio exp(d) on the values). Every
one of the n x m differences log(new_j) - log(base_i) is then an estimate of d:

- the estimate is their median, exp()'d: the ratio that the rank test is about, robust
  to one wild repeat (a ratio of medians is not the quantity the test tests);
- the interval is [D_(k), D_(nm+1-k)] of the sorted differences. Under the shift, the
  count of differences below d is the Mann-Whitney U of base against new - d, whose
  distribution without ties is known exactly: the interval holds d with probability
  1 - 2 P(U <= k - 1). k is the largest that keeps this at or above the level asked
  for; where even k = 1 (the range of the differences) falls short, the range is
  returned with its true, smaller coverage (3 vs 3 repeats: 90%). With tied values
  the closed interval holds d at least as often (ties only add differences equal to
  d), so the coverage is then a lower bound.

The interval excludes a ratio r exactly when the exact tie-free Mann-Whitney test of
new / r against base rejects at 1 - coverage. Coverage of this and of a percentile
bootstrap, measured: `python -m bench.studies.compare_power` (docs/nightly.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np


class RatioInterval(NamedTuple):
    estimate: float  # the Hodges-Lehmann ratio new / base
    low: float
    high: float
    coverage: float  # exact without ties, a lower bound with them


@lru_cache(maxsize=256)
def u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) equally likely orderings of n base and m new values
    (no ties) give U = u, for u = 0 .. n*m; U counts the pairs with the base value larger.
    The largest value is a base one (beating all m new: U - m remains) or a new one."""
    if n == 0 or m == 0:
        return (1,)
    top = u_counts(n - 1, m)  # the largest is a base value
    rest = u_counts(n, m - 1)  # the largest is a new value
    counts = [0] * (n * m + 1)
    for u, ways in enumerate(rest):
        counts[u] += ways
    for u, ways in enumerate(top):
        counts[u + m] += ways
    return tuple(counts)


@lru_cache(maxsize=256)
def order_statistic(n: int, m: int, confidence: float) -> tuple[int, float]:
    """The largest k whose interval [D_(k), D_(nm+1-k)] covers at least `confidence`,
    and its coverage; k = 1 (the range) with its smaller coverage where none does."""
    counts = u_counts(n, m)
    total = math.comb(n + m, n)
    k, tail = 1, counts[0]  # tail: orderings with U <= k - 1
    while 2 * (k + 1) <= n * m + 1 and 1 - 2 * (tail + counts[k]) / total >= confidence:
        tail += counts[k]
        k += 1
    return k, 1 - 2 * tail / total


def ratio_interval(
    base: Sequence[float], new: Sequence[float], confidence: float = 0.95
) -> RatioInterval:
    """The Hodges-Lehmann ratio new / base and its order-statistic interval (module
    docstring). Every value must be positive; nan where a side is empty."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence!r}")
    if not base or not new:
        return RatioInterval(math.nan, math.nan, math.nan, math.nan)
    b, a = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if not all(np.all(np.isfinite(v) & (v > 0)) for v in (b, a)):
        raise ValueError("ratio_interval: every value must be positive and finite")
    b, a = np.log(b), np.log(a)
    diffs = np.sort((a[None, :] - b[:, None]).ravel())
    k, coverage = order_statistic(len(b), len(a), confidence)
    return RatioInterval(
        float(math.exp(np.median(diffs))),
        float(math.exp(diffs[k - 1])),
        float(math.exp(diffs[diffs.size - k])),
        coverage,
    )

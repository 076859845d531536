"""Where a nightly series changed: level shifts (E-Divisive) and slow drift (a trend test).

Shifts come from Apache Otava's E-Divisive (`otava.analysis.compute_change_points`, the
Hunter paper's split and merge): a change point stays when its two sides differ by
Student's t-test at p <= SHIFT_MAX_P *and* their means by more than SHIFT_MIN_CHANGE.
A change point with fewer than MIN_LEVEL_NIGHTS nights on either side is left out: one
odd night at the end of a history is not yet a new level.

E-Divisive looks for steps, and a ramp of 1% a night hides in the noise of any one
split; a trend test sees it. Over the last TREND_NIGHTS nights, on log values:
Mann-Kendall (Kendall's tau against the night's index) at TREND_ALPHA, and Sen's slope
(Theil-Sen) at least MIN_DRIFT_PER_NIGHT a night. Where the drift began is the break of
the best flat-then-linear fit over the window (a hinge; a rough estimate, give or take
a few nights).

Nights are not independent: whatever the anchor's side or the machine carries from one
night to the next makes the ratios' noise correlated, and both tests then see steps and
trends in noise. The rule is sized for AR(1) noise with a lag-1 autocorrelation of
SIZED_FOR_PHI, analysed every night as the history grows: SHIFT_MAX_P is the p that
keeps E-Divisive's false alarms there near 3% (simulated: Otava's t-test assumes
independent nights, and no closed form fits its best split), and Mann-Kendall's
variance is inflated for that autocorrelation (Hamed and Rao's correction). The price
is power at high noise; docs/nightly.md has the figures. lag1_autocorrelation says how
correlated a series' nights are, for `bench history` to warn above SIZED_FOR_PHI.

A step inside the trend window reads as a trend too, and a ramp as a step or two. Where
a shift lies in the trend window, the drift stays only if flat-then-a-ramp fits the
window's log values better than one step does (least squares). Shifts always stay: a
ramp can then show as a drift and a shift inside it, and the drift's commit range is
the one that says where it began (dropping the shift instead would also drop some true
steps that happen to fit a ramp: about 4 in 100 at 5% noise in bench.studies.history_sim's (a)).

Every finding names the commit range where it began: the commit of the last night
before and of its first night. docs/nightly.md says why these parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from otava.analysis import compute_change_points
from scipy.stats import norm, theilslopes

SHIFT, DRIFT = "shift", "drift"

# The lag-1 autocorrelation of the nightly noise the rule is sized for: at it, pure noise
# analysed every night from night 10 to 30 raises a flag in at most 5% of histories
# (docs/nightly.md; bench.studies.history_sim --nightly).
SIZED_FOR_PHI = 0.5
MIN_PHI_NIGHTS = 20  # lag1_autocorrelation's fewest nights: below, it says too little

SHIFT_MAX_P = 5e-7
SHIFT_MIN_CHANGE = 0.05  # below it, at low noise, only noise passed the t-test (docs)
MIN_LEVEL_NIGHTS = 3
OTAVA_WINDOW = 50  # Otava's default window for its split step
TREND_NIGHTS = 30
MIN_TREND_NIGHTS = 10
TREND_ALPHA = 0.01
MIN_DRIFT_PER_NIGHT = 0.0025  # 5% in 20 nights
MIN_RAMP_NIGHTS = 3  # nights after the hinge's onset, at least


@dataclass(frozen=True)
class Finding:
    """A shift or a drift in one series."""

    kind: str  # SHIFT or DRIFT
    night: int  # index of its first night: the new level's, or the first one drifting
    before: str  # commit of the last night before it
    after: str  # commit of its first night
    change: float  # relative: a shift's new level / old level - 1; a drift's since its onset
    p: float  # a shift: Otava's t-test; a drift: Mann-Kendall's
    per_night: float | None = None  # a drift's change per night (from the hinge fit)

    @property
    def commits(self) -> str:
        return f"{self.before[:10]}..{self.after[:10]}"

    def size(self, worse: bool, nights: int, digits: int = 1) -> str:
        """The change in words, a drift's also per night (one digit more) and over its
        span in a series of `nights`; `digits` after the percent's point."""
        word = "worse" if worse else "better"
        if self.per_night is None:
            return f"{self.change:+.{digits}%} ({word})"
        span = nights - self.night
        return (
            f"{self.per_night:+.{digits + 1}%} a night, {self.change:+.{digits}%} over "
            f"{span} nights ({word})"
        )


def find(values: Sequence[float], commits: Sequence[str]) -> list[Finding]:
    """Shifts and drift in one series (oldest night first, positive values), each night's
    commit beside it; the findings in the order of their first night."""
    if len(values) != len(commits):
        raise ValueError(f"{len(values)} values but {len(commits)} commits")
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise ValueError("a series needs positive, finite values")
    found = shifts(values, commits)
    trend = drift(values, commits)
    if trend is None:
        return found
    start = max(0, len(values) - TREND_NIGHTS)
    if any(f.night >= start for f in found):
        window = np.log(np.asarray(values[start:], dtype=float))
        if _step_sse(window) <= _hinge(window)[1]:
            return found  # a step explains the window at least as well: no drift
    return sorted([*found, trend], key=lambda f: f.night)


def shifts(values: Sequence[float], commits: Sequence[str]) -> list[Finding]:
    """Level shifts by E-Divisive (Otava), at least MIN_LEVEL_NIGHTS nights each side."""
    n = len(values)
    if n < 2 * MIN_LEVEL_NIGHTS:
        return []
    points, _weak = compute_change_points(
        [float(v) for v in values],  # a list: Otava's windows slice only a non-array
        window_len=OTAVA_WINDOW,
        max_pvalue=SHIFT_MAX_P,
        min_magnitude=SHIFT_MIN_CHANGE,
    )
    bounds = [0, *(int(p.index) for p in points), n]
    kept = [
        (bounds[i], float(points[i - 1].stats.pvalue))
        for i in range(1, len(bounds) - 1)
        if min(bounds[i] - bounds[i - 1], bounds[i + 1] - bounds[i]) >= MIN_LEVEL_NIGHTS
    ]
    edges = [0, *(index for index, _ in kept), n]
    return [
        Finding(
            SHIFT,
            index,
            commits[index - 1],
            commits[index],
            _mean(values[index : edges[i + 2]]) / _mean(values[edges[i] : index]) - 1,
            p,
        )
        for i, (index, p) in enumerate(kept)
    ]


def drift(values: Sequence[float], commits: Sequence[str]) -> Finding | None:
    """A monotonic trend over the last TREND_NIGHTS nights, or None."""
    start = max(0, len(values) - TREND_NIGHTS)
    y = np.log(np.asarray(values[start:], dtype=float))
    if len(y) < MIN_TREND_NIGHTS:
        return None
    x = np.arange(len(y))
    p = mann_kendall(y)
    slope = float(theilslopes(y, x)[0])
    if not (p < TREND_ALPHA and abs(slope) >= math.log1p(MIN_DRIFT_PER_NIGHT)):
        return None
    (onset, rate), _ = _hinge(y)
    night = start + onset + 1  # the hinge's onset is the last night still on the level
    span = len(y) - 1 - onset
    return Finding(
        DRIFT,
        night,
        commits[night - 1],
        commits[night],
        math.expm1(rate * span),
        p,
        math.expm1(rate),
    )


def mann_kendall(y: npt.NDArray[np.float64], phi: float = SIZED_FOR_PHI) -> float:
    """Mann-Kendall's two-sided p for a trend in y (oldest first), the variance of its S
    inflated for AR(1) noise at phi (Hamed and Rao 1998); normal, continuity-corrected."""
    n = len(y)
    s = float(np.sign(y[None, :] - y[:, None])[np.triu_indices(n, 1)].sum())
    _, ties = np.unique(y, return_counts=True)
    variance = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18
    variance *= variance_inflation(n, phi)
    if variance <= 0:
        return 1.0
    return float(2 * norm.sf(max(0.0, abs(s) - 1) / math.sqrt(variance)))


def variance_inflation(n: int, phi: float = SIZED_FOR_PHI) -> float:
    """Hamed and Rao's n / n* for Mann-Kendall's S over n values of AR(1) noise at phi:
    the ranks' autocorrelation at lag k of a normal AR(1) is 6/pi asin(phi^k / 2)."""
    total = sum(
        (n - k) * (n - k - 1) * (n - k - 2) * 6 / math.pi * math.asin(phi**k / 2)
        for k in range(1, n - 2)
    )
    return 1 + 2 * total / (n * (n - 1) * (n - 2)) if n > 2 else 1.0


def lag1_autocorrelation(values: Sequence[float]) -> float | None:
    """The lag-1 autocorrelation of the log values of the last TREND_NIGHTS nights, about
    their mean; None below MIN_PHI_NIGHTS nights or when they do not vary."""
    y = np.log(np.asarray(values[-TREND_NIGHTS:], dtype=float))
    if len(y) < MIN_PHI_NIGHTS or np.ptp(y) == 0:
        return None
    d = y - y.mean()
    return float((d[1:] * d[:-1]).sum() / (d * d).sum())


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def _step_sse(y: npt.NDArray[np.float64]) -> float:
    """The residual sum of squares of the best single step (at least MIN_LEVEL_NIGHTS
    nights each side)."""
    sses = [
        float(((y[:k] - y[:k].mean()) ** 2).sum() + ((y[k:] - y[k:].mean()) ** 2).sum())
        for k in range(MIN_LEVEL_NIGHTS, len(y) - MIN_LEVEL_NIGHTS + 1)
    ]
    return min(sses, default=math.inf)


def _hinge(y: npt.NDArray[np.float64]) -> tuple[tuple[int, float], float]:
    """((onset, slope after it), residual sum of squares) of the best fit of a flat
    level until `onset`, then a straight line: least squares over every onset."""
    x = np.arange(len(y), dtype=float)
    best: tuple[tuple[int, float], float] = ((0, 0.0), math.inf)
    for onset in range(len(y) - MIN_RAMP_NIGHTS):
        ramp = np.maximum(0.0, x - onset)
        design = np.column_stack([np.ones_like(x), ramp])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ coef - y) ** 2).sum())
        if sse < best[1]:
            best = ((onset, float(coef[1])), sse)
    return best

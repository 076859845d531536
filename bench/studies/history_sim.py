"""`python -m bench.studies.history_sim [--noise PCT] [--seed N]`: bench.analysis.changepoints
on synthetic histories, against issue 14's acceptance (and issue 27's, --nightly).

A history is what bench.gate.history analyses: 30 nights of one cell's paired throughput
ratio new / anchor (bench ab against a fixed anchor, both at once; higher is better: a
slowdown is a drop), with independent log-normal noise: each night's value is the level
times exp(e), e normal with standard deviation --noise percent (as a fraction). It
prints, for --noise and for a few other levels so that one sees where detection breaks:

(a) a 10% drop of the ratio from night 15 on: in how many of 10 histories a shift is
    found within 2 nights of night 15 (acceptance: at least 9);
(b) a drift of the ratio of 1% a night from night 10 on (night 11 is 1% down, night 12
    2%, ...), analysed on nights 1 to 25 only: in how many of 10 histories anything is
    flagged (at least 9), and in how many as a drift (the trend test; a ramp can also
    read as a shift, whose commit range then points into the ramp, not at its start);
(c) pure noise, 30 nights: how many of 100 histories raise any finding (at most 5).

Each scenario draws its noise from its own stream of --seed, and the same draws serve
every noise level (scaled), so a level's line does not depend on the others.
`--many N` adds the rates over N histories per scenario (slower), to see how far from
its acceptance line a count of 10 or 100 happens to fall.

`--phi PHI` makes the noise correlated between nights: a stationary AR(1) series with
lag-1 autocorrelation PHI and the same sd (--noise). `--nightly N` adds the false alarms
as the nightly job meets them (issue 27): N pure-noise histories, each analysed on
nights 1..n for every n from night 10 to 30, a flag on any of those nights one false
alarm; per noise level (2%, 3%, 5%, --noise) and phi (0, 0.3, 0.5, 0.7, --phi), with
Wilson's 95% interval. The rule is sized for at most 5% of them at phi
bench.analysis.changepoints.SIZED_FOR_PHI.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.analysis.changepoints import DRIFT, SHIFT, Finding, find
from common.cli import ArgumentParser, non_negative_float, non_negative_int

# sd of a night's log ratio new / anchor, in percent: the largest sd of the log of an A/A
# comparison's paired ratio between comparisons (measured: see docs/nightly.md)
NOISE_PCT = 2.0  # the A/A ratio's largest sd, throughput and CPU per request (docs/nightly.md)
LEVELS_PCT = (1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
SEED = 0
NIGHTS = 30
LEVEL = 1.0  # the ratio new / anchor before any change
SHIFT_NIGHT, SHIFT_BY, SHIFT_SLACK = 15, -0.10, 2
DRIFT_AFTER, DRIFT_PER_NIGHT, DRIFT_SEEN_BY = 10, -0.01, 25
HISTORIES, NOISE_HISTORIES = 10, 100
FIRST_NIGHT = 10  # --nightly: analysed on every night from this one to NIGHTS
NIGHTLY_LEVELS_PCT = (2.0, 3.0, 5.0)  # --nightly's noise levels, besides --noise
PHIS = (0.0, 0.3, 0.5, 0.7)  # --nightly's correlations between nights, besides --phi
NEED_FOUND, NEED_QUIET = 9, 5  # of HISTORIES found; of NOISE_HISTORIES flagged, at most


@dataclass(frozen=True)
class Outcome:
    noise_pct: float
    shift_found: int  # (a), of `histories`
    drift_flagged: int  # (b), any finding
    drift_as_drift: int  # (b), of those as a drift
    histories: int
    noise_flagged: int  # (c), of `noise_histories`
    noise_shifts: int
    noise_drifts: int
    noise_histories: int

    @property
    def passes(self) -> bool:
        """Issue 14's acceptance, scaled to the numbers of histories."""
        need = math.ceil(NEED_FOUND * self.histories / HISTORIES)
        quiet = NEED_QUIET * self.noise_histories / NOISE_HISTORIES
        return (
            self.shift_found >= need and self.drift_flagged >= need and self.noise_flagged <= quiet
        )


def shifted(night: int) -> float:
    return 1 + SHIFT_BY if night >= SHIFT_NIGHT else 1.0


def drifting(night: int) -> float:
    return (1 + DRIFT_PER_NIGHT) ** max(0, night - DRIFT_AFTER)


def flat(night: int) -> float:
    return 1.0


def draws(seed: int, scenario: int, histories: int, phi: float = 0.0) -> npt.NDArray[np.float64]:
    """Standard normal draws, a row per history: the same for every noise level. With phi,
    each row is a stationary AR(1) series of them, sd still 1: night t's draw is phi times
    night t-1's plus sqrt(1 - phi^2) times a fresh one (the same fresh draws at every phi)."""
    z = np.random.default_rng([seed, scenario]).standard_normal((histories, NIGHTS))
    e = z.copy()
    for t in range(1, NIGHTS):
        e[:, t] = phi * e[:, t - 1] + math.sqrt(1 - phi * phi) * z[:, t]
    return e


def history(z: Sequence[float], noise_pct: float, shape: Callable[[int], float]) -> list[float]:
    """Nights 1..NIGHTS: LEVEL x shape(night) x exp(noise)."""
    return [
        LEVEL * shape(night) * math.exp(noise_pct / 100 * e)
        for night, e in zip(range(1, NIGHTS + 1), z, strict=True)
    ]


COMMITS = [f"c{night:02d}" for night in range(1, NIGHTS + 1)]  # night n's commit: "c<n>"


def _night(finding: Finding) -> int:
    return finding.night + 1  # findings count from 0, nights from 1


def run(
    noise_pct: float, seed: int, histories: int, noise_histories: int, phi: float = 0.0
) -> Outcome:
    shift_found = drift_flagged = drift_as_drift = 0
    for z in draws(seed, 1, histories, phi):
        found = find(history(z, noise_pct, shifted), COMMITS)
        shift_found += any(
            f.kind == SHIFT and abs(_night(f) - SHIFT_NIGHT) <= SHIFT_SLACK for f in found
        )
    for z in draws(seed, 2, histories, phi):
        values = history(z, noise_pct, drifting)[:DRIFT_SEEN_BY]
        found = find(values, COMMITS[:DRIFT_SEEN_BY])
        drift_flagged += bool(found)
        drift_as_drift += any(f.kind == DRIFT for f in found)
    flagged = shift_flags = drift_flags = 0
    for z in draws(seed, 3, noise_histories, phi):
        kinds = {f.kind for f in find(history(z, noise_pct, flat), COMMITS)}
        flagged += bool(kinds)
        shift_flags += SHIFT in kinds
        drift_flags += DRIFT in kinds
    return Outcome(
        noise_pct, shift_found, drift_flagged, drift_as_drift, histories,
        flagged, shift_flags, drift_flags, noise_histories,
    )  # fmt: skip


@dataclass(frozen=True)
class Nightly:
    """Pure-noise histories analysed every night from FIRST_NIGHT to NIGHTS, as the
    nightly job does: a history with a flag on at least one of those nights is one
    false alarm."""

    noise_pct: float
    phi: float
    flagged: int
    shift_flagged: int
    drift_flagged: int
    histories: int

    @property
    def rate(self) -> float:
        return self.flagged / self.histories

    def interval(self) -> tuple[float, float]:
        """Wilson's 95% interval of the rate."""
        n, z = self.histories, 1.96
        centre = (self.rate + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(self.rate * (1 - self.rate) / n + z * z / (4 * n * n))
        return max(0.0, centre - half / (1 + z * z / n)), centre + half / (1 + z * z / n)


def nightly(noise_pct: float, phi: float, seed: int, histories: int) -> Nightly:
    """(c)'s histories (the same stream), each analysed on nights 1..n for every n from
    FIRST_NIGHT to NIGHTS."""
    flagged = shift_flagged = drift_flagged = 0
    for z in draws(seed, 3, histories, phi):
        values = history(z, noise_pct, flat)
        kinds: set[str] = set()
        for n in range(FIRST_NIGHT, NIGHTS + 1):
            kinds |= {f.kind for f in find(values[:n], COMMITS[:n])}
            if kinds == {SHIFT, DRIFT}:
                break
        flagged += bool(kinds)
        shift_flagged += SHIFT in kinds
        drift_flagged += DRIFT in kinds
    return Nightly(noise_pct, phi, flagged, shift_flagged, drift_flagged, histories)


def nightly_line(o: Nightly) -> str:
    low, high = o.interval()
    return (
        f"{o.noise_pct:5.1f}%  {o.phi:4.2f}  {o.flagged:>4}/{o.histories:<5} {o.rate:6.1%} "
        f"[{low:5.1%}, {high:5.1%}]  (shift {o.shift_flagged}, drift {o.drift_flagged})"
    )


def line(o: Outcome) -> str:
    n, m = o.histories, o.noise_histories
    return (
        f"{o.noise_pct:5.1f}%  {o.shift_found:>4}/{n:<6}  "
        f"{o.drift_flagged:>4}/{n:<4} (drift {o.drift_as_drift:>2})  "
        f"{o.noise_flagged:>4}/{m:<5} (shift {o.noise_shifts}, drift {o.noise_drifts})  "
        + ("pass" if o.passes else "FAIL")
    )


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m bench.studies.history_sim", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--noise",
        type=non_negative_float,
        default=NOISE_PCT,
        metavar="PCT",
        help=f"sd of a night's log ratio, in percent (default {NOISE_PCT:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help="the random seed of the synthetic histories"
    )
    parser.add_argument(
        "--many",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="also the rates over N histories per scenario (default 0: not)",
    )
    parser.add_argument(
        "--phi",
        type=correlation,
        default=0.0,
        help="AR(1) correlation of the noise between consecutive nights (default 0: independent)",
    )
    parser.add_argument(
        "--nightly",
        type=non_negative_int,
        default=0,
        metavar="N",
        help=f"also the false alarms of N pure-noise histories analysed every night "
        f"{FIRST_NIGHT}-{NIGHTS}, per noise level and phi (default 0: not)",
    )
    return parser


def correlation(text: str) -> float:
    """A phi for AR(1) noise: 0 <= phi < 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected 0 <= phi < 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    levels = sorted({args.noise, *LEVELS_PCT})
    print(
        f"synthetic histories: {NIGHTS} nights of the paired throughput ratio new / anchor "
        f"(level {LEVEL:g}), log-normal noise (AR(1), phi {args.phi:g}), seed {args.seed}\n"
        f"(a) a {-SHIFT_BY:.0%} drop at night {SHIFT_NIGHT}: shift found within "
        f"{SHIFT_SLACK} nights (need >= {NEED_FOUND}/{HISTORIES})\n"
        f"(b) {-DRIFT_PER_NIGHT:.0%} a night from night {DRIFT_AFTER}, nights 1-"
        f"{DRIFT_SEEN_BY} only: flagged (need >= {NEED_FOUND}/{HISTORIES})\n"
        f"(c) pure noise: any flag (need <= {NEED_QUIET}/{NOISE_HISTORIES})\n"
    )
    header = " noise  (a) shift    (b) drift            (c) noise"
    print(header)
    for level in levels:
        mark = "  <- --noise" if level == args.noise else ""
        print(line(run(level, args.seed, HISTORIES, NOISE_HISTORIES, args.phi)) + mark)
    if args.many:
        print(f"\nover {args.many} histories per scenario:\n{header}")
        for level in levels:
            print(line(run(level, args.seed + 1, args.many, args.many, args.phi)))
    if args.nightly:
        print(
            f"\npure noise analysed every night {FIRST_NIGHT}-{NIGHTS}, {args.nightly} "
            f"histories each (seed {args.seed + 1}): a flag on any night is a false alarm "
            f"(rate, Wilson's 95% interval)\n noise   phi  flagged"
        )
        for level in sorted({args.noise, *NIGHTLY_LEVELS_PCT}):
            for phi in sorted({args.phi, *PHIS}):
                print(nightly_line(nightly(level, phi, args.seed + 1, args.nightly)), flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

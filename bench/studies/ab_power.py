"""`python -m bench.studies.ab_power AB_FOLDER`: how many pairs `bench ab` needs, from noise.

Reads an A/A comparison (`bench ab` of one revision against itself), takes each cell's
paired log ratios of throughput (or server CPU per request) as the noise of one pair,
and simulates comparisons by drawing pairs from that noise (with replacement, each with
a random sign, so the null stays symmetric): with no change, how often a cell is
flagged (false alarms), and with a slowdown of --effect, how often it is a regression.
One cell's test is run at Holm's first step, alpha/m, with the family's m: the bar
every regression must pass. Prints one table per cell: pairs against power and false alarms.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from bench.analysis.paired import hodges_lehmann, signed_rank_p
from bench.gate.ab import SIDES
from bench.gate.ab_analysis import CONTINUOUS, THRESHOLD_PCT, family_size, paired_values
from bench.store import RunStore, StoreError
from common.cli import ArgumentParser, positive_float, positive_int, usage_error

PROG = "python -m bench.studies.ab_power"
TRIALS = 2000
SEED = 14


def noise(folder: Path, metric: str = "throughput") -> dict[str, list[float]]:
    """Each cell's log ratios of `metric` (throughput or cpu_per_request) over its pairs
    (new / base)."""
    spec = next(s for s in CONTINUOUS if s.name == metric)
    base, new = (RunStore.open(folder / side).rows() for side in SIDES)
    return {
        key: [math.log(y / x) for x, y in values]
        for key, values in paired_values(base, new, spec).items()
        if values
    }


def simulate(
    diffs: list[float],
    pairs: int,
    effect: float,
    level: float,
    threshold: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """(power against `effect`, false-alarm rate) of one test at `level`: a slowdown
    lowers throughput by `effect` (a CPU figure rises by 1 / (1 - effect); the same
    log shift, mirrored, which the symmetric noise makes equivalent)."""
    pool = np.asarray(diffs) - np.median(diffs)  # the noise, centred
    alpha = 1 - level
    hits = alarms = 0
    for _ in range(TRIALS):
        draw = rng.choice(pool, pairs) * rng.choice((-1.0, 1.0), pairs)
        slow = draw + math.log(1 - effect)
        interval = hodges_lehmann(slow, level)
        hits += signed_rank_p(slow) <= alpha and math.exp(interval.high) < 1 - threshold
        interval = hodges_lehmann(draw, level)
        beyond = math.exp(interval.high) < 1 - threshold or math.exp(interval.low) > 1 + threshold
        alarms += signed_rank_p(draw) <= alpha and beyond
    return hits / TRIALS, alarms / TRIALS


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, metavar="AB_FOLDER", help="an A/A `bench ab` folder")
    parser.add_argument(
        "--effect", type=positive_float, default=10.0, metavar="PCT",
        help="the slowdown to catch, in percent (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=positive_float, default=THRESHOLD_PCT, metavar="PCT",
        help=f"bench ab's threshold, in percent (default {THRESHOLD_PCT:g})",
    )  # fmt: skip
    parser.add_argument(
        "--cells", type=positive_int, metavar="N",
        help="cells in the nightly matrix, for m (default: the folder's)",
    )  # fmt: skip
    parser.add_argument(
        "--alpha", type=positive_float, default=0.05,
        help="the family's error rate: each interval at 1 - ALPHA/m (default 0.05)",
    )  # fmt: skip
    parser.add_argument(
        "--metric", choices=["throughput", "cpu_per_request"], default="throughput",
        help="the noise of which figure (default throughput)",
    )  # fmt: skip
    parser.add_argument(
        "--pairs", type=positive_int, nargs="+", default=[8, 10, 11, 12, 14, 16, 20],
        metavar="N", help="pair counts to try (default 8 10 11 12 14 16 20)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ratios = noise(args.folder, args.metric)
    except StoreError as exc:
        return usage_error(PROG, exc)
    if not ratios:
        return usage_error(PROG, f"{args.folder}: no usable pairs")
    m = family_size(args.cells or len(ratios))
    level = 1 - args.alpha / m
    rng = np.random.default_rng(SEED)
    print(
        f"m = {m} tests, each interval at {100 * level:.3f}%; effect {args.effect:g}%, "
        f"threshold {args.threshold:g}%; {TRIALS} simulated comparisons per line"
    )
    for key, diffs in ratios.items():
        spread = 1.4826 * float(np.median(np.abs(np.asarray(diffs) - np.median(diffs))))
        print(
            f"\n{key}: {len(diffs)} measured pairs, spread of log ratios (MAD) {100 * spread:.1f}%"
        )
        print("| pairs | power | false alarms |\n|---:|---:|---:|")
        for n in args.pairs:
            power, alarms = simulate(diffs, n, args.effect / 100, level, args.threshold / 100, rng)
            print(f"| {n} | {power:.2f} | {alarms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

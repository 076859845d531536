"""`python -m bench.studies.compare_power [RUN]`: how often `bench compare` exits 1 on
noise alone, how often it catches a 10% slowdown of one cell, and how often its
intervals hold the true change, at the nightly profile's size.

Each cell of the nightly profile takes its spread from a committed run (default
results/reference/reference-2core, 6 shuffled repeats a cell): the log values of its
usable repeats (throughput, p99, worst wait, as one vector a repeat, so that the
metrics keep their correlation), either as a normal with their covariance (`normal`,
the default) or drawn again from the centred repeats themselves (`resample`: ties, as
few distinct values give). Two runs of R repeats a cell are drawn and judged by
bench.gate.compare.compare_values, the function `bench compare` uses:

- A/A: both runs from one distribution; a false exit is any regression;
- power: one cell slowed by --effect (throughput x 0.9, both latencies / 0.9); caught
  when the comparison exits 1 with that cell a regression;
- coverage: how often each interval (bench.analysis.ratio) holds the true ratio, and,
  for the record, a percentile bootstrap of the ratio of medians (the interval used
  before), at R and at 3 vs 3.

Draws are i.i.d. repeats: a shift of the whole host between two runs, which moves
every repeat of one run together, is not in them (docs/nightly.md: use bench ab).
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.gate.compare import compare_values
from bench.gate.compare_result import REGRESSION, MetricChange
from bench.gate.metrics import METRICS, load_value
from bench.record import USABLE
from bench.run.matrix import load_profile
from bench.store import RunStore, StoreError
from common.cli import ArgumentParser, positive_float, positive_int, usage_error

PROG = "python -m bench.studies.compare_power"
REFERENCE = Path("results/reference/reference-2core")
SEED = 27
THRESHOLD, ALPHA = 0.05, 0.05  # bench compare's defaults
BOOTSTRAP_RESAMPLES = 2000

Cells = dict[str, npt.NDArray[np.float64]]  # key -> repeats x metrics, log values


def spreads(folder: Path, profile: str = "nightly") -> Cells:
    """The profile's cells' usable repeats in `folder`, log values, one row a repeat."""
    keys = {key.key for key in load_profile(profile).keys()}
    rows: dict[str, list[list[float]]] = {}
    for row in RunStore.open(folder).rows():
        if row.cell.key not in keys or row.status not in USABLE:
            continue
        values = [load_value(row, spec.path) for spec in METRICS]
        if all(v is not None and v > 0 for v in values):
            rows.setdefault(row.cell.key, []).append([math.log(v) for v in values if v])
    return {key: np.asarray(v) for key, v in sorted(rows.items()) if len(v) >= 3}


class Noise:
    """Draws a run: R repeats of each cell, log values centred on 0."""

    def __init__(self, cells: Cells, model: str, rng: np.random.Generator) -> None:
        self.rng, self.model = rng, model
        self.centred = {k: v - np.median(v, axis=0) for k, v in cells.items()}
        self.cov = {k: np.cov(v, rowvar=False) for k, v in cells.items()}

    def run(self, repeats: int) -> Cells:
        if self.model == "normal":
            zero = np.zeros(len(METRICS))
            return {
                k: self.rng.multivariate_normal(zero, cov, repeats) for k, cov in self.cov.items()
            }
        return {k: v[self.rng.integers(0, len(v), repeats)] for k, v in self.centred.items()}


def slowed(run: Cells, key: str, effect: float) -> Cells:
    """`key` slower by `effect`: throughput x (1 - effect), each latency / (1 - effect)."""
    shift = np.array([1.0 if s.higher_is_better else -1.0 for s in METRICS])
    out = dict(run)
    out[key] = run[key] + shift * math.log(1 - effect)
    return out


def judge(base: Cells, new: Cells) -> dict[str, tuple[MetricChange, ...]]:
    def values(run: Cells) -> dict[str, dict[str, list[float]]]:
        return {
            key: {s.name: list(np.exp(v[:, i])) for i, s in enumerate(METRICS)}
            for key, v in run.items()
        }

    return compare_values(values(base), values(new), threshold=THRESHOLD, alpha=ALPHA)


def bootstrap_covers(
    base: npt.NDArray[np.float64], new: npt.NDArray[np.float64], truth: float,
    rng: np.random.Generator,
) -> bool:  # fmt: skip
    """Whether the old interval (a 95% percentile bootstrap of the ratio of medians,
    sides resampled apart) holds `truth` (a log ratio)."""
    b = np.median(rng.choice(base, (BOOTSTRAP_RESAMPLES, base.size)), axis=1)
    n = np.median(rng.choice(new, (BOOTSTRAP_RESAMPLES, new.size)), axis=1)
    low, high = np.percentile(n - b, [2.5, 97.5])
    return bool(low <= truth <= high)


def wilson(hits: int, n: int) -> str:
    """hits / n with its 95% Wilson interval."""
    if n == 0:
        return "n/a"
    p, z = hits / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:.1f}% ({100 * max(0, centre - half):.1f}-{100 * min(1, centre + half):.1f})"


def old_rule(change: MetricChange) -> bool:
    """The rule before Holm: raw p < alpha and a ratio of medians beyond the threshold."""
    ratio = statistics.median(change.new) / statistics.median(change.base)
    worse = ratio < 1 - THRESHOLD if change.metric.higher_is_better else ratio > 1 + THRESHOLD
    return worse and change.p_value < ALPHA and change.min_p < ALPHA


def aa(noise: Noise, repeats: int, trials: int) -> tuple[int, int, list[int], int]:
    """(false exits, false exits by the old rule, intervals holding 1 per metric,
    intervals in all) over A/A trials."""
    exits, old, held, count = 0, 0, [0] * len(METRICS), 0
    for _ in range(trials):
        found = judge(noise.run(repeats), noise.run(repeats))
        exits += any(c.verdict == REGRESSION for changes in found.values() for c in changes)
        old += any(old_rule(c) for changes in found.values() for c in changes)
        for changes in found.values():
            for i, c in enumerate(changes):
                held[i] += c.ci_low <= 1 <= c.ci_high
        count += len(found)
    return exits, old, held, count


def power(noise: Noise, repeats: int, trials: int, key: str, effect: float) -> int:
    """How many of `trials` comparisons exit 1 with `key`, slowed by `effect`, a regression."""
    caught = 0
    for _ in range(trials):
        found = judge(noise.run(repeats), slowed(noise.run(repeats), key, effect))
        caught += any(c.verdict == REGRESSION for c in found[key])
    return caught


def old_coverage(noise: Noise, repeats: int, trials: int) -> tuple[int, int]:
    """(bootstrap intervals holding 1, intervals) over A/A trials."""
    held = count = 0
    for _ in range(trials):
        base, new = noise.run(repeats), noise.run(repeats)
        for key in base:
            for i in range(len(METRICS)):
                held += bootstrap_covers(base[key][:, i], new[key][:, i], 0.0, noise.rng)
                count += 1
    return held, count


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, nargs="?", default=REFERENCE, metavar="RUN",
        help=f"the run whose spreads to use (default {REFERENCE})",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=positive_int, nargs="+", default=[5, 8, 10], metavar="R",
        help="repeats a cell in each run (default 5 8 10)",
    )  # fmt: skip
    parser.add_argument(
        "--trials", type=positive_int, default=1000, metavar="N",
        help="A/A comparisons per repeat count (default 1000); power: N/2 per cell",
    )  # fmt: skip
    parser.add_argument(
        "--effect", type=positive_float, default=10.0, metavar="PCT",
        help="the slowdown of one cell to catch, in percent (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--model", choices=["normal", "resample"], default="normal",
        help="how repeats are drawn from the run's (default normal)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap-trials", type=int, default=200, metavar="N",
        help="A/A comparisons for the old bootstrap's coverage (default 200; 0: skip)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.effect >= 100:
        return usage_error(PROG, f"--effect must be below 100, got {args.effect:g}")
    try:
        cells = spreads(args.run)
    except StoreError as exc:
        return usage_error(PROG, exc)
    if not cells:
        return usage_error(PROG, f"{args.run}: no nightly cell with 3 usable repeats")
    noise = Noise(cells, args.model, np.random.default_rng(SEED))
    names = ", ".join(s.name for s in METRICS)
    print(f"{len(cells)} cells from {args.run} ({args.model}); sd of log values ({names}):")
    for key, v in cells.items():
        sds = ", ".join(f"{100 * sd:.1f}%" for sd in v.std(axis=0, ddof=1))
        print(f"  {key}: {len(v)} repeats, {sds}")
    half = max(1, args.trials // 2)
    for repeats in args.repeats:
        exits, old, held, count = aa(noise, repeats, args.trials)
        print(f"\n## {repeats} vs {repeats} repeats\n")
        print(f"A/A false exits: {wilson(exits, args.trials)} of {args.trials}")
        print(f"A/A false exits by the old rule (no Holm): {wilson(old, args.trials)}")
        for spec, h in zip(METRICS, held, strict=True):
            print(f"interval holds the true ratio, {spec.name}: {wilson(h, count)}")
        print(f"\n| slowed cell ({args.effect:g}%) | caught |\n|---|---:|")
        for key in cells:
            caught = power(noise, repeats, half, key, args.effect / 100)
            print(f"| {key} | {wilson(caught, half)} |")
        if args.bootstrap_trials:
            for r in sorted({3, repeats}):
                h, n = old_coverage(noise, r, args.bootstrap_trials)
                print(f"old bootstrap interval holds the true ratio, {r} vs {r}: {wilson(h, n)}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

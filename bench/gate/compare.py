"""`python -m bench compare BASE NEW`: the statistical regression gate between two runs.

Cells are matched by key (`row.cell.key`); only ok and client-bound repeats count. For
each cell in both runs and each metric (throughput, p99 latency of all requests, and
the longest wait of any connection, so that starvation gates too):

- the change is the ratio of medians over repeats, new / base (p99 is one value per
  repeat: percentiles are never averaged);
- its 95% confidence interval is a percentile bootstrap of that ratio, base and new
  resampled independently, 10,000 resamples, from a seeded RNG (the seed mixes in the
  cell and metric, so the interval does not depend on which other cells are present);
- significance is a two-sided Mann-Whitney U test over the repeats (scipy.stats), which
  needs no normality and shrugs off one wild repeat;
- the verdict is `regression` only when the change is significant (p < alpha) AND beyond
  the threshold in the bad direction (throughput ratio < 1 - t, a latency ratio > 1 + t);
  `improvement` symmetrically; otherwise `no change`.

With few repeats the exact test cannot reach alpha at all (the smallest two-sided p for
n and m repeats is 2 / C(n+m, n): 0.33 for 2 vs 2, 0.10 for 3 vs 3), so such cells are
`no change` with the note "too few repeats" rather than a silent pass. A cell's verdict
is its worst metric's. The gate's exit status: 1 if any cell regressed, else 0; bad
input (missing folder, no common cells, differing machines without --force) is a
CompareError, reported by the CLI as one line with exit status 2.

Beside this module: the metrics (bench.gate.metrics), the result's types
(bench.gate.compare_result) and compare.md and its chart (bench.gate.compare_report).
"""

from __future__ import annotations

import math
import statistics
import sys
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.stats import mann_whitney_p, min_p_value
from bench.gate.compare_report import render_markdown, write_chart
from bench.gate.compare_result import (
    CONFIDENCE,
    FAILED_IN_NEW,
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    VERDICT_ORDER,
    CellComparison,
    Comparison,
    MetricChange,
    Unmatched,
    pct,
)
from bench.gate.metrics import METRICS, MetricSpec, load_value
from bench.record import USABLE, Row
from bench.store import RunStore, StoreError, write_text_atomic

DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_ALPHA = 0.05
RESAMPLES = 10_000
SEED = 5  # any constant: the point is that the same runs give the same intervals

COMPARE_MD = "compare.md"
CHART_STEM = "compare"  # compare.png and compare.svg beside the markdown

# Metadata that must match for two runs to be comparable: (group, field) in metadata.json
# as bench.run.machine and bench.run.cpus write it.
CHECKED_METADATA: tuple[tuple[str, str], ...] = (
    ("host", "cpu_model"),
    ("host", "cpu_count"),
    ("host", "kernel"),
    ("cpu_plan", "server"),
    ("cpu_plan", "client"),
    ("python", "implementation"),
    ("python", "version"),
)


# How a cell is measured, outside its key: two runs that differ here measure different
# things under the same cell keys (the axes themselves only change which cells match).
MATRIX_SETTINGS = ("duration", "warmup", "allocator", "inject_delay_ns", "arrivals")


class CompareError(Exception):
    """Bad input for a comparison; the message is one line."""


# -- the statistics ---------------------------------------------------------------------


def bootstrap_ratio_ci(
    base: tuple[float, ...],
    new: tuple[float, ...],
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(new) / median(base), sides resampled apart."""
    b = np.asarray(base, dtype=float)
    n = np.asarray(new, dtype=float)
    base_medians = np.median(rng.choice(b, size=(resamples, b.size)), axis=1)
    new_medians = np.median(rng.choice(n, size=(resamples, n.size)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = new_medians / base_medians
    ratios = ratios[np.isfinite(ratios)]  # a zero base median has no ratio
    if ratios.size == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def compare_metric(
    spec: MetricSpec,
    key: str,
    base: tuple[float, ...],
    new: tuple[float, ...],
    *,
    threshold: float,
    alpha: float,
) -> MetricChange:
    """The change of one metric of one cell, with its interval, p-value and verdict."""
    if not base or not new:
        side = "base" if not base else "new"
        return MetricChange(
            spec,
            base,
            new,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            NO_CHANGE,
            f"{spec.title}: no value in {side}",
        )
    base_median, new_median = statistics.median(base), statistics.median(new)
    ratio = new_median / base_median if base_median > 0 else math.nan
    rng = np.random.default_rng([SEED, zlib.crc32(f"{key}|{spec.name}".encode())])
    low, high = bootstrap_ratio_ci(base, new, rng)
    p = mann_whitney_p(new, base)  # exact with ties below 10 repeats a side
    if math.isnan(ratio):
        return MetricChange(
            spec,
            base,
            new,
            ratio,
            low,
            high,
            p,
            NO_CHANGE,
            f"{spec.title}: base median is 0, no ratio",
        )

    worse = ratio < 1 - threshold if spec.higher_is_better else ratio > 1 + threshold
    better = ratio > 1 + threshold if spec.higher_is_better else ratio < 1 - threshold
    floor = min_p_value(len(base), len(new))
    if floor >= alpha or min(len(base), len(new)) < 3:
        note = (
            f"too few repeats ({len(base)} vs {len(new)}: p cannot go below "
            f"{floor:.2g}, alpha {alpha:g})"
        )
        return MetricChange(spec, base, new, ratio, low, high, p, NO_CHANGE, note)
    significant = p < alpha
    if significant and worse:
        verdict, note = REGRESSION, ""
    elif significant and better:
        verdict, note = IMPROVEMENT, ""
    elif worse or better:
        verdict, note = NO_CHANGE, f"{spec.title} {pct(ratio)} not significant (p {p:.2g})"
    elif significant and ratio != 1:
        verdict, note = NO_CHANGE, f"{spec.title} {pct(ratio)} significant but within threshold"
    else:
        verdict, note = NO_CHANGE, ""
    return MetricChange(spec, base, new, ratio, low, high, p, verdict, note)


# -- loading and matching ---------------------------------------------------------------


def metadata_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'group.field: base value vs new value' for each checked field that differs, and
    for each of the matrices' MATRIX_SETTINGS that both runs record."""
    out = []
    for group, name in CHECKED_METADATA:
        a = (base.get(group) or {}).get(name)
        b = (new.get(group) or {}).get(name)
        if a != b:
            out.append(f"{group}.{name}: {a!r} vs {b!r}")
    if (ma := base.get("matrix")) and (mb := new.get("matrix")):
        for name in MATRIX_SETTINGS:  # a setting older runs did not record is not checked
            if name in ma and name in mb and ma[name] != mb[name]:
                out.append(f"matrix.{name}: {ma.get(name)!r} vs {mb.get(name)!r}")
    return out


@dataclass
class _Side:
    """One run's rows grouped by cell key."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    # how finely the usable repeats measured latency (clients.result.RESOLUTIONS)
    resolutions: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[Row]) -> _Side:
        side = cls(statuses=defaultdict(Counter))
        for row in rows:
            key = row.cell.key
            side.statuses[key][row.status] += 1
            if row.status not in USABLE:
                continue
            if row.load is not None:
                side.resolutions.setdefault(key, set()).add(row.load.latency_resolution)
            metrics = side.values.setdefault(key, {m.name: [] for m in METRICS})
            for spec in METRICS:
                if (value := load_value(row, spec.path)) is not None:
                    metrics[spec.name].append(value)
        return side

    def status_text(self, key: str) -> str:
        counts = self.statuses.get(key)
        if not counts:
            return "not in the run"
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _open(path: Path, role: str) -> RunStore:
    try:
        return RunStore.open(path)
    except StoreError as exc:
        raise CompareError(f"{role} run: {exc}") from None


def compare_runs(
    base_dir: Path,
    new_dir: Path,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    force: bool = False,
) -> Comparison:
    """Compare two run folders; CompareError on bad input or differing machines."""
    if not 0 <= threshold_pct < 100:
        raise CompareError(f"--threshold must be a percentage in [0, 100), got {threshold_pct:g}")
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must be between 0 and 1, got {alpha:g}")
    base, new = _open(base_dir, "base"), _open(new_dir, "new")
    differences = metadata_differences(base.metadata, new.metadata)
    if differences and not force:
        raise CompareError(
            "runs from different setups, refusing to compare (--force to go on): "
            + "; ".join(differences)
        )
    try:
        base_side, new_side = _Side.of(base.rows()), _Side.of(new.rows())
    except StoreError as exc:
        raise CompareError(str(exc)) from None

    threshold = threshold_pct / 100
    cells, unmatched = [], []
    for key in sorted(set(base_side.values) | set(new_side.values)):
        if key not in new_side.values:
            where = FAILED_IN_NEW if key in new_side.statuses else "only in base"
            unmatched.append(Unmatched(key, where, f"new: {new_side.status_text(key)}"))
            continue
        if key not in base_side.values:
            unmatched.append(Unmatched(key, "only in new", f"base: {base_side.status_text(key)}"))
            continue
        changes = tuple(
            compare_metric(
                spec,
                key,
                tuple(base_side.values[key][spec.name]),
                tuple(new_side.values[key][spec.name]),
                threshold=threshold,
                alpha=alpha,
            )
            for spec in METRICS
        )
        cells.append(CellComparison(key, changes, _cell_notes(key, changes, base_side, new_side)))
    if not cells:
        raise CompareError(f"no cell has usable repeats in both {base.path} and {new.path}")
    cells.sort(key=lambda c: VERDICT_ORDER.index(c.verdict))  # stable: keys stay sorted
    return Comparison(base, new, threshold, alpha, cells, unmatched, differences if force else [])


def _cell_notes(
    key: str, changes: tuple[MetricChange, ...], base: _Side, new: _Side
) -> tuple[str, ...]:
    notes = []
    too_few = [c.note for c in changes if c.note.startswith("too few")]
    if too_few:
        notes.append(too_few[0])  # the same for every metric of the cell
    notes += [c.note for c in changes if c.note and not c.note.startswith("too few")]
    bound = [
        name for name, side in (("base", base), ("new", new)) if side.statuses[key]["client-bound"]
    ]
    if bound:
        notes.append(f"client-bound in {' and '.join(bound)}: throughput is a lower bound")
    failed = [
        f"{name} {side.statuses[key]['failed']}"
        for name, side in (("base", base), ("new", new))
        if side.statuses[key]["failed"]
    ]
    if failed:
        notes.append(f"failed repeats left out: {', '.join(failed)}")
    resolutions = [", ".join(sorted(side.resolutions.get(key, ()))) for side in (base, new)]
    if resolutions[0] != resolutions[1]:  # e.g. whole µs, truncated, against 0.1 µs
        notes.append(
            f"latency measured to {resolutions[0]} in base, {resolutions[1]} in new: "
            "truncated µs read up to 1 µs low"
        )
    return tuple(notes)


# -- the command ------------------------------------------------------------------------


def run(
    base_dir: Path,
    new_dir: Path,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    force: bool = False,
    out: Path | None = None,
) -> int:
    """The `compare` command: stdout and `out` get the markdown; returns the exit status."""
    cmp = compare_runs(base_dir, new_dir, threshold_pct=threshold_pct, alpha=alpha, force=force)
    if cmp.metadata_differences:
        sys.stderr.write(
            "warning: comparing different setups (--force): "
            + "; ".join(cmp.metadata_differences)
            + "\n"
        )
    out = Path(out) if out is not None else cmp.new.path / COMPARE_MD
    if not out.parent.is_dir():
        raise CompareError(f"cannot write {out}: no folder {out.parent}")
    text = render_markdown(cmp, chart=CHART_STEM)
    try:
        write_text_atomic(out, text)
        write_chart(cmp, out.parent / CHART_STEM)
    except OSError as exc:
        raise CompareError(f"cannot write {out}: {exc.strerror or exc}") from None
    sys.stdout.write(text)
    return cmp.exit_code

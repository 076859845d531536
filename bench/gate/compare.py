"""`python -m bench compare BASE NEW`: two existing runs' repeats, compared cell by cell.

Not the gate between two versions (that is `bench ab`, pairs run side by side): a shift
of the whole host between two runs moves every repeat of one run together, which this
comparison cannot tell from a change of the code (docs/nightly.md).

Cells are matched by key (`row.cell.key`); only ok and client-bound repeats count. For
each cell in both runs and each metric (throughput, p99 latency of all requests, and
the longest wait of any connection, so that starvation counts too):

- the change is the Hodges-Lehmann ratio new / base: the median of the ratios of every
  new repeat to every base repeat (bench.analysis.ratio; p99 is one value per repeat:
  percentiles are never averaged);
- its interval inverts the same test (the order statistics of those ratios), at least
  95%, each labelled with its exact coverage (3 vs 3 repeats: 90%, the range);
- significance is a two-sided Mann-Whitney U test over the repeats, exact with ties
  below 10 a side, then Holm's correction over the family: every metric of every cell
  tested, so that one comparison of 8 cells x 3 metrics is wrong at most alpha of the
  time, not 24 times;
- the verdict is `regression` only when the change is Holm-significant (adjusted p <=
  alpha) AND beyond the threshold in the bad direction (throughput ratio < 1 - t, a
  latency ratio > 1 + t); `improvement` symmetrically; otherwise `no change`.

A test whose smallest possible p (2 / C(n+m, n): 0.10 for 3 vs 3) is above alpha is
left out of the family with the note "too few repeats". Holm's first step asks p <=
alpha / family size; where no test's repeats allow that, the comparison says it cannot
find any regression (5 vs 5 repeats give p >= 0.0079; 24 tests need 0.0021). A cell's
verdict is its worst metric's. Exit status: 1 if any cell regressed or failed in every
new repeat, else 0; bad input (missing folder, no common cells, differing machines
without --force) is a CompareError, reported by the CLI as one line with exit status 2.

Beside this module: the metrics (bench.gate.metrics), the result's types
(bench.gate.compare_result) and compare.md and its chart (bench.gate.compare_report).
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.analysis.ratio import RatioInterval, ratio_interval
from bench.analysis.stats import holm, mann_whitney_p, min_p_value
from bench.gate.compare_report import reach_note, render_markdown, write_chart
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
NO_RATIO = RatioInterval(math.nan, math.nan, math.nan, math.nan)

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
MATRIX_SETTINGS = ("duration", "warmup", "allocator", "inject_delay_ns", "arrivals", "workers")


class CompareError(Exception):
    """Bad input for a comparison; the message is one line."""


# -- the statistics ---------------------------------------------------------------------


def measure_metric(
    spec: MetricSpec, base: tuple[float, ...], new: tuple[float, ...], *, alpha: float
) -> MetricChange:
    """One metric of one cell before any verdict: the ratio, its interval, the raw p, and
    whether the test can take part (a p that can never reach alpha is left out)."""

    def untested(note: str, ratio: RatioInterval = NO_RATIO, p: float = math.nan) -> MetricChange:
        return MetricChange(spec, base, new, *ratio, p, math.nan, NO_CHANGE, note, False)

    if not base or not new:
        return untested(f"{spec.title}: no value in {'base' if not base else 'new'}")
    if min(base) <= 0 or min(new) <= 0:
        return untested(f"{spec.title}: a value is 0, no ratio")
    ratio = ratio_interval(base, new, CONFIDENCE)
    p = mann_whitney_p(new, base)  # exact with ties below 10 repeats a side
    floor = min_p_value(len(base), len(new))
    if floor > alpha or min(len(base), len(new)) < 3:
        return untested(
            f"too few repeats ({len(base)} vs {len(new)}: p cannot go below "
            f"{floor:.2g}, alpha {alpha:g})",
            ratio,
            p,
        )
    return MetricChange(spec, base, new, *ratio, p, math.nan, NO_CHANGE, "", True)


def judge(changes: Sequence[MetricChange], *, threshold: float, alpha: float) -> list[MetricChange]:
    """Holm over every tested metric of every cell (the family), then each verdict: a
    regression is Holm-significant (adjusted p <= alpha) and beyond the threshold."""
    family = [i for i, c in enumerate(changes) if c.tested]
    adjusted = dict(zip(family, holm([changes[i].p_value for i in family]), strict=True))
    judged = []
    for i, change in enumerate(changes):
        if not change.tested:
            judged.append(change)
            continue
        p_holm, ratio, title = adjusted[i], change.ratio, change.metric.title
        up, down = ratio > 1 + threshold, ratio < 1 - threshold
        worse, better = (down, up) if change.metric.higher_is_better else (up, down)
        significant = p_holm <= alpha
        if significant and (worse or better):
            verdict, note = (REGRESSION if worse else IMPROVEMENT), ""
        elif worse or better:
            verdict, note = NO_CHANGE, f"{title} {pct(ratio)} not significant (Holm p {p_holm:.2g})"
        elif significant:
            verdict, note = NO_CHANGE, f"{title} {pct(ratio)} significant but within threshold"
        else:
            verdict, note = NO_CHANGE, ""
        judged.append(replace(change, p_holm=p_holm, verdict=verdict, note=note))
    return judged


def compare_values(
    base: Mapping[str, Mapping[str, Sequence[float]]],
    new: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    threshold: float,
    alpha: float,
) -> dict[str, tuple[MetricChange, ...]]:
    """Each cell in both (by key) and each of METRICS: its change, judged over the whole
    family. The values are each metric's usable repeats; the studies call this too."""
    keys = sorted(set(base) & set(new))
    measured = [
        measure_metric(
            spec,
            tuple(base[key].get(spec.name, ())),
            tuple(new[key].get(spec.name, ())),
            alpha=alpha,
        )
        for key in keys
        for spec in METRICS
    ]
    judged = iter(judge(measured, threshold=threshold, alpha=alpha))
    return {key: tuple(next(judged) for _ in METRICS) for key in keys}


def _values(
    side: Mapping[str, Mapping[str, Sequence[float]]], key: str, spec: MetricSpec
) -> tuple[float, ...]:
    return tuple(side[key].get(spec.name, ()))


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
    changes = compare_values(base_side.values, new_side.values, threshold=threshold, alpha=alpha)
    cells = [
        CellComparison(key, found, _cell_notes(key, found, base_side, new_side))
        for key, found in changes.items()
    ]
    unmatched = []
    for key in sorted(set(base_side.values) ^ set(new_side.values)):
        if key in base_side.values:
            where = FAILED_IN_NEW if key in new_side.statuses else "only in base"
            unmatched.append(Unmatched(key, where, f"new: {new_side.status_text(key)}"))
        else:
            unmatched.append(Unmatched(key, "only in new", f"base: {base_side.status_text(key)}"))
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
    if (reach := reach_note(cmp)) is not None:
        sys.stderr.write(f"warning: {reach}\n")
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

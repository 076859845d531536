"""`bench ab`'s rows as pairs, judged: one family of tests per comparison (bench.analysis.paired).

Every cell of the matrix gets the same tests, decided before any data is seen, so that
the family's size (Holm's m) does not depend on the results:

- continuous, over the pairs where both sides' repeats are usable (ok or client-bound):
  throughput, the p99 of all requests (the unanswered ones included), the longest wait
  of any connection (bench.gate.metrics.METRICS), and the server's CPU per request (process
  view), which sees a slower server even where the load generator is the limit. Each
  carries its interval's coverage: at least 1 - alpha/m, or less where too few pairs are
  usable to reach it (bench.analysis.paired.ShiftInterval; ab.md prints it then);
- the share of repeats affected on each side, over every repeat: failed (the cell did
  not complete), errors (any error in the window, mismatches included), starved (a
  connection that got no reply in the window) and suspect (the validity verdict).

A cell whose repeats were all skipped on both sides (a model unavailable here) is
`skipped`, not failed, and takes no part in the family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from bench.analysis.paired import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    AffectedChange,
    PairedChange,
    affected_change,
    judge,
    paired_change,
)
from bench.gate.metrics import METRICS, MetricSpec, load_value
from bench.record import USABLE, Row

SKIPPED = "skipped"
# The gate's default: a regression's whole interval lies beyond this change, in percent
# (docs/nightly.md: the power calculation behind it).
THRESHOLD_PCT = 2.0


def _failed(row: Row) -> bool:
    return row.status == "failed"


def _errors(row: Row) -> bool:
    load = row.load
    return load is not None and any([*load.errors.values(), *load.errors_before.values()])


def _starved(row: Row) -> bool:
    return row.load is not None and bool(row.load.connections.starved)


def _suspect(row: Row, expected: frozenset[str] = frozenset()) -> bool:
    return row.status in USABLE and any(r.code not in expected for r in row.reasons)


# Both sides at once, two load generators share a CPU and so do two servers: every run is
# client-bound on a busy machine by design, and the suspect test counts the other reasons.
TOGETHER_EXPECTED = frozenset({"client-bound", "busy-machine"})


FLAGS: tuple[tuple[str, Callable[[Row], bool]], ...] = (
    ("failed", _failed),
    ("errors", _errors),
    ("starved", _starved),
    ("suspect", _suspect),
)
CPU = MetricSpec("cpu_per_request", "server CPU per request", "µs", (), False, ".2f")
CONTINUOUS = (*METRICS, CPU)
TESTS_PER_CELL = len(CONTINUOUS) + len(FLAGS)


@dataclass(frozen=True)
class CellResult:
    key: str
    changes: tuple[PairedChange | AffectedChange, ...]
    notes: tuple[str, ...] = ()
    skipped: bool = False

    @property
    def verdict(self) -> str:
        if self.skipped:
            return SKIPPED
        verdicts = {c.verdict for c in self.changes}
        return next((v for v in (REGRESSION, IMPROVEMENT) if v in verdicts), NO_CHANGE)


def family_size(cells: int) -> int:
    """Holm's m for a matrix of `cells` cells."""
    return cells * TESTS_PER_CELL


def analyse(
    base: Sequence[Row],
    new: Sequence[Row],
    alpha: float,
    threshold: float,
    expected: frozenset[str] = frozenset(),
) -> tuple[list[CellResult], int]:
    """Each cell's changes, judged as one family; and the family's size. `expected`:
    validity reasons the design causes, which do not make a run suspect."""
    sides = _by_cell(base), _by_cell(new)
    keys = list(dict.fromkeys([*sides[0], *sides[1]]))
    skipped = {
        key
        for key in keys
        if all(r.status == "skipped" for side in sides for r in side.get(key, {}).values())
    }
    tested = [k for k in keys if k not in skipped]
    flags = [(n, partial(_suspect, expected=expected) if f is _suspect else f) for n, f in FLAGS]
    m = family_size(len(tested))
    level = 1 - alpha / max(m, 1)
    raw: list[tuple[str, PairedChange | AffectedChange]] = []
    notes: dict[str, list[str]] = {key: [] for key in keys}
    for key in tested:
        a, b = sides[0].get(key, {}), sides[1].get(key, {})
        pairs = sorted(set(a) & set(b))
        if len(pairs) < len(set(a) | set(b)):
            notes[key].append(f"{len(set(a) ^ set(b))} repeats without their pair left out")
        mixed = _mixed_cpu_sources(a, b, pairs)
        if mixed:
            notes[key].append(mixed)
        for spec in CONTINUOUS:
            if spec is CPU and mixed:
                raw.append((key, _untested(spec)))
                continue
            values = _values(a, b, pairs, spec)
            if len(values) < 2:
                notes[key].append(f"{spec.name}: {len(values)} usable pairs, not tested")
                raw.append((key, _untested(spec)))
                continue
            change = paired_change(
                spec.name, [x for x, _ in values], [y for _, y in values],
                spec.higher_is_better, level,
            )  # fmt: skip
            raw.append((key, change))
        for name, flag in flags:
            affected = [flag(a[r]) for r in pairs], [flag(b[r]) for r in pairs]
            raw.append((key, affected_change(name, *affected)))
    judged = judge([c for _, c in raw], alpha, threshold)
    by_key: dict[str, list[PairedChange | AffectedChange]] = {key: [] for key in tested}
    for (key, _), done in zip(raw, judged, strict=True):
        by_key[key].append(done)
    results = [
        CellResult(key, tuple(by_key.get(key, ())), tuple(notes[key]), key in skipped)
        for key in keys
    ]
    return results, m


def _mixed_cpu_sources(a: dict[int, Row], b: dict[int, Row], pairs: Sequence[int]) -> str:
    """A note where the two sides measured the server's CPU in different ways (a base
    from before the readings at the window's edges): such a comparison is not made, as
    the sampled reading is 2-6% low (bench.record.CPU_SAMPLED)."""
    sources = [{s for p in pairs if (s := r[p].server_cpu_source)} for r in (a, b)]
    if not sources[0] or not sources[1] or sources[0] == sources[1]:
        return ""
    base, new = (", ".join(sorted(s)) for s in sources)
    return (
        f"{CPU.name}: measured as {base} in base, {new} in new: not compared (the sampled "
        "reading is 2-6% low)"
    )


def paired_values(
    base: Sequence[Row], new: Sequence[Row], spec: MetricSpec
) -> dict[str, list[tuple[float, float]]]:
    """Each cell's (base, new) figures of `spec`, pair by pair, where both are usable."""
    a, b = _by_cell(base), _by_cell(new)
    return {
        key: _values(a[key], b[key], sorted(set(a[key]) & set(b[key])), spec)
        for key in a
        if key in b
    }


def _by_cell(rows: Sequence[Row]) -> dict[str, dict[int, Row]]:
    cells: dict[str, dict[int, Row]] = {}
    for row in rows:
        cells.setdefault(row.cell.key, {})[row.repeat] = row
    return cells


def _values(
    a: dict[int, Row], b: dict[int, Row], pairs: Sequence[int], spec: MetricSpec
) -> list[tuple[float, float]]:
    return [
        (x, y)
        for r in pairs
        if (x := metric_value(a[r], spec)) is not None
        and (y := metric_value(b[r], spec)) is not None
    ]


def metric_value(row: Row, spec: MetricSpec) -> float | None:
    """A usable repeat's figure of `spec`, as the tests take it (positive, finite)."""
    if row.status not in USABLE:
        return None
    value = row.server_cpu_us_per_request if spec is CPU else load_value(row, spec.path)
    if value is None or not math.isfinite(value) or value <= 0:  # a ratio needs two > 0
        return None
    return float(value)


def _untested(spec: MetricSpec) -> PairedChange:
    """A metric with too few usable pairs: in the family (m is fixed), never significant."""
    nan = float("nan")
    return PairedChange(spec.name, 0, nan, nan, nan, 1.0, spec.higher_is_better)

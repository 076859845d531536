"""The counted gate: instructions and system calls per request, BASE against NEW, judged
cell by cell against each cell's own measured spread.

Both sides are counted under valgrind and strace (bench.cost): whole-process totals at
two request counts, whose slope is the cost of one request. A count is not a sample:
the same servers give the same count however busy the machine is, so there are no pairs
and no p-values here. What a count can still carry is the little that differs between
launches of the same servers (where glibc's malloc finds a block, a stop signal landing
mid-step); each side measures that itself, as the spread of its tries' slopes (the run's
own A/A figure, bench.cost.record.Counted.spread). A cell's threshold is

    max(FLOOR, K x max(spread of BASE, spread of NEW))

and a change above it, more instructions or more system calls per request, is a
regression; below minus it, an improvement. A cell refused or failed on either side is
listed, not judged. Two runs whose counts depend on different builds (bench.cost.record.
Build.key: the interpreter's hash, valgrind's version, the architecture) are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.cost.pattern import Pattern
from bench.cost.record import CostCell, CostRun, Counted
from common.migrate import Migrations

# The smallest change judged, whatever the spread: 0.5%, half the 1% the gate is for.
# The spreads measured here between tries were 0.00002-0.0006 relative (epoll echo/64,
# 100 to 6,000 requests); 0.5% is far above them and far below a 1% injection.
FLOOR = 0.005
# How many spreads a change must exceed: a spread is the range of 2 tries, and a third
# launch can land outside it; 4 ranges keeps an A/A below its threshold with room to
# spare where a model's spread is well above the floor (none of the gate's models here).
K = 4.0
REGRESSION, IMPROVEMENT, NO_CHANGE, NOT_JUDGED = (
    "regression",
    "improvement",
    "no change",
    "not judged",
)
ORDER = (REGRESSION, IMPROVEMENT, NO_CHANGE, NOT_JUDGED)
# the counted metrics: CostCell's attribute -> what a table calls it
METRICS = {"instructions": "instructions per request", "syscalls": "system calls per request"}
SCHEMA = 1
# counted.json's upgrades, {from_version: step} (common.migrate, docs/formats.md): none yet
MIGRATIONS = Migrations("counted.json schema", SCHEMA, {})


class CountedError(ValueError):
    """Two runs that cannot be compared; the message is one line."""


@dataclass(frozen=True)
class CountedChange:
    """One metric of one cell: each side's cost per request and the verdict."""

    metric: str  # a key of METRICS
    base: float  # per request
    new: float
    spread_base: float  # each side's tries' spread (relative)
    spread_new: float
    threshold: float  # relative: max(FLOOR, K x the larger spread)
    verdict: str

    @property
    def change(self) -> float:
        """new / base - 1: more is worse."""
        return self.new / self.base - 1


@dataclass(frozen=True)
class CountedCell:
    """One model under one pattern, judged or not (and why)."""

    model: str
    pattern: str  # bench.cost.pattern.Pattern.key: echo/64, http/64, ...
    changes: tuple[CountedChange, ...] = ()
    not_judged: str | None = None  # refused or failed on a side, and how

    @property
    def key(self) -> str:
        return f"{self.model} {self.pattern}"

    @property
    def verdict(self) -> str:
        if self.not_judged is not None or not self.changes:
            return NOT_JUDGED
        verdicts = {c.verdict for c in self.changes}
        return next(v for v in (REGRESSION, IMPROVEMENT, NO_CHANGE) if v in verdicts)


@dataclass(frozen=True)
class CountedResult:
    """counted.json: the comparison, typed and versioned."""

    build: str  # Build.key of both sides
    requests: tuple[int, int]
    tries: int
    floor: float
    k: float
    cells: tuple[CountedCell, ...]
    metadata: Mapping[str, Any]  # command, when, base and new (given, sha), injection
    schema: int = SCHEMA

    @property
    def regressions(self) -> int:
        return sum(c.verdict == REGRESSION for c in self.cells)


def threshold(spread_base: float, spread_new: float) -> float:
    return max(FLOOR, K * max(spread_base, spread_new))


def judge_metric(metric: str, base: Counted, new: Counted) -> CountedChange | None:
    """The change of one metric, or None when base's cost is not positive (nothing to
    divide by: a model that made no system call per request)."""
    if base.per_request <= 0:
        return None
    limit = threshold(base.spread, new.spread)
    change = new.per_request / base.per_request - 1
    verdict = REGRESSION if change > limit else IMPROVEMENT if change < -limit else NO_CHANGE
    return CountedChange(
        metric, base.per_request, new.per_request, base.spread, new.spread, limit, verdict
    )


def judge_cell(base: CostCell | None, new: CostCell | None) -> CountedCell:
    """One cell; at least one of the sides is given."""
    either = base or new
    assert either is not None
    pattern = Pattern(either.protocol, either.payload, either.idle).key
    for side, cell in (("base", base), ("new", new)):
        if cell is None:
            return CountedCell(either.model, pattern, not_judged=f"not counted on {side}")
        if cell.refused:
            return CountedCell(either.model, pattern, not_judged=f"refused: {cell.refused}")
        if cell.error:
            return CountedCell(either.model, pattern, not_judged=f"failed on {side}: {cell.error}")
    assert base is not None and new is not None
    changes = []
    for metric in METRICS:
        b, n = getattr(base, metric), getattr(new, metric)
        if b is not None and n is not None and (change := judge_metric(metric, b, n)):
            changes.append(change)
    if not changes:
        return CountedCell(either.model, pattern, not_judged="no count on both sides")
    return CountedCell(either.model, pattern, tuple(changes))


def judge(base: CostRun, new: CostRun) -> tuple[CountedCell, ...]:
    """Every cell of either run, in base's order then new's; CountedError (one line) when
    the runs' counts depend on different builds."""
    if base.build.key != new.build.key:
        raise CountedError(
            f"the runs were counted under different builds (base {base.build.key!r}, new "
            f"{new.build.key!r}): their counts do not compare"
        )
    keys = list(dict.fromkeys([c.key for c in base.cells] + [c.key for c in new.cells]))
    return tuple(judge_cell(base.cell(key), new.cell(key)) for key in keys)


def counts(cells: Iterable[CountedCell]) -> dict[str, int]:
    verdicts = [c.verdict for c in cells]
    return {v: verdicts.count(v) for v in ORDER}


def headline(cells: Sequence[CountedCell]) -> str:
    n = counts(cells)
    return ", ".join(f"{n[v]} {v}" for v in ORDER) + f" in {len(cells)} counted cells"


# -- counted.json -----------------------------------------------------------------------


def to_json(result: CountedResult) -> dict[str, Any]:
    """The document; each change's `change` is written out for readers without this
    module (it is recomputed on load)."""
    return {
        "schema": result.schema,
        "build": result.build,
        "requests": list(result.requests),
        "tries": result.tries,
        "floor": result.floor,
        "k": result.k,
        "metadata": dict(result.metadata),
        "cells": [
            {
                "model": c.model,
                "pattern": c.pattern,
                "verdict": c.verdict,
                "not_judged": c.not_judged,
                "changes": [
                    {
                        "metric": ch.metric,
                        "base": ch.base,
                        "new": ch.new,
                        "change": ch.change,
                        "spread_base": ch.spread_base,
                        "spread_new": ch.spread_new,
                        "threshold": ch.threshold,
                        "verdict": ch.verdict,
                    }
                    for ch in c.changes
                ],
            }
            for c in result.cells
        ],
    }


def from_json(data: dict[str, Any]) -> CountedResult:
    """MigrationError (a ValueError, one line) for a version it cannot read; KeyError or
    TypeError for a malformed document."""
    data = MIGRATIONS.upgrade(data)
    derived = ("change",)
    cells = tuple(
        CountedCell(
            model=c["model"],
            pattern=c["pattern"],
            changes=tuple(
                CountedChange(**{k: v for k, v in ch.items() if k not in derived})
                for ch in c["changes"]
            ),
            not_judged=c["not_judged"],
        )
        for c in data["cells"]
    )
    lo, hi = data["requests"]
    return CountedResult(
        build=data["build"],
        requests=(int(lo), int(hi)),
        tries=data["tries"],
        floor=data["floor"],
        k=data["k"],
        cells=cells,
        metadata=data["metadata"],
    )

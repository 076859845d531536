"""The counted gate's entries in the nightly history: NEW's counts, one entry per cell.

A counted figure is not a ratio against an anchor: it is the count itself (instructions
per request, system calls per request), the same on any machine of the same build. So a
series is keyed by the build (bench.cost.record.Build.key: the interpreter's hash,
valgrind's version, the architecture), the cell (model and pattern) and the metric, and
its points are NEW's cost per request night after night. A night counted under another
build starts another series (a new runner image's interpreter, say): its counts do not
compare with the old ones.

An entry lives in history.jsonl beside the wall-clock gate's (bench.gate.history), told
apart by its "kind"; this module has no I/O of the file, only the entry and its reading
from a `bench ab --counted` folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.gate.counted import METRICS
from bench.gate.counted_report import load

KIND = "counted"


@dataclass(frozen=True)
class CountedMetric:
    """One metric of one cell on one night: NEW's count, and the gate's word on it."""

    name: str  # a key of bench.gate.counted.METRICS
    per_request: float
    spread: float  # NEW's tries' spread
    change: float | None = None  # new / base - 1 that night, against the gate's base
    verdict: str | None = None  # the gate's verdict against its base


@dataclass(frozen=True)
class CountedEntry:
    """One cell of one night's `bench ab --counted`, NEW's side."""

    when: str  # ISO 8601, when the comparison started
    build: str  # Build.key: a series compares only under one
    cell: str  # "epoll echo/64"
    base_sha: str  # the gate's base that night (for the table only)
    new_sha: str  # the commit counted
    requests: tuple[int, int]
    tries: int
    metrics: tuple[CountedMetric, ...]
    run: str = ""  # the ab folder's name
    # no schema of its own: the file's, which bench.gate.history writes on each line

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.build, self.cell, self.when, self.base_sha, self.new_sha)

    def metric(self, name: str) -> CountedMetric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The line's fields, less the file's schema (bench.gate.history adds it)."""
        data = asdict(self)
        data["kind"] = KIND
        data["metrics"] = {m.pop("name"): m for m in data["metrics"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CountedEntry:
        """An upgraded entry (bench.gate.history upgrades first); ValueError, TypeError or
        KeyError for a malformed one."""
        skip = ("kind", "metrics", "requests", "schema")
        fields = {k: v for k, v in data.items() if k not in skip}
        order = {name: i for i, name in enumerate(METRICS)}
        metrics = tuple(
            CountedMetric(name=name, **values)
            for name, values in sorted(
                dict(data["metrics"]).items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])
            )
        )
        lo, hi = data["requests"]
        return cls(requests=(int(lo), int(hi)), metrics=metrics, **fields)


@dataclass(frozen=True)
class CountedNight:
    """One point of a counted series: NEW's count that night."""

    when: str
    new_sha: str
    value: float  # per request
    spread: float
    verdict: str | None


def entries_from_counted(folder: Path) -> list[CountedEntry]:
    """One entry per cell judged in a `bench ab --counted` folder (a cell refused or
    failed has no count, and no entry); ValueError (one line) when the folder is not one,
    or when NEW ran with an injection (a calibration, not a night's code)."""
    folder = Path(folder)
    result = load(folder)
    meta = result.metadata
    try:
        when, base_sha, new_sha = meta["when"], meta["base"]["sha"], meta["new"]["sha"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{folder}: counted.json's metadata lacks {exc}") from None
    for side in ("base", "new"):
        if work := meta.get(f"{side}_inject_work"):
            raise ValueError(
                f"{folder}: ran with --{side}-inject-work {work}: a calibration of the "
                "gate, not a night of the history"
            )
    return [
        CountedEntry(
            when=str(when),
            build=result.build,
            cell=cell.key,
            base_sha=str(base_sha),
            new_sha=str(new_sha),
            requests=result.requests,
            tries=result.tries,
            metrics=tuple(
                CountedMetric(c.metric, c.new, c.spread_new, c.change, c.verdict)
                for c in cell.changes
            ),
            run=folder.resolve().name,
        )
        for cell in result.cells
        if cell.changes
    ]


def counted_series(
    entries: Iterable[CountedEntry], build: str, cell: str, metric: str
) -> tuple[CountedNight, ...]:
    """One build's nights of one cell and metric, oldest first; a night without a
    positive, finite count is no point."""
    nights = []
    for entry in entries:
        if (entry.build, entry.cell) != (build, cell):
            continue
        m = entry.metric(metric)
        if m is None or not (math.isfinite(m.per_request) and m.per_request > 0):
            continue
        nights.append(CountedNight(entry.when, entry.new_sha, m.per_request, m.spread, m.verdict))
    return tuple(sorted(nights, key=lambda n: datetime.fromisoformat(n.when)))


def counted_keys(entries: Iterable[CountedEntry]) -> dict[str, list[str]]:
    """Build -> its cells, in the order they first appear."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        cells = out.setdefault(entry.build, [])
        if entry.cell not in cells:
            cells.append(entry.cell)
    return out

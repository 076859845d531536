"""The history of nightly `bench ab` results: one immutable, versioned entry per cell and night.

The series a history is read for is a paired ratio against a FIXED ANCHOR. Each night,
besides the gate, `bench ab ANCHOR HEAD --together` runs (both versions' servers at once,
on the same CPUs), and only that comparison joins the history: every entry of a series
has the anchor as its base, and a point is bench ab's Hodges-Lehmann ratio new / anchor
over that night's pairs, with its interval. On a shared VM one side's medians move by
tens of percent between comparisons made minutes apart, the paired ratio of an A/A
comparison by a percent or so (docs/nightly.md): a series of medians could not show a
10% shift there, a series of ratios can. A chain of nightly ratios (the night before ->
tonight) would add up each night's error into a random walk; against a fixed anchor the
nights' errors stay independent. When the anchor moves, a new series starts.

Each nightly comparison adds one `HistoryEntry` per cell to a JSONL file (one entry a
line), kept for as long as the project lives (in CI on a branch of its own: artifacts
expire). An entry holds what a trend needs and nothing that a run folder holds already:

- when the comparison ran, the commits it measured (base: the anchor; new: the night's);
- the machine, as a short stable fingerprint and the fields it hashes. Hosted runners'
  CPUs vary, so a history is only read per fingerprint; the kernel and the Python patch
  release are left out because they change under a hosted runner every few weeks
  without moving the figures by much, and would cut the history into short pieces;
- per metric (bench.gate.ab_analysis.CONTINUOUS): bench ab's paired ratio new / base with its
  interval, number of pairs and verdict (the series), and the median of the new side over
  its usable repeats (for the table only: measured beside the anchor, it is the new
  side's share of the CPUs, not a standalone figure).

An entry whose base is not an anchor (a gate comparison appended by hand) does no harm:
each base is a series of its own, a short one.

The counted gate (`bench ab --counted`) adds entries of another kind: NEW's counts per
request, keyed by the build they depend on, not by a machine or an anchor
(bench.gate.counted_history). Each line says its kind ("paired" or "counted"); a line
of schema 1, before the counted gate, is a paired entry.

`load` upgrades an entry of an older schema (`MIGRATIONS`, docs/formats.md), refuses one
it cannot upgrade and names any line it cannot read; nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.gate.ab_analysis import CONTINUOUS, metric_value
from bench.gate.ab_report import MIGRATIONS as AB_MIGRATIONS
from bench.gate.counted_history import KIND as COUNTED
from bench.gate.counted_history import CountedEntry, entries_from_counted
from bench.gate.counted_report import COUNTED_JSON
from bench.record import Row
from bench.store import RunStore, StoreError, write_text_atomic
from common.migrate import MigrationError, Migrations

SCHEMA = 2
PAIRED = "paired"  # an entry of the wall-clock gate's anchor comparison (HistoryEntry)


def _kind_paired(data: dict[str, Any]) -> dict[str, Any]:
    """1 -> 2 (the counted gate's entries join the file): schema 1 had paired entries only."""
    return {**data, "kind": PAIRED}


# history.jsonl's upgrades, {from_version: step} (common.migrate, docs/formats.md). A
# history lives for years: a new schema adds a step here, never orphans it.
MIGRATIONS = Migrations("schema", SCHEMA, {1: _kind_paired})
METRICS: tuple[str, ...] = tuple(spec.name for spec in CONTINUOUS)
FINGERPRINT_CHARS = 12


class HistoryError(Exception):
    """A history file or an ab folder that cannot be read; the message is one line."""


@dataclass(frozen=True)
class Machine:
    """What makes two nights' figures comparable: the fields the fingerprint hashes."""

    cpu_model: str | None
    cpu_count: int | None  # logical CPUs
    server_cpus: tuple[int, ...]
    client_cpus: tuple[int, ...]
    python: str  # implementation and major.minor, e.g. "CPython 3.11"

    @property
    def fingerprint(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]

    def describe(self) -> str:
        cpus = ",".join(map(str, self.server_cpus)) + " / " + ",".join(map(str, self.client_cpus))
        return (
            f"{self.cpu_model or 'unknown CPU'}, {self.cpu_count} CPUs, server / client CPUs "
            f"{cpus}, {self.python}"
        )


@dataclass(frozen=True)
class MetricNight:
    """One metric of one cell on one night."""

    name: str
    median: float | None  # new side, over its usable repeats; None when none was usable
    repeats: int  # how many repeats that median is over
    ratio: float | None  # bench ab's paired estimate new / base; None when not tested
    low: float | None  # its interval
    high: float | None
    verdict: str | None  # bench ab's verdict for this metric
    pairs: int | None = None  # how many pairs the ratio is over
    # why bench ab did not compare it, where it said (e.g. the CPU measured two ways)
    note: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One cell of one night's `bench ab`."""

    when: str  # ISO 8601, when the comparison started
    fingerprint: str
    machine: Machine
    cell: str  # the cell key, e.g. "epoll/echo/c100/p64/persistent/loadgen"
    base_sha: str  # the anchor
    new_sha: str  # the commit measured that night
    metrics: tuple[MetricNight, ...]
    run: str = ""  # the ab folder's name, to find the rows again
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.fingerprint != self.machine.fingerprint:
            raise ValueError(
                f"fingerprint {self.fingerprint!r} is not its machine's "
                f"({self.machine.fingerprint!r})"
            )

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """Two entries with the same identity are the same night's same cell."""
        return (self.fingerprint, self.cell, self.when, self.base_sha, self.new_sha)

    def metric(self, name: str) -> MetricNight | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_json(self) -> str:
        data = asdict(self)
        data["kind"] = PAIRED
        data["metrics"] = {m.pop("name"): m for m in data["metrics"]}
        return json.dumps(data, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        """Raises HistoryError for a schema it cannot upgrade, ValueError/TypeError/KeyError
        for a malformed entry."""
        try:
            data = MIGRATIONS.upgrade(data)
        except MigrationError as exc:
            raise HistoryError(str(exc)) from None
        if data.get("kind") != PAIRED:
            raise ValueError(f"kind {data.get('kind')!r} is not {PAIRED!r}")
        machine = dict(data["machine"])
        for key in ("server_cpus", "client_cpus"):
            machine[key] = tuple(machine[key])
        order = {name: i for i, name in enumerate(METRICS)}  # the file's keys are sorted
        metrics = tuple(
            MetricNight(name=name, **values)
            for name, values in sorted(
                dict(data["metrics"]).items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])
            )
        )
        fields = {k: v for k, v in data.items() if k not in ("machine", "metrics", "kind")}
        return cls(machine=Machine(**machine), metrics=metrics, **fields)


Entry = HistoryEntry | CountedEntry


def entry_from_dict(data: dict[str, Any]) -> Entry:
    """Either kind of entry, upgraded; HistoryError for a schema it cannot upgrade,
    ValueError/TypeError/KeyError for a malformed entry."""
    try:
        data = MIGRATIONS.upgrade(data)
    except MigrationError as exc:
        raise HistoryError(str(exc)) from None
    kind = data.get("kind")
    if kind == COUNTED:
        return CountedEntry.from_dict(data)
    if kind == PAIRED:
        return HistoryEntry.from_dict(data)
    raise ValueError(f"unknown kind {kind!r}")


def line_of(entry: Entry) -> str:
    """The entry as one line of the file, with the file's schema."""
    if isinstance(entry, HistoryEntry):
        return entry.to_json()
    data = entry.to_dict() | {"schema": SCHEMA}
    return json.dumps(data, sort_keys=True, allow_nan=False)


def paired(entries: Iterable[Entry]) -> list[HistoryEntry]:
    return [e for e in entries if isinstance(e, HistoryEntry)]


def counted(entries: Iterable[Entry]) -> list[CountedEntry]:
    return [e for e in entries if isinstance(e, CountedEntry)]


@dataclass(frozen=True)
class Night:
    """One point of a series: a night's paired ratio new / anchor of one metric."""

    when: str
    base_sha: str  # the anchor
    new_sha: str
    value: float  # bench ab's Hodges-Lehmann ratio new / anchor
    low: float | None  # its interval
    high: float | None
    verdict: str | None  # bench ab's verdict that night, against the anchor
    pairs: int | None = None


# -- from a bench ab folder -------------------------------------------------------------


def entries_from_folder(folder: Path) -> list[Entry]:
    """A `bench ab` folder's entries, of either gate (a counted one has counted.json);
    HistoryError (one line) when it is neither's result."""
    folder = Path(folder)
    if not (folder / COUNTED_JSON).is_file():
        return list(entries_from_ab(folder))
    try:
        return list(entries_from_counted(folder))
    except ValueError as exc:
        raise HistoryError(str(exc)) from None


def entries_from_ab(folder: Path) -> list[HistoryEntry]:
    """One entry per cell of a finished `bench ab` folder (ab.json, base/, new/); a cell
    skipped on both sides (a model unavailable there) has no figures and no entry.
    HistoryError (one line) when the folder is not a bench ab result."""
    folder = Path(folder)
    try:
        data = json.loads((folder / "ab.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HistoryError(f"{folder} is not a bench ab result: no ab.json") from None
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{folder / 'ab.json'}: unreadable: {exc}") from None
    try:
        data = AB_MIGRATIONS.upgrade(data if isinstance(data, dict) else {})
    except MigrationError as exc:
        raise HistoryError(f"{folder / 'ab.json'}: {exc}") from None
    try:
        base, new = RunStore.open(folder / "base"), RunStore.open(folder / "new")
        rows = new.rows()
        meta = data["metadata"]
        when, base_sha, new_sha = meta["when"], meta["base"]["sha"], meta["new"]["sha"]
        cells = [c for c in data["cells"] if not c["skipped"]]
    except StoreError as exc:
        raise HistoryError(f"{folder} is not a bench ab result: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise HistoryError(f"{folder / 'ab.json'}: missing field {exc}") from None
    machine = machine_of(new.metadata)
    if machine_of(base.metadata) != machine:  # bench ab runs both sides on one machine
        raise HistoryError(f"{folder}: base and new were measured on different machines")
    by_cell: dict[str, list[Row]] = {}
    for row in rows:
        by_cell.setdefault(row.cell.key, []).append(row)
    return [
        HistoryEntry(
            when=str(when),
            fingerprint=machine.fingerprint,
            machine=machine,
            cell=cell["key"],
            base_sha=str(base_sha),
            new_sha=str(new_sha),
            metrics=_metrics(by_cell.get(cell["key"], []), cell["changes"], cell.get("notes", ())),
            run=folder.resolve().name,
        )
        for cell in cells
    ]


def machine_of(metadata: dict[str, Any]) -> Machine:
    """The fingerprinted fields of a run's metadata.json (bench.run.machine writes them)."""
    host, plan, python = (metadata.get(k) or {} for k in ("host", "cpu_plan", "python"))
    version = ".".join(str(python.get("version", "")).split(".")[:2])
    return Machine(
        cpu_model=host.get("cpu_model"),
        cpu_count=host.get("cpu_count"),
        server_cpus=tuple(plan.get("server", ())),
        client_cpus=tuple(plan.get("client", ())),
        python=f"{python.get('implementation', '?')} {version}",
    )


def _metrics(
    rows: Sequence[Row], changes: Sequence[dict[str, Any]], notes: Sequence[str] = ()
) -> tuple[MetricNight, ...]:
    paired = {c["metric"]: c for c in changes}
    out = []
    for spec in CONTINUOUS:
        said = next((n for n in notes if n.startswith(f"{spec.name}: measured as")), None)
        values = [v for row in rows if (v := metric_value(row, spec)) is not None]
        change = paired.get(spec.name, {})
        out.append(
            MetricNight(
                name=spec.name,
                median=statistics.median(values) if values else None,
                repeats=len(values),
                ratio=change.get("ratio"),
                low=change.get("low"),
                high=change.get("high"),
                verdict=change.get("verdict"),
                pairs=change.get("pairs"),
                note=said,
            )
        )
    return tuple(out)


# -- the file ---------------------------------------------------------------------------


def append(history: Path, entries: Iterable[Entry]) -> int:
    """Add the entries not already there (same identity); how many were added.

    The whole file is rewritten beside itself and renamed over it (bench.store), so a
    crash leaves the old history or the new one, never a torn line; a history that does
    not load is refused rather than appended to.
    """
    history = Path(history)
    old = load(history) if history.exists() else []
    seen = {(type(e), e.identity) for e in old}
    new = []
    for entry in entries:
        if (type(entry), entry.identity) not in seen:
            seen.add((type(entry), entry.identity))
            new.append(entry)
    if not new and history.exists():
        return 0
    text = history.read_text(encoding="utf-8") if history.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    history.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(history, text + "".join(line_of(e) + "\n" for e in new))
    return len(new)


def load(history: Path) -> list[Entry]:
    """Every entry in file order; HistoryError naming the first line it cannot read
    (an unknown schema included). Blank lines hold no entry."""
    history = Path(history)
    try:
        text = history.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HistoryError(f"no history at {history}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{history}: unreadable: {exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{history}:{number}"
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            entries.append(entry_from_dict(data))
        except HistoryError as exc:
            raise HistoryError(f"{where}: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise HistoryError(f"{where}: not a history entry: {exc}") from None
    return entries


# -- reading it -------------------------------------------------------------------------


def anchors(
    entries: Iterable[HistoryEntry], fingerprint: str, cell: str | None = None
) -> list[str]:
    """The bases (anchors) of one machine's entries, of one cell if given, in the order of
    their first night (the file's order between nights at the same time)."""
    first: dict[str, datetime] = {}
    for entry in entries:
        if entry.fingerprint != fingerprint or (cell is not None and entry.cell != cell):
            continue
        when = datetime.fromisoformat(entry.when)
        if entry.base_sha not in first or when < first[entry.base_sha]:
            first[entry.base_sha] = when
    return sorted(first, key=first.__getitem__)  # a stable sort: ties keep the file's order


def series(
    entries: Iterable[HistoryEntry], fingerprint: str, cell: str, metric: str, anchor: str
) -> tuple[Night, ...]:
    """One machine's nights of one cell and metric against one anchor, oldest first: the
    paired ratio new / anchor with its interval. A night whose ratio is missing (too few
    usable pairs to test), not finite or not positive is not a point of the series; the
    report's table still lists it."""
    nights = []
    for entry in entries:
        if (entry.fingerprint, entry.cell, entry.base_sha) != (fingerprint, cell, anchor):
            continue
        m = entry.metric(metric)
        if m is None or m.ratio is None or not (math.isfinite(m.ratio) and m.ratio > 0):
            continue
        nights.append(
            Night(
                entry.when,
                entry.base_sha,
                entry.new_sha,
                m.ratio,
                m.low,
                m.high,
                m.verdict,
                m.pairs,
            )
        )
    return tuple(sorted(nights, key=lambda n: datetime.fromisoformat(n.when)))

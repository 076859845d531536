"""The result record: one immutable row per matrix cell, versioned.

A row is what `bench run` appends to results/<run-id>/results.jsonl. `load` is the load
generator's typed result (clients.result.LoadResult); `server` the sampler's figures;
`verdict` says whether the cell's figures can be believed, with the reasons
(bench.analysis.verdict). `bench.report.frame` flattens rows with pandas (`load.latency.p99`, ...).

Schema 2 (typed load result, censored latency, verdicts) replaced schema 1 (commit
a93edd0); schema 3 added the idle axis; schema 4 holds a load result of schema 3, whose
latencies are kept to 0.1 µs and say how fine they are (`load.latency_resolution`);
schema 5 added the slow-connection axis (`cell.slow`, `cell.slow_mode`, `slow`); schema 6
how the server's processes split the idle connections (`idle.memory.fds`, `fd_limit`). A
row is written at the oldest schema that holds all it has (`to_json`): without slow
connections and without that split, exactly as schema 4 wrote it; with slow connections
and no split, as schema 5 did. So adding either changed no older row, and older readers
read every row that has nothing new.
`from_dict` upgrades an older row (`MIGRATIONS`, docs/formats.md), and a row it cannot
upgrade is refused with a line that says how to make it again (bench.store).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from clients.result import MIGRATIONS as LOAD_MIGRATIONS
from clients.result import LoadResult
from common.migrate import CannotUpgrade, Document, MigrationError, Migrations

SCHEMA_VERSION = 6
SLOWLESS_SCHEMA = 4  # a row without slow connections is written as this schema wrote it
SLOW_CELL_FIELDS = ("slow", "slow_mode")  # CellKey's fields of schema 5, left out at slow 0
SPLITLESS_SCHEMA = 5  # a row without schema 6's split is written as schema 5 wrote it
SPLIT_MEMORY_FIELDS = ("fds", "fd_limit")  # Memory's fields of schema 6, left out when unknown
STATUSES = ("ok", "failed", "client-bound", "skipped")
USABLE = ("ok", "client-bound")  # the statuses whose figures count
# How a row's server CPU per request (process view) was measured: the process tree's CPU
# clocks in ns read at the window's edges by the load generator (schema 4 on), or
# psutil's 10 ms ticks sampled every 0.25 s and interpolated to the edges (2-6% low:
# docs/loadgen.md): older rows, and a server whose pid the bench does not know.
CPU_AT_EDGES = "edges-ns"
CPU_SAMPLED = "sampled-ticks"
VERDICTS = ("valid", "suspect")


@dataclass(frozen=True)
class Reason:
    """Why a cell is suspect: a short code (bench.analysis.verdict.CODES) and a sentence."""

    code: str
    text: str


@dataclass(frozen=True)
class CellKey:
    """What makes a cell: every axis of the matrix except the repeat."""

    model: str
    protocol: str = "echo"
    connections: int = 1
    payload: int = 64
    mode: str = "persistent"  # or "per-request"
    driver: str = "loadgen"  # or "locust"
    backlog: int = 0  # listen() backlog; 0 means the system maximum (somaxconn)
    work: str = ""  # server-side work per request, e.g. "cpu:100" or "wait:1000"
    # offered load: "" a closed loop; "r5000" an open loop at 5000 req/s; "f0.5" an open
    # loop at half the capacity a short closed-loop probe found (bench.analysis.curves)
    load: str = ""
    # a step of the search for a capacity at a target (bench.analysis.search): "p99:1ms#3" is the
    # third step of the search for p99 <= 1 ms; its rate is in `load`
    search: str = ""
    # the servers' interpreter (bench run --pythons): "3.12", "3.13t" or a path as given;
    # "" is the bench's own
    python: str = ""
    # connections held open beside the active ones (bench run --idle, clients.holder):
    # "warm" ones sent one request first, "silent" ones never speak
    idle: int = 0
    idle_mode: str = "warm"
    # slow connections beside the active ones (bench run --slow, docs/slow.md): "sender"
    # ones send each request a byte at a time, "reader" ones read each reply so
    slow: int = 0
    slow_mode: str = "sender"

    @property
    def key(self) -> str:
        key = (
            f"{self.model}/{self.protocol}/c{self.connections}/p{self.payload}"
            f"/{self.mode}/{self.driver}"
        )
        if self.backlog:
            key += f"/b{self.backlog}"
        if self.work:
            key += f"/w{self.work}"
        if self.load:
            key += f"/{self.load}"
        if self.search:
            key += f"/{self.search}"
        if self.python:
            key += f"/py{self.python}"
        if self.idle:
            key += f"/i{self.idle}" + ("s" if self.idle_mode == "silent" else "")
        if self.slow:
            key += f"/s{self.slow}" + ("r" if self.slow_mode == "reader" else "")
        return key


@dataclass(frozen=True)
class Memory:
    """The server at rest, read just before the load window (bench.run.memory): its
    process tree in user space, and the kernel's socket caches (machine-wide)."""

    rss_kib: int  # resident set of the whole process tree
    uss_kib: int | None  # unique set of the tree (what the server alone holds), else None
    threads: int  # threads of the tree (a thread per connection shows here)
    slab_kib: dict[str, int]  # /proc/slabinfo caches that hold sockets: name -> KiB in use
    # the same less the idle holders' own objects (bench.run.memory.server_share): the
    # server's, plus the machine's baseline that a slope over idle counts leaves out
    server_slab_kib: dict[str, int] = field(default_factory=dict)
    # open descriptors of each process of the tree, most first (prefork's workers split
    # the connections: docs/idle.md), and the hard limit on them per process; schema 6
    fds: tuple[int, ...] = ()
    fd_limit: int | None = None

    @property
    def split(self) -> bool:
        return bool(self.fds) or self.fd_limit is not None


@dataclass(frozen=True)
class Idle:
    """The idle connections a cell held beside its active ones (clients.holder's reports
    summed over its holder processes), and the server's memory at rest with them."""

    asked: int
    established: int
    held: int  # open when the load started
    open_at_end: int | None  # still open when the load ended (None: no final report)
    closed_by_server: int  # closed by the server before the end
    refused: int  # connects that failed
    lost: int  # gone before their warm-up reply (a server out of descriptors)
    holders: int  # holder processes
    connect_s: float  # the slowest holder's time to connect and warm up
    memory: Memory | None = None


@dataclass(frozen=True)
class Slow:
    """The slow connections a cell had beside its active ones (clients.holder's slow
    modes, summed over its holder processes): what they asked for and what they did, from
    their ready line to their stop (the load's window and more on both sides)."""

    asked: int
    established: int
    open_at_end: int | None  # still open when the load ended (None: no final report)
    closed_by_server: int
    refused: int  # connects that failed
    bad_replies: int  # replies that failed their check (their connections closed)
    requests: int  # requests whose whole reply arrived and passed its check
    bytes_sent: int
    bytes_read: int
    interval_ms: float  # between two bytes sent (sender) or read (reader)
    held_s: float | None  # the longest holder's time from its ready line to its stop
    holders: int  # holder processes
    # byte slots served, and those more than an interval late (the holders lacked CPU:
    # the server got less than the schedule; bench.report.slow_section says so)
    ticks: int = 0
    late: int = 0


@dataclass(frozen=True)
class Row:
    run_id: str
    cell: CellKey
    repeat: int
    status: str  # one of STATUSES
    reason: str | None = None  # why failed, skipped or client-bound
    started_at: str = ""  # ISO 8601, UTC
    wall_s: float = 0.0  # the whole cell: start server, load, stop
    load: LoadResult | None = None  # None when the load generator gave no result
    server: dict[str, Any] = field(default_factory=dict)  # the psutil sample + counters
    # server CPU per request in the window: its processes' CPU time (process view), and
    # its CPUs' busy time, softirq included (core view; anything else there counts too)
    server_cpu_us_per_request: float | None = None
    server_core_us_per_request: float | None = None
    # how the process view was measured: CPU_AT_EDGES or CPU_SAMPLED (None: not measured)
    server_cpu_source: str | None = None
    verdict: str = "valid"  # or "suspect"; failed and skipped rows have no figures
    reasons: tuple[Reason, ...] = ()
    busy_before: float | None = None  # % of the machine's CPU time busy just before
    server_log: str | None = None  # what the server wrote, relative to the run folder
    probe_rps: float | None = None  # a "f<fraction>" cell: the capacity its rate is a share of
    server_git: str | None = None  # the servers' commit, where they came from another (bench ab)
    idle: Idle | None = None  # the run has an idle axis (bench run --idle): what was held
    slow: Slow | None = None  # the cell had slow connections (bench run --slow): theirs
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} not in {VERDICTS}")

    def to_json(self) -> str:
        data = asdict(self)
        data["key"] = self.cell.key
        memory = self.idle.memory if self.idle is not None else None
        if memory is None or not memory.split:  # nothing of schema 6's: as 5 wrote it
            if memory is not None:
                for name in SPLIT_MEMORY_FIELDS:
                    del data["idle"]["memory"][name]
            data["schema"] = SPLITLESS_SCHEMA
            if not self.cell.slow and self.slow is None:  # nor of 5's: as 4 wrote it
                for name in SLOW_CELL_FIELDS:
                    del data["cell"][name]
                del data["slow"]
                data["schema"] = SLOWLESS_SCHEMA
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """Raises ValueError with one line: MigrationError for a row of a schema it
        cannot upgrade, LoadResultError for a bad `load`."""
        data = MIGRATIONS.upgrade(data)
        if "server_cpu_source" not in data:  # written between the two schema-4 changes
            measured = data.get("server_cpu_us_per_request") is not None
            data = {**data, "server_cpu_source": CPU_SAMPLED if measured else None}
        fields = {k: v for k, v in data.items() if k != "key"}
        fields["cell"] = CellKey(**fields["cell"])
        if fields.get("load") is not None:
            fields["load"] = LoadResult.from_dict(fields["load"])
        fields["reasons"] = tuple(Reason(**r) for r in fields.get("reasons", ()))
        if (idle := fields.get("idle")) is not None:
            memory = idle.get("memory")
            if memory:
                memory = Memory(**{**memory, "fds": tuple(memory.get("fds", ()))})
            fields["idle"] = Idle(**{**idle, "memory": memory or None})
        if (slow := fields.get("slow")) is not None:
            fields["slow"] = Slow(**slow)
        return cls(**fields)


def _upgraded_load(data: Document) -> Document | None:
    """The row's load result at the current schema (None for none); CannotUpgrade, with
    why, for one that cannot be upgraded (so the row is refused with it)."""
    load = data.get("load") or None
    if load is None:
        return None
    try:
        return LOAD_MIGRATIONS.upgrade(load)
    except MigrationError as exc:
        raise CannotUpgrade(f"the load result in it: {exc.why}") from None


def _from_schema_1(data: Document) -> Document:
    """A schema-1 row (bench at a93edd0^) as schema 2 writes it.

    `load` was the load generator's JSON as printed ({} for none): now None or the
    typed result's dict, upgraded itself (clients.result.MIGRATIONS), and the row is
    refused when it cannot be. Added, not measured by schema 1: the core view of the
    server's CPU, `busy_before` and `server_log` (null). The verdict is judged on what
    schema 1 recorded: the load generator's own bottleneck test, as bench.analysis.verdict
    takes it (its other checks need interval histograms or a busy-machine reading that
    schema 1 did not keep, and are skipped as they are for any result without them).
    """
    load = _upgraded_load(data)
    client = (load or {}).get("client") or {}
    reasons = [{"code": "client-bound", "text": text} for text in client.get("reasons", ())]
    return {
        **data,
        "load": load,
        "server_core_us_per_request": None,
        "verdict": "suspect" if reasons else "valid",
        "reasons": reasons,
        "busy_before": None,
        "server_log": None,
    }


def _from_schema_2(data: Document) -> Document:
    """A schema-2 row (bench before the idle axis) as schema 3 writes it: no connection
    was held beside the active ones (`idle` null; its cell key's idle 0, as the key's
    string already says)."""
    return {**data, "idle": None}


def _from_schema_3(data: Document) -> Document:
    """A schema-3 row as schema 4 writes it: its load result upgraded (clients.result, 2
    -> 3), which keeps its whole microseconds and says so in `latency_resolution`
    (`1us-truncated`; locust's `locust-2-digits`), so no table prints them finer; its
    server CPU, where it has one, was sampled (`server_cpu_source`)."""
    measured = data.get("server_cpu_us_per_request") is not None
    return {
        **data,
        "load": _upgraded_load(data),
        "server_cpu_source": CPU_SAMPLED if measured else None,
    }


def _from_schema_4(data: Document) -> Document:
    """A schema-4 row as schema 5 reads it: as it is. It had no slow connection, which the
    absent fields say (the cell's slow 0, `slow` None), as the key's string already does."""
    return data


def _from_schema_5(data: Document) -> Document:
    """A schema-5 row as schema 6 reads it: as it is. Its server processes' split of the
    idle connections was not read, which the absent fields say (no fds, no limit)."""
    return data


MIGRATIONS = Migrations(
    "row schema",
    SCHEMA_VERSION,
    {1: _from_schema_1, 2: _from_schema_2, 3: _from_schema_3, 4: _from_schema_4, 5: _from_schema_5},
)

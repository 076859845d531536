"""The result record: one immutable row per matrix cell, versioned.

A row is what `bench run` appends to results/<run-id>/results.jsonl. `load` is the load
generator's typed result (clients.result.LoadResult); `server` the sampler's figures;
`verdict` says whether the cell's figures can be believed, with the reasons
(bench.analysis.verdict). `bench.report.frame` flattens rows with pandas (`load.latency.p99`, ...).

Schema 2 (typed load result, censored latency, verdicts) replaced schema 1; a run of
schema 1 is refused with a line that says how to make it again (bench.store).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from clients.result import LoadResult

SCHEMA_VERSION = 2
STATUSES = ("ok", "failed", "client-bound", "skipped")
USABLE = ("ok", "client-bound")  # the statuses whose figures count
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
        return key


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
    verdict: str = "valid"  # or "suspect"; failed and skipped rows have no figures
    reasons: tuple[Reason, ...] = ()
    busy_before: float | None = None  # % of the machine's CPU time busy just before
    server_log: str | None = None  # what the server wrote, relative to the run folder
    probe_rps: float | None = None  # a "f<fraction>" cell: the capacity its rate is a share of
    server_git: str | None = None  # the servers' commit, where they came from another (bench ab)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} not in {VERDICTS}")

    def to_json(self) -> str:
        data = asdict(self)
        data["key"] = self.cell.key
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """Raises ValueError (LoadResultError for a bad `load`) with one line."""
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"row schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        fields = {k: v for k, v in data.items() if k != "key"}
        fields["cell"] = CellKey(**fields["cell"])
        if fields.get("load") is not None:
            fields["load"] = LoadResult.from_dict(fields["load"])
        fields["reasons"] = tuple(Reason(**r) for r in fields.get("reasons", ()))
        return cls(**fields)

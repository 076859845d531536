"""The result record: one immutable row per matrix cell, versioned.

A row is what `bench run` appends to results/<run-id>/results.jsonl. Metric groups
(`load`, `server`) stay nested as the load generator and the sampler produced them;
`bench.frame` flattens them with pandas (`load.latency_us.p99`, ...).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "client-bound", "skipped")
USABLE = ("ok", "client-bound")  # the statuses whose figures count


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
    load: dict[str, Any] = field(default_factory=dict)  # the load generator's JSON
    server: dict[str, Any] = field(default_factory=dict)  # the psutil sample + counters
    server_cpu_us_per_request: float | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")

    def to_json(self) -> str:
        data = asdict(self)
        data["key"] = self.cell.key
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        if data.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"row schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
        fields = {k: v for k, v in data.items() if k != "key"}
        fields["cell"] = CellKey(**fields["cell"])
        return cls(**fields)

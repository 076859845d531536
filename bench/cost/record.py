"""cost.json: what `bench cost` counted, typed and versioned (docs/formats.md).

A `Counted` keeps every total it was computed from: each try's whole-process count at
the low and at the high request count. The cost of a request is the slope between the
smallest total at each count (a disturbance, such as a stop signal landing mid-step,
only ever adds work); the spread is how far the tries' own slopes differ, the run's
A/A figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.migrate import Migrations

SCHEMA = 1
MIGRATIONS = Migrations("cost.json schema", SCHEMA)


@dataclass(frozen=True)
class Counted:
    requests: tuple[int, int]  # the low and the high request count
    lo: tuple[int, ...]  # each try's total after requests[0]
    hi: tuple[int, ...]  # and after requests[1]

    @property
    def per_request(self) -> float:
        return (min(self.hi) - min(self.lo)) / (self.requests[1] - self.requests[0])

    @property
    def spread(self) -> float:
        """The tries' slopes' range over their mean (0 with one try)."""
        span = self.requests[1] - self.requests[0]
        slopes = [(h - lo) / span for lo, h in zip(self.lo, self.hi, strict=True)]
        mean = sum(slopes) / len(slopes)
        return (max(slopes) - min(slopes)) / mean if mean else 0.0


@dataclass(frozen=True)
class CostCell:
    """One model under one pattern (bench.cost.pattern): its counts, or why it has none."""

    model: str
    protocol: str
    payload: int
    idle: int = 0
    instructions: Counted | None = None
    syscalls: Counted | None = None
    syscall_names: Mapping[str, Counted] = field(default_factory=dict)
    refused: str | None = None  # not measured, and why (a timing-dependent model, ...)
    error: str | None = None  # measured, and failed

    @property
    def key(self) -> str:
        return f"{self.model} {self.protocol}/{self.payload}" + (
            f"/i{self.idle}" if self.idle else ""
        )


@dataclass(frozen=True)
class Build:
    """What the counts depend on: not the machine's speed, but these."""

    python: str  # the server interpreter's sys.version
    python_sha256: str  # its executable's (and libpython's, when shared) hash
    valgrind: str
    strace: str
    arch: str
    kernel: str  # strace's counts may depend on it; cachegrind's do not
    env: Mapping[str, str]  # PYTHONHASHSEED, PYTHONMALLOC, MALLOC_*

    @property
    def key(self) -> str:
        """The history's series key: figures compare only under the same key."""
        return f"{self.python_sha256[:12]} {self.valgrind} {self.arch}"


@dataclass(frozen=True)
class CostRun:
    build: Build
    requests: tuple[int, int]
    tries: int
    cells: tuple[CostCell, ...]
    command: str = ""
    when: str = ""
    git: str = ""  # the servers' commit
    schema: int = SCHEMA

    def cell(self, key: str) -> CostCell | None:
        return next((c for c in self.cells if c.key == key), None)


def _counted_json(counted: Counted) -> dict[str, Any]:
    return {**asdict(counted), "per_request": counted.per_request, "spread": counted.spread}


def to_json(run: CostRun) -> dict[str, Any]:
    """The document, with each count's derived per-request cost and spread written out
    for readers that do not use this module (they are recomputed on load)."""
    data = asdict(run)
    for cell, out in zip(run.cells, data["cells"], strict=True):
        for name in ("instructions", "syscalls"):
            value = getattr(cell, name)
            out[name] = None if value is None else _counted_json(value)
        out["syscall_names"] = {n: _counted_json(c) for n, c in cell.syscall_names.items()}
    return data


def save(run: CostRun, path: Path) -> None:
    path.write_text(json.dumps(to_json(run), indent=1) + "\n", encoding="utf-8")


def _counted(data: Mapping[str, Any] | None) -> Counted | None:
    if data is None:
        return None
    lo, hi = data["requests"]
    return Counted((int(lo), int(hi)), tuple(data["lo"]), tuple(data["hi"]))


def from_json(data: dict[str, Any]) -> CostRun:
    data = MIGRATIONS.upgrade(data)
    cells = tuple(
        CostCell(
            model=c["model"],
            protocol=c["protocol"],
            payload=c["payload"],
            idle=c["idle"],
            instructions=_counted(c["instructions"]),
            syscalls=_counted(c["syscalls"]),
            syscall_names={n: _counted(v) for n, v in c["syscall_names"].items()},  # type: ignore[misc]
            refused=c["refused"],
            error=c["error"],
        )
        for c in data["cells"]
    )
    lo, hi = data["requests"]
    return CostRun(
        build=Build(**data["build"]),
        requests=(lo, hi),
        tries=data["tries"],
        cells=cells,
        command=data["command"],
        when=data["when"],
        git=data["git"],
    )


def load(path: Path) -> CostRun:
    """cost.json at `path`; ValueError (MigrationError, one line) if it cannot be read."""
    return from_json(json.loads(path.read_text(encoding="utf-8")))

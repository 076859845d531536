"""The idle holder's report: what `python -m clients.holder` prints, typed, frozen, versioned.

The holder prints two of these, one JSON line each: the *ready* report once every
connection is connected (and, in warm mode, has had its one reply), and the *final*
report when it is told to stop. A harness reads them back with `from_json()`, which
refuses another schema with one line; readers use attributes, never string keys.

What the counts mean (`established` connections end in exactly one of these):
`bad_replies` (a warm-up reply that failed its check), `lost` (gone before its warm-up
reply, by kind: a server out of descriptors accepts and closes at once), `closed_by_server`
(the server closed or reset one after its warm-up, or in silent mode after its connect)
or still open. So, at any report,
`established == bad_replies + sum(lost.values()) + closed_by_server + open`, where
`open` is `held` at the ready line (every connection open then) and `open_at_end` in
the final report. `unasked` counts connections on which the server sent bytes nobody
asked for (they stay open). docs/idle.md says why the holder is built as it is.

A holder in a slow mode (docs/slow.md) keeps exchanging requests a byte at a time after
the ready line: its reports carry `slow`, what those exchanges did so far, and a reply
that fails its check there counts in `bad_replies` too (its connection is closed).
Schema 2 added `slow`; a schema-1 report (no slow mode then) reads with `slow` None.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from clients.result import build_dataclass
from common.migrate import MigrationError, Migrations

SCHEMA = 2
TOOL = "sockbench.holder"
STAGES = ("ready", "final")
# clients.errors.ERROR_KINDS that fit each count: a connect that failed, and a connection
# lost during the warm-up before its reply came
REFUSED_KINDS = ("connect_refused", "connect_timeout")
LOST_KINDS = ("reset", "timeout", "closed")


class HoldReportError(ValueError):
    """A document that is not a hold report of this schema; the message is one line."""


@dataclass(frozen=True)
class SlowCounts:
    """A slow mode's exchanges since the ready line (clients.engine.slow)."""

    interval_ms: float  # between two bytes sent (slow-sender) or read (slow-reader)
    requests: int  # requests whose whole reply arrived and passed its check
    bytes_sent: int
    bytes_read: int
    # the byte slots it served (a byte sent, or read or tried: a reader's reply may not be
    # there yet), and those served more than an interval after their time: the holder
    # lacked CPU, and the server got less than the schedule
    ticks: int = 0
    late: int = 0


@dataclass(frozen=True)
class HoldReport:
    stage: str  # "ready" (all connected and warmed) or "final" (stopped)
    target: str  # HOST:PORT as given
    # "warm" (one request each, then silent), "silent" (never a byte), or a slow mode
    # ("slow-sender", "slow-reader": requests a byte at a time, clients.engine.slow)
    mode: str
    protocol: str  # "echo" or "http": the warm-up request's
    payload: int  # bytes of the warm-up request's payload (echo) or POST body (http)
    sources: tuple[str, ...]  # source addresses spread over; () where the kernel chose
    asked: int  # connections asked for
    established: int  # connects that succeeded
    refused: dict[str, int]  # connects that failed, by kind (REFUSED_KINDS)
    warmed: int  # warm mode: replies received and verified
    bad_replies: int  # warm and slow modes: replies that failed their check (closed)
    lost: dict[str, int]  # warm mode: gone before a reply, by kind (LOST_KINDS)
    held: int  # connections open at the ready line
    closed_by_server: int  # closed or reset by the server after their warm-up (or the
    # connect: silent and slow modes), so far
    unasked: int  # connections on which the server sent bytes unasked, so far
    connect_s: float  # time to establish all, paced (connects that failed included)
    warm_s: float  # time of the warm-up (0 in silent mode)
    open_at_end: int | None = None  # final: connections still open at the stop
    held_s: float | None = None  # final: seconds from the ready line to the stop
    slow: SlowCounts | None = None  # a slow mode's exchanges so far; None in the others
    tool: str = TOOL
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> HoldReport:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise HoldReportError(f"not a JSON hold report: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> HoldReport:
        if not isinstance(data, dict):
            raise HoldReportError("a hold report must be a JSON object")
        try:
            data = MIGRATIONS.upgrade(data)
        except MigrationError as exc:
            raise HoldReportError(f"{exc}; run the holder of this version") from None
        try:
            report = build_dataclass(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise HoldReportError(f"malformed hold report: {exc}") from None
        if report.stage not in STAGES:
            raise HoldReportError(f"hold report stage {report.stage!r} is not one of {STAGES}")
        return report


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 had no slow mode: no slow exchanges."""
    return {**data, "slow": None}


MIGRATIONS = Migrations("hold report schema", SCHEMA, {1: _from_schema_1})


__all__ = [
    "HoldReport",
    "HoldReportError",
    "LOST_KINDS",
    "MIGRATIONS",
    "REFUSED_KINDS",
    "SCHEMA",
    "STAGES",
    "SlowCounts",
    "TOOL",
]

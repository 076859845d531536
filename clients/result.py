"""The load result: what a load generator prints, typed, frozen and versioned.

Both load generators (clients.loadgen and clients.locust.driver) build a `LoadResult`
and print `to_json()`; the harness reads it back with `from_json()` / `from_dict()`,
which refuse another schema with one line that says what to do. Readers use attributes,
never string keys. Every field is documented in results/README.md.

Scopes: requests, bytes, latencies, `errors` and the rates count the measured window
only; `errors_before` counts the connect phase and the warm-up, so nothing is lost
and the error share (`error_share`) divides numbers of one scope.

Schema 2 grew, without a new number, two things a reader of older results must not
require: the `protocol` error kind (absent: read 0; `error_count` sums what is there)
and `diagnosis` (absent: None). Both are additions an older result lacks, not changes
of meaning, so every schema-2 result ever written still reads; an older sockbench
refuses a new one, naming the field it does not know.

Schema 3 keeps latencies to 0.1 µs: the native load generator's histograms hold
nanoseconds, and every latency figure is microseconds with one decimal; each result says
how fine its figures are (`latency_resolution`, one of RESOLUTIONS).

A schema-1 result (clients.loadgen before the typed result, commit 9592f57 and older) is
upgraded on reading (`MIGRATIONS`, docs/formats.md) when it is a closed loop with no
error; any other is refused with one line that says why. A schema-2 result keeps its
whole microseconds and says so (`latency_resolution`).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, TypeVar

from clients.errors import ERROR_KINDS
from common.migrate import CannotUpgrade, Document, MigrationError, Migrations

SCHEMA = 3
LOWER_BOUND_MARK = "≥"  # printed before a percentile that a censored request decides
NO_REPLY = 1  # the load generator's exit status when no request was answered and verified
LOCUST_TOOL = "sockbench.locust"  # `tool` of clients.locust.driver's results

# How fine a result's latency figures are (`LoadResult.latency_resolution`). Tables print
# a decimal only for the first: a figure must not claim finer than it was measured.
RESOLUTION_TENTH_US = "0.1us"
RESOLUTION_US_TRUNCATED = "1us-truncated"
RESOLUTION_LOCUST = "locust-2-digits"
RESOLUTIONS = {
    RESOLUTION_TENTH_US: "timed in ns, HdrHistogram at 3 significant digits, figures in µs "
    "to 0.1 µs (clients.loadgen, schema 3)",
    RESOLUTION_US_TRUNCATED: "histograms of whole µs, each value truncated (ns // 1000): "
    "every figure up to 1 µs low, 0.5 µs on average (clients.loadgen before schema 3)",
    RESOLUTION_LOCUST: "locust's response times in ms, percentiles to 2 significant digits "
    "(locust's buckets), in whole µs; mean to 0.1 µs (clients.locust.driver)",
}


class LoadResultError(ValueError):
    """A document that is not a load result of this schema; the message is one line."""


@dataclass(frozen=True)
class Params:
    """What was asked of the load generator."""

    target: str
    protocol: str
    connections: int
    processes: int
    duration: float  # seconds measured
    warmup: float  # seconds before the window, not counted
    payload: int
    rate: float | None  # requests/s in total (open loop); None: closed loop
    mode: str  # "persistent" or "per-request"
    timeout: float
    cpus: tuple[int, ...] | None
    arrivals: str = "uniform"  # open loop: "uniform" or "poisson"
    # How replies were verified (clients.loadgen --verify): "exact", "parse" or "auto";
    # None where not recorded (older results checked bytes exactly; locust's driver).
    verify: str | None = None
    expect_status: int | None = None  # http: the status a verified reply has
    expect_body: str | None = None  # http: --expect-body as given; None: sockbench's body


@dataclass(frozen=True)
class Latency:
    """Percentiles of one latency distribution, microseconds (to 0.1 µs, or as coarse as
    the result's `latency_resolution` says).

    `censored` requests were still unanswered when the window ended; each contributes
    its wait so far, a lower bound. A percentile named in `bounds` is decided by such a
    request, so the true value is at least the one given (printed with "≥").
    """

    count: int = 0
    p50: float = 0
    p90: float = 0
    p99: float = 0
    p999: float = 0
    max: float = 0
    mean: float = 0.0
    censored: int = 0
    bounds: tuple[str, ...] = ()

    def text(self, name: str) -> str:
        value = getattr(self, name)
        return f"{LOWER_BOUND_MARK}{value}" if name in self.bounds else str(value)


@dataclass(frozen=True)
class ConnectLatency:
    p50: float = 0
    p99: float = 0
    max: float = 0


@dataclass(frozen=True)
class Connections:
    """Per connection: how many connected, and how long the worst-served one waited.

    `worst_wait_*` is, per connection, the longest wait for a reply that ended in the
    window or was still going at its end, capped at the window: a connection that got
    no reply in the whole window (starved) waited exactly `duration`.
    """

    asked: int
    established: int | None  # None: the driver cannot tell
    starved: int | None  # established, but no reply in the window
    worst_wait_p50_us: float | None = None  # across established connections
    worst_wait_p99_us: float | None = None  # None: the driver cannot tell
    worst_wait_max_us: float | None = None


@dataclass(frozen=True)
class Rate:
    """Requests per second in the window: asked (None in a closed loop), sent, answered.

    `overloaded`: the backlog (requests sent or due, not yet answered) kept growing
    through the window: the offered load is above what the server sustains."""

    asked: float | None
    sent: float
    achieved: float
    overloaded: bool = False


@dataclass(frozen=True)
class Worker:
    """One load-generator process over the window, in % of the window's wall time.

    `waited_for_work` is time blocked in epoll or busy-polling with nothing to do;
    `waited_for_cpu` is run-queue delay (runnable, but another task had the CPU) from
    /proc/PID/schedstat; `cpu` is the process's CPU time, busy-polling included.
    None where the driver cannot see it.

    A locust worker on another machine (clients.locust.driver --master) is seen only
    through locust's messages: `cpu` from its reports, `cpu_max` the highest of locust's
    own CPU figures in the window, `name` locust's client id (HOSTNAME_HEX); the waits
    are None. Both fields are None for the processes the driver sampled itself.
    """

    cpu: float | None
    waited_for_work: float | None
    waited_for_cpu: float | None
    name: str | None = None
    cpu_max: float | None = None


@dataclass(frozen=True)
class Client:
    """Was the load generator the bottleneck? (see docs/loadgen.md, "Saturation")"""

    workers: tuple[Worker, ...]
    cores: tuple[int, ...]  # the CPUs the workers ran on
    cores_busy: float | None  # % of those CPUs' time not idle (irq, softirq, steal in)
    bound: bool | None  # None: not judged (nothing to judge from)
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interval:
    """One slice of the window (interval histograms; the full ones in the interval log)."""

    start_s: float  # from the window's start
    count: int  # replies in the slice
    p99_us: float
    backlog: int | None = None  # open loop: requests in flight or queued at the slice's end


@dataclass(frozen=True)
class Window:
    start_unix: float
    end_unix: float


@dataclass(frozen=True)
class ServerCpu:
    """A local server's CPU time over the window (`--server-pid`): its process tree's CPU
    clocks (common.cputime) read at the window's edges, in nanoseconds. Each reading
    came this late after its edge (the middle of the read); the load generator sleeps
    until the edge on the client CPUs, so a busy client CPU can make it late."""

    pid: int
    cpu_ns: int
    processes: int  # in the tree at the end
    how: str  # "clock" (the process CPU clocks) or "schedstat" (live threads only)
    late_start_us: float
    late_end_us: float


@dataclass(frozen=True)
class LoadResult:
    tool: str  # "sockbench.loadgen" or "sockbench.locust"
    params: Params
    window: Window | None
    requests: int  # verified replies in the window
    throughput_rps: float
    bytes: int
    duration_s: float
    latency: Latency  # answered requests, from the (intended) send time
    latency_all: Latency | None  # answered + still unanswered at the end (censored)
    connect: ConnectLatency
    errors: dict[str, int]  # by kind (clients.errors.ERROR_KINDS), in the window
    errors_before: dict[str, int]  # by kind, connect phase and warm-up
    connections: Connections
    fairness: float | None  # Jain's index over replies per connection
    rate: Rate
    client: Client
    latency_resolution: str  # how fine the latency figures are: a key of RESOLUTIONS
    intervals: tuple[Interval, ...] = ()
    interval_s: float = 0.0  # length of each interval
    # open loop only: latency from the actual send (wrk2's -U), and send lag
    latency_uncorrected: Latency | None = None
    send_lag: Latency | None = None
    # answered latencies, HdrHistogram encode() blob, ns (us before schema 3: see
    # latency_resolution)
    histogram: str = ""
    histogram_all: str = ""  # with the censored waits
    interval_log: str | None = None  # path of the HdrHistogram interval log, if written
    latency_note: str | None = None  # how precise the latencies are, in words, where not 0.1 us
    # the likely cause, one line, of a run with no verified reply or with replies of
    # another protocol (clients.diagnosis); None: none needed, or an older result
    diagnosis: str | None = None
    # a local server's CPU time over the window, read at its edges (--server-pid)
    server_cpu: ServerCpu | None = None
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.latency_resolution not in RESOLUTIONS:
            raise ValueError(
                f"latency_resolution {self.latency_resolution!r} not in {sorted(RESOLUTIONS)}"
            )

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_share(self) -> float:
        """Errors in the window over requests ended in the window (answered or failed), %."""
        ended = self.requests + self.error_count
        return 100.0 * self.error_count / ended if ended else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise LoadResultError(f"not a JSON load result: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> LoadResult:
        if not isinstance(data, dict):
            raise LoadResultError("a load result must be a JSON object")
        try:
            data = MIGRATIONS.upgrade(data)
        except MigrationError as exc:
            raise LoadResultError(f"{exc}; run the load again with this version") from None
        try:
            return build_dataclass(cls, data)
        except (TypeError, ValueError, KeyError) as exc:
            raise LoadResultError(f"malformed load result: {exc}") from None


SCHEMA_1_BOUND_PERCENT = 90.0  # schema 1 judged a worker above this CPU share the bottleneck


def _from_schema_1(data: Document) -> Document:
    """A schema-1 result (clients.loadgen at 9592f57) as schema 2 writes it.

    Moved: `latency_us` -> `latency` (its count: the replies in the window, which it
    summarised), `connect_us` -> `connect`, the workers' `client.cpu_percent` ->
    `client.workers[].cpu`, and schema 1's own bottleneck test (`saturated`: a worker
    over 90% CPU) -> `client.bound` with a reason. Not measured by schema 1, so left at
    what means so in schema 2: `latency_all` null (unanswered requests were dropped, as
    locust's driver does), the waits and `cores_busy` null, no `intervals` (its
    per-second `timeline` had no latency; dropped). `rate.sent` is the achieved rate, as
    a closed loop's is in locust's driver. Refused: an open loop (schema 1 neither counted
    what it sent nor judged its backlog) and a result with errors (schema 1 counted them
    from the first connect on; schema 2 needs the window's apart).
    """
    params = data.get("params") or {}
    if params.get("rate") is not None:
        raise CannotUpgrade(
            "schema 1 neither counted what an open loop sent nor judged its backlog"
        )
    errors = data.get("errors") or {}
    if any(errors.values()):
        raise CannotUpgrade(
            f"schema 1 counted its {sum(errors.values())} errors from the first connect on, "
            "schema 2 those of the window apart"
        )
    cpu = [float(p) for p in data["client"]["cpu_percent"]]
    saturated = bool(data["client"]["saturated"])
    upgraded = {k: v for k, v in data.items() if k not in ("latency_us", "connect_us", "timeline")}
    upgraded["latency"] = {**data["latency_us"], "count": data["requests"]}
    upgraded["latency_all"] = None
    upgraded["connect"] = data["connect_us"]
    upgraded["errors_before"] = dict.fromkeys(errors, 0)
    upgraded["rate"] = {**data["rate"], "sent": data["rate"]["achieved"]}
    upgraded["client"] = {
        "workers": [{"cpu": c, "waited_for_work": None, "waited_for_cpu": None} for c in cpu],
        "cores": params.get("cpus") or [],
        "cores_busy": None,
        "bound": saturated,
        "reasons": [
            f"a load-generator worker was over {SCHEMA_1_BOUND_PERCENT:g}% CPU in the window "
            f"({max(cpu):g}%: schema 1's test)"
        ]
        if saturated
        else [],
    }
    return upgraded


def _from_schema_2(data: Document) -> Document:
    """A schema-2 result as schema 3 writes it: its figures stay as they were measured
    and say how fine that was. clients.loadgen's histograms held whole microseconds, each
    value truncated (`ns // 1000`: every figure up to 1 µs low), and its `histogram` and
    `histogram_all` stay in µs; locust's driver reported as it still does."""
    if data.get("tool") == LOCUST_TOOL:
        return {**data, "latency_resolution": RESOLUTION_LOCUST}
    note = data.get("latency_note") or (
        "whole microseconds, truncated (load result schema 2): each figure up to 1 µs low"
    )
    return {**data, "latency_resolution": RESOLUTION_US_TRUNCATED, "latency_note": note}


MIGRATIONS = Migrations("load result schema", SCHEMA, {1: _from_schema_1, 2: _from_schema_2})


# A few words on each top-level field of a LoadResult, for clients.loadgen's --help
# (every field in full: results/README.md). tests/test_loadgen_protocol.py checks that
# they name exactly the keys of a real result.
FIELD_NOTES = {
    "tool": "producer: sockbench.loadgen or sockbench.locust",
    "params": "what was asked: target, protocol, connections, processes, duration, "
    "warmup, payload, rate, mode, timeout, cpus, arrivals, verify, expect_*",
    "window": "the measuring window, wall clock: start_unix, end_unix",
    "requests": "replies completed and verified in the window",
    "throughput_rps": "requests per second of the window",
    "bytes": "reply bytes of those requests",
    "duration_s": "the window's length, s",
    "latency": "answered requests, us to 0.1 us: count, p50, p90, p99, p999, max, mean",
    "latency_all": "answered and still unanswered at the end (censored, lower bounds)",
    "connect": "TCP connect latency, us: p50, p99, max",
    "errors": f"errors in the window by kind ({', '.join(ERROR_KINDS)}; mismatch: a "
    "wrong reply, protocol: bytes that are no reply of the protocol spoken)",
    "errors_before": "the same kinds, connect phase and warm-up",
    "connections": "asked, established, starved (no reply in the window), worst_wait_*_us",
    "fairness": "Jain's index of replies per connection (1: even)",
    "rate": "requests/s asked (open loop), sent, achieved; overloaded",
    "client": "was the load generator the bottleneck: workers, cores, cores_busy, bound, reasons",
    "intervals": "per 100 ms slice: start_s, count, p99_us, backlog",
    "interval_s": "length of each slice, s",
    "latency_uncorrected": "open loop: answered requests timed from the actual send",
    "send_lag": "open loop: actual minus intended send time, us",
    "histogram": "answered latencies, HdrHistogram blob (ns)",
    "histogram_all": "the same with the censored waits",
    "interval_log": "path of the interval log (--interval-log), or null",
    "latency_resolution": "how fine the latency figures are: 0.1us (ns histograms), "
    "1us-truncated (upgraded from schema 2), locust-2-digits",
    "latency_note": "how precise the latencies are, in words, where not 0.1 us, or null",
    "diagnosis": "the likely cause, one line, of a run with no verified reply or with "
    "replies of another protocol; null when none is needed",
    "server_cpu": "--server-pid: that process tree's CPU time over the window, ns, read at "
    "the window's edges (how late each reading was, us); null without it",
    "schema": f"document version ({SCHEMA}); a reader upgrades an older one or refuses it",
}


def no_errors() -> dict[str, int]:
    return dict.fromkeys(ERROR_KINDS, 0)


T = TypeVar("T")


def build_dataclass(cls: type[T], data: dict[str, Any]) -> T:
    """A dataclass from its asdict() form, nested dataclasses and tuples included."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown := sorted(set(data) - names):
        raise ValueError(f"unknown field {unknown[0]!r} in {cls.__name__}")
    return cls(**{name: _convert(hints[name], value) for name, value in data.items()})


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value)
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_convert(item, v) for v in value)
    if is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ValueError(f"{hint.__name__} must be an object")
        return build_dataclass(hint, value)
    return value


__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "build_dataclass",
    "Client",
    "ConnectLatency",
    "Connections",
    "FIELD_NOTES",
    "Interval",
    "Latency",
    "LoadResult",
    "LoadResultError",
    "LOCUST_TOOL",
    "Params",
    "RESOLUTION_LOCUST",
    "RESOLUTION_TENTH_US",
    "RESOLUTION_US_TRUNCATED",
    "RESOLUTIONS",
    "Rate",
    "ServerCpu",
    "Window",
    "Worker",
    "no_errors",
]

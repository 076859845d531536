"""Locust's final files as a `clients.result.LoadResult`, and the verdict on locust.

`from_locust_stats` reads what the locustfile writes at exit (`<prefix>_stats.csv`,
`_failures.csv`, `_window.json`) into the load result both drivers report. Only the
measured window counts: the locustfile resets locust's stats when the warm-up ends (see
`MeasuredWindow` there). `judge_client` and `judge_remote_client` say whether locust
was the bottleneck, from figures sampled elsewhere (`clients.locust.sampler`) or
reported by a master's workers. Pure: no processes, no threads; it only reads the files
it is given.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients import saturation
from clients.result import (
    LOCUST_TOOL,
    RESOLUTION_LOCUST,
    Client,
    Connections,
    ConnectLatency,
    Interval,
    Latency,
    LoadResult,
    Params,
    Rate,
    Window,
    Worker,
    no_errors,
)

TOOL = LOCUST_TOOL
CONNECT_ROWS = ("connect", "reconnect")  # EchoUser's connection events, not requests
PERCENTILE_COLUMNS = ("50%", "90%", "99%", "99.9%")  # of locust's stats CSV: p50 .. p999
# What locust can tell (latency_resolution RESOLUTION_LOCUST): it times a request in
# float milliseconds, but keeps only bucketed response times, so its percentiles are
# buckets of 2 significant digits (52 us, 150 us, 1.5 ms: clients/locust/locustfile.py),
# written here in whole us; its mean (to 0.1 us) and max (whole us) are exact.
RESOLUTION = (
    "locust reports latency in milliseconds: percentiles rounded to its buckets of 2 "
    "significant digits (e.g. 52 us, 150 us, 1.5 ms), in whole us; mean and max exact"
)
# Saturation, as the native load generator judges it (% of the window's wall time).
SAMPLE_INTERVAL_S = 0.1  # clients.locust.sampler's period; value_at's slack follows it
# A worker on another machine is seen only through locust's messages (its CPU usage, no
# run-queue delay): it set the pace when it kept one CPU this busy over the window, as
# locust's own warning threshold (runners.CPU_WARNING_THRESHOLD) has it.
REMOTE_CPU_BOUND_PERCENT = 90.0

# Failure exception class name (as locust writes it in the failures CSV) -> error kind.
EXCEPTION_KINDS = {
    "ConnectionRefusedError": "connect_refused",
    "ConnectTimeout": "connect_timeout",
    "ConnectionResetError": "reset",
    "ConnectionAbortedError": "reset",
    "BrokenPipeError": "reset",
    "TimeoutError": "timeout",
    "timeout": "timeout",
    "Timeout": "timeout",
    "EchoMismatch": "mismatch",
    "BadStatus": "mismatch",
    "HTTPParseError": "protocol",  # bytes that are no HTTP reply: clients.errors
    "HTTPProtocolViolationError": "protocol",
    "EchoClosed": "closed",
    "HTTPConnectionClosed": "closed",
}


# ---------------------------------------------------------------------------------------
# The adapter: the locustfile's final files -> LoadResult


@dataclass(frozen=True)
class RemoteWorker:
    """A locust worker as its master saw it in the window (the window file's `workers`).

    `cpu`: % of one CPU over the worker's window, its CPU time over the wall time it
    reported (the locustfile adds both to its reports); without them, the mean of
    locust's own figures from its heartbeats. `cpu_max`: the highest of locust's figures.
    `warned`: one of them was above locust's warning threshold."""

    id: str  # locust's client id: HOSTNAME_HEX
    users: int | None  # the most it ran in the window; None: not reported
    cpu: float | None
    cpu_max: float | None
    warned: bool

    @property
    def took_part(self) -> bool:
        return self.users != 0  # a worker that got no user generated no load

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> RemoteWorker:
        cpu_s, wall_s = row.get("cpu_time_s"), row.get("cpu_wall_s")
        cpu = row.get("cpu_mean")
        if cpu_s is not None and wall_s:
            cpu = max(0.0, 100.0 * float(cpu_s) / float(wall_s))
        top = row.get("cpu_max")
        return cls(
            id=str(row["id"]),
            users=None if row.get("users") is None else int(row["users"]),
            cpu=None if cpu is None else round(float(cpu), 1),
            cpu_max=None if top is None else round(float(top), 1),
            warned=bool(row.get("cpu_warned")),
        )


@dataclass(frozen=True)
class WindowFile:
    """`<prefix>_window.json`, written by the locustfile at exit."""

    start_unix: float | None  # None: the run stopped before the warm-up ended
    end_unix: float | None
    interval_s: float
    intervals: tuple[Interval, ...]
    errors_before: dict[str, int]  # by kind
    workers: tuple[RemoteWorker, ...] = ()  # a master's workers (older files: none)

    @classmethod
    def read(cls, path: Path) -> WindowFile:
        data = json.loads(path.read_text())
        errors = no_errors()
        for row in data["errors_before"]:
            errors[error_kind(row["error"])] += int(row["occurrences"])
        return cls(
            start_unix=data["start_unix"],
            end_unix=data["end_unix"],
            interval_s=float(data["interval_s"]),
            intervals=tuple(
                Interval(
                    start_s=float(row["start_s"]),
                    count=int(row["count"]),
                    p99_us=round(float(row["p99_ms"]) * 1000),
                )
                for row in data["intervals"]
            ),
            errors_before=errors,
            workers=tuple(RemoteWorker.from_dict(row) for row in data.get("workers", ())),
        )

    @property
    def window(self) -> Window | None:
        if self.start_unix is None or self.end_unix is None:
            return None
        return Window(start_unix=self.start_unix, end_unix=self.end_unix)


def _csv_float(text: str | None) -> float | None:
    if text in (None, "", "N/A"):
        return None
    return float(text)


def _us(ms: float | None) -> int:
    return 0 if ms is None else round(ms * 1000)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def error_kind(error: str) -> str:
    """`ConnectionRefusedError(111, '...')` -> `connect_refused`; unknown -> `other`."""
    name = error.split("(", 1)[0].strip().rsplit(".", 1)[-1]
    return EXCEPTION_KINDS.get(name, "other")


def _ok(row: dict[str, str]) -> int:
    return int(row["Request Count"]) - int(row["Failure Count"])


def _latency(row: dict[str, str] | None) -> Latency:
    """One row's percentiles in us; count is its verified replies."""
    # locust folds failed requests into the response times: with no success at all
    # the figures would describe only failures, so there are none.
    if not row or _ok(row) <= 0:
        return Latency()
    top = _us(_csv_float(row.get("Max Response Time")))
    # A bucket rounds up as well as down: 64.993 ms is counted as 65 ms, above the
    # exact maximum; no percentile can be above the maximum.
    p50, p90, p99, p999 = (min(_us(_csv_float(row.get(c))), top) for c in PERCENTILE_COLUMNS)
    mean = _csv_float(row.get("Average Response Time"))
    return Latency(
        count=_ok(row),
        p50=p50,
        p90=p90,
        p99=p99,
        p999=p999,
        max=top,
        mean=0.0 if mean is None else round(mean * 1000, 1),
    )


@dataclass(frozen=True)
class _StatsRows:
    """The stats CSV's rows, by what they hold."""

    entries: list[dict[str, str]]  # every row but the aggregate
    requests: list[dict[str, str]]  # the request rows: no connect rows
    connect: dict[str, str] | None
    latency: dict[str, str] | None  # the one row that holds every request, if any

    @classmethod
    def read(cls, stats_csv: Path) -> _StatsRows:
        rows = _read_rows(stats_csv)
        entries = [r for r in rows if r["Name"] != "Aggregated"]
        requests_rows = [r for r in entries if r["Name"] not in CONNECT_ROWS]
        latency_row = None  # percentiles cannot be merged: one row must hold every request
        if len(requests_rows) == 1:
            latency_row = requests_rows[0]
        elif len(requests_rows) == len(entries):  # no connect rows in the aggregate
            latency_row = next((r for r in rows if r["Name"] == "Aggregated"), None)
        return cls(
            entries=entries,
            requests=requests_rows,
            connect=next((r for r in entries if r["Name"] == "connect"), None),
            latency=latency_row,
        )


def _errors(stats: _StatsRows, failures_csv: Path | None, windowed: bool) -> dict[str, int]:
    """Every failure the rows count, by kind. Failures locust counted but the failures
    file does not name (e.g. no such file) are `other`. With a window (`windowed`), the
    connect rows span the warm-up too: left out."""
    counted = stats.requests if windowed else stats.entries
    errors = no_errors()
    named = 0
    if failures_csv is not None and failures_csv.exists():
        for row in _read_rows(failures_csv):
            errors[error_kind(row["Error"])] += int(row["Occurrences"])
            if any(row["Name"] == r["Name"] for r in counted):
                named += int(row["Occurrences"])
    failed = sum(int(r["Failure Count"]) for r in counted)
    errors["other"] += max(0, failed - named)
    return errors


def _duration(requests_rows: list[dict[str, str]], window: Window | None) -> float:
    """The window's length; without one, locust's own (first to last request)."""
    if window is not None:
        return window.end_unix - window.start_unix
    # locust's Requests/s: count / (last request - first of that name)
    return max(
        (
            int(r["Request Count"]) / rps
            for r in requests_rows
            if (rps := _csv_float(r["Requests/s"]))
        ),
        default=0.0,
    )


def from_locust_stats(
    stats_csv: Path,
    params: Params,
    *,
    failures_csv: Path | None = None,
    window_json: Path | None = None,
    client: Client | None = None,
) -> LoadResult:
    """The locustfile's final files (`<prefix>_stats.csv`, `_failures.csv`,
    `_window.json`) as a LoadResult; `client` is the saturation verdict, judged apart.

    `requests` counts verified replies in the window; every failure in the window is in
    `errors`, by kind (unclassified ones under `other`), and the failures before it (the
    warm-up) in `errors_before`, from the window file. The connect rows span the whole
    run (users connect during the warm-up). `latency_all` is None: locust records a
    request only when it ends, so it cannot see those still outstanding at the stop.
    Without a window file (plain locust), the whole run is the window, `errors_before`
    is zeros and the duration is locust's own (first to last request).
    """
    stats = _StatsRows.read(stats_csv)
    ok = sum(_ok(r) for r in stats.requests)
    received = sum(
        int(r["Request Count"]) * (_csv_float(r["Average Content Size"]) or 0)
        for r in stats.requests
    )
    window_file = None
    if window_json is not None and window_json.exists():
        window_file = WindowFile.read(window_json)
    window = window_file.window if window_file else None
    errors = _errors(stats, failures_csv, windowed=window_file is not None)
    duration = _duration(stats.requests, window)
    throughput = round(ok / duration, 1) if duration > 0 else 0.0
    connect = _latency(stats.connect)
    return LoadResult(
        tool=TOOL,
        params=params,
        window=window,
        requests=ok,
        throughput_rps=throughput,
        bytes=round(received),
        duration_s=round(duration, 3),
        latency=_latency(stats.latency),
        latency_all=None,
        connect=ConnectLatency(p50=connect.p50, p99=connect.p99, max=connect.max),
        errors=errors,
        errors_before=window_file.errors_before if window_file else no_errors(),
        connections=Connections(
            asked=params.connections,
            established=_ok(stats.connect) if stats.connect is not None else None,
            starved=None,
        ),
        fairness=None,
        rate=Rate(asked=None, sent=throughput, achieved=throughput),
        client=client or Client(workers=(), cores=(), cores_busy=None, bound=None),
        intervals=window_file.intervals if window_file else (),
        interval_s=window_file.interval_s if window_file else 0.0,
        latency_note=RESOLUTION,
        latency_resolution=RESOLUTION_LOCUST,
    )


# ---------------------------------------------------------------------------------------
# Saturation: was locust the bottleneck? (judged on samples taken elsewhere)

Series = Sequence[tuple[float, float]]  # (unix time, a counter that only grows)


def value_at(series: Series, t: float, slack: float = 2 * SAMPLE_INTERVAL_S) -> float | None:
    """A sampled counter at time `t`: linear between the samples around it; past the last
    sample by at most `slack`, the last value (a process that exited counts no more)."""
    if not series or t < series[0][0]:
        return None
    for (t0, v0), (t1, v1) in zip(series, series[1:], strict=False):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    last_t, last_v = series[-1]
    return last_v if t - last_t <= slack else None


def delta(series: Series, window: Window) -> float | None:
    """How much a sampled counter grew over the window."""
    start, end = value_at(series, window.start_unix), value_at(series, window.end_unix)
    return None if start is None or end is None else end - start


def _share(series: Series, window: Window) -> float | None:
    """A counter of seconds over the window, as a % of the window's wall time."""
    grew, wall = delta(series, window), window.end_unix - window.start_unix
    if grew is None or wall <= 0:
        return None
    return round(max(0.0, 100.0 * grew / wall), 1)


def worker_usage(cpu_s: Series, run_delay_s: Series | None, window: Window) -> Worker:
    """One locust process over the window: CPU time, run-queue delay, and the rest.

    Locust does not busy-poll, so the time neither on a CPU nor waiting for one was
    spent waiting for work (replies, or the pacing of --rate)."""
    cpu = _share(cpu_s, window)
    waited_for_cpu = _share(run_delay_s, window) if run_delay_s is not None else None
    if cpu is None or waited_for_cpu is None:
        return Worker(cpu=cpu, waited_for_work=None, waited_for_cpu=waited_for_cpu)
    waited_for_work = round(max(0.0, 100.0 - cpu - waited_for_cpu), 1)
    return Worker(cpu=cpu, waited_for_work=waited_for_work, waited_for_cpu=waited_for_cpu)


def judge_client(
    workers: Sequence[Worker], cores: Sequence[int], cores_busy: float | None, cpu_warning: bool
) -> Client:
    """Bound when a worker was hardly ever idle (the bottleneck), when one waited long for
    a CPU (contended), or when locust itself warned of its CPU usage. Not judged (None)
    only when no worker could be sampled and locust did not warn."""
    reasons = saturation.reasons(workers)
    if cpu_warning:
        reasons.append("locust warned: CPU usage above 90%")
    bound: bool | None = bool(reasons)
    if not reasons and not any(w.cpu is not None for w in workers):
        bound = None
    return Client(
        workers=tuple(workers),
        cores=tuple(cores),
        cores_busy=cores_busy,
        bound=bound,
        reasons=tuple(reasons),
    )


def judge_remote_client(
    workers: Sequence[RemoteWorker],
    cores: Sequence[int],
    cores_busy: float | None,
    cpu_warning: bool,
) -> Client:
    """The verdict on workers that ran elsewhere (a master's), from locust's figures.

    Bound, naming the worker, when one kept a CPU REMOTE_CPU_BOUND_PERCENT busy on
    average over the window or locust warned about its CPU in the window; also when
    locust logged a CPU warning at all (as `judge_client`). Not bound when every worker
    that took part reported its CPU and all were under; None when a figure is missing.
    Workers that got no user are left out."""
    taking = [w for w in workers if w.took_part]
    reasons = []
    for w in taking:
        if w.cpu is not None and w.cpu >= REMOTE_CPU_BOUND_PERCENT:
            reasons.append(
                f"worker {w.id} used {w.cpu:.0f}% of a CPU over the window "
                "(the load generator was the bottleneck)"
            )
        if w.warned:
            reasons.append(f"locust warned that worker {w.id} was above 90% CPU in the window")
    if cpu_warning:
        reasons.append("locust warned: CPU usage above 90%")
    bound: bool | None = bool(reasons)
    if not reasons and (not taking or any(w.cpu is None for w in taking)):
        bound = None
    return Client(
        workers=tuple(
            Worker(
                cpu=w.cpu, waited_for_work=None, waited_for_cpu=None, name=w.id, cpu_max=w.cpu_max
            )
            for w in taking
        ),
        cores=tuple(cores),
        cores_busy=cores_busy,
        bound=bound,
        reasons=tuple(reasons),
    )

"""Locust as sockbench's second load generator: run it headless, report like loadgen.

    python -m clients.locust.driver --target 127.0.0.1:8000 --protocol echo \
        --users 10 --warmup 1 --duration 10 --payload 64 --cpus 1

Locust runs as a subprocess (`python -m locust -f clients/locust/locustfile.py ...`) in a
temporary folder, in a session of its own so that it and its forked workers can be
killed as one group, pinned to `--cpus` if given. This module must not import locust:
gevent monkey-patches socket and select on import. `from_locust_stats` turns the files
the locustfile writes at exit into a `clients.result.LoadResult`; it is a pure function
of the files. Only the measured window counts: the locustfile resets locust's stats
when the warm-up ends (see `MeasuredWindow` there). Whether locust was the bottleneck
is judged here, from /proc, as the native load generator judges itself; workers on
other machines (`--master`) from the CPU figures locust gave their master.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import psutil

from clients import saturation
from clients.result import (
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
from clients.target import is_loopback, split_target
from common import cpustat
from common.cli import (
    ArgumentParser,
    cpu_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from common.cpus import format_cpu_list
from common.process import block_stop_signals, die_with_parent

TOOL = "sockbench.locust"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"echo": "EchoUser", "http-get": "HttpGetUser", "http-post": "HttpEchoUser"}
CONNECT_ROWS = ("connect", "reconnect")  # EchoUser's connection events, not requests
PERCENTILE_COLUMNS = ("50%", "90%", "99%", "99.9%")  # of locust's stats CSV: p50 .. p999
STARTUP_GRACE_S = 60.0  # locust start-up and shutdown, beyond warm-up + duration
RUN_TIME_BACKSTOP_S = 5  # locust's --run-time beyond warm-up + duration (see backstop_run_time)
RESOLUTION = (
    "locust reports latency in milliseconds (percentiles rounded to locust's "
    "buckets: 2 significant digits with clients/locust/locustfile.py)"
)
# The locustfile logs these at the window's edges (its copies must match).
WINDOW_STARTED_LOG = "sockbench: measured window started"
WINDOW_ENDED_LOG = "sockbench: measured window ended"
# locust's own CPU warnings: "CPU usage above 90%!" (a local runner or a worker),
# "Worker ... exceeded cpu threshold" and "CPU usage threshold was exceeded on workers"
# (a master), "CPU usage was too high at some point during the test!" (at the end).
CPU_WARNINGS = (
    "CPU usage above",
    "CPU usage threshold",
    "exceeded cpu threshold",
    "CPU usage was too high",
)
# Saturation, as the native load generator judges it (% of the window's wall time).
SAMPLE_INTERVAL_S = 0.1  # the sampler of locust's processes and cores
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


class LocustRunError(RuntimeError):
    """Locust did not run to the end or left no stats behind."""


class UsageError(ValueError):
    """run_locust's arguments do not make sense (the command line exits 2 on it)."""


# ---------------------------------------------------------------------------------------
# The adapter: the locustfile's final files -> LoadResult (pure)


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
    rows = _read_rows(stats_csv)
    entries = [r for r in rows if r["Name"] != "Aggregated"]
    requests_rows = [r for r in entries if r["Name"] not in CONNECT_ROWS]
    connect_row = next((r for r in entries if r["Name"] == "connect"), None)
    latency_row = None  # percentiles cannot be merged: one row must hold every request
    if len(requests_rows) == 1:
        latency_row = requests_rows[0]
    elif len(requests_rows) == len(entries):  # no connect rows in the aggregate
        latency_row = next((r for r in rows if r["Name"] == "Aggregated"), None)

    ok = sum(_ok(r) for r in requests_rows)
    received = sum(
        int(r["Request Count"]) * (_csv_float(r["Average Content Size"]) or 0)
        for r in requests_rows
    )
    window_file = None
    if window_json is not None and window_json.exists():
        window_file = WindowFile.read(window_json)
    window = window_file.window if window_file else None

    # Failures locust counted but the failures file does not name (e.g. no such file)
    # are `other`. With a window, the connect rows span the warm-up too: left out.
    counted = requests_rows if window_file else entries
    errors = no_errors()
    named = 0
    if failures_csv is not None and failures_csv.exists():
        for row in _read_rows(failures_csv):
            errors[error_kind(row["Error"])] += int(row["Occurrences"])
            if any(row["Name"] == r["Name"] for r in counted):
                named += int(row["Occurrences"])
    failed = sum(int(r["Failure Count"]) for r in counted)
    errors["other"] += max(0, failed - named)
    if window is not None:
        duration = window.end_unix - window.start_unix
    else:  # locust's Requests/s: count / (last request - first of that name)
        duration = max(
            (
                int(r["Request Count"]) / rps
                for r in requests_rows
                if (rps := _csv_float(r["Requests/s"]))
            ),
            default=0.0,
        )
    throughput = round(ok / duration, 1) if duration > 0 else 0.0

    connect = _latency(connect_row)
    return LoadResult(
        tool=TOOL,
        params=params,
        window=window,
        requests=ok,
        throughput_rps=throughput,
        bytes=round(received),
        duration_s=round(duration, 3),
        latency=_latency(latency_row),
        latency_all=None,
        connect=ConnectLatency(p50=connect.p50, p99=connect.p99, max=connect.max),
        errors=errors,
        errors_before=window_file.errors_before if window_file else no_errors(),
        connections=Connections(
            asked=params.connections,
            established=_ok(connect_row) if connect_row is not None else None,
            starved=None,
        ),
        fairness=None,
        rate=Rate(asked=None, sent=throughput, achieved=throughput),
        client=client or Client(workers=(), cores=(), cores_busy=None, bound=None),
        intervals=window_file.intervals if window_file else (),
        interval_s=window_file.interval_s if window_file else 0.0,
        latency_note=RESOLUTION,
    )


# ---------------------------------------------------------------------------------------
# Saturation: was locust the bottleneck? (pure judgement, then the sampling of /proc)

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


def _delta(series: Series, window: Window) -> float | None:
    """How much a sampled counter grew over the window."""
    start, end = value_at(series, window.start_unix), value_at(series, window.end_unix)
    return None if start is None or end is None else end - start


def _share(series: Series, window: Window) -> float | None:
    """A counter of seconds over the window, as a % of the window's wall time."""
    grew, wall = _delta(series, window), window.end_unix - window.start_unix
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


def _run_delay_s(pid: int) -> float | None:
    """Run-queue delay of a process so far: the second field of schedstat, per thread."""
    total, seen = 0, False
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
            seen = True
        except (OSError, IndexError, ValueError):
            continue  # a thread that just exited
    return total / 1e9 if seen else None


class _Sampler(threading.Thread):
    """Samples locust's processes (CPU time, run-queue delay) and its cores (/proc/stat)
    every SAMPLE_INTERVAL_S, and at once when asked (`now()`: at the window's edges)."""

    def __init__(self, pid: int, cores: Sequence[int]) -> None:
        super().__init__(daemon=True)
        self.root_pid = pid
        try:
            self.root: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:  # locust failed at once: nothing to sample
            self.root = None
        self.cores = tuple(cores)
        self.cpu: dict[int, list[tuple[float, float]]] = {}  # pid -> (t, CPU seconds)
        self.delay: dict[int, list[tuple[float, float]]] = {}  # pid -> (t, run delay s)
        self.busy: list[tuple[float, float]] = []  # (t, busy ticks)
        self.total: list[tuple[float, float]] = []  # (t, all ticks)
        self.done = threading.Event()
        self._wake = threading.Event()

    def now(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self.done.set()
        self._wake.set()
        self.join()

    def run(self) -> None:
        block_stop_signals()  # Ctrl-C and SIGTERM are the main thread's to handle
        while not self.done.is_set():
            self._sample()
            self._wake.wait(SAMPLE_INTERVAL_S)
            self._wake.clear()

    def _sample(self) -> None:
        try:
            tree = [self.root, *self.root.children(recursive=True)] if self.root else []
        except psutil.Error:
            tree = []
        for proc in tree:
            try:
                times = proc.cpu_times()
                t = time.time()
            except psutil.Error:
                continue
            self.cpu.setdefault(proc.pid, []).append((t, times.user + times.system))
            delay = _run_delay_s(proc.pid)
            if delay is not None:
                self.delay.setdefault(proc.pid, []).append((t, delay))
        if self.cores:
            busy, total = cpustat.ticks(self.cores)
            t = time.time()
            self.busy.append((t, busy))
            self.total.append((t, total))

    def cores_busy(self, window: Window) -> float | None:
        busy, total = _delta(self.busy, window), _delta(self.total, window)
        if busy is None or total is None or total <= 0:
            return None
        # Interpolating busy and total apart can round a full core to 100.00000000003.
        return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)

    def workers(self, window: Window, forked: bool) -> list[Worker]:
        """The load-generating processes: locust itself, or the workers it forked (its
        master only coordinates)."""
        pids = sorted(p for p in self.cpu if p != self.root_pid) if forked else [self.root_pid]
        return [worker_usage(self.cpu.get(pid, []), self.delay.get(pid), window) for pid in pids]


# ---------------------------------------------------------------------------------------
# Running locust


def parse_target(text: str) -> tuple[str, int]:
    try:
        return split_target(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def user_class(protocol: str, payload: int) -> str:
    if protocol == "echo":
        return USER_CLASSES["echo"]
    return USER_CLASSES["http-post" if payload > 0 else "http-get"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def backstop_run_time(warmup: float, duration: float) -> int:
    """Locust's --run-time, whole seconds: only a backstop. The locustfile opens the
    window after `warmup` and stops the run `duration` later, to the millisecond; locust's
    own timer can fire early (see MeasuredWindow.schedule in the locustfile)."""
    return math.ceil(warmup + duration) + RUN_TIME_BACKSTOP_S


def locust_command(
    *,
    host: str,
    port: int,
    protocol: str,
    users: int,
    spawn_rate: float,
    run_time_s: int,
    warmup: float,
    duration: float,
    payload: int,
    rate: float | None,
    timeout: float,
    processes: int | None,
    master: bool,
    expect_workers: int | None,
    master_bind_host: str,
    master_bind_port: int | None,
    prefix: Path,
) -> list[str]:
    scheme = "http" if protocol == "http" else "tcp"
    netloc = f"[{host}]" if ":" in host else host
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{run_time_s}s",
        "--host",
        f"{scheme}://{netloc}:{port}",
        "--only-summary",
        "--exit-code-on-error",
        "0",  # failures are data; a non-zero exit means trouble
        "--sockbench-payload",
        str(payload),
        "--sockbench-timeout",
        str(timeout),
        "--sockbench-warmup",
        str(warmup),
        "--sockbench-duration",
        str(duration),
        "--sockbench-final-csv",
        f"{prefix}_final",
    ]
    if rate:
        cmd += ["--sockbench-rate", str(rate / users)]
    if processes or master:
        # Never locust's default of 5557 on every interface: loopback and a free port.
        bind_port = master_bind_port or free_port(master_bind_host)
        cmd += ["--master-bind-host", master_bind_host, "--master-bind-port", str(bind_port)]
        if processes:  # the forked workers connect to --master-port
            cmd += ["--processes", str(processes), "--master-port", str(bind_port)]
        else:
            cmd += [
                "--master",
                "--expect-workers",
                str(expect_workers or 1),
                "--expect-workers-max-wait",
                str(int(STARTUP_GRACE_S)),
            ]
    return [*cmd, user_class(protocol, payload)]


class _LogWatcher(threading.Thread):
    """Reads locust's merged stdout/stderr: keeps it, echoes it unless quiet, calls
    `on_edge` when the locustfile logs the window's start or end, and notes locust's
    CPU warnings."""

    def __init__(self, stream: IO[str], quiet: bool, on_edge: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.stream, self.quiet, self.on_edge = stream, quiet, on_edge
        self.lines: list[str] = []
        self.cpu_warning = False

    def run(self) -> None:
        block_stop_signals()  # Ctrl-C and SIGTERM are the main thread's to handle
        for line in self.stream:
            if WINDOW_STARTED_LOG in line or WINDOW_ENDED_LOG in line:
                self.on_edge()
            elif any(warning in line for warning in CPU_WARNINGS):
                self.cpu_warning = True
            self.lines.append(line)
            if not self.quiet:
                sys.stderr.write(line)


def _stop_group(proc: subprocess.Popen[str], wait: float = 5.0) -> None:
    """SIGTERM locust's process group (a session of its own: only locust and the
    workers it forked), then SIGKILL what is left. Nothing to do when all exited."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or the group never empties
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _locust_env() -> dict[str, str]:
    # LOCUST_* and SOCKBENCH_* settings in the caller's environment would silently
    # change the run; everything the run needs is on the command line.
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SOCKBENCH_"))}


def _check_cpus(cpus: Sequence[int]) -> tuple[int, ...]:
    allowed = os.sched_getaffinity(0)
    if missing := sorted(set(cpus) - allowed):
        raise UsageError(
            f"CPU {format_cpu_list(missing)} is not available here "
            f"(this process may run on {format_cpu_list(allowed)})"
        )
    return tuple(sorted(set(cpus)))


def run_locust(
    target: str,
    *,
    protocol: str = "echo",
    users: int = 10,
    spawn_rate: float | None = None,
    duration: float = 10.0,
    warmup: float = 1.0,
    payload: int = 64,
    rate: float | None = None,
    timeout: float = 10.0,
    processes: int | None = None,
    master: bool = False,
    expect_workers: int | None = None,
    master_bind_host: str = "127.0.0.1",
    master_bind_port: int | None = None,
    cpus: Sequence[int] | None = None,
    allow_remote: bool = False,
    quiet: bool = True,
) -> LoadResult:
    """Run locust headless against `target` (HOST:PORT): `warmup` seconds, then the
    measured window of `duration` seconds; return the window's LoadResult.

    Any positive duration works: the locustfile times the window, not locust's
    --run-time (whole seconds, and a timer that can fire early). `cpus` pins locust and
    its forked workers; by default they run anywhere this process may.
    With `master`, only a master runs here and `expect_workers` workers started by hand
    (docs/locust.md) do the load: the result's `processes` counts those that took part,
    and `client.workers` holds each one's CPU as locust reported it.
    Raises UsageError (a ValueError) for bad arguments, such as a non-loopback target or
    master bind host without allow_remote, and LocustRunError when locust fails or times
    out.
    """
    host, port = parse_target(target)
    if not allow_remote and not is_loopback(host):
        raise UsageError(
            f"target {host} is not a loopback address; pass --allow-remote to load another machine"
        )
    if protocol not in ("echo", "http"):
        raise UsageError(f"protocol must be echo or http, got {protocol!r}")
    if processes and master:
        raise UsageError("--processes and --master exclude each other")
    if expect_workers and not master:
        raise UsageError("--expect-workers needs --master")
    if master and not allow_remote and not is_loopback(master_bind_host):
        # workers on other machines may then connect, and anyone who reaches the port
        raise UsageError(
            f"master bind host {master_bind_host} is not a loopback address; "
            "pass --allow-remote to let workers on other machines connect"
        )
    if not duration > 0 or not warmup >= 0:
        raise UsageError(f"need duration > 0 and warmup >= 0, got {duration} and {warmup}")
    pinned = _check_cpus(cpus) if cpus else None
    spawn_rate = spawn_rate or float(users)
    seconds = backstop_run_time(warmup, duration)
    params = Params(
        target=f"{host}:{port}",
        protocol=protocol,
        connections=users,  # one connection per user
        processes=(expect_workers or 1) if master else (processes or 1),
        duration=duration,
        warmup=warmup,
        payload=payload,
        rate=None,  # --rate paces locust's users: not an open loop
        mode="persistent",
        timeout=timeout,
        cpus=pinned,
    )
    with tempfile.TemporaryDirectory(prefix="sockbench-locust-") as tmp:
        prefix = Path(tmp) / "run"
        cmd = locust_command(
            host=host,
            port=port,
            protocol=protocol,
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=seconds,
            warmup=warmup,
            duration=duration,
            payload=payload,
            rate=rate,
            timeout=timeout,
            processes=processes,
            master=master,
            expect_workers=expect_workers,
            master_bind_host=master_bind_host,
            master_bind_port=master_bind_port,
            prefix=prefix,
        )
        limit = warmup + duration + STARTUP_GRACE_S * (2 if master else 1)
        cores = pinned or tuple(sorted(os.sched_getaffinity(0)))
        watcher, sampler, code = _run(cmd, Path(tmp), limit, quiet, pinned, cores)
        final = Path(f"{prefix}_final")
        stats_csv, window_json = Path(f"{final}_stats.csv"), Path(f"{final}_window.json")
        if code != 0 or not stats_csv.exists() or not window_json.exists():
            last = next(
                (line.strip() for line in reversed(watcher.lines) if line.strip()), "no output"
            )
            raise LocustRunError(f"locust exited with code {code}: {last}")
        window_file = WindowFile.read(window_json)
        window = window_file.window
        if window is None:
            raise LocustRunError("locust stopped before the warm-up ended: no measured window")
        cores_busy = sampler.cores_busy(window)
        if master:  # the workers ran elsewhere: judged from what locust told the master
            client = judge_remote_client(
                window_file.workers, cores, cores_busy, watcher.cpu_warning
            )
            if client.workers:
                params = replace(params, processes=len(client.workers))
        else:
            workers = sampler.workers(window, forked=bool(processes))
            client = judge_client(workers, cores, cores_busy, watcher.cpu_warning)
        return from_locust_stats(
            stats_csv,
            params,
            failures_csv=Path(f"{final}_failures.csv"),
            window_json=window_json,
            client=client,
        )


def _run(
    cmd: Sequence[str],
    cwd: Path,
    limit: float,
    quiet: bool,
    pinned: Sequence[int] | None,
    cores: Sequence[int],
) -> tuple[_LogWatcher, _Sampler, int]:
    def child_setup() -> None:  # between fork and exec: the forked workers inherit both
        die_with_parent()
        if pinned:
            os.sched_setaffinity(0, pinned)

    # cwd is the empty temporary folder, so no locust.conf or pyproject.toml is picked up.
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=_locust_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=child_setup,
    )
    assert proc.stdout is not None  # stdout=PIPE
    sampler = _Sampler(proc.pid, cores)
    watcher = _LogWatcher(proc.stdout, quiet, on_edge=sampler.now)
    try:
        sampler.start()
        watcher.start()
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            raise LocustRunError(f"locust did not finish within {limit:.0f} s") from None
    finally:
        _stop_group(proc)  # also on Ctrl-C and errors: never leave locust behind
        sampler.stop()
        watcher.join(5.0)
        if proc.stdout is not None:
            proc.stdout.close()
    return watcher, sampler, code


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clients.locust.driver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument(
        "--protocol", choices=("echo", "http"), default="echo", help="the wire protocol"
    )
    parser.add_argument(
        "--users", type=positive_int, default=10, help="locust users, one connection each"
    )
    parser.add_argument(
        "--spawn-rate",
        type=positive_float,
        default=None,
        help="users started per second (default: all in the first second)",
    )
    parser.add_argument(
        "--duration", type=positive_float, default=10.0, help="seconds measured, after the warm-up"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=1.0,
        help="seconds of load before the measured window, not counted (default 1)",
    )
    parser.add_argument(
        "--payload",
        type=non_negative_int,
        default=64,
        help="echo payload bytes; for http, 0 is GET / and N > 0 POST /echo",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        help="total requests/s, shared by the users (default: closed loop)",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, help="connect and reply timeout in seconds"
    )
    parser.add_argument(
        "--cpus",
        type=cpu_list,
        default=None,
        help="pin locust (and its forked workers) to these CPUs, e.g. 1 or 2-3 "
        "(default: not pinned)",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="locust worker processes on this machine (locust --processes; default: one "
        "locust process, no workers)",
    )
    parser.add_argument(
        "--master",
        action="store_true",
        help="run only a locust master; start workers yourself (docs/locust.md)",
    )
    parser.add_argument(
        "--expect-workers",
        type=positive_int,
        default=None,
        help="with --master: wait for this many workers (default 1)",
    )
    parser.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        help="with --master: address the workers connect to (not loopback: needs --allow-remote)",
    )
    parser.add_argument(
        "--master-bind-port",
        type=positive_int,
        default=None,
        help="with --master: port the workers connect to (default: a free one)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target or a master bind host that is not a loopback address",
    )
    parser.add_argument("--quiet", action="store_true", help="do not echo locust's log")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM must unwind through run_locust's cleanup, which stops locust's group.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        result = run_locust(
            args.target,
            protocol=args.protocol,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration=args.duration,
            warmup=args.warmup,
            payload=args.payload,
            rate=args.rate,
            timeout=args.timeout,
            processes=args.processes,
            master=args.master,
            expect_workers=args.expect_workers,
            master_bind_host=args.master_bind_host,
            master_bind_port=args.master_bind_port,
            cpus=args.cpus,
            allow_remote=args.allow_remote,
            quiet=args.quiet,
        )
    except UsageError as exc:
        parser.error(str(exc))
    except LocustRunError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())

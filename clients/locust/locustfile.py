"""Locust users for sockbench: a raw-TCP echo user and two HTTP users.

Run through `python -m clients.locust.driver`, or by hand:

    locust -f clients/locust/locustfile.py --headless -u 10 -r 10 -t 10s \
        --host tcp://127.0.0.1:8000 EchoUser

This is the only module that imports locust: importing it monkey-patches socket and
select through gevent, so no server or native load-generator module may import it.
It imports no `clients.*` module, since locust imports it by file path; `common` (installed
with the project) is plain plumbing that is safe to import under gevent.

Options (command line or environment; in distributed mode the master forwards them to
the workers when the test starts):
  --sockbench-payload / SOCKBENCH_PAYLOAD    echo payload bytes (default 64); for HTTP,
                                             0 means `GET /`, N > 0 `POST /echo` of N bytes
  --sockbench-rate / SOCKBENCH_RATE          requests/s per user via constant_throughput;
                                             0 (default) is a closed loop with no wait
  --sockbench-timeout / SOCKBENCH_TIMEOUT    connect and reply timeout in seconds (default 10)
  --sockbench-warmup / SOCKBENCH_WARMUP      seconds from the test's start to the measured
                                             window (default 0: from the start)
  --sockbench-duration / SOCKBENCH_DURATION  seconds measured, then the run stops; 0 (the
                                             default) leaves the stop to locust's --run-time
  --sockbench-final-csv PREFIX               at exit, write PREFIX_stats.csv and
                                             PREFIX_failures.csv with the final figures, and
                                             PREFIX_window.json (the window, its 1 s slices and
                                             the failures before it)

Five changes to locust's bookkeeping, all for trustworthy figures: response times are
bucketed to 2 significant digits at every scale (locust's default rounds below 100 ms
to whole milliseconds, so a 50 us loopback echo would read as 0); the final CSV is
written at exit (locust's own --csv files are rewritten once a second, so they miss
up to the last second of the run); workers report every second, not every 3 s; every
process measures its CPU usage every second, not every 10 s; and only the measured
window counts (`MeasuredWindow`: the stats are reset when the warm-up ends; a master
also keeps each worker's CPU usage over the window). Workers forked by `--processes`
die with the locust process that forked them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent import socket
from locust import FastHttpUser, User, constant_throughput, events, runners, stats, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats, StatsEntry

from common.process import die_with_parent

GET_BODY = b"Hello, world!\n"  # servers/protocol.py answers `GET /` with this body
CONNECT_BACKOFF_S = 0.05  # after a connection error, so a dead server is not hit in a hot loop
# EchoUser's connection events, not requests (clients/locust/result.py names them too)
CONNECT_ROWS = ("connect", "reconnect")
INTERVAL_S = 1.0  # the measured window's slices
# Lines the driver watches for, to sample CPU at the window's edges (the driver's copies
# must match: tests/test_locust.py checks).
WINDOW_STARTED_LOG = "sockbench: measured window started"
WINDOW_ENDED_LOG = "sockbench: measured window ended"
WINDOW_MESSAGE = "sockbench_window"  # master -> workers: the measured window begins
IN_WINDOW = "sockbench_in_window"  # in a worker's report: counted after that message
CPU_REPORT = "sockbench_cpu"  # in a worker's report: its CPU time since that message

logger = logging.getLogger(__name__)


# Failure types: clients/locust/result.py maps failures to error kinds by these class
# names, so keep the names stable and the messages constant (locust groups failures by
# their repr).
class EchoMismatch(Exception):
    """The reply was not byte for byte the frame (or HTTP body) that was expected."""


class BadStatus(Exception):
    """An HTTP reply with a status other than 200."""


class EchoClosed(ConnectionError):
    """The server closed the connection before the whole reply arrived."""


class ConnectTimeout(TimeoutError):
    """connect() did not complete within the timeout."""


def bucket_2_digits(response_time: float) -> float:
    """2 significant digits at every scale: 0.05187 -> 0.052, 147 -> 150, 58760 -> 59000."""
    if response_time <= 0:
        return 0
    return round(response_time, 1 - math.floor(math.log10(response_time)))


# locust documents bucket_response_time as the hook for custom bucketing; every node
# (master, workers) imports this file, so all of them bucket alike.
stats.bucket_response_time = bucket_2_digits  # type: ignore[assignment]  # floats kept
# Workers report every 3 s by default, and a master gives their final report only 0.5 s
# when it quits: a busy machine loses it, and with it the run's last interval. Reporting
# every second bounds that loss (and gives the timeline 1 s steps in distributed runs).
runners.WORKER_REPORT_INTERVAL = 1.0
# Every runner measures its process's CPU usage every 10 s by default (psutil's
# cpu_percent; a worker sends the last figure in each heartbeat, and locust warns above
# CPU_WARNING_THRESHOLD): a window of a few seconds would see none. Read each loop.
runners.CPU_MONITOR_INTERVAL = 1.0


class _FinalStatsCSV(stats.StatsCSV):
    """locust's CSV layout, with the percentiles kept as bucketed floats, not cut to int ms."""

    def _percentile_fields(self, entry: StatsEntry, use_current: bool = False) -> list[Any]:
        if not entry.num_requests:
            return self.percentiles_na
        return [entry.get_response_time_percentile(p) for p in self.percentiles_to_report]


def write_final_csv(environment: Environment, prefix: str) -> None:
    writer = _FinalStatsCSV(environment, stats.PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as f:
        writer.requests_csv(csv.writer(f))
    with open(f"{prefix}_failures.csv", "w", newline="") as f:
        writer.failures_csv(csv.writer(f))


def _sleep_until(deadline: float) -> None:
    """gevent.sleep can wake early (its clock is the loop's cached time): check the wall."""
    while (left := deadline - time.time()) > 0:
        gevent.sleep(left)


# verified replies so far, response-time buckets (ms; locust annotates them int, ours are floats)
_Snapshot = tuple[int, dict[int, int]]


def _requests_so_far(request_stats: RequestStats) -> _Snapshot:
    """The request rows (not the connect rows) summed: verified replies and buckets."""
    ok = 0
    times: dict[int, int] = {}
    for entry in request_stats.entries.values():
        if entry.name in CONNECT_ROWS:
            continue
        ok += entry.num_requests - entry.num_failures
        for bucket, count in entry.response_times.items():
            times[bucket] = times.get(bucket, 0) + count
    return ok, times


@dataclass
class WorkerFigures:
    """One worker as a master sees it in the window (by locust's client id).

    `cpu_s` over `wall_s`: the worker's CPU time and wall time since the window's message
    reached it, from its latest report (each worker counts both itself, so the machines'
    clocks need not agree). `cpu_usage`: locust's own figures, % of one CPU over the
    second before each, as its heartbeats brought them during the window (they lag by
    up to two seconds). `users`: the most it ran, 0 for a worker that got none."""

    users: int | None = None
    cpu_s: float | None = None
    wall_s: float | None = None
    cpu_usage: list[float] = field(default_factory=list)

    def to_dict(self, worker_id: str) -> dict[str, Any]:
        usage = self.cpu_usage
        return {
            "id": worker_id,
            "users": self.users,
            "cpu_time_s": self.cpu_s,
            "cpu_wall_s": self.wall_s,
            "cpu_samples": len(usage),
            "cpu_mean": round(sum(usage) / len(usage), 1) if usage else None,
            "cpu_max": max(usage) if usage else None,
            # locust's own test (`> CPU_WARNING_THRESHOLD`), which logs its warning
            "cpu_warned": any(u > runners.CPU_WARNING_THRESHOLD for u in usage),
        }


class MeasuredWindow:
    """Only the measured window counts: from the warm-up's end to the run's stop.

    Kept on the master (or the local runner), which alone decides the window. When the
    warm-up ends, the request rows and the total are reset (the connect rows keep
    counting: users connect during the warm-up) and the failures so far are kept as
    `errors_before`; then the window is cut into INTERVAL_S slices (verified replies and
    the p99 of each), which the stats history of locust cannot give: its timestamps are
    whole seconds, it misses the run's last second and has no percentile per slice.

    Distributed runs: a worker holds up to a second of figures it has not reported, and a
    report may be on its way while the master resets. So the master tells the workers
    (WINDOW_MESSAGE); each at once reports what it holds, then marks every later report
    IN_WINDOW, and the master counts an unmarked report that comes after its reset as
    before the window (its failures into `errors_before`). A worker's window thus starts
    when the message reaches it, milliseconds after the master's.

    The master also keeps each worker's CPU usage over the window (`workers`, see
    WorkerFigures): from then on each worker adds its CPU time to its reports, and
    locust's heartbeats bring locust's own figure; the driver judges from these whether
    a worker on another machine was the bottleneck.

    One per process, at module level: the master's report filter must be in place
    before locust's own listener merges the report, and locust adds that when it
    creates the runner, after importing this file but before its `init` event.
    """

    def __init__(self) -> None:
        self.start_unix: float | None = None
        self.end_unix: float | None = None
        self.errors_before: list[dict[str, Any]] = []
        self.intervals: list[tuple[float, int, float]] = []  # start_s, replies, p99 ms
        self.worker_in_window = False  # on a worker: the master's WINDOW_MESSAGE came
        self._cpu_base: tuple[float, float] | None = None  # on a worker: (wall, CPU) then
        self.workers: dict[str, WorkerFigures] = {}  # on a master: by client id
        self._timer: gevent.Greenlet | None = None
        self._ticker: gevent.Greenlet | None = None
        self._slice_base: _Snapshot = (0, {})  # the figures when the open slice began
        self._prev_base: _Snapshot = (0, {})  # ... when the last closed slice began

    # -- on the master or the local runner

    def schedule(self, environment: Environment, warmup: float, duration: float) -> None:
        """At the test's start: open the window after `warmup` seconds and, with a
        `duration`, stop the run that much later. Timed here, not with --run-time:
        locust's timer counts from gevent's loop time, which lags behind by however long
        the start-up blocked the loop, so it fires early (0.3 s seen on a 2 s run)."""
        self._timer = gevent.spawn(self._run, environment, time.time() + warmup, duration)

    def _run(self, environment: Environment, opens_at: float, duration: float) -> None:
        _sleep_until(opens_at)
        self.open(environment)
        if duration > 0 and self.start_unix is not None:
            _sleep_until(self.start_unix + duration)
            assert environment.runner is not None
            gevent.spawn(environment.runner.quit)  # apart: stop() ends this greenlet

    def open(self, environment: Environment) -> None:
        request_stats = environment.stats
        self.errors_before += [
            {"name": e.name, "error": e.parse_error(e.error), "occurrences": e.occurrences}
            for e in request_stats.errors.values()
        ]
        request_stats.errors = {}
        request_stats.total.reset()  # type: ignore[no-untyped-call]
        for entry in request_stats.entries.values():
            if entry.name not in CONNECT_ROWS:
                entry.reset()  # type: ignore[no-untyped-call]
        self.start_unix = time.time()
        if isinstance(environment.runner, MasterRunner):
            environment.runner.send_message(WINDOW_MESSAGE)
        self._slice_base = self._prev_base = _requests_so_far(request_stats)
        self._ticker = gevent.spawn(self._tick, request_stats)
        logger.info(WINDOW_STARTED_LOG)

    def _tick(self, request_stats: RequestStats) -> None:
        assert self.start_unix is not None
        while True:
            _sleep_until(self.start_unix + (len(self.intervals) + 1) * INTERVAL_S)
            self._close_slice(request_stats)

    def _close_slice(self, request_stats: RequestStats) -> None:
        now = _requests_so_far(request_stats)
        (ok0, times0), (ok1, times1) = self._slice_base, now
        delta = stats.diff_response_time_dicts(times1, times0)
        p99 = stats.calculate_response_time_percentile(delta, sum(delta.values()), 0.99)
        self.intervals.append((len(self.intervals) * INTERVAL_S, ok1 - ok0, p99))
        self._prev_base, self._slice_base = self._slice_base, now

    def stop(self) -> None:
        """At the test's stop: the window ends (before it began, there is none)."""
        if self._timer is not None:
            self._timer.kill(block=False)
        if self._ticker is not None:
            self._ticker.kill(block=True)
        if self.start_unix is not None and self.end_unix is None:
            self.end_unix = time.time()
            logger.info(WINDOW_ENDED_LOG)

    def finish(self, request_stats: RequestStats) -> None:
        """At exit, after a master got its workers' last reports: the last slice runs
        to the window's end; a tail shorter than half a slice joins the slice before."""
        if self.start_unix is None or self.end_unix is None:
            return
        tail = self.end_unix - (self.start_unix + len(self.intervals) * INTERVAL_S)
        if self.intervals and tail < INTERVAL_S / 2:
            self.intervals.pop()
            self._slice_base = self._prev_base
        self._close_slice(request_stats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_unix": self.start_unix,
            "end_unix": self.end_unix,
            "interval_s": INTERVAL_S,
            "intervals": [
                {"start_s": start, "count": count, "p99_ms": p99}
                for start, count, p99 in self.intervals
            ],
            "errors_before": self.errors_before,
            "workers": [figures.to_dict(key) for key, figures in sorted(self.workers.items())],
        }

    def filter_report(self, client_id: str, data: dict[str, Any]) -> None:
        """A worker's report, before locust merges it: one sent before the worker knew
        of the window counts before it (only its connect rows are kept). From the window
        on, note the worker's users and CPU time (the final report, at the quit, too)."""
        if self.start_unix is None:
            return
        figures = self.workers.setdefault(client_id, WorkerFigures())
        if (users := data.get("user_count")) is not None:  # locust's own, in every report
            figures.users = max(figures.users or 0, int(users))
        if data.get(IN_WINDOW):
            if (cpu := data.get(CPU_REPORT)) is not None:
                figures.cpu_s, figures.wall_s = float(cpu["cpu_s"]), float(cpu["wall_s"])
            return
        self.errors_before += [
            {"name": e["name"], "error": e["error"], "occurrences": e["occurrences"]}
            for e in data.get("errors", {}).values()
        ]
        data["errors"] = {}
        data["stats"] = [e for e in data.get("stats", []) if e["name"] in CONNECT_ROWS]
        data["stats_total"] = StatsEntry(RequestStats(), "Aggregated", "").serialize()

    def on_heartbeat(self, runner: MasterRunner, client_id: str) -> None:
        """A worker's heartbeat, after locust noted the CPU usage it carries."""
        node = runner.clients.get(client_id)
        if self.start_unix is None or self.end_unix is not None or node is None:
            return
        self.workers.setdefault(client_id, WorkerFigures()).cpu_usage.append(float(node.cpu_usage))

    # -- on a worker

    def on_window_message(self, environment: Environment, msg: Any, **_kwargs: Any) -> None:
        """Report at once what was counted before the window, then mark later reports."""
        runner = environment.runner
        assert isinstance(runner, WorkerRunner)
        self._cpu_base = (time.time(), time.process_time())
        data: dict[str, Any] = {}
        environment.events.report_to_master.fire(  # type: ignore[no-untyped-call]
            client_id=runner.client_id, data=data
        )
        self.worker_in_window = True
        runner.send_message("stats", data)

    def mark_report(self, data: dict[str, Any]) -> None:
        data[IN_WINDOW] = self.worker_in_window
        if self.worker_in_window and self._cpu_base is not None:
            # process_time: user + system CPU of the whole process, as psutil's figure
            wall, cpu = self._cpu_base
            data[CPU_REPORT] = {"cpu_s": time.process_time() - cpu, "wall_s": time.time() - wall}


WINDOW = MeasuredWindow()
events.worker_report.add_listener(  # type: ignore[no-untyped-call]
    lambda client_id, data, **_kw: WINDOW.filter_report(client_id, data)
)
events.report_to_master.add_listener(  # type: ignore[no-untyped-call]
    lambda client_id, data, **_kw: WINDOW.mark_report(data)
)


def write_final_files(environment: Environment, prefix: str) -> None:
    WINDOW.finish(environment.stats)
    write_final_csv(environment, prefix)
    with open(f"{prefix}_window.json", "w") as f:
        json.dump(WINDOW.to_dict(), f)


_forker = 0  # the pid of the process that last forked, as its child sees it


def _before_fork() -> None:
    global _forker
    _forker = os.getpid()


def _after_fork_in_child() -> None:
    """A worker forked by `--processes` dies with the process that forked it.

    PR_SET_PDEATHSIG is not inherited across fork, so without this a killed driver left
    the forked workers running. It is set at the fork itself, not in locust's init
    event: a worker killed between the two (it waits for its master first) was left
    behind. A child whose parent is already gone exits at once."""
    die_with_parent(_forker)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@events.init.add_listener  # type: ignore[untyped-decorator]
def _on_init(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(WINDOW_MESSAGE, WINDOW.on_window_message)
        return
    warmup = _option(environment, "sockbench_warmup", 0.0)
    duration = _option(environment, "sockbench_duration", 0.0)
    environment.events.test_start.add_listener(  # type: ignore[no-untyped-call]
        lambda **_kw: WINDOW.schedule(environment, warmup, duration)
    )
    environment.events.test_stop.add_listener(  # type: ignore[no-untyped-call]
        lambda **_kw: WINDOW.stop()
    )
    if isinstance(runner, MasterRunner):
        # fired by locust's master on each worker heartbeat, after it noted the CPU usage
        environment.events.heartbeat_sent.add_listener(  # type: ignore[no-untyped-call]
            lambda client_id, **_kw: WINDOW.on_heartbeat(runner, client_id)
        )
    prefix = getattr(environment.parsed_options, "sockbench_final_csv", None)
    if prefix:
        # `quit` fires after the runner stopped (and a master got its workers' last
        # reports), so the stats are final here.
        environment.events.quit.add_listener(  # type: ignore[no-untyped-call]
            lambda **_kw: write_final_files(environment, prefix)
        )


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any) -> None:  # locust's configargparse parser
    parser.add_argument(
        "--sockbench-payload",
        type=int,
        env_var="SOCKBENCH_PAYLOAD",
        default=64,
        help="payload bytes per echo frame or HTTP POST body (0: HTTP GET)",
    )
    parser.add_argument(
        "--sockbench-rate",
        type=float,
        env_var="SOCKBENCH_RATE",
        default=0.0,
        help="requests per second per user (0: no wait, closed loop)",
    )
    parser.add_argument(
        "--sockbench-timeout",
        type=float,
        env_var="SOCKBENCH_TIMEOUT",
        default=10.0,
        help="connect and reply timeout in seconds",
    )
    parser.add_argument(
        "--sockbench-warmup",
        type=float,
        env_var="SOCKBENCH_WARMUP",
        default=0.0,
        help="seconds from the test's start to the measured window (stats reset then)",
    )
    parser.add_argument(
        "--sockbench-duration",
        type=float,
        env_var="SOCKBENCH_DURATION",
        default=0.0,
        help="seconds measured, then the run stops (0: at locust's --run-time)",
    )
    parser.add_argument(
        "--sockbench-final-csv",
        env_var="SOCKBENCH_FINAL_CSV",
        default=None,
        include_in_web_ui=False,
        help="path prefix of the final stats, failures and window files written at exit",
    )


def _option(environment: Environment, name: str, default: float) -> float:
    # parsed_options is None when a user runs outside the locust command line.
    return float(getattr(environment.parsed_options, name, default))


def make_payload(size: int) -> bytes:
    """A repeating 0..255 pattern: cheap, and a reordered or shifted reply cannot match it."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def closed_loop_or_rate(user: User) -> float:
    """The wait policy of every user: no wait (closed loop, as fast as the server answers),
    or constant_throughput when --sockbench-rate is set."""
    rate = _option(user.environment, "sockbench_rate", 0.0)
    if rate <= 0:
        return 0.0
    # constant_throughput keeps its state on the user, so a fresh closure each call is fine.
    return constant_throughput(rate)(user)


class EchoUser(User):
    """One persistent TCP connection per user, speaking the echo protocol.

    Each task sends one frame (4-byte big-endian length + payload), reads the reply and
    checks it byte for byte. Request events: `echo` per frame; `connect` for a user's
    first connection and `reconnect` for later ones, so connect latency and reconnects
    are reported apart from the echo latency.
    """

    wait_time = closed_loop_or_rate

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        payload = make_payload(int(_option(environment, "sockbench_payload", 64)))
        self.frame = len(payload).to_bytes(4, "big") + payload
        self.reply = bytearray(len(self.frame))
        self.timeout = float(_option(environment, "sockbench_timeout", 10.0))
        self.sock: socket.socket | None = None
        self.connected_once = False

    def on_stop(self) -> None:
        self._close()

    @task
    def echo(self) -> None:
        if self.sock is None and not self._connect():
            gevent.sleep(CONNECT_BACKOFF_S)
            return
        assert self.sock is not None
        error: Exception | None
        start = time.perf_counter()
        try:
            self.sock.sendall(self.frame)
            self._read_reply(self.sock)
            error = None if self.reply == self.frame else EchoMismatch("reply differs from frame")
        except OSError as exc:  # reset, timeout, closed: all subclasses of OSError
            error = exc
        self._fire("echo", start, 0 if error else len(self.frame), error)
        if error is not None:
            self._close()  # the stream may be out of step now: start clean

    def _read_reply(self, sock: socket.socket) -> None:
        view, got, size = memoryview(self.reply), 0, len(self.reply)
        while got < size:
            n = sock.recv_into(view[got:])
            if n == 0:
                raise EchoClosed("connection closed before the reply")
            got += n

    def _connect(self) -> bool:
        name = "reconnect" if self.connected_once else "connect"
        host, port = self._address()
        start = time.perf_counter()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            sock.close()
            self._fire(name, start, 0, ConnectTimeout("connect timed out"))
            return False
        except OSError as exc:
            sock.close()
            self._fire(name, start, 0, exc)
            return False
        self._fire(name, start, 0, None)
        self.sock, self.connected_once = sock, True
        return True

    def _address(self) -> tuple[str, int]:
        text = self.host or ""
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        if not parts.hostname or not parts.port:
            raise ValueError(f"EchoUser needs --host tcp://HOST:PORT, got {text!r}")
        return parts.hostname, parts.port

    def _fire(self, name: str, start: float, length: int, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="tcp",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=error,
            context={},
        )

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _HttpUser(FastHttpUser):
    abstract = True
    wait_time = closed_loop_or_rate

    def __init__(self, environment: Environment) -> None:
        # FastHttpUser builds its client from these in __init__, so set them first.
        timeout = float(_option(environment, "sockbench_timeout", 10.0))
        self.connection_timeout = self.network_timeout = timeout
        super().__init__(environment)

    def _check(self, response: Any, expected: bytes) -> bool:  # a FastResponse
        """Mark a wrong reply as failed; False when there was no reply at all."""
        if not response.status_code:
            return False  # a connection error: locust reports it with its own exception type
        if response.status_code != 200:
            response.failure(BadStatus(f"HTTP {response.status_code}"))
        elif getattr(response, "error", None) is None and response.content != expected:
            response.failure(EchoMismatch("body differs from expected"))
        return True


class HttpGetUser(_HttpUser):
    """`GET /` on a keep-alive connection; the body must be exactly `Hello, world!\\n`."""

    @task
    def get(self) -> None:
        with self.client.get("/", name="GET /", catch_response=True) as response:
            answered = self._check(response, GET_BODY)
        if not answered:
            gevent.sleep(CONNECT_BACKOFF_S)


class HttpEchoUser(_HttpUser):
    """`POST /echo` with a payload of --sockbench-payload bytes; the body must echo it."""

    def on_start(self) -> None:
        self.payload = make_payload(int(_option(self.environment, "sockbench_payload", 64)))

    @task
    def post_echo(self) -> None:
        with self.client.post(
            "/echo",
            name="POST /echo",
            data=self.payload,  # type: ignore[arg-type]  # bytes are sent as is
            catch_response=True,
        ) as response:
            answered = self._check(response, self.payload)
        if not answered:
            gevent.sleep(CONNECT_BACKOFF_S)

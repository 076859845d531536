"""Locust's process group: run locust headless, watch its log, stop it, read its result.

`run_locust` runs `python -m locust -f clients/locust/locustfile.py ...` in a temporary
folder, in a session of its own so that it and its forked workers can be killed as one
group, pinned to `cpus` if given, while `clients.locust.sampler` samples it from /proc.
It then turns the files the locustfile writes at exit into a LoadResult and judges
whether locust was the bottleneck (`clients.locust.result`). This module must not import
locust: gevent monkey-patches socket and select on import.
"""

from __future__ import annotations

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
from dataclasses import replace
from pathlib import Path
from typing import IO

from clients.locust.result import WindowFile, from_locust_stats, judge_client, judge_remote_client
from clients.locust.sampler import Sampler
from clients.result import LoadResult, Params
from clients.server_cpu import EdgeReadings
from clients.target import is_loopback, split_target
from common.cpus import format_cpu_list
from common.process import block_stop_signals, die_with_parent

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"echo": "EchoUser", "http-get": "HttpGetUser", "http-post": "HttpEchoUser"}
STARTUP_GRACE_S = 60.0  # locust start-up and shutdown, beyond warm-up + duration
RUN_TIME_BACKSTOP_S = 5  # locust's --run-time beyond warm-up + duration (see backstop_run_time)
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


class LocustRunError(RuntimeError):
    """Locust did not run to the end or left no stats behind."""


class UsageError(ValueError):
    """run_locust's arguments do not make sense (the command line exits 2 on it)."""


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
    server_pid: int | None = None,
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
    _check_arguments(
        host, protocol, processes, master, expect_workers, master_bind_host, allow_remote
    )
    if not duration > 0 or not warmup >= 0:
        raise UsageError(f"need duration > 0 and warmup >= 0, got {duration} and {warmup}")
    pinned = _check_cpus(cpus) if cpus else None
    edges = _edge_readings(server_pid)
    workers = (expect_workers or 1) if master else (processes or 1)
    params = _params(
        f"{host}:{port}", protocol, users, workers, duration, warmup, payload, timeout, pinned
    )
    with tempfile.TemporaryDirectory(prefix="sockbench-locust-") as tmp:
        prefix = Path(tmp) / "run"
        cmd = locust_command(
            host=host,
            port=port,
            protocol=protocol,
            users=users,
            spawn_rate=spawn_rate or float(users),
            run_time_s=backstop_run_time(warmup, duration),
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
        watcher, sampler, code = _run(cmd, Path(tmp), limit, quiet, pinned, cores, edges)
        result = _read_result(
            Path(f"{prefix}_final"), params, code, watcher, sampler, cores, master, processes
        )
        return _with_server_cpu(result, edges)


def _params(
    target: str,
    protocol: str,
    users: int,
    processes: int,
    duration: float,
    warmup: float,
    payload: int,
    timeout: float,
    cpus: tuple[int, ...] | None,
) -> Params:
    return Params(
        target=target,
        protocol=protocol,
        connections=users,  # one connection per user
        processes=processes,
        duration=duration,
        warmup=warmup,
        payload=payload,
        rate=None,  # --rate paces locust's users: not an open loop
        mode="persistent",
        timeout=timeout,
        cpus=cpus,
    )


def _edge_readings(server_pid: int | None) -> EdgeReadings | None:
    """Where the server's CPU is read at the window's edges (--server-pid); UsageError
    for a pid that is not a process here."""
    if server_pid is None:
        return None
    if not Path(f"/proc/{server_pid}").is_dir():
        raise UsageError(f"server pid {server_pid}: no such process on this machine")
    return EdgeReadings(server_pid)


def _with_server_cpu(result: LoadResult, edges: EdgeReadings | None) -> LoadResult:
    if edges is None or result.window is None:
        return result
    window = result.window
    return replace(result, server_cpu=edges.result(window.start_unix, window.end_unix))


def _check_arguments(
    host: str,
    protocol: str,
    processes: int | None,
    master: bool,
    expect_workers: int | None,
    master_bind_host: str,
    allow_remote: bool,
) -> None:
    """run_locust's checks of what it was asked, in the order the command line reports."""
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


def _read_result(
    final: Path,
    params: Params,
    code: int,
    watcher: _LogWatcher,
    sampler: Sampler,
    cores: Sequence[int],
    master: bool,
    processes: int | None,
) -> LoadResult:
    """The window's LoadResult from the files locust left at `final`, with the verdict on
    locust from the sampler (locust ran here) or from its master's workers."""
    stats_csv, window_json = Path(f"{final}_stats.csv"), Path(f"{final}_window.json")
    if code != 0 or not stats_csv.exists() or not window_json.exists():
        last = next((line.strip() for line in reversed(watcher.lines) if line.strip()), "no output")
        raise LocustRunError(f"locust exited with code {code}: {last}")
    window_file = WindowFile.read(window_json)
    window = window_file.window
    if window is None:
        raise LocustRunError("locust stopped before the warm-up ended: no measured window")
    cores_busy = sampler.cores_busy(window)
    if master:  # the workers ran elsewhere: judged from what locust told the master
        client = judge_remote_client(window_file.workers, cores, cores_busy, watcher.cpu_warning)
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
    edges: EdgeReadings | None = None,
) -> tuple[_LogWatcher, Sampler, int]:
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
    sampler = Sampler(proc.pid, cores)

    def on_edge() -> None:
        if edges is not None:  # first: the server's CPU at the edge's instant
            edges.edge()
        sampler.now()

    watcher = _LogWatcher(proc.stdout, quiet, on_edge=on_edge)
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

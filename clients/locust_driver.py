"""Locust as sockbench's second load generator: run it headless, report like loadgen.

    python -m clients.locust_driver --target 127.0.0.1:8000 --protocol echo \
        --users 10 --duration 10 --payload 64

Locust runs as a subprocess (`python -m locust -f clients/locustfile.py ...`) in a
temporary folder, in a session of its own so that it and its forked workers can be
killed as one group. This module must not import locust: gevent monkey-patches socket
and select on import. `from_locust_stats` turns locust's CSV files into the same JSON
fields as `clients.loadgen` prints; it is a pure function of the files.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psutil

from clients.errors import ERROR_KINDS
from clients.target import is_loopback, split_target
from common.cli import ArgumentParser, non_negative_int, positive_float, positive_int
from common.process import die_with_parent

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"echo": "EchoUser", "http-get": "HttpGetUser", "http-post": "HttpEchoUser"}
CONNECT_ROWS = ("connect", "reconnect")  # EchoUser's connection events, not requests
SATURATED_CPU = 90.0  # percent of one core over the window, as loadgen and locust's warning
STARTUP_GRACE_S = 60.0  # locust start-up and shutdown, beyond the run time
RESOLUTION = (
    "locust reports latency in milliseconds (percentiles rounded to locust's "
    "buckets: 2 significant digits with clients/locustfile.py)"
)

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
    "HTTPParseError": "mismatch",
    "HTTPProtocolViolationError": "mismatch",
    "EchoClosed": "closed",
    "HTTPConnectionClosed": "closed",
}
ERROR_KEYS = (*ERROR_KINDS, "other")  # the native load generator's kinds, and the rest


class LocustRunError(RuntimeError):
    """Locust did not run to the end or left no stats behind."""


class UsageError(ValueError):
    """run_locust's arguments do not make sense (the command line exits 2 on it)."""


# ---------------------------------------------------------------------------------------
# The adapter: locust CSV -> sockbench load JSON (pure)


def _csv_float(text: str | None) -> float | None:
    if text in (None, "", "N/A"):
        return None
    return float(text)


def _us(ms: float | None) -> int | None:
    return None if ms is None else round(ms * 1000)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def error_kind(error: str) -> str:
    """`ConnectionRefusedError(111, '...')` -> `connect_refused`; unknown -> `other`."""
    name = error.split("(", 1)[0].strip().rsplit(".", 1)[-1]
    return EXCEPTION_KINDS.get(name, "other")


def _latency(row: dict[str, str] | None) -> dict[str, float | None]:
    # locust folds failed requests into the response times: with no success at all
    # the figures would describe only failures, so there are none.
    if not row or int(row["Request Count"]) == int(row["Failure Count"]):
        row = {}
    top = _us(_csv_float(row.get("Max Response Time")))
    summary: dict[str, float | None] = {}
    for key, column in (("p50", "50%"), ("p90", "90%"), ("p99", "99%"), ("p999", "99.9%")):
        value = _us(_csv_float(row.get(column)))
        # A bucket rounds up as well as down: 64.993 ms is counted as 65 ms, above the
        # exact maximum; no percentile can be above the maximum.
        summary[key] = value if value is None or top is None else min(value, top)
    summary["max"] = top
    mean = _csv_float(row.get("Average Response Time"))
    summary["mean"] = None if mean is None else round(mean * 1000, 1)
    return summary


def _timeline(history: list[dict[str, str]], name: str) -> list[int]:
    """Verified replies per second, like loadgen's timeline, from locust's history file.

    The file holds cumulative totals sampled about once a second (as often as workers
    report, on a master), and misses the last partial second of the run; a longer
    interval is spread evenly over its seconds.
    """
    rows = sorted((r for r in history if r["Name"] == name), key=lambda r: int(r["Timestamp"]))
    if not rows:
        return []
    last_t = min(int(r["Timestamp"]) for r in history)  # the first sample, before any load
    timeline: list[int] = []
    last_ok = 0
    for row in rows:
        t = int(row["Timestamp"])
        if t <= last_t:
            continue  # two samples within one second: the next interval takes both
        ok = int(row["Total Request Count"]) - int(row["Total Failure Count"])
        share, extra = divmod(ok - last_ok, t - last_t)
        timeline += [share] * (t - last_t - 1) + [share + extra]
        last_t, last_ok = t, ok
    return timeline


def from_locust_stats(
    stats_csv: Path, history_csv: Path | None, params: dict[str, Any], failures_csv: Path | None
) -> dict[str, Any]:
    """Convert locust's `_stats.csv` (+ `_stats_history.csv`, `_failures.csv`) into the
    fields of clients.loadgen's JSON. `requests` counts verified replies only; every
    failure is in `errors`, by kind (unclassified ones under `other`)."""
    rows = _read_rows(stats_csv)
    entries = [r for r in rows if r["Name"] != "Aggregated"]
    requests_rows = [r for r in entries if r["Name"] not in CONNECT_ROWS]
    connect_row = next((r for r in entries if r["Name"] == "connect"), None)
    latency_row = None  # percentiles cannot be merged: one row must hold every request
    if len(requests_rows) == 1:
        latency_row = requests_rows[0]
    elif len(requests_rows) == len(entries):  # no connect rows in the aggregate
        latency_row = next((r for r in rows if r["Name"] == "Aggregated"), None)

    count = sum(int(r["Request Count"]) for r in requests_rows)
    failed = sum(int(r["Failure Count"]) for r in requests_rows)
    ok = count - failed
    # locust's Requests/s is count / (last request of the run - first of that name).
    durations = [
        int(r["Request Count"]) / rps for r in requests_rows if (rps := _csv_float(r["Requests/s"]))
    ]
    duration = max(durations, default=0.0)
    received = sum(
        int(r["Request Count"]) * (_csv_float(r["Average Content Size"]) or 0)
        for r in requests_rows
    )

    errors = dict.fromkeys(ERROR_KEYS, 0)
    if failures_csv is not None and failures_csv.exists():
        for row in _read_rows(failures_csv):
            errors[error_kind(row["Error"])] += int(row["Occurrences"])
    all_failed = sum(int(r["Failure Count"]) for r in entries)
    errors["other"] += max(0, all_failed - sum(errors.values()))  # e.g. no failures file

    established = None
    if connect_row is not None:
        established = int(connect_row["Request Count"]) - int(connect_row["Failure Count"])
    history = _read_rows(history_csv) if history_csv is not None and history_csv.exists() else []
    throughput = round(ok / duration, 1) if duration else 0.0
    connect = _latency(connect_row)
    return {
        "schema": 1,
        "tool": "sockbench.locust",
        "params": dict(params),
        "requests": ok,
        "throughput_rps": throughput,
        "bytes": round(received),
        "duration_s": round(duration, 3),
        "latency_us": _latency(latency_row),
        "connect_us": {key: connect[key] for key in ("p50", "p99", "max")},
        "errors": errors,
        "connections": {"asked": params.get("users"), "established": established, "starved": None},
        "fairness": None,
        "timeline": _timeline(history, latency_row["Name"]) if latency_row else [],
        "rate": {"asked": params.get("rate"), "achieved": throughput},
        "client": {"cpu_percent": [], "saturated": None},
        "resolution": RESOLUTION,
    }


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


def locust_command(
    *,
    host: str,
    port: int,
    protocol: str,
    users: int,
    spawn_rate: float,
    duration: int,
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
        f"{duration}s",
        "--host",
        f"{scheme}://{netloc}:{port}",
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--only-summary",
        "--exit-code-on-error",
        "0",  # failures are data; a non-zero exit means trouble
        "--sockbench-payload",
        str(payload),
        "--sockbench-timeout",
        str(timeout),
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
    """Reads locust's merged stdout/stderr: keeps it, echoes it unless quiet, and notes
    when the users were all spawned and when the run-time limit hit (the load window)."""

    def __init__(self, stream: IO[str], quiet: bool) -> None:
        super().__init__(daemon=True)
        self.stream, self.quiet = stream, quiet
        self.lines: list[str] = []
        self.spawned_at: float | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)
            if self.spawned_at is None and "All users spawned" in line:
                self.spawned_at = time.time()
            elif self.ended_at is None and "run-time limit reached" in line:
                self.ended_at = time.time()
            if not self.quiet:
                sys.stderr.write(line)

    @property
    def cpu_warning(self) -> bool:
        # "CPU usage above 90%!", "CPU usage threshold was exceeded on workers ..."
        return any(
            "CPU usage above" in line or "CPU usage threshold" in line for line in self.lines
        )


class _CpuSampler(threading.Thread):
    """Samples the CPU of locust and its forked workers while the users run."""

    INTERVAL = 0.5

    def __init__(self, pid: int, window: _LogWatcher) -> None:
        super().__init__(daemon=True)
        self.root, self.window = psutil.Process(pid), window
        self.samples: dict[int, list[float]] = {}
        self.done = threading.Event()
        self._seen: dict[int, psutil.Process] = {}

    def run(self) -> None:
        while not self.done.wait(self.INTERVAL):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in tree:
                first = proc.pid not in self._seen
                known = self._seen.setdefault(proc.pid, proc)  # cpu_percent needs one object
                try:
                    value = known.cpu_percent(None)
                except psutil.Error:
                    continue
                if first:
                    continue  # a first call only starts the clock: it always says 0.0
                if self.window.spawned_at and not self.window.ended_at:
                    self.samples.setdefault(proc.pid, []).append(value)

    def means(self) -> list[float]:
        """Mean CPU percent per process (locust's main process first) over the window."""
        return [round(sum(v) / len(v), 1) for v in self.samples.values() if v]


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


def run_locust(
    target: str,
    *,
    protocol: str = "echo",
    users: int = 10,
    spawn_rate: float | None = None,
    duration: int = 10,
    payload: int = 64,
    rate: float | None = None,
    timeout: float = 10.0,
    processes: int | None = None,
    master: bool = False,
    expect_workers: int | None = None,
    master_bind_host: str = "127.0.0.1",
    master_bind_port: int | None = None,
    allow_remote: bool = False,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run locust headless against `target` (HOST:PORT) and return loadgen-style JSON.

    Raises UsageError (a ValueError) for bad arguments, such as a non-loopback target
    without allow_remote, and LocustRunError when locust fails or times out.
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
    spawn_rate = spawn_rate or float(users)
    # Named as loadgen names its params where they mean the same (one connection per user).
    params = {
        "target": f"{host}:{port}",
        "protocol": protocol,
        "connections": users,
        "users": users,
        "spawn_rate": spawn_rate,
        "duration": duration,
        "payload": payload,
        "rate": rate,
        "mode": "persistent",
        "timeout": timeout,
        "processes": processes,
        "master": master,
        "expect_workers": expect_workers if master else None,
        "user_class": user_class(protocol, payload),
        "locust_version": metadata.version("locust"),
    }
    with tempfile.TemporaryDirectory(prefix="sockbench-locust-") as tmp:
        prefix = Path(tmp) / "run"
        cmd = locust_command(
            host=host,
            port=port,
            protocol=protocol,
            users=users,
            spawn_rate=spawn_rate,
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
        limit = duration + STARTUP_GRACE_S * (2 if master else 1)
        watcher, sampler, code = _run(cmd, Path(tmp), limit, quiet)
        final = Path(f"{prefix}_final_stats.csv")
        if code != 0 or not final.exists():
            last = next(
                (line.strip() for line in reversed(watcher.lines) if line.strip()), "no output"
            )
            raise LocustRunError(f"locust exited with code {code}: {last}")
        result = from_locust_stats(
            final, Path(f"{prefix}_stats_history.csv"), params, Path(f"{prefix}_final_failures.csv")
        )
    result["client"] = _client(sampler, watcher, processes, master)
    if watcher.spawned_at and watcher.ended_at:
        result["window"] = {"start_unix": watcher.spawned_at, "end_unix": watcher.ended_at}
        result["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(watcher.spawned_at))
    return result


def _run(
    cmd: Sequence[str], cwd: Path, limit: float, quiet: bool
) -> tuple[_LogWatcher, _CpuSampler, int]:
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
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None  # stdout=PIPE
    watcher = _LogWatcher(proc.stdout, quiet)
    sampler = _CpuSampler(proc.pid, watcher)
    try:
        watcher.start()
        sampler.start()
        try:
            code = proc.wait(limit)
        except subprocess.TimeoutExpired:
            raise LocustRunError(f"locust did not finish within {limit:.0f} s") from None
    finally:
        _stop_group(proc)  # also on Ctrl-C and errors: never leave locust behind
        sampler.done.set()
        sampler.join()
        watcher.join(5.0)
        if proc.stdout is not None:
            proc.stdout.close()
    return watcher, sampler, code


def _client(
    sampler: _CpuSampler, watcher: _LogWatcher, processes: int | None, master: bool
) -> dict[str, Any]:
    cpu = sampler.means()
    # With --processes the first process is the master, which generates no load.
    load_cpu = cpu[1:] if processes else cpu
    if watcher.cpu_warning or any(c > SATURATED_CPU for c in load_cpu):
        saturated: bool | None = True
    elif master or not load_cpu:
        saturated = None  # the workers run elsewhere (or nothing was sampled)
    else:
        saturated = False
    return {"cpu_percent": cpu, "saturated": saturated}


# ---------------------------------------------------------------------------------------
# Command line


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clients.locust_driver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument("--protocol", choices=("echo", "http"), default="echo")
    parser.add_argument(
        "--users", type=positive_int, default=10, help="locust users, one connection each"
    )
    parser.add_argument(
        "--spawn-rate",
        type=positive_float,
        default=None,
        help="users started per second (default: all in the first second)",
    )
    parser.add_argument("--duration", type=positive_int, default=10, help="seconds of load")
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
        "--processes",
        type=positive_int,
        default=None,
        help="locust worker processes on this machine (locust --processes)",
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
        help="with --master: address the workers connect to",
    )
    parser.add_argument(
        "--master-bind-port",
        type=positive_int,
        default=None,
        help="with --master: port the workers connect to (default: a free one)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a target that is not a loopback address"
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
            payload=args.payload,
            rate=args.rate,
            timeout=args.timeout,
            processes=args.processes,
            master=args.master,
            expect_workers=args.expect_workers,
            master_bind_host=args.master_bind_host,
            master_bind_port=args.master_bind_port,
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
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The two tools a crosscheck compares, each run once as a child process: wrk (its
`--latency` output parsed) and `clients.loadgen`. A run gives one dict: rps, p50 and
p99 (us), errors, its measured window (unix times) and the client's CPU (ours only).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from clients.result import LoadResult
from common.process import die_with_parent

_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, p50 and p99 (us) and the error count from `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output: {text.strip()[-300:]!r}")
    result: dict[str, Any] = {"rps": float(rps.group(1)), "p50": None, "p99": None, "errors": 0}
    for name in ("50", "99"):
        found = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if found:
            result[f"p{name}"] = float(found.group(1)) * _UNITS_US[found.group(2)]
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        text,
    )
    if socket_errors:
        result["errors"] += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        result["errors"] += int(non_2xx.group(1))
    return result


class Children:
    """The tool processes started here; all of them are killed on the way out."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def run(self, cmd: Sequence[str], cpus: set[int] | None, timeout: float) -> str:
        def prepare() -> None:
            die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=prepare,
        )
        self.running.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{cmd[0]} ran past {timeout:.0f} s") from None
        finally:
            self.kill(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.strip()[-300:]}")
        return out

    def kill(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def kill_all(self) -> None:
        for proc in list(self.running):
            self.kill(proc)


Tool = Callable[[Children, int, int, int, "set[int] | None"], dict[str, Any]]


def _threads(cpus: set[int] | None, connections: int) -> int:
    """wrk threads, or loadgen workers: one per client CPU, no more than connections."""
    return max(1, min(len(cpus or ()), connections))


def run_wrk(
    children: Children, port: int, connections: int, duration: int, cpus: set[int] | None
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{_threads(cpus, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        f"http://127.0.0.1:{port}/",
    ]
    start = time.time()
    result = parse_wrk(children.run(cmd, cpus, timeout=duration + 30))
    # wrk counts from its start, connects included: its whole run is its window.
    return {**result, "window": (start, time.time()), "cpu": None}


def run_ours(
    children: Children, port: int, connections: int, duration: int, cpus: set[int] | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "clients.loadgen",
        "--target",
        f"127.0.0.1:{port}",
        "--protocol",
        "http",
        "--payload",
        "0",
        "--connections",
        str(connections),
        "--processes",
        str(_threads(cpus, connections)),
        "--duration",
        str(duration),
        "--warmup",
        "0.5",
        "--quiet",
    ]
    if cpus:
        cmd += ["--cpus", ",".join(map(str, sorted(cpus)))]
    result = LoadResult.from_json(children.run(cmd, None, timeout=duration + 60))
    assert result.window is not None  # the native load generator always gives it
    return {
        "rps": result.throughput_rps,
        "p50": result.latency.p50,
        "p99": result.latency.p99,
        "errors": result.error_count,
        "window": (result.window.start_unix, result.window.end_unix),
        "cpu": max((w.cpu or 0.0 for w in result.client.workers), default=0.0),
        "bound": result.client.bound,
    }

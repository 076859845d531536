"""The CPU time of a process tree in nanoseconds, read at an instant.

psutil and /proc/PID/stat count CPU time in clock ticks (10 ms here, `getconf CLK_TCK`
is 100), and a sampler that reads every 0.25 s must interpolate to the load window's
edges, where the server goes from flat out to idle: 2-6% low (docs/loadgen.md).
The kernel's process CPU clock (clock_getcpuclockid(pid), then clock_gettime) is the
scheduler's own count in nanoseconds, for every thread of the process, those that
exited included; one reading per process of the tree (prefork's workers are children).
Where the clock cannot be had, the tree's threads' /proc/PID/task/*/schedstat (the same
nanoseconds, live threads only) stand in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class CpuReading:
    """A process tree's CPU time (ns) and the CLOCK_MONOTONIC instants (ns) just before
    and just after it was read; `how` names the source ("clock" or "schedstat")."""

    cpu_ns: int
    before_ns: int
    after_ns: int
    processes: int
    how: str


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.clock_getcpuclockid.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        return libc
    except (OSError, AttributeError):
        return None


def process_cpu_ns(pid: int) -> int | None:
    """One process's CPU time (user and system, every thread, exited ones too) in ns,
    from its CPU clock; None where there is no such process or no clock."""
    libc = _libc()
    if libc is None:
        return None
    clock = ctypes.c_int()
    if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    try:
        return time.clock_gettime_ns(clock.value)
    except OSError:  # it exited between the two calls
        return None


def schedstat_ns(pid: int) -> int | None:
    """The sum of a process's live threads' run time (ns) from /proc/PID/task/*/schedstat."""
    total, found = 0, False
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that exited meanwhile
    return total if found else None


def descendants(pid: int) -> list[int]:
    """The process's children, theirs, and so on, as their main threads forked them
    (/proc/PID/task/PID/children): one read per process, where every thread's would cost
    milliseconds in a thread-per-connection server, at the instant being timed."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = [
                int(c) for c in (PROC / f"{parent}/task/{parent}/children").read_text().split()
            ]
        except (OSError, ValueError):
            continue
        found += children
        todo += children
    return found


def tree_cpu(pid: int) -> CpuReading | None:
    """The CPU time of `pid` and its descendants, read now; None if `pid` is gone. A
    child that exits between the listing and its reading is left out."""
    before = time.monotonic_ns()
    pids = [pid, *descendants(pid)]
    for how, read in (("clock", process_cpu_ns), ("schedstat", schedstat_ns)):
        if (first := read(pid)) is None:
            continue
        total = first + sum(value for p in pids[1:] if (value := read(p)) is not None)
        return CpuReading(total, before, time.monotonic_ns(), len(pids), how)
    return None

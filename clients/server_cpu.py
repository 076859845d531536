"""A local server's CPU time over a load window, from its process CPU clocks read at the
window's edges (common.cputime): the load generators' `--server-pid`.

The readings come late: the load's own processes keep the client CPUs busy, and a
waking thread may wait milliseconds for its turn (or, with locust, for a log line to
cross a pipe). So the server's CPU is read a second time PACE_S into the window, and the
first reading is carried back to the window's start at that span's rate: the server is as
busy just after the window opens as a moment later. After the end the load stops, so the
last reading's lateness adds only the replies still in flight. docs/loadgen.md.
"""

from __future__ import annotations

import threading
import time

from clients.result import ServerCpu
from common.cputime import CpuReading, tree_cpu

PACE_S = 0.1  # into the window: the second reading


def server_cpu(
    pid: int,
    readings: tuple[CpuReading | None, CpuReading | None, CpuReading | None],
    start_ns: int,
    end_ns: int,
) -> ServerCpu | None:
    """The server's CPU over [start_ns, end_ns] (CLOCK_MONOTONIC) from its readings at the
    start, PACE_S in and at the end; None where one is missing (the server was gone)."""
    first, pace, last = readings
    if first is None or pace is None or last is None:
        return None
    at_start = first.cpu_ns
    if (span := _mid(pace) - _mid(first)) > 0:
        rate = (pace.cpu_ns - first.cpu_ns) / span
        at_start -= round(rate * max(0.0, _mid(first) - start_ns))
    return ServerCpu(
        pid=pid,
        cpu_ns=last.cpu_ns - at_start,
        processes=last.processes,
        how=last.how,
        late_start_us=round((_mid(first) - start_ns) / 1e3, 1),
        late_end_us=round((_mid(last) - end_ns) / 1e3, 1),
    )


def _mid(reading: CpuReading) -> float:
    """The instant (CLOCK_MONOTONIC ns) a reading stands for: the middle of its read."""
    return (reading.before_ns + reading.after_ns) / 2


class EdgeReadings:
    """For a driver that learns of the window's edges as they pass (locust's log lines):
    `edge()` at each, in order; the first also schedules the reading PACE_S later.
    `result(start_unix, end_unix)` once the window's wall-clock edges are known."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.readings: list[CpuReading | None] = []
        self._pace: threading.Timer | None = None
        self._lock = threading.Lock()
        self._offset_ns = time.time_ns() - time.monotonic_ns()  # unix = monotonic + this

    def edge(self) -> None:
        reading = tree_cpu(self.pid)
        with self._lock:
            first = not self.readings
            self.readings.append(reading)
        if first:
            self._pace = threading.Timer(PACE_S, self._paced)
            self._pace.daemon = True
            self._pace.start()

    def _paced(self) -> None:
        reading = tree_cpu(self.pid)
        with self._lock:
            if len(self.readings) == 1:  # else the window ended first: no carrying back
                self.readings.append(reading)

    def result(self, start_unix: float, end_unix: float) -> ServerCpu | None:
        if self._pace is not None:
            self._pace.join()
        if len(self.readings) != 3:  # the end came before the paced reading, or no end
            return None
        first, pace, last = self.readings
        start, end = (int(t * 1e9) - self._offset_ns for t in (start_unix, end_unix))
        return server_cpu(self.pid, (first, pace, last), start, end)

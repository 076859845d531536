"""Samples the server (its process and any children) and its CPUs while a cell runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from common import cpustat
from common.process import block_stop_signals

INTERVAL = 0.25  # listing 10k fds in /proc costs milliseconds: don't sample too often


def interpolate(samples: Sequence[tuple[float, ...]], t: float) -> tuple[float, ...]:
    """The values at unix time t, linearly between the (time, *values) samples around it."""
    if t <= samples[0][0]:
        return samples[0][1:]
    for before, after in zip(samples, samples[1:], strict=False):
        if before[0] <= t <= after[0]:
            f = (t - before[0]) / (after[0] - before[0]) if after[0] > before[0] else 0.0
            return tuple(a + f * (b - a) for a, b in zip(before[1:], after[1:], strict=True))
    return samples[-1][1:]


class _Periodic:
    """Takes one sample at once, then one every `interval` seconds on a daemon thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _begin(self) -> None:
        self._sample()
        self._thread.start()

    def _halt(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        block_stop_signals()  # Ctrl-C and SIGTERM are the main thread's to handle
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        raise NotImplementedError


class ServerSampler(_Periodic):
    """A background thread recording the server's peaks and CPU time over a run,
    summed over the server process and its children.

    CPU seconds are taken between `start()` and `stop()`; `cpu_between()` interpolates
    the CPU time at wall-clock instants so the runner can cut out the window the load
    generator measured.
    """

    def __init__(self, pid: int | None) -> None:
        """pid None: a server whose process is unknown (bench.run.external); no figures."""
        super().__init__(INTERVAL)
        self.process = None if pid is None else psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []  # (unix time, user s, sys s)
        self.peak_rss = self.peak_threads = self.peak_fds = 0
        self._ctx_first: tuple[int, int] | None = None
        self._ctx_last: tuple[int, int] | None = None

    def start(self) -> ServerSampler:
        self._begin()
        return self

    def stop(self) -> dict[str, Any]:
        self._halt()
        self._sample()
        return self.summary()

    def _sample(self) -> None:
        """One reading of the server summed over its processes: a forking server
        (prefork) serves from children, whose CPU and memory are the server's too."""
        now = time.time()
        if self.process is None:
            return
        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return  # the server exited: the runner notices and says so
        user = system = 0.0
        rss = threads = fds = voluntary = involuntary = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    user, system = user + cpu.user, system + cpu.system
                    if proc is self.process:
                        # children that already exited and were reaped
                        user, system = user + cpu.children_user, system + cpu.children_system
                        rss += proc.memory_info().rss
                    else:  # pages shared with the parent since fork count once
                        rss += proc.memory_full_info().uss
                    threads += proc.num_threads()
                    fds += proc.num_fds()
                    ctx = proc.num_ctx_switches()
                    voluntary += ctx.voluntary
                    involuntary += ctx.involuntary
            except psutil.Error:
                if proc is self.process:
                    return
                # a child that exited between the listing and the reading: skipped once
        self.samples.append((now, user, system))
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_threads = max(self.peak_threads, threads)
        self.peak_fds = max(self.peak_fds, fds)
        self._ctx_last = (voluntary, involuntary)
        if self._ctx_first is None:
            self._ctx_first = self._ctx_last

    def cpu_between(self, start: float, end: float) -> tuple[float, float] | None:
        """(user, sys) CPU seconds spent between two unix times, interpolated."""
        if len(self.samples) < 2 or end <= start:
            return None
        at_start, at_end = self._at(start), self._at(end)
        return at_end[0] - at_start[0], at_end[1] - at_start[1]

    def _at(self, t: float) -> tuple[float, ...]:
        return interpolate(self.samples, t)

    def summary(self) -> dict[str, Any]:
        if self.process is None:
            return {}
        first, last = (self.samples[0], self.samples[-1]) if self.samples else ((0, 0, 0),) * 2
        ctx = {}
        if self._ctx_first and self._ctx_last:
            ctx = {
                "ctx_voluntary": self._ctx_last[0] - self._ctx_first[0],
                "ctx_involuntary": self._ctx_last[1] - self._ctx_first[1],
            }
        return {
            "cpu_user_s": round(last[1] - first[1], 4),
            "cpu_sys_s": round(last[2] - first[2], 4),
            "peak_rss_bytes": self.peak_rss,
            "peak_threads": self.peak_threads,
            "peak_fds": self.peak_fds,
            **ctx,
        }


class CoreSampler(_Periodic):
    """How busy some CPUs are, from /proc/stat: idle against everything else.

    A server process's own CPU time leaves out the softirq time the kernel spends on
    its CPU (about a quarter of it for loopback traffic), so "is the server's core
    saturated" is read from the core, not the process.
    """

    def __init__(self, cpus: list[int], interval: float = 0.1) -> None:
        super().__init__(interval)
        self.cpus = list(cpus)
        self.samples: list[tuple[float, float, float]] = []  # (unix time, busy, total) ticks

    def start(self) -> CoreSampler:
        self._begin()
        return self

    def stop(self) -> None:
        self._halt()
        self._sample()  # one reading after the window, whenever the last tick was

    def _sample(self) -> None:
        busy, total = cpustat.ticks(self.cpus)
        self.samples.append((time.time(), busy, total))

    def busy_percent(self, start: float, end: float) -> float | None:
        """Share of the CPUs' time between two unix times that was not idle."""
        if len(self.samples) < 2 or end <= start:
            return None
        busy0, total0 = interpolate(self.samples, start)
        busy1, total1 = interpolate(self.samples, end)
        if total1 <= total0:
            return None
        # Interpolating busy and total apart can round a full core to 100.00000000003.
        return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))

    def busy_seconds(self, start: float, end: float) -> float | None:
        """CPU seconds the CPUs were busy between two unix times, all of them together."""
        busy = self.busy_percent(start, end)
        return None if busy is None else busy / 100 * len(self.cpus) * (end - start)

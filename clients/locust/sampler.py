"""The /proc sampler of a locust run: its processes' CPU time and run-queue delay, and
its cores' busy time, so that `clients.locust.result` can judge whether locust was the
bottleneck over the measured window.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import psutil

from clients.locust.result import SAMPLE_INTERVAL_S, delta, worker_usage
from clients.result import Window, Worker
from common import cpustat
from common.process import block_stop_signals


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


class Sampler(threading.Thread):
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
        busy, total = delta(self.busy, window), delta(self.total, window)
        if busy is None or total is None or total <= 0:
            return None
        # Interpolating busy and total apart can round a full core to 100.00000000003.
        return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)

    def workers(self, window: Window, forked: bool) -> list[Worker]:
        """The load-generating processes: locust itself, or the workers it forked (its
        master only coordinates)."""
        pids = sorted(p for p in self.cpu if p != self.root_pid) if forked else [self.root_pid]
        return [worker_usage(self.cpu.get(pid, []), self.delay.get(pid), window) for pid in pids]

"""Samples the server process with psutil while a cell runs."""

from __future__ import annotations

import threading
import time

import psutil

INTERVAL = 0.25  # listing 10k fds in /proc costs milliseconds: don't sample too often


class ServerSampler:
    """A background thread recording the server's peaks and CPU time over a run.

    CPU seconds are taken between `start()` and `stop()`; `cpu_at(t)` interpolates
    the CPU time at a wall-clock instant so the runner can cut out the window the
    load generator measured.
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []  # (unix time, user s, sys s)
        self.peak_rss = self.peak_threads = self.peak_fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ctx_first = self._ctx_last = None

    def start(self) -> ServerSampler:
        self._sample()
        self._ctx_first = self._ctx_last
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.summary()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            self._sample()

    def _sample(self) -> None:
        try:
            with self.process.oneshot():
                cpu = self.process.cpu_times()
                self.samples.append((time.time(), cpu.user, cpu.system))
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                self.peak_threads = max(self.peak_threads, self.process.num_threads())
                self.peak_fds = max(self.peak_fds, self.process.num_fds())
                self._ctx_last = self.process.num_ctx_switches()
        except psutil.Error:
            pass  # the server exited: the runner notices and says so

    def cpu_between(self, start: float, end: float) -> tuple[float, float] | None:
        """(user, sys) CPU seconds spent between two unix times, interpolated."""
        if len(self.samples) < 2 or end <= start:
            return None
        at_start, at_end = self._at(start), self._at(end)
        return at_end[0] - at_start[0], at_end[1] - at_start[1]

    def _at(self, t: float) -> tuple[float, float]:
        samples = self.samples
        if t <= samples[0][0]:
            return samples[0][1:]
        for (t0, u0, s0), (t1, u1, s1) in zip(samples, samples[1:], strict=False):
            if t0 <= t <= t1:
                f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                return u0 + f * (u1 - u0), s0 + f * (s1 - s0)
        return samples[-1][1:]

    def summary(self) -> dict:
        first, last = (self.samples[0], self.samples[-1]) if self.samples else ((0, 0, 0),) * 2
        ctx = {}
        if self._ctx_first and self._ctx_last:
            ctx = {"ctx_voluntary": self._ctx_last.voluntary - self._ctx_first.voluntary,
                   "ctx_involuntary": self._ctx_last.involuntary - self._ctx_first.involuntary}
        return {"cpu_user_s": round(last[1] - first[1], 4),
                "cpu_sys_s": round(last[2] - first[2], 4),
                "peak_rss_bytes": self.peak_rss, "peak_threads": self.peak_threads,
                "peak_fds": self.peak_fds, **ctx}

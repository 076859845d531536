"""A phase of `bench explain`: its figures from the load and the server's CPU.

The clean phase (no perf attached) reads the server's CPU clocks at its edges, in
nanoseconds (common.cputime), as the load generator does for a bench cell; the phases
under perf keep the sampler's ticks interpolated to their edges (perf's own start and
stop fall between the readings and the span the replies are counted over). Each phase
says which (`cpu_source`). The total is exact; its split into user and system time is the
sampler's proportion, since a process CPU clock keeps no split.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.record import CPU_AT_EDGES, CPU_SAMPLED
from bench.run.sampler import CoreSampler, ServerSampler
from clients.result import LoadResult
from common.cputime import CpuReading


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    requests: float  # replies in the phase
    user_us: float  # per request, process view
    sys_us: float
    core_us: float | None  # per request, core view
    cpu_source: str = CPU_SAMPLED  # how user_us + sys_us was measured (bench.record)

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.sys_us


def phase_figures(
    name: str,
    span: tuple[float, float],
    load: LoadResult,
    sampler: ServerSampler,
    cores: CoreSampler,
    edges: tuple[CpuReading, CpuReading] | None = None,
) -> Phase:
    """The phase over `span` (unix times): its replies, and its CPU per request from the
    readings at its `edges` where it has them, else from the sampler."""
    start, end = span
    requests = replies_between(load, start, end)
    cpu = sampler.cpu_between(start, end)
    busy = cores.busy_seconds(start, end)
    if not requests or cpu is None:
        return Phase(name, end - start, 0.0, 0.0, 0.0, None)
    core = None if busy is None else busy * 1e6 / requests
    user_s, sys_s, source = cpu[0], cpu[1], CPU_SAMPLED
    if edges is not None and (total := (edges[1].cpu_ns - edges[0].cpu_ns) / 1e9) > 0:
        share = user_s / (user_s + sys_s) if user_s + sys_s > 0 else 1.0
        user_s, sys_s, source = total * share, total * (1 - share), CPU_AT_EDGES
    return Phase(
        name, end - start, requests, user_s * 1e6 / requests, sys_s * 1e6 / requests, core, source
    )


def replies_between(load: LoadResult, start: float, end: float) -> float:
    """Replies in [start, end] (unix times) from the load's interval counts, a slice
    counted in proportion to its overlap; 0 if the span leaves the window."""
    if load.window is None or not load.intervals:
        return 0.0
    if start < load.window.start_unix or end > load.window.end_unix:
        return 0.0
    total = 0.0
    for interval in load.intervals:
        a = load.window.start_unix + interval.start_s
        b = a + load.interval_s
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            total += interval.count * overlap / load.interval_s
    return total

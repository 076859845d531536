"""CPU time of whole CPUs from /proc/stat: how busy a core was, whoever kept it busy.

A process's own CPU time leaves out the irq and softirq time the kernel spends on its
CPU (about a quarter of a core for loopback traffic) and any steal; the core's counters
include them. Busy is everything but idle and iowait.
"""

from __future__ import annotations

from collections.abc import Iterable


def ticks(cpus: Iterable[int] | None = None) -> tuple[int, int]:
    """(busy, total) clock ticks since boot, summed over `cpus` (None: every CPU)."""
    names = None if cpus is None else {f"cpu{c}" for c in cpus}
    busy = total = 0
    with open("/proc/stat") as stat:
        for line in stat:
            fields = line.split()
            if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
                continue
            if names is not None and fields[0] not in names:
                continue
            values = [int(v) for v in fields[1:9]]  # user .. steal; guest is in user
            total += sum(values)
            busy += sum(values) - values[3] - values[4]  # minus idle and iowait
    return busy, total


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Share of the CPUs' time between two `ticks()` readings that was busy, %."""
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * busy / total))

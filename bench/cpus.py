"""The CPU plan: server and load generator on disjoint CPU sets."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


class CpuPlanError(ValueError):
    pass


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'0,2-3' -> (0, 2, 3), as taskset and /sys/devices/system/cpu spell it."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise CpuPlanError(f"bad CPU list {text!r}; expected e.g. 0 or 1-3 or 0,2") from None
    if not cpus or min(cpus) < 0:
        raise CpuPlanError(f"bad CPU list {text!r}")
    return tuple(sorted(cpus))


def format_cpu_list(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


@dataclass(frozen=True)
class CpuPlan:
    server: tuple[int, ...]
    client: tuple[int, ...]
    available: tuple[int, ...]
    note: str = ""

    @property
    def shared(self) -> bool:
        return bool(set(self.server) & set(self.client))

    def to_dict(self) -> dict:
        return {**asdict(self), "shared": self.shared}


def plan_cpus(server: tuple[int, ...] | None = None,
              client: tuple[int, ...] | None = None) -> CpuPlan:
    """Default: the server on the first usable CPU, the load generator on the rest.

    One CPU for the server keeps single-threaded and multi-threaded models on equal
    terms; everything else goes to the client so that it is not the bottleneck.
    """
    available = tuple(sorted(os.sched_getaffinity(0)))
    for name, cpus in (("server", server), ("client", client)):
        if cpus and not set(cpus) <= set(available):
            raise CpuPlanError(f"--{name}-cpus {format_cpu_list(cpus)} not among the usable "
                               f"CPUs {format_cpu_list(available)}")
    if len(available) == 1:
        return CpuPlan(available, available, available,
                       "one CPU: server and load generator share it; figures are indicative")
    server = server or (available[0],)
    client = client or tuple(c for c in available if c not in server) or available
    plan = CpuPlan(server, client, available)
    if plan.shared:
        return CpuPlan(server, client, available, "server and client CPU sets overlap")
    return plan

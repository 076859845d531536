"""The CPU plan: server and load generator on disjoint CPU sets."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from common.cpus import format_cpu_list


class CpuPlanError(ValueError):
    pass


@dataclass(frozen=True)
class CpuPlan:
    server: tuple[int, ...]
    client: tuple[int, ...]
    available: tuple[int, ...]
    note: str = ""

    @property
    def shared(self) -> bool:
        return bool(set(self.server) & set(self.client))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shared": self.shared}


def plan_cpus(
    server: tuple[int, ...] | None = None, client: tuple[int, ...] | None = None
) -> CpuPlan:
    """Default: the server on the first usable CPU, the load generator on the rest.

    One CPU for the server keeps single-threaded and multi-threaded models on equal
    terms; everything else goes to the client so that it is not the bottleneck.
    """
    available = tuple(sorted(os.sched_getaffinity(0)))
    for name, cpus in (("server", server), ("client", client)):
        if cpus and not set(cpus) <= set(available):
            raise CpuPlanError(
                f"--{name}-cpus {format_cpu_list(cpus)} not among the usable "
                f"CPUs {format_cpu_list(available)}"
            )
    if len(available) == 1:
        return CpuPlan(
            available,
            available,
            available,
            "one CPU: server and load generator share it; figures are indicative",
        )
    server = server or (available[0],)
    client = client or tuple(c for c in available if c not in server) or available
    plan = CpuPlan(server, client, available)
    if plan.shared:
        return CpuPlan(server, client, available, "server and client CPU sets overlap")
    return plan

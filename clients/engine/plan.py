"""What the load generator's parent asks of one worker process (sent over fork)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    family: int
    address: tuple[Any, ...]  # a sockaddr of `family`
    protocol: str
    payload: int
    mode: str  # "persistent" or "per-request"
    connections: int  # this worker's share
    first: int  # global number of this worker's first connection
    total: int  # connections over all workers
    rate: float | None  # the asked rate over all workers, requests/s; None: closed loop
    timeout: float
    cpus: tuple[int, ...] | None
    parent_pid: int
    # per-request mode: source addresses to rotate over (docs/loadgen.md)
    sources: tuple[str, ...] = ()
    # closed loop: busy-poll this long before sleeping in epoll (0: never); only for a
    # worker with a CPU of its own (see clients.engine.loops)
    spin_us: int = 0
    # open loop: "uniform" or "poisson" arrivals per connection (clients.engine.pipelined)
    arrivals: str = "uniform"
    # http: how replies are checked (clients.engine.connections): "exact" bytes, "parse" every
    # reply, or "auto" (exact bytes, parsed where they differ); echo is always exact
    verify: str = "auto"
    expect_status: int = 200
    expect_body: bytes | None = None  # None: sockbench's body for the request

"""One load-generator worker process and the result it sends back.

The parent (clients.loadgen) drives each worker over a pipe:

1. the worker connects its connections, at most CONNECT_WINDOW in flight at once so
   the server's accept queue is fed gradually; each connect is timed into its own
   histogram; a refused connect or one past the timeout is counted and dropped;
2. it reports ("connected", n) and waits for ("start", t0, window_start, end): absolute
   CLOCK_MONOTONIC times, one clock for every process on the machine, so the warm-up
   and the measurement window start at the same instant in every worker;
3. it runs until `end` (clients.loops), then closes everything (requests still
   outstanding are not counted) and sends ("result", WorkerResult) back, or
   ("error", traceback) if it failed.
"""

from __future__ import annotations

import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe

from clients import hist
from clients.connections import SECOND_NS
from clients.loops import Loops
from clients.plan import WorkerPlan
from common.process import STOP_SIGNALS, die_with_parent, raise_fd_limit


@dataclass(frozen=True)
class WorkerResult:
    """One worker's share of a run; the parent merges them (clients.loadgen)."""

    requests: int  # replies completed and verified in the window
    bytes: int  # reply bytes of those
    latency: str  # HdrHistogram of their latencies, us, `hist.encode`d
    connect: str  # HdrHistogram of connect latencies, us
    errors: dict[str, int]  # by kind (clients.errors), from the first connect on
    per_conn: list[int]  # replies in the window, per connection slot
    established: int  # slots that connected at least once
    starved: int  # established slots with no reply in the window
    timeline: list[int]  # replies per second of the window
    cpu_s: float  # CPU time in the window, busy-polling left out


def worker_main(plan: WorkerPlan, pipe: Pipe) -> None:
    """Process entry point (multiprocessing target)."""
    die_with_parent(plan.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just die
    # the parent blocked both across the fork (clients.loadgen._drive)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        if plan.cpus:
            os.sched_setaffinity(0, plan.cpus)
        raise_fd_limit()
        loops = Loops(plan)
        try:
            loops.connect_all()
            pipe.send(("connected", loops.established))
            message = pipe.recv()
            if message[0] != "start":
                return
            loops.run(*message[1:])
            pipe.send(("result", result_of(loops)))
        finally:
            loops.close()
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone: nobody to report to
    except BaseException:
        pipe.send(("error", traceback.format_exc()))


def result_of(loops: Loops) -> WorkerResult:
    if loops.plan.mode == "persistent":
        per_conn = [loops.counts[fd] if fd >= 0 else 0 for fd in loops.slot_fd]
    else:
        per_conn = list(loops.slot_count)
    starved = sum(1 for ok, n in zip(loops.slot_ok, per_conn, strict=True) if ok and not n)
    requests = len(loops.lat)
    return WorkerResult(
        requests=requests,
        bytes=requests * loops.explen,
        latency=hist.encode(hist.from_values(loops.lat, 1000)),
        connect=hist.encode(hist.from_values(loops.connect_lat, 1000)),
        errors=dict(loops.errors),
        per_conn=per_conn,
        established=loops.established,
        starved=starved,
        timeline=loops.timeline,
        # busy-waiting is not work: it would pass for saturation
        cpu_s=max(0.0, loops.cpu1 - loops.cpu0 - loops.spin_ns / SECOND_NS),
    )

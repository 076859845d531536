"""One load-generator worker process and the result it sends back.

The parent (clients.engine.drive) drives each worker over a pipe:

1. the worker connects its connections, at most CONNECT_WINDOW in flight at once so
   the server's accept queue is fed gradually; each connect is timed into its own
   histogram; a refused connect or one past the timeout is counted and dropped;
2. it reports ("connected", n) and waits for ("start", t0, window_start, end): absolute
   CLOCK_MONOTONIC times, one clock for every process on the machine, so the warm-up
   and the measurement window start at the same instant in every worker;
3. it runs until `end` (clients.engine.loops), counts what was still unanswered then as
   censored waits, closes everything and sends ("result", WorkerResult) back, or
   ("error", traceback) if it failed.
"""

from __future__ import annotations

import builtins
import os
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe

from clients.engine import hist
from clients.engine.connections import SECOND_NS
from clients.engine.loops import Loops
from clients.engine.pipelined import PipelinedLoops
from clients.engine.plan import WorkerPlan
from common.process import STOP_SIGNALS, die_with_parent, raise_fd_limit


@dataclass(frozen=True)
class WorkerResult:
    """One worker's share of a run; the parent merges them (clients.engine.merge).

    Histograms are `hist.encode`d HdrHistograms of nanoseconds, as the loops time them.
    Everything counts the window only, except `errors_before` (the connect phase and the
    warm-up).
    """

    requests: int  # replies completed and verified in the window
    bytes: int  # reply bytes of those
    latency: str  # their latencies, from the (intended) send
    censored: str  # waits so far of the requests unanswered at the window's end
    latency_sent: str  # open loop: replies' latencies from the actual send; else ""
    send_lag: str  # open loop: actual minus intended send of the window's sends; else ""
    intervals: list[str]  # latency histogram per INTERVAL_NS slice of the window
    backlog: list[int]  # pipelined open loop: requests in flight or queued, per slice end
    connect: str  # connect latencies (all phases)
    errors: dict[str, int]  # by kind (clients.errors), in the window
    errors_before: dict[str, int]  # by kind, before the window
    per_conn: list[int]  # replies in the window, per connection slot
    worst_wait_us: list[float]  # per established slot, capped at the window, to 0.1 us
    established: int  # slots that connected at least once
    starved: int  # established slots with no reply in the window
    sent: int | None  # scheduled modes: requests sent in the window; None: closed loop
    window_s: float
    cpu_s: float  # process CPU time in the window, busy-polling included
    wait_s: float  # waiting for work in the window (blocked in epoll, busy-polling)
    run_delay_s: float | None  # waiting for a CPU in the window (schedstat); None: unknown
    # the start of the first reply that was no reply of the protocol (any phase), for
    # the diagnosis (clients.diagnosis); None: there was none
    protocol_sample: builtins.bytes | None = None  # (`bytes` is a field here)


def worker_main(plan: WorkerPlan, pipe: Pipe) -> None:
    """Process entry point (multiprocessing target)."""
    die_with_parent(plan.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just die
    # the parent blocked both across the fork (clients.engine.drive)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        if plan.cpus:
            os.sched_setaffinity(0, plan.cpus)
        raise_fd_limit()
        loops = PipelinedLoops(plan) if plan.rate and plan.mode == "persistent" else Loops(plan)
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
    censored = loops.censored()
    loops.finish()
    per_conn = list(loops.slot_count)
    starved = sum(1 for ok, n in zip(loops.slot_ok, per_conn, strict=True) if ok and not n)
    requests = len(loops.lat)
    slices, answered = hist.sliced(loops.lat, loops.slices)
    run_delay = None
    if loops.sched0 and loops.sched1:
        run_delay = (loops.sched1[1] - loops.sched0[1]) / SECOND_NS
    before, after = loops.errors_before, loops.errors
    scheduled = bool(loops.plan.rate) or loops.plan.mode == "per-request"

    def encoded(values: Sequence[int]) -> str:
        return hist.encode(hist.from_values(values))

    return WorkerResult(
        requests=requests,
        bytes=loops.reply_bytes,  # settled by finish()
        latency=hist.encode(answered),
        censored=encoded(censored),
        latency_sent=encoded(loops.lat_sent) if loops.plan.rate else "",
        send_lag=encoded(loops.lag) if loops.plan.rate else "",
        intervals=[hist.encode(h) for h in slices],
        backlog=list(loops.backlog),
        connect=encoded(loops.connect_lat),
        errors={kind: after[kind] - before[kind] for kind in after},
        errors_before=dict(before),
        per_conn=per_conn,
        worst_wait_us=[hist.to_us(w) for w in loops.worst_waits()],
        established=loops.established,
        starved=starved,
        sent=loops.sent if scheduled else None,
        window_s=(loops.end - loops.window_start) / SECOND_NS,
        cpu_s=loops.cpu1 - loops.cpu0,
        wait_s=loops.wait_ns / SECOND_NS,
        run_delay_s=run_delay,
        protocol_sample=loops.sample,
    )

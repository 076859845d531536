"""Was the load generator the bottleneck? One rule for both drivers (docs/loadgen.md).

A worker that waited for work (blocked in epoll, busy-polling with nothing to do, or,
for locust, neither on a CPU nor waiting for one) less than IDLE_PERCENT of the window
set the pace; one that waited for a CPU (run-queue delay) more than CONTENDED_PERCENT
of it did not get its CPU. Either makes the cell client-bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from clients.result import Worker

IDLE_PERCENT = 10.0
CONTENDED_PERCENT = 10.0
# An open loop has a schedule: it is judged by keeping it, not by idleness (a loop that
# polls for the next arrival is busy and on time). It was the limit when it sent less
# than SENT_SHARE of the asked rate or its typical send ran late by more than LATE_US
# (the median lag: a p99 of a few hundred sends is one hiccup of the VM, not a trend).
SENT_SHARE = 0.95
LATE_US = 1000


def reasons(workers: Sequence[Worker], *, idle_rule: bool = True) -> list[str]:
    """Why the client was bound, one sentence per cause and worker; empty: it was not.
    Without `idle_rule` (an open loop) only contention counts here (see `late`)."""
    out = []
    for index, worker in enumerate(workers):
        waited = worker.waited_for_work
        if idle_rule and waited is not None and waited < IDLE_PERCENT:
            out.append(
                f"worker {index} waited for work {waited:.0f}% of the window "
                "(the load generator was the bottleneck)"
            )
        if worker.waited_for_cpu is not None and worker.waited_for_cpu > CONTENDED_PERCENT:
            out.append(
                f"worker {index} waited for a CPU {worker.waited_for_cpu:.0f}% of the window "
                "(contended: something else ran on its CPU)"
            )
    return out


def late(asked: float, sent: float, lag_p50_us: float) -> list[str]:
    """Why an open loop did not offer its load: it sent too little, or too late."""
    out = []
    if sent < SENT_SHARE * asked:
        out.append(
            f"the load generator sent {sent:,.0f} of the {asked:,.0f} req/s asked "
            "(it could not offer the load)"
        )
    if lag_p50_us > LATE_US:
        out.append(f"its sends ran late: median send lag {lag_p50_us:,} us")
    return out

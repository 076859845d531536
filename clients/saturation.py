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


def reasons(workers: Sequence[Worker]) -> list[str]:
    """Why the client was bound, one sentence per cause and worker; empty: it was not."""
    out = []
    for index, worker in enumerate(workers):
        if worker.waited_for_work is not None and worker.waited_for_work < IDLE_PERCENT:
            out.append(
                f"worker {index} waited for work {worker.waited_for_work:.0f}% of the window "
                "(the load generator was the bottleneck)"
            )
        if worker.waited_for_cpu is not None and worker.waited_for_cpu > CONTENDED_PERCENT:
            out.append(
                f"worker {index} waited for a CPU {worker.waited_for_cpu:.0f}% of the window "
                "(contended: something else ran on its CPU)"
            )
    return out

"""Can a cell's figures be believed? The checks behind a row's `valid` or `suspect`.

Each check is a pure function of the load result (and of how busy the machine was
before the cell), so it is tested on numbers, not on runs. The thresholds and why they
are where they are: docs/verdicts.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from bench.record import Reason
from clients.result import Interval, LoadResult

CODES = (
    "client-bound",
    "rate",
    "overloaded",
    "non-stationary",
    "busy-machine",
    "few-samples",
    "restarted",
)
RATE_SHARE = 0.95  # an open loop must achieve this share of the asked rate
BUSY_BEFORE = 10.0  # % of the machine's CPU time busy in the half second before the cell
# A stationary window: the throughputs of its first and last thirds within DRIFT of the
# larger (healthy cells on the 2-core VM differ by up to 25%: docs/verdicts.md), and the
# typical p99 of no third more than P99_SPREAD times another's (and P99_FLOOR_US more,
# so that 20 us against 70 us is not called a trend).
DRIFT = 0.35
P99_SPREAD = 3.0
P99_FLOOR_US = 1000
MIN_INTERVALS = 6  # fewer interval histograms than this: no stationarity check
# The most extreme percentile shown (p99.9) needs 10 samples beyond it.
SAMPLES_FOR = (("p99.9", 10_000), ("p99", 1_000))


def judge(load: LoadResult, busy_before: float | None, restarts: int = 0) -> tuple[Reason, ...]:
    """Every reason to doubt the cell, in CODES order; empty: valid. `restarts`: the
    server's worker processes that died and were replaced during the cell."""
    reasons = [Reason("client-bound", text) for text in load.client.reasons]
    asked, achieved = load.rate.asked, load.rate.achieved
    if asked and achieved < RATE_SHARE * asked:
        reasons.append(
            Reason(
                "rate",
                f"achieved {achieved:,.0f} req/s of the {asked:,.0f} asked "
                f"({100 * achieved / asked:.0f}%, below {100 * RATE_SHARE:.0f}%)",
            )
        )
    if load.rate.overloaded:
        backlog = [i.backlog for i in load.intervals if i.backlog is not None]
        reasons.append(
            Reason(
                "overloaded",
                f"the backlog grew from {backlog[0]:,} to {backlog[-1]:,} requests "
                "through the window: the offered load is above what the server sustains",
            )
        )
    if (drift := non_stationary(load.intervals)) is not None:
        reasons.append(Reason("non-stationary", drift))
    if busy_before is not None and busy_before > BUSY_BEFORE:
        reasons.append(
            Reason(
                "busy-machine",
                f"the machine was {busy_before:.0f}% busy in the half second before the "
                f"cell (above {BUSY_BEFORE:.0f}%)",
            )
        )
    count = (load.latency_all or load.latency).count
    for name, needed in SAMPLES_FOR:
        if count < needed:
            reasons.append(
                Reason(
                    "few-samples",
                    f"{name} from {count:,} requests (needs {needed:,} for 10 beyond it)",
                )
            )
            break
    if restarts:
        were = "processes died and were" if restarts > 1 else "process died and was"
        reasons.append(
            Reason("restarted", f"{restarts} server worker {were} replaced during the cell")
        )
    return tuple(reasons)


def non_stationary(intervals: Sequence[Interval]) -> str | None:
    """Why the window was not steady (throughput or p99 moved between its thirds)."""
    if len(intervals) < MIN_INTERVALS:
        return None
    third = len(intervals) // 3
    first, last = intervals[:third], intervals[-third:]
    counts = [sum(i.count for i in part) for part in (first, last)]
    if abs(counts[1] - counts[0]) > DRIFT * max(counts):
        seconds = third * (intervals[1].start_s - intervals[0].start_s)
        return (
            f"throughput went from {counts[0] / seconds:,.0f} to {counts[1] / seconds:,.0f} "
            "req/s between the first and the last third of the window"
        )
    parts = [intervals[:third], intervals[third:-third], intervals[-third:]]
    typical = [
        statistics.median(i.p99_us for i in part if i.count)
        for part in parts
        if any(i.count for i in part)
    ]
    if len(typical) >= 2:
        low, high = min(typical), max(typical)
        if high > P99_SPREAD * max(low, 1) and high - low > P99_FLOOR_US:
            return f"p99 ranged from {low:,.0f} to {high:,.0f} us between thirds of the window"
    return None


def verdict(reasons: Sequence[Reason]) -> str:
    return "suspect" if reasons else "valid"

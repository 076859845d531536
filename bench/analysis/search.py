"""The search for a capacity at a latency target: bracket, bisect, re-test (pure logic).

The `slo` profile asks, per cell and target, for the highest open-loop rate that meets
the target (bench.analysis.curves: the percentile, all requests, at or under the limit; 95% of
the rate achieved; the backlog not growing). One step is one open-loop cell; its result
is a pass, a fail, or "cannot tell" (the load generator could not offer the rate).

1. Bracket: start at a share of the closed-loop capacity, double after a pass and
   halve after a fail until a passing rate sits below a failing one.
2. Bisect the bracket (geometric midpoint) until its ends are within PRECISION.
3. Re-test both ends once. A rate's verdict is the majority of its tests, and a tie is
   tested again, so one noisy step cannot move the bracket for good: a lower end that
   now fails, or an upper end that now passes, reopens the search from there. A rate
   the load generator could not offer is tried once more before it caps the search.

The result is the lower end: the highest rate that passed (by majority) below the
lowest that failed. It is "at least" when the ceiling or the load generator ended the
search first, None when even the floor failed. A budget of steps bounds the search;
when it runs out first, the result says so and keeps its bracket.

State is the list of outcomes so far: replaying the same outcomes gives the same next
rate, so an interrupted search resumes from its stored rows (bench.run.slo), and the
report recomputes each result from them (bench.report.slo_section): `replay` and the
helpers that read a step's row (its target, its number, its outcome) are here for both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.analysis.curves import Step, Target
from bench.record import Row

START_SHARE = 0.5  # of the closed-loop capacity: the first rate tried
FLOOR_SHARE = 1 / 64  # below this share of it, the search gives up: "below the floor"
CEILING_SHARE = 16.0  # pipelining lets an open loop pass the closed loop (docs/curves.md)
PRECISION = 0.05  # the bracket's ends within 5% of each other
MAX_STEPS = 14  # the default budget per search: 9 or so for an edge near the start


@dataclass(frozen=True)
class Outcome:
    """One step: the asked rate and whether it met the target (None: cannot tell)."""

    rate: float
    passed: bool | None


@dataclass(frozen=True)
class Found:
    rps: float | None  # the highest rate that passed; None: even the floor failed
    at_least: bool  # the true capacity may be higher (the ceiling or the client ended it)
    low: float | None  # the final bracket
    high: float | None
    steps: int
    why: str  # what ended the search, in words


@dataclass(frozen=True)
class Plan:
    """The search's parameters, from the closed-loop capacity of the cell."""

    start: float
    floor: float
    ceiling: float
    precision: float = PRECISION
    max_steps: int = MAX_STEPS

    @classmethod
    def around(cls, capacity_rps: float, max_steps: int = MAX_STEPS) -> Plan:
        return cls(
            start=capacity_rps * START_SHARE,
            floor=capacity_rps * FLOOR_SHARE,
            ceiling=capacity_rps * CEILING_SHARE,
            max_steps=max_steps,
        )


def _round(rate: float) -> float:
    """Rates to 3 significant figures: a re-test asks exactly the same rate again."""
    if rate <= 0:
        return rate
    digits = 2 - int(math.floor(math.log10(rate)))
    return round(rate, digits)


def _verdicts(outcomes: Sequence[Outcome]) -> dict[float, bool | None]:
    """Per rate: True or False by majority of its judged tests; None on a tie."""
    tally: dict[float, list[int]] = {}
    for outcome in outcomes:
        if outcome.passed is None:
            continue
        counts = tally.setdefault(outcome.rate, [0, 0])
        counts[0 if outcome.passed else 1] += 1
    return {
        rate: None if passes == fails else passes > fails for rate, (passes, fails) in tally.items()
    }


def _tests(outcomes: Sequence[Outcome], rate: float) -> int:
    return sum(1 for o in outcomes if o.rate == rate and o.passed is not None)


def _bracket(verdicts: dict[float, bool | None]) -> tuple[float | None, float | None]:
    """The lowest failing rate, and the highest passing rate below it."""
    fails = [rate for rate, ok in verdicts.items() if ok is False]
    high = min(fails) if fails else None
    passes = [r for r, ok in verdicts.items() if ok and (high is None or r < high)]
    return (max(passes) if passes else None), high


def next_step(plan: Plan, outcomes: Sequence[Outcome]) -> float | Found:
    """The next rate to test, or the result when the search is over."""
    verdicts = _verdicts(outcomes)
    low, high = _bracket(verdicts)
    steps = len(outcomes)

    def found(rps: float | None, at_least: bool, why: str) -> Found:
        return Found(rps, at_least, low, high, steps, why)

    # A rate the load generator could not offer twice caps the search: nothing at or
    # above it is tried again. Once may be a hiccup of the machine: it is tried again.
    cannot = Counter(o.rate for o in outcomes if o.passed is None)
    unreachable = min((rate for rate, n in cannot.items() if n >= 2), default=None)
    if steps >= plan.max_steps:
        return found(low, high is None, f"the budget of {plan.max_steps} steps ran out")
    again = sorted(r for r, ok in verdicts.items() if ok is None)  # a tie decides nothing
    again += sorted(r for r, n in cannot.items() if n == 1 and r not in verdicts)
    if again:
        return again[0]
    if low is None and high is None:
        if unreachable is not None:
            return found(None, True, "the load generator could not offer the first rate")
        return _round(plan.start)
    if low is None:  # every rate so far failed: go down
        assert high is not None
        if high <= plan.floor * (1 + plan.precision):
            return found(None, False, "even the floor failed")
        return _round(max(high / 2, plan.floor))
    if high is None or (unreachable is not None and unreachable < high):
        # nothing above `low` failed yet: go up, to the ceiling at most, and stay below
        # a rate the load generator could not offer
        if unreachable is not None:
            if unreachable / low <= 1 + plan.precision:
                return found(low, True, "the load generator could not offer more")
            return _round(min(low * 2, math.sqrt(low * unreachable)))
        if low >= plan.ceiling * (1 - plan.precision):
            return found(low, True, "every rate passed up to the ceiling")
        return _round(min(low * 2, plan.ceiling))
    if high / low > 1 + plan.precision:
        middle = _round(math.sqrt(low * high))
        if low < middle < high:
            return middle
    for end in (low, high):  # converged: re-test each end once
        if _tests(outcomes, end) < 2:
            return end
    return found(low, False, "the bracket converged and both ends held on a re-test")


# Replaying a search from its stored rows. A step's row has `load` "r<rate>" and
# `search` "<target>#<n>" (bench.run.slo).


def step_number(row: Row) -> int:
    return int(row.cell.search.rpartition("#")[2])


def search_target(row: Row) -> str:
    return row.cell.search.rpartition("#")[0]


def outcome(row: Row, target: Target) -> Outcome:
    """A step's row judged against the target: pass, fail, or None where the load
    generator could not offer the rate (an open loop judged client-bound). A failed
    row counts as a fail: the server did not serve that rate."""
    rate = float(row.cell.load[1:])
    if row.status == "client-bound":
        return Outcome(rate, None)
    load = row.load
    if row.status != "ok" or load is None:
        return Outcome(rate, False)
    latency = getattr(load.latency_all or load.latency, target.percentile)
    step = Step(
        asked=rate,
        achieved=load.rate.achieved,
        latency_us=float(latency),
        overloaded=load.rate.overloaded,
        client_bound=False,
    )
    return Outcome(rate, step.sound and step.latency_us <= target.limit_us)


def replay(steps: list[Row], target: Target, capacity_rps: float, budget: int) -> float | Found:
    """The next rate of a search from its stored steps, or its result."""
    plan = Plan.around(capacity_rps, max_steps=budget)
    return next_step(plan, [outcome(row, target) for row in steps])

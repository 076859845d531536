"""Load-latency curves: latency targets, and the capacity of a model at a target.

A curve is a cell's open-loop steps (CellKey.load "r<rate>" or "f<fraction>") at one
repeat. The capacity at a target (e.g. p99 <= 1 ms) is the highest offered rate whose
all-requests percentile stays at or under the target while the step is sound: at least
95% of the asked rate achieved and the backlog not growing. Between the last step that
meets the target and the first that does not, it is interpolated, latency on a log
scale. How to read it: docs/curves.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bench.analysis.verdict import RATE_SHARE  # a sound step achieved this share of its rate

PERCENTILES = {"p50": "p50", "p90": "p90", "p99": "p99", "p99.9": "p999"}  # name -> field
UNITS_US = {"us": 1, "ms": 1000, "s": 1_000_000}


@dataclass(frozen=True)
class Target:
    percentile: str  # "p99", a clients.result.Latency field name
    limit_us: float
    text: str  # as given: "p99:1ms"


def parse_target(text: str) -> Target:
    """ "p99:1ms" -> Target; ValueError with a one-line message otherwise."""
    found = re.fullmatch(r"(p\d+(?:\.\d+)?):(\d+(?:\.\d+)?)(us|ms|s)", text.strip())
    if not found or found.group(1) not in PERCENTILES:
        raise ValueError(
            f"latency target {text!r}: write PERCENTILE:VALUE with a unit, e.g. p99:1ms "
            f"(percentiles {', '.join(PERCENTILES)}; units us, ms, s)"
        )
    limit = float(found.group(2)) * UNITS_US[found.group(3)]
    if limit <= 0:
        raise ValueError(f"latency target {text!r}: the limit must be above zero")
    return Target(PERCENTILES[found.group(1)], limit, text.strip())


def load_rate(load: str, probe_rps: float | None) -> float | None:
    """The asked rate of a CellKey.load ("r5000", "f0.5" with the probe), None: closed."""
    if load.startswith("r"):
        return float(load[1:])
    if load.startswith("f") and probe_rps:
        return float(load[1:]) * probe_rps
    return None


@dataclass(frozen=True)
class Step:
    """One open-loop step of a curve."""

    asked: float  # req/s
    achieved: float  # req/s
    latency_us: float  # the target's percentile, all requests
    overloaded: bool
    client_bound: bool

    @property
    def sound(self) -> bool:
        return self.achieved >= RATE_SHARE * self.asked and not self.overloaded


@dataclass(frozen=True)
class Capacity:
    rps: float | None  # None: even the lowest step missed the target
    at_least: bool  # the true capacity may be higher (the client, or the sweep, ran out)
    why: str  # what ended the search, in words


def capacity(steps: Sequence[Step], limit_us: float) -> Capacity:
    """The highest rate meeting the target, interpolated between steps (see the module)."""
    ordered = sorted(steps, key=lambda s: s.asked)
    if not ordered:
        return Capacity(None, False, "no steps")
    last_ok = None
    for index, step in enumerate(ordered):
        if step.sound and step.latency_us <= limit_us:
            last_ok = index
            continue
        break
    if last_ok is None:
        first = ordered[0]
        why = "the lowest step was overloaded" if not first.sound else "the lowest step missed it"
        return Capacity(None, False, why)
    ok = ordered[last_ok]
    if last_ok == len(ordered) - 1:
        return Capacity(ok.achieved, True, "every step met the target: the sweep ended")
    nxt = ordered[last_ok + 1]
    if ok.client_bound:
        return Capacity(ok.achieved, True, "the load generator was the limit")
    if not nxt.sound:  # the next step could not be offered or served at all
        return Capacity(ok.achieved, False, "the next step was overloaded")
    low, high = math.log(max(ok.latency_us, 1.0)), math.log(max(nxt.latency_us, 1.0))
    share = (math.log(limit_us) - low) / (high - low) if high > low else 0.0
    rps = ok.achieved + max(0.0, min(1.0, share)) * (nxt.achieved - ok.achieved)
    return Capacity(rps, False, "interpolated to the next step")


# A step "takes off" when its latency is above KNEE_FACTOR times the lowest step's. In an
# M/M/1 queue every percentile of the time in system scales as 1/(1 - load), so from a
# lowest step at 10-25% of capacity it triples at about 70-75%: where queueing starts to
# dominate. A factor of 3 is also the p99 spread bench.analysis.verdict tolerates within one steady
# window (P99_SPREAD), so noise alone does not make a knee.
KNEE_FACTOR = 3.0


def knee(steps: Sequence[Step], factor: float = KNEE_FACTOR) -> Step | None:
    """The last step before latency takes off for good, or None where it does not.

    Steps in order of asked rate; the baseline is the lowest step's latency. A step takes
    off when its latency exceeds `factor` times the baseline or it is not sound (rate
    not achieved, or the backlog growing). The knee is the step just before the first
    one from which every step has taken off: one noisy step in the middle, followed by
    steps back under the line, is not a knee. None with fewer than two steps, when the
    lowest step is already unsound (no flat part to bend from: `blocking` at 100
    connections), or when the highest step has not taken off (the sweep ended first).
    """
    ordered = sorted(steps, key=lambda s: s.asked)
    if len(ordered) < 2 or not ordered[0].sound or ordered[0].latency_us <= 0:
        return None
    limit = factor * ordered[0].latency_us
    first_off = None
    for index in range(len(ordered) - 1, 0, -1):  # walk back from the top
        step = ordered[index]
        if step.latency_us > limit or not step.sound:
            first_off = index
        else:
            break
    return ordered[first_off - 1] if first_off is not None else None

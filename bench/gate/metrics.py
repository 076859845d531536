"""The metrics that `bench ab` (the gate) and `bench compare` judge, and how a row gives one.

Throughput, the p99 of all requests (the unanswered ones included) and the longest wait
of any connection, so that starvation counts too. Each is a figure of the row's load
result, found by a path of attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.record import Row


@dataclass(frozen=True)
class MetricSpec:
    name: str
    title: str
    unit: str
    path: tuple[str, ...]  # attributes of `row.load` that lead to the value
    higher_is_better: bool
    fmt: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("throughput", "throughput", "req/s", ("throughput_rps",), True, ",.0f"),
    MetricSpec("p99", "p99 latency, all requests", "µs", ("latency_all", "p99"), False, ",.0f"),
    MetricSpec(
        "worst_wait",
        "longest wait of any connection",
        "µs",
        ("connections", "worst_wait_max_us"),
        False,
        ",.0f",
    ),
)


def load_value(row: Row, path: tuple[str, ...]) -> float | None:
    """The load result's figure at `path` (e.g. ('throughput_rps',)), if a finite number."""
    value: Any = row.load
    for part in path:
        value = getattr(value, part, None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)

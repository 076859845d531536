"""What `bench compare` finds (bench.gate.compare) and its report draws (compare_report):
the verdict words, one metric's change, one cell's comparison and the whole comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.gate.metrics import MetricSpec
from bench.store import RunStore

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"
VERDICT_ORDER = (REGRESSION, IMPROVEMENT, NO_CHANGE)

CONFIDENCE = 0.95  # the coverage of every change's interval

FAILED_IN_NEW = "failed in new"  # usable in the base, no usable repeat in the new run


@dataclass(frozen=True)
class MetricChange:
    metric: MetricSpec
    base: tuple[float, ...]
    new: tuple[float, ...]
    ratio: float  # median(new) / median(base); nan when undefined
    ci_low: float
    ci_high: float
    p_value: float  # two-sided Mann-Whitney U; nan when either side has no value
    verdict: str
    note: str = ""


@dataclass(frozen=True)
class CellComparison:
    key: str
    changes: tuple[MetricChange, ...]
    notes: tuple[str, ...]

    @property
    def verdict(self) -> str:
        # The worst metric decides: a regression in p99 is not offset by more throughput.
        verdicts = {c.verdict for c in self.changes}
        return next((v for v in (REGRESSION, IMPROVEMENT) if v in verdicts), NO_CHANGE)


@dataclass(frozen=True)
class Unmatched:
    key: str
    where: str  # "only in base", "only in new", or FAILED_IN_NEW
    note: str


@dataclass
class Comparison:
    base: RunStore
    new: RunStore
    threshold: float  # a fraction: 0.05 for 5%
    alpha: float
    cells: list[CellComparison]
    unmatched: list[Unmatched]
    metadata_differences: list[str] = field(default_factory=list)  # non-empty only with force

    def count(self, verdict: str) -> int:
        return sum(c.verdict == verdict for c in self.cells)

    @property
    def failed_in_new(self) -> int:
        return sum(u.where == FAILED_IN_NEW for u in self.unmatched)

    @property
    def exit_code(self) -> int:
        # A cell that worked in the base and fails every repeat now is the worst regression.
        return 1 if self.count(REGRESSION) or self.failed_in_new else 0


def pct(ratio: float) -> str:
    """A ratio as a signed change: 1.034 -> "+3.4%"; "n/a" for nan."""
    return "n/a" if math.isnan(ratio) else f"{(ratio - 1) * 100:+.1f}%"

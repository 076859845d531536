"""What `bench compare` finds (bench.gate.compare) and its report draws (compare_report):
the verdict words, one metric's change, one cell's comparison and the whole comparison."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.analysis.stats import min_p_value
from bench.gate.metrics import MetricSpec
from bench.store import RunStore

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"
VERDICT_ORDER = (REGRESSION, IMPROVEMENT, NO_CHANGE)

CONFIDENCE = 0.95  # the least coverage asked of every change's interval (each says its own)

FAILED_IN_NEW = "failed in new"  # usable in the base, no usable repeat in the new run


@dataclass(frozen=True)
class MetricChange:
    metric: MetricSpec
    base: tuple[float, ...]
    new: tuple[float, ...]
    ratio: float  # Hodges-Lehmann new / base (bench.analysis.ratio); nan when undefined
    ci_low: float
    ci_high: float
    coverage: float  # the interval's: exact without ties, a lower bound with them
    p_value: float  # two-sided Mann-Whitney U, unadjusted; nan when either side has no value
    p_holm: float  # Holm-adjusted over the comparison's family; nan when not tested
    verdict: str
    note: str = ""
    tested: bool = False  # in Holm's family: a ratio, and enough repeats to reach alpha

    @property
    def min_p(self) -> float:
        """The smallest two-sided p the exact test allows for these repeats."""
        return min_p_value(len(self.base), len(self.new))


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

    @property
    def family(self) -> list[MetricChange]:
        """The tests Holm corrects over: every tested metric of every cell."""
        return [c for cell in self.cells for c in cell.changes if c.tested]

    @property
    def can_find_regression(self) -> bool:
        """Whether any test could pass Holm's first step: p <= alpha / family size, with p
        no smaller than the exact test allows for its repeats (min_p)."""
        family = self.family
        return any(c.min_p * len(family) <= self.alpha for c in family)

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

"""The nightly history's series as SVG, one night per point: the paired ratio new / anchor
with its interval (bench.gate.history_report) or a count per request (bench.gate.
counted_history_report). Those modules give the values, verdicts and findings as plain
data, so that this one needs nothing of the gate's."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Stable SVG ids and text kept as text: an unchanged history re-renders to the same bytes.
RC: Any = {"svg.hashsalt": "sockbench", "svg.fonttype": "none", "font.size": 9}
WORSE, BETTER = "#c62828", "#2e7d32"


@dataclass(frozen=True)
class Mark:
    """A finding to mark: a shift (a dashed line before `night`) or a drift (shaded from
    `night` on)."""

    kind: str  # "shift" or "drift"
    night: int  # index of its first night
    label: str
    worse: bool


class Kind(Protocol):
    """What a change-point finding must show to be marked (bench.analysis.changepoints)."""

    @property
    def kind(self) -> str: ...

    @property
    def night(self) -> int: ...

    @property
    def commits(self) -> str: ...


class Found(Protocol):
    """A finding in a series (bench.gate.history_report's and counted_history_report's)."""

    @property
    def finding(self) -> Kind: ...

    @property
    def worse(self) -> bool: ...

    def size(self) -> str: ...


def marks(found: Sequence[Found]) -> list[Mark]:
    """Each finding as a mark, its size and commit range its legend."""
    return [
        Mark(f.finding.kind, f.finding.night, f"{f.finding.kind} {f.size()}\n{f.finding.commits}",
             f.worse)
        for f in found
    ]  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One series to draw. `ticks` labels each night; `verdicts` are the gate's, each
    night against its base (`judge` names it in the legend); `intervals` (low, high) per
    night, None where it has none; `level` a value to draw as a dotted line."""

    title: str
    ylabel: str
    values: Sequence[float]
    ticks: Sequence[str]
    verdicts: Sequence[str | None]
    marks: Sequence[Mark]
    judge: str
    empty: str = "no night"
    intervals: Sequence[tuple[float, float] | None] = ()
    level: float | None = None


def series_svg(series: Series) -> bytes:
    """The values over the nights, the nights the gate called a regression or an
    improvement circled, each mark with its label in the legend. In the SVG the level's
    line has the id "no-change" and the error bars "interval". The y axis shows the values
    as they are, without an offset: a step of 0.5% must read as one."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(series.title, fontsize=9, loc="left")
        ax.set_ylabel(series.ylabel)
        if series.values:
            _draw(ax, series)
        else:
            ax.text(0.5, 0.5, series.empty, ha="center", va="center", transform=ax.transAxes)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def _draw(ax: Axes, s: Series) -> None:
    from matplotlib.ticker import FixedLocator, MaxNLocator

    n, values = len(s.values), s.values
    if s.level is not None:
        ax.axhline(s.level, color="#777", lw=0.8, ls=":", gid="no-change")
    ax.plot(range(n), values, marker="o", markersize=3, lw=1, color="#1f77b4")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    bars = [
        (i, values[i] - span[0], span[1] - values[i])
        for i, span in enumerate(s.intervals)
        if span is not None and span[0] <= values[i] <= span[1]
    ]
    if bars:
        xs, below, above = zip(*bars, strict=True)
        _, _, lines = ax.errorbar(
            xs, [values[i] for i in xs], yerr=[below, above],
            fmt="none", ecolor="#1f77b4", alpha=0.5, lw=0.8, capsize=2,
        )  # fmt: skip
        for line in lines:
            line.set_gid("interval")
    for verdict, color in (("regression", WORSE), ("improvement", BETTER)):
        marked = [(i, v) for i, v in enumerate(values) if s.verdicts[i] == verdict]
        if marked:
            xs, ys = zip(*marked, strict=True)
            label = f"{s.judge}: {verdict}"
            ax.scatter(xs, ys, s=60, facecolors="none", edgecolors=color, label=label)
    for mark in s.marks:
        color = WORSE if mark.worse else BETTER
        if mark.kind == "shift":
            ax.axvline(mark.night - 0.5, color=color, ls="--", lw=1.2, label=mark.label)
        else:
            ax.axvspan(mark.night - 0.5, n - 0.5, color=color, alpha=0.12, label=mark.label)
    shown = [int(t) for t in MaxNLocator(8, integer=True).tick_values(0, n - 1)]
    shown = [t for t in shown if 0 <= t < n]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.set_xticklabels([s.ticks[t] for t in shown])
    ax.set_xlim(-0.5, n - 0.5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6.5, loc="best")

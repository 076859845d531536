"""Drawing `bench cost`'s counts onto given Axes: instructions per request as horizontal
bars, one per model in its colour, and, for a pattern with idle connections, the same
requests alone as a paler bar beside each, so that the scan's cost reads as the gap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib import ticker
from matplotlib.axes import Axes

from bench.report.charts.style import model_style, plain_number


@dataclass(frozen=True)
class CostBar:
    model: str
    value: float  # instructions per request
    label: str  # written at the bar's end
    alone: float | None = None  # the same requests without idle connections


def draw_cost_bars(ax: Axes, bars: Sequence[CostBar], xlabel: str, alone_label: str) -> None:
    rows = list(range(len(bars)))[::-1]  # the first model at the top
    paired = any(bar.alone is not None for bar in bars)
    height = 0.38 if paired else 0.7
    for y, bar in zip(rows, bars, strict=True):
        color = model_style(bar.model).color
        ax.barh(y + (height / 2 if paired else 0), bar.value, height, color=color)
        end = bar.value
        if bar.alone is not None:
            ax.barh(y - height / 2, bar.alone, height, color=color, alpha=0.35)
            end = max(end, bar.alone)
        ax.text(end, y, f"  {bar.label}", va="center", fontsize=8)
    ax.set_yticks(rows, [bar.model for bar in bars])
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.set_xlim(0, max((max(b.value, b.alone or 0) for b in bars), default=1) * 1.35)
    ax.spines[["top", "right"]].set_visible(False)
    if paired:
        ax.text(0.99, 0.02, f"pale: {alone_label}", transform=ax.transAxes, ha="right", fontsize=8)

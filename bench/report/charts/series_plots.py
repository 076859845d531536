"""A counted series of the nightly history as SVG: a count per request night after night
(bench.gate.counted_history_report gives the values, verdicts and findings as plain data,
so that this module needs nothing of the gate's)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def series_svg(
    title: str,
    ylabel: str,
    values: Sequence[float],
    ticks: Sequence[str],
    verdicts: Sequence[str | None],
    marks: Sequence[Mark],
) -> bytes:
    """The values over the nights (`ticks` labels each night), the nights the gate called
    a regression or an improvement circled, and each mark with its label in the legend.
    The y axis shows the counts as they are, without an offset: a step of 0.5% must read
    as one."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, MaxNLocator

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(ylabel)
        if not values:
            ax.text(0.5, 0.5, "no night", ha="center", va="center", transform=ax.transAxes)
        else:
            n = len(values)
            ax.plot(range(n), values, marker="o", markersize=3, lw=1, color="#1f77b4")
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            for verdict, color in (("regression", WORSE), ("improvement", BETTER)):
                marked = [(i, v) for i, v in enumerate(values) if verdicts[i] == verdict]
                if marked:
                    xs, ys = zip(*marked, strict=True)
                    label = f"the gate against its base: {verdict}"
                    ax.scatter(xs, ys, s=60, facecolors="none", edgecolors=color, label=label)
            for mark in marks:
                color = WORSE if mark.worse else BETTER
                if mark.kind == "shift":
                    ax.axvline(mark.night - 0.5, color=color, ls="--", lw=1.2, label=mark.label)
                else:
                    ax.axvspan(mark.night - 0.5, n - 0.5, color=color, alpha=0.12, label=mark.label)
            shown = [int(t) for t in MaxNLocator(8, integer=True).tick_values(0, n - 1)]
            shown = [t for t in shown if 0 <= t < n]
            ax.xaxis.set_major_locator(FixedLocator(shown))
            ax.set_xticklabels([ticks[t] for t in shown])
            ax.set_xlim(-0.5, n - 0.5)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, loc="best")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()

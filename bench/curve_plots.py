"""Drawing the load-latency curves and the capacities onto given Axes (bench.curves).

As bench.plots: functions that draw onto an Axes and nothing else; files are
bench.charts's. Models keep their colour and marker from bench.plots.MODEL_STYLES.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes

from bench.plots import model_style, plain_number


@dataclass(frozen=True)
class CurveLine:
    model: str
    achieved: Sequence[float]  # req/s per step, ascending asked rate
    latency_us: Sequence[float]  # the percentile, all requests
    bound: Sequence[bool]  # the step's latency is a lower bound
    suspect: Sequence[bool]
    capacity: float | None = None  # at the first target, to mark on the line


@dataclass(frozen=True)
class CapacityBar:
    model: str
    rps: float | None  # median over repeats; None: below the lowest step
    low: float | None
    high: float | None
    at_least: bool


def plot_curves(
    ax: Axes, lines: Sequence[CurveLine], targets_us: Sequence[tuple[str, float]], title: str
) -> None:
    """Achieved throughput on x, latency on a log y; a dashed line per target; a
    vertical tick where each model's capacity at the first target lies."""
    values: list[float] = []
    for line in lines:
        style = model_style(line.model)
        x = np.asarray(line.achieved, dtype=float)
        y = np.asarray(line.latency_us, dtype=float)
        keep = y > 0
        if not keep.any():
            continue
        values.extend(y[keep])
        ax.plot(x[keep], y[keep], color=style.color, linewidth=1.4, label=line.model, zorder=2)
        hollow = np.asarray(line.suspect, dtype=bool) & keep
        ax.plot(
            x[keep & ~hollow], y[keep & ~hollow], linestyle="none", marker=style.marker,
            markersize=5, color=style.color, zorder=3,
        )  # fmt: skip
        ax.plot(
            x[hollow], y[hollow], linestyle="none", marker=style.marker, markersize=5,
            markerfacecolor="white", markeredgecolor=style.color, zorder=3,
        )  # fmt: skip
        if line.capacity:
            ax.axvline(line.capacity, color=style.color, linewidth=0.8, linestyle=":", zorder=1)
    for text, limit in targets_us:
        ax.axhline(limit, color="0.45", linewidth=0.9, linestyle="--", zorder=1)
        ax.annotate(
            text, (1.0, limit), xycoords=("axes fraction", "data"), xytext=(-2, 2),
            textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.35",
        )  # fmt: skip
        values.append(limit)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    if values:
        ax.set_ylim(min(values) / 1.6, max(values) * 1.6)
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("achieved throughput (req/s)")
    ax.grid(True, which="major", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plot_capacities(ax: Axes, bars: Sequence[CapacityBar], title: str) -> None:
    """One horizontal bar per model, sorted, whiskers the interval of the median; "≥"
    where the capacity is only a lower bound, a note where it is below the sweep."""
    ordered = sorted(bars, key=lambda b: b.rps or 0.0)
    for row, bar in enumerate(ordered):
        style = model_style(bar.model)
        if bar.rps is None:
            ax.annotate(
                "below the lowest step", (0, row), xytext=(3, 0), textcoords="offset points",
                va="center", fontsize=7.5, color="0.35",
            )  # fmt: skip
            continue
        ax.barh(row, bar.rps, color=style.color, alpha=0.85 if not bar.at_least else 0.45)
        if bar.low is not None and bar.high is not None and bar.high > bar.low:
            ax.errorbar(
                bar.rps, row, xerr=[[bar.rps - bar.low], [bar.high - bar.rps]], fmt="none",
                ecolor="0.2", elinewidth=1, capsize=3,
            )  # fmt: skip
        label = f"≥{bar.rps:,.0f}" if bar.at_least else f"{bar.rps:,.0f}"
        ax.annotate(
            label, (bar.high or bar.rps, row), xytext=(4, 0), textcoords="offset points",
            va="center", fontsize=7.5,
        )  # fmt: skip
    ax.set_yticks(range(len(ordered)), [b.model for b in ordered])
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    right = max((b.high or b.rps or 0.0) for b in ordered) if ordered else 1.0
    ax.set_xlim(0, right * 1.25 or 1.0)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("capacity (req/s)")
    ax.grid(True, axis="x", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

"""Drawing the idle-connection figures onto given Axes (bench.report.charts.figures makes the
figures and the files; bench.report.idle_section decides what goes on them).

Two kinds: a figure (server CPU per request, or p99) against the idle connections held
beside the active ones, a line per model, the libevent benchmark's chart; and memory per
connection as horizontal bars, user space and kernel side by side for each model. Models
keep their colour and marker from bench.report.charts.style.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import ticker, transforms
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bench.report.charts.style import (
    LOWER_MARKER,
    bar_lengths,
    interval_handle,
    lower_bound_handle,
    model_style,
    plain_number,
    suspect_handle,
)

END_WRAP = 32  # characters per line of a line's end reason
IDLE_XLABEL = "idle connections held beside the active ones"


@dataclass(frozen=True)
class IdleLine:
    """One model's medians against idle connections, in order of the count; `end`: why
    the line stops at its last point (a later count failed or was skipped), else None."""

    model: str
    idle: list[float]
    median: list[float]
    low: list[float]  # interval of the median; NaN where there is none (one repeat)
    high: list[float]
    suspect: list[bool]  # drawn hollow
    lower: list[bool]  # a lower bound: an arrow above the point
    end: str | None = None


@dataclass(frozen=True)
class Estimate:
    """A slope with its interval (NaN ends: none)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class MemoryBars:
    """One model's memory per connection: user space and the kernel's, either unknown."""

    model: str
    user: Estimate | None
    kernel: Estimate | None
    threads: float | None = None  # threads per connection, named beside the model
    caution: str = ""  # under the model's name, e.g. a slope from too few counts


def plot_idle_lines(
    ax: Axes,
    lines: Sequence[IdleLine],
    *,
    ylabel: str,
    xlabel: str = IDLE_XLABEL,
    log_y: bool = False,
) -> None:
    """Each model's medians against idle connections, with the interval of the median as
    bars; both axes linear from 0, so that a cost per idle connection is a straight line
    and a flat one lies flat (the table gives the flat ones' figures). A line that ends
    early has its reason written at its last point, in its colour. The slow-connection
    section draws its figures here too (`xlabel`), latency on a log axis (`log_y`: lines
    a thousandfold apart, each one's ratio to its own 0 readable)."""
    values = [v for line in lines for v in line.median if not math.isnan(v)]
    above = transforms.offset_copy(ax.transData, x=0, y=10 * ax.figure.dpi / 72, units="dots")
    handles: list[Line2D] = []
    ended = 0
    right = max((x for line in lines for x in line.idle), default=1.0) or 1.0
    for line in lines:
        handles.append(_draw(ax, line, above))
        if line.end is not None and line.idle:
            _write_end(ax, line, ended, right, max(values, default=1.0))
            ended += 1
    _format(ax, values, right=right, ylabel=ylabel, xlabel=xlabel, log_y=log_y)
    handles += _mark_handles(lines)
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0,
            frameon=False,
            fontsize=8.5,
        )


def _draw(ax: Axes, line: IdleLine, above: transforms.Transform) -> Line2D:
    style = model_style(line.model)
    x = np.asarray(line.idle, dtype=float)
    y = np.asarray(line.median, dtype=float)
    lo, hi = np.asarray(line.low, dtype=float), np.asarray(line.high, dtype=float)
    suspect, lower = np.asarray(line.suspect, dtype=bool), np.asarray(line.lower, dtype=bool)
    ax.plot(x, y, color=style.color, linewidth=1.6, zorder=2)
    with_ci = ~np.isnan(lo) & ~np.isnan(hi)
    if with_ci.any():
        ax.errorbar(
            x[with_ci],
            y[with_ci],
            yerr=bar_lengths(y[with_ci], lo[with_ci], hi[with_ci]),
            fmt="none",
            ecolor=style.color,
            elinewidth=1,
            capsize=3,
            alpha=0.8,
            zorder=2,
        )
    ax.plot(
        x[~suspect],
        y[~suspect],
        linestyle="none",
        marker=style.marker,
        markersize=7,
        color=style.color,
        zorder=3,
    )
    ax.plot(
        x[suspect],
        y[suspect],
        linestyle="none",
        marker=style.marker,
        markersize=7,
        markerfacecolor="white",
        markeredgecolor=style.color,
        markeredgewidth=1.6,
        zorder=3,
    )
    ax.plot(
        x[lower],
        y[lower],
        linestyle="none",
        marker=LOWER_MARKER,
        markersize=11,
        color=style.color,
        transform=above,
        zorder=4,
    )
    return Line2D(
        [],
        [],
        color=style.color,
        marker=style.marker,
        markersize=7,
        linewidth=1.6,
        label=line.model,
    )


def _write_end(ax: Axes, line: IdleLine, index: int, right: float, top: float) -> None:
    """The reason a line ends, beside its last point: to the right unless the point is
    in the right third, above it unless it is in the upper half; the reasons of several
    lines are staggered apart."""
    style = model_style(line.model)
    x, y = line.idle[-1], line.median[-1]
    leftwards, low = x > right * 0.66, y < top / 2
    step = 46 * index * (1 if low else -1)
    text = "\n".join(
        textwrap.wrap(f"{line.model} ends: {line.end}", END_WRAP, break_on_hyphens=False)[:4]
    )
    ax.annotate(
        text,
        (x, y),
        xytext=(-8 if leftwards else 8, (10 if low else -10) + step),
        textcoords="offset points",
        ha="right" if leftwards else "left",
        va="bottom" if low else "top",
        fontsize=7.5,
        color=style.color,
        bbox={
            "boxstyle": "round,pad=0.2",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.85,
        },
        arrowprops={"arrowstyle": "-", "color": style.color, "linewidth": 0.7},
        zorder=5,
    )


def _format(
    ax: Axes, values: list[float], *, right: float, ylabel: str, xlabel: str, log_y: bool
) -> None:
    """Linear axes from 0 (or a log y axis), room right of the last count, plain numbers."""
    ax.set_xlim(-0.03 * right, right * 1.06)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    top = max(values, default=0.0)
    positive = [v for v in values if v > 0]
    if log_y and positive:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 1.6, top * 1.6)
    else:
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)  # an honest zero baseline
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    if not values:
        ax.text(
            0.5,
            0.5,
            "no usable cell to plot",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _grid(ax)


def _grid(ax: Axes) -> None:
    ax.grid(True, which="major", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _mark_handles(lines: Sequence[IdleLine]) -> list[Line2D]:
    """Legend entries for the marks this chart shows."""
    handles = []
    if any(
        not (math.isnan(lo) or math.isnan(hi))
        for ln in lines
        for lo, hi in zip(ln.low, ln.high, strict=True)
    ):
        handles.append(interval_handle("bar: interval of the median\n(cut at the plot edge)"))
    if any(any(line.suspect) for line in lines):
        handles.append(suspect_handle())
    if any(any(line.lower) for line in lines):
        handles.append(lower_bound_handle("arrow above a point:\na lower bound"))
    return handles


USER_LABEL = "user space (USS, else RSS)"
KERNEL_LABEL = "kernel: socket caches and\nkernel stacks, server side"


def plot_memory_bars(ax: Axes, bars: Sequence[MemoryBars], *, xlabel: str) -> None:
    """A pair of horizontal bars per model, top to bottom in the order given: user space
    (filled, the model's colour) and the kernel's (hatched), each with its interval and
    its value written at its end; a model with threads per connection says so."""
    height = 0.38
    top = len(bars) - 1
    ends: list[float] = []
    for index, bar in enumerate(bars):
        style = model_style(bar.model)
        y = top - index
        for offset, estimate, hatched in (
            (height / 2, bar.user, False),
            (-height / 2, bar.kernel, True),
        ):
            if estimate is None or math.isnan(estimate.value):
                ax.text(0, y + offset, " n/a", va="center", fontsize=7, color="0.4")
                continue
            ends.append(_memory_bar(ax, y + offset, height, estimate, style.color, hatched))
    labels = [
        bar.model
        + (f"\n{bar.threads:.2f} threads/conn" if (bar.threads or 0) >= 0.5 else "")
        + (f"\n{bar.caution}" if bar.caution else "")
        for bar in bars
    ]
    ax.set_yticks([top - i for i in range(len(bars))], labels)
    ax.set_ylim(-0.7, top + 0.7)
    ax.set_xlim(min(0.0, *ends) * 1.15 if ends else 0, max([1.0, *ends]) * 1.18)
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    legend = [
        Patch(facecolor="0.45", label=USER_LABEL),
        Patch(facecolor="white", edgecolor="0.45", hatch="////", label=KERNEL_LABEL),
    ]
    ax.legend(
        handles=legend,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0,
        frameon=False,
        fontsize=8.5,
    )


def _memory_bar(
    ax: Axes, y: float, height: float, est: Estimate, color: str, hatched: bool
) -> float:
    """One bar with its interval and value; returns how far right it reaches."""
    ax.barh(
        y,
        est.value,
        height=height * 0.92,
        color="white" if hatched else color,
        edgecolor=color,
        hatch="////" if hatched else None,
        linewidth=1.0,
        zorder=2,
    )
    reach = est.value
    if not (math.isnan(est.low) or math.isnan(est.high)):
        lengths = bar_lengths(
            np.asarray([est.value]), np.asarray([est.low]), np.asarray([est.high])
        )
        ax.errorbar(
            [est.value],
            [y],
            xerr=lengths,
            fmt="none",
            ecolor="0.25",
            elinewidth=1,
            capsize=2.5,
            zorder=3,
        )
        reach = max(reach, est.high)
    ax.text(max(reach, 0), y, f"  {est.value:,.2f}", va="center", fontsize=7.5, color="0.2")
    return reach

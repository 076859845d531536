"""Drawing one cell's window over time onto given Axes: throughput, p99 and backlog.

As bench.report.charts.metric_plots: functions that draw onto an Axes and nothing else; files are
bench.report.charts.figures's. The data is a load result's `intervals` (clients.result.Interval: one
slice of `interval_s` seconds each). The window is cut into thirds as bench.analysis.verdict
cuts it for its stationarity check, and each panel shows what that check compares
(the first and last thirds' throughput, each third's typical p99), so a reader sees
why a cell was called non-stationary.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib import ticker, transforms
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from bench.report.charts.style import plain_number
from clients.result import Interval

Array = npt.NDArray[Any]  # numpy's stubs type float arrays differently from one release to the next

LINE = "#1f77b4"
THIRD = "#d62728"  # the verdict's per-third figures
SHADE = "0.94"


def thirds(n: int) -> list[tuple[int, int]]:
    """[start, end) of the first, middle and last third of n slices, as bench.analysis.verdict
    cuts them (the middle takes the remainder); empty under 3 slices."""
    third = n // 3
    if third == 0:
        return []
    return [(0, third), (third, n - third), (n - third, n)]


def plot_throughput(
    ax: Axes, intervals: Sequence[Interval], interval_s: float, *, asked_rps: float | None
) -> None:
    """Replies per second in each slice; the first and last thirds shaded, with their
    mean (what the verdict compares); the open loop's asked rate dashed."""
    if not _usable(ax, intervals, interval_s):
        return
    starts, _ends = _edges(intervals, interval_s)
    rps = np.array([i.count / interval_s for i in intervals], dtype=float)
    _shade_thirds(ax, starts, interval_s)
    ax.stairs(rps, _bins(starts, interval_s), color=LINE, linewidth=1.3, baseline=None)
    handles = [Line2D([], [], color=LINE, linewidth=1.3, label="per slice")]
    parts = thirds(len(intervals))
    if parts:
        for start, end in (parts[0], parts[-1]):
            mean = float(rps[start:end].mean())
            ax.hlines(mean, starts[start], starts[end - 1] + interval_s, color=THIRD,
                      linewidth=2, zorder=3)  # fmt: skip
        handles.append(Line2D([], [], color=THIRD, linewidth=2, label="first / last third: mean"))
    if asked_rps:
        ax.axhline(asked_rps, color="0.35", linewidth=0.9, linestyle="--", zorder=1)
        handles.append(
            Line2D([], [], color="0.35", linewidth=0.9, linestyle="--", label="asked rate")
        )
    top = max([float(rps.max()), asked_rps or 0.0])
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.set_ylabel("throughput (req/s)", fontsize=9)
    _finish(ax, handles)


def plot_p99(ax: Axes, intervals: Sequence[Interval], interval_s: float) -> None:
    """p99 of the replies in each slice, log y; each third's median p99 (the verdict's
    typical p99); slices without a reply marked at the bottom."""
    if not _usable(ax, intervals, interval_s):
        return
    starts, _ends = _edges(intervals, interval_s)
    p99 = np.array([i.p99_us for i in intervals], dtype=float)
    answered = np.array([i.count > 0 for i in intervals]) & (p99 > 0)
    _shade_thirds(ax, starts, interval_s)
    mid = starts + interval_s / 2
    ax.plot(mid[answered], p99[answered], color=LINE, linewidth=1.1, marker="o",
            markersize=2.5, zorder=2)  # fmt: skip
    handles = [Line2D([], [], color=LINE, linewidth=1.1, marker="o", markersize=2.5,
                      label="per slice (its replies)")]  # fmt: skip
    drew_third = False
    for start, end in thirds(len(intervals)):
        values = [float(v) for v, ok in zip(p99[start:end], answered[start:end], strict=True) if ok]
        if values:
            drew_third = True
            ax.hlines(statistics.median(values), starts[start], starts[end - 1] + interval_s,
                      color=THIRD, linewidth=2, zorder=3)  # fmt: skip
    if drew_third:
        handles.append(Line2D([], [], color=THIRD, linewidth=2, label="each third: median"))
    if (~answered).any():
        bottom = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(mid[~answered], np.full(int((~answered).sum()), 0.03), linestyle="none",
                marker="|", markersize=8, color="0.4", transform=bottom, clip_on=False)  # fmt: skip
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="|",
                markersize=8,
                color="0.4",
                label="no reply in the slice",
            )  # fmt: skip
        )
    if answered.any():
        ax.set_yscale("log")
        low, high = float(p99[answered].min()), float(p99[answered].max())
        ax.set_ylim(low / 1.8, high * 1.8)
        if high / low < 30:  # a decade or so: label 2x and 5x too, or no value is readable
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel("p99 (µs, log)", fontsize=9)
    _finish(ax, handles)


def plot_backlog(ax: Axes, intervals: Sequence[Interval], interval_s: float) -> None:
    """Requests sent or due and not yet answered at each slice's end (open loop)."""
    if not _usable(ax, intervals, interval_s):
        return
    starts, ends = _edges(intervals, interval_s)
    known = [(e, i.backlog) for e, i in zip(ends, intervals, strict=True) if i.backlog is not None]
    ax.plot([e for e, _ in known], [b for _, b in known], color="0.3", linewidth=1.2,
            marker="o", markersize=2.5)  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.set_ylabel("backlog (requests)", fontsize=9)
    _finish(ax, [])


def _usable(ax: Axes, intervals: Sequence[Interval], interval_s: float) -> bool:
    if intervals and interval_s > 0:
        return True
    ax.text(0.5, 0.5, "no interval data", transform=ax.transAxes, ha="center", va="center",
            color="0.4")  # fmt: skip
    ax.set_yticks([])
    return False


def _edges(intervals: Sequence[Interval], interval_s: float) -> tuple[Array, Array]:
    starts = np.array([i.start_s for i in intervals], dtype=float)
    return starts, starts + interval_s


def _bins(starts: Array, interval_s: float) -> Array:
    return np.append(starts, starts[-1] + interval_s)


def _shade_thirds(ax: Axes, starts: Array, interval_s: float) -> None:
    """Grey bands behind the first and last thirds, which the verdict compares."""
    for start, end in thirds(len(starts))[::2]:
        ax.axvspan(starts[start], starts[end - 1] + interval_s, color=SHADE, zorder=0, lw=0)


def _finish(ax: Axes, handles: list[Line2D]) -> None:
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0, frameon=False, fontsize=7.5)  # fmt: skip

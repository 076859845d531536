"""Drawing the load-latency curves and the capacities onto given Axes (bench.analysis.curves).

As metric_plots (beside this module): functions that draw onto an Axes and nothing else;
files are figures's. Models keep their colour and marker from style.MODEL_STYLES, and the
marks keep metric_plots's meaning: a hollow marker is a suspect step, an arrow above a
point a lower bound (requests still unanswered decided it).

Two views: `plot_curves`, every model as a line in one panel (an overview, for a few
models), and `plot_model_panel`, one model's p50, p99 and p99.9 with the other models'
p99 faint behind it (small multiples, readable with any number of models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from matplotlib import ticker, transforms
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from bench.report.charts.style import LOWER_MARKER, model_style, plain_number

# (Latency field, label, line width, line style, alpha, marker size) of each percentile
# in a model's panel: p99, the targets' percentile, strongest.
PERCENTILE_STYLES: tuple[tuple[str, str, float, Any, float, float], ...] = (  # Any: a linestyle
    ("p50", "p50", 1.0, "-", 0.45, 3.2),
    ("p99", "p99", 1.9, "-", 1.0, 4.8),
    ("p999", "p99.9", 1.1, "-.", 0.85, 3.2),  # dash-dot: dotted is the capacity
)
CONTEXT_GREY = "0.8"  # the other models' p99 behind a model's own lines
KNEE_RING: dict[str, Any] = {"marker": "o", "markersize": 13, "markerfacecolor": "none",
             "markeredgecolor": "0.1", "markeredgewidth": 1.1}  # fmt: skip


@dataclass(frozen=True)
class CurveLine:
    model: str
    achieved: Sequence[float]  # req/s per step, ascending asked rate
    latency_us: Sequence[float]  # the percentile, all requests
    bound: Sequence[bool]  # the step's latency is a lower bound
    suspect: Sequence[bool]
    capacity: float | None = None  # at the first target, to mark on the line
    knee: int | None = None  # index of the knee step (bench.analysis.curves.knee), to ring


@dataclass(frozen=True)
class ModelCurve:
    """One model's steps at one connection count, each percentile of all requests."""

    model: str
    achieved: Sequence[float]  # req/s per step, ascending asked rate
    latency_us: Mapping[str, Sequence[float]]  # Latency field ("p99") -> per step
    bound: Mapping[str, Sequence[bool]]  # Latency field -> lower bound per step
    suspect: Sequence[bool]
    capacity: float | None = None  # at the first target
    knee: int | None = None

    def line(self, percentile: str) -> CurveLine:
        empty = [False] * len(self.achieved)
        return CurveLine(
            self.model,
            self.achieved,
            self.latency_us.get(percentile, [0.0] * len(self.achieved)),
            self.bound.get(percentile, empty),
            self.suspect,
            self.capacity,
            self.knee,
        )


@dataclass(frozen=True)
class CapacityBar:
    model: str
    rps: float | None  # median over repeats; None: below the lowest step
    low: float | None
    high: float | None
    at_least: bool
    below: int = 0  # repeats below the lowest step (or the floor), left out of the median
    repeats: int = 0


def plot_curves(
    ax: Axes, lines: Sequence[CurveLine], targets_us: Sequence[tuple[str, float]], title: str
) -> None:
    """Achieved throughput on x, latency on a log y; a dashed line per target; a
    vertical tick where each model's capacity at the first target lies; a ring on
    each model's knee."""
    values: list[float] = []
    for line in lines:
        style = model_style(line.model)
        values += _draw_line(
            ax, line, color=style.color, marker=style.marker, markersize=5, linewidth=1.4,
            label=line.model,
        )  # fmt: skip
        if line.capacity:
            ax.axvline(line.capacity, color=style.color, linewidth=0.8, linestyle=":", zorder=1)
    values += _draw_targets(ax, targets_us, fontsize=7)
    _format(ax, title, values, fontsize=10)
    ax.set_xlabel("achieved throughput (req/s)")


def plot_model_panel(
    ax: Axes,
    curve: ModelCurve | None,
    others: Sequence[CurveLine],
    targets_us: Sequence[tuple[str, float]],
    title: str,
) -> None:
    """One model's p50, p99 and p99.9 of all requests against achieved throughput, log
    y, in the model's colour (PERCENTILE_STYLES); the other models' p99 at the same
    connection count in faint grey behind, for context; the targets dashed, the
    capacity at the first target a dotted vertical line, the knee ringed on p99.

    Limits are left to the caller, so that panels sharing axes compare (latency_range).
    """
    for other in others:
        x = np.asarray(other.achieved, dtype=float)
        y = np.asarray(other.latency_us, dtype=float)
        keep = y > 0
        ax.plot(x[keep], y[keep], color=CONTEXT_GREY, linewidth=0.9, zorder=1)
    _draw_targets(ax, targets_us, fontsize=6.5)
    if curve is None or not len(curve.achieved):
        ax.text(0.5, 0.5, "no open-loop steps", transform=ax.transAxes, ha="center",
                va="center", fontsize=8, color="0.4")  # fmt: skip
    else:
        style = model_style(curve.model)
        for field, _label, width, dashes, alpha, size in PERCENTILE_STYLES:
            if field not in curve.latency_us:
                continue
            line = curve.line(field)
            _draw_line(
                ax, line if field == "p99" else replace(line, knee=None),
                color=style.color, marker=style.marker, markersize=size, linewidth=width,
                linestyle=dashes, alpha=alpha, arrow_size=8,
            )  # fmt: skip
        if curve.capacity:
            ax.axvline(curve.capacity, color=style.color, linewidth=0.9, linestyle=":", zorder=1)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())  # the decades are enough
    ax.tick_params(labelsize=7.5)
    ax.set_title(title, fontsize=9, loc="left")
    _style(ax)


def latency_range(
    curves: Sequence[ModelCurve], targets_us: Sequence[tuple[str, float]]
) -> tuple[float, float] | None:
    """The log-y limits that hold every drawn percentile and target, with a margin."""
    values = [limit for _, limit in targets_us]
    for curve in curves:
        for field, *_ in PERCENTILE_STYLES:
            values += [float(v) for v in curve.latency_us.get(field, ()) if v > 0]
    return (min(values) / 1.8, max(values) * 1.8) if values else None


def throughput_range(curves: Sequence[ModelCurve]) -> float:
    """The right end of a shared achieved-throughput axis (from 0)."""
    tops = [max(c.achieved) for c in curves if len(c.achieved)]
    return max(tops, default=1.0) * 1.08 or 1.0


def legend_handles(capacity_label: str, *, percentiles: bool) -> list[Line2D]:
    """What the marks mean, in grey: for a figure legend."""
    handles = []
    if percentiles:
        for _field, label, width, dashes, alpha, _size in PERCENTILE_STYLES:
            handles.append(Line2D([], [], color="0.2", linewidth=width, linestyle=dashes,
                                  alpha=alpha, label=label))  # fmt: skip
        handles.append(Line2D([], [], color=CONTEXT_GREY, linewidth=0.9, label="other models' p99"))
    handles += [
        Line2D([], [], color="0.45", linewidth=0.9, linestyle="--", label="latency target"),
        Line2D([], [], color="0.3", linewidth=0.9, linestyle=":", label=capacity_label),
        Line2D([], [], linestyle="none", label="knee (docs/curves.md)", **KNEE_RING),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=5,
            markerfacecolor="white",
            markeredgecolor="0.3",
            label="hollow: suspect step",
        ),  # fmt: skip
        Line2D(
            [],
            [],
            linestyle="none",
            marker=LOWER_MARKER,
            markersize=9,
            color="0.3",
            label="arrow: lower bound (≥)",
        ),  # fmt: skip
    ]
    return handles


def _draw_line(
    ax: Axes,
    line: CurveLine,
    *,
    color: str,
    marker: str,
    markersize: float,
    linewidth: float,
    linestyle: Any = "-",
    alpha: float = 1.0,
    label: str | None = None,
    arrow_size: float = 10,
) -> list[float]:
    """A curve with its step markers: filled valid, hollow suspect, an arrow above a
    lower bound, a ring on the knee. Returns the latencies drawn (log y: only > 0)."""
    x = np.asarray(line.achieved, dtype=float)
    y = np.asarray(line.latency_us, dtype=float)
    keep = y > 0
    if not keep.any():
        return []
    ax.plot(x[keep], y[keep], color=color, linewidth=linewidth, linestyle=linestyle,
            alpha=alpha, label=label, zorder=2)  # fmt: skip
    hollow = np.asarray(line.suspect, dtype=bool) & keep
    ax.plot(x[keep & ~hollow], y[keep & ~hollow], linestyle="none", marker=marker,
            markersize=markersize, color=color, alpha=alpha, zorder=3)  # fmt: skip
    ax.plot(x[hollow], y[hollow], linestyle="none", marker=marker, markersize=markersize,
            markerfacecolor="white", markeredgecolor=color, alpha=alpha, zorder=3)  # fmt: skip
    lower = np.asarray(line.bound, dtype=bool) & keep
    if lower.any():
        # Above the point whatever the scale, as in bench.report.charts.metric_plots.
        above = transforms.offset_copy(
            ax.transData, x=0, y=(markersize * 0.9 + 3) * ax.figure.dpi / 72, units="dots"
        )
        ax.plot(x[lower], y[lower], linestyle="none", marker=LOWER_MARKER,
                markersize=arrow_size, color=color, alpha=alpha, transform=above,
                zorder=4)  # fmt: skip
    if line.knee is not None and 0 <= line.knee < len(x) and keep[line.knee]:
        ax.plot([x[line.knee]], [y[line.knee]], linestyle="none", zorder=5, **KNEE_RING)
    return [float(v) for v in y[keep]]


def _draw_targets(
    ax: Axes, targets_us: Sequence[tuple[str, float]], *, fontsize: float
) -> list[float]:
    for text, limit in targets_us:
        ax.axhline(limit, color="0.45", linewidth=0.9, linestyle="--", zorder=1)
        ax.annotate(
            text, (1.0, limit), xycoords=("axes fraction", "data"), xytext=(-2, 2),
            textcoords="offset points", ha="right", va="bottom", fontsize=fontsize,
            color="0.35",
        )  # fmt: skip
    return [limit for _, limit in targets_us]


def _format(ax: Axes, title: str, values: Sequence[float], *, fontsize: float) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    if values:
        ax.set_ylim(min(values) / 1.6, max(values) * 1.6)
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=fontsize, loc="left")
    _style(ax)


def _style(ax: Axes) -> None:
    ax.grid(True, which="major", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plot_capacities(ax: Axes, bars: Sequence[CapacityBar], title: str) -> None:
    """One horizontal bar per model, sorted, whiskers the interval of the median; "≥"
    where the capacity is only a lower bound, a note where it is below the sweep, a
    hatched bar and a count where only some repeats are."""
    ordered = sorted(bars, key=lambda b: b.rps or 0.0)
    for row, bar in enumerate(ordered):
        style = model_style(bar.model)
        if bar.rps is None:
            every = f" ({bar.below} of {bar.repeats} repeats)" if bar.repeats > 1 else ""
            ax.annotate(
                f"below the lowest step{every}", (0, row), xytext=(3, 0),
                textcoords="offset points", va="center", fontsize=7.5, color="0.35",
            )  # fmt: skip
            continue
        partial = bar.below > 0  # the median leaves repeats out: say so on the bar
        ax.barh(
            row, bar.rps, color=style.color, alpha=0.45 if bar.at_least or partial else 0.85,
            hatch="///" if partial else None, edgecolor="white" if partial else None,
        )  # fmt: skip
        if bar.low is not None and bar.high is not None and bar.high > bar.low:
            ax.errorbar(
                bar.rps, row, xerr=[[bar.rps - bar.low], [bar.high - bar.rps]], fmt="none",
                ecolor="0.2", elinewidth=1, capsize=3,
            )  # fmt: skip
        label = f"≥{bar.rps:,.0f}" if bar.at_least else f"{bar.rps:,.0f}"
        if partial:
            label += f" ({bar.below} of {bar.repeats} below)"
        ax.annotate(
            label, (bar.high or bar.rps, row), xytext=(4, 0), textcoords="offset points",
            va="center", fontsize=7.5,
        )  # fmt: skip
    ax.set_yticks(range(len(ordered)), [b.model for b in ordered])
    ax.set_ylim(-0.6, max(len(ordered), 1) - 0.4)  # the bottom row clear of the axis
    ax.xaxis.set_major_locator(ticker.MaxNLocator(4))  # thousands separators need room
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
    right = max((b.high or b.rps or 0.0) for b in ordered) if ordered else 1.0
    room = 1.6 if any(b.below and b.rps for b in ordered) else 1.25  # for the labels
    ax.set_xlim(0, right * room or 1.0)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel("capacity (req/s)")
    ax.grid(True, axis="x", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

"""Drawing one metric against connections onto a given Axes: a line per model, the
report's per-metric chart (bench.report.charts.figures makes the figure and the files).

The frame passed in is a slice of `bench.report.frame.aggregate()`: one row per cell with
`cell.model`, `cell.connections`, `status` and, per metric, `<metric>.median`,
`<metric>.ci_low`, `<metric>.ci_high`. Models keep their colour and marker from
bench.report.charts.style.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import ticker, transforms
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import Transform

from bench.record import USABLE
from bench.report.charts.style import (
    LOWER_MARKER,
    RUN_LINESTYLES,
    Style,
    bar_lengths,
    interval_handle,
    lower_bound_handle,
    model_style,
    plain_number,
    run_index,
    suspect_handle,
)
from bench.report.frame import RUN_SEP, model_sort_key

FAILED_STRIP = 0.08  # bottom strip for failed cells, as a fraction of the axis height


@dataclass
class _Drawn:
    """What the models' lines put on the axes, for the scales, the strip and the legend."""

    handles: list[Line2D] = field(default_factory=list)
    data_artists: list[Artist] = field(default_factory=list)  # kept out of the failed strip
    medians: list[float] = field(default_factory=list)
    xs: set[int] = field(default_factory=set)
    any_failed: bool = False
    any_bound: bool = False
    any_value: bool = False
    any_lower: bool = False
    any_ci: bool = False


@dataclass(frozen=True)
class _Points:
    """One model's usable cells as arrays, in order of connections."""

    x: Any
    y: Any
    lo: Any
    hi: Any
    bound: Any  # suspect verdict: drawn hollow
    lower: Any  # the value is a lower bound: an arrow above the point
    have: Any  # a median to draw


def plot_metric(
    ax: Axes,
    frame: Any,
    metric: str,
    *,
    ylabel: str,
    log_y: bool = False,
    xlabel: str = "Concurrent connections (log scale)",
) -> None:
    """Draw `metric` against connections, one line per model, onto `ax`.

    Filled markers are valid cells, hollow markers suspect ones (bench.analysis.verdict); an
    upward arrow on a point marks a lower bound (unanswered requests decided it); an
    "x" at the bottom of the axis in the model's colour, in a grey strip below the data,
    is a cell whose every repeat failed. Error bars are the interval of the median where
    there are repeats. Models whose cells were all skipped are not drawn.
    """
    models = sorted({str(m) for m in frame["cell.model"]}, key=model_sort_key)
    failed_at_bottom = transforms.blended_transform_factory(ax.transData, ax.transAxes)
    # 10 points above the data point, whatever the scale
    above = transforms.offset_copy(ax.transData, x=0, y=10 * ax.figure.dpi / 72, units="dots")
    drawn = _Drawn()
    runs = list(dict.fromkeys(m.partition(RUN_SEP)[2] for m in models if RUN_SEP in m))
    for model in models:
        _plot_model(ax, frame, metric, model, runs, drawn, above, failed_at_bottom)

    log_y = log_y and any(v > 0 for v in drawn.medians)
    _format_axes(ax, sorted(drawn.xs), drawn.medians, log_y=log_y, xlabel=xlabel, ylabel=ylabel)
    if drawn.any_failed:
        _reserve_failed_strip(ax, log=log_y)
        data_area = Rectangle((0, FAILED_STRIP), 1, 1 - FAILED_STRIP, transform=ax.transAxes)
        for artist in drawn.data_artists:
            artist.set_clip_path(data_area)
    if not drawn.any_value:
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no successful cell to plot",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    handles = drawn.handles + _mark_handles(drawn)
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0,
            frameon=False,
            fontsize=8.5,
        )


def _plot_model(
    ax: Axes,
    frame: Any,
    metric: str,
    model: str,
    runs: list[str],
    drawn: _Drawn,
    above: Transform,
    failed_at_bottom: Transform,
) -> None:
    """One model's line, bars, markers and failed marks, and its legend entry."""
    style = model_style(model, runs)
    dashes = RUN_LINESTYLES[(run_index(model, runs) or 0) % len(RUN_LINESTYLES)]
    cells = frame[frame["cell.model"] == model].sort_values("cell.connections")
    used = cells[cells["status"].isin(USABLE)]
    failed = cells[cells["status"] == "failed"]
    if used.empty and failed.empty:
        return
    points = _points(used, metric)
    drawn.any_value = drawn.any_value or bool(points.have.any())
    drawn.xs.update(int(v) for v in cells["cell.connections"])
    drawn.medians.extend(float(v) for v in points.y[points.have])

    _draw_line_and_bars(ax, points, style, dashes, drawn)
    _draw_markers(ax, points, style, drawn, above)
    if not failed.empty:
        drawn.any_failed = True
        _draw_failed(ax, failed["cell.connections"].to_numpy(dtype=float), style, failed_at_bottom)
    drawn.handles.append(
        Line2D(
            [],
            [],
            color=style.color,
            marker=style.marker,
            markersize=7,
            linestyle=dashes,
            linewidth=1.6,
            label=model,
        )
    )


def _points(used: Any, metric: str) -> _Points:
    y = used[f"{metric}.median"].to_numpy(dtype=float)
    return _Points(
        x=used["cell.connections"].to_numpy(dtype=float),
        y=y,
        lo=used[f"{metric}.ci_low"].to_numpy(dtype=float),
        hi=used[f"{metric}.ci_high"].to_numpy(dtype=float),
        bound=(used["verdict"] == "suspect").to_numpy(),
        lower=used[f"{metric}.bound"].fillna(False).astype(bool).to_numpy(),
        have=~np.isnan(y),
    )


def _draw_line_and_bars(ax: Axes, p: _Points, style: Style, dashes: Any, drawn: _Drawn) -> None:
    """The model's line through its medians, and the interval of each where there is one."""
    drawn.data_artists += ax.plot(
        p.x[p.have], p.y[p.have], color=style.color, linestyle=dashes, linewidth=1.6, zorder=2
    )
    with_ci = p.have & ~np.isnan(p.lo) & ~np.isnan(p.hi)
    if with_ci.any():
        drawn.any_ci = True
        bars = ax.errorbar(
            p.x[with_ci],
            p.y[with_ci],
            yerr=bar_lengths(p.y[with_ci], p.lo[with_ci], p.hi[with_ci]),
            fmt="none",
            ecolor=style.color,
            elinewidth=1,
            capsize=3,
            alpha=0.8,
            zorder=2,
        )
        drawn.data_artists += bars.get_children()


def _draw_markers(ax: Axes, p: _Points, style: Style, drawn: _Drawn, above: Transform) -> None:
    """Filled markers for valid cells, hollow for suspect ones, an arrow over lower bounds."""
    clean = p.have & ~p.bound
    drawn.data_artists += ax.plot(
        p.x[clean],
        p.y[clean],
        linestyle="none",
        marker=style.marker,
        markersize=7,
        color=style.color,
        zorder=3,
    )
    if (p.have & p.bound).any():
        drawn.any_bound = True
        drawn.data_artists += ax.plot(
            p.x[p.have & p.bound],
            p.y[p.have & p.bound],
            linestyle="none",
            marker=style.marker,
            markersize=7,
            markerfacecolor="white",
            markeredgecolor=style.color,
            markeredgewidth=1.6,
            zorder=3,
        )
    if (p.have & p.lower).any():
        drawn.any_lower = True
        drawn.data_artists += ax.plot(
            p.x[p.have & p.lower],
            p.y[p.have & p.lower],
            linestyle="none",
            marker=LOWER_MARKER,
            markersize=11,
            color=style.color,
            transform=above,
            zorder=4,
        )


def _draw_failed(ax: Axes, fx: Any, style: Style, failed_at_bottom: Transform) -> None:
    """An "x" in the model's colour in the strip below the data, per failed cell."""
    ax.plot(
        fx,
        np.full(len(fx), FAILED_STRIP / 2),
        linestyle="none",
        marker="x",
        markersize=9,
        markeredgewidth=2.2,
        color=style.color,
        transform=failed_at_bottom,
        clip_on=False,
        zorder=4,
    )


def _mark_handles(drawn: _Drawn) -> list[Line2D]:
    """Legend entries that explain the marks, only for the marks the chart shows."""
    handles = []
    if drawn.any_ci:
        handles.append(
            interval_handle("bar: interval of the median\n(see the legend; cut\nat the plot edge)")
        )
    if drawn.any_bound:
        handles.append(suspect_handle())
    if drawn.any_lower:
        handles.append(
            lower_bound_handle("arrow above a point:\na lower bound (requests\nstill unanswered)")
        )
    if drawn.any_failed:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="x",
                markersize=8,
                markeredgewidth=2,
                color="0.35",
                label="x in grey strip: failed\n(every repeat; no value)",
            )
        )
    return handles


def _format_axes(
    ax: Axes, xs: list[int], medians: list[float], *, log_y: bool, xlabel: str, ylabel: str
) -> None:
    """Scales, limits, ticks, labels and grid.

    Y limits follow the medians, not the error bars: with two or three repeats a 95%
    interval can be ten times the value and would flatten every line; bars that reach
    past the edge are cut there instead.
    """
    ax.set_xscale("log")
    if xs:
        # Tick exactly the connection counts measured, written plainly (10, not 10^1).
        ax.xaxis.set_major_locator(ticker.FixedLocator(xs))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        low, high = float(min(xs)), float(max(xs))
        ax.set_xlim(low / 1.6, high * 1.6)  # room for markers and error bar caps
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        positive = [v for v in medians if v > 0]
        low, high = min(positive) / 1.6, max(positive) * 1.6
        ax.set_ylim(low, high)
        # Up to ~3.5 decades, label 2x and 5x too: with decades alone a value at the top
        # (41,000 over a 10,000 label) could not be read off the axis.
        if high / low < 3200:
            ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_two_and_five))
    else:
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(plain_number))
        top = max(medians, default=0.0)
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)  # honest zero baseline
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", color="0.88", linewidth=0.8)
    ax.grid(True, which="minor", axis="y", color="0.94", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _reserve_failed_strip(ax: Axes, *, log: bool) -> None:
    """Lower the y range so data stays above a shaded strip that holds the failed marks.

    Failed cells have no value; a mark inside the data area would read as one.
    """
    low, high = ax.get_ylim()
    share = FAILED_STRIP / (1 - FAILED_STRIP)
    if log:
        ax.set_ylim(low / (high / low) ** share, high)
    else:
        ax.set_ylim(low - share * (high - low), high)
        ax.yaxis.set_major_formatter(
            ticker.FuncFormatter(lambda v, pos: "" if v < low else plain_number(v, pos))
        )
    ax.add_patch(
        Rectangle(
            (0, 0),
            1,
            FAILED_STRIP,
            transform=ax.transAxes,
            facecolor="0.93",
            edgecolor="none",
            zorder=0,
        )
    )
    # Say what the strip is: below the axis's zero it could read as negative values.
    ax.text(0.005, FAILED_STRIP / 2, "failed", transform=ax.transAxes, fontsize=7,
            color="0.4", va="center", ha="left", zorder=1)  # fmt: skip


def _two_and_five(value: float, pos: int) -> str:
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return plain_number(value, pos) if round(mantissa, 6) in (2, 5) else ""

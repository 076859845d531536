"""Drawing only: functions that draw aggregated cells onto a given matplotlib Axes.

Figures, titles, captions and files belong to `bench.report.charts.figures`. Every chart uses the
same colour and marker per model (MODEL_STYLES), so a reader learns them once.

The frame passed in is a slice of `bench.report.frame.aggregate()`: one row per cell with
`cell.model`, `cell.connections`, `status` and, per metric, `<metric>.median`,
`<metric>.ci_low`, `<metric>.ci_high`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np
from matplotlib import ticker, transforms
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from bench.record import USABLE
from bench.report.frame import PY, RUN_SEP, model_sort_key


class Style(NamedTuple):
    color: str
    marker: str


# One fixed style per known model, in the order tables and legends list them.
# No model uses "x": that marker means "failed".
MODEL_STYLES: dict[str, Style] = {
    "blocking": Style("#7f7f7f", "o"),
    "threaded": Style("#8c564b", "s"),
    "select": Style("#bcbd22", "v"),
    "poll": Style("#e377c2", "^"),
    "epoll": Style("#1f77b4", "D"),
    "selectors": Style("#17becf", "<"),
    "asyncio": Style("#2ca02c", ">"),
    "uvloop": Style("#d62728", "d"),  # hollow when client-bound: an open shape reads best
    "gevent": Style("#9467bd", "h"),
    "threadpool": Style("#ff7f0e", "p"),
    "prefork": Style("#393b79", "*"),
    # the reference servers (servers.REFERENCES): black for the native line
    "nginx": Style("#000000", "P"),
    "uvicorn": Style("#e6550d", "8"),
}
_FALLBACK_COLORS = (
    "#637939",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
)
_FALLBACK_MARKERS = ("o", "s", "D", "^", "v", "<", ">", "p", "h", "*")

FAILED_STRIP = 0.08  # bottom strip for failed cells, as a fraction of the axis height
LOWER_MARKER: Final = "$\\uparrow$"  # drawn above a point: the value is at least this


# A model under several interpreters (bench run --pythons): its colour, a marker each
PYTHON_MARKERS = {"3.11": "o", "3.12": "s", "3.13": "^", "3.13t": "v", "3.14": "D", "3.14t": "<"}


# Runs side by side (bench.report.side_by_side): the model's colour, a marker and a dash each
RUN_MARKERS = ("o", "s", "^", "D", "v", "<")
RUN_LINESTYLES: tuple[Any, ...] = ("-", "--", ":", "-.")


def run_index(model: str, runs: Sequence[str]) -> int | None:
    """The position of the line's run among `runs`, or None for a line of one run."""
    _, sep, run = model.partition(RUN_SEP)
    return (runs.index(run) if run in runs else len(runs)) if sep else None


def model_style(model: str, runs: Sequence[str] = ()) -> Style:
    """The style of a model; unknown names get a stable one derived from the name."""
    line, sep, _run = model.partition(RUN_SEP)
    if sep and PY in line:  # the interpreter's marker; the run's dashes tell runs apart
        return model_style(line)
    if sep:
        index = run_index(model, runs) or 0
        return Style(model_style(line).color, RUN_MARKERS[index % len(RUN_MARKERS)])
    base, _, python = model.partition(PY)
    if python:
        h = zlib.crc32(python.encode("utf-8"))
        marker = PYTHON_MARKERS.get(python, _FALLBACK_MARKERS[h % len(_FALLBACK_MARKERS)])
        return Style(model_style(base).color, marker)
    if model in MODEL_STYLES:
        return MODEL_STYLES[model]
    h = zlib.crc32(model.encode("utf-8"))  # stable across runs, unlike hash()
    return Style(
        _FALLBACK_COLORS[h % len(_FALLBACK_COLORS)],
        _FALLBACK_MARKERS[(h // 7) % len(_FALLBACK_MARKERS)],
    )


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
    handles: list[Line2D] = []
    data_artists: list[Artist] = []  # kept out of the failed strip
    any_failed = any_bound = any_value = any_lower = False
    medians: list[float] = []
    any_ci = False
    xs_all: set[int] = set()

    runs = list(dict.fromkeys(m.partition(RUN_SEP)[2] for m in models if RUN_SEP in m))
    for model in models:
        style = model_style(model, runs)
        dashes = RUN_LINESTYLES[(run_index(model, runs) or 0) % len(RUN_LINESTYLES)]
        cells = frame[frame["cell.model"] == model].sort_values("cell.connections")
        used = cells[cells["status"].isin(USABLE)]
        failed = cells[cells["status"] == "failed"]
        if used.empty and failed.empty:
            continue
        x = used["cell.connections"].to_numpy(dtype=float)
        y = used[f"{metric}.median"].to_numpy(dtype=float)
        lo = used[f"{metric}.ci_low"].to_numpy(dtype=float)
        hi = used[f"{metric}.ci_high"].to_numpy(dtype=float)
        bound = (used["verdict"] == "suspect").to_numpy()
        lower = used[f"{metric}.bound"].fillna(False).astype(bool).to_numpy()
        have = ~np.isnan(y)
        any_value = any_value or bool(have.any())
        xs_all.update(int(v) for v in cells["cell.connections"])
        medians.extend(float(v) for v in y[have])

        data_artists += ax.plot(
            x[have], y[have], color=style.color, linestyle=dashes, linewidth=1.6, zorder=2
        )
        with_ci = have & ~np.isnan(lo) & ~np.isnan(hi)
        if with_ci.any():
            any_ci = True
            bars = ax.errorbar(
                x[with_ci],
                y[with_ci],
                yerr=_bar_lengths(y[with_ci], lo[with_ci], hi[with_ci]),
                fmt="none",
                ecolor=style.color,
                elinewidth=1,
                capsize=3,
                alpha=0.8,
                zorder=2,
            )
            data_artists += bars.get_children()
        clean = have & ~bound
        data_artists += ax.plot(
            x[clean],
            y[clean],
            linestyle="none",
            marker=style.marker,
            markersize=7,
            color=style.color,
            zorder=3,
        )
        if (have & bound).any():
            any_bound = True
            data_artists += ax.plot(
                x[have & bound],
                y[have & bound],
                linestyle="none",
                marker=style.marker,
                markersize=7,
                markerfacecolor="white",
                markeredgecolor=style.color,
                markeredgewidth=1.6,
                zorder=3,
            )
        if (have & lower).any():
            any_lower = True
            data_artists += ax.plot(
                x[have & lower],
                y[have & lower],
                linestyle="none",
                marker=LOWER_MARKER,
                markersize=11,
                color=style.color,
                transform=above,
                zorder=4,
            )
        if not failed.empty:
            any_failed = True
            fx = failed["cell.connections"].to_numpy(dtype=float)
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
        handles.append(
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

    log_y = log_y and any(v > 0 for v in medians)
    _format_axes(ax, sorted(xs_all), medians, log_y=log_y, xlabel=xlabel, ylabel=ylabel)
    if any_failed:
        _reserve_failed_strip(ax, log=log_y)
        data_area = Rectangle((0, FAILED_STRIP), 1, 1 - FAILED_STRIP, transform=ax.transAxes)
        for artist in data_artists:
            artist.set_clip_path(data_area)
    if not any_value:
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
    if any_ci:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="|",
                markersize=12,
                markeredgewidth=1.2,
                color="0.35",
                label="bar: interval of the median\n(see the legend; cut\nat the plot edge)",
            )
        )
    if any_bound:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=7,
                markerfacecolor="white",
                markeredgecolor="0.35",
                markeredgewidth=1.6,
                label="hollow: suspect\n(see the Verdicts section)",
            )
        )
    if any_lower:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker=LOWER_MARKER,
                markersize=11,
                color="0.35",
                label="arrow above a point:\na lower bound (requests\nstill unanswered)",
            )
        )
    if any_failed:
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
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0,
            frameon=False,
            fontsize=8.5,
        )


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


def _bar_lengths(mid: Any, low: Any, high: Any) -> list[Any]:
    """matplotlib's asymmetric error bars (lengths below, above) for an interval around
    `mid`; never negative, where an interval does not contain its point estimate."""
    return [np.maximum(mid - low, 0), np.maximum(high - mid, 0)]


def _two_and_five(value: float, pos: int) -> str:
    mantissa = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return plain_number(value, pos) if round(mantissa, 6) in (2, 5) else ""


def plain_number(value: float, _pos: int) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:g}"
    return f"{value:.2g}"


def plot_comparison(
    ax: Axes, frame: Any, *, threshold: float, xlabel: str, labels: bool = True
) -> None:
    """Forest plot of new/base ratios onto `ax`: one row per cell, top to bottom in order.

    `frame` has `key`, `ratio`, `ci_low`, `ci_high` and `verdict` (regression,
    improvement, no change) per cell. A dot is the ratio of medians, its bar the
    confidence interval; the shaded band is ±threshold around "no change"; regressions are
    red, improvements green. The x axis is labelled as a change in percent.
    """
    colors = {"regression": "#d62728", "improvement": "#2ca02c", "no change": "0.45"}
    y = np.arange(len(frame))
    ratio = frame["ratio"].to_numpy(dtype=float)
    low = frame["ci_low"].to_numpy(dtype=float)
    high = frame["ci_high"].to_numpy(dtype=float)
    verdicts = [str(v) for v in frame["verdict"]]
    ax.axvspan(
        1 - threshold,
        1 + threshold,
        color="0.9",
        zorder=0,
        label=f"±{threshold * 100:g}% threshold",
    )
    ax.axvline(1.0, color="0.55", linewidth=0.8, zorder=1)
    for verdict, color in colors.items():
        pick = np.array([v == verdict for v in verdicts], dtype=bool) & ~np.isnan(ratio)
        if not pick.any():
            continue
        with_ci = pick & ~np.isnan(low) & ~np.isnan(high)
        ax.errorbar(
            ratio[with_ci],
            y[with_ci],
            xerr=_bar_lengths(ratio[with_ci], low[with_ci], high[with_ci]),
            fmt="none",
            ecolor=color,
            elinewidth=1.4,
            capsize=3,
            zorder=2,
        )
        ax.plot(
            ratio[pick],
            y[pick],
            linestyle="none",
            marker="o",
            markersize=6,
            color=color,
            zorder=3,
            label=verdict,
        )
    ends = [v for v in (*ratio, *low, *high) if np.isfinite(v)]
    span = max([abs(v - 1) for v in ends] + [2 * threshold, 0.02]) * 1.15
    ax.set_xlim(1 - span, 1 + span)
    ax.set_ylim(len(frame) - 0.5, -0.5)  # first row on top
    ax.set_yticks(y)
    ax.set_yticklabels([str(k) for k in frame["key"]], fontsize=8)
    ax.tick_params(axis="y", labelleft=labels)  # panels beside the first share its labels
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{(v - 1) * 100:+.0f}%"))
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

"""Chart files: a figure per metric and group, and the regression gate's comparison.

Figures are made with `matplotlib.figure.Figure` directly (no pyplot, no global figure
state); PNGs are rendered by Agg, SVGs by the SVG backend. What goes on the axes is
metric_plots's, comparison_plots's, curve_plots's, time_plots's and idle_plots's (beside
this module); titles, captions and files are here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from bench.report.charts import (
    comparison_plots,
    cost_plots,
    curve_plots,
    idle_plots,
    metric_plots,
    time_plots,
)
from bench.report.charts.cost_plots import CostBar
from bench.report.charts.curve_plots import CapacityBar, CurveLine, ModelCurve
from bench.report.charts.idle_plots import IdleLine, MemoryBars
from bench.report.frame import Metric
from clients.result import Interval

# Stable SVG ids and text kept as text, so an unchanged run re-renders to the same bytes.
RC: Any = {"svg.hashsalt": "sockbench", "svg.fonttype": "none", "font.size": 10}


def save_metric_chart(
    cells: pd.DataFrame, metric: Metric, title: str, caption_text: str, stem: Path
) -> None:
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        # Log axes with one value per model warn about limits; that is not news here.
        warnings.simplefilter("ignore", UserWarning)
        fig = Figure(figsize=(8, 4.6), dpi=150, layout="constrained")
        ax = fig.add_subplot()
        metric_plots.plot_metric(ax, cells, metric.name, ylabel=metric.label, log_y=metric.log_y)
        ax.set_title(title, fontsize=11.5, loc="left")
        _save(fig, stem, caption_text)


def save_curve_chart(
    panels: Sequence[tuple[str, Sequence[CurveLine]]],
    targets: Sequence[tuple[str, float]],
    title: str,
    caption_text: str,
    stem: Path,
    *,
    ylabel: str,
    capacity_label: str = "capacity",
) -> None:
    """Load-latency curves: one panel per connection count, sharing the latency axis,
    every model a line (an overview: bench.report.curve_section draws it for a few models)."""
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig = Figure(figsize=(4.6 * len(panels) + 1.8, 4.4), dpi=150, layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (name, lines) in zip(axes, panels, strict=True):
            curve_plots.plot_curves(ax, lines, targets, name)
        axes[0].set_ylabel(ylabel)
        handles, labels = [], []
        for ax in axes:  # each model once in the legend
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        for mark in curve_plots.legend_handles(capacity_label, percentiles=False):
            handles.append(mark)
            labels.append(str(mark.get_label()))
        _legend_beside(axes[-1], handles, fontsize=8.5)
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def _legend_beside(ax: Any, handles: Sequence[Any], *, fontsize: float) -> None:
    """A legend right of `ax`, top-aligned with it: a figure legend "outside right"
    would sit level with the title and run into a long one."""
    ax.legend(handles=list(handles), loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0, frameon=False, fontsize=fontsize)  # fmt: skip


PANEL_SIZE = (3.5, 2.05)  # inches per small multiple: legible at the report's width
WRAP_COLUMNS = 2  # models wrap into this many columns: 3 shrinks text in the HTML report


def save_curve_multiples(
    models: Sequence[str],
    columns: Sequence[tuple[str, Mapping[str, ModelCurve]]],
    targets: Sequence[tuple[str, float]],
    title: str,
    caption_text: str,
    stem: Path,
    *,
    capacity_label: str,
) -> None:
    """Small multiples of the load-latency curves: a panel per model and connection count.

    `columns` are (label, {model: curve}) per connection count. With several counts, a
    row per model and a column per count; with one, the models wrap into WRAP_COLUMNS
    columns. Panels of one connection count share both axes, so their curves compare;
    each shows the other models' p99 faintly (bench.report.charts.curve_plots.plot_model_panel).
    """
    blocks = max(1, min(len(models), WRAP_COLUMNS // len(columns)))
    rows = math.ceil(len(models) / blocks)
    width = blocks * len(columns)
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig = Figure(
            figsize=(PANEL_SIZE[0] * width + 2.4, PANEL_SIZE[1] * rows + 1.0),
            dpi=150,
            layout="constrained",
        )
        grid = fig.add_gridspec(rows, width)
        leaders: dict[int, Any] = {}
        top_right: Any = None
        for index, model in enumerate(models):
            row, block = divmod(index, blocks)
            below = index + blocks < len(models)  # another panel under this one
            for j, (label, curves) in enumerate(columns):
                ax = fig.add_subplot(grid[row, block * len(columns) + j])
                if row == 0:
                    top_right = ax
                if j in leaders:  # one connection count: one pair of axes to compare on
                    ax.sharex(leaders[j])
                    ax.sharey(leaders[j])
                else:
                    leaders[j] = ax
                others = [c.line("p99") for name, c in curves.items() if name != model]
                curve_plots.plot_model_panel(
                    ax, curves.get(model), others, targets, f"{model} · {label}"
                )
                if below:
                    ax.tick_params(labelbottom=False)
                else:
                    ax.set_xlabel("achieved (req/s)", fontsize=8)
                if block:
                    ax.tick_params(labelleft=False)
        for j, (_label, curves) in enumerate(columns):
            limits = curve_plots.latency_range(list(curves.values()), targets)
            if limits is not None and j in leaders:
                leaders[j].set_ylim(*limits)
                leaders[j].set_xlim(0, curve_plots.throughput_range(list(curves.values())))
        fig.supylabel("latency, all requests (µs, log scale)", fontsize=9)
        handles = curve_plots.legend_handles(capacity_label, percentiles=True)
        _legend_beside(top_right, handles, fontsize=8)  # the first row's last panel
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def save_time_chart(
    intervals: Sequence[Interval],
    interval_s: float,
    title: str,
    caption_text: str,
    stem: Path,
    *,
    asked_rps: float | None = None,
) -> None:
    """Throughput and p99 per slice of one cell's window (and the backlog, if any):
    panels stacked on one time axis (bench.report.charts.time_plots)."""
    backlog = any(i.backlog for i in intervals)
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        heights = [1.0, 1.0, 0.7] if backlog else [1.0, 1.0]
        fig = Figure(figsize=(8, 1.4 + 1.7 * sum(heights)), dpi=150, layout="constrained")
        axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights)
        time_plots.plot_throughput(axes[0], intervals, interval_s, asked_rps=asked_rps)
        time_plots.plot_p99(axes[1], intervals, interval_s)
        if backlog:
            time_plots.plot_backlog(axes[2], intervals, interval_s)
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        axes[-1].set_xlabel("time in the measured window (s)")
        fig.suptitle(title, fontsize=11, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def save_capacity_chart(
    panels: Sequence[tuple[str, Sequence[CapacityBar]]],
    title: str,
    caption_text: str,
    stem: Path,
) -> None:
    """Capacities at one target: one panel per connection count, models sorted."""
    with matplotlib.rc_context(RC):
        rows = max((len(bars) for _, bars in panels), default=1)
        fig = Figure(
            figsize=(4.4 * len(panels) + 1.2, 1.4 + 0.34 * rows), dpi=150, layout="constrained"
        )
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (name, bars) in zip(axes, panels, strict=True):
            curve_plots.plot_capacities(ax, bars, name)
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def save_idle_chart(
    lines: Sequence[IdleLine],
    title: str,
    caption_text: str,
    stem: Path,
    *,
    ylabel: str,
    xlabel: str = idle_plots.IDLE_XLABEL,
    log_y: bool = False,
) -> None:
    """A figure against the idle (or slow: `xlabel`) connections beside the active ones,
    a line per model (bench.report.charts.idle_plots.plot_idle_lines)."""
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig = Figure(figsize=(8, 4.6), dpi=150, layout="constrained")
        ax = fig.add_subplot()
        idle_plots.plot_idle_lines(ax, lines, ylabel=ylabel, xlabel=xlabel, log_y=log_y)
        ax.set_title(title, fontsize=11.5, loc="left")
        _save(fig, stem, caption_text)


def save_memory_chart(
    bars: Sequence[MemoryBars], title: str, caption_text: str, stem: Path, *, xlabel: str
) -> None:
    """Memory per connection, a pair of bars per model (idle_plots.plot_memory_bars)."""
    with matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        height = 1.5 + 0.62 * max(len(bars), 1)
        fig = Figure(figsize=(8, height), dpi=150, layout="constrained")
        ax = fig.add_subplot()
        idle_plots.plot_memory_bars(ax, bars, xlabel=xlabel)
        ax.set_title(title, fontsize=11.5, loc="left")
        _save(fig, stem, caption_text)


def save_comparison_chart(
    records: list[dict[str, Any]],
    panels: list[tuple[str, str]],
    *,
    threshold: float,
    title: str,
    caption_text: str,
    stem: Path,
) -> None:
    """`stem`.png and .svg for `bench.gate.compare`: one forest-plot panel per (metric, xlabel).

    `records` are one dict per cell and metric: key, metric, ratio, ci_low, ci_high, verdict.
    """
    frame = pd.DataFrame.from_records(
        records, columns=["key", "metric", "ratio", "ci_low", "ci_high", "verdict"]
    )
    n_cells = frame["key"].nunique()
    with matplotlib.rc_context(RC):
        fig = Figure(
            figsize=(4.2 * len(panels) + 3, 1.8 + 0.32 * n_cells), dpi=150, layout="constrained"
        )
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for i, (ax, (metric, xlabel)) in enumerate(zip(axes, panels, strict=True)):
            comparison_plots.plot_comparison(
                ax,
                frame[frame["metric"] == metric].reset_index(drop=True),
                threshold=threshold,
                xlabel=xlabel,
                labels=i == 0,
            )
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:  # one legend for all panels, each verdict once
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        fig.legend(
            handles,
            labels,
            loc="outside upper right",
            ncols=len(labels),
            frameon=False,
            fontsize=8.5,
        )
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def save_cost_chart(
    bars: Sequence[CostBar], title: str, caption_text: str, alone_label: str, stem: Path
) -> None:
    """`bench cost`'s instructions per request, a bar per model (cost_plots)."""
    with matplotlib.rc_context(RC):
        paired = any(bar.alone is not None for bar in bars)
        height = 1.5 + (0.55 if paired else 0.36) * len(bars)
        fig = Figure(figsize=(8, height), dpi=150, layout="constrained")
        cost_plots.draw_cost_bars(
            fig.add_subplot(), bars, "instructions per request (user space)", alone_label
        )
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def _save(fig: Figure, stem: Path, caption_text: str) -> None:
    """Caption, then PNG and SVG beside each other.

    No timestamps in files: re-rendering an unchanged run gives identical bytes.
    bbox "tight": nothing (a long legend or caption) is cut off at the edges.
    """
    fig.supxlabel(caption_text, fontsize=7, color="0.35", x=0.01, ha="left", multialignment="left")
    fig.savefig(stem.with_suffix(".png"), dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(
        stem.with_suffix(".svg"), bbox_inches="tight", metadata={"Date": None, "Creator": None}
    )

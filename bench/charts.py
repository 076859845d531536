"""Chart files: a figure per metric and group, and the regression gate's comparison.

Figures are made with `matplotlib.figure.Figure` directly (no pyplot, no global figure
state); PNGs are rendered by Agg, SVGs by the SVG backend. What goes on the axes is
bench.plots's; titles, captions and files are here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from bench import curve_plots, plots
from bench.curve_plots import CapacityBar, CurveLine
from bench.frame import Metric

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
        plots.plot_metric(ax, cells, metric.name, ylabel=metric.label, log_y=metric.log_y)
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
) -> None:
    """Load-latency curves: one panel per connection count, sharing the latency axis."""
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
        fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=8.5)
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
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


def save_comparison_chart(
    records: list[dict[str, Any]],
    panels: list[tuple[str, str]],
    *,
    threshold: float,
    title: str,
    caption_text: str,
    stem: Path,
) -> None:
    """`stem`.png and .svg for `bench.compare`: one forest-plot panel per (metric, xlabel).

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
            plots.plot_comparison(
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

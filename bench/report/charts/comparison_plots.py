"""Drawing the regression gate's forest plot onto a given Axes: one row per cell, the
change of one metric with its interval (bench.gate.compare; the figure and its files are
bench.report.charts.figures's)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes

from bench.report.charts.style import bar_lengths


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
            xerr=bar_lengths(ratio[with_ci], low[with_ci], high[with_ci]),
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

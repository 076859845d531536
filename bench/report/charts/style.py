"""The look every chart shares: one colour and marker per model (MODEL_STYLES), so a
reader learns them once, the lower-bound mark, plain numbers on the axes, and error bars
from intervals. Used by every module here that draws onto Axes; no drawing of its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np
from matplotlib.lines import Line2D

from bench.report.frame import PY, RUN_SEP


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


def plain_number(value: float, _pos: int) -> str:
    """A tick label as a reader writes the number: 0, 41,000, 2.5, 0.013."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:g}"
    return f"{value:.2g}"


def bar_lengths(mid: Any, low: Any, high: Any) -> Any:
    """matplotlib's asymmetric error bars for an interval around `mid`: one (2, n) array
    of lengths below and above (a list of two arrays is deprecated); never negative,
    where an interval does not contain its point estimate."""
    below = np.maximum(np.asarray(mid, dtype=float) - low, 0)
    above = np.maximum(high - np.asarray(mid, dtype=float), 0)
    return np.vstack([np.atleast_1d(below), np.atleast_1d(above)])


# Legend entries for the marks a chart shows, alike on every chart that shows them.
def interval_handle(label: str) -> Line2D:
    """A bar: the interval of the median."""
    return Line2D(
        [], [], linestyle="none", marker="|", markersize=12, markeredgewidth=1.2,
        color="0.35", label=label,
    )  # fmt: skip


def suspect_handle() -> Line2D:
    """A hollow marker: a suspect cell."""
    return Line2D(
        [], [], linestyle="none", marker="o", markersize=7, markerfacecolor="white",
        markeredgecolor="0.35", markeredgewidth=1.6,
        label="hollow: suspect\n(see the Verdicts section)",
    )  # fmt: skip


def lower_bound_handle(label: str) -> Line2D:
    """An arrow above a point: a lower bound."""
    return Line2D(
        [], [], linestyle="none", marker=LOWER_MARKER, markersize=11, color="0.35",
        label=label,
    )  # fmt: skip

"""The report as a document: facts, legend, one section per group of cells with its
tables and charts, and the notes. Rendered by bench.report_md and bench.report_html."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.frame import Metric, model_sort_key

CLIENT_BOUND_MARK = "†"
PARTIAL_MARK = "‡"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: bool = True  # right-align every column but the first


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)  # (title, path without ext)


@dataclass
class Document:
    title: str
    facts: list[tuple[str, str]]
    legend: list[str]
    sections: list[Section]
    notes: Table | None


def group_slug(cell: dict[str, Any] | pd.Series) -> str:
    """File-name part for a protocol x payload (x non-default axes) group."""
    slug = f"{cell['cell.protocol']}_p{int(cell['cell.payload'])}"
    if cell["cell.mode"] != "persistent":
        slug += f"_{cell['cell.mode']}"
    if cell["cell.driver"] != "loadgen":
        slug += f"_{cell['cell.driver']}"
    if int(cell["cell.backlog"]):
        slug += f"_b{int(cell['cell.backlog'])}"
    if cell["cell.work"]:
        slug += f"_w{cell['cell.work']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", slug)


def group_title(cell: dict[str, Any] | pd.Series) -> str:
    parts = [str(cell["cell.protocol"]), f"{int(cell['cell.payload'])} B payload"]
    if cell["cell.mode"] != "persistent":
        parts.append(f"{cell['cell.mode']} connections")
    if cell["cell.driver"] != "loadgen":
        parts.append(f"driver {cell['cell.driver']}")
    if int(cell["cell.backlog"]):
        parts.append(f"backlog {int(cell['cell.backlog'])}")
    if cell["cell.work"]:
        parts.append(f"work {cell['cell.work']}")
    return ", ".join(parts)


def format_cell(cell: pd.Series, metric: Metric) -> str:
    """A table entry: median [± CI half-width] plus markers, or the cell's status."""
    if cell["status"] in ("failed", "skipped"):
        return str(cell["status"])
    median = cell[f"{metric.name}.median"]
    if pd.isna(median):
        return "n/a"
    text = format(median, metric.fmt)
    if metric.ci:
        low, high = cell[f"{metric.name}.ci_low"], cell[f"{metric.name}.ci_high"]
        half = (high - low) / 2
        if not pd.isna(half):  # a single repeat has no interval: show the value alone
            text += f" ± {format(half, metric.fmt)}"
    if cell["status"] == "client-bound":
        text += f" {CLIENT_BOUND_MARK}"
    if cell["n_failed"]:
        text += f" {PARTIAL_MARK}"
    return text


def metric_table(cells: pd.DataFrame, metric: Metric) -> Table:
    """Rows: connections; columns: models; for one group."""
    models = sorted(cells["cell.model"].unique(), key=model_sort_key)
    header = ["connections", *models]
    rows = []
    for conns in sorted(cells["cell.connections"].unique()):
        row = [f"{int(conns):,}"]
        for model in models:
            match = cells[(cells["cell.model"] == model) & (cells["cell.connections"] == conns)]
            row.append(format_cell(match.iloc[0], metric) if not match.empty else "")
        rows.append(row)
    return Table(metric.label, header, rows)


LEGEND = [
    'Each value is the median over a cell\'s repeats; "± x" is the half-width of the 95% '
    "t-interval of the mean across repeats (absent with a single repeat).",
    f"{CLIENT_BOUND_MARK} client-bound: the load generator saturated a CPU, so throughput is "
    "a lower bound on what the server can do.",
    f"{PARTIAL_MARK} some repeats of this cell failed; the value uses the others.",
    '"failed": every repeat failed (see Notes); "skipped": not runnable on this machine; '
    "empty: not in the matrix.",
]


def notes_table(df: pd.DataFrame) -> Table | None:
    """Every failed, skipped or client-bound repeat with its reason."""
    odd = df[df["status"] != "ok"]
    if odd.empty:
        return None
    rows = [
        [
            str(r["key"]),
            str(int(r["repeat"])),
            str(r["status"]),
            str(r["reason"]) if isinstance(r["reason"], str) else "",
        ]
        for _, r in odd.iterrows()
    ]
    return Table(
        "Notes: failed, skipped and client-bound repeats",
        ["cell", "repeat", "status", "reason"],
        rows,
        numeric=False,
    )

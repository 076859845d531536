"""The report's "Over time" section: throughput and p99 through the window of every
repeat whose verdict is non-stationary (bench.analysis.verdict), so a reader sees the drift the
verdict found instead of taking a word for it.

A chart per such row (one repeat of one cell), up to MAX_CHARTS; the section's table
lists every one of them with what the verdict found and whether it is drawn. Rows come
straight from the store (bench.record.Row): the slices are the load result's
`intervals`, read by attribute.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bench.analysis.curves import load_rate
from bench.record import USABLE, Row
from bench.report.charts.figures import save_time_chart
from bench.report.document import Section, Table
from bench.report.frame import model_sort_key
from clients.wire import describe

CODE = "non-stationary"  # bench.analysis.verdict's reason code
MAX_CHARTS = 12  # beyond this the section is a wall of charts: the rest are listed


def non_stationary(rows: Sequence[Row]) -> list[Row]:
    """The usable rows a non-stationary verdict was given, in the report's order:
    group, model (registry order), connections, offered load, repeat."""
    found = [
        r
        for r in rows
        if r.status in USABLE and r.load is not None and any(x.code == CODE for x in r.reasons)
    ]
    return sorted(
        found,
        key=lambda r: (
            r.cell.protocol,
            r.cell.payload,
            r.cell.mode,
            r.cell.driver,
            r.cell.backlog,
            r.cell.work,
            model_sort_key(r.cell.model),
            r.cell.connections,
            load_rate(r.cell.load, r.probe_rps) or 0.0,
            r.cell.load,
            r.repeat,
        ),
    )


def spread(rows: Sequence[Row], limit: int) -> list[Row]:
    """Up to `limit` rows, taken in turn from each model (each model's first, then its
    second, ...), kept in the given order: a cap should not spend every chart on the
    first model in the list."""
    by_model: dict[str, list[Row]] = {}
    for row in rows:
        by_model.setdefault(row.cell.model, []).append(row)
    chosen: list[Row] = []
    depth = 0
    while len(chosen) < min(limit, len(rows)):
        chosen += [queue[depth] for queue in by_model.values() if depth < len(queue)][
            : limit - len(chosen)
        ]
        depth += 1
    keep = {id(r) for r in chosen}
    return [r for r in rows if id(r) in keep]


def load_text(row: Row) -> str:
    """The offered load in words: closed loop, or the open loop's rate."""
    load = row.cell.load
    if not load:
        return "closed loop"
    rate = load_rate(load, row.probe_rps)
    if load.startswith("f") and rate is not None:
        return f"open loop at {load[1:]} of the probed capacity ({rate:,.0f} req/s)"
    if rate is not None:
        return f"open loop at {rate:,.0f} req/s"
    return f"offered load {load}"


def cell_title(row: Row) -> str:
    """Model, protocol, connections, load and repeat: which window this is."""
    cell = row.cell
    conns = f"{cell.connections:,} connection{'' if cell.connections == 1 else 's'}"
    return (
        f"{cell.model}, {describe(cell.protocol, cell.payload)}, {conns}, {load_text(row)}, "
        f"repeat {row.repeat}"
    )


def finding(row: Row) -> str:
    """What the verdict found: its non-stationary reason's sentence."""
    return "; ".join(r.text for r in row.reasons if r.code == CODE)


def time_section(rows: Sequence[Row], charts_dir: Path, caption: str) -> Section | None:
    """The section, or None when no row is non-stationary."""
    found = non_stationary(rows)
    if not found:
        return None
    drawn = spread(found, MAX_CHARTS)
    left = [r for r in found if r not in drawn]
    section = Section("Over time: non-stationary cells")
    section.paragraphs = [
        f"{len(found)} repeat{'s' if len(found) != 1 else ''} had a window that was not "
        "steady: throughput or p99 moved between its first and last thirds "
        "(docs/verdicts.md). Each chart shows the window slice by slice, the thirds the "
        "verdict compares shaded, and their figures in red."
    ]
    if left:
        section.paragraphs.append(
            f"Charts for {MAX_CHARTS} of them, taken in turn from each model; {len(left)} "
            "more are in the table without one: "
            + ", ".join(f"{r.cell.key} r{r.repeat}" for r in left)
            + "."
        )
    table_rows = []
    for row in found:
        table_rows.append([row.cell.key, str(row.repeat), finding(row), _yes(row in drawn)])
    section.tables = [
        Table(
            "Non-stationary windows",
            ["cell", "repeat", "the verdict found", "chart"],
            table_rows,
            numeric=False,
        )  # fmt: skip
    ]
    for row in drawn:
        assert row.load is not None  # non_stationary() keeps rows with a load result
        title = f"Over time: {cell_title(row)}"
        stem = f"over_time_{slug(row)}"
        save_time_chart(
            row.load.intervals,
            row.load.interval_s,
            title,
            f"Verdict: {finding(row)}.\n{caption}",
            charts_dir / stem,
            asked_rps=row.load.rate.asked,
        )
        section.charts.append((title, f"charts/{stem}"))
    return section


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def slug(row: Row) -> str:
    """File-name part: the cell key and the repeat. No dots: Path.with_suffix would take
    "f0.5" for a suffix."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", f"{row.cell.key}_r{row.repeat}")

"""The summary `bench run` prints at its end: one compact plain-text table of the run.

Per group of closed-loop cells (bench.report.frame.GROUP_COLUMNS, titled as the report titles
it: clients.wire.describe() and the non-default axes), one line per model and connection
count, in the report's order: median throughput, the width of its interval of the median, the median
p99 of all requests (≥ when a lower bound), starved connections as % of connections,
and the report's marks. Failed and skipped cells say why, in short. Open-loop, sweep and
search cells are only counted: the report draws them. Built from bench.report.frame, so it
agrees with the report figure for figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench.analysis.stats import median_interval
from bench.record import Row
from bench.report.document import (
    CLIENT_BOUND_MARK,
    PARTIAL_MARK,
    SUSPECT_MARK,
    cell_marks,
    group_title,
)
from bench.report.frame import GROUP_COLUMNS, METRICS, aggregate, load_frame, value_format
from clients.result import LOWER_BOUND_MARK

WIDTH = 100  # no line is longer
MAX_LINES = 60  # table lines (titles, headers, cells) before the rest is left to the report
MODEL_WIDTH = 28  # a longer model name (an external server's) is cut with "…"
INDENT = "  "
HEADER = ("model", "connections", "req/s", "±", "p99 µs", "starved")

MARK_LEGEND = {
    CLIENT_BOUND_MARK: "client-bound (the load generator was the bottleneck: throughput is "
    "a lower bound)",
    SUSPECT_MARK: "suspect (a check failed: see the report's Verdicts)",
    PARTIAL_MARK: "some repeats failed (the value uses the others)",
    LOWER_BOUND_MARK: "lower bound (requests unanswered at the end decide this p99)",
}


P99 = next(m for m in METRICS if m.name == "p99")

ONE_REPEAT = (
    "one repeat per cell: no interval, and no difference between two lines is shown to "
    "be more than noise (--repeats 6 or --profile reference to rank them)"
)


def _number(value: Any, spec: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(float(value), spec)


def _spread(cell: pd.Series) -> str:
    """The interval of the median's wider side, % of the median; "" without one."""
    median, low, high = (cell[f"throughput.{s}"] for s in ("median", "ci_low", "ci_high"))
    if any(pd.isna(v) for v in (median, low, high)) or not median:
        return ""
    return f"{100.0 * max(median - low, high - median) / median:.0f}%"


def _short(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def _cells_line(cell: pd.Series) -> tuple[list[str], list[str]]:
    """(the row's texts under HEADER plus its marks, the marks used)."""
    model = _short(str(cell["cell.model"]), MODEL_WIDTH)
    connections = f"{int(cell['cell.connections']):,}"
    if cell["status"] in ("failed", "skipped"):
        reason = cell["reason"] if isinstance(cell["reason"], str) else ""
        return [model, connections, f"{cell['status']}: {reason}".rstrip(": ")], []
    p99 = _number(cell["p99.median"], value_format(P99, cell))
    bound = bool(cell["p99.bound"]) and p99 != "n/a"
    starved = _number(cell["starved_share.median"], ".1f")
    marks = cell_marks(cell)
    texts = [
        model,
        connections,
        _number(cell["throughput.median"], ",.0f"),
        _spread(cell),
        f"{LOWER_BOUND_MARK}{p99}" if bound else p99,
        starved if starved == "n/a" else f"{starved}%",
        " ".join(marks),
    ]
    return texts, [*marks, *([LOWER_BOUND_MARK] if bound else [])]


def _widths(rows: Sequence[list[str]]) -> list[int]:
    """Column widths over every shown row and the header; a failed or skipped row's
    text (its third entry) runs on to the width's end, so it sets none beyond two."""
    widths = [len(h) for h in HEADER]
    for row in rows:
        for column, text in enumerate(row[: len(HEADER)] if len(row) > 3 else row[:2]):
            widths[column] = max(widths[column], len(text))
    return widths


def _render(rows: Sequence[list[str]], widths: list[int], spread: bool) -> list[str]:
    """The header and the rows aligned: the model left, the numbers right, the marks
    after them."""
    numbers = [2, 3, 4, 5] if spread else [2, 4, 5]
    lines = []
    for row in [[*HEADER, ""], *rows]:
        parts = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        if len(row) > 3:
            parts += [row[c].rjust(widths[c]) for c in numbers]
            lines.append(INDENT + "  ".join([*parts, row[-1]]).rstrip())
        else:
            head = INDENT + "  ".join(parts) + "  "
            lines.append(head + _short(row[2], WIDTH - len(head)))
    return lines


def _legend(marks: set[str], repeats: set[int], spread: bool) -> list[str]:
    notes = []
    if spread:
        coverage = ", ".join(
            f"{median_interval(range(n)).coverage:.0%} with {n} repeats"
            for n in sorted(repeats)
            if n >= 2
        )
        notes.append(f"±: interval of the median, its wider side in % ({coverage})")
    notes += [f"{mark} {text}" for mark, text in MARK_LEGEND.items() if mark in marks]
    if repeats and max(repeats) < 2:  # how sure: with one repeat, not at all
        notes.append(ONE_REPEAT)
    lines: list[str] = []
    for index, note in enumerate(notes):  # lines break between notes where they can
        note += "." if index == len(notes) - 1 else ";"
        if lines and len(lines[-1]) + 1 + len(note) <= WIDTH:
            lines[-1] += " " + note
        else:
            lines += textwrap.wrap(
                note, WIDTH, initial_indent=INDENT if lines else "", subsequent_indent=INDENT
            )
    return lines


def _open_loop_note(rows: pd.DataFrame) -> list[str]:
    """One line counting the cells the table leaves to the report (`rows`: theirs)."""
    if rows.empty:
        return []
    search = rows["cell.search"] if "cell.search" in rows.columns else pd.Series("", rows.index)
    searched = search.fillna("") != ""
    counts = [
        (rows[~searched]["key"].nunique(), "open-loop cell", "open-loop cells"),
        (rows[searched]["key"].nunique(), "search step", "search steps"),
    ]
    said = " and ".join(f"{n:,} {one if n == 1 else many}" for n, one, many in counts if n)
    return [f"{said}: not in this table, see the report."]


def terminal_summary(rows: Sequence[Row], max_lines: int = MAX_LINES) -> str:
    """The run at a glance, no line over WIDTH columns. Groups whose lines would pass
    `max_lines` are counted, not shown (the first group is cut short instead)."""
    if not rows:
        return "No rows in this run."
    frame = load_frame(rows)
    cells = aggregate(frame)
    closed = cells[cells["cell.load"].fillna("") == ""]
    groups = [g for _, g in closed.groupby(GROUP_COLUMNS, sort=False, dropna=False)]
    shown: list[pd.DataFrame] = []
    used = 0
    for index, group in enumerate(groups):
        room = max_lines - used - 2  # the group's title and header
        if len(group) > room:
            if index:
                break
            group = group.iloc[: max(room, 1)]
        shown.append(group)
        used += len(group) + 2
    spread = bool((closed["n"] > 1).any())
    tables = [[_cells_line(cell) for _, cell in group.iterrows()] for group in shown]
    widths = _widths([texts for table in tables for texts, _ in table])
    lines: list[str] = []
    for group, table in zip(shown, tables, strict=True):
        lines.append(group_title(group.iloc[0]))
        lines += _render([texts for texts, _ in table], widths, spread)
    left = len(closed) - sum(len(g) for g in shown)
    if left:
        more = f"{left:,} more {'cell' if left == 1 else 'cells'}"
        if (groups_left := len(groups) - len(shown)) > 0:
            more += f" in {groups_left:,} more {'group' if groups_left == 1 else 'groups'}"
        lines.append(f"… {more}: see the report.")
    marks = {mark for table in tables for _, used_marks in table for mark in used_marks}
    repeats = {int(n) for group in shown for n in group["n"] if n}
    lines += _legend(marks, repeats, spread)
    lines += _open_loop_note(frame[frame["cell.load"].fillna("") != ""])
    return "\n".join(lines)

"""The report's slow-connection section (bench run --slow, docs/slow.md): what slow clients
cost the well-behaved ones.

A group is the cells of one request kind (bench.report.frame.GROUP_COLUMNS but the slow
axis) at one active-connection count and offered load; it gets a section per slow mode
swept, of the models it has at more than one count of slow connections (a cell at 0 slow
ones is every mode's baseline). Per model, against the slow connections: the active
clients' p99 of all requests, their throughput and their starved share (connections that
got no reply in the window), the median over repeats with the interval of the median, a
line per model; and a table with each figure at 0 and at the most slow connections, p99's
ratio between the two, and what the slow connections themselves got done.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.record import USABLE
from bench.report.charts.figures import save_idle_chart
from bench.report.document import Section, Table, format_cell, group_slug, group_title
from bench.report.frame import GROUP_COLUMNS, METRICS, aggregate, model_sort_key
from bench.report.idle_section import cell_notes, line_end, model_line

# one section's cells: a request kind at one active-connection count and offered load
SECTION_COLUMNS = [
    *(c for c in GROUP_COLUMNS if c not in ("cell.slow", "cell.slow_mode")),
    "cell.connections",
    "cell.load",
]
_METRIC = {m.name: m for m in METRICS}
X = "cell.slow"  # the charts' x: a line per model against the slow connections
LATE_SHARE = 0.05  # of the slow connections' byte slots served late: said in the table
# (metric, chart file stem, axis label, log axis)
FIGURES = (
    ("p99", "slow_latency_p99", "p99 latency of the active clients, all requests (µs)", True),
    ("throughput", "slow_throughput", "Throughput of the active clients (req/s)", False),
    ("starved_share", "slow_starved", "Starved active connections (% of them)", False),
)
NOTE = (
    "{slow} beside {active} (closed loop), each a connection of its own from a holder "
    "process on the load generator's CPUs: {what}, one byte every {interval} ms, every reply "
    "checked. What do they cost the well-behaved clients? p99 is of the active clients' "
    "requests, the unanswered ones at their wait so far (≥: a lower bound); starved: active "
    "connections that got no reply in the whole window (a thread pool whose workers the slow "
    "ones hold; a cell whose every active connection starved is a finding, throughput 0, not "
    "a failure). Points are the median over repeats, bars the interval of the median; p99 is "
    "on a log axis, so equal ratios look equal. A line ends where the next count failed, with "
    "why. The slow connections' own requests per second are in the last column "
    "(docs/slow.md)."
)
WHAT = {
    "sender": "each sends its requests a byte at a time",
    "reader": "each reads its replies a byte at a time through a small receive buffer",
}


def has_slow_axis(frame: pd.DataFrame) -> bool:
    """Whether any row had slow connections beside its active ones (bench run --slow)."""
    if frame.empty or "cell.slow" not in frame.columns:
        return False
    return bool((pd.to_numeric(frame["cell.slow"], errors="coerce").fillna(0) != 0).any())


def slow_sections(frame: pd.DataFrame, charts_dir: Path, caption: str) -> list[Section]:
    """A section per group and slow mode, of the models swept over more than one count of
    slow connections; none for a run without a slow axis. Search steps are left out."""
    if not has_slow_axis(frame):
        return []
    rows = frame[frame["cell.search"].fillna("") == ""]
    sections: list[Section] = []
    for _, group in rows.groupby(SECTION_COLUMNS, sort=False, dropna=False):
        slowed = group[group["cell.slow"] != 0]
        for mode in sorted(set(slowed["cell.slow_mode"]), reverse=True):  # senders first
            mine = group[(group["cell.slow"] == 0) | (group["cell.slow_mode"] == mode)]
            swept = mine[mine.groupby("cell.model")["cell.slow"].transform("nunique") > 1]
            if not swept.empty:
                sections.append(_section(swept, str(mode), charts_dir, caption))
    return sections


def _section(rows: pd.DataFrame, mode: str, charts_dir: Path, caption: str) -> Section:
    cells = aggregate(rows)
    base = cells.iloc[0].copy()
    base["cell.slow"] = 0  # the group's title and files without a count of slow ones
    active = int(base["cell.connections"])
    load = str(base["cell.load"] or "")
    title = f"{group_title(base)}, {active:,} active connection{'' if active == 1 else 's'}"
    title += (f", open loop {load}" if load else "") + f", slow {mode}s"
    slug = f"{group_slug(base)}_c{active}" + (f"_{load}" if load else "") + f"_slow{mode}"
    models = sorted({str(m) for m in cells["cell.model"]}, key=model_sort_key)
    counts = sorted(int(c) for c in cells["cell.slow"].unique())
    interval = pd.to_numeric(rows["slow.interval_ms"], errors="coerce").dropna()
    section = Section(f"Slow connections: {title}")
    section.paragraphs = [
        NOTE.format(
            slow=f"Slow connections ({counts[0]:,} to {counts[-1]:,})",
            active=f"{active:,} active ones",
            what=WHAT[mode],
            interval=f"{interval.iloc[0]:g}" if not interval.empty else "?",
        )
    ]
    section.tables = [_table(rows, cells, models, counts)]
    for name, stem, label, log_y in FIGURES:
        lines = [line for m in models if (line := model_line(cells, m, name, X)) is not None]
        chart_title = f"{label.split(' (')[0]} vs slow connections: {title}"
        save_idle_chart(
            lines,
            chart_title,
            "Median over repeats, bars the interval of the median; hollow: suspect; arrow: "
            "a lower bound. A line ends at its last usable count, with why.\n" + caption,
            charts_dir / f"{stem}_{slug}",
            ylabel=label,
            xlabel=f"slow {mode}s beside the active connections",
            log_y=log_y,
        )
        section.charts.append((chart_title, f"charts/{stem}_{slug}"))
    return section


def _table(rows: pd.DataFrame, cells: pd.DataFrame, models: list[str], counts: list[int]) -> Table:
    """A row per model: each figure at the fewest and the most slow connections, p99's
    ratio, and the slow connections' own requests per second at the most."""
    low, high = counts[0], counts[-1]
    header = [
        "model",
        f"p99 µs at {low:,}",
        f"p99 µs at {high:,}",
        f"p99 × at {high:,}",
        f"req/s at {low:,}",
        f"req/s at {high:,}",
        f"starved % at {low:,}",
        f"starved % at {high:,}",
        f"slow ones' req/s at {high:,}",
        "read with care",
    ]
    table = []
    for model in models:
        at_low, at_high = _at(cells, model, low), _at(cells, model, high)
        line = [model]
        line += [_text(at_low, "p99"), _text(at_high, "p99"), _ratio(at_low, at_high)]
        line += [_text(at_low, "throughput"), _text(at_high, "throughput")]
        line += [_text(at_low, "starved_share"), _text(at_high, "starved_share")]
        line += [_slow_rate(rows, model, high), _care(rows, cells, model)]
        table.append(line)
    return Table("The active clients against the slow connections beside them", header, table)


def _at(cells: pd.DataFrame, model: str, count: int) -> pd.Series | None:
    match = cells[(cells["cell.model"] == model) & (cells["cell.slow"] == count)]
    return match.iloc[0] if not match.empty else None


def _text(cell: pd.Series | None, metric: str) -> str:
    return "" if cell is None else format_cell(cell, _METRIC[metric])


def _ratio(low: pd.Series | None, high: pd.Series | None) -> str:
    """p99 at the most slow connections over p99 at the fewest ("≥" where the former is
    a lower bound; "≤" where the latter is one, n/a where both are)."""
    if low is None or high is None or not all(c["status"] in USABLE for c in (low, high)):
        return ""
    a, b = float(low["p99.median"]), float(high["p99.median"])
    if not a > 0 or pd.isna(b):
        return "n/a"
    if bool(low["p99.bound"]) and bool(high["p99.bound"]):
        return "n/a (both lower bounds)"
    mark = "≥" if bool(high["p99.bound"]) else ("≤" if bool(low["p99.bound"]) else "")
    return f"{mark}{b / a:,.2f}"


def _slow_rate(rows: pd.DataFrame, model: str, count: int) -> str:
    """The slow connections' requests completed per second held, median over repeats."""
    mine = rows[(rows["cell.model"] == model) & (rows["cell.slow"] == count)]
    mine = mine[mine["status"].isin(USABLE)]
    held = pd.to_numeric(mine["slow.held_s"], errors="coerce")
    rate = (pd.to_numeric(mine["slow.requests"], errors="coerce") / held.where(held > 0)).dropna()
    return f"{rate.median():,.1f}" if not rate.empty else "n/a"


def _care(rows: pd.DataFrame, cells: pd.DataFrame, model: str) -> str:
    """What a reader of this model's line should know: an early end, slow connections
    that fell behind their schedule, client-bound or suspect cells."""
    notes = []
    mine = rows[(rows["cell.model"] == model) & rows["status"].isin(USABLE)]
    ticks = pd.to_numeric(mine["slow.ticks"], errors="coerce").sum()
    late = pd.to_numeric(mine["slow.late"], errors="coerce").sum()
    if ticks and late / ticks > LATE_SHARE:
        notes.append(
            f"{late / ticks:.0%} of the slow ones' bytes over an interval late (their "
            "holders lacked CPU: the server got less than the schedule)"
        )
    if (why := line_end(cells, model, "p99", X)[1]) is not None:
        notes.append(f"ends early: {why}")
    return "; ".join(notes + cell_notes(cells, model))

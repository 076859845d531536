"""The report's idle-connection sections (bench run --idle): the libevent benchmark's chart,
and memory per connection.

A group is the cells of one request kind (bench.report.frame.GROUP_COLUMNS but the idle
count) at one active-connection count and offered load; it gets its sections when it has
more than one count of idle connections. Per model:

- server CPU per request (process view) and p99 of all requests against the idle
  connections, the median over repeats with the interval of the median; a line ends at
  the model's last usable count, with why the next one failed or was skipped written there;
- the slope of CPU per request against the idle connections held, over every usable
  repeat's point (Theil-Sen with Sen's distribution-free interval, bench.analysis.slope), in
  µs per request per 1,000 idle connections;
- memory per connection: the slopes of the server's memory at rest (USS where every
  repeat has it, else RSS), of the kernel's socket caches (machine-wide) and of its threads
  against the idle connections held (`idle.held`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.slope import Slope, slope
from bench.record import USABLE
from bench.report.charts.figures import save_idle_chart, save_memory_chart
from bench.report.charts.idle_plots import Estimate, IdleLine, MemoryBars
from bench.report.document import Section, Table, format_cell, group_slug, group_title
from bench.report.frame import GROUP_COLUMNS, METRICS, aggregate, model_sort_key

# one section's cells: a request kind at one active-connection count and offered load
SECTION_COLUMNS = [
    *(c for c in GROUP_COLUMNS if c != "cell.idle"),
    "cell.connections",
    "cell.load",
]
MIN_COUNTS = 3  # a slope through fewer counts of idle connections is a guess
PER = 1000  # CPU slopes per this many idle connections
REASON_CHARS = 90  # a line's end reason on the chart, cut at a word
KERNEL_STACK = "KernelStack"  # bench.run.memory keeps the kernel stacks under this name
_METRIC = {m.name: m for m in METRICS}

CPU_NOTE = (
    "{held} held open beside {active} by a process of their own ({mode}). The libevent "
    "benchmark's question: what does each idle connection cost the requests of the active "
    "ones? Server CPU per request is the process view (the server's CPU time in the "
    "window per request answered); points are the median over repeats, bars the interval "
    "of the median. The x axis is linear from 0: a cost per watched descriptor (poll's "
    "and select's scan) is then a straight line whose steepness is the table's slope, and "
    "0 idle, the baseline, is on the axis (a log axis cannot show it). The slope is Sen's "
    "over every usable repeat's point (x: the connections held), with its distribution-"
    "free interval and that interval's coverage. Do not believe a slope from fewer than "
    f"{MIN_COUNTS} idle counts, nor one whose model ends early (its line stops where the "
    "next count failed, with why). A client-bound cell (†, hollow when suspect) still "
    "measures the server's CPU per request; its latency is the load generator's."
)
MEMORY_NOTE = (
    "Memory per idle connection: the slope, over every usable repeat, of the server at "
    "rest (read just before the window, its whole process tree) against the idle "
    "connections it held, with Sen's interval and its coverage. User space: USS (what the "
    "server alone holds) where every repeat has it, else RSS. Kernel: the socket caches of "
    "/proc/slabinfo (TCP, sock_inode_cache, filp, dentry, eventpoll_epi, ...) and the kernel "
    "stacks, summed, less the objects the idle holders' own ends hold (docs/idle.md: "
    "counted per connection, cache by cache): the server's side; the caches are "
    "machine-wide, so anything else that opened sockets meanwhile counts too. Threads per "
    "connection: 1 for a thread per connection, whose stack is in its RSS and its kernel "
    "stack in the kernel's figure. Do not believe a slope from fewer than "
    f"{MIN_COUNTS} counts of held connections."
)


def has_idle_axis(frame: pd.DataFrame) -> bool:
    """Whether any row held idle connections beside its active ones (bench run --idle)."""
    if frame.empty or "cell.idle" not in frame.columns:
        return False
    return bool((pd.to_numeric(frame["cell.idle"], errors="coerce").fillna(0) != 0).any())


def idle_label(idle: Any, mode: Any) -> str:
    """ "5,000 idle connections", "(silent)" after those that never spoke."""
    count = int(idle)
    text = f"{count:,} idle connection{'' if count == 1 else 's'}"
    return f"{text} (silent)" if mode == "silent" else text


def idle_slug(idle: Any, mode: Any) -> str:
    """The file-name part of an idle count, as the cell key writes it: `_i5000`, `_i5000s`."""
    return f"_i{int(idle)}" + ("s" if mode == "silent" else "")


def idle_sections(frame: pd.DataFrame, charts_dir: Path, caption: str) -> list[Section]:
    """The CPU and the memory section of each group with more than one idle count, of the
    models it has at more than one; none for a run without an idle axis. Search steps are
    left out (their rates differ)."""
    if not has_idle_axis(frame):
        return []
    rows = frame[frame["cell.search"].fillna("") == ""]
    sections: list[Section] = []
    for _, group in rows.groupby(SECTION_COLUMNS, sort=False, dropna=False):
        # the models swept over idle counts; another grid's cells at 0 idle are not a line
        swept = group[group.groupby("cell.model")["cell.idle"].transform("nunique") > 1]
        if not swept.empty:
            sections += _sections(swept, charts_dir, caption)
    return sections


def _sections(rows: pd.DataFrame, charts_dir: Path, caption: str) -> list[Section]:
    cells = aggregate(rows)
    first = cells.iloc[0]
    active = int(first["cell.connections"])
    load, silent = str(first["cell.load"] or ""), first["cell.idle_mode"] == "silent"
    title = f"{group_title(first)}, {active:,} active connection{'' if active == 1 else 's'}"
    title += (f", open loop {load}" if load else "") + (", silent idle ones" if silent else "")
    slug = f"{group_slug(first)}_c{active}" + (f"_{load}" if load else "")
    slug += "_silent" if silent else ""
    models = sorted({str(m) for m in cells["cell.model"]}, key=model_sort_key)
    counts = sorted(int(c) for c in cells["cell.idle"].unique())
    cpu = Section(f"Idle connections: {title}")
    cpu.paragraphs = [
        CPU_NOTE.format(
            held=f"Idle connections ({counts[0]:,} to {counts[-1]:,})",
            active=f"{active:,} active",
            mode="silent: they never spoke" if silent else "warm: one request each first",
        )
    ]
    cpu.tables = [_cpu_table(rows, cells, models, counts)]
    for name, stem, what in (
        ("cpu_per_request", "idle_cpu_per_request", "Server CPU per request (µs)"),
        ("p99", "idle_latency_p99", "p99 latency, all requests (µs)"),
    ):
        lines = [line for m in models if (line := model_line(cells, m, name)) is not None]
        chart_title = f"{what.split(' (')[0]} vs idle connections: {title}"
        save_idle_chart(
            lines,
            chart_title,
            _chart_note(name) + caption,
            charts_dir / f"{stem}_{slug}",
            ylabel=what,
        )
        cpu.charts.append((chart_title, f"charts/{stem}_{slug}"))
    return [cpu, _memory_section(rows, models, title, slug, charts_dir, caption)]


def _chart_note(metric: str) -> str:
    what = (
        "Process view: the server's CPU time per request answered."
        if metric == "cpu_per_request"
        else "All requests, unanswered ones at their wait so far (arrow: a lower bound)."
    )
    return (
        f"{what} Median over repeats, bars the interval of the median; hollow: suspect. "
        "A line ends at its last usable count, with why.\n"
    )


def held_x(rows: pd.DataFrame) -> pd.Series:
    """The idle connections each row held (`idle.held`), else the count asked."""
    held = pd.to_numeric(rows["idle.held"], errors="coerce")
    return held.fillna(pd.to_numeric(rows["cell.idle"], errors="coerce"))


def fit(x: pd.Series, y: pd.Series) -> Slope | None:
    """Sen's slope of y against x over the rows where both are known."""
    both = pd.DataFrame(
        {"x": pd.to_numeric(x, errors="coerce"), "y": pd.to_numeric(y, errors="coerce")}
    ).dropna()
    return slope([(float(a), float(b)) for a, b in zip(both["x"], both["y"], strict=True)])


def slope_text(found: Slope | None, scale: float, fmt: str) -> str:
    """ "50.0 (48.1–52.2, 95%)": the slope times `scale`, its interval and coverage."""
    if found is None:
        return "n/a"
    text = number(found.value * scale, fmt)
    if not (math.isnan(found.low) or math.isnan(found.high)):
        low, high = number(found.low * scale, fmt), number(found.high * scale, fmt)
        text += f" ({low}–{high}, {found.coverage:.0%})"
    return text


def number(value: float, fmt: str) -> str:
    """`value` in `fmt`, without the sign of a zero ("-0.0": a flat line's slope)."""
    text = format(value, fmt)
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def short_reason(cell: pd.Series) -> str:
    """A failed or skipped cell's reason as a chart can hold it: its first clause, cut at
    a word within REASON_CHARS; the status where there is none."""
    reason = cell["reason"] if isinstance(cell["reason"], str) and cell["reason"] else ""
    if not reason:
        return str(cell["status"])
    for stop in (". ", "\n"):
        reason = reason.split(stop, 1)[0]
    if len(reason) > REASON_CHARS:
        reason = reason[:REASON_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return f"{cell['status']}, {reason}"


def _ordered(cells: pd.DataFrame, model: str, x: str) -> pd.DataFrame:
    return cells[cells["cell.model"] == model].sort_values(x)


def line_end(
    cells: pd.DataFrame, model: str, metric: str, x: str = "cell.idle"
) -> tuple[int | None, str | None]:
    """The model's last count (of column `x`: idle connections, or the slow section's slow
    ones) with a usable value, and why the next count has none (a failed or skipped cell's
    short reason), or None where none failed after it."""
    ordered = _ordered(cells, model, x)
    usable = ordered[ordered["status"].isin(USABLE) & ordered[f"{metric}.median"].notna()]
    if usable.empty:
        return None, None
    last = int(usable[x].max())
    after = ordered[(ordered[x] > last) & ordered["status"].isin(["failed", "skipped"])]
    return last, (short_reason(after.iloc[0]) if not after.empty else None)


def model_line(
    cells: pd.DataFrame, model: str, metric: str, x: str = "cell.idle"
) -> IdleLine | None:
    """The model's chart line of `metric` against column `x` (None: no usable count)."""
    ordered = _ordered(cells, model, x)
    used = ordered[ordered["status"].isin(USABLE) & ordered[f"{metric}.median"].notna()]
    if used.empty:
        return None

    def values(column: str) -> list[float]:
        return [float(v) for v in pd.to_numeric(used[column], errors="coerce")]

    return IdleLine(
        model,
        values(x),
        values(f"{metric}.median"),
        values(f"{metric}.ci_low"),
        values(f"{metric}.ci_high"),
        [v == "suspect" for v in used["verdict"]],
        [bool(v) for v in used[f"{metric}.bound"].fillna(False)],
        line_end(cells, model, metric, x)[1],
    )


def _cpu_table(
    rows: pd.DataFrame, cells: pd.DataFrame, models: list[str], counts: list[int]
) -> Table:
    """A row per model: the slope of CPU per request against idle connections, and CPU per
    request at the fewest and the most idle connections, with what to read with care."""
    metric = _METRIC["cpu_per_request"]
    header = [
        "model",
        f"µs per request per {PER:,} idle (interval, coverage)",
        "points (idle counts)",
        f"µs per request at {counts[0]:,} idle",
        f"µs per request at {counts[-1]:,} idle",
        "read with care",
    ]
    table = []
    for model in models:
        mine = rows[(rows["cell.model"] == model) & rows["status"].isin(USABLE)]
        mine = mine[pd.to_numeric(mine["cpu_us_per_request"], errors="coerce").notna()]
        found = fit(held_x(mine), mine["cpu_us_per_request"])
        n_counts = int(mine["cell.idle"].nunique())
        at = [_at(cells, model, count, metric) for count in (counts[0], counts[-1])]
        care = _care(cells, model, n_counts, "cpu_per_request")
        table.append(
            [model, slope_text(found, PER, ",.1f"), f"{len(mine)} ({n_counts})", *at, care]
        )
    return Table("Server CPU per request against idle connections (process view)", header, table)


def _at(cells: pd.DataFrame, model: str, count: int, metric: Any) -> str:
    match = cells[(cells["cell.model"] == model) & (cells["cell.idle"] == count)]
    return format_cell(match.iloc[0], metric) if not match.empty else ""


def _care(cells: pd.DataFrame, model: str, n_counts: int, metric: str) -> str:
    """What a reader of this model's slope should know: too few counts, an early end,
    client-bound or suspect cells."""
    notes = []
    if n_counts < MIN_COUNTS:
        notes.append(f"from {n_counts} idle count{'' if n_counts == 1 else 's'}: do not trust")
    last, why = line_end(cells, model, metric)
    if why is not None and last is not None:
        notes.append(f"ends at {last:,} idle: {why}")
    return "; ".join(notes + cell_notes(cells, model))


def cell_notes(cells: pd.DataFrame, model: str) -> list[str]:
    """The model's client-bound and suspect cells, counted, for a "read with care" column."""
    notes = []
    mine = cells[cells["cell.model"] == model]
    if (bound := int((mine["status"] == "client-bound").sum())) > 0:
        notes.append(f"{bound} client-bound cell{'' if bound == 1 else 's'}")
    if (suspect := int((mine["verdict"] == "suspect").sum())) > 0:
        notes.append(f"{suspect} suspect cell{'' if suspect == 1 else 's'} (Verdicts)")
    return notes


def _memory_section(
    rows: pd.DataFrame, models: list[str], title: str, slug: str, charts_dir: Path, caption: str
) -> Section:
    """Memory per connection: a table and the bars, per model."""
    section = Section(f"Memory per idle connection: {title}")
    section.paragraphs = [MEMORY_NOTE]
    usable = rows[
        rows["status"].isin(USABLE) & pd.to_numeric(rows["idle.held"], errors="coerce").notna()
    ]
    if pd.to_numeric(usable["idle_user_kib"], errors="coerce").dropna().empty:
        section.paragraphs.append(
            "No row has the server's memory at rest: no memory per connection."
        )
        return section
    stacks = f"idle.memory.server_slab_kib.{KERNEL_STACK}"
    header = [
        "model",
        "user space KiB/conn (interval, coverage)",
        "measured as",
        "kernel KiB/conn, server side (interval, coverage)",
        *(["of which kernel stacks KiB/conn"] if stacks in rows.columns else []),
        "threads per connection",
        "held (counts)",
        *([SPLIT_HEADER] if (split := has_split(rows)) else []),
        "read with care",
    ]
    table, bars = [], []
    for model in models:
        mine = usable[usable["cell.model"] == model]
        # the split at the most held, failed cells too: a server stopped at its limit
        split_text = most_held_split(rows[rows["cell.model"] == model]) if split else None
        line, bar = _memory_row(mine, model, stacks if stacks in rows.columns else None, split_text)
        table.append(line)
        if bar is not None:
            bars.append(bar)
    section.tables = [Table("Memory per idle connection (KiB per connection held)", header, table)]
    stem = f"idle_memory_{slug}"
    chart_title = f"Memory per idle connection: {title}"
    note = (
        "Slope of the server's memory at rest against the idle connections held; bars: "
        "Sen's interval.\nKernel: socket caches and kernel stacks, less the idle holders' "
        "own ends (docs/idle.md).\n"
    )
    save_memory_chart(
        bars, chart_title, note + caption, charts_dir / stem, xlabel="KiB per idle connection"
    )
    section.charts.append((chart_title, f"charts/{stem}"))
    return section


def has_split(rows: pd.DataFrame) -> bool:
    """Whether any row read how the server's processes split the connections (schema 6)."""
    column = rows.get("idle.memory.fds")
    return column is not None and bool(column.map(lambda v: isinstance(v, list) and v).any())


def _memory_row(
    mine: pd.DataFrame, model: str, stacks: str | None, split: str | None = None
) -> tuple[list[str], MemoryBars | None]:
    """One model's line of the memory table and its bars (None: no figures); `split`:
    its processes' descriptors, where the run read them (None: no such column)."""
    n_counts = int(mine["cell.idle"].nunique())
    if mine.empty:
        blanks = ["", "0", *([split or ""] if split is not None else [])]
        return [model, "n/a", "", "n/a", *([""] if stacks else []), *blanks, "no usable cell"], None
    uss = pd.to_numeric(mine["idle.memory.uss_kib"], errors="coerce")
    source = "USS" if uss.notna().all() else "RSS"
    user_y = uss if source == "USS" else mine["idle.memory.rss_kib"]
    held = pd.to_numeric(mine["idle.held"], errors="coerce")
    user, kernel = fit(held, user_y), fit(held, mine["idle_kernel_kib"])
    threads = fit(held, mine["idle_threads"])
    line = [model, slope_text(user, 1, ",.2f"), source, slope_text(kernel, 1, ",.2f")]
    if stacks:
        line.append(slope_text(fit(held, mine[stacks]), 1, ",.2f"))
    line += [
        "n/a" if threads is None else number(threads.value, ".2f"),  # counts: no interval
        f"{int(held.min()):,}–{int(held.max()):,} ({n_counts})",
        *([split] if split is not None else []),
        f"from {n_counts} counts: do not trust" if n_counts < MIN_COUNTS else "",
    ]
    caution = [f"{n_counts} counts: do not trust"] if n_counts < MIN_COUNTS else []
    bar = MemoryBars(
        model,
        _estimate(user),
        _estimate(kernel),
        None if threads is None else threads.value,
        "\n".join([*([split] if split else []), *caution]),
    )
    return line, bar


SPLIT_HEADER = "server processes at the most held: descriptors each (limit)"


def most_held_split(rows: pd.DataFrame) -> str:
    """descriptor_split of the row that held the most idle connections, failed or not."""
    held = pd.to_numeric(rows.get("idle.held"), errors="coerce")
    return "" if held is None or held.dropna().empty else descriptor_split(rows.loc[held.idxmax()])


def descriptor_split(cell: pd.Series) -> str:
    """How the server's processes split the connections, from one row: '8 processes:
    12,401-12,612 descriptors (limit 20,000)'; '' where the row did not read it."""
    fds = cell.get("idle.memory.fds")
    if not isinstance(fds, list | tuple) or not fds:
        return ""
    limit = pd.to_numeric(cell.get("idle.memory.fd_limit"), errors="coerce")
    each = f"{min(fds):,}–{max(fds):,}" if len(fds) > 1 else f"{fds[0]:,}"
    processes = "1 process" if len(fds) == 1 else f"{len(fds)} processes"
    return f"{processes}: {each} descriptors" + (
        f" (limit {int(limit):,})" if pd.notna(limit) else ""
    )


def _estimate(found: Slope | None) -> Estimate | None:
    return None if found is None else Estimate(found.value, found.low, found.high)

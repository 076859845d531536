"""The report's section for searched capacities (the `slo` profile, bench.run.slo).

Each search is replayed from its stored steps (bench.analysis.search.replay), so the figure in
the report is the one the search ended on. Per model, connection count and target: the
median over repeats with the interval of the median, "≥" where a search ended at the
ceiling or the load generator; then every search with its bracket, steps and ending.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.analysis.curves import Capacity, Target, parse_target
from bench.analysis.search import (
    CEILING_SHARE,
    MAX_STEPS,
    Found,
    replay,
    search_target,
    step_number,
)
from bench.record import CellKey, Row
from bench.report.charts.curve_plots import CapacityBar
from bench.report.curve_section import Bars, add_capacity_charts, capacity_text
from bench.report.document import Section, Table, group_slug, group_title
from bench.report.frame import model_sort_key

Search = tuple[CellKey, int, str]  # closed-loop cell, repeat, target text
SEARCH_NOTE = (
    "Per cell and target, a search of open-loop rates (bench/analysis/search.py): bracket "
    "around the closed-loop throughput, bisect to 5%, re-test both ends, a rate's "
    "verdict being the majority of its tests. A rate passes when its all-requests "
    "percentile is at or under the target, 95% of it was achieved and the backlog "
    "did not grow. Median over repeats with the interval of the median; ≥: a lower "
    f"bound (the ceiling, {CEILING_SHARE:g}x the closed loop, or the load generator "
    "ended the search). "
    "docs/curves.md says how to read it."
)
EVERY_SEARCH = ("model", "conns", "target", "repeat", "result", "bracket", "steps", "ended because")


def searches(rows: list[Row], budget: int) -> dict[Search, Found | None]:
    """Every search in the run and how it ended; None: unfinished (interrupted)."""
    steps: dict[Search, list[Row]] = defaultdict(list)
    for row in rows:
        if row.cell.search:
            closed = replace(row.cell, load="", search="")
            steps[(closed, row.repeat, search_target(row))].append(row)
    ended: dict[Search, Found | None] = {}
    for (closed, repeat, text), found in steps.items():
        ordered = sorted(found, key=step_number)
        capacity = ordered[0].probe_rps
        if capacity is None:
            ended[(closed, repeat, text)] = None
            continue
        result = replay(ordered, parse_target(text), capacity, budget)
        ended[(closed, repeat, text)] = result if isinstance(result, Found) else None
    return ended


def slo_sections(
    rows: list[Row], meta: dict[str, Any], charts_dir: Path, caption: str
) -> list[Section]:
    matrix = meta.get("matrix") or {}
    budget = int(matrix.get("search_steps") or MAX_STEPS)
    ended = searches(rows, budget)
    if not ended:
        return []
    targets = [parse_target(text) for text in matrix.get("slo") or ()]
    known = {t.text for t in targets}
    targets += [parse_target(t) for t in sorted({s[2] for s in ended} - known)]
    closed_rps = {
        (row.cell, row.repeat): row.load.throughput_rps
        for row in rows
        if not row.cell.load and row.load is not None and row.status in ("ok", "client-bound")
    }
    groups: dict[tuple[Any, ...], list[Search]] = defaultdict(list)
    for search in ended:
        key = search[0]
        groups[(key.protocol, key.payload, key.mode, key.driver, key.backlog, key.work)].append(
            search
        )
    return [
        _section(found, ended, closed_rps, targets, charts_dir, caption)
        for found in groups.values()
    ]


def _section(
    mine: list[Search],
    ended: dict[Search, Found | None],
    closed_rps: dict[tuple[CellKey, int], float],
    targets: list[Target],
    charts_dir: Path,
    caption: str,
) -> Section:
    first = {f"cell.{k}": v for k, v in asdict(mine[0][0]).items()}
    title, slug = group_title(first), group_slug(first)
    section = Section(f"Capacity at latency targets, searched: {title}")
    section.paragraphs = [SEARCH_NOTE]
    counts = sorted({s[0].connections for s in mine})
    summary, bars = _capacity_table(mine, ended, closed_rps, targets, counts)
    section.tables = [
        summary,
        Table("Every search", list(EVERY_SEARCH), _every_search(mine, ended, targets)),
    ]
    add_capacity_charts(
        section, bars, targets, counts, "slo", f", searched: {title}", slug, caption, charts_dir
    )
    return section


def _capacity_table(
    mine: list[Search],
    ended: dict[Search, Found | None],
    closed_rps: dict[tuple[CellKey, int], float],
    targets: list[Target],
    counts: list[int],
) -> tuple[Table, Bars]:
    """A row per model: per connection count, the closed loop's throughput and the searched
    capacity at each target; with the capacity bars for the charts."""
    header = ["model"]
    for conns in counts:
        header.append(f"{conns:,} conns: closed loop")
        header += [f"{conns:,} conns: {t.text}" for t in targets]
    table: list[list[str]] = []
    bars: Bars = defaultdict(list)
    for model in sorted({s[0].model for s in mine}, key=model_sort_key):
        line = [model]
        for conns in counts:
            key = replace(mine[0][0], model=model, connections=conns)
            closed = sorted(rps for (k, _r), rps in closed_rps.items() if k == key)
            line.append(f"{statistics.median(closed):,.0f}" if closed else "")
            for target in targets:
                found = [
                    f for (k, _r, t), f in ended.items()
                    if k.model == model and k.connections == conns and t == target.text
                ]  # fmt: skip
                text, bar = _searched(found)
                line.append(text)
                if bar is not None:
                    bars[(target.text, conns)].append(replace(bar, model=model))
        table.append(line)
    return Table("Capacity at each latency target, searched (req/s)", header, table), bars


def _searched(found: list[Found | None]) -> tuple[str, CapacityBar | None]:
    """The capacity of one cell and target over its searches (None: unfinished), and its
    bar; no bar where none finished."""
    finished = [f for f in found if f is not None]
    if not finished:
        return ("unfinished" if found else ""), None
    text, bar = capacity_text([Capacity(f.rps, f.at_least, f.why) for f in finished])
    if len(finished) < len(found):
        text += f" ({len(found) - len(finished)} unfinished)"
    return text.replace("below the lowest step", "below the floor"), bar


def _every_search(
    mine: list[Search], ended: dict[Search, Found | None], targets: list[Target]
) -> list[list[str]]:
    """A line per search: its result, bracket, steps and why it ended."""
    detail = []
    order = {t.text: i for i, t in enumerate(targets)}
    for key, repeat, text in sorted(
        mine, key=lambda s: (model_sort_key(s[0].model), s[0].connections, order[s[2]], s[1])
    ):
        result_of = ended[(key, repeat, text)]
        if result_of is None:
            detail.append([key.model, f"{key.connections:,}", text, str(repeat), "unfinished"])
            continue
        result = "below the floor" if result_of.rps is None else f"{result_of.rps:,.0f}"
        if result_of.at_least and result_of.rps is not None:
            result = "≥" + result
        ends = (result_of.low, result_of.high)
        bracket = " – ".join("" if v is None else f"{v:,.0f}" for v in ends)
        detail.append(
            [key.model, f"{key.connections:,}", text, str(repeat), result, bracket,
             str(result_of.steps), result_of.why]
        )  # fmt: skip
    for row in detail:
        row += [""] * (len(EVERY_SEARCH) - len(row))
    return detail

"""The report's curve sections: load-latency charts and capacities at latency targets.

Open-loop cells (CellKey.load set) are left out of the per-metric tables and drawn here
instead: per group and connection count, each model's steps as a curve, and its
capacity at each target (bench.curves) per repeat, summarised as the median with the
interval of the median (bench.stats) and "≥" where any repeat's capacity was only a
lower bound.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from bench.charts import save_capacity_chart, save_curve_chart
from bench.curve_plots import CapacityBar, CurveLine
from bench.curves import Capacity, Step, Target, capacity, load_rate, parse_target
from bench.document import Section, Table, group_slug, group_title
from bench.frame import GROUP_COLUMNS, model_sort_key
from bench.record import USABLE
from bench.stats import median_interval

DEFAULT_TARGETS = ("p99:1ms", "p99:10ms")


def targets_of(meta: dict[str, Any]) -> list[Target]:
    given = (meta.get("matrix") or {}).get("slo") or DEFAULT_TARGETS
    return [parse_target(text) for text in given]


def curve_sections(
    frame: pd.DataFrame, meta: dict[str, Any], charts_dir: Path, caption: str
) -> list[Section]:
    if frame.empty or "cell.load" not in frame.columns:
        return []
    usable = frame[frame["status"].isin(USABLE)]
    opened = usable[usable["cell.load"].fillna("") != ""]
    if opened.empty:
        return []
    targets = targets_of(meta)
    sections = []
    for _, group in opened.groupby(GROUP_COLUMNS, sort=False, dropna=False):
        first = group.iloc[0]
        closed = usable[(usable["cell.load"].fillna("") == "") & _same_group(usable, first)]
        sections.append(_section(group, closed, targets, charts_dir, caption))
    return sections


def _same_group(df: pd.DataFrame, cell: pd.Series) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for column in GROUP_COLUMNS:
        mask &= df[column] == cell[column]
    return mask


def _steps(rows: pd.DataFrame, target: Target) -> list[Step]:
    steps = []
    for _, row in rows.iterrows():
        asked = load_rate(str(row["cell.load"]), _number(row.get("probe_rps")))
        if asked is None:
            continue
        steps.append(
            Step(
                asked=asked,
                achieved=float(row["load.rate.achieved"]),
                latency_us=float(row[f"load.latency_all.{target.percentile}"]),
                overloaded=bool(row.get("load.rate.overloaded", False)),
                client_bound=row["status"] == "client-bound",
            )
        )
    return steps


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def capacities(rows: pd.DataFrame, target: Target) -> list[Capacity]:
    """One capacity per repeat of one model's curve."""
    return [capacity(_steps(g, target), target.limit_us) for _, g in rows.groupby("repeat")]


def capacity_text(found: list[Capacity]) -> tuple[str, CapacityBar | None]:
    values = [c.rps for c in found if c.rps is not None]
    if not values:
        return "below the lowest step", None
    median = statistics.median(values)
    interval = median_interval(values)
    at_least = any(c.at_least for c in found)
    text = f"{'≥' if at_least else ''}{median:,.0f}"
    if not math.isnan(interval.low):
        text += f" ({interval.low:,.0f}–{interval.high:,.0f})"
    if len(values) < len(found):
        text += f" ({len(found) - len(values)} of {len(found)} repeats below the lowest step)"
    low = None if math.isnan(interval.low) else interval.low
    high = None if math.isnan(interval.high) else interval.high
    return text, CapacityBar("", median, low, high, at_least)


def _section(
    opened: pd.DataFrame,
    closed: pd.DataFrame,
    targets: list[Target],
    charts_dir: Path,
    caption: str,
) -> Section:
    first = opened.iloc[0]
    title, slug = group_title(first), group_slug(first)
    section = Section(f"Load-latency curves: {title}")
    section.paragraphs = [
        "Open-loop steps (each request sent at its arrival time, answered or not). The "
        "capacity at a target is the highest offered rate whose all-requests percentile "
        "stays under it with 95% of the rate achieved and the backlog not growing, "
        "interpolated between steps; median over repeats with the interval of the "
        "median; ≥: a lower bound (the load generator or the sweep ran out first). "
        "docs/curves.md says how to read these."
    ]
    models = sorted(opened["cell.model"].unique(), key=model_sort_key)
    counts = sorted(int(c) for c in opened["cell.connections"].unique())
    header = ["model"]
    for conns in counts:
        header.append(f"{conns:,} conns: closed loop")
        header += [f"{conns:,} conns: {t.text}" for t in targets]
    rows = []
    panels: dict[int, list[CurveLine]] = {c: [] for c in counts}
    bars: dict[tuple[str, int], list[CapacityBar]] = {}
    for model in models:
        row = [str(model)]
        for conns in counts:
            cells = opened[(opened["cell.model"] == model) & (opened["cell.connections"] == conns)]
            plain = closed[(closed["cell.model"] == model) & (closed["cell.connections"] == conns)]
            tput = pd.to_numeric(plain["load.throughput_rps"], errors="coerce").dropna()
            row.append(f"{statistics.median(tput):,.0f}" if len(tput) else "")
            first_capacity = None
            for target in targets:
                if cells.empty:
                    row.append("")
                    continue
                text, bar = capacity_text(capacities(cells, target))
                row.append(text)
                if bar is not None:
                    bars.setdefault((target.text, conns), []).append(
                        CapacityBar(str(model), bar.rps, bar.low, bar.high, bar.at_least)
                    )
                    if first_capacity is None and target is targets[0]:
                        first_capacity = bar.rps
            if not cells.empty:
                panels[conns].append(_line(str(model), cells, targets[0], first_capacity))
        rows.append(row)
    section.tables = [Table("Capacity at each latency target (req/s)", header, rows)]
    stem = f"curves_{slug}"
    save_curve_chart(
        [(f"{c:,} connections", panels[c]) for c in counts],
        [(t.text, t.limit_us) for t in targets if t.percentile == targets[0].percentile],
        f"Load-latency curves ({targets[0].text.split(':')[0]}, all requests): {title}",
        caption,
        charts_dir / stem,
        ylabel=f"{targets[0].text.split(':')[0]} latency, all requests (µs)",
    )
    section.charts.append((f"Load-latency curves: {title}", f"charts/{stem}"))
    for target in targets:
        stem = f"capacity_{target.text.replace(':', '_').replace('.', '')}_{slug}"
        save_capacity_chart(
            [(f"{c:,} connections", bars.get((target.text, c), [])) for c in counts],
            f"Capacity at {target.text}: {title}",
            caption,
            charts_dir / stem,
        )
        section.charts.append((f"Capacity at {target.text}: {title}", f"charts/{stem}"))
    return section


def _line(model: str, cells: pd.DataFrame, target: Target, capacity_rps: float | None) -> CurveLine:
    """The median step of each offered load, across repeats, in order of asked rate."""
    points = []
    for load, steps in cells.groupby("cell.load"):
        asked = [load_rate(str(load), _number(p)) or 0.0 for p in steps.get("probe_rps", [None])]
        achieved = pd.to_numeric(steps["load.rate.achieved"], errors="coerce").dropna()
        latency = pd.to_numeric(
            steps[f"load.latency_all.{target.percentile}"], errors="coerce"
        ).dropna()
        if achieved.empty or latency.empty:
            continue
        bounds = steps.get("load.latency_all.bounds", pd.Series([], dtype=object))
        points.append(
            (
                statistics.median(asked),
                statistics.median(achieved),
                statistics.median(latency),
                any(isinstance(b, list) and target.percentile in b for b in bounds),
                bool((steps["verdict"] == "suspect").any()),
            )
        )
    points.sort()
    return CurveLine(
        model,
        [p[1] for p in points],
        [p[2] for p in points],
        [p[3] for p in points],
        [p[4] for p in points],
        capacity_rps,
    )

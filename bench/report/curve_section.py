"""The report's curve sections: load-latency charts and capacities at latency targets.

Open-loop cells (CellKey.load set) are left out of the per-metric tables and drawn here
instead: per group and connection count, each model's steps as a curve, and its
capacity at each target (bench.analysis.curves) per repeat, summarised as the median with the
interval of the median (bench.analysis.stats) and "≥" where any repeat's capacity was only a
lower bound.

Two charts of the curves per group: small multiples (a panel per model and connection
count, every model), and an overview with every model as a line in one panel, drawn
only for up to OVERVIEW_MAX models (more lines tangle): `bench report --models ...`
picks the ones it shows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis.curves import (
    KNEE_FACTOR,
    Capacity,
    Step,
    Target,
    capacity,
    knee,
    load_rate,
    parse_target,
)
from bench.analysis.stats import median_interval
from bench.record import USABLE
from bench.report.charts.curve_plots import CapacityBar, ModelCurve
from bench.report.charts.figures import save_capacity_chart, save_curve_chart, save_curve_multiples
from bench.report.document import Section, Table, group_slug, group_title
from bench.report.frame import GROUP_COLUMNS, model_sort_key
from bench.store import SUBSETS_DIR
from common.invocation import python_m

DEFAULT_TARGETS = ("p99:1ms", "p99:10ms")
OVERVIEW_MAX = 6  # models as lines in one panel; beyond this they tangle
DRAWN = ("p50", "p99", "p999")  # the percentiles of a model's small-multiple panel
CURVES_NOTE = (
    "Open-loop steps (each request sent at its arrival time, answered or not). The "
    "capacity at a target is the highest offered rate whose all-requests percentile "
    "stays under it with 95% of the rate achieved and the backlog not growing, "
    "interpolated between steps; median over repeats with the interval of the "
    "median; ≥: a lower bound (the load generator or the sweep ran out first). "
    f"The knee is the last step before p99 passes {KNEE_FACTOR:g} times the lowest "
    "step's for good (the achieved rate there). docs/curves.md says how to read these."
)

Curves = dict[int, dict[str, ModelCurve]]  # connection count -> model -> its curve
Bars = dict[tuple[str, int], list[CapacityBar]]  # (target, connection count) -> a bar per model


def _opened(frame: pd.DataFrame) -> pd.DataFrame:
    """The usable open-loop rows (CellKey.load set)."""
    if frame.empty or "cell.load" not in frame.columns:
        return frame.iloc[0:0]
    usable = frame[frame["status"].isin(USABLE)]
    return usable[usable["cell.load"].fillna("") != ""]


def targets_of(meta: dict[str, Any]) -> list[Target]:
    given = (meta.get("matrix") or {}).get("slo") or DEFAULT_TARGETS
    return [parse_target(text) for text in given]


def curve_sections(
    frame: pd.DataFrame,
    meta: dict[str, Any],
    charts_dir: Path,
    caption: str,
    models: Sequence[str] | None = None,
) -> list[Section]:
    """A section per group with open-loop rows; `models`: the overview chart's subset
    (names without curves are left out)."""
    opened = _opened(frame)
    if opened.empty:
        return []
    usable = frame[frame["status"].isin(USABLE)]
    targets = targets_of(meta)
    sections = []
    for _, group in opened.groupby(GROUP_COLUMNS, sort=False, dropna=False):
        first = group.iloc[0]
        closed = usable[(usable["cell.load"].fillna("") == "") & _same_group(usable, first)]
        sections.append(_section(group, closed, targets, charts_dir, caption, models))
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


def capacity_text(found: list[Capacity]) -> tuple[str, CapacityBar]:
    values = [c.rps for c in found if c.rps is not None]
    below = len(found) - len(values)
    if not values:
        return "below the lowest step", CapacityBar("", None, None, None, False, below, below)
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
    return text, CapacityBar("", median, low, high, at_least, below, len(found))


@dataclass(frozen=True)
class _Group:
    """One group's open-loop cells, as the steps of its section share them."""

    title: str
    slug: str
    models: list[Any]  # the cell.model values, in model order
    counts: list[int]  # connection counts, ascending
    targets: list[Target]
    caption: str
    charts_dir: Path

    @property
    def drawn_targets(self) -> list[tuple[str, float]]:
        """The targets of the first one's percentile, drawn as lines on its curves."""
        first = self.targets[0].percentile
        return [(t.text, t.limit_us) for t in self.targets if t.percentile == first]

    @property
    def capacity_label(self) -> str:
        return f"capacity at {self.targets[0].text}"


def _section(
    opened: pd.DataFrame,
    closed: pd.DataFrame,
    targets: list[Target],
    charts_dir: Path,
    caption: str,
    subset: Sequence[str] | None,
) -> Section:
    first = opened.iloc[0]
    group = _Group(
        title=group_title(first),
        slug=group_slug(first),
        models=sorted(opened["cell.model"].unique(), key=model_sort_key),
        counts=sorted(int(c) for c in opened["cell.connections"].unique()),
        targets=targets,
        caption=caption,
        charts_dir=charts_dir,
    )
    section = Section(f"Load-latency curves: {group.title}")
    section.paragraphs = [CURVES_NOTE]
    table, curves, bars = _capacity_table(group, opened, closed)
    section.tables = [table]
    _add_multiples(section, group, curves)
    _add_overview(section, group, curves, subset)
    add_capacity_charts(section, bars, targets, group.counts, "capacity", f": {group.title}",
                        group.slug, caption, charts_dir)  # fmt: skip
    return section


def _capacity_table(
    group: _Group, opened: pd.DataFrame, closed: pd.DataFrame
) -> tuple[Table, Curves, Bars]:
    """The table of capacities (a row per model; per connection count the closed loop's
    throughput, the capacity at each target and the knee), with each model's curves and
    capacity bars for the charts."""
    header = ["model"]
    for conns in group.counts:
        header.append(f"{conns:,} conns: closed loop")
        header += [f"{conns:,} conns: {t.text}" for t in group.targets]
        header.append(f"{conns:,} conns: knee")
    rows = []
    curves: Curves = {c: {} for c in group.counts}
    bars: Bars = {}
    for model in group.models:
        row = [str(model)]
        for conns in group.counts:
            cells = opened[(opened["cell.model"] == model) & (opened["cell.connections"] == conns)]
            plain = closed[(closed["cell.model"] == model) & (closed["cell.connections"] == conns)]
            row += _model_at(str(model), conns, cells, plain, group.targets, curves, bars)
        rows.append(row)
    return Table("Capacity at each latency target (req/s)", header, rows), curves, bars


def _model_at(
    model: str,
    conns: int,
    cells: pd.DataFrame,
    plain: pd.DataFrame,
    targets: list[Target],
    curves: Curves,
    bars: Bars,
) -> list[str]:
    """One model's cells of the capacity table at one connection count (`cells`: its
    open-loop steps, `plain`: its closed-loop rows); its curve into `curves`, its
    capacities into `bars`."""
    tput = pd.to_numeric(plain["load.throughput_rps"], errors="coerce").dropna()
    row = [f"{statistics.median(tput):,.0f}" if len(tput) else ""]
    first_capacity = None
    for target in targets:
        if cells.empty:
            row.append("")
            continue
        text, bar = capacity_text(capacities(cells, target))
        row.append(text)
        bars.setdefault((target.text, conns), []).append(replace(bar, model=model))
        if first_capacity is None and target is targets[0]:
            first_capacity = bar.rps
    if cells.empty:
        return [*row, ""]
    curve = model_curve(model, cells, targets[0], first_capacity)
    curves[conns][model] = curve
    knee_at = "none in the sweep" if curve.knee is None else f"{curve.achieved[curve.knee]:,.0f}"
    return [*row, knee_at]


def _add_multiples(section: Section, group: _Group, curves: Curves) -> None:
    """The small multiples: a panel per model and connection count, every model."""
    stem = f"curves_by_model_{group.slug}"
    chart_title = f"Load-latency curves by model (p50, p99, p99.9, all requests): {group.title}"
    save_curve_multiples(
        [str(m) for m in group.models],
        [(f"{c:,} conns", curves[c]) for c in group.counts],
        group.drawn_targets,
        chart_title,
        "One panel per model and connection count; panels of one connection count share "
        "their axes. Grey: the other models' p99.\n" + group.caption,
        group.charts_dir / stem,
        capacity_label=group.capacity_label,
    )
    section.charts.append((chart_title, f"charts/{stem}"))


def _add_overview(
    section: Section, group: _Group, curves: Curves, subset: Sequence[str] | None
) -> None:
    """The overview, every model of `subset` (None: all) a line in one panel; in its place
    a paragraph where they would be more than OVERVIEW_MAX, or none."""
    models = group.models
    shown = [str(m) for m in models if subset is None or str(m) in subset]
    if not shown or len(shown) > OVERVIEW_MAX:
        section.paragraphs.append(_no_overview(group, bool(shown)))
        return
    percentile = group.targets[0].percentile
    first_target = group.targets[0].text.split(":")[0]
    stem = f"curves_{group.slug}"
    chart_title = f"Load-latency curves ({first_target}, all requests): {group.title}"
    if len(shown) < len(models):
        chart_title += f" ({', '.join(shown)})"
    save_curve_chart(
        [(f"{c:,} connections", [curves[c][m].line(percentile) for m in shown if m in curves[c]])
         for c in group.counts],
        group.drawn_targets,
        chart_title,
        group.caption,
        group.charts_dir / stem,
        ylabel=f"{first_target} latency, all requests (µs)",
        capacity_label=group.capacity_label,
    )  # fmt: skip
    section.charts.append((chart_title, f"charts/{stem}"))


def _no_overview(group: _Group, any_shown: bool) -> str:
    """Why there is no overview chart, and (too many models) the command that draws one."""
    if not any_shown:
        return "No overview chart: none of the models named with --models is in this group."
    run_dir = group.charts_dir.parent  # a subset's report: RUN/subsets/<slug>/charts
    run_dir = run_dir.parent.parent if run_dir.parent.name == SUBSETS_DIR else run_dir
    rerun = python_m("bench", "report", run_dir, "--models", *[str(m) for m in group.models][:3])
    return (
        f"No overview chart with every model as a line: {len(group.models)} models would "
        f"tangle (it is drawn for {OVERVIEW_MAX} or fewer). The small multiples show "
        f"every model; {rerun} draws it for the models named, in the run's "
        "subsets/ folder."
    )


def add_capacity_charts(
    section: Section,
    bars: Mapping[tuple[str, int], list[CapacityBar]],
    targets: Sequence[Target],
    counts: Sequence[int],
    prefix: str,
    after_target: str,
    slug: str,
    caption: str,
    charts_dir: Path,
) -> None:
    """A capacity chart per target (a panel per connection count) into `section`:
    `<prefix>_<target>_<slug>`, titled "Capacity at <target><after_target>"."""
    for target in targets:
        stem = f"{prefix}_{target.text.replace(':', '_').replace('.', '')}_{slug}"
        chart_title = f"Capacity at {target.text}{after_target}"
        save_capacity_chart(
            [(f"{c:,} connections", bars.get((target.text, c), [])) for c in counts],
            chart_title,
            caption,
            charts_dir / stem,
        )
        section.charts.append((chart_title, f"charts/{stem}"))


def model_curve(
    model: str, cells: pd.DataFrame, target: Target, capacity_rps: float | None
) -> ModelCurve:
    """One model's curve at one connection count: the median step of each offered load
    across repeats, in order of asked rate, with p50, p99, p99.9 and the target's
    percentile, and its knee (bench.analysis.curves.knee, on p99)."""
    fields = list(dict.fromkeys([*DRAWN, target.percentile]))
    points = []
    for load, steps in cells.groupby("cell.load"):
        asked = [load_rate(str(load), _number(p)) or 0.0 for p in steps.get("probe_rps", [None])]
        achieved = pd.to_numeric(steps["load.rate.achieved"], errors="coerce").dropna()
        if achieved.empty:
            continue
        latency = {}
        for field in fields:
            values = pd.to_numeric(steps[f"load.latency_all.{field}"], errors="coerce").dropna()
            latency[field] = statistics.median(values) if len(values) else 0.0
        bounds = steps.get("load.latency_all.bounds", pd.Series([], dtype=object))
        overloaded = steps.get("load.rate.overloaded", pd.Series([], dtype=object))
        points.append(
            (
                statistics.median(asked),
                statistics.median(achieved),
                latency,
                {f: any(isinstance(b, list) and f in b for b in bounds) for f in fields},
                bool((steps["verdict"] == "suspect").any()),
                bool(overloaded.fillna(False).astype(bool).any()),
                bool((steps["status"] == "client-bound").any()),
            )
        )
    points.sort(key=lambda p: p[0])
    steps_p99 = [Step(p[0], p[1], p[2]["p99"], p[5], p[6]) for p in points]
    found = knee(steps_p99)
    return ModelCurve(
        model,
        [p[1] for p in points],
        {f: [p[2][f] for p in points] for f in fields},
        {f: [p[3][f] for p in points] for f in fields},
        [p[4] for p in points],
        capacity_rps,
        None if found is None else steps_p99.index(found),
    )

"""`bench report`: a run folder's rows -> report.md, report.html, charts/ and pyperf.json.

The steps live in their own modules of bench.report: frame (rows -> frame -> one row per
cell, with statistics), document (tables, facts, legend, notes), charts.figures (figure
files, drawn by the other charts modules), render_md and render_html (rendering), and
pyperf_export.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.record import USABLE, Row
from bench.report import side_by_side
from bench.report.charts.figures import save_metric_chart
from bench.report.curve_section import curve_sections
from bench.report.document import (
    Document,
    Section,
    group_slug,
    group_title,
    legend,
    metric_table,
    notes_table,
    significance_section,
    verdict_section,
)
from bench.report.facts import caption, run_facts
from bench.report.frame import (
    GROUP_COLUMNS,
    IDLE_COLUMNS,
    METRICS,
    PY,
    RUN_SEP,
    Metric,
    aggregate,
    load_frame,
    metric_names,
    model_sort_key,
)
from bench.report.idle_section import has_idle_axis, idle_label, idle_sections, idle_slug
from bench.report.pyperf_export import write_pyperf_suite
from bench.report.render_html import render_html
from bench.report.render_md import render_markdown
from bench.report.results_csv import write_results_csv
from bench.report.slo_section import slo_sections
from bench.report.slow_section import slow_sections
from bench.report.time_section import time_section
from bench.settings import MatrixError
from bench.store import RESULTS, SUBSETS_DIR, RunStore
from common.cli import suggest
from servers import REFERENCES

CHARTS_DIR = "charts"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PYPERF_JSON = "pyperf.json"
SIDE_BY_SIDE_DIR = RESULTS / "side-by-side"  # several runs: <run>--<run>/


@dataclass(frozen=True)
class Subset:
    """What a report draws: every cell (empty), or these models (a model's name, or a
    line's: `epoll py3.12`), metrics (bench.report.frame METRICS' names or chart stems) and
    protocols."""

    models: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models or self.metrics or self.protocols)

    def chosen(self) -> list[tuple[str, tuple[str, ...]]]:
        """(axis, values) for each axis with a choice."""
        axes = (("models", self.models), ("metrics", self.metrics), ("protocols", self.protocols))
        return [(axis, values) for axis, values in axes if values]

    def slug(self) -> str:
        parts = [f"{axis}-{'-'.join(values)}" for axis, values in self.chosen()]
        return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))[:120]

    def text(self) -> str:
        return "; ".join(f"{axis} {', '.join(values)}" for axis, values in self.chosen())


def _chosen(metric: Metric, subset: Subset) -> bool:
    return not subset.metrics or bool({metric.name, metric.chart} & set(subset.metrics))


def default_out(run_dirs: Sequence[Path], subset: Subset) -> Path:
    """Where a report goes: into its run; a subset into RUN/subsets/<slug>; several runs
    into results/side-by-side/<run>--<run>[/<slug>]."""
    if len(run_dirs) == 1:
        return run_dirs[0] / SUBSETS_DIR / subset.slug() if subset else run_dirs[0]
    folder = SIDE_BY_SIDE_DIR / "--".join(Path(r).name for r in run_dirs)
    return folder / subset.slug() if subset else folder


def build_report(
    run_dirs: Path | Sequence[Path],
    models: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    out: Path | None = None,
) -> Path:
    """Write report.md, report.html, charts/*.png|svg and pyperf.json; return report.md.

    One run and no subset: into the run's folder. `models`, `metrics`, `protocols`
    choose a subset of the cells and figures (a name the runs do not have is a
    MatrixError, raised before anything is written); `models` also picks the
    load-latency overview chart's lines (bench.report.curve_section). Several runs: side by
    side, each line labelled `MODEL · RUN` (bench.report.side_by_side). `out`: else
    default_out().
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, str | Path) else [Path(r) for r in run_dirs]
    subset = Subset(tuple(models or ()), tuple(metrics or ()), tuple(protocols or ()))
    runs = _read(dirs, subset)
    out_dir = Path(out) if out is not None else default_out(dirs, subset)
    cells = aggregate(runs.frame)
    charts_dir = out_dir / CHARTS_DIR
    charts_dir.mkdir(parents=True, exist_ok=True)
    cap = side_by_side.caption(runs.stores) if runs.several else caption(runs.meta)
    # idle and slow connections first: where they were an axis, they are what separates
    # the models
    sections = _idle_sections(runs, charts_dir, cap, subset)
    sections += _closed_sections(runs, cells, cap, charts_dir, subset)
    sections += _figure_sections(runs, cap, charts_dir, subset, models)
    sections += _closing_sections(runs.frame, cells, subset)
    return _write(_document(runs, cells, sections, subset), runs, out_dir)


def build_report_and_csv(
    run_dirs: Sequence[Path],
    models: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
    out: Path | None = None,
) -> Path:
    """build_report, and where the report is one run's own (in its folder), that run's
    results.csv too; return report.md. `bench run` and `bench report` end with it."""
    report = build_report(run_dirs, models, metrics=metrics, protocols=protocols, out=out)
    if len(run_dirs) == 1 and report.parent == Path(run_dirs[0]):
        write_results_csv(run_dirs[0])
    return report


@dataclass(frozen=True)
class _Runs:
    """The runs a report draws, their rows already restricted to the subset: one run's
    frame, metadata and rows, or several runs' combined (bench.report.side_by_side)."""

    stores: list[RunStore]
    frame: pd.DataFrame
    meta: dict[str, Any]
    rows: list[Row]

    @property
    def several(self) -> bool:
        return len(self.stores) > 1


def _read(dirs: Sequence[Path], subset: Subset) -> _Runs:
    """The runs' rows and frame, the subset checked (MatrixError) and applied."""
    stores = [RunStore.open(d) for d in dirs]
    if len(stores) > 1:
        frame, meta, rows = side_by_side.combine(stores)
    else:
        rows, meta = stores[0].rows(), stores[0].metadata
        frame = load_frame(rows)
    check_subset(frame, subset)
    frame, rows = _restrict(frame, rows, subset)
    return _Runs(stores, frame, meta, rows)


def _closed_sections(
    runs: _Runs, cells: pd.DataFrame, cap: str, charts_dir: Path, subset: Subset
) -> list[Section]:
    """A section per group of closed-loop cells: its metric tables and charts."""
    closed = cells[cells["cell.load"].fillna("") == ""] if not cells.empty else cells
    if closed.empty:
        return []
    sections = []
    columns = side_by_side.group_columns(closed) if runs.several else GROUP_COLUMNS
    idle = has_idle_axis(closed)
    for _, group in closed.groupby(columns, sort=False, dropna=False):
        if runs.several:
            group.attrs["title"], group.attrs["slug"] = side_by_side.title_and_slug(
                group, columns, side_by_side.labels(runs.stores)
            )
        if idle:  # each count of idle connections is a group: its title and files say which
            first = group.iloc[0]
            title = group.attrs.get("title") or group_title(first)
            slug = group.attrs.get("slug") or group_slug(first)
            group.attrs["title"] = (
                f"{title}, {idle_label(first['cell.idle'], first['cell.idle_mode'])}"
            )
            group.attrs["slug"] = slug + idle_slug(first["cell.idle"], first["cell.idle_mode"])
        sections.append(_section(group, cap, charts_dir, subset))
    return sections


def _idle_sections(runs: _Runs, charts_dir: Path, cap: str, subset: Subset) -> list[Section]:
    """One run with an idle axis: CPU per request and memory against idle connections;
    with a slow axis: the active clients' figures against slow connections."""
    if runs.several or subset.metrics:  # figures of their own, not --metrics'
        return []
    # none without an idle axis, or without a slow one
    return idle_sections(runs.frame, charts_dir, cap) + slow_sections(runs.frame, charts_dir, cap)


def _figure_sections(
    runs: _Runs, cap: str, charts_dir: Path, subset: Subset, models: Sequence[str] | None
) -> list[Section]:
    """Several runs: the cells left out of the side by side. One run: the load-latency
    curves, the searched capacities and the figures over time."""
    if runs.several:
        left_out = side_by_side.left_out_section(runs.frame)
        return [] if left_out is None else [left_out]
    if subset.metrics:  # these sections are figures of their own, not --metrics'
        return []
    frame = runs.frame
    searched = frame["cell.search"].fillna("") != "" if not frame.empty else None
    swept = frame if searched is None else frame[~searched]  # search steps: slo_report
    sections = curve_sections(swept, runs.meta, charts_dir, cap, models or None)
    sections += slo_sections(runs.rows, runs.meta, charts_dir, cap)
    if (over_time := time_section(runs.rows, charts_dir, cap)) is not None:
        sections.append(over_time)
    return sections


def _closing_sections(frame: pd.DataFrame, cells: pd.DataFrame, subset: Subset) -> list[Section]:
    """The verdicts and, with throughput chosen, the significance of its differences."""
    if cells.empty:
        return []
    closed_rows = frame[frame["cell.load"].fillna("") == ""]
    extras = [verdict_section(cells)]
    if _chosen(METRICS[0], subset):  # the significance of throughput differences
        extras.append(_significance(closed_rows))
    return [extra for extra in extras if extra is not None]


def _significance(closed_rows: pd.DataFrame) -> Section | None:
    """significance_section; with an idle axis, one per count of idle connections, their
    pairs in one table with the count named beside the cells."""
    if not has_idle_axis(closed_rows):
        return significance_section(closed_rows, GROUP_COLUMNS)
    merged: Section | None = None
    for (idle, mode), rows in closed_rows.groupby(IDLE_COLUMNS, sort=True):
        found = significance_section(rows, GROUP_COLUMNS)
        if found is None:
            continue
        for table in found.tables:
            for row in table.rows:
                row[0] += f", {idle_label(idle, mode)}"
        if merged is None or not merged.tables:
            merged = found if merged is None or found.tables else merged
        else:
            merged.tables[0].rows += [row for table in found.tables for row in table.rows]
    return merged


def _document(
    runs: _Runs, cells: pd.DataFrame, sections: list[Section], subset: Subset
) -> Document:
    title = "sockbench report: " + " and ".join(
        str(s.metadata.get("run_id", s.path.name)) for s in runs.stores
    )
    if subset:
        title += f" ({subset.text()})"
    facts = side_by_side.facts(runs.stores) if runs.several else run_facts(runs.meta, runs.rows)
    return Document(
        title=title,
        facts=facts,
        legend=legend(cells),
        sections=sections,
        notes=notes_table(runs.frame) if not runs.frame.empty else None,
    )


def _write(doc: Document, runs: _Runs, out_dir: Path) -> Path:
    """report.md, report.html and (one run with usable rows) pyperf.json; report.md."""
    md_path = out_dir / REPORT_MD
    md_path.write_text(render_markdown(doc), encoding="utf-8")
    (out_dir / REPORT_HTML).write_text(render_html(doc, out_dir), encoding="utf-8")
    usable = [r for r in runs.rows if r.status in USABLE]
    if usable and not runs.several:
        write_pyperf_suite(usable, runs.meta, out_dir / PYPERF_JSON)
    return md_path


def _base(line: str) -> str:
    return line.partition(RUN_SEP)[0].partition(PY)[0]


def _line(row: Row) -> str:
    """The row's line name as bench.report.frame.load_frame gives it: `epoll py3.12`."""
    return f"{row.cell.model}{PY}{row.cell.python}" if row.cell.python else row.cell.model


def check_subset(frame: pd.DataFrame, subset: Subset) -> None:
    """MatrixError naming the first value the runs do not have, with the nearest one
    and what there is; before anything is drawn."""
    lines = sorted({str(m) for m in frame["cell.model"].dropna()}, key=model_sort_key)
    have = {
        "--models": list(dict.fromkeys([*map(_base, lines), *lines])),
        "--metrics": metric_names(),
        "--protocols": sorted({str(p) for p in frame["cell.protocol"].dropna()}),
    }
    for axis, given in subset.chosen():
        flag = f"--{axis}"
        for value in given:
            if value not in have[flag]:
                raise MatrixError(
                    f"{flag}: {value!r} is not in this run{suggest(value, have[flag])}; "
                    f"it has {', '.join(have[flag]) or 'none'}"
                )


def _restrict(
    frame: pd.DataFrame, rows: list[Row], subset: Subset
) -> tuple[pd.DataFrame, list[Row]]:
    """The frame's and the rows' cells of the subset's models and protocols."""
    if subset.models:
        chosen = set(subset.models)
        lines = frame["cell.model"].astype(str)
        keep = lines.isin(chosen) | lines.map(_base).isin(chosen)
        frame = frame[keep]
        rows = [r for r in rows if {r.cell.model, _line(r)} & chosen]
    if subset.protocols:
        frame = frame[frame["cell.protocol"].isin(list(subset.protocols))]
        rows = [r for r in rows if r.cell.protocol in subset.protocols]
    return frame.reset_index(drop=True), rows


# the figures a client-bound cell still gives straight: what the server spent
PER_REQUEST = ("cpu_per_request", "core_per_request")


def reference_note(cells: pd.DataFrame, metric: str) -> str:
    """Where a reference server's cells are client-bound, its line is the load
    generator's ceiling, not the server's: say so under the group's other charts."""
    if metric in PER_REQUEST:
        return ""
    bound = cells[cells["cell.model"].isin(list(REFERENCES)) & (cells["status"] == "client-bound")]
    if bound.empty:
        return ""
    names = " and ".join(sorted(set(bound["cell.model"])))
    return (
        f"{names}: client-bound, so its line shows the load generator's limit, not the "
        "server's; server CPU per request still compares."
    )


def _section(cells: pd.DataFrame, cap: str, charts_dir: Path, subset: Subset) -> Section:
    first = cells.iloc[0]
    title = cells.attrs.get("title") or group_title(first)
    slug = cells.attrs.get("slug") or group_slug(first)
    section = Section(title)
    chosen = [m for m in METRICS if _chosen(m, subset)]
    section.tables = [metric_table(cells, m) for m in chosen if m.table]
    drawable = cells[cells["status"] != "skipped"]
    if drawable.empty:
        return section
    if (counts := drawable["cell.connections"].nunique()) < 2 and chosen:
        # a chart against connections with one count is a column of dots: the tables
        # say the same, with their intervals
        one = int(drawable["cell.connections"].iloc[0]) if counts else 0
        section.paragraphs.append(
            f"One count of connections ({one:,}): the tables below are the figures, so no "
            "charts against connections."
        )
        return section
    for metric in chosen:
        if metric.chart is None:
            continue
        if (nothing := nothing_to_show(drawable, metric)) is not None:
            section.paragraphs.append(nothing)
            continue
        stem = f"{metric.chart}_{slug}"
        chart_title = f"{metric.title} vs connections: {title}"
        notes = (metric.note, reference_note(drawable, metric.name))
        note = "".join(f"{line}\n" for line in notes if line)
        save_metric_chart(drawable, metric, chart_title, note + cap, charts_dir / stem)
        section.charts.append((chart_title, f"{CHARTS_DIR}/{stem}"))
    return section


def nothing_to_show(cells: pd.DataFrame, metric: Metric) -> str | None:
    """One line in place of a chart with nothing on it (every value 0, or none), else
    None. A failed cell is something to show: its chart marks it."""
    values = pd.to_numeric(cells[f"{metric.name}.median"], errors="coerce").dropna()
    if (cells["status"] == "failed").any() and metric.name == METRICS[0].name:
        return None
    if values.empty:
        return f"{metric.title}: no cell has a value, so no chart."
    if (values == 0).all():
        return f"{metric.title}: 0 in every cell, so no chart."
    return None

"""`bench report`: a run folder's rows -> report.md, report.html, charts/ and pyperf.json.

The steps live in their own modules: bench.frame (rows -> frame -> one row per cell,
with statistics), bench.document (tables, facts, legend, notes), bench.charts (figure
files, drawn by bench.plots), bench.report_md and bench.report_html (rendering), and
bench.pyperf_export.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench.charts import save_metric_chart
from bench.curve_report import check_models, curve_sections
from bench.document import (
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
from bench.facts import caption, run_facts
from bench.frame import GROUP_COLUMNS, METRICS, aggregate, load_frame
from bench.pyperf_export import write_pyperf_suite
from bench.record import USABLE
from bench.report_html import render_html
from bench.report_md import render_markdown
from bench.slo_report import slo_sections
from bench.store import RunStore
from bench.time_report import time_section
from servers import REFERENCES

CHARTS_DIR = "charts"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PYPERF_JSON = "pyperf.json"


def build_report(run_dir: Path, models: Sequence[str] | None = None) -> Path:
    """Write report.md, report.html, charts/*.png|svg and pyperf.json into `run_dir`.

    `models`: the models the load-latency overview chart draws (bench.curve_report);
    a name without curves in the run is a MatrixError, raised before anything is written.
    """
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    rows = store.rows()
    meta = store.metadata
    frame = load_frame(rows)
    check_models(frame, models)
    cells = aggregate(frame)
    charts_dir = run_dir / CHARTS_DIR
    charts_dir.mkdir(exist_ok=True)

    sections = []
    closed = cells[cells["cell.load"].fillna("") == ""] if not cells.empty else cells
    if not closed.empty:
        for _, group in closed.groupby(GROUP_COLUMNS, sort=False, dropna=False):
            sections.append(_section(group, meta, charts_dir))
    searched = frame["cell.search"].fillna("") != "" if not frame.empty else None
    swept = frame if searched is None else frame[~searched]  # search steps: slo_report
    sections += curve_sections(swept, meta, charts_dir, caption(meta), models)
    sections += slo_sections(rows, meta, charts_dir, caption(meta))
    if (over_time := time_section(rows, charts_dir, caption(meta))) is not None:
        sections.append(over_time)
    if not cells.empty:
        closed_rows = frame[frame["cell.load"].fillna("") == ""]
        for extra in (verdict_section(cells), significance_section(closed_rows, GROUP_COLUMNS)):
            if extra is not None:
                sections.append(extra)
    doc = Document(
        title=f"sockbench report: {meta.get('run_id', run_dir.name)}",
        facts=run_facts(meta, rows),
        legend=legend(cells),
        sections=sections,
        notes=notes_table(frame) if not frame.empty else None,
    )

    md_path = run_dir / REPORT_MD
    md_path.write_text(render_markdown(doc), encoding="utf-8")
    (run_dir / REPORT_HTML).write_text(render_html(doc, run_dir), encoding="utf-8")
    usable = [r for r in rows if r.status in USABLE]
    if usable:
        write_pyperf_suite(usable, meta, run_dir / PYPERF_JSON)
    return md_path


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


def _section(cells: pd.DataFrame, meta: dict[str, Any], charts_dir: Path) -> Section:
    first = cells.iloc[0]
    title, slug = group_title(first), group_slug(first)
    section = Section(title)
    section.tables = [metric_table(cells, m) for m in METRICS if m.table]
    drawable = cells[cells["status"] != "skipped"]
    if drawable.empty:
        return section
    for metric in METRICS:
        if metric.chart is None:
            continue
        stem = f"{metric.chart}_{slug}"
        chart_title = f"{metric.title} vs connections: {title}"
        notes = (metric.note, reference_note(drawable, metric.name))
        note = "".join(f"{line}\n" for line in notes if line)
        save_metric_chart(drawable, metric, chart_title, note + caption(meta), charts_dir / stem)
        section.charts.append((chart_title, f"{CHARTS_DIR}/{stem}"))
    return section

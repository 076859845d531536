"""Rows -> pandas -> tables (markdown, HTML) and charts (PNG, SVG) inside a run folder.

With bench.plots, the only module that imports pandas or matplotlib. Figures are made
with `matplotlib.figure.Figure` directly (no pyplot, no global figure state); PNGs are
rendered by Agg, SVGs by the SVG backend.

Statistics: a cell's value is the median over its usable repeats (status ok or
client-bound); its uncertainty is the 95% t-interval of the mean across those repeats,
NaN (left out of the tables) with a single repeat. Percentiles are never averaged across repeats:
each repeat's p99 is a value, and the table shows their median.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import statistics
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from bench import plots
from bench.pyperf_export import write_pyperf_suite
from bench.record import Row
from bench.report_html import render_html
from bench.store import RunStore

CELL_COLUMNS = ["cell.model", "cell.protocol", "cell.connections", "cell.payload",
                "cell.mode", "cell.driver", "cell.backlog", "cell.work"]
# One table set and one figure per metric for each combination of these:
GROUP_COLUMNS = ["cell.protocol", "cell.payload", "cell.mode", "cell.driver",
                 "cell.backlog", "cell.work"]
USABLE = ("ok", "client-bound")

CHARTS_DIR = "charts"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PYPERF_JSON = "pyperf.json"

CLIENT_BOUND_MARK = "†"
PARTIAL_MARK = "‡"


@dataclass(frozen=True)
class Metric:
    name: str  # aggregate() columns are <name>.median, .mean, .ci_low, .ci_high
    source: str  # load_frame() column
    title: str
    unit: str
    fmt: str  # format spec for one value
    table: bool = True
    ci: bool = False  # show "± half-width" in tables
    chart: str | None = None  # chart file stem, None for no chart
    log_y: bool = False
    note: str = ""  # a line under the chart, where the figure alone would mislead

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})"


# A starved connection adds no latency sample: blocking at 1000 connections shows one
# connection's fast replies. The starved chart tells the rest.
ANSWERED_ONLY = ("Latency of answered requests only: starved connections (see the starved "
                 "chart) add no samples.")

METRICS: tuple[Metric, ...] = (
    Metric("throughput", "load.throughput_rps", "Throughput", "req/s", ",.0f", ci=True,
           chart="throughput"),
    Metric("p50", "load.latency_us.p50", "p50 latency", "µs", ",.0f", ci=True,
           chart="latency_p50", log_y=True, note=ANSWERED_ONLY),
    Metric("p99", "load.latency_us.p99", "p99 latency", "µs", ",.0f", ci=True,
           chart="latency_p99", log_y=True, note=ANSWERED_ONLY),
    Metric("p999", "load.latency_us.p999", "p99.9 latency", "µs", ",.0f", ci=True),
    Metric("errors", "errors_total", "Errors (all kinds)", "count", ",.0f"),
    Metric("starved", "load.connections.starved", "Starved connections", "count", ",.0f"),
    Metric("starved_share", "starved_share", "Starved connections", "% of connections",
           ",.1f", table=False, chart="starved"),
    Metric("cpu_per_request", "cpu_us_per_request", "Server CPU per request", "µs", ",.1f",
           ci=True, chart="cpu_per_request"),
    Metric("peak_rss", "peak_rss_mib", "Server peak RSS", "MiB", ",.1f", chart="peak_rss"),
    Metric("error_share", "error_share", "Error share", "%", ",.2f",
           table=False, chart="error_share"),
)

ERROR_KINDS = ("connect_refused", "connect_timeout", "reset", "timeout", "mismatch", "closed")

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (no scipy dependency).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


# -- frames ---------------------------------------------------------------------------


def load_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """One row per Row, nested groups flattened with dots (`load.latency_us.p99`).

    Adds derived columns: `errors_total`, `error_share` (percent), `cpu_us_per_request`
    (the row's own figure, else server CPU / requests) and `peak_rss_mib`. Columns the
    report needs exist even when no row has them (failed rows have empty groups).
    """
    records = [json.loads(row.to_json()) for row in rows]
    df = pd.json_normalize(records) if records else pd.DataFrame()
    needed = [*CELL_COLUMNS, "key", "run_id", "repeat", "status", "reason",
              "server_cpu_us_per_request", "load.requests", "server.cpu_user_s",
              "server.cpu_sys_s", "server.peak_rss_bytes", "load.connections.asked",
              *(m.source for m in METRICS if m.source.startswith("load."))]
    for column in needed:
        if column not in df.columns:
            df[column] = pd.Series(dtype="float64")
    num = lambda column: pd.to_numeric(df[column], errors="coerce")  # noqa: E731
    kinds = [f"load.errors.{kind}" for kind in ERROR_KINDS if f"load.errors.{kind}" in df]
    # min_count=1: a row without an errors group has unknown errors, not zero.
    errors = (df[kinds].apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=1)
              if kinds else pd.Series(math.nan, index=df.index))
    requests = num("load.requests")
    df["errors_total"] = errors
    df["error_share"] = 100.0 * errors / (requests + errors).where(requests + errors > 0)
    cpu_s = num("server.cpu_user_s") + num("server.cpu_sys_s")
    df["cpu_us_per_request"] = num("server_cpu_us_per_request").fillna(
        cpu_s * 1e6 / requests.where(requests > 0))
    df["peak_rss_mib"] = num("server.peak_rss_bytes") / 2**20
    # Starved: connected but no reply in the window (blocking, a full pool, select's cap).
    asked = num("load.connections.asked")
    df["starved_share"] = 100.0 * num("load.connections.starved") / asked.where(asked > 0)
    return df


def t_interval(values: list[float]) -> tuple[float, float]:
    """95% t-interval of the mean; (nan, nan) with fewer than two values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / math.sqrt(n)
    return mean - _t975(n - 1) * sem, mean + _t975(n - 1) * sem


def _t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion; error < 1e-3 beyond 30 df
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (all repeats together).

    Columns: the cell columns, `key`, `status` (ok, client-bound if any usable repeat
    was, failed if every non-skipped repeat failed, skipped), `n` (usable repeats),
    `n_failed`, `n_skipped`, `reason` (first reason given), and for every metric
    `<name>.median`, `.mean`, `.ci_low`, `.ci_high` over the usable repeats.
    """
    records = []
    if not df.empty:
        for _, group in df.groupby([*CELL_COLUMNS, "key"], sort=False, dropna=False):
            records.append(_aggregate_cell(group))
    columns = [*CELL_COLUMNS, "key", "status", "n", "n_failed", "n_skipped", "reason",
               *(f"{m.name}.{stat}" for m in METRICS
                 for stat in ("median", "mean", "ci_low", "ci_high"))]
    out = pd.DataFrame.from_records(records, columns=columns)
    if out.empty:
        return out
    out["_order"] = out["cell.model"].map(plots.model_sort_key)
    out = out.sort_values([*GROUP_COLUMNS, "_order", "cell.connections"], kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)


def _aggregate_cell(group: pd.DataFrame) -> dict[str, Any]:
    first = group.iloc[0]
    status = group["status"]
    usable = group[status.isin(USABLE)]
    n_failed = int((status == "failed").sum())
    if not usable.empty:
        cell_status = "client-bound" if (usable["status"] == "client-bound").any() else "ok"
    else:
        cell_status = "failed" if n_failed else "skipped"
    reasons = [r for r in group["reason"] if isinstance(r, str) and r]
    record: dict[str, Any] = {c: first[c] for c in [*CELL_COLUMNS, "key"]}
    record.update(status=cell_status, n=len(usable), n_failed=n_failed,
                  n_skipped=int((status == "skipped").sum()),
                  reason=reasons[0] if reasons else None)
    for metric in METRICS:
        values = [float(v) for v in pd.to_numeric(usable[metric.source], errors="coerce")
                  if not math.isnan(v)]
        low, high = t_interval(values)
        if low < 0:  # every metric here is non-negative, so its CI is too
            low = 0.0
        record[f"{metric.name}.median"] = statistics.median(values) if values else math.nan
        record[f"{metric.name}.mean"] = statistics.fmean(values) if values else math.nan
        record[f"{metric.name}.ci_low"] = low
        record[f"{metric.name}.ci_high"] = high
    return record


# -- document model shared by the markdown and HTML renderers --------------------------


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
    models = sorted(cells["cell.model"].unique(), key=plots.model_sort_key)
    header = ["connections", *models]
    rows = []
    for conns in sorted(cells["cell.connections"].unique()):
        row = [f"{int(conns):,}"]
        for model in models:
            match = cells[(cells["cell.model"] == model) & (cells["cell.connections"] == conns)]
            row.append(format_cell(match.iloc[0], metric) if not match.empty else "")
        rows.append(row)
    return Table(metric.label, header, rows)


# -- facts about the run ---------------------------------------------------------------


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if value is None:
        return "n/a"
    return str(value)


def cpu_plan_text(plan: Any) -> str:
    """'server CPU 0, load generator CPUs 1-3' for bench.cpus plans, generic otherwise."""
    if not isinstance(plan, dict) or not {"server", "client"} <= plan.keys():
        return _plain(plan)
    text = f"server CPUs {_plain(plan['server'])}, load generator CPUs {_plain(plan['client'])}"
    if plan.get("shared"):
        text += " (shared: figures are pessimistic)"
    if plan.get("note"):
        text += f"; {plan['note']}"
    return text


def machine_line(meta: dict[str, Any]) -> str:
    host, py = meta.get("host", {}), meta.get("python", {})
    cores = host.get("cpu_count")
    avail = host.get("cpus_available")
    cores_text = f"{cores} cores" + (f" ({avail} available)" if avail not in (None, cores)
                                     else "")
    return (f"{host.get('cpu_model') or 'unknown CPU'}, {cores_text}, "
            f"{host.get('system', 'Linux')} {host.get('kernel', '?')}, "
            f"{py.get('implementation', 'Python')} {py.get('version', '?')}")


def run_facts(meta: dict[str, Any], rows: list[Row]) -> list[tuple[str, str]]:
    git = meta.get("git") or {}
    sha = git.get("sha")
    git_text = "not a git checkout" if not sha else sha[:12] + (
        " (dirty working tree)" if git.get("dirty") else "")
    dates = str(meta.get("started_at", "?"))
    if meta.get("finished_at"):
        dates += f" → {meta['finished_at']}"
    elif rows:
        dates += f" → last cell started {max(r.started_at for r in rows)}"
    if meta.get("interrupted"):
        dates += " (interrupted: partial run)"
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "client-bound", "failed",
                                                            "skipped")}
    limits = meta.get("limits") or {}
    command = meta.get("command_line")
    return [
        ("Run", str(meta.get("run_id", "?"))),
        ("Machine", machine_line(meta)),
        ("CPU plan", cpu_plan_text(meta.get("cpu_plan"))),
        ("Date (UTC)", dates),
        ("Git", git_text),
        ("Command", _command_text(command)),
        ("Profile", _plain(meta.get("profile"))),
        ("Rows", f"{len(rows)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"),
        ("Limits", f"somaxconn {_plain(limits.get('somaxconn'))}, RLIMIT_NOFILE "
                   f"{_plain(limits.get('nofile_soft'))}/{_plain(limits.get('nofile_hard'))}"),
        ("Packages", ", ".join(f"{k} {v}" for k, v in sorted((meta.get("packages") or {})
                                                             .items())) or "n/a"),
    ]


def _command_text(command: Any) -> str:
    if not isinstance(command, list) or not command:
        return _plain(command)
    # The first item may be a whole launcher ("python -m bench"): shown as is, unquoted.
    return " ".join([str(command[0]), *(shlex.quote(str(a)) for a in command[1:])])


def caption(meta: dict[str, Any]) -> str:
    """Two lines under every chart: the machine, then plan, date and run."""
    date = str(meta.get("started_at", ""))[:10] or "undated"
    sha = ((meta.get("git") or {}).get("sha") or "")[:8]
    return (f"{machine_line(meta)}\nCPU plan: {cpu_plan_text(meta.get('cpu_plan'))} · {date} · "
            f"run {meta.get('run_id', '?')}" + (f" @ {sha}" if sha else ""))


LEGEND = [
    "Each value is the median over a cell's repeats; \"± x\" is the half-width of the 95% "
    "t-interval of the mean across repeats (absent with a single repeat).",
    f"{CLIENT_BOUND_MARK} client-bound: the load generator saturated a CPU, so throughput is "
    "a lower bound on what the server can do.",
    f"{PARTIAL_MARK} some repeats of this cell failed; the value uses the others.",
    "\"failed\": every repeat failed (see Notes); \"skipped\": not runnable on this machine; "
    "empty: not in the matrix.",
]


def notes_table(df: pd.DataFrame) -> Table | None:
    """Every failed, skipped or client-bound repeat with its reason."""
    odd = df[df["status"] != "ok"]
    if odd.empty:
        return None
    rows = [[str(r["key"]), str(int(r["repeat"])), str(r["status"]),
             str(r["reason"]) if isinstance(r["reason"], str) else ""]
            for _, r in odd.iterrows()]
    return Table("Notes: failed, skipped and client-bound repeats",
                 ["cell", "repeat", "status", "reason"], rows, numeric=False)


# -- output ----------------------------------------------------------------------------


def build_report(run_dir: Path) -> Path:
    """Write report.md, report.html, charts/*.png|svg and pyperf.json into `run_dir`."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    rows = store.rows()
    meta = store.metadata
    frame = load_frame(rows)
    cells = aggregate(frame)
    charts_dir = run_dir / CHARTS_DIR
    charts_dir.mkdir(exist_ok=True)

    sections = []
    if not cells.empty:
        for _, group in cells.groupby(GROUP_COLUMNS, sort=False, dropna=False):
            sections.append(_section(group, meta, charts_dir))
    doc = Document(title=f"sockbench report: {meta.get('run_id', run_dir.name)}",
                   facts=run_facts(meta, rows), legend=LEGEND, sections=sections,
                   notes=notes_table(frame) if not frame.empty else None)

    md_path = run_dir / REPORT_MD
    md_path.write_text(render_markdown(doc), encoding="utf-8")
    (run_dir / REPORT_HTML).write_text(render_html(doc, run_dir), encoding="utf-8")
    usable = [r for r in rows if r.status in USABLE]
    if usable:
        write_pyperf_suite(usable, meta, run_dir / PYPERF_JSON)
    return md_path


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
        note = f"{metric.note}\n" if metric.note else ""
        _save_chart(drawable, metric, chart_title, note + caption(meta), charts_dir / stem)
        section.charts.append((chart_title, f"{CHARTS_DIR}/{stem}"))
    return section


def _save_chart(cells: pd.DataFrame, metric: Metric, title: str, caption_text: str,
                stem: Path) -> None:
    rc = {"svg.hashsalt": "sockbench", "svg.fonttype": "none", "font.size": 10}
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        # Log axes with one value per model warn about limits; that is not news here.
        warnings.simplefilter("ignore", UserWarning)
        fig = Figure(figsize=(8, 4.6), dpi=150, layout="constrained")
        ax = fig.add_subplot()
        plots.plot_metric(ax, cells, metric.name, ylabel=metric.label, log_y=metric.log_y)
        ax.set_title(title, fontsize=11.5, loc="left")
        _save(fig, stem, caption_text)


def render_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    out += [f"- **{label}:** {_md(value)}" for label, value in doc.facts]
    out += ["", *[f"> {line}  " for line in doc.legend], ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for table in section.tables:
            out += [f"### {table.title}", "", *_md_table(table), ""]
        if section.charts:
            out += ["### Charts", ""]
            out += [f"![{title}]({path}.png)" for title, path in section.charts]
            out += [""]
    if doc.notes:
        out += [f"## {doc.notes.title}", "", *_md_table(doc.notes), ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    # Numbers right-aligned; the first column is a label.
    rule = " ---: " if table.numeric else " --- "
    lines = ["| " + " | ".join(_md(h) for h in table.header) + " |",
             "|" + "|".join([" --- "] + [rule] * (len(table.header) - 1)) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table.rows]
    return lines


def save_comparison_chart(records: list[dict[str, Any]], panels: list[tuple[str, str]], *,
                          threshold: float, title: str, caption_text: str, stem: Path) -> None:
    """`stem`.png and .svg for `bench.compare`: one forest-plot panel per (metric, xlabel).

    `records` are one dict per cell and metric: key, metric, ratio, ci_low, ci_high, verdict.
    """
    frame = pd.DataFrame.from_records(records, columns=["key", "metric", "ratio", "ci_low",
                                                        "ci_high", "verdict"])
    n_cells = frame["key"].nunique()
    rc = {"svg.hashsalt": "sockbench", "svg.fonttype": "none", "font.size": 10}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(4.2 * len(panels) + 3, 1.8 + 0.32 * n_cells), dpi=150,
                     layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for i, (ax, (metric, xlabel)) in enumerate(zip(axes, panels, strict=True)):
            plots.plot_comparison(ax, frame[frame["metric"] == metric].reset_index(drop=True),
                                  threshold=threshold, xlabel=xlabel, labels=i == 0)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:  # one legend for all panels, each verdict once
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        fig.legend(handles, labels, loc="outside upper right", ncols=len(labels),
                   frameon=False, fontsize=8.5)
        fig.suptitle(title, fontsize=11.5, x=0.01, ha="left")
        _save(fig, stem, caption_text)


def _save(fig: Figure, stem: Path, caption_text: str) -> None:
    """Caption, then PNG and SVG beside each other.

    No timestamps in files: re-rendering an unchanged run gives identical bytes.
    bbox "tight": nothing (a long legend or caption) is cut off at the edges.
    """
    fig.supxlabel(caption_text, fontsize=7, color="0.35", x=0.01, ha="left",
                  multialignment="left")
    fig.savefig(stem.with_suffix(".png"), dpi=150, bbox_inches="tight",
                metadata={"Software": None})
    fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight",
                metadata={"Date": None, "Creator": None})

"""Rows -> a pandas frame, and one aggregated row per cell with its statistics.

A cell's value is the median over its usable repeats (status ok or client-bound); its
interval is the distribution-free interval of the median from the repeats' order
statistics, with its coverage (bench.analysis.stats.median_interval), NaN with a single repeat.
Percentiles are never averaged across repeats: each repeat's p99 is a value, and a
cell's p99 is their median. A latency that an unanswered request decided in any repeat
is a lower bound, and so is the cell's median (`<name>.bound`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.analysis.stats import median_interval
from bench.record import USABLE, Row
from clients.result import RESOLUTION_TENTH_US
from servers import SERVERS

CELL_COLUMNS = [
    "cell.model",
    "cell.protocol",
    "cell.connections",
    "cell.payload",
    "cell.mode",
    "cell.driver",
    "cell.backlog",
    "cell.work",
    "cell.load",
    "cell.idle",
    "cell.idle_mode",
    "cell.slow",
    "cell.slow_mode",
]
# One table set and one figure per metric for each combination of these:
STATS = ("median", "ci_low", "ci_high", "coverage", "bound")
GROUP_COLUMNS = [
    "cell.protocol",
    "cell.payload",
    "cell.mode",
    "cell.driver",
    "cell.backlog",
    "cell.work",
    # bench run --idle: each count of idle connections is a group of its own (a run
    # without the axis has one value here, so its groups are as they were)
    "cell.idle",
    "cell.idle_mode",
    # bench run --slow: so is each count of slow connections
    "cell.slow",
    "cell.slow_mode",
]
IDLE_COLUMNS = ["cell.idle", "cell.idle_mode"]
# Row.idle's figures (flattened: idle.held, idle.memory.rss_kib, ...) that exist as
# columns even where no row has them; bench.report.idle_section reads them
IDLE_FIGURES = ("idle.held", "idle.memory.rss_kib", "idle.memory.uss_kib", "idle.memory.threads")
# Row.slow's figures (bench.report.slow_section reads them), columns even where no row has
# them. A row without slow connections has no cell.slow (written as schema 4): 0, "sender".
SLOW_FIGURES = ("slow.requests", "slow.held_s", "slow.interval_ms", "slow.ticks", "slow.late")


# A latency measured to 0.1 µs in every repeat of a cell (`latency_fine`) is printed
# with one decimal below FINE_BELOW_US: three significant digits, as its histogram keeps.
# Rows measured more coarsely (whole µs before load result schema 3, locust's buckets)
# keep whole µs, so no table claims a tenth they never had.
FINE_FORMAT = ",.1f"
FINE_BELOW_US = 100.0
RESOLUTION_COLUMN = "load.latency_resolution"

PY = " py"  # between a model and its interpreter in a line's name: "epoll py3.12"
RUN_SEP = " · "  # between a model and its run's label, runs side by side: "epoll · night-2"


def model_sort_key(model: str) -> tuple[int, str]:
    """Models in the registry's order (servers.SERVERS: the models, then the reference
    servers), then any others (external servers) alphabetically; a model's lines under
    several interpreters (`epoll py3.12`) or from several runs (`epoll · night-2`)
    together, in the interpreters' or the labels' order."""
    line, _, run = model.partition(RUN_SEP)
    base, _, python = line.partition(PY)
    order = list(SERVERS)
    suffix = f"{python}{RUN_SEP}{run}"
    return (order.index(base), suffix) if base in order else (len(order), model)


@dataclass(frozen=True)
class Metric:
    name: str  # aggregate() columns are <name>.median, .ci_low, .ci_high, .coverage, .bound
    source: str  # load_frame() column
    title: str
    unit: str
    fmt: str  # format spec for one value
    table: bool = True
    ci: bool = False  # show the interval of the median in tables
    chart: str | None = None  # chart file stem, None for no chart
    log_y: bool = False
    note: str = ""  # a line under the chart, where the figure alone would mislead
    bound: str | None = None  # "<latency>.<percentile>" whose `bounds` may name it
    fine: bool = False  # a latency: one decimal where measured to 0.1 µs (FINE_FORMAT)

    @property
    def label(self) -> str:
        return f"{self.title} ({self.unit})"


ALL_REQUESTS = (
    "All requests: answered ones, and those still unanswered when the window ended at "
    "their wait so far (a lower bound, marked ≥ in the tables)."
)
ANSWERED_ONLY = (
    "Answered requests only: a starved connection adds no sample (see the worst-wait chart)."
)
PROCESS_VIEW = "Process view: the server processes' CPU time, without the softirq time on its core."
CORE_VIEW = (
    "Core view: the server CPUs' busy time in /proc/stat's 10 ms ticks (softirq in; "
    "anything else there counts too)."
)

METRICS: tuple[Metric, ...] = (
    Metric(
        "throughput",
        "load.throughput_rps",
        "Throughput",
        "req/s",
        ",.0f",
        ci=True,
        chart="throughput",
    ),
    Metric(
        "p50",
        "load.latency_all.p50",
        "p50 latency, all requests",
        "µs",
        ",.0f",
        ci=True,
        chart="latency_p50",
        log_y=True,
        note=ALL_REQUESTS,
        bound="latency_all.p50",
        fine=True,
    ),
    Metric(
        "p99",
        "load.latency_all.p99",
        "p99 latency, all requests",
        "µs",
        ",.0f",
        ci=True,
        chart="latency_p99",
        log_y=True,
        note=ALL_REQUESTS,
        bound="latency_all.p99",
        fine=True,
    ),
    Metric(
        "p999",
        "load.latency_all.p999",
        "p99.9 latency, all requests",
        "µs",
        ",.0f",
        ci=True,
        bound="latency_all.p999",
        fine=True,
    ),
    Metric(
        "p99_answered",
        "load.latency.p99",
        "p99 latency, answered only",
        "µs",
        ",.0f",
        ci=True,
        note=ANSWERED_ONLY,
        fine=True,
    ),
    Metric(
        "worst_wait",
        "load.connections.worst_wait_max_us",
        "Longest wait of any connection",
        "µs, capped at the window",
        ",.0f",
        ci=True,
        chart="worst_wait",
        log_y=True,
        note="Per connection, its longest wait for a reply in the window; a starved "
        "connection waited the whole window.",
    ),
    Metric(
        "worst_wait_p99",
        "load.connections.worst_wait_p99_us",
        "Longest wait per connection, p99 across connections",
        "µs",
        ",.0f",
    ),
    Metric("censored", "load.latency_all.censored", "Unanswered at the end", "requests", ",.0f"),
    Metric(
        "starved_share",
        "starved_share",
        "Starved connections",
        "% of connections",
        ",.1f",
        chart="starved",
    ),
    Metric("errors", "errors_total", "Errors", "count, whole run", ",.0f"),
    Metric(
        "cpu_per_request",
        "cpu_us_per_request",
        "Server CPU per request, process view",
        "µs",
        ",.1f",
        ci=True,
        chart="cpu_per_request",
        note=PROCESS_VIEW,
    ),
    Metric(
        "core_per_request",
        "server_core_us_per_request",
        "Server CPU per request, core view",
        "µs",
        ",.1f",
        ci=True,
        chart="core_per_request",
        note=CORE_VIEW,
    ),
    Metric("peak_rss", "peak_rss_mib", "Server peak RSS", "MiB", ",.1f", chart="peak_rss"),
    Metric(
        "error_share",
        "error_share",
        "Error share",
        "% of requests ended in the window",
        ",.2f",
        chart="error_share",  # its table beside the count's: the chart shows this one
    ),
)


def value_format(metric: Metric, cell: pd.Series | dict[str, Any]) -> str:
    """The format of an aggregated cell's figures of `metric`: FINE_FORMAT for a latency
    below FINE_BELOW_US that every usable repeat measured to 0.1 µs, else the metric's."""
    median = cell.get(f"{metric.name}.median")
    fine = metric.fine and bool(cell.get("latency_fine"))
    if fine and median is not None and not pd.isna(median) and abs(median) < FINE_BELOW_US:
        return FINE_FORMAT
    return metric.fmt


def metric_names() -> list[str]:
    """What `bench report --metrics` accepts: each metric's name, and its chart's file
    stem where that differs (`starved` for starved_share)."""
    names = [m.name for m in METRICS]
    return names + [m.chart for m in METRICS if m.chart and m.chart not in names]


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce")


def load_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """One row per Row, nested groups flattened with dots (`load.latency_us.p99`).

    Adds derived columns: `errors_total`, `error_share` (percent), `cpu_us_per_request`
    (the row's own figure, else server CPU / requests) and `peak_rss_mib`; and from the
    idle connections (`idle.held`, `idle.memory.*`, NaN without them): `idle_user_kib`
    (the server at rest: USS, else RSS), `idle_user_source` ("USS" or "RSS"),
    `idle_kernel_kib` (the sum of `idle.memory.server_slab_kib.*`: the kernel's, server
    side) and `idle_threads`. Columns
    the report needs exist even when no row has them (failed rows have empty groups).
    """
    records = [json.loads(row.to_json()) for row in rows]
    df = pd.json_normalize(records) if records else pd.DataFrame()
    needed = [
        *CELL_COLUMNS,
        "key",
        "run_id",
        "repeat",
        "status",
        "reason",
        "verdict",
        "probe_rps",
        "server_cpu_us_per_request",
        "server_core_us_per_request",
        "load.requests",
        "server.cpu_user_s",
        "server.cpu_sys_s",
        "server.peak_rss_bytes",
        "load.connections.asked",
        "load.connections.starved",
        RESOLUTION_COLUMN,
        *IDLE_FIGURES,
        *SLOW_FIGURES,
        *(m.source for m in METRICS if m.source.startswith("load.")),
    ]
    for column in needed:
        if column not in df.columns:
            df[column] = pd.Series(dtype="float64")
    df["cell.slow"] = _numeric(df, "cell.slow").fillna(0).astype(int)
    df["cell.slow_mode"] = (
        df["cell.slow_mode"].astype(object).where(df["cell.slow_mode"].notna(), "sender")
    )
    if "cell.python" in df.columns:  # the interpreter axis: one line per model and Python
        python = df["cell.python"].fillna("").astype(str)
        df["cell.model"] = df["cell.model"].where(python == "", df["cell.model"] + PY + python)
    window = _sum_columns(df, "load.errors.")  # min_count=1: no group is unknown, not 0
    requests = _numeric(df, "load.requests")
    df["errors_total"] = window + _sum_columns(df, "load.errors_before.").fillna(0)
    # one scope: errors and requests that ended in the window (clients.result)
    df["error_share"] = 100.0 * window / (requests + window).where(requests + window > 0)
    for metric in METRICS:
        if metric.bound is not None:
            latency, name = metric.bound.rsplit(".", 1)
            column = f"load.{latency}.bounds"
            df[f"bound.{metric.name}"] = (
                df[column].map(lambda b, n=name: isinstance(b, list) and n in b)
                if column in df.columns
                else False
            )
    cpu_s = _numeric(df, "server.cpu_user_s") + _numeric(df, "server.cpu_sys_s")
    df["cpu_us_per_request"] = _numeric(df, "server_cpu_us_per_request").fillna(
        cpu_s * 1e6 / requests.where(requests > 0)
    )
    df["peak_rss_mib"] = _numeric(df, "server.peak_rss_bytes") / 2**20
    # Starved: connected but no reply in the window (blocking, a full pool, select's cap).
    asked = _numeric(df, "load.connections.asked")
    df["starved_share"] = 100.0 * _numeric(df, "load.connections.starved") / asked.where(asked > 0)
    _idle_columns(df)
    return df


def _idle_columns(df: pd.DataFrame) -> None:
    """The server at rest beside its idle connections, one figure per column."""
    uss = _numeric(df, "idle.memory.uss_kib")
    df["idle_user_kib"] = uss.fillna(_numeric(df, "idle.memory.rss_kib"))
    df["idle_user_source"] = (
        uss.notna().map({True: "USS", False: "RSS"}).where(df["idle_user_kib"].notna())
    )
    df["idle_kernel_kib"] = _sum_columns(df, "idle.memory.server_slab_kib.")
    df["idle_threads"] = _numeric(df, "idle.memory.threads")


def _sum_columns(df: pd.DataFrame, prefix: str) -> pd.Series:
    """Row sums of every `prefix*` column; NaN where a row has none of them (unknown)."""
    columns = [c for c in df.columns if c.startswith(prefix)]
    if not columns:
        return pd.Series(math.nan, index=df.index)
    return df[columns].apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=1)


def _reasons_text(suspect: pd.DataFrame, n_usable: int) -> str:
    """Per check, in how many repeats it failed and one example: "client-bound in 3 of
    6 repeats, e.g. worker 0 waited for work 5% of the window (...)"."""
    repeats: dict[str, int] = {}
    example: dict[str, str] = {}
    for listed in suspect["reasons"] if "reasons" in suspect.columns else ():
        if not isinstance(listed, list):
            continue
        for code in dict.fromkeys(r["code"] for r in listed):  # a repeat counts once
            repeats[code] = repeats.get(code, 0) + 1
        for reason in listed:
            example.setdefault(reason["code"], reason["text"])
    if n_usable <= 1:
        return "; ".join(example.values())
    return "; ".join(
        f"{code} in {n} of {n_usable} repeats, e.g. {example[code]}" for code, n in repeats.items()
    )


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (all repeats together).

    Columns: the cell columns, `key`, `status` (ok, client-bound if any usable repeat
    was, failed if every non-skipped repeat failed, skipped), `verdict` (suspect if any
    usable repeat was), `reasons` (the distinct reasons, "; "-joined), `n` (usable
    repeats), `n_failed`, `n_skipped`, `reason` (first reason given), `latency_fine`
    (every usable repeat measured its latencies to 0.1 µs: `value_format`), and for every
    metric `<name>.median`, `.ci_low`, `.ci_high`, `.coverage` (of the interval of the
    median) and `.bound` (a lower bound) over the usable repeats.
    """
    records = []
    if not df.empty:
        for _, group in df.groupby([*CELL_COLUMNS, "key"], sort=False, dropna=False):
            records.append(_aggregate_cell(group))
    columns = [
        *CELL_COLUMNS,
        "key",
        "status",
        "verdict",
        "reasons",
        "n",
        "n_failed",
        "n_skipped",
        "reason",
        "latency_fine",
        *(f"{m.name}.{stat}" for m in METRICS for stat in STATS),
    ]
    out = pd.DataFrame.from_records(records, columns=columns)
    if out.empty:
        return out
    out["_order"] = out["cell.model"].map(model_sort_key)
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
    n_usable = len(usable)
    record.update(
        status=cell_status,
        n=n_usable,
        n_failed=n_failed,
        n_skipped=int((status == "skipped").sum()),
        reason=reasons[0] if reasons else None,
    )
    suspect = usable[usable["verdict"] == "suspect"]
    record["verdict"] = "suspect" if not suspect.empty else ("valid" if n_usable else None)
    record["reasons"] = _reasons_text(suspect, n_usable)
    record["latency_fine"] = bool(n_usable) and bool(
        (usable[RESOLUTION_COLUMN] == RESOLUTION_TENTH_US).all()
    )
    for metric in METRICS:
        values = [
            float(v)
            for v in pd.to_numeric(usable[metric.source], errors="coerce")
            if not math.isnan(v)
        ]
        interval = median_interval(values)
        record[f"{metric.name}.median"] = statistics.median(values) if values else math.nan
        record[f"{metric.name}.ci_low"] = interval.low
        record[f"{metric.name}.ci_high"] = interval.high
        record[f"{metric.name}.coverage"] = interval.coverage
        column = f"bound.{metric.name}"
        record[f"{metric.name}.bound"] = bool(
            column in usable.columns and usable[column].fillna(False).astype(bool).any()
        )
    return record

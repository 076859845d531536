"""Rows -> a pandas frame, and one aggregated row per cell with its statistics.

A cell's value is the median over its usable repeats (status ok or client-bound); its
uncertainty is the 95% t-interval of the mean across those repeats, NaN with a single
repeat. Percentiles are never averaged across repeats: each repeat's p99 is a value,
and a cell's p99 is their median.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.record import USABLE, Row
from servers import MODELS

CELL_COLUMNS = [
    "cell.model",
    "cell.protocol",
    "cell.connections",
    "cell.payload",
    "cell.mode",
    "cell.driver",
    "cell.backlog",
    "cell.work",
]
# One table set and one figure per metric for each combination of these:
GROUP_COLUMNS = [
    "cell.protocol",
    "cell.payload",
    "cell.mode",
    "cell.driver",
    "cell.backlog",
    "cell.work",
]


def model_sort_key(model: str) -> tuple[int, str]:
    """Models in the registry's order (servers.MODELS), then any others alphabetically."""
    order = list(MODELS)
    return (order.index(model), "") if model in order else (len(order), model)


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
ANSWERED_ONLY = (
    "Latency of answered requests only: starved connections (see the starved chart) add no samples."
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
        "load.latency_us.p50",
        "p50 latency",
        "µs",
        ",.0f",
        ci=True,
        chart="latency_p50",
        log_y=True,
        note=ANSWERED_ONLY,
    ),
    Metric(
        "p99",
        "load.latency_us.p99",
        "p99 latency",
        "µs",
        ",.0f",
        ci=True,
        chart="latency_p99",
        log_y=True,
        note=ANSWERED_ONLY,
    ),
    Metric("p999", "load.latency_us.p999", "p99.9 latency", "µs", ",.0f", ci=True),
    Metric("errors", "errors_total", "Errors", "count, all kinds", ",.0f"),
    Metric("starved", "load.connections.starved", "Starved connections", "count", ",.0f"),
    Metric(
        "starved_share",
        "starved_share",
        "Starved connections",
        "% of connections",
        ",.1f",
        table=False,
        chart="starved",
    ),
    Metric(
        "cpu_per_request",
        "cpu_us_per_request",
        "Server CPU per request",
        "µs",
        ",.1f",
        ci=True,
        chart="cpu_per_request",
    ),
    Metric("peak_rss", "peak_rss_mib", "Server peak RSS", "MiB", ",.1f", chart="peak_rss"),
    Metric(
        "error_share", "error_share", "Error share", "%", ",.2f", table=False, chart="error_share"
    ),
)

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (no scipy dependency).
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce")


def load_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """One row per Row, nested groups flattened with dots (`load.latency_us.p99`).

    Adds derived columns: `errors_total`, `error_share` (percent), `cpu_us_per_request`
    (the row's own figure, else server CPU / requests) and `peak_rss_mib`. Columns the
    report needs exist even when no row has them (failed rows have empty groups).
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
        "server_cpu_us_per_request",
        "load.requests",
        "server.cpu_user_s",
        "server.cpu_sys_s",
        "server.peak_rss_bytes",
        "load.connections.asked",
        *(m.source for m in METRICS if m.source.startswith("load.")),
    ]
    for column in needed:
        if column not in df.columns:
            df[column] = pd.Series(dtype="float64")
    kinds = [c for c in df.columns if c.startswith("load.errors.")]  # every kind counted
    # min_count=1: a row without an errors group has unknown errors, not zero.
    errors = (
        df[kinds].apply(pd.to_numeric, errors="coerce").sum(axis=1, min_count=1)
        if kinds
        else pd.Series(math.nan, index=df.index)
    )
    requests = _numeric(df, "load.requests")
    df["errors_total"] = errors
    df["error_share"] = 100.0 * errors / (requests + errors).where(requests + errors > 0)
    cpu_s = _numeric(df, "server.cpu_user_s") + _numeric(df, "server.cpu_sys_s")
    df["cpu_us_per_request"] = _numeric(df, "server_cpu_us_per_request").fillna(
        cpu_s * 1e6 / requests.where(requests > 0)
    )
    df["peak_rss_mib"] = _numeric(df, "server.peak_rss_bytes") / 2**20
    # Starved: connected but no reply in the window (blocking, a full pool, select's cap).
    asked = _numeric(df, "load.connections.asked")
    df["starved_share"] = 100.0 * _numeric(df, "load.connections.starved") / asked.where(asked > 0)
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
    columns = [
        *CELL_COLUMNS,
        "key",
        "status",
        "n",
        "n_failed",
        "n_skipped",
        "reason",
        *(f"{m.name}.{stat}" for m in METRICS for stat in ("median", "mean", "ci_low", "ci_high")),
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
    record.update(
        status=cell_status,
        n=len(usable),
        n_failed=n_failed,
        n_skipped=int((status == "skipped").sum()),
        reason=reasons[0] if reasons else None,
    )
    for metric in METRICS:
        values = [
            float(v)
            for v in pd.to_numeric(usable[metric.source], errors="coerce")
            if not math.isnan(v)
        ]
        low, high = t_interval(values)
        if low < 0:  # every metric here is non-negative, so its CI is too
            low = 0.0
        record[f"{metric.name}.median"] = statistics.median(values) if values else math.nan
        record[f"{metric.name}.mean"] = statistics.fmean(values) if values else math.nan
        record[f"{metric.name}.ci_low"] = low
        record[f"{metric.name}.ci_high"] = high
    return record

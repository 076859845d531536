"""results.csv: a run folder's rows as one tidy table, for spreadsheets and pandas.

One line per cell and repeat, every row of the run (failed and skipped ones too, with
their reason), each column a plain value with its unit in its name (results/README.md
lists them). The figures come from bench.report.frame.load_frame, the report's own frame, so
the CSV and the report agree; an unknown figure is an empty field.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.record import USABLE, Row
from bench.report.frame import load_frame
from bench.store import RunStore, write_text_atomic
from clients.wire import describe

RESULTS_CSV = "results.csv"

Record = dict[str, Any]  # one load_frame() row: flattened columns and derived ones


def _column(name: str) -> Callable[[Row, Record], Any]:
    return lambda row, record: record.get(name)


def _window_errors(row: Row, record: Record) -> int | None:
    return sum(row.load.errors.values()) if row.load is not None else None


def _verdict(row: Row, record: Record) -> str:
    return row.verdict if row.status in USABLE else ""  # no figures, nothing to judge


def _client_reasons(row: Row, record: Record) -> str:
    return "; ".join(row.load.client.reasons) if row.load is not None else ""


# (name, value): the columns in their order. The names are a contract: keep them.
COLUMNS: tuple[tuple[str, Callable[[Row, Record], Any]], ...] = (
    ("run_id", lambda row, _: row.run_id),
    ("key", lambda row, _: row.cell.key),
    ("model", lambda row, _: row.cell.model),
    ("python", lambda row, _: row.cell.python),
    ("protocol", lambda row, _: row.cell.protocol),
    ("request", lambda row, _: describe(row.cell.protocol, row.cell.payload)),
    ("payload_bytes", lambda row, _: row.cell.payload),
    ("connections", lambda row, _: row.cell.connections),
    ("mode", lambda row, _: row.cell.mode),
    ("driver", lambda row, _: row.cell.driver),
    ("backlog", lambda row, _: row.cell.backlog),
    ("work", lambda row, _: row.cell.work),
    ("load", lambda row, _: row.cell.load),
    ("search", lambda row, _: row.cell.search),
    ("repeat", lambda row, _: row.repeat),
    ("status", lambda row, _: row.status),
    ("verdict", _verdict),
    ("verdict_reasons", lambda row, _: ";".join(dict.fromkeys(r.code for r in row.reasons))),
    ("reason", lambda row, _: row.reason),
    ("throughput_rps", _column("load.throughput_rps")),
    ("rate_asked_rps", _column("load.rate.asked")),
    ("latency_p50_us", _column("load.latency_all.p50")),
    ("latency_p99_us", _column("load.latency_all.p99")),
    ("latency_p999_us", _column("load.latency_all.p999")),
    ("latency_p50_bound", _column("bound.p50")),
    ("latency_p99_bound", _column("bound.p99")),
    ("latency_p999_bound", _column("bound.p999")),
    ("latency_answered_p99_us", _column("load.latency.p99")),
    ("latency_resolution", _column("load.latency_resolution")),
    ("requests", _column("load.requests")),
    ("errors", _window_errors),
    ("errors_total", _column("errors_total")),
    ("error_share_pct", _column("error_share")),
    ("starved_connections", _column("load.connections.starved")),
    ("starved_pct", _column("starved_share")),
    ("connections_established", _column("load.connections.established")),
    ("server_cpu_us_per_request", _column("cpu_us_per_request")),
    ("server_cpu_source", lambda row, _: row.server_cpu_source),
    ("server_core_us_per_request", _column("server_core_us_per_request")),
    ("peak_rss_mib", _column("peak_rss_mib")),
    ("client_bound_reasons", _client_reasons),
    ("started_at", lambda row, _: row.started_at),
)
HEADER = tuple(name for name, _ in COLUMNS)


def _idle(name: str) -> Callable[[Row, Record], Any]:
    return lambda row, _: None if row.idle is None else getattr(row.idle, name)


def _memory(name: str) -> Callable[[Row, Record], Any]:
    return lambda row, _: (
        None if row.idle is None or row.idle.memory is None else getattr(row.idle.memory, name)
    )


# A run with an idle axis (bench run --idle): the cell's idle axis after `search`, what
# was held and the server at rest after `peak_rss_mib`. A run without one has none of these.
IDLE_AXIS: tuple[tuple[str, Callable[[Row, Record], Any]], ...] = (
    ("idle", lambda row, _: row.cell.idle),
    ("idle_mode", lambda row, _: row.cell.idle_mode),
)
IDLE_FIGURES: tuple[tuple[str, Callable[[Row, Record], Any]], ...] = (
    ("idle_established", _idle("established")),
    ("idle_held", _idle("held")),
    ("idle_open_at_end", _idle("open_at_end")),
    ("idle_closed_by_server", _idle("closed_by_server")),
    ("idle_refused", _idle("refused")),
    ("idle_lost", _idle("lost")),
    ("idle_holders", _idle("holders")),
    ("server_rss_at_rest_kib", _memory("rss_kib")),
    ("server_uss_at_rest_kib", _memory("uss_kib")),
    ("server_threads_at_rest", _memory("threads")),
    ("kernel_socket_kib", _column("idle_kernel_kib")),
)


def _slow(name: str) -> Callable[[Row, Record], Any]:
    return lambda row, _: None if row.slow is None else getattr(row.slow, name)


# A run with a slow axis (bench run --slow): the cell's slow axis after the idle one, and
# what the slow connections did after the idle figures. A run without one has none.
SLOW_AXIS: tuple[tuple[str, Callable[[Row, Record], Any]], ...] = (
    ("slow", lambda row, _: row.cell.slow),
    ("slow_mode", lambda row, _: row.cell.slow_mode),
)
SLOW_FIGURES: tuple[tuple[str, Callable[[Row, Record], Any]], ...] = (
    ("slow_interval_ms", _slow("interval_ms")),
    ("slow_established", _slow("established")),
    ("slow_open_at_end", _slow("open_at_end")),
    ("slow_closed_by_server", _slow("closed_by_server")),
    ("slow_bad_replies", _slow("bad_replies")),
    ("slow_requests", _slow("requests")),
    ("slow_held_s", _slow("held_s")),
    ("slow_ticks", _slow("ticks")),
    ("slow_late", _slow("late")),
)


def columns_of(rows: Sequence[Row]) -> tuple[tuple[str, Callable[[Row, Record], Any]], ...]:
    """COLUMNS, and where any row held idle (slow) connections the idle (slow) ones in
    their places."""
    idle = any(row.cell.idle or row.idle is not None for row in rows)
    slow = any(row.cell.slow or row.slow is not None for row in rows)
    if not (idle or slow):
        return COLUMNS
    names = [name for name, _ in COLUMNS]
    after_search, after_rss = names.index("search") + 1, names.index("peak_rss_mib") + 1
    return (
        *COLUMNS[:after_search],
        *(IDLE_AXIS if idle else ()),
        *(SLOW_AXIS if slow else ()),
        *COLUMNS[after_search:after_rss],
        *(IDLE_FIGURES if idle else ()),
        *(SLOW_FIGURES if slow else ()),
        *COLUMNS[after_rss:],
    )


# the latency bounds say something only beside a latency
_BOUND_OF = {f"latency_{p}_bound": f"latency_{p}_us" for p in ("p50", "p99", "p999")}


def _text(value: Any) -> str:
    """A field: empty for unknown (None, NaN), true/false, integers without ".0",
    other numbers to 6 decimals (no float noise such as 47.900000000000006)."""
    if value is None:
        return ""
    if isinstance(value, bool):  # to_dict() gives Python's types, not numpy's
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return ""
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(round(number, 6))


def csv_records(rows: Sequence[Row]) -> list[dict[str, str]]:
    """The table as {column: field text}, one per row, in the rows' order."""
    records = load_frame(rows).to_dict("records") if rows else []
    columns = columns_of(rows)
    table = []
    for row, record in zip(rows, records, strict=True):
        fields = {name: _text(value(row, record)) for name, value in columns}
        for bound, latency in _BOUND_OF.items():
            if not fields[latency]:
                fields[bound] = ""
        table.append(fields)
    return table


def write_results_csv(run_dir: Path) -> Path:
    """Write `results.csv` into the run folder from its rows (bench.store); returns its
    path. Written atomically: a reader sees the old table or the new one."""
    run_dir = Path(run_dir)
    rows = RunStore.open(run_dir).rows()
    out = io.StringIO()
    header = [name for name, _ in columns_of(rows)]
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_records(rows))
    path = run_dir / RESULTS_CSV
    write_text_atomic(path, out.getvalue())
    return path

"""Export a run as a pyperf BenchmarkSuite, for `python -m pyperf compare_to/stats/hist`.

Mapping (documented in results/README.md):

- one benchmark per cell key (`epoll/echo/c10/p64/persistent/loadgen`), one pyperf Run
  per repeat, whose single value is seconds per request, 1 / throughput: pyperf
  compares "time per operation", lower is better, like every pyperf benchmark;
- one benchmark per latency percentile of all requests (unanswered ones at their
  wait so far), named `<key>:p50`, `<key>:p99`, `<key>:p99.9`, and one for the longest
  wait of any connection, `<key>:worst-wait`, one value per repeat, in seconds. They are
  separate benchmarks (not metadata) so that compare_to flags a tail-latency or a
  starvation regression just as it flags a throughput one;
- only ok and client-bound rows; each Run carries the row's status, verdict, repeat,
  date, measuring duration and which of its percentiles are lower bounds
  (`sockbench_lower_bounds`), plus the machine's pyperf metadata (common to every run,
  so pyperf shows it once per suite).

pyperf wants several values to judge significance; with one repeat per cell
`compare_to` still works (it prints the ratio and says it cannot tell significance).
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from pathlib import Path
from typing import Any

import pyperf

from bench.record import USABLE, Row
from bench.store import write_text_atomic

PERCENTILES = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))  # (Latency field, suffix)


def write_pyperf_suite(rows: list[Row], metadata: dict[str, Any], path: Path) -> None:
    """Write the suite to `path` (atomically). With no usable row: warn, write nothing."""
    common = _common_metadata(metadata)
    series: dict[str, list[pyperf.Run]] = {}
    for row in rows:
        if row.status not in USABLE:
            continue
        run_meta = {**common, **_row_metadata(row)}
        for name, value in _values(row):
            run = pyperf.Run(
                [value],
                metadata={**run_meta, "name": name, "unit": "second"},
                collect_metadata=False,
            )
            series.setdefault(name, []).append(run)
    if not series:
        warnings.warn(
            f"no ok or client-bound row with a throughput: {path} not written",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    suite = pyperf.BenchmarkSuite([pyperf.Benchmark(runs) for runs in series.values()])
    text = io.StringIO()
    suite.dump(text, compact=False)
    write_text_atomic(Path(path), text.getvalue())


def _values(row: Row) -> list[tuple[str, float]]:
    """(benchmark name, seconds) pairs of one row; missing or zero figures are left out."""
    key, load = row.cell.key, row.load
    if load is None:
        return []
    out = []
    if load.throughput_rps > 0:
        out.append((key, 1.0 / load.throughput_rps))
    latency = load.latency_all or load.latency
    for field, suffix in PERCENTILES:
        us = getattr(latency, field)
        if us > 0:  # pyperf values must be > 0
            out.append((f"{key}:{suffix}", us / 1e6))
    worst = load.connections.worst_wait_max_us
    if worst:
        out.append((f"{key}:worst-wait", worst / 1e6))
    return out


def _row_metadata(row: Row) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "sockbench_status": row.status,
        "sockbench_verdict": row.verdict,
        "sockbench_repeat": row.repeat,
    }
    try:
        # pyperf reads naive ISO dates; rows store aware UTC ones.
        started = dt.datetime.fromisoformat(row.started_at).astimezone(dt.UTC)
        meta["date"] = started.replace(tzinfo=None).isoformat(sep=" ")
    except ValueError:
        pass
    if row.load is not None:
        meta["duration"] = row.load.duration_s
        bounds = (row.load.latency_all or row.load.latency).bounds
        if names := [suffix for field, suffix in PERCENTILES if field in bounds]:
            meta["sockbench_lower_bounds"] = ",".join(names)
    return meta


def _common_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """pyperf-valid metadata from the run's metadata.json, invalid entries dropped."""
    candidates: dict[str, Any] = {}
    for name, value in (metadata.get("pyperf") or {}).items():
        if name not in ("date", "error"):  # a run's date is its own
            candidates[name] = value
    git = metadata.get("git") or {}
    candidates.update(
        {
            "sockbench_run_id": metadata.get("run_id"),
            "sockbench_profile": metadata.get("profile"),
            "sockbench_git_sha": git.get("sha"),
            "cpu_model_name": (metadata.get("host") or {}).get("cpu_model")
            or candidates.get("cpu_model_name"),
        }
    )
    valid = {}
    for name, value in candidates.items():
        if isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = " ".join(value.split())  # pyperf refuses newlines and empty strings
        if value in (None, "") or not isinstance(value, int | float | str):
            continue
        try:  # pyperf's own validation, through its public API
            pyperf.Run([1.0], metadata={name: value}, collect_metadata=False)
        except (TypeError, ValueError):
            continue
        valid[name] = value
    return valid

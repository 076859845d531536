"""bench.report.results_csv: results.csv, one line per cell and repeat, on tests/data/small_run
(see tests/test_report.py for what the run holds)."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.record import Row
from bench.report.results_csv import HEADER, RESULTS_CSV, write_results_csv
from bench.store import RESULTS_FILE, RunStore
from tests.helpers import SMALL_RUN

# the column names are a contract with spreadsheets and notebooks: change them knowingly
EXPECTED_HEADER = (
    "run_id,key,model,python,protocol,request,payload_bytes,connections,mode,driver,"
    "backlog,work,load,search,repeat,status,verdict,verdict_reasons,reason,throughput_rps,"
    "rate_asked_rps,latency_p50_us,latency_p99_us,latency_p999_us,latency_p50_bound,"
    "latency_p99_bound,latency_p999_bound,latency_answered_p99_us,latency_resolution,"
    "requests,errors,"
    "errors_total,error_share_pct,starved_connections,starved_pct,connections_established,"
    "server_cpu_us_per_request,server_cpu_source,server_core_us_per_request,peak_rss_mib,"
    "client_bound_reasons,started_at"
)
FIGURES = HEADER[HEADER.index("throughput_rps") : HEADER.index("client_bound_reasons")]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return RunStore.open(SMALL_RUN).rows()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run") / "small_run"
    shutil.copytree(SMALL_RUN, run)
    path = write_results_csv(run)
    assert path == run / RESULTS_CSV
    return path


@pytest.fixture(scope="module")
def table(written: Path) -> dict[tuple[str, int], dict[str, str]]:
    with written.open(encoding="utf-8", newline="") as f:
        return {(r["key"], int(r["repeat"])): r for r in csv.DictReader(f)}


def test_header_and_one_line_per_row(written: Path, rows: list[Row]) -> None:
    text = written.read_text(encoding="utf-8")
    assert text.splitlines()[0] == EXPECTED_HEADER == ",".join(HEADER)
    with written.open(encoding="utf-8", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(rows) == 18
    assert [(r["key"], int(r["repeat"])) for r in lines] == [(r.cell.key, r.repeat) for r in rows]
    assert {r["status"] for r in lines} == {"ok", "client-bound", "failed", "skipped"}


def test_no_nan_anywhere(written: Path) -> None:
    text = written.read_text(encoding="utf-8").lower()
    assert "nan" not in text and "none" not in text


def test_values_are_the_rows_figures(
    table: dict[tuple[str, int], dict[str, str]], rows: list[Row]
) -> None:
    for row in rows:
        line = table[(row.cell.key, row.repeat)]
        assert line["model"] == row.cell.model and line["protocol"] == row.cell.protocol
        assert int(line["connections"]) == row.cell.connections
        assert line["request"] == "echo, 64 B frames"
        if row.load is None:
            continue
        assert float(line["throughput_rps"]) == row.load.throughput_rps
        assert row.load.latency_all is not None
        assert int(line["latency_p50_us"]) == row.load.latency_all.p50
        assert int(line["latency_p99_us"]) == row.load.latency_all.p99
        assert int(line["latency_p999_us"]) == row.load.latency_all.p999
        assert line["latency_p99_bound"] == "false"  # the fixture's bounds: max and mean
        assert int(line["latency_answered_p99_us"]) == row.load.latency.p99
        assert line["latency_resolution"] == row.load.latency_resolution == "1us-truncated"
        assert int(line["requests"]) == row.load.requests
        assert int(line["errors"]) == sum(row.load.errors.values())
        assert int(line["starved_connections"]) == row.load.connections.starved
        assert int(line["connections_established"]) == row.load.connections.established
        assert float(line["server_cpu_us_per_request"]) == row.server_cpu_us_per_request
        assert float(line["server_core_us_per_request"]) == row.server_core_us_per_request
        assert line["started_at"] == row.started_at


def test_derived_columns_agree_with_the_report(
    table: dict[tuple[str, int], dict[str, str]],
) -> None:
    starving = table[("blocking/echo/c10/p64/persistent/loadgen", 0)]
    assert float(starving["starved_pct"]) == 90.0 and starving["starved_connections"] == "9"
    threaded = table[("threaded/echo/c100/p64/persistent/loadgen", 0)]
    # 40 errors in the window (37 resets, 3 timeouts) of 120,000 answered + 40
    assert threaded["errors"] == "40" and threaded["errors_total"] == "40"
    assert float(threaded["error_share_pct"]) == pytest.approx(100 * 40 / 120_040, abs=1e-6)
    epoll = table[("epoll/echo/c1/p64/persistent/loadgen", 0)]
    assert float(epoll["peak_rss_mib"]) == pytest.approx(11748245 / 2**20, abs=1e-6)
    assert epoll["verdict"] == "valid" and epoll["reason"] == "" and epoll["python"] == ""


def test_failed_skipped_and_client_bound_rows_say_why(
    table: dict[tuple[str, int], dict[str, str]],
) -> None:
    failed = table[("blocking/echo/c100/p64/persistent/loadgen", 0)]
    assert failed["status"] == "failed" and failed["reason"].startswith("timeout: 99 of 100")
    assert failed["verdict"] == ""  # no figures, nothing to judge
    assert all(failed[name] == "" for name in FIGURES)
    skipped = table[("uvloop/echo/c1/p64/persistent/loadgen", 0)]
    assert (skipped["status"], skipped["reason"]) == ("skipped", "needs the uvloop package")
    bound = table[("epoll/echo/c100/p64/persistent/loadgen", 1)]
    assert (bound["status"], bound["verdict"], bound["verdict_reasons"]) == (
        "client-bound",
        "suspect",
        "client-bound",
    )
    assert "waited for work" in bound["client_bound_reasons"]


def test_readable_with_pandas(written: Path) -> None:
    df = pd.read_csv(written)
    assert list(df.columns) == list(HEADER) and len(df) == 18
    for name in ("throughput_rps", "latency_p99_us", "starved_pct", "peak_rss_mib"):
        assert pd.api.types.is_numeric_dtype(df[name]), name
    ok = df[df["status"] == "ok"]
    assert set(ok["latency_p99_bound"]) == {False}  # "false" reads as a boolean
    medians = df.groupby("key")["throughput_rps"].median()  # the report's cell value
    assert medians["epoll/echo/c10/p64/persistent/loadgen"] == 42_000


def test_lower_bounds_python_axis_and_open_loop(tmp_path: Path, rows: list[Row]) -> None:
    row = rows[1]  # epoll, 10 connections
    assert row.load is not None and row.load.latency_all is not None
    latency = dataclasses.replace(row.load.latency_all, bounds=("p99", "p999", "max"))
    rate = dataclasses.replace(row.load.rate, asked=5000.0)
    changed = dataclasses.replace(
        row,
        cell=dataclasses.replace(row.cell, python="3.12", load="r5000"),
        load=dataclasses.replace(row.load, latency_all=latency, rate=rate),
    )
    store = RunStore.create(tmp_path, "one", {})
    store.append(changed)
    with write_results_csv(store.path).open(encoding="utf-8", newline="") as f:
        (line,) = list(csv.DictReader(f))
    assert (line["model"], line["python"], line["load"]) == ("epoll", "3.12", "r5000")
    assert line["key"] == "epoll/echo/c10/p64/persistent/loadgen/r5000/py3.12"
    assert line["rate_asked_rps"] == "5000"
    bounds = (line["latency_p50_bound"], line["latency_p99_bound"], line["latency_p999_bound"])
    assert bounds == ("false", "true", "true")


def test_an_empty_run_has_the_header_only(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "empty", {})
    assert (store.path / RESULTS_FILE).read_text() == ""
    path = write_results_csv(store.path)
    assert path.read_text(encoding="utf-8") == EXPECTED_HEADER + "\n"


def test_a_run_without_figures(tmp_path: Path, rows: list[Row]) -> None:
    store = RunStore.create(tmp_path, "nothing", {})
    for row in rows:
        if row.status in ("failed", "skipped"):
            store.append(row)
    with write_results_csv(store.path).open(encoding="utf-8", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [line["status"] for line in lines] == ["failed", "skipped", "skipped", "skipped"]
    assert all(line[name] == "" for line in lines for name in FIGURES)


def test_only_a_runs_own_report_writes_its_table(tmp_path: Path) -> None:
    """bench run and bench report end alike (bench.report.build.build_report_and_csv): the
    report, and results.csv only where the report went into the run's own folder."""
    from bench.report.build import REPORT_MD, build_report_and_csv  # pandas and matplotlib

    run = tmp_path / "small_run"
    shutil.copytree(SMALL_RUN, run)
    (run / RESULTS_CSV).unlink(missing_ok=True)
    out = tmp_path / "elsewhere"
    assert build_report_and_csv([run], metrics=["throughput"], out=out) == out / REPORT_MD
    subset = build_report_and_csv([run], metrics=["throughput"])
    assert subset.parent.parent == run / "subsets"
    assert not (run / RESULTS_CSV).exists() and not (out / RESULTS_CSV).exists()
    assert build_report_and_csv([run]) == run / REPORT_MD
    assert (run / RESULTS_CSV).is_file()

"""The report's idle-connection sections (bench.report.idle_section) and the idle columns of
the frame and of results.csv, on made-up rows: nothing here starts a server.

The made-up run: 10 active connections beside 0, 1,000, 3,000 and 10,000 idle ones, 3
repeats. CPU per request is an exact line per model (poll 50 µs per 1,000 idle, epoll
0.1), so the table's slopes are known; select fails from 3,000 on (out of descriptors)
and threaded is skipped at 10,000, so their lines end early with the reason; memory at
rest grows by known KiB per connection held.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.record import CellKey, Idle, Memory, Row
from bench.report.build import build_report
from bench.report.frame import aggregate, load_frame
from bench.report.idle_section import has_idle_axis, line_end, short_reason
from bench.report.results_csv import HEADER, RESULTS_CSV, write_results_csv
from bench.store import RunStore
from tests.helpers import SMALL_RUN, load_result, made_up_run, report_table

COUNTS = (0, 1000, 3000, 10_000)
REPEATS = 3
SELECT_REASON = (
    "held 1,003 of 3,000 idle connections (1,997 closed by the server at once). See the server log"
)
THREADED_REASON = "threaded: 10,000 threads are more than this machine's ulimit -u allows"
# CPU per request (µs) at `idle` connections: exact lines
CPU = {
    "select": lambda idle: 8.0 + idle / 10,  # 100 µs per 1,000 idle
    "poll": lambda idle: 8.0 + idle / 20,  # 50 µs per 1,000 idle
    "epoll": lambda idle: 8.0 + idle / 10_000,  # 0.1 µs per 1,000 idle
    "threaded": lambda idle: 12.0,
}


def memory(model: str, held: int) -> Memory:
    """The server at rest: epoll 0.5 KiB of USS per connection, poll known only as RSS
    (0.4), threaded a thread, 20.2 KiB and a 16 KiB kernel stack per connection; the
    server's side of the socket caches 2.3 + 0.25 KiB per connection for everyone (the
    machine-wide caches, both ends, twice that: the report reads the server's side)."""
    slab = {"TCP": 1000 + held * 23 // 10, "filp": 500 + held // 4}
    if model == "threaded":
        slab["KernelStack"] = 4000 + 16 * held
    both = {name: 2 * kib for name, kib in slab.items()}
    if model == "threaded":
        return Memory(20_000 + held * 202 // 10, 15_000 + held * 202 // 10, 2 + held, both, slab)
    if model == "poll":
        return Memory(16_000 + held * 4 // 10, None, 1, both, slab)
    return Memory(16_000 + held // 2, 12_000 + held // 2, 1, both, slab)


def idle_row(run_id: str, model: str, idle: int, repeat: int) -> Row:
    cell = CellKey(model, connections=10, idle=idle)
    if model == "select" and idle >= 3000:
        return Row(run_id, cell, repeat, "failed", reason=SELECT_REASON)
    if model == "threaded" and idle >= 10_000:
        return Row(run_id, cell, repeat, "skipped", reason=THREADED_REASON)
    cpu = CPU[model](idle)
    held = Idle(idle, idle, idle, idle, 0, 0, 0, 1, 0.5, memory(model, idle))
    return Row(
        run_id,
        cell,
        repeat,
        "ok",
        load=load_result(throughput=1e6 / cpu, p99=int(20 * cpu), connections=10),
        server_cpu_us_per_request=cpu,
        idle=held,
    )


def idle_rows(run_id: str = "idle-run") -> list[Row]:
    return [
        idle_row(run_id, model, idle, repeat)
        for repeat in range(REPEATS)
        for idle in COUNTS
        for model in CPU
    ]


@pytest.fixture(scope="module")
def idle_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_up_run(tmp_path_factory.mktemp("idle"), "idle-run", idle_rows())


# -- the frame ----------------------------------------------------------------------------


def test_the_frame_has_the_idle_axis_and_flattened_idle_figures() -> None:
    frame = load_frame(idle_rows())
    assert {"cell.idle", "cell.idle_mode", "idle.held", "idle.memory.rss_kib"} <= set(frame)
    epoll = frame[(frame["cell.model"] == "epoll") & (frame["cell.idle"] == 1000)].iloc[0]
    assert epoll["idle.held"] == 1000 and epoll["idle_user_source"] == "USS"
    assert epoll["idle_user_kib"] == 12_500
    assert epoll["idle_kernel_kib"] == 1000 + 2300 + 500 + 250  # the caches' sum
    poll = frame[(frame["cell.model"] == "poll") & (frame["cell.idle"] == 1000)].iloc[0]
    assert poll["idle_user_source"] == "RSS" and poll["idle_user_kib"] == 16_400
    assert has_idle_axis(frame)
    # every cell of the aggregate keeps its idle count
    cells = aggregate(frame)
    assert sorted(set(cells["cell.idle"])) == list(COUNTS)


def test_a_run_without_an_idle_axis_has_no_idle_section_nor_csv_columns(tmp_path: Path) -> None:
    run = tmp_path / "small_run"
    shutil.copytree(SMALL_RUN, run)
    assert not has_idle_axis(load_frame(RunStore.open(run).rows()))
    report = build_report(run).read_text()
    assert "idle" not in report.lower()
    assert not list((run / "charts").glob("idle_*"))
    with (write_results_csv(run)).open() as file:
        assert tuple(next(csv.reader(file))) == HEADER


# -- the section --------------------------------------------------------------------------


def test_the_idle_sections_appear_with_an_idle_axis(idle_run: Path) -> None:
    report = (idle_run / "report.md").read_text()
    assert "## Idle connections: echo, 64 B frames, 10 active connections" in report
    assert "## Memory per idle connection: echo, 64 B frames, 10 active connections" in report
    charts = idle_run / "charts"
    for stem in ("idle_cpu_per_request", "idle_latency_p99", "idle_memory"):
        assert (charts / f"{stem}_echo_p64_c10.png").stat().st_size > 20_000
    # each idle count is a group of its own, its title and files saying which
    assert "## echo, 64 B frames, 1,000 idle connections" in report
    # one count of active connections: tables, and no column-of-dots charts against them
    assert "One count of connections (10): the tables below are the figures" in report
    assert not list(charts.glob("throughput_*"))
    assert "10 connections, 3,000 idle connections" in report  # significance, per count


def test_a_line_ends_at_a_failed_or_skipped_cell_with_the_reason(idle_run: Path) -> None:
    cells = aggregate(load_frame(idle_rows()))
    assert line_end(cells, "select", "cpu_per_request") == (
        1000,
        "failed, held 1,003 of 3,000 idle connections (1,997 closed by the server at once)",
    )
    last, why = line_end(cells, "threaded", "cpu_per_request")
    assert last == 3000 and why is not None and why.startswith("skipped, threaded: 10,000")
    assert line_end(cells, "epoll", "cpu_per_request") == (10_000, None)
    svg = (idle_run / "charts" / "idle_cpu_per_request_echo_p64_c10.svg").read_text()
    assert "select ends: failed, held 1,003" in svg
    assert "threaded ends: skipped," in svg
    report = (idle_run / "report.md").read_text()
    table = report_table(report, "Server CPU per request against idle connections (process view)")
    assert "ends at 1,000 idle: failed, held 1,003" in table["select"]["read with care"]


def test_a_long_reason_is_cut_at_a_word() -> None:
    cell = pd.Series({"status": "failed", "reason": "word " * 40})
    text = short_reason(cell)
    assert text.endswith("…") and len(text) < 110 and "wor…" not in text
    assert short_reason(pd.Series({"status": "skipped", "reason": None})) == "skipped"


def test_the_slope_table_gives_an_exact_line_s_slope(idle_run: Path) -> None:
    report = (idle_run / "report.md").read_text()
    table = report_table(report, "Server CPU per request against idle connections (process view)")
    slope_column = "µs per request per 1,000 idle (interval, coverage)"
    assert table["poll"][slope_column].startswith("50.0 (50.0–50.0, ")
    assert table["epoll"][slope_column].startswith("0.1 (0.1–0.1, ")
    assert table["select"][slope_column].startswith("100.0 (100.0–100.0, ")
    assert table["threaded"][slope_column].startswith("0.0 (0.0–0.0, ")  # never "-0.0"
    assert table["poll"]["points (idle counts)"] == "12 (4)"
    assert table["select"]["points (idle counts)"] == "6 (2)"
    assert "from 2 idle counts: do not trust" in table["select"]["read with care"]
    assert table["poll"]["µs per request at 0 idle"] == "8.0 (8.0–8.0)"
    assert table["poll"]["µs per request at 10,000 idle"] == "508.0 (508.0–508.0)"
    assert table["select"]["µs per request at 10,000 idle"] == "failed"
    assert table["threaded"]["µs per request at 10,000 idle"] == "skipped"


def test_memory_per_connection_from_the_memory_at_rest(idle_run: Path) -> None:
    report = (idle_run / "report.md").read_text()
    table = report_table(report, "Memory per idle connection (KiB per connection held)")
    user = "user space KiB/conn (interval, coverage)"
    kernel = "kernel KiB/conn, server side (interval, coverage)"
    assert table["epoll"][user].startswith("0.50 (0.50–0.50, ")
    assert table["epoll"]["measured as"] == "USS"
    assert table["poll"][user].startswith("0.40 (0.40–0.40, ")
    assert table["poll"]["measured as"] == "RSS"  # no USS: the RSS, for every repeat
    assert table["epoll"][kernel].startswith("2.55 (2.55–2.55, ")
    assert table["threaded"][user].startswith("20.20 (")
    assert table["threaded"][kernel].startswith("18.55 (")  # the caches and a kernel stack
    assert table["threaded"]["of which kernel stacks KiB/conn"].startswith("16.00 (")
    assert table["threaded"]["threads per connection"] == "1.00"
    assert table["epoll"]["threads per connection"] == "0.00"
    assert table["epoll"]["held (counts)"] == "0–10,000 (4)"
    assert "less the objects the idle holders' own ends hold" in report


# -- results.csv --------------------------------------------------------------------------


def test_results_csv_gains_the_idle_columns_with_an_idle_axis(idle_run: Path) -> None:
    with (idle_run / RESULTS_CSV).open() as file:
        lines = list(csv.DictReader(file))
        header = list(lines[0])
    names = list(HEADER)
    assert header[: names.index("search") + 1] == names[: names.index("search") + 1]
    assert header[names.index("search") + 1 : names.index("search") + 3] == ["idle", "idle_mode"]
    assert set(names) < set(header)
    epoll = next(r for r in lines if r["model"] == "epoll" and r["idle"] == "3000")
    assert epoll["idle_mode"] == "warm" and epoll["idle_held"] == "3000"
    assert epoll["server_uss_at_rest_kib"] == "13500"
    assert epoll["kernel_socket_kib"] == str(1000 + 6900 + 500 + 750)
    failed = next(r for r in lines if r["model"] == "select" and r["idle"] == "3000")
    assert failed["idle_held"] == "" and failed["status"] == "failed"


def test_a_grid_s_idle_sweep_beside_a_main_product_of_connection_counts(tmp_path: Path) -> None:
    """quick's shape: every model at several connection counts without idle ones, and a
    grid sweeping some of them at 10 connections: the idle sections are the swept
    models' alone, and the main product's section keeps its charts."""
    meta = json.loads((SMALL_RUN / "metadata.json").read_text())
    store = RunStore.create(tmp_path, "grid-run", meta)
    swept = [idle_row("grid-run", m, idle, 0) for m in ("poll", "epoll") for idle in COUNTS[:3]]
    swept += [idle_row("grid-run", "select", idle, 0) for idle in COUNTS[:3]]  # 2 usable
    main = [
        Row(
            "grid-run",
            CellKey(model, connections=c),
            0,
            "ok",
            load=load_result(throughput=50_000.0, p99=200, connections=c),
            server_cpu_us_per_request=9.0,
        )  # fmt: skip
        for model in ("poll", "epoll", "uvloop")
        for c in (1, 100)
    ]
    uvloop = Row("grid-run", CellKey("uvloop", connections=10), 0, "ok",
                 load=load_result(throughput=90_000.0, p99=150, connections=10),
                 server_cpu_us_per_request=8.0)  # fmt: skip
    for row in [*swept, *main, uvloop]:
        store.append(row)
    report = build_report(store.path).read_text()
    cpu = report_table(report, "Server CPU per request against idle connections (process view)")
    assert set(cpu) == {"select", "poll", "epoll"}  # uvloop ran at 0 idle only: no line
    assert "from 2 idle counts: do not trust" in cpu["select"]["read with care"]
    memory_svg = (store.path / "charts" / "idle_memory_echo_p64_c10.svg").read_text()
    assert "2 counts: do not trust" in memory_svg and "uvloop" not in memory_svg
    # the main product: three connection counts at 0 idle, so its charts are drawn
    assert (store.path / "charts" / "throughput_echo_p64_i0.png").is_file()
    assert "## echo, 64 B frames, 1,000 idle connections" in report
    assert "One count of connections (10): the tables below are the figures" in report

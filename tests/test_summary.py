"""bench.report.summary: the table `bench run` prints at its end, on tests/data/small_run.

The run (see tests/test_report.py): blocking, threaded, epoll and a skipped uvloop; echo,
64 B, 1/10/100 connections; epoll repeated 3 times, client-bound (so suspect) at 100
connections; blocking failed at 100 and starved 9 of 10 connections at 10.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bench.record import Row
from bench.report.summary import WIDTH, terminal_summary
from bench.store import RunStore
from tests.helpers import SMALL_RUN


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return RunStore.open(SMALL_RUN).rows()


def with_cell(row: Row, **changes: Any) -> Row:
    return dataclasses.replace(row, cell=dataclasses.replace(row.cell, **changes))


def line_of(summary: str, model: str, connections: str) -> str:
    """The table line of one model and connection count."""
    found = [
        line
        for line in summary.splitlines()
        if line.split()[:2] == [model, connections] and line.startswith("  ")
    ]
    assert len(found) == 1, summary
    return found[0]


def test_one_line_per_model_and_connections_in_the_reports_order(rows: list[Row]) -> None:
    summary = terminal_summary(rows)
    lines = summary.splitlines()
    assert lines[0] == "echo, 64 B frames"  # clients.wire.describe(), as the report
    assert lines[1].split() == ["model", "connections", "req/s", "±", "p99", "µs", "starved"]
    table = [line.split()[:2] for line in lines[2:14]]
    assert table == [
        [model, conns]
        for model in ("blocking", "threaded", "epoll", "uvloop")
        for conns in ("1", "10", "100")
    ]
    assert all(len(line) <= WIDTH for line in lines)


def test_medians_formatted_and_right_aligned(rows: list[Row]) -> None:
    summary = terminal_summary(rows)
    # epoll at 10 connections: repeats 41,000, 43,500, 42,000 -> median 42,000; its
    # interval [41,000, 43,500] is 1,500 above the median: 4%; p99 402 (410, 388, 402)
    assert line_of(summary, "epoll", "10").split() == ["epoll", "10", "42,000", "4%", "402", "0.0%"]
    # one repeat: no interval
    assert line_of(summary, "threaded", "100").split() == [
        "threaded",
        "100",
        "24,000",
        "41,000",
        "0.0%",
    ]
    # 9 of 10 connections starved: a share of the connections
    assert line_of(summary, "blocking", "10").split()[-1] == "90.0%"
    header = summary.splitlines()[1]
    for title in ("connections", "req/s", "µs", "starved"):
        end = header.index(title) + len(title)
        numbers = [line_of(summary, m, "1") for m in ("blocking", "threaded", "epoll")]
        assert all(line[end - 1] != " " and line[end : end + 1] in (" ", "") for line in numbers)


def test_marks_and_a_legend_of_only_those_that_appear(rows: list[Row]) -> None:
    summary = terminal_summary(rows)
    assert line_of(summary, "epoll", "100").endswith("  † §")
    assert line_of(summary, "epoll", "10").endswith("0.0%")
    legend = "\n".join(summary.splitlines()[14:])  # under the title, header and 12 cells
    assert "† client-bound" in legend and "§ suspect" in legend
    assert "‡" not in summary and "≥" not in summary
    assert "75% with 3 repeats" in legend  # the interval's coverage


def test_failed_and_skipped_cells_say_why(rows: list[Row]) -> None:
    summary = terminal_summary(rows)
    failed = line_of(summary, "blocking", "100")
    assert "failed: timeout: 99 of 100 connections got no reply" in failed
    assert failed.endswith("…") and len(failed) == WIDTH  # a long reason is cut
    assert "skipped: needs the uvloop package" in line_of(summary, "uvloop", "1")


def test_lower_bound_and_partly_failed_cells(rows: list[Row]) -> None:
    changed = []
    for row in rows:
        if row.cell.key == "epoll/echo/c10/p64/persistent/loadgen" and row.repeat == 2:
            row = dataclasses.replace(row, status="failed", reason="server died", load=None)
        elif row.cell.key == "threaded/echo/c100/p64/persistent/loadgen":
            assert row.load is not None and row.load.latency_all is not None
            latency = dataclasses.replace(row.load.latency_all, bounds=("p99", "max"))
            row = dataclasses.replace(row, load=dataclasses.replace(row.load, latency_all=latency))
        changed.append(row)
    summary = terminal_summary(changed)
    assert "≥41,000" in line_of(summary, "threaded", "100").split()
    partial = line_of(summary, "epoll", "10")
    assert partial.endswith("  ‡") and "42,250" in partial  # the median of the other two
    assert "‡ some repeats failed" in summary and "≥ lower bound" in summary


def test_a_p99_measured_to_a_tenth_shows_it_below_100_us(rows: list[Row]) -> None:
    """As the report's tables (bench.report.frame.value_format): one decimal only where
    every repeat measured to 0.1 µs (load result schema 3) and the p99 is under 100 µs."""

    def p99_of_threaded_c1(resolution: str) -> list[str]:
        changed = []
        for row in rows:
            if row.cell.key.startswith("threaded/echo/c1/") and row.load is not None:
                assert row.load.latency_all is not None
                p99 = dataclasses.replace(row.load.latency_all, p99=41.1)
                load = dataclasses.replace(row.load, latency_all=p99, latency_resolution=resolution)
                row = dataclasses.replace(row, load=load)
            changed.append(row)
        return line_of(terminal_summary(changed), "threaded", "1").split()[2:4]

    assert p99_of_threaded_c1("0.1us") == ["12,100", "41.1"]
    assert p99_of_threaded_c1("1us-truncated") == ["12,100", "41"]  # never finer than measured


def test_one_repeat_has_no_interval_column(rows: list[Row]) -> None:
    summary = terminal_summary([r for r in rows if r.repeat == 0])
    assert "±" not in summary and "interval of the median" not in summary
    assert line_of(summary, "epoll", "10").split() == ["epoll", "10", "41,000", "410", "0.0%"]
    # how sure it is: with one repeat, not enough to rank two lines
    assert "one repeat per cell: no interval" in " ".join(summary.split())
    assert "one repeat per cell" not in terminal_summary(rows)  # three repeats: intervals


def test_open_loop_and_search_cells_are_counted_not_shown(rows: list[Row]) -> None:
    curves = [with_cell(r, load="r1000") for r in rows[:3]]
    steps = [with_cell(r, load="r2000", search="p99:1ms#1") for r in rows[:1]]
    summary = terminal_summary([*rows, *curves, *steps])
    assert summary.splitlines()[-1] == (
        "3 open-loop cells and 1 search step: not in this table, see the report."
    )
    assert summary.count("epoll               1") == 1  # the closed-loop cell only
    only_open = terminal_summary(curves)
    assert only_open == "3 open-loop cells: not in this table, see the report."


def test_groups_titled_and_a_big_run_cut_short(rows: list[Row]) -> None:
    http = [with_cell(r, protocol="http", payload=0, mode="per-request") for r in rows]
    summary = terminal_summary([*rows, *http])
    assert "http GET /, per-request connections" in summary.splitlines()
    # 12 cells + title + header = 14 lines per group: the second group does not fit
    cut = terminal_summary([*rows, *http], max_lines=20)
    assert "http GET /" not in cut
    assert "… 12 more cells in 1 more group: see the report." in cut.splitlines()
    # a first group longer than the limit is shown as far as it fits
    first = terminal_summary(rows, max_lines=8)
    lines = first.splitlines()
    assert lines[8] == "… 6 more cells: see the report."
    assert [line.split()[0] for line in lines[2:8]] == ["blocking"] * 3 + ["threaded"] * 3


def test_long_model_names_stay_within_the_width(rows: list[Row]) -> None:
    long = [with_cell(r, model="an-external-server-with-a-very-long-name") for r in rows[:2]]
    summary = terminal_summary(long)
    assert all(len(line) <= WIDTH for line in summary.splitlines())
    assert "an-external-server-with-a-v…" in summary


def test_no_rows() -> None:
    assert terminal_summary([]) == "No rows in this run."


def test_a_run_of_failed_and_skipped_cells_only(rows: list[Row]) -> None:
    summary = terminal_summary([r for r in rows if r.status in ("failed", "skipped")])
    assert summary.splitlines()[2].startswith("  blocking          100  failed: timeout")
    assert "skipped: needs the uvloop package" in summary

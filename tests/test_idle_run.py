"""The idle axis of `bench run` (--idle, --idle-mode): holders beside the active load.

Real servers and holders on 127.0.0.1; small counts so that it stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import resource

import pandas as pd
import pytest

from bench import cli
from bench.record import CellKey, Idle, Memory, Row
from bench.report.idle_section import descriptor_split
from bench.run.idle import first_sources, shortfall, split, summary
from bench.run.matrix import Cell, Matrix, MatrixError, load_profile, override
from bench.run.runner import server_args
from bench.store import RunStore
from clients.hold_report import HoldReport

FAST = ["--duration", "0.4", "--warmup", "0.1", "--protocol", "echo", "--payloads", "64"]


def report(**given: object) -> HoldReport:
    fields: dict[str, object] = {
        "stage": "ready", "target": "127.0.0.1:1", "mode": "warm", "protocol": "echo",
        "payload": 64, "sources": ("127.0.0.2",), "asked": 100, "established": 100,
        "refused": {}, "warmed": 100, "bad_replies": 0, "lost": {}, "held": 100,
        "closed_by_server": 0, "unasked": 0, "connect_s": 0.5, "warm_s": 0.25,
    }  # fmt: skip
    fields.update(given)
    return HoldReport(**fields)  # type: ignore[arg-type]


def test_a_count_splits_over_as_few_holders_as_hold_it() -> None:
    assert split(0, 19_936) == []
    assert split(19_936, 19_936) == [19_936]
    assert split(19_937, 19_936) == [9_969, 9_968]
    assert sum(split(50_001, 19_936)) == 50_001 and len(split(50_001, 19_936)) == 3
    # each holder's sources apart: one address per 5,000 connections
    assert first_sources([10_000, 10_000, 3]) == [2, 4, 6]


def test_holders_sum_into_one_idle_and_a_shortfall_is_a_reason() -> None:
    ready = [report(), report(held=90, lost={"closed": 10})]
    final = [
        dataclasses.replace(r, stage="final", open_at_end=r.held, closed_by_server=0) for r in ready
    ]
    idle = summary(ready, final, None)
    assert (idle.asked, idle.established, idle.held, idle.open_at_end) == (200, 200, 190, 190)
    assert idle.lost == 10 and idle.holders == 2 and idle.connect_s == 0.75
    assert shortfall(idle) == "held 190 of 200 idle connections (10 closed by the server at once)"
    whole = summary([report()], [dataclasses.replace(report(), open_at_end=100)], None)
    assert shortfall(whole) is None
    # a holder that gave no final report: what stayed open is unknown, not zero
    unknown = summary([report()], [], None)
    assert unknown.open_at_end is None and shortfall(unknown) is None
    dropped = Idle(**{**dataclasses.asdict(whole), "open_at_end": 40, "memory": None})
    assert shortfall(dropped) == "held 40 of 100 idle connections (60 closed during the window)"


def test_the_idle_axis_adds_cells_and_idle_0_leaves_every_key_and_order_alone() -> None:
    base = Matrix(profile="t", models=("epoll", "poll"), connections=(10,), repeats=2)
    assert override(base, idle=[0]).cells() == base.cells() and not base.has_idle
    swept = override(base, idle=[0, 500], idle_mode="silent")
    assert swept.has_idle
    keys = sorted({c.key.key for c in swept.cells()})
    assert keys == [
        "epoll/echo/c10/p64/persistent/loadgen",
        "epoll/echo/c10/p64/persistent/loadgen/i500s",
        "poll/echo/c10/p64/persistent/loadgen",
        "poll/echo/c10/p64/persistent/loadgen/i500s",
    ]
    for bad in ({"idle": (-1,)}, {"idle": ()}, {"idle_mode": "loud"}):
        with pytest.raises(MatrixError):
            dataclasses.replace(base, **bad)


@pytest.mark.real
def test_a_run_holds_its_idle_connections_and_reads_the_server_at_rest(tmp_path) -> None:
    code = cli.main(
        ["run", *FAST, "--models", "epoll", "--connections", "4", "--idle", "0", "300",
         "--out", str(tmp_path), "--run-id", "t"]
    )  # fmt: skip
    assert code == 0
    rows = {row.cell.idle: row for row in RunStore.open(tmp_path / "t").rows()}
    assert set(rows) == {0, 300}
    for count, row in rows.items():
        assert row.status in ("ok", "client-bound"), row.reason
        assert row.idle is not None and row.idle.asked == count
        assert row.idle.held == row.idle.open_at_end == count
        assert row.idle.memory is not None and row.idle.memory.rss_kib > 0
        assert row.load is not None and row.load.connections.established == 4
        # one process holds them all, under the hard limit it shares with this one
        assert len(row.idle.memory.fds) == 1 and row.idle.memory.fds[0] >= count + 4
        assert row.idle.memory.fd_limit == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    # the server accepted the idle ones beside the active ones
    assert rows[300].server["counters"]["accepted"] >= 304
    assert rows[300].idle is not None and rows[300].idle.holders == 1


@pytest.mark.real
def test_select_past_fd_setsize_fails_with_what_it_held(tmp_path) -> None:
    code = cli.main(
        ["run", *FAST, "--models", "select", "--connections", "2", "--idle", "1100",
         "--out", str(tmp_path), "--run-id", "t"]
    )  # fmt: skip
    assert code == 0
    [row] = RunStore.open(tmp_path / "t").rows()
    assert row.status == "failed" and row.idle is not None
    assert row.reason is not None and row.reason.startswith("held ")
    assert "of 1,100 idle connections" in row.reason
    assert row.idle.held < 1100


def test_bad_idle_flags_exit_2_before_any_cell(tmp_path, capsys) -> None:
    for flags in (["--idle", "-5"], ["--idle-mode", "loud"]):
        with pytest.raises(SystemExit) as info:
            cli.main(["run", "--models", "epoll", *flags, "--out", str(tmp_path)])
        assert info.value.code == 2
    assert not list(tmp_path.iterdir())


@pytest.mark.real
def test_prefork_splits_its_idle_connections_over_its_workers(tmp_path) -> None:
    """--workers 3: three processes (the parent serves too), each holding part of the
    connections; the row says how many descriptors each had, and is schema 6."""
    code = cli.main(
        ["run", *FAST, "--models", "prefork", "--workers", "3", "--connections", "4",
         "--idle", "600", "--out", str(tmp_path), "--run-id", "t"]
    )  # fmt: skip
    assert code == 0
    [row] = RunStore.open(tmp_path / "t").rows()
    assert row.status in ("ok", "client-bound"), row.reason
    assert row.idle is not None and row.idle.memory is not None
    fds = row.idle.memory.fds
    assert len(fds) == 3 and list(fds) == sorted(fds, reverse=True)
    assert sum(fds) >= 604 and min(fds) > 0  # the kernel spread them over all three
    line = (tmp_path / "t" / "results.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["schema"] == 6


def test_the_split_is_schema_6_and_a_row_without_it_is_written_as_before() -> None:
    memory = Memory(1000, 900, 1, {}, fds=(12_612, 12_401), fd_limit=20_000)
    idle = Idle(100, 100, 100, 100, 0, 0, 0, 1, 1.0, memory)
    row = Row("r", CellKey("prefork", idle=100), 0, "ok", idle=idle)
    written = json.loads(row.to_json())
    assert written["schema"] == 6 and written["idle"]["memory"]["fds"] == [12_612, 12_401]
    assert Row.from_dict(written) == row
    plain = dataclasses.replace(row, idle=dataclasses.replace(idle, memory=Memory(1, 1, 1, {})))
    written = json.loads(plain.to_json())
    assert written["schema"] == 4 and "fds" not in written["idle"]["memory"]
    assert Row.from_dict(written) == plain


def test_a_server_at_its_descriptor_limit_says_so() -> None:
    memory = Memory(1000, 900, 1, {}, fds=(20_000,), fd_limit=20_000)
    idle = Idle(25_000, 25_000, 19_992, 19_992, 0, 0, 5_008, 2, 3.0, memory)
    assert shortfall(idle) == (
        "held 19,992 of 25,000 idle connections (5,008 closed by the server at once; the "
        "server's limit: 20,000 descriptors a process, 1 process holding 20,000 at most)"
    )


def test_workers_go_to_the_models_that_take_them() -> None:
    matrix = Matrix(profile="t", models=("prefork", "epoll"), workers=8)
    prefork, epoll = (Cell(CellKey(m), 0) for m in ("prefork", "epoll"))
    assert server_args(prefork, matrix)[-2:] == ["--workers", "8"]
    assert "--workers" not in server_args(epoll, matrix)
    assert "--workers" not in server_args(prefork, dataclasses.replace(matrix, workers=0))
    with pytest.raises(MatrixError, match="workers must be >= 0"):
        Matrix(profile="t", models=("prefork",), workers=-1)
    c100k = load_profile("c100k")
    assert c100k.workers == 8 and max(c100k.idle) + max(c100k.connections) == 100_000


def test_the_memory_table_says_how_the_processes_split_the_connections() -> None:
    cell = pd.Series({"idle.memory.fds": [12_612, 12_401], "idle.memory.fd_limit": 20_000})
    assert descriptor_split(cell) == "2 processes: 12,401–12,612 descriptors (limit 20,000)"
    one = pd.Series({"idle.memory.fds": [19_994], "idle.memory.fd_limit": float("nan")})
    assert descriptor_split(one) == "1 process: 19,994 descriptors"
    assert descriptor_split(pd.Series({"idle.memory.fds": float("nan")})) == ""

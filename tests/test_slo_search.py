"""The `slo` search through `bench run`: steps as rows, replayed, resumed, reported."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.analysis.curves import parse_target
from bench.analysis.search import Found, outcome, replay, step_number
from bench.record import CellKey, Row
from bench.run import session
from bench.run.matrix import Cell
from bench.run.runner import run_cell
from bench.store import RunStore
from clients.result import Rate
from tests.helpers import load_result

SEARCH = [
    "run", "--profile", "slo", "--models", "epoll", "--connections", "4", "--repeats", "1",
    "--slo", "p99:100ms", "--search-steps", "4", "--duration", "0.3", "--warmup", "0.1",
]  # fmt: skip
TARGET = parse_target("p99:100ms")


def _steps(rows: list[Row]) -> list[Row]:
    return sorted((r for r in rows if r.cell.search), key=step_number)


def _check_replay(rows: list[Row]) -> Found:
    """Each stored step's rate is the one the search asks after the steps before it."""
    closed = [r for r in rows if not r.cell.load]
    assert len(closed) == 1 and closed[0].load is not None
    capacity = closed[0].load.throughput_rps
    steps = _steps(rows)
    assert [step_number(r) for r in steps] == list(range(1, len(steps) + 1))
    for n, row in enumerate(steps):
        assert row.probe_rps == capacity  # what the search was planned around
        assert row.cell.search == f"p99:100ms#{n + 1}"
        assert replace(row.cell, load="", search="") == closed[0].cell
        asked = replay(steps[:n], TARGET, capacity, 4)
        assert asked == float(row.cell.load[1:]), (n, asked, row.cell.load)
        assert row.load is not None and row.load.params.rate == pytest.approx(asked, rel=1e-3)
    ended = replay(steps, TARGET, capacity, 4)
    assert isinstance(ended, Found)
    return ended


@pytest.mark.real
def test_a_search_runs_its_steps_as_rows_and_reports_the_result(tmp_path: Path) -> None:
    assert cli.main([*SEARCH, "--out", str(tmp_path), "--run-id", "s"]) == 0
    rows = RunStore.open(tmp_path / "s").rows()
    found = _check_replay(rows)
    assert 1 <= found.steps <= 4
    report = (tmp_path / "s" / "report.md").read_text()
    assert "## Capacity at latency targets, searched: echo, 64 B frames" in report
    assert "| epoll | 4 | p99:100ms | 0 |" in report and found.why in report
    assert "## Load-latency curves" not in report  # search steps are not a sweep
    chart = tmp_path / "s" / "charts" / "slo_p99_100ms_echo_p64.png"
    assert chart.stat().st_size > 10_000


@pytest.mark.real
def test_an_interrupted_search_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def stop_at_third(cell: Cell, *args: Any) -> Row:
        if len(calls) == 2:  # the closed cell and one step are stored
            raise KeyboardInterrupt
        calls.append(cell.key.key)
        return run_cell(cell, *args)

    monkeypatch.setattr(session, "run_cell", stop_at_third)
    code = cli.main([*SEARCH, "--search-steps", "4", "--out", str(tmp_path), "--run-id", "s"])
    assert code == session.INTERRUPTED
    assert len(RunStore.open(tmp_path / "s").rows()) == 2
    monkeypatch.setattr(session, "run_cell", run_cell)
    resume = ["run", "--resume", str(tmp_path / "s"), "--force", "--no-report"]
    assert cli.main(resume) == 0
    rows = RunStore.open(tmp_path / "s").rows()
    _check_replay(rows)  # one search, numbered on from step 2: nothing ran twice
    assert len({r.cell for r in rows}) == len(rows)


def _row(status: str, **figures: Any) -> Row:
    key = CellKey("epoll", connections=4, load="r1000", search="p99:100ms#1")
    result = replace(load_result(**figures), rate=Rate(1000.0, 1000.0, figures["throughput"]))
    return Row(run_id="t", cell=key, repeat=0, status=status, load=result)


def test_a_steps_outcome_follows_the_curve_rules() -> None:
    ok = _row("ok", throughput=990.0, p99=50_000)
    assert outcome(ok, TARGET).passed is True
    assert outcome(_row("ok", throughput=990.0, p99=150_000), TARGET).passed is False
    assert outcome(_row("ok", throughput=900.0, p99=50_000), TARGET).passed is False  # < 95%
    assert ok.load is not None
    overloaded = replace(ok, load=replace(ok.load, rate=Rate(1000.0, 1000.0, 990.0, True)))
    assert outcome(overloaded, TARGET).passed is False
    assert outcome(replace(ok, status="client-bound"), TARGET).passed is None
    assert outcome(replace(ok, status="failed", load=None), TARGET).passed is False
    assert outcome(ok, TARGET).rate == 1000.0

"""bench.run.session on its own: which cells a session runs, what it leaves in the store,
and Ctrl-C, with a stand-in for run_cell (no servers, no load)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.record import Row
from bench.run import session
from bench.run.cpus import CpuPlan
from bench.run.matrix import Cell, Matrix, load_profile, override
from bench.store import RunStore

MATRIX = override(
    load_profile("quick"),
    models=["epoll"],
    protocols=["echo"],
    connections=[1, 2, 3],
    payloads=[64],
    repeats=1,
)
CPUS = tuple(sorted(os.sched_getaffinity(0)))
PLAN = CpuPlan(server=CPUS[:1], client=CPUS[1:] or CPUS, available=CPUS)


def skipped(cell: Cell, run_id: str, status: str = "skipped") -> Row:
    return Row(run_id=run_id, cell=cell.key, repeat=cell.repeat, status=status, reason="test")


class StandIn:
    """run_cell's stand-in: records each cell, answers a row, or Ctrl-C at call `stop_at`."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.ran: list[int] = []
        self.stop_at = stop_at
        self.pinned: list[set[int]] = []

    def __call__(self, cell: Cell, matrix: Matrix, plan: CpuPlan, run_id: str, _d: Any) -> Row:
        if len(self.ran) == self.stop_at:
            raise KeyboardInterrupt
        self.pinned.append(os.sched_getaffinity(0))
        self.ran.append(cell.key.connections)
        return skipped(cell, run_id)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path, "s", {"matrix": MATRIX.to_dict()})


def test_a_session_runs_only_the_missing_cells_off_the_server_cpus(
    store: RunStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = next(c for c in MATRIX.cells() if c.key.connections == 1)
    store.append(skipped(first, store.run_id))
    stand_in = StandIn()
    monkeypatch.setattr(session, "run_cell", stand_in)
    before = os.sched_getaffinity(0)
    assert session.run_session(store, MATRIX, PLAN) is True
    assert sorted(stand_in.ran) == [2, 3]
    assert all(cpus == set(PLAN.client) for cpus in stand_in.pinned)
    assert os.sched_getaffinity(0) == before
    reopened = RunStore.open(store.path)
    assert len(reopened.rows()) == 3
    assert reopened.metadata["interrupted"] is False and reopened.metadata["finished_at"]
    assert "2 cells to run (1 already done)" in capsys.readouterr().err


def test_retry_failed_runs_the_failed_cells_again(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cell in MATRIX.cells():
        store.append(skipped(cell, store.run_id, "failed" if cell.key.connections == 2 else "ok"))
    stand_in = StandIn()
    monkeypatch.setattr(session, "run_cell", stand_in)
    assert session.run_session(store, MATRIX, PLAN) is True
    assert stand_in.ran == []
    assert session.run_session(store, MATRIX, PLAN, retry_failed=True) is True
    assert stand_in.ran == [2]


def test_ctrl_c_keeps_the_rows_calls_back_and_says_how_to_resume(
    store: RunStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stand_in = StandIn(stop_at=1)
    monkeypatch.setattr(session, "run_cell", stand_in)
    called: list[Path] = []
    before = os.sched_getaffinity(0)
    assert session.run_session(store, MATRIX, PLAN, on_interrupt=called.append) is False
    assert called == [store.path]
    assert os.sched_getaffinity(0) == before
    reopened = RunStore.open(store.path)
    assert len(reopened.rows()) == 1
    assert reopened.metadata["interrupted"] is True
    assert "finished_at" not in reopened.metadata
    err = capsys.readouterr().err
    assert f"interrupted: 1 of 3 cells kept in {store.path}" in err
    assert "resume with: " in err and f"--resume {store.path}" in err

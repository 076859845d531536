"""`bench run --pythons`: the servers under other interpreters, as an axis of the matrix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.report.frame import load_frame
from bench.run.interpreters import InterpreterError, resolve
from bench.run.matrix import Matrix
from bench.store import RunStore


def _other_python() -> str | None:
    """A version other than this one that this machine has (3.12 or 3.13)."""
    for spec in ("3.12", "3.13"):
        if spec == f"{sys.version_info[0]}.{sys.version_info[1]}":
            continue
        try:
            resolve(spec)
        except InterpreterError:
            continue
        return spec
    return None


OTHER = _other_python()


def test_the_interpreter_axis_multiplies_python_lines_only() -> None:
    matrix = Matrix(
        profile="t",
        models=("epoll", "nginx"),
        connections=(10,),
        pythons=("3.12", "3.13"),
        protocols=("http",),
        payloads=(0,),
    )
    keys = sorted(cell.key.key for cell in matrix.cells())
    assert keys == [
        "epoll/http/c10/p0/persistent/loadgen/py3.12",
        "epoll/http/c10/p0/persistent/loadgen/py3.13",
        "nginx/http/c10/p0/persistent/loadgen",  # not a Python server: no axis
    ]


@pytest.mark.parametrize("spec", ["2.7", "3.99", "/nonexistent/python3"])
def test_a_missing_or_old_interpreter_exits_2_before_any_cell(tmp_path: Path, spec: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--models", "epoll", "--pythons", spec]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and spec in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.real
@pytest.mark.skipif(OTHER is None, reason="no Python 3.12 or 3.13 here besides this one")
def test_rows_and_lines_carry_the_interpreter(tmp_path: Path) -> None:
    assert OTHER is not None
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = cli.main(
        ["run", "--models", "epoll", "--pythons", mine, OTHER, "--connections", "4"]
        + ["--duration", "0.3", "--warmup", "0.1", "--protocol", "echo", "--payloads", "64"]
        + ["--out", str(tmp_path), "--run-id", "t", "--no-report"]
    )
    assert code == 0
    rows = RunStore.open(tmp_path / "t").rows()
    assert sorted(row.cell.python for row in rows) == sorted([mine, OTHER])
    for row in rows:
        assert row.status in ("ok", "client-bound"), row.reason
        assert row.load is not None and row.load.requests > 0 and row.load.error_count == 0
        facts = row.server["python"]
        assert facts["version"].startswith(row.cell.python + ".")
        assert facts["gil_enabled"] is True and facts["free_threaded"] is False
    lines = set(load_frame(rows)["cell.model"])
    assert lines == {f"epoll py{mine}", f"epoll py{OTHER}"}

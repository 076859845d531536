"""A newcomer's first hour and a write-up author's workflow (issue 16): printed commands
run as printed, --resume refuses flags it would ignore, errors name the bad value and
the nearest valid one, and `bench report` draws subsets and runs side by side."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.run import session
from bench.run.runner import run_cell
from bench.store import RunStore
from tests.helpers import SMALL_RUN

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--duration", "0.3", "--warmup", "0.05", "--protocol", "echo", "--payloads", "64"]


def _bench(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.real
def test_the_printed_resume_command_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_run_cell = run_cell
    ran: list[str] = []

    def interrupted_after_first(cell: Any, *args: Any) -> Any:
        if ran:
            raise KeyboardInterrupt
        ran.append(cell.key.key)
        return real_run_cell(cell, *args)

    monkeypatch.setattr(session, "run_cell", interrupted_after_first)
    monkeypatch.chdir(ROOT)  # where a user runs it: the printed interpreter is relative
    argv = ["run", *FAST, "--models", "epoll", "selectors", "--connections", "2"]
    assert cli.main([*argv, "--out", str(tmp_path), "--run-id", "t", "--no-report"]) == 130
    printed = capsys.readouterr().err.splitlines()
    command = next(line for line in printed if line.startswith("resume with: "))
    command = command.removeprefix("resume with: ")
    assert not command.startswith("python ")  # a bare python is not the project's

    # --resume refuses the flags it would ignore, in one line, before any cell
    refused = subprocess.run(
        f"{command} --models uvloop --no-report", shell=True, cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    line = _one_line_error(refused)
    assert "--models would be ignored" in line
    assert len(RunStore.open(tmp_path / "t").rows()) == 1

    done = subprocess.run(
        f"{command} --no-report", shell=True, cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = RunStore.open(tmp_path / "t").rows()
    assert len(rows) == 2 and ran[0] in {r.cell.key for r in rows}
    assert (tmp_path / "t" / "results.csv").is_file()  # written with every run


def test_a_mistyped_model_is_named_with_the_nearest_one(tmp_path: Path) -> None:
    line = _one_line_error(_bench("run", "--models", "epol", "threaded", "--out", str(tmp_path)))
    assert "'epol'" in line and "did you mean 'epoll'?" in line
    assert "threaded'" not in line.split(";")[0]  # the good entry is not blamed
    assert list(tmp_path.iterdir()) == []  # nothing written


def _run_copy(tmp_path: Path, name: str, protocol: str = "echo", payload: int = 64) -> Path:
    """tests/data/small_run as results/<name>, its cells turned into `protocol`."""
    run = tmp_path / "results" / name
    shutil.copytree(SMALL_RUN, run)
    meta = json.loads((run / "metadata.json").read_text())
    (run / "metadata.json").write_text(json.dumps({**meta, "run_id": name}))
    rows = []
    for line in (run / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        row["cell"].update(protocol=protocol, payload=payload)
        row["key"] = row["key"].replace("/echo/", f"/{protocol}/").replace("/p64/", f"/p{payload}/")
        row["run_id"] = name
        rows.append(json.dumps(row))
    (run / "results.jsonl").write_text("\n".join(rows) + "\n")
    return run


def test_report_takes_a_run_id_and_lists_the_runs_for_anything_else(tmp_path: Path) -> None:
    _run_copy(tmp_path, "first")
    _run_copy(tmp_path, "second")
    line = _one_line_error(_bench("report", "results", cwd=tmp_path))
    assert "is a folder of runs" in line and "results/first" in line and "results/second" in line
    line = _one_line_error(_bench("report", "nosuch", cwd=tmp_path))
    assert "results/first" in line and "did you mean" not in line
    line = _one_line_error(_bench("report", "secnod", cwd=tmp_path))
    assert "did you mean 'second'?" in line
    line = _one_line_error(
        _bench("report", "first", "--metrics", "throughput", "--models", "epol", cwd=tmp_path)
    )
    assert "'epol'" in line and "did you mean 'epoll'?" in line and "it has" in line
    line = _one_line_error(_bench("report", "first", "--metrics", "thruput", cwd=tmp_path))
    assert "did you mean 'throughput'?" in line
    assert not (tmp_path / "results" / "first" / "subsets").exists()  # nothing drawn


def test_a_subset_is_drawn_beside_the_run_without_touching_its_report(tmp_path: Path) -> None:
    run = _run_copy(tmp_path, "mine", protocol="http", payload=64)
    done = _bench("report", "mine", "--models", "epoll", "--metrics", "throughput", "starved",
                  "error_share", "--protocols", "http", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = run / "subsets" / "models-epoll_metrics-throughput-starved-error_share_protocols-http"
    assert done.stdout.strip() == f"report: {out.relative_to(tmp_path) / 'report.md'}"
    assert not (run / "report.md").exists()  # the run's own report is not replaced
    charts = sorted(p.name for p in (out / "charts").glob("*.png"))
    assert charts == ["throughput_http_p64.png"]
    report = (out / "report.md").read_text()
    # what ran, as the wire says it; starved in % in the table as in the chart
    assert "## http POST /echo, 64 B body" in report
    assert "### Starved connections (% of connections)" in report
    assert "### Throughput (req/s)" in report and "### p99 latency" not in report
    # charts with nothing to show: one line each instead
    assert "Starved connections: 0 in every cell, so no chart." in report
    assert "Error share: 0 in every cell, so no chart." in report
    table = report.split("### Throughput (req/s)", 1)[1].split("\n\n", 2)[1]
    assert "epoll" in table and "threaded" not in table and "blocking" not in table


def test_two_runs_side_by_side_share_a_chart_labelled_by_run(tmp_path: Path) -> None:
    _run_copy(tmp_path, "echo-run")
    _run_copy(tmp_path, "http-run", protocol="http", payload=0)
    done = _bench("report", "echo-run", "http-run", "--metrics", "throughput", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "results" / "side-by-side" / "echo-run--http-run" / "metrics-throughput"
    report = (out / "report.md").read_text()
    assert "## echo, 64 B frames (echo-run) vs http GET / (http-run)" in report
    assert "- **Run echo-run:**" in report and "- **Run http-run:**" in report
    assert "Separate runs, not interleaved" in report  # the machine may drift between them
    (svg,) = (out / "charts").glob("throughput_*.svg")
    text = svg.read_text()
    for label in ("epoll · echo-run", "epoll · http-run", "threaded · http-run"):
        assert label in text, label
    assert text.count("echo-run: ") == 1 and text.count("http-run: ") == 1  # each machine


def test_a_subset_of_one_interpreter_line_keeps_its_rows_and_cells() -> None:
    """`--models "epoll py3.12"` names a line of the interpreter axis: the frame's
    cells and the rows (for the facts, curves and windows over time) agree on it."""
    import dataclasses

    from bench.report.build import Subset, _restrict
    from bench.report.frame import load_frame

    rows = [
        dataclasses.replace(r, cell=dataclasses.replace(r.cell, python=python))
        for r in RunStore.open(SMALL_RUN).rows()
        for python in ("3.11", "3.12")
    ]
    frame, kept = _restrict(load_frame(rows), rows, Subset(models=("epoll py3.12",)))
    assert set(frame["cell.model"]) == {"epoll py3.12"}
    assert kept and {(r.cell.model, r.cell.python) for r in kept} == {("epoll", "3.12")}
    assert len(kept) == len(frame)

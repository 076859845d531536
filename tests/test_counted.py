"""The counted gate (`bench ab --counted`): its judgement on made-up counts, counted.json,
bad input, and real runs under valgrind (an A/A passes; a known amount of work injected
into NEW's servers is a regression)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench import cli
from bench.cost import tools
from bench.cost.record import Build, CostCell, CostRun, Counted
from bench.gate import counted
from bench.gate.counted import (
    FLOOR,
    IMPROVEMENT,
    NO_CHANGE,
    NOT_JUDGED,
    REGRESSION,
    CountedError,
    CountedResult,
    judge,
)
from bench.gate.counted_report import load, render, save
from tests.test_ab import _head, _this

BUILD = Build(
    python="3.11.2",
    python_sha256="ab" * 32,
    valgrind="valgrind-3.19.0",
    strace="strace 6.1",
    arch="x86_64",
    kernel="6.1.0",
    env={"PYTHONHASHSEED": "0"},
)
SPAN = (1000, 6000)


def _counted(per_request: float, spread: float = 0.0, start: int = 300_000_000) -> Counted:
    """Two tries whose slopes are per_request and per_request x (1 + spread)."""
    span = SPAN[1] - SPAN[0]
    slopes = (per_request, per_request * (1 + spread))
    return Counted(
        SPAN, (start, start), tuple(start + round(s * span) for s in slopes)
    )  # the smallest hi gives per_request itself


def _cell(model: str, instructions: float, syscalls: float = 3.0) -> CostCell:
    return CostCell(model, "echo", 64, 0, _counted(instructions), _counted(syscalls))


def _run(*cells: CostCell, build: Build = BUILD) -> CostRun:
    return CostRun(build, SPAN, 2, cells)


def test_a_change_beyond_the_floor_is_a_regression_or_an_improvement() -> None:
    base = _run(_cell("epoll", 18_700), _cell("poll", 19_000), _cell("asyncio", 40_000))
    new = _run(
        _cell("epoll", 18_700 * 1.01), _cell("poll", 19_000 * 0.99), _cell("asyncio", 40_040)
    )
    cells = {c.model: c for c in judge(base, new)}
    assert cells["epoll"].verdict == REGRESSION and cells["poll"].verdict == IMPROVEMENT
    assert cells["asyncio"].verdict == NO_CHANGE  # +0.1%: below the 0.5% floor
    [instructions, syscalls] = cells["epoll"].changes
    assert instructions.metric == "instructions" and syscalls.metric == "syscalls"
    assert instructions.change == pytest.approx(0.01, abs=1e-6)
    assert instructions.threshold == FLOOR and syscalls.verdict == NO_CHANGE


def test_a_cells_threshold_grows_with_its_own_spread() -> None:
    noisy = replace(_cell("threaded", 9_000), instructions=_counted(9_000, spread=0.005))
    moved = replace(_cell("threaded", 9_000), instructions=_counted(9_000 * 1.015))
    [cell] = judge(_run(noisy), _run(moved))
    change = cell.changes[0]
    # 4 x 0.5% = 2%: a 1.5% change is within what this cell's launches differ by
    assert change.threshold == pytest.approx(counted.K * 0.005, rel=1e-2)  # range / mean
    assert change.verdict == NO_CHANGE and cell.verdict == NO_CHANGE


def test_refused_failed_and_one_sided_cells_are_listed_not_judged() -> None:
    base = _run(
        _cell("epoll", 18_700),
        CostCell("gevent", "echo", 64, refused="its count depends on timing"),
        _cell("poll", 19_000),
        _cell("asyncio", 40_000),
    )
    new = _run(
        _cell("epoll", 18_700),
        CostCell("gevent", "echo", 64, refused="its count depends on timing"),
        CostCell("poll", "echo", 64, error="poll echo/64: exited 1"),
        _cell("uvloop", 30_000),
    )
    cells = {c.model: c for c in judge(base, new)}
    assert list(cells) == ["epoll", "gevent", "poll", "asyncio", "uvloop"]
    assert {m: c.verdict for m, c in cells.items() if m != "epoll"} == dict.fromkeys(
        ["gevent", "poll", "asyncio", "uvloop"], NOT_JUDGED
    )
    assert cells["gevent"].not_judged == "refused: its count depends on timing"
    assert cells["poll"].not_judged == "failed on new: poll echo/64: exited 1"
    assert cells["asyncio"].not_judged == "not counted on new"
    assert cells["uvloop"].not_judged == "not counted on base"
    assert counted.headline(list(cells.values())) == (
        "0 regression, 0 improvement, 1 no change, 4 not judged in 5 counted cells"
    )


def test_a_metric_without_a_positive_base_is_left_out() -> None:
    [cell] = judge(_run(_cell("epoll", 18_700, syscalls=0.0)), _run(_cell("epoll", 18_700)))
    assert [c.metric for c in cell.changes] == ["instructions"]


def test_runs_of_different_builds_are_refused_in_one_line() -> None:
    other = replace(BUILD, valgrind="valgrind-3.22.0")
    with pytest.raises(CountedError) as info:
        judge(_run(_cell("epoll", 1.0)), _run(_cell("epoll", 1.0), build=other))
    assert "\n" not in str(info.value) and "different builds" in str(info.value)
    # the kernel is no part of the key: cachegrind's counts do not depend on it
    judge(_run(_cell("epoll", 1.0)), _run(_cell("epoll", 1.0), build=replace(BUILD, kernel="7")))


def _result() -> CountedResult:
    base = _run(_cell("epoll", 18_700), CostCell("gevent", "echo", 64, refused="timing"))
    new = _run(_cell("epoll", 18_700 * 1.02), CostCell("gevent", "echo", 64, refused="timing"))
    meta = {
        "command": "python -m bench ab a b --counted",
        "when": "2026-12-07T10:00:00+00:00",
        "base": {"side": "base", "given": "a", "sha": "a" * 40},
        "new": {"side": "new", "given": "b", "sha": "b" * 40},
        "new_inject_work": 0,
    }
    return CountedResult(BUILD.key, SPAN, 2, FLOOR, counted.K, judge(base, new), meta)


def test_counted_json_round_trips_and_the_page_says_what_it_is(tmp_path: Path) -> None:
    result = _result()
    save(result, tmp_path)
    assert load(tmp_path) == result
    data = json.loads((tmp_path / "counted.json").read_text())
    assert data["schema"] == counted.SCHEMA and data["build"] == BUILD.key
    change = data["cells"][0]["changes"][0]
    assert change["change"] == pytest.approx(0.02) and data["cells"][0]["verdict"] == REGRESSION
    page = (tmp_path / "counted.md").read_text()
    assert page == render(result)
    assert "no pairs and no p-values" in page and "1 regression" in page
    assert "| epoll echo/64 | **regression** | 18,700 → 19,074 (+2.00%" in page
    assert "- gevent echo/64: refused: timing" in page
    with pytest.raises(ValueError, match="schema 9"):
        (tmp_path / "counted.json").write_text(json.dumps(data | {"schema": 9}))
        load(tmp_path)
    with pytest.raises(ValueError, match="no counted.json"):
        load(tmp_path / "elsewhere")


# -- the command: bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--counted", "--pairs", "3"], "--pairs: not with --counted"),
        (["--counted", "--together"], "--together: not with --counted"),
        (["--tries", "3"], "--tries: only with --counted"),
        (["--new-inject-work", "5"], "--new-inject-work: only with --counted"),
        (["--counted", "--requests", "600", "100"], "needs LO < HI"),
        (["--counted", "--models", "epol"], "did you mean 'epoll'"),
        (["--counted", "--patterns", "ftp/1"], "bad pattern 'ftp/1'"),
        (["--counted", "--new-inject-work", "-1"], "--new-inject-work must be >= 0"),
        (["--counted", "--base-inject-work", "-1"], "--base-inject-work must be >= 0"),
        (["--base-inject-work", "1"], "--base-inject-work: only with --counted"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, says) -> None:
    if _head() is None:
        pytest.skip("not a git checkout")
    assert cli.main(["ab", "HEAD", "HEAD", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_without_valgrind_it_refuses_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    this, out = _this(), tmp_path / "out"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no valgrind, no strace
    assert cli.main(["ab", this, this, "--counted", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--counted needs valgrind" in err, err
    assert not out.exists()


# -- real counts -----------------------------------------------------------------------

# 1,000 requests between the counts: tests/test_nightly.py's COUNTED_TINY says why
TINY = ["--models", "epoll", "--patterns", "echo/64", "--requests", "100", "1100", "--tries", "2"]


def _counters() -> None:
    for program in (tools.VALGRIND, tools.STRACE):
        if reason := tools.missing(program):
            pytest.skip(reason)


@pytest.mark.real
def test_an_aa_comparison_passes(tmp_path, capsys) -> None:
    _counters()
    code = cli.main(["ab", _this(), _this(), "--counted", *TINY, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "counted: 0 regression, 0 improvement, 1 no change" in out, out
    [folder] = tmp_path.iterdir()
    assert {p.name for p in folder.iterdir()} == {
        "cost-base.json",
        "cost-new.json",
        "counted.json",
        "counted.md",
    }
    [cell] = load(folder).cells
    assert cell.key == "epoll echo/64" and cell.verdict == NO_CHANGE
    for change in cell.changes:  # the same servers: the same counts, give or take a tail
        assert abs(change.change) < FLOOR and change.verdict == NO_CHANGE, change


@pytest.mark.real
def test_work_injected_into_new_is_a_regression(tmp_path, capsys) -> None:
    _counters()
    argv = ["ab", _this(), _this(), "--counted", *TINY, "--new-inject-work", "200"]
    assert cli.main([*argv, "--out", str(tmp_path), "--run-id", "ab"]) == 1
    assert "counted: 1 regression" in capsys.readouterr().out
    result = load(tmp_path / "ab")
    assert result.metadata["new_inject_work"] == 200
    [cell] = result.cells
    instructions = next(c for c in cell.changes if c.metric == "instructions")
    assert instructions.verdict == REGRESSION and instructions.change > 0.5, instructions
    page = (tmp_path / "ab" / "counted.md").read_text()
    assert "Injected: NEW's servers with `--inject-work 200`" in page

"""`make nightly`: the counted gate, the wall-clock gate, then the anchor's comparison and
the counts into the history, then the last good commit; the second night takes its base
and anchor from the first. Real servers, 2 pairs of 0.2 s and one counted cell at 100 and
600 requests: a check of the plumbing, not of the gates' power (docs/nightly.md). A night
against a clone with a committed slowdown gets just enough pairs for the wall-clock gate
to fire (the counted one fires on it too): a failing exit, the night still in the
history, the last good commit kept."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.analysis.paired import smallest_p
from bench.commands.ab import ALPHA
from bench.cost import tools
from bench.gate.ab_analysis import family_size
from tests.test_ab import ROOT, _git, _head, _this

pytestmark = pytest.mark.real


def _counters() -> None:
    """Skip a night without the counted gate's counters (.ci/run installs them)."""
    for program in (tools.VALGRIND, tools.STRACE):
        if reason := tools.missing(program):
            pytest.skip(reason)


TINY = "--models epoll --connections 10 --pairs 2 --duration 0.2 --warmup 0.05"
# One counted cell. 1,000 requests between the two counts: a launch's count can miss up to
# about one request's work (where the stop signal finds the server), which is 0.2% of
# the slope over 1,000 requests, 0.4% over 500: too near the gate's 0.5% floor for an A/A.
COUNTED_TINY = "--models epoll --patterns echo/64 --requests 100 1100 --tries 2"
# One cell is a family of 8 tests; n pairs cannot give p below 2^(1-n), so Holm's first
# step (p <= alpha/8) needs 9 pairs; one more, so that a pair lost to an unusable run
# still leaves enough.
PAIRS = 1 + next(n for n in range(2, 64) if smallest_p(n) <= ALPHA / family_size(1))
FIRES = f"--models epoll --connections 10 --pairs {PAIRS} --duration 0.2 --warmup 0.05"
# CPU on every readiness report, spun on the thread's CPU clock so that a server sharing
# its CPU still pays all of it (each read of that clock is a system call: on the 2-core VM
# epoll's 7.8 µs per request at 10 connections became 14.2), far beyond the pairs' spread.
SLOW_NS = 2_000
SLOWDOWN = f"""

# test_nightly: a deliberate slowdown of every Connection.step
import time as _time  # noqa: E402

_step = Connection.step


def _slow_step(self: Connection, readable: int, writable: int) -> None:
    end = _time.thread_time_ns() + {SLOW_NS}
    while _time.thread_time_ns() < end:
        pass
    _step(self, readable, writable)


Connection.step = _slow_step  # type: ignore[method-assign]
"""


def _night(
    tmp_path: Path, night: str, *extra: str, new: str | None = None, args: str = TINY
) -> subprocess.CompletedProcess[str]:
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: make does not reinstall
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), "nightly", f"BIN={Path(sys.executable).parent}",
         f"STAMP={stamp}", f"NEW={new or _this()}", f"AB_OUT={tmp_path / 'ab'}",
         f"HISTORY={tmp_path / 'history' / 'history.jsonl'}", f"NIGHTLY_ID={night}",
         f"ARGS={args}", f"COUNTED_ARGS={COUNTED_TINY}", *extra],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_two_nights_gate_append_and_follow_the_last_good_commit(tmp_path: Path) -> None:
    head = _head()
    if head is None:
        pytest.skip("not a git checkout")
    _counters()
    first = _night(tmp_path, "n1", f"BASE={_this()}")
    assert first.returncode == 0, first.stdout + first.stderr
    data = json.loads((tmp_path / "ab" / "n1" / "ab.json").read_text())
    assert data["metadata"]["together"] and data["metadata"]["pairs"] == 2
    assert not (tmp_path / "ab" / "n1-anchor").exists()  # the anchor is the base: one run
    counted = json.loads((tmp_path / "ab" / "n1-counted" / "counted.json").read_text())
    assert [c["verdict"] for c in counted["cells"]] == ["no change"], counted
    assert counted["requests"] == [100, 1100] and counted["tries"] == 2
    history = tmp_path / "history"
    entries = [json.loads(line) for line in (history / "history.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["base_sha"], e["new_sha"]) for e in entries] == [
        ("paired", head, head),
        ("counted", head, head),
    ]
    assert entries[1]["cell"] == "epoll echo/64" and entries[1]["build"] == counted["build"]
    assert (history / "index.html").is_file() and (history / "history.md").is_file()
    assert (history / "last-good").read_text().strip() == head
    assert (history / "anchor").read_text().strip() == head

    second = _night(tmp_path, "n2")  # no BASE, no ANCHOR: both from the first night
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"make nightly: {head} against {_this()}; the history's anchor: {head}" in (
        second.stdout
    )
    assert len((history / "history.jsonl").read_text().splitlines()) == 4

    bad = _night(tmp_path, "n3", "BASE=no-such-revision")
    assert bad.returncode == 2 and "no such revision or checkout" in bad.stderr
    assert not (tmp_path / "ab" / "n3").exists()


def test_the_first_night_says_where_its_base_comes_from(tmp_path: Path) -> None:
    """No BASE and no last-good file: the base is HEAD~1, and the message says where a
    passing night leaves its commit (a bad ANCHOR then stops it before any benchmark)."""
    night = _night(tmp_path, "n0", "ANCHOR=no-such-revision")
    assert night.returncode == 2, night.stdout + night.stderr
    last_good = tmp_path / "history" / "last-good"
    assert f"the first night: no BASE and no {last_good}, so the base is HEAD~1" in night.stdout
    assert "a passing night writes its commit there" in night.stdout
    assert not (tmp_path / "ab" / "n0").exists()


def test_a_committed_slowdown_fails_the_night_and_keeps_the_last_good_commit(
    tmp_path: Path,
) -> None:
    """Two clones of HEAD (uncommitted changes left out), one with a commit that slows
    Connection.step; the last good commit is the other's, as a passing night left it."""
    head = _head()
    if head is None:
        pytest.skip("not a git checkout")
    _counters()
    base, new = tmp_path / "base", tmp_path / "new"
    for clone in (base, new):
        _git(tmp_path, "clone", "--quiet", "--no-checkout", str(ROOT), str(clone))
        _git(clone, "checkout", "--quiet", "--detach", head)
    conn = new / "servers" / "conn.py"
    conn.write_text(conn.read_text() + SLOWDOWN)
    who = ("-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=0")
    _git(new, *who, "commit", "--quiet", "--all", "--message", "slow down Connection.step")
    slow = _git(new, "rev-parse", "HEAD")
    history = tmp_path / "history"
    history.mkdir()
    (history / "last-good").write_text(f"{head}\n")

    night = _night(tmp_path, "slow", f"BASE={base}", new=str(new), args=FIRES)
    # make exits 2 whenever its recipe fails: the recipe's own status is in its message
    assert night.returncode == 2, night.stdout + night.stderr
    assert re.search(r"\bnightly\] Error 1$", night.stderr, re.MULTILINE), night.stderr
    assert "1 regression, 0 improvement, 0 no change" in night.stdout
    data = json.loads((tmp_path / "ab" / "slow" / "ab.json").read_text())
    meta = data["metadata"]
    assert (meta["pairs"], meta["base"]["sha"], meta["new"]["sha"]) == (PAIRS, head, slow)
    [cell] = data["cells"]
    cpu = next(c for c in cell["changes"] if c["metric"] == "cpu_per_request")
    assert cell["verdict"] == cpu["verdict"] == "regression", cell
    failed = next(c for c in cell["changes"] if c["metric"] == "failed")
    assert failed["new_affected"] == 0, failed  # slower servers, not broken ones
    counted = json.loads((tmp_path / "ab" / "slow-counted" / "counted.json").read_text())
    [counted_cell] = counted["cells"]  # 2 µs of spinning on a clock: far more instructions
    assert counted_cell["verdict"] == "regression", counted_cell
    entries = [json.loads(line) for line in (history / "history.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["base_sha"], e["new_sha"]) for e in entries] == [
        ("paired", head, slow),
        ("counted", head, slow),
    ]
    assert (history / "last-good").read_text().strip() == head
    assert (history / "anchor").read_text().strip() == head

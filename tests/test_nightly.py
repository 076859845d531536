"""`make nightly`: the gate, then the anchor's comparison into the history, then the last
good commit; the second night takes its base and anchor from the first. Real servers,
2 pairs of 0.2 s: a check of the plumbing, not of the gate's power (docs/nightly.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_ab import ROOT, _head, _this

pytestmark = pytest.mark.real

TINY = "--models epoll --connections 10 --pairs 2 --duration 0.2 --warmup 0.05"


def _night(tmp_path: Path, night: str, *extra: str) -> subprocess.CompletedProcess[str]:
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: make does not reinstall
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), "nightly", f"BIN={Path(sys.executable).parent}",
         f"STAMP={stamp}", f"NEW={_this()}", f"AB_OUT={tmp_path / 'ab'}",
         f"HISTORY={tmp_path / 'history' / 'history.jsonl'}", f"NIGHTLY_ID={night}",
         f"ARGS={TINY}", *extra],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_two_nights_gate_append_and_follow_the_last_good_commit(tmp_path: Path) -> None:
    head = _head()
    if head is None:
        pytest.skip("not a git checkout")
    first = _night(tmp_path, "n1", f"BASE={_this()}")
    assert first.returncode == 0, first.stdout + first.stderr
    data = json.loads((tmp_path / "ab" / "n1" / "ab.json").read_text())
    assert data["metadata"]["together"] and data["metadata"]["pairs"] == 2
    assert not (tmp_path / "ab" / "n1-anchor").exists()  # the anchor is the base: one run
    history = tmp_path / "history"
    entries = [json.loads(line) for line in (history / "history.jsonl").read_text().splitlines()]
    assert [(e["base_sha"], e["new_sha"]) for e in entries] == [(head, head)]
    assert (history / "index.html").is_file() and (history / "history.md").is_file()
    assert (history / "last-good").read_text().strip() == head
    assert (history / "anchor").read_text().strip() == head

    second = _night(tmp_path, "n2")  # no BASE, no ANCHOR: both from the first night
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"make nightly: {head} against {_this()}; the history's anchor: {head}" in (
        second.stdout
    )
    assert len((history / "history.jsonl").read_text().splitlines()) == 2

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

"""`bench ab`: sources, refusals, and real interleaved runs of two checkouts' servers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench import cli
from bench.commands import ab as ab_cli
from bench.gate import ab
from bench.gate.ab import AbError, pair_order, resolve
from bench.record import USABLE
from bench.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--models", "epoll", "--duration", "0.3", "--warmup", "0.1"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _head() -> str | None:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    return done.stdout.decode().strip() if done.returncode == 0 else None


def _this() -> str:
    """HEAD, checked out into a worktree, on a clean tree (CI's clone); this checkout's
    folder while it has uncommitted changes, which `bench ab` refuses HEAD for."""
    return str(ROOT) if _git(ROOT, "status", "--porcelain", "--untracked-files=no") else "HEAD"


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "servers").mkdir(parents=True)
    (repo / "servers" / "__main__.py").write_text("print('v1')\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v1")
    return repo


def test_sources_are_revisions_or_checkouts(tiny_repo: Path) -> None:
    head = _git(tiny_repo, "rev-parse", "HEAD")
    assert resolve("base", "HEAD", tiny_repo).sha == head
    folder = resolve("new", str(tiny_repo), tiny_repo)
    assert folder.root == tiny_repo and folder.sha == head
    with pytest.raises(AbError, match="unknown revision 'no-such-rev'"):
        resolve("base", "no-such-rev", tiny_repo)
    (tiny_repo / "servers" / "__main__.py").write_text("print('v2')\n")  # not committed
    with pytest.raises(AbError, match="uncommitted changes"):
        resolve("new", "HEAD", tiny_repo)
    assert resolve("new", str(tiny_repo), tiny_repo).root == tiny_repo  # the folder is fine


def test_pairs_alternate_which_side_runs_first() -> None:
    assert [pair_order(i) for i in range(4)] == [(0, 1), (1, 0), (0, 1), (1, 0)]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["no-such-rev", str(ROOT)], "unknown revision 'no-such-rev'"),
        (["HEAD", "HEAD", "--pairs", "1"], "--pairs must be at least 2"),
        (["HEAD", "HEAD", "--threshold", "150"], "--threshold 150 must be between"),
        (["HEAD", "HEAD", "--models", "nope"], "nope"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, says) -> None:
    if _head() is None:
        pytest.skip("not a git checkout")
    assert cli.main(["ab", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_a_dirty_tree_refuses_head(tiny_repo, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(ab_cli, "REPO", tiny_repo)
    (tiny_repo / "servers" / "__main__.py").write_text("print('v2')\n")
    assert cli.main(["ab", "HEAD~0", "HEAD", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "uncommitted changes" in err
    assert not (tmp_path / "out").exists()


def _worktrees() -> int:
    return _git(ROOT, "worktree", "list", "--porcelain").count("worktree ")


@pytest.mark.real
def test_the_same_revision_twice_runs_interleaved_and_cleans_up(tmp_path, capsys) -> None:
    head = _head()
    if head is None:
        pytest.skip("not a git checkout")
    before = _worktrees()
    argv = ["ab", _this(), _this(), *SHORT, "--connections", "10", "--pairs", "3"]
    code = cli.main([*argv, "--out", str(tmp_path), "--run-id", "aa"])
    assert code == 0 and _worktrees() == before  # the two worktrees are gone
    folder = tmp_path / "aa"
    rows = {side: RunStore.open(folder / side).rows() for side in ab.SIDES}
    assert [len(r) for r in rows.values()] == [3, 3]
    usable = [r.status in USABLE for side in rows.values() for r in side]
    assert all(usable) and all(r.server_git == head for s in rows.values() for r in s)
    starts = sorted((r.started_at, r.repeat, side) for side, rs in rows.items() for r in rs)
    assert [side for *_, side in starts][:2] == ["base", "new"]  # pair 1: A then B
    data = json.loads((folder / "ab.json").read_text())
    assert data["schema"] == 1 and data["metadata"]["tests"] == 8
    [cell] = data["cells"]
    assert cell["verdict"] == "no change"
    text = (folder / "ab.md").read_text()
    assert "cannot give p below 0.2500" in text  # 3 pairs: the warning, not a silent pass
    assert "1 no change" in capsys.readouterr().out


def _refusing_checkout(where: Path) -> Path:
    """This checkout's servers, but epoll closes its 100th connection at once."""
    for package in ("servers", "common"):
        shutil.copytree(
            ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    path = where / "servers" / "epoll_server.py"
    text = path.read_text()
    accept = "for sock in accept_ready(listener, counters):\n"
    assert text.count(accept) == 1
    indent = text.split(accept)[0].rsplit("\n", 1)[1] + "    "
    text = text.replace(
        accept,
        accept + f"{indent}if counters.accepted % 100 == 0:\n"
        f"{indent}    sock.close()\n{indent}    continue\n",
    )
    path.write_text(text)
    return where


@pytest.mark.real
def test_refusing_one_connection_in_a_hundred_fails_through_errors(tmp_path, capsys) -> None:
    if _head() is None:
        pytest.skip("not a git checkout")
    new = _refusing_checkout(tmp_path / "refusing")
    argv = ["ab", _this(), str(new), *SHORT, "--connections", "100", "--pairs", "6"]
    code = cli.main([*argv, "--out", str(tmp_path), "--run-id", "refuse"])
    data = json.loads((tmp_path / "refuse" / "ab.json").read_text())
    [cell] = data["cells"]
    changes = {c["metric"]: c for c in cell["changes"]}
    assert changes["errors"]["new_affected"] == 6 and changes["errors"]["base_affected"] == 0
    assert changes["errors"]["verdict"] == "regression"
    assert code == 1 and cell["verdict"] == "regression"
    assert "1 regression" in capsys.readouterr().out


@pytest.mark.real
def test_together_runs_both_sides_of_a_pair_at_once(tmp_path) -> None:
    if _head() is None:
        pytest.skip("not a git checkout")
    argv = ["ab", _this(), _this(), *SHORT, "--connections", "10", "--pairs", "2", "--together"]
    assert cli.main([*argv, "--out", str(tmp_path), "--run-id", "tog"]) == 0
    base, new = (RunStore.open(tmp_path / "tog" / side).rows() for side in ab.SIDES)
    for a, b in zip(base, new, strict=True):
        assert a.status in USABLE and b.status in USABLE
        assert a.load and b.load and a.load.window and b.load.window
        # the two windows overlap: both sides ran in the same second
        assert a.load.window.start_unix < b.load.window.end_unix
        assert b.load.window.start_unix < a.load.window.end_unix
    assert "both sides of a pair at once" in (tmp_path / "tog" / "ab.md").read_text()

"""`python -m bench ab BASE NEW`: two versions of the servers, interleaved on one machine.

The harness and the load generator are this checkout; only the servers come from BASE
and NEW, each a git revision (checked out into a temporary worktree, removed
afterwards) or a directory holding another checkout. Both run under this checkout's
interpreter, so their dependencies must match it.

Pair i of a cell runs base then new when i is even, new then base when it is odd
(A B B A ...), back to back on the same CPUs, so that a shift of the whole machine
falls on both sides of a pair and cancels in its ratio. With `together`, both sides of
a pair run at the same time, each its own server and load generator on the same CPUs:
the machine's swings within a pair cancel too (docs/nightly.md measures both), at the
price of each side sharing the CPUs with the other; server CPU per request is then the
figure to read, since each load generator gets half a client CPU. Each side's rows go to a run of
its own (`base/` and `new/` in the comparison's folder), and each row records the
commit of the servers that made it (`server_git`).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bench.record import Row
from bench.run.cpus import CpuPlan
from bench.run.matrix import Cell, Matrix
from bench.run.runner import run_cell
from bench.store import RunStore

SIDES = ("base", "new")


class AbError(Exception):
    """Bad input for `bench ab`; the message is one line."""


@dataclass(frozen=True)
class Source:
    """Where one side's servers come from."""

    side: str  # "base" or "new"
    given: str  # the revision or directory as the user gave it
    sha: str  # the servers' commit ("" for a directory outside git)
    root: Path | None = None  # the checkout the servers run from, once it exists


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120
    )


def resolve(side: str, given: str, repo: Path) -> Source:
    """A revision of `repo` or a checkout's directory; AbError (one line) if neither, or
    if it names HEAD while the working tree has uncommitted changes (HEAD's worktree
    would not hold them: commit them, or pass the directory)."""
    path = Path(given)
    if path.is_dir() and (path / "servers" / "__main__.py").is_file():
        done = _git(path, "rev-parse", "--verify", "--quiet", "HEAD")
        return Source(side, given, done.stdout.strip() if done.returncode == 0 else "", path)
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{given}^{{commit}}")
    if done.returncode != 0:
        raise AbError(f"{side}: unknown revision {given!r}; give a revision or a checkout")
    sha = done.stdout.strip()
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    if sha == head and _git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip():
        raise AbError(
            f"{side}: {given!r} is HEAD, and the working tree has uncommitted changes that "
            "HEAD does not hold: commit them, or pass the directory itself"
        )
    return Source(side, given, sha)


@contextlib.contextmanager
def checkouts(sources: tuple[Source, Source], repo: Path) -> Iterator[tuple[Source, Source]]:
    """The sources with a checkout each: a temporary worktree per revision, removed on
    the way out, Ctrl-C included."""
    folder = Path(tempfile.mkdtemp(prefix="sockbench-ab-"))
    made: list[Path] = []
    try:
        ready = []
        for source in sources:
            if source.root is not None:
                ready.append(source)
                continue
            # names of one length ("base", "new_"): the servers' paths then differ in no
            # length, which the counted gate needs (a path one character longer moved
            # glibc's heap layout and prefork's instructions per request by up to 0.3%)
            tree = folder / source.side.ljust(len(max(SIDES, key=len)), "_")
            done = _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), source.sha)
            if done.returncode != 0:
                raise AbError(
                    f"{source.side}: git worktree add failed: {done.stderr.strip()[:200]}"
                )
            made.append(tree)
            ready.append(replace(source, root=tree))
        yield ready[0], ready[1]
    finally:
        for tree in made:
            _git(repo, "worktree", "remove", "--force", str(tree))
        _git(repo, "worktree", "prune")
        with contextlib.suppress(OSError):
            folder.rmdir()


def pair_order(pair: int) -> tuple[int, int]:
    """Which side runs first in pair `pair`: A B, then B A, and so on."""
    return (0, 1) if pair % 2 == 0 else (1, 0)


def run_pairs(
    matrices: tuple[Matrix, Matrix],
    sources: tuple[Source, Source],
    stores: tuple[RunStore, RunStore],
    plan: CpuPlan,
    started: Callable[[str], None],
    finished: Callable[[Row, str], None],
    together: bool = False,
) -> None:
    """Every cell's pairs, interleaved, or both sides at once with `together` (see the
    module); the rows go to the stores as they come, so that an interruption keeps
    what has run."""
    cells: dict[int, list[Cell]] = {}
    for cell in matrices[0].cells():
        cells.setdefault(cell.repeat, []).append(cell)

    def one(cell: Cell, side: int) -> Row:
        source, store = sources[side], stores[side]
        row = run_cell(cell, matrices[side], plan, store.run_id, store.path, source.root, together)
        return replace(row, server_git=source.sha)

    for pair in sorted(cells):
        for cell in cells[pair]:
            labels = [f"{cell.key.key} pair {pair + 1} {sources[side].side}" for side in (0, 1)]
            if together:
                started(f"{cell.key.key} pair {pair + 1} both")
                with ThreadPoolExecutor(2) as pool:
                    rows = list(pool.map(one, (cell, cell), (0, 1)))
                for side, row in enumerate(rows):
                    stores[side].append(row)
                    finished(row, labels[side])
                continue
            for side in pair_order(pair):
                started(labels[side])
                row = one(cell, side)
                stores[side].append(row)
                finished(row, labels[side])

"""One run's session: the cells its store still misses, run one by one (or through the
capacity searches), each row stored as it comes.

The bench process (and its psutil sampling) stays off the server's CPUs while the cells
run. Ctrl-C keeps every row stored so far, marks the run interrupted and says how to
resume it. What a command does with the rows afterwards (summary, report) is its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from bench.record import Row
from bench.run.cpus import CpuPlan
from bench.run.hosts import HERE, Placement
from bench.run.matrix import Cell, Matrix
from bench.run.progress import Progress
from bench.run.runner import run_cell
from bench.run.slo import ESTIMATED_STEPS, run_searches
from bench.store import RunStore
from common.invocation import python_m

INTERRUPTED = 130  # 128 + SIGINT: the exit status of a session stopped by Ctrl-C


def run_session(
    store: RunStore,
    matrix: Matrix,
    plan: CpuPlan,
    *,
    retry_failed: bool = False,
    on_interrupt: Callable[[Path], object] = lambda _run_dir: None,
    placement: Placement = HERE,
) -> bool:
    """Run the cells `store` misses (its failed ones too with `retry_failed`), each cell's
    server and load on the hosts `placement` names (bench hosts; else here); True once
    all ran. On Ctrl-C: the run is marked interrupted, `on_interrupt(run_dir)` is called
    (the command writes its tables there), the resume command is printed, and False."""
    done = {
        (row.cell, row.repeat)
        for row in store.rows()
        if not (retry_failed and row.status == "failed")
    }
    cells = [c for c in matrix.cells() if (c.key, c.repeat) not in done]
    _announce(store, matrix, plan, len(cells), len(done))
    # Put back afterwards, for a caller running this in-process (the tests).
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(plan.client))
    searches = len(matrix.cells()) * len(matrix.slo) if matrix.search else 0
    progress = Progress(len(cells) + searches * ESTIMATED_STEPS)
    # cells run here: run_cell called as ever, positional arguments only
    cell_runner = run_cell if placement == HERE else partial(run_cell, placement=placement)

    def run_one(cell: Cell, probe_rps: float | None = None) -> Row:
        progress.cell_started(f"{cell.key.key} r{cell.repeat}")
        row = cell_runner(cell, matrix, plan, store.run_id, store.path)
        if probe_rps is not None:  # a search step: the capacity its search is planned around
            row = replace(row, probe_rps=probe_rps)
        store.append(row)
        progress.cell_finished(row)
        return row

    def search_ended(estimated: int, ran: int) -> None:
        progress.total += ran - estimated

    try:
        if matrix.search:
            todo = {(c.key, c.repeat) for c in cells}
            run_searches(matrix, store.rows(), todo, run_one, search_ended)
        else:
            for cell in cells:
                run_one(cell)
    except KeyboardInterrupt:
        store.update_metadata(interrupted=True)
        on_interrupt(store.path)
        resume = (  # bench run --resume would run a hosts run's cells here, on loopback
            f"resume with: {python_m('bench', 'run', '--resume', store.path)}"
            if placement == HERE
            else "its hosts (network namespaces) are gone: run the command again to complete it"
        )
        sys.stderr.write(
            f"\ninterrupted: {progress.done} of {len(cells)} cells kept in {store.path}\n{resume}\n"
        )
        return False
    finally:
        os.sched_setaffinity(0, affinity)
    store.update_metadata(
        interrupted=False, finished_at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    return True


def _announce(store: RunStore, matrix: Matrix, plan: CpuPlan, cells: int, done: int) -> None:
    """The notes and the one line that say what this session is about to run, where."""
    if plan.note:
        sys.stderr.write(f"note: {plan.note}\n")
    if matrix.locust_workers:  # started by hand, and again for each cell: say where
        sys.stderr.write(
            f"note: each cell waits for {matrix.locust_workers} locust workers to connect to "
            f"{matrix.locust_master_host}:{matrix.locust_master_port} (docs/locust.md)\n"
        )
    sys.stderr.write(
        f"run {store.path}: {cells} cells to run"
        f"{f' ({done} already done)' if done else ''}; server CPUs "
        f"{list(plan.server)}, load generator CPUs {list(plan.client)}\n"
    )

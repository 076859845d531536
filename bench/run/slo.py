"""Running the searches of the `slo` profile: after each closed-loop cell, one search
per latency target (bench.analysis.search), each step an open-loop cell stored as a row.

A step's CellKey is its closed-loop cell's with `load` "r<rate>" and `search`
"<target>#<n>"; its row's `probe_rps` is the closed-loop throughput the search was
planned around. The search is replayed from those rows (bench.analysis.search.replay),
so a resumed run continues each unfinished search where it stopped and the report
recomputes each result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from bench.analysis.curves import Target, parse_target
from bench.analysis.search import Found, replay, search_target, step_number
from bench.record import CellKey, Row
from bench.run.matrix import Cell, Matrix

RunStep = Callable[[Cell, float], Row]  # a step's cell and the capacity -> its row
ESTIMATED_STEPS = 10  # per search, for the progress line (bench.analysis.search's tests: 8-11)


def steps_of(rows: Iterable[Row], closed: Cell, target: Target) -> list[Row]:
    """The stored steps of one search, in order."""
    mine = [
        row
        for row in rows
        if row.repeat == closed.repeat
        and row.cell.search
        and search_target(row) == target.text
        and replace(row.cell, load="", search="") == closed.key
    ]
    return sorted(mine, key=step_number)


def run_search(
    closed: Cell,
    capacity_rps: float,
    target: Target,
    matrix: Matrix,
    done: list[Row],
    run_step: RunStep,
) -> Found:
    """Run one search to its end; `done` holds its steps stored already (resume)."""
    steps = list(done)
    while True:
        step = replay(steps, target, capacity_rps, matrix.search_steps)
        if isinstance(step, Found):
            return step
        key = replace(closed.key, load=f"r{step:g}", search=f"{target.text}#{len(steps) + 1}")
        steps.append(run_step(Cell(key, closed.repeat), capacity_rps))


def run_searches(
    matrix: Matrix,
    stored: list[Row],
    todo: set[tuple[CellKey, int]],
    run_one: Callable[[Cell, float | None], Row],
    search_ended: Callable[[int, int], None],
) -> None:
    """Each closed-loop cell (run when in `todo`, else its stored row), then its search
    per target. `search_ended(estimated, ran)` keeps a progress line honest."""
    latest = {(row.cell, row.repeat): row for row in stored}
    targets = [parse_target(text) for text in matrix.slo]
    for cell in matrix.cells():
        key = (cell.key, cell.repeat)
        row = run_one(cell, None) if key in todo or key not in latest else latest[key]
        if row.load is None or not row.load.requests:
            for _ in targets:  # no capacity to plan around: the failed row says why
                search_ended(ESTIMATED_STEPS, 0)
            continue
        for target in targets:
            done = steps_of(stored, cell, target)
            found = run_search(cell, row.load.throughput_rps, target, matrix, done, run_one)
            search_ended(ESTIMATED_STEPS, found.steps - len(done))

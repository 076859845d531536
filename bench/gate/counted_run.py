"""`bench ab BASE NEW --counted`: count both sides' servers (bench.cost), then judge
(bench.gate.counted).

Each side's servers run from its own checkout (bench.gate.ab.checkouts) under this
checkout's interpreter and counters, so both sides share one build (bench.cost.record.
Build) and their counts compare. The sides are counted one after the other, each with
`jobs` launches at a time: a count does not depend on timing, so neither the order nor
the machine's load moves it. Each side's counts go to its cost.json (cost-base.json,
cost-new.json) after every cell, so an interruption keeps what has run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cost.measure import Setup, build_facts, count_models
from bench.cost.pattern import Pattern
from bench.cost.record import CostCell, CostRun, save
from bench.gate.ab import Source
from bench.gate.counted import FLOOR, CountedResult, K, judge
from bench.gate.counted_report import SIDE_JSON

# The gate's models: every model whose count is repeatable here (gevent's is not:
# bench.cost.measure.TIMING_DEPENDENT; blocking serves one connection at a time and adds
# nothing the others do not show).
MODELS = ("epoll", "poll", "selectors", "asyncio", "uvloop", "threadpool", "prefork", "threaded")
PATTERNS = ("echo/64", "http/64")
# Fewer requests than bench cost's 1,000 and 6,000: a night counts 2 sides x 8 models x
# 2 patterns; the slope's resolution (a whole instruction over 2,500 requests) and the
# tries' spread (0.002% for epoll) stay far below the 0.5% floor (docs/nightly.md).
REQUESTS = (500, 3000)
# Launches per count and side, under cachegrind and under strace alike: system calls
# too, unlike bench cost (one): threaded's and threadpool's futex calls differ by up to
# 10 between launches (0.2% of a slope over 2,500 requests), and only add, so the
# smaller of two totals and the spread of two slopes are worth a strace launch (0.2-0.5 s).
TRIES = 2


def count_sides(
    sources: tuple[Source, Source],
    models: Sequence[str],
    patterns: Sequence[Pattern],
    setup: Setup,
    side_args: Mapping[str, tuple[str, ...]],
    jobs: int,
    folder: Path,
    meta: Mapping[str, Any],
    progress: Callable[[str], None],
) -> CountedResult:
    """Both sides counted (each source with its checkout), saved, then judged. Each
    side's servers get its `side_args` besides setup's (the calibration's --inject-work)."""
    build = build_facts()
    runs = []
    for source in sources:
        side_setup = replace(
            setup,
            root=source.root,
            server_args=setup.server_args + tuple(side_args.get(source.side, ())),
        )
        head = CostRun(
            build=build,
            requests=setup.requests,
            tries=setup.tries,
            cells=(),
            command=str(meta.get("command", "")),
            when=datetime.now(UTC).isoformat(timespec="seconds"),
            git=source.sha,
        )
        runs.append(
            _count_side(head, source.side, models, patterns, side_setup, jobs, folder, progress)
        )
    return CountedResult(
        build=build.key,
        requests=setup.requests,
        tries=setup.tries,
        floor=FLOOR,
        k=K,
        cells=judge(runs[0], runs[1]),
        metadata=dict(meta),
    )


def _count_side(
    head: CostRun,
    side: str,
    models: Sequence[str],
    patterns: Sequence[Pattern],
    setup: Setup,
    jobs: int,
    folder: Path,
    progress: Callable[[str], None],
) -> CostRun:
    """One side's cells, each saved to its cost.json as it is counted."""
    path = folder / SIDE_JSON[side]
    counted: list[CostCell] = []

    def done(cell: CostCell) -> None:
        counted.append(cell)
        save(replace(head, cells=tuple(counted)), path)

    count_models(models, patterns, setup, jobs, lambda text: progress(f"{side} {text}"), done)
    return replace(head, cells=tuple(counted))

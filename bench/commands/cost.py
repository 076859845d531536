"""`python -m bench cost [MODEL ...]`: instructions and system calls per request, counted
under valgrind and strace (bench.cost), with cost.md, cost.json and a chart per pattern."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.commands.arguments import model_problem
from bench.cost import tools
from bench.cost.measure import DEFAULT_REQUESTS, DEFAULT_TRIES, Setup, build_facts, count_models
from bench.cost.page import cells_of, patterns_of, render
from bench.cost.pattern import IDLE, PATTERNS, parse_pattern
from bench.cost.record import CostCell, CostRun, save
from common.cli import positive_int, usage_error
from common.invocation import python_m
from servers import MODELS

NAME = "cost"
PROG = "python -m bench cost"
OUT = Path("results") / "cost"


def add_parser(sub: Any) -> None:
    cost = sub.add_parser(
        NAME,
        help="instructions and system calls per request, counted under valgrind and strace: "
        "figures that do not depend on the machine's speed",
    )
    cost.add_argument(
        "models", nargs="*", metavar="MODEL", help="the models (default: every one that runs here)"
    )
    cost.add_argument(
        "--patterns",
        nargs="+",
        default=list(PATTERNS),
        metavar="PROTOCOL/BYTES",
        help="what each request is: echo/64 (a 64 B frame), http/0 (GET /), http/64 (POST "
        f"with a 64 B body) (default: {' '.join(PATTERNS)})",
    )
    cost.add_argument(
        "--idle",
        type=int,
        default=IDLE,
        metavar="N",
        help="also the first pattern beside N idle connections, which counts a scan over "
        f"every watched descriptor (poll, select); 0: not (default {IDLE:,})",
    )
    cost.add_argument(
        "--requests",
        nargs=2,
        type=positive_int,
        default=list(DEFAULT_REQUESTS),
        metavar=("LO", "HI"),
        help="the two request counts whose totals give the slope (default %(default)s)",
    )
    cost.add_argument(
        "--tries",
        type=positive_int,
        default=DEFAULT_TRIES,
        metavar="N",
        help=f"launches per count; the smallest total counts (default {DEFAULT_TRIES})",
    )
    cost.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="launches at a time: counts do not depend on timing (default: the usable CPUs)",
    )
    cost.add_argument(
        "--no-syscalls",
        dest="syscalls",
        action="store_false",
        help="count instructions only (no strace)",
    )
    cost.add_argument(
        "--inject-work",
        type=int,
        default=0,
        metavar="N",
        help="N iterations of a pure-Python loop per request in every server: a known "
        "amount of work, to calibrate (default 0)",
    )
    cost.add_argument(
        "--functions",
        action="store_true",
        help="also list each model's top C functions per request (callgrind), per pattern",
    )
    cost.add_argument("--out", type=Path, default=OUT, metavar="DIR", help="where cost folders go")
    cost.add_argument("--run-id", help="folder under --out (default: a timestamp)")


def problems(args: argparse.Namespace) -> str | None:
    """The first bad input, in one line, before any work."""
    if problem := model_problem(args.models):
        return problem
    lo, hi = args.requests
    if lo >= hi:
        return f"--requests LO HI needs LO < HI, got {lo} {hi}"
    if args.idle < 0 or args.inject_work < 0:
        return "--idle and --inject-work must be >= 0"
    if reason := tools.missing(tools.VALGRIND):
        return reason
    if args.syscalls and (reason := tools.missing(tools.STRACE)):
        return f"{reason}; or pass --no-syscalls"
    return None


def run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        patterns = [parse_pattern(text) for text in args.patterns]
    except ValueError as exc:
        return usage_error(PROG, exc)
    if problem := problems(args):
        return usage_error(PROG, problem)
    if args.idle:
        patterns.append(replace(patterns[0], idle=args.idle))
    models = args.models or [m for m, model in MODELS.items() if not model.unavailable_reason()]
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / run_id
    if out_dir.exists():
        return usage_error(PROG, f"{out_dir} exists; pick another --run-id")
    out_dir.mkdir(parents=True)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    setup = Setup(
        requests=(args.requests[0], args.requests[1]),
        tries=args.tries,
        server_args=("--inject-work", str(args.inject_work)) if args.inject_work else (),
        syscalls=args.syscalls,
    )
    head = CostRun(
        build=build_facts(),
        requests=setup.requests,
        tries=setup.tries,
        cells=(),
        command=python_m("bench", *argv),
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        git=_git_sha(),
    )
    counted: list[CostCell] = []

    def done(cell: CostCell) -> None:  # saved after every cell: Ctrl-C keeps what ran
        counted.append(cell)
        save(replace(head, cells=tuple(counted)), out_dir / "cost.json")

    try:
        count_models(models, patterns, setup, jobs, _log, done)
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted: {len(counted)} cells kept in {out_dir}\n")
        return 130
    result = replace(head, cells=tuple(counted))
    charts = _charts(result, out_dir / "charts")
    (out_dir / "cost.md").write_text(render(result, charts), encoding="utf-8")
    if args.functions:
        from bench.cost.functions import functions_page

        _log("functions (callgrind)")
        (out_dir / "functions.md").write_text(
            functions_page(models, patterns, setup, jobs, _log), encoding="utf-8"
        )
    print(out_dir / "cost.md")
    return 1 if any(cell.error for cell in counted) else 0


def _charts(run: CostRun, folder: Path) -> list[str]:
    """A chart per pattern: instructions per request, a bar per model counted."""
    from bench.report.charts.cost_plots import CostBar  # matplotlib: only here
    from bench.report.charts.figures import save_cost_chart

    folder.mkdir(exist_ok=True)
    names = []
    for pattern in patterns_of(run):
        alone = {
            c.model: c.instructions.per_request
            for c in cells_of(run, replace(pattern, idle=0))
            if c.instructions is not None
        }
        bars = [
            CostBar(
                c.model,
                c.instructions.per_request,
                f"{c.instructions.per_request:,.0f}"
                + (f"  ({c.syscalls.per_request:.1f} syscalls)" if c.syscalls else ""),
                alone.get(c.model) if pattern.idle else None,
            )
            for c in cells_of(run, pattern)
            if c.instructions is not None
        ]
        if not bars:
            continue
        name = "cost-" + pattern.key.replace("/", "-")
        save_cost_chart(
            bars,
            f"Instructions per request: {pattern.words()}",
            f"Counted under {run.build.valgrind} (cachegrind), {run.build.python.split()[0]}, "
            f"{run.build.arch}; the slope between {run.requests[0]:,} and "
            f"{run.requests[1]:,} requests, one connection in ping-pong. User space only: "
            "the kernel's work is not in it.",
            "the same requests without idle connections",
            folder / name,
        )
        names.append(name)
    return names


def _log(text: str) -> None:
    sys.stderr.write(f"{text}\n")


def _git_sha() -> str:
    from bench.run.machine import REPO_ROOT, git_state

    sha, dirty = git_state(REPO_ROOT)
    return f"{str(sha)[:12]}{' (dirty)' if dirty else ''}"

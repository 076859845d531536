"""`python -m bench ab BASE NEW`: the command line of bench.gate.ab (see there), and with
--counted of the counted gate (bench.gate.counted_run, bench.gate.counted)."""

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
from bench.cost.measure import Setup
from bench.cost.pattern import parse_pattern
from bench.gate.ab import SIDES, AbError, Source, checkouts, resolve, run_pairs
from bench.gate.ab_analysis import THRESHOLD_PCT, TOGETHER_EXPECTED, analyse, family_size
from bench.gate.ab_report import headline, save
from bench.gate.counted import CountedError
from bench.gate.counted import headline as counted_headline
from bench.gate.counted_report import save as save_counted
from bench.gate.counted_run import MODELS as COUNTED_MODELS
from bench.gate.counted_run import PATTERNS as COUNTED_PATTERNS
from bench.gate.counted_run import REQUESTS as COUNTED_REQUESTS
from bench.gate.counted_run import TRIES as COUNTED_TRIES
from bench.gate.counted_run import count_sides
from bench.run.cpus import CpuPlan, plan_cpus
from bench.run.matrix import MatrixError, load_profile, override, profile_names
from bench.run.progress import Progress
from bench.run.session import INTERRUPTED
from bench.store import RunStore
from common.cli import (
    cpu_list,
    non_negative_float,
    positive_float,
    positive_int,
    usage_error,
)
from servers import MODELS

NAME = "ab"
PROG = "python -m bench ab"
OUT = Path("results") / "ab"
REPO = Path(__file__).resolve().parents[2]
PROFILE = "gate"  # few cells, many pairs: docs/nightly.md, "How many pairs"
ALPHA = 0.05
# flag -> dest of the options that only one of the two gates reads
WALL_CLOCK_ONLY = {
    "--profile": "profile",
    "--connections": "connections",
    "--pairs": "pairs",
    "--duration": "duration",
    "--warmup": "warmup",
    "--threshold": "threshold",
    "--alpha": "alpha",
    "--together": "together",
    "--new-inject-delay-ns": "new_inject_delay_ns",
    "--server-cpus": "server_cpus",
    "--client-cpus": "client_cpus",
}
WALL_CLOCK_DEFAULTS = {"profile": PROFILE, "threshold": THRESHOLD_PCT, "alpha": ALPHA}
COUNTED_ONLY = {
    "--patterns": "patterns",
    "--requests": "requests",
    "--tries": "tries",
    "--jobs": "jobs",
    "--base-inject-work": "base_inject_work",
    "--new-inject-work": "new_inject_work",
}


def add_parser(sub: Any) -> None:
    ab = sub.add_parser(
        NAME,
        help="two versions of the servers interleaved on this machine, compared as pairs; "
        "or counted under valgrind and strace (--counted)",
    )
    ab.add_argument("base", metavar="BASE", help="a git revision, or a checkout's folder")
    ab.add_argument("new", metavar="NEW", help="a git revision, or a checkout's folder")
    ab.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="only these models (default: the profile's; with --counted, every one of "
        f"{' '.join(COUNTED_MODELS)} that runs here)",
    )
    _add_wall_clock_options(ab)
    ab.add_argument("--out", type=Path, default=OUT, metavar="DIR", help="where ab folders go")
    ab.add_argument("--run-id", help="folder under --out (default: a timestamp)")
    _add_counted_options(ab)


def _add_wall_clock_options(ab: Any) -> None:
    ab.add_argument(
        "--profile",
        default=PROFILE,
        help=f"the matrix: one of {', '.join(profile_names())} or a .toml (default {PROFILE})",
    )
    ab.add_argument(
        "--connections",
        nargs="+",
        type=positive_int,
        metavar="N",
        help="only these connection counts (default: the profile's)",
    )
    ab.add_argument(
        "--pairs", type=positive_int, help="pairs per cell (default: the profile's repeats)"
    )
    ab.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help="seconds measured per run (default: the profile's)",
    )
    ab.add_argument(
        "--warmup",
        type=non_negative_float,
        metavar="S",
        help="seconds of load before each measured window (default: the profile's)",
    )
    ab.add_argument(
        "--threshold",
        type=positive_float,
        default=THRESHOLD_PCT,
        metavar="PCT",
        help="a regression's whole interval lies beyond this change, in percent "
        f"(default {THRESHOLD_PCT:g})",
    )
    ab.add_argument(
        "--alpha",
        type=positive_float,
        default=ALPHA,
        help=f"the family's error rate, Holm-corrected (default {ALPHA:g})",
    )
    ab.add_argument(
        "--together",
        action="store_true",
        help="run both sides of each pair at the same time, each its own server and load "
        "generator on the same CPUs: the machine's swings cancel within the pair "
        "(default: one after the other, A B B A)",
    )
    ab.add_argument(
        "--new-inject-delay-ns",
        type=int,
        default=0,
        metavar="NS",
        help="extra CPU per request in NEW's servers only: a known slowdown, to check "
        "that the gate catches it (default 0)",
    )
    ab.add_argument(
        "--server-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the servers' CPUs, e.g. 0 or 0-3 (default: the first usable CPU)",
    )
    ab.add_argument(
        "--client-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the load generators' CPUs, e.g. 1 or 4-15 (default: the other usable CPUs)",
    )


def _add_counted_options(ab: Any) -> None:
    counted = ab.add_argument_group(
        "the counted gate",
        "instructions and system calls per request under valgrind and strace, judged "
        "against each cell's own spread instead of pairs of timings (docs/nightly.md)",
    )
    counted.add_argument(
        "--counted",
        action="store_true",
        help="run the counted gate instead of the wall-clock one: writes counted.md, "
        "counted.json and each side's cost-base.json and cost-new.json",
    )
    counted.add_argument(
        "--patterns",
        nargs="+",
        metavar="PROTOCOL/BYTES",
        help=f"with --counted: what each request is (default: {' '.join(COUNTED_PATTERNS)})",
    )
    counted.add_argument(
        "--requests",
        nargs=2,
        type=positive_int,
        metavar=("LO", "HI"),
        help="with --counted: the two request counts whose totals give the slope "
        f"(default: {' '.join(map(str, COUNTED_REQUESTS))})",
    )
    counted.add_argument(
        "--tries",
        type=positive_int,
        metavar="N",
        help="with --counted: launches per count and side, under valgrind and under "
        f"strace alike (default: {COUNTED_TRIES})",
    )
    counted.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="with --counted: launches at a time; counts do not depend on timing "
        "(default: the usable CPUs)",
    )
    counted.add_argument(
        "--base-inject-work",
        type=int,
        metavar="N",
        help="with --counted: N iterations of the same loop in BASE's servers: the "
        "injection's own wrapper costs epoll about 14%% per request, so a calibration of "
        "1%% injects on both sides and differs by a few iterations (default: 0)",
    )
    counted.add_argument(
        "--new-inject-work",
        type=int,
        metavar="N",
        help="with --counted: N iterations of a pure-Python loop per request in NEW's "
        "servers only: a known amount of work, to check that the gate catches it "
        "(default: 0)",
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Checks everything before any work; 2 for bad input, 1 for a regression."""
    if problem := _mixed(args):
        return usage_error(PROG, problem)
    if args.counted:
        return run_counted(args, argv)
    if problem := _out_of_range(args):
        return usage_error(PROG, problem)
    try:
        matrix = override(
            load_profile(args.profile),
            models=args.models,
            connections=args.connections,
            repeats=args.pairs,
            duration=args.duration,
            warmup=args.warmup,
        )
        plan = plan_cpus(args.server_cpus, args.client_cpus)
        sources = (resolve("base", args.base, REPO), resolve("new", args.new, REPO))
    except (AbError, MatrixError, ValueError) as exc:
        return usage_error(PROG, exc)
    if matrix.repeats < 2:
        return usage_error(PROG, f"profile {args.profile}: a pair needs repeats >= 2")
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = args.out / run_id
    if folder.exists():
        return usage_error(PROG, f"{folder} exists; pick another --run-id")
    matrices = (matrix, replace(matrix, inject_delay_ns=args.new_inject_delay_ns))
    cells = len({c.key for c in matrix.cells()})
    from bench.run.machine import collect_metadata  # reads /proc and git

    meta = _ab_metadata(args, argv, matrix.repeats, cells, plan)
    folder.mkdir(parents=True)
    stores = tuple(
        RunStore.create(
            folder,
            side,
            {
                **collect_metadata([PROG, *argv], matrix.profile, plan.to_dict()),
                "matrix": m.to_dict(),
                "ab": {"side": side, "given": s.given, "server_git": s.sha},
            },
        )
        for side, s, m in zip(SIDES, sources, matrices, strict=True)
    )
    if plan.note:
        sys.stderr.write(f"note: {plan.note}\n")
    total = 2 * len(matrix.cells())
    sys.stderr.write(
        f"ab {folder}: {cells} cells x {matrix.repeats} pairs x 2 sides = {total} runs; server "
        f"CPUs {list(plan.server)}, load generator CPUs {list(plan.client)}\n"
    )
    progress = Progress(total)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(plan.client))  # the harness stays off the server CPUs
    try:
        with checkouts(sources, REPO) as ready:
            meta["base"], meta["new"] = (_describe(s) for s in ready)
            run_pairs(
                matrices, ready, (stores[0], stores[1]), plan,
                progress.cell_started, progress.cell_finished, args.together,
            )  # fmt: skip
    except AbError as exc:
        return usage_error(PROG, exc)
    except KeyboardInterrupt:
        for store in stores:
            store.update_metadata(interrupted=True)
        sys.stderr.write(f"\ninterrupted: the runs so far are kept in {folder}\n")
        return INTERRUPTED
    finally:
        os.sched_setaffinity(0, affinity)
    for store in stores:
        store.update_metadata(interrupted=False)
    expected = TOGETHER_EXPECTED if args.together else frozenset()
    results, _ = analyse(
        stores[0].rows(), stores[1].rows(), args.alpha, args.threshold / 100, expected
    )
    path = save(results, meta, folder)
    print(f"{headline(results)}: {path}")
    return 1 if any(r.verdict == "regression" for r in results) else 0


def _mixed(args: argparse.Namespace) -> str | None:
    """A flag of one gate given to the other, or None."""
    given = {flag for flag, dest in WALL_CLOCK_ONLY.items() if _set(args, dest)}
    if args.counted and given:
        return f"{', '.join(sorted(given))}: not with --counted (the wall-clock gate's)"
    given = {flag for flag, dest in COUNTED_ONLY.items() if getattr(args, dest) is not None}
    if not args.counted and given:
        return f"{', '.join(sorted(given))}: only with --counted"
    return None


def _set(args: argparse.Namespace, dest: str) -> bool:
    """Whether a wall-clock flag differs from its default."""
    value = getattr(args, dest)
    return value != WALL_CLOCK_DEFAULTS[dest] if dest in WALL_CLOCK_DEFAULTS else bool(value)


def _out_of_range(args: argparse.Namespace) -> str | None:
    """What is wrong with a number among the flags, or None."""
    if not 0 < args.threshold < 100:
        return f"--threshold {args.threshold:g} must be between 0 and 100"
    if not 0 < args.alpha < 1:
        return f"--alpha {args.alpha:g} must be between 0 and 1"
    if args.pairs is not None and args.pairs < 2:
        return "--pairs must be at least 2"
    if args.new_inject_delay_ns < 0:
        return "--new-inject-delay-ns must be >= 0"
    return None


def _ab_metadata(
    args: argparse.Namespace, argv: list[str], pairs: int, cells: int, plan: CpuPlan
) -> dict[str, Any]:
    """ab.json's description of the comparison (the sides are added once checked out)."""
    command = " ".join([PROG, *argv[1:]]) if argv and argv[0] == "ab" else PROG
    return {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "pairs": pairs,
        "alpha": args.alpha,
        "threshold": args.threshold / 100,
        "tests": family_size(cells),
        "server_cpus": ",".join(map(str, plan.server)),
        "client_cpus": ",".join(map(str, plan.client)),
        "new_inject_delay_ns": args.new_inject_delay_ns,
        "together": args.together,
        "expected_reasons": sorted(TOGETHER_EXPECTED) if args.together else [],
    }


def _describe(source: Source) -> dict[str, str]:
    return {"side": source.side, "given": source.given, "sha": source.sha}


# -- the counted gate -------------------------------------------------------------------


def _counted_problem(args: argparse.Namespace) -> str | None:
    """The first bad input of --counted, in one line, before any work."""
    if problem := model_problem(args.models or ()):
        return problem
    if args.requests is not None and args.requests[0] >= args.requests[1]:
        return f"--requests LO HI needs LO < HI, got {args.requests[0]} {args.requests[1]}"
    for side in SIDES:
        if (getattr(args, f"{side}_inject_work") or 0) < 0:
            return f"--{side}-inject-work must be >= 0"
    for program in (tools.VALGRIND, tools.STRACE):
        if reason := tools.missing(program):
            return f"--counted needs {program}: {reason}"
    return None


def run_counted(args: argparse.Namespace, argv: list[str]) -> int:
    """`bench ab BASE NEW --counted` (bench.gate.counted_run): 2 for bad input, before
    any work; 1 for a regression; 0 otherwise."""
    if problem := _counted_problem(args):
        return usage_error(PROG, problem)
    try:
        patterns = [parse_pattern(text) for text in args.patterns or COUNTED_PATTERNS]
        sources = (resolve("base", args.base, REPO), resolve("new", args.new, REPO))
    except (AbError, ValueError) as exc:
        return usage_error(PROG, exc)
    models = args.models or [m for m in COUNTED_MODELS if not MODELS[m].unavailable_reason()]
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder = args.out / run_id
    if folder.exists():
        return usage_error(PROG, f"{folder} exists; pick another --run-id")
    lo, hi = args.requests or COUNTED_REQUESTS
    tries = args.tries or COUNTED_TRIES
    setup = Setup(requests=(lo, hi), tries=tries, syscall_tries=tries)
    work = {side: getattr(args, f"{side}_inject_work") or 0 for side in SIDES}
    jobs = args.jobs or len(os.sched_getaffinity(0))
    command = " ".join([PROG, *argv[1:]]) if argv and argv[0] == "ab" else PROG
    meta: dict[str, Any] = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": list(models),
        "patterns": [p.key for p in patterns],
        "base_inject_work": work["base"],
        "new_inject_work": work["new"],
    }
    folder.mkdir(parents=True)
    cells = len(models) * len(patterns)
    sys.stderr.write(
        f"ab --counted {folder}: {cells} cells x 2 sides, {setup.tries} tries at {lo:,} and "
        f"{hi:,} requests, {jobs} launches at a time\n"
    )
    try:
        with checkouts(sources, REPO) as ready:
            meta["base"], meta["new"] = (_describe(s) for s in ready)
            side_args = {s: ("--inject-work", str(n)) for s, n in work.items() if n}
            result = count_sides(
                ready, models, patterns, setup, side_args, jobs, folder, meta, _log
            )
    except (AbError, CountedError) as exc:
        return usage_error(PROG, exc)
    except KeyboardInterrupt:
        sys.stderr.write(f"\ninterrupted: the counts so far are kept in {folder}\n")
        return INTERRUPTED
    path = save_counted(result, folder)
    print(f"counted: {counted_headline(result.cells)}: {path}")
    return 1 if result.regressions else 0


def _log(text: str) -> None:
    sys.stderr.write(f"{text}\n")

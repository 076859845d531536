"""`python -m bench ab BASE NEW`: the command line of bench.gate.ab (see there)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gate.ab import SIDES, AbError, Source, checkouts, resolve, run_pairs
from bench.gate.ab_analysis import THRESHOLD_PCT, TOGETHER_EXPECTED, analyse, family_size
from bench.gate.ab_report import headline, save
from bench.run.cpus import CpuPlan, plan_cpus
from bench.run.matrix import MatrixError, load_profile, override, profile_names
from bench.run.progress import Progress
from bench.run.session import INTERRUPTED
from bench.store import RunStore
from common.cli import cpu_list, non_negative_float, positive_float, positive_int, usage_error

NAME = "ab"
PROG = "python -m bench ab"
OUT = Path("results") / "ab"
REPO = Path(__file__).resolve().parents[2]
PROFILE = "gate"  # few cells, many pairs: docs/nightly.md, "How many pairs"
ALPHA = 0.05


def add_parser(sub: Any) -> None:
    ab = sub.add_parser(
        NAME,
        help="two versions of the servers interleaved on this machine, compared as pairs",
    )
    ab.add_argument("base", metavar="BASE", help="a git revision, or a checkout's folder")
    ab.add_argument("new", metavar="NEW", help="a git revision, or a checkout's folder")
    ab.add_argument(
        "--profile",
        default=PROFILE,
        help=f"the matrix: one of {', '.join(profile_names())} or a .toml (default {PROFILE})",
    )
    ab.add_argument(
        "--models", nargs="+", metavar="MODEL", help="only these models (default: the profile's)"
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
    ab.add_argument("--out", type=Path, default=OUT, metavar="DIR", help="where ab folders go")
    ab.add_argument("--run-id", help="folder under --out (default: a timestamp)")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Checks everything before any work; 2 for bad input, 1 for a regression."""
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

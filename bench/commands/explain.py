"""`python -m bench explain MODEL ...`: the command line of bench.explain.measure."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.commands.arguments import model_problem
from bench.explain.measure import Explained, ExplainError, Options, combine, explain_model, save
from bench.explain.report import render
from bench.run.cpus import plan_cpus
from common.cli import cpu_list, positive_float, positive_int, usage_error
from common.cpus import format_cpu_list
from common.invocation import python_m

NAME = "explain"
OUT = Path("results") / "explain"
PROG = "python -m bench explain"


def add_parser(sub: Any) -> None:
    explain = sub.add_parser(
        NAME,
        help="where each model's CPU per request goes: syscalls, CPU, parts and Python "
        "functions (perf)",
    )
    explain.add_argument("models", nargs="+", metavar="MODEL", help="the models to explain")
    explain.add_argument(
        "--protocol", choices=["echo", "http"], default="echo", help="the wire protocol"
    )
    explain.add_argument(
        "--payload",
        type=int,
        default=64,
        metavar="BYTES",
        help="bytes per request: echo payload, or the HTTP POST body (0: GET /)",
    )
    explain.add_argument(
        "--connections",
        type=positive_int,
        default=100,
        metavar="N",
        help="the load generator's connections",
    )
    load = explain.add_mutually_exclusive_group()
    load.add_argument(
        "--rate",
        type=positive_float,
        default=Options.rate,
        metavar="RPS",
        help=f"the open loop's rate, the same for every model (default {Options.rate:,.0f})",
    )
    load.add_argument(
        "--closed-loop",
        action="store_true",
        help="the closed loop instead: each model at its own saturation",
    )
    explain.add_argument(
        "--phase",
        type=positive_int,
        default=Options.phase_s,
        metavar="S",
        help=f"seconds of each of the three phases (default {Options.phase_s})",
    )
    explain.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        metavar="N",
        help="measurements per model, the models' order reversed each time; the tables "
        "show medians (default 3)",
    )
    explain.add_argument(
        "--no-functions",
        dest="functions",
        action="store_false",
        help="do not name Python functions: the server runs without perf trampolines and "
        "perf records no stacks (default: named on Python 3.12+)",
    )
    explain.add_argument(
        "--server-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the server's CPUs, e.g. 0 or 0-3 (default: the first usable CPU)",
    )
    explain.add_argument(
        "--client-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the load generator's and perf's CPUs, e.g. 1 or 4-15 (default: the other "
        "usable CPUs)",
    )
    explain.add_argument(
        "--out", type=Path, default=OUT, metavar="DIR", help="where explain folders go"
    )
    explain.add_argument("--run-id", help="folder under --out (default: a timestamp)")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if problem := model_problem(args.models):
        return usage_error(PROG, problem)
    if args.payload < 0 or (args.protocol == "echo" and args.payload == 0):
        return usage_error(PROG, "--payload must be positive for echo (0 or more for http)")
    plan = plan_cpus(args.server_cpus, args.client_cpus)
    run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / run_id
    if out_dir.exists():
        return usage_error(PROG, f"{out_dir} exists; pick another --run-id")
    out_dir.mkdir(parents=True)
    rate = None if args.closed_loop else args.rate
    options = Options(
        args.protocol, args.payload, args.connections, rate, args.phase, args.functions
    )
    metadata = {
        "command": python_m("bench", *argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git_sha(),
        "server_cpus": format_cpu_list(plan.server),
        "client_cpus": format_cpu_list(plan.client),
        "options": asdict(options),
    }
    if plan.note:
        sys.stderr.write(f"note: {plan.note}\n")
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(plan.client))  # perf stays off the server CPUs
    runs: dict[str, list[Explained]] = {name: [] for name in args.models}
    failed: set[str] = set()
    order = [
        (n, name)
        for n in range(args.repeats)
        for name in (args.models if n % 2 == 0 else args.models[::-1])
    ]
    try:
        for step, (n, name) in enumerate(order, 1):
            if name in failed:
                continue
            sys.stderr.write(f"[{step}/{len(order)}] {name}, repeat {n + 1}\n")
            try:
                runs[name].append(explain_model(name, options, plan, out_dir, _log))
            except ExplainError as exc:
                failed.add(name)
                sys.stderr.write(f"error: {exc}\n")
            # written after every measurement: an interrupted run loses at most one
            results = [combine(r) for r in runs.values() if r]
            if results:
                save(results, metadata, out_dir / "explain.json")
                (out_dir / "explain.md").write_text(render(results, metadata), encoding="utf-8")
    finally:
        os.sched_setaffinity(0, affinity)
    print(out_dir / "explain.md" if any(runs.values()) else out_dir)
    return 1 if failed else 0


def _log(text: str) -> None:
    sys.stderr.write(f"  {text}\n")


def _git_sha() -> str:
    from bench.run.machine import REPO_ROOT, git_state

    sha, dirty = git_state(REPO_ROOT)
    return f"{str(sha)[:12]}{' (dirty)' if dirty else ''}"

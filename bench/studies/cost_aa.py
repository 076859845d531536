"""`python -m bench.studies.cost_aa`: how repeatable `bench cost`'s counts are, run to run.

Counts every model that is not refused under every pattern RUNS times, one launch per
request count each time (so each run's slope stands alone, as an A/A of the counted
gate would see it), and prints, per cell, the smallest and largest instructions and
system calls per request over the runs and their spread: (largest - smallest) / mean.
The issue's bar is 0.2%. Writes the table to --out as markdown too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from bench.cost.measure import DEFAULT_REQUESTS, Setup, count_models
from bench.cost.pattern import IDLE, PATTERNS, parse_pattern
from bench.cost.record import CostCell
from common.cli import ArgumentParser, positive_int
from servers import MODELS

PROG = "python -m bench.studies.cost_aa"


def spread(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean else 0.0


def _progress(text: str) -> None:
    if not text.startswith("["):  # refusals and errors only
        sys.stderr.write(f"{text}\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", default=[], help="the models (default: every one that runs here)"
    )
    parser.add_argument(
        "--runs", type=positive_int, default=10, help="runs of every cell (default 10)"
    )
    parser.add_argument(
        "--patterns",
        nargs="+",
        default=list(PATTERNS),
        metavar="PROTOCOL/BYTES",
        help=f"the patterns, as bench cost takes them (default: {' '.join(PATTERNS)})",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=IDLE,
        help=f"idle connections beside the first pattern; 0: none (default {IDLE:,})",
    )
    parser.add_argument(
        "--no-syscalls",
        dest="syscalls",
        action="store_false",
        help="count instructions only (no strace)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="launches at a time (default: the usable CPUs)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("cost-aa.md"),
        help="the markdown table's file (default cost-aa.md)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    patterns = [parse_pattern(p) for p in args.patterns]
    if args.idle:
        patterns.append(replace(patterns[0], idle=args.idle))
    models = args.models or [m for m, model in MODELS.items() if not model.unavailable_reason()]
    setup = Setup(requests=DEFAULT_REQUESTS, tries=1, syscalls=args.syscalls)
    jobs = args.jobs or len(os.sched_getaffinity(0))
    runs: list[list[CostCell]] = []
    for n in range(args.runs):
        sys.stderr.write(f"== run {n + 1} of {args.runs}\n")
        runs.append(count_models(models, patterns, setup, jobs, _progress))
    lines = [
        f"# bench cost, {args.runs} runs of one launch per count",
        "",
        "| cell | instructions / request: least | most | spread | syscalls / request: "
        "least | most |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for i, cell in enumerate(runs[0]):
        if cell.refused:
            lines.append(f"| {cell.key} | refused: {cell.refused} | | | | |")
            continue
        counted = [r[i] for r in runs]
        if any(c.instructions is None for c in counted):
            errors = "; ".join(c.error or "" for c in counted if c.error)
            lines.append(f"| {cell.key} | failed: {errors[:200]} | | | | |")
            continue
        ins = [c.instructions.per_request for c in counted if c.instructions]
        sys_ = [c.syscalls.per_request for c in counted if c.syscalls]
        calls = f"{min(sys_):.3f} | {max(sys_):.3f}" if sys_ else "— | —"
        worst = max(worst, spread(ins))
        lines.append(
            f"| {cell.key} | {min(ins):,.1f} | {max(ins):,.1f} | {spread(ins):.4%} | {calls} |"
        )
    lines += ["", f"Largest spread of instructions per request: {worst:.4%}."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

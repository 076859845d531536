"""`python -m bench report RUN...`: (re)build a run's report (bench.report.build), a subset
of it, or several runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.store import RESULTS, resolve_run

NAME = "report"


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        NAME,
        help="(re)build report.md, report.html and charts; a subset, or runs side by side",
    )
    report.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a run folder or a run id in results/; several: drawn side by side, each "
        "line labelled MODEL · RUN",
    )
    report.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="only these models (the load-latency overview chart draws them, at most 6)",
    )
    report.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="only these metrics' tables and charts, e.g. throughput p99 starved "
        "(names: `bench list`)",
    )
    report.add_argument(
        "--protocols",
        "--protocol",
        nargs="+",
        metavar="PROTOCOL",
        help="only the cells of these protocols (echo, http)",
    )
    report.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the report goes (default: the run's folder; a subset: "
        "RUN/subsets/<choice>/; several runs: results/side-by-side/<runs>/)",
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    runs = [resolve_run(given, RESULTS) for given in args.runs]
    from bench.report.build import build_report_and_csv  # pandas, matplotlib: only here

    report = build_report_and_csv(
        runs, args.models, metrics=args.metrics, protocols=args.protocols, out=args.out
    )
    print(f"report: {report}")
    return 0

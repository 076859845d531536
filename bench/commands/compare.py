"""`python -m bench compare BASE_RUN NEW_RUN`: two existing runs' repeats compared
(bench.gate.compare); exit 1 on a regression. The gate between two versions is `bench ab`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common.cli import usage_error

NAME = "compare"
PROG = "python -m bench compare"


def add_parser(sub: Any) -> None:
    compare = sub.add_parser(
        NAME,
        help="compare two existing runs' repeats (exit 1 on a regression); the gate is bench ab",
    )
    compare.add_argument("base_run", type=Path, metavar="BASE_RUN")
    compare.add_argument("new_run", type=Path, metavar="NEW_RUN")
    compare.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        metavar="PCT",
        help="smallest change that counts, in percent (default 5)",
    )
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        metavar="A",
        help="significance level of the Mann-Whitney U test (default 0.05)",
    )
    compare.add_argument(
        "--force",
        action="store_true",
        help="compare runs whose machine or CPU plan differ (with a warning; default: refuse)",
    )
    compare.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="markdown summary (default NEW_RUN/compare.md); the chart goes beside it",
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.gate import compare  # scipy loads only here

    try:
        return compare.run(
            args.base_run,
            args.new_run,
            threshold_pct=args.threshold,
            alpha=args.alpha,
            force=args.force,
            out=args.out,
        )
    except compare.CompareError as exc:
        return usage_error(PROG, exc)

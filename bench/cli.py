"""`python -m bench COMMAND`: run, report, list, explain, cost, ab, history, compare, hosts.

The parser shell and the dispatch only: each subcommand lives in its own module in
bench/commands/ (its `NAME`, its `add_parser(sub)` and its `run(args, argv) -> int`), and
this module mounts them in the order `--help` lists them. The errors any command may
raise for bad input (a matrix, a CPU plan, a run folder) end here as one usage line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

from bench.commands import ab, compare, cost, explain, history, hosts, listing, report, run
from bench.run.cpus import CpuPlanError
from bench.run.matrix import MatrixError
from bench.store import StoreError
from common.cli import ArgumentParser, usage_error

PROG = "python -m bench"


class Command(Protocol):
    """What bench.cli needs of a command module."""

    NAME: str

    def add_parser(self, sub: Any) -> None: ...

    def run(self, args: argparse.Namespace, argv: list[str]) -> int: ...


# In the order `python -m bench --help` lists them.
COMMANDS: tuple[Command, ...] = (
    run,
    report,
    listing,
    explain,
    cost,
    ab,
    history,
    compare,
    hosts,
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {each.NAME: each for each in COMMANDS}[args.command]
    try:
        return command.run(args, argv if argv is not None else sys.argv[1:])
    except (MatrixError, CpuPlanError, StoreError) as exc:
        return usage_error(PROG, exc)

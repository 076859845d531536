"""`python -m bench history HISTORY.jsonl [--out DIR] [--append AB_FOLDER ...]`: the trend
of every cell over the nights (drawn by bench.gate.history_report).

With --append, the `bench ab` folders' entries are added to the history first
(bench.gate.history; an entry already there is not added twice): a wall-clock
comparison's paired ratios, or a counted one's counts per request (`bench ab --counted`:
NEW's side, bench.gate.counted_history). Then each series' lag-1
autocorrelation once it has 20 nights, with a warning above the one the change-point rule
is sized for (its false alarms may then exceed 5%).

Exit status: 2 with one line for bad input (a missing or unreadable history, an unknown
schema, an --append folder that is not a bench ab result), checked before anything is
written; otherwise 0, findings or not. The nightly gate is `bench ab` (exit 1 on a
regression); the history is advisory: a drift is a reason to look, not to fail a build.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.gate.counted_history_report import analyse_counted
from bench.gate.history import HistoryError, append, counted, entries_from_folder, load
from bench.gate.history_report import analyse, correlation_head, correlations, write
from common.cli import usage_error
from common.invocation import python_m
from common.text import plural

NAME = "history"
PROG = "python -m bench history"
OUT = Path("results") / "history"


def add_parser(sub: Any) -> None:
    history = sub.add_parser(
        NAME, help="trends over the nights, level shifts and drift (advisory: exit 0)"
    )
    history.add_argument("history", type=Path, metavar="HISTORY", help="the history (JSONL)")
    history.add_argument(
        "--out", type=Path, default=OUT, metavar="DIR", help="where index.html and history.md go"
    )
    history.add_argument(
        "--append",
        type=Path,
        nargs="+",
        metavar="AB_FOLDER",
        help="first add these bench ab results' cells to the history (created if missing): "
        "a wall-clock comparison's, or a counted one's (bench ab --counted)",
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    try:  # Otava: an extra; missing, it fails before any work
        from bench.analysis import changepoints  # noqa: F401
    except ImportError as exc:
        install = python_m("pip", "install", "-e", ".[history]")
        return usage_error(PROG, f"needs {exc.name}: {install} (make install does)")

    try:
        new = [entry for folder in args.append or () for entry in entries_from_folder(folder)]
        if args.append:  # refuses a history that does not load, before writing
            added = append(args.history, new)
            print(f"{added} entries added to {args.history} ({len(new) - added} already there)")
        entries = load(args.history)
    except HistoryError as exc:
        return usage_error(PROG, exc)
    found = analyse(entries)
    counted_found = analyse_counted(counted(entries))
    page, summary = write(entries, found, args.out, counted_found)
    findings = len(found) + len(counted_found)
    print(f"{plural(findings, 'finding')} in {len(entries)} entries: {page}, {summary}")
    correlated = correlations(entries)
    if correlated:
        print("\n".join([correlation_head(), *(f"  {line}" for line in correlated)]))
    return 0

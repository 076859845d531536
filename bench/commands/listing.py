"""`python -m bench list`: the profiles, the models and reference servers (available here
or why not), and the report's metrics.

Named `listing`, not `list`: the command module's name is imported into bench.cli, where
`list` would shadow the builtin.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.run.matrix import load_profile, profile_names
from servers import SERVERS

NAME = "list"


def add_parser(sub: Any) -> None:
    sub.add_parser(NAME, help="list profiles, models and the report's metrics")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    print("profiles:")
    for name in profile_names():
        print(f"  {name:<10} {load_profile(name).description}")
    print("models and reference servers:")
    for model in SERVERS.values():
        reason = model.unavailable_reason()
        print(f"  {model.name:<16} {'available' if reason is None else reason}")
    from bench.report.frame import METRICS  # pandas: only for this list

    print("metrics (bench report --metrics; a chart's name works too):")
    for metric in METRICS:
        chart = f", chart {metric.chart}" if metric.chart else ""
        print(f"  {metric.name:<16} {metric.label}{chart}")
    return 0

"""The load options both drivers share: one name, type and default for each.

`python -m clients.loadgen` and `python -m clients.locust.driver` take the same flags for
the same things (the bench passes either driver `--target`, `--duration`, ...), so each
flag is defined once here. Each driver words its help itself (they describe different
machinery: worker processes or locust's, a connection or a locust user), and may give
another default where its behaviour differs (`defaults=`): the locust driver's are
LOCUST_DEFAULTS below, so that the differences stand in one place.

`add_load_options(parser, HELP, "target", "protocol")` adds the options named, in that
order: a driver calls it once per run of shared options, between its own, so that its
--help lists every option where it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.cli import (
    ArgumentParser,
    cpu_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

PROTOCOLS = ("echo", "http")
ARRIVALS = ("uniform", "poisson")  # open loop: evenly spaced, or a Poisson process

# name (the argparse dest) -> the add_argument keywords every driver uses, help aside
SHARED: dict[str, dict[str, Any]] = {
    "target": {"required": True},
    "protocol": {"choices": PROTOCOLS, "default": "echo"},
    "processes": {"type": positive_int, "default": None},
    "duration": {"type": positive_float, "default": 10.0},
    "warmup": {"type": non_negative_float, "default": 1.0},
    # None: the driver's choice by protocol (loadgen: 64 for echo, 0 for http)
    "payload": {"type": non_negative_int, "default": None},
    "rate": {"type": positive_float, "default": None},
    "timeout": {"type": positive_float, "default": 5.0},
    "cpus": {"type": cpu_list, "default": None},
    "allow_remote": {"action": "store_true"},
    # a local server process whose CPU is read at the window's edges (clients.server_cpu)
    "server_pid": {"type": positive_int, "default": None, "metavar": "PID"},
    "quiet": {"action": "store_true"},
}

# Where clients.locust.driver's behaviour differs from the defaults above (its --help
# and its runs stay as they were): a 64-byte payload for http too (POST /echo), and a
# longer timeout.
LOCUST_DEFAULTS: dict[str, Any] = {"payload": 64, "timeout": 10.0}


def flag(name: str) -> str:
    """The command-line flag of a shared option: "allow_remote" -> "--allow-remote"."""
    return "--" + name.replace("_", "-")


def add_load_options(
    parser: ArgumentParser,
    helps: Mapping[str, str],
    *names: str,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add the shared options `names` to `parser`, in that order (none named: all those
    of `helps`, in its order), each with its help text from `helps`; `defaults`
    overrides SHARED's default of some (those not added here are ignored)."""
    names = names or tuple(helps)
    defaults = defaults or {}
    if unknown := sorted(set(names).union(defaults) - set(SHARED)):
        raise ValueError(f"not shared load options: {', '.join(unknown)}")
    for name in names:
        keywords = dict(SHARED[name])
        if name in defaults:
            keywords["default"] = defaults[name]
        parser.add_argument(flag(name), help=helps[name], **keywords)

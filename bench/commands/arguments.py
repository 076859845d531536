"""Options that more than one command declares alike (`bench run`, `bench hosts`): the CPU
plan, the measured window, and where the run folder goes; and the check of the model
names that `bench cost`, `bench explain` and `bench ab --counted` take. Each command keeps
its own help where what the option means differs between them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.store import RESULTS
from common.cli import ArgumentParser, cpu_list, non_negative_float, positive_float, suggest
from servers import MODELS


def add_cpu_arguments(parser: ArgumentParser, server: str, client: str) -> None:
    """--server-cpus and --client-cpus, CPU lists (default None: bench.run.cpus plans
    them); `server`, `client`: their help, each naming what it runs there."""
    parser.add_argument("--server-cpus", type=cpu_list, metavar="LIST", help=server)
    parser.add_argument("--client-cpus", type=cpu_list, metavar="LIST", help=client)


def add_window_arguments(
    parser: ArgumentParser, duration: float, warmup: float, profile: str | None = None
) -> None:
    """--duration and --warmup, in seconds, defaulting to `duration` and `warmup`; with
    `profile`, to None (the profile's), the help naming `profile`'s values instead."""

    def default(value: float) -> str:
        return f"default: the profile's; {profile}: {value:g}" if profile else f"default {value:g}"

    for flag, kind, value, what in (
        ("--duration", positive_float, duration, "measured window per cell, seconds"),
        ("--warmup", non_negative_float, warmup, "seconds of load before the window, not counted"),
    ):
        parser.add_argument(
            flag,
            type=kind,
            default=None if profile else value,
            metavar="S",
            help=f"{what} ({default(value)})",
        )


def add_out_arguments(parser: ArgumentParser) -> None:
    """--out and --run-id: the run folder's parent and its name."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where run folders go (default results/)",
    )
    parser.add_argument("--run-id", help="name of the run folder (default: a timestamp)")


def model_problem(names: Iterable[str]) -> str | None:
    """The first of `names` that is not a model, or not available here, in one line."""
    for name in names:
        if name not in MODELS:
            return f"unknown model {name!r}; choose from {', '.join(MODELS)}" + suggest(
                name, MODELS
            )
        if reason := MODELS[name].unavailable_reason():
            return f"model {name!r} is unavailable here: {reason}"
    return None

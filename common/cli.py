"""Command-line plumbing shared by the launcher, the load generator and the bench:
an ArgumentParser whose usage errors are one line and exit 2, and argument types."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from common.cpus import parse_cpu_list

USAGE_ERROR = 2
Number = TypeVar("Number", int, float)


def usage_error(prog: str, message: object) -> int:
    """Say a usage error in one line on stderr; the exit code to return (2)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return USAGE_ERROR


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.exit(usage_error(self.prog, message))


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _bounded(kind: Callable[[str], Number], *, zero_ok: bool) -> Callable[[str], Number]:
    bound = ">= 0" if zero_ok else "> 0"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}")
        return value

    return parse


positive_float = _bounded(float, zero_ok=False)
non_negative_float = _bounded(float, zero_ok=True)
non_negative_int = _bounded(int, zero_ok=True)


def cpu_list(text: str) -> tuple[int, ...]:
    """'1', '0,2', '2-5' or '0,4-7' as an argument type."""
    try:
        return parse_cpu_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

"""Command-line plumbing shared by the launcher, the load generator and the bench:
an ArgumentParser whose usage errors are one line and exit 2 (with the nearest valid
value for a typo), whose help shows every option's default, and argument types."""

from __future__ import annotations

import argparse
import ast
import difflib
import math
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

from common.cpus import parse_cpu_list

USAGE_ERROR = 2
Number = TypeVar("Number", int, float)


def usage_error(prog: str, message: object) -> int:
    """Say a usage error in one line on stderr; the exit code to return (2)."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return USAGE_ERROR


SIMILAR = 0.6  # difflib's ratio: 'htp' -> 'http' 0.86, 'reprot' -> 'report' 0.83
# argparse's message for a value outside `choices=` (subcommands too), Python 3.11 to 3.13:
#   argument --protocol: invalid choice: 'htp' (choose from 'echo', 'http')
# (newer versions join the choices with str(), not repr(): both are read).
_INVALID_CHOICE = re.compile(r"invalid choice: (?P<value>.+?) \(choose from (?P<choices>.*)\)$")


def suggest(value: str, choices: Iterable[str]) -> str:
    """The nearest choice to a mistyped value as " (did you mean 'epoll'?)", or "" when
    none is close; case is ignored."""
    by_folded: dict[str, str] = {}
    for choice in map(str, choices):
        by_folded.setdefault(choice.casefold(), choice)
    close = difflib.get_close_matches(value.casefold(), by_folded, n=1, cutoff=SIMILAR)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""


def _literal(text: str) -> str:
    """'htp' (a repr, as argparse quotes values) as htp; anything else as it is."""
    if len(text) < 2 or text[0] != text[-1] or text[0] not in "'\"":
        return text
    try:
        return str(ast.literal_eval(text))
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        return text


def _choice_suggestion(message: str) -> str:
    """The suggestion for argparse's invalid-choice message, or "" for any other."""
    found = _INVALID_CHOICE.search(message)
    if found is None or "did you mean" in message or "maybe you meant" in message:
        return ""
    return suggest(_literal(found["value"]), map(_literal, found["choices"].split(", ")))


def meaningful_default(action: argparse.Action) -> bool:
    """Whether help should show the action's default: not for a flag (store_true/false,
    count, help), nor None, False, SUPPRESS or an empty value."""
    default = action.default
    if action.nargs == 0 or default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, str | list | tuple | dict | set) and not default)


def default_text(default: object) -> str:
    """A default as a user would type it: lists space-separated, 5.0 as 5, paths as text."""
    if isinstance(default, list | tuple):
        return " ".join(map(default_text, default))
    if isinstance(default, float) and default.is_integer() and abs(default) < 1e15:
        return str(int(default))
    return str(default)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends " (default: X)" to an option's help when its default is meaningful and the
    help does not already speak of its default (so hand-written help stays as written)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not meaningful_default(action) or "default" in text.lower():
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, "*"):
            return text  # a required positional: its default is never used
        shown = default_text(action.default).replace("%", "%%")  # help is %-formatted
        return f"{text} (default: {shown})"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2, a mistyped
    choice gets the nearest valid one, and help shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.exit(usage_error(self.prog, message + _choice_suggestion(message)))


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

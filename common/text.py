"""Words for counts in messages and pages: plain text, nothing about results."""

from __future__ import annotations


def plural(n: int, word: str) -> str:
    """ "1 cell", "2 cells"."""
    return f"{n} {word}{'' if n == 1 else 's'}"

"""Words for counts in messages and pages: plain text, nothing about results."""

from __future__ import annotations

import re
from html import escape


def plural(n: int, word: str) -> str:
    """ "1 cell", "2 cells"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def code_html(markdown: str) -> str:
    """Escaped HTML of a line of markdown whose only markup is `code`."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))

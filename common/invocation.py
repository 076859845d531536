"""Commands the tools print for the user to run next, written so they run as printed.

A bare `python` is often not the project's environment (`No module named 'psutil'`), so
a printed command names the interpreter that is running now: relative to the working
directory when it lives below it (`.venv/bin/python`), else its absolute path.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def interpreter() -> str:
    """This interpreter's path as a user would type it from the working directory (one
    argument, unquoted)."""
    executable = Path(sys.executable)
    try:
        relative = executable.relative_to(Path.cwd())
    except ValueError:
        return str(executable)
    return str(relative) if relative.parent != Path(".") else f".{os.sep}{relative}"


def python_m(module: str, *args: object) -> str:
    """`INTERPRETER -m MODULE ARGS...`, each part quoted for a POSIX shell."""
    return shlex.join([interpreter(), "-m", module, *map(str, args)])

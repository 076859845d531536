"""The interpreter a server runs on, in facts a result row can carry.

Read in the server process (stdlib only): the launcher calls `facts()` when it prints
its readiness line, so `gil_enabled` is the GIL's state after the model's imports, which
on a free-threaded build can turn it back on (an extension that does not declare
free-threading support does, unless PYTHON_GIL=0 forced it off).
`python -m servers.interpreter` prints the same facts as one JSON object.
"""

from __future__ import annotations

import json
import sys
import sysconfig


def facts() -> dict[str, object]:
    """version ("3.12.1"), tag ("3.12", "3.13t" on a free-threaded build),
    implementation ("cpython"), executable, free_threaded, gil_enabled."""
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    major, minor, micro = sys.version_info[:3]
    # sys._is_gil_enabled() exists from 3.13; before that every build has the GIL
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    return {
        "version": f"{major}.{minor}.{micro}",
        "tag": f"{major}.{minor}{'t' if free_threaded else ''}",
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "free_threaded": free_threaded,
        "gil_enabled": bool(is_gil_enabled()) if callable(is_gil_enabled) else True,
    }


if __name__ == "__main__":
    print(json.dumps(facts()))

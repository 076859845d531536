"""Servers someone else started, as one more model line: `--external NAME=HOST:PORT`.

The bench neither starts nor stops them: it checks before the first cell that each
answers a TCP connect, points the load generator at it, and records what it can (the
name and address; with `,pid=PID`, the CPU and memory of that process and its children,
as for a model). It cannot pin them, so the core view of their CPU (the server CPUs'
busy time) does not apply.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import psutil

from clients.target import is_loopback, join_target, split_target

CONNECT_S = 2.0


@dataclass(frozen=True)
class External:
    name: str
    host: str
    port: int
    pid: int | None = None

    @property
    def target(self) -> str:
        return join_target(self.host, self.port)

    def facts(self) -> dict[str, Any]:
        """What the row records about it."""
        return {"name": self.name, "address": self.target, "pid": self.pid}


def parse_external(spec: str) -> External:
    """`NAME=HOST:PORT[,pid=PID]`; ValueError with one line."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--external {spec!r} is not NAME=HOST:PORT[,pid=PID]")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"--external name {name!r}: use letters, digits, - and _")
    address, *options = rest.split(",")
    host, port = split_target(address)
    pid = None
    for option in options:
        key, _, value = option.partition("=")
        if key != "pid" or not value.isdigit():
            raise ValueError(f"--external {spec!r}: unknown option {option!r} (only pid=PID)")
        pid = int(value)
    return External(name, host, port, pid)


def check_external(external: External, allow_remote: bool) -> str | None:
    """Why it cannot be used, or None: a remote address without the flag, a missing
    process, or an address that does not accept a connection."""
    if not allow_remote and not is_loopback(external.host):
        return (
            f"external {external.name} at {external.target} is not a loopback address "
            "(--allow-remote to load it anyway)"
        )
    if external.pid is not None and not psutil.pid_exists(external.pid):
        return f"external {external.name}: no process {external.pid}"
    try:
        socket.create_connection((external.host, external.port), timeout=CONNECT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"external {external.name} at {external.target} does not answer: {reason}"
    return None


class ExternalServer:
    """Stands in for bench.run.server_process.ServerProcess in a cell: nothing to start or
    stop; `exit_code()` says whether its process (if known) still runs."""

    def __init__(self, external: External) -> None:
        self.external = external
        self.ready: dict[str, Any] = {}  # no launcher, no ready line
        self.stopped: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return self.external.pid

    def exit_code(self) -> int | None:
        """None while its process (if known) runs; -1 once it has gone."""
        return None if self.pid is None or psutil.pid_exists(self.pid) else -1

    @property
    def stderr(self) -> str:
        return f"the external server's process {self.pid} has gone"

    def stop(self, timeout: float = 0.0) -> int:
        return 0  # not ours to stop

    def log_text(self) -> str:
        return ""

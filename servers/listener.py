"""The listening socket, set up the same way for every model and every process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


def system_backlog() -> int:
    """The kernel caps listen() at net.core.somaxconn; ask for all of it."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return socket.SOMAXCONN


def open_listener(
    family: int, address: Any, backlog: int, reuseport: bool = False
) -> socket.socket:
    """A bound, listening TCP socket: SO_REUSEADDR, TCP_NODELAY (inherited by accepted
    sockets), and SO_REUSEPORT for models whose processes each bind the port."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(address)
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener


def make_listener(host: str, port: int, backlog: int, reuseport: bool = False) -> socket.socket:
    """`open_listener` on the first address `host` resolves to."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return open_listener(family, address, backlog, reuseport)

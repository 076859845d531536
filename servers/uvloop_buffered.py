"""uvloop-buffered: asyncio-buffered on uvloop's loop (uvloop supports BufferedProtocol)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvloop

from servers import asyncio_server
from servers.conn import Counters
from servers.protocol import ServerProtocol


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int = socket.SOMAXCONN,
) -> None:
    asyncio_server.serve(
        listener,
        make_protocol,
        counters,
        backlog,
        loop_factory=uvloop.new_event_loop,
        adapter=asyncio_server.BufferedAdapter,
    )

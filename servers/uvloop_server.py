"""uvloop: the asyncio model, unchanged, on uvloop's loop (libuv, written in Cython).

The diff against `asyncio` is the loop alone: same protocol adapter, same backpressure,
same stop. Whatever the two models' figures differ by is the loop's cost.
"""

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
        listener, make_protocol, counters, backlog, loop_factory=uvloop.new_event_loop
    )

"""asyncio-buffered: the asyncio model reading into a buffer of its own.

The diff against `asyncio` is the protocol class alone (asyncio_server.BufferedAdapter,
an asyncio.BufferedProtocol): what the two models' figures differ by is the cost of the
loop's per-read allocation, which docs/models.md measures.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

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
        listener, make_protocol, counters, backlog, adapter=asyncio_server.BufferedAdapter
    )

"""blocking: the classic iterative server. One connection at a time, start to finish.

Every other client waits in the kernel's accept queue until the current one leaves;
a single idle client stops the whole server. That is the lesson, not a bug.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from servers.conn import Counters, accept, prepare, serve_blocking
from servers.protocol import ServerProtocol


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(True)
    while True:
        sock = accept(listener, counters)
        if sock is not None:
            serve_blocking(prepare(sock, blocking=True), make_protocol(), counters)

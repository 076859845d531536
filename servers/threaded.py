"""threaded: one OS thread per connection, each running the blocking loop.

Simple and concurrent, but every connection costs a thread's stack and scheduler
time, and the GIL lets one thread run Python at a time: it degrades as they multiply.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from common.process import stop_signals_blocked
from servers.conn import Counters, accept, prepare, serve_blocking
from servers.protocol import ServerProtocol

STACK_SIZE = 512 * 1024  # the default 8 MiB of address space per thread adds up at 10k


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(True)
    threading.stack_size(STACK_SIZE)
    handlers: dict[socket.socket, threading.Thread] = {}

    def handle(sock: socket.socket, protocol: ServerProtocol) -> None:
        try:
            serve_blocking(sock, protocol, counters)
        finally:
            handlers.pop(sock, None)

    try:
        while True:
            sock = accept(listener, counters)
            if sock is None:
                continue
            thread = threading.Thread(
                target=handle, args=(prepare(sock, blocking=True), make_protocol()), daemon=True
            )
            handlers[sock] = thread
            try:
                with stop_signals_blocked():  # SIGTERM must reach the accepting thread
                    thread.start()
            except RuntimeError:  # the OS refused another thread
                handlers.pop(sock, None)
                counters.add("refused")
                sock.close()
    finally:
        # shutdown() wakes each handler's blocking recv; the handler closes its own fd.
        for sock in list(handlers):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0  # the launcher must exit within 2 s
        for thread in list(handlers.values()):
            if thread.ident is not None:  # a stop can land between Thread() and start()
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

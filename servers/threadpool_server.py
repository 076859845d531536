"""threadpool: a fixed pool of threads, each serving one connection at a time.

The accept loop hands every connection to a bounded ThreadPoolExecutor running the
blocking loop. Thread costs stay bounded, but so does concurrency: with more open
connections than threads, the extra ones are accepted and then wait in the executor's
queue, unserved, until a thread frees up, i.e. until an earlier client leaves. Idle
keep-alive clients are enough to starve the rest: that is the lesson of this model.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from common.process import stop_signals_blocked
from servers.conn import Counters, accept, prepare, serve_blocking
from servers.protocol import ServerProtocol

# ThreadPoolExecutor's own ceiling (min(32, cpus + 4)), fixed so that a figure does not
# depend on the machine's size; --workers sets another.
DEFAULT_WORKERS = 32
STOP_TIMEOUT = 1.0  # for running handlers to notice their shut-down socket


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    workers: int | None = None,
) -> None:
    listener.setblocking(True)
    pool = ThreadPoolExecutor(max_workers=workers or DEFAULT_WORKERS, thread_name_prefix="handler")
    state = threading.Condition()  # guards both sets: a socket moves queued -> running
    queued: set[socket.socket] = set()
    running: set[socket.socket] = set()

    def handle(sock: socket.socket, protocol: ServerProtocol) -> None:
        with state:
            if sock not in queued:  # closed by the shutdown while it waited
                return
            queued.remove(sock)
            running.add(sock)
        try:
            serve_blocking(sock, protocol, counters)
        finally:
            with state:
                running.discard(sock)
                state.notify_all()

    try:
        while True:
            sock = accept(listener, counters)
            if sock is None:
                continue
            with state:
                queued.add(prepare(sock, blocking=True))
            with stop_signals_blocked():  # a new pool thread: SIGTERM stays the acceptor's
                pool.submit(handle, sock, make_protocol())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        with state:
            for sock in queued:  # never served: close them here
                sock.close()
                counters.add("closed")
            queued.clear()
            for sock in running:  # wakes the handler's recv; the handler closes its fd
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            state.wait_for(lambda: not running, timeout=STOP_TIMEOUT)

"""Servers whose accept loop is ours, run out of file descriptors: each connection past
the limit is accepted and closed at once (one `refused` per connection, from the
reserve descriptor), the rest are served, and the server recovers. Before, the event
loops spun on the readable listener (millions of `refused`) and the thread models died
on EMFILE. asyncio, uvloop and gevent accept inside their own loops: not covered."""

from __future__ import annotations

import socket
import time

import pytest

from bench.run.server_process import ServerProcess
from tests.helpers import connect, frame, prefork_processes, recv_exactly

pytestmark = pytest.mark.real  # real servers and load: not in `make test-fast`

FD_LIMIT = 64  # per process
CONNECTIONS = 100  # per process: well past what FD_LIMIT leaves for connections
PREFORK_WORKERS = 2
OUR_ACCEPT_LOOPS = ["threaded", "threadpool", "select", "poll", "epoll", "selectors", "prefork"]


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), without reading."""
    sock.settimeout(0)  # with a timeout, Python would wait for readability first
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.settimeout(5)


def _echo_or_closed(sock: socket.socket) -> bool:
    """True when the connection answered an echo, False when the server had closed it."""
    message = frame(b"hello")
    try:
        sock.sendall(message)
        return recv_exactly(sock, len(message)) == message
    except (ConnectionError, BrokenPipeError):
        return False


@pytest.mark.parametrize("model", OUR_ACCEPT_LOOPS)
def test_connections_past_the_fd_limit_are_closed_once_each(model: str) -> None:
    socks: list[socket.socket] = []
    workers = PREFORK_WORKERS if model == "prefork" else 1
    extra = ("--workers", str(workers)) if model == "prefork" else ()
    with ServerProcess(model, "echo", extra_args=extra, fd_limit=FD_LIMIT) as server:
        if model == "prefork":
            # Each worker has FD_LIMIT descriptors of its own and the kernel spreads the
            # connections over those listening: wait for all, and send past all of them.
            # (Connecting at once used to reach the parent alone, unless a child was quick.)
            prefork_processes(server, workers)
        try:
            socks = [connect(server.port, timeout=5) for _ in range(CONNECTIONS * workers)]
            # Until the server has run out and shed one: a thread model accepts slowly
            # enough that echoing and closing at once would free descriptors in time.
            deadline = time.monotonic() + 10
            while not any(_closed_by_server(s) for s in socks) and time.monotonic() < deadline:
                time.sleep(0.01)
            served = shed = 0
            for sock in socks:  # one at a time, closed after: the pool's threads come free
                if _echo_or_closed(sock):
                    served += 1
                else:
                    shed += 1
                sock.close()
            # Served again once the handlers have closed their ends (threads do it later).
            deadline, recovered = time.monotonic() + 10, False
            while not recovered and time.monotonic() < deadline:
                with connect(server.port, timeout=5) as again:
                    recovered = _echo_or_closed(again)
                if not recovered:
                    shed += 1
                    time.sleep(0.05)
            assert recovered
        finally:
            for sock in socks:
                sock.close()
        assert server.stop() == 0, server.stderr
    assert served > 0 and shed > 0
    assert server.stopped is not None
    assert server.stopped["refused"] == shed  # once per connection, not per failed accept()
    assert server.stopped["accepted"] == served + 1

"""select: the interest set is rebuilt and copied into the kernel on every wait.

Non-blocking; the same loop as poll and epoll. select() cannot watch a descriptor at
or above FD_SETSIZE (1024 on Linux), so a connection that lands on one is closed at
accept and counted as refused while the rest keep being served.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers.conn import Connection, Counters, Timers, accept_ready, close_all
from servers.protocol import ServerProtocol

FD_SETSIZE = 1024  # glibc's compile-time limit; CPython raises ValueError beyond it


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(False)
    listening = listener.fileno()
    conns: dict[int, Connection] = {}
    timers = Timers()

    def settle(conn: Connection) -> None:
        if conn.done:  # nothing registered: the next wait simply leaves it out
            del conns[conn.fd]
            conn.close()

    try:
        while True:
            readers = [listening] + [fd for fd, c in conns.items() if c.wants_read]
            writers = [fd for fd, c in conns.items() if c.wants_write]
            ready_r, ready_w, _ = select.select(readers, writers, [], timers.timeout())
            readable, writable = set(ready_r), set(ready_w)
            for fd in readable | writable:
                if fd == listening:
                    for sock in accept_ready(listener, counters):
                        if sock.fileno() >= FD_SETSIZE:
                            counters.add("refused")
                            sock.close()
                            continue
                        conn = Connection(sock, make_protocol(), counters, timers)
                        conns[conn.fd] = conn
                    continue
                conn = conns[fd]
                conn.step(fd in readable, fd in writable)
                settle(conn)
            for conn in timers.due():
                settle(conn)
    finally:
        close_all(conns)

"""epoll: the kernel keeps the interest set; each wait returns only the ready fds.

Level-triggered and non-blocking. A connection is watched for EPOLLOUT only while it
has output pending, and for EPOLLIN only while its backlog is under the limit.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers.conn import Connection, Counters, Timers, accept_ready, close_all
from servers.protocol import ServerProtocol

READ, WRITE = select.EPOLLIN, select.EPOLLOUT
TROUBLE = select.EPOLLERR | select.EPOLLHUP  # reported as readable


def interest(conn: Connection) -> int:
    return (READ if conn.wants_read else 0) | (WRITE if conn.wants_write else 0)


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(False)
    conns: dict[int, Connection] = {}
    watched: dict[int, int] = {}  # fd -> the events the kernel watches for it now
    timers = Timers()
    poller = select.epoll()
    poller.register(listener.fileno(), READ)

    def settle(conn: Connection) -> None:
        if conn.done:
            poller.unregister(conn.fd)
            del conns[conn.fd], watched[conn.fd]
            conn.close()
        elif (wanted := interest(conn)) != watched[conn.fd]:
            poller.modify(conn.fd, wanted)
            watched[conn.fd] = wanted

    try:
        while True:
            for fd, events in poller.poll(timers.timeout()):
                if fd == listener.fileno():
                    for sock in accept_ready(listener, counters):
                        conn = Connection(sock, make_protocol(), counters, timers)
                        conns[conn.fd] = conn
                        poller.register(conn.fd, READ)
                        watched[conn.fd] = READ
                    continue
                conn = conns[fd]
                conn.step(readable=bool(events & (READ | TROUBLE)), writable=bool(events & WRITE))
                settle(conn)
            for conn in timers.due():
                settle(conn)
    finally:
        poller.close()
        close_all(conns)

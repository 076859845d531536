"""poll: no FD_SETSIZE limit, but the whole interest set crosses into the kernel per wait.

Non-blocking; the same loop as epoll at O(connections) per wait. A connection is watched
for POLLOUT only while it has output pending, and for POLLIN only while its backlog is
under the limit.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers.conn import Connection, Counters, Timers, accept_ready, close_all
from servers.protocol import ServerProtocol

READ, WRITE = select.POLLIN, select.POLLOUT
TROUBLE = select.POLLERR | select.POLLHUP | select.POLLNVAL  # reported as readable


def interest(conn: Connection) -> int:
    return (READ if conn.wants_read else 0) | (WRITE if conn.wants_write else 0)


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(False)
    conns: dict[int, Connection] = {}
    watched: dict[int, int] = {}  # fd -> the events the kernel watches for it now
    timers = Timers()
    poller = select.poll()
    poller.register(listener.fileno(), READ)

    def settle(conn: Connection) -> None:
        if conn.done:
            poller.unregister(conn.fd)
            del conns[conn.fd], watched[conn.fd]
            conn.close()
        elif (wanted := interest(conn)) != watched[conn.fd]:
            poller.modify(conn.fd, wanted)
            watched[conn.fd] = wanted

    try:  # a poll object holds no fd: nothing to close but the connections
        while True:
            timeout = timers.timeout()  # poll() counts in milliseconds
            for fd, events in poller.poll(None if timeout is None else timeout * 1000):
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
        close_all(conns)

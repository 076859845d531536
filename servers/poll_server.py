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
READABLE = READ | TROUBLE


EVENTS = (0, READ, WRITE, READ | WRITE)  # indexed by Connection.wanted()'s mask


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(False)
    listening = listener.fileno()
    conns: dict[int, Connection] = {}
    watched: dict[int, int] = {}  # fd -> the events the kernel watches for it now
    timers = Timers()
    poller = select.poll()
    poller.register(listening, READ)

    def settle(conn: Connection) -> None:
        if (mask := conn.wanted()) is None:
            poller.unregister(conn.fd)
            del conns[conn.fd], watched[conn.fd]
            conn.close()
        elif (wanted := EVENTS[mask]) != watched[conn.fd]:
            poller.modify(conn.fd, wanted)
            watched[conn.fd] = wanted

    try:  # a poll object holds no fd: nothing to close but the connections
        while True:
            timeout = timers.timeout()  # poll() counts in milliseconds
            for fd, events in poller.poll(None if timeout is None else timeout * 1000):
                if fd == listening:
                    for sock in accept_ready(listener, counters):
                        conn = Connection(sock, make_protocol(), counters, timers)
                        conns[conn.fd] = conn
                        poller.register(conn.fd, READ)
                        watched[conn.fd] = READ
                    continue
                conn = conns[fd]
                conn.step(events & READABLE, events & WRITE)
                settle(conn)
            for conn in timers.due():
                settle(conn)
    finally:
        close_all(conns)

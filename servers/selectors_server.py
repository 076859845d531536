"""selectors: the standard library's portable wrapper; DefaultSelector is epoll on Linux.

The same loop as epoll, one abstraction up: the selector keeps each fd's events and
hands back the Connection stored beside it, at the cost of a key object per event.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable

from servers.conn import Connection, Counters, Timers, accept_ready, close_all
from servers.protocol import ServerProtocol

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


EVENTS = (0, READ, WRITE, READ | WRITE)  # indexed by Connection.wanted()'s mask


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    listener.setblocking(False)
    conns: dict[int, Connection] = {}
    timers = Timers()
    poller = selectors.DefaultSelector()
    poller.register(listener, READ)

    def settle(conn: Connection) -> None:
        if (mask := conn.wanted()) is None:
            poller.unregister(conn.fd)
            del conns[conn.fd]
            conn.close()
        elif (wanted := EVENTS[mask]) != poller.get_key(conn.fd).events:
            poller.modify(conn.fd, wanted, conn)

    try:
        while True:
            for key, events in poller.select(timers.timeout()):
                if key.fileobj is listener:
                    for sock in accept_ready(listener, counters):
                        conn = Connection(sock, make_protocol(), counters, timers)
                        conns[conn.fd] = conn
                        poller.register(conn.fd, READ, conn)
                    continue
                conn = key.data
                conn.step(events & READ, events & WRITE)
                settle(conn)
            for conn in timers.due():
                settle(conn)
    finally:
        poller.close()
        close_all(conns)

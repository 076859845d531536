"""epoll: the kernel keeps the interest set; each wait returns only the ready fds.

Level-triggered and non-blocking. A connection is watched for EPOLLOUT only while it
has output pending, and for EPOLLIN only while its backlog is under the limit.
`watches` lets a caller serve descriptors of its own in the same loop (prefork's parent
hears its children die there).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TypeAlias

from servers.conn import Connection, Counters, Timers, accept_ready, close_all
from servers.protocol import ServerProtocol

READ, WRITE = select.EPOLLIN, select.EPOLLOUT
TROUBLE = select.EPOLLERR | select.EPOLLHUP  # reported as readable
READABLE = READ | TROUBLE
# fd -> called once when fd turns readable (after it left the loop); returns new watches
Watches: TypeAlias = "dict[int, Callable[[], Watches]]"


EVENTS = (0, READ, WRITE, READ | WRITE)  # indexed by Connection.wanted()'s mask


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    watches: Watches | None = None,
) -> None:
    listener.setblocking(False)
    listening = listener.fileno()
    watches = {} if watches is None else watches
    conns: dict[int, Connection] = {}
    watched: dict[int, int] = {}  # fd -> the events the kernel watches for it now
    timers = Timers()
    poller = select.epoll()
    poller.register(listening, READ)
    for fd in watches:
        poller.register(fd, READ)

    def settle(conn: Connection) -> None:
        if (mask := conn.wanted()) is None:
            poller.unregister(conn.fd)
            del conns[conn.fd], watched[conn.fd]
            conn.close()
        elif (wanted := EVENTS[mask]) != watched[conn.fd]:
            poller.modify(conn.fd, wanted)
            watched[conn.fd] = wanted

    try:
        while True:
            for fd, events in poller.poll(timers.timeout()):
                if fd == listening:
                    for sock in accept_ready(listener, counters):
                        conn = Connection(sock, make_protocol(), counters, timers)
                        conns[conn.fd] = conn
                        poller.register(conn.fd, READ)
                        watched[conn.fd] = READ
                    continue
                try:
                    conn = conns[fd]
                except KeyError:  # a caller's watch: the connections' path pays no lookup
                    poller.unregister(fd)
                    for new, call in watches.pop(fd)().items():
                        watches[new] = call
                        poller.register(new, READ)
                    continue
                conn.step(events & READABLE, events & WRITE)
                settle(conn)
            for conn in timers.due():
                settle(conn)
    finally:
        poller.close()
        close_all(conns)

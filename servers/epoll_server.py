"""epoll: the kernel keeps the interest set; each wait returns only the ready fds.

Level-triggered and non-blocking. A connection is watched for EPOLLOUT only while it
has output pending, and for EPOLLIN only while its backlog is under the limit.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from servers.conn import Connection, Counters, accept_ready, close_all
from servers.protocol import ServerProtocol

READ, WRITE = select.EPOLLIN, select.EPOLLOUT
TROUBLE = select.EPOLLERR | select.EPOLLHUP  # reported as readable


def interest(conn: Connection) -> int:
    return (READ if conn.wants_read else 0) | (WRITE if conn.wants_write else 0)


def serve(listener: socket.socket, make_protocol: Callable[[], ServerProtocol],
          counters: Counters) -> None:
    listener.setblocking(False)
    conns: dict[int, Connection] = {}
    watched: dict[int, int] = {}  # fd -> the events the kernel watches for it now
    poller = select.epoll()
    poller.register(listener.fileno(), READ)
    try:
        while True:
            for fd, events in poller.poll():
                if fd == listener.fileno():
                    for sock in accept_ready(listener, counters):
                        conn = conns[sock.fileno()] = Connection(sock, make_protocol(), counters)
                        poller.register(conn.fd, READ)
                        watched[conn.fd] = READ
                    continue
                conn = conns[fd]
                conn.step(readable=bool(events & (READ | TROUBLE)), writable=bool(events & WRITE))
                if conn.done:
                    poller.unregister(fd)
                    del conns[fd], watched[fd]
                    conn.close()
                elif (wanted := interest(conn)) != watched[fd]:
                    poller.modify(fd, wanted)
                    watched[fd] = wanted
    finally:
        poller.close()
        close_all(conns)

"""gevent: a greenlet per connection running the blocking loop; one hub multiplexes.

It reads like `threaded` and runs like an event loop: gevent's StreamServer accepts on
our listener and spawns a greenlet per connection running servers.conn.serve_blocking
on a gevent socket, whose blocking recv/sendall switch to the hub (libev) instead of
blocking the process. Backpressure is that blocking sendall, as in the thread models.

Only this server process patches, and only `time`, so that the sleep of `wait:` work
yields to the hub: StreamServer's sockets are gevent's already, the Counters lock is
never held across a switch, and patching everything this late (after the launcher
imported socket, signal and threading) is what gevent warns against. No other module
imports gevent.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import gevent
from gevent import monkey
from gevent.event import Event
from gevent.pool import Group
from gevent.server import StreamServer

from common.process import STOP_SIGNALS
from servers.conn import Counters, prepare, serve_blocking
from servers.protocol import ServerProtocol

STOP_TIMEOUT = 1.0  # handlers still running after this are killed: the launcher has 2 s


def serve(
    listener: socket.socket, make_protocol: Callable[[], ServerProtocol], counters: Counters
) -> None:
    monkey.patch_time()
    live: set[socket.socket] = set()

    def handle(sock: socket.socket, _address: object) -> None:
        counters.add("accepted")
        live.add(sock)
        try:
            serve_blocking(prepare(sock, blocking=True), make_protocol(), counters)
        finally:
            live.discard(sock)

    listener.setblocking(False)  # StreamServer accepts until EWOULDBLOCK, in the hub
    handlers = Group()
    server = StreamServer(listener, handle, spawn=handlers.spawn)  # unbounded, tracked
    # The launcher's Python handler would raise Shutdown inside the hub greenlet (gevent
    # prints it as a hub error); a libev signal watcher just wakes this greenlet.
    stop = Event()
    _watchers = [gevent.signal_handler(signum, stop.set) for signum in STOP_SIGNALS]
    server.start()
    try:
        stop.wait()
        for signum in STOP_SIGNALS:  # a second signal must not interrupt the cleanup
            signal.signal(signum, signal.SIG_IGN)
    finally:
        server.close()  # closes the listener
        for sock in list(live):  # wakes each handler's recv; the handler closes its fd
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        handlers.join(timeout=STOP_TIMEOUT)
        handlers.kill(block=True, timeout=0.2)  # GreenletExit runs serve_blocking's finally

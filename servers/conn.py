"""One connection's I/O around a sans-IO protocol object, shared by every model.

`Connection` is the non-blocking buffer the multiplexing models (select, poll, epoll,
selectors) drive from their event loops; `serve_blocking` is the read-answer loop the
blocking and threaded models run on a blocking socket. `Counters` is what the launcher
prints when the server stops.
"""

from __future__ import annotations

import errno
import heapq
import os
import socket
import threading
import time
from dataclasses import dataclass, field, fields

from servers.protocol import ServerProtocol

# Under glibc's malloc threshold (128 KiB at start): a 256 KiB recv() buffer is mmapped
# and unmapped on every call until the dynamic threshold rises, which tripled the kernel
# time per request of a fresh server (34k against 75k req/s, epoll, http, 100 connections).
RECV_SIZE = 64 * 1024
# Stop reading from a connection whose unsent output passes this, until it drains:
# a client that sends but never reads must not make the server buffer without bound.
OUTPUT_LIMIT = 1024 * 1024
WANT_READ, WANT_WRITE = 1, 2  # Connection.wanted()'s mask
ACCEPT_BATCH = 64  # accepts per readiness event, so new arrivals can't starve the rest


@dataclass
class Counters:
    accepted: int = 0
    refused: int = 0  # accepted by the kernel, closed at once by the model
    protocol_errors: int = 0  # closed because the peer broke the protocol
    closed: int = 0
    workers_restarted: int = 0  # worker processes that died and were replaced (prefork)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:  # threads of the threaded models update these too
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}


def prepare(sock: socket.socket, blocking: bool) -> socket.socket:
    """Every model gets the same per-connection socket options."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(blocking)
    return sock


_reserve: int | None = None  # a descriptor kept free for shedding (see accept)


def reserve_descriptor() -> None:
    """Set a descriptor aside at start-up, for accept() to free when the rest run out."""
    global _reserve
    if _reserve is None:
        _reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


class Stopping(BaseException):
    """accept() on a listener the launcher shut down to stop the server; BaseException,
    like the launcher's Shutdown, so that no model's `except Exception` swallows it."""


def accept(listener: socket.socket, counters: Counters) -> socket.socket | None:
    """One accept() for every model of ours: the socket, or None when the connection
    was shed or aborted; BlockingIOError passes through (nothing is waiting).

    Out of descriptors (EMFILE, ENFILE), the connection stays queued and the listener
    stays readable: an event loop would spin on it and a blocking loop fail. Like
    libuv, we free the reserve descriptor, accept the connection, close it at once
    (counted as refused: its client sees the connection closed) and take it back.
    """
    global _reserve
    try:
        sock, _addr = listener.accept()
    except (BlockingIOError, InterruptedError):
        raise
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EBADF):
            raise Stopping from None  # the launcher shut the listener down
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return None  # ECONNABORTED and the like: that connection is gone already
        if _reserve is None:  # nothing to free: let descriptors close before trying again
            time.sleep(0.001)
            return None
        os.close(_reserve)
        _reserve = None
        try:
            listener.accept()[0].close()
            counters.add("refused")
        except OSError:
            pass
        finally:
            try:
                _reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                _reserve = None
        return None
    counters.add("accepted")
    return sock


def accept_ready(listener: socket.socket, counters: Counters) -> list[socket.socket]:
    """Accept what is waiting on a non-blocking listener, up to ACCEPT_BATCH."""
    accepted = []
    for _ in range(ACCEPT_BATCH):
        try:
            sock = accept(listener, counters)
        except (BlockingIOError, InterruptedError):
            break
        if sock is not None:
            accepted.append(prepare(sock, blocking=False))
    return accepted


class Timers:
    """Replies held back by `wait:` work (servers.work), released when due.

    The event loops' stand-in for a thread's sleep: a heap of deadlines, whose
    nearest one becomes the loop's wait timeout.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Connection, bytes]] = []
        self._seq = 0  # equal deadlines leave in the order they came

    def hold(self, conn: Connection, reply: bytes, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, conn, reply))

    def timeout(self) -> float | None:
        """Seconds until the next deadline, or None to wait for I/O alone."""
        return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None

    def due(self) -> list[Connection]:
        """Send the replies whose time has come; return their connections."""
        if not self._heap:  # every loop iteration asks: without `wait:` work, no clock read
            return []
        released = []
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, conn, reply = heapq.heappop(self._heap)
            if not conn.closed:
                conn.release(reply)
                released.append(conn)
        return released


# The event loops' read buffer, reused by every read: a recv(RECV_SIZE) would allocate
# RECV_SIZE bytes per read and shrink them. One per process is enough, as only the loop's
# thread reads. The blocking handlers keep recv(): a buffer per thread would cost
# RECV_SIZE per connection in the thread models (640 MiB at 10,000 connections).
_LOOP_BUFFER = memoryview(bytearray(RECV_SIZE))


class Connection:
    """A non-blocking socket, its protocol, and the output it still owes the peer."""

    __slots__ = (
        "sock",
        "fd",
        "protocol",
        "out",
        "eof",
        "broken",
        "closed",
        "counters",
        "timers",
        "held",
        "held_until",
    )

    def __init__(
        self, sock: socket.socket, protocol: ServerProtocol, counters: Counters, timers: Timers
    ):
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol = protocol
        self.out = bytearray()
        self.eof = False
        self.broken = False
        self.closed = False
        self.counters = counters
        self.timers = timers
        self.held = 0  # bytes of replies waiting in the timers
        self.held_until = 0.0  # the last held reply's deadline: later replies queue behind

    @property
    def wants_read(self) -> bool:
        return not (self.eof or self.protocol.closing) and len(self.out) + self.held < OUTPUT_LIMIT

    @property
    def wants_write(self) -> bool:
        return bool(self.out)

    @property
    def done(self) -> bool:
        return self.broken or (
            not self.out and not self.held and (self.eof or self.protocol.closing)
        )

    def wanted(self) -> int | None:
        """What to watch next, as a WANT_READ | WANT_WRITE mask; None: done. One call
        where the loops' settle() used three properties: it runs once per request."""
        out, held = self.out, self.held
        if self.broken:
            return None
        ending = self.eof or self.protocol.closing
        if ending and not out and not held:
            return None
        mask = WANT_WRITE if out else 0
        if not ending and len(out) + held < OUTPUT_LIMIT:
            mask |= WANT_READ
        return mask

    def step(self, readable: int, writable: int) -> None:
        """Handle one readiness report (truthy: ready); errors and hang-ups are reported
        as readable."""
        if readable:
            self.on_readable()
        if writable and not self.broken:
            self.on_writable()

    def on_readable(self) -> None:
        try:
            received = self.sock.recv_into(_LOOP_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.broken = True
            return
        if received:
            # A copy of what arrived: the protocol may return it as the reply, and the
            # reply may wait in self.out while the buffer takes the next read.
            reply = self.protocol.feed(bytes(_LOOP_BUFFER[:received]))
        else:
            self.eof = True
            reply = self.protocol.eof()
        if reply and (self.protocol.hold_s or self.held):
            self.held += len(reply)
            self.held_until = max(time.monotonic() + self.protocol.hold_s, self.held_until)
            self.timers.hold(self, reply, self.held_until)
        elif reply:
            self.send(reply)

    def release(self, reply: bytes) -> None:
        self.held -= len(reply)
        if reply:
            self.send(reply)

    def on_writable(self) -> None:
        self.send(b"")

    def send(self, reply: bytes) -> None:
        """Send now what the socket takes; keep the rest for the next writable event."""
        data: bytes | bytearray
        if not self.out:
            data = reply  # fast path: nothing queued, no copy into the buffer
        else:
            self.out += reply
            data = self.out
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.broken = True
            return
        if data is not reply:
            del self.out[:sent]
        elif sent < len(reply):
            self.out += memoryview(reply)[sent:]

    def close(self) -> None:
        self.closed = True
        if self.protocol.error:
            self.counters.add("protocol_errors")
        self.counters.add("closed")
        self.sock.close()


def close_all(conns: dict[int, Connection]) -> None:
    for conn in conns.values():
        conn.close()
    conns.clear()


def serve_blocking(sock: socket.socket, protocol: ServerProtocol, counters: Counters) -> None:
    """Read, answer, repeat on a blocking socket until the peer or the protocol is done.

    A blocking sendall is the backpressure here: a client that does not read stalls
    its own handler, never the server's memory.
    """
    try:
        while not protocol.closing:
            data = sock.recv(RECV_SIZE)
            reply = protocol.feed(data) if data else protocol.eof()
            if protocol.hold_s:  # `wait:` work: a thread simply sleeps
                time.sleep(protocol.hold_s)
            if reply:
                sock.sendall(reply)
            if not data:
                break
        if protocol.error:
            counters.add("protocol_errors")
    except OSError:
        pass  # reset by the peer, or closed by the launcher at shutdown
    finally:
        counters.add("closed")
        sock.close()

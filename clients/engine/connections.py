"""A worker's connections: per-descriptor tables, connecting, sending, failing, closing.

State lives in lists indexed by file descriptor (grown on demand) rather than in an
object per connection: the closed loop (clients.engine.loops) binds them to locals, which is
cheaper per request than attribute lookups. A connection's *slot* is its place in the
worker's share; in per-request mode one slot goes through many descriptors.

How an http reply is verified (`--verify`): "exact" compares bytes with sockbench's own
reply, as the hot path does; "auto" does too, but where the bytes differ it parses the
reply (clients.http_reply) and accepts the expected status and body, then remembers a
self-delimited, small reply's bytes as that connection's exact expectation (`_learn`),
so that a foreign server's replies take the `==` path too until a header changes;
"parse" parses every reply. Echo replies are always compared byte for byte.

A reply that fails its check is classified only then (`_wrong`, clients.errors): bytes
that cannot be a reply of the protocol spoken are a `protocol` error, and the first
such bytes are kept (`sample`) for the load generator's diagnosis; a well-formed reply
with the wrong content is a `mismatch`.
"""

from __future__ import annotations

import errno
import heapq
import os
import select
import socket
import time
from array import array
from collections import deque
from typing import Any

from clients import wire
from clients.engine.plan import WorkerPlan
from clients.errors import ERROR_KINDS, error_kind, reply_error
from clients.http_reply import Expectation, ParseError, Reply, ReplyParser

CONNECT_WINDOW = 64  # connects in flight per worker
POLL_S = 0.05  # longest sleep in epoll, so phase changes are noticed when nothing happens
SECOND_NS = 1_000_000_000
RECV_CAP = 256 * 1024
PARSE_READ = 4096  # read size once replies are parsed: other servers send longer heads
RETRY_NS = 10_000_000  # pause before reconnecting after a failure (scheduled modes)
SAMPLE = 64  # bytes kept of the first reply that was no reply of the protocol
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2
IN, OUT = select.EPOLLIN, select.EPOLLOUT


class Connections:
    """One epoll set over a worker's connections, with what each still owes or expects."""

    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.ep = select.epoll()
        self.timeout_ns = int(plan.timeout * SECOND_NS)
        # open loop: between two requests of one connection slot (0: closed loop)
        self.interval_ns = int(plan.total * SECOND_NS / plan.rate) if plan.rate else 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.sample: bytes | None = None  # the start of the first `protocol` error's bytes
        self.connect_lat = array("q")  # connect latencies, ns
        http = plan.protocol == "http"
        self.verify = plan.verify if http else "exact"
        self.parsing = self.verify != "exact"  # replies may go through the parser
        body = plan.expect_body
        if body is None and self.parsing:
            body = wire.http_body(plan.payload)
        self.expect = Expectation(plan.expect_status, body or b"")
        # no exact bytes to compare with where every reply is parsed, or where the
        # expected status is not sockbench's 200 (learned from the first reply, if auto)
        unknown = http and (plan.expect_status != 200 or self.verify == "parse")
        n_variants = wire.variants(plan.payload) if plan.protocol == "echo" else 1
        self.exchanges: list[tuple[bytes, bytes | None]] = []
        for variant in range(n_variants):
            request, reply = wire.exchange(plan.protocol, plan.payload, variant)
            if http and plan.expect_body is not None:
                reply = wire.http_ok(plan.expect_body)  # sockbench's reply with that body
            self.exchanges.append((request, None if unknown else reply))
        self.reqlen = len(self.exchanges[0][0])
        self.explen = len(self.exchanges[0][1] or wire.http_ok(self.expect.body))
        # Read one byte more than a reply, so that a trailing extra byte is a mismatch.
        self.rsize = min(self.explen + 1, RECV_CAP)
        if self.exchanges[0][1] is None:
            self.rsize = max(self.rsize, PARSE_READ)
        # auto: learned replies up to one read are kept (`_learn`)
        self.keep_raw = RECV_CAP - 1 if self.verify == "auto" else 0
        # verified reply bytes: those of the replies counted in `counts` are settled
        # (`_settle`) at the end or when fulls[fd] changes, so the hot path adds nothing
        self.reply_bytes = 0
        self.socks: list[socket.socket | None] = []
        self.reqs: list[bytes] = []
        self.fulls: list[bytes | None] = []  # the whole expected reply; None: parse each
        self.exps: list[bytes | None] = []  # what the hot path compares with; None: slow
        self.offs: list[int] = []  # bytes of the current reply received so far
        self.outs: list[memoryview | None] = []  # request bytes the socket did not take
        self.sents: list[int] = []  # latency origin: send time, or intended send time
        self.issued: list[int] = []  # actual send time; 0 when nothing is outstanding
        self.counts: list[int] = []  # requests completed, per fd (persistent mode)
        self.worst: list[int] = []  # longest reply latency in the window, per fd, ns
        self.slot_of: list[int] = []  # fd -> connection slot
        self.parsers: list[ReplyParser | None] = []  # http: parses replies that differ
        self.settled: list[int] = []  # counts[fd] whose bytes are in reply_bytes
        self._per_fd: tuple[tuple[list[Any], Any], ...] = (
            (self.socks, None),
            (self.reqs, b""),
            (self.fulls, b""),
            (self.exps, None),
            (self.offs, 0),
            (self.outs, None),
            (self.sents, 0),
            (self.issued, 0),
            (self.counts, 0),
            (self.worst, 0),
            (self.slot_of, -1),
            (self.parsers, None),
            (self.settled, 0),
        )
        self.live: set[int] = set()  # connected descriptors
        self.connecting: dict[int, int] = {}  # fd -> connect start time
        n = plan.connections
        self.slot_fd = [-1] * n  # persistent mode: the slot's latest connection
        self.slot_count = [0] * n  # requests completed per slot by its closed connections
        self.slot_ok = [False] * n  # connected at least once
        self.slot_worst = [0] * n  # longest wait in the window of the slot's closed fds, ns
        # open loop and per-request mode: the intended (or, closed loop, the actual)
        # start of the slot's current request; the schedule goes on from it
        self.slot_due = [0] * n
        self.src_next = plan.first
        self.heap: list[tuple[int, int]] = []  # (time, fd or slot) of scheduled sends

    @property
    def established(self) -> int:
        return sum(self.slot_ok)

    def _ensure(self, fd: int) -> None:
        if fd >= len(self.socks):
            grow = fd + 1025 - len(self.socks)
            for values, default in self._per_fd:
                values.extend([default] * grow)

    # -- connecting and closing ----------------------------------------------------------

    def connect_all(self) -> None:
        """Persistent mode: connect every connection, at most CONNECT_WINDOW at a time."""
        if self.plan.mode != "persistent":
            return
        todo = deque(range(self.plan.connections))
        now = time.monotonic_ns
        while todo or self.connecting:
            while todo and len(self.connecting) < CONNECT_WINDOW:
                self._open(todo.popleft(), now())
            events = self.ep.poll(POLL_S)
            t = now()
            for fd, _ev in events:
                self._connected(fd, t)
            self._expire_connects(t)

    def _open(self, slot: int, t: int) -> int:
        """Start a non-blocking connect for `slot`; the fd, or -1 if it failed at once."""
        plan = self.plan
        try:
            sock = socket.socket(plan.family, socket.SOCK_STREAM)
        except OSError:  # EMFILE, ENFILE
            self.errors["connect_refused"] += 1
            return -1
        fd = sock.fileno()
        self._ensure(fd)
        request, expected = self.exchanges[(plan.first + slot) % len(self.exchanges)]
        self.socks[fd], self.reqs[fd], self.fulls[fd] = sock, request, expected
        self.exps[fd], self.offs[fd], self.outs[fd] = None, 0, None
        self.sents[fd] = self.issued[fd] = self.counts[fd] = self.worst[fd] = 0
        self.slot_of[fd] = slot
        self.parsers[fd], self.settled[fd] = None, 0
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if plan.sources:
                # Leave the port choice to connect(), where the whole 4-tuple is known
                # and TIME_WAIT reuse applies, and spread over several source addresses.
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((plan.sources[self.src_next % len(plan.sources)], 0))
                self.src_next += 1
            err = sock.connect_ex(plan.address)
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err not in (0, errno.EINPROGRESS):
            # ECONNREFUSED, or EADDRNOTAVAIL when no source port is left
            self.errors["connect_refused"] += 1
            self._close(fd)
            return -1
        self.connecting[fd] = t
        self.ep.register(fd, OUT)
        return fd

    def _connected(self, fd: int, t: int) -> bool:
        """The connect of fd finished (writable or failed): count it either way."""
        started = self.connecting.pop(fd, None)
        sock = self.socks[fd]
        if started is None or sock is None:
            return False
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            kind = "connect_timeout" if err == errno.ETIMEDOUT else "connect_refused"
            self.errors[kind] += 1
            self._close(fd)
            return False
        self.connect_lat.append(t - started)
        slot = self.slot_of[fd]
        self.slot_ok[slot] = True
        self.slot_fd[slot] = fd
        self.live.add(fd)
        self.ep.modify(fd, IN)
        return True

    def _expire_connects(self, t: int) -> list[int]:
        expired = [fd for fd, started in self.connecting.items() if t - started > self.timeout_ns]
        for fd in expired:
            self.errors["connect_timeout"] += 1
            self._close(fd)
        return expired

    def _close(self, fd: int) -> None:
        """Close fd; its slot keeps what it did (replies, longest wait)."""
        sock = self.socks[fd]
        if sock is None:
            return
        self._settle(fd)
        self.socks[fd] = self.exps[fd] = self.outs[fd] = self.parsers[fd] = None
        self.issued[fd] = 0
        slot = self.slot_of[fd]  # the slot keeps what its connection did
        self.slot_count[slot] += self.counts[fd]
        self.slot_worst[slot] = max(self.slot_worst[slot], self.worst[fd])
        self.counts[fd] = self.worst[fd] = self.settled[fd] = 0
        self.live.discard(fd)
        self.connecting.pop(fd, None)
        sock.close()  # also leaves the epoll set: the descriptor is never shared

    def drop(self, fd: int) -> None:
        """Close one connection for a caller that reads the descriptors itself (the idle
        holder, clients.engine.hold); nothing is counted or retried."""
        self._close(fd)

    def close(self) -> None:
        for fd in [*self.live, *self.connecting]:
            self._close(fd)
        self.ep.close()

    def _fail(self, fd: int, kind: str) -> None:
        if self.socks[fd] is None:
            return
        self.errors[kind] += 1
        self._close(fd)
        self._retry(self.slot_of[fd], time.monotonic_ns())

    def _wrong(self, fd: int, reply: bytes, kind: str | None = None) -> None:
        """fd's reply failed its check: `reply` is what arrived of it, from its first
        byte. Count a `protocol` error where those bytes cannot be a reply of the
        protocol spoken (keeping the first such bytes), a mismatch otherwise (or `kind`,
        where the caller knows it), and close fd. Off the hot path: it classifies only
        after the comparison failed."""
        if kind is None:
            kind = reply_error(self.plan.protocol, reply, self.fulls[fd])
        if kind == "protocol" and self.sample is None:
            self.sample = bytes(reply[:SAMPLE])
        self._fail(fd, kind)

    def _retry(self, slot: int, t: int) -> None:
        """The slot's current request failed at t (the error is counted): schedule the
        slot's next one. A closed loop over persistent connections goes on with the
        connections it has; the open loop and per-request mode keep their schedule."""
        plan = self.plan
        if plan.rate:
            self.slot_due[slot] += self.interval_ns
            heapq.heappush(self.heap, (max(self.slot_due[slot], t + RETRY_NS), slot))
        elif plan.mode == "per-request":
            heapq.heappush(self.heap, (t + RETRY_NS, slot))

    # -- sending -------------------------------------------------------------------------

    def _send(self, fd: int, t: int) -> None:
        """Send fd's request; what the socket does not take waits for EPOLLOUT."""
        self.issued[fd] = t
        sent: int | OSError
        try:
            sent = os.write(fd, self.reqs[fd])
        except OSError as exc:
            sent = exc
        self._sent(fd, sent)

    def _sent(self, fd: int, sent: int | OSError) -> None:
        """After a write of fd's whole request that returned `sent`."""
        request = self.reqs[fd]
        if isinstance(sent, BlockingIOError):
            sent = 0
        elif isinstance(sent, OSError):
            self._fail(fd, error_kind(sent))
            return
        if sent == len(request):
            self.exps[fd] = self.fulls[fd]
            return
        self.outs[fd] = memoryview(request)[sent:]
        self.exps[fd] = None
        self.ep.modify(fd, IN | OUT)

    def _flush(self, fd: int) -> None:
        out = self.outs[fd]
        assert out is not None
        try:
            sent = os.write(fd, out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(fd, error_kind(exc))
            return
        if sent < len(out):
            self.outs[fd] = out[sent:]
            return
        self.outs[fd] = None
        self.ep.modify(fd, IN)
        parser = self.parsers[fd]
        if self.offs[fd] == 0 and (parser is None or parser.idle):
            self.exps[fd] = self.fulls[fd]

    # -- replies that are parsed (http, verify auto or parse) ---------------------------

    def _settle(self, fd: int) -> None:
        """Add the bytes of fd's replies counted since the last settle, each the length
        of fulls[fd] (the hot path's replies; a parsed reply settles itself)."""
        full = self.fulls[fd]
        if full is not None:
            self.reply_bytes += (self.counts[fd] - self.settled[fd]) * len(full)
        self.settled[fd] = self.counts[fd]

    def _begin_parse(self, fd: int, already: bytes = b"") -> ReplyParser:
        """fd's parser, for a reply of which `already` arrived (it matched the exact
        bytes so far); the hot path leaves fd alone until the reply is complete."""
        parser = self.parsers[fd]
        if parser is None:
            # a longer body than the expected one is a mismatch: no need to buffer it
            parser = ReplyParser(max_body=len(self.expect.body), keep_raw=self.keep_raw)
            self.parsers[fd] = parser
        if already:
            parser.feed(already)  # buffered now, parsed with the next bytes
        self.offs[fd] = 0
        self.exps[fd] = None
        self.rsize = max(self.rsize, min(PARSE_READ, RECV_CAP))
        return parser

    def _closed_reply(self, fd: int) -> Reply | None:
        """The server closed fd: the reply that the close frames, if one was under way
        (HTTP/1.0 style, no Content-Length); None if none, or it was cut short."""
        parser, off, full = self.parsers[fd], self.offs[fd], self.fulls[fd]
        try:
            if off and full is not None and (parser is None or parser.idle):
                parser = self._begin_parse(fd, full[:off])
            if parser is None or next(parser.feed(b""), None) is not None:
                return None  # nothing under way; or a whole reply before the close: odd
            return parser.eof()
        except ParseError:
            return None

    def _learn(self, fd: int, reply: Reply) -> None:
        """auto: a verified reply that frames itself and fits one read becomes fd's
        exact expectation (a foreign server's replies differ only when a header such as
        Date changes). Not one ended by a close, nor one that closes a persistent
        connection: equal bytes would not say that."""
        raw = reply.raw
        if raw is None or reply.framing == "close" or raw == self.fulls[fd]:
            return
        if not reply.keep_alive and self.plan.mode == "persistent":
            return
        self._settle(fd)  # the replies so far had the old length
        self.fulls[fd] = raw
        self.rsize = max(self.rsize, len(raw) + 1)  # so that the next one fits one read

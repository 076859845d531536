"""Slow connections (issue 28): held connections that send each request a byte at a time,
or read each reply a byte at a time through a small receive buffer.

clients.engine.hold.Holder runs a SlowLoop in its slow modes, from the ready line to the
stop, over the connections it holds:

- slow-sender: each request goes out one byte per interval; its reply is read as it
  arrives and checked (echo byte for byte, http by clients.http_reply's parser); the
  connection's next request starts at its next slot. A thread-per-connection server
  wakes for every byte; a bounded pool's worker is tied up for the whole request.
- slow-reader: the receive buffer is shrunk to READER_RCVBUF, each request is sent whole,
  and its reply is read one byte per interval, checked byte by byte; then the next.

The connections' slots are spread evenly over the interval (connection i starts i/n of
an interval late), so the server sees a steady trickle, not a burst per interval; the
loop wakes at most about once per TICK_NS and does everything due by then, in small
batches, so that the load generator beside it (the holder shares its CPUs) is held up
only briefly each time. A reply that fails
its check closes its connection and counts in `bad_replies`; a connection the server
closes, in `closed_by_server` (the holder adds both to its own). docs/slow.md says why.
"""

from __future__ import annotations

import heapq
import os
import select
import socket
import time

from clients.engine.connections import Connections
from clients.hold_report import SlowCounts
from clients.http_reply import Expectation, ParseError, ReplyParser

SLOW_MODES = ("slow-sender", "slow-reader")
# Bytes due within 0.1 ms of each other go out in one wake-up: 100 connections at 10 ms
# wake the holder about 10,000 times a second for a byte or two each, so that the load
# generator on its CPU waits for it a few µs at a time. A 1 ms tick (batches of 10 bytes,
# ~130 µs each) put epoll's active p99 at 2.3x its figure without slow clients, 0.1 ms at
# 1.45x, the schedule kept either way (one check of 2 repeats: docs/slow.md).
TICK_NS = 100_000
READER_RCVBUF = 1024  # asked for; Linux doubles it and keeps a floor (2,304 bytes here)
READ = 64 * 1024
SENDER_WATCH = select.EPOLLIN | select.EPOLLRDHUP
# a slow reader reads on its own clock: readable data must not wake it (level-triggered,
# it would wake it for as long as the reply sits unread), only the server's close
READER_WATCH = select.EPOLLRDHUP


def read_or_close(fd: int, events: int) -> bytes | None:
    """What an epoll event on a held connection brought: its bytes, b"" where the server
    closed or reset it, None where there was nothing to read after all. Here, not in
    clients.engine.hold (whose watch uses it too), as hold imports this module."""
    try:
        return os.read(fd, READ)
    except BlockingIOError:
        return b"" if events & (select.EPOLLHUP | select.EPOLLERR) else None
    except OSError:
        return b""  # reset


class SlowLoop:
    """The slow exchanges over `conns`' live connections, in `mode` (SLOW_MODES); replies
    checked against `expect` (http) or byte for byte (echo: None); `run` until the stop,
    or `step`."""

    def __init__(
        self, conns: Connections, mode: str, expect: Expectation | None, interval_ms: float
    ) -> None:
        self.conns = conns
        self.reader = mode == "slow-reader"
        self.expect = expect
        self.interval_ms = interval_ms
        self.interval_ns = max(1, round(interval_ms * 1e6))
        self.requests = self.bytes_sent = self.bytes_read = 0
        self.bad_replies = self.closed_by_server = 0
        self.ticks = self.late = 0  # byte slots served; of them, over an interval late
        self.pos: dict[int, int] = {}  # bytes of the current request sent
        self.got: dict[int, int] = {}  # bytes of the current reply read (echo)
        self.parsers: dict[int, ReplyParser] = {}  # http: the current reply's parser
        self.due: dict[int, int] = {}  # the next byte's time (monotonic ns); absent: none
        self.slot: dict[int, int] = {}  # sender: when its request's last byte was due
        self.heap: list[tuple[int, int]] = []  # (due, fd); stale entries skipped
        live = sorted(self.conns.live)
        start = time.monotonic_ns()
        for index, fd in enumerate(live):
            sock = self.conns.socks[fd]
            assert sock is not None
            if self.reader:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READER_RCVBUF)
            self.conns.ep.modify(fd, READER_WATCH if self.reader else SENDER_WATCH)
            self._begin(fd)
            self._schedule(fd, start + index * self.interval_ns // len(live))

    def counts(self) -> SlowCounts:
        return SlowCounts(
            self.interval_ms,
            self.requests,
            self.bytes_sent,
            self.bytes_read,
            self.ticks,
            self.late,
        )

    def run(self, stop_fd: int | None) -> None:
        """Until EOF on `stop_fd` (None: until a signal, raised in the caller)."""
        if stop_fd is not None:
            self.conns.ep.register(stop_fd, select.EPOLLIN)
        while self.step(stop_fd=stop_fd):
            pass

    def step(self, limit_s: float | None = None, stop_fd: int | None = None) -> bool:
        """One wait (until the next byte is due, an event, or `limit_s`) and what is due
        within a tick of it; False once `stop_fd` reads EOF."""
        timeout = -1.0 if limit_s is None else limit_s
        if self.heap:
            until = max(0.0, (self.heap[0][0] - time.monotonic_ns()) / 1e9)
            timeout = until if timeout < 0 else min(timeout, until)
        for fd, events in self.conns.ep.poll(timeout):
            if fd == stop_fd:
                if not os.read(fd, READ):
                    return False
            elif fd in self.conns.live:
                self._event(fd, events)
        now = time.monotonic_ns()
        while self.heap and self.heap[0][0] <= now + TICK_NS:
            due, fd = heapq.heappop(self.heap)
            if self.due.get(fd) == due and fd in self.conns.live:
                del self.due[fd]
                self.ticks += 1
                self.late += now - due > self.interval_ns
                # late by more than a tick (the holder got no CPU): the next byte an
                # interval from now, not at once; a slow client never catches up in a burst
                self._tick(fd, max(due, now - TICK_NS))
        return True

    # -- the exchanges ---------------------------------------------------------------------

    def _begin(self, fd: int) -> None:
        """A new request on fd: nothing of it sent, nothing of its reply read."""
        self.pos[fd] = self.got[fd] = 0
        if self.expect is not None:
            self.parsers[fd] = ReplyParser(max_body=len(self.expect.body))

    def _schedule(self, fd: int, due: int) -> None:
        self.due[fd] = due
        heapq.heappush(self.heap, (due, fd))

    def _tick(self, fd: int, due: int) -> None:
        """fd's byte is due (`due`: its slot, the next is an interval after it): the
        request's next byte (sender), else the whole request and then one byte of its
        reply (reader)."""
        request = self.conns.reqs[fd]
        if not self.reader or self.pos[fd] < len(request):
            end = self.pos[fd] + 1 if not self.reader else len(request)
            try:
                sent = os.write(fd, request[self.pos[fd] : end])
            except BlockingIOError:
                sent = 0
            except OSError:
                self._closed(fd)
                return
            self.pos[fd] += sent
            self.bytes_sent += sent
            if not self.reader and self.pos[fd] == len(request):
                self.slot[fd] = due
                return  # the reply comes as an event; the next request after it
        if self.reader and self.pos[fd] == len(request):
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = None  # not here yet
            except OSError:
                data = b""
            if data == b"":
                self._closed(fd)
                return
            if data and not self._reply(fd, data):
                return
        if fd in self.due:  # the reply ended and the next request was scheduled
            return
        self._schedule(fd, due + self.interval_ns)

    def _event(self, fd: int, events: int) -> None:
        """Readable (a sender's reply), or the server's close (either mode)."""
        if self.reader:
            self._closed(fd)  # READER_WATCH: only a close or an error wakes it
            return
        data = read_or_close(fd, events)
        if data is None:
            return
        if not data:
            self._closed(fd)
        else:  # echo streams a frame back as it arrives: its reply may begin early
            self._reply(fd, data)

    def _reply(self, fd: int, data: bytes) -> bool:
        """Check the reply's next bytes; at its end, count it and schedule the next
        request at the connection's next slot. False when the connection was closed."""
        self.bytes_read += len(data)
        expect = self.expect
        if expect is None:  # echo: byte for byte
            expected = self.conns.fulls[fd]
            assert expected is not None
            start = self.got[fd]
            if expected[start : start + len(data)] != data:
                self._bad(fd)
                return False
            self.got[fd] = start + len(data)
            if self.got[fd] < len(expected):
                return True
        else:
            parser = self.parsers[fd]
            try:
                reply = next(parser.feed(data), None)
            except ParseError:
                self._bad(fd)
                return False
            if reply is None:
                return True
            if not expect.accepts(reply) or not parser.idle:
                self._bad(fd)  # the wrong reply, or bytes after it
                return False
        if self.pos[fd] < len(self.conns.reqs[fd]):
            self._bad(fd)  # a whole reply to a request not yet whole: nobody asked
            return False
        self.requests += 1
        self._begin(fd)
        now = time.monotonic_ns()
        if self.reader:
            self._schedule(fd, now + self.interval_ns)  # its next request, whole
            return True
        last = self.slot.pop(fd, now)  # keep the connection's slots: the next one from now
        self._schedule(fd, last + max(1, -(-(now - last) // self.interval_ns)) * self.interval_ns)
        return True

    def _bad(self, fd: int) -> None:
        self.bad_replies += 1
        self._end(fd)

    def _closed(self, fd: int) -> None:
        self.closed_by_server += 1
        self._end(fd)

    def _end(self, fd: int) -> None:
        for table in (self.pos, self.got, self.due, self.slot):
            table.pop(fd, None)
        self.parsers.pop(fd, None)
        self.conns.drop(fd)


__all__ = ["READER_RCVBUF", "SLOW_MODES", "SlowLoop", "TICK_NS"]

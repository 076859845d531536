"""The open loop over persistent connections: every request leaves at its arrival time.

A closed loop, or an open loop that keeps one request in flight per connection, stops
offering load once the server falls behind: the queue moves into the client as send
lag. Here a connection sends each request when it arrives, whether or not the earlier
ones were answered (both protocols answer pipelined requests in order), so the offered
load stays offered and the queue builds where it belongs, in front of the server.

Per connection slot, arrivals are uniform (every N/rate seconds, the slots staggered) or
Poisson (exponential gaps with the same mean; N Poisson slots make one Poisson stream of
the whole rate). Each connection keeps the arrival times of its requests in flight, in
order; a reply, checked byte for byte against the expected stream (or, where an http
reply's bytes differ and `--verify` is not exact, parsed and checked by its status and
body), is timed from the oldest. A slot without a connection (it failed) queues its
arrivals and sends them once it has reconnected: they were due, and their latency
counts from then.

The backlog (requests sent or due and not yet answered) is recorded at the end of every
interval; a backlog that keeps growing means the offered load is above what the server
(or the client) sustains.
"""

from __future__ import annotations

import heapq
import os
import random
import time
from collections import deque

from clients.engine.connections import IN, OUT, POLL_S, RECV_CAP, RETRY_NS
from clients.engine.loops import Loops
from clients.engine.plan import WorkerPlan
from clients.errors import error_kind, parse_error_kind
from clients.http_reply import ParseError, Reply


class PipelinedLoops(Loops):
    """Loops for `--rate` with persistent connections: a true open loop."""

    def __init__(self, plan: WorkerPlan) -> None:
        super().__init__(plan)
        self.origins: list[deque[int] | None] = []  # arrival times of requests in flight
        self.actual: list[deque[int] | None] = []  # their actual send times
        self.outbuf: list[bytearray | None] = []  # request bytes the socket did not take
        self._per_fd = (
            *self._per_fd,
            (self.origins, None),
            (self.actual, None),
            (self.outbuf, None),
        )
        n = plan.connections
        self.waiting: list[list[int]] = [[] for _ in range(n)]  # arrivals of unconnected slots
        self.rng = random.Random(plan.index * 7919 + plan.first)  # reproducible arrivals
        self._repeated: dict[tuple[bytes, int], bytes] = {}
        self.batch: dict[int, bytearray] = {}  # fd -> requests that arrived this turn

    # -- arrivals -------------------------------------------------------------------------

    def _gap(self) -> int:
        if self.plan.arrivals == "poisson":
            return max(1, int(self.rng.expovariate(1.0) * self.interval_ns))
        return self.interval_ns

    def run(self, t0: int, window_start: int, end: int) -> None:
        """Warm up from t0, measure from window_start to end (CLOCK_MONOTONIC ns)."""
        now = self._begin(t0, window_start, end)
        step = self.interval_ns / self.plan.total
        for slot in range(self.plan.connections):
            first = (self.plan.first + slot) * step
            if self.plan.arrivals == "poisson":
                first = self.rng.expovariate(1.0) * self.interval_ns
            self.slot_due[slot] = now + int(first)
            self.heap.append((self.slot_due[slot], slot))
        for fd in self.live:
            self._ready(fd)
        for slot, fd in enumerate(self.slot_fd):
            if fd < 0 or fd not in self.live:  # its connect failed: try again
                self.heap.append((now, -1 - slot))
        heapq.heapify(self.heap)
        self._run_open()

    def _ready(self, fd: int) -> None:
        self.origins[fd] = deque()
        self.actual[fd] = deque()
        self.outbuf[fd] = None
        self.offs[fd] = 0

    def _arrive(self, slot: int, due: int, t: int) -> None:
        """Request `due` of `slot` arrives (at t, late by t - due): send it, or queue it
        until the slot has a connection again."""
        fd = self.slot_fd[slot]
        if fd in self.live and self.slot_of[fd] == slot:
            self._enqueue(fd, due, t)
        else:
            self.waiting[slot].append(due)
        nxt = due + self._gap()
        self.slot_due[slot] = nxt
        heapq.heappush(self.heap, (nxt, slot))

    def _enqueue(self, fd: int, due: int, t: int) -> None:
        origins, actual = self.origins[fd], self.actual[fd]
        assert origins is not None and actual is not None
        origins.append(due)
        actual.append(t)
        if not self.warming:
            self.sent += 1
            self.lag.append(t - due)
        pending = self.outbuf[fd]
        if pending is not None:  # waiting for EPOLLOUT: behind what is already queued
            pending += self.reqs[fd]
        elif (batch := self.batch.get(fd)) is not None:
            batch += self.reqs[fd]
        else:
            self.batch[fd] = bytearray(self.reqs[fd])

    def _send_batches(self) -> None:
        """One write per connection for the requests that arrived in this turn."""
        for fd, batch in self.batch.items():
            if self.socks[fd] is None:
                continue
            try:
                sent = os.write(fd, batch)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._fail(fd, error_kind(exc))
                continue
            if sent < len(batch):
                self.outbuf[fd] = batch[sent:]
                self.ep.modify(fd, IN | OUT)
        self.batch.clear()

    def _flush_out(self, fd: int) -> None:
        pending = self.outbuf[fd]
        if pending is None:
            return
        try:
            sent = os.write(fd, pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(fd, error_kind(exc))
            return
        del pending[:sent]
        if not pending:
            self.outbuf[fd] = None
            self.ep.modify(fd, IN)

    # -- replies --------------------------------------------------------------------------

    def _receive(self, fd: int, data: bytes, t: int) -> bool:
        """Check `data` against the expected reply stream; time each whole reply from
        the oldest arrival in flight. True once the window is over."""
        full, off, pos = self.fulls[fd], self.offs[fd], 0
        parser = self.parsers[fd]
        if full is None or (parser is not None and not parser.idle):
            return self._receive_parsed(fd, data, t)
        origins, actual = self.origins[fd], self.actual[fd]
        assert origins is not None and actual is not None
        whole, rest = divmod(len(data), len(full))
        if not off and not rest and whole <= len(origins) and data == self._times(full, whole):
            if t >= self.mark and self._tick(t):
                return True
            for _ in range(whole):  # k whole replies in one read: one comparison
                wait = t - origins.popleft()
                self.lat.append(wait)
                self.lat_sent.append(t - actual.popleft())
                if wait > self.worst[fd]:
                    self.worst[fd] = wait
            self.counts[fd] += whole
            return False
        while pos < len(data):
            n = min(len(data) - pos, len(full) - off)
            if not origins or data[pos : pos + n] != full[off : off + n]:
                if self.parsing and origins:  # parse from this reply's first byte on
                    self._begin_parse(fd, full[:off])
                    return self._receive_parsed(fd, data[pos:], t)
                # different, or not asked for; bytes right after a reply verified in this
                # read are judged with it, as the closed loop judges a read as a whole
                self._wrong(fd, (full if pos and not off else full[:off]) + data[pos:])
                return False
            pos += n
            off += n
            if off < len(full):
                break
            off = 0
            if t >= self.mark and self._tick(t):
                return True
            origin = origins.popleft()
            wait = t - origin
            self.lat.append(wait)
            self.lat_sent.append(t - actual.popleft())
            if wait > self.worst[fd]:
                self.worst[fd] = wait
            self.counts[fd] += 1
        self.offs[fd] = off
        return False

    def _receive_parsed(self, fd: int, data: bytes, t: int) -> bool:
        """`data` through fd's parser: each whole reply, verified by its status and body,
        is timed like one compared byte for byte. True once the window is over."""
        parser = self.parsers[fd] or self._begin_parse(fd)
        origins, actual = self.origins[fd], self.actual[fd]
        assert origins is not None and actual is not None
        try:
            for reply in parser.feed(data):
                if not origins or not self.expect.accepts(reply):
                    self._fail(fd, "mismatch")  # different, or a reply nobody asked for
                    return False
                if self._count_parsed(fd, reply, t):
                    return True
                if not reply.keep_alive:
                    self._fail(fd, "closed")  # whatever is still in flight is lost
                    return False
        except ParseError as exc:
            self._wrong(fd, parser.leftover, parse_error_kind(exc))
        return False  # an idle parser hands the next reply back to the exact bytes

    def _count_parsed(self, fd: int, reply: Reply, t: int) -> bool:
        """Time a verified parsed reply from the oldest arrival; True once the window is
        over."""
        if t >= self.mark and self._tick(t):
            return True
        self._learn(fd, reply)
        origins, actual = self.origins[fd], self.actual[fd]
        assert origins is not None and actual is not None
        wait = t - origins.popleft()
        self.lat.append(wait)
        self.lat_sent.append(t - actual.popleft())
        if wait > self.worst[fd]:
            self.worst[fd] = wait
        self.counts[fd] += 1
        self.settled[fd] += 1  # its own bytes, not those of fulls[fd] (see _settle)
        self.reply_bytes += reply.size
        return False

    def _times(self, full: bytes, k: int) -> bytes:
        """`full * k`, kept: the expected bytes of k pipelined replies."""
        key = (full, k)
        if (repeated := self._repeated.get(key)) is None:
            if len(self._repeated) > 4096:
                self._repeated.clear()
            repeated = self._repeated[key] = full * k
        return repeated

    def _run_open(self) -> None:
        heap, poll, now = self.heap, self.ep.poll, time.monotonic_ns
        heappop = heapq.heappop
        while True:
            t = now()
            if t >= self.mark and self._tick(t):
                return
            arrived = False
            while heap and heap[0][0] <= t:
                arrived = True
                due, slot = heappop(heap)
                if slot >= 0:
                    self._arrive(slot, due, t)
                else:
                    self._reconnect(-1 - slot, t)
            if self.batch:
                self._send_batches()
            # epoll sleeps in whole milliseconds: under one, poll without sleeping
            wait = min(POLL_S, (heap[0][0] - t) // 1_000_000 / 1000) if heap else POLL_S
            before = now()
            events = poll(max(wait, 0))
            after = now()
            # time in epoll waits for work; so does a whole turn that found nothing to do
            # (busy-polling for an arrival under a millisecond away)
            self.wait_ns += after - (t if not arrived and not events else before)
            for fd, ev in events:
                if fd in self.connecting:
                    self._on_connected(fd)
                    continue
                if self.socks[fd] is None:
                    continue
                if ev & OUT:
                    self._flush_out(fd)
                    if self.socks[fd] is None:
                        continue
                if not ev & IN and not ev & ~(IN | OUT):
                    continue
                try:
                    data = os.read(fd, RECV_CAP)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._fail(fd, error_kind(exc))
                    continue
                if not data:
                    reply = self._closed_reply(fd) if self.parsing else None
                    if reply is not None and self.origins[fd]:  # framed by the close
                        if not self.expect.accepts(reply):
                            self._fail(fd, "mismatch")
                            continue
                        if self._count_parsed(fd, reply, now()):
                            return
                    self._fail(fd, "closed")
                    continue
                if self._receive(fd, data, now()):
                    return

    def _on_connected(self, fd: int) -> None:
        t = time.monotonic_ns()
        slot = self.slot_of[fd]
        if not self._connected(fd, t):
            self._lost(slot, t)
            return
        self._ready(fd)
        queued, self.waiting[slot] = self.waiting[slot], []
        for due in queued:
            self._enqueue(fd, due, t)
        if self.batch:
            self._send_batches()

    # -- failures ---------------------------------------------------------------------------

    def _fail(self, fd: int, kind: str) -> None:
        """Every request in flight on fd failed; the slot goes on with its schedule."""
        if self.socks[fd] is None:
            return
        origins = self.origins[fd]
        self.errors[kind] += max(1, len(origins) if origins is not None else 0)
        slot = self.slot_of[fd]
        self.origins[fd] = self.actual[fd] = self.outbuf[fd] = None
        self._close(fd)
        self._lost(slot, time.monotonic_ns())

    def _lost(self, slot: int, t: int) -> None:
        """The slot has no connection: its arrivals queue for the next one, opened after
        RETRY_NS so that a dead server is not hit in a hot loop. Queued requests older
        than the timeout fail as timeouts (counted, not dropped)."""
        queued = self.waiting[slot]
        young = [due for due in queued if t - due <= self.timeout_ns]
        self.errors["timeout"] += len(queued) - len(young)
        self.waiting[slot] = young
        heapq.heappush(self.heap, (t + RETRY_NS, -1 - slot))

    def _reconnect(self, slot: int, t: int) -> None:
        fd = self.slot_fd[slot]
        if (fd in self.live and self.slot_of[fd] == slot) or any(
            self.slot_of[c] == slot for c in self.connecting
        ):
            return
        if self._open(slot, t) < 0:
            self._lost(slot, t)

    def _scan_timeouts(self, t: int) -> None:
        limit = self.timeout_ns
        for fd in list(self.live):
            origins = self.origins[fd]
            if origins and t - origins[0] > limit:
                self._fail(fd, "timeout")
        for fd in self._expire_connects(t):
            self._lost(self.slot_of[fd], t)

    # -- the end of the window ------------------------------------------------------------

    def _slice_closed(self) -> None:
        self.backlog.append(self._in_flight())

    def _in_flight(self) -> int:
        flying = sum(len(o) for fd in self.live if (o := self.origins[fd]) is not None)
        return flying + sum(len(w) for w in self.waiting)

    def censored(self) -> list[int]:
        """Waits so far of every request in flight or queued at the window's end, and of
        arrivals due before it that the loop had not reached."""
        end, waits = self.end, []
        for fd in self.live:
            for origin in self.origins[fd] or ():
                waits.append(end - origin)
                self._fold(self.slot_of[fd], end - origin)
        for slot, queued in enumerate(self.waiting):
            for due in queued:
                waits.append(end - due)
                self._fold(slot, end - due)
        for slot, due in enumerate(self.slot_due):
            while due < end:
                waits.append(end - due)
                self._fold(slot, end - due)
                due += self._gap()
        return waits

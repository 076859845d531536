"""A worker's event loops: warm up, measure a window, verify and time every reply.

Three loops share the connection tables of clients.engine.connections:

- `_run_closed`, the hot path: persistent connections, each sends its next request the
  moment the whole reply to the last one arrived;
- `_run_scheduled`: a new connection per request, each due at its intended time
  (with `--rate`) and timed from it (the wrk2 correction).

The open loop over persistent connections is clients.engine.pipelined's.

Nothing unanswered disappears: at the window's end `censored()` gives the wait so far of
every request still unanswered (in the open loop, also of every request that fell due
but never went out), and each connection slot's longest wait in the window.

A reply is complete when exactly the expected bytes have arrived; a reply split over
several reads is compared piece by piece (`_slow`); extra or different bytes close
that connection and count as a mismatch, or as a `protocol` error where they cannot be
a reply of the protocol at all (classified only then, clients.errors). Except with
`--verify exact`, an http reply whose bytes differ is parsed instead (`_parse`), and
verified by its status and body; a server that frames its reply by closing the
connection is served there too (clients.engine.connections says how a foreign server's
replies reach the `==` path).
Latencies are raw nanosecond integers kept in an `array('q')`, turned into an
HdrHistogram after the window (clients.engine.worker).

The hot path is written for speed, because on one core a Python client is only a
little faster than a Python server: lists and methods are bound to locals, reads and
writes go through os.read/os.write on the descriptor, a reply is checked with one `==`
on bytes, and the clock is read once per request: the reply time is also the send time
of the next request, written at once (holding requests back to send them in a burst
after the batch, as wrk does, measured no faster against the Python servers).
Everything unusual (partial reads or writes, errors, phase changes) leaves the hot path
for `_slow` or `_tick`.
"""

from __future__ import annotations

import heapq
import os
import select
import time
from array import array

from clients.engine.connections import (
    OUT,
    POLL_S,
    SECOND_NS,
    Connections,
)
from clients.engine.plan import WorkerPlan
from clients.errors import error_kind, parse_error_kind
from clients.http_reply import ParseError, Reply, ReplyParser

ERR, HUP = select.EPOLLERR, select.EPOLLHUP
SCAN_NS = 100_000_000  # how often to look for requests older than the timeout
INTERVAL_NS = 100_000_000  # length of an interval histogram (latency over time)


def schedstat() -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting in a run queue) of this single-threaded process."""
    try:
        with open("/proc/self/schedstat") as f:
            on_cpu, run_delay, _slices = f.read().split()
        return int(on_cpu), int(run_delay)
    except (OSError, ValueError):
        return None  # a kernel without CONFIG_SCHED_INFO


class Loops(Connections):
    """The phases of a run (warm-up, window, end) and the loops that drive them."""

    def __init__(self, plan: WorkerPlan) -> None:
        super().__init__(plan)
        self.lat = array("q")  # reply latencies in the window, ns
        self.lat_sent = array("q")  # open loop: the same from the actual send (wrk2 -U)
        self.lag = array("q")  # open loop: actual minus intended send, sends in the window
        self.pending = self.issued  # where the timeout scan looks (sents in closed mode)
        self.warming = True
        self.window_start = self.end = self.next_slice = self.next_scan = 0
        self.mark = 0  # the next time _tick has something to do
        self.slices: list[int] = []  # len(self.lat) at the end of each interval
        self.backlog: list[int] = []  # clients.engine.pipelined: requests in flight, per slice end
        self.sent = 0  # scheduled modes: requests sent in the window
        self.errors_before = dict(self.errors)  # snapshot at the window's start
        self.cpu0 = self.cpu1 = 0.0
        self.sched0 = self.sched1 = schedstat()
        self.wait_ns = 0  # waiting for work in the window: blocked in epoll or spinning

    def run(self, t0: int, window_start: int, end: int) -> None:
        """Warm up from t0, measure from window_start to end (CLOCK_MONOTONIC ns)."""
        now = self._begin(t0, window_start, end)
        plan = self.plan
        step = SECOND_NS / plan.rate if plan.rate else 0  # between sends over all workers
        if plan.mode == "per-request":
            for slot in range(plan.connections):
                self.slot_due[slot] = now + int((plan.first + slot) * step)
            self._run_scheduled([(due, slot) for slot, due in enumerate(self.slot_due)])
        else:
            self.pending = self.sents  # the hot path keeps only sents up to date
            for fd in sorted(self.live):
                self.sents[fd] = t = time.monotonic_ns()
                self._send(fd, t)
            self._run_closed()

    def _begin(self, t0: int, window_start: int, end: int) -> int:
        """Set the phases up, sleep until t0; the time then (CLOCK_MONOTONIC ns)."""
        self.window_start, self.end = window_start, end
        self.next_slice = window_start + INTERVAL_NS
        self.mark = window_start
        delay = t0 - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / SECOND_NS)
        now = time.monotonic_ns()
        self.next_scan = now + SCAN_NS
        return now

    # -- phases --------------------------------------------------------------------------

    def _tick(self, t: int) -> bool:
        """Phase changes, timeline slices, timeout scans; True once the window is over."""
        if self.warming and t >= self.window_start:
            self.warming = False
            for values in (self.lat, self.lat_sent, self.lag):
                del values[:]
            for counters in (
                self.counts,
                self.worst,
                self.slot_count,
                self.slot_worst,
                self.settled,
            ):
                counters[:] = [0] * len(counters)  # in place: the hot path holds them
            self.sent = self.wait_ns = self.reply_bytes = 0
            self.errors_before = dict(self.errors)
            self.cpu0 = time.process_time()
            self.sched0 = schedstat()
        if not self.warming:
            while t >= self.next_slice and self.next_slice < self.end:
                self.slices.append(len(self.lat))
                self._slice_closed()
                self.next_slice += INTERVAL_NS
            if t >= self.end:
                self.slices.append(len(self.lat))
                self._slice_closed()
                self.cpu1 = time.process_time()
                self.sched1 = schedstat()
                return True
        if t >= self.next_scan:
            self._scan_timeouts(t)
            self.next_scan = t + SCAN_NS
        upcoming = self.window_start if self.warming else min(self.next_slice, self.end)
        self.mark = min(upcoming, self.next_scan)
        return False

    def _slice_closed(self) -> None:
        """A hook at the end of every interval (clients.engine.pipelined records its backlog)."""

    def _scan_timeouts(self, t: int) -> None:
        limit, pending = self.timeout_ns, self.pending
        for fd in [fd for fd in self.live if pending[fd] and t - pending[fd] > limit]:
            self._fail(fd, "timeout")
        for fd in self._expire_connects(t):
            self._retry(self.slot_of[fd], t)

    # -- replies -------------------------------------------------------------------------

    def _record(self, fd: int, t: int) -> None:
        """The one definition of a request's latency: reply time minus its origin (the
        send time, or the intended send time in an open loop). `_run_closed` inlines it."""
        wait = t - self.sents[fd]
        self.lat.append(wait)
        if wait > self.worst[fd]:
            self.worst[fd] = wait
        if self.plan.rate:
            self.lat_sent.append(t - self.issued[fd])

    def _slow(self, fd: int, ev: int, got: bytes | OSError) -> bool:
        """Every event the hot path does not handle; True once the window is over."""
        if self.socks[fd] is None:
            return False  # closed earlier in this batch of events
        if fd in self.connecting:  # the closed loop reconnecting a slot (_complete)
            if ev & (OUT | ERR | HUP):  # not a stale event of the fd's last socket
                t = time.monotonic_ns()
                if self._connected(fd, t):
                    self.sents[fd] = t
                    self._send(fd, t)
            return False
        if ev & OUT and self.outs[fd] is not None:
            self._flush(fd)
            if self.socks[fd] is None:
                return False
        if isinstance(got, BlockingIOError):
            return False
        if isinstance(got, OSError):
            self._fail(fd, error_kind(got))
            return False
        if not got:
            reply = self._closed_reply(fd) if self.parsing and self.issued[fd] else None
            if reply is None:
                self._fail(fd, "closed")
                return False
            return self._verified(fd, reply)
        parser = self.parsers[fd]
        if parser is None or parser.idle:  # not in the middle of a parsed reply
            full, off = self.fulls[fd], self.offs[fd]
            if full is not None:
                end = off + len(got)
                if self.issued[fd] and end <= len(full) and full[off:end] == got:
                    if end < len(full):
                        self.offs[fd] = end
                        self.exps[fd] = None
                        return False
                    self.offs[fd] = 0
                    if self.outs[fd] is not None:  # a whole reply before the whole request
                        self._fail(fd, "mismatch")
                        return False
                    self.exps[fd] = full
                    return self._complete(fd, time.monotonic_ns())
                if not self.parsing:
                    self._wrong(fd, full[:off] + got)  # different, extra, or unasked-for
                    return False
            if not self.issued[fd]:
                self._wrong(fd, got)  # nothing was asked
                return False
            parser = self._begin_parse(fd, full[:off] if full is not None else b"")
        return self._parse(fd, parser, got)

    def _parse(self, fd: int, parser: ReplyParser, got: bytes) -> bool:
        """More bytes of a reply that is parsed; True once the window is over."""
        try:
            reply = next(parser.feed(got), None)
        except ParseError as exc:
            self._wrong(fd, parser.leftover, parse_error_kind(exc))
            return False
        return False if reply is None else self._verified(fd, reply)

    def _verified(self, fd: int, reply: Reply) -> bool:
        """A whole parsed reply: count it if it is the expected one and nothing else
        came; a mismatch otherwise. True once the window is over."""
        parser = self.parsers[fd]
        unasked = parser is not None and not parser.idle  # bytes after the reply
        if unasked or self.outs[fd] is not None or not self.expect.accepts(reply):
            self._fail(fd, "mismatch")
            return False
        self._learn(fd, reply)
        return self._complete(fd, time.monotonic_ns(), reply.size, reply.keep_alive)

    def _complete(self, fd: int, t: int, size: int | None = None, keep: bool = True) -> bool:
        """A whole, correct reply on fd at time t (outside the hot path): fulls[fd], or a
        parsed reply of `size` bytes after which the connection stays open if `keep`."""
        if t >= self.mark and self._tick(t):
            return True
        self._record(fd, t)
        slot = self.slot_of[fd]
        if self.plan.mode == "per-request":
            self.slot_count[slot] += 1
            self.reply_bytes += len(self.fulls[fd] or b"") if size is None else size
            self._close(fd)
            due = self.sents[fd] + self.interval_ns if self.plan.rate else t
            self.slot_due[slot] = due
            heapq.heappush(self.heap, (due, slot))
        else:
            self.counts[fd] += 1
            if size is not None:  # its bytes, not those of fulls[fd] (see _settle)
                self.settled[fd] += 1
                self.reply_bytes += size
            if not keep:  # the server ends the connection after this reply, as HTTP
                self._close(fd)  # allows (nginx after keepalive_requests): reconnect,
                self._open(slot, t)  # as wrk does; the request goes once connected (_slow)
                return False
            self.sents[fd] = t
            self._send(fd, t)
        return False

    # -- closed loop, persistent connections: the hot path -------------------------------

    def _run_closed(self) -> None:
        """Read each ready reply, check it, send the next request at once.

        With spin_us, an empty non-blocking poll is retried for up to that long before
        sleeping in epoll: a worker that is awake when a reply lands spares the server
        the cost of waking it (on loopback the server's send runs the client's receive
        path, wake-up included; on a VM that is an IPI), which measured 5-15% more
        requests/s from the Python servers. Spinning counts as waiting for work, like
        the time blocked in epoll; it stays in the CPU figure (clients.engine.worker).
        """
        poll = self.ep.poll
        read, write, now = os.read, os.write, time.monotonic_ns
        exps, reqs, sents, counts, worst = (
            self.exps,
            self.reqs,
            self.sents,
            self.counts,
            self.worst,
        )
        lat_append = self.lat.append
        rsize, reqlen = self.rsize, self.reqlen
        slow, sent_short, tick = self._slow, self._sent, self._tick
        mark = self.mark
        spin_limit = self.plan.spin_us * 1000
        spun_from = 0  # start of the current streak of empty non-blocking polls
        data: bytes | OSError
        sent: int | OSError
        while True:
            if spin_limit:
                events = poll(0)
            else:  # time in epoll is time waiting for work (clients.engine.worker's saturation)
                t = now()
                events = poll(POLL_S)
                self.wait_ns += now() - t
            if not events:
                t = now()
                if t >= mark:
                    if tick(t):
                        return
                    mark = self.mark
                if not spin_limit:
                    continue
                if not spun_from:
                    spun_from = t
                    continue
                if t - spun_from < spin_limit:
                    continue
                events = poll(POLL_S)  # nothing for a while: sleep instead
                self.wait_ns += now() - spun_from
                spun_from = 0
                if not events:
                    continue
            elif spun_from:
                self.wait_ns += now() - spun_from
                spun_from = 0
            for fd, ev in events:
                try:
                    data = read(fd, rsize)
                except OSError as exc:
                    data = exc
                if data == exps[fd]:
                    t = now()
                    if t >= mark:
                        if tick(t):
                            return
                        mark = self.mark
                    wait = t - sents[fd]  # self._record(fd, t), inlined: no call
                    lat_append(wait)
                    if wait > worst[fd]:
                        worst[fd] = wait
                    counts[fd] += 1
                    sents[fd] = t  # the reply time is the next request's send time
                    try:
                        sent = write(fd, reqs[fd])
                    except OSError as exc:
                        sent = exc
                    if sent != reqlen:
                        sent_short(fd, sent)
                else:
                    if slow(fd, ev, data):
                        return
                    mark = self.mark
                    rsize = self.rsize  # grows once replies are parsed or learned

    # -- scheduled connections: the per-request mode ------------------------------------

    def _run_scheduled(self, schedule: list[tuple[int, int]]) -> None:
        """Open a connection as `schedule`'s (due time, slot) entries fall due; handle
        connects and replies between. Epoll sleeps until the next due entry, in whole
        milliseconds; under a millisecond it polls without sleeping; both count as
        waiting for work."""
        heap = self.heap
        heap.extend(schedule)
        heapq.heapify(heap)
        poll, read, now = self.ep.poll, os.read, time.monotonic_ns
        exps, connecting = self.exps, self.connecting
        slow, complete, heappop, start = self._slow, self._complete, heapq.heappop, self._open_due
        spun_from = 0
        data: bytes | OSError
        while True:
            t = now()
            if spun_from:
                self.wait_ns += t - spun_from
                spun_from = 0
            if t >= self.mark and self._tick(t):
                return
            idle = True
            while heap and heap[0][0] <= t:
                due, item = heappop(heap)
                if start(due, item, t):
                    idle = False
            wait = min(POLL_S, max(0, heap[0][0] - t) // 1_000_000 / 1000) if heap else POLL_S
            if wait:
                t = now()
                events = poll(wait)
                self.wait_ns += now() - t
            else:
                events = poll(0)
                if idle and not events:
                    spun_from = t
            for fd, ev in events:
                if fd in connecting:
                    self._on_connect(fd)
                    continue
                try:
                    data = read(fd, self.rsize)
                except OSError as exc:
                    data = exc
                if data == exps[fd]:
                    if complete(fd, now()):
                        return
                elif slow(fd, ev, data):
                    return

    def _send_scheduled(self, fd: int, t: int) -> None:
        """Send fd's request at t, late by t - its intended time (sents[fd])."""
        if not self.warming:
            self.sent += 1
            self.lag.append(t - self.sents[fd])
        self._send(fd, t)

    def _open_due(self, when: int, slot: int, t: int) -> bool:
        """A new connection for `slot`; its request goes once connected."""
        fd = self._open(slot, t)
        if fd < 0:
            self._retry(slot, t)
            return True
        if not self.plan.rate:
            self.slot_due[slot] = t  # closed loop: latency from the connect
        self.sents[fd] = self.slot_due[slot]
        return True

    def _on_connect(self, fd: int) -> None:
        t = time.monotonic_ns()
        if self._connected(fd, t):
            self._send_scheduled(fd, t)
        else:
            self._retry(self.slot_of[fd], t)

    # -- the end of the window -----------------------------------------------------------

    def censored(self) -> list[int]:
        """Waits so far (ns, at the window's end) of the requests still unanswered then;
        folds them into the slots' longest waits. In the open loop and per-request mode a
        slot's current request and every later one that fell due before the end count;
        in the closed loop, each connection's outstanding request."""
        end, waits = self.end, []
        if self.plan.rate or self.plan.mode == "per-request":
            step = self.interval_ns
            busy = {self.slot_of[fd] for fd in self.connecting}
            busy.update(self.slot_of[fd] for fd in self.live if self.issued[fd])
            for slot, due in enumerate(self.slot_due):
                if not due or due >= end or not (step or slot in busy):
                    continue  # not due yet, or (closed loop) between a reply and the next
                self._fold(slot, end - due)
                while due < end:
                    waits.append(end - due)
                    if not step:
                        break
                    due += step
        else:  # every live connection of the closed loop has a request out
            for fd in self.live:
                waits.append(end - self.sents[fd])
                self._fold(self.slot_of[fd], end - self.sents[fd])
        return waits

    def _fold(self, slot: int, wait: int) -> None:
        if wait > self.slot_worst[slot]:
            self.slot_worst[slot] = wait

    def finish(self) -> None:
        """Fold the live connections' counts and longest waits into their slots."""
        for fd in self.live:
            self._settle(fd)
            slot = self.slot_of[fd]
            self.slot_count[slot] += self.counts[fd]
            self.counts[fd] = self.settled[fd] = 0
            self._fold(slot, self.worst[fd])

    def worst_waits(self) -> list[int]:
        """Per established slot: its longest wait for a reply in the window, capped at
        the window (after `censored` and `finish`)."""
        window = self.end - self.window_start
        return [min(w, window) for w, ok in zip(self.slot_worst, self.slot_ok, strict=True) if ok]

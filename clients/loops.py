"""A worker's event loops: warm up, measure a window, verify and time every reply.

Three loops share the connection tables of clients.connections:

- `_run_closed`, the hot path: persistent connections, each sends its next request the
  moment the whole reply to the last one arrived;
- `_run_scheduled` with `_send_due`: persistent connections in an open loop (`--rate`),
  each request sent at its intended time and timed from it (the wrk2 correction);
- `_run_scheduled` with `_open_due`: a new connection per request.

A reply is complete when exactly the expected bytes have arrived; a reply split over
several reads is compared piece by piece (`_slow`); extra or different bytes are a
mismatch and close that connection. Latencies are raw nanosecond integers kept in an
`array('q')`, turned into an HdrHistogram after the window (clients.worker).

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
import time
from array import array
from collections.abc import Callable

from clients.connections import (
    OUT,
    POLL_S,
    RETRY_NS,
    SECOND_NS,
    Connections,
)
from clients.errors import error_kind
from clients.plan import WorkerPlan

SCAN_NS = 100_000_000  # how often to look for requests older than the timeout


class Loops(Connections):
    """The phases of a run (warm-up, window, end) and the loops that drive them."""

    def __init__(self, plan: WorkerPlan) -> None:
        super().__init__(plan)
        self.lat = array("q")  # reply latencies in the window, ns
        self.interval_ns = int(plan.total * SECOND_NS / plan.rate) if plan.rate else 0
        self.pending = self.issued  # where the timeout scan looks (sents in closed mode)
        self.warming = True
        self.window_start = self.end = self.next_slice = self.next_scan = 0
        self.mark = 0  # the next time _tick has something to do
        self.sliced = 0
        self.timeline: list[int] = []  # replies per second of the window
        self.cpu0 = self.cpu1 = 0.0
        self.spin_ns = 0  # time spent busy-waiting (excluded from the CPU figure)

    def run(self, t0: int, window_start: int, end: int) -> None:
        """Warm up from t0, measure from window_start to end (CLOCK_MONOTONIC ns)."""
        self.window_start, self.end = window_start, end
        self.next_slice = window_start + SECOND_NS
        self.mark = window_start
        delay = t0 - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / SECOND_NS)
        now = time.monotonic_ns()
        self.next_scan = now + SCAN_NS
        plan = self.plan
        step = SECOND_NS / plan.rate if plan.rate else 0  # between sends over all workers
        if plan.mode == "per-request":
            self._run_scheduled(
                [(now + int((plan.first + slot) * step), slot) for slot in range(plan.connections)],
                self._open_due,
            )
        elif plan.rate:
            self._run_scheduled(
                [
                    (now + int((plan.first + slot) * step), fd)
                    for slot, fd in enumerate(self.slot_fd)
                    if fd in self.live
                ],
                self._send_due,
            )
        else:
            self.pending = self.sents  # the hot path keeps only sents up to date
            for fd in sorted(self.live):
                self.sents[fd] = t = time.monotonic_ns()
                self._send(fd, t)
            self._run_closed()

    # -- phases --------------------------------------------------------------------------

    def _tick(self, t: int) -> bool:
        """Phase changes, timeline slices, timeout scans; True once the window is over."""
        if self.warming and t >= self.window_start:
            self.warming = False
            del self.lat[:]
            self.counts[:] = [0] * len(self.counts)
            self.slot_count[:] = [0] * len(self.slot_count)
            self.spin_ns = 0
            self.cpu0 = time.process_time()
        if not self.warming:
            while t >= self.next_slice and self.next_slice < self.end:
                self._close_slice()
                self.next_slice += SECOND_NS
            if t >= self.end:
                self._close_slice()
                self.cpu1 = time.process_time()
                return True
        if t >= self.next_scan:
            self._scan_timeouts(t)
            self.next_scan = t + SCAN_NS
        upcoming = self.window_start if self.warming else min(self.next_slice, self.end)
        self.mark = min(upcoming, self.next_scan)
        return False

    def _close_slice(self) -> None:
        done = len(self.lat)
        self.timeline.append(done - self.sliced)
        self.sliced = done

    def _scan_timeouts(self, t: int) -> None:
        limit, pending = self.timeout_ns, self.pending
        for fd in [fd for fd in self.live if pending[fd] and t - pending[fd] > limit]:
            self._fail(fd, "timeout")
        for fd in self._expire_connects(t):
            self._retry(self.slot_of[fd], t + RETRY_NS)

    # -- replies -------------------------------------------------------------------------

    def _record(self, fd: int, t: int) -> None:
        """The one definition of a request's latency: reply time minus its origin (the
        send time, or the intended send time in an open loop). `_run_closed` inlines it."""
        self.lat.append(t - self.sents[fd])

    def _slow(self, fd: int, ev: int, got: bytes | OSError) -> bool:
        """Every event the hot path does not handle; True once the window is over."""
        if self.socks[fd] is None:
            return False  # closed earlier in this batch of events
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
            self._fail(fd, "closed")
            return False
        full, off = self.fulls[fd], self.offs[fd]
        end = off + len(got)
        if not self.issued[fd] or end > len(full) or full[off:end] != got:
            self._fail(fd, "mismatch")  # different, extra, or unasked-for bytes
            return False
        if end < len(full):
            self.offs[fd] = end
            self.exps[fd] = None
            return False
        self.offs[fd] = 0
        if self.outs[fd] is not None:  # a whole reply before the whole request went out
            self._fail(fd, "mismatch")
            return False
        self.exps[fd] = full
        return self._complete(fd, time.monotonic_ns())

    def _complete(self, fd: int, t: int) -> bool:
        """A whole, correct reply on fd at time t (outside the hot path)."""
        if t >= self.mark and self._tick(t):
            return True
        self._record(fd, t)
        if self.plan.mode == "per-request":
            slot = self.slot_of[fd]
            self.slot_count[slot] += 1
            self._close(fd)
            when = self.sents[fd] + self.interval_ns if self.plan.rate else t
            heapq.heappush(self.heap, (when, slot))
        elif self.plan.rate:
            self.counts[fd] += 1
            due = self.sents[fd] + self.interval_ns
            if due <= t:  # behind schedule: send at once, latency still counts from `due`
                self.sents[fd] = due
                self._send(fd, t)
            else:
                self.issued[fd] = 0
                self.exps[fd] = None
                heapq.heappush(self.heap, (due, fd))
        else:
            self.counts[fd] += 1
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
        requests/s from the Python servers. The spinning is not counted as CPU use.
        """
        poll = self.ep.poll
        read, write, now = os.read, os.write, time.monotonic_ns
        exps, reqs, sents, counts = self.exps, self.reqs, self.sents, self.counts
        lat_append = self.lat.append
        rsize, reqlen = self.rsize, self.reqlen
        slow, sent_short, tick = self._slow, self._sent, self._tick
        mark = self.mark
        spin_limit = self.plan.spin_us * 1000
        first_wait = 0 if spin_limit else POLL_S
        spun_from = 0  # start of the current streak of empty non-blocking polls
        data: bytes | OSError
        sent: int | OSError
        while True:
            events = poll(first_wait)
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
                self.spin_ns += t - spun_from  # nothing for a while: sleep instead
                spun_from = 0
                events = poll(POLL_S)
                if not events:
                    continue
            elif spun_from:
                self.spin_ns += now() - spun_from
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
                    lat_append(t - sents[fd])  # self._record(fd, t), inlined: no call
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

    # -- scheduled sends: the open loop and the per-request mode -------------------------

    def _run_scheduled(
        self, schedule: list[tuple[int, int]], start: Callable[[int, int, int], bool]
    ) -> None:
        """Send or connect as `schedule`'s (due time, fd or slot) entries fall due,
        `start(due, item, now)` each; handle replies (and, per request, connects)
        between. Epoll sleeps until the next due entry, in whole milliseconds; under a
        millisecond it polls without sleeping, and that time counts as spinning."""
        heap = self.heap
        heap.extend(schedule)
        heapq.heapify(heap)
        poll, read, now = self.ep.poll, os.read, time.monotonic_ns
        exps, connecting = self.exps, self.connecting
        slow, complete, heappop = self._slow, self._complete, heapq.heappop
        spun_from = 0
        data: bytes | OSError
        while True:
            t = now()
            if spun_from:
                self.spin_ns += t - spun_from
                spun_from = 0
            if t >= self.mark and self._tick(t):
                return
            idle = True
            while heap and heap[0][0] <= t:
                due, item = heappop(heap)
                if start(due, item, t):
                    idle = False
            wait = min(POLL_S, max(0, heap[0][0] - t) // 1_000_000 / 1000) if heap else POLL_S
            events = poll(wait)
            if idle and not wait and not events:
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

    def _send_due(self, due: int, fd: int, t: int) -> bool:
        """Open loop: fd's next request, timed from when it was due."""
        if self.socks[fd] is None:
            return False
        self.sents[fd] = due
        self._send(fd, t)
        return True

    def _open_due(self, due: int, slot: int, t: int) -> bool:
        """Per request: a new connection for `slot`; its request goes once connected."""
        fd = self._open(slot, t)
        if fd < 0:
            self._retry(slot, t + RETRY_NS)
        else:
            # latency from the connect (closed loop) or the intended send time (--rate)
            self.sents[fd] = due if self.plan.rate else t
        return True

    def _on_connect(self, fd: int) -> None:
        t = time.monotonic_ns()
        if self._connected(fd, t):
            self._send(fd, t)
        else:
            self._retry(self.slot_of[fd], t + RETRY_NS)

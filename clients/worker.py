"""One load-generator worker process: a single non-blocking epoll loop over its share
of the connections (no thread per connection).

The parent drives each worker over a pipe:

1. the worker connects its connections, at most CONNECT_WINDOW in flight at once so
   the server's accept queue is fed gradually; each connect is timed into its own
   histogram; a refused connect or one past the timeout is counted and dropped;
2. it reports ("connected", n) and waits for ("start", t0, window_start, end): absolute
   CLOCK_MONOTONIC times, one clock for every process on the machine, so the warm-up
   and the measurement window start at the same instant in every worker;
3. it runs until `end`, then closes everything (requests still outstanding are not
   counted) and sends ("result", dict) back, or ("error", traceback) if it failed.

Latencies are kept as raw nanosecond integers in an `array('q')` and turned into an
HdrHistogram after the window. A reply is complete when exactly the expected bytes
have arrived; a reply split over several reads is compared piece by piece; extra or
different bytes are a mismatch and close that connection.

The hot path (`_run_closed`) is written for speed, because on one core a Python client
is only a little faster than a Python server: per-connection state lives in lists
indexed by file descriptor, methods and lists are bound to locals, reads and writes go
through os.read/os.write on the descriptor, a reply is checked with one `==` on bytes,
and the clock is read once per request: the reply time is also the send time of the
next request, written at once (holding requests back to send them in a burst after the
batch, as wrk does, measured no faster against the Python servers).
Everything unusual (partial reads or writes, errors, phase changes) leaves the hot path
for `_slow` or `_tick`.
"""

from __future__ import annotations

import errno
import heapq
import os
import resource
import select
import signal
import socket
import time
import traceback
from array import array
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe

from clients import hist, wire
from servers.launch import _die_with_parent

ERROR_KINDS = ("connect_refused", "connect_timeout", "reset", "timeout", "mismatch", "closed")
CONNECT_WINDOW = 64  # connects in flight per worker
POLL_S = 0.05  # longest sleep in epoll, so phase changes are noticed when nothing happens
SCAN_NS = 100_000_000  # how often to look for requests older than the timeout
SECOND_NS = 1_000_000_000
RECV_CAP = 256 * 1024
RETRY_NS = 10_000_000  # per-request mode: pause before reconnecting after a failed connect
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux >= 4.2
IN, OUT = select.EPOLLIN, select.EPOLLOUT


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    family: int
    address: tuple
    protocol: str
    payload: int
    mode: str  # "persistent" or "per-request"
    connections: int  # this worker's share
    first: int  # global number of this worker's first connection
    total: int  # connections over all workers
    rate: float | None  # the asked rate over all workers, requests/s; None: closed loop
    timeout: float
    cpus: tuple[int, ...] | None
    parent_pid: int
    # per-request mode: source addresses to rotate over (see clients.loadgen's docs)
    sources: tuple[str, ...] = ()
    # closed loop: busy-poll this long before sleeping in epoll (0: never); only for a
    # worker with a CPU of its own (see _run_closed)
    spin_us: int = 0


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_main(plan: WorkerPlan, pipe: Pipe) -> None:
    """Process entry point (multiprocessing target)."""
    _die_with_parent()
    if os.getppid() != plan.parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler: just die
    try:
        if plan.cpus:
            os.sched_setaffinity(0, plan.cpus)
        raise_fd_limit()
        worker = Worker(plan)
        try:
            worker.connect_all()
            pipe.send(("connected", worker.established))
            message = pipe.recv()
            if message[0] != "start":
                return
            pipe.send(("result", worker.run(*message[1:])))
        finally:
            worker.close()
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone: nobody to report to
    except BaseException:
        pipe.send(("error", traceback.format_exc()))


def _error_kind(exc: OSError) -> str:
    if exc.errno == errno.ETIMEDOUT:
        return "timeout"  # the kernel gave up retransmitting
    return "reset"  # ECONNRESET, EPIPE and other failures of an open connection


class Worker:
    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.ep = select.epoll()
        self.timeout_ns = int(plan.timeout * SECOND_NS)
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.lat = array("q")  # reply latencies in the window, ns
        self.connect_lat = array("q")  # connect latencies, ns
        n_variants = wire.variants(plan.payload) if plan.protocol == "echo" else 1
        self.exchanges = [wire.exchange(plan.protocol, plan.payload, v)
                          for v in range(n_variants)]
        self.reqlen = len(self.exchanges[0][0])
        self.explen = len(self.exchanges[0][1])
        # Read one byte more than a reply, so that a trailing extra byte is a mismatch.
        self.rsize = min(self.explen + 1, RECV_CAP)
        # Per-descriptor state in lists indexed by fd (grown on demand): cheaper in the
        # hot path than attributes of a per-connection object.
        self.socks: list[socket.socket | None] = []
        self.reqs: list[bytes] = []
        self.fulls: list[bytes] = []  # the whole expected reply
        self.exps: list[bytes | None] = []  # what the hot path compares with; None: slow
        self.offs: list[int] = []  # bytes of the current reply received so far
        self.outs: list[memoryview | None] = []  # request bytes the socket did not take
        self.sents: list[int] = []  # latency origin: send time, or intended send time
        self.issued: list[int] = []  # actual send time; 0 when nothing is outstanding
        self.counts: list[int] = []  # requests completed, per fd (persistent mode)
        self.slot_of: list[int] = []  # fd -> connection slot
        self._per_fd = ((self.socks, None), (self.reqs, b""), (self.fulls, b""),
                        (self.exps, None), (self.offs, 0), (self.outs, None),
                        (self.sents, 0), (self.issued, 0), (self.counts, 0),
                        (self.slot_of, -1))
        self.live: set[int] = set()  # connected descriptors
        self.connecting: dict[int, int] = {}  # fd -> connect start time
        n = plan.connections
        self.slot_fd = [-1] * n  # persistent mode: the slot's one connection
        self.slot_count = [0] * n  # per-request mode: requests completed per slot
        self.slot_ok = [False] * n  # connected at least once
        self.src_next = plan.first
        self.heap: list[tuple[int, int]] = []  # (time, fd or slot) of scheduled sends
        self.interval_ns = int(plan.total * SECOND_NS / plan.rate) if plan.rate else 0
        self.pending = self.issued  # where the timeout scan looks (sents in closed mode)
        # phases, set by run()
        self.warming = True
        self.window_start = self.end = self.next_slice = self.next_scan = 0
        self.mark = 0  # the next time _tick has something to do
        self.sliced = 0
        self.timeline: list[int] = []
        self.cpu0 = self.cpu1 = 0.0
        self.spin_ns = 0  # time spent busy-waiting (excluded from the CPU figure)

    @property
    def established(self) -> int:
        return sum(self.slot_ok)

    # -- descriptors -------------------------------------------------------------------

    def _ensure(self, fd: int) -> None:
        if fd >= len(self.socks):
            grow = fd + 1025 - len(self.socks)
            for values, default in self._per_fd:
                values.extend([default] * grow)

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
        self.sents[fd] = self.issued[fd] = self.counts[fd] = 0
        self.slot_of[fd] = slot
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
            err = exc.errno
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
        expired = [fd for fd, started in self.connecting.items()
                   if t - started > self.timeout_ns]
        for fd in expired:
            self.errors["connect_timeout"] += 1
            self._close(fd)
        return expired

    def _close(self, fd: int) -> None:
        """Close fd; the counts of its slot stay (a dead connection keeps what it did)."""
        sock = self.socks[fd]
        if sock is None:
            return
        self.socks[fd] = self.exps[fd] = self.outs[fd] = None
        self.issued[fd] = 0
        self.live.discard(fd)
        self.connecting.pop(fd, None)
        sock.close()  # also leaves the epoll set: the descriptor is never shared

    def close(self) -> None:
        for fd in [*self.live, *self.connecting]:
            self._close(fd)
        self.ep.close()

    # -- connect phase (persistent mode) -----------------------------------------------

    def connect_all(self) -> None:
        """Connect every connection, at most CONNECT_WINDOW at a time."""
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

    # -- the run -------------------------------------------------------------------------

    def run(self, t0: int, window_start: int, end: int) -> dict:
        """Warm up from t0, measure from window_start to end; the worker's result."""
        self.window_start, self.end = window_start, end
        self.next_slice = window_start + SECOND_NS
        self.mark = window_start
        delay = t0 - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / SECOND_NS)
        now = time.monotonic_ns()
        self.next_scan = now + SCAN_NS
        if self.plan.mode == "per-request":
            self._run_per_request(now)
        elif self.plan.rate:
            self._run_paced(now)
        else:
            self.pending = self.sents  # the hot path keeps only sents up to date
            for fd in sorted(self.live):
                self.sents[fd] = t = time.monotonic_ns()
                self._send(fd, t)
            self._run_closed()
        return self._result()

    def _result(self) -> dict:
        if self.plan.mode == "persistent":
            per_conn = [self.counts[fd] if fd >= 0 else 0 for fd in self.slot_fd]
        else:
            per_conn = list(self.slot_count)
        starved = sum(1 for ok, n in zip(self.slot_ok, per_conn, strict=True) if ok and not n)
        requests = len(self.lat)
        return {
            "requests": requests,
            "bytes": requests * self.explen,
            "latency": hist.encode(hist.from_values(self.lat, 1000)),
            "connect": hist.encode(hist.from_values(self.connect_lat, 1000)),
            "errors": dict(self.errors),
            "per_conn": per_conn,
            "established": self.established,
            "starved": starved,
            "timeline": self.timeline,
            # busy-waiting is not work: it would pass for saturation
            "cpu_s": max(0.0, self.cpu1 - self.cpu0 - self.spin_ns / SECOND_NS),
        }

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

    # -- failures and the slow path ------------------------------------------------------

    def _fail(self, fd: int, kind: str) -> None:
        if self.socks[fd] is None:
            return
        self.errors[kind] += 1
        self._close(fd)
        self._retry(self.slot_of[fd], time.monotonic_ns())

    def _retry(self, slot: int, when: int) -> None:
        """Persistent mode goes on with the connections it has; per-request mode
        starts the slot's next connection."""
        if self.plan.mode == "per-request":
            heapq.heappush(self.heap, (when, slot))

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
            self._fail(fd, _error_kind(got))
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
        self.lat.append(t - self.sents[fd])
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

    def _send(self, fd: int, t: int) -> None:
        """Send fd's request; what the socket does not take waits for EPOLLOUT."""
        self.issued[fd] = t
        try:
            sent = os.write(fd, self.reqs[fd])
        except OSError as exc:
            sent = exc
        self._sent(fd, sent)

    def _sent(self, fd: int, sent: int | OSError) -> None:
        request = self.reqs[fd]
        if isinstance(sent, BlockingIOError):
            sent = 0
        elif isinstance(sent, OSError):
            self._fail(fd, _error_kind(sent))
            return
        if sent == len(request):
            self.exps[fd] = self.fulls[fd]
            return
        self.outs[fd] = memoryview(request)[sent:]
        self.exps[fd] = None
        self.ep.modify(fd, IN | OUT)

    def _flush(self, fd: int) -> None:
        out = self.outs[fd]
        try:
            sent = os.write(fd, out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(fd, _error_kind(exc))
            return
        if sent < len(out):
            self.outs[fd] = out[sent:]
            return
        self.outs[fd] = None
        self.ep.modify(fd, IN)
        if self.offs[fd] == 0:
            self.exps[fd] = self.fulls[fd]

    def _wait(self, t: int) -> float:
        """How long epoll may sleep: until the next scheduled send, rounded down to
        whole milliseconds (epoll's unit); under a millisecond it polls without sleeping,
        so open-loop sends leave on time rather than up to 1 ms late."""
        if not self.heap:
            return POLL_S
        return min(POLL_S, max(0, self.heap[0][0] - t) // 1_000_000 / 1000)

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
                    lat_append(t - sents[fd])
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

    # -- open loop, persistent connections -----------------------------------------------

    def _run_paced(self, t0: int) -> None:
        """Each connection sends on its own schedule (every connections/rate seconds,
        staggered over connections), one request outstanding at a time, like wrk2.
        Latency counts from the intended send time, so a server stall shows in full
        instead of being hidden by the client's waiting (coordinated omission)."""
        plan, heap = self.plan, self.heap
        step = SECOND_NS / plan.rate  # between consecutive sends over all connections
        heap.extend((t0 + int((plan.first + slot) * step), fd)
                    for slot, fd in enumerate(self.slot_fd) if fd in self.live)
        heapq.heapify(heap)
        poll, read, now = self.ep.poll, os.read, time.monotonic_ns
        exps, socks, sents, rsize = self.exps, self.socks, self.sents, self.rsize
        slow, complete, send, heappop = self._slow, self._complete, self._send, heapq.heappop
        spun_from = 0
        while True:
            t = now()
            if spun_from:
                self.spin_ns += t - spun_from
                spun_from = 0
            if t >= self.mark and self._tick(t):
                return
            idle = True
            while heap and heap[0][0] <= t:
                due, fd = heappop(heap)
                if socks[fd] is not None:
                    sents[fd] = due
                    send(fd, t)
                    idle = False
            wait = self._wait(t)
            events = poll(wait)
            if idle and not wait and not events:
                spun_from = t
            for fd, ev in events:
                try:
                    data = read(fd, rsize)
                except OSError as exc:
                    data = exc
                if data == exps[fd]:
                    if complete(fd, now()):
                        return
                elif slow(fd, ev, data):
                    return

    # -- a new connection per request ----------------------------------------------------

    def _run_per_request(self, t0: int) -> None:
        """Each slot loops: connect, send, read the whole reply, close. Latency counts
        from the connect (closed loop) or from the intended send time (with --rate);
        new sockets are opened only between batches of events, so a descriptor number
        reused by a new socket never receives an event meant for the old one."""
        plan, heap = self.plan, self.heap
        step = SECOND_NS / plan.rate if plan.rate else 0
        heap.extend((t0 + int((plan.first + slot) * step), slot)
                    for slot in range(plan.connections))
        heapq.heapify(heap)
        poll, read, now = self.ep.poll, os.read, time.monotonic_ns
        exps, sents, rsize, connecting = self.exps, self.sents, self.rsize, self.connecting
        slow, complete, heappop = self._slow, self._complete, heapq.heappop
        spun_from = 0
        while True:
            t = now()
            if spun_from:
                self.spin_ns += t - spun_from
                spun_from = 0
            if t >= self.mark and self._tick(t):
                return
            idle = True
            while heap and heap[0][0] <= t:
                due, slot = heappop(heap)
                idle = False
                fd = self._open(slot, t)
                if fd < 0:
                    self._retry(slot, t + RETRY_NS)
                else:
                    sents[fd] = due if step else t
            wait = self._wait(t)
            events = poll(wait)
            if idle and not wait and not events:
                spun_from = t
            for fd, ev in events:
                if fd in connecting:
                    t = now()
                    if self._connected(fd, t):
                        self._send(fd, t)
                    else:
                        self._retry(self.slot_of[fd], t + RETRY_NS)
                    continue
                try:
                    data = read(fd, rsize)
                except OSError as exc:
                    data = exc
                if data == exps[fd]:
                    if complete(fd, now()):
                        return
                elif slow(fd, ev, data):
                    return

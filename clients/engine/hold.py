"""Idle connections held open (issue 25): check, connect, warm up, watch, report.

`prepare` checks a HoldConfig before any work, refusing with a ConfigError (one line for
the user): a target outside loopback unless allowed, more connections than this
process's descriptor limit lets it hold (`most_held`), a bad payload or source range.
`Holder` then does the work in phases:

- `connect`: every connection through the load generator's own connect machinery
  (clients.engine.connections: at most 64 connects in flight, each bound with
  IP_BIND_ADDRESS_NO_PORT to a source address taken round-robin), timed.
- `warm` (warm mode): each connection sends one request and reads its whole reply,
  checked (echo byte for byte, http by clients.http_reply's parser), at most 64 in
  flight; then it stays silent. A thread-per-connection server has then made its thread
  and touched a buffer, as it would for a client that went quiet.
- `hold`: watch every connection (epoll: readable data, EPOLLRDHUP, EPOLLHUP, errors)
  until a stop signal (the caller's) or EOF on the stop descriptor (stdin): a connection
  the server closes, or bytes it sends unasked, are counted.

In the slow modes (docs/slow.md) there is no warm-up, and the hold is clients.engine.slow's
loop: each connection keeps sending requests a byte at a time (slow-sender), or reading
replies a byte at a time (slow-reader), each reply checked, until the stop.

`report` gives the counts as a clients.hold_report.HoldReport at either stage.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import select
import time
from collections import deque
from dataclasses import dataclass, field

from clients import wire
from clients.engine.config import FD_RESERVE, ConfigError, LoadConfig, resolve, source_addresses
from clients.engine.connections import CONNECT_WINDOW, POLL_S, Connections
from clients.engine.plan import WorkerPlan
from clients.engine.slow import SLOW_MODES, SlowLoop, read_or_close
from clients.errors import error_kind
from clients.hold_report import LOST_KINDS, REFUSED_KINDS, HoldReport, SlowCounts
from clients.http_reply import Expectation, ParseError, ReplyParser
from clients.options import PROTOCOLS
from clients.target import is_loopback, split_target
from common.process import raise_fd_limit

HOLD_MODES = ("warm", "silent", *SLOW_MODES)
# Slow modes: between two bytes of a request sent, or of a reply read. 10 ms keeps a
# 64-byte echo request (68 bytes) on the wire for 0.68 s: docs/slow.md.
DEFAULT_INTERVAL_MS = 100.0  # docs/slow.md: shorter, the holders load the client CPU
MAX_INTERVAL_MS = 60_000.0
# Connections per source address by default. Each address has the ephemeral range's
# ~28,000 ports towards one server, but connect() searches longer for a free one as the
# range fills: 19,936 connects took 4.9 s from one address, 0.8 s from 2, 0.7 s from 8.
PER_SOURCE = 5_000
FIRST_SOURCE = 2  # 127.0.0.2 on: the active connections keep 127.0.0.1 to themselves
LAST_SOURCE = 254
MAX_HOLD_PAYLOAD = 64 * 1024  # an idle connection's one request is small
WARM_WINDOW = CONNECT_WINDOW  # warm-up requests in flight, paced as the connects are
READ = 64 * 1024
SWEEPS = 100  # rounds of epoll at the stop, at most
IN, OUT = select.EPOLLIN, select.EPOLLOUT
WATCH = select.EPOLLIN | select.EPOLLRDHUP  # EPOLLHUP and EPOLLERR come unasked


@dataclass(frozen=True)
class HoldConfig:
    target: str  # HOST:PORT, [V6]:PORT
    connections: int
    mode: str = "warm"
    protocol: str = "echo"
    payload: int | None = None  # None: 64 for echo, 0 (GET /) for http
    sources: int | None = None  # None: one per PER_SOURCE connections
    first_source: int = FIRST_SOURCE  # the last byte of the first source address
    allow_remote: bool = False
    timeout: float = 5.0  # seconds for a connect, and for a warm-up reply
    interval_ms: float = DEFAULT_INTERVAL_MS  # slow modes: between two bytes


@dataclass(frozen=True)
class HoldPlan:
    config: HoldConfig
    payload: int
    worker: WorkerPlan  # what clients.engine.connections connects


def most_held(hard_limit: int | None = None) -> int:
    """The most connections one process can hold under the hard RLIMIT_NOFILE (this
    process's, unless given), keeping FD_RESERVE descriptors for everything else."""
    if hard_limit is None:
        hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard_limit == resource.RLIM_INFINITY:
        hard_limit = 1 << 20  # Linux's fs.nr_open default caps it there anyway
    return max(0, hard_limit - FD_RESERVE)


def default_sources(connections: int) -> int:
    return max(1, math.ceil(connections / PER_SOURCE))


def prepare(config: HoldConfig) -> HoldPlan:
    """Check `config` before any work (ConfigError, one line) and plan the connects.
    Raises the soft descriptor limit to the hard one on the way."""
    if config.mode not in HOLD_MODES:
        raise ConfigError(f"mode {config.mode!r} is not one of {', '.join(HOLD_MODES)}")
    if config.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {config.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if config.connections < 1:
        raise ConfigError("connections must be at least 1")
    payload = config.payload
    if payload is None:
        payload = 64 if config.protocol == "echo" else 0
    if not 0 <= payload <= MAX_HOLD_PAYLOAD:
        raise ConfigError(f"payload must be 0 to {MAX_HOLD_PAYLOAD} bytes")
    if not (config.timeout > 0 and math.isfinite(config.timeout)):
        raise ConfigError("timeout must be a positive number of seconds")
    if not 0 < config.interval_ms <= MAX_INTERVAL_MS:
        raise ConfigError(f"interval must be above 0 and at most {MAX_INTERVAL_MS:g} ms")
    try:
        host, _port = split_target(config.target)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not config.allow_remote and not is_loopback(host):
        raise ConfigError(
            f"target {host} is not a loopback address; pass --allow-remote to hold "
            "connections to another machine"
        )
    most = most_held(raise_fd_limit())
    if config.connections > most:
        raise ConfigError(
            f"{config.connections} connections are more than one process can hold here "
            f"(at most {most}: RLIMIT_NOFILE {most + FD_RESERVE} less {FD_RESERVE} kept "
            "for other descriptors); split them over several holders"
        )
    count = config.sources or default_sources(config.connections)
    if config.first_source < 1 or config.first_source + count - 1 > LAST_SOURCE:
        raise ConfigError(
            f"source addresses 127.0.0.{config.first_source} to "
            f"127.0.0.{config.first_source + count - 1} are outside 127.0.0.1-{LAST_SOURCE}"
        )
    family, address = resolve(LoadConfig(target=config.target, allow_remote=config.allow_remote))
    worker = WorkerPlan(
        index=0,
        family=family,
        address=address,
        protocol=config.protocol,
        payload=payload,
        mode="persistent",
        connections=config.connections,
        first=0,
        total=config.connections,
        rate=None,
        timeout=config.timeout,
        cpus=None,
        parent_pid=os.getpid(),
        sources=source_addresses(family, address, count, config.first_source),
    )
    return HoldPlan(config, payload, worker)


@dataclass
class _Pending:
    """A warm-up exchange under way on one connection."""

    deadline: int  # monotonic ns
    out: memoryview | None  # request bytes the socket has not taken yet
    got: bytearray = field(default_factory=bytearray)  # echo: the reply so far
    blocked: bool = False  # waiting for EPOLLOUT to send the rest
    parser: ReplyParser | None = None  # http


class Holder:
    """The connections of one holder process, through every phase."""

    def __init__(self, plan: HoldPlan) -> None:
        self.plan = plan
        self.conns = Connections(plan.worker)
        self.warmed = self.bad_replies = self.closed_by_server = 0
        self.lost = dict.fromkeys(LOST_KINDS, 0)
        self.unasked: set[int] = set()  # descriptors that got bytes nobody asked for
        self.held = 0
        self.connect_s = self.warm_s = 0.0
        self.ready_at: float | None = None  # monotonic time of the ready report
        http = plan.config.protocol == "http"
        self.expect = Expectation(200, wire.http_body(plan.payload)) if http else None
        self.pending: dict[int, _Pending] = {}
        self.stop_fd: int | None = None  # watched in the hold: EOF ends it
        self.waiting: set[int] = set()  # warm mode: connections whose warm-up is to come
        self.slow: SlowLoop | None = None  # slow modes: the exchanges, from the hold on

    # -- phases --------------------------------------------------------------------------

    def connect(self) -> None:
        start = time.monotonic()
        self.conns.connect_all()
        self.connect_s = time.monotonic() - start
        for fd in self.conns.live:  # from now on a close or unasked bytes show
            self.conns.ep.modify(fd, WATCH)

    def warm(self) -> None:
        """Warm mode: one request and its verified reply per connection, at most
        WARM_WINDOW in flight, each with the timeout from its send."""
        if self.plan.config.mode != "warm":
            return
        start = time.monotonic()
        todo = deque(sorted(self.conns.live))
        self.waiting = set(todo)
        timeout_ns = int(self.plan.config.timeout * 1e9)
        while todo or self.pending:
            while todo and len(self.pending) < WARM_WINDOW:
                fd = todo.popleft()
                self.waiting.discard(fd)
                if fd in self.conns.live:  # not closed by the server meanwhile
                    request = memoryview(self.conns.reqs[fd])
                    self.pending[fd] = _Pending(time.monotonic_ns() + timeout_ns, request)
                    self._flush(fd)
            for fd, events in self.conns.ep.poll(POLL_S):
                self._event(fd, events)
            now = time.monotonic_ns()
            for fd in [fd for fd, p in self.pending.items() if p.deadline < now]:
                self._lose(fd, "timeout")
        self.warm_s = time.monotonic() - start

    def mark_ready(self) -> HoldReport:
        """The ready report; the hold's clock starts."""
        self.held = len(self.conns.live)
        self.ready_at = time.monotonic()
        return self.report("ready")

    def hold(self, stop_fd: int | None) -> None:
        """Watch every connection until EOF on `stop_fd` (None: none; then only a
        signal, raised in the caller, ends the hold)."""
        ep = self.conns.ep
        self.stop_fd = stop_fd
        if self.plan.config.mode in SLOW_MODES:
            config = self.plan.config
            self.slow = SlowLoop(self.conns, config.mode, self.expect, config.interval_ms)
            self.slow.run(stop_fd)
            return
        if stop_fd is not None:
            ep.register(stop_fd, IN)
        while True:
            for fd, events in ep.poll():  # no timeout: nothing to do until an event
                if fd == stop_fd:
                    if not os.read(fd, READ):
                        return
                else:
                    self._event(fd, events)

    def sweep(self) -> None:
        """At the stop: count what already happened to the connections (a close that
        came with the stop is in the final report, whichever event was read first).
        A slow mode's counts are what its loop counted: its events are not idle ones."""
        if self.plan.config.mode in SLOW_MODES:
            return
        for _ in range(SWEEPS):  # bounded: a server may send unasked bytes for ever
            events = [(fd, ev) for fd, ev in self.conns.ep.poll(0) if fd != self.stop_fd]
            if not events:
                return
            for fd, ev in events:
                self._event(fd, ev)

    def report(self, stage: str) -> HoldReport:
        config, errors = self.plan.config, self.conns.errors
        final = stage == "final"
        return HoldReport(
            stage=stage,
            target=config.target,
            mode=config.mode,
            protocol=config.protocol,
            payload=self.plan.payload,
            sources=self.plan.worker.sources,
            asked=config.connections,
            established=self.conns.established,
            refused={kind: errors[kind] for kind in REFUSED_KINDS},
            warmed=self.warmed,
            bad_replies=self.bad_replies + (self.slow.bad_replies if self.slow else 0),
            lost=dict(self.lost),
            held=self.held,
            closed_by_server=self.closed_by_server
            + (self.slow.closed_by_server if self.slow else 0),
            unasked=len(self.unasked),
            connect_s=round(self.connect_s, 6),
            warm_s=round(self.warm_s, 6),
            open_at_end=len(self.conns.live) if final else None,
            held_s=round(time.monotonic() - self.ready_at, 3)
            if final and self.ready_at is not None
            else None,
            slow=self._slow_counts(),
        )

    def _slow_counts(self) -> SlowCounts | None:
        if self.slow is not None:
            return self.slow.counts()
        config = self.plan.config
        return SlowCounts(config.interval_ms, 0, 0, 0, 0, 0) if config.mode in SLOW_MODES else None

    def close(self) -> None:
        self.conns.close()

    # -- events --------------------------------------------------------------------------

    def _event(self, fd: int, events: int) -> None:
        pending = self.pending.get(fd)
        if pending is None:
            self._watch(fd, events)
            return
        if events & OUT and pending.out is not None:
            self._flush(fd)
        if fd in self.pending and events & ~OUT:
            self._read_reply(fd, pending)

    def _watch(self, fd: int, events: int) -> None:
        """A held connection had an event: bytes unasked, or the server's close."""
        if fd not in self.conns.live:
            return
        data = read_or_close(fd, events)
        if data is None:
            return
        if data:
            self.unasked.add(fd)  # read and dropped; the connection stays
            return
        if fd in self.waiting:  # closed before its warm-up began (a server out of fds)
            self.waiting.discard(fd)
            self._lose(fd, "closed")
            return
        self.closed_by_server += 1
        self.conns.drop(fd)

    def _flush(self, fd: int) -> None:
        pending = self.pending[fd]
        assert pending.out is not None
        try:
            sent = os.write(fd, pending.out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lose(fd, error_kind(exc))
            return
        if sent < len(pending.out):
            pending.out = pending.out[sent:]
            if not pending.blocked:
                pending.blocked = True
                self.conns.ep.modify(fd, WATCH | OUT)
            return
        pending.out = None
        if pending.blocked:
            self.conns.ep.modify(fd, WATCH)

    def _read_reply(self, fd: int, pending: _Pending) -> None:
        try:
            data = os.read(fd, READ)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose(fd, error_kind(exc))
            return
        if self.expect is None:
            self._echo_reply(fd, pending, data)
        else:
            self._http_reply(fd, pending, data)

    def _echo_reply(self, fd: int, pending: _Pending, data: bytes) -> None:
        if not data:
            self._lose(fd, "closed")
            return
        pending.got += data
        expected = self.conns.fulls[fd]
        assert expected is not None  # echo replies are always known bytes
        if pending.got != expected[: len(pending.got)] or len(pending.got) > len(expected):
            self._bad(fd)
        elif len(pending.got) == len(expected):
            self._warmed(fd)

    def _http_reply(self, fd: int, pending: _Pending, data: bytes) -> None:
        assert self.expect is not None
        if pending.parser is None:
            pending.parser = ReplyParser(max_body=len(self.expect.body))
        parser = pending.parser
        try:
            reply = next(parser.feed(data), None) if data else parser.eof()
        except ParseError:
            self._bad(fd)
            return
        if reply is None:
            if not data:
                self._lose(fd, "closed")  # closed before a reply
            return
        if not self.expect.accepts(reply) or not parser.idle:
            self._bad(fd)  # the wrong reply, or bytes after it
        else:
            self._warmed(fd)
            if not data:  # a reply framed by the close: the server closed it, after
                self._watch(fd, select.EPOLLHUP)

    def _warmed(self, fd: int) -> None:
        self.warmed += 1
        del self.pending[fd]

    def _bad(self, fd: int) -> None:
        self.bad_replies += 1
        self._end(fd)

    def _lose(self, fd: int, kind: str) -> None:
        self.lost[kind if kind in self.lost else "reset"] += 1
        self._end(fd)

    def _end(self, fd: int) -> None:
        self.pending.pop(fd, None)
        self.conns.drop(fd)


def stop_descriptor(fd: int = 0) -> int | None:
    """`fd` (stdin) if EOF on it can end a hold: a pipe, socket or terminal that epoll
    can watch; None for a file or /dev/null (then only a signal stops the holder)."""
    try:
        probe = select.epoll()
    except OSError:
        return None
    try:
        probe.register(fd, IN)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EBADF):
            raise
        return None
    finally:
        probe.close()
    return fd


__all__ = [
    "DEFAULT_INTERVAL_MS",
    "FIRST_SOURCE",
    "HOLD_MODES",
    "HoldConfig",
    "HoldPlan",
    "Holder",
    "MAX_HOLD_PAYLOAD",
    "PER_SOURCE",
    "default_sources",
    "most_held",
    "prepare",
    "stop_descriptor",
]

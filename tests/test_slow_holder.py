"""The holder's slow modes (clients.engine.slow, `python -m clients.holder --mode slow-*`):
real servers on 127.0.0.1, port 0, a few connections and a short interval. The exchanges
are driven step by step (SlowLoop.step) until what a test waits for has happened, or
synchronised on the holder's JSON lines and a test server's events, never on sleeps."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bench.run.server_process import ServerProcess
from clients import wire
from clients.engine.config import ConfigError
from clients.engine.hold import HoldConfig, Holder, prepare
from clients.engine.slow import READER_RCVBUF, TICK_NS, SlowLoop
from clients.hold_report import SCHEMA, HoldReport
from tests.helpers import TIMEOUT, ThreadedTestServer

pytestmark = pytest.mark.real

INTERVAL_MS = 1.0
MODES = ("slow-sender", "slow-reader")


@contextmanager
def slow_loop(
    target: str,
    mode: str,
    protocol: str = "echo",
    connections: int = 4,
    payload: int | None = None,
    interval_ms: float = INTERVAL_MS,
) -> Iterator[tuple[Holder, SlowLoop]]:
    """A holder's connections, connected, under a SlowLoop of `mode`; closed at the end."""
    config = HoldConfig(target, connections, mode, protocol, payload, interval_ms=interval_ms)
    plan = prepare(config)
    holder = Holder(plan)
    try:
        holder.connect()
        holder.warm()  # nothing in a slow mode
        assert holder.mark_ready().held == connections
        loop = SlowLoop(holder.conns, mode, holder.expect, plan.config.interval_ms)
        holder.slow = loop
        yield holder, loop
    finally:
        holder.close()


def step_until(loop: SlowLoop, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert time.monotonic() < deadline, "the slow exchanges did not get there in time"
        loop.step(0.05)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("protocol", "payload"), [("echo", 16), ("http", 0), ("http", 24)])
def test_every_slow_reply_is_checked_against_a_real_server(
    echo_server: ServerProcess,
    http_server: ServerProcess,
    mode: str,
    protocol: str,
    payload: int,
) -> None:
    server = echo_server if protocol == "echo" else http_server
    with slow_loop(f"127.0.0.1:{server.port}", mode, protocol, payload=payload) as (holder, loop):
        step_until(loop, lambda: loop.requests >= 12)
        assert (loop.bad_replies, loop.closed_by_server) == (0, 0)
        assert len(holder.conns.live) == 4
        request, reply = wire.exchange(protocol, payload)
        # every counted request went out whole and came back whole, checked
        assert loop.bytes_sent >= loop.requests * len(request)
        assert loop.bytes_read >= loop.requests * len(reply)
        # a byte slot each: a byte sent (sender), or read or tried (reader)
        assert loop.ticks >= (loop.bytes_read if mode == "slow-reader" else loop.bytes_sent)
        report = holder.report("final")
        assert report.slow is not None and report.slow.requests == loop.requests
        assert report.slow.interval_ms == INTERVAL_MS and report.bad_replies == 0


def test_the_connections_slots_are_spread_over_the_interval(echo_server: ServerProcess) -> None:
    with slow_loop(f"127.0.0.1:{echo_server.port}", "slow-sender", interval_ms=40.0) as (_, loop):
        dues = sorted(due for due, _fd in loop.heap)
        gaps = [b - a for a, b in zip(dues, dues[1:], strict=False)]
        assert len(dues) == 4 and all(gap == pytest.approx(10e6, abs=1e5) for gap in gaps)


def test_a_late_holder_does_not_catch_up_in_a_burst(echo_server: ServerProcess) -> None:
    """A holder that got no CPU for a while sends each connection's next byte, and the
    one after an interval later: never the bytes it missed at once."""
    target = f"127.0.0.1:{echo_server.port}"
    with slow_loop(target, "slow-sender", interval_ms=10.0) as (_, loop):
        late = time.monotonic_ns() - 1_000_000_000  # a second behind: 100 bytes due each
        loop.heap = [(late, fd) for _due, fd in loop.heap]
        loop.due = {fd: late for _due, fd in loop.heap}
        before = time.monotonic_ns()
        loop.step(0)
        assert loop.bytes_sent == 4 and loop.late == loop.ticks == 4  # one byte each, late
        assert min(loop.due.values()) >= before + 10_000_000 - 2 * TICK_NS


class _Recording(ThreadedTestServer):
    """An echo server that records the size of every read: how the request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    def _serve(self, conn: socket.socket) -> None:
        for data in self.received(conn):
            self.reads.append(len(data))
            conn.sendall(data)


def test_a_slow_sender_sends_one_byte_at_a_time() -> None:
    with _Recording() as server:
        with slow_loop(
            server.target, "slow-sender", connections=1, payload=4, interval_ms=20.0
        ) as (
            _,
            loop,
        ):
            step_until(loop, lambda: loop.requests >= 2)
            assert loop.bad_replies == 0
        assert len(server.reads) >= 16 and set(server.reads) == {1}  # 2 frames of 8 bytes


def test_a_slow_reader_reads_through_a_small_receive_buffer(echo_server: ServerProcess) -> None:
    with slow_loop(f"127.0.0.1:{echo_server.port}", "slow-reader", payload=16) as (holder, loop):
        for fd in holder.conns.live:
            sock = holder.conns.socks[fd]
            assert sock is not None
            # Linux doubles what was asked and keeps a floor; far below its default 128 KiB
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4 * READER_RCVBUF
        step_until(loop, lambda: loop.requests >= 4)
        # a reply is read a byte per step at most: never more than the requests' bytes
        assert loop.bytes_read <= loop.bytes_sent and loop.bad_replies == 0


class _Corrupting(ThreadedTestServer):
    """Answers each echo frame with its last byte changed."""

    def _serve(self, conn: socket.socket) -> None:
        got = b""
        for data in self.received(conn):
            got += data
            if len(got) >= 4 and len(got) >= 4 + struct.unpack(">I", got[:4])[0]:
                conn.sendall(got[:-1] + bytes([got[-1] ^ 0xFF]))
                got = b""


@pytest.mark.parametrize("mode", MODES)
def test_a_wrong_reply_closes_its_connection_and_counts(mode: str) -> None:
    with _Corrupting() as server, slow_loop(server.target, mode, payload=2) as (holder, loop):
        step_until(loop, lambda: not holder.conns.live)
        assert (loop.bad_replies, loop.requests, loop.closed_by_server) == (4, 0, 0)
        report = holder.report("final")
        assert report.bad_replies == 4 and report.open_at_end == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_closes_is_counted(server_factory: Callable, mode: str) -> None:
    server = server_factory("epoll")
    with slow_loop(f"127.0.0.1:{server.port}", mode) as (holder, loop):
        step_until(loop, lambda: loop.requests >= 4)
        server.stop()  # closes every connection
        step_until(loop, lambda: not holder.conns.live)
        assert loop.closed_by_server == 4 and loop.bad_replies == 0
        assert holder.report("final").closed_by_server == 4


class _Counting(ThreadedTestServer):
    """An echo server of whole frames that sets `answered` after its third reply."""

    def __init__(self) -> None:
        super().__init__()
        self.replies = 0
        self.answered = threading.Event()

    def _serve(self, conn: socket.socket) -> None:
        got = b""
        for data in self.received(conn):
            got += data
            if len(got) >= 4 and len(got) == 4 + struct.unpack(">I", got[:4])[0]:
                conn.sendall(got)
                got = b""
                self.replies += 1
                if self.replies >= 3:
                    self.answered.set()


def test_the_command_reports_its_exchanges() -> None:
    with _Counting() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clients.holder", "--target", server.target,
             "--connections", "2", "--mode", "slow-sender", "--payload", "2",
             "--interval-ms", "1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdin is not None
            ready = HoldReport.from_json(proc.stdout.readline())
            assert ready.stage == "ready" and ready.held == 2 and ready.warmed == 0
            assert ready.slow is not None and ready.slow.requests == 0
            assert server.answered.wait(TIMEOUT)
            proc.stdin.close()
            final = HoldReport.from_json(proc.stdout.readline())
            assert proc.wait(TIMEOUT) == 0
        finally:  # stopped by its pid, also on a failure
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    assert final.slow is not None and final.slow.requests >= 1  # the 3rd may be under way
    assert final.bad_replies == 0 and final.open_at_end == 2


def test_a_bad_interval_is_refused_before_any_connect() -> None:
    with pytest.raises(ConfigError, match="interval"):
        prepare(HoldConfig("127.0.0.1:1", 1, mode="slow-sender", interval_ms=0))
    done = subprocess.run(
        [sys.executable, "-m", "clients.holder", "--target", "127.0.0.1:1",
         "--connections", "1", "--mode", "slow-sender", "--interval-ms", "-1"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "python -m clients.holder: error: argument --interval-ms: expected a number > 0, got '-1'"
    ]


def test_a_report_of_schema_1_reads_with_no_slow_exchanges() -> None:
    report = HoldReport(
        "final", "127.0.0.1:1", "warm", "echo", 64, (), 1, 1, {}, 1, 0, {}, 1, 0, 0, 0.1, 0.1
    )
    old = {k: v for k, v in report.to_dict().items() if k != "slow"} | {"schema": 1}
    upgraded = HoldReport.from_json(json.dumps(old))
    assert upgraded.slow is None and upgraded.schema == SCHEMA == 2

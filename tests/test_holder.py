"""The idle-connection holder (python -m clients.holder): real servers on 127.0.0.1,
small counts, every step synchronised on the holder's JSON lines, never on sleeps."""

from __future__ import annotations

import json
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from clients.engine.config import FD_RESERVE
from clients.engine.hold import default_sources, most_held
from clients.hold_report import SCHEMA, HoldReport, HoldReportError
from tests.helpers import TIMEOUT, ThreadedTestServer

pytestmark = pytest.mark.real


class Holder:
    """`python -m clients.holder` as a child: its ready and final reports."""

    def __init__(self, *args: str, preexec_fn: Callable[[], None] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clients.holder", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )

    def line(self, timeout: float = TIMEOUT) -> HoldReport:
        """The next report; fails the test if none comes in time."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout), "no report from the holder in time"
        text = self.proc.stdout.readline()
        assert text, f"the holder ended: {self.stderr()}"
        return HoldReport.from_json(text)

    def end(self, stop: str = "eof") -> tuple[int, HoldReport]:
        """Stop it (stdin EOF, or a signal by name); its exit status and final report."""
        assert self.proc.stdin is not None
        if stop == "eof":
            self.proc.stdin.close()
        else:
            self.proc.send_signal(getattr(signal, stop))
        final = self.line()
        return self.proc.wait(TIMEOUT), final

    def finish(self) -> tuple[int, str, str]:
        """For a holder that ends by itself: exit status, stdout, stderr."""
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err

    def stderr(self) -> str:
        self.proc.kill()
        return self.proc.communicate()[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def holders() -> Iterator[Callable[..., Holder]]:
    started: list[Holder] = []

    def start(*args: str, **kwargs: Any) -> Holder:
        started.append(Holder(*args, **kwargs))
        return started[-1]

    yield start
    for holder in started:  # each stopped by its pid
        holder.kill()


def source_counts(pid: int, port: int) -> Counter[str]:
    """The holder's established connections to `port`, by source address."""
    return Counter(
        c.laddr.ip
        for c in psutil.Process(pid).net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: a connect to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_warm_echo_holds_every_connection_spread_over_the_sources(server_factory, holders):
    server = server_factory("epoll", "echo")
    target = f"127.0.0.1:{server.port}"
    holder = holders("--target", target, "--connections", "200", "--sources", "2")
    ready = holder.line()
    assert (ready.stage, ready.asked, ready.established) == ("ready", 200, 200)
    assert ready.warmed == ready.held == 200
    assert ready.bad_replies == sum(ready.lost.values()) == sum(ready.refused.values()) == 0
    assert ready.sources == ("127.0.0.2", "127.0.0.3")
    assert source_counts(holder.proc.pid, server.port) == {"127.0.0.2": 100, "127.0.0.3": 100}
    status, final = holder.end("eof")
    assert status == 0
    assert (final.stage, final.open_at_end, final.closed_by_server, final.unasked) == (
        "final",
        200,
        0,
        0,
    )
    assert final.held_s is not None and final.held_s >= 0
    server.stop()
    assert server.stopped is not None and server.stopped["accepted"] == 200


def test_silent_connections_never_speak(server_factory, holders):
    server = server_factory("epoll", "echo")
    holder = holders(
        "--target", f"127.0.0.1:{server.port}", "--connections", "100", "--mode", "silent"
    )
    ready = holder.line()
    assert (ready.mode, ready.established, ready.held, ready.warmed) == ("silent", 100, 100, 0)
    assert ready.warm_s == 0
    assert sum(source_counts(holder.proc.pid, server.port).values()) == 100
    status, final = holder.end("SIGTERM")
    assert (status, final.open_at_end) == (0, 100)
    server.stop()
    assert server.stopped is not None
    assert server.stopped["accepted"] == 100 and server.stopped["protocol_errors"] == 0


@pytest.mark.parametrize("payload", ["0", "32"])
def test_http_warm_up_is_verified(http_server, holders, payload):
    holder = holders(
        "--target",
        f"127.0.0.1:{http_server.port}",
        "--connections",
        "50",
        "--protocol",
        "http",
        "--payload",
        payload,
    )
    ready = holder.line()
    assert (ready.protocol, ready.payload, ready.warmed, ready.held) == (
        "http",
        int(payload),
        50,
        50,
    )
    status, final = holder.end("eof")
    assert (status, final.open_at_end, final.bad_replies) == (0, 50, 0)


def test_the_other_protocol_is_held_by_nothing(echo_server, holders):
    """http against an echo server: the server closes each one; nothing held, exit 1."""
    holder = holders(
        "--target", f"127.0.0.1:{echo_server.port}", "--connections", "20", "--protocol", "http"
    )
    status, out, err = holder.finish()
    ready = HoldReport.from_json(out.splitlines()[0])
    assert status == 1 and ready.established == 20 and ready.held == ready.warmed == 0
    assert ready.lost["closed"] + ready.bad_replies == 20
    assert "none left after the warm-up" in err


@pytest.mark.parametrize("stop", ["eof", "SIGTERM", "SIGINT"])
def test_each_stop_gives_the_final_report_and_exit_0(echo_server, holders, stop):
    holder = holders("--target", f"127.0.0.1:{echo_server.port}", "--connections", "10")
    assert holder.line().held == 10
    status, final = holder.end(stop)
    assert (status, final.stage, final.open_at_end) == (0, "final", 10)
    assert holder.proc.stdout is not None and holder.proc.stdout.read() == ""  # two lines


def test_a_refused_target_is_counted_and_exits_1(dead_port, holders):
    holder = holders("--target", f"127.0.0.1:{dead_port}", "--connections", "30")
    status, out, err = holder.finish()
    [line] = out.splitlines()
    ready = HoldReport.from_json(line)
    assert status == 1
    assert (ready.established, ready.refused["connect_refused"], ready.held) == (0, 30, 0)
    assert "no connection was established" in err and len(err.splitlines()) == 1


def test_a_remote_target_is_refused_before_any_connect(holders):
    holder = holders("--target", "192.0.2.1:80", "--connections", "5")  # TEST-NET-1
    status, out, err = holder.finish()
    assert (status, out) == (2, "")
    assert "not a loopback address" in err and len(err.splitlines()) == 1


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_more_than_the_descriptor_limit_is_refused_before_any_connect(holders):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        holder = holders(
            "--target", f"127.0.0.1:{port}", "--connections", "300", preexec_fn=_limit_descriptors
        )
        status, out, err = holder.finish()
        assert (status, out) == (2, "")
        assert f"at most {256 - FD_RESERVE}" in err and "several holders" in err
        assert len(err.splitlines()) == 1
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


def test_a_server_that_dies_closes_every_connection(server_factory, holders):
    server = server_factory("epoll", "echo")
    port = server.port
    holder = holders("--target", f"127.0.0.1:{port}", "--connections", "100")
    ready = holder.line()
    assert ready.held == 100
    server.kill()
    # the kernel closed the server's ends: wait until the holder's ends saw it
    deadline = time.monotonic() + TIMEOUT
    while source_counts(holder.proc.pid, port) and time.monotonic() < deadline:
        time.sleep(0.01)
    status, final = holder.end("eof")
    assert status == 0
    assert final.closed_by_server == final.established == 100
    assert final.open_at_end == 0


class _Chatty(ThreadedTestServer):
    """Says hello to every connection, unasked, and keeps it open."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.greeted = 0

    def _serve(self, conn: socket.socket) -> None:
        conn.sendall(b"hello")
        with self.lock:
            self.greeted += 1
        while not self.stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


def test_bytes_sent_unasked_are_counted(holders):
    with _Chatty() as server:
        holder = holders("--target", server.target, "--connections", "10", "--mode", "silent")
        ready = holder.line()
        assert ready.held == 10
        # the greetings may come before or after the ready line: the sweep at the stop
        # counts those still unread
        deadline = time.monotonic() + TIMEOUT
        while server.greeted < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, final = holder.end("eof")
    assert (status, final.unasked, final.open_at_end, final.closed_by_server) == (0, 10, 10, 0)


# -- the report record ---------------------------------------------------------------------


def _report(**changes: Any) -> HoldReport:
    values: dict[str, Any] = {
        "stage": "final",
        "target": "127.0.0.1:1",
        "mode": "warm",
        "protocol": "echo",
        "payload": 64,
        "sources": ("127.0.0.2",),
        "asked": 10,
        "established": 9,
        "refused": {"connect_refused": 1, "connect_timeout": 0},
        "warmed": 9,
        "bad_replies": 0,
        "lost": {"reset": 0, "timeout": 0, "closed": 0},
        "held": 9,
        "closed_by_server": 2,
        "unasked": 1,
        "connect_s": 0.01,
        "warm_s": 0.02,
        "open_at_end": 7,
        "held_s": 3.5,
    }
    return HoldReport(**{**values, **changes})


def test_the_report_round_trips_through_json():
    report = _report()
    assert HoldReport.from_json(report.to_json()) == report
    ready = _report(stage="ready", open_at_end=None, held_s=None)
    assert HoldReport.from_json(ready.to_json()) == ready
    assert json.loads(report.to_json())["schema"] == SCHEMA == 2


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"schema": 3}, "newer"),
        ({"schema": 0}, "older"),
        ({"schema": None}, "no version"),
        ({"stage": "later"}, "stage"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_the_report_refuses_another_schema_or_shape(change, words):
    data = {**_report().to_dict(), **change}
    with pytest.raises(HoldReportError, match=words):
        HoldReport.from_json(json.dumps(data))


def test_limits_and_defaults():
    assert most_held(20_000) == 20_000 - FD_RESERVE
    assert [default_sources(n) for n in (1, 5_000, 5_001, 19_936)] == [1, 1, 2, 4]

"""Per-request server work: `cpu:US` and `wait:US`, honoured by every model."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from servers.protocol import EchoProtocol, Limits
from servers.work import Work, WorkingProtocol, parse_work, work_factory
from tests.helpers import AVAILABLE, connect, exchange, frame


def test_parse_work() -> None:
    assert parse_work("cpu:100") == Work(cpu_us=100)
    assert parse_work("wait:1000") == Work(wait_us=1000)
    assert not parse_work("")
    for bad in ("sleep:1", "cpu:", "cpu:-5", "wait"):
        with pytest.raises(ValueError):
            parse_work(bad)


def test_working_protocol_holds_per_request_answered() -> None:
    protocol = WorkingProtocol(EchoProtocol(), Work(wait_us=1000))
    assert protocol.feed(frame(b"a") + frame(b"b") + b"\x00") == frame(b"a") + frame(b"b")
    assert protocol.hold_s == pytest.approx(0.002)
    assert protocol.feed(b"\x00") == b"" and protocol.hold_s == 0


def test_cpu_work_burns_cpu_per_request() -> None:
    protocol = WorkingProtocol(EchoProtocol(), Work(cpu_us=20_000))
    start = time.process_time()
    protocol.feed(frame(b"x") * 3)
    assert time.process_time() - start >= 0.05  # 3 x 20 ms of CPU, not of sleep


def test_injected_delay_spins_nanoseconds_per_request() -> None:
    protocol = WorkingProtocol(EchoProtocol(), Work(inject_ns=2_000_000))
    start = time.perf_counter()
    assert protocol.feed(frame(b"x") * 3) == frame(b"x") * 3
    assert time.perf_counter() - start >= 0.006  # 3 x 2 ms
    start = time.perf_counter()
    protocol.feed(frame(b"x")[:3])  # half a request: nothing answered, nothing owed
    assert time.perf_counter() - start < 0.002


@pytest.mark.real
@pytest.mark.parametrize("model", AVAILABLE)
def test_wait_work_delays_replies_and_overlaps_except_when_blocking(server_factory, model):
    server = server_factory(model, "echo", "--work", "wait:300000")  # 300 ms per request
    work = {"cpu_us": 0, "wait_us": 300000, "inject_ns": 0, "inject_work": 0}
    assert server.ready["work"] == work
    count = 1 if model == "blocking" else 8
    socks = [connect(server.port) for _ in range(count)]
    try:
        start = time.monotonic()
        for i, sock in enumerate(socks):
            sock.sendall(frame(b"%d" % i) + frame(b"second"))
        for i, sock in enumerate(socks):  # in order: the second reply waits behind the first
            expected = frame(b"%d" % i) + frame(b"second")
            assert exchange(sock, b"", len(expected)) == expected
        elapsed = time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()
    # Two requests per connection, 300 ms each, run one after the other per connection
    # (a thread's sleep, or a held reply behind another): at least 0.6 s. Connections
    # wait side by side: 8 connections in far less than 8 x 0.6 s.
    assert elapsed >= 0.55
    assert elapsed < 2.5


def test_injection_alone_subclasses_the_protocol_and_spins_per_request() -> None:
    make = work_factory("echo", Limits(), Work(inject_ns=2_000_000))
    protocol = make()
    assert isinstance(protocol, EchoProtocol) and not isinstance(protocol, WorkingProtocol)
    start = time.perf_counter()
    assert protocol.feed(frame(b"x") * 3) == frame(b"x") * 3
    assert time.perf_counter() - start >= 0.006  # 3 x 2 ms
    assert protocol.answered == 3 and protocol.hold_s == 0.0
    start = time.perf_counter()
    protocol.feed(frame(b"x")[:3])  # half a request: nothing answered, nothing owed
    assert time.perf_counter() - start < 0.002


def test_injection_with_other_work_keeps_the_wrapper() -> None:
    protocol = work_factory("echo", Limits(), Work(wait_us=1000, inject_ns=10))()
    assert isinstance(protocol, WorkingProtocol)
    assert isinstance(work_factory("echo", Limits(), Work())(), EchoProtocol)


@pytest.mark.parametrize("work", [Work(inject_work=7), Work(wait_us=1, inject_work=7)])
def test_injected_work_loops_a_fixed_count_per_request(
    work: Work, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop runs 7 times per request answered, whichever path carries it; a count,
    not a time, so that its cost in instructions is the same on any machine."""
    import servers.work as module

    lengths: list[int] = []

    def recording_repeat(value: None, n: int) -> Iterator[None]:
        lengths.append(n)
        return itertools.repeat(value, n)

    monkeypatch.setattr(module, "repeat", recording_repeat)
    protocol = work_factory("echo", Limits(), work)()
    assert protocol.feed(frame(b"x") * 3) == frame(b"x") * 3
    protocol.feed(frame(b"x")[:3])  # half a request: nothing owed
    assert sum(lengths) == 21

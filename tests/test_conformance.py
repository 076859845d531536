"""The conformance suite: every model in the registry, same wire behaviour.

A new model is tested by adding its row to servers.MODELS. Each model gets one echo
server for the whole module; the last test checks it still serves and stops cleanly.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

import pytest

from bench.run.server_process import ServerProcess
from tests.helpers import (
    AVAILABLE,
    connect,
    echo_roundtrip,
    exchange,
    frame,
    recv_exactly,
    recv_until_eof,
    send_until_stalled,
)

pytestmark = pytest.mark.real  # real servers and load: not in `make test-fast`


@pytest.fixture(scope="module", params=AVAILABLE)
def echo_server(request: pytest.FixtureRequest):
    server = ServerProcess(request.param, "echo").start()
    yield server
    server.stop()


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 4 * 1024 * 1024])
def test_echo_payload_sizes(echo_server: ServerProcess, size: int) -> None:
    payload = os.urandom(size)
    with connect(echo_server.port) as sock:
        assert exchange(sock, frame(payload), 4 + size) == frame(payload)


def test_byte_at_a_time(echo_server: ServerProcess) -> None:
    data = frame(bytes(range(200)))
    with connect(echo_server.port) as sock:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
        assert recv_exactly(sock, len(data)) == data


def test_100_pipelined_frames_answered_in_order(echo_server: ServerProcess) -> None:
    data = b"".join(frame(f"request {i:03d}".encode() * (i % 7)) for i in range(100))
    with connect(echo_server.port) as sock:
        sock.sendall(data)
        assert recv_exactly(sock, len(data)) == data


def _assert_closed_by_server(sock: socket.socket) -> None:
    try:
        assert recv_until_eof(sock) == b""
    except ConnectionResetError:
        pass  # closing with unread input makes Linux send RST: closed all the same


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff" + b"garbage",  # a declared length far above the limit
        struct.pack(">I", 16 * 1024 * 1024 + 1),  # one byte above the default 16 MiB
    ],
)
def test_oversized_frame_closes_only_that_connection(
    echo_server: ServerProcess, garbage: bytes
) -> None:
    concurrent = echo_server.model != "blocking"  # blocking holds one connection at a time
    good = connect(echo_server.port) if concurrent else None
    try:
        if good:
            assert exchange(good, frame(b"before"), 10) == frame(b"before")
        with connect(echo_server.port) as bad:
            bad.sendall(garbage)
            _assert_closed_by_server(bad)
        if good:
            assert exchange(good, frame(b"after"), 9) == frame(b"after")
    finally:
        if good:
            good.close()
    echo_roundtrip(echo_server.port)


def test_client_reset_mid_frame(echo_server: ServerProcess) -> None:
    sock = connect(echo_server.port)
    sock.sendall(struct.pack(">I", 1000) + b"x" * 10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # linger 0: the kernel sends RST instead of FIN
    echo_roundtrip(echo_server.port)


def test_half_close_still_gets_reply(echo_server: ServerProcess) -> None:
    data = frame(b"half-closed") * 3
    with connect(echo_server.port) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == data


def test_500_connect_close_cycles(echo_server: ServerProcess) -> None:
    for i in range(500):
        with connect(echo_server.port) as sock:
            payload = str(i).encode()
            sock.sendall(frame(payload))
            assert recv_exactly(sock, 4 + len(payload)) == frame(payload)


def test_served_while_100_connections_hold_partial_requests(echo_server) -> None:
    if echo_server.model == "blocking":
        pytest.skip("the iterative model serves one connection at a time by design")
    if echo_server.model == "threadpool":  # see tests/test_models_extra.py for its version
        pytest.skip(
            "a bounded pool serves at most `workers` (default 32) connections at "
            "once; 100 holders starve the rest by design"
        )
    holders = [connect(echo_server.port) for _ in range(100)]
    try:
        for sock in holders:
            sock.sendall(struct.pack(">I", 100) + b"partial")
        start = time.monotonic()
        echo_roundtrip(echo_server.port, b"well-behaved")
        assert time.monotonic() - start < 2.0
    finally:
        for sock in holders:
            sock.close()


def test_slow_reader_does_not_make_the_server_buffer_without_bound(echo_server) -> None:
    """A client that sends but never reads must stall, not grow the server."""
    with connect(echo_server.port) as sock:
        sent, stalled = send_until_stalled(sock, b"z" * 65536, limit_s=5.0)
        # kernel buffers on both sides plus the server's 1 MiB output limit: well under 64 MiB
        assert stalled, f"still accepting after {sent} bytes"
        assert sent < 64 * 1024 * 1024
        if echo_server.model != "blocking":
            echo_roundtrip(echo_server.port)
    echo_roundtrip(echo_server.port)


def test_zz_still_serves_then_stops_cleanly(echo_server: ServerProcess) -> None:
    held = [connect(echo_server.port) for _ in range(1 if echo_server.model == "blocking" else 20)]
    for sock in held:
        assert exchange(sock, frame(b"last"), 8) == frame(b"last")
    start = time.monotonic()
    code = echo_server.stop()
    assert time.monotonic() - start < 2.0
    assert code == 0, echo_server.stderr
    counters = echo_server.stopped
    assert counters is not None
    assert counters["accepted"] >= 500
    assert counters["protocol_errors"] >= 2  # the two oversized frames
    for sock in held:  # every connection closed by the server
        try:
            assert sock.recv(1) == b""
        except OSError as exc:
            assert exc.errno == errno.ECONNRESET
        sock.close()

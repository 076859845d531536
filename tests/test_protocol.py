"""The sans-IO protocols on bytes alone: no sockets here."""

from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from servers.protocol import (
    GET_BODY,
    EchoProtocol,
    HttpProtocol,
    Limits,
    LineProtocol,
    protocol_factory,
)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def feed_in_pieces(protocol, data: bytes, cuts: list[int]) -> bytes:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return b"".join(protocol.feed(data[a:b]) for a, b in pairwise(points))


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(0, 10_000)))
def test_echo_any_framing_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frame(p) for p in payloads)
    protocol = EchoProtocol()
    assert feed_in_pieces(protocol, data, cuts) == data
    assert not protocol.closing and protocol.error is None


def test_echo_fast_path_returns_the_same_bytes() -> None:
    data = frame(b"x" * 100)
    assert EchoProtocol().feed(data) is data


def test_echo_oversized_frame_closes_without_echoing() -> None:
    protocol = EchoProtocol(Limits(max_frame=10))
    out = protocol.feed(frame(b"ok") + struct.pack(">I", 11) + b"x" * 11)
    assert out == frame(b"ok")
    assert protocol.closing and protocol.error == "frame-too-large"
    assert protocol.feed(frame(b"later")) == b""


def test_echo_frame_at_the_limit_is_fine() -> None:
    protocol = EchoProtocol(Limits(max_frame=10))
    assert protocol.feed(frame(b"x" * 10)) == frame(b"x" * 10)


def test_line_answers_each_line_and_the_last_at_eof() -> None:
    protocol = LineProtocol()
    assert protocol.feed(b"wor") == b""
    assert protocol.feed(b"ld\nsecond\r\nthi") == b"Hello, world\nHello, second\n"
    assert protocol.eof() == b"Hello, thi\n"
    assert protocol.closing and protocol.error is None


def test_line_too_long_closes() -> None:
    protocol = LineProtocol(Limits(max_frame=8))
    protocol.feed(b"123456789")
    assert protocol.closing and protocol.error == "line-too-long"


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_http_get_keep_alive() -> None:
    protocol = HttpProtocol()
    reply = protocol.feed(GET)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\n" + GET_BODY)
    assert b"Content-Length: 14\r\n" in reply
    assert not protocol.closing


@given(st.binary(max_size=500), st.lists(st.integers(0, 10_000), max_size=8))
def test_http_post_echo_any_split(body: bytes, cuts: list[int]) -> None:
    request = b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    reply = feed_in_pieces(HttpProtocol(), request * 2, cuts)
    one = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert reply == (one + body) * 2


def test_http_pipelined_in_order_and_connection_close() -> None:
    protocol = HttpProtocol()
    closing = b"POST /echo HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"
    reply = protocol.feed(GET + closing + GET)
    first, rest = reply.split(GET_BODY, 1)
    assert first.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b"Connection: close\r\n\r\nbye")  # the third request is never answered
    assert protocol.closing and protocol.error is None


def test_http_1_0_closes_unless_keep_alive() -> None:
    protocol = HttpProtocol()
    protocol.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert protocol.closing
    protocol = HttpProtocol()
    reply = protocol.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert not protocol.closing
    # said back: an HTTP/1.0 client (ab -k) otherwise waits for the server to close
    assert b"\r\nConnection: keep-alive\r\n" in reply
    # HTTP/1.1 is persistent by default: no header needed, none sent
    assert b"Connection" not in HttpProtocol().feed(b"GET / HTTP/1.1\r\n\r\n")


def test_http_unknown_path_and_method() -> None:
    assert HttpProtocol().feed(b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert HttpProtocol().feed(b"DELETE / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    head = HttpProtocol().feed(b"HEAD / HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")


def test_http_malformed_inputs_get_400_and_close() -> None:
    for bad, reason in [
        (b"garbage\r\n\r\n", "bad-request-line"),
        (b"GET / HTTP/2.0\r\n\r\n", "bad-version"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "bad-header"),
        (b"POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad-content-length"),
        (
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "transfer-encoding-unsupported",
        ),
    ]:
        protocol = HttpProtocol()
        reply = protocol.feed(bad)
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), bad
        assert b"Connection: close" in reply
        assert protocol.closing and protocol.error == reason


def test_http_limits() -> None:
    protocol = HttpProtocol(Limits(max_frame=100, max_header=1024))
    assert protocol.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 1100).startswith(b"HTTP/1.1 400")
    assert protocol.error == "header-too-large"
    protocol = HttpProtocol(Limits(max_frame=100, max_header=1024))
    assert protocol.feed(b"POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n").startswith(
        b"HTTP/1.1 400"
    )
    assert protocol.error == "body-too-large"


def test_factory_makes_fresh_objects() -> None:
    make = protocol_factory("echo", Limits(max_frame=5))
    a, b = make(), make()
    assert isinstance(a, EchoProtocol)
    assert a is not b and a.limits.max_frame == 5


def test_http_limits_are_each_instances_own_despite_the_shared_parse_cache() -> None:
    """The parse cache is shared by every instance; the body limit is per instance."""
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n" + b"b" * 50
    roomy = HttpProtocol(Limits(max_frame=1000))
    assert roomy.feed(post).startswith(b"HTTP/1.1 200 OK")
    tight = HttpProtocol(Limits(max_frame=10))  # the same head, now over the limit
    assert tight.feed(post).startswith(b"HTTP/1.1 400 Bad Request")
    assert tight.error == "body-too-large"
    assert HttpProtocol(Limits(max_frame=1000)).feed(post).startswith(b"HTTP/1.1 200 OK")

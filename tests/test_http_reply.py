"""clients.http_reply on bytes alone: framing, keep-alive, splits anywhere, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import wire
from clients.http_reply import Expectation, ParseError, Reply, ReplyParser

SOCKBENCH = wire.http_ok(wire.GET_BODY)
NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\ncontent-LENGTH: 14\r\nConnection: keep-alive\r\n"
    b'ETag: "abc-e"\r\n\r\nHello, world!\n'
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: x\r\n\r\n"
    b"7;name=value\r\nHello, \r\n7\r\nworld!\n\r\n0\r\nX-Trailer: yes\r\nOther: 1\r\n\r\n"
)
INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + SOCKBENCH
HTTP_1_0_KEEP = (
    b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 14\r\n\r\nHello, world!\n"
)
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
# every reply above frames itself; each gives the greeting except 204
SELF_FRAMED = [SOCKBENCH, NGINX, CHUNKED, INTERIM, HTTP_1_0_KEEP, NO_CONTENT]
UNTIL_CLOSE = b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nHello, world!\n"


def replies_of(*pieces: bytes, eof: bool = False, **options: int) -> list[Reply]:
    parser = ReplyParser(**options)
    got = [reply for piece in pieces for reply in parser.feed(piece)]
    if eof and (last := parser.eof()) is not None:
        got.append(last)
    return got


def test_sockbench_reply_whole() -> None:
    parser = ReplyParser(keep_raw=1000)
    (reply,) = parser.feed(SOCKBENCH)
    assert reply == Reply(200, b"Hello, world!\n", True, len(SOCKBENCH), "length", SOCKBENCH)
    assert parser.idle and parser.leftover == b""


def test_any_headers_names_in_any_case() -> None:
    (reply,) = replies_of(NGINX)
    assert (reply.status, reply.body, reply.keep_alive) == (200, b"Hello, world!\n", True)
    assert reply.raw is None  # not asked for


def test_chunked_with_extensions_and_trailers() -> None:
    (reply,) = replies_of(CHUNKED, keep_raw=10_000)
    assert reply.body == b"Hello, world!\n" and reply.framing == "chunked"
    assert reply.size == len(CHUNKED) and reply.raw == CHUNKED


def test_interim_replies_are_skipped_and_counted_in_the_size() -> None:
    (reply,) = replies_of(INTERIM)
    assert reply.status == 200 and reply.body == b"Hello, world!\n"
    assert reply.size == len(INTERIM)


def test_no_body_for_204_and_a_zero_length() -> None:
    (reply,) = replies_of(NO_CONTENT)
    assert (reply.status, reply.body, reply.framing) == (204, b"", "none")
    zero = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert replies_of(zero)[0].body == b""


def test_until_close_ends_at_eof() -> None:
    parser = ReplyParser()
    assert list(parser.feed(UNTIL_CLOSE)) == []
    assert not parser.idle
    reply = parser.eof()
    assert reply is not None and reply.body == b"Hello, world!\n"
    assert reply.framing == "close" and not reply.keep_alive and reply.size == len(UNTIL_CLOSE)
    assert parser.eof() is None  # nothing more


def test_transfer_encoding_overrides_content_length_and_other_codings_read_to_close() -> None:
    both = CHUNKED.replace(b"Server: x", b"Content-Length: 3")
    assert replies_of(both)[0].body == b"Hello, world!\n"
    gzip_only = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"
    assert replies_of(gzip_only) == []
    (reply,) = replies_of(gzip_only, eof=True)
    assert reply.body == b"xyz" and reply.framing == "close"


@pytest.mark.parametrize(
    "head, keep",
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\n", False),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", True),
        (b"HTTP/1.0 200 OK\r\nCONNECTION:Keep-Alive \r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n", False),
    ],
)
def test_keep_alive(head: bytes, keep: bool) -> None:
    (reply,) = replies_of(head + b"Content-Length: 2\r\n\r\nok")
    assert reply.keep_alive is keep


def test_pipelined_replies_in_one_buffer_and_a_leftover() -> None:
    parser = ReplyParser()
    stream = SOCKBENCH + CHUNKED + NGINX + SOCKBENCH[:20]
    got = list(parser.feed(stream))
    assert [r.body for r in got] == [b"Hello, world!\n"] * 3
    assert [r.size for r in got] == [len(SOCKBENCH), len(CHUNKED), len(NGINX)]
    assert not parser.idle and parser.leftover == SOCKBENCH[:20]
    assert [r.size for r in parser.feed(SOCKBENCH[20:])] == [len(SOCKBENCH)]
    assert parser.idle


def test_replies_not_iterated_stay_buffered() -> None:
    parser = ReplyParser()
    parser.feed(SOCKBENCH * 2)  # not iterated: buffered all the same
    assert parser.next_reply() is not None and parser.next_reply() is not None
    assert parser.next_reply() is None and parser.idle


@pytest.mark.parametrize("reply", SELF_FRAMED + [UNTIL_CLOSE], ids=range(7))
def test_split_at_every_byte_boundary(reply: bytes) -> None:
    eof = reply is UNTIL_CLOSE
    whole = replies_of(reply, eof=eof, keep_raw=10_000)
    assert len(whole) == 1
    for cut in range(len(reply) + 1):
        assert replies_of(reply[:cut], reply[cut:], eof=eof, keep_raw=10_000) == whole, cut
    one_by_one = [reply[i : i + 1] for i in range(len(reply))]
    assert replies_of(*one_by_one, eof=eof, keep_raw=10_000) == whole


@settings(max_examples=200, deadline=None)
@given(
    order=st.lists(st.sampled_from(range(len(SELF_FRAMED))), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    tail=st.booleans(),
)
def test_any_stream_cut_anywhere_gives_the_same_replies(
    order: list[int], cuts: list[int], tail: bool
) -> None:
    replies = [SELF_FRAMED[i] for i in order] + ([UNTIL_CLOSE] if tail else [])
    stream = b"".join(replies)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    pieces = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    got = replies_of(*pieces, eof=True, keep_raw=10_000)
    assert [r.raw for r in got] == replies
    assert all(r.body == (b"" if r.status == 204 else b"Hello, world!\n") for r in got)


def test_eof_cases() -> None:
    parser = ReplyParser()
    assert parser.eof() is None  # closed between replies: nothing under way
    list(parser.feed(SOCKBENCH[:-3]))
    with pytest.raises(ParseError, match="closed"):
        parser.eof()
    cut_chunked = ReplyParser()
    list(cut_chunked.feed(CHUNKED[:-2]))
    with pytest.raises(ParseError, match="closed"):
        cut_chunked.eof()


BAD = {
    "not http": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "status line"),
    "http/2": (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    "two digits": (b"HTTP/1.1 20 OK\r\n\r\n", "status line"),
    "no space": (b"HTTP/1.1 200OK\r\n\r\n", "status line"),
    "below 100": (b"HTTP/1.1 099 Odd\r\n\r\n", "status line"),
    "empty head": (b"\r\n\r\n", "status line"),
    "101": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
    "length word": (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
    "length sign": (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "Content-Length"),
    "length minus": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    "length underscore": (b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n", "Content-Length"),
    "length list": (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "Content-Length"),
    "two lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "Content-Length",
    ),
    "chunk size word": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk"),
    "chunk size 0x": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "chunk"),
    "chunk size empty": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "chunk"),
    "chunk size huge": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 16 + b"\r\n",
        "chunk",
    ),
    "chunk no crlf": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
        "CRLF",
    ),
    "bad trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
        "trailer",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_replies_raise_one_line(name: str) -> None:
    data, reason = BAD[name]
    with pytest.raises(ParseError, match=reason) as raised:
        replies_of(data)
    assert "\n" not in str(raised.value)


def test_a_good_reply_comes_out_before_a_bad_one() -> None:
    parser = ReplyParser()
    replies = parser.feed(SOCKBENCH + b"garbage\r\n\r\n")
    assert next(replies).status == 200
    with pytest.raises(ParseError):
        next(replies)


def test_head_over_the_cap() -> None:
    big = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 2000 + b"\r\n"
    with pytest.raises(ParseError, match="head over 1000"):
        replies_of(big, max_head=1000)  # no end of the head yet, already too long
    with pytest.raises(ParseError, match="head over 1000"):
        replies_of(big + b"Content-Length: 0\r\n\r\n", max_head=1000)
    assert replies_of(big + b"Content-Length: 0\r\n\r\n", max_head=4000)[0].status == 200


def test_long_chunk_size_line_and_trailers_are_capped() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ParseError, match="chunk-size line"):
        replies_of(head + b"5;" + b"x" * 5000)
    with pytest.raises(ParseError, match="trailers over"):
        replies_of(head + b"0\r\nT: " + b"x" * 2000, max_head=1000)


def test_body_over_the_cap() -> None:
    assert replies_of(SOCKBENCH, max_body=14)[0].body == b"Hello, world!\n"
    with pytest.raises(ParseError, match="body over 13"):
        replies_of(SOCKBENCH, max_body=13)
    with pytest.raises(ParseError, match="body over 13"):
        replies_of(CHUNKED, max_body=13)
    with pytest.raises(ParseError, match="body over 13"):
        replies_of(UNTIL_CLOSE, eof=True, max_body=13)


def test_raw_is_kept_up_to_its_cap() -> None:
    assert replies_of(SOCKBENCH, keep_raw=len(SOCKBENCH))[0].raw == SOCKBENCH
    assert replies_of(SOCKBENCH, keep_raw=len(SOCKBENCH) - 1)[0].raw is None


def test_expectation() -> None:
    (reply,) = replies_of(NGINX)
    assert Expectation(200, b"Hello, world!\n").accepts(reply)
    assert not Expectation(200, b"other").accepts(reply)
    assert not Expectation(404, b"Hello, world!\n").accepts(reply)

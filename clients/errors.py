"""The kinds of error both load generators count, each a key of a result's `errors`,
and how a wrong reply is told apart: bytes that are no reply of the protocol spoken
(`protocol`), or a well-formed reply with the wrong content (`mismatch`). Sans-IO."""

from __future__ import annotations

import errno

from clients.http_reply import BodyTooLong, ParseError, ReplyParser

# "protocol": bytes came back that cannot be a reply of the protocol spoken (an echo
# frame whose length is not the one sent; http: not `HTTP/`, or no parsable head);
# "mismatch": a well-formed reply with the wrong content (bytes, status or body);
# "other": a failure the driver cannot classify (only locust's driver meets those).
# A result written before `protocol` existed has no such key: read it as 0.
ERROR_KINDS = (
    "connect_refused",
    "connect_timeout",
    "reset",
    "timeout",
    "mismatch",
    "protocol",
    "closed",
    "other",
)
ECHO_HEAD = 4  # bytes of an echo frame's length


def error_kind(exc: OSError) -> str:
    """The kind of a failure of an open connection."""
    if exc.errno == errno.ETIMEDOUT:
        return "timeout"  # the kernel gave up retransmitting
    return "reset"  # ECONNRESET, EPIPE and the like


def reply_error(protocol: str, reply: bytes, expected: bytes | None) -> str:
    """The kind of a reply whose bytes differ from those expected: "protocol" or
    "mismatch". `reply` is what arrived from the reply's first byte on (maybe only its
    start, maybe more than one reply); `expected` the whole expected reply (echo).

    Echo: a frame starts with its 4-byte length, the length that was sent; other bytes
    there ("HTTP" read as a length) are no echo reply. Http: the first reply must start
    with `HTTP/` and its status line and headers must parse (clients.http_reply); a
    cut-off start that may still become one counts as a mismatch. Called only once the exact
    comparison failed, never on the hot path.
    """
    if protocol == "echo":
        head = reply[:ECHO_HEAD]
        if expected is not None and expected[: len(head)] == head:
            return "mismatch"  # the length sent: a frame with other bytes, or extra bytes
        return "protocol"
    if protocol == "http":
        try:
            next(ReplyParser().feed(reply), None)
        except ParseError as exc:
            return parse_error_kind(exc)
        return "mismatch"
    raise ValueError(f"unknown protocol {protocol!r}")


def parse_error_kind(exc: ParseError) -> str:
    """The kind of an http reply the parser refused: a body over the expected length is
    the wrong reply ("mismatch"); anything else is no HTTP/1.x reply ("protocol")."""
    return "mismatch" if isinstance(exc, BodyTooLong) else "protocol"

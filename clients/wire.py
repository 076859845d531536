"""The bytes the load generator sends and the exact bytes it expects back.

Written out here from the protocol description rather than imported from the server,
so that a server-side change to the wire format shows up as a mismatch, not as a
silently updated expectation (tests/test_loadgen.py checks both sides agree today).
"""

from __future__ import annotations

GET_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_BODY = b"Hello, world!\n"
_PATTERN = bytes(range(256))
MAX_PAYLOAD = 256 * 1024 * 1024  # the largest request payload the load generator builds
# Echo payloads differ per connection (a rotated byte pattern) so that a server that
# crosses replies between connections is caught; the variants are capped by memory.
_VARIANT_BUDGET = 64 * 1024 * 1024


def http_body(payload: int, variant: int = 0) -> bytes:
    """The body of sockbench's reply to the http request of `payload` bytes: `GET /`'s
    greeting for 0, else the `POST /echo` body, echoed."""
    return GET_BODY if payload == 0 else pattern(payload, variant)


def describe(protocol: str, payload: int) -> str:
    """What one request of `protocol` with `payload` bytes is, for titles and tables:
    "http GET /", "http POST /echo, 64 B body", "echo, 64 B frames"."""
    if protocol == "http":
        return "http GET /" if payload == 0 else f"http POST /echo, {payload:,} B body"
    if protocol == "echo":
        return f"echo, {payload:,} B frames"
    return f"{protocol}, {payload:,} B"


def http_ok(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def pattern(size: int, offset: int = 0) -> bytes:
    """`size` deterministic bytes: 0, 1, ..., 255, 0, 1, ... starting at `offset`."""
    offset %= 256
    repeats = (size + offset) // 256 + 1
    return (_PATTERN * repeats)[offset : offset + size]


def variants(payload: int) -> int:
    """How many distinct payloads to spread over the connections."""
    return max(1, min(256, _VARIANT_BUDGET // (payload + 256)))


def exchange(protocol: str, payload: int, variant: int = 0) -> tuple[bytes, bytes]:
    """(request, expected reply) for one request of `protocol` with `payload` bytes.

    echo: a 4-byte big-endian length and the payload, answered with the same frame.
    http: payload 0 is `GET /`; payload N > 0 is `POST /echo` with N body bytes,
    answered with 200 and that body.
    """
    if protocol == "echo":
        frame = payload.to_bytes(4, "big") + pattern(payload, variant)
        return frame, frame
    if protocol == "http":
        body = http_body(payload, variant)
        if payload == 0:
            return GET_REQUEST, http_ok(body)
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % payload
        return head + body, http_ok(body)
    raise ValueError(f"unknown protocol {protocol!r}")

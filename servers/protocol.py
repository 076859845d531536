"""Sans-IO wire protocols shared by every server model.

Each connection gets one protocol object. The server hands it the bytes it read
(`feed`) and sends back whatever `feed` returns; `eof` is called once when the peer
half-closes. When `closing` turns true the server flushes what it holds and closes.
`error` names the protocol violation that caused a close, if any. `answered` counts
the requests answered so far, so that per-request server work can be applied.

No socket, select or threading here: the state machines are tested on bytes alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_FRAME = 16 * 1024 * 1024
DEFAULT_MAX_HEADER = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-connection limits: a frame, body or line above max_frame closes the
    connection, as does an HTTP header block above max_header."""

    max_frame: int = DEFAULT_MAX_FRAME
    max_header: int = DEFAULT_MAX_HEADER


class ServerProtocol(Protocol):
    closing: bool
    error: str | None
    answered: int
    hold_s: float  # seconds to hold the last reply before sending it (server-side waits)

    def feed(self, data: bytes) -> bytes: ...

    def eof(self) -> bytes: ...


class EchoProtocol:
    """Frames of a 4-byte big-endian length N then N bytes, echoed as they arrive.

    The payload is streamed straight back rather than buffered whole, so a 16 MiB
    frame costs no 16 MiB buffer; the bytes sent are still exactly the frame.
    """

    hold_s = 0.0  # only servers.work's wrapper holds replies

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.closing = False
        self.error: str | None = None
        self.answered = 0
        self._header = b""  # partial length prefix
        self._remaining = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> bytes:
        if self.closing:
            return b""
        if not self._header and not self._remaining and len(data) >= 4:
            size = int.from_bytes(data[:4], "big")
            if size + 4 == len(data) and size <= self.limits.max_frame:
                self.answered += 1
                return data  # the common case: exactly one whole frame, no copy
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                out.append(view[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self.answered += 1
                continue
            need = 4 - len(self._header)
            self._header += bytes(view[pos : pos + need])
            pos += need
            if len(self._header) < 4:
                break
            size = int.from_bytes(self._header, "big")
            if size > self.limits.max_frame:
                self.closing, self.error = True, "frame-too-large"
                break
            out.append(self._header)
            self._header, self._remaining = b"", size
            if not size:
                self.answered += 1
        return b"".join(out)

    def eof(self) -> bytes:
        self.closing = True
        return b""


class LineProtocol:
    """The teaching protocol: each newline-terminated line gets `Hello, <line>`, so a
    learner can talk to any model with `nc`."""

    hold_s = 0.0  # only servers.work's wrapper holds replies

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.closing = False
        self.error: str | None = None
        self.answered = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> bytes:
        if self.closing:
            return b""
        if b"\n" not in data:  # only new bytes are scanned: a long line costs O(n)
            self._buf += data
            if len(self._buf) > self.limits.max_frame:
                self.closing, self.error = True, "line-too-long"
            return b""
        *lines, rest = (self._buf + data).split(b"\n")
        if len(rest) > self.limits.max_frame:
            self.closing, self.error = True, "line-too-long"
        self._buf = bytearray(rest)
        self.answered += len(lines)
        return b"".join(self._answer(line) for line in lines)

    def eof(self) -> bytes:
        # A last line without its newline (`printf world | nc`) still gets its answer.
        out = b""
        if self._buf and not self.closing:
            out = self._answer(bytes(self._buf))
            self.answered += 1
        self._buf.clear()
        self.closing = True
        return out

    @staticmethod
    def _answer(line: bytes | bytearray) -> bytes:
        return b"Hello, " + line.rstrip(b"\r") + b"\n"


GET_BODY = b"Hello, world!\n"


# The Connection header of a response: none (HTTP/1.1's persistent default), "close",
# or "keep-alive" for an HTTP/1.0 client that asked for it (ab -k waits for the server
# to close unless it sees it).
PERSISTENT, CLOSE, KEEP_ALIVE = "", "close", "keep-alive"


def _response(status: str, body: bytes, connection: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    if connection:
        head += f"Connection: {connection}\r\n"
    return head.encode("ascii") + b"\r\n" + body


_GET_RESPONSE = {c: _response("200 OK", GET_BODY, c) for c in (PERSISTENT, CLOSE, KEEP_ALIVE)}


@dataclass(frozen=True)
class _Request:
    method: bytes
    target: bytes
    connection: str  # PERSISTENT, CLOSE or KEEP_ALIVE: the response's Connection header
    content_length: int
    error: str | None = None  # set when the head is malformed


class HttpProtocol:
    """An HTTP/1.1 keep-alive subset: `GET /`, `POST /echo`, pipelining answered in
    order, `Connection: close` honoured; malformed or oversized input gets 400 and close.
    """

    hold_s = 0.0  # only servers.work's wrapper holds replies

    # wrk, ab and locust repeat the same request head; parsing it once per distinct
    # head keeps the protocol cost (shared by every model) small. Shared by every
    # instance, so what is cached depends on the head alone: limits are checked after.
    _cache: dict[bytes, _Request] = {}
    _CACHE_SIZE = 256

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.closing = False
        self.error: str | None = None
        self.answered = 0
        self._buf = bytearray()
        self._request: _Request | None = None  # head parsed, body still arriving

    def feed(self, data: bytes) -> bytes:
        if self.closing:
            return b""
        self._buf += data
        out: list[bytes] = []
        while not self.closing:
            if self._request is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > self.limits.max_header:
                        out.append(self._fail("header-too-large"))
                    break
                if end + 4 > self.limits.max_header:
                    out.append(self._fail("header-too-large"))
                    break
                head = bytes(self._buf[: end + 4])
                del self._buf[: end + 4]
                request = self._parse(head)
                if request.error:
                    out.append(self._fail(request.error))
                    break
                if request.content_length > self.limits.max_frame:
                    out.append(self._fail("body-too-large"))
                    break
                self._request = request
            request = self._request
            if len(self._buf) < request.content_length:
                break
            body = bytes(self._buf[: request.content_length])
            del self._buf[: request.content_length]
            self._request = None
            out.append(self._respond(request, body))
            self.answered += 1
        return b"".join(out)

    def eof(self) -> bytes:
        self.closing = True
        return b""

    def _fail(self, reason: str) -> bytes:
        self.closing, self.error = True, reason
        self._buf.clear()
        return _response("400 Bad Request", reason.encode() + b"\n", CLOSE)

    def _respond(self, request: _Request, body: bytes) -> bytes:
        keep = request.connection
        if keep == CLOSE:
            self.closing = True
        if request.target == b"/" and request.method == b"GET":
            return _GET_RESPONSE[keep]
        if request.target == b"/" and request.method == b"HEAD":
            return _GET_RESPONSE[keep][: -len(GET_BODY)]
        if request.target == b"/echo" and request.method == b"POST":
            return _response("200 OK", body, keep)
        if request.target in (b"/", b"/echo"):
            return _response("405 Method Not Allowed", b"method not allowed\n", keep)
        return _response("404 Not Found", b"not found\n", keep)

    def _parse(self, head: bytes) -> _Request:
        cached = self._cache.get(head)
        if cached is not None:
            return cached
        request = _parse_head(head)
        if len(self._cache) >= self._CACHE_SIZE:
            self._cache.clear()
        self._cache[head] = request
        return request


def _parse_head(head: bytes) -> _Request:
    """A request head ending in a blank line -> _Request; a function of the bytes alone."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(b"/"):
        return _Request(b"", b"", CLOSE, 0, "bad-request-line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        return _Request(b"", b"", CLOSE, 0, "bad-version")
    http_1_1 = version == b"HTTP/1.1"
    connection = PERSISTENT if http_1_1 else CLOSE
    length = 0
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            return _Request(b"", b"", CLOSE, 0, "bad-header")
        name, value = name.lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                return _Request(b"", b"", CLOSE, 0, "bad-content-length")
            length = int(value)
        elif name == b"transfer-encoding":
            return _Request(b"", b"", CLOSE, 0, "transfer-encoding-unsupported")
        elif name == b"connection":
            tokens = {t.strip() for t in value.split(b",")}
            if b"close" in tokens:
                connection = CLOSE
            elif b"keep-alive" in tokens:
                connection = PERSISTENT if http_1_1 else KEEP_ALIVE
    return _Request(method, target, connection, length)


PROTOCOLS: dict[str, type] = {
    "echo": EchoProtocol,
    "http": HttpProtocol,
    "line": LineProtocol,
}


def protocol_factory(name: str, limits: Limits = Limits()) -> Callable[[], ServerProtocol]:
    """Return a zero-argument constructor of per-connection protocol objects."""
    cls = PROTOCOLS[name]
    return lambda: cls(limits)

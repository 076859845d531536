"""HTTP/1.x replies, parsed from bytes: the load generator's check for any HTTP server.

Sans-IO, after h11: no sockets here. Feed the bytes a connection received; complete
replies come out, with what was left over kept for the next feed::

    parser = ReplyParser()
    for reply in parser.feed(data):  # the bytes are buffered at once, parsed as iterated
        ...  # reply.status, reply.body, reply.keep_alive
    reply = parser.eof()  # the peer closed: the reply framed by the close, if any

A reply is framed by Content-Length, by chunked transfer-encoding (chunk extensions
and trailers accepted, ignored), or, with neither, by the end of the connection. 1xx
interim replies are skipped (their bytes count in the final reply's `size`); 204 and
304 have no body. Header names are case-insensitive and any header is accepted (only
Content-Length, Transfer-Encoding and Connection are read; other lines are not
checked: a load generator verifies the status and body, it is no validator). The
connection stays open after an HTTP/1.1 reply unless it says `Connection: close`, and
after an HTTP/1.0 reply only if it says `Connection: keep-alive`. Anything malformed
(status line, Content-Length, chunk size or its CRLF, a trailer line, a head or a
body over its cap) raises
ParseError with a one-line reason; the parser is useless after that, as is the
connection. Bytes that do not start with `HTTP/` fail at once, without waiting for
the end of a head that may never come; a body over its cap raises BodyTooLong, the
one ParseError of a well-formed reply (clients.errors tells the two apart). Only CRLF
line ends are accepted (every server in use sends them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

MAX_HEAD = 64 * 1024  # bytes of a status line and headers (of trailers, together)
MAX_LINE = 4096  # bytes of a chunk-size line
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: .*)?", re.DOTALL)
_FRAMING = re.compile(  # a header line that frames a reply or says if the connection lasts
    rb"\r\n(content-length|transfer-encoding|connection):([^\r\n]*)", re.IGNORECASE
)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")  # a chunk size; 15 digits: under 2**60 bytes
_SHOWN = 60  # bytes of a bad line quoted in an error
_HTTP = b"HTTP/"  # how every reply starts
_STATUS_LINES: dict[bytes, tuple[bool, int]] = {}  # parsed status lines (_status_line)

# what the parser is waiting for
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_CLOSE = range(6)


class ParseError(ValueError):
    """Bytes that are not an HTTP/1.x reply; the message is one line."""


class BodyTooLong(ParseError):
    """A reply whose body is over the caller's cap (`max_body`): HTTP, but not the
    reply the caller expects."""


class Reply(NamedTuple):
    """One complete final reply."""

    status: int
    body: bytes  # de-chunked
    keep_alive: bool  # the connection may carry another request
    size: int  # bytes on the wire, interim 1xx replies included
    framing: str  # "length", "chunked", "close" (ended by EOF) or "none" (204, 304)
    raw: bytes | None  # the `size` bytes themselves, when asked for (`keep_raw`)


class Expectation(NamedTuple):
    """What a verified reply carries: a status and a body."""

    status: int = 200
    body: bytes = b""

    def accepts(self, reply: Reply) -> bool:
        return reply.status == self.status and reply.body == self.body


class ReplyParser:
    """Incremental parser of the replies on one connection, in order."""

    __slots__ = (
        "_buf",
        "_pos",
        "_state",
        "_scan",
        "_need",
        "_chunks",
        "_body_size",
        "_status",
        "_keep_alive",
        "_trailer_from",
        "max_head",
        "max_body",
        "keep_raw",
    )

    def __init__(
        self, max_head: int = MAX_HEAD, max_body: int | None = None, keep_raw: int = 0
    ) -> None:
        """`max_body`: a longer body is a ParseError (None: no cap); `keep_raw`: replies
        of up to this many bytes carry them in `raw` (for a caller that learns them)."""
        self.max_head = max_head
        self.max_body = max_body
        self.keep_raw = keep_raw
        # The current reply's bytes stay in _buf from its first byte until it is
        # complete, so that `raw` is one slice; _pos is how far parsing got.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._state = _HEAD
        self._scan = 0  # where to resume looking for the end of the head
        self._need = 0  # _BODY, _CHUNK_DATA: bytes still to come
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._status = 0
        self._keep_alive = False
        self._trailer_from = 0

    @property
    def idle(self) -> bool:
        """No byte of an unfinished reply is buffered."""
        return self._state == _HEAD and not self._buf

    @property
    def leftover(self) -> bytes:
        """The buffered bytes that are not (yet) part of a complete reply."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> Iterator[Reply]:
        """Buffer `data` now; the iterator parses and gives each reply now complete.

        A ParseError comes out of the iteration at the first malformed reply, after
        the good ones before it. Replies not iterated stay buffered for the next feed.
        """
        if not self._buf:
            self._buf = bytes(data)  # the usual case: a read starts a reply (bytes: no copy)
        else:
            if isinstance(self._buf, bytes):  # a reply in pieces: grow in place from now on
                self._buf = bytearray(self._buf)
            self._buf += data
        return self._drain()

    def _drain(self) -> Iterator[Reply]:
        while (reply := self.next_reply()) is not None:
            yield reply

    def eof(self) -> Reply | None:
        """The peer closed the connection (call once the replies fed were taken): the
        reply the close ends, or None if none was under way; ParseError if the close
        cut a reply short."""
        if self._state == _UNTIL_CLOSE:
            self._check_body(len(self._buf) - self._pos)
            return self._done(len(self._buf), bytes(self._buf[self._pos :]), "close")
        if self.idle:
            return None
        raise ParseError(f"connection closed {len(self._buf)} bytes into a reply")

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        while True:
            buf, state = self._buf, self._state
            if state == _HEAD:
                if not buf:
                    return None
                end = buf.find(b"\r\n\r\n", max(self._pos, self._scan - 3))
                if end < 0:
                    start = bytes(buf[self._pos : self._pos + len(_HTTP)])
                    if not _HTTP.startswith(start):  # garbage: no need to wait for a head
                        raise ParseError(f"malformed status line: starts {start!r}, not HTTP/")
                    self._scan = len(buf)
                    if len(buf) - self._pos > self.max_head:
                        raise ParseError(f"reply head over {self.max_head} bytes")
                    return None
                if end - self._pos > self.max_head:
                    raise ParseError(f"reply head over {self.max_head} bytes")
                head = bytes(buf[self._pos : end])
                self._pos = self._scan = end + 4
                reply = self._head(head)
                if reply is not None:
                    return reply
            elif state == _BODY:
                end = self._pos + self._need
                if len(buf) < end:
                    return None
                return self._done(end, bytes(buf[self._pos : end]), "length")
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", self._pos)
                if end < 0:
                    if len(buf) - self._pos > MAX_LINE:
                        raise ParseError(f"chunk-size line over {MAX_LINE} bytes")
                    return None
                self._chunk_size(bytes(buf[self._pos : end]))
                self._pos = end + 2
            elif state == _CHUNK_DATA:
                end = self._pos + self._need
                if len(buf) < end + 2:
                    return None
                if buf[end : end + 2] != b"\r\n":
                    raise ParseError("chunk data not followed by CRLF")
                self._chunks.append(bytes(buf[self._pos : end]))
                self._pos = end + 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n", self._pos)
                if end < 0:
                    if len(buf) - self._trailer_from > self.max_head:
                        raise ParseError(f"trailers over {self.max_head} bytes")
                    return None
                if end == self._pos:  # the empty line: the reply is complete
                    body, self._chunks = b"".join(self._chunks), []
                    return self._done(end + 2, body, "chunked")
                line = bytes(buf[self._pos : end])
                if b":" not in line:  # a trailer field is accepted, and ignored
                    raise ParseError(f"malformed trailer line {line[:_SHOWN]!r}")
                self._pos = end + 2
            else:  # _UNTIL_CLOSE: every byte is body until eof()
                self._check_body(len(buf) - self._pos)
                return None

    def _done(self, end: int, body: bytes, framing: str) -> Reply:
        """The reply that ends at `end` of the buffer; drop its bytes."""
        buf = self._buf
        raw = bytes(buf[:end]) if end <= self.keep_raw else None
        if isinstance(buf, bytearray):
            del buf[:end]  # cheap: a bytearray drops its head without copying the rest
        else:
            self._buf = buf[end:]
        self._pos = self._scan = 0
        self._state = _HEAD
        return Reply(self._status, body, self._keep_alive, end, framing, raw)

    def _check_body(self, size: int) -> None:
        if self.max_body is not None and size > self.max_body:
            raise BodyTooLong(f"reply body over {self.max_body} bytes")

    def _head(self, head: bytes) -> Reply | None:
        """Parse a status line and headers; the reply if it has no body to wait for."""
        eol = head.find(b"\r\n")
        http_1_1, status = _status_line(head if eol < 0 else head[:eol])
        if status == 101:  # what follows is another protocol: nothing to parse
            raise ParseError("101 Switching Protocols: the connection left HTTP")
        if status < 200:  # interim: the final reply follows
            return None
        length: int | None = None
        chunked = encoded = close = keep = False
        # Only three headers matter; one regex scan finds them (3x faster than a loop
        # over every line). Other lines are not checked: any header is accepted.
        for name, value in _FRAMING.findall(head):
            name = name.lower()
            if name == b"content-length":
                text = value.strip(b" \t")
                found = int(text) if text.isdigit() and len(text) <= 18 else _length_list(value)
                if length is not None and found != length:
                    raise ParseError("bad Content-Length: two different values")
                length = found
            elif name == b"transfer-encoding":
                encoded = True  # the last coding decides: chunked, or read until close
                chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
            else:  # connection: a list of tokens
                tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
                close = close or b"close" in tokens
                keep = keep or b"keep-alive" in tokens
        self._status = status
        self._keep_alive = not close and (http_1_1 or keep)
        if status in (204, 304):
            return self._done(self._pos, b"", "none")
        if encoded:  # Transfer-Encoding overrides Content-Length (RFC 9112, 6.3)
            if chunked:
                self._state = _CHUNK_SIZE
                self._body_size = 0
                return None
        elif length is not None:
            self._check_body(length)
            if length == 0:
                return self._done(self._pos, b"", "length")
            self._state, self._need = _BODY, length
            return None
        self._state = _UNTIL_CLOSE
        self._keep_alive = False
        return None

    def _chunk_size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
        if _HEX.fullmatch(text) is None:
            raise ParseError(f"bad chunk size {line[:_SHOWN]!r}")
        size = int(text, 16)
        if size == 0:
            self._state = _TRAILER
            self._trailer_from = self._pos
            return
        self._body_size += size
        self._check_body(self._body_size)
        self._state, self._need = _CHUNK_DATA, size


def _status_line(line: bytes) -> tuple[bool, int]:
    """(HTTP/1.1?, status) of a status line; servers repeat theirs, so they are kept."""
    if (known := _STATUS_LINES.get(line)) is not None:
        return known
    match = _STATUS.fullmatch(line)
    if match is None:
        raise ParseError(f"malformed status line {line[:_SHOWN]!r}")
    known = match[1] == b"1", int(match[2])
    if known[1] < 100:
        raise ParseError(f"malformed status line {line[:_SHOWN]!r}")
    if len(_STATUS_LINES) < 256:
        _STATUS_LINES[line] = known
    return known


def _length_list(value: bytes) -> int:
    """A Content-Length value that is a list of equal values, "5, 5" (RFC 9110, 8.6)."""
    values = {v.strip(b" \t") for v in value.split(b",")}
    if len(values) != 1:
        raise ParseError(f"bad Content-Length {value[:_SHOWN]!r}")
    (text,) = values
    if not text.isdigit() or len(text) > 18:
        raise ParseError(f"bad Content-Length {value[:_SHOWN]!r}")
    return int(text)

"""The deterministic client of `bench cost`: a fixed number of requests whose count of
server wake-ups does not depend on timing.

One active connection in ping-pong (send one request, read its whole reply, check it
byte for byte, send the next), beside `idle` connections that each made one exchange
first, so that the server has accepted and registered every one of them before the
counted requests start, and then stay silent. A server wakes once per request whatever
the machine's speed, so its instructions per request are a count, not a sample.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from clients.wire import describe, exchange

PATTERNS = ("echo/64", "http/0", "http/64")  # echo, http GET /, http POST 64 B: the default
IDLE = 1000  # idle connections beside the first pattern, by default
TIMEOUT_S = 120.0  # for one reply: a server under valgrind runs 50-100 times slower


class PatternError(RuntimeError):
    """The server did not answer as it should; the message is one line."""


@dataclass(frozen=True)
class Pattern:
    """What one counted run sends: `protocol` requests of `payload` bytes (http 0 is
    GET /) on one connection, beside `idle` silent ones."""

    protocol: str
    payload: int
    idle: int = 0

    @property
    def key(self) -> str:
        """As the tables and the gate name it: echo/64, http/0, http/64, echo/64/i1000."""
        return f"{self.protocol}/{self.payload}" + (f"/i{self.idle}" if self.idle else "")

    def words(self) -> str:
        idle = f", beside {self.idle:,} idle connections" if self.idle else ""
        return describe(self.protocol, self.payload) + idle


def parse_pattern(text: str) -> Pattern:
    """'echo/64', 'http/0', 'http/64'; ValueError with one line if not."""
    protocol, _, size = text.partition("/")
    if protocol not in ("echo", "http") or not size.isdigit():
        raise ValueError(f"bad pattern {text!r}; expected echo/BYTES or http/BYTES, e.g. echo/64")
    if protocol == "echo" and int(size) == 0:
        raise ValueError(f"bad pattern {text!r}: an echo frame needs at least one byte")
    return Pattern(protocol, int(size))


@contextmanager
def driven(host: str, port: int, pattern: Pattern, requests: int) -> Iterator[None]:
    """Open the idle connections (one exchange each), then make `requests` exchanges on
    the active one; the connections close when the block ends. Stop the server inside
    the block: it then closes them itself, the same work whatever the count."""
    request, expected = exchange(pattern.protocol, pattern.payload)
    with ExitStack() as stack:
        for n in range(pattern.idle):
            sock = stack.enter_context(_connect(host, port))
            _exchange(sock, request, expected, f"idle connection {n + 1}")
        active = stack.enter_context(_connect(host, port))
        for n in range(requests):
            _exchange(active, request, expected, f"request {n + 1}")
        yield


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _exchange(sock: socket.socket, request: bytes, expected: bytes, what: str) -> None:
    sock.sendall(request)
    got = bytearray()
    try:
        while len(got) < len(expected):
            chunk = sock.recv(len(expected) - len(got))
            if not chunk:
                raise PatternError(f"{what}: the server closed the connection")
            got += chunk
    except TimeoutError:
        raise PatternError(f"{what}: no reply within {TIMEOUT_S:.0f} s") from None
    if got != expected:
        raise PatternError(f"{what}: the reply differs from the expected one")

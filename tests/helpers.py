"""Socket helpers for tests that talk to real servers."""

from __future__ import annotations

import socket
import struct
import threading

TIMEOUT = 10.0


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(sock: socket.socket, data: bytes, reply_len: int) -> bytes:
    """Send and receive at once: a big payload sent without reading would deadlock
    against a server that (rightly) stops reading while its output is unread."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        reply = recv_exactly(sock, reply_len)
    finally:
        sender.join(TIMEOUT)
    if errors:
        raise errors[0]
    return reply


def echo_roundtrip(port: int, payload: bytes = b"ping") -> None:
    with connect(port) as sock:
        assert exchange(sock, frame(payload), 4 + len(payload)) == frame(payload)

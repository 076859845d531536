"""Constants and socket helpers for tests that talk to real servers."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import psutil

from bench.server_process import ServerProcess
from servers import MODELS

# a small but realistic run folder (see tests/test_report.py), for the report tests
SMALL_RUN = Path(__file__).parent / "data" / "small_run"
TIMEOUT = 10.0  # seconds for any one socket operation of a test
# the models that run on this machine (uvloop and gevent are optional packages)
AVAILABLE = [name for name, m in MODELS.items() if m.unavailable_reason() is None]


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
        except BaseException as exc:  # re-raised in the caller
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


def send_until_stalled(
    sock: socket.socket, payload: bytes, limit_s: float, stall_s: float = 0.5
) -> tuple[int, bool]:
    """Send echo frames without reading until the peer stops taking bytes for stall_s
    (or limit_s passes). Returns (bytes sent, whether it stalled)."""
    stream = memoryview(frame(payload) * 4)
    sent, last_progress = 0, time.monotonic()
    sock.setblocking(False)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and time.monotonic() - last_progress < stall_s:
        try:
            at = sent % len(stream)  # partial sends must keep the frames aligned
            sent += sock.send(stream[at:] if at else stream)
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    return sent, time.monotonic() - last_progress >= stall_s


def prefork_processes(server: ServerProcess, workers: int) -> list[psutil.Process]:
    """Parent and children, once every one of them listens on the port."""
    parent = psutil.Process(server.pid)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        procs = [parent, *parent.children()]
        listening = [
            p
            for p in procs
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                for c in p.net_connections("tcp")
            )
        ]
        if len(listening) == workers:
            return procs
        time.sleep(0.05)
    raise AssertionError(f"not {workers} listening processes")

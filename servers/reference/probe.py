"""One blocking `GET /` to a reference server: is it answering yet, and correctly?"""

from __future__ import annotations

import socket
import time

from servers.protocol import GET_BODY

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def answers(host: str, port: int, timeout: float = 10.0) -> str | None:
    """None when `GET /` gets 200 with sockbench's body within `timeout`, else why not.
    Retries refused connects (the server may still be binding) every 10 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(REQUEST)
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
        except ConnectionRefusedError:
            time.sleep(0.01)
            continue
        except OSError as exc:
            return f"GET / failed: {exc}"
        head, _, body = reply.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 200") or not body.endswith(GET_BODY):
            return f"GET / answered {status[:80]!r} with {len(body)} body bytes"
        return None
    return f"GET / was refused for {timeout:g} s"

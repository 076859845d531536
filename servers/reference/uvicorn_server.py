"""uvicorn, as people deploy it: httptools' parser, uvloop's loop, one process, no
access log, on a minimal ASGI app answering `GET /` and `POST /echo` as the models do.

It runs inside the launcher on the launcher's listener (uvicorn takes sockets), so it
is pinned and sampled like a model. uvicorn catches SIGTERM itself, shuts down, and
raises the signal again for the launcher's handler (uvicorn.Server.capture_signals).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from servers.protocol import GET_BODY

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """GET / -> sockbench's body; POST /echo -> the request body; else 404."""
    if scope["type"] != "http":
        return
    route = (scope["method"], scope["path"])
    if route == ("GET", "/"):
        body = GET_BODY
    elif route == ("POST", "/echo"):
        parts = []
        more = True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(
    listener: socket.socket,
    protocol: str,
    ready: Callable[[dict[str, Any]], None],
    backlog: int,
) -> None:
    import uvicorn  # only here: `python -m servers list` must work without it

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            ready({"version": f"uvicorn {uvicorn.__version__}"})

    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=backlog,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=300,
    )
    Server(config).run(sockets=[listener])

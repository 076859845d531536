"""Server models, one module each, listed in one explicit table; then the reference
servers (nginx, uvicorn) the launcher starts from their recipes, in a second one.

Each model module has one entry point, `serve(listener, make_protocol, counters)`, plus
`backlog=` or `workers=` where its row's options say so. It runs until the launcher's
stop signal interrupts it, or returns after stopping itself on SIGTERM/SIGINT. Modules
are imported only when a model is run; a model is available when the platform feature
it needs exists (as CPython's `selectors` picks its backends with `hasattr(select, ...)`).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Model:
    name: str
    module: str
    needs: str | None  # "module" or "module.attribute" that must exist here
    summary: str
    reuseport: bool = False  # the launcher sets SO_REUSEPORT (several processes bind)
    options: tuple[str, ...] = ()  # launcher options serve() takes: "backlog", "workers"
    # Stopped by shutting the listener down, so that the stop surfaces from accept()
    # (servers.conn.Stopping), never as an exception raised amid thread start-up
    stop_at_accept: bool = False
    # a variant of another model (the same strategy written another way): "" for a
    # family's own line; `models = "families"` in a profile keeps one line per family
    family: str = ""

    def unavailable_reason(self) -> str | None:
        """None when the model can run here, else why not."""
        if self.needs is None:
            return None
        top, _, attr = self.needs.partition(".")
        if importlib.util.find_spec(top) is None:
            return f"needs the {top} package"
        if attr and not hasattr(importlib.import_module(top), attr):
            return f"needs {self.needs}, missing on this platform"
        return None

    def cannot_serve(self, protocol: str, payload: int) -> str | None:
        """None: every model speaks every protocol."""
        return None

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


MODELS: dict[str, Model] = {
    m.name: m
    for m in [
        Model("blocking", "servers.blocking", None, "iterative: one connection at a time"),
        Model(
            "threaded",
            "servers.threaded",
            None,
            "one OS thread per connection",
            stop_at_accept=True,
        ),
        Model("select", "servers.select_server", "select.select", "select() loop, FD_SETSIZE cap"),
        Model("poll", "servers.poll_server", "select.poll", "poll() loop"),
        Model("epoll", "servers.epoll_server", "select.epoll", "epoll loop, level-triggered"),
        Model(
            "selectors",
            "servers.selectors_server",
            "selectors.DefaultSelector",
            "stdlib selectors.DefaultSelector loop",
        ),
        Model(
            "asyncio",
            "servers.asyncio_server",
            None,
            "asyncio protocols, stdlib loop",
            options=("backlog",),
        ),
        Model(
            "uvloop",
            "servers.uvloop_server",
            "uvloop",
            "the asyncio code on uvloop's loop",
            options=("backlog",),
        ),
        Model(
            "asyncio-buffered",
            "servers.asyncio_buffered",
            None,
            "asyncio with a BufferedProtocol reading into its own buffer",
            options=("backlog",),
            family="asyncio",
        ),
        Model(
            "asyncio-streams",
            "servers.asyncio_streams",
            None,
            "asyncio.start_server, StreamReader/StreamWriter, a task per connection",
            options=("backlog",),
            family="asyncio",
        ),
        Model(
            "uvloop-buffered",
            "servers.uvloop_buffered",
            "uvloop",
            "asyncio-buffered on uvloop's loop",
            options=("backlog",),
            family="uvloop",
        ),
        Model(
            "uvloop-streams",
            "servers.uvloop_streams",
            "uvloop",
            "asyncio-streams on uvloop's loop",
            options=("backlog",),
            family="uvloop",
        ),
        Model("gevent", "servers.gevent_server", "gevent", "gevent StreamServer, greenlets"),
        Model(
            "threadpool",
            "servers.threadpool_server",
            None,
            "bounded ThreadPoolExecutor of blocking handlers",
            options=("workers",),
            stop_at_accept=True,
        ),
        Model(
            "prefork",
            "servers.prefork_server",
            "select.epoll",
            "N processes with SO_REUSEPORT, each an epoll loop",
            reuseport=True,
            options=("backlog", "workers"),
        ),
    ]
}


@dataclass(frozen=True)
class Reference:
    """A server someone else wrote, started by the launcher from its recipe module
    (servers/reference/): `serve(listener, protocol, ready)` runs it on the launcher's
    listener until the stop signal, and calls `ready(facts)` once it answers."""

    name: str
    module: str
    needs: tuple[str, ...]  # "bin:NAME" an executable on PATH, else a Python package
    summary: str
    # what it answers: "GET /" (sockbench's body) and "POST /echo" (the body sent)
    serves: tuple[str, ...]
    reuseport: bool = False  # the launcher binds with SO_REUSEPORT (the server binds too)
    python: bool = True  # runs in the launcher's interpreter (an axis of bench run --pythons)

    def unavailable_reason(self) -> str | None:
        for need in self.needs:
            kind, _, name = need.rpartition(":")
            if kind == "bin" and shutil.which(name) is None:
                return f"needs the {name} executable on PATH"
            if not kind and importlib.util.find_spec(name) is None:
                return f"needs the {name} package"
        return None

    def cannot_serve(self, protocol: str, payload: int) -> str | None:
        """None when it can answer this cell's requests, else why not."""
        asked = "GET /" if payload == 0 else "POST /echo"
        if protocol != "http":
            return f"{self.name} speaks HTTP only, not the {protocol} protocol"
        if asked not in self.serves:
            return f"{self.name} cannot answer {asked} (it serves {', '.join(self.serves)})"
        return None

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in [
        Reference(
            "nginx",
            "servers.reference.nginx",
            ("bin:nginx",),
            "nginx, one worker, access_log off: the native line (GET / only)",
            serves=("GET /",),
            reuseport=True,
            python=False,
        ),
        Reference(
            "uvicorn",
            "servers.reference.uvicorn_server",
            ("uvicorn", "httptools", "uvloop"),
            "uvicorn with httptools and uvloop on a minimal ASGI app",
            serves=("GET /", "POST /echo"),
        ),
    ]
}
# Everything the launcher can run, by name: the models, then the reference servers.
SERVERS: dict[str, Model | Reference] = {**MODELS, **REFERENCES}

"""Server models, one module each, listed in one explicit table.

Each model module has one entry point, `serve(listener, make_protocol, counters)`,
which runs until the launcher's stop signal interrupts it. Modules are imported only
when a model is run; a model is available when the platform feature it needs exists
(as CPython's `selectors` picks its backends with `hasattr(select, ...)`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Model:
    name: str
    module: str
    needs: str | None  # "module" or "module.attribute" that must exist here
    summary: str

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

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


MODELS: dict[str, Model] = {m.name: m for m in [
    Model("blocking", "servers.blocking", None, "iterative: one connection at a time"),
    Model("threaded", "servers.threaded", None, "one OS thread per connection"),
    Model("select", "servers.select_server", "select.select", "select() loop, FD_SETSIZE cap"),
    Model("poll", "servers.poll_server", "select.poll", "poll() loop"),
    Model("epoll", "servers.epoll_server", "select.epoll", "epoll loop, level-triggered"),
    Model("selectors", "servers.selectors_server", "selectors.DefaultSelector",
          "stdlib selectors.DefaultSelector loop"),
]}

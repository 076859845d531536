"""A server model as a child process (`python -m servers run`): start, stop, counters.

For the bench, the crosscheck and the tests: it talks to the launcher only through its
command line and its two JSON lines (ready, stopped), so it imports nothing of servers.

The child dies with its parent (PR_SET_PDEATHSIG on Linux), so a crashed or killed
bench leaves no orphan server behind.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.process import die_with_parent


class ServerStartError(RuntimeError):
    pass


def _child_setup(cpus: Sequence[int] | None, fd_limit: int | None = None) -> Callable[[], None]:
    """Runs in the child before exec: pinned from its first instruction, so a model
    that sizes itself by its CPU set (prefork) sees the plan, not the whole machine.
    fd_limit caps RLIMIT_NOFILE (soft and hard: the launcher raises soft to hard)."""

    def setup() -> None:
        die_with_parent()
        if cpus:
            os.sched_setaffinity(0, set(cpus))
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    return setup


@dataclass
class ServerProcess:
    model: str
    protocol: str = "echo"
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    cpus: Sequence[int] | None = None
    ready_timeout: float = 10.0
    fd_limit: int | None = None  # to run the server out of descriptors (tests)
    proc: subprocess.Popen[str] | None = field(default=None, init=False)
    ready: dict[str, Any] = field(default_factory=dict, init=False)
    stopped: dict[str, Any] | None = field(default=None, init=False)
    stderr: str = field(default="", init=False)

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "servers",
            "run",
            self.model,
            "--protocol",
            self.protocol,
            "--host",
            self.host,
            "--port",
            "0",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_child_setup(self.cpus, self.fd_limit),
        )
        line = self._read_line(self.ready_timeout)
        if not line:
            self.kill()
            self.stderr += self.proc.communicate()[1] or ""
            raise ServerStartError(
                f"{self.model} did not become ready: {self.stderr.strip()[-500:] or 'no output'}"
            )
        self.ready = json.loads(line)
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if sel.select(timeout):
                line: str = self.proc.stdout.readline()
                return line
        return ""

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait, collect the counters line; SIGKILL if it does not stop."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
        self.stderr += err or ""
        for line in (out or "").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "stopped":
                self.stopped = event
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_stopped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

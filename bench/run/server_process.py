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
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.run.interpreters import clean_environ
from bench.settings import ALLOCATOR_POLICIES
from common.process import block_stop_signals, die_with_parent

STDERR_TAIL = 64 * 1024  # bytes of the server's stderr read back for messages
STDOUT_TAIL = 200  # lines of the server's stdout kept (after the ready line)


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


def allocator_env(environ: Mapping[str, str], policy: str = "warm") -> dict[str, str]:
    """The server's environment under one allocator policy (bench.settings) for
    every model: a MALLOC_* or GLIBC_TUNABLES setting left in the caller's shell is
    dropped, so it cannot favour one run over another."""
    env = {
        k: v for k, v in environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    env.update(ALLOCATOR_POLICIES[policy])
    return env


@dataclass
class ServerProcess:
    model: str
    protocol: str = "echo"
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    cpus: Sequence[int] | None = None
    ready_timeout: float = 10.0
    fd_limit: int | None = None  # to run the server out of descriptors (tests)
    allocator: str = "warm"  # allocator_env's policy
    env: Mapping[str, str] = field(default_factory=dict)  # set in the server's environment
    # the checkout whose servers/ run (bench ab); None: this one. `-m servers` imports
    # from the working directory first.
    cwd: Path | None = None
    # another interpreter's python (bench run --pythons); None: this one. It runs with
    # the harness's PYTHON* variables removed (bench.run.interpreters.clean_environ).
    python: Path | None = None
    # the command the server runs under, as `ip netns exec NAME` (bench hosts: another
    # host); it must exec the server, so that `pid` stays the server's
    launcher: Sequence[str] = ()
    proc: subprocess.Popen[str] | None = field(default=None, init=False)
    ready: dict[str, Any] = field(default_factory=dict, init=False)
    stopped: dict[str, Any] | None = field(default=None, init=False)
    stderr_bytes: int = field(default=0, init=False)  # all the server wrote there
    # The server's stderr goes to a file, not a pipe: a server that writes more than a
    # pipe holds (asyncio and gevent log every failed accept) would block mid-cell.
    _stderr_file: IO[bytes] | None = field(default=None, init=False, repr=False)
    _stderr_tail: str = field(default="", init=False, repr=False)
    # Its stdout is drained by a thread for the same reason; the last lines are kept.
    stdout_tail: deque[str] = field(
        default_factory=lambda: deque(maxlen=STDOUT_TAIL), init=False, repr=False
    )
    _drain: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def stderr(self) -> str:
        """The end of what the server wrote to stderr (at most STDERR_TAIL bytes)."""
        if self._stderr_file is not None:
            self._read_stderr()
        return self._stderr_tail

    def _read_stderr(self) -> None:
        assert self._stderr_file is not None
        self.stderr_bytes = os.fstat(self._stderr_file.fileno()).st_size
        self._stderr_file.seek(max(0, self.stderr_bytes - STDERR_TAIL))
        self._stderr_tail = self._stderr_file.read().decode("utf-8", "replace")

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            *self.launcher,
            str(self.python or sys.executable),
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

    def start(self) -> ServerProcess:
        self._stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            preexec_fn=_child_setup(self.cpus, self.fd_limit),
            env={**allocator_env(self._environ(), self.allocator), **self.env},
            cwd=self.cwd,
        )
        line = self._read_line(self.ready_timeout)
        if not line:
            self.kill()
            self.proc.communicate()
            self._close_stderr()
            raise ServerStartError(
                f"{self.model} did not become ready: {self.stderr.strip()[-500:] or 'no output'}"
            )
        self.ready = json.loads(line)
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        return self

    def _environ(self) -> Mapping[str, str]:
        return os.environ if self.python is None else clean_environ(os.environ)

    def _drain_stdout(self) -> None:
        block_stop_signals()  # Ctrl-C and SIGTERM are the main thread's to handle
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_tail.append(line)

    def _close_stderr(self) -> None:
        if self._stderr_file is not None:
            self._read_stderr()
            self._stderr_file.close()
            self._stderr_file = None

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if sel.select(timeout):
                line: str = self.proc.stdout.readline()
                return line
        return ""

    def exit_code(self) -> int | None:
        """None while the server runs, else its exit code."""
        assert self.proc is not None  # started
        return self.proc.poll()

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, wait, collect the counters line; SIGKILL if it does not stop."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._drain is not None:
            self._drain.join(timeout)  # to EOF: the launcher's last line is in
        elif self.proc.stdout is not None:
            self.stdout_tail.extend(self.proc.stdout.read().splitlines(keepends=True))
        if self.proc.stdout is not None and (self._drain is None or not self._drain.is_alive()):
            self.proc.stdout.close()
        self._close_stderr()
        for line in self.stdout_tail:  # the launcher's stopped line
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "stopped":
                self.stopped = event
        return self.proc.returncode

    def log_text(self) -> str:
        """What the server wrote besides its JSON lines: the ends of stderr and stdout."""
        out = "".join(line for line in self.stdout_tail if not line.startswith("{"))
        parts = []
        if self.stderr.strip():
            skipped = self.stderr_bytes - len(self.stderr.encode())
            head = f"[first {skipped} bytes left out]\n" if skipped > 0 else ""
            parts.append(f"== stderr ==\n{head}{self.stderr}")
        if out.strip():
            parts.append(f"== stdout (last {STDOUT_TAIL} lines) ==\n{out}")
        return "\n".join(parts)

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

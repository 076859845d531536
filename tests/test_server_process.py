"""bench.run.server_process: the harness's handle on a server child, on a fake server."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.run.server_process import STDERR_TAIL, ServerProcess
from bench.settings import ALLOCATOR_POLICIES

pytestmark = pytest.mark.real  # starts processes

# Speaks the launcher's contract (a ready line, a stopped line on SIGTERM) and writes
# 1 MiB to stderr and 1 MiB to stdout after the ready line, as a model logging every
# failed accept would.
FLOODING_SERVER = textwrap.dedent("""
    import json, signal, sys
    from pathlib import Path
    def stop(*_):
        print(json.dumps({"event": "stopped", "accepted": 0}), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(json.dumps({"event": "ready", "port": 9, "pid": 0}), flush=True)
    for _ in range(1024):
        sys.stderr.write("x" * 1023 + "\\n")
        sys.stdout.write("y" * 1023 + "\\n")
    sys.stderr.flush()
    sys.stdout.flush()
    Path(sys.argv[1]).write_text("wrote it all")
    signal.pause()
""")


class FloodingServer(ServerProcess):
    def __init__(self, marker: Path) -> None:
        super().__init__("flood")
        self.marker = marker

    def command(self) -> list[str]:
        return [sys.executable, "-c", FLOODING_SERVER, str(self.marker)]


def test_a_server_that_floods_stderr_and_stdout_does_not_block(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    server = FloodingServer(marker).start()
    try:
        # When stderr or stdout was a pipe read only at the stop, the server blocked
        # once the 64 KiB pipe was full and never wrote the marker.
        _wait_for(marker, 10.0)
    finally:
        code = server.stop()
    assert code == 0
    assert server.stopped == {"event": "stopped", "accepted": 0}
    assert server.stderr_bytes == 1024 * 1024
    assert len(server.stderr) <= STDERR_TAIL + 1024 and server.stderr.endswith("x\n")
    log = server.log_text()  # what the runner keeps in the run folder: bounded
    assert "== stderr ==" in log and "== stdout (last 200 lines) ==" in log
    assert len(log) < STDERR_TAIL + 201 * 1024 and "[first " in log


def _wait_for(path: Path, timeout: float) -> None:
    """Poll for a file the child writes (the event this test synchronises on)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared: the server is blocked"
        time.sleep(0.01)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize("policy", ["warm", "cold"])
def test_every_server_gets_the_runs_allocator_policy(monkeypatch, policy: str) -> None:
    # a variable left in the caller's shell must not reach one run's servers
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    with ServerProcess("epoll", allocator=policy) as server:
        env = _environ(server.pid)
    malloc = {k: v for k, v in env.items() if k.startswith("MALLOC_")}
    assert malloc == ALLOCATOR_POLICIES[policy]
    assert (malloc == {}) == (policy == "cold")

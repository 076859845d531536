"""`python -m servers`: listing, bad input, readiness and clean stops."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

from servers import MODELS, REFERENCES, SERVERS
from tests.helpers import AVAILABLE, connect, echo_roundtrip

pytestmark = pytest.mark.real  # real servers and load: not in `make test-fast`


def run_servers(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args], capture_output=True, text=True, timeout=30
    )


def test_list_shows_every_model_and_its_availability() -> None:
    result = run_servers("list", "--json")
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["model"] for r in rows] == list(SERVERS)  # the models, then the references
    assert [r["kind"] for r in rows] == ["model"] * len(MODELS) + ["reference"] * len(REFERENCES)
    assert {"blocking", "threaded", "select", "poll", "epoll", "selectors"} <= {
        r["model"] for r in rows if r["available"]
    }
    assert "epoll" in run_servers("list").stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nosuchmodel"], "unknown model"),
        (["run", "epoll", "--port", "70000"], "outside 0-65535"),
        (["run", "epoll", "--port", "abc"], "invalid port"),
        (["run", "epoll", "--protocol", "gopher"], "invalid choice"),
        (["run", "epoll", "--max-frame", "0"], "positive integer"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_servers(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_servers("run", "epoll", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "cannot listen" in result.stderr and "in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("model", AVAILABLE)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_within_2s_closing_connections(server_factory, model, signum) -> None:
    server = server_factory(model, "echo")
    assert server.ready["event"] == "ready" and server.ready["model"] == model
    assert server.ready["pid"] == server.pid and server.ready["port"] > 0
    echo_roundtrip(server.port)
    idle = connect(server.port)  # an open, idle connection must not hold the stop up
    time.sleep(0.05)
    start = time.monotonic()
    server.proc.send_signal(signum)
    assert server.wait_stopped(2.0), "did not stop within 2 s"
    assert time.monotonic() - start < 2.0
    assert server.stop() == 0
    assert server.stopped["accepted"] >= 1 and server.stopped["closed"] >= 1
    idle.settimeout(2)
    try:
        assert idle.recv(1) == b""
    except ConnectionResetError:
        pass
    idle.close()


@pytest.mark.real
def test_a_server_started_with_sigterm_blocked_still_stops_on_it() -> None:
    """A blocked signal mask survives exec; the launcher unblocks its stop signals."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "servers", "run", "threaded", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}),
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""Reference servers (nginx, uvicorn) started by the launcher, and external servers
started by someone else, as model lines of a bench run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench import cli
from bench.run.external import External, check_external, parse_external
from bench.run.server_process import ServerProcess
from bench.store import RunStore
from servers import REFERENCES
from tests.helpers import connect, recv_until_eof

AVAILABLE_REFERENCES = [n for n, r in REFERENCES.items() if r.unavailable_reason() is None]
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def get(port: int, request: bytes = GET) -> bytes:
    with connect(port) as sock:
        sock.sendall(request)
        return recv_until_eof(sock)


def test_servers_list_shows_the_reference_servers_with_availability() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "servers", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {row["model"]: row for row in map(json.loads, out.splitlines())}
    for name, reference in REFERENCES.items():
        assert rows[name]["kind"] == "reference"
        assert rows[name]["available"] == (reference.unavailable_reason() is None)
    assert rows["epoll"]["kind"] == "model"


def test_what_a_reference_server_cannot_serve_is_said() -> None:
    nginx = REFERENCES["nginx"]
    assert nginx.cannot_serve("http", 0) is None
    assert "cannot answer POST /echo" in (nginx.cannot_serve("http", 64) or "")
    assert "HTTP only" in (nginx.cannot_serve("echo", 64) or "")
    assert REFERENCES["uvicorn"].cannot_serve("http", 64) is None


def test_a_missing_binary_makes_a_reference_unavailable(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert REFERENCES["nginx"].unavailable_reason() == "needs the nginx executable on PATH"


@pytest.mark.real
@pytest.mark.parametrize("name", AVAILABLE_REFERENCES)
def test_a_reference_server_answers_get_and_leaves_no_process_behind(name: str) -> None:
    with ServerProcess(name, "http") as server:
        reply = get(server.port)
        children = psutil.Process(server.pid).children(recursive=True)
        assert server.ready["reference"]["version"]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"Hello, world!\n"
    assert server.stopped == {"event": "stopped", "model": name}
    assert server.proc is not None and server.proc.returncode == 0
    for child in children:  # nginx: its process ends with the launcher
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


@pytest.mark.real
@pytest.mark.skipif("uvicorn" not in AVAILABLE_REFERENCES, reason="uvicorn is not installed")
def test_uvicorn_echoes_a_post_body() -> None:
    body = bytes(range(256)) * 4
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    with ServerProcess("uvicorn", "http") as server:
        reply = get(server.port, request % len(body) + body)
    assert reply.partition(b"\r\n\r\n")[2] == body


@pytest.mark.parametrize("name", list(REFERENCES))
def test_the_launcher_refuses_a_protocol_a_reference_server_does_not_speak(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "servers", "run", name, "--protocol", "echo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "error:" in done.stderr and not done.stdout


# -- external servers ------------------------------------------------------------------


def test_an_external_spec_is_parsed_or_refused_in_one_line() -> None:
    assert parse_external("mine=127.0.0.1:8080") == External("mine", "127.0.0.1", 8080)
    assert parse_external("n-1=[::1]:80,pid=42") == External("n-1", "::1", 80, 42)
    assert parse_external("n-1=[::1]:80").target == "[::1]:80"
    for bad in ("mine", "=127.0.0.1:80", "mine=127.0.0.1", "a b=x:1", "m=x:1,cpu=3"):
        with pytest.raises(ValueError) as caught:
            parse_external(bad)
        assert "\n" not in str(caught.value)


def test_an_external_address_is_checked_before_use() -> None:
    assert "not a loopback" in (check_external(External("n", "10.9.9.9", 80), False) or "")
    assert "no process" in (
        check_external(External("n", "127.0.0.1", 80, 999_999_999), False) or ""
    )
    assert "does not answer" in (check_external(External("n", "127.0.0.1", 1), False) or "")


@pytest.mark.parametrize(
    "args",
    [
        ["--external", "mine=127.0.0.1:1"],  # nothing listens there
        ["--external", "mine=192.0.2.1:80"],  # not loopback, no --allow-remote
        ["--external", "epoll=127.0.0.1:1"],  # a model's name
        ["--external", "mine"],
        ["--external", "mine=127.0.0.1:1", "--expect-status", "2000"],
    ],
)
def test_bad_external_servers_exit_2_before_any_cell(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--models", "epoll", "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder: nothing started


@pytest.mark.real
def test_an_external_server_is_one_more_model_line(tmp_path: Path) -> None:
    """A server started by hand (here our epoll model), named on the command line,
    with its pid: its row carries its address, and its CPU per request."""
    with ServerProcess("epoll", "http") as server:
        spec = f"byhand=127.0.0.1:{server.port},pid={server.pid}"
        code = cli.main(
            [
                "run",
                "--models",
                "epoll",
                "--external",
                spec,
                "--protocol",
                "http",
                "--payloads",
                "0",
                "--connections",
                "4",
                "--duration",
                "0.3",
                "--warmup",
                "0.1",
                "--out",
                str(tmp_path),
                "--run-id",
                "t",
                "--no-report",
            ]
        )
        assert code == 0
        # the same server held to another body: every reply is a mismatch, and the row says so
        other = cli.main(
            ["run", "--models", "epoll", "--external", spec, "--expect-body", "other"]
            + ["--protocol", "http", "--payloads", "0", "--connections", "4"]
            + ["--duration", "0.3", "--warmup", "0.1", "--out", str(tmp_path)]
            + ["--run-id", "t2", "--no-report"]
        )
        assert other == 0
    held = {row.cell.model: row for row in RunStore.open(tmp_path / "t2").rows()}
    assert held["epoll"].status in ("ok", "client-bound")  # the models answer their own body
    assert held["byhand"].status == "failed" and held["byhand"].load is not None
    mismatched = (
        held["byhand"].load.errors["mismatch"] + held["byhand"].load.errors_before["mismatch"]
    )
    assert mismatched >= 4  # one per connection: each closes on its first wrong reply
    assert "mismatched replies" in (held["byhand"].reason or "")
    rows = {row.cell.model: row for row in RunStore.open(tmp_path / "t").rows()}
    assert set(rows) == {"epoll", "byhand"}
    row = rows["byhand"]
    assert row.status in ("ok", "client-bound"), row.reason
    assert row.load is not None and row.load.requests > 0 and row.load.error_count == 0
    address = f"127.0.0.1:{server.port}"
    assert row.server["external"] == {"name": "byhand", "address": address, "pid": server.pid}
    assert row.server_cpu_us_per_request is not None and row.server_cpu_us_per_request > 0
    assert row.server_core_us_per_request is None  # not on the server CPUs: no core view


def test_charts_of_a_client_bound_reference_say_whose_limit_its_line_is() -> None:
    import pandas as pd

    from bench.report.build import reference_note

    cells = pd.DataFrame({"cell.model": ["nginx", "epoll"], "status": ["client-bound", "ok"]})
    assert reference_note(cells, "throughput").startswith("nginx: client-bound")
    assert reference_note(cells, "cpu_per_request") == ""  # what still compares
    assert reference_note(cells.assign(status="ok"), "throughput") == ""
    epoll_bound = pd.DataFrame({"cell.model": ["epoll"], "status": ["client-bound"]})
    assert reference_note(epoll_bound, "throughput") == ""  # a model: the verdict says it

"""Locust as the second driver: live runs against real servers, the CSV adapter, the CLI.

Locust runs only in subprocesses (it monkey-patches socket through gevent on import);
each live test checks that nothing of the locust run is left behind.
"""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from clients import locust_driver
from clients.locust_driver import (
    ERROR_KEYS,
    LOCUSTFILE,
    LocustRunError,
    UsageError,
    error_kind,
    from_locust_stats,
    run_locust,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "locust"
LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max", "mean")


@pytest.fixture
def locust_sessions(monkeypatch) -> Iterator[list[int]]:
    """Records the session of every locust the driver starts; at teardown, asserts that
    no process of those sessions (locust or a worker it forked) is still alive."""
    sessions: list[int] = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = popen(*args, **kwargs)
        if kwargs.get("start_new_session"):
            sessions.append(proc.pid)  # a session leader: its pid is the session id
        return proc

    monkeypatch.setattr("clients.locust_driver.subprocess.Popen", recording_popen)
    yield sessions
    assert sessions, "the driver started no locust"
    assert not alive_in_sessions(sessions)


def alive_in_sessions(sessions: list[int]) -> list[int]:
    alive = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) in sessions and psutil.Process(pid).status() != "zombie":
                alive.append(pid)
        except (OSError, psutil.Error):
            continue
    return alive


def assert_clean(result: dict) -> None:
    assert result["schema"] == 1 and result["tool"] == "sockbench.locust"
    assert result["requests"] > 0
    assert result["throughput_rps"] > 0
    assert result["errors"] == dict.fromkeys(ERROR_KEYS, 0)
    lat = result["latency_us"]
    assert all(lat[key] is not None for key in LATENCY_KEYS), lat
    # Non-zero p50 shows the locustfile's sub-millisecond buckets are in use.
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


@pytest.mark.real
def test_echo_run_against_epoll(server_factory, locust_sessions) -> None:
    server = server_factory("epoll", "echo")
    result = run_locust(
        f"127.0.0.1:{server.port}", protocol="echo", users=10, duration=5, payload=64
    )
    print(
        f"\nlocust echo 5 s: {result['requests']} requests, {result['throughput_rps']} "
        f"req/s, latency_us {result['latency_us']}, client {result['client']}"
    )
    assert_clean(result)
    assert result["bytes"] == result["requests"] * (4 + 64)
    assert result["connections"] == {"asked": 10, "established": 10, "starved": None}
    assert result["connect_us"]["p50"] is not None
    assert 3.5 < result["duration_s"] <= 5.5
    assert sum(result["timeline"]) > 0
    assert result["client"]["cpu_percent"]  # sampled while the users ran
    assert result["window"]["end_unix"] > result["window"]["start_unix"]
    assert server.proc.poll() is None  # the server outlived the run


@pytest.mark.real
def test_http_get_against_epoll(server_factory, locust_sessions) -> None:
    server = server_factory("epoll", "http")
    result = run_locust(f"127.0.0.1:{server.port}", protocol="http", users=5, duration=2, payload=0)
    assert_clean(result)
    assert result["params"]["user_class"] == "HttpGetUser"
    assert result["bytes"] == result["requests"] * len(b"Hello, world!\n")


@pytest.mark.real
def test_distributed_master_and_one_worker(server_factory, locust_sessions) -> None:
    """--master with one worker started by hand, as on two machines; the payload option
    reaches the worker only through the master, so the byte count shows it did."""
    server = server_factory("epoll", "http")
    port = locust_driver.free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # recorded by locust_sessions, as the driver's locust
    try:
        result = run_locust(
            f"127.0.0.1:{server.port}",
            protocol="http",
            users=4,
            duration=3,
            payload=100,
            master=True,
            expect_workers=1,
            master_bind_port=port,
        )
        assert worker.wait(10) == 0  # the master told it to quit
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
            worker.wait()
    assert_clean(result)
    assert result["params"]["user_class"] == "HttpEchoUser"
    assert result["bytes"] == result["requests"] * 100
    assert result["client"]["saturated"] is None  # the worker's CPU is not ours to see


class _CorruptingEcho(socketserver.BaseRequestHandler):
    """Echoes each frame with its last byte flipped."""

    def handle(self) -> None:
        sock = self.request
        try:
            while header := sock.recv(4, socket.MSG_WAITALL):
                size = int.from_bytes(header, "big")
                payload = bytearray(sock.recv(size, socket.MSG_WAITALL))
                payload[-1] ^= 0xFF
                sock.sendall(header + payload)
        except OSError:
            pass  # the user hung up after seeing the mismatch, as it should


@pytest.mark.real
def test_echo_mismatch_is_a_failure(locust_sessions) -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CorruptingEcho) as fake:
        fake.daemon_threads = True
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        try:
            result = run_locust(
                f"127.0.0.1:{fake.server_address[1]}", users=2, duration=1, payload=16
            )
        finally:
            fake.shutdown()
    assert result["requests"] == 0
    assert result["errors"]["mismatch"] > 0
    assert sum(result["errors"].values()) == result["errors"]["mismatch"]
    assert result["latency_us"]["p50"] is None  # no verified reply, no latency
    assert result["connections"]["established"] == 2


@pytest.mark.real
def test_timeout_kills_locust(locust_sessions, monkeypatch) -> None:
    monkeypatch.setattr(locust_driver, "STARTUP_GRACE_S", -0.5)  # a 0.5 s limit
    port = locust_driver.free_port()
    with pytest.raises(LocustRunError, match="did not finish"):
        run_locust(f"127.0.0.1:{port}", users=2, duration=1, processes=2)


# -- the adapter, on fixed CSV files ---------------------------------------------------

PARAMS = {"users": 10, "rate": None, "protocol": "echo"}


def test_adapter_maps_fixed_csv() -> None:
    result = from_locust_stats(
        DATA / "run_stats.csv", DATA / "run_stats_history.csv", PARAMS, DATA / "run_failures.csv"
    )
    assert result["params"] == PARAMS
    assert result["requests"] == 1000  # 1010 echo requests, 10 of them failed
    assert result["duration_s"] == 5.0  # 1010 requests / 202 per second
    assert result["throughput_rps"] == 200.0
    assert result["bytes"] == 68000
    assert result["latency_us"] == {
        "p50": 270,
        "p90": 440,
        "p99": 650,
        "p999": 2300,
        "max": 32538,
        "mean": 303.4,
    }
    # p99's bucket (1.5 ms) is above the exact max (1.4973 ms): clamped to the max.
    assert result["connect_us"] == {"p50": 890, "p99": 1497, "max": 1497}
    assert result["errors"] == {
        "connect_refused": 2,
        "connect_timeout": 0,
        "reset": 6,
        "timeout": 0,
        "mismatch": 3,
        "closed": 1,
        "other": 1,
    }
    assert result["connections"] == {"asked": 10, "established": 10, "starved": None}
    assert result["timeline"] == [400, 396, 102, 102]  # the 2 s gap is spread evenly
    assert result["rate"] == {"asked": None, "achieved": 200.0}
    assert result["fairness"] is None
    assert result["client"] == {"cpu_percent": [], "saturated": None}
    assert "milliseconds" in result["resolution"]


def test_adapter_counts_unclassified_failures_as_other() -> None:
    result = from_locust_stats(DATA / "run_stats.csv", None, PARAMS, None)
    assert result["errors"] == {**dict.fromkeys(ERROR_KEYS, 0), "other": 13}
    assert result["timeline"] == []


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("ConnectionRefusedError(111, 'Connection refused')", "connect_refused"),
        ("ConnectTimeout('connect timed out')", "connect_timeout"),
        ("ConnectionResetError(104, 'Connection reset by peer')", "reset"),
        ("BrokenPipeError(32, 'Broken pipe')", "reset"),
        ("TimeoutError('timed out')", "timeout"),
        ("EchoMismatch('reply differs from frame')", "mismatch"),
        ("BadStatus('HTTP 404')", "mismatch"),
        ("EchoClosed('connection closed before the reply')", "closed"),
        ("HTTPConnectionClosed('connection closed.')", "closed"),
        ("CatchResponseError('something')", "other"),
        ("a plain string", "other"),
    ],
)
def test_error_kind(error: str, kind: str) -> None:
    assert error_kind(error) == kind


def test_locustfile_failure_types_are_all_mapped() -> None:
    """The locustfile's own exception classes must each have an error kind."""
    import ast

    tree = ast.parse(LOCUSTFILE.read_text())
    names = [
        n.name
        for n in tree.body
        if isinstance(n, ast.ClassDef)
        and any(getattr(b, "id", "").endswith(("Exception", "Error")) for b in n.bases)
    ]
    assert names
    assert all(error_kind(f"{name}('x')") != "other" for name in names), names


# -- the command line ------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.locust_driver", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_refuses_a_remote_target() -> None:
    done = run_cli("--target", "192.0.2.1:8000", "--duration", "1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "loopback" in done.stderr
    with pytest.raises(UsageError, match="loopback"):
        run_locust("192.0.2.1:8000")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--target", "127.0.0.1"],
        ["--target", "127.0.0.1:70000"],
        ["--target", "127.0.0.1:8000", "--protocol", "line"],
        ["--target", "127.0.0.1:8000", "--users", "0"],
        ["--target", "127.0.0.1:8000", "--payload", "-1"],
        ["--target", "127.0.0.1:8000", "--spawn-rate", "nan"],
        ["--target", "127.0.0.1:8000", "--expect-workers", "2"],
        ["--target", "127.0.0.1:8000", "--master", "--processes", "2"],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        locust_driver.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "error:" in err


def test_servers_and_loadgen_never_import_locust() -> None:
    """gevent's monkey-patching must stay out of the servers and the native load
    generator; the locust driver itself only runs locust as a subprocess."""
    code = (
        "import importlib, importlib.util, sys\n"
        "mods = ['servers.epoll_server', 'servers.__main__', 'clients.locust_driver']\n"
        "mods += [m for m in ('clients.loadgen', 'clients.worker')"
        " if importlib.util.find_spec(m)]\n"
        "for m in mods: importlib.import_module(m)\n"
        "bad = sorted(m for m in ('gevent', 'locust') if m in sys.modules)\n"
        "assert not bad, (mods, bad)\n"
        "print(' '.join(mods))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "servers.epoll_server" in done.stdout


@pytest.mark.real
def test_a_killed_driver_takes_locust_and_its_forked_workers_with_it(server_factory) -> None:
    server = server_factory("epoll", "echo")
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clients.locust_driver",
            "--target",
            f"127.0.0.1:{server.port}",
            "--users",
            "4",
            "--duration",
            "20",
            "--processes",
            "2",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, family = time.monotonic() + 30, []
        while time.monotonic() < deadline:  # locust, then the two workers it forks
            family = psutil.Process(driver.pid).children(recursive=True)
            if len(family) >= 3:
                break
            time.sleep(0.1)
        assert len(family) >= 3, f"locust and 2 workers did not start: {family}"
        driver.kill()  # a crash: no finally, no cleanup of its own
        driver.wait()
        psutil.wait_procs(family, timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        leftovers = []
        for proc in family:  # whatever this test started and is still there
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(proc.pid)
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
    assert leftovers == []

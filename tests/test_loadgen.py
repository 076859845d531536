"""The native load generator against real servers on 127.0.0.1, and against tiny
misbehaving servers written here (a byte flipped, a byte too many, a 200 ms stall)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from bench.server_process import ServerProcess
from clients import hist, wire
from clients.errors import ERROR_KINDS
from clients.loadgen import ConfigError, LoadConfig, LoadgenError, main, run
from clients.target import is_loopback
from servers.protocol import _GET_RESPONSE, PERSISTENT, EchoProtocol, HttpProtocol

RESULT_KEYS = {
    "schema",
    "tool",
    "params",
    "requests",
    "throughput_rps",
    "bytes",
    "duration_s",
    "latency_us",
    "connect_us",
    "errors",
    "connections",
    "fairness",
    "timeline",
    "rate",
    "client",
    "histogram",
    "window",
}


def loadgen(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.loadgen", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def loadgen_json(*args: str) -> dict:
    done = loadgen(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def total_errors(result: dict) -> int:
    return sum(result["errors"].values())


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerProcess]:
    with ServerProcess(model="epoll", protocol="echo") as server:
        yield server


@pytest.fixture(scope="module")
def http_server() -> Iterator[ServerProcess]:
    with ServerProcess(model="epoll", protocol="http") as server:
        yield server


class TinyEchoServer:
    """A thread-per-connection echo-protocol server whose replies a test can spoil:
    `reply(n, frame)` returns the bytes to send for the n-th frame of a connection."""

    def __init__(self, reply: Callable[[int, bytes], bytes]) -> None:
        self.reply = reply
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.conns: list[socket.socket] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> TinyEchoServer:
        self.threads[0].start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in list(self.threads):
            thread.join(5)
        self.listener.close()
        for conn in self.conns:
            conn.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _recv_exact(self, conn: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = conn.recv(size - len(data))
            except TimeoutError:
                if self.stop.is_set():
                    return None
                continue
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        n = 0
        while (head := self._recv_exact(conn, 4)) is not None:
            body = self._recv_exact(conn, int.from_bytes(head, "big"))
            if body is None:
                return
            n += 1
            try:
                conn.sendall(self.reply(n, head + body))
            except OSError:
                return


# -- correct runs against the real servers ----------------------------------------------


@pytest.mark.real
def test_echo_run_against_epoll(echo_server: ServerProcess) -> None:
    result = run(
        LoadConfig(
            target=f"127.0.0.1:{echo_server.port}",
            connections=8,
            processes=2,
            duration=0.5,
            warmup=0.2,
            payload=64,
        )
    )
    assert set(result) == RESULT_KEYS
    assert result["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    assert result["requests"] > 0
    assert result["bytes"] == result["requests"] * 68
    assert result["connections"] == {"asked": 8, "established": 8, "starved": 0}
    assert result["fairness"] > 0.5
    assert sum(result["timeline"]) == result["requests"]
    assert len(result["client"]["cpu_percent"]) == 2
    window = result["window"]
    assert window["end_unix"] - window["start_unix"] == pytest.approx(0.5, abs=1e-3)
    assert window["start_unix"] < time.time() < window["end_unix"] + 30
    lat = result["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    merged = hist.merge([result["histogram"]])
    assert merged.get_total_count() == result["requests"]


@pytest.mark.real
@pytest.mark.parametrize("payload", [0, 1000])
def test_http_get_and_post(http_server: ServerProcess, payload: int) -> None:
    result = loadgen_json(
        "--target",
        f"127.0.0.1:{http_server.port}",
        "--protocol",
        "http",
        "--payload",
        str(payload),
        "--connections",
        "4",
        "--processes",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    )
    assert total_errors(result) == 0, result["errors"]
    assert result["requests"] > 0
    assert result["connections"]["starved"] == 0
    assert result["params"]["payload"] == payload


@pytest.mark.real
def test_large_echo_payload_streams_in_pieces(echo_server: ServerProcess) -> None:
    result = loadgen_json(
        "--target",
        f"127.0.0.1:{echo_server.port}",
        "--payload",
        "3000000",
        "--connections",
        "2",
        "--processes",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    )
    assert total_errors(result) == 0, result["errors"]
    assert result["requests"] > 0


@pytest.mark.real
def test_per_request_mode(echo_server: ServerProcess) -> None:
    result = loadgen_json(
        "--target",
        f"127.0.0.1:{echo_server.port}",
        "--mode",
        "per-request",
        "--connections",
        "4",
        "--processes",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    )
    assert total_errors(result) == 0, result["errors"]
    assert result["requests"] > 0
    assert result["connections"] == {"asked": 4, "established": 4, "starved": 0}
    assert result["connect_us"]["p50"] > 0


@pytest.mark.real
def test_open_loop_reaches_the_asked_rate(echo_server: ServerProcess) -> None:
    result = loadgen_json(
        "--target",
        f"127.0.0.1:{echo_server.port}",
        "--rate",
        "2000",
        "--connections",
        "4",
        "--processes",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    )
    assert total_errors(result) == 0, result["errors"]
    assert result["rate"]["asked"] == 2000
    assert 1800 <= result["rate"]["achieved"] <= 2100


@pytest.mark.real
def test_pinned_worker_busy_polls_but_reports_only_its_work() -> None:
    # Replies come ~60 us late: a pinned worker spins through each wait (its raw CPU
    # use is near 100%), and that spinning must not make it look saturated.
    def slow(n: int, frame: bytes) -> bytes:
        end = time.perf_counter() + 0.00006
        while time.perf_counter() < end:
            pass
        return frame

    cpu = str(max(os.sched_getaffinity(0)))
    with TinyEchoServer(slow) as server:
        result = loadgen_json(
            "--target",
            server.target,
            "--connections",
            "1",
            "--cpus",
            cpu,
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
        )
    assert total_errors(result) == 0 and result["requests"] > 100
    assert result["client"]["cpu_percent"][0] < 50, result["client"]
    assert not result["client"]["saturated"]


# -- wrong servers ----------------------------------------------------------------------


def _spoil(kind: str) -> Callable[[int, bytes], bytes]:
    def reply(n: int, frame: bytes) -> bytes:
        if n != 50:
            return frame
        if kind == "flip":
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame + b"!"  # one byte too many

    return reply


@pytest.mark.real
@pytest.mark.parametrize("kind", ["flip", "extra"])
def test_mismatch_is_detected_and_counted(kind: str) -> None:
    with TinyEchoServer(_spoil(kind)) as server:
        result = loadgen_json(
            "--target",
            server.target,
            "--connections",
            "2",
            "--processes",
            "1",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        )
    assert result["errors"]["mismatch"] == 2, result["errors"]
    assert result["errors"]["closed"] == result["errors"]["reset"] == 0
    assert 0 < result["requests"] <= 2 * 49


@pytest.mark.real
def test_server_killed_mid_run_is_a_result() -> None:
    with ServerProcess(model="epoll", protocol="echo") as server:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clients.loadgen",
                "--target",
                f"127.0.0.1:{server.port}",
                "--connections",
                "4",
                "--processes",
                "2",
                "--duration",
                "2",
                "--warmup",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)
            os.kill(server.pid, signal.SIGKILL)
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert "Traceback" not in err
    result = json.loads(out)
    assert total_errors(result) > 0
    assert (
        result["errors"]["closed"] + result["errors"]["reset"] + result["errors"]["connect_refused"]
        > 0
    )


@pytest.mark.real
def test_refused_connects_are_counted() -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = loadgen_json(
            "--target",
            f"127.0.0.1:{port}",
            "--connections",
            "3",
            "--processes",
            "1",
            "--duration",
            "0.2",
            "--warmup",
            "0",
        )
    assert result["errors"]["connect_refused"] == 3
    assert result["connections"] == {"asked": 3, "established": 0, "starved": 0}
    assert result["requests"] == 0 and result["fairness"] == 0.0


@pytest.mark.real
def test_connect_and_reply_timeouts_are_counted() -> None:
    # A listener that never accepts: its one-slot accept queue takes a connection or
    # two, the kernel drops the other SYNs (connect timeout), and nothing is answered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        result = loadgen_json(
            "--target",
            f"127.0.0.1:{port}",
            "--connections",
            "6",
            "--processes",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--timeout",
            "0.4",
        )
    established = result["connections"]["established"]
    assert 1 <= established <= 3
    assert result["errors"]["connect_timeout"] == 6 - established
    assert result["errors"]["timeout"] == established
    assert result["connections"]["starved"] == established


def _crash(self) -> None:
    raise RuntimeError("boom")


def _die(self) -> None:
    os._exit(3)


@pytest.mark.real
@pytest.mark.parametrize("how, message", [(_crash, "boom"), (_die, "exit code 3")])
def test_a_failing_worker_is_reported_not_hung(
    echo_server: ServerProcess, monkeypatch, how, message: str
) -> None:
    # forked workers inherit it
    monkeypatch.setattr("clients.connections.Connections.connect_all", how)
    with pytest.raises(LoadgenError, match=message):
        run(
            LoadConfig(
                target=f"127.0.0.1:{echo_server.port}",
                connections=2,
                processes=2,
                duration=0.2,
                warmup=0,
            )
        )


# -- open loop versus closed loop against a server that stalls once ---------------------


def _stall_once(after_s: float = 0.3, stall_s: float = 0.2) -> Callable[[int, bytes], bytes]:
    state: dict[str, Any] = {"first": None, "stalled": False}

    def reply(n: int, frame: bytes) -> bytes:
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        if not state["stalled"] and now - state["first"] >= after_s:
            state["stalled"] = True
            time.sleep(stall_s)
        return frame

    return reply


@pytest.mark.real
def test_open_loop_sees_a_stall_that_closed_loop_hides() -> None:
    # One connection, window from the first request, one 200 ms stall 300 ms in.
    # Open loop at 500/s: the ~100 requests due during the stall all wait for it, so
    # about a fifth of the window's requests are late by up to 200 ms and p99 shows it.
    # Closed loop: the client waits too, so only the one stalled request is slow.
    common = ("--connections", "1", "--processes", "1", "--duration", "1", "--warmup", "0")
    with TinyEchoServer(_stall_once()) as server:
        opened = loadgen_json("--target", server.target, "--rate", "500", *common)
    with TinyEchoServer(_stall_once()) as server:
        closed = loadgen_json("--target", server.target, *common)
    assert total_errors(opened) == total_errors(closed) == 0
    assert opened["latency_us"]["p99"] >= 150_000, opened["latency_us"]
    assert opened["latency_us"]["max"] >= 180_000
    assert closed["latency_us"]["max"] >= 180_000, closed["latency_us"]
    assert closed["latency_us"]["p99"] < 50_000, closed["latency_us"]
    assert closed["requests"] > 3 * opened["requests"]


# -- histograms -------------------------------------------------------------------------


def test_histogram_merge_equals_one_histogram_of_all_values() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(5, 1.5)) for _ in range(30_000)] + [0, 1, 10**9]
    parts = [values[0::3], values[1::3], values[2::3]]
    merged = hist.merge(hist.encode(hist.from_values(p)) for p in parts)
    whole = hist.from_values(values)
    assert merged.get_total_count() == whole.get_total_count() == len(values)
    assert hist.encode(merged) == hist.encode(whole)  # same counts, bucket by bucket
    assert hist.latency_summary(merged) == hist.latency_summary(whole)


def test_histogram_from_nanoseconds_and_empty() -> None:
    h = hist.from_values([1_500, 2_499, 10**18], divisor=1000)
    assert h.get_total_count() == 3
    assert h.get_max_value() >= hist.HIGHEST_US  # clamped, not dropped
    empty = hist.merge([hist.encode(hist.new_histogram())])
    assert hist.latency_summary(empty)["p99"] == 0


def test_jain_index() -> None:
    assert hist.jain_index([5, 5, 5, 5]) == 1.0
    assert hist.jain_index([8, 0, 0, 0]) == 0.25
    assert hist.jain_index([0, 0]) == 0.0


# -- the wire format agrees with the server's protocol objects --------------------------


def test_wire_matches_the_servers_protocols() -> None:
    request, expected = wire.exchange("http", 0)
    assert expected == _GET_RESPONSE[PERSISTENT]
    assert HttpProtocol().feed(request) == expected
    request, expected = wire.exchange("http", 300, variant=3)
    assert HttpProtocol().feed(request) == expected
    request, expected = wire.exchange("echo", 100, variant=9)
    assert request == expected and EchoProtocol().feed(request) == expected
    assert wire.exchange("echo", 8, 1) != wire.exchange("echo", 8, 2)


# -- safety and bad input ---------------------------------------------------------------


def test_remote_target_refused_before_anything_is_sent(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("no socket, lookup or worker may be made for a refused target")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, forbidden)
    monkeypatch.setattr("clients.loadgen.multiprocessing.get_context", forbidden)
    for target in ("10.0.0.1:80", "example.com:80", "[2001:db8::1]:80", "0.0.0.0:80"):
        with pytest.raises(ConfigError, match="loopback"):
            run(LoadConfig(target=target, duration=0.1))


def test_remote_target_cli_exit_2() -> None:
    done = loadgen("--target", "10.0.0.1:80", "--duration", "0.1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "loopback" in done.stderr


def test_loopback_names() -> None:
    assert all(map(is_loopback, ["localhost", "127.0.0.1", "127.9.8.7", "::1"]))
    assert not any(map(is_loopback, ["10.0.0.1", "example.com", "0.0.0.0", "::"]))


BAD_ARGS = [
    [],
    ["--target", "127.0.0.1"],
    ["--target", "127.0.0.1:99999"],
    ["--target", "127.0.0.1:80", "--connections", "0"],
    ["--target", "127.0.0.1:80", "--protocol", "ftp"],
    ["--target", "127.0.0.1:80", "--duration", "-1"],
    ["--target", "127.0.0.1:80", "--duration", "nan"],
    ["--target", "127.0.0.1:80", "--payload", "-5"],
    ["--target", "127.0.0.1:80", "--rate", "0"],
    ["--target", "127.0.0.1:80", "--mode", "sometimes"],
    ["--target", "127.0.0.1:80", "--cpus", "1-x"],
    ["--target", "127.0.0.1:80", "--cpus", "4096"],
]


@pytest.mark.parametrize("argv", BAD_ARGS, ids=lambda a: " ".join(a) or "none")
def test_bad_arguments_one_line_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("python -m clients.loadgen: error:")


def test_bad_arguments_cli_has_no_traceback() -> None:
    done = loadgen("--target", "127.0.0.1:80", "--connections", "many")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


# -- processes --------------------------------------------------------------------------


def _children_once_running(parent: psutil.Process, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = parent.children()
        if len(children) >= count:
            return children
        time.sleep(0.05)
    raise AssertionError("workers did not start")


def _gone(procs: list[psutil.Process], timeout: float) -> bool:
    _gone_list, alive = psutil.wait_procs(procs, timeout=timeout)
    return all(p.status() == psutil.STATUS_ZOMBIE for p in alive)


@pytest.mark.real
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_workers_never_outlive_the_parent(echo_server: ServerProcess, how: int) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clients.loadgen",
            "--target",
            f"127.0.0.1:{echo_server.port}",
            "--connections",
            "2",
            "--processes",
            "2",
            "--duration",
            "30",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell running us in the background may have set SIGINT to "ignore"
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        workers = _children_once_running(psutil.Process(child.pid), 2)
        child.send_signal(how)
        _out, err = child.communicate(timeout=10)
        assert _gone(workers, timeout=5)
        if how != signal.SIGKILL:
            assert child.returncode == 130
            assert err.strip() == "python -m clients.loadgen: interrupted"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

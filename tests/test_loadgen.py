"""The native load generator against real servers on 127.0.0.1, and against tiny
misbehaving servers written here (a byte flipped, a byte too many, a 200 ms stall)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from bench.analysis.verdict import judge, verdict
from bench.run.server_process import ServerProcess
from clients import saturation, wire
from clients.engine import hist
from clients.engine.config import ConfigError, LoadConfig
from clients.engine.drive import LoadgenError, run
from clients.engine.merge import overloaded
from clients.engine.pipelined import PipelinedLoops
from clients.engine.plan import WorkerPlan
from clients.errors import ERROR_KINDS
from clients.loadgen import main
from clients.result import LoadResult, Worker
from clients.target import is_loopback, join_target, split_target
from servers.protocol import _GET_RESPONSE, PERSISTENT, EchoProtocol, HttpProtocol
from tests.helpers import ThreadedTestServer, cpu_hog, cpus_by_idleness, quiet_cpus


def loadgen(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.loadgen", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def loadgen_json(*args: str) -> LoadResult:
    done = loadgen(*args)
    assert done.returncode in (0, 1) and done.stdout, done.stderr
    result = LoadResult.from_json(done.stdout)
    assert done.returncode == (0 if result.requests else 1), done.stderr  # 1: none verified
    return result


def total_errors(result: LoadResult) -> int:
    return result.error_count + sum(result.errors_before.values())


class TinyEchoServer(ThreadedTestServer):
    """A thread-per-connection echo-protocol server whose replies a test can spoil:
    `reply(n, frame)` returns the bytes to send for the n-th frame of a connection."""

    def __init__(self, reply: Callable[[int, bytes], bytes], cpus: set[int] | None = None) -> None:
        super().__init__(cpus)
        self.reply = reply

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
    assert LoadResult.from_json(result.to_json()) == result
    assert result.errors == result.errors_before == dict.fromkeys(ERROR_KINDS, 0)
    assert result.requests > 0
    assert result.bytes == result.requests * 68
    conns = result.connections
    assert (conns.asked, conns.established, conns.starved) == (8, 8, 0)
    assert result.fairness is not None and result.fairness > 0.5
    assert sum(i.count for i in result.intervals) == result.requests
    assert len(result.intervals) == 5 and result.interval_s == 0.1
    assert len(result.client.workers) == 2
    window = result.window
    assert window is not None
    assert window.end_unix - window.start_unix == pytest.approx(0.5, abs=1e-3)
    assert window.start_unix < time.time() < window.end_unix + 30
    lat = result.latency
    assert 0 < lat.p50 <= lat.p90 <= lat.p99 <= lat.p999 <= lat.max
    assert lat.censored == 0 and lat.count == result.requests
    # closed loop: every live connection has one request out when the window ends
    assert result.latency_all is not None and result.latency_all.censored == 8
    assert result.latency_all.count == result.requests + 8
    assert conns.worst_wait_p50_us is not None and conns.worst_wait_max_us is not None
    assert 0 < conns.worst_wait_p50_us <= conns.worst_wait_max_us < 500_000
    merged = hist.merge([result.histogram])
    assert merged.get_total_count() == result.requests
    assert hist.merge([result.histogram_all]).get_total_count() == result.requests + 8


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
    assert total_errors(result) == 0, result.errors
    assert result.requests > 0
    assert result.connections.starved == 0
    assert result.params.payload == payload


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
    assert total_errors(result) == 0, result.errors
    assert result.requests > 0


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
    assert total_errors(result) == 0, result.errors
    assert result.requests > 0
    conns = result.connections
    assert (conns.asked, conns.established, conns.starved) == (4, 4, 0)
    assert result.connect.p50 > 0


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
    assert total_errors(result) == 0, result.errors
    assert result.rate.asked == 2000
    assert 1800 <= result.rate.achieved <= 2100
    assert 1800 <= result.rate.sent <= 2100
    assert result.send_lag is not None and result.send_lag.count >= 1800
    assert result.latency_uncorrected is not None


@pytest.mark.real
def test_pinned_worker_busy_polls_but_is_judged_by_its_waiting() -> None:
    # Replies come ~60 us late: a pinned worker spins through each wait (its raw CPU
    # use is near 100%); spinning is waiting for work, so it is not client-bound.
    def slow(n: int, frame: bytes) -> bytes:
        end = time.perf_counter() + 0.00006
        while time.perf_counter() < end:
            pass
        return frame

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: the client's and the test server's")
    client, other, *_ = quiet_cpus()
    with TinyEchoServer(slow, cpus={other}) as server:
        result = loadgen_json(
            "--target", server.target, "--connections", "1", "--cpus", str(client),
            "--duration", "0.5", "--warmup", "0.1",
        )  # fmt: skip
    assert total_errors(result) == 0 and result.requests > 100
    worker = result.client.workers[0]
    assert worker.waited_for_work is not None and worker.waited_for_work > 50, result.client
    # the spinning is not the bottleneck; only contention from something else on its CPU
    # (a busy machine: CI beside other jobs) may make the run client-bound
    assert not any("waited for work" in r for r in result.client.reasons), result.client
    if worker.waited_for_cpu is None or worker.waited_for_cpu <= saturation.CONTENDED_PERCENT:
        assert not result.client.bound, result.client


# -- saturation: idleness and contention -------------------------------------------------


def _closed_loop_on(client: int, port: int, connections: int = 10) -> LoadResult:
    return loadgen_json(
        "--target", f"127.0.0.1:{port}", "--connections", str(connections),
        "--cpus", str(client), "--duration", "0.6", "--warmup", "0.2",
    )  # fmt: skip


@pytest.mark.real
def test_a_cpu_hog_on_the_clients_cpu_makes_it_client_bound_by_contention() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: the client's and the server's")
    client, other, *_ = cpus_by_idleness()
    with ServerProcess(model="epoll", cpus=[other]) as server, cpu_hog(client):
        result = _closed_loop_on(client, server.port)
    assert result.client.bound, result.client
    assert any("waited for a CPU" in r and "contended" in r for r in result.client.reasons)
    delayed = result.client.workers[0].waited_for_cpu
    assert delayed is not None and delayed > 10
    assert result.client.cores_busy is not None and result.client.cores_busy > 90


@pytest.mark.real
def test_a_light_load_on_a_quiet_cpu_is_not_contended() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs: the client's and the server's")
    client, other, *_ = quiet_cpus()
    with ServerProcess(model="epoll", cpus=[other]) as server:
        result = loadgen_json(
            "--target", f"127.0.0.1:{server.port}", "--connections", "2", "--rate", "400",
            "--cpus", str(client), "--duration", "0.6", "--warmup", "0.1",
        )  # fmt: skip
    assert not any("waited for a CPU" in r for r in result.client.reasons), result.client
    assert not result.client.bound, result.client
    waited = result.client.workers[0].waited_for_work
    assert waited is not None and waited > 50


@pytest.mark.real
def test_littles_law_holds_in_the_closed_loop(echo_server: ServerProcess) -> None:
    """A unit test of the bookkeeping: each of N connections always has one request
    out, so N = throughput x mean latency (of all requests)."""
    result = loadgen_json(
        "--target", f"127.0.0.1:{echo_server.port}", "--connections", "20",
        "--processes", "1", "--duration", "0.6", "--warmup", "0.2",
    )  # fmt: skip
    assert result.latency_all is not None
    in_flight = result.throughput_rps * result.latency_all.mean / 1e6
    assert in_flight == pytest.approx(20, rel=0.1), (result.throughput_rps, result.latency_all)


# -- the open loop keeps its promises ----------------------------------------------------


@pytest.mark.real
def test_open_loop_against_a_slower_server_reports_the_backlog() -> None:
    # 5 ms a reply on one connection: at most 200/s against the 1000/s asked.
    def slow(n: int, frame: bytes) -> bytes:
        time.sleep(0.005)
        return frame

    with TinyEchoServer(slow) as server:
        result = loadgen_json(
            "--target", server.target, "--connections", "1", "--rate", "1000",
            "--duration", "1", "--warmup", "0.2",
        )  # fmt: skip
    assert result.rate.asked == 1000
    # a true open loop: every request is sent at its arrival, answered or not
    assert result.rate.sent > 900 and result.rate.achieved < 300, result.rate
    everything = result.latency_all
    assert everything is not None
    # the requests sent and not answered are the backlog: ~800/s over the window and more
    assert everything.censored > 600, everything
    assert everything.count == result.requests + everything.censored
    assert "p99" in everything.bounds and everything.p99 > 500_000
    assert result.rate.overloaded
    backlog = [i.backlog for i in result.intervals]
    assert backlog[-1] is not None and backlog[0] is not None and backlog[-1] > backlog[0] + 300
    reasons = judge(result, busy_before=None)
    assert verdict(reasons) == "suspect"
    assert any(r.code == "rate" and "of the 1,000 asked" in r.text for r in reasons)
    assert any(r.code == "overloaded" for r in reasons)


@pytest.mark.real
def test_open_loop_schedule_survives_failures() -> None:
    # Every 50th reply on a connection is spoiled: the client drops that connection,
    # reconnects and keeps sending on schedule (before, that connection stopped).
    with TinyEchoServer(_spoil("extra")) as server:
        result = loadgen_json(
            "--target", server.target, "--connections", "1", "--rate", "500",
            "--duration", "1", "--warmup", "0.1", "--processes", "1",
        )  # fmt: skip
    assert result.errors["mismatch"] >= 5, result.errors
    assert result.rate.sent >= 400 and result.rate.achieved >= 400, result.rate


@pytest.mark.real
def test_a_starved_connection_waited_the_whole_window() -> None:
    # The iterative server serves its first connection for ever: the other two wait.
    with ServerProcess(model="blocking") as server:
        result = loadgen_json(
            "--target", f"127.0.0.1:{server.port}", "--connections", "3",
            "--processes", "1", "--duration", "0.5", "--warmup", "0.1",
        )  # fmt: skip
    conns = result.connections
    assert conns.starved == 2 and conns.established == 3
    assert conns.worst_wait_max_us == 500_000  # capped at the window
    everything = result.latency_all
    assert everything is not None and everything.censored == 3
    assert everything.max > 500_000 and "max" in everything.bounds  # sent in the warm-up


def _plan(arrivals: str) -> WorkerPlan:
    return WorkerPlan(
        index=0, family=socket.AF_INET, address=("127.0.0.1", 9), protocol="echo",
        payload=64, mode="persistent", connections=4, first=0, total=4, rate=1000.0,
        timeout=1.0, cpus=None, parent_pid=os.getpid(), arrivals=arrivals,
    )  # fmt: skip


@pytest.mark.parametrize("arrivals, cv", [("uniform", 0.0), ("poisson", 1.0)])
def test_arrival_gaps(arrivals: str, cv: float) -> None:
    loops = PipelinedLoops(_plan(arrivals))
    try:
        gaps = [loops._gap() for _ in range(20_000)]
    finally:
        loops.close()
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(4_000_000, rel=0.03)  # 4 connections at 1000/s: 4 ms each
    spread = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    assert spread == pytest.approx(cv, abs=0.05)  # exponential gaps: CV 1


def test_overloaded_means_a_backlog_that_keeps_growing() -> None:
    assert overloaded([0, 5, 40, 90, 150, 200, 260, 330, 400])
    assert not overloaded([3, 0, 5, 2, 4, 1, 3, 6, 2])  # busy but steady
    assert not overloaded([0, 1, 2, 3, 4, 5, 6, 7, 8])  # growing, but by a handful
    assert not overloaded([0, 50, 100])  # too short to judge
    assert not overloaded([100, 400, 900, 20, 10, 5, 300, 350, 330])  # drained in between


@pytest.mark.real
def test_poisson_arrivals_reach_the_asked_rate(echo_server: ServerProcess) -> None:
    result = loadgen_json(
        "--target", f"127.0.0.1:{echo_server.port}", "--rate", "2000", "--arrivals",
        "poisson", "--connections", "4", "--processes", "1", "--duration", "1",
        "--warmup", "0.2",
    )  # fmt: skip
    assert total_errors(result) == 0, result.errors
    assert result.params.arrivals == "poisson"
    assert 1700 <= result.rate.achieved <= 2300, result.rate  # a Poisson count, +-15%
    assert not result.rate.overloaded


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
    assert result.errors["mismatch"] == 2, result.errors
    assert result.errors["closed"] == result.errors["reset"] == 0
    assert 0 < result.requests <= 2 * 49


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
    result = LoadResult.from_json(out)
    assert result.errors["closed"] + result.errors["reset"] > 0, result.errors


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
    assert result.errors_before["connect_refused"] == 3  # before the window: connecting
    assert result.error_count == 0
    conns = result.connections
    assert (conns.asked, conns.established, conns.starved) == (3, 0, 0)
    assert result.requests == 0 and result.fairness == 0.0


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
    established = result.connections.established
    assert established is not None and 1 <= established <= 3
    assert result.errors_before["connect_timeout"] == 6 - established
    assert result.errors["timeout"] == established
    assert result.connections.starved == established


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
    monkeypatch.setattr("clients.engine.connections.Connections.connect_all", how)
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
    assert opened.latency.p99 >= 150_000, opened.latency
    assert opened.latency.max >= 180_000
    assert closed.latency.max >= 180_000, closed.latency
    assert closed.latency.p99 < 50_000, closed.latency
    assert closed.requests > 3 * opened.requests
    # every request went out on time (pipelined behind the stalled one), so timing
    # from the actual send (wrk2's -U) sees the stall too: no coordinated omission.
    # A client that held its sends back during the stall would show a fifth of its
    # sends late by 0-200 ms (p99 near 200 ms); a scheduler hiccup on a busy 2-core
    # runner makes a few sends late by ~10 ms (seen in CI), so the bound sits between.
    assert opened.send_lag is not None and opened.send_lag.p99 < 50_000, opened.send_lag
    assert opened.latency_uncorrected is not None
    assert opened.latency_uncorrected.p99 >= 150_000


# -- histograms -------------------------------------------------------------------------


def test_histogram_merge_equals_one_histogram_of_all_values() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(5, 1.5)) for _ in range(30_000)] + [0, 1, 10**9]
    parts = [values[0::3], values[1::3], values[2::3]]
    merged = hist.merge(hist.encode(hist.from_values(p)) for p in parts)
    whole = hist.from_values(values)
    assert merged.get_total_count() == whole.get_total_count() == len(values)
    assert hist.encode(merged) == hist.encode(whole)  # same counts, bucket by bucket
    assert hist.latency(merged) == hist.latency(whole)


def test_an_empty_histogram_merged() -> None:  # nanoseconds and clamping: tests/test_hist.py
    empty = hist.merge([hist.encode(hist.new_histogram())])
    assert hist.latency(empty).p99 == 0


def test_censored_waits_make_lower_bounds_only_where_they_decide() -> None:
    answered = hist.from_values([100_000] * 9_900 + [200_000] * 100)  # ns
    # 20 requests still waiting 5 s at the end: the max is a bound, p50 and p90 are not
    few = hist.latency(answered, hist.from_values([5_000_000_000] * 20))
    assert few.censored == 20 and few.count == 10_020
    # µs to 0.1 µs: 200,000 ns reads as its bucket's top, 200,063 ns (3 digits)
    assert few.p50 == 100 and few.p99 == pytest.approx(200, abs=0.1)
    assert "p50" not in few.bounds and "p90" not in few.bounds and "max" in few.bounds
    assert few.p999 >= 5_000_000 and "p999" in few.bounds
    assert few.text("max").startswith("≥") and few.text("p50") == "100.0"
    # 999 starved connections against 10,000 answered: the tail is all censored
    starved = hist.latency(answered, hist.from_values([2_000_000_000] * 999))
    assert starved.p99 >= 2_000_000 and {"p99", "p999"} <= set(starved.bounds)
    # answered only: no bounds at all
    assert hist.latency(answered).bounds == () and hist.latency(answered).censored == 0


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
    monkeypatch.setattr("clients.engine.drive.multiprocessing.get_context", forbidden)
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


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "fe80::1"])
def test_a_target_joined_splits_back(host: str) -> None:
    target = join_target(host, 8080)
    assert split_target(target) == (host, 8080)
    assert target.startswith("[") == (":" in host)  # IPv6 in brackets


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


def test_an_open_loop_is_judged_by_its_schedule() -> None:
    assert saturation.late(1000, 990, 200) == []  # on time, all sent
    assert "sent 800 of the 1,000" in saturation.late(1000, 800, 200)[0]
    assert "median send lag 5,000 us" in saturation.late(1000, 990, 5000)[0]
    busy = [Worker(cpu=99.0, waited_for_work=2.0, waited_for_cpu=1.0)]
    assert saturation.reasons(busy)  # a closed loop this busy set the pace
    assert saturation.reasons(busy, idle_rule=False) == []  # an open loop may poll, on time

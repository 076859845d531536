"""Locust as the second driver: live runs against real servers, the adapter from the
locustfile's files to a LoadResult, the saturation verdict, the CLI.

Locust runs only in subprocesses (it monkey-patches socket through gevent on import);
each live test checks that nothing of the locust run is left behind. The live runs are
short: half a second to a second of warm-up and of measured window each; checks that
depend on a count use --rate, which paces the users, so a loaded machine cannot make
them flaky.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench import cli
from bench.run.matrix import Matrix, MatrixError
from bench.store import RunStore
from clients.errors import ERROR_KINDS
from clients.locust import driver as locust_driver
from clients.locust import process as locust_process
from clients.locust import result as locust_result
from clients.locust.process import LOCUSTFILE, LocustRunError, UsageError, run_locust
from clients.locust.result import (
    WindowFile,
    error_kind,
    from_locust_stats,
    judge_client,
    judge_remote_client,
    value_at,
    worker_usage,
)
from clients.locust.sampler import Sampler
from clients.result import (
    SCHEMA,
    Client,
    Connections,
    ConnectLatency,
    Interval,
    Latency,
    LoadResult,
    Params,
    Rate,
    Window,
    Worker,
    build_dataclass,
    no_errors,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "locust"


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

    monkeypatch.setattr("clients.locust.process.subprocess.Popen", recording_popen)
    yield sessions
    assert sessions, "the driver started no locust"
    assert not alive_in_sessions(sessions)


StartWorkers = Callable[[int, int], list[subprocess.Popen[bytes]]]


@pytest.fixture
def locust_workers(tmp_path) -> Iterator[StartWorkers]:
    """`start(count, port)`: that many locust workers, each its own process (`python -m
    locust --worker`, as on other machines), to connect to a master at 127.0.0.1:port.
    Their log goes to tmp_path; any still running at teardown is killed, with its
    session (under locust_sessions, its teardown then finds them gone)."""
    started: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SOCKBENCH_"))}

    def start(count: int, port: int) -> list[subprocess.Popen[bytes]]:
        procs = []
        for _ in range(count):
            with open(tmp_path / f"worker{len(started)}.log", "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
                     "--master-host", "127.0.0.1", "--master-port", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=tmp_path,  # no locust.conf picked up
                    env=env,
                )  # fmt: skip
            started.append(proc)
            procs.append(proc)
        return procs

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_quit_with_their_master(workers: list[subprocess.Popen[bytes]]) -> None:
    """A worker exits when its master quits (locust sends it `quit`): it does not wait
    for the next master, hence the restart loop in docs/locust.md."""
    assert [w.wait(10) for w in workers] == [0] * len(workers)


def alive_in_sessions(sessions: list[int]) -> list[int]:
    alive = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) in sessions and psutil.Process(pid).status() != "zombie":
                alive.append(pid)
        except (OSError, psutil.Error):
            continue
    return alive


def assert_clean(result: LoadResult) -> None:
    assert result.schema == SCHEMA and result.tool == "sockbench.locust"
    assert result.latency_resolution == "locust-2-digits"  # its buckets, never 0.1 µs
    assert result.requests > 0
    assert result.throughput_rps > 0
    assert result.errors == no_errors() and result.errors_before == no_errors()
    lat = result.latency
    assert lat.count == result.requests
    # Non-zero p50 shows the locustfile's sub-millisecond buckets are in use.
    assert 0 < lat.p50 <= lat.p90 <= lat.p99 <= lat.p999 <= lat.max, lat
    assert result.latency_all is None  # locust cannot see requests outstanding at the stop
    assert result.latency_note and "milliseconds" in result.latency_note


def assert_window(result: LoadResult, duration: float) -> None:
    """The window is the measured `duration` (plus the few ms the users take to stop),
    its slices hold every counted reply, and its rate is its count over its length."""
    window = result.window
    assert window is not None
    assert result.duration_s == round(window.end_unix - window.start_unix, 3)
    assert duration <= result.duration_s < duration + 0.5
    assert result.interval_s == 1.0
    assert [i.start_s for i in result.intervals] == [float(k) for k in range(len(result.intervals))]
    assert sum(i.count for i in result.intervals) == result.requests
    span = window.end_unix - window.start_unix
    assert result.throughput_rps == pytest.approx(result.requests / span, abs=0.1)
    rps = result.throughput_rps
    assert result.rate == Rate(asked=None, sent=rps, achieved=rps)


def assert_paced(result: LoadResult, rate: float, users: int) -> None:
    """Paced users send at most `rate` per second, plus one each as the window opens;
    a quarter less, or 15% more (workers stop when the master's quit reaches them, a
    little after its window ended), leaves room for a loaded machine. Counting the
    warm-up as well would give about twice as many."""
    expected = rate * result.duration_s
    most = 1.15 * expected + users
    assert 0.75 * expected <= result.requests <= most, (result.requests, expected)


def assert_judged(client: Client, workers: int) -> None:
    """Every load-generating process was sampled over the window and a verdict given."""
    assert len(client.workers) == workers
    for w in client.workers:
        assert w.cpu is not None and w.waited_for_work is not None
        assert w.waited_for_cpu is not None
        assert w.cpu + w.waited_for_work + w.waited_for_cpu >= 99.8  # rounding
    assert client.cores_busy is not None and 0 <= client.cores_busy <= 100
    assert client.bound is not None
    assert client.bound == bool(client.reasons)


@pytest.mark.real
def test_echo_run_against_epoll(server_factory, locust_sessions) -> None:
    """Closed loop, pinned to one CPU: a clean run, its window, and the verdict."""
    server = server_factory("epoll", "echo")
    cpu = max(os.sched_getaffinity(0))
    result = run_locust(
        f"127.0.0.1:{server.port}", users=10, warmup=0.5, duration=1, payload=64, cpus=[cpu]
    )
    print(f"\nlocust echo 1 s: {result.requests} requests, {result.throughput_rps} req/s")
    print(f"latency {result.latency}\nclient {result.client}")
    assert_clean(result)
    assert_window(result, 1.0)
    assert result.bytes == result.requests * (4 + 64)
    # users connect in the warm-up: the connect rows are kept through the reset
    assert result.connections == Connections(asked=10, established=10, starved=None)
    assert 0 < result.connect.p50 <= result.connect.max
    assert result.params == Params(
        target=f"127.0.0.1:{server.port}",
        protocol="echo",
        connections=10,
        processes=1,
        duration=1,
        warmup=0.5,
        payload=64,
        rate=None,
        mode="persistent",
        timeout=10.0,
        cpus=(cpu,),
    )
    assert result.client.cores == (cpu,)
    assert_judged(result.client, workers=1)
    assert LoadResult.from_json(result.to_json()) == result
    assert server.proc.poll() is None  # the server outlived the run


@pytest.mark.real
@pytest.mark.parametrize("processes", [None, 2], ids=["local", "forked-workers"])
def test_warmup_is_not_counted(server_factory, locust_sessions, processes) -> None:
    """Paced at 200 requests/s in all, 1 s of warm-up then 1 s measured: about 200 in the
    window, where counting the warm-up too would give about 400 (and the window's one
    slice holds them all). With forked workers,
    the reports they send around the warm-up's end go to the right side of it."""
    server = server_factory("epoll", "echo")
    result = run_locust(
        f"127.0.0.1:{server.port}",
        users=4,
        rate=200,
        warmup=1,
        duration=1,
        payload=16,
        processes=processes,
    )
    print(f"\n{processes=}: {result.requests} requests, intervals {result.intervals}")
    assert_clean(result)
    assert_window(result, 1.0)
    assert_paced(result, rate=200, users=4)
    assert result.connections.established == 4
    assert result.params.processes == (processes or 1)
    assert_judged(result.client, workers=processes or 1)
    assert result.client.reasons == ()  # 200 requests/s cannot keep locust busy


@pytest.mark.real
def test_http_get_through_the_command_line(server_factory, locust_sessions, capsys) -> None:
    server = server_factory("epoll", "http")
    argv = ["--target", f"127.0.0.1:{server.port}", "--protocol", "http", "--payload", "0"]
    argv += ["--users", "5", "--warmup", "0.5", "--duration", "0.5", "--quiet"]
    assert locust_driver.main(argv) == 0
    result = LoadResult.from_json(capsys.readouterr().out)
    assert_clean(result)
    assert_window(result, 0.5)
    assert len(result.intervals) == 1  # a window shorter than a slice is one slice
    assert result.bytes == result.requests * len(b"Hello, world!\n")  # GET /
    assert result.connect == ConnectLatency()  # locust's HTTP users hide their connections
    assert result.connections.established is None


@pytest.mark.real
def test_distributed_master_and_one_worker(server_factory, locust_sessions, locust_workers) -> None:
    """--master with one worker started by hand, as on two machines; the payload option
    reaches the worker only through the master, so the byte count shows it did, and the
    paced count shows the worker's warm-up reports were left out of the window."""
    server = server_factory("epoll", "http")
    port = locust_process.free_port()
    workers = locust_workers(1, port)  # recorded by locust_sessions, as the driver's locust
    result = run_locust(
        f"127.0.0.1:{server.port}",
        protocol="http",
        users=4,
        rate=200,
        warmup=1,
        duration=1,
        payload=100,
        master=True,
        expect_workers=1,
        master_bind_port=port,
    )
    assert_quit_with_their_master(workers)
    assert_clean(result)
    assert_window(result, 1.0)
    assert_paced(result, rate=200, users=4)
    assert result.bytes == result.requests * 100  # POST /echo of 100 bytes
    assert result.params.processes == 1
    assert_judged_remotely(result.client, workers=1)


def assert_judged_remotely(client: Client, workers: int) -> None:
    """Each worker's CPU as locust told its master; what only /proc could tell is None."""
    assert len(client.workers) == workers
    for w in client.workers:
        assert w.cpu is not None and 0 <= w.cpu <= 100 * (os.cpu_count() or 1)
        assert w.waited_for_work is None and w.waited_for_cpu is None
        assert w.name is not None and w.name.startswith(f"{socket.gethostname()}_")
    assert len({w.name for w in client.workers}) == workers
    assert client.bound is not None and client.bound == bool(client.reasons)


@pytest.mark.real
def test_distributed_master_and_two_worker_processes(
    server_factory, locust_sessions, locust_workers
) -> None:
    """The master through the driver, two workers each a process of its own (as on two
    machines), on loopback: both take part, each with its CPU figure, every reply
    verified."""
    server = server_factory("epoll", "echo")
    port = locust_process.free_port()
    workers = locust_workers(2, port)
    result = run_locust(
        f"127.0.0.1:{server.port}",
        users=4,
        rate=200,
        warmup=0.5,
        duration=1,
        payload=32,
        master=True,
        expect_workers=2,
        master_bind_port=port,
    )
    print(f"\n2 workers: {result.requests} requests, client {result.client}")
    assert_quit_with_their_master(workers)
    assert_clean(result)  # no error of any kind (mismatches included), before or in the window
    assert_window(result, 1.0)
    assert_paced(result, rate=200, users=4)
    assert result.bytes == result.requests * (4 + 32)
    assert result.connections.established == 4
    assert result.params.processes == 2
    assert_judged_remotely(result.client, workers=2)
    assert LoadResult.from_json(result.to_json()) == result


@pytest.mark.real
def test_bench_run_with_locust_workers(tmp_path, locust_workers) -> None:
    """`bench run --locust-workers 2`: the cell's driver runs only a master, on the
    port given, and the two workers started here do the load."""
    port = locust_process.free_port()
    workers = locust_workers(2, port)
    code = cli.main(
        ["run", "--driver", "locust", "--locust-workers", "2", "--locust-master-port", str(port),
         "--models", "epoll", "--connections", "4", "--duration", "0.5", "--warmup", "0.3",
         "--protocol", "echo", "--payloads", "64", "--repeats", "1",
         "--out", str(tmp_path), "--run-id", "t", "--no-report"]
    )  # fmt: skip
    assert code == 0
    assert_quit_with_their_master(workers)
    [row] = RunStore.open(tmp_path / "t").rows()
    assert row.load is not None, row.reason
    assert row.load.tool == "sockbench.locust"
    assert row.load.requests > 0 and row.load.error_count == 0
    assert row.load.params.processes == 2
    assert len(row.load.client.workers) == 2


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
def test_echo_mismatch_is_a_failure_on_its_side_of_the_window(locust_sessions) -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CorruptingEcho) as fake:
        fake.daemon_threads = True
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        try:
            result = run_locust(
                f"127.0.0.1:{fake.server_address[1]}",
                users=2,
                rate=100,
                warmup=0.5,
                duration=0.5,
                payload=16,
            )
        finally:
            fake.shutdown()
    assert result.requests == 0
    assert result.errors["mismatch"] > 0
    assert result.error_count == result.errors["mismatch"]
    assert result.errors_before["mismatch"] > 0  # the warm-up's, apart
    assert sum(result.errors_before.values()) == result.errors_before["mismatch"]
    assert result.latency == Latency()  # no verified reply, no latency
    assert result.connections.established == 2


@pytest.mark.real
def test_timeout_kills_locust(locust_sessions, monkeypatch) -> None:
    monkeypatch.setattr(locust_process, "STARTUP_GRACE_S", -0.5)  # a 0.5 s limit
    port = locust_process.free_port()
    with pytest.raises(LocustRunError, match="did not finish"):
        run_locust(f"127.0.0.1:{port}", users=2, warmup=0, duration=1, processes=2)


# -- the adapter, on fixed files -------------------------------------------------------

PARAMS = Params(
    target="127.0.0.1:8000",
    protocol="echo",
    connections=10,
    processes=1,
    duration=5.0,
    warmup=1.0,
    payload=64,
    rate=None,
    mode="persistent",
    timeout=10.0,
    cpus=None,
)


def test_adapter_maps_fixed_files() -> None:
    client = judge_client([Worker(50.0, 45.0, 5.0)], (1,), 60.0, cpu_warning=False)
    result = from_locust_stats(
        DATA / "run_stats.csv",
        PARAMS,
        failures_csv=DATA / "run_failures.csv",
        window_json=DATA / "run_window.json",
        client=client,
    )
    assert result.tool == "sockbench.locust" and result.params == PARAMS
    assert result.window == Window(start_unix=1795981823.25, end_unix=1795981828.25)
    assert result.requests == 1000  # 1010 echo requests, 10 of them failed
    assert result.duration_s == 5.0  # the window's, not locust's first-to-last request
    assert result.throughput_rps == 200.0
    assert result.rate == Rate(asked=None, sent=200.0, achieved=200.0)
    assert result.bytes == 68000
    assert result.latency == Latency(
        count=1000, p50=270, p90=440, p99=650, p999=2300, max=32538, mean=303.4
    )
    assert result.latency_all is None
    # p99's bucket (1.5 ms) is above the exact max (1.4973 ms): clamped to the max.
    assert result.connect == ConnectLatency(p50=890, p99=1497, max=1497)
    assert result.errors == {
        "connect_refused": 2,
        "connect_timeout": 0,
        "reset": 6,
        "timeout": 0,
        "mismatch": 3,
        "protocol": 0,
        "closed": 1,
        "other": 1,  # SomethingNewError
    }
    assert result.errors_before == {**no_errors(), "connect_refused": 3, "mismatch": 1, "other": 2}
    assert result.connections == Connections(asked=10, established=10, starved=None)
    assert result.intervals == (
        Interval(0.0, 200, 660),
        Interval(1.0, 198, 650),
        Interval(2.0, 202, 610),
        Interval(3.0, 200, 700),
        Interval(4.0, 200, 0),
    )
    assert result.interval_s == 1.0
    assert result.fairness is None
    assert result.client == client
    assert result.latency_note and "milliseconds" in result.latency_note
    # locust's buckets: 2 significant digits, never claimed to 0.1 µs (issue 26)
    assert result.latency_resolution == "locust-2-digits"
    assert LoadResult.from_json(result.to_json()) == result


def test_adapter_without_window_or_failures_file() -> None:
    """Plain locust's CSV alone: the whole run is the window, locust's own duration,
    and failures nobody classified are `other`."""
    result = from_locust_stats(DATA / "run_stats.csv", PARAMS)
    assert result.errors == {**no_errors(), "other": 13}  # every row's failures
    assert result.errors_before == no_errors()
    assert result.window is None and result.intervals == ()
    assert result.duration_s == 5.0  # 1010 requests / 202 per second
    assert result.client.bound is None and result.client.workers == ()


STATS_HEADER = (
    "Type,Name,Request Count,Failure Count,Average Response Time,Max Response Time,"
    "Average Content Size,Requests/s,50%,90%,99%,99.9%"
)


def write_stats(path: Path, *rows: str) -> Path:
    """A made-up `<prefix>_stats.csv` with the columns the adapter reads."""
    path.write_text("\n".join([STATS_HEADER, *rows]) + "\n")
    return path


def test_adapter_gives_no_latency_when_every_request_failed(tmp_path) -> None:
    """locust folds failures into its response times: with no verified reply there is no
    latency to report, and a failure the failures file does not name is `other`."""
    stats = write_stats(
        tmp_path / "s.csv",
        "tcp,echo,4,4,1.5,3.0,0.0,2.0,1.4,2.8,3.0,3.0",
        ",Aggregated,4,4,1.5,3.0,0.0,2.0,1.4,2.8,3.0,3.0",
    )
    failures = tmp_path / "f.csv"
    failures.write_text("Method,Name,Error,Occurrences\ntcp,echo,TimeoutError('timed out'),3\n")
    result = from_locust_stats(stats, PARAMS, failures_csv=failures)
    assert result.requests == 0 and result.throughput_rps == 0.0
    assert result.latency == Latency()
    assert result.errors == {**no_errors(), "timeout": 3, "other": 1}
    assert result.connections.established is None  # no connect row
    assert result.duration_s == 2.0  # locust's own: 4 requests at 2 per second


def test_adapter_latency_comes_from_one_row_or_none(tmp_path) -> None:
    """Percentiles cannot be merged: two request names give the aggregate row's figures
    when it holds only requests, and none when connect rows are folded into it."""
    echo = "tcp,echo,10,0,1.0,2.0,64.0,10.0,1.0,1.5,2.0,2.0"
    other = "tcp,other,10,0,3.0,4.0,64.0,10.0,3.0,3.5,4.0,4.0"
    total = ",Aggregated,20,0,2.0,4.0,64.0,20.0,2.0,3.5,4.0,4.0"
    result = from_locust_stats(write_stats(tmp_path / "a.csv", echo, other, total), PARAMS)
    assert result.requests == 20 and result.bytes == 1280
    assert result.latency == Latency(
        count=20, p50=2000, p90=3500, p99=4000, p999=4000, max=4000, mean=2000.0
    )
    connect = "tcp,connect,2,0,0.5,0.9,0.0,2.0,0.5,0.9,0.9,0.9"
    folded = write_stats(tmp_path / "b.csv", connect, echo, other, total)
    result = from_locust_stats(folded, PARAMS)
    assert result.requests == 20 and result.latency == Latency()
    assert result.connect == ConnectLatency(p50=500, p99=900, max=900)
    assert result.connections.established == 2


def test_result_module_is_pure() -> None:
    """clients.locust.result starts no process and no thread: it imports nothing that
    could, nor the modules of the locust package that do."""
    import ast

    tree = ast.parse(Path(locust_result.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = {"subprocess", "threading", "multiprocessing", "signal", "socket", "psutil"}
    assert not imported & forbidden
    assert not {m for m in imported if m and m.startswith("clients.locust")}


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
        ("HTTPParseError('no status line')", "protocol"),
        ("EchoClosed('connection closed before the reply')", "closed"),
        ("HTTPConnectionClosed('connection closed.')", "closed"),
        ("CatchResponseError('something')", "other"),
        ("a plain string", "other"),
    ],
)
def test_error_kind(error: str, kind: str) -> None:
    assert error_kind(error) == kind
    assert kind in ERROR_KINDS


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


def test_locustfile_and_driver_agree_on_names() -> None:
    """The names both files spell (the driver cannot import the locustfile)."""
    text = LOCUSTFILE.read_text()
    assert repr(locust_result.CONNECT_ROWS).replace("'", '"') in text
    assert f'"{locust_process.WINDOW_STARTED_LOG}"' in text
    assert f'"{locust_process.WINDOW_ENDED_LOG}"' in text


# -- saturation ------------------------------------------------------------------------

WINDOW = Window(start_unix=100.0, end_unix=102.0)


def test_value_at_interpolates_between_samples() -> None:
    series = [(99.0, 10.0), (101.0, 12.0), (103.0, 13.0)]
    assert value_at(series, 100.0) == 11.0
    assert value_at(series, 103.1) == 13.0  # a process that just exited: its last value
    assert value_at(series, 104.0) is None  # too long after the last sample
    assert value_at(series, 98.0) is None and value_at([], 100.0) is None


def test_worker_usage_over_the_window() -> None:
    cpu = [(100.0, 5.0), (102.0, 6.0)]  # 1 s of CPU in 2 s
    delay = [(100.0, 1.0), (102.0, 1.2)]  # 0.2 s runnable but not running
    assert worker_usage(cpu, delay, WINDOW) == Worker(
        cpu=50.0, waited_for_work=40.0, waited_for_cpu=10.0
    )
    # no schedstat: the split between waiting for work and for a CPU is unknown
    assert worker_usage(cpu, None, WINDOW) == Worker(50.0, None, None)
    assert worker_usage([], None, WINDOW) == Worker(None, None, None)
    # never negative: two threads can use more than the window between them
    assert worker_usage([(100.0, 0.0), (102.0, 2.2)], delay, WINDOW).waited_for_work == 0.0


@pytest.mark.parametrize(
    ("workers", "warning", "bound", "reasons"),
    [
        ([Worker(40.0, 58.0, 2.0)], False, False, []),
        (
            [Worker(40.0, 58.0, 2.0), Worker(95.0, 4.0, 1.0)],
            False,
            True,
            ["worker 1 waited for work 4% of the window (the load generator was the bottleneck)"],
        ),
        (
            [Worker(60.0, 4.6, 35.4)],
            False,
            True,
            [
                "worker 0 waited for work 5% of the window (the load generator was the bottleneck)",
                "worker 0 waited for a CPU 35% of the window "
                "(contended: something else ran on its CPU)",
            ],
        ),
        ([Worker(40.0, 58.0, 2.0)], True, True, ["locust warned: CPU usage above 90%"]),
        ([], True, True, ["locust warned: CPU usage above 90%"]),  # workers elsewhere
        ([], False, None, []),
        ([Worker(None, None, None)], False, None, []),  # nothing could be sampled
    ],
)
def test_judge_client(workers, warning, bound, reasons) -> None:
    client = judge_client(workers, (1,), 50.0, cpu_warning=warning)
    assert client.bound is bound
    assert list(client.reasons) == reasons
    assert client.workers == tuple(workers) and client.cores == (1,)


def remote_row(worker_id: str, **figures: object) -> dict[str, object]:
    """One worker of a window file's `workers`, as the locustfile writes it."""
    row: dict[str, object] = {
        "id": worker_id,
        "users": 2,
        "cpu_time_s": None,
        "cpu_wall_s": None,
        "cpu_samples": 0,
        "cpu_mean": None,
        "cpu_max": None,
        "cpu_warned": False,
    }
    return {**row, **figures}


def write_window_file(path: Path, workers: list[dict[str, object]]) -> Path:
    data = json.loads((DATA / "run_window.json").read_text())
    path.write_text(json.dumps({**data, "workers": workers}))
    return path


def test_remote_worker_at_95_percent_makes_the_cell_client_bound(tmp_path) -> None:
    """From a window file: the worker that used 95% of a CPU over its window (its CPU
    time over its wall time) is named; the one at 40% is not."""
    busy, calm = "box-a_0f0f", "box-b_1e1e"
    window_file = WindowFile.read(
        write_window_file(
            tmp_path / "run_window.json",
            [
                remote_row(busy, cpu_time_s=0.95, cpu_wall_s=1.0, cpu_samples=1, cpu_mean=97.0,
                           cpu_max=97.0),
                remote_row(calm, cpu_time_s=0.4, cpu_wall_s=1.0, cpu_samples=1, cpu_mean=41.0,
                           cpu_max=41.0),
            ],
        )
    )  # fmt: skip
    client = judge_remote_client(window_file.workers, (1,), 30.0, cpu_warning=False)
    assert client.bound is True
    [reason] = client.reasons
    assert busy in reason and "95%" in reason and calm not in reason
    assert client.workers == (
        Worker(cpu=95.0, waited_for_work=None, waited_for_cpu=None, name=busy, cpu_max=97.0),
        Worker(cpu=40.0, waited_for_work=None, waited_for_cpu=None, name=calm, cpu_max=41.0),
    )
    # the fixture, written before workers were recorded, reads as a file without any
    assert WindowFile.read(DATA / "run_window.json").workers == ()


@pytest.mark.parametrize(
    ("rows", "warning", "bound", "named"),
    [
        ([remote_row("a_1", cpu_time_s=0.5, cpu_wall_s=1.0)], False, False, []),
        ([remote_row("a_1", cpu_time_s=0.9, cpu_wall_s=1.0)], False, True, ["a_1"]),  # at 90%
        # locust's own figure above its threshold in the window, though the average was not
        ([remote_row("a_1", cpu_time_s=0.5, cpu_wall_s=1.0, cpu_warned=True)], False, True,
         ["a_1"]),
        # no CPU time in its reports: the mean of locust's figures
        ([remote_row("a_1", cpu_samples=2, cpu_mean=92.5, cpu_max=95.0)], False, True, ["a_1"]),
        ([remote_row("a_1", cpu_samples=2, cpu_mean=50.0, cpu_max=60.0)], False, False, []),
        # one worker reported no figure: no verdict unless another is bound
        ([remote_row("a_1", cpu_time_s=0.5, cpu_wall_s=1.0), remote_row("b_2")], False, None, []),
        ([remote_row("a_1", cpu_time_s=0.95, cpu_wall_s=1.0), remote_row("b_2")], False, True,
         ["a_1"]),
        ([], False, None, []),  # no worker reported
        ([], True, True, []),  # locust's log warned all the same
        # a worker that got no user took no part
        ([remote_row("a_1", cpu_time_s=0.5, cpu_wall_s=1.0), remote_row("b_2", users=0)], False,
         False, []),
    ],
)  # fmt: skip
def test_judge_remote_client(tmp_path, rows, warning, bound, named) -> None:
    window_file = WindowFile.read(write_window_file(tmp_path / "w.json", rows))
    client = judge_remote_client(window_file.workers, (1,), None, cpu_warning=warning)
    assert client.bound is bound
    assert [w.name for w in client.workers] == [r["id"] for r in rows if r["users"] != 0]
    ids = [str(r["id"]) for r in rows]
    assert sorted({i for reason in client.reasons for i in ids if i in reason}) == named
    assert len(client.reasons) == len(named) + warning  # one reason each, and the log's


def test_locustfile_writes_what_the_driver_reads_of_a_worker() -> None:
    text = LOCUSTFILE.read_text()
    for key in (*remote_row("x"), "workers"):
        assert f'"{key}"' in text, key


def test_a_worker_written_before_name_and_cpu_max_still_loads() -> None:
    old = {"cpu": 50.0, "waited_for_work": 45.0, "waited_for_cpu": 5.0}
    assert build_dataclass(Worker, old) == Worker(50.0, 45.0, 5.0, name=None, cpu_max=None)


# -- the command line ------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.locust.driver", *args],
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
        ["--target", "127.0.0.1:8000", "--duration", "0"],
        ["--target", "127.0.0.1:8000", "--warmup", "-1"],
        ["--target", "127.0.0.1:8000", "--cpus", "x"],
        ["--target", "127.0.0.1:8000", "--cpus", "4096"],  # not a CPU this process may use
        ["--target", "127.0.0.1:8000", "--expect-workers", "2"],
        ["--target", "127.0.0.1:8000", "--master", "--processes", "2"],
        # a master that other machines may reach: only when asked
        ["--target", "127.0.0.1:8000", "--master", "--master-bind-host", "10.0.0.2"],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        locust_driver.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--locust-workers", "2"], "needs the locust driver"),
        (["--driver", "locust", "--locust-workers", "2", "--locust-master-host", "10.0.0.2"],
         "not a loopback address; pass --allow-remote"),
        (["--driver", "locust", "--locust-workers", "-1"], ">= 0"),
        (["--driver", "locust", "--locust-master-port", "70000"], "1-65535"),
    ],
)  # fmt: skip
def test_bench_refuses_bad_locust_worker_flags(tmp_path, capsys, flags, message) -> None:
    argv = ["run", "--models", "epoll", "--out", str(tmp_path), "--no-report", *flags]
    code: object
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own checks
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err
    assert not any(tmp_path.iterdir())  # refused before any run folder


def test_matrix_allows_a_remote_locust_master_when_asked() -> None:
    with pytest.raises(MatrixError, match="allow-remote"):
        Matrix("t", ("epoll",), driver="locust", locust_workers=2, locust_master_host="10.0.0.2")
    matrix = Matrix(
        "t",
        ("epoll",),
        driver="locust",
        locust_workers=2,
        locust_master_host="10.0.0.2",
        allow_remote=True,
    )
    assert Matrix.from_dict(matrix.to_dict()) == matrix  # kept in the run's metadata
    # a run recorded before these fields resumes as one without workers
    old = {k: v for k, v in matrix.to_dict().items() if not k.startswith("locust_")}
    assert Matrix.from_dict({**old, "driver": "locust"}).locust_workers == 0


def test_locust_command_for_forked_workers_and_for_a_master(tmp_path) -> None:
    """The command run_locust starts: locust headless against the target, its options
    to the locustfile, and the user class last; forked workers or a master bound to the
    given port (never locust's default of 5557 on every interface)."""
    common: dict[str, Any] = dict(
        host="::1", port=8000, protocol="echo", users=4, spawn_rate=4.0, run_time_s=8,
        warmup=1.0, duration=2.0, payload=64, rate=40.0, timeout=10.0,
        master_bind_host="127.0.0.1", master_bind_port=5999, prefix=tmp_path / "run",
    )  # fmt: skip
    forked = locust_process.locust_command(**common, processes=2, master=False, expect_workers=None)
    assert forked[:5] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    assert forked[-1] == "EchoUser"
    text = " ".join(forked)
    assert "--host tcp://[::1]:8000" in text and "-t 8s" in text
    assert "--sockbench-rate 10.0" in text  # the total rate shared by the users
    assert f"--sockbench-final-csv {tmp_path / 'run'}_final" in text
    assert "--processes 2 --master-port 5999" in text and "--master " not in text
    master = locust_process.locust_command(
        **{**common, "protocol": "http", "payload": 0, "rate": None},
        processes=None,
        master=True,
        expect_workers=3,
    )
    text = " ".join(master)
    assert master[-1] == "HttpGetUser" and "--sockbench-rate" not in text
    assert "--master-bind-host 127.0.0.1 --master-bind-port 5999 --master" in text
    assert "--expect-workers 3" in text and "--processes" not in text


def test_sampler_sees_this_process_over_a_window() -> None:
    """The /proc sampler on this process: its CPU time over a busy window, and the
    busy share of the cores it watches."""
    cores = sorted(os.sched_getaffinity(0))[:1]
    sampler = Sampler(os.getpid(), cores)
    sampler.start()
    try:
        time.sleep(0.15)
        start = time.time()
        sampler.now()
        while time.time() < start + 0.3:  # busy, so the window has CPU time to show
            pass
        end = time.time()
        sampler.now()
        time.sleep(0.15)
    finally:
        sampler.stop()
    window = Window(start_unix=start, end_unix=end)
    [worker] = sampler.workers(window, forked=False)
    assert worker.cpu is not None and worker.cpu > 0
    busy = sampler.cores_busy(window)
    assert busy is not None and 0 <= busy <= 100


def test_backstop_run_time_is_whole_seconds_beyond_the_window() -> None:
    assert locust_process.backstop_run_time(1.0, 2.0) == 3 + locust_process.RUN_TIME_BACKSTOP_S
    assert locust_process.backstop_run_time(1.0, 0.5) == 2 + locust_process.RUN_TIME_BACKSTOP_S


def test_servers_and_loadgen_never_import_locust() -> None:
    """gevent's monkey-patching must stay out of the servers and the native load
    generator; the locust driver itself only runs locust as a subprocess."""
    code = (
        "import importlib, importlib.util, sys\n"
        "mods = ['servers.epoll_server', 'servers.__main__', 'clients.locust.driver']\n"
        "mods += [m for m in ('clients.loadgen', 'clients.engine.worker')"
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
            "clients.locust.driver",
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


def test_window_file_fixture_is_what_the_locustfile_writes() -> None:
    """The fixture has the keys MeasuredWindow.to_dict writes (a drift would go unseen)."""
    text = LOCUSTFILE.read_text()
    data = json.loads((DATA / "run_window.json").read_text())
    for key in (*data, *data["intervals"][0], *data["errors_before"][0]):
        assert f'"{key}"' in text, key

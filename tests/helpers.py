"""Constants and helpers for the tests: sockets and test servers for those that talk to real
servers, made-up results, runs and report tables for the report's."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Self

import psutil
import pytest

from bench.record import Row
from bench.run.server_process import ServerProcess
from clients.result import (
    RESOLUTION_TENTH_US,
    Client,
    Connections,
    ConnectLatency,
    Latency,
    LoadResult,
    Params,
    Rate,
    Window,
    Worker,
    no_errors,
)
from common import cpustat
from servers import MODELS

# a small but realistic run folder (see tests/test_report.py), for the report tests
SMALL_RUN = Path(__file__).parent / "data" / "small_run"
TIMEOUT = 10.0  # seconds for any one socket operation of a test
# the models that run on this machine (uvloop and gevent are optional packages)
AVAILABLE = [name for name, m in MODELS.items() if m.unavailable_reason() is None]


def connect(port: int, timeout: float = TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(sock: socket.socket, data: bytes, reply_len: int) -> bytes:
    """Send and receive at once: a big payload sent without reading would deadlock
    against a server that (rightly) stops reading while its output is unread."""
    errors: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        reply = recv_exactly(sock, reply_len)
    finally:
        sender.join(TIMEOUT)
    if errors:
        raise errors[0]
    return reply


def echo_roundtrip(port: int, payload: bytes = b"ping") -> None:
    with connect(port) as sock:
        assert exchange(sock, frame(payload), 4 + len(payload)) == frame(payload)


def send_until_stalled(
    sock: socket.socket, payload: bytes, limit_s: float, stall_s: float = 0.5
) -> tuple[int, bool]:
    """Send echo frames without reading until the peer stops taking bytes for stall_s
    (or limit_s passes). Returns (bytes sent, whether it stalled)."""
    stream = memoryview(frame(payload) * 4)
    sent, last_progress = 0, time.monotonic()
    sock.setblocking(False)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and time.monotonic() - last_progress < stall_s:
        try:
            at = sent % len(stream)  # partial sends must keep the frames aligned
            sent += sock.send(stream[at:] if at else stream)
            last_progress = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    return sent, time.monotonic() - last_progress >= stall_s


def prefork_processes(server: ServerProcess, workers: int) -> list[psutil.Process]:
    """Parent and children, once every one of them listens on the port."""
    parent = psutil.Process(server.pid)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        procs = [parent, *parent.children()]
        listening = [
            p
            for p in procs
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                for c in p.net_connections("tcp")
            )
        ]
        if len(listening) == workers:
            return procs
        time.sleep(0.05)
    raise AssertionError(f"not {workers} listening processes")


def load_result(
    *,
    throughput: float = 1000.0,
    p50: float = 50,
    p99: float = 90,
    worst_wait: float = 20_000,
    duration: float = 2.0,
    connections: int = 10,
    resolution: str = RESOLUTION_TENTH_US,
) -> LoadResult:
    """A minimal closed-loop load result with these figures (report and gate tests)."""
    requests = int(throughput * duration)
    latency = Latency(count=requests, p50=p50, p90=p99, p99=p99, p999=p99, max=p99, mean=p50)
    return LoadResult(
        tool="sockbench.loadgen",
        params=Params(
            "127.0.0.1:1", "echo", connections, 1, duration, 0.5, 64, None, "persistent", 5.0, (1,)
        ),
        window=Window(1_796_000_000.0, 1_796_000_000.0 + duration),
        requests=requests,
        throughput_rps=throughput,
        bytes=requests * 68,
        duration_s=duration,
        latency=latency,
        latency_all=latency,
        connect=ConnectLatency(),
        errors=no_errors(),
        errors_before=no_errors(),
        connections=Connections(connections, connections, 0, p99, worst_wait, worst_wait),
        fairness=1.0,
        rate=Rate(None, throughput, throughput),
        client=Client((Worker(50.0, 45.0, 0.5),), (1,), 60.0, False),
        latency_resolution=resolution,
    )


def quiet_cpus(seconds: float = 0.3, busy_limit: float = 25.0) -> list[int]:
    """This process's CPUs, the idlest first (as cpus_by_idleness), for a test that
    must not be contended; skips it when even the idlest CPU is busy with something
    else (then no client can be uncontended here, whatever the code does)."""
    order, busy = _idleness(seconds)
    if busy[order[0]] > busy_limit:
        pytest.skip(f"no quiet CPU: the idlest was {busy[order[0]]:.0f}% busy with other work")
    return order


def cpus_by_idleness(seconds: float = 0.3) -> list[int]:
    """This process's CPUs, the idlest first, measured over `seconds` (/proc/stat):
    a test that must not be contended puts its client on the first."""
    return _idleness(seconds)[0]


def _idleness(seconds: float) -> tuple[list[int], dict[int, float]]:
    allowed = sorted(os.sched_getaffinity(0))
    before = {cpu: cpustat.ticks([cpu]) for cpu in allowed}
    time.sleep(seconds)  # a measurement window, not a synchronisation
    busy = {cpu: cpustat.busy_percent(before[cpu], cpustat.ticks([cpu])) or 0.0 for cpu in allowed}
    return sorted(allowed, key=lambda cpu: busy[cpu]), busy


@contextlib.contextmanager
def cpu_hog(cpu: int) -> Iterator[subprocess.Popen[bytes]]:
    """A busy loop pinned to `cpu`, ended (by its pid) on the way out."""
    hog = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        yield hog
    finally:
        hog.kill()
        hog.wait()


class ThreadedTestServer:
    """A thread-per-connection server on 127.0.0.1, port 0, for tests that need a
    server misbehaving in a chosen way: subclasses write `_serve(conn)`. With `cpus`,
    its threads run there (a thread's affinity passes to the threads it starts)."""

    def __init__(self, cpus: set[int] | None = None, nodelay: bool = False) -> None:
        self.cpus = cpus
        self.nodelay = nodelay
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.conns: list[socket.socket] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> Self:
        self.threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in list(self.threads):
            thread.join(5)
        self.listener.close()
        for conn in self.conns:
            conn.close()

    def _accept(self) -> None:
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)  # this thread only, and those it starts
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            if self.nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def received(self, conn: socket.socket, size: int = 4096) -> Iterator[bytes]:
        """Each chunk `conn` sends (at most `size` bytes), until the peer closes, the
        connection fails or the server stops: the read loop of a `_serve`."""
        while not self.stop.is_set():
            try:
                data = conn.recv(size)
            except TimeoutError:
                continue  # the 0.05 s timeout: look at `stop` again
            except OSError:
                return
            if not data:
                return
            yield data


def made_up_run(parent: Path, run_id: str, rows: Iterable[Row]) -> Path:
    """A run folder under `parent` of made-up `rows`, with small_run's metadata, its report
    and results.csv drawn: the report sections' tests read them."""
    # here, not at the top: the report's modules take a second to import, and most tests
    # that use these helpers draw no report
    from bench.report.build import build_report
    from bench.report.results_csv import write_results_csv
    from bench.store import RunStore

    meta = json.loads((SMALL_RUN / "metadata.json").read_text())
    store = RunStore.create(parent, run_id, meta)
    for row in rows:
        store.append(row)
    build_report(store.path)
    write_results_csv(store.path)
    return store.path


def report_table(report: str, title: str) -> dict[str, dict[str, str]]:
    """The report.md table under `### title` as {first column: {header: cell}}."""
    section = report.split(f"### {title}\n\n", 1)[1]
    lines = section.split("\n\n", 1)[0].splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    return {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    }

"""What the conformance suite cannot say about issue 6's models: the thread pool's
bound, prefork's processes, stops with replies still held, and the listen backlog."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import psutil
import pytest

from clients.errors import ERROR_KINDS
from clients.result import LoadResult
from tests.helpers import (
    AVAILABLE,
    connect,
    echo_roundtrip,
    exchange,
    frame,
    prefork_processes,
    recv_exactly,
    recv_until_eof,
    send_until_stalled,
)

pytestmark = pytest.mark.real  # real servers and load: not in `make test-fast`

NEW_MODELS = [m for m in ("asyncio", "uvloop", "gevent", "threadpool", "prefork") if m in AVAILABLE]


def run_servers(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "threadpool", "--workers", "0"], "positive integer"),
        (["run", "prefork", "--workers", "-1"], "positive integer"),
        (["run", "epoll", "--workers", "2"], "takes no --workers"),
    ],
)
def test_bad_workers_is_exit_2(args: list[str], message: str) -> None:
    result = run_servers(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def _holders(port: int, n: int) -> list[socket.socket]:
    socks = [connect(port) for _ in range(n)]
    for sock in socks:  # a partial request: each handler now blocks in recv
        sock.sendall(struct.pack(">I", 100) + b"partial")
    return socks


def test_threadpool_serves_at_once_while_holders_are_fewer_than_threads(server_factory):
    server = server_factory("threadpool", "echo", "--workers", "4")
    holders = _holders(server.port, 3)
    try:
        start = time.monotonic()
        echo_roundtrip(server.port, b"a free thread")
        assert time.monotonic() - start < 1.0
    finally:
        for sock in holders:
            sock.close()


def test_threadpool_starves_past_its_threads_until_one_frees_up(server_factory):
    server = server_factory("threadpool", "echo", "--workers", "4")
    holders = _holders(server.port, 4)
    try:
        with connect(server.port, timeout=0.5) as waiting:  # accepted, queued, unserved
            waiting.sendall(frame(b"queued"))
            with pytest.raises(TimeoutError):
                waiting.recv(1)
            holders.pop().close()  # a thread frees up and takes the queued connection
            waiting.settimeout(5.0)
            assert recv_exactly(waiting, 10) == frame(b"queued")
    finally:
        for sock in holders:
            sock.close()
    assert server.stop() == 0
    assert server.stopped["accepted"] == server.stopped["closed"] == 5


def test_threadpool_stop_closes_queued_connections(server_factory):
    server = server_factory("threadpool", "echo", "--workers", "2")
    socks = _holders(server.port, 2) + [connect(server.port) for _ in range(3)]
    try:
        time.sleep(0.2)  # let the accept loop take all five
        start = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - start < 2.0
        assert server.stopped["accepted"] == server.stopped["closed"] == 5
        for sock in socks:  # closed by the server (holders first get their echo back)
            sock.settimeout(2.0)
            try:
                recv_until_eof(sock)
            except ConnectionResetError:
                pass
    finally:
        for sock in socks:
            sock.close()


def test_prefork_spreads_connections_over_processes_and_stops_them_all(server_factory):
    server = server_factory("prefork", "echo", "--workers", "3")
    procs = prefork_processes(server, 3)
    children = procs[1:]
    assert len(children) == 2  # the parent is worker 0
    cpus = psutil.Process(server.pid).cpu_affinity()
    if len(psutil.Process().cpu_affinity()) > 1:  # several CPUs: one each
        assert all(len(p.cpu_affinity()) == 1 for p in procs), cpus
    socks = [connect(server.port) for _ in range(40)]
    try:
        for sock in socks:
            assert exchange(sock, frame(b"hi"), 6) == frame(b"hi")
        owners: collections.Counter[int] = collections.Counter()
        for proc in procs:
            for conn in proc.net_connections("tcp"):
                if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == server.port:
                    owners[proc.pid] += 1
        assert sum(owners.values()) == 40
        assert len(owners) > 1, owners  # 40 hashes all on one socket: 3 x (1/3)^39
        start = time.monotonic()
        assert server.stop() == 0, server.stderr
        assert time.monotonic() - start < 2.0
    finally:
        for sock in socks:
            sock.close()
    # every child's counters reached the parent's stop line
    assert server.stopped["accepted"] == server.stopped["closed"] == 40
    assert not [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_prefork_children_die_with_a_killed_parent(server_factory):
    server = server_factory("prefork", "echo", "--workers", "2")
    children = prefork_processes(server, 2)[1:]
    server.kill()  # SIGKILL: no cleanup in the parent, PR_SET_PDEATHSIG does it
    gone, alive = psutil.wait_procs(children, timeout=5.0)
    assert not alive


def _established(proc: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in proc.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


def _wait_for(what: str, check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)
    return found


def _restart_event(server) -> dict | None:
    for line in list(server.stdout_tail):
        if '"worker_restarted"' in line:
            return json.loads(line)
    return None


def test_prefork_replaces_a_worker_killed_mid_run(server_factory):
    """SIGKILL one worker under load: a replacement serves new connections, each
    connection the dead worker held fails once at the client, the stop line counts the
    restart, and the run goes on."""
    conns = 32
    server = server_factory("prefork", "echo", "--workers", "2")
    parent, child = prefork_processes(server, 2)
    load = subprocess.Popen(
        [sys.executable, "-m", "clients.loadgen", "--target", f"127.0.0.1:{server.port}",
         "--connections", str(conns), "--processes", "1", "--duration", "3",
         "--warmup", "0.2", "--timeout", "2", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    socks: list[socket.socket] = []
    try:
        both = [parent, child]
        _wait_for("connections", lambda: sum(_established(p, server.port) for p in both) == conns)
        held = _established(child, server.port)
        assert held > 0  # 32 hashed all onto the parent: 2^-32
        child.kill()
        event = _wait_for("restart line", lambda: _restart_event(server))
        assert event["pid"] == child.pid and event["counters_lost"] is True
        replacement = psutil.Process(event["new_pid"])
        assert replacement.ppid() == server.pid
        _wait_for("listening replacement", lambda: len(prefork_processes(server, 2)) == 2)
        assert _established(replacement, server.port) == 0  # the parent's stayed with it
        socks = [connect(server.port) for _ in range(40)]
        for sock in socks:
            assert exchange(sock, frame(b"after"), 9) == frame(b"after")
        assert _established(replacement, server.port) > 0  # 40 all on the parent: 2^-40
        out, err = load.communicate(timeout=30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        for sock in socks:
            sock.close()
    assert load.returncode == 0, err
    result = LoadResult.from_json(out)
    lost = {k: result.errors.get(k, 0) + result.errors_before.get(k, 0) for k in ERROR_KINDS}
    assert lost["reset"] + lost["closed"] == held, lost
    assert lost["mismatch"] == 0 and result.requests > 0
    assert server.stop() == 0, server.stderr
    assert server.stopped["workers_restarted"] == 1
    assert not replacement.is_running() or replacement.status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("model", NEW_MODELS)
def test_stop_with_replies_still_held(server_factory, model: str) -> None:
    """A held reply must not hold the stop up; threads cannot cut their sleep short, so
    the thread pool gets a hold it can sit out within the launcher's 2 s."""
    hold_us = 300_000 if model == "threadpool" else 5_000_000
    server = server_factory(model, "echo", "--work", f"wait:{hold_us}")
    socks = [connect(server.port) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(frame(b"held"))
        time.sleep(0.1)
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_stopped(2.0), "did not stop within 2 s"
        assert time.monotonic() - start < 2.0
        assert server.stop() == 0, server.stderr
        assert server.stopped["accepted"] == server.stopped["closed"] == 4
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("model", NEW_MODELS)
def test_held_replies_are_bounded_too(server_factory, model: str) -> None:
    """A client pipelining into `wait:` work without reading: the server must stop
    reading once it holds about a megabyte of replies, not hold every reply."""
    server = server_factory(model, "echo", "--work", "wait:2000000")
    with connect(server.port) as sock:
        sent, stalled = send_until_stalled(sock, b"h" * 65536, limit_s=8.0)
        assert stalled, f"still accepting after {sent} bytes"
        assert sent < 32 * 1024 * 1024


@pytest.mark.skipif(not shutil.which("ss"), reason="needs ss (iproute2)")
@pytest.mark.parametrize("model", [m for m in ("asyncio", "uvloop", "prefork") if m in AVAILABLE])
def test_listen_backlog_is_the_launchers(server_factory, model: str) -> None:
    """asyncio's create_server() calls listen() again (100 by default), and prefork's
    children listen themselves: each must keep the launcher's default backlog."""
    server = server_factory(model, "echo")
    if model == "prefork":
        # The server inherits this process's CPU set and forks one worker per CPU of it
        # (its own affinity is no guide: the parent pins itself to one CPU once forked).
        prefork_processes(server, len(os.sched_getaffinity(0)))
    echo_roundtrip(server.port)
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True
    ).stdout
    backlogs = {int(line.split()[2]) for line in out.splitlines()}  # Send-Q of LISTEN
    assert backlogs == {server.ready["backlog"]}, out


def test_importing_the_gevent_model_patches_nothing() -> None:
    """Only serve() patches, so only the gevent server process is ever patched."""
    if "gevent" not in AVAILABLE:
        pytest.skip("gevent is not installed")
    code = (
        "import servers.gevent_server, gevent.monkey\nprint(gevent.monkey.is_anything_patched())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"

"""The load generator against HTTP servers that are not sockbench's: replies verified by
parsing (clients.http_reply), learned for the `==` path, and the options that say what a
verified reply is (--verify, --expect-status, --expect-body)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.run.server_process import ServerProcess
from clients import wire
from clients.engine.loops import Loops
from clients.engine.pipelined import PipelinedLoops
from clients.engine.plan import WorkerPlan
from clients.engine.worker import result_of
from clients.result import LoadResult
from tests.helpers import SMALL_RUN, ThreadedTestServer

GREETING = b"Hello, world!\n"
# (reply bytes, close the connection after it) for the n-th request with its body
Respond = Callable[[int, bytes], tuple[bytes, bool]]


def nginx_like(n: int, body: bytes) -> tuple[bytes, bool]:
    """nginx's headers; the Date changes every 50 replies of a connection."""
    date = f"Tue, 01 Dec 2026 10:{n // 50 % 60:02d}:00 GMT".encode()
    head = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: %s\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n"
    )
    return head % (date, len(body or GREETING)) + (body or GREETING), False


def chunked(n: int, body: bytes) -> tuple[bytes, bool]:
    data = body or GREETING
    half = len(data) // 2
    chunks = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Done: yes\r\n\r\n" % (
        half,
        data[:half],
        len(data) - half,
        data[half:],
    )
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: tiny\r\n\r\n" + chunks, False


def http_1_0_close(n: int, body: bytes) -> tuple[bytes, bool]:
    """No Content-Length: the reply ends when the server closes."""
    return b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n" + (body or GREETING), True


def close_with_length(n: int, body: bytes) -> tuple[bytes, bool]:
    """HTTP/1.1 that says `Connection: close`, and closes."""
    data = body or GREETING
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    return head % len(data) + data, True


def not_found(n: int, body: bytes) -> tuple[bytes, bool]:
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNot here\n", False


class TinyHttpServer(ThreadedTestServer):
    """A thread-per-connection HTTP server on 127.0.0.1 answering each request with
    `respond(n, request body)` (n counts the connection's requests from 1)."""

    def __init__(self, respond: Respond) -> None:
        super().__init__(nodelay=True)
        self.respond = respond

    def _serve(self, conn: socket.socket) -> None:
        buf, n = b"", 0
        while not self.stop.is_set():
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].lower()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if len(buf) >= end + 4 + length:
                    body, buf = buf[end + 4 : end + 4 + length], buf[end + 4 + length :]
                    n += 1
                    reply, close = self.respond(n, body)
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return
                    if close:
                        conn.close()
                        return
                    continue
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk


@pytest.fixture(scope="module")
def sockbench_http() -> Iterator[ServerProcess]:
    with ServerProcess(model="epoll", protocol="http") as server:
        yield server


def loadgen(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients.loadgen", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drive(target: str, *extra: str) -> LoadResult:
    done = loadgen(
        "--target",
        target,
        "--protocol",
        "http",
        "--payload",
        "0",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--connections",
        "2",
        "--processes",
        "1",
        *extra,
    )
    assert done.returncode in (0, 1) and done.stdout, done.stderr
    result = LoadResult.from_json(done.stdout)
    assert done.returncode == (0 if result.requests else 1), done.stderr  # 1: none verified
    return result


def total(result: LoadResult, kind: str) -> int:
    return result.errors[kind] + result.errors_before[kind]


def all_errors(result: LoadResult) -> int:
    return result.error_count + sum(result.errors_before.values())


# -- foreign servers that answer correctly ----------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("respond", [nginx_like, chunked], ids=["nginx-like", "chunked"])
def test_foreign_replies_are_verified(respond: Respond) -> None:
    with TinyHttpServer(respond) as server:
        result = drive(server.target)
    assert result.requests > 0
    assert all_errors(result) == 0, result.errors
    size = len(respond(1, b"")[0])
    assert result.bytes == result.requests * size  # their bytes, not sockbench's
    params = result.params
    assert (params.verify, params.expect_status, params.expect_body) == ("auto", 200, None)


@pytest.mark.real
@pytest.mark.parametrize(
    "respond", [http_1_0_close, close_with_length], ids=["http-1.0", "connection-close"]
)
def test_a_server_that_closes_after_each_reply_in_per_request_mode(respond: Respond) -> None:
    with TinyHttpServer(respond) as server:
        result = drive(server.target, "--mode", "per-request")
    assert result.requests > 0
    assert all_errors(result) == 0, result.errors
    assert result.bytes == result.requests * len(respond(1, b"")[0])


def close_every_fifth(n: int, body: bytes) -> tuple[bytes, bool]:
    """As nginx after keepalive_requests: keep-alive, then `Connection: close` on the
    fifth reply of each connection."""
    return close_with_length(n, body) if n % 5 == 0 else nginx_like(n, body)


@pytest.mark.real
@pytest.mark.parametrize(
    "respond", [http_1_0_close, close_every_fifth], ids=["every-reply", "every-fifth"]
)
def test_the_closed_loop_reconnects_a_slot_whose_server_ended_the_connection(
    respond: Respond,
) -> None:
    """HTTP lets a server end a connection after a reply; that is no error."""
    with TinyHttpServer(respond) as server:
        result = drive(server.target)
    assert all_errors(result) == 0, result.errors
    assert result.requests > 10  # 2 connections, each far past its first connection


@pytest.mark.real
@pytest.mark.parametrize("verify", ["auto", "parse"])
@pytest.mark.parametrize("respond", [nginx_like, chunked], ids=["nginx-like", "chunked"])
def test_open_loop_parses_pipelined_foreign_replies(respond: Respond, verify: str) -> None:
    with TinyHttpServer(respond) as server:
        result = drive(server.target, "--rate", "400", "--verify", verify)
    assert result.requests > 0
    assert all_errors(result) == 0, result.errors
    assert result.bytes == result.requests * len(respond(1, b"")[0])


@pytest.mark.real
def test_post_echo_from_a_foreign_server() -> None:
    with TinyHttpServer(nginx_like) as server:
        done = loadgen(
            "--target", server.target, "--protocol", "http", "--payload", "300",
            "--duration", "0.3", "--warmup", "0.1", "--connections", "2", "--processes", "1",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = LoadResult.from_json(done.stdout)
    assert result.requests > 0
    assert all_errors(result) == 0, result.errors


# -- the learned fast path, seen from inside a worker -------------------------------------


def _plan(target: str, **changes: object) -> WorkerPlan:
    host, port = target.rsplit(":", 1)
    fields: dict[str, object] = dict(
        index=0, family=socket.AF_INET, address=(host, int(port)), protocol="http",
        payload=0, mode="persistent", connections=2, first=0, total=2, rate=None,
        timeout=2.0, cpus=None, parent_pid=os.getpid(),
    )  # fmt: skip
    fields.update(changes)
    return WorkerPlan(**fields)  # type: ignore[arg-type]


def _run_in_process(loops: Loops, seconds: float = 0.3) -> tuple[int, int]:
    """(replies in the window, replies that went through the parser)."""
    parsed = 0
    begin = loops._begin_parse

    def counting(fd: int, already: bytes = b"") -> object:
        nonlocal parsed
        parsed += 1
        return begin(fd, already)

    loops._begin_parse = counting  # type: ignore[method-assign, assignment]
    try:
        loops.connect_all()
        t0 = time.monotonic_ns()
        loops.run(t0, t0 + 50_000_000, t0 + int(seconds * 1e9))
        result = result_of(loops)
    finally:
        loops.close()
    assert all(v == 0 for v in result.errors.values()), result.errors
    return result.requests, parsed


@pytest.mark.real
def test_auto_learns_a_foreign_servers_reply_and_compares_bytes() -> None:
    with TinyHttpServer(nginx_like) as server:
        replies, parsed = _run_in_process(Loops(_plan(server.target)))
    assert replies > 100
    # a connection parses its first reply and one per Date change (every 50 replies)
    assert parsed <= 2 + replies // 25, (replies, parsed)


@pytest.mark.real
def test_verify_parse_parses_every_reply() -> None:
    with TinyHttpServer(nginx_like) as server:
        loops = Loops(_plan(server.target, verify="parse"))
        replies, parsed = _run_in_process(loops)
    assert replies > 0 and parsed >= replies


@pytest.mark.real
def test_open_loop_learns_too() -> None:
    with TinyHttpServer(nginx_like) as server:
        loops = PipelinedLoops(_plan(server.target, rate=500.0))
        replies, parsed = _run_in_process(loops)
    assert replies > 50 and parsed <= 4 + replies // 20, (replies, parsed)


# -- sockbench's own server ---------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize(
    "loop", [[], ["--rate", "400"], ["--mode", "per-request"]], ids=["closed", "open", "per-req"]
)
def test_verify_parse_against_sockbench(sockbench_http: ServerProcess, loop: list[str]) -> None:
    result = drive(f"127.0.0.1:{sockbench_http.port}", "--verify", "parse", *loop)
    assert result.requests > 0
    assert all_errors(result) == 0, result.errors
    assert result.params.verify == "parse"
    assert result.bytes == result.requests * len(wire.http_ok(wire.GET_BODY))


@pytest.mark.real
@pytest.mark.parametrize(
    "args",
    [
        ["--expect-body", "other"],
        ["--expect-status", "404"],
        ["--verify", "parse", "--expect-body", "x"],
    ],
    ids=["body", "status", "parse-body"],
)
def test_an_unexpected_reply_is_a_mismatch(sockbench_http: ServerProcess, args: list[str]) -> None:
    result = drive(f"127.0.0.1:{sockbench_http.port}", *args)
    assert total(result, "mismatch") > 0
    assert result.requests == 0


@pytest.mark.real
def test_exact_refuses_a_foreign_servers_bytes() -> None:
    with TinyHttpServer(nginx_like) as server:
        result = drive(server.target, "--verify", "exact")
    assert total(result, "mismatch") == 2 and result.requests == 0
    assert result.params.verify == "exact"


@pytest.mark.real
def test_expected_status_and_body_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"Not here\n")
    with TinyHttpServer(not_found) as server:
        by_file = drive(server.target, "--expect-status", "404", "--expect-body", f"@{path}")
        by_text = drive(server.target, "--expect-status", "404", "--expect-body", "Not here\n")
        default = drive(server.target)
    for result in (by_file, by_text):
        assert result.requests > 0
        assert all_errors(result) == 0, result.errors
    assert by_file.params.expect_status == 404
    assert by_file.params.expect_body == f"@{path}"
    assert total(default, "mismatch") == 2 and default.requests == 0


# -- usage -----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


USAGE = {
    "body with echo": ["--protocol", "echo", "--expect-body", "x"],
    "body with post": ["--protocol", "http", "--payload", "10", "--expect-body", "x"],
    "body file missing": ["--protocol", "http", "--expect-body", "@/nonexistent/body"],
    "status with echo": ["--protocol", "echo", "--expect-status", "404"],
    "status 1xx": ["--protocol", "http", "--expect-status", "100"],
    "status with exact": ["--protocol", "http", "--expect-status", "404", "--verify", "exact"],
    "parse with echo": ["--protocol", "echo", "--verify", "parse"],
    "verify word": ["--protocol", "http", "--verify", "sometimes"],
}


@pytest.mark.parametrize("name", list(USAGE))
def test_bad_expectation_usage_exits_2_with_one_line(name: str) -> None:
    done = loadgen("--target", f"127.0.0.1:{_closed_port()}", "--duration", "0.1", *USAGE[name])
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no result: nothing was run (a refused connect would be one)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m clients.loadgen: error:")


# -- results written before these options still load ------------------------------------------


def test_an_old_result_loads_with_the_new_params_unset() -> None:
    row = json.loads((SMALL_RUN / "results.jsonl").read_text().splitlines()[0])
    assert "verify" not in row["load"]["params"]
    old = LoadResult.from_dict(row["load"])
    assert (old.params.verify, old.params.expect_status, old.params.expect_body) == (None,) * 3
    again = LoadResult.from_json(old.to_json())
    assert again == old

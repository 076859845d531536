"""HTTP and line protocols against every model, and the select model past FD_SETSIZE."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from bench.run.server_process import ServerProcess
from servers.protocol import GET_BODY
from tests.helpers import AVAILABLE, connect, exchange, recv_exactly, recv_until_eof

pytestmark = pytest.mark.real  # real servers and load: not in `make test-fast`

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
GET_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n" + GET_BODY


def post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra)
        + body
    )


def post_reply(body: bytes, close: bool = False) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
        % (len(body), b"Connection: close\r\n" if close else b"")
        + body
    )


@pytest.fixture(scope="module", params=AVAILABLE)
def http_server(request: pytest.FixtureRequest):
    server = ServerProcess(request.param, "http").start()
    yield server
    assert server.stop() == 0, server.stderr


@pytest.fixture(scope="module", params=AVAILABLE)
def line_server(request: pytest.FixtureRequest):
    server = ServerProcess(request.param, "line").start()
    yield server
    assert server.stop() == 0, server.stderr


def test_http_get_and_post_echo(http_server: ServerProcess) -> None:
    body = bytes(range(256)) * 300
    with connect(http_server.port) as sock:
        assert exchange(sock, GET, len(GET_REPLY)) == GET_REPLY
        assert exchange(sock, post(body), len(post_reply(body))) == post_reply(body)


def test_http_100_pipelined_requests_in_order(http_server: ServerProcess) -> None:
    requests = [GET if i % 2 else post(b"body %d" % i) for i in range(100)]
    replies = [GET_REPLY if i % 2 else post_reply(b"body %d" % i) for i in range(100)]
    expected = b"".join(replies)
    with connect(http_server.port) as sock:
        assert exchange(sock, b"".join(requests), len(expected)) == expected


def test_http_connection_close_is_honoured(http_server: ServerProcess) -> None:
    with connect(http_server.port) as sock:
        sock.sendall(post(b"bye", b"Connection: close\r\n"))
        assert recv_until_eof(sock) == post_reply(b"bye", close=True)


@pytest.mark.parametrize(
    "bad",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
    ],
)
def test_http_malformed_gets_400_and_close(http_server: ServerProcess, bad: bytes) -> None:
    with connect(http_server.port) as sock:
        try:
            sock.sendall(bad)
        except ConnectionResetError:
            pass  # the server may close before the whole oversized head is sent
        try:
            reply = recv_until_eof(sock)
        except ConnectionResetError:
            reply = b"HTTP/1.1 400"  # the 400 was sent, then RST for the unread rest
        assert reply.startswith(b"HTTP/1.1 400")
    with connect(http_server.port) as sock:  # the server itself is fine
        assert exchange(sock, GET, len(GET_REPLY)) == GET_REPLY


def test_curl_get_and_post(http_server: ServerProcess) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl is not installed (apt-get install curl)")
    url = f"http://127.0.0.1:{http_server.port}"
    got = subprocess.run(
        ["curl", "-sS", "--max-time", "5", url + "/"], capture_output=True, check=True
    ).stdout
    assert got == GET_BODY
    got = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--data-binary", "curl body", url + "/echo"],
        capture_output=True,
        check=True,
    ).stdout
    assert got == b"curl body"


def test_wrk_reports_no_errors(http_server: ServerProcess) -> None:
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk)")
    conns = "1" if http_server.model == "blocking" else "20"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", "-d1s", f"http://127.0.0.1:{http_server.port}/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "requests in" in out
    assert "Socket errors" not in out and "Non-2xx" not in out, out


def test_ab_keep_alive_completes(http_server: ServerProcess) -> None:
    """ab -k speaks HTTP/1.0 with Connection: keep-alive, and waits for the server to
    close a connection unless the reply says keep-alive: it hung before the header."""
    if not shutil.which("ab"):
        pytest.skip("ab is not installed (apt-get install apache2-utils)")
    conns = "1" if http_server.model == "blocking" else "10"
    out = subprocess.run(
        ["ab", "-k", "-s", "5", "-c", conns, "-n", "2000", f"http://127.0.0.1:{http_server.port}/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "Complete requests:      2000" in out, out
    assert "Failed requests:        0" in out and "Keep-Alive requests:    2000" in out, out


REQUESTS = 1000  # a request count, not a time: ab and siege take time limits in whole seconds


def _concurrency(model: str) -> int:
    """What the model serves at once: blocking one connection, the pool its 32 workers."""
    return 1 if model == "blocking" else 10


def _run(argv: list[str], **kwargs) -> str:
    if not shutil.which(argv[0]):
        pytest.skip(f"{argv[0]} is not installed (.ci/run installs it)")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_hey_completes(http_server: ServerProcess) -> None:
    """hey (Go's HTTP/1.1 client, keep-alive): every reply a 200, no error."""
    c = _concurrency(http_server.model)
    out = _run(["hey", "-n", str(REQUESTS), "-c", str(c), "-t", "10", _url(http_server)])
    assert f"[200]\t{REQUESTS} responses" in out, out
    assert "Error distribution" not in out, out


def test_h2load_h1_completes(http_server: ServerProcess) -> None:
    """h2load --h1 (nghttp2's HTTP/1.1 client, pipelining off): every request a 2xx."""
    c = _concurrency(http_server.model)
    out = _run(["h2load", "--h1", "-n", str(REQUESTS), "-c", str(c), "-T", "10", _url(http_server)])
    assert f"{REQUESTS} succeeded, 0 failed, 0 errored, 0 timeout" in out, out
    assert f"status codes: {REQUESTS} 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out


def test_siege_completes(http_server: ServerProcess, tmp_path) -> None:
    """siege in benchmark mode, a repetition count per user: every transaction succeeds.
    HOME is a temporary folder: siege writes its configuration template there."""
    c = _concurrency(http_server.model)
    argv = ["siege", "-b", "-q", "-c", str(c), "-r", str(REQUESTS // c), _url(http_server)]
    out = _run(argv, env={**os.environ, "HOME": str(tmp_path)})
    summary = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert summary["transactions"] == REQUESTS // c * c, out
    assert summary["successful_transactions"] == summary["transactions"], out
    assert summary["failed_transactions"] == 0 and summary["availability"] == 100.0, out


def _url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}/"


def test_line_hello(line_server: ServerProcess) -> None:
    with connect(line_server.port) as sock:
        sock.sendall(b"world\n")
        assert recv_exactly(sock, 13) == b"Hello, world\n"
        sock.sendall(b"one\r\ntwo\nthr")
        sock.sendall(b"ee")
        sock.shutdown(1)  # a last line without newline is answered at EOF
        assert recv_until_eof(sock) == b"Hello, one\nHello, two\nHello, three\n"


def test_select_past_fd_setsize_refuses_and_keeps_serving(server_factory) -> None:
    server = server_factory("select", "echo")
    socks = []
    try:
        for _ in range(1100):  # enough for the server's descriptors to pass 1024
            socks.append(connect(server.port))
        survivors = 0
        for sock in socks:
            sock.settimeout(0.5)
            try:
                sock.sendall(b"\x00\x00\x00\x01x")
                if sock.recv(5) == b"\x00\x00\x00\x01x":
                    survivors += 1
            except OSError:
                pass
        assert 900 < survivors < 1100
    finally:
        for sock in socks:
            sock.close()
    with connect(server.port) as sock:
        assert exchange(sock, b"\x00\x00\x00\x02ok", 6) == b"\x00\x00\x00\x02ok"
    assert server.stop() == 0
    assert server.stopped["refused"] >= 1100 - survivors

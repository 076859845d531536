"""The load generator says when the server does not speak its protocol: the `protocol`
error kind (bytes that cannot be a reply of the protocol spoken), the one-line
diagnosis in the result and on stderr, exit 1 when nothing was verified, and the
--help that lists every option's default and the result's fields."""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from bench.record import CellKey
from bench.run.cpus import plan_cpus
from bench.run.matrix import Cell, Matrix
from bench.run.runner import no_request_cause, parse_load, run_cell
from bench.run.server_process import ServerProcess
from clients import wire
from clients.diagnosis import diagnose, show
from clients.errors import ERROR_KINDS, parse_error_kind, reply_error
from clients.http_reply import BodyTooLong, ParseError, ReplyParser
from clients.loadgen import build_parser
from clients.result import FIELD_NOTES, Connections, LoadResult, no_errors
from tests.helpers import ThreadedTestServer, load_result

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
FRAME = wire.exchange("echo", 64)[1]


# -- the classification, on bytes --------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (BAD_REQUEST, "protocol"),  # "HTTP" read as a length
        (b"HT", "protocol"),  # a length's first bytes already differ
        (b"Hello, \x00\x00\x00@", "protocol"),  # the line protocol's greeting
        (FRAME[:-1] + b"\xff", "mismatch"),  # the length sent, another byte
        (FRAME + b"!", "mismatch"),  # a byte too many after the frame
        (FRAME[:2], "mismatch"),  # a start that may still become the frame
        (b"", "mismatch"),
    ],
    ids=["http-400", "http-start", "greeting", "flipped", "extra", "cut", "empty"],
)
def test_echo_reply_classification(reply: bytes, kind: str) -> None:
    assert reply_error("echo", reply, FRAME) == kind


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (FRAME, "protocol"),  # an echo frame
        (b"Hello, GET / HTTP/1.1\n", "protocol"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "protocol"),
        (b"HTTP/2 200 OK\r\n\r\n", "protocol"),  # no HTTP/1.x status line
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "protocol"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "protocol"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n", "mismatch"),
        (BAD_REQUEST, "mismatch"),  # HTTP, the wrong status
        (b"HTTP/1.1 200 OK\r\nContent-Le", "mismatch"),  # a head cut short
        (b"HT", "mismatch"),
    ],
    ids=["frame", "greeting", "ssh", "http2", "101", "bad-length", "404", "400", "cut", "ht"],
)
def test_http_reply_classification(reply: bytes, kind: str) -> None:
    assert reply_error("http", reply, None) == kind
    assert reply_error("http", reply, wire.http_ok(wire.GET_BODY)) == kind


def test_the_parser_refuses_bytes_that_are_no_http_at_once() -> None:
    """Without a head end it would wait for one that an echo server never sends."""
    with pytest.raises(ParseError, match="not HTTP/") as raised:
        next(ReplyParser().feed(FRAME[:10]), None)
    assert parse_error_kind(raised.value) == "protocol"
    assert next(ReplyParser().feed(b"HTTP/1.1 200 OK\r\nServer: x"), None) is None  # waits


def test_a_body_over_the_cap_is_a_mismatch_not_a_protocol_error() -> None:
    parser = ReplyParser(max_body=3)
    with pytest.raises(BodyTooLong) as raised:
        next(parser.feed(wire.http_ok(b"longer")))
    assert isinstance(raised.value, ParseError)
    assert parse_error_kind(raised.value) == "mismatch"


def test_protocol_is_an_error_kind_next_to_mismatch() -> None:
    assert ERROR_KINDS.index("protocol") == ERROR_KINDS.index("mismatch") + 1
    assert no_errors()["protocol"] == 0


# -- the diagnosis, on results ------------------------------------------------------------


def result_with(
    protocol: str = "echo",
    requests: int = 0,
    established: int = 4,
    errors: dict[str, int] | None = None,
    before: dict[str, int] | None = None,
) -> LoadResult:
    base = load_result(connections=4)
    return replace(
        base,
        params=replace(base.params, protocol=protocol),
        requests=requests,
        errors={**no_errors(), **(errors or {})},
        errors_before={**no_errors(), **(before or {})},
        connections=Connections(4, established, established if not requests else 0),
    )


def test_no_diagnosis_for_a_run_that_went_well() -> None:
    assert diagnose(result_with(requests=1000)) is None
    assert diagnose(result_with(requests=1000, errors={"reset": 3, "mismatch": 1})) is None


def test_diagnosis_of_replies_of_the_other_protocol() -> None:
    echo = result_with(before={"protocol": 4})
    assert diagnose(echo, BAD_REQUEST) == (
        "replies look like HTTP (`HTTP/1.1 400 Bad Request`): the server seems to speak "
        "http; use --protocol http"
    )
    http = result_with("http", before={"protocol": 4})
    assert diagnose(http, FRAME) == (
        "replies are not HTTP (`\\x00\\x00\\x00@\\x00\\x01\\x02\\x03...`): "
        "is it an echo server? use --protocol echo"
    )
    assert "another HTTP version" in (diagnose(http, b"HTTP/2 200 OK\r\n\r\n") or "")
    assert "not echo frames" in (diagnose(echo, b"SSH-2.0-OpenSSH\r\n") or "")
    # a result from elsewhere (no bytes kept): still named, without a quote
    assert diagnose(http) == "replies are not HTTP: is it an echo server? use --protocol echo"
    some = diagnose(result_with(requests=900, errors={"protocol": 2}), b"\x00junk")
    assert some is not None and some.startswith("2 replies were not echo (`\\x00junk`)")


def test_diagnosis_of_a_silent_server() -> None:
    assert diagnose(result_with()) == (
        "no connection got a reply in the window: the server may not speak echo (an HTTP "
        "server waits for a header end that echo frames never send), or it is hung"
    )
    timed = diagnose(result_with("http", errors={"timeout": 4}))
    assert timed is not None
    assert timed.startswith("no connection got a reply in the window (4 timed out)")
    assert '"GET "' in timed and timed.endswith("or it is hung")


def test_diagnosis_of_a_server_that_closes_every_connection() -> None:
    text = diagnose(result_with("http", before={"closed": 3, "reset": 1}))
    assert text is not None
    assert text.startswith("the server closed every connection without a reply (3 closed, 1 reset)")
    assert "may not speak http" in text
    partly = diagnose(result_with(before={"closed": 1}))
    assert partly is not None and partly.startswith("the server closed 1 of 4 connections")


def test_diagnosis_of_wrong_replies_and_of_no_connection() -> None:
    wrong = diagnose(result_with("http", before={"mismatch": 4}))
    assert wrong is not None and wrong.startswith("4 mismatched replies")
    assert "--expect-status" in wrong
    none = diagnose(result_with(established=0, before={"connect_refused": 4}))
    assert none == (
        "no connection was established (4 connect_refused): is a server listening on 127.0.0.1:1?"
    )


def test_a_result_from_before_the_protocol_kind_still_reads() -> None:
    data = result_with(before={"closed": 4}).to_dict()
    for errors in (data["errors"], data["errors_before"]):
        del errors["protocol"]
    del data["diagnosis"]
    old = LoadResult.from_dict(data)
    assert old.diagnosis is None and "protocol" not in old.errors
    assert "closed every connection" in (diagnose(old) or "")
    assert "closed every connection" in no_request_cause(old)  # the bench names it too


def test_show_quotes_the_first_line_short_and_escaped() -> None:
    assert show(BAD_REQUEST) == "`HTTP/1.1 400 Bad Request`"
    assert show(b"a\tb\\c") == "`a\\tb\\\\c`"
    assert show(b"x" * 40) == "`" + "x" * 32 + "...`"


# -- the bench reads a result that exited 1 ------------------------------------------------


def completed(code: int, result: LoadResult | None) -> subprocess.CompletedProcess[str]:
    out = result.to_json() + "\n" if result is not None else ""
    return subprocess.CompletedProcess([], code, out, "loadgen: diagnosis: ...\n")


def test_parse_load_takes_exit_1_with_no_reply_as_a_result() -> None:
    silent = replace(result_with(), diagnosis="the server may be hung")
    assert parse_load(completed(1, silent)) == (silent, None)
    assert no_request_cause(silent) == "the server may be hung"
    answered = result_with(requests=10)
    assert parse_load(completed(1, answered))[1] == "load generator exited with code 1"
    assert parse_load(completed(0, answered)) == (answered, None)
    load, failure = parse_load(completed(1, None))
    assert load is None and failure is not None and "exit code 1" in failure


# -- the command line ----------------------------------------------------------------------


def test_every_option_has_help_that_states_its_default() -> None:
    for action in build_parser()._actions:
        if not action.option_strings:
            continue
        assert action.help, action.option_strings
        if action.default not in (None, False, argparse.SUPPRESS):
            assert "default" in action.help, action.option_strings


def help_fields() -> list[str]:
    """The field names the --help epilog lists under the JSON result."""
    text = build_parser().format_help()
    listing = text.split("the JSON result on stdout", 1)[1].split(":\n", 1)[1]
    return re.findall(r"^  ([a-z_]+) ", listing, re.MULTILINE)


def test_help_lists_exit_statuses() -> None:
    text = build_parser().format_help()
    exits = text.split("exit status:", 1)[1]
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"^  {code} ", exits, re.MULTILINE), code
    assert "no request was answered and verified" in exits


def test_help_field_notes_cover_the_result() -> None:
    assert set(FIELD_NOTES) == set(result_with().to_dict())


# -- real servers ---------------------------------------------------------------------------


def loadgen(*args: str, quiet: bool = True) -> tuple[int, dict[str, Any], str]:
    """(exit status, the JSON result, stderr) of a short run on one worker."""
    done = subprocess.run(
        [sys.executable, "-m", "clients.loadgen", "--processes", "1", "--connections", "3"]
        + ["--duration", "0.3", "--warmup", "0.1", *args]
        + (["--quiet"] if quiet else []),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def total(data: dict[str, Any], kind: str) -> int:
    return int(data["errors"][kind] + data["errors_before"][kind])


@pytest.mark.real
def test_a_normal_run_has_no_diagnosis_and_exits_0(echo_server: ServerProcess) -> None:
    code, data, err = loadgen("--target", f"127.0.0.1:{echo_server.port}", quiet=False)
    assert code == 0, err
    assert data["requests"] > 0 and data["diagnosis"] is None
    assert total(data, "protocol") == 0
    assert "diagnosis" not in err
    # the help's listing names exactly the keys of a real result
    assert help_fields() == list(data)


@pytest.mark.real
def test_echo_against_the_http_server_is_starved_and_exits_1(http_server: ServerProcess) -> None:
    code, data, err = loadgen("--target", f"127.0.0.1:{http_server.port}")
    assert code == 1
    assert data["requests"] == 0 and data["connections"]["starved"] == 3
    assert data["diagnosis"].startswith(
        "no connection got a reply in the window: the server may not speak echo"
    )
    # even with --quiet, a run that exits 1 says why in one line
    assert err == f"loadgen: diagnosis: {data['diagnosis']}\n"


@pytest.mark.real
def test_http_against_the_echo_server_is_named(echo_server: ServerProcess) -> None:
    """The echo server reads "GET " as a frame length, over its limit: it closes."""
    code, data, err = loadgen(
        "--target", f"127.0.0.1:{echo_server.port}", "--protocol", "http", quiet=False
    )
    assert code == 1
    assert data["requests"] == 0
    assert data["diagnosis"].startswith("the server closed every connection without a reply")
    assert "may not speak http" in data["diagnosis"]
    assert err.splitlines()[0].startswith("loadgen: 0 requests")  # the summary, then why
    assert err.splitlines()[1] == f"loadgen: diagnosis: {data['diagnosis']}"


@pytest.mark.real
@pytest.mark.parametrize("verify", ["auto", "exact", "parse"])
def test_http_against_a_line_server_counts_protocol_errors(verify: str) -> None:
    with ServerProcess(model="epoll", protocol="line") as server:
        code, data, _err = loadgen(
            "--target", f"127.0.0.1:{server.port}", "--protocol", "http", "--verify", verify
        )
    assert code == 1
    assert total(data, "protocol") >= 3 and total(data, "mismatch") == 0
    assert data["diagnosis"] == (
        "replies are not HTTP (`Hello, GET / HTTP/1.1`): is it an echo server? use --protocol echo"
    )


class BadRequestServer(ThreadedTestServer):
    """As nginx or uvicorn with bytes that are no HTTP request: 400, and close."""

    def _serve(self, conn: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.sendall(BAD_REQUEST)
            except OSError:
                pass
            conn.close()
            return


@pytest.mark.real
@pytest.mark.parametrize(
    "loop", [[], ["--rate", "200"], ["--mode", "per-request"]], ids=["closed", "open", "per-req"]
)
def test_echo_against_an_http_400_counts_protocol_errors_and_names_http(loop: list[str]) -> None:
    with BadRequestServer() as server:
        code, data, _err = loadgen("--target", server.target, *loop)
    assert code == 1
    assert total(data, "protocol") >= 3 and total(data, "mismatch") == 0
    assert data["diagnosis"] == (
        "replies look like HTTP (`HTTP/1.1 400 Bad Request`): the server seems to speak "
        "http; use --protocol http"
    )


@pytest.mark.real
def test_a_bench_row_says_the_likely_cause(echo_server: ServerProcess) -> None:
    """An external echo server loaded with http: the failed row names why."""
    matrix = Matrix(
        profile="t",
        models=("wrong",),
        protocols=("http",),
        connections=(2,),
        payloads=(0,),
        duration=0.3,
        warmup=0.1,
        externals=(f"wrong=127.0.0.1:{echo_server.port}",),
    )
    cell = Cell(CellKey(model="wrong", protocol="http", connections=2, payload=0), 0)
    row = run_cell(cell, matrix, plan_cpus(), "t")
    assert row.status == "failed" and row.load is not None
    assert row.reason is not None
    assert row.reason.startswith("no request completed in the window (the server closed every")
    assert row.load.diagnosis is not None and row.load.diagnosis in row.reason

"""`bench cost`: counted instructions and system calls per request (bench.cost).

The parsers and the arithmetic on bytes and numbers; the deterministic client against a
real server and a lying one; then the command itself under valgrind and strace, small
(a few hundred requests), checking what the counts must show: epoll's three system
calls a request, poll's scan over idle descriptors, an injected loop's linear cost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cost import tools
from bench.cost.functions import self_costs
from bench.cost.pattern import Pattern, PatternError, driven
from bench.cost.record import Build, CostCell, CostRun, Counted, load, save
from common.migrate import MigrationError
from tests.helpers import AVAILABLE, ThreadedTestServer

ROOT = Path(__file__).resolve().parent.parent
HAVE_COUNTERS = not (tools.missing(tools.VALGRIND) or tools.missing(tools.STRACE))
needs_counters = pytest.mark.skipif(
    not HAVE_COUNTERS,
    reason=str(tools.missing(tools.VALGRIND) or tools.missing(tools.STRACE)),
)
SMALL = ["--requests", "100", "400", "--tries", "1", "--jobs", "2"]


def test_counted_takes_the_slope_of_the_smallest_totals() -> None:
    counted = Counted((100, 300), lo=(1_000, 1_050), hi=(3_000, 3_000))
    assert counted.per_request == 10.0  # (3000 - 1000) / 200
    # the tries' own slopes: 10 and 9.75; their range over their mean
    assert counted.spread == pytest.approx(0.25 / 9.875)
    assert Counted((1, 2), (5,), (7,)).spread == 0.0


STRACE_TABLE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 27.95    0.000474           0       743        93 newfstatat
 12.15    0.000206           6        30           getdents64
  4.01    0.000068           0       104       102 ioctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.001696           0       877       195 total
"""


def test_strace_table_is_read_by_name_whether_or_not_a_call_failed(tmp_path: Path) -> None:
    (tmp_path / "strace").write_text(STRACE_TABLE)
    assert tools.system_calls(tmp_path) == {
        "newfstatat": 743,
        "getdents64": 30,
        "ioctl": 104,
        "total": 877,
    }
    (tmp_path / "strace").write_text("strace: exec failed\n")
    with pytest.raises(ValueError, match="no total"):
        tools.system_calls(tmp_path)


def test_cachegrind_totals_add_up_every_process(tmp_path: Path) -> None:
    (tmp_path / "cg.11").write_text("desc: I1\ncmd: python\nevents: Ir\nsummary: 1000\n")
    (tmp_path / "cg.12").write_text("events: Ir\nfl=x.c\nfn=f\n3 5\nsummary: 234\n")
    assert tools.instructions(tmp_path) == 1234
    (tmp_path / "cg.13").write_text("events: Ir\n")  # a process killed before it wrote
    with pytest.raises(ValueError, match="cg.13"):
        tools.instructions(tmp_path)


CALLGRIND = """\
events: Ir
ob=(1) /usr/lib/libpython3.11.so
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
cob=(2) /usr/lib/libc.so.6
cfl=(2) malloc.c
cfn=(2) malloc
calls=2 40
10 9999
11 5
fn=(3) _PyEval_EvalFrameDefault'2
12 7
ob=(2)
fl=(2)
fn=(2)
40 60
"""


def test_callgrind_self_costs_skip_call_lines_and_follow_name_compression(
    tmp_path: Path,
) -> None:
    (tmp_path / "callgrind.1").write_text(CALLGRIND)
    assert self_costs(tmp_path) == {
        # 100 + 5 + 7 (the recursion's '2 folded in); the call's inclusive 9999 is malloc's
        ("/usr/lib/libpython3.11.so", "_PyEval_EvalFrameDefault"): 112,
        ("/usr/lib/libc.so.6", "malloc"): 60,
    }


def _run(tmp: Path) -> CostRun:
    build = Build("3.11.7", "ab" * 32, "valgrind-3.19.0", "strace 6.1", "x86_64", "6", {})
    cell = CostCell("epoll", "echo", 64, 0, Counted((1, 3), (10, 11), (30, 31)))
    return CostRun(build, (1, 3), 2, (cell, CostCell("gevent", "echo", 64, refused="timing")))


def test_cost_json_round_trips_and_refuses_an_unknown_schema(tmp_path: Path) -> None:
    run = _run(tmp_path)
    save(run, tmp_path / "cost.json")
    assert load(tmp_path / "cost.json") == run
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["schema"] == 1 and data["cells"][0]["instructions"]["per_request"] == 10.0
    data["schema"] = 99
    (tmp_path / "cost.json").write_text(json.dumps(data))
    with pytest.raises(MigrationError):
        load(tmp_path / "cost.json")


@pytest.mark.real
def test_the_client_checks_every_reply_and_holds_its_idle_connections(
    server_factory,
) -> None:
    server = server_factory("epoll", "http")
    with driven("127.0.0.1", server.port, Pattern("http", 64, idle=3), 20):
        pass  # four connections, 23 replies, each checked byte for byte
    assert server.stop() == 0
    assert server.stopped is not None and server.stopped["accepted"] == 4


class WrongByte(ThreadedTestServer):
    def _serve(self, conn) -> None:
        while not self.stop.is_set():
            try:
                data = conn.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            conn.sendall(data[:-1] + b"?")


@pytest.mark.real
def test_a_wrong_reply_stops_the_count() -> None:
    with WrongByte() as wrong, pytest.raises(PatternError, match="request 1: the reply differs"):
        port = int(wrong.target.rsplit(":", 1)[1])
        with driven("127.0.0.1", port, Pattern("echo", 8), 5):
            pass


@pytest.mark.real
@pytest.mark.parametrize("model", [m for m in AVAILABLE if m != "gevent"])
def test_every_counted_model_ends_on_the_signal_the_counts_use(server_factory, model) -> None:
    """bench cost ends a server with SIGUSR1 (not handled: no finalization to count);
    a model that handled it would hang the count."""
    server = server_factory(model)
    os.kill(server.pid, signal.SIGUSR1)
    assert server.wait_stopped(10)
    assert server.exit_code() == -signal.SIGUSR1


def bench_cost(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "bench", "cost", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["epol"], "unknown model 'epol'"),
        (["epoll", "--patterns", "echo/0"], "an echo frame needs at least one byte"),
        (["epoll", "--patterns", "udp/5"], "bad pattern 'udp/5'"),
        (["epoll", "--requests", "500", "100"], "needs LO < HI"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args, message) -> None:
    done = bench_cost(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # checked before any work


def test_a_machine_without_valgrind_is_told_so(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no valgrind, no strace on it
    done = bench_cost(tmp_path, "epoll", env=env)
    assert done.returncode == 2
    assert "valgrind is not installed (Debian: apt-get install valgrind)" in done.stderr


@pytest.mark.real
@needs_counters
def test_epoll_and_poll_counted_beside_idle_connections(tmp_path: Path) -> None:
    done = bench_cost(
        tmp_path, "epoll", "poll", "gevent", "--patterns", "echo/64", "--idle", "300",
        *SMALL, "--run-id", "r",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = load(tmp_path / "r" / "cost.json")
    cells = {c.key: c for c in run.cells}
    epoll, poll = cells["epoll echo/64"], cells["poll echo/64"]
    assert epoll.instructions and epoll.syscalls and poll.instructions
    # one epoll_wait, one recv, one send per request. Counted, so exact but for start-up's
    # few: an epoll_wait more or less, a handful of futex calls as threads start (seen:
    # 5 in 300 requests; in bench cost's 5,000, a thousandth)
    assert epoll.syscalls.per_request == pytest.approx(3.0, abs=0.03)
    for name in ("epoll_wait", "recvfrom", "sendto"):
        assert epoll.syscall_names[name].per_request == pytest.approx(1.0, abs=0.01)
    assert 5_000 < epoll.instructions.per_request < 100_000
    # poll copies and scans every watched descriptor each wake-up; epoll does not
    beside = cells["poll echo/64/i300"].instructions
    assert beside is not None
    assert beside.per_request - poll.instructions.per_request > 300  # > 1 a descriptor
    epoll_beside = cells["epoll echo/64/i300"].instructions
    assert epoll_beside is not None
    assert epoll_beside.per_request < epoll.instructions.per_request * 1.05
    assert cells["gevent echo/64"].refused and "timing" in cells["gevent echo/64"].refused
    page = (tmp_path / "r" / "cost.md").read_text()
    assert "refused: its instructions per request depend on timing" in page
    assert "extra per idle connection, per request" in page
    assert (tmp_path / "r" / "charts" / "cost-echo-64-i300.png").stat().st_size > 10_000


@pytest.mark.real
@needs_counters
def test_an_injected_loop_costs_in_proportion_to_its_length(tmp_path: Path) -> None:
    """--inject-work is work, not time: each 20 iterations more cost the same, whatever
    the machine's speed (the wrapper that runs the loop costs once per request, so the
    steps are compared, not the first to none)."""
    per_request = {}
    for n in (20, 40, 60):
        done = bench_cost(
            tmp_path, "epoll", "--patterns", "echo/64", "--idle", "0", "--no-syscalls",
            "--inject-work", str(n), "--requests", "100", "1100", "--tries", "2",
            "--run-id", f"w{n}",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        cell = load(tmp_path / f"w{n}" / "cost.json").cells[0]
        assert cell.instructions is not None
        per_request[n] = cell.instructions.per_request
    first, second = per_request[40] - per_request[20], per_request[60] - per_request[40]
    assert first > 20 * 10  # an iteration costs tens of instructions
    # two tries at each count, 1,000 requests apart: a launch that lost about a request's
    # work to its end signal (seen once under load) moves a step by at most 2%
    assert second == pytest.approx(first, rel=0.03)


@pytest.mark.real
@needs_counters
def test_functions_name_the_interpreter_loop(tmp_path: Path) -> None:
    done = bench_cost(
        tmp_path, "epoll", "--patterns", "echo/64", "--idle", "0", "--no-syscalls",
        "--functions", *SMALL, "--run-id", "f",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "f" / "functions.md").read_text()
    assert "## epoll: echo, 64 B frames" in page
    assert "`_PyEval_EvalFrameDefault`" in page

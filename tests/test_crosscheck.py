"""`make crosscheck`: wrk's output parsed, the bracketed ratios, bad input, Ctrl-C, and
one short real round of wrk and the load generator against the epoll server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.studies.crosscheck import table
from bench.studies.crosscheck_rules import (
    below,
    bracketed_ratios,
    ratio_text,
    server_bound,
    summarize,
    verdicts,
)
from bench.studies.crosscheck_tools import parse_wrk
from servers import REFERENCES

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:35617/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    97.71us  100.55us   2.38ms   97.19%
    Req/Sec   101.77k     8.82k  113.41k    54.55%
  Latency Distribution
     50%   82.00us
     75%  105.00us
     90%  132.00us
     99%    2.67ms
  110831 requests in 1.10s, 8.35MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec: 100783.67
Transfer/sec:      7.59MB
"""


def run(rps: float, **extra: float) -> dict:
    return {
        "rps": rps,
        "p50": 100.0,
        "p99": 300.0,
        "errors": 0,
        "server_cpu": 99.0,
        "cpu": None,
        **extra,
    }


def test_parse_wrk_reads_rate_percentiles_in_us_and_every_error() -> None:
    got = parse_wrk(WRK_OUTPUT)
    assert got == {"rps": 100783.67, "p50": 82.0, "p99": 2670.0, "errors": 3 + 1 + 2 + 5}


def test_parse_wrk_without_a_rate_says_what_it_saw() -> None:
    with pytest.raises(ValueError, match="no Requests/sec.*unable to connect"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_each_of_our_runs_is_compared_with_the_wrk_runs_either_side() -> None:
    wrk = [run(100), run(140), run(60)]
    ours = [run(120), run(110)]
    assert bracketed_ratios(wrk, ours) == [120 / 120, 110 / 100]
    assert bracketed_ratios(wrk[:2], ours) == [120 / 120]  # interrupted before wrk[2]


def test_summary_takes_the_median_ratio_its_range_and_best_against_best() -> None:
    wrk = [run(100), run(100), run(200), run(100)]
    ours = [run(90), run(150), run(105)]
    row = summarize(wrk, ours)
    assert row["ratio"] == pytest.approx(0.9)  # of 90/100, 150/150 and 105/150
    assert (row["ratio_min"], row["ratio_max"]) == (pytest.approx(0.7), pytest.approx(1.0))
    assert row["best_ratio"] == pytest.approx(150 / 200)
    assert row["wrk_rps"] == 100 and row["ours_rps"] == 105
    assert below([(10, row)], 0.9) == [] and below([(10, row)], 0.91) == [10]
    assert server_bound(row)  # 99% under both
    assert not server_bound(summarize([run(100, server_cpu=80.0)] * 2, [run(100)]))


def test_a_client_bound_crosscheck_passes_only_when_every_short_run_says_so() -> None:
    """Against a server faster than the client core, ours/wrk measures the load
    generator: a run short of wrk must call itself client-bound, unless the server's
    core was saturated in that run (then the server set its pace)."""
    wrk = [run(100, server_cpu=60.0)] * 3
    honest = summarize(
        wrk, [run(50, bound=True, server_cpu=60.0), run(120, bound=False)], min_ratio=1.0
    )
    assert (honest["short"], honest["unflagged"]) == (1, 0)
    rule, passed, why = verdicts([(10, honest)], 1.0)[0][1:]
    assert (rule, passed) == ("client-bound", True)
    assert why.startswith("1 run(s) of ours below 1.0 of wrk, 0 of them")
    hiding = summarize(
        wrk, [run(50, bound=False, server_cpu=60.0), run(50, bound=True)], min_ratio=1.0
    )
    assert hiding["unflagged"] == 1
    assert verdicts([(10, hiding)], 1.0)[0][:3] == (10, "client-bound", False)
    server_paced = summarize(wrk, [run(50, bound=False, server_cpu=99.0)] * 2, min_ratio=1.0)
    assert server_paced["unflagged"] == 0
    # a saturated server keeps the ratio rule
    saturated = summarize([run(100)] * 2, [run(90, bound=True)], min_ratio=0.95)
    assert verdicts([(10, saturated)], 0.95)[0][:3] == (10, "server-bound", False)


def test_the_table_has_a_line_per_connection_count_under_its_head() -> None:
    row = summarize([run(100), run(100)], [run(90, client_cpu=50.0)])
    head, rule, line = table([(10, row)]).splitlines()
    assert rule == "-" * len(head) and head.split()[:4] == ["conns", "wrk", "rps", "ours"]
    assert line.split() == [
        "10", "100", "90", "0.90", "0.90-0.90", "0.90", "100us", "300us", "100us", "300us",
        "99%", "/", "99%", "-", "/", "50%", "0", "0/0",
    ]  # fmt: skip
    assert ratio_text(None) == "-" and ratio_text(1.0) == "1.00"


def crosscheck(
    *args: str, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.studies.crosscheck", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.parametrize(
    "args", [["--rounds", "0"], ["--connections", "ten"], ["--min-ratio", "x"], ["--bogus"]]
)
def test_bad_arguments_are_one_line_and_exit_2(args: list[str]) -> None:
    done = crosscheck(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "error:" in done.stderr and not done.stdout


def test_missing_wrk_is_said_and_exits_2(tmp_path: Path) -> None:
    done = crosscheck(env={**os.environ, "PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "wrk is not installed" in done.stderr


@pytest.mark.real
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing (apt-get install wrk)")
def test_one_round_of_wrk_and_ours_against_the_epoll_server(tmp_path: Path) -> None:
    out = tmp_path / "cc.json"
    done = crosscheck(
        "--connections",
        "10",
        "--rounds",
        "1",
        "--duration",
        "1",
        "--min-ratio",
        "0",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "ours/wrk at least 0.0 at every connection count" in done.stdout
    doc = json.loads(out.read_text())
    runs = doc["runs"]["10"]
    assert len(runs["wrk"]) == 2 and len(runs["ours"]) == 1  # w o w
    for each in runs["wrk"] + runs["ours"]:
        assert each["rps"] > 1000 and each["errors"] == 0
        assert 0 < each["server_cpu"] <= 100
    row = doc["summary"]["10"]
    expected = runs["ours"][0]["rps"] / ((runs["wrk"][0]["rps"] + runs["wrk"][1]["rps"]) / 2)
    assert row["ratio"] == pytest.approx(expected)
    table_line = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["10"])
    assert f"{row['ratio']:.2f}" in table_line


@pytest.mark.real
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing (apt-get install wrk)")
def test_ctrl_c_exits_130_and_leaves_no_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.studies.crosscheck", "--out", str(tmp_path / "cc.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A non-interactive shell starts background jobs with SIGINT ignored, and Python
        # keeps an inherited SIG_IGN: run under such a shell, the tool rightly went on
        # through Ctrl-C. This test is about the tool's own handling, so restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None and "server" in proc.stdout.readline()  # CPU plan
        time.sleep(1.5)  # wrk's first run is under way
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the server and wrk
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "crosscheck: interrupted" in err
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


@pytest.mark.real
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is missing (apt-get install wrk)")
@pytest.mark.skipif(REFERENCES["nginx"].unavailable_reason() is not None, reason="no nginx")
def test_one_round_against_nginx_names_the_rule_it_applied(tmp_path: Path) -> None:
    out = tmp_path / "cc.json"
    done = crosscheck(
        "--server", "nginx", "--connections", "10", "--rounds", "1", "--duration", "1",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert "server (nginx, http)" in done.stdout
    verdict = next(line for line in done.stdout.splitlines() if line.startswith("10 connections:"))
    assert ("server-bound" in verdict) or ("client-bound" in verdict)
    doc = json.loads(out.read_text())
    assert doc["server"] == "nginx"
    for each in doc["runs"]["10"]["wrk"] + doc["runs"]["10"]["ours"]:
        assert each["rps"] > 1000 and each["errors"] == 0
        assert 0 < each["client_cpu"] <= 100

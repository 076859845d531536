"""`make crosscheck`: does the native load generator drive a server as hard as wrk?

One HTTP server (`--server`, default the epoll model; `--server nginx` for the native
reference) pinned to the first CPU; wrk and `clients.loadgen` take turns on
the other CPUs (a wrk thread or loadgen worker per CPU, at most one per connection)
against that same server. At each connection count the runs alternate, wrk first and
last (w o w o ... w), and each of our runs is compared with the mean of the two wrk
runs on either side of it; the verdict is the median of those ratios. On a shared
virtual machine throughput jumps by a third from one few-second stretch to the next;
bracketing each run between two of the other tool cancels some of that, and many
rounds the rest, where comparing medians taken over the whole session does not.

The table also shows how busy the server's core was while each tool measured (from
/proc/stat, softirq included): near 100% under both means the server, not the load
generator, set the pace, so a ratio near 1.0 is the expected result, and the 1.0
target says that our generator loads the server at least as well as wrk does.

A server faster than one client core (nginx on a 2-core machine) turns it around: the
client's core is the limit, so ours/wrk measures the load generator itself, and a
Python client may fall short of wrk's C. The pass rule there is honesty: every run of
ours that falls short of wrk by more than --min-ratio must call itself client-bound (its
row would be flagged in a bench run) unless the server's core was saturated in that run,
because a figure that passes a client ceiling off as the server's is the failure that
matters. Which rule applied is
printed per connection count: "server-bound" when the server's core was at least 95%
busy under both tools, else "client-bound".
Raw runs go to results/crosscheck/<time>.json.
Exit 0 when every median ratio reaches --min-ratio, 1 otherwise, 2 on bad arguments or
when wrk is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run.sampler import CoreSampler
from bench.run.server_process import ServerProcess
from bench.studies.crosscheck_rules import (
    SATURATED,
    below,
    ratio_text,
    server_bound,
    summarize,
    verdicts,
)
from bench.studies.crosscheck_tools import Children, Tool, run_ours, run_wrk
from common.cli import ArgumentParser, positive_int, suggest, usage_error
from servers import SERVERS

OUT_DIR = Path("results/crosscheck")
Runs = dict[int, dict[str, list[dict[str, Any]]]]  # connections -> tool -> its runs
Measure = Callable[[str, Tool, int], dict[str, Any]]  # (tool's name, tool, connections)


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}ms"
    return f"{value:.0f}us"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def table(rows: Sequence[tuple[int, dict[str, Any]]]) -> str:
    """The summary rows as the console table, one line per connection count."""
    head = (
        f"{'conns':>6} {'wrk rps':>9} {'ours rps':>9} {'ours/wrk':>8} {'(min-max)':>11} "
        f"{'best':>5} {'wrk p50':>8} {'wrk p99':>8} {'ours p50':>8} {'ours p99':>8} "
        f"{'server core w/o':>16} {'client cores w/o':>16} {'bound':>5} {'errors w/o':>10}"
    )
    lines = [head, "-" * len(head)]
    for connections, r in rows:
        ratio = ratio_text(r["ratio"])
        spread = "-" if r["ratio"] is None else f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        lines.append(
            f"{connections:>6} {r['wrk_rps']:>9,.0f} {r['ours_rps']:>9,.0f} {ratio:>8} "
            f"{spread:>11} {ratio_text(r['best_ratio']):>5} {_us(r['wrk_p50']):>8} "
            f"{_us(r['wrk_p99']):>8} {_us(r['ours_p50']):>8} {_us(r['ours_p99']):>8} "
            f"{_pct(r['wrk_server_cpu']) + ' / ' + _pct(r['ours_server_cpu']):>16} "
            f"{_pct(r['wrk_client_cpu']) + ' / ' + _pct(r['ours_client_cpu']):>16} "
            f"{r['ours_bound']:>5} {r['wrk_errors']:>5}/{r['ours_errors']:<4}"
        )
    return "\n".join(lines)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m bench.studies.crosscheck", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--server",
        default="epoll",
        help="the HTTP server to load: a model or reference server from "
        "`python -m servers list` that answers GET / (default epoll; nginx: the native one)",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        nargs="+",
        default=[10, 100, 1000],
        help="connection counts, each measured by both tools",
    )
    parser.add_argument(
        "--duration",
        type=positive_int,
        default=2,
        help="seconds each tool measures per round (default 2)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=25,
        help="runs of ours per connection count, each between two runs of wrk (default 25)",
    )
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=1.0,
        help="lowest acceptable median ours/wrk ratio (default 1.0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the raw runs (default results/crosscheck/<time>.json)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("wrk") is None:
        sys.stderr.write("crosscheck: wrk is not installed; apt-get install wrk\n")
        return 2
    problem = _server_problem(args.server)
    if problem:
        return usage_error(
            "python -m bench.studies.crosscheck", f"--server {args.server}: {problem}"
        )
    out = args.out or OUT_DIR / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = _plan_cpus(args.server, cpus)
    runs, code = _session(args, cpus, server_cpus, client_cpus)
    rows = [
        (c, summarize(r["wrk"], r["ours"], args.min_ratio)) for c, r in runs.items() if r["ours"]
    ]
    if rows:
        _save(out, args, rows, runs)
    if code:
        return code
    return _conclude(args, rows)


def _server_problem(name: str) -> str | None:
    """Why `--server NAME` cannot be loaded over HTTP here; None when it can."""
    known = SERVERS.get(name)
    return (
        f"no server {name!r}; choose from {', '.join(SERVERS)}" + suggest(name, SERVERS)
        if known is None
        else known.unavailable_reason() or known.cannot_serve("http", 0)
    )


def _plan_cpus(server: str, cpus: list[int]) -> tuple[list[int] | None, set[int] | None]:
    """(server's CPUs, clients' CPUs): the first CPU for the server, the others for the
    tools; nothing pinned on one CPU. Says the plan."""
    if len(cpus) >= 2:
        print(
            f"server ({server}, http) on CPU {cpus[0]}; wrk and loadgen on CPUs "
            f"{','.join(map(str, cpus[1:]))}, a thread or worker per CPU",
            flush=True,
        )
        return [cpus[0]], set(cpus[1:])
    print(
        "only one CPU: nothing pinned, server and load generator share it; the ratio says little",
        flush=True,
    )
    return None, None


def _session(
    args: argparse.Namespace,
    cpus: list[int],
    server_cpus: list[int] | None,
    client_cpus: set[int] | None,
) -> tuple[Runs, int]:
    """Every run of both tools against one server, and the exit code so far (0, 130 on
    Ctrl-C or SIGTERM, 1 on a failed run); the server and the tools are stopped after."""
    signal.signal(signal.SIGTERM, _interrupted)
    children = Children()
    server = ServerProcess(model=args.server, protocol="http", cpus=server_cpus)
    runs: Runs = {c: {"wrk": [], "ours": []} for c in args.connections}
    code = 0
    sampler: CoreSampler | None = None
    client_sampler: CoreSampler | None = None
    affinity = os.sched_getaffinity(0)
    try:
        server.start()
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)  # sample from off the server's CPU
        sampler = CoreSampler(server_cpus or cpus).start()
        client_sampler = CoreSampler(sorted(client_cpus or cpus)).start()

        def measure(name: str, tool: Tool, connections: int) -> dict[str, Any]:
            run = tool(children, server.port, connections, args.duration, client_cpus)
            run["server_cpu"] = sampler.busy_percent(*run["window"])
            run["client_cpu"] = client_sampler.busy_percent(*run["window"])
            runs[connections][name].append(run)
            return run

        _alternate(args, measure)
    except KeyboardInterrupt:
        sys.stderr.write("crosscheck: interrupted\n")
        code = 130
    except (RuntimeError, ValueError, OSError) as exc:
        sys.stderr.write(f"crosscheck: {exc}\n")
        code = 1
    finally:
        children.kill_all()
        server.stop()
        for each in (sampler, client_sampler):
            if each is not None:
                each.stop()
        os.sched_setaffinity(0, affinity)
    return runs, code


def _alternate(args: argparse.Namespace, measure: Measure) -> None:
    """At each connection count, wrk and ours by turns (w o w o ... w), a line a round."""
    for connections in args.connections:
        before = measure("wrk", run_wrk, connections)
        for round_ in range(1, args.rounds + 1):
            ours = measure("ours", run_ours, connections)
            after = measure("wrk", run_wrk, connections)
            around = (before["rps"] + after["rps"]) / 2
            print(
                f"  {connections} connections, round {round_}/{args.rounds}: "
                f"ours {ours['rps']:,.0f} req/s, wrk {before['rps']:,.0f} before and "
                f"{after['rps']:,.0f} after ({ours['rps'] / max(around, 1):.2f})",
                flush=True,
            )
            before = after


def _conclude(args: argparse.Namespace, rows: Sequence[tuple[int, dict[str, Any]]]) -> int:
    """The table and the verdict per connection count; 1 when one failed, else 0."""
    print(
        f"{args.rounds} rounds of {args.duration} s per tool. Medians; ours/wrk is the "
        f"median of the bracketed ratios, then their range, then best run against best run:"
    )
    print(table(rows))
    failed = False
    for connections, rule, passed, why in verdicts(rows, args.min_ratio):
        failed |= not passed
        print(f"{connections} connections: {rule}: {'pass' if passed else 'FAIL'} ({why})")
    low = below(rows, args.min_ratio)
    saturated = [c for c, row in rows if c in low and server_bound(row)]
    if saturated:
        print(
            f"at {', '.join(map(str, saturated))}: the server's core was at least "
            f"{SATURATED:.0f}% busy under both tools, so both drove the server as hard "
            "as it goes and the ratio sits near 1.0, within the range of the rounds "
            "shown; more --rounds narrow it"
        )
    if not low:
        print(f"ours/wrk at least {args.min_ratio} at every connection count")
    return 1 if failed else 0


def _save(
    out: Path,
    args: argparse.Namespace,
    rows: Sequence[tuple[int, dict[str, Any]]],
    runs: Runs,
) -> None:
    doc = {
        "schema": 1,
        "server": args.server,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "summary": {str(c): row for c, row in rows},
        "runs": {str(c): r for c, r in runs.items() if r["ours"]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"raw runs: {out}")


if __name__ == "__main__":
    sys.exit(main())

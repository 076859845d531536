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
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run.sampler import CoreSampler
from bench.run.server_process import ServerProcess
from clients.result import LoadResult
from common.cli import ArgumentParser, positive_int, suggest, usage_error
from common.process import die_with_parent
from servers import SERVERS

_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}
OUT_DIR = Path("results/crosscheck")


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, p50 and p99 (us) and the error count from `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output: {text.strip()[-300:]!r}")
    result: dict[str, Any] = {"rps": float(rps.group(1)), "p50": None, "p99": None, "errors": 0}
    for name in ("50", "99"):
        found = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if found:
            result[f"p{name}"] = float(found.group(1)) * _UNITS_US[found.group(2)]
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        text,
    )
    if socket_errors:
        result["errors"] += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        result["errors"] += int(non_2xx.group(1))
    return result


class Children:
    """The tool processes started here; all of them are killed on the way out."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def run(self, cmd: Sequence[str], cpus: set[int] | None, timeout: float) -> str:
        def prepare() -> None:
            die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=prepare,
        )
        self.running.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{cmd[0]} ran past {timeout:.0f} s") from None
        finally:
            self.kill(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.strip()[-300:]}")
        return out

    def kill(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def kill_all(self) -> None:
        for proc in list(self.running):
            self.kill(proc)


Tool = Callable[[Children, int, int, int, "set[int] | None"], dict[str, Any]]


def _threads(cpus: set[int] | None, connections: int) -> int:
    """wrk threads, or loadgen workers: one per client CPU, no more than connections."""
    return max(1, min(len(cpus or ()), connections))


def run_wrk(
    children: Children, port: int, connections: int, duration: int, cpus: set[int] | None
) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{_threads(cpus, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        f"http://127.0.0.1:{port}/",
    ]
    start = time.time()
    result = parse_wrk(children.run(cmd, cpus, timeout=duration + 30))
    # wrk counts from its start, connects included: its whole run is its window.
    return {**result, "window": (start, time.time()), "cpu": None}


def run_ours(
    children: Children, port: int, connections: int, duration: int, cpus: set[int] | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "clients.loadgen",
        "--target",
        f"127.0.0.1:{port}",
        "--protocol",
        "http",
        "--payload",
        "0",
        "--connections",
        str(connections),
        "--processes",
        str(_threads(cpus, connections)),
        "--duration",
        str(duration),
        "--warmup",
        "0.5",
        "--quiet",
    ]
    if cpus:
        cmd += ["--cpus", ",".join(map(str, sorted(cpus)))]
    result = LoadResult.from_json(children.run(cmd, None, timeout=duration + 60))
    assert result.window is not None  # the native load generator always gives it
    return {
        "rps": result.throughput_rps,
        "p50": result.latency.p50,
        "p99": result.latency.p99,
        "errors": result.error_count,
        "window": (result.window.start_unix, result.window.end_unix),
        "cpu": max((w.cpu or 0.0 for w in result.client.workers), default=0.0),
        "bound": result.client.bound,
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def bracketed_ratios(wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]]) -> list[float]:
    """ours[i] against the mean of wrk[i] and wrk[i + 1], the runs either side of it
    (a last run of ours without a wrk run after it, when interrupted, is left out)."""
    return [ratio for ratio, _run in bracketed(wrk, ours)]


def bracketed(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]]
) -> list[tuple[float, dict[str, Any]]]:
    """(ratio, our run) for each run of ours between two of wrk (bracketed_ratios)."""
    pairs = []
    for i, run in enumerate(ours[: len(wrk) - 1]):
        around = (wrk[i]["rps"] + wrk[i + 1]["rps"]) / 2
        if around > 0:
            pairs.append((run["rps"] / around, run))
    return pairs


def unflagged_short(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]], min_ratio: float
) -> int:
    """Runs of ours below min_ratio of wrk that neither called themselves client-bound
    nor had the server's core saturated (then the server set that run's pace)."""
    return sum(
        1
        for ratio, run in bracketed(wrk, ours)
        if ratio < min_ratio and not run.get("bound") and (run.get("server_cpu") or 0.0) < SATURATED
    )


def summarize(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]], min_ratio: float = 1.0
) -> dict[str, Any]:
    """One table row from the alternating runs at one connection count."""
    ratios = bracketed_ratios(wrk, ours)
    row = {
        "short": sum(1 for r in ratios if r < min_ratio),
        "unflagged": unflagged_short(wrk, ours, min_ratio),
        "ratio": _median(ratios),
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "rounds": len(ratios),
        # Interference only ever slows a run down, so each tool's best run is the
        # closest to an undisturbed one (timeit's reasoning): a second opinion.
        "best_ratio": (
            max(r["rps"] for r in ours) / max(r["rps"] for r in wrk)
            if ours and wrk and max(r["rps"] for r in wrk) > 0
            else None
        ),
    }
    row["ours_bound"] = sum(1 for run in ours if run.get("bound"))
    for runs, name in ((wrk, "wrk"), (ours, "ours")):
        for key in ("rps", "p50", "p99", "server_cpu", "client_cpu", "cpu"):
            row[f"{name}_{key}"] = _median([run.get(key) for run in runs])
        row[f"{name}_errors"] = sum(run["errors"] for run in runs)
    return row


SATURATED = 95.0  # % busy: the server's core, not the load generator, set the pace


def server_bound(row: dict[str, Any]) -> bool:
    """Whether the server's core was saturated under both tools (medians)."""
    return all(
        row[f"{name}_server_cpu"] is not None and row[f"{name}_server_cpu"] >= SATURATED
        for name in ("wrk", "ours")
    )


def below(rows: Sequence[tuple[int, dict[str, Any]]], min_ratio: float) -> list[int]:
    """The connection counts whose median ratio misses min_ratio (or has none)."""
    return [c for c, row in rows if row["ratio"] is None or row["ratio"] < min_ratio]


def verdicts(
    rows: Sequence[tuple[int, dict[str, Any]]], min_ratio: float
) -> list[tuple[int, str, bool, str]]:
    """(connections, rule, passed, why) per row. Server-bound: the median ratio reaches
    min_ratio. Client-bound (the server outruns one client core): every run of ours
    short of min_ratio flagged itself client-bound or had the server's core saturated
    (`unflagged` counts those that did neither)."""
    out = []
    for connections, row in rows:
        if server_bound(row):
            passed = row["ratio"] is not None and row["ratio"] >= min_ratio
            why = f"median ours/wrk {_ratio(row['ratio'])} against {min_ratio}"
            out.append((connections, "server-bound", passed, why))
        else:
            short = row["short"]
            why = (
                f"{short} run(s) of ours below {min_ratio} of wrk, {row['unflagged']} of "
                f"them neither flagged client-bound nor with the server's core saturated"
            )
            out.append((connections, "client-bound", row["unflagged"] == 0, why))
    return out


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}ms"
    return f"{value:.0f}us"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def table(rows: Sequence[tuple[int, dict[str, Any]]]) -> str:
    head = (
        f"{'conns':>6} {'wrk rps':>9} {'ours rps':>9} {'ours/wrk':>8} {'(min-max)':>11} "
        f"{'best':>5} {'wrk p50':>8} {'wrk p99':>8} {'ours p50':>8} {'ours p99':>8} "
        f"{'server core w/o':>16} {'client cores w/o':>16} {'bound':>5} {'errors w/o':>10}"
    )
    lines = [head, "-" * len(head)]
    for connections, r in rows:
        ratio = _ratio(r["ratio"])
        spread = "-" if r["ratio"] is None else f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        lines.append(
            f"{connections:>6} {r['wrk_rps']:>9,.0f} {r['ours_rps']:>9,.0f} {ratio:>8} "
            f"{spread:>11} {_ratio(r['best_ratio']):>5} {_us(r['wrk_p50']):>8} "
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
    known = SERVERS.get(args.server)
    problem = (
        f"no server {args.server!r}; choose from {', '.join(SERVERS)}"
        + suggest(args.server, SERVERS)
        if known is None
        else known.unavailable_reason() or known.cannot_serve("http", 0)
    )
    if problem:
        return usage_error(
            "python -m bench.studies.crosscheck", f"--server {args.server}: {problem}"
        )
    out = args.out or OUT_DIR / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        server_cpus, client_cpus = [cpus[0]], set(cpus[1:])
        print(
            f"server ({args.server}, http) on CPU {cpus[0]}; wrk and loadgen on CPUs "
            f"{','.join(map(str, cpus[1:]))}, a thread or worker per CPU",
            flush=True,
        )
    else:
        server_cpus, client_cpus = None, None
        print(
            "only one CPU: nothing pinned, server and load generator share it; "
            "the ratio says little",
            flush=True,
        )
    signal.signal(signal.SIGTERM, _interrupted)
    children = Children()
    server = ServerProcess(model=args.server, protocol="http", cpus=server_cpus)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {
        c: {"wrk": [], "ours": []} for c in args.connections
    }
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
    rows = [
        (c, summarize(r["wrk"], r["ours"], args.min_ratio)) for c, r in runs.items() if r["ours"]
    ]
    if rows:
        _save(out, args, rows, runs)
    if code:
        return code
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
    runs: dict[int, dict[str, list[dict[str, Any]]]],
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

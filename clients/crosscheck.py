"""`make crosscheck`: is the native load generator at least as fast as wrk?

One epoll HTTP server pinned to the first CPU; wrk (`-t1`) and `clients.loadgen`
(one worker) take turns on the second CPU, at each connection count, against the same
server instance, for several rounds (the order alternates, so neither tool always runs
on a warmer server); the table shows the median of the rounds. The Python server on one
core is the bottleneck, so a load generator that keeps up shows about the server's
capacity: ours/wrk near or above 1.0. On a shared virtual machine single runs vary by
10-20%, hence the rounds and a pass mark (--min-ratio, 0.9) below the 1.0 target.
Exit 0 when every ratio reaches --min-ratio, 1 otherwise, 2 when wrk is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence

from servers.args import ArgumentParser, positive_int
from servers.launch import ServerProcess, _die_with_parent

_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}


def parse_wrk(text: str) -> dict:
    """Requests/sec, p50 and p99 (us) and the error count from `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output: {text.strip()[-300:]!r}")
    result = {"rps": float(rps.group(1)), "p50": None, "p99": None, "errors": 0}
    for name in ("50", "99"):
        found = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if found:
            result[f"p{name}"] = float(found.group(1)) * _UNITS_US[found.group(2)]
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    if socket_errors:
        result["errors"] += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        result["errors"] += int(non_2xx.group(1))
    return result


class Children:
    """The tool processes started here; all of them are killed on the way out."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def run(self, cmd: Sequence[str], cpus: set[int] | None, timeout: float) -> str:
        def prepare() -> None:
            _die_with_parent()
            if cpus:
                os.sched_setaffinity(0, cpus)

        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=prepare)
        self.running.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            self.kill(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.strip()[-300:]}")
        return out

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def kill_all(self) -> None:
        for proc in list(self.running):
            self.kill(proc)


def run_wrk(children: Children, port: int, connections: int, duration: int,
            cpus: set[int] | None) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}/"]
    return parse_wrk(children.run(cmd, cpus, timeout=duration + 30))


def run_ours(children: Children, port: int, connections: int, duration: int,
             cpus: set[int] | None) -> dict:
    cmd = [sys.executable, "-m", "clients.loadgen", "--target", f"127.0.0.1:{port}",
           "--protocol", "http", "--payload", "0", "--connections", str(connections),
           "--processes", "1", "--duration", str(duration), "--warmup", "1", "--quiet"]
    if cpus:
        cmd += ["--cpus", ",".join(map(str, sorted(cpus)))]
    result = json.loads(children.run(cmd, None, timeout=duration + 60))
    return {"rps": result["throughput_rps"], "p50": result["latency_us"]["p50"],
            "p99": result["latency_us"]["p99"], "errors": sum(result["errors"].values()),
            "cpu": max(result["client"]["cpu_percent"], default=0.0)}


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}ms"
    return f"{value:.0f}us"


def median_run(runs: Sequence[dict]) -> dict:
    """Field by field medians of several runs of one tool."""
    merged = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        merged[key] = statistics.median(values) if values else None
    merged["errors"] = sum(r["errors"] for r in runs)
    return merged


def table(rows: Sequence[tuple[int, dict, dict]]) -> str:
    head = (f"{'conns':>6} {'wrk rps':>10} {'ours rps':>10} {'ours/wrk':>8} {'wrk p50':>9} "
            f"{'wrk p99':>9} {'ours p50':>9} {'ours p99':>9} {'errors w/o':>10} {'our cpu':>7}")
    lines = [head, "-" * len(head)]
    for connections, wrk, ours in rows:
        ratio = ours["rps"] / wrk["rps"] if wrk["rps"] else float("inf")
        lines.append(
            f"{connections:>6} {wrk['rps']:>10,.0f} {ours['rps']:>10,.0f} {ratio:>8.2f} "
            f"{_us(wrk['p50']):>9} {_us(wrk['p99']):>9} {_us(ours['p50']):>9} "
            f"{_us(ours['p99']):>9} {wrk['errors']:>5}/{ours['errors']:<4} "
            f"{ours['cpu']:>6.0f}%")
    return "\n".join(lines)


def _interrupted(signum: int, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m clients.crosscheck", description=__doc__)
    parser.add_argument("--connections", type=positive_int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--duration", type=positive_int, default=3, help="seconds per run")
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="runs of each tool per connection count (default 5)")
    parser.add_argument("--min-ratio", type=float, default=0.9,
                        help="lowest acceptable ours/wrk ratio of medians (default 0.9)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.stderr.write("crosscheck: wrk is not installed; apt-get install wrk\n")
        return 2
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        server_cpus, client_cpus = [cpus[0]], {cpus[1]}
        print(f"server (epoll, http) on CPU {cpus[0]}; wrk -t1 and loadgen (1 worker) "
              f"on CPU {cpus[1]}", flush=True)
    else:
        server_cpus, client_cpus = None, None
        print("only one CPU: nothing pinned, server and load generator share it; "
              "the ratio says little", flush=True)
    signal.signal(signal.SIGTERM, _interrupted)
    children = Children()
    server = ServerProcess(model="epoll", protocol="http", cpus=server_cpus)
    runs: dict[tuple[int, str], list[dict]] = {}
    try:
        server.start()
        turn = 0
        for round_ in range(1, args.rounds + 1):
            for connections in args.connections:
                tools = [("wrk", run_wrk), ("ours", run_ours)]
                if turn % 2:
                    tools.reverse()
                turn += 1
                for name, tool in tools:
                    got = tool(children, server.port, connections, args.duration, client_cpus)
                    runs.setdefault((connections, name), []).append(got)
                wrk, ours = runs[connections, "wrk"][-1], runs[connections, "ours"][-1]
                print(f"  round {round_}, {connections} connections: wrk {wrk['rps']:,.0f} "
                      f"req/s, ours {ours['rps']:,.0f} req/s "
                      f"({ours['rps'] / max(wrk['rps'], 1):.2f})", flush=True)
    except KeyboardInterrupt:
        sys.stderr.write("crosscheck: interrupted\n")
        return 130
    except (RuntimeError, ValueError) as exc:
        sys.stderr.write(f"crosscheck: {exc}\n")
        return 1
    finally:
        children.kill_all()
        server.stop()
    rows = [(c, median_run(runs[c, "wrk"]), median_run(runs[c, "ours"]))
            for c in args.connections]
    print(f"medians of {args.rounds} rounds of {args.duration} s:")
    print(table(rows))
    low = [c for c, wrk, ours in rows if ours["rps"] < args.min_ratio * wrk["rps"]]
    if low:
        print(f"ours/wrk below {args.min_ratio} at {', '.join(map(str, low))} connections")
        return 1
    print(f"ours/wrk at least {args.min_ratio} everywhere")
    return 0


if __name__ == "__main__":
    sys.exit(main())

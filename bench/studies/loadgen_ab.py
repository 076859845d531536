"""The load generator's own cost, version A against version B, side by side.

    python -m bench.studies.loadgen_ab OLD_CHECKOUT NEW_CHECKOUT --pairs 20 [--together]

The figure is client CPU microseconds per request: the worker's CPU time in the window
(one worker, busy-polling off: no --cpus) over the requests it completed. Servers are
epoll echo servers from this checkout, pinned to the first CPU; load generators run on
the second.

Interleaved (the default): one server; each checkout's `clients.loadgen` takes turns
against it in the order A B B A A B B A ..., so that a slow drift of the machine falls
on both alike. On a shared VM one run can differ from the next by 20%, so the interval
stays several percent wide however long the session.

--together: A and B run at the same time, each against a server of its own, and swap
servers every pair. Both share the client CPU and see the same machine at the same
instant, so the host's swings cancel in each pair's ratio.

Prints one line per run, then the median of each side and the median of the paired
ratios B/A with its 95% interval (distribution-free: sign-test order statistics).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from bench.analysis.stats import median_interval
from bench.run.server_process import ServerProcess
from clients.result import LoadResult
from common.cli import ArgumentParser, positive_float, positive_int


def start_loadgen(checkout: Path, port: int, args: list[str], cpu: int) -> subprocess.Popen[str]:
    """`clients.loadgen` of `checkout` (its own code, not this one's) on one CPU."""
    cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "clients.loadgen"]
    cmd += ["--target", f"127.0.0.1:{port}", "--processes", "1", "--quiet", *args]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    return subprocess.Popen(
        cmd, cwd=checkout, env=env, text=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def cpu_us_per_request(proc: subprocess.Popen[str]) -> float:
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}: {err.strip()[-300:]}")
    # a checkout from before the typed result prints schema 1: from_json upgrades it
    result = LoadResult.from_json(out)
    cpu = result.client.workers[0].cpu or 0.0
    return cpu / 100 * result.duration_s * 1e6 / result.requests


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m bench.studies.loadgen_ab", description=__doc__.splitlines()[0]
    )
    parser.add_argument("a", type=Path, help="checkout A (e.g. a git worktree of the base)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument(
        "--pairs", type=positive_int, default=20, help="A/B pairs, the order alternating"
    )
    parser.add_argument(
        "--connections", type=positive_int, default=50, help="each load generator's connections"
    )
    parser.add_argument(
        "--duration", type=positive_float, default=2.0, help="seconds each load generator measures"
    )
    parser.add_argument(
        "--together", action="store_true", help="run A and B at once, a server each"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        parser.error("needs two CPUs: one for the servers, one for the load generators")
    for path in (args.a, args.b):
        if not (path / "clients" / "loadgen.py").is_file():
            parser.error(f"{path} is not a sockbench checkout")
    load = ["--connections", str(args.connections), "--duration", str(args.duration)]
    load += ["--warmup", "0.5"]
    checkout = {"A": args.a, "B": args.b}
    figures: dict[str, list[float]] = {"A": [], "B": []}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(ServerProcess("epoll", "echo", cpus=[cpus[0]]))
            for _ in range(2 if args.together else 1)
        ]
        for i in range(args.pairs):
            order = "AB" if i % 2 == 0 else "BA"
            if args.together:  # both at once; the servers swap sides each pair
                running = {
                    side: stack.enter_context(
                        start_loadgen(checkout[side], server.port, load, cpus[1])
                    )
                    for side, server in zip(order, servers, strict=True)
                }
                done = {side: cpu_us_per_request(proc) for side, proc in running.items()}
            else:
                done = {
                    side: cpu_us_per_request(
                        stack.enter_context(
                            start_loadgen(checkout[side], servers[0].port, load, cpus[1])
                        )
                    )
                    for side in order
                }
            for side in order:
                figures[side].append(done[side])
                print(f"pair {i + 1:>2} {side}: {done[side]:.3f} us/request", flush=True)
    a, b = figures["A"], figures["B"]
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    interval = median_interval(ratios)
    print(
        f"A median {statistics.median(a):.3f} us/request, B median "
        f"{statistics.median(b):.3f}; B/A per pair: median {statistics.median(ratios):.4f}, "
        f"interval of the median {interval.low:.4f}-{interval.high:.4f} "
        f"(covers {interval.coverage:.0%}), "
        f"range {min(ratios):.4f}-{max(ratios):.4f} ({args.pairs} pairs, "
        f"{'together' if args.together else 'interleaved'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m bench.studies.scaling`: prefork on 1, 2, 4 and 8 server CPUs, epoll beside it.

One `bench run` per server-CPU count n, with the server on CPUs 0..n-1 and the load
generator on all the others, into RUN/cpus-<n>; then RUN/scaling.md puts them side by
side: throughput and its speed-up over one CPU, server CPU per request (process view:
a model that scales keeps it flat), and how many repeats were client-bound (with 8
server CPUs on a 16-core machine the 8 client CPUs are often the limit). epoll is the
control: one process, so it must not scale. It needs n + 1 CPUs for the largest n;
what it checks before any work, it refuses with one line and exit code 2.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import cli
from bench.record import Row
from bench.store import RunStore
from common.cli import ArgumentParser, positive_float, positive_int, usage_error

COUNTS = (1, 2, 4, 8)
MODELS = ("prefork", "epoll")
PROG = "python -m bench.studies.scaling"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpus",
        nargs="+",
        type=positive_int,
        default=list(COUNTS),
        metavar="N",
        help="server-CPU counts, one bench run each (the largest needs one CPU more)",
    )
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), metavar="MODEL", help="the models compared"
    )
    parser.add_argument(
        "--connections",
        nargs="+",
        type=positive_int,
        default=[100, 1000],
        metavar="N",
        help="connection counts of each run",
    )
    parser.add_argument(
        "--protocol", choices=["echo", "http"], default="echo", help="the wire protocol"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=3, metavar="N", help="repeats of each cell"
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds measured per cell",
    )
    parser.add_argument(
        "--warmup",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds of load before each measured window",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/reference"),
        metavar="DIR",
        help="the parent of the --run-id folder",
    )
    parser.add_argument(
        "--run-id",
        default="scaling",
        metavar="RUN",
        help="the folder under --out: one run per CPU count, and scaling.md",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    available = sorted(os.sched_getaffinity(0))
    if max(args.cpus) + 1 > len(available):
        return usage_error(
            PROG,
            f"{max(args.cpus)} server CPUs need {max(args.cpus) + 1} CPUs (one at least for "
            f"the load generator); this machine lets us use {len(available)}",
        )
    parent = args.out / args.run_id
    if parent.exists():
        return usage_error(PROG, f"{parent} exists; pick another --run-id")
    for n in sorted(args.cpus):
        sys.stderr.write(f"== {n} server CPU{'s' if n > 1 else ''}\n")
        server, client = available[:n], available[n:]
        code = cli.main(
            ["run", "--models", *args.models, "--connections", *map(str, args.connections),
             "--protocol", args.protocol, "--payloads", "64", "--repeats", str(args.repeats),
             "--duration", f"{args.duration:g}", "--warmup", f"{args.warmup:g}",
             "--server-cpus", ",".join(map(str, server)),
             "--client-cpus", ",".join(map(str, client)),
             "--out", str(parent), "--run-id", f"cpus-{n}"]
        )  # fmt: skip
        if code != 0:
            return code
    summary = parent / "scaling.md"
    summary.write_text(render(parent, sorted(args.cpus)), encoding="utf-8")
    print(summary)
    return 0


def render(parent: Path, counts: Sequence[int]) -> str:
    """scaling.md: one row per model, connections and server-CPU count."""
    table: dict[tuple[str, int], dict[int, tuple[float, float | None, int, int]]] = {}
    for n in counts:
        by_cell: dict[tuple[str, int], list[Row]] = {}
        for row in RunStore.open(parent / f"cpus-{n}").rows():
            if row.load is not None and row.status in ("ok", "client-bound"):
                by_cell.setdefault((row.cell.model, row.cell.connections), []).append(row)
        for key, rows in by_cell.items():
            cpu = [r.server_cpu_us_per_request for r in rows if r.server_cpu_us_per_request]
            table.setdefault(key, {})[n] = (
                statistics.median(r.load.throughput_rps for r in rows if r.load),
                statistics.median(cpu) if cpu else None,
                sum(r.status == "client-bound" for r in rows),
                len(rows),
            )
    lines = [
        "# Scaling across server CPUs",
        "",
        "Medians over repeats. Speed-up: throughput over the same model's with one server "
        "CPU. CPU per request: process view, summed over the server's processes. "
        "Client-bound: repeats where the load generator was the limit (the throughput is "
        "then a lower bound). Each count's full report: `cpus-<n>/`.",
        "",
        "| model | connections | server CPUs | req/s | speed-up | CPU µs/request | client-bound |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, conns), by_n in sorted(table.items()):
        one = by_n.get(min(counts), (0.0, None, 0, 0))[0]
        for n, (rps, cpu_us, bound, total) in sorted(by_n.items()):
            speedup = f"{rps / one:.2f}x" if one else "n/a"
            cpu_text = "n/a" if cpu_us is None else f"{cpu_us:.2f}"
            lines.append(
                f"| {model} | {conns:,} | {n} | {rps:,.0f} | {speedup} | {cpu_text} | "
                f"{bound} of {total} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

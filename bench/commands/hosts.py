"""`python -m bench hosts`: a run whose server and load run on other hosts, network
namespaces on this machine joined by veth pairs (bench.run.hosts; docs/locust.md).

The server runs in one namespace and the native load generator in another, or, with
`--driver locust`, locust's master in one and each of its workers in one of its own
(bench.run.locust_workers), their CPU as locust reports it. The addresses are
10.254.0.0/24, inside those namespaces only, so the command passes `--allow-remote`
itself. The namespaces are removed at exit, on Ctrl-C and after a crash. Where they
cannot be made (not root, no `ip`, refused), one line and exit 2, before any work.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from bench.commands.arguments import add_cpu_arguments, add_out_arguments, add_window_arguments
from bench.record import Row
from bench.run.cpus import CpuPlan, plan_cpus
from bench.run.hosts import Hosts, HostsError, unavailable_reason
from bench.run.locust_workers import Workers
from bench.run.machine import collect_metadata
from bench.run.matrix import DRIVERS, Matrix
from bench.run.session import INTERRUPTED, run_session
from bench.store import RunStore
from common.cli import (
    ArgumentParser,
    positive_int,
    usage_error,
)
from common.invocation import interpreter

NAME = "hosts"
PROG = f"python -m bench {NAME}"


def add_parser(sub: Any) -> None:
    parser: ArgumentParser = sub.add_parser(
        NAME,
        help="run cells with the server and the load on other hosts: network namespaces "
        "joined by veth pairs (root)",
    )
    _cell_arguments(parser)
    _run_arguments(parser)


def _cell_arguments(parser: ArgumentParser) -> None:
    """The load and the matrix: a few of bench run's axes."""
    parser.add_argument(
        "--driver",
        choices=DRIVERS,
        default="loadgen",
        help="loadgen: the native load generator on a host of its own; locust: locust's "
        "master on one host, each worker on one of its own (default loadgen)",
    )
    parser.add_argument(
        "--locust-workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="with --driver locust: the workers, a host each (default 2)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["epoll"],
        metavar="MODEL",
        help="servers to run (default epoll)",
    )
    parser.add_argument(
        "--protocol",
        dest="protocols",
        nargs="+",
        choices=["echo", "http"],
        default=["echo"],
        help="the wire protocol (default echo)",
    )
    parser.add_argument(
        "--connections",
        nargs="+",
        type=positive_int,
        default=[10],
        metavar="N",
        help="concurrent connections, an axis (default 10)",
    )
    parser.add_argument(
        "--payloads",
        nargs="+",
        type=int,
        default=[64],
        metavar="BYTES",
        help="request payload sizes, an axis (default 64)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=1, metavar="N", help="runs of each cell (default 1)"
    )
    add_window_arguments(parser, duration=2.0, warmup=0.5)


def _run_arguments(parser: ArgumentParser) -> None:
    """The CPU plan, and where the run goes."""
    add_cpu_arguments(
        parser,
        server="the server's CPUs (default: the first usable CPU)",
        client="the load's CPUs, locust's master and workers alike (default: the other usable "
        "CPUs)",
    )
    add_out_arguments(parser)
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="skip the report at the end (the summary and results.csv are still written)",
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """0 once every cell ran, 130 on Ctrl-C, 2 where namespaces cannot be made."""
    if reason := unavailable_reason():
        return usage_error(PROG, reason)
    locust = args.driver == "locust"
    workers = [f"worker{n}" for n in range(1, args.locust_workers + 1)] if locust else []
    client = "master" if locust else "client"
    try:
        hosts = Hosts(["server", client, *workers])
    except ValueError as exc:  # more hosts than 10.254.0.0/24 holds
        return usage_error(PROG, exc)
    matrix = Matrix(
        profile=NAME,
        models=tuple(args.models),
        protocols=tuple(args.protocols),
        connections=tuple(args.connections),
        payloads=tuple(args.payloads),
        repeats=args.repeats,
        duration=args.duration,
        warmup=args.warmup,
        driver=args.driver,
        server_host=hosts["server"].address,
        allow_remote=True,  # every address is 10.254.0.x, inside the namespaces only
        locust_workers=len(workers),
        locust_master_host=hosts[client].address,
        description="across network namespaces joined by veth pairs (bench hosts)",
    )
    plan = plan_cpus(args.server_cpus, args.client_cpus)
    # SIGTERM unwinds like Ctrl-C: the cell's processes, the workers, the namespaces
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with hosts:
            store = RunStore.create(args.out, args.run_id, _metadata(argv, matrix, plan, hosts))
            sys.stderr.write(_topology(hosts))
            logs = store.path / "logs"  # the workers' output, as the servers' goes there
            if workers:
                logs.mkdir(exist_ok=True)
            on = [hosts[role] for role in workers]
            with Workers(on, hosts[client], matrix.locust_master_port, plan.client, logs):
                placement = hosts.placement("server", client)
                done = run_session(
                    store, matrix, plan, on_interrupt=_write_csv, placement=placement
                )
    except HostsError as exc:
        return usage_error(PROG, exc)
    finally:
        signal.signal(signal.SIGTERM, previous)
    source = f"{hosts[client].namespace} ({hosts[client].address})"
    return _finish(store, args.no_report, source) if done else INTERRUPTED


def _metadata(argv: list[str], matrix: Matrix, plan: CpuPlan, hosts: Hosts) -> dict[str, Any]:
    command = [interpreter(), "-m", "bench", *argv]
    metadata = collect_metadata(command, matrix.profile, plan.to_dict())
    metadata["matrix"] = matrix.to_dict()
    metadata["hosts"] = hosts.to_dict()
    return metadata


def _topology(hosts: Hosts) -> str:
    what = {"server": "the server", "client": "the load generator", "master": "locust's master"}
    lines = [
        f"  {host.namespace:<20} {host.address:<12} {what.get(role, 'a locust worker')}\n"
        for role, host in hosts.hosts.items()
    ]
    return (
        f"hosts: network namespaces joined by veth pairs through {hosts.switch} "
        f"(removed at exit; one kernel, this machine's CPUs):\n{''.join(lines)}"
    )


def _where(row: Row, source: str) -> str:
    """Where a row's load came from and went, and for locust which workers did it at
    what CPU."""
    load = row.load
    if load is None:
        return f"{row.cell.key} r{row.repeat}: {row.status}: {row.reason}"
    line = f"{row.cell.key} r{row.repeat}: from {source} to {load.params.target}"
    workers = [w for w in load.client.workers if w.name is not None]
    if workers:
        shares = ", ".join(
            f"{w.name} {'?' if w.cpu is None else f'{w.cpu:.0f}%'} CPU" for w in workers
        )
        line += f", locust workers (CPU as locust reported it): {shares}"
    return line


def _finish(store: RunStore, no_report: bool, source: str) -> int:
    from bench.report.summary import terminal_summary  # pandas: only once the cells are done

    rows = store.rows()
    print(terminal_summary(rows))
    for row in rows:
        print(_where(row, source))
    if no_report:
        print(f"rows: {_write_csv(store.path)}")
        return 0
    from bench.report.build import build_report_and_csv  # pandas, matplotlib: only here

    print(f"report: {build_report_and_csv([store.path])}")
    return 0


def _write_csv(run_dir: Path) -> Path:
    from bench.report.results_csv import write_results_csv

    return write_results_csv(run_dir)

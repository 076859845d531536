"""sockbench's native load generator: one JSON document per run.

    python -m clients.loadgen --target 127.0.0.1:PORT --protocol http --connections 100

This module is the command line; clients.engine does the work (`config` checks and
plans, `drive` runs the workers, `merge` merges their results). The parent splits the
connections over worker processes (clients.engine.worker), each one epoll loop
(clients.engine.loops) pinned to its CPUs when --cpus is given. Every worker connects
first (paced), then all warm up from the same instant, then measure the same window;
the parent merges their HdrHistograms, counters and per-connection counts into
one result. A run that met errors is still a result (exit 0): failures are data. A run
in which no request was answered and verified exits 1, its result still printed, with
a diagnosis (clients.diagnosis: the likely cause, such as a server of the other
protocol) in the result and on stderr; exit 1 with nothing on stdout is a failure of
the load generator itself; exit 2 a usage error. Requests, bytes and latencies count
only the window; `errors` the window, `errors_before` the connect phase and warm-up.

Closed loop by default; --rate R is an open loop at R requests/s in total, timed from
each request's intended send time. --mode per-request opens a connection per request.
Only loopback targets unless --allow-remote, checked before any lookup or connect.
An http reply is verified by its exact bytes, or, where they differ (another server:
nginx's Date header), by parsing it: --verify, --expect-status, --expect-body.
Why it is built this way (source addresses, busy-polling, what counts): docs/loadgen.md.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from argparse import RawDescriptionHelpFormatter
from dataclasses import fields

from clients.engine.config import MODES, SOURCES, SPIN_US, VERIFY, ConfigError, LoadConfig, validate
from clients.engine.drive import LoadgenError, run
from clients.engine.loops import INTERVAL_NS
from clients.options import ARRIVALS, add_load_options
from clients.result import FIELD_NOTES, NO_REPLY, SCHEMA, LoadResult
from common.cli import ArgumentParser, DefaultsHelpFormatter, positive_int

# The help of the options shared with the locust driver (clients.options: their names,
# types and defaults), as this command words them.
SHARED_HELP = {
    "target": "HOST:PORT of the server",
    "protocol": "the protocol the server speaks (default echo): echo frames, or HTTP/1.1 "
    "GET / (payload 0) or POST /echo",
    "processes": "worker processes (default: one per CPU, at most connections)",
    "duration": "seconds measured (default 10)",
    "warmup": "seconds of load before the window, not counted (default 1)",
    "payload": "bytes per request: echo payload, or the HTTP POST body "
    "(0 = GET /); default 64 for echo, 0 for http",
    "rate": "open loop at this many requests/s in total, latency from "
    "each request's intended send time (default: closed loop)",
    "timeout": "seconds before a connect or a reply counts as timed out (default 5)",
    "cpus": "pin the workers (and this process) to these CPUs, e.g. 1 or "
    "2-3; a worker with a CPU of its own then busy-polls up to "
    f"{SPIN_US} us before sleeping (keep them off the server's CPUs; default: "
    "not pinned)",
    "allow_remote": "allow a target outside loopback",
    "quiet": "no summary on stderr (a run that exits 1 still says why, in one line)",
    "server_pid": "a server process on this machine: its CPU time and its children's, read "
    "in nanoseconds at the window's edges, goes in the result (server_cpu)",
}


class _HelpFormatter(RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Options as common.cli shows them; the epilog as written (its lists and table)."""


def _wrapped(text: str, indent: int = 2) -> str:
    return textwrap.fill(text, 79, initial_indent=" " * indent, subsequent_indent=" " * indent)


def result_fields_help() -> str:
    """The JSON result's top-level fields, a few words each, in the order printed: the
    names come from LoadResult itself (clients.result.FIELD_NOTES says the words)."""
    width = max(len(f.name) for f in fields(LoadResult)) + 2
    lines = []
    for field in fields(LoadResult):
        note = FIELD_NOTES.get(field.name, "(see results/README.md)")
        lines.append(
            textwrap.fill(
                note,
                79,
                initial_indent=f"  {field.name:<{width}}",
                subsequent_indent=" " * (width + 2),
            )
        )
    return "\n".join(lines)


def epilog() -> str:
    return "\n".join(
        [
            "per-request mode:",
            _wrapped(
                "a new connection per request, closed by the client; connects are spread "
                f"over source addresses 127.0.0.1-{SOURCES} (IPv4 loopback targets) with "
                f"IP_BIND_ADDRESS_NO_PORT, so the 4-tuple space is {SOURCES}x larger and "
                "net.ipv4.tcp_tw_reuse can recycle TIME_WAIT ports; no SO_LINGER tricks."
            ),
            "",
            "exit status:",
            "  0    a result with at least one verified reply (errors or not: failures",
            "       are data)",
            "  1    no request was answered and verified in the window: the result is",
            "       still printed on stdout, and its diagnosis (the likely cause: a server",
            "       of the other protocol, a hung server, ...) on stderr, even with",
            "       --quiet; or, with nothing on stdout, the load generator itself failed",
            "  2    bad usage",
            "  130  interrupted (SIGINT, SIGTERM)",
            "",
            f"the JSON result on stdout (clients.result.LoadResult, schema {SCHEMA}; every",
            "field in full: results/README.md):",
            result_fields_help(),
        ]
    )


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clients.loadgen",
        description="Drive a sockbench server and print one JSON result on stdout.",
        epilog=epilog(),
        formatter_class=_HelpFormatter,
    )
    # the shared options where this command's --help has always listed them
    add_load_options(parser, SHARED_HELP, "target", "protocol")
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=10,
        help="connections in total, split over the worker processes (default 10)",
    )
    add_load_options(parser, SHARED_HELP, "processes", "duration", "warmup", "payload", "rate")
    parser.add_argument(
        "--arrivals",
        choices=ARRIVALS,
        default="uniform",
        help="with --rate: requests arrive evenly spaced, or as a Poisson process "
        "(default uniform); each is sent at its arrival, answered or not",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="persistent",
        help="persistent connections, or a new connection per request (default persistent)",
    )
    add_load_options(parser, SHARED_HELP, "timeout", "cpus")
    parser.add_argument(
        "--no-busy-poll",
        dest="busy_poll",
        action="store_false",
        help="never busy-poll: another load generator shares these CPUs (bench ab "
        "--together), and a spinning worker would take its turns (default: busy-poll "
        "where a worker has a --cpus CPU of its own)",
    )
    add_load_options(parser, SHARED_HELP, "allow_remote", "server_pid")
    parser.add_argument(
        "--interval-log",
        metavar="PATH",
        default=None,
        help="write the window's latency histograms, one per "
        f"{INTERVAL_NS // 1_000_000} ms, to PATH in HdrHistogram's interval-log format",
    )
    _add_http_checks(parser)
    add_load_options(parser, SHARED_HELP, "quiet")
    return parser


def _add_http_checks(parser: ArgumentParser) -> None:
    """How an http reply is verified: --verify, --expect-status, --expect-body."""
    parser.add_argument(
        "--verify",
        choices=VERIFY,
        default="auto",
        help="http: how a reply is checked: auto (default) compares its bytes with the "
        "expected reply and parses it where they differ, then expects that "
        "connection's verified bytes again; exact compares bytes only (sockbench's "
        "own server); parse parses every reply (to measure what parsing costs)",
    )
    parser.add_argument(
        "--expect-status",
        type=positive_int,
        default=200,
        metavar="N",
        help="http: the status of a verified reply (default 200)",
    )
    parser.add_argument(
        "--expect-body",
        default=None,
        metavar="TEXT|@PATH",
        help="http GET (payload 0): the body of a verified reply, TEXT or the bytes of "
        "the file PATH (default: sockbench's 'Hello, world!\\n')",
    )


def summary_line(result: LoadResult) -> str:
    """The result in one line for stderr (unless --quiet)."""
    lat, conns = result.latency_all or result.latency, result.connections
    errors = result.error_count
    line = (
        f"loadgen: {result.requests} requests in {result.duration_s:g} s = "
        f"{result.throughput_rps:.0f} req/s; latency (all requests) p50 {lat.text('p50')} us, "
        f"p99 {lat.text('p99')} us, max {lat.text('max')} us, {lat.censored} unanswered; "
        f"connections {conns.established}/{conns.asked}, starved {conns.starved}, "
        f"worst wait {conns.worst_wait_max_us} us; errors {errors}"
    )
    if errors:
        line += " (" + ", ".join(f"{k} {v}" for k, v in result.errors.items() if v) + ")"
    if before := ", ".join(f"{k} {v}" for k, v in result.errors_before.items() if v):
        line += f", before the window {before}"
    if result.rate.asked:
        line += f"; rate asked {result.rate.asked:g}, sent {result.rate.sent:g}/s"
        if result.rate.overloaded:
            line += " (OVERLOADED: the backlog grew through the window)"
    if result.client.bound:
        line += "; CLIENT-BOUND: " + "; ".join(result.client.reasons)
    return line


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same clean-up path as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    payload = args.payload if args.payload is not None else (64 if args.protocol == "echo" else 0)
    config = LoadConfig(
        target=args.target,
        protocol=args.protocol,
        connections=args.connections,
        processes=args.processes,
        duration=args.duration,
        warmup=args.warmup,
        payload=payload,
        rate=args.rate,
        arrivals=args.arrivals,
        mode=args.mode,
        timeout=args.timeout,
        cpus=args.cpus,
        busy_poll=args.busy_poll,
        allow_remote=args.allow_remote,
        verify=args.verify,
        expect_status=args.expect_status,
        expect_body=args.expect_body,
        server_pid=args.server_pid,
    )
    try:
        validate(config)
    except ConfigError as exc:
        parser.error(str(exc))
    previous = signal.signal(signal.SIGTERM, _interrupted)
    affinity = os.sched_getaffinity(0)  # put back at the end, for in-process callers
    try:
        if config.cpus:
            # the parent only waits and merges, but keep it off the server's CPUs too
            os.sched_setaffinity(0, config.cpus)
        result = run(config, args.interval_log)
    except ConfigError as exc:
        parser.error(str(exc))
    except LoadgenError as exc:
        sys.stderr.write(f"{parser.prog}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{parser.prog}: interrupted\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.sched_setaffinity(0, affinity)
    sys.stdout.write(result.to_json() + "\n")
    sys.stdout.flush()
    answered = result.requests > 0
    if not args.quiet:
        sys.stderr.write(summary_line(result) + "\n")
    if result.diagnosis and not (args.quiet and answered):
        sys.stderr.write(f"loadgen: diagnosis: {result.diagnosis}\n")
    return 0 if answered else NO_REPLY


if __name__ == "__main__":
    sys.exit(main())

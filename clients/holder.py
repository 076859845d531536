"""sockbench's idle-connection holder: N connections held open beside a load run.

    python -m clients.holder --target 127.0.0.1:PORT --connections 5000

This module is the command line; clients.engine.hold does the work. Everything is checked
before any connect (a usage error is one line, exit 2): a target outside loopback unless
--allow-remote, and more connections than one process can hold under its descriptor
limit (raised to the hard limit first; the message says the most, and to split the
connections over several holders). Then the holder connects all (paced), warms each up
with one verified request (--mode warm; silent: never a byte), prints the ready report,
one JSON line, and holds until SIGTERM, SIGINT or EOF on stdin (where stdin is a pipe,
socket or terminal), counting what the server does meanwhile. In a slow mode
(slow-sender, slow-reader: docs/slow.md) there is no warm-up, and the hold is requests
sent, or replies read, one byte per --interval-ms, each reply checked. At the stop it
prints the final report, closes every connection and exits 0; exit 1 when it holds no
connection (none established, or none left after the warm-up; the ready report is still
printed).
The reports: clients.hold_report. Why it is built this way: docs/idle.md.
"""

from __future__ import annotations

import signal
import sys
import textwrap
from argparse import RawDescriptionHelpFormatter
from typing import NoReturn

from clients.engine.config import ConfigError
from clients.engine.hold import (
    DEFAULT_INTERVAL_MS,
    FIRST_SOURCE,
    HOLD_MODES,
    MAX_HOLD_PAYLOAD,
    PER_SOURCE,
    HoldConfig,
    Holder,
    prepare,
    stop_descriptor,
)
from clients.hold_report import SCHEMA, HoldReport
from clients.options import add_load_options
from common.cli import ArgumentParser, DefaultsHelpFormatter, positive_float, positive_int
from common.process import STOP_SIGNALS, die_with_parent, stop_signals_blocked

PROG = "python -m clients.holder"
NOTHING_HELD = 1  # exit status: no connection established, or none left after the warm-up
INTERRUPTED = 130  # exit status: stopped before the ready report

SHARED_HELP = {
    "target": "HOST:PORT of the server",
    "protocol": "the protocol of the warm-up request (default echo): an echo frame, or "
    "HTTP/1.1 GET / (payload 0) or POST /echo",
    "payload": "bytes of the warm-up request: echo payload, or the HTTP POST body "
    f"(0 = GET /), at most {MAX_HOLD_PAYLOAD}; default 64 for echo, 0 for http",
    "timeout": "seconds before a connect or a warm-up reply counts as timed out (default 5)",
    "allow_remote": "allow a target outside loopback",
}


class _HelpFormatter(RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Options as common.cli shows them; the epilog as written."""


def epilog() -> str:
    fill = textwrap.TextWrapper(79, initial_indent="  ", subsequent_indent="  ").fill
    return "\n".join(
        [
            "output (clients.hold_report.HoldReport, schema " + f"{SCHEMA}, one JSON line each):",
            fill(
                "the ready report once all are connected and warmed, then the final report "
                "at the stop; both count asked, established, refused (by kind), warmed, "
                "bad_replies, lost (during the warm-up, by kind), held, closed_by_server, "
                "unasked, connect_s, warm_s; the final adds open_at_end and held_s; a "
                "slow mode's add slow (interval_ms, requests, bytes_sent, bytes_read, "
                "ticks, late)."
            ),
            "",
            "exit status:",
            "  0    stopped after the ready report (SIGTERM, SIGINT, EOF on stdin)",
            "  1    no connection held: none was established, or none was left after the",
            "       warm-up (the ready report is still printed; stderr says why)",
            "  2    bad usage, or more connections than one process can hold",
            f"  {INTERRUPTED}  stopped before the ready report (the final report is printed)",
        ]
    )


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Hold N idle connections to a sockbench server; report when they "
        "are ready and when told to stop.",
        epilog=epilog(),
        formatter_class=_HelpFormatter,
    )
    add_load_options(parser, SHARED_HELP, "target")
    parser.add_argument(
        "--connections",
        type=positive_int,
        required=True,
        help="connections to hold (at most what this process's descriptor limit allows)",
    )
    parser.add_argument(
        "--mode",
        choices=HOLD_MODES,
        default="warm",
        help="warm: one request and its verified reply per connection, then silence; "
        "silent: connections never speak; slow-sender: requests sent one byte per "
        "--interval-ms, each reply checked; slow-reader: a small receive buffer, replies "
        "read one byte per --interval-ms (default warm)",
    )
    parser.add_argument(
        "--interval-ms",
        type=positive_float,
        default=DEFAULT_INTERVAL_MS,
        metavar="MS",
        help=f"slow modes: milliseconds between two bytes (default {DEFAULT_INTERVAL_MS:g})",
    )
    add_load_options(parser, SHARED_HELP, "protocol", "payload")
    parser.add_argument(
        "--sources",
        type=positive_int,
        default=None,
        help="IPv4 loopback target: source addresses to spread the connections over, "
        f"round-robin (default: one per {PER_SOURCE:,} connections)",
    )
    parser.add_argument(
        "--first-source",
        type=positive_int,
        default=FIRST_SOURCE,
        metavar="N",
        help=f"the first source address is 127.0.0.N (default {FIRST_SOURCE}); several "
        "holders against one server take ranges apart",
    )
    add_load_options(parser, SHARED_HELP, "timeout", "allow_remote")
    return parser


class Stopped(BaseException):
    """A stop signal arrived (BaseException: no `except Exception` swallows it)."""


def _ignore_stop_signals() -> None:
    for each in STOP_SIGNALS:  # one stop is enough: the final report is not cut short
        signal.signal(each, signal.SIG_IGN)


def _stop(signum: int, _frame: object) -> NoReturn:
    _ignore_stop_signals()
    raise Stopped(signum)


def nothing_held(report: HoldReport) -> str:
    """Why a ready report holds no connection, in one line."""
    if not report.established:
        refused = ", ".join(f"{k} {v}" for k, v in report.refused.items() if v)
        return f"no connection was established to {report.target} ({refused or 'none'})"
    lost = ", ".join(f"{k} {v}" for k, v in report.lost.items() if v)
    return (
        f"{report.established} connections established, none left after the warm-up: "
        f"bad replies {report.bad_replies}, lost {lost or 'none'}, closed by the server "
        f"{report.closed_by_server} (a server of the other --protocol?)"
    )


def _print(report: HoldReport) -> None:
    sys.stdout.write(report.to_json() + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = HoldConfig(
        target=args.target,
        connections=args.connections,
        mode=args.mode,
        protocol=args.protocol,
        payload=args.payload,
        sources=args.sources,
        first_source=args.first_source,
        allow_remote=args.allow_remote,
        timeout=args.timeout,
        interval_ms=args.interval_ms,
    )
    try:
        plan = prepare(config)
    except ConfigError as exc:
        parser.error(str(exc))
    stop_fd = stop_descriptor()  # before any socket could take descriptor 0
    previous = {each: signal.signal(each, _stop) for each in STOP_SIGNALS}
    holder = Holder(plan)
    ready = False
    try:
        try:
            holder.connect()
            holder.warm()
            report = holder.mark_ready()
            with stop_signals_blocked():  # a stop as the line goes out comes after it
                _print(report)
                ready = True
            if not report.held:
                sys.stderr.write(f"{PROG}: {nothing_held(report)}\n")
                return NOTHING_HELD
            holder.hold(stop_fd)
            _ignore_stop_signals()  # inside the try: a signal until here is a Stopped
        except Stopped:
            pass
        holder.sweep()
        _print(holder.report("final"))
    finally:
        holder.close()
        for each, handler in previous.items():
            signal.signal(each, handler)
    return 0 if ready else INTERRUPTED


if __name__ == "__main__":
    die_with_parent()
    sys.exit(main())

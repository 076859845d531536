"""Locust as sockbench's second load generator: run it headless, report like loadgen.

    python -m clients.locust.driver --target 127.0.0.1:8000 --protocol echo \
        --users 10 --warmup 1 --duration 10 --payload 64 --cpus 1

The command line only: it parses the flags, runs `clients.locust.process.run_locust`
and prints the window's `clients.result.LoadResult` as one JSON line. Exit codes: 0 done,
1 locust failed, 2 bad arguments, 130 interrupted (and 128 + SIGTERM on SIGTERM, after
locust's group is stopped). This module must not import locust: gevent monkey-patches
socket and select on import.
"""

from __future__ import annotations

import signal
import sys

from clients.locust.process import LocustRunError, UsageError, run_locust
from clients.options import LOCUST_DEFAULTS, add_load_options
from common.cli import ArgumentParser, positive_float, positive_int

# The driver's words for the load options it shares with clients.loadgen (clients.options).
HELP = {
    "target": "HOST:PORT of the server",
    "protocol": "the wire protocol",
    "duration": "seconds measured, after the warm-up",
    "warmup": "seconds of load before the measured window, not counted (default 1)",
    "payload": "echo payload bytes; for http, 0 is GET / and N > 0 POST /echo",
    "rate": "total requests/s, shared by the users (default: closed loop)",
    "timeout": "connect and reply timeout in seconds",
    "cpus": "pin locust (and its forked workers) to these CPUs, e.g. 1 or 2-3 "
    "(default: not pinned)",
    "processes": "locust worker processes on this machine (locust --processes; default: one "
    "locust process, no workers)",
    "allow_remote": "allow a target or a master bind host that is not a loopback address",
    "quiet": "do not echo locust's log",
    "server_pid": "a server process on this machine: its CPU time and its children's, read "
    "in nanoseconds as the locustfile logs the window's edges, goes in the result "
    "(server_cpu)",
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m clients.locust.driver", description=__doc__.splitlines()[0]
    )
    add_load_options(parser, HELP, "target", "protocol")
    parser.add_argument(
        "--users", type=positive_int, default=10, help="locust users, one connection each"
    )
    parser.add_argument(
        "--spawn-rate",
        type=positive_float,
        default=None,
        help="users started per second (default: all in the first second)",
    )
    add_load_options(
        parser,
        HELP,
        *("duration", "warmup", "payload", "rate", "timeout", "cpus", "processes"),
        defaults=LOCUST_DEFAULTS,
    )
    parser.add_argument(
        "--master",
        action="store_true",
        help="run only a locust master; start workers yourself (docs/locust.md)",
    )
    parser.add_argument(
        "--expect-workers",
        type=positive_int,
        default=None,
        help="with --master: wait for this many workers (default 1)",
    )
    parser.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        help="with --master: address the workers connect to (not loopback: needs --allow-remote)",
    )
    parser.add_argument(
        "--master-bind-port",
        type=positive_int,
        default=None,
        help="with --master: port the workers connect to (default: a free one)",
    )
    add_load_options(parser, HELP, "allow_remote", "quiet", "server_pid")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM must unwind through run_locust's cleanup, which stops locust's group.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        result = run_locust(
            args.target,
            protocol=args.protocol,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration=args.duration,
            warmup=args.warmup,
            payload=args.payload,
            rate=args.rate,
            timeout=args.timeout,
            processes=args.processes,
            master=args.master,
            expect_workers=args.expect_workers,
            master_bind_host=args.master_bind_host,
            master_bind_port=args.master_bind_port,
            cpus=args.cpus,
            allow_remote=args.allow_remote,
            quiet=args.quiet,
            server_pid=args.server_pid,
        )
    except UsageError as exc:
        parser.error(str(exc))
    except LocustRunError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one launcher: `python -m servers list` and `python -m servers run MODEL ...`.

It makes the listening socket the same way for every model, raises RLIMIT_NOFILE,
prints one JSON readiness line, and turns SIGTERM/SIGINT into a clean stop that
closes every connection and prints the counters as a second JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from common.cli import ArgumentParser, port, positive_int, suggest, usage_error
from common.process import raise_fd_limit
from servers import MODELS, REFERENCES, SERVERS, Model, Reference, interpreter
from servers.conn import Counters, Stopping, reserve_descriptor
from servers.listener import make_listener, system_backlog
from servers.protocol import DEFAULT_MAX_FRAME, PROTOCOLS, Limits
from servers.stop_kick import watch_stop_signals
from servers.work import Work, parse_work, work_factory

PROG = "python -m servers"


class Shutdown(BaseException):
    """Raised by the signal handler in the main thread; BaseException so that no
    model's `except Exception` swallows it."""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="list the models and whether each runs here")
    lister.add_argument("--json", action="store_true", help="one JSON object per model")
    run = sub.add_parser("run", help="run one model until SIGTERM or SIGINT")
    run.add_argument("model", help="a model name from `python -m servers list`")
    run.add_argument(
        "--protocol", choices=sorted(PROTOCOLS), default="echo", help="the wire protocol served"
    )
    run.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    run.add_argument(
        "--port", type=port, default=0, help="the TCP port to listen on; 0 picks a free one"
    )
    run.add_argument(
        "--backlog",
        type=positive_int,
        default=None,
        help="listen() backlog (default: net.core.somaxconn)",
    )
    run.add_argument(
        "--max-frame",
        type=positive_int,
        default=DEFAULT_MAX_FRAME,
        help="largest echo frame, HTTP body or line, in bytes",
    )
    run.add_argument(
        "--work",
        type=work_spec,
        default=Work(),
        metavar="KIND:US",
        help="per-request work: cpu:US burns CPU, wait:US waits without it (default: none)",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="processes (prefork) or pool threads (threadpool) (default: one process per "
        "CPU the server may use; 32 threads)",
    )
    run.add_argument(
        "--inject-delay-ns",
        type=int,
        default=0,
        metavar="NS",
        help="extra CPU nanoseconds per request, spun on the wall clock, to test the "
        "regression gate (default 0)",
    )
    run.add_argument(
        "--inject-work",
        type=int,
        default=0,
        metavar="N",
        help="extra iterations of a pure-Python loop per request: a fixed amount of work, "
        "to calibrate the counted gate (bench cost) (default 0)",
    )
    return parser


def work_spec(text: str) -> Work:
    try:
        return parse_work(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def list_models(as_json: bool) -> int:
    """The models, then the reference servers, each with whether it runs here."""
    for title, table in (("model", MODELS), ("reference", REFERENCES)):
        if not as_json:
            print(f"{title:<16} {'here':<4} what it is")
        for server in table.values():
            reason = server.unavailable_reason()
            if as_json:
                line = {
                    "model": server.name,
                    "kind": title,
                    "available": reason is None,
                    "reason": reason,
                    "summary": server.summary,
                }
                print(json.dumps(line))
            else:
                note = "" if reason is None else f"  [unavailable: {reason}]"
                here = "yes" if reason is None else "no"
                print(f"{server.name:<16} {here:<4} {server.summary}{note}")
        if not as_json and title == "model":
            print()
    return 0


def run_model(args: argparse.Namespace) -> int:
    model = SERVERS.get(args.model)
    if model is None:
        return usage_error(
            PROG,
            f"unknown model {args.model!r}; choose from {', '.join(SERVERS)}"
            + suggest(args.model, SERVERS),
        )
    if reason := model.unavailable_reason():
        return usage_error(PROG, f"model {args.model!r} is unavailable here: {reason}")
    if isinstance(model, Reference):
        if reason := model.cannot_serve(args.protocol, 0):
            return usage_error(PROG, reason)
        injected = args.inject_delay_ns or args.inject_work
        if args.workers is not None or args.work != Work() or injected:
            return usage_error(
                PROG, f"{model.name} is a reference server: no --workers, --work or --inject-*"
            )
    elif args.workers is not None and "workers" not in model.options:
        return usage_error(PROG, f"model {model.name!r} takes no --workers")
    if args.inject_delay_ns < 0 or args.inject_work < 0:
        return usage_error(PROG, "--inject-delay-ns and --inject-work must be >= 0")
    raise_fd_limit()
    reserve_descriptor()  # our accept loops shed connections with it when fds run out
    backlog = args.backlog or system_backlog()
    try:
        listener = make_listener(args.host, args.port, backlog, model.reuseport)
    except (OSError, UnicodeError) as exc:
        return usage_error(
            PROG,
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            if isinstance(exc, OSError)
            else f"bad host {args.host!r}",
        )
    if isinstance(model, Reference):
        return run_reference(model, args, listener, backlog)
    return serve_model(model, args, listener, backlog)


def serve_model(
    model: Model, args: argparse.Namespace, listener: socket.socket, backlog: int
) -> int:
    serve = model.load().serve
    counters = Counters()
    work = replace(args.work, inject_ns=args.inject_delay_ns, inject_work=args.inject_work)
    make_protocol = work_factory(args.protocol, Limits(max_frame=args.max_frame), work)

    def stop(signum: int, _frame: object) -> None:
        ignore_stop_signals()
        if model.stop_at_accept:
            # No exception here: it could land inside Thread.start() or a pool's submit()
            # holding their locks. The main thread's next accept() fails instead.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        raise Shutdown(signum)

    handle_stop_signals(stop)
    host, bound_port = listener.getsockname()[:2]
    given = {"backlog": backlog, "workers": args.workers}
    options = {name: given[name] for name in model.options if given[name] is not None}
    try:
        # Inside the try: a harness may stop the server the moment it reads this line,
        # while the write is still returning (that used to end in a traceback, exit 1).
        emit(
            {
                "event": "ready",
                "model": model.name,
                "protocol": args.protocol,
                "host": host,
                "port": bound_port,
                "pid": os.getpid(),
                "backlog": backlog,
                "work": asdict(work),
                "python": interpreter.facts(),  # after the model's imports (GIL state)
            }
        )
        serve(listener, make_protocol, counters, **options)
    except (Shutdown, Stopping):
        pass
    finally:
        listener.close()
    emit({"event": "stopped", "model": model.name, **counters.as_dict()})
    return 0


def run_reference(
    server: Reference, args: argparse.Namespace, listener: socket.socket, backlog: int
) -> int:
    """A reference server from its recipe; the same two JSON lines as a model's."""
    host, bound_port = listener.getsockname()[:2]

    def stop(signum: int, _frame: object) -> None:
        ignore_stop_signals()
        raise Shutdown(signum)

    def ready(facts: dict[str, Any]) -> None:
        emit(
            {
                "event": "ready",
                "model": server.name,
                "protocol": args.protocol,
                "host": host,
                "port": bound_port,
                "pid": os.getpid(),
                "backlog": backlog,
                "reference": facts,
                # the interpreter only where the server runs in it (not nginx)
                **({"python": interpreter.facts()} if server.python else {}),
            }
        )

    handle_stop_signals(stop)
    try:
        server.load().serve(listener, args.protocol, ready, backlog)
    except Shutdown:
        pass
    finally:
        listener.close()
    emit({"event": "stopped", "model": server.name})
    return 0


def ignore_stop_signals() -> None:
    """First thing in a stop handler: a second signal must not interrupt the cleanup."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def handle_stop_signals(stop: Callable[[int, Any], None]) -> None:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watch_stop_signals()  # the handler runs even if the signal lands outside a syscall
    # A blocked mask survives exec: a server started from a thread that blocks them
    # (one that starts processes for a harness) would never see its stop signal.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return list_models(args.json)
    return run_model(args)


if __name__ == "__main__":
    sys.exit(main())

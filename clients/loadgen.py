"""sockbench's native load generator: one JSON document per run.

    python -m clients.loadgen --target 127.0.0.1:PORT --protocol http --connections 100

The parent splits the connections over worker processes (clients.engine.worker), each one
epoll loop (clients.engine.loops) pinned to its CPUs when --cpus is given. Every worker
connects first (paced), then all warm up from the same instant, then measure the same
window; the parent merges their HdrHistograms, counters and per-connection counts into
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

import ipaddress
import math
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import textwrap
import time
from argparse import RawDescriptionHelpFormatter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from clients import saturation
from clients.diagnosis import diagnose
from clients.engine import hist
from clients.engine.connections import CONNECT_WINDOW
from clients.engine.histlog import Interval as HistInterval
from clients.engine.histlog import write_interval_log
from clients.engine.loops import INTERVAL_NS
from clients.engine.pipelined import ARRIVALS
from clients.engine.plan import WorkerPlan
from clients.engine.worker import WorkerResult, worker_main
from clients.errors import ERROR_KINDS
from clients.result import (
    FIELD_NOTES,
    NO_REPLY,
    SCHEMA,
    Client,
    Connections,
    Interval,
    LoadResult,
    Params,
    Rate,
    Window,
    Worker,
)
from clients.target import is_loopback
from clients.target import split_target as target_address
from clients.wire import MAX_PAYLOAD
from common import cpustat
from common.cli import (
    ArgumentParser,
    DefaultsHelpFormatter,
    cpu_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from common.process import STOP_SIGNALS, raise_fd_limit

PROTOCOLS = ("echo", "http")
VERIFY = ("auto", "exact", "parse")  # how http replies are checked (clients.engine.connections)
OVERLOAD_MARGIN = 10  # requests: a backlog must grow by more than this to be a trend
MODES = ("persistent", "per-request")
SOURCES = 16  # source addresses for per-request mode (see the module docstring)
SPIN_US = 100  # closed-loop busy-poll of a worker with its own CPU (clients.engine.loops)
START_MARGIN_S = 0.05  # time for the start message to reach every worker
RESULT_GRACE_S = 30.0  # how long past the window's end a worker may take to report
FD_RESERVE = 64  # descriptors a worker needs besides its connections


Child = tuple[BaseProcess, Connection]  # a worker process and our end of its pipe


class ConfigError(ValueError):
    """A bad configuration; the message is one line for the user."""


class LoadgenError(RuntimeError):
    """The load generator itself failed (a worker crashed or hung)."""


@dataclass(frozen=True)
class LoadConfig:
    target: str  # HOST:PORT, [V6]:PORT
    protocol: str = "echo"
    connections: int = 10
    processes: int | None = None  # default: one per CPU, never more than connections
    duration: float = 10.0  # seconds measured
    warmup: float = 1.0  # seconds before the window, not counted
    payload: int = 64
    rate: float | None = None  # requests/s in total; None is a closed loop
    arrivals: str = "uniform"  # open loop: "uniform" or "poisson" (clients.engine.pipelined)
    mode: str = "persistent"
    timeout: float = 5.0  # connect and reply timeout, seconds
    cpus: tuple[int, ...] | None = None
    busy_poll: bool = True  # where a worker has a CPU of its own (see `run`)
    allow_remote: bool = False
    verify: str = "auto"  # http: "auto", "exact" or "parse" (clients.engine.connections)
    expect_status: int = 200  # http: the status of a verified reply
    expect_body: str | None = None  # http GET: TEXT or @PATH; None: sockbench's body


def split_target(target: str) -> tuple[str, int]:
    try:
        return target_address(target)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def resolve(config: LoadConfig) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) of the target; refuses non-loopback before any lookup."""
    host, port = split_target(config.target)
    if not config.allow_remote and not is_loopback(host):
        raise ConfigError(
            f"target {host} is not a loopback address; pass --allow-remote to load another machine"
        )
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot resolve {host!r}: {exc}") from None
    # "localhost" often resolves to ::1 first, but the servers listen on 127.0.0.1
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, address = found[0]
    if not config.allow_remote and not ipaddress.ip_address(address[0]).is_loopback:
        raise ConfigError(f"{host} resolves to {address[0]}, not a loopback address")
    return family, address


def validate(config: LoadConfig) -> None:
    if config.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {config.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if config.arrivals not in ARRIVALS:
        raise ConfigError(f"arrivals {config.arrivals!r} is not one of {', '.join(ARRIVALS)}")
    if config.mode not in MODES:
        raise ConfigError(f"mode {config.mode!r} is not one of {', '.join(MODES)}")
    if config.connections < 1:
        raise ConfigError("connections must be at least 1")
    if config.processes is not None and config.processes < 1:
        raise ConfigError("processes must be at least 1")
    for name in ("duration", "timeout"):
        if not (getattr(config, name) > 0 and math.isfinite(getattr(config, name))):
            raise ConfigError(f"{name} must be a positive number of seconds")
    if not (config.warmup >= 0 and math.isfinite(config.warmup)):
        raise ConfigError("warmup must be zero or more seconds")
    if config.rate is not None and not (config.rate > 0 and math.isfinite(config.rate)):
        raise ConfigError("rate must be a positive number of requests per second")
    if not 0 <= config.payload <= MAX_PAYLOAD:
        raise ConfigError(f"payload must be 0 to {MAX_PAYLOAD} bytes")
    _validate_expectation(config)
    if config.cpus is not None:
        if not config.cpus:
            raise ConfigError("cpus is empty")
        allowed = os.sched_getaffinity(0)
        if missing := sorted(set(config.cpus) - allowed):
            raise ConfigError(
                f"cpu {missing[0]} is not available here "
                f"(allowed: {','.join(map(str, sorted(allowed)))})"
            )


def _validate_expectation(config: LoadConfig) -> None:
    if config.verify not in VERIFY:
        raise ConfigError(f"verify {config.verify!r} is not one of {', '.join(VERIFY)}")
    http = config.protocol == "http"
    if config.verify == "parse" and not http:
        raise ConfigError("--verify parse needs --protocol http (echo is compared exactly)")
    if config.expect_status != 200:
        if not http:
            raise ConfigError("--expect-status needs --protocol http")
        if not 200 <= config.expect_status <= 599:
            raise ConfigError("--expect-status must be a final status, 200 to 599")
        if config.verify == "exact":
            raise ConfigError(
                "--expect-status needs --verify auto or parse (exact is sockbench's 200 reply)"
            )
    if config.expect_body is not None:
        if not http or config.payload != 0:
            raise ConfigError(
                "--expect-body needs --protocol http with --payload 0 (GET /); "
                "POST /echo expects the body it sent"
            )
        expected_body(config)  # a file that cannot be read is a usage error


def expected_body(config: LoadConfig) -> bytes | None:
    """The body --expect-body asks for (TEXT, or the bytes of the file @PATH); None:
    sockbench's body for the request."""
    text = config.expect_body
    if text is None:
        return None
    if not text.startswith("@"):
        return os.fsencode(text)  # the bytes given on the command line
    try:
        with open(text[1:], "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read --expect-body file {text[1:]!r}: {exc.strerror}") from None


def make_plans(config: LoadConfig, family: int, address: tuple[Any, ...]) -> list[WorkerPlan]:
    cpus = sorted(set(config.cpus)) if config.cpus else None
    available = len(cpus) if cpus else len(os.sched_getaffinity(0))
    processes = min(config.processes or available, config.connections)
    hard = raise_fd_limit()
    share = -(-config.connections // processes)
    if share + FD_RESERVE > hard:
        raise ConfigError(
            f"{share} connections per process exceed RLIMIT_NOFILE ({hard}); use more --processes"
        )
    # Busy-polling pays only on a CPU nobody else needs: pinned, one worker per CPU.
    spin_us = SPIN_US if cpus and processes <= len(cpus) and config.busy_poll else 0
    sources: tuple[str, ...] = ()
    if config.mode == "per-request" and family == socket.AF_INET and address[0].startswith("127."):
        sources = tuple(f"127.0.0.{i}" for i in range(1, SOURCES + 1))
    body = expected_body(config)
    plans, first = [], 0
    for index in range(processes):
        count = config.connections // processes + (index < config.connections % processes)
        if cpus is None:
            mine = None
        elif processes <= len(cpus):
            mine = tuple(cpus[index::processes])
        else:
            mine = (cpus[index % len(cpus)],)
        plans.append(
            WorkerPlan(
                index=index,
                family=family,
                address=address,
                protocol=config.protocol,
                payload=config.payload,
                mode=config.mode,
                connections=count,
                first=first,
                total=config.connections,
                rate=config.rate,
                timeout=config.timeout,
                cpus=mine,
                parent_pid=os.getpid(),
                sources=sources,
                spin_us=spin_us,
                arrivals=config.arrivals,
                verify=config.verify,
                expect_status=config.expect_status,
                expect_body=body,
            )
        )
        first += count
    return plans


def run(config: LoadConfig, interval_log: str | None = None) -> LoadResult:
    """Run one load test and return its result; with `interval_log`, also write the
    window's interval histograms there (HdrHistogram interval-log format).

    Raises ConfigError for a bad configuration (nothing was sent) and LoadgenError when
    a worker crashed; errors of the target (refused, reset, mismatch...) are counted.
    """
    validate(config)
    family, address = resolve(config)
    plans = make_plans(config, family, address)
    results, window, cores_busy = _drive(config, plans)
    slices = interval_histograms(results, config.duration)  # merged once, used twice
    if interval_log is not None:
        with open(interval_log, "w") as stream:
            write_interval_log(
                stream,
                window.start_unix,
                slices,
                comment=f"sockbench.loadgen {config.protocol} to {config.target}, "
                f"{config.connections} connections; latency in microseconds",
            )
    return build_result(config, plans, results, slices, window, cores_busy, interval_log)


def _drive(
    config: LoadConfig, plans: Sequence[WorkerPlan]
) -> tuple[list[WorkerResult], Window, float | None]:
    """Run the workers; their results, the window in wall-clock time (so the bench can
    cut the server's CPU to it) and how busy the client's CPUs were in it (%)."""
    context = multiprocessing.get_context("fork")
    workers: list[Child] = []
    try:
        for plan in plans:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(plan, theirs),
                daemon=True,
                name=f"loadgen-worker-{plan.index}",
            )
            # A forked worker runs the parent's signal handlers until worker_main sets
            # its own: a stop landing then printed a KeyboardInterrupt traceback from
            # the worker. Blocked across the fork, the signals wait for worker_main.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                process.start()
                workers.append((process, ours))  # on record before a stop can land
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            theirs.close()
        share = max(plan.connections for plan in plans)
        connect_limit = (share / CONNECT_WINDOW + 1) * config.timeout + RESULT_GRACE_S
        _gather(workers, "connected", connect_limit)
        t0 = time.monotonic_ns() + int(START_MARGIN_S * 1e9)
        window_start = t0 + int(config.warmup * 1e9)
        end = window_start + int(config.duration * 1e9)
        for _process, pipe in workers:
            pipe.send(("start", t0, window_start, end))
        offset = time.time() - time.monotonic_ns() / 1e9
        window = Window(round(window_start / 1e9 + offset, 6), round(end / 1e9 + offset, 6))
        cores = config.cpus or tuple(sorted(os.sched_getaffinity(0)))
        _sleep_until(window_start)
        before = cpustat.ticks(cores)
        _sleep_until(end)
        cores_busy = cpustat.busy_percent(before, cpustat.ticks(cores))
        limit = (end - time.monotonic_ns()) / 1e9 + config.timeout + RESULT_GRACE_S
        return _gather(workers, "result", limit), window, cores_busy
    finally:
        for worker_process, pipe in workers:
            pipe.close()
            if worker_process.is_alive():
                worker_process.terminate()
        for worker_process, _pipe in workers:
            worker_process.join(2)
            if worker_process.is_alive():
                worker_process.kill()
                worker_process.join()


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _gather(workers: Sequence[Child], kind: str, limit_s: float) -> list[Any]:
    """One `kind` message from every worker, in worker order."""
    deadline = time.monotonic() + limit_s
    got: dict[int, Any] = {}
    while len(got) < len(workers):
        left = deadline - time.monotonic()
        if left <= 0:
            raise LoadgenError(f"workers did not report {kind!r} within {limit_s:.0f} s")
        pending = [i for i in range(len(workers)) if i not in got]
        by_handle: dict[Any, int] = {}
        for i in pending:
            process, pipe = workers[i]
            by_handle[pipe] = by_handle[process.sentinel] = i
        for ready in wait(list(by_handle), left):
            index = by_handle[ready]
            process, pipe = workers[index]
            if index in got:
                continue
            message = None
            if pipe.poll():  # a message first: a worker may exit right after its result
                try:
                    message = pipe.recv()
                except EOFError:
                    process.join(1)
            if message is None:
                if process.is_alive():
                    continue
                raise LoadgenError(f"worker {index} died (exit code {process.exitcode})")
            if message[0] == "error":
                raise LoadgenError(f"worker {index} failed:\n{message[1].rstrip()}")
            got[index] = message[1]
    return [got[i] for i in range(len(workers))]


def build_result(
    config: LoadConfig,
    plans: Sequence[WorkerPlan],
    results: Sequence[WorkerResult],
    slices: Sequence[HistInterval],
    window: Window | None = None,
    cores_busy: float | None = None,
    interval_log: str | None = None,
) -> LoadResult:
    answered = hist.merge(r.latency for r in results)
    censored = hist.merge(r.censored for r in results)
    requests = sum(r.requests for r in results)
    duration = config.duration
    per_conn = [n for r in results for n in r.per_conn]
    worst = hist.spread([w for r in results for w in r.worst_wait_us])
    open_loop = config.rate is not None
    sent = [r.sent for r in results]
    # a closed loop sends the next request as a reply arrives: sent is achieved
    sent_rps = round(
        sum(n or 0 for n in sent) / duration if None not in sent else requests / duration, 1
    )
    send_lag = hist.latency(hist.merge(r.send_lag for r in results)) if open_loop else None
    ends = max((len(r.backlog) for r in results), default=0)
    backlog = [sum(r.backlog[i] for r in results if i < len(r.backlog)) for i in range(ends)]
    http = config.protocol == "http"
    result = LoadResult(
        tool="sockbench.loadgen",
        params=Params(
            target=config.target,
            protocol=config.protocol,
            connections=config.connections,
            processes=len(plans),
            duration=config.duration,
            warmup=config.warmup,
            payload=config.payload,
            rate=config.rate,
            mode=config.mode,
            timeout=config.timeout,
            cpus=tuple(sorted(set(config.cpus))) if config.cpus else None,
            arrivals=config.arrivals,
            verify=config.verify if http else "exact",
            expect_status=config.expect_status if http else None,
            expect_body=config.expect_body,
        ),
        window=window,
        requests=requests,
        throughput_rps=round(requests / duration, 1),
        bytes=sum(r.bytes for r in results),
        duration_s=duration,
        latency=hist.latency(answered),
        latency_all=hist.latency(answered, censored),
        latency_uncorrected=(
            hist.latency(hist.merge(r.latency_sent for r in results)) if open_loop else None
        ),
        send_lag=send_lag,
        connect=hist.connect_latency(hist.merge(r.connect for r in results)),
        errors={kind: sum(r.errors[kind] for r in results) for kind in ERROR_KINDS},
        errors_before={kind: sum(r.errors_before[kind] for r in results) for kind in ERROR_KINDS},
        connections=Connections(
            asked=config.connections,
            established=sum(r.established for r in results),
            starved=sum(r.starved for r in results),
            worst_wait_p50_us=worst["p50"],
            worst_wait_p99_us=worst["p99"],
            worst_wait_max_us=worst["max"],
        ),
        fairness=round(hist.jain_index(per_conn), 4),
        rate=Rate(
            asked=config.rate,
            sent=sent_rps,
            achieved=round(requests / duration, 1),
            overloaded=overloaded(backlog),
        ),
        client=judge_client(
            results,
            config.cpus or sorted(os.sched_getaffinity(0)),
            cores_busy,
            late=saturation.late(config.rate, sent_rps, send_lag.p50)
            if config.rate is not None and send_lag is not None
            else None,
        ),
        intervals=summarise_intervals(slices, backlog),
        interval_s=INTERVAL_NS / 1e9,
        histogram=hist.encode(answered),
        histogram_all=hist.encode(hist.merge([hist.encode(answered), hist.encode(censored)])),
        interval_log=interval_log,
    )
    sample = next((r.protocol_sample for r in results if r.protocol_sample), None)
    return replace(result, diagnosis=diagnose(result, sample))


def summarise_intervals(
    slices: Sequence[HistInterval], backlog: Sequence[int] = ()
) -> tuple[Interval, ...]:
    """Count and p99 of each merged slice, with the backlog at its end where known."""
    return tuple(
        Interval(
            round(start, 3),
            int(histogram.get_total_count()),
            hist.percentiles(histogram, {"p99": 99.0})["p99"],
            backlog[i] if i < len(backlog) else None,
        )
        for i, (start, _length, histogram) in enumerate(slices)
    )


def overloaded(backlog: Sequence[int]) -> bool:
    """The backlog kept growing: its last third well above its first (twice, and by
    more than OVERLOAD_MARGIN requests, so that a backlog of 2 then 5 is not a trend),
    and the middle third between the two."""
    if len(backlog) < 6:
        return False
    third = len(backlog) // 3
    first, middle, last = (
        statistics.median(backlog[:third]),
        statistics.median(backlog[third:-third]),
        statistics.median(backlog[-third:]),
    )
    return last > 2 * first + OVERLOAD_MARGIN and first <= middle <= last


def interval_histograms(results: Sequence[WorkerResult], duration: float) -> list[HistInterval]:
    """(offset s, length s, merged histogram) per interval, for the interval log."""
    step = INTERVAL_NS / 1e9
    slices = max((len(r.intervals) for r in results), default=0)
    out = []
    for i in range(slices):
        histogram = hist.merge(r.intervals[i] for r in results if i < len(r.intervals))
        out.append((i * step, min(step, duration - i * step), histogram))
    return out


def judge_client(
    results: Sequence[WorkerResult],
    cores: Sequence[int],
    cores_busy: float | None,
    late: list[str] | None = None,
) -> Client:
    """Client-bound when a worker hardly waited for work (it was the bottleneck) or
    waited for a CPU (contended); in an open loop (`late` given), when it did not keep
    its schedule instead of by idleness. See docs/loadgen.md, "Saturation"."""
    workers = []
    for r in results:
        share = 100.0 / r.window_s if r.window_s > 0 else 0.0
        delayed = None if r.run_delay_s is None else round(r.run_delay_s * share, 1)
        workers.append(Worker(round(r.cpu_s * share, 1), round(r.wait_s * share, 1), delayed))
    reasons = saturation.reasons(workers, idle_rule=late is None) + (late or [])
    return Client(
        workers=tuple(workers),
        cores=tuple(sorted(set(cores))),
        cores_busy=None if cores_busy is None else round(cores_busy, 1),
        bound=bool(reasons),
        reasons=tuple(reasons),
    )


def summary_line(result: LoadResult) -> str:
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


# -- command line ----------------------------------------------------------------------


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
    parser.add_argument("--target", required=True, help="HOST:PORT of the server")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="echo",
        help="the protocol the server speaks (default echo): echo frames, or HTTP/1.1 "
        "GET / (payload 0) or POST /echo",
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=10,
        help="connections in total, split over the worker processes (default 10)",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="worker processes (default: one per CPU, at most connections)",
    )
    parser.add_argument(
        "--duration", type=positive_float, default=10.0, help="seconds measured (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=1.0,
        help="seconds of load before the window, not counted (default 1)",
    )
    parser.add_argument(
        "--payload",
        type=non_negative_int,
        default=None,
        help="bytes per request: echo payload, or the HTTP POST body "
        "(0 = GET /); default 64 for echo, 0 for http",
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=None,
        help="open loop at this many requests/s in total, latency from "
        "each request's intended send time (default: closed loop)",
    )
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
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=5.0,
        help="seconds before a connect or a reply counts as timed out (default 5)",
    )
    parser.add_argument(
        "--cpus",
        type=cpu_list,
        default=None,
        help="pin the workers (and this process) to these CPUs, e.g. 1 or "
        "2-3; a worker with a CPU of its own then busy-polls up to "
        f"{SPIN_US} us before sleeping (keep them off the server's CPUs; default: "
        "not pinned)",
    )
    parser.add_argument(
        "--no-busy-poll",
        dest="busy_poll",
        action="store_false",
        help="never busy-poll: another load generator shares these CPUs (bench ab "
        "--together), and a spinning worker would take its turns (default: busy-poll "
        "where a worker has a --cpus CPU of its own)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a target outside loopback"
    )
    parser.add_argument(
        "--interval-log",
        metavar="PATH",
        default=None,
        help="write the window's latency histograms, one per "
        f"{INTERVAL_NS // 1_000_000} ms, to PATH in HdrHistogram's interval-log format",
    )
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
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no summary on stderr (a run that exits 1 still says why, in one line)",
    )
    return parser


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

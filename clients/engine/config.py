"""The native load generator's configuration: LoadConfig, its validation, and the plans.

`validate` refuses a bad configuration with a ConfigError (one line for the user) before
anything is sent; `resolve` finds the target, refusing one outside loopback unless
allowed, before any lookup; `make_plans` splits the connections and the CPUs over the
worker processes (one clients.engine.plan.WorkerPlan each).
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.engine.plan import WorkerPlan
from clients.options import ARRIVALS, PROTOCOLS
from clients.target import is_loopback
from clients.target import split_target as target_address
from clients.wire import MAX_PAYLOAD
from common.process import raise_fd_limit

VERIFY = ("auto", "exact", "parse")  # how http replies are checked (clients.engine.connections)
MODES = ("persistent", "per-request")
SOURCES = 16  # source addresses for per-request mode (docs/loadgen.md)
SPIN_US = 100  # closed-loop busy-poll of a worker with its own CPU (clients.engine.loops)
FD_RESERVE = 64  # descriptors a worker needs besides its connections


class ConfigError(ValueError):
    """A bad configuration; the message is one line for the user."""


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
    busy_poll: bool = True  # where a worker has a CPU of its own (see `make_plans`)
    allow_remote: bool = False
    verify: str = "auto"  # http: "auto", "exact" or "parse" (clients.engine.connections)
    expect_status: int = 200  # http: the status of a verified reply
    expect_body: str | None = None  # http GET: TEXT or @PATH; None: sockbench's body
    # a local server process (its tree) whose CPU time is read at the window's edges
    server_pid: int | None = None


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
    if config.server_pid is not None and not Path(f"/proc/{config.server_pid}").is_dir():
        raise ConfigError(f"server pid {config.server_pid}: no such process on this machine")
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


def source_addresses(
    family: int, address: tuple[Any, ...], count: int, first: int = 1
) -> tuple[str, ...]:
    """`count` source addresses from 127.0.0.`first` on, to spread connects over where the
    target is an IPv4 loopback address (every 127/8 address is local on Linux, no set-up
    needed; each has its own ephemeral ports: docs/loadgen.md); none for another target."""
    if family != socket.AF_INET or not address[0].startswith("127."):
        return ()
    return tuple(f"127.0.0.{i}" for i in range(first, first + count))


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
    per_request = config.mode == "per-request"
    sources = source_addresses(family, address, SOURCES) if per_request else ()
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

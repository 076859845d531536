"""A cell's idle connections: clients.holder processes that hold them beside the active ones.

One holder process holds at most what one process's descriptor limit allows
(clients.engine.hold.most_held), so a count above that is split over several, each with
a source-address range of its own (127.0.0.2 and up; the active connections keep
127.0.0.1). They run on the load generator's CPUs, connect and warm up before the
server's memory is read and before the load starts, and are stopped after it: their
final reports say how many stayed open through the window. docs/idle.md.
"""

from __future__ import annotations

import math
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from bench.record import Idle, Memory
from bench.run.cpus import CpuPlan
from bench.run.external import ExternalServer
from bench.run.matrix import Cell, Matrix
from bench.run.memory import at_rest, object_sizes, server_share
from bench.run.server_process import ServerProcess
from clients.engine.hold import FIRST_SOURCE, PER_SOURCE, most_held
from clients.hold_report import HoldReport, HoldReportError

READY_S = 60.0  # connecting and warming up, per holder, beyond PER_1000_S
PER_1000_S = 2.0  # more for every 1,000 connections (one source fills slowly: docs/idle.md)
STOP_S = 10.0


class IdleError(RuntimeError):
    """The holders did not get ready; the message is one line for the row's reason."""


def split(count: int, per_process: int) -> list[int]:
    """`count` connections over as few holders as hold them, as evenly as can be."""
    if count <= 0:
        return []
    holders = math.ceil(count / per_process)
    base, extra = divmod(count, holders)
    return [base + (1 if i < extra else 0) for i in range(holders)]


def first_sources(shares: Sequence[int], first: int = FIRST_SOURCE) -> list[int]:
    """Each holder's first source address (127.0.0.N, from `first` on), ranges apart:
    one source per PER_SOURCE connections, as the holder spreads them by default."""
    firsts: list[int] = []
    for share in shares:
        firsts.append(first)
        first += max(1, math.ceil(share / PER_SOURCE))
    return firsts


class Holders:
    """Start with `start()`, which returns once every holder is ready (IdleError if
    one is not); `stop()` ends them all and returns their final reports. `extra`: more
    holder options (bench.run.slow's); `first`: the first source address's last byte;
    `what`: the connections' kind, in the messages."""

    def __init__(
        self,
        target: str,
        count: int,
        mode: str,
        protocol: str,
        cpus: Sequence[int],
        allow_remote: bool = False,
        *,
        extra: Sequence[str] = (),
        first: int = FIRST_SOURCE,
        what: str = "idle-connection",
    ) -> None:
        self.shares = split(count, most_held())
        self.what = what
        self.commands = [
            [
                *(["taskset", "-c", ",".join(map(str, cpus))] if cpus else []),
                sys.executable, "-m", "clients.holder", "--target", target,
                "--connections", str(share), "--mode", mode, "--protocol", protocol,
                "--first-source", str(source), *extra,
                *(["--allow-remote"] if allow_remote else []),
            ]
            for share, source in zip(self.shares, first_sources(self.shares, first), strict=True)
        ]  # fmt: skip
        self.procs: list[subprocess.Popen[str]] = []
        self.ready: list[HoldReport] = []

    def start(self) -> list[HoldReport]:
        for command in self.commands:
            self.procs.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,  # EOF on it stops a holder whose parent died
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        limit = READY_S + PER_1000_S * max(self.shares, default=0) / 1000
        self.ready = [self._ready_line(proc, limit) for proc in self.procs]
        return self.ready

    def _ready_line(self, proc: subprocess.Popen[str], limit: float) -> HoldReport:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=limit):
                raise IdleError(f"a {self.what} holder was not ready within {limit:.0f} s")
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=STOP_S)
            why = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise IdleError(
                f"a {self.what} holder exited with {proc.returncode}: "
                f"{why[-1] if why else 'no output'}"
            )
        try:
            return HoldReport.from_json(line)
        except HoldReportError as exc:
            raise IdleError(f"a {self.what} holder's report: {exc}") from None

    def stop(self) -> list[HoldReport]:
        """SIGTERM each, then its final report; a holder that does not stop is killed
        (and gives none)."""
        finals = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                continue
            lines = [line for line in out.splitlines() if line.strip()]
            if lines:
                try:
                    finals.append(HoldReport.from_json(lines[-1]))
                except HoldReportError:
                    pass
        self.procs = []
        return finals

    def kill(self) -> None:
        """On the way out of a failure: end them all, no report."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.procs = []

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]


def summary(
    ready: Sequence[HoldReport], final: Sequence[HoldReport], memory: Memory | None
) -> Idle:
    """One Idle for the row, summed over the holders."""
    complete = len(final) == len(ready) and all(f.open_at_end is not None for f in final)
    return Idle(
        asked=sum(r.asked for r in ready),
        established=sum(r.established for r in ready),
        held=sum(r.held for r in ready),
        open_at_end=sum(f.open_at_end or 0 for f in final) if complete else None,
        closed_by_server=sum(f.closed_by_server for f in (final if complete else ready)),
        refused=sum(sum(r.refused.values()) for r in ready),
        lost=sum(sum(r.lost.values()) + r.bad_replies for r in ready),
        holders=len(ready),
        connect_s=max((r.connect_s + r.warm_s for r in ready), default=0.0),
        memory=memory,
    )


def shortfall(idle: Idle) -> str | None:
    """Why the cell did not hold what it asked for, if it did not: its reason to fail."""
    if idle.held == idle.asked and (idle.open_at_end in (None, idle.asked)):
        return None
    parts = []
    if idle.refused:
        parts.append(f"{idle.refused:,} connects failed")
    if idle.lost:
        parts.append(f"{idle.lost:,} closed by the server at once")
    if idle.open_at_end is not None and idle.open_at_end < idle.held:
        parts.append(f"{idle.held - idle.open_at_end:,} closed during the window")
    if (memory := idle.memory) is not None and memory.fd_limit is not None and memory.fds:
        # a single-process model stops at its descriptor limit: say so (docs/idle.md)
        processes = "1 process" if len(memory.fds) == 1 else f"{len(memory.fds)} processes"
        parts.append(
            f"the server's limit: {memory.fd_limit:,} descriptors a process, "
            f"{processes} holding {max(memory.fds):,} at most"
        )
    return (
        f"held {min(idle.held, idle.open_at_end or idle.held):,} of {idle.asked:,} idle "
        f"connections ({'; '.join(parts) or 'see the server log'})"
    )


def hold(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    server: ServerProcess | ExternalServer,
    target: str,
) -> tuple[Holders, Memory | None] | None:
    """With an idle axis: the cell's idle connections held (IdleError if they could not
    be), then the server's memory at rest with them; None without one."""
    if not matrix.has_idle:
        return None
    holders = Holders(
        target, cell.key.idle, cell.key.idle_mode, cell.key.protocol, plan.client,
        matrix.allow_remote,
    )  # fmt: skip
    try:
        holders.start()
        memory = None
        if not isinstance(server, ExternalServer):
            memory = at_rest(server.pid)
            held = sum(report.held for report in holders.ready)
            mine = server_share(memory.slab_kib, held, object_sizes())
            memory = replace(memory, server_slab_kib=mine)
    except BaseException:  # Ctrl-C included: nothing of the cell's is left running
        holders.kill()
        raise
    return holders, memory

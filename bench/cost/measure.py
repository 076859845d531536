"""Count one model's cost per request under one pattern: `measure_cell`.

Each launch starts the server under a counter (bench.cost.tools), sends the pattern's
fixed number of requests (bench.cost.pattern), ends the server with its connections
open (by a fatal signal: see _stop) and reads the whole process's total. Launches at
two request counts give the slope, the cost of one request; start-up and the idle
connections' set-up are in both totals and cancel. Each count is launched `tries`
times: the run keeps the smallest total of each and reports how far the tries' slopes
differ. The launches are independent of one another's timing, so they run side by side
(`jobs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.cost import tools
from bench.cost.pattern import Pattern, PatternError, driven
from bench.cost.record import Build, CostCell, Counted
from bench.run.server_process import ServerProcess, ServerStartError
from bench.settings import ALLOCATOR_POLICIES

DEFAULT_REQUESTS = (1000, 6000)
DEFAULT_TRIES = 2
# A fixed hash seed (set iteration orders) and glibc's malloc, as the bench's warm
# allocator policy sets it: pymalloc's arenas would make the counts depend on history.
ENV = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"}
# prefork's default is a process per CPU; one, so that the count is the same on any
# machine. With two, SO_REUSEPORT's hash of each connection's port decides how many idle
# connections each process holds, and the count with it (a slope of 45 to 37,000).
FIXED_OPTIONS: dict[str, tuple[str, ...]] = {"prefork": ("--workers", "1")}
# Models whose counts depend on timing, refused with the spread measured (docs/cost.md).
TIMING_DEPENDENT = {
    "gevent": "its instructions per request depend on timing: three runs of 10,000 echo "
    "requests gave 28,000, 27,999 and 32,838 (17% apart; docs/cost.md)",
}
# Models that cannot serve one active connection beside idle ones.
NO_IDLE = {
    "blocking": "it serves one connection at a time: an idle one would hold it",
    "threadpool": "each idle connection holds one of its threads: beside 32 of them the "
    "active connection is never served",
}
END_SIGNAL = signal.SIGUSR1  # see _stop
READY_S = 180.0  # python's start-up under valgrind: 2 s here, far more on a busy runner
SETTLE_S = 5.0  # for the server to go to sleep after the last reply
STOP_S = 180.0


class CostError(RuntimeError):
    """One launch failed; the message is one line."""


@dataclass(frozen=True)
class Setup:
    """How every cell of a run is counted."""

    requests: tuple[int, int] = DEFAULT_REQUESTS
    tries: int = DEFAULT_TRIES  # launches per request count under cachegrind
    syscall_tries: int = 1  # and under strace (its counts have been exact here)
    root: Path | None = None  # the checkout whose servers run (bench ab); None: this one
    server_args: tuple[str, ...] = ()  # e.g. ("--inject-work", "5")
    syscalls: bool = True


def refusal(model: str, pattern: Pattern) -> str | None:
    """Why `model` is not counted under `pattern`, or None."""
    if model in TIMING_DEPENDENT:
        return TIMING_DEPENDENT[model]
    if pattern.idle and model in NO_IDLE:
        return NO_IDLE[model]
    return None


def measure_cell(model: str, pattern: Pattern, setup: Setup, pool: Executor) -> CostCell:
    """The cell's counts, its refusal, or the first launch's error."""
    cell = CostCell(model, pattern.protocol, pattern.payload, pattern.idle)
    if reason := refusal(model, pattern):
        return _with(cell, refused=reason)
    lo, hi = setup.requests
    plan = [("instructions", n) for _ in range(setup.tries) for n in (lo, hi)]
    if setup.syscalls:
        plan += [("syscalls", n) for _ in range(setup.syscall_tries) for n in (lo, hi)]
    futures = [pool.submit(launch, model, pattern, n, what, setup) for what, n in plan]
    try:
        totals = [future.result() for future in futures]
    except CostError as exc:
        for future in futures:
            future.cancel()
        return _with(cell, error=str(exc))
    got: dict[str, list[dict[str, int]]] = {"instructions": [], "syscalls": []}
    for (what, _), total in zip(plan, totals, strict=True):
        got[what].append(total)
    instructions = _counted(got["instructions"], "total", setup.requests)
    if not setup.syscalls:
        return _with(cell, instructions=instructions)
    names = sorted({name for total in got["syscalls"] for name in total} - {"total"})
    return _with(
        cell,
        instructions=instructions,
        syscalls=_counted(got["syscalls"], "total", setup.requests),
        syscall_names={name: _counted(got["syscalls"], name, setup.requests) for name in names},
    )


def _with(cell: CostCell, **changes: Any) -> CostCell:
    return replace(cell, **changes)


def _counted(totals: Sequence[dict[str, int]], name: str, requests: tuple[int, int]) -> Counted:
    """Alternate launches were lo, hi, lo, hi, ...: pair them up into tries."""
    values = [total.get(name, 0) for total in totals]
    return Counted(requests, tuple(values[0::2]), tuple(values[1::2]))


def launch(model: str, pattern: Pattern, requests: int, what: str, setup: Setup) -> dict[str, int]:
    """One server under the counter for `what` ("instructions" or "syscalls"), driven
    with `requests` requests: the whole process's totals ({"total": N} or by name)."""
    with tempfile.TemporaryDirectory(prefix="sockbench-cost-") as tmp:
        folder = Path(tmp)
        prefix = tools.cachegrind(folder) if what == "instructions" else tools.strace(folder)
        where = run_counted(model, pattern, requests, prefix, setup)
        try:
            if what == "instructions":
                return {"total": tools.instructions(folder)}
            return tools.system_calls(folder)
        except (OSError, ValueError) as exc:
            raise CostError(f"{where}: {exc}") from None


def run_counted(
    model: str, pattern: Pattern, requests: int, prefix: Sequence[str], setup: Setup
) -> str:
    """Start the server under `prefix`, drive it, end it (see _stop); CostError if any
    of that fails. Returns the launch's description, for messages."""
    server = ServerProcess(
        model,
        pattern.protocol,
        extra_args=(*FIXED_OPTIONS.get(model, ()), *setup.server_args),
        ready_timeout=READY_S,
        env=ENV,
        cwd=setup.root,
        launcher=prefix,
    )
    where = f"{model} {pattern.key} at {requests:,} requests under {Path(prefix[0]).name}"
    try:
        server.start()
    except ServerStartError as exc:
        raise CostError(f"{where}: {exc}") from None
    try:
        with driven("127.0.0.1", server.port, pattern, requests):
            _stop(server)
    except (PatternError, OSError, CostError) as exc:
        # under strace the server is the launcher's child: end it too, by its own pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(server.ready["pid"]), signal.SIGKILL)
        server.kill()
        server.stop()
        raise CostError(f"{where}: {exc}") from None
    code = server.stop()
    if code != -END_SIGNAL:
        raise CostError(f"{where}: exited {code}: {server.stderr.strip()[-300:]!r}")
    return where


def _stop(server: ServerProcess) -> None:
    """End the server with a signal no model handles, then wait for the counter to write
    its totals and exit. Not SIGTERM: the clean stop runs the interpreter's finalization,
    whose work varied by up to 700,000 instructions between launches here (glibc's
    consolidation of freed blocks, the order of the teardown); a fatal signal skips it,
    and valgrind still writes its counts (it would not after SIGKILL)."""
    pid = int(server.ready["pid"])
    _settle(pid)
    os.kill(pid, END_SIGNAL)
    assert server.proc is not None
    try:
        server.proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        raise CostError(f"{server.model} did not stop within {STOP_S:.0f} s") from None


def _settle(pid: int, timeout: float = SETTLE_S) -> None:
    """Wait until every thread of `pid` sleeps, twice in a row: the client has its last
    reply once the server sent it, but the server still finishes that request's loop
    before it blocks. A signal landing there cut about one request's work (19,000
    instructions for epoll) from a launch's total, now and then."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2 and time.monotonic() < deadline:
        calm = calm + 1 if _all_asleep(pid) else 0
        time.sleep(0.005)


def _all_asleep(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = []
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii") as stat:
                states.append(stat.read().rsplit(")", 1)[1].split()[0])
    except OSError:
        return True  # gone, or going: nothing left to cut
    return all(state in "SD" for state in states)


def build_facts(python: Path | None = None) -> Build:
    """What the counts depend on, for the record (see Build)."""
    executable = Path(os.path.realpath(python or sys.executable))
    digest = hashlib.sha256(executable.read_bytes())
    if python is None and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        library = Path(sysconfig.get_config_var("LIBDIR") or "") / str(
            sysconfig.get_config_var("LDLIBRARY")
        )
        if library.is_file():
            digest.update(library.read_bytes())
    return Build(
        python=sys.version.replace("\n", " "),
        python_sha256=digest.hexdigest(),
        valgrind=tools.version(tools.VALGRIND),
        strace=tools.version(tools.STRACE) if not tools.missing(tools.STRACE) else "",
        arch=platform.machine(),
        kernel=platform.release(),
        env={**ENV, **ALLOCATOR_POLICIES["warm"]},
    )


def count_models(
    models: Sequence[str],
    patterns: Sequence[Pattern],
    setup: Setup,
    jobs: int,
    progress: Callable[[str], None],
    done: Callable[[CostCell], None] = lambda cell: None,
) -> list[CostCell]:
    """Every model under every pattern, in that order, `jobs` launches at a time; each
    cell goes to `done` as it is counted (to save what has run)."""
    cells = []
    order = [(m, p) for m in models for p in patterns]
    with ThreadPoolExecutor(jobs) as pool:
        for step, (model, pattern) in enumerate(order, 1):
            progress(f"[{step}/{len(order)}] {model} {pattern.key}")
            cell = measure_cell(model, pattern, setup, pool)
            if cell.refused:
                progress(f"  refused: {cell.refused}")
            elif cell.error:
                progress(f"  error: {cell.error}")
            cells.append(cell)
            done(cell)
    return cells

"""One cell: start the server, sample it, drive the load, stop it, make the row.

Failures are data: a server that does not start, dies or hangs gives a `failed` row
and the matrix goes on. Ctrl-C stops the current cell (its processes are killed by
the context managers below) and propagates, so the caller can keep what is done.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.analysis.curves import load_rate
from bench.analysis.verdict import judge, verdict
from bench.record import CPU_AT_EDGES, CPU_SAMPLED, Idle, Row, Slow
from bench.run import beside as held_beside
from bench.run.beside import STOP_S, Beside, stop_timeout
from bench.run.cpus import CpuPlan
from bench.run.external import External, ExternalServer
from bench.run.hosts import HERE, Placement
from bench.run.idle import IdleError
from bench.run.interpreters import ROOT as REPO_ROOT
from bench.run.interpreters import Prepared, prepare, server_environ
from bench.run.matrix import Cell, Matrix
from bench.run.sampler import CoreSampler, ServerSampler
from bench.run.server_process import ServerProcess, ServerStartError
from bench.run.slow import all_starved
from clients.diagnosis import diagnose
from clients.result import NO_REPLY, LoadResult, LoadResultError
from clients.target import join_target
from common import cpustat
from common.cpus import format_cpu_list
from servers import SERVERS

BUSY_SAMPLE_S = 0.5  # how long to watch the machine before each cell
PROBE_S = 1.0  # the closed-loop capacity probe of a sweep (bench.analysis.curves)
_PROBES: dict[tuple[str, str, int], float] = {}  # (run, closed-loop key, repeat) -> req/s


def load_command(
    cell: Cell,
    target: str,
    matrix: Matrix,
    plan: CpuPlan,
    probe_rps: float | None = None,
    shared: bool = False,
    server_pid: int | None = None,
) -> list[str]:
    """The load generator's command line against `target` (HOST:PORT); `shared`:
    another one runs on the same CPUs; `server_pid`: the server process whose CPU
    either driver reads at the window's edges."""
    key = cell.key
    common = ["--target", target, "--protocol", key.protocol, "--duration", f"{matrix.duration:g}"]
    common += ["--payload", str(key.payload), "--quiet"]
    if matrix.allow_remote:  # a server host, an external server or a master not on loopback
        common.append("--allow-remote")
    if server_pid is not None:
        common += ["--server-pid", str(server_pid)]
    if (rate := load_rate(key.load, probe_rps)) is not None:
        common += ["--rate", f"{rate:.1f}", "--arrivals", matrix.arrivals]
    if matrix.external(key.model) is not None:
        common += expect_args(matrix)
    if key.driver == "locust":
        # Workers started by hand (docs/locust.md) or by bench hosts do the load: the
        # driver runs only their master, at the address they connect to (Matrix refused
        # a non-loopback one without allow_remote).
        master = ["--master", "--expect-workers", str(matrix.locust_workers)]
        master += ["--master-bind-host", matrix.locust_master_host]
        master += ["--master-bind-port", str(matrix.locust_master_port)]
        return [
            sys.executable,
            "-m",
            "clients.locust.driver",
            *common,
            "--users",
            str(key.connections),
            "--spawn-rate",
            str(max(key.connections, 10)),
            "--warmup",
            f"{matrix.warmup:g}",
            "--cpus",
            format_cpu_list(plan.client),
            *(master if matrix.locust_workers else []),
        ]
    return [
        sys.executable,
        "-m",
        "clients.loadgen",
        *common,
        "--connections",
        str(key.connections),
        "--warmup",
        str(matrix.warmup),
        "--mode",
        key.mode,
        "--cpus",
        format_cpu_list(plan.client),
        *(["--no-busy-poll"] if shared or matrix.has_slow else []),
    ]


def expect_args(matrix: Matrix) -> list[str]:
    """An external server's expected reply."""
    args: list[str] = []
    if matrix.expect_status:
        args += ["--expect-status", str(matrix.expect_status)]
    if matrix.expect_body:
        args += ["--expect-body", matrix.expect_body]
    return args


def load_timeout(cell: Cell, matrix: Matrix) -> float:
    """Generous: connecting 10k sockets at a paced rate takes seconds, not minutes;
    a locust master waits up to a minute for workers started by hand."""
    waits = 60 if matrix.locust_workers and cell.key.driver == "locust" else 0
    return matrix.warmup + matrix.duration + 30 + cell.key.connections / 200 + waits


def server_args(cell: Cell, matrix: Matrix) -> list[str]:
    args = []
    if matrix.inject_delay_ns:
        args += ["--inject-delay-ns", str(matrix.inject_delay_ns)]
    if cell.key.backlog:
        args += ["--backlog", str(cell.key.backlog)]
    if cell.key.work:
        args += ["--work", cell.key.work]
    if matrix.workers and "workers" in getattr(SERVERS.get(cell.key.model), "options", ()):
        args += ["--workers", str(matrix.workers)]
    return args


@dataclass(frozen=True)
class _RowMaker:
    """The cell's row with its identity, its start and its wall time up to the call."""

    run_id: str
    cell: Cell
    started_at: str
    t0: float  # time.monotonic() at the start

    def __call__(self, status: str, reason: str | None = None, **fields: Any) -> Row:
        return Row(
            run_id=self.run_id,
            cell=self.cell.key,
            repeat=self.cell.repeat,
            status=status,
            reason=reason,
            started_at=self.started_at,
            wall_s=round(time.monotonic() - self.t0, 3),
            **fields,
        )


@dataclass(frozen=True)
class _Measured:
    """What the load window left: the result (or why there is none) and the samplers."""

    load: LoadResult | None
    failure: str | None
    sample: dict[str, Any]
    sampler: ServerSampler
    cores: CoreSampler
    crashed: int | None  # the server's exit code when it died during the load
    stop_code: int  # the server's exit code when stopped after it
    idle: Idle | None = None  # the idle connections held through the window
    slow: Slow | None = None  # the slow connections' exchanges through it
    stop_s: float = STOP_S  # how long the server was given to stop


def run_cell(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    run_id: str,
    run_dir: Path | None = None,
    server_root: Path | None = None,
    shared: bool = False,
    placement: Placement = HERE,
) -> Row:
    """Run one cell; with `run_dir`, the server's output and the cell's interval log
    go there (logs/, hdr/); with `server_root`, the servers of that checkout run;
    `shared`: another cell runs on the same CPUs at the same time (bench ab --together);
    `placement`: the hosts the server and the load run on (bench hosts)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    row = _RowMaker(run_id, cell, started_at, time.monotonic())
    slug = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', cell.key.key)}-r{cell.repeat}"
    external = matrix.external(cell.key.model)
    runtime = prepare(cell.key.python) if cell.key.python else None  # checked by bench run
    if external is None and (skip := _skip_reason(cell, runtime)):
        return row("skipped", skip)
    busy_before = machine_busy(BUSY_SAMPLE_S)
    try:
        server, target = _start_server(
            cell, matrix, plan, external, runtime, server_root, placement
        )
    except ServerStartError as exc:
        return row("failed", f"server did not start: {exc}", busy_before=busy_before)
    try:  # idle and slow connections: IdleError if they could not be had
        held = held_beside.start(cell, matrix, plan, server, target)
    except IdleError as exc:
        server.stop()
        return row("failed", str(exc), busy_before=busy_before)
    probe_rps = None
    if cell.key.load.startswith("f"):
        probe_rps = probe_capacity(cell, target, matrix, plan, run_id)
        if probe_rps is None:
            held.kill()
            server.stop()
            return row("failed", "the capacity probe got no reply", busy_before=busy_before)
    hdr_log = None
    if run_dir is not None and cell.key.driver == "loadgen":
        (run_dir / "hdr").mkdir(exist_ok=True)
        hdr_log = f"hdr/{slug}.hlog"
    interval_log = run_dir / hdr_log if hdr_log is not None and run_dir is not None else None
    measured = _measure(
        cell, matrix, plan, server, target, probe_rps, shared, interval_log, held, placement.client
    )
    server_log = None
    if run_dir is not None and (text := server.log_text()):
        (run_dir / "logs").mkdir(exist_ok=True)
        server_log = f"logs/{slug}.log"
        (run_dir / server_log).write_text(text, encoding="utf-8")
    return _cell_row(
        row,
        server,
        external,
        measured,
        hdr_log,
        busy_before=busy_before,
        server_log=server_log,
        probe_rps=probe_rps,
    )


def _skip_reason(cell: Cell, runtime: Prepared | None) -> str | None:
    """Why this machine (or the cell's interpreter) cannot run the cell's own server."""
    known = SERVERS[cell.key.model]
    unavailable = (
        known.unavailable_reason()
        if runtime is None
        else runtime.unavailable.get(cell.key.model, "unknown to that interpreter's servers")
    )
    if unavailable:
        where = "here" if runtime is None else f"under Python {cell.key.python}"
        return f"model unavailable {where}: {unavailable}"
    return known.cannot_serve(cell.key.protocol, cell.key.payload)


def _start_server(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    external: External | None,
    runtime: Prepared | None,
    server_root: Path | None,
    placement: Placement = HERE,
) -> tuple[ServerProcess | ExternalServer, str]:
    """The cell's server, started, and its HOST:PORT; ServerStartError if it did not."""
    if external is not None:
        return ExternalServer(external), external.target
    server = ServerProcess(
        cell.key.model,
        cell.key.protocol,
        host=matrix.server_host,
        extra_args=server_args(cell, matrix),
        cpus=plan.server,
        allocator=matrix.allocator,
        cwd=server_root or (REPO_ROOT if runtime else None),
        python=runtime.python if runtime else None,
        env=server_environ(runtime.interpreter, cell.key.model) if runtime else {},
        launcher=placement.server,
    )
    server.start()
    return server, join_target(matrix.server_host, server.port)


def _measure(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    server: ServerProcess | ExternalServer,
    target: str,
    probe_rps: float | None,
    shared: bool,
    interval_log: Path | None,
    held: Beside,
    launcher: tuple[str, ...] = (),
) -> _Measured:
    """Run the load generator while sampling the server, then stop the idle and slow
    holders and the server (whatever happens, Ctrl-C included)."""
    failure = None
    load: LoadResult | None = None
    idle = slow = None
    try:
        sampler = ServerSampler(server.pid).start()
        # an external server is not on the server CPUs: their busy time is not its
        cores = CoreSampler([] if isinstance(server, ExternalServer) else list(plan.server)).start()
        try:
            command = load_command(cell, target, matrix, plan, probe_rps, shared, server.pid)
            if interval_log is not None:
                command += ["--interval-log", str(interval_log)]
            done = subprocess.run(
                [*launcher, *command],  # on the load's host (bench hosts), else here
                capture_output=True,
                text=True,
                timeout=load_timeout(cell, matrix),
                stdin=subprocess.DEVNULL,
            )
            load, failure = parse_load(done)
        except subprocess.TimeoutExpired as exc:
            failure = f"load generator did not finish within {exc.timeout:.0f} s"
        finally:
            sample = sampler.stop()
            cores.stop()
            idle, slow = held.stop()  # before the server stops, which would close them all
        crashed = server.exit_code()
    finally:
        held.kill()
        stop_code = server.stop(stop_timeout(cell))
    return _Measured(
        load, failure, sample, sampler, cores, crashed, stop_code, idle, slow, stop_timeout(cell)
    )


def _cell_row(
    row: _RowMaker,
    server: ServerProcess | ExternalServer,
    external: External | None,
    measured: _Measured,
    hdr_log: str | None,
    *,
    busy_before: float | None,
    server_log: str | None,
    probe_rps: float | None,
) -> Row:
    """The row of a cell whose load ran: failed (and why), client-bound or ok, with its
    figures and verdict."""
    load, failure, sample = measured.load, measured.failure, measured.sample
    if (crashed := measured.crashed) is not None:
        failure = (
            f"server exited with code {crashed} during the run: "
            f"{server.stderr.strip()[-200:] or 'no output'}"
        )
    sample["counters"] = {
        k: v for k, v in (server.stopped or {}).items() if k not in ("event", "model")
    }
    if external is not None:
        sample["external"] = external.facts()
    sample.update({k: server.ready[k] for k in ("reference", "python") if k in server.ready})
    figures: dict[str, Any] = {
        "load": load,
        "server": sample,
        **cpu_per_request(measured.sampler, load),
        "server_core_us_per_request": core_per_request(measured.cores, load),
        "busy_before": busy_before,
        "server_log": server_log,
        "probe_rps": probe_rps,
        "idle": measured.idle,
        "slow": measured.slow,
    }
    if load is not None and hdr_log is not None and load.interval_log:
        load = replace(load, interval_log=hdr_log)  # relative to the run folder
        figures["load"] = load
    if short := held_beside.shortfall(measured.idle, measured.slow):
        failure = f"{short}; {failure}" if failure else short  # the likelier cause first
    starved = all_starved(row.cell, load)  # beside slow ones: a finding, not a failure
    if failure is None and (load is None or not load.requests) and not starved:
        failure = f"no request completed in the window ({no_request_cause(load)})"
    if (stop_note := _stop_note(server, measured)) is not None:
        failure = f"{failure}; {stop_note}" if failure else stop_note
    if failure or load is None:
        return row("failed", (failure or "no load result").strip(), **figures)
    reasons = judge(load, busy_before, sample["counters"].get("workers_restarted", 0))
    bound = load.client.bound
    return row(
        "client-bound" if bound else "ok",
        "; ".join(load.client.reasons) if bound else None,
        verdict=verdict(reasons),
        reasons=reasons,
        **figures,
    )


def _stop_note(server: ServerProcess | ExternalServer, measured: _Measured) -> str | None:
    """What went wrong in the stop at the end, if anything (a crash is said already)."""
    stop_code = measured.stop_code
    if stop_code == 0 or measured.crashed is not None:
        return None
    if stop_code == -9:
        return f"server did not stop within {measured.stop_s:g} s of SIGTERM and was killed"
    return (
        f"server exited with code {stop_code} on SIGTERM: "
        f"{(server.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
    )


def no_request_cause(load: LoadResult | None) -> str:
    """Why a cell got no verified reply: the load generator's diagnosis (the likely
    cause: a server of the other protocol, wrong replies, every connection closed, a
    hung server), or one made here from its counts for a result without one (locust's
    driver, or an older load generator)."""
    if load is None:
        return "no load result"
    return load.diagnosis or diagnose(load) or "no verified reply"


def probe_capacity(
    cell: Cell, target: str, matrix: Matrix, plan: CpuPlan, run_id: str
) -> float | None:
    """A cell's closed-loop throughput, the capacity its sweep steps are shares of:
    measured once per cell key and repeat (PROBE_S), then kept for the other steps."""
    closed = replace(cell, key=replace(cell.key, load=""))
    key = (run_id, closed.key.key, cell.repeat)
    if key not in _PROBES:
        short = replace(matrix, duration=PROBE_S, warmup=min(matrix.warmup, 0.3))
        try:
            done = subprocess.run(
                load_command(closed, target, short, plan),
                capture_output=True,
                text=True,
                timeout=load_timeout(closed, short),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return None
        load, failure = parse_load(done)
        if failure or load is None or not load.requests:
            return None
        _PROBES[key] = load.throughput_rps
    return _PROBES[key]


def machine_busy(seconds: float) -> float | None:
    """% of every CPU's time busy over `seconds` from now: is something else running?"""
    before = cpustat.ticks()
    time.sleep(seconds)
    return cpustat.busy_percent(before, cpustat.ticks())


def parse_load(done: subprocess.CompletedProcess[str]) -> tuple[LoadResult | None, str | None]:
    if not done.stdout.strip():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"load generator failed (exit code {done.returncode}): {last}"
    try:
        load = LoadResult.from_json(done.stdout)
    except LoadResultError as exc:
        return None, f"load generator output unusable: {exc}"
    # exit 1 with a result: no request was verified; the caller says why (diagnosis)
    if done.returncode != 0 and not (done.returncode == NO_REPLY and not load.requests):
        return load, f"load generator exited with code {done.returncode}"
    return load, None


def cpu_per_request(sampler: ServerSampler, load: LoadResult | None) -> dict[str, Any]:
    """Server CPU microseconds per request (process view) and how it was measured: the
    server's CPU clocks read at the window's edges where the load generator read them,
    else the sampler's ticks interpolated to the window (or over the whole run where
    the window is unknown: an overestimate)."""
    if load is None or not load.requests or sampler.process is None:
        return {"server_cpu_us_per_request": None, "server_cpu_source": None}
    if load.server_cpu is not None:
        us = load.server_cpu.cpu_ns / 1e3 / load.requests
        return {"server_cpu_us_per_request": round(us, 3), "server_cpu_source": CPU_AT_EDGES}
    spent = None
    if load.window is not None:
        spent = sampler.cpu_between(load.window.start_unix, load.window.end_unix)
    if spent is None:
        summary = sampler.summary()
        spent = summary["cpu_user_s"], summary["cpu_sys_s"]
    return {
        "server_cpu_us_per_request": round(sum(spent) * 1e6 / load.requests, 3),
        "server_cpu_source": CPU_SAMPLED,
    }


def core_per_request(cores: CoreSampler, load: LoadResult | None) -> float | None:
    """Server CPU microseconds per request (core view): the server CPUs' busy time in
    the window, softirq included, per request; whatever else ran there counts too."""
    if load is None or not load.requests or load.window is None:
        return None
    seconds = cores.busy_seconds(load.window.start_unix, load.window.end_unix)
    return None if seconds is None else round(seconds * 1e6 / load.requests, 3)

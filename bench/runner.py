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
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cpus import CpuPlan
from bench.curves import load_rate
from bench.matrix import Cell, Matrix
from bench.record import Row
from bench.sampler import CoreSampler, ServerSampler
from bench.server_process import ServerProcess, ServerStartError
from bench.verdict import judge, verdict
from clients.result import LoadResult, LoadResultError
from common import cpustat
from common.cpus import format_cpu_list
from servers import MODELS

BUSY_SAMPLE_S = 0.5  # how long to watch the machine before each cell
PROBE_S = 1.0  # the closed-loop capacity probe of a sweep (bench.curves)
_PROBES: dict[tuple[str, str, int], float] = {}  # (run, closed-loop key, repeat) -> req/s


def load_command(
    cell: Cell,
    port: int,
    matrix: Matrix,
    plan: CpuPlan,
    probe_rps: float | None = None,
    shared: bool = False,
) -> list[str]:
    """The load generator's command line; `shared`: another one runs on the same CPUs."""
    key = cell.key
    common = [
        "--target",
        f"127.0.0.1:{port}",
        "--protocol",
        key.protocol,
        "--duration",
        f"{matrix.duration:g}",
        "--payload",
        str(key.payload),
        "--quiet",
    ]
    if (rate := load_rate(key.load, probe_rps)) is not None:
        common += ["--rate", f"{rate:.1f}", "--arrivals", matrix.arrivals]
    if key.driver == "locust":
        return [
            sys.executable,
            "-m",
            "clients.locust_driver",
            *common,
            "--users",
            str(key.connections),
            "--spawn-rate",
            str(max(key.connections, 10)),
            "--warmup",
            f"{matrix.warmup:g}",
            "--cpus",
            format_cpu_list(plan.client),
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
        *(["--no-busy-poll"] if shared else []),
    ]


def load_timeout(cell: Cell, matrix: Matrix) -> float:
    """Generous: connecting 10k sockets at a paced rate takes seconds, not minutes."""
    return matrix.warmup + matrix.duration + 30 + cell.key.connections / 200


def server_args(cell: Cell, matrix: Matrix) -> list[str]:
    args = []
    if matrix.inject_delay_ns:
        args += ["--inject-delay-ns", str(matrix.inject_delay_ns)]
    if cell.key.backlog:
        args += ["--backlog", str(cell.key.backlog)]
    if cell.key.work:
        args += ["--work", cell.key.work]
    return args


def run_cell(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    run_id: str,
    run_dir: Path | None = None,
    server_root: Path | None = None,
    shared: bool = False,
) -> Row:
    """Run one cell; with `run_dir`, the server's output and the cell's interval log
    go there (logs/, hdr/); with `server_root`, the servers of that checkout run;
    `shared`: another cell runs on the same CPUs at the same time (bench ab --together)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    slug = f"{re.sub(r'[^A-Za-z0-9._-]+', '_', cell.key.key)}-r{cell.repeat}"

    def row(status: str, reason: str | None = None, **fields: Any) -> Row:
        return Row(
            run_id=run_id,
            cell=cell.key,
            repeat=cell.repeat,
            status=status,
            reason=reason,
            started_at=started_at,
            wall_s=round(time.monotonic() - t0, 3),
            **fields,
        )

    if unavailable := MODELS[cell.key.model].unavailable_reason():
        return row("skipped", f"model unavailable here: {unavailable}")
    busy_before = machine_busy(BUSY_SAMPLE_S)
    server = ServerProcess(
        cell.key.model,
        cell.key.protocol,
        extra_args=server_args(cell, matrix),
        cpus=plan.server,
        allocator=matrix.allocator,
        cwd=server_root,
    )
    try:
        server.start()
    except ServerStartError as exc:
        return row("failed", f"server did not start: {exc}", busy_before=busy_before)
    load: LoadResult | None = None
    failure = None
    hdr_log = None
    probe_rps = None
    if cell.key.load.startswith("f"):
        probe_rps = probe_capacity(cell, server.port, matrix, plan, run_id)
        if probe_rps is None:
            server.stop()
            return row("failed", "the capacity probe got no reply", busy_before=busy_before)
    if run_dir is not None and cell.key.driver == "loadgen":
        (run_dir / "hdr").mkdir(exist_ok=True)
        hdr_log = f"hdr/{slug}.hlog"
    try:
        sampler = ServerSampler(server.pid).start()
        cores = CoreSampler(list(plan.server)).start()
        try:
            command = load_command(cell, server.port, matrix, plan, probe_rps, shared)
            if hdr_log is not None and run_dir is not None:
                command += ["--interval-log", str(run_dir / hdr_log)]
            done = subprocess.run(
                command,
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
        assert server.proc is not None  # started
        crashed = server.proc.poll()
    finally:
        stop_code = server.stop()
    server_log = None
    if run_dir is not None and (text := server.log_text()):
        (run_dir / "logs").mkdir(exist_ok=True)
        server_log = f"logs/{slug}.log"
        (run_dir / server_log).write_text(text, encoding="utf-8")
    if crashed is not None:
        failure = (
            f"server exited with code {crashed} during the run: "
            f"{server.stderr.strip()[-200:] or 'no output'}"
        )
    sample["counters"] = {
        k: v for k, v in (server.stopped or {}).items() if k not in ("event", "model")
    }
    figures: dict[str, Any] = {
        "load": load,
        "server": sample,
        "server_cpu_us_per_request": cpu_per_request(sampler, load),
        "server_core_us_per_request": core_per_request(cores, load),
        "busy_before": busy_before,
        "server_log": server_log,
        "probe_rps": probe_rps,
    }
    if load is not None and hdr_log is not None and load.interval_log:
        load = replace(load, interval_log=hdr_log)  # relative to the run folder
        figures["load"] = load
    if failure is None and (load is None or not load.requests):
        failure = "no request completed in the window (server hung or refused every connection)"
    if stop_code != 0 and crashed is None:  # the stop at the end went wrong
        stop_note = (
            "server did not stop within 5 s of SIGTERM and was killed"
            if stop_code == -9
            else f"server exited with code {stop_code} on SIGTERM: "
            f"{(server.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
        )
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


def probe_capacity(
    cell: Cell, port: int, matrix: Matrix, plan: CpuPlan, run_id: str
) -> float | None:
    """A cell's closed-loop throughput, the capacity its sweep steps are shares of:
    measured once per cell key and repeat (PROBE_S), then kept for the other steps."""
    closed = replace(cell, key=replace(cell.key, load=""))
    key = (run_id, closed.key.key, cell.repeat)
    if key not in _PROBES:
        short = replace(matrix, duration=PROBE_S, warmup=min(matrix.warmup, 0.3))
        try:
            done = subprocess.run(
                load_command(closed, port, short, plan),
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
    if done.returncode != 0:
        return load, f"load generator exited with code {done.returncode}"
    return load, None


def cpu_per_request(sampler: ServerSampler, load: LoadResult | None) -> float | None:
    """Server CPU microseconds per request (process view), over the load generator's
    window when it says when that was, else over the whole run (an overestimate)."""
    if load is None or not load.requests:
        return None
    spent = None
    if load.window is not None:
        spent = sampler.cpu_between(load.window.start_unix, load.window.end_unix)
    if spent is None:
        summary = sampler.summary()
        spent = summary["cpu_user_s"], summary["cpu_sys_s"]
    return round(sum(spent) * 1e6 / load.requests, 3)


def core_per_request(cores: CoreSampler, load: LoadResult | None) -> float | None:
    """Server CPU microseconds per request (core view): the server CPUs' busy time in
    the window, softirq included, per request; whatever else ran there counts too."""
    if load is None or not load.requests or load.window is None:
        return None
    seconds = cores.busy_seconds(load.window.start_unix, load.window.end_unix)
    return None if seconds is None else round(seconds * 1e6 / load.requests, 3)

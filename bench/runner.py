"""One cell: start the server, sample it, drive the load, stop it, make the row.

Failures are data: a server that does not start, dies or hangs gives a `failed` row
and the matrix goes on. Ctrl-C stops the current cell (its processes are killed by
the context managers below) and propagates, so the caller can keep what is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench.cpus import CpuPlan
from bench.matrix import Cell, Matrix
from bench.record import Row
from bench.sampler import ServerSampler
from bench.server_process import ServerProcess, ServerStartError
from common.cpus import format_cpu_list
from servers import MODELS

SATURATED = "client-bound: a load-generator worker was over 90% CPU in the window"


def load_command(cell: Cell, port: int, matrix: Matrix, plan: CpuPlan) -> list[str]:
    key = cell.key
    common = [
        "--target",
        f"127.0.0.1:{port}",
        "--protocol",
        key.protocol,
        "--duration",
        f"{matrix.duration:g}",  # 2, not 2.0: locust runs whole seconds
        "--payload",
        str(key.payload),
        "--quiet",
    ]
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
    ]


def load_timeout(cell: Cell, matrix: Matrix) -> float:
    """Generous: connecting 10k sockets at a paced rate takes seconds, not minutes."""
    return matrix.warmup + matrix.duration + 30 + cell.key.connections / 200


def server_args(cell: Cell, matrix: Matrix) -> list[str]:
    args = []
    if matrix.inject_delay_us:
        args += ["--inject-delay-us", str(matrix.inject_delay_us)]
    if cell.key.backlog:
        args += ["--backlog", str(cell.key.backlog)]
    if cell.key.work:
        args += ["--work", cell.key.work]
    return args


def run_cell(cell: Cell, matrix: Matrix, plan: CpuPlan, run_id: str) -> Row:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()

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
    server = ServerProcess(
        cell.key.model, cell.key.protocol, extra_args=server_args(cell, matrix), cpus=plan.server
    )
    try:
        server.start()
    except ServerStartError as exc:
        return row("failed", f"server did not start: {exc}")
    load: dict[str, Any] = {}
    failure = None
    try:
        sampler = ServerSampler(server.pid).start()
        try:
            done = subprocess.run(
                load_command(cell, server.port, matrix, plan),
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
        assert server.proc is not None  # started
        crashed = server.proc.poll()
    finally:
        stop_code = server.stop()
    if crashed is not None:
        failure = (
            f"server exited with code {crashed} during the run: "
            f"{server.stderr.strip()[-200:] or 'no output'}"
        )
    sample["counters"] = {
        k: v for k, v in (server.stopped or {}).items() if k not in ("event", "model")
    }
    cpu_us = cpu_per_request(sampler, load)
    if failure is None and not load.get("requests"):
        failure = "no request completed in the window (server hung or refused every connection)"
    if stop_code != 0 and crashed is None:  # the stop at the end went wrong
        stop_note = (
            "server did not stop within 5 s of SIGTERM and was killed"
            if stop_code == -9
            else f"server exited with code {stop_code} on SIGTERM: "
            f"{(server.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
        )
        failure = f"{failure}; {stop_note}" if failure else stop_note
    if failure:
        return row(
            "failed", failure.strip(), load=load, server=sample, server_cpu_us_per_request=cpu_us
        )
    saturated = bool(load.get("client", {}).get("saturated"))
    return row(
        "client-bound" if saturated else "ok",
        SATURATED if saturated else None,
        load=load,
        server=sample,
        server_cpu_us_per_request=cpu_us,
    )


def parse_load(done: subprocess.CompletedProcess[str]) -> tuple[dict[str, Any], str | None]:
    try:
        load = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {}, f"load generator failed (exit code {done.returncode}): {last}"
    if done.returncode != 0:
        return load, f"load generator exited with code {done.returncode}"
    return load, None


def cpu_per_request(sampler: ServerSampler, load: dict[str, Any]) -> float | None:
    """Server CPU microseconds per request, over the load generator's window when it
    says when that was, else over the whole run (an overestimate by the warm-up)."""
    requests = load.get("requests") or 0
    if not requests:
        return None
    window = load.get("window") or {}
    spent = None
    if window.get("start_unix") and window.get("end_unix"):
        spent = sampler.cpu_between(window["start_unix"], window["end_unix"])
    if spent is None:
        summary = sampler.summary()
        spent = summary["cpu_user_s"], summary["cpu_sys_s"]
    return round(sum(spent) * 1e6 / requests, 3)

"""Running one load test: the worker processes behind a barrier, then their merged result.

`run(config)` validates the configuration, plans the workers (clients.engine.config),
forks one process per plan (clients.engine.worker), waits until every one has connected,
starts them all from the same instant (warm-up, then the same measured window), and
merges what they report (clients.engine.merge). A worker that crashes or hangs is a
LoadgenError: the load generator itself failed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from clients.engine.config import LoadConfig, make_plans, resolve, validate
from clients.engine.connections import CONNECT_WINDOW
from clients.engine.histlog import write_interval_log
from clients.engine.merge import build_result, interval_histograms
from clients.engine.plan import WorkerPlan
from clients.engine.worker import WorkerResult, worker_main
from clients.result import LoadResult, ServerCpu, Window
from clients.server_cpu import PACE_S
from clients.server_cpu import server_cpu as server_cpu_of
from common import cpustat
from common.cputime import CpuReading, tree_cpu
from common.process import STOP_SIGNALS

START_MARGIN_S = 0.05  # time for the start message to reach every worker
RESULT_GRACE_S = 30.0  # how long past the window's end a worker may take to report


Child = tuple[BaseProcess, Connection]  # a worker process and our end of its pipe


class LoadgenError(RuntimeError):
    """The load generator itself failed (a worker crashed or hung)."""


def run(config: LoadConfig, interval_log: str | None = None) -> LoadResult:
    """Run one load test and return its result; with `interval_log`, also write the
    window's interval histograms there (HdrHistogram interval-log format).

    Raises ConfigError for a bad configuration (nothing was sent) and LoadgenError when
    a worker crashed; errors of the target (refused, reset, mismatch...) are counted.
    """
    validate(config)
    family, address = resolve(config)
    plans = make_plans(config, family, address)
    results, window, cores_busy, server_cpu = _drive(config, plans)
    slices = interval_histograms(results, config.duration)  # merged once, used twice
    if interval_log is not None:
        with open(interval_log, "w") as stream:
            write_interval_log(
                stream,
                window.start_unix,
                slices,
                comment=f"sockbench.loadgen {config.protocol} to {config.target}, "
                f"{config.connections} connections",  # the writer adds the unit
            )
    result = build_result(config, plans, results, slices, window, cores_busy, interval_log)
    return replace(result, server_cpu=server_cpu)


def _drive(
    config: LoadConfig, plans: Sequence[WorkerPlan]
) -> tuple[list[WorkerResult], Window, float | None, ServerCpu | None]:
    """Run the workers; their results, the window in wall-clock time, how busy the
    client's CPUs were in it (%) and, with a server pid, its CPU time over the window."""
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
        first = _server_cpu_now(config)  # first: the edge's instant matters most here
        before = cpustat.ticks(cores)
        _sleep_until(window_start + int(min(PACE_S, config.duration / 4) * 1e9))
        pace = _server_cpu_now(config)
        _sleep_until(end)
        last = _server_cpu_now(config)
        cores_busy = cpustat.busy_percent(before, cpustat.ticks(cores))
        server_cpu = (
            None
            if config.server_pid is None
            else server_cpu_of(config.server_pid, (first, pace, last), window_start, end)
        )
        limit = (end - time.monotonic_ns()) / 1e9 + config.timeout + RESULT_GRACE_S
        return _gather(workers, "result", limit), window, cores_busy, server_cpu
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


def _server_cpu_now(config: LoadConfig) -> CpuReading | None:
    return None if config.server_pid is None else tree_cpu(config.server_pid)


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

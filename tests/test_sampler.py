"""The server sampler (CPU, memory and counts summed over a forking server's processes)
and the core sampler (how busy a CPU is, from /proc/stat)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from bench.run.sampler import CoreSampler, ServerSampler, interpolate
from clients.engine.config import LoadConfig
from clients.engine.drive import run

# the tests with real servers, load or a spinning process are marked `real` one by one:
# the pure ones (interpolation, the busy share) run in `make test-fast` too


@pytest.mark.real
def test_a_prefork_servers_children_count_in_its_cpu_memory_and_fds(server_factory) -> None:
    server = server_factory("prefork", "echo", "--workers", "2")
    main = psutil.Process(server.pid)
    deadline = time.monotonic() + 5
    while not main.children() and time.monotonic() < deadline:
        time.sleep(0.01)
    (child,) = main.children()
    main_before, child_before = sum(main.cpu_times()[:2]), sum(child.cpu_times()[:2])
    sampler = ServerSampler(server.pid).start()
    result = run(
        LoadConfig(
            target=f"127.0.0.1:{server.port}",
            protocol="echo",
            payload=64,
            connections=40,
            processes=1,
            duration=1.0,
            warmup=0.2,
        )
    )
    summary = sampler.stop()
    main_spent = sum(main.cpu_times()[:2]) - main_before
    child_spent = sum(child.cpu_times()[:2]) - child_before
    assert result.requests > 0 and result.error_count == 0
    assert child_spent > 0.1  # SO_REUSEPORT gave the child some of the 40 connections
    total = summary["cpu_user_s"] + summary["cpu_sys_s"]
    assert total > main_spent + 0.8 * child_spent
    assert summary["peak_rss_bytes"] > main.memory_info().rss
    assert summary["peak_fds"] > main.num_fds()


def test_interpolate_between_samples_and_clamps_outside() -> None:
    samples = [(10.0, 0.0, 100.0), (20.0, 50.0, 200.0)]
    assert interpolate(samples, 15.0) == (25.0, 150.0)
    assert interpolate(samples, 5.0) == (0.0, 100.0)
    assert interpolate(samples, 25.0) == (50.0, 200.0)


@pytest.mark.real
def test_core_sampler_sees_a_spinning_process_as_a_busy_core() -> None:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    sampler = CoreSampler([cpu], interval=0.05).start()
    spin = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass",
        ],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        start = time.time() + 0.3  # past the interpreter's start-up
        spin.wait(timeout=10)
        end = time.time() - 0.1
    finally:
        if spin.poll() is None:
            spin.kill()
            spin.wait()
        sampler.stop()
    busy = sampler.busy_percent(start, end)
    assert busy is not None and busy > 80


def test_busy_share_of_a_full_core_is_at_most_100() -> None:
    """Busy and total ticks are interpolated apart; rounding once gave 100.00000000003."""
    sampler = CoreSampler([0])
    sampler.samples = [(1000.0, 99, 100), (1001.0, 1099, 1100)]  # busy every tick between
    assert sampler.busy_percent(1000.13, 1000.93) == 100.0

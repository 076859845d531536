"""common.cputime: a process tree's CPU time in nanoseconds, against the process's own
count of it; and how the load generator takes it at the window's edges. The processes
spin on this machine for a fraction of a second; they serve nothing, so these run in
`make test-fast` too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager

from clients.server_cpu import server_cpu
from common.cputime import CpuReading, descendants, schedstat_ns, tree_cpu

# Spins for the CPU seconds given on its command line (in a thread that then exits, when
# asked), forks a spinning child when asked, then prints its own CPU time (ns, all
# threads) and that of its child, and waits for its stdin to close.
SPINNER = textwrap.dedent(
    """
    import os, sys, threading, time

    def spin(seconds):  # on its own CPU clock: a busy machine slows it, never shortens it
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    seconds, mode = float(sys.argv[1]), sys.argv[2]
    child_ns = 0
    if mode == "thread":
        worker = threading.Thread(target=spin, args=(seconds,))
        worker.start()
        worker.join()
    elif mode == "fork":
        read, write = os.pipe()
        if os.fork() == 0:
            spin(seconds)
            os.write(write, str(time.process_time_ns()).encode())
            os.close(write)
            sys.stdin.read()
            os._exit(0)
        child_ns = int(os.read(read, 64))
    else:
        spin(seconds)
    print(time.process_time_ns(), child_ns, flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def spinner(seconds: float, mode: str = "") -> Iterator[tuple[int, int, int]]:
    """(pid, its own CPU ns, its child's) once it has spun and stopped, still alive."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SPINNER, str(seconds), mode or "plain"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        own, child = map(int, proc.stdout.readline().split())
        yield proc.pid, own, child
    finally:
        proc.kill()
        proc.wait()


def test_a_process_cpu_time_is_read_to_the_nanosecond_clock() -> None:
    with spinner(0.3) as (pid, own, _):
        reading = tree_cpu(pid)
    assert reading is not None and reading.how == "clock" and reading.processes == 1
    # what it said of itself, plus the print after it: well under a 10 ms tick
    assert 0 <= reading.cpu_ns - own < 2_000_000, (reading, own)
    assert own > 250_000_000
    assert reading.before_ns <= reading.after_ns


def test_threads_that_exited_still_count() -> None:
    """A process's CPU clock keeps its exited threads' time; its live threads' schedstat
    does not: the reason the clock comes first."""
    with spinner(0.3, "thread") as (pid, own, _):
        reading = tree_cpu(pid)
        live = schedstat_ns(pid)
    assert reading is not None and live is not None
    assert 0 <= reading.cpu_ns - own < 2_000_000
    assert reading.cpu_ns - live > 250_000_000  # the spinning thread has exited


def test_a_forked_worker_counts_as_the_server_s() -> None:
    with spinner(0.3, "fork") as (pid, own, child):
        assert len(descendants(pid)) == 1
        reading = tree_cpu(pid)
    assert reading is not None and reading.processes == 2
    assert child > 250_000_000
    assert 0 <= reading.cpu_ns - (own + child) < 4_000_000


def test_a_process_that_is_gone_has_no_reading() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert tree_cpu(proc.pid) is None and schedstat_ns(proc.pid) is None


def test_a_late_first_reading_is_carried_back_to_the_window_s_start() -> None:
    """The load generator's readings come late (its workers hold the client CPU): the
    first is carried back to the edge at the rate of the next span, the last is taken
    as it is (the load has stopped)."""

    def at(mid_ms: float, cpu_ms: float) -> CpuReading:
        mid = int(mid_ms * 1e6)
        return CpuReading(int(cpu_ms * 1e6), mid - 20_000, mid + 20_000, 1, "clock")

    # busy at 0.9 CPU from the start (1,000 ms) on; readings 3 ms and 2 ms late
    first, pace, last = at(1003, 502.7), at(1102, 591.8), at(2002, 1400.0)
    spent = server_cpu(42, (first, pace, last), 1_000_000_000, 2_000_000_000)
    assert spent is not None and spent.pid == 42
    assert spent.cpu_ns == round((1400.0 - 500.0) * 1e6)  # 0.9 of the 1 s window
    assert (spent.late_start_us, spent.late_end_us) == (3000.0, 2000.0)
    assert server_cpu(42, (first, None, last), 1_000_000_000, 2_000_000_000) is None


def test_the_load_generator_refuses_a_server_pid_that_is_not_there() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    done = subprocess.run(
        [sys.executable, "-m", "clients.loadgen", "--target", "127.0.0.1:9",
         "--server-pid", str(gone.pid), "--duration", "0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"server pid {gone.pid}: no such process" in done.stderr.strip().splitlines()[-1]

"""Linux perf on the server CPUs, switched on for exactly one phase.

`perf stat` or `perf record` starts with its events disabled (`--delay -1`) and is
switched on and off through its control fifo, because setting the events up takes a
second or more and must not fall inside the phase. `cat` is the workload perf waits
for; it ends when its stdin (ours) closes, and perf then writes its output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.cpus import format_cpu_list

# Every call (raw_syscalls:sys_enter), and these by name: opening all ~360
# syscalls:sys_enter_* tracepoints took 16 s here; the rest shows as "other".
CALLS = (
    "read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait "
    "epoll_ctl poll ppoll select pselect6 accept accept4 close shutdown futex getpid "
    "gettid ioctl mmap munmap brk madvise rt_sigreturn tgkill clock_nanosleep "
    "sched_yield newfstat fcntl getsockopt setsockopt"
).split()
TOTAL = "raw_syscalls:sys_enter"
WAIT_S = 30.0  # for perf to set its events up and answer a control word
# perf record's sampling period, in on-CPU nanoseconds (about 2997 a second): not a
# multiple of the kernel's tick. The software clock samples by time everywhere; the
# default event (cycles) depends on a PMU, and on CI's machine it gave no samples.
SAMPLE_NS = 333_667
STACK_BYTES = 8192  # of user stack per sample: from a system call up to the Python frame
NO_PYTHON = "(no Python frame)"


def on_cpus(cpus: Sequence[int]) -> list[str]:
    """perf's target: everything that runs on `cpus`."""
    return ["-a", "-C", format_cpu_list(cpus)]


def of_processes(pids: Sequence[int]) -> list[str]:
    """perf's target: these processes (every thread they have when perf starts) alone."""
    return ["-p", ",".join(map(str, sorted(pids)))]


class PerfSession:
    """One `perf stat` or `perf record` on `target` (on_cpus, of_processes); `note` says
    why there are no figures when perf is missing, refused or failed."""

    def __init__(self, command: str, args: Sequence[str], target: Sequence[str], folder: Path):
        self.note: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = ""
        self._ctl: int | None = None
        self._ack: int | None = None
        self._closed = False
        self._failed: str | None = None
        self._fifos: tuple[Path, ...] = ()
        if shutil.which("perf") is None:
            self.note = "perf is not installed (Debian: linux-perf)"
            return
        ctl, ack = folder / f".perf-{command}-ctl", folder / f".perf-{command}-ack"
        for fifo in (ctl, ack):
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        self.proc = subprocess.Popen(
            ["perf", command, "--delay", "-1", "--control", f"fifo:{ctl},{ack}", *target,
             *args, "--", "cat"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Non-blocking opens and reads: a perf that fails before it opens its ends
        # (not permitted, no such event) must not leave us waiting forever.
        self._ctl = _open_writer(ctl, self.proc)
        self._ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
        # The names go in close(): perf opens the ack fifo after the control one, and
        # took it away from perf once in 45 sessions when unlinked here.
        self._fifos = (ctl, ack)

    def _command(self, word: str) -> bool:
        """Send perf a control word; whether it acknowledged it within WAIT_S."""
        if self.proc is None or self._ctl is None or self._ack is None:
            return False
        os.write(self._ctl, f"{word}\n".encode())
        reply, deadline = b"", time.monotonic() + WAIT_S
        while b"\n" not in reply:  # perf writes "ack\n\0"
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            try:
                reply += os.read(self._ack, 64)  # b"": perf has not opened its end yet
            except BlockingIOError:
                pass
            if b"\n" not in reply:
                time.sleep(0.002)
        return reply.strip(b"\x00\n") == b"ack"

    def measure(self, seconds: float) -> tuple[float, float]:
        """Events on for `seconds`; the (start, end) unix times they were on."""
        on = self._command("enable")
        start = time.time()
        time.sleep(seconds)
        end = time.time()
        if not on:
            self._failed = "perf did not start counting"
        elif not self._command("disable"):
            self._failed = "perf stopped in the middle of the phase"
        return start, end

    def close(self) -> None:
        """Stop perf (it writes its output); `stderr` keeps what it said. Idempotent."""
        if self.proc is None or self._closed:
            return
        self._closed = True
        for fd in (self._ctl, self._ack):
            if fd is not None:
                os.close(fd)
        for fifo in self._fifos:
            fifo.unlink(missing_ok=True)
        try:
            _, self.stderr = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        if self.proc.returncode != 0:  # what perf said is the better reason
            said = [line.strip() for line in self.stderr.splitlines() if line.strip()]
            first = next((line for line in said if "rror" in line), said[0] if said else "")
            self.note = f"perf failed: {first[:160] or 'no output'}"
        else:
            self.note = self._failed


def _open_writer(path: Path, proc: subprocess.Popen[str]) -> int | None:
    """Our write end of a control fifo, once perf has opened its read end; None if perf
    exits (or WAIT_S passes) before that."""
    deadline = time.monotonic() + WAIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            time.sleep(0.01)
    return None


def syscall_counter(pids: Sequence[int], folder: Path) -> PerfSession:
    """The server's own system calls: counted on its processes, not on its CPUs, where
    anything else the scheduler puts there (a test runner, a CPU hog's neighbours) would
    count too. `cat` only keeps perf alive until close()."""
    events = ["-e", TOTAL]
    for name in CALLS:
        events += ["-e", f"syscalls:sys_enter_{name}"]
    return PerfSession("stat", ["-x", ",", *events], of_processes(pids), folder)


def profiler(cpus: Sequence[int], data: Path, callchains: bool = False) -> PerfSession:
    """`perf record` of on-CPU time; with `callchains`, each sample's user stack too
    (DWARF unwinding: CPython is built without frame pointers), which is how perf finds
    the Python function a sample falls in (Python 3.12+'s perf trampolines)."""
    args = ["-e", "cpu-clock", "-c", str(SAMPLE_NS), "-o", str(data)]
    if callchains:
        args += ["--call-graph", f"dwarf,{STACK_BYTES}"]
    return PerfSession("record", args, on_cpus(cpus), data.parent)


def parse_stat(text: str) -> Counter[str]:
    """`perf stat -x ,` output: event -> count (events perf could not count left out)."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[0].strip().isdigit():
            counts[fields[2]] += int(fields[0])
    return counts


_SAMPLE = re.compile(r"^\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")  # pid ip sym (dso)
_HEAD = re.compile(r"^\s*(\d+)\s*$")  # a callchain's first line: the pid
_FRAME = re.compile(r"^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")  # ip sym (dso)


@dataclass(frozen=True)
class Samples:
    """`perf record`'s samples of some processes."""

    by_symbol: Counter[tuple[str, str]]  # (symbol, shared object) sampled -> count
    # (innermost Python function on the stack, part the sample is in) -> count; empty
    # without callchains
    by_function: Counter[tuple[str, str]]
    seen: int  # samples of any process, idle included


def samples(data: Path, pids: set[int]) -> Samples:
    """Read `perf record`'s data: the samples of these processes."""
    done = subprocess.run(
        ["perf", "script", "--no-inline", "-i", str(data), "-F", "pid,ip,sym,dso"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return parse_script(done.stdout, pids)


def parse_script(text: str, pids: set[int]) -> Samples:
    """`perf script -F pid,ip,sym,dso` output, one line per sample or, with callchains,
    the pid on a line and the stack below it, innermost first, up to a blank line."""
    by_symbol: Counter[tuple[str, str]] = Counter()
    by_function: Counter[tuple[str, str]] = Counter()
    seen = 0

    def count(pid: int, stack: list[tuple[str, str]], chained: bool) -> None:
        nonlocal seen
        seen += 1
        if pid not in pids or not stack:
            return
        symbol, dso = stack[0]
        by_symbol[(symbol or "?", dso)] += 1
        if chained:
            python = next((python_function(s) for s, _ in stack if s.startswith("py::")), None)
            by_function[(python or NO_PYTHON, part(dso))] += 1

    pid, stack = None, []
    for line in (*text.splitlines(), ""):
        if pid is not None:
            if frame := _FRAME.match(line):
                stack.append((frame[1], frame[2]))
                continue
            count(pid, stack, True)
            pid, stack = None, []
        if match := _SAMPLE.match(line):
            count(int(match[1]), [(match[2], match[3])], False)
        elif match := _HEAD.match(line):
            pid = int(match[1])
    return Samples(by_symbol, by_function, seen)


def python_function(symbol: str) -> str:
    """A perf trampoline's symbol, `py::Class.method:/path/to/file.py`, as
    `Class.method (to/file.py)`."""
    name, _, path = symbol.removeprefix("py::").rpartition(":")
    if not name:
        return symbol
    return f"{name} ({'/'.join(path.split('/')[-2:])})"


def part(dso: str) -> str:
    """Which part of the stack a shared object is: kernel, interpreter, libc, or the
    extension module's name."""
    name = dso.rsplit("/", 1)[-1]
    if dso == "[kernel.kallsyms]":
        return "kernel"
    if name.startswith("libpython") or re.fullmatch(r"python3?[\d.]*", name):
        return "interpreter"
    if name.startswith("libc.so") or name.startswith("libm.so"):
        return "libc"
    if ".cpython-" in name or name.endswith(".so") or ".so." in name:
        return name.split(".")[0].removeprefix("lib")
    return "other"

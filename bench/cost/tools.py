"""The counters a server runs under, each as a command prefix and a reader of its totals.

cachegrind (no cache simulation) counts the instructions each process executes in user
space: the interpreter, libc and the extension modules, not the kernel. strace counts
each system call by name, every thread and child included. Both see a whole process,
start-up and shut-down included; `measure` cancels those with two request counts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

VALGRIND = "valgrind"
STRACE = "strace"
INSTALL = {VALGRIND: "Debian: apt-get install valgrind", STRACE: "Debian: apt-get install strace"}
# threaded holds a thread per idle connection; valgrind's default allows 500 threads
MAX_THREADS = 4096


def missing(program: str) -> str | None:
    """Why `program` cannot run here, in one line, or None."""
    if shutil.which(program) is None:
        return f"{program} is not installed ({INSTALL[program]})"
    return None


def version(program: str) -> str:
    """`valgrind-3.19.0`, `strace 6.1`: the first line its version option prints."""
    option = "--version" if program == VALGRIND else "-V"
    done = subprocess.run([program, option], capture_output=True, text=True, timeout=30)
    first = (done.stdout or done.stderr).strip().splitlines()
    if program == STRACE and first:  # "strace -- version 6.1"
        return "strace " + first[0].split()[-1]
    return first[0] if first else f"{program} (version unknown)"


def cachegrind(folder: Path) -> list[str]:
    """The prefix that counts instructions into folder/cg.<pid>, one file per process
    (prefork's children write their own)."""
    return [
        VALGRIND,
        "--tool=cachegrind",
        "--cache-sim=no",
        f"--max-threads={MAX_THREADS}",
        f"--cachegrind-out-file={folder}/cg.%p",
    ]


def instructions(folder: Path) -> int:
    """The instructions every process counted into `folder` executed, together."""
    total, files = 0, sorted(folder.glob("cg.*"))
    for path in files:
        found = re.search(r"^summary:\s+(\d+)", path.read_text(errors="replace"), re.M)
        if found is None:
            raise ValueError(f"{path.name}: cachegrind wrote no summary")
        total += int(found.group(1))
    if not files:
        raise ValueError("cachegrind wrote no output")
    return total


def strace(folder: Path) -> list[str]:
    """The prefix that counts system calls, every thread and child, into folder/strace."""
    return [STRACE, "-f", "-c", "-o", str(folder / "strace")]


def system_calls(folder: Path) -> dict[str, int]:
    """{name: calls} from strace's table, with "total"."""
    counts: dict[str, int] = {}
    # "% time  seconds  usecs/call  calls  errors  syscall": the errors column is blank
    # for a call that never failed, so calls is the fourth field and the name the last
    for line in (folder / "strace").read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) in (5, 6) and fields[3].isdigit():
            counts[fields[-1]] = int(fields[3])
    if "total" not in counts:
        raise ValueError("strace's table has no total")
    return counts

"""A run's settings as both sides of the record know them: `run`, which checks and applies
them, and `report`, which tells them back from metadata.json (neither imports the other).

MatrixError is a bad profile or flag (bench.run.matrix's, and bench.report.build's
subset flags); the bench's entry point turns it into one usage line, exit 2.
ALLOCATOR_POLICIES are the choices of `--allocator`: bench.run.server_process applies one
to every server's environment, bench.report.facts says it in words (allocator_text).
"""

from __future__ import annotations


class MatrixError(ValueError):
    """A bad profile or flag: reported as a one-line usage error."""


# glibc moves its mmap threshold up to a freed mmapped block's size, and its trim
# threshold to twice that, the first time a process frees one with free(). A fresh
# server has not: asyncio's 256 KiB reads then cost an mmap, an mremap and a munmap
# each, until one connection's EOF frees such a block and the server turns 3x faster
# (docs/models.md). "warm" starts every server in the state a long-running one reaches;
# "cold" keeps the fresh process's defaults.
ALLOCATOR_POLICIES = {
    "warm": {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "2097152"},
    "cold": {},
}


def allocator_text(policy: str = "warm") -> str:
    """The policy in words, for the report's header."""
    settings = " ".join(f"{k}={v}" for k, v in ALLOCATOR_POLICIES[policy].items())
    if policy == "warm":
        return f"glibc malloc as a long-running server has it ({settings}), every server"
    return "glibc malloc as a fresh process has it (dynamic thresholds), every server"

"""Process plumbing: a child that dies with its parent, and the descriptor limit."""

from __future__ import annotations

import ctypes
import os
import resource
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (PR_SET_PDEATHSIG).

    The setting is not inherited across fork, so every forked or spawned child calls
    it for itself. With `parent_pid`, a parent that died before the call took effect
    is noticed too: then this process exits at once. Elsewhere than Linux, a no-op.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return that limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard

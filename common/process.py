"""Process plumbing: a child that dies with its parent, and the descriptor limit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Callable, Iterator

PR_SET_PDEATHSIG = 1
# The signals that stop every long-running process here: kill and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _find_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux
    return prctl


# Looked up once, here: die_with_parent often runs between fork and exec (preexec_fn),
# where a dlopen() could wait forever on a loader lock another thread held at the fork.
_PRCTL = _find_prctl()


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent exits (PR_SET_PDEATHSIG).

    The setting is not inherited across fork, so every forked or spawned child calls
    it for itself. With `parent_pid`, a parent that died before the call took effect
    is noticed too: then this process exits at once. Elsewhere than Linux, a no-op.
    """
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Around starting threads: they inherit the blocked mask, so that a SIGTERM can
    only land on the main thread (see block_stop_signals), with no window in between."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def block_stop_signals() -> None:
    """In a helper thread: leave SIGINT and SIGTERM to the main thread.

    Linux hands a process-directed signal to any thread that does not block it; one
    that lands on a helper thread leaves the main thread asleep in its system call
    until that returns, so Ctrl-C could wait for a whole load run."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return that limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard

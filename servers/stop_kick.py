"""Make a stop signal reach the main thread's Python handler even while it blocks.

CPython runs a Python signal handler only between the main thread's bytecodes. The C
handler that catches the signal merely marks it. If the signal lands just before the
main thread enters a blocking call (accept(), epoll_wait() with no timeout), or on
another thread, nothing interrupts that call, and the handler waits until the call
returns, which on an idle server may be never (seen: threadpool asleep in accept() 5 s
after SIGTERM, its handler never run). The C handler also writes the signal's number
to the wakeup fd; a helper thread waiting there re-sends the signal to the main thread
until the Python handler has run, so that one kick lands inside the call (EINTR, and
PEP 475 runs the handler before retrying).

Contract: every stop handler of ours starts by setting SIG_IGN for the stop signals, so
"the handler has run" is "the signal is no longer handled by a Python function".
asyncio, uvloop and gevent install their own wakeup fd or signal handling; with them
this helper is never woken and does nothing.
"""

from __future__ import annotations

import os
import signal
import threading

from common.process import STOP_SIGNALS, stop_signals_blocked

KICK_S = 0.02  # between kicks
KICKS = 100  # 2 s of kicks at most: the harness kills a server 5 s after SIGTERM


def watch_stop_signals() -> None:
    """From the main thread, after installing the stop handlers (see the module)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # set_wakeup_fd requires it
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    main = threading.get_ident()
    with stop_signals_blocked():  # so that the signals keep landing on the main thread
        threading.Thread(target=_kick, args=(read_fd, main), name="stop-kick", daemon=True).start()


def _kick(read_fd: int, main: int) -> None:
    while True:
        try:
            arrived = os.read(read_fd, 64)  # one byte per signal caught by a C handler
        except OSError:
            return
        if not arrived:
            return
        stops = [signum for signum in arrived if signum in STOP_SIGNALS]
        if stops:
            break
    signum, pause = stops[0], threading.Event()
    for _ in range(KICKS):
        if not callable(signal.getsignal(signum)):
            return  # the Python handler ran (it ignores further stops first)
        try:
            signal.pthread_kill(main, signum)
        except (ProcessLookupError, OSError):
            return
        pause.wait(KICK_S)

"""servers.stop_kick: a stop signal whose C handler ran on another thread, while the main
thread sleeps in accept(), still runs the main thread's Python handler.

This is the race behind the threadpool server that ignored SIGTERM under a CPU hog:
nothing interrupted its accept(), so its handler never ran. Here the signal is made to
land on a helper thread on purpose, once the main thread is seen asleep in accept()."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.real  # processes and sockets: not in `make test-fast`

SCRIPT = textwrap.dedent(
    """
    import signal, socket, sys, threading
    from servers.stop_kick import watch_stop_signals

    class Stop(BaseException):
        pass

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_IGN)  # the contract stop_kick relies on
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    if sys.argv[1] == "kick":
        watch_stop_signals()
    listener = socket.create_server(("127.0.0.1", 0))
    main_tid = threading.get_native_id()

    def in_accept():
        with open(f"/proc/self/task/{main_tid}/wchan") as f:
            return "accept" in f.read()

    def catch_it_here():
        # wait (no timeout: the test bounds it) until the main thread sleeps in accept()
        while not in_accept():
            threading.Event().wait(0.001)
        # SIGTERM unblocked here: its C handler runs on this thread, not the main one
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=catch_it_here, daemon=True).start()
    try:
        listener.accept()
    except Stop:
        print("stopped", flush=True)
    """
)


def _run(mode: str, timeout: float) -> subprocess.CompletedProcess | None:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def test_without_the_kick_the_handler_waits_for_accept_to_return() -> None:
    # the control: shows the scenario is real (it would wait forever; 1 s is enough)
    assert _run("plain", timeout=1.0) is None


def test_the_kick_runs_the_handler_and_the_blocking_call_ends() -> None:
    done = _run("kick", timeout=20.0)
    assert done is not None, "still in accept() 20 s after the signal"
    assert done.returncode == 0
    assert "stopped" in done.stdout.split()

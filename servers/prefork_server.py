"""prefork: N processes, each an epoll loop on its own SO_REUSEPORT listening socket.

The kernel spreads new connections over the sockets bound to the port (by a hash of
the addresses), so N processes use N cores with no GIL and no shared state. The parent
is worker 0: it serves on the launcher's listener, which it must not close (connections
queued there since the ready line would be reset). Workers 1..N-1 are forked children,
each pinned to one CPU of the set, dying with the parent (PR_SET_PDEATHSIG). A child's
counters pipe is watched in the parent's epoll loop: it turns readable only when the
child exits, and then the parent reaps it and forks a replacement (at most
MAX_RESTARTS), counting `workers_restarted` and saying so in an event line. On stop
the parent SIGTERMs the children, waits at most 1.5 s, SIGKILLs stragglers, and adds
the counters each child sent back over its pipe (JSON) to its own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import NoReturn

from common.process import STOP_SIGNALS, die_with_parent
from servers import epoll_server
from servers.conn import Counters
from servers.listener import open_listener
from servers.protocol import ServerProtocol
from servers.stop_kick import watch_stop_signals

STOP_WAIT = 1.5  # seconds for children to stop before SIGKILL: the launcher has 2 s
MAX_RESTARTS = 32  # a worker that dies at every start must not fork forever


class _Stop(BaseException):
    """A child's SIGTERM: ends its epoll loop through the loop's own cleanup."""


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int = socket.SOMAXCONN,
    workers: int | None = None,
) -> None:
    cpus = sorted(os.sched_getaffinity(0))  # the plan's CPU set (pinned before exec)
    children: dict[int, tuple[int, int]] = {}  # read end of its counters pipe -> pid, index

    def spawn(index: int) -> int:
        return _fork(index, cpus, listener, backlog, make_protocol, children)

    def watch(fd: int) -> epoll_server.Watches:
        return {fd: lambda: respawn(fd)}

    def respawn(fd: int) -> epoll_server.Watches:
        pid, index = children.pop(fd)
        status, lost = _reap(pid, fd, counters)
        event = {"worker": index, "pid": pid, "status": status, "counters_lost": lost}
        if counters.workers_restarted >= MAX_RESTARTS:
            _emit({"event": "worker_lost", **event})
            return {}
        counters.add("workers_restarted")
        new = spawn(index)
        _emit({"event": "worker_restarted", **event, "new_pid": children[new][0]})
        return watch(new)

    try:
        watches: epoll_server.Watches = {}
        for index in range(1, workers or len(cpus)):
            watches |= watch(spawn(index))
        _pin(0, cpus)
        epoll_server.serve(listener, make_protocol, counters, watches)
    finally:
        _stop(children, counters)


def _fork(
    index: int,
    cpus: list[int],
    listener: socket.socket,
    backlog: int,
    make_protocol: Callable[[], ServerProtocol],
    children: dict[int, tuple[int, int]],
) -> int:
    """Start worker `index`; the read end of its counters pipe, on record in children."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    # Signals stay blocked until the child has its own handler and the parent has the
    # pid on record: a stop in between would leave a child nobody waits for.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _close_connections(keep={listener.fileno(), write_fd})
            _child(index, cpus, parent, listener, backlog, make_protocol, write_fd, blocked)
        children[read_fd] = (pid, index)
        os.close(write_fd)  # the child's end: EOF once it exits
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return read_fd


def _close_connections(keep: set[int]) -> None:
    """In a replacement child: close the parent's connections that came with the fork.
    Held open here, a connection the parent closes would never end (no FIN) and would
    stay in the parent's epoll set. Their Python objects stay referenced by the
    parent's frames under this one, so nothing closes these numbers again."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd <= 2:
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (or the listing's own descriptor, gone by now)
        try:
            connected = sock.type == socket.SOCK_STREAM and not sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            )
        finally:
            sock.detach()
        if connected:
            os.close(fd)


def _child(
    index: int,
    cpus: list[int],
    parent: int,
    listener: socket.socket,
    backlog: int,
    make_protocol: Callable[[], ServerProtocol],
    write_fd: int,
    mask: set[int | signal.Signals],
) -> NoReturn:
    counters, code = Counters(), 1
    try:
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops us
        watch_stop_signals()  # our own: the parent's wakeup pipe came with the fork
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        die_with_parent(parent)
        _pin(index, cpus)
        # a socket of our own in the listener's SO_REUSEPORT group
        sock = open_listener(listener.family, listener.getsockname(), backlog, reuseport=True)
        listener.close()  # the parent's socket: leave it to the parent
        epoll_server.serve(sock, make_protocol, counters)
    except _Stop:
        code = 0
    except BaseException:  # a child must never unwind into the launcher
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.write(write_fd, json.dumps(counters.as_dict()).encode())
        finally:
            sys.stderr.flush()
            os._exit(code)


def _raise_stop(_signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise _Stop


def _pin(index: int, cpus: list[int]) -> None:
    if len(cpus) > 1:  # one CPU each, round-robin; alone on one CPU there is nothing to do
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def _reap(pid: int, fd: int, counters: Counters) -> tuple[int, bool]:
    """A child whose pipe turned readable: its counters added, its wait status, and
    whether its counters were lost."""
    lost = not _collect(fd, counters)
    return os.waitpid(pid, 0)[1], lost


def _collect(fd: int, counters: Counters) -> bool:
    """Read an exiting child's counters pipe to EOF (its exit closes the write end) and
    add what it sent; False: it sent nothing (killed before it wrote them)."""
    with os.fdopen(fd, "rb") as reader:
        data = reader.read()
    try:
        for name, n in json.loads(data).items():
            counters.add(name, n)
    except ValueError:
        return False
    return True


def _emit(event: dict[str, object]) -> None:
    print(json.dumps(event), flush=True)  # the launcher's stdout: one JSON object a line


def _stop(children: dict[int, tuple[int, int]], counters: Counters) -> None:
    pids = {pid: fd for fd, (pid, _) in children.items()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    running, deadline = set(pids), time.monotonic() + STOP_WAIT
    while running and time.monotonic() < deadline:
        running -= {pid for pid in running if os.waitpid(pid, os.WNOHANG)[0]}
        time.sleep(0.005)
    for pid in running:  # a stuck child: its counters are lost
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    for pipe in pids.values():
        _collect(pipe, counters)

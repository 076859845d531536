"""bench.run.memory: the server's memory at rest. Parsers on made-up text; the real reads
against servers on 127.0.0.1 with connections held by clients.holder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from bench.run import memory
from bench.run.memory import (
    HOLDER_OBJECTS,
    KERNEL_STACK,
    SlabCache,
    at_rest,
    holder_share,
    parse_meminfo,
    parse_slabinfo,
    server_share,
    socket_slab,
    tree,
)
from tests.helpers import TIMEOUT

SLABINFO = """\
slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                   53     91   2368   13    8 : tunables    0    0    0 : slabdata      7      7      0
sock_inode_cache     227    266    832   19    4 : tunables    0    0    0 : slabdata     14     14      0
eventpoll_epi       2048   2048    128   32    1 : tunables    0    0    0 : slabdata     64     64      0
kmalloc-64          1000   1024     64   64    1 : tunables    0    0    0 : slabdata     16     16      0
"""  # noqa: E501


def test_slabinfo_parsed_and_the_socket_caches_kept_in_kib() -> None:
    caches = parse_slabinfo(SLABINFO)
    assert caches["TCP"] == SlabCache(active_objs=53, objsize=2368)
    assert set(caches) == {"TCP", "sock_inode_cache", "eventpoll_epi", "kmalloc-64"}
    # active_objs * objsize / 1024, rounded down; kmalloc-64 is no socket cache
    assert socket_slab(caches) == {"TCP": 122, "sock_inode_cache": 184, "eventpoll_epi": 256}
    assert parse_slabinfo("") == {}


def test_meminfo_parsed() -> None:
    text = "MemTotal:        8000000 kB\nKernelStack:        5120 kB\nHugePages_Total:     0\n"
    assert parse_meminfo(text) == {"MemTotal": 8000000, "KernelStack": 5120, "HugePages_Total": 0}


def test_the_holders_side_is_taken_off_by_its_objects() -> None:
    objsize = {"TCP": 2048, "eventpoll_epi": 128, "task_struct": 6000}
    # 1,000 connections: one TCP socket each (2,000 KiB) and two epitems (250 KiB)
    assert holder_share(1000, objsize) == {"TCP": 2000, "eventpoll_epi": 250}
    slab = {"TCP": 5000, "eventpoll_epi": 400, "task_struct": 800, "filp": 10}
    assert server_share(slab, 1000, objsize) == {
        "TCP": 3000,
        "eventpoll_epi": 150,
        "task_struct": 800,  # threads are the server's alone
        "filp": 10,  # no size known: left whole
    }
    assert all(count in (0, 1, 2) for count in HOLDER_OBJECTS.values())


def test_no_slabinfo_gives_no_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "SLABINFO", "/nonexistent/slabinfo")
    assert memory.read_slab() == {}
    assert at_rest(psutil.Process().pid).slab_kib == {}


@pytest.fixture
def hold() -> Iterator[Callable[[int, int], dict[str, object]]]:
    """Start `python -m clients.holder` holding n warm connections to a port; returns its
    ready report. Every holder is ended by EOF on its stdin, or killed by its pid."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, n: int) -> dict[str, object]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clients.holder", "--target", f"127.0.0.1:{port}",
             "--connections", str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None
        ready: dict[str, object] = json.loads(proc.stdout.readline())
        assert ready["held"] == n, ready
        return ready

    yield start
    for proc in started:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.real
def test_held_connections_grow_the_server_and_the_caches(server_factory, hold) -> None:
    server = server_factory("epoll", "echo")
    before = at_rest(server.pid)
    assert before.rss_kib > 1000 and before.threads >= 1
    assert before.uss_kib is not None and 0 < before.uss_kib <= before.rss_kib
    hold(server.port, 500)
    after = at_rest(server.pid)
    assert after.rss_kib > before.rss_kib
    if not before.slab_kib:
        pytest.skip("/proc/slabinfo is root's: the caches cannot be read here")
    assert KERNEL_STACK in after.slab_kib
    caches = ("TCP", "sock_inode_cache", "filp")
    # 500 connections, both ends: about 1,000 TCP sockets of ~2 KiB, far above the noise
    # of other processes' sockets opening and closing meanwhile
    grown = sum(after.slab_kib[c] for c in caches) - sum(before.slab_kib[c] for c in caches)
    assert grown > 500 * 2


@pytest.mark.real
def test_a_thread_per_connection_shows_in_the_threads(server_factory, hold) -> None:
    server = server_factory("threaded", "echo")
    before = at_rest(server.pid)
    hold(server.port, 200)
    after = at_rest(server.pid)
    assert after.threads >= before.threads + 200
    assert after.rss_kib > before.rss_kib


@pytest.mark.real
def test_the_tree_sums_a_prefork_servers_workers(server_factory) -> None:
    # three workers: the parent is the first, the other two its forked children
    # (the ready line can come before the last fork: wait for it)
    server = server_factory("prefork", "echo", "--workers", "3")
    deadline = time.monotonic() + TIMEOUT
    while len(processes := tree(server.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(processes) == 3
    whole = at_rest(server.pid)
    parent = psutil.Process(server.pid)
    assert whole.threads >= 3
    assert whole.rss_kib > parent.memory_info().rss // 1024
    # every process's RSS counted once: the sum of each, within what moved between reads
    each = sum(p.memory_info().rss for p in processes) // 1024
    assert abs(whole.rss_kib - each) < 0.1 * each

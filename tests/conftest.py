"""Shared fixtures: real servers on 127.0.0.1, port 0, stopped after use."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

from bench.server_process import ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # the select test opens more than FD_SETSIZE connections
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.fixture(autouse=True)
def affinity_unchanged() -> Iterator[None]:
    """A command run in-process (bench.cli.main, clients.loadgen.main) pins the calling
    process to the client CPUs; it must put it back, or every later test runs pinned."""
    before = os.sched_getaffinity(0)
    yield
    after = os.sched_getaffinity(0)
    os.sched_setaffinity(0, before)
    assert after == before, f"the test left this process pinned to {sorted(after)}"


@pytest.fixture
def server_factory() -> Iterator:
    """Start servers on demand; every one is stopped (or killed) at teardown."""
    started: list[ServerProcess] = []

    def start(model: str, protocol: str = "echo", *args: str) -> ServerProcess:
        server = ServerProcess(model, protocol, extra_args=args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()

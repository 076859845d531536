"""Shared fixtures: real servers on 127.0.0.1, port 0, stopped after use."""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.run.server_process import ServerProcess
from tests.helpers import SMALL_RUN


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


@pytest.fixture(scope="module")
def echo_server() -> Iterator[ServerProcess]:
    """The epoll server speaking echo, shared by a module's tests."""
    with ServerProcess(model="epoll", protocol="echo") as server:
        yield server


@pytest.fixture(scope="module")
def http_server() -> Iterator[ServerProcess]:
    """The epoll server speaking http, shared by a module's tests."""
    with ServerProcess(model="epoll", protocol="http") as server:
        yield server


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/small_run, copied and reported once per module (charts take seconds)."""
    from bench.report.build import build_report  # pandas and matplotlib: only where needed

    run_dir = tmp_path_factory.mktemp("runs") / "small_run"
    shutil.copytree(SMALL_RUN, run_dir)
    assert build_report(run_dir) == run_dir / "report.md"
    return run_dir

"""Locust workers the bench starts itself, one per host (bench.run.hosts): the restart
loop of docs/locust.md, a thread per worker.

A worker quits when its master quits and every cell starts a master of its own, so a
worker is started again as soon as it exits, until stopped; a new one waits for the
next master (locust retries for about 5 minutes). Each runs in its host's network
namespace under the host's name as its hostname, so that locust's client id
(HOSTNAME_HEX), and with it the row's `client.workers`, names the host, as on real
machines. Their CPU comes from locust's own reports (`judge_remote_client`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from bench.run.hosts import Host, take_hostname
from clients.locust.process import LOCUSTFILE
from common.process import block_stop_signals, die_with_parent, stop_signals_blocked


def worker_command(host: Host, master: Host, port: int) -> list[str]:
    """`python -m locust --worker` on `host`, connecting to the master on `master`."""
    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
    return list(
        host.command([*locust, "--master-host", master.address, "--master-port", str(port)])
    )


def _locust_env() -> dict[str, str]:
    # LOCUST_* and SOCKBENCH_* settings would change the run behind the command line's back
    return {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "SOCKBENCH_"))}


class Workers:
    """Locust workers on `hosts`, for the masters on `master` at `port`, pinned to
    `cpus`; each one's output appended to `log_dir/<role>.log` (else dropped)."""

    def __init__(
        self,
        hosts: Sequence[Host],
        master: Host,
        port: int,
        cpus: Sequence[int],
        log_dir: Path | None = None,
    ) -> None:
        self.hosts, self.master, self.port = list(hosts), master, port
        self.cpus, self.log_dir = tuple(cpus), log_dir
        self._stopping = False
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []
        self._cwd = tempfile.TemporaryDirectory(prefix="sockbench-workers-")

    def __enter__(self) -> Workers:
        with stop_signals_blocked():  # SIGINT and SIGTERM stay the main thread's
            for host in self.hosts:
                thread = threading.Thread(target=self._keep, args=(host,), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _keep(self, host: Host) -> None:
        """Start the worker on `host`, again each time it exits, until stopped. The
        worker dies with this thread (PR_SET_PDEATHSIG): it is this thread's child."""
        block_stop_signals()
        while True:
            with self._lock:
                if self._stopping:
                    return
                proc = self._start(host)
                self._procs[host.role] = proc
            proc.wait()

    def _start(self, host: Host) -> subprocess.Popen[bytes]:
        cpus = self.cpus

        def child_setup() -> None:
            die_with_parent()
            os.sched_setaffinity(0, cpus)
            take_hostname(host.namespace)

        log = self.log_dir / f"{host.role}.log" if self.log_dir is not None else None
        with open(log, "ab") if log is not None else open(os.devnull, "wb") as out:
            return subprocess.Popen(
                worker_command(host, self.master, self.port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._cwd.name,  # an empty folder: no locust.conf picked up
                env=_locust_env(),
                start_new_session=True,
                preexec_fn=child_setup,
            )

    def stop(self) -> None:
        """Stop restarting and kill the workers; wait for their threads. Idempotent."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # nothing of theirs to keep
                except ProcessLookupError:
                    pass
        for thread in self._threads:
            thread.join(10.0)
        self._cwd.cleanup()

"""What machine, software and settings produced a run: metadata.json's contents.

Everything here is best effort and fast (well under a second): a probe that fails
records None instead of stopping a benchmark run.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.store import METADATA_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[2]

# Distributions whose version can change a figure; absent ones are left out.
PACKAGES = (
    "sockbench",
    "pandas",
    "matplotlib",
    "pyperf",
    "psutil",
    "hdrhistogram",
    "locust",
    "uvloop",
    "gevent",
    "numpy",
)

# Kernel settings that bound accept queues and connection counts.
SYSCTLS = {
    "somaxconn": "/proc/sys/net/core/somaxconn",
    "tcp_max_syn_backlog": "/proc/sys/net/ipv4/tcp_max_syn_backlog",
    "ip_local_port_range": "/proc/sys/net/ipv4/ip_local_port_range",
    "file_max": "/proc/sys/fs/file-max",
}


def collect_metadata(
    command_line: list[str], profile: str, cpu_plan: dict[str, Any]
) -> dict[str, Any]:
    """The metadata dict for `RunStore.create`; see results/README.md for each field."""
    sha, dirty = git_state(REPO_ROOT)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "schema": METADATA_SCHEMA,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command_line": list(command_line),
        "profile": profile,
        "cpu_plan": cpu_plan,
        "git": {"sha": sha, "dirty": dirty},
        "host": {
            "hostname": platform.node(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "kernel": platform.release(),
            "system": platform.system(),
            "machine": platform.machine(),
        },
        "python": {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
            "executable": sys.executable,
        },
        "packages": package_versions(),
        "limits": {
            "nofile_soft": _limit(soft),
            "nofile_hard": _limit(hard),
            **{name: _read_sysctl(path) for name, path in SYSCTLS.items()},
        },
        "pyperf": pyperf_metadata(),
    }


def _limit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value  # None: unlimited


def git_state(repo: Path) -> tuple[str | None, bool | None]:
    """(HEAD sha, working tree dirty?) or (None, None) outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if sha is None:
        return None, None
    status = git("status", "--porcelain")
    return sha, (bool(status) if status is not None else None)


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                # x86 says "model name"; some ARM kernels only say "Hardware"/"Processor".
                if sep and name.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    return value.strip() or None
    except OSError:
        pass
    return platform.processor() or None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _read_sysctl(path: str) -> int | str | None:
    try:
        with open(path, encoding="ascii") as f:
            text = " ".join(f.read().split())
    except OSError:
        return None
    return int(text) if text.isdigit() else text


def pyperf_metadata() -> dict[str, Any]:
    """pyperf's own system metadata (CPU frequency, config, ASLR, ...); {"error": ...} if it fails.

    pyperf's collector is a private module; any change or failure there must not
    stop a run, hence the broad except.
    """
    try:
        from pyperf._collect_metadata import collect_metadata as collect

        return dict(collect(process=False))
    except Exception as exc:  # best effort by design
        return {"error": f"{type(exc).__name__}: {exc}"}

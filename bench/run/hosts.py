"""Other hosts on this machine: network namespaces joined by veth pairs (`bench hosts`).

Each host is a network namespace, `sb<pid>-<role>` (`sb4242-server`), with one end of a
veth pair, `sb<pid>-h<n>`, addressed 10.254.0.<n>/24; the other ends are ports of a
bridge in a namespace of its own, `sb<pid>-switch`. Nothing is added to the machine's
own namespace (no address, link or route), no namespace gets a default route, so
10.254.0.0/24 is all a host reaches, and the names carry the bench's process id, so
that runs side by side never meet. A process runs on a host under `ip netns exec`
(`Host.command`), which execs it: its pid is the one the bench started.

Removal does not depend on the bench surviving. Before the first namespace is made, a
guardian (`python -m bench.run.hosts guard NAME...`, a session of its own, deaf to
Ctrl-C) starts with the read end of a pipe whose write end only the bench holds. When
the read hits end of file (the bench closed it, exited, or was killed, SIGKILL too), the
guardian kills whatever still runs in those namespaces and deletes them, only those.
The bench's own exit waits for it, so nothing is left once `bench hosts` returns.

All the hosts share one kernel and the machine's CPUs: this proves the wiring across
real network devices and addresses, not scaling out (docs/locust.md).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SUBNET = ipaddress.ip_network("10.254.0.0/24")
IFNAMSIZ = 15  # the longest name a link may have on Linux
GUARD_EXIT_S = 30.0  # the guardian's time to remove the namespaces once told
CLONE_NEWUTS = 0x04000000
READY = b"guarding\n"  # the guardian's one line, once it watches


def _find_unshare() -> Callable[..., int] | None:
    try:
        unshare: Callable[..., int] = ctypes.CDLL(None, use_errno=True).unshare
    except (OSError, AttributeError):
        return None
    return unshare


# Looked up here, not between fork and exec (see common.process): os.unshare is 3.12+.
_UNSHARE = _find_unshare()


class HostsError(RuntimeError):
    """The namespaces could not be made (a one-line reason)."""


@dataclass(frozen=True)
class Placement:
    """Where a cell's two sides run: the command each side's command line runs under;
    () runs it here, as `bench run` does."""

    server: tuple[str, ...] = ()
    client: tuple[str, ...] = ()


HERE = Placement()


@dataclass(frozen=True)
class Host:
    role: str  # "server", "client", "master", "worker1", ...
    namespace: str  # sb<pid>-<role>
    link: str  # its end of the veth pair, sb<pid>-h<n>
    port: str  # the other end, a port of the switch's bridge: sb<pid>-s<n>
    address: str  # 10.254.0.<n>

    def command(self, argv: Sequence[str]) -> tuple[str, ...]:
        """`argv` run on this host: in its network namespace, under its pid."""
        return ("ip", "netns", "exec", self.namespace, *argv)

    def to_dict(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "link": self.link,
            "port": self.port,
            "address": self.address,
        }


def name_prefix(pid: int | None = None) -> str:
    """What every name of a run starts with: `sb<pid>-`, the bench's process id."""
    return f"sb{os.getpid() if pid is None else pid}-"


def layout(roles: Sequence[str], pid: int | None = None) -> dict[str, Host]:
    """The hosts for `roles`, in order 10.254.0.1, .2, ...: names and addresses only,
    nothing made yet. ValueError for a repeated role or too many."""
    prefix = name_prefix(pid)
    if len(set(roles)) != len(roles) or not 0 < len(roles) < SUBNET.num_addresses - 2:
        raise ValueError(f"roles must be distinct, 1 to {SUBNET.num_addresses - 3}: {roles}")
    hosts = {
        role: Host(role, f"{prefix}{role}", f"{prefix}h{n}", f"{prefix}s{n}", str(SUBNET[n]))
        for n, role in enumerate(roles, 1)
    }
    if max(len(f"{prefix}s{len(roles)}"), len(f"{prefix}br")) > IFNAMSIZ:
        raise ValueError(f"link names of prefix {prefix!r} would pass {IFNAMSIZ} characters")
    return hosts


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be made here, or None: tried with one made and
    deleted at once (root alone is not enough in a container without CAP_SYS_ADMIN)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "no `ip` command (Debian's iproute2) to make network namespaces"
    probe = f"{name_prefix()}probe"
    try:
        _ip("netns", "add", probe)
    except HostsError as exc:
        return f"cannot make a network namespace: {exc}"
    remove([probe])
    return None


def _ip(*args: str) -> str:
    """Run `ip ARGS`; its output, or HostsError with its last line of error."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise HostsError(f"ip {' '.join(args)}: {last}")
    return done.stdout


def namespaces() -> set[str]:
    """The names `ip netns list` shows (`NAME` or `NAME (id: N)`); none if it fails."""
    try:
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    except OSError:  # no `ip` here
        return set()
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def remove(names: Sequence[str]) -> None:
    """Kill what still runs in each namespace named, then delete it; one that is not
    there is skipped. Only these names: never another run's or anyone else's."""
    present = namespaces()
    for name in names:
        if name not in present:
            continue
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        # its veth ends go with it, and with the switch's, the bridge
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def take_hostname(name: str) -> None:
    """Between fork and exec: a UTS namespace of the child's own, its hostname `name`,
    so that what names itself by hostname (locust's client id, HOSTNAME_HEX) names the
    host it runs on, as on another machine."""
    if _UNSHARE is None:
        raise OSError("no unshare() in this C library")
    if _UNSHARE(CLONE_NEWUTS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWUTS): {os.strerror(err)}")
    socket.sethostname(name)


class Hosts:
    """The namespaces of `roles` and their switch, made on entry (after the guardian
    started) and removed on exit, whatever ended the block. HostsError on entry when
    they could not be made (what was made is removed first)."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.hosts = layout(roles)
        prefix = name_prefix()
        self.switch = f"{prefix}switch"
        self.bridge = f"{prefix}br"
        self.guardian: subprocess.Popen[bytes] | None = None

    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    @property
    def names(self) -> list[str]:
        """Every namespace of this run: the hosts' and the switch's."""
        return [*(h.namespace for h in self.hosts.values()), self.switch]

    def placement(self, server: str, client: str) -> Placement:
        """A cell's server on host `server`, its load generator on host `client`."""
        return Placement(self[server].command(()), self[client].command(()))

    def to_dict(self) -> dict[str, Any]:
        """For the run's metadata: each host's namespace, link and address."""
        return {
            "subnet": str(SUBNET),
            "switch": self.switch,
            "hosts": {role: host.to_dict() for role, host in self.hosts.items()},
        }

    def __enter__(self) -> Hosts:
        # before the guardian, which would delete them: these names are not ours to take
        if clash := set(self.names) & namespaces():
            raise HostsError(f"namespace {sorted(clash)[0]} exists already (another run's?)")
        self.guardian = subprocess.Popen(
            [sys.executable, "-m", "bench.run.hosts", "guard", *self.names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # out of the terminal's group: Ctrl-C is the bench's
        )
        try:
            assert self.guardian.stdout is not None
            if self.guardian.stdout.readline() != READY:  # it watches from now on
                raise HostsError("the guardian that removes the namespaces did not start")
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        sw = ("-n", self.switch)
        _ip("netns", "add", self.switch)
        _ip(*sw, "link", "add", self.bridge, "type", "bridge")
        _ip(*sw, "link", "set", self.bridge, "up")
        for host in self.hosts.values():
            here = ("-n", host.namespace)
            _ip("netns", "add", host.namespace)
            _ip(*here, "link", "set", "lo", "up")
            _ip(*sw, "link", "add", host.port, "type", "veth", "peer", "name", host.link,
                "netns", host.namespace)  # fmt: skip
            _ip(*sw, "link", "set", host.port, "master", self.bridge, "up")
            _ip(*here, "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", host.link)
            _ip(*here, "link", "set", host.link, "up")

    def close(self) -> None:
        """Tell the guardian (end of file on its pipe) and wait while it removes the
        namespaces; if it is gone or hangs, remove them here. Idempotent."""
        guardian, self.guardian = self.guardian, None
        if guardian is None:
            return
        alive = guardian.poll() is None
        if guardian.stdin is not None:
            guardian.stdin.close()
        try:
            guardian.wait(GUARD_EXIT_S if alive else 0)
        except subprocess.TimeoutExpired:
            guardian.kill()
            guardian.wait()
        if guardian.stdout is not None:
            guardian.stdout.close()
        if not alive or guardian.returncode != 0:
            remove(self.names)


class _Stop(Exception):
    pass


def _raise_stop(*_: object) -> None:
    raise _Stop


def guard(names: Sequence[str]) -> int:
    """The guardian: wait for end of file on stdin (or SIGTERM), then remove `names`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_stop)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    try:
        sys.stdin.buffer.read()
    except _Stop:
        pass
    remove(names)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["guard"]:
        sys.exit("usage: python -m bench.run.hosts guard NAMESPACE...")
    sys.exit(guard(sys.argv[2:]))

"""The server's memory at rest (issue 25): its process tree in user space, and the kernel's
socket caches, read just before a cell's load window.

`at_rest(pid)` reads the whole process tree (prefork has workers) with psutil: RSS, USS
and threads summed; and, machine-wide, the /proc/slabinfo caches in SOCKET_CACHES (root
only: else none) with the kernel stacks (/proc/meminfo KernelStack). Slab caches are the
machine's, not the server's: both ends of a loopback connection grow them, and
`server_share` takes the holder's side off by the objects it is known to hold per
connection (measured, docs/idle.md "Memory per connection").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

from bench.record import Memory

SLABINFO = "/proc/slabinfo"
MEMINFO = "/proc/meminfo"
# Kernel stacks are not slab objects (vmalloc'd with CONFIG_VMAP_STACK, 16 KiB a thread on
# x86_64): /proc/meminfo's machine-wide KernelStack, kept under its own name beside the
# caches, since it is what a thread per connection costs the kernel most.
KERNEL_STACK = "KernelStack"


@dataclass(frozen=True)
class SocketCache:
    name: str  # as /proc/slabinfo names it
    holds: str
    holder: int  # objects clients.holder holds per connection (its side, measured)


# The caches that grow with idle connections, found by diffing /proc/slabinfo around 2,000
# held loopback connections (docs/idle.md). A cache the kernel merged into another of the
# same size and flags (SLUB merging: eventpoll_pwq here) has no line of its own and is
# left out of what at_rest reads; its objects count under the cache it was merged into.
SOCKET_CACHES = (
    # one per socket, at each end: struct tcp_sock with its inet and sock parts
    SocketCache("TCP", "struct tcp_sock: a TCP socket's protocol state", 1),
    # one per socket, at each end once accepted: struct socket and its sockfs inode
    SocketCache("sock_inode_cache", "struct socket_alloc: the socket and its inode", 1),
    # one per open descriptor of a socket: struct file
    SocketCache("filp", "struct file: the open descriptor's file", 1),
    # one per socket file (sockfs pseudo-dentry); also grows when /proc/PID/fd is listed
    SocketCache("dentry", "struct dentry: the socket file's name", 1),
    # the security module's blob beside each inode and each file (LSM stacking)
    SocketCache("lsm_inode_cache", "the LSM's blob per inode", 1),
    SocketCache("lsm_file_cache", "the LSM's blob per file", 1),
    # one per descriptor per epoll set watching it: the holder keeps two sets (its
    # connect machinery's and its hold set), an epoll server one, poll and select none
    SocketCache("eventpoll_epi", "struct epitem: one descriptor in one epoll set", 2),
    # one per file that any epoll set watches (the list head of its epitems)
    SocketCache("ep_head", "struct epitems_head: a watched file's epitem list", 1),
    # a thread per connection: these grow with threads, not sockets
    SocketCache("task_struct", "struct task_struct: one per thread", 0),
    SocketCache("pid", "struct pid: one per thread", 0),
    # the mappings of a thread's user-space stack (three a thread measured here). Their
    # reverse maps (anon_vma, anon_vma_chain) grow too, and with any process's heap,
    # the holder's included, by amounts no fixed count per connection takes off: left out
    SocketCache("vm_area_struct", "struct vm_area_struct: a mapping (a thread's stack)", 0),
)
HOLDER_OBJECTS = {cache.name: cache.holder for cache in SOCKET_CACHES}


@dataclass(frozen=True)
class SlabCache:
    active_objs: int
    objsize: int  # bytes

    @property
    def kib(self) -> int:
        return self.active_objs * self.objsize // 1024


def parse_slabinfo(text: str) -> dict[str, SlabCache]:
    """Every cache of a /proc/slabinfo text (version 2.x): name -> objects in use, size."""
    caches = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or line.startswith(("slabinfo", "#")):
            continue
        try:
            caches[fields[0]] = SlabCache(int(fields[1]), int(fields[3]))
        except ValueError:
            continue  # not a cache line
    return caches


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as name -> KiB (the lines without a unit are counts)."""
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            found[name] = int(value[0])
    return found


def socket_slab(
    caches: Mapping[str, SlabCache], names: Iterable[str] = HOLDER_OBJECTS
) -> dict[str, int]:
    """KiB in use of the socket caches (SOCKET_CACHES) that `caches` has."""
    return {name: caches[name].kib for name in names if name in caches}


def read_slab() -> dict[str, SlabCache]:
    """This machine's slab caches; empty where /proc/slabinfo cannot be read (it is
    root's only, mode 0400) or does not exist."""
    try:
        with open(SLABINFO) as file:
            return parse_slabinfo(file.read())
    except OSError:
        return {}


def kernel_stack_kib() -> int | None:
    try:
        with open(MEMINFO) as file:
            return parse_meminfo(file.read()).get(KERNEL_STACK)
    except OSError:
        return None


def tree(pid: int) -> list[psutil.Process]:
    """The process and its children, recursively (prefork's workers). Raises
    psutil.NoSuchProcess when `pid` itself is gone."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def at_rest(pid: int) -> Memory:
    """The server's process tree (pid and its descendants: memory, threads, each one's
    open descriptors and their limit) and the machine's socket caches, now. A descendant
    that ends while it is read is left out; psutil.NoSuchProcess where `pid` itself is
    gone."""
    rss = threads = 0
    uss: int | None = 0
    fds: list[int] = []
    for process in tree(pid):
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                threads += process.num_threads()
                fds.append(process.num_fds())
                if uss is not None:
                    # USS walks /proc/PID/smaps_rollup: it needs the right to ptrace the
                    # process (same user, or root; not under hidepid or Yama's strict
                    # modes) and an older kernel lacks it: then none for the whole tree,
                    # since a sum over part of it would mislead.
                    try:
                        uss += process.memory_full_info().uss
                    except (psutil.AccessDenied, NotImplementedError, OSError):
                        uss = None
        except psutil.NoSuchProcess:
            continue
    slab = socket_slab(read_slab())
    if slab and (stack := kernel_stack_kib()) is not None:
        slab[KERNEL_STACK] = stack
    return Memory(
        rss_kib=rss // 1024,
        uss_kib=None if uss is None else uss // 1024,
        threads=threads,
        slab_kib=slab,
        fds=tuple(sorted(fds, reverse=True)),
        fd_limit=fd_limit(pid),
    )


def fd_limit(pid: int) -> int | None:
    """The process's hard RLIMIT_NOFILE: the most descriptors any one of its processes
    may open (the launcher raises the soft limit to it); None where it cannot be read."""
    try:
        hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)[1]
    except (psutil.Error, OSError, AttributeError):
        return None
    return None if hard == psutil.RLIM_INFINITY else int(hard)


def holder_share(held: int, objsize: Mapping[str, int]) -> dict[str, int]:
    """KiB that `held` connections of clients.holder hold in each socket cache (their
    client side: HOLDER_OBJECTS objects per connection, of the machine's `objsize`)."""
    return {
        name: held * count * objsize[name] // 1024
        for name, count in HOLDER_OBJECTS.items()
        if count and name in objsize
    }


def server_share(
    slab_kib: Mapping[str, int], held: int, objsize: Mapping[str, int]
) -> dict[str, int]:
    """The machine-wide cache sizes of at_rest (`slab_kib`) less what the holder's `held`
    connections hold there. The rest is the server's and the machine's baseline, which a
    slope over several counts of held connections leaves out: the slope of this against
    `held` is the server's KiB per connection, cache by cache. `objsize` is each cache's
    object size in bytes on the machine that measured (`object_sizes`)."""
    holder = holder_share(held, objsize)
    return {name: kib - holder.get(name, 0) for name, kib in slab_kib.items()}


def object_sizes(caches: Mapping[str, SlabCache] | None = None) -> dict[str, int]:
    """Object sizes in bytes of the socket caches, on this machine unless given."""
    caches = read_slab() if caches is None else caches
    return {name: caches[name].objsize for name in HOLDER_OBJECTS if name in caches}

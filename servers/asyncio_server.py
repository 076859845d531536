"""asyncio: the standard library's event loop calls us back; no loop of our own.

The loop owns the sockets and their output buffers. `Adapter` turns its callbacks into
calls on our sans-IO protocol: data_received -> feed -> transport.write. Backpressure is
the transport's: past its high-water mark asyncio calls pause_writing, and we stop
reading from that peer until resume_writing. `wait:` work holds replies with call_at,
in order per connection. SIGTERM/SIGINT stop the loop (loop.add_signal_handler), every
transport is aborted, and serve() returns.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections import deque
from collections.abc import Callable

from common.process import STOP_SIGNALS
from servers.conn import OUTPUT_LIMIT, RECV_SIZE, Counters
from servers.protocol import ServerProtocol

CLOSE_GRACE = 0.5  # seconds for aborted transports to report connection_lost


class Adapter(asyncio.BaseProtocol):
    """One connection: asyncio's callbacks in, our protocol's replies out. The way bytes
    come in is a subclass's (BytesAdapter, BufferedAdapter): uvloop takes the buffered
    path only for a protocol that is not also an asyncio.Protocol."""

    def __init__(
        self, protocol: ServerProtocol, counters: Counters, live: set[asyncio.Transport]
    ) -> None:
        self.protocol, self.counters, self.live = protocol, counters, live
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport
        self.held: deque[tuple[float, bytes]] = deque()  # (due, reply) for `wait:` work
        self.held_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.eof = self.write_paused = False
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=OUTPUT_LIMIT)  # same cap as epoll's
        self.live.add(self.transport)
        self.counters.add("accepted")  # both loops set TCP_NODELAY themselves

    def eof_received(self) -> bool:
        self.eof = True
        self.answer(self.protocol.eof())
        return True  # stay half-open: we close once our replies are written

    def answer(self, reply: bytes) -> None:
        if reply and (self.protocol.hold_s or self.held):
            last = self.held[-1][0] if self.held else 0.0  # a reply never overtakes one held
            self.held.append((max(self.loop.time() + self.protocol.hold_s, last), reply))
            self.held_bytes += len(reply)
            if self.timer is None:
                self.timer = self.loop.call_at(self.held[0][0], self.release)
        elif reply:
            self.transport.write(reply)
        self.settle()

    def release(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.held and self.held[0][0] <= now:
            _, reply = self.held.popleft()
            self.held_bytes -= len(reply)
            self.transport.write(reply)
        if self.held:
            self.timer = self.loop.call_at(self.held[0][0], self.release)
        self.settle()

    def settle(self) -> None:
        if (self.eof or self.protocol.closing) and not self.held:
            self.transport.close()  # after the write buffer drains
        else:
            self.flow()

    def flow(self) -> None:
        """Read only while the peer reads our output and the held replies are few."""
        wanted = (
            not (self.write_paused or self.eof or self.protocol.closing)
            and self.held_bytes < OUTPUT_LIMIT
        )
        if wanted != self.reading:
            self.reading = wanted
            (self.transport.resume_reading if wanted else self.transport.pause_reading)()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.flow()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self.transport)
        if self.timer is not None:
            self.timer.cancel()
        if self.protocol.error:
            self.counters.add("protocol_errors")
        self.counters.add("closed")


class BytesAdapter(Adapter, asyncio.Protocol):
    """The adapter as a plain asyncio.Protocol: the loop hands over a new bytes per read."""

    def data_received(self, data: bytes) -> None:
        self.answer(self.protocol.feed(data))


class BufferedAdapter(Adapter, asyncio.BufferedProtocol):
    """The same adapter reading into one buffer of its own (asyncio.BufferedProtocol).

    A plain Protocol gets a new bytes object per read, for which the loop allocates
    its 256 KiB read size first: past glibc's mmap threshold, an mmap and munmap per
    read (docs/models.md). Here the loop reads into our preallocated buffer and only
    the bytes received are copied out: the transport may keep what we write."""

    def __init__(
        self, protocol: ServerProtocol, counters: Counters, live: set[asyncio.Transport]
    ) -> None:
        super().__init__(protocol, counters, live)
        self.buffer = memoryview(bytearray(RECV_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.answer(self.protocol.feed(bytes(self.buffer[:nbytes])))


def stop_event(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    """An event SIGTERM and SIGINT set, through the loop's own signal handlers."""
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


async def wait_for_stop(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Until `stop` is set; from then on a second signal is ignored, as the launcher
    does: the loop's handlers are swapped for SIG_IGN with the signals blocked, so that
    none lands in between."""
    await stop.wait()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


async def _serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int,
    adapter: type[Adapter],
) -> None:
    loop = asyncio.get_running_loop()
    stop = stop_event(loop)
    live: set[asyncio.Transport] = set()
    server = await loop.create_server(
        lambda: adapter(make_protocol(), counters, live), sock=listener, backlog=backlog
    )
    try:
        await wait_for_stop(loop, stop)
    finally:
        server.close()  # closes the listener; live connections are ours to close
        for transport in list(live):
            transport.abort()  # unsent output is dropped, as close_all does in epoll
        deadline = loop.time() + CLOSE_GRACE
        while live and loop.time() < deadline:  # let connection_lost count them
            await asyncio.sleep(0.01)


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int = socket.SOMAXCONN,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    adapter: type[Adapter] = BytesAdapter,
) -> None:
    """Serve until SIGTERM/SIGINT, then return; `loop_factory` picks the loop (uvloop),
    `adapter` the protocol class (BufferedAdapter).

    create_server() calls listen() again (with 100 unless told): hence the launcher's
    backlog here."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(listener, make_protocol, counters, backlog, adapter))

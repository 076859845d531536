"""asyncio-streams: what most asyncio users write, asyncio.start_server with a coroutine
per connection reading a StreamReader and writing a StreamWriter.

Each connection is a task looping read -> feed -> write -> drain; drain() is the
backpressure (it waits while the transport's buffer is above its high-water mark, set
to the other models' cap). `wait:` work is an await asyncio.sleep, in order, as the
thread models sleep. SIGTERM/SIGINT stop the server, cancel every connection's task and
serve() returns. `loop_factory` runs the same code on uvloop (uvloop_streams).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from servers.asyncio_server import stop_event, wait_for_stop
from servers.conn import OUTPUT_LIMIT, RECV_SIZE, Counters
from servers.protocol import ServerProtocol

CLOSE_GRACE = 0.5  # seconds for cancelled connections to finish


async def _connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    protocol: ServerProtocol,
    counters: Counters,
) -> None:
    counters.add("accepted")
    writer.transport.set_write_buffer_limits(high=OUTPUT_LIMIT)
    try:
        while not protocol.closing:
            data = await reader.read(RECV_SIZE)
            reply = protocol.feed(data) if data else protocol.eof()
            if reply:
                if protocol.hold_s:
                    await asyncio.sleep(protocol.hold_s)
                writer.write(reply)
                await writer.drain()
            if not data:
                break
    except ConnectionError:
        pass  # the peer reset: nothing left to answer
    finally:
        if protocol.error:
            counters.add("protocol_errors")
        counters.add("closed")
        writer.close()  # its buffer is written first, unless the stop cancelled us


async def _serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int,
) -> None:
    loop = asyncio.get_running_loop()
    stop = stop_event(loop)
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _connection(reader, writer, make_protocol(), counters)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(connected, sock=listener, backlog=backlog)
    try:
        await wait_for_stop(loop, stop)
    finally:
        server.close()  # closes the listener; the connections' tasks are ours to end
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks), timeout=CLOSE_GRACE)


def serve(
    listener: socket.socket,
    make_protocol: Callable[[], ServerProtocol],
    counters: Counters,
    backlog: int = socket.SOMAXCONN,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then return; `loop_factory` picks the loop (uvloop)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(listener, make_protocol, counters, backlog))

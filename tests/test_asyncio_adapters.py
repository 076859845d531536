"""Each asyncio adapter reads by its own path on both loops: a model named "-buffered"
must take the loop's BufferedProtocol path (get_buffer, buffer_updated), which uvloop
takes only for a protocol that is not also an asyncio.Protocol; until 2026-12-07
uvloop-buffered ran uvloop's plain path and counted the same instructions as uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from servers.asyncio_server import Adapter, BufferedAdapter, BytesAdapter
from servers.conn import Counters
from servers.protocol import EchoProtocol
from tests.helpers import frame

uvloop = pytest.importorskip("uvloop")

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
PATHS = {BytesAdapter: "data_received", BufferedAdapter: "buffer_updated"}
PAYLOADS = [b"x" * n for n in (1, 64, 70_000)]  # the last one is more than a buffer


async def _echo_through(adapter: type[Adapter]) -> bytes:
    """Serve with `adapter` on 127.0.0.1, send PAYLOADS as frames on one connection,
    return every byte answered."""
    loop, live = asyncio.get_running_loop(), set[asyncio.Transport]()
    server = await loop.create_server(
        lambda: adapter(EchoProtocol(), Counters(), live), "127.0.0.1", 0
    )
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = b"".join(frame(p) for p in PAYLOADS)
        writer.write(sent)
        await writer.drain()
        got = await asyncio.wait_for(reader.readexactly(len(sent)), 10)
        writer.close()
        await writer.wait_closed()
        return got
    finally:
        server.close()
        for transport in list(live):
            transport.abort()


@pytest.mark.parametrize("adapter", list(PATHS), ids=lambda a: a.__name__)
@pytest.mark.parametrize("loop_factory", list(LOOPS.values()), ids=list(LOOPS))
def test_each_adapter_reads_by_its_own_path(
    monkeypatch: pytest.MonkeyPatch,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    adapter: type[Adapter],
) -> None:
    calls: dict[str, int] = dict.fromkeys(PATHS.values(), 0)
    for cls, name in PATHS.items():
        original = getattr(cls, name)

        def counted(self: Adapter, *args: object, _n: str = name, _f=original) -> None:
            calls[_n] += 1
            _f(self, *args)

        monkeypatch.setattr(cls, name, counted)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        got = runner.run(_echo_through(adapter))
    assert got == b"".join(frame(p) for p in PAYLOADS)
    mine = PATHS[adapter]
    assert calls[mine] >= 1, calls
    assert all(n == 0 for name, n in calls.items() if name != mine), calls

"""A cell's slow connections: clients.holder processes in a slow mode beside the active ones.

The holders (bench.run.idle.Holders, with the slow mode's options) run on the load
generator's CPUs, connect before the load and start their slow exchanges at once (a
request sent a byte at a time, or a reply read so, one byte per the matrix's
slow_interval_ms), go on through the window and are stopped after it: their final
reports say what the slow connections did (requests completed and checked, bytes, byte
slots served late), summed into the row's `slow`. In such a run the load generator does
not busy-poll, so that their bytes go out while it waits (Matrix.has_slow). Their source
addresses start at 127.0.0.SLOW_FIRST_SOURCE, apart from the idle holders' (127.0.0.2 on)
and the active connections' (127.0.0.1). docs/slow.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.record import Slow
from bench.run.cpus import CpuPlan
from bench.run.idle import Holders
from bench.run.matrix import Cell, Matrix
from clients.hold_report import HoldReport
from clients.result import LoadResult

SLOW_FIRST_SOURCE = 200  # idle holders would need ~1,000,000 connections to reach it


def start(cell: Cell, matrix: Matrix, plan: CpuPlan, target: str) -> Holders | None:
    """The cell's slow connections, connected and under way (IdleError if they could not
    be, with nothing left running); None for a cell without any."""
    if not cell.key.slow:
        return None
    key = cell.key
    holders = Holders(
        target,
        key.slow,
        f"slow-{key.slow_mode}",
        key.protocol,
        plan.client,
        matrix.allow_remote,
        extra=["--payload", str(key.payload), "--interval-ms", f"{matrix.slow_interval_ms:g}"],
        first=SLOW_FIRST_SOURCE,
        what="slow-connection",
    )
    try:
        holders.start()
    except BaseException:  # Ctrl-C included: nothing of the cell's is left running
        holders.kill()
        raise
    return holders


def summary(ready: Sequence[HoldReport], final: Sequence[HoldReport]) -> Slow:
    """One Slow for the row, summed over the holders: the final reports' counts where
    every holder gave one, else what the ready reports said (no exchange counted)."""
    complete = len(final) == len(ready) and all(f.open_at_end is not None for f in final)
    last = final if complete else ready
    counts = [r.slow for r in last if r.slow is not None]
    return Slow(
        asked=sum(r.asked for r in ready),
        established=sum(r.established for r in ready),
        open_at_end=sum(f.open_at_end or 0 for f in final) if complete else None,
        closed_by_server=sum(r.closed_by_server for r in last),
        refused=sum(sum(r.refused.values()) for r in ready),
        bad_replies=sum(r.bad_replies for r in last),
        requests=sum(c.requests for c in counts),
        bytes_sent=sum(c.bytes_sent for c in counts),
        bytes_read=sum(c.bytes_read for c in counts),
        interval_ms=counts[0].interval_ms if counts else 0.0,
        held_s=max((f.held_s or 0.0 for f in final), default=None) if complete else None,
        holders=len(ready),
        ticks=sum(c.ticks for c in counts),
        late=sum(c.late for c in counts),
    )


def shortfall(slow: Slow) -> str | None:
    """Why the cell did not have the slow connections it asked for: its reason to fail.
    A connection the server closed later, or whose reply failed its check, is what the
    server did with it: counted in the row, no failure."""
    if slow.established == slow.asked:
        return None
    return (
        f"connected {slow.established:,} of {slow.asked:,} slow connections "
        f"({slow.refused:,} connects failed)"
    )


def all_starved(cell: Cell, load: LoadResult | None) -> bool:
    """Beside slow connections, every active connection connected and none got a reply
    in the window (a thread pool whose workers the slow ones hold): the cell's finding,
    starved share 100%, not a failure to measure."""
    if not cell.key.slow or load is None or load.requests:
        return False
    connections = load.connections
    return bool(connections.established) and connections.starved == connections.established

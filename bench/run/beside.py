"""What a cell holds beside its active connections, from before the load to after it:
idle connections (bench.run.idle, with the server's memory at rest) and slow ones
(bench.run.slow). The runner starts them, stops them after the load (before the server,
whose stop would close them) and kills them on any way out."""

from __future__ import annotations

from dataclasses import dataclass

from bench.record import Idle, Memory, Slow
from bench.run import idle, slow
from bench.run.cpus import CpuPlan
from bench.run.external import ExternalServer
from bench.run.idle import Holders
from bench.run.matrix import Cell, Matrix
from bench.run.server_process import ServerProcess

STOP_S = 5.0  # a server's time to stop after SIGTERM
# and more per idle connection: a thread per connection's threads take the GIL in turn
# to exit once their connections close (19,000 took 28.5 s to stop here; docs/idle.md)
STOP_PER_HELD_S = 0.002


@dataclass
class Beside:
    idle: tuple[Holders, Memory | None] | None = None
    slow: Holders | None = None

    def stop(self) -> tuple[Idle | None, Slow | None]:
        """Stop every holder; what each kind held, from their final reports."""
        held = None
        if self.idle is not None:
            holders, memory = self.idle
            held = idle.summary(holders.ready, holders.stop(), memory)
        slowed = None
        if self.slow is not None:
            slowed = slow.summary(self.slow.ready, self.slow.stop())
        return held, slowed

    def kill(self) -> None:
        """On the way out of a failure (or after `stop`, which left none): end them all."""
        for holders in (self.idle[0] if self.idle else None, self.slow):
            if holders is not None:
                holders.kill()


def start(
    cell: Cell,
    matrix: Matrix,
    plan: CpuPlan,
    server: ServerProcess | ExternalServer,
    target: str,
) -> Beside:
    """The idle connections held (and the server's memory read at rest with them), then
    the slow ones under way; IdleError, with nothing left running, if either failed."""
    held = idle.hold(cell, matrix, plan, server, target)
    try:
        return Beside(held, slow.start(cell, matrix, plan, target))
    except BaseException:
        if held is not None:
            held[0].kill()
        raise


def shortfall(held: Idle | None, slowed: Slow | None) -> str | None:
    """Why the cell did not hold what it asked for, if it did not: its reason to fail."""
    reasons = [
        *([why] if held is not None and (why := idle.shortfall(held)) else []),
        *([why] if slowed is not None and (why := slow.shortfall(slowed)) else []),
    ]
    return "; ".join(reasons) or None


def stop_timeout(cell: Cell) -> float:
    """How long the cell's server may take to stop before it is killed."""
    return STOP_S + STOP_PER_HELD_S * (cell.key.idle + cell.key.slow)

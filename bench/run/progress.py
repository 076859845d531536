"""A progress line per cell on stderr: position, cell, result, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bench.record import Row


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.started = time.monotonic()

    def cell_started(self, label: str) -> None:
        if self.stream.isatty():
            self.stream.write(f"\r[{self.done + 1}/{self.total}] {label} ...\x1b[K")
            self.stream.flush()

    def cell_finished(self, row: Row, label: str | None = None) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        load = row.load
        figure = f"{load.throughput_rps:>10,.0f} req/s" if load and load.requests else " " * 16
        status = f"failed: {row.reason}" if row.status == "failed" else row.status
        if row.verdict == "suspect" and row.status != "failed":
            status += " (suspect: " + "; ".join(r.code for r in row.reasons) + ")"
        width = len(str(self.total))
        line = (
            f"[{self.done:>{width}}/{self.total}] {label or f'{row.cell.key} r{row.repeat}'} "
            f"{figure}  "
            f"ETA {_duration(eta)}  {status}"
        )
        prefix = "\r\x1b[K" if self.stream.isatty() else ""
        self.stream.write(prefix + line[:300] + "\n")
        self.stream.flush()

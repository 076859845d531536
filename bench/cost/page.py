"""cost.md: the counted costs as tables, one per pattern, with what they cannot see."""

from __future__ import annotations

from collections.abc import Sequence

from bench.cost.pattern import Pattern
from bench.cost.record import CostCell, CostRun
from clients.wire import describe

NAMES_SHOWN = 0.05  # system calls per request below this are left out of the table


def patterns_of(run: CostRun) -> list[Pattern]:
    """The run's patterns, in the order first counted."""
    seen: dict[str, Pattern] = {}
    for c in run.cells:
        pattern = Pattern(c.protocol, c.payload, c.idle)
        seen.setdefault(pattern.key, pattern)
    return list(seen.values())


def cells_of(run: CostRun, pattern: Pattern) -> list[CostCell]:
    return [
        c
        for c in run.cells
        if (c.protocol, c.payload, c.idle) == (pattern.protocol, pattern.payload, pattern.idle)
    ]


def render(run: CostRun, charts: Sequence[str] = ()) -> str:
    b = run.build
    lo, hi = run.requests
    lines = [
        "# Counted cost per request",
        "",
        f"Instructions and system calls each request costs the server, counted, not timed: "
        f"the slope between {lo:,} and {hi:,} requests on one connection in ping-pong, the "
        f"smallest whole-process total of {run.tries} launches at each count "
        "(docs/cost.md). The counts do not depend on the machine's speed; they depend on "
        "what follows, so compare them only where it is the same.",
        "",
        f"- Interpreter: {b.python} (sha256 {b.python_sha256[:16]})",
        f"- Counters: {b.valgrind} (cachegrind, no cache simulation), {b.strace or 'no strace'}",
        f"- Architecture: {b.arch}; kernel {b.kernel}",
        "- Environment: " + " ".join(f"{k}={v}" for k, v in b.env.items()),
        "  (glibc's malloc, not pymalloc: these are the figures for glibc's allocator)",
        f"- Servers' commit: {run.git or 'unknown'}; command: `{run.command}`",
        "",
        "**Spread** is how far the launches' own slopes differ, over their mean: the run's "
        "A/A figure. **Not seen**: the kernel's work inside each system call (a poll() over "
        "1,000 descriptors costs the kernel far more than the interpreter), waits, and "
        "anything that depends on timing.",
    ]
    for pattern in patterns_of(run):
        lines += ["", f"## {pattern.words()}", ""]
        lines += _table(cells_of(run, pattern))
        if pattern.idle:
            lines += _idle_lines(run, pattern)
    for chart in charts:
        lines += ["", f"![{chart}](charts/{chart}.png)"]
    return "\n".join(lines) + "\n"


def _table(cells: Sequence[CostCell]) -> list[str]:
    rows = [
        "| model | instructions / request | spread | system calls / request | calls |",
        "|---|---:|---:|---:|---|",
    ]
    for c in cells:
        if c.instructions is None:
            why = f"refused: {c.refused}" if c.refused else f"failed: {c.error}"
            rows.append(f"| {c.model} | — | — | — | {why} |")
            continue
        calls = ", ".join(
            f"{name} {counted.per_request:.2g}"
            for name, counted in sorted(
                c.syscall_names.items(), key=lambda item: -item[1].per_request
            )
            if counted.per_request >= NAMES_SHOWN
        )
        syscalls = "—" if c.syscalls is None else f"{c.syscalls.per_request:.2f}"
        rows.append(
            f"| {c.model} | {c.instructions.per_request:,.0f} | "
            f"{c.instructions.spread:.3%} | {syscalls} | {calls} |"
        )
    return rows


def _idle_lines(run: CostRun, pattern: Pattern) -> list[str]:
    """Each model's extra instructions per request beside the idle connections, per idle
    connection: what a scan over every watched descriptor costs in user space."""
    alone = {
        c.model: c.instructions.per_request
        for c in cells_of(run, Pattern(pattern.protocol, pattern.payload))
        if c.instructions is not None
    }
    rows = []
    for c in cells_of(run, pattern):
        if c.instructions is None or c.model not in alone:
            continue
        extra = c.instructions.per_request - alone[c.model]
        rows.append(
            f"| {c.model} | {alone[c.model]:,.0f} | {c.instructions.per_request:,.0f} | "
            f"{c.instructions.per_request / alone[c.model]:.2f}x | "
            f"{extra / pattern.idle:,.2f} |"
        )
    if not rows:
        return []
    return [
        "",
        f"Against the same requests alone ({describe(pattern.protocol, pattern.payload)}):",
        "",
        f"| model | alone | beside {pattern.idle:,} idle | ratio | "
        "extra per idle connection, per request |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]

"""explain.md: the per-request cost tables of `bench explain`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.explain.measure import Explained, Phase
from bench.explain.perf import NO_PYTHON
from clients.wire import describe

CALLS_SHOWN = 4
FUNCTIONS_SHOWN = 4
PARTS = ("kernel", "interpreter", "libc")  # the rest is the models' own modules


BASE = "epoll"  # the hand-written loop: what the gaps are measured from, when it ran


def _clean_cpu(results: Sequence[Explained]) -> str:
    """How the clean phase's total was measured (explain.json's `cpu_source`)."""
    sources = {p.cpu_source for r in results if (p := r.phase("clean")) is not None}
    if sources == {"edges-ns"}:
        return "the total from the server's CPU clocks, read at the phase's edges in ns"
    if sources <= {"sampled-ticks"}:
        return "psutil's 10 ms ticks, sampled every 0.25 s and interpolated to the phase"
    return "read at the phase's edges for some models and sampled for others"


def render(results: Sequence[Explained], metadata: dict[str, Any]) -> str:
    first = results[0]
    lines = [
        "# Where the microseconds go",
        "",
        f"{describe(first.protocol, first.payload)}, {first.connections} connections, "
        + ("the closed loop" if first.rate is None else f"open loop at {first.rate:,.0f} req/s")
        + f" for every model; server CPUs {metadata['server_cpus']}, "
        f"load generator CPUs {metadata['client_cpus']}; {metadata['when']}, git "
        f"{metadata['git']}. Command: `{metadata['command']}`",
        "",
        "## Cost per request",
        "",
        f"Medians of {first.repeats} measurements per model (the models' order reversed "
        "each time), the total's lowest and highest in brackets. "
        "Each figure divides by the replies of its own phase. CPU in the process view "
        f"(user + system = total; {_clean_cpu(results)}) and the core view (the server CPUs' "
        "busy time in /proc/stat's 10 ms ticks, softirq included), with nothing attached; "
        "system calls counted by `perf stat` "
        "(`raw_syscalls:sys_enter`); the process view again while perf counted and while it "
        "sampled, to show what each cost.",
        "",
        "| model | achieved req/s | user µs | sys µs | total µs | core µs | syscalls | "
        "the calls | µs, perf stat | µs, perf record |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        clean, calls, profile = (r.phase(name) for name in ("clean", "syscalls", "profile"))
        assert clean and calls and profile
        achieved = f"{r.achieved:,.0f}{' †' if r.client_bound else ''}"
        if r.rate is not None and r.achieved < 0.95 * r.rate:
            achieved += " (below 95%)"
        listed = ", ".join(f"{name} {n:.2f}" for name, n in r.syscalls[:CALLS_SHOWN])
        total = f"{clean.cpu_us:.2f}"
        if r.cpu_range:
            total += f" ({r.cpu_range[0]:.2f}–{r.cpu_range[1]:.2f})"
        lines.append(
            f"| {r.model} | {achieved} | {clean.user_us:.2f} | {clean.sys_us:.2f} | "
            f"{total} | {_num(clean.core_us)} | {_num(r.syscalls_per_request)} | "
            f"{listed or 'n/a'} | {calls.cpu_us:.2f} | {profile.cpu_us:.2f} |"
        )
    if any(r.client_bound for r in results):
        lines += ["", "† the load generator was the bottleneck (client-bound)."]
    lines += [
        "",
        "## Where the on-CPU time goes",
        "",
        "`perf record` samples of the server's processes on the server CPUs, in µs per "
        "request, by part: the kernel (system calls, TCP, softirq run in the server's "
        "context), the interpreter (libpython: the Python code's own cost), libc, and the "
        "model's C modules (uvloop's loop, _socket, select, ...).",
        "",
        "| model | " + " | ".join(PARTS) + " | C modules | sum | samples |",
        "|---|" + "---:|" * (len(PARTS) + 3),
    ]
    for r in results:
        by_part = {c.name: c.us for c in r.parts}
        modules = [c for c in r.parts if c.name not in PARTS]
        shown = ", ".join(f"{c.name} {c.us:.2f}" for c in modules[:3]) or "-"
        lines.append(
            f"| {r.model} | "
            + " | ".join(f"{by_part.get(p, 0.0):.2f}" for p in PARTS)
            + f" | {shown} | {sum(by_part.values()):.2f} | {r.samples:,} |"
        )
    if any(r.functions for r in results):
        lines += _functions(results)
    if len(results) > 1:
        base = next((r for r in results if r.model == BASE), first)
        lines += _gaps(base, [r for r in results if r is not base])
    for r in results:
        lines += ["", f"### {r.model}", ""]
        lines += [f"- {note}" for note in r.notes]
        if r.symbols:
            lines += ["| symbol (part) | µs/request |", "|---|---:|"]
            lines += [f"| `{c.name}` | {c.us:.2f} |" for c in r.symbols]
        if r.functions:
            lines += ["", "| Python function | µs/request | of which kernel |", "|---|---:|---:|"]
            lines += [f"| `{f.name}` | {f.us:.2f} | {f.kernel_us:.2f} |" for f in r.functions]
    return "\n".join(lines) + "\n"


def _functions(results: Sequence[Explained]) -> list[str]:
    lines = [
        "",
        "## Which Python functions",
        "",
        "A second server with perf trampolines (Python 3.12+), under a load window of its "
        "own: its samples by the innermost Python function on the sampled stack, in µs per "
        "request: the function's own bytecode and the C code and system calls it calls, "
        "not the Python functions it calls; the kernel's part in brackets. "
        f"`{NO_PYTHON}`: a C loop, or the interpreter outside any Python function. "
        "Trampolines stop the interpreter from inlining Python calls: the process view's "
        "CPU per request in this window beside the clean phase's shows what that cost.",
        "",
        f"| model | the top {FUNCTIONS_SHOWN} (kernel) | their sum | CPU µs here | clean |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        clean, here = r.phase("clean"), r.phase("functions")
        assert clean
        if not r.functions or here is None:
            lines.append(f"| {r.model} | n/a | | | {clean.cpu_us:.2f} |")
            continue
        top = r.functions[:FUNCTIONS_SHOWN]
        shown = ", ".join(f"`{f.name}` {f.us:.2f} ({f.kernel_us:.2f})" for f in top)
        lines.append(
            f"| {r.model} | {shown} | {sum(f.us for f in top):.2f} | {here.cpu_us:.2f} | "
            f"{clean.cpu_us:.2f} |"
        )
    return lines


def _gaps(base: Explained, others: Sequence[Explained]) -> list[str]:
    """Each model against the base: the process view's gap split into user and system
    time (they add up to it), the system calls, and the profile's parts."""
    lines = [
        "",
        f"## Gaps against {base.model}",
        "",
        f"Per request, each model minus {base.model}. The process view's gap (clean phase) "
        "is user + system time exactly. With equal system calls per request, a system-time "
        "gap is the kernel's cost per call or the host's noise (compare the totals' "
        "ranges above); the profile's parts split the user-space side: the interpreter "
        "running Python code against C modules doing the same work.",
        "",
        "| model | total µs | user µs | sys µs | syscalls | interpreter | libc | C modules "
        "| kernel |",
        "|---|" + "---:|" * 8,
    ]
    for r in others:
        a, b = _phase(base), _phase(r)
        calls = (
            "n/a"
            if r.syscalls_per_request is None or base.syscalls_per_request is None
            else f"{r.syscalls_per_request - base.syscalls_per_request:+.2f}"
        )
        lines.append(
            f"| {r.model} | {b.cpu_us - a.cpu_us:+.2f} | {b.user_us - a.user_us:+.2f} | "
            f"{b.sys_us - a.sys_us:+.2f} | {calls} | "
            f"{_part(r, 'interpreter') - _part(base, 'interpreter'):+.2f} | "
            f"{_part(r, 'libc') - _part(base, 'libc'):+.2f} | "
            f"{_modules(r) - _modules(base):+.2f} | "
            f"{_part(r, 'kernel') - _part(base, 'kernel'):+.2f} |"
        )
    return lines


def _phase(r: Explained) -> Phase:
    clean = r.phase("clean")
    assert clean is not None
    return clean


def _part(r: Explained, name: str) -> float:
    return next((c.us for c in r.parts if c.name == name), 0.0)


def _modules(r: Explained) -> float:
    return sum(c.us for c in r.parts if c.name not in PARTS)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"

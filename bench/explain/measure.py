"""`bench explain MODEL ...`: where a model's CPU per request goes, at one offered rate.

For each model: a server on the server CPUs, the load generator's open loop at --rate on
the client CPUs, and three back-to-back phases inside the load's window (a fourth in
a window of its own):

1. clean: nothing attached. CPU per request in the process view (user and system time
   of the server and its children) and the core view (the server CPUs' busy time,
   softirq included);
2. syscalls: `perf stat` counts the raw_syscalls:sys_enter tracepoint of the server's
   processes, and the common calls by name. It counts in the kernel without stopping the
   server, so events batch as they do unobserved (strace stops the server at each
   call and changes that);
3. profile: `perf record` samples the server CPUs every 333.667 µs of on-CPU time,
   and the samples of the server's processes split its time by shared object (kernel,
   interpreter, libc, the model's extension module) and by symbol;
4. functions (Python 3.12+): a second server, started with perf trampolines
   (PYTHONPERFSUPPORT=1), under a second load window. perf records each sample's
   stack, which names the innermost Python function: its own bytecode and the C code
   and system calls it calls. Trampolines stop the interpreter from inlining Python
   calls, which costs (docs/models.md), so phases 1-3 run without them.

Each figure divides by the replies of its own phase, counted from the load
generator's 100 ms interval counts between the phase's ends; the CPU per request of
phases 2 to 4, beside the clean one, shows what the observing cost. What this cannot
see, and why not py-spy: docs/models.md, "Where the microseconds go".
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.explain import perf as perf_session
from bench.explain.phases import Phase as Phase  # its home; imported from here too
from bench.explain.phases import phase_figures
from bench.explain.phases import replies_between as replies_between
from bench.record import CPU_SAMPLED
from bench.run.cpus import CpuPlan
from bench.run.sampler import CoreSampler, ServerSampler
from bench.run.server_process import ServerProcess
from clients.result import LoadResult, LoadResultError, build_dataclass
from common.cpus import format_cpu_list
from common.cputime import CpuReading, tree_cpu
from common.migrate import Document, MigrationError, Migrations

SCHEMA = 3  # 2: `functions`; 3: each phase's `cpu_source`
# perf names Python functions through the trampolines that Python 3.12 added
PYTHON_FUNCTIONS = sys.version_info >= (3, 12)
PHASES = ("clean", "syscalls", "profile")  # one window; "functions" has its own
LEAD_S = 0.5  # into the window before the first phase (the connects take milliseconds)
TEARDOWN_S = 4.0  # perf stat took 1.3 s to close here, between two phases
CONNECT_S = 30.0  # for the load generator to establish its connections
WARMUP_S = 1.0
TOP = 12  # symbols kept per model


class ExplainError(RuntimeError):
    """A model whose costs could not be measured; the others go on."""


@dataclass(frozen=True)
class Cost:
    name: str  # a part (kernel, interpreter, libc, a module) or "symbol (object)"
    us: float  # on-CPU microseconds per request, from the profile's samples


@dataclass(frozen=True)
class FunctionCost:
    name: str  # the innermost Python function on the sampled stack, or NO_PYTHON
    us: float  # on-CPU microseconds per request: its own, and the C code and calls below it
    kernel_us: float  # the part of `us` in the kernel


@dataclass(frozen=True)
class Explained:
    model: str
    protocol: str
    payload: int
    connections: int
    rate: float | None  # asked, requests/s; None: the closed loop
    achieved: float  # the load's whole window
    client_bound: bool | None
    phases: tuple[Phase, ...]
    syscalls_per_request: float | None
    syscalls: tuple[tuple[str, float], ...]  # (name, per request), most first
    parts: tuple[Cost, ...]  # the profile by part, most first
    symbols: tuple[Cost, ...]  # the TOP symbols
    samples: int  # the profile's samples of the server's processes
    notes: tuple[str, ...]  # what could not be measured, and why
    repeats: int = 1  # every figure is the median of this many measurements
    cpu_range: tuple[float, float] | None = None  # the clean total's lowest and highest
    functions: tuple[FunctionCost, ...] = ()  # the TOP Python functions (Python 3.12+)
    schema: int = SCHEMA

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


@dataclass(frozen=True)
class Options:
    protocol: str = "echo"
    payload: int = 64
    connections: int = 100
    rate: float | None = 50_000.0  # None: the closed loop
    phase_s: int = 2
    functions: bool = True  # name Python functions where the interpreter allows it


def explain_model(
    model: str, options: Options, plan: CpuPlan, out_dir: Path, log: Callable[[str], None]
) -> Explained:
    """Measure one model (see the module); ExplainError if it cannot be measured."""
    data = out_dir / f"perf-{model}.data"
    # Each perf starts in its own phase: a perf stat's tracepoints cost even while its
    # events are off, and it takes about 1.3 s to close (TEARDOWN_S).
    main = _window(
        model, options, plan, PHASES, log,
        sessions={
            "syscalls": lambda pids: perf_session.syscall_counter(pids, out_dir),
            "profile": lambda _pids: perf_session.profiler(plan.server, data),
        },
    )  # fmt: skip
    notes = []
    counts: Counter[str] = Counter()
    counter, profiler = main.sessions["syscalls"], main.sessions["profile"]
    if counter.note:
        notes.append(f"syscalls: not counted, {counter.note}")
    else:
        counts = perf_session.parse_stat(counter.stderr)
    by_symbol: Counter[tuple[str, str]] = Counter()
    if profiler.note:
        notes.append(f"profile: not sampled, {profiler.note}")
    else:
        sampled = perf_session.samples(data, main.pids)
        by_symbol = sampled.by_symbol
        if not by_symbol:
            notes.append(
                f"profile: none of perf's {sampled.seen} samples was of the server's processes"
            )
    data.unlink(missing_ok=True)
    phases = main.phases
    functions: tuple[FunctionCost, ...] = ()
    if options.functions and not PYTHON_FUNCTIONS:
        notes.append(
            "Python functions: not named; perf finds them through Python 3.12's "
            f"trampolines, and this is Python {sys.version_info[0]}.{sys.version_info[1]}"
        )
    elif options.functions:
        found, got = _functions(model, options, plan, out_dir, log)
        phases += found.phases
        if isinstance(got, str):
            notes.append(got)
        else:
            functions = got
    calls, profile = phases[1], phases[2]
    total = counts.get(perf_session.TOTAL)
    named = {
        k.removeprefix("syscalls:sys_enter_"): v
        for k, v in counts.items()
        if k != perf_session.TOTAL
    }
    if total is not None and (other := total - sum(named.values())) > 0:
        named["other"] = other
    per_sample = _us_per_sample(profile)
    parts: Counter[str] = Counter()
    for (_, dso), n in by_symbol.items():
        parts[perf_session.part(dso)] += n
    return Explained(
        model=model,
        protocol=options.protocol,
        payload=options.payload,
        connections=options.connections,
        rate=options.rate,
        achieved=main.load.throughput_rps,
        client_bound=main.load.client.bound,
        phases=phases,
        syscalls_per_request=None if total is None else total / calls.requests,
        syscalls=tuple((k, v / calls.requests) for k, v in Counter(named).most_common() if v),
        parts=tuple(Cost(k, n * per_sample) for k, n in parts.most_common()),
        symbols=tuple(
            Cost(f"{sym} ({perf_session.part(dso)})", n * per_sample)
            for (sym, dso), n in by_symbol.most_common(TOP)
        ),
        samples=sum(by_symbol.values()),
        notes=tuple(notes),
        functions=functions,
    )


def _us_per_sample(phase: Phase) -> float:
    return perf_session.SAMPLE_NS / 1e3 / phase.requests


def _functions(
    model: str, options: Options, plan: CpuPlan, out_dir: Path, log: Callable[[str], None]
) -> tuple[Window, tuple[FunctionCost, ...] | str]:
    """The Python functions' costs, from a second server that runs with perf trampolines
    (they cost every Python call, so the other phases run without them): the window,
    and the functions or why there are none."""
    data = out_dir / f"perf-{model}-stacks.data"
    found = _window(
        model, options, plan, ("functions",), log,
        sessions={"functions": lambda _pids: perf_session.profiler(plan.server, data, True)},
        env={"PYTHONPERFSUPPORT": "1"},
    )  # fmt: skip
    if note := found.sessions["functions"].note:
        data.unlink(missing_ok=True)
        return found, f"Python functions: not sampled, {note}"
    sampled = perf_session.samples(data, found.pids)
    data.unlink(missing_ok=True)
    per_sample = _us_per_sample(found.phases[0])
    in_function: Counter[str] = Counter()
    in_kernel: Counter[str] = Counter()
    for (name, where), n in sampled.by_function.items():
        in_function[name] += n
        in_kernel[name] += n if where == "kernel" else 0
    if not in_function:
        return found, f"Python functions: none of perf's {sampled.seen} samples was the server's"
    return found, tuple(
        FunctionCost(name, n * per_sample, in_kernel[name] * per_sample)
        for name, n in in_function.most_common(TOP)
    )


@dataclass(frozen=True)
class Window:
    """One server under one load window, measured in back-to-back phases."""

    load: LoadResult
    phases: tuple[Phase, ...]
    sessions: dict[str, perf_session.PerfSession]  # the phases that ran a perf
    pids: set[int]  # the server's processes


def _window(
    model: str,
    options: Options,
    plan: CpuPlan,
    names: Sequence[str],
    log: Callable[[str], None],
    sessions: dict[str, Callable[[Sequence[int]], perf_session.PerfSession]],
    env: dict[str, str] | None = None,
) -> Window:
    """Start `model`'s server and the load, and measure the phases `names` in turn, each
    with its perf session if it has one; ExplainError if it cannot be measured."""
    # Set to 0, not left out, so that a user's own setting cannot leak in.
    env = env or {"PYTHONPERFSUPPORT": "0"}
    server = ServerProcess(model, options.protocol, cpus=plan.server, env=env)
    try:
        server.start()
    except Exception as exc:
        raise ExplainError(f"{model}: the server did not start: {exc}") from None
    ran: dict[str, perf_session.PerfSession] = {}
    try:
        sampler = ServerSampler(server.pid).start()
        cores = CoreSampler(list(plan.server)).start()
        loadgen = subprocess.Popen(
            _load_command(options, server.port, plan, len(names)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            # The load's window opens WARMUP_S after its connections are up; waiting
            # for them, not for a fixed time, keeps a slow start (a cold interpreter
            # on CI) from putting the first phase before the window.
            try:
                _wait_connected(server.port, options.connections, loadgen)
            except ExplainError as exc:
                raise ExplainError(f"{model}: {exc}") from None
            time.sleep(WARMUP_S + LEAD_S)
            spans = []
            edges: dict[str, tuple[CpuReading, CpuReading] | None] = {}
            for name in names:
                log(f"{model}: {name} phase ({options.phase_s} s)")
                if name in sessions:
                    ran[name] = session = sessions[name](_tree(server.pid))
                    spans.append((name, *session.measure(options.phase_s)))
                    session.close()
                else:  # the clean phase: the server's CPU clocks read at its edges
                    start, end, edges[name] = _clean_phase(server.pid, options.phase_s)
                    spans.append((name, start, end))
            pids = set(_tree(server.pid))
            out, err = loadgen.communicate(timeout=options.phase_s * 10 + 30)
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
            sampler.stop()
            cores.stop()
        try:
            load = LoadResult.from_json(out)
        except LoadResultError:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise ExplainError(f"{model}: the load generator failed: {last}") from None
    finally:
        for session in ran.values():
            session.close()
        server.stop()
    phases = tuple(
        phase_figures(name, (a, b), load, sampler, cores, edges.get(name)) for name, a, b in spans
    )
    for phase, (name, a, b) in zip(phases, spans, strict=True):
        if phase.requests <= 0:
            where = _where(load, a, b)
            raise ExplainError(f"{model}: the {name} phase{where} saw no reply in the window")
    return Window(load, phases, ran, pids)


def _where(load: LoadResult, start: float, end: float) -> str:
    """Where a span lay in the load's window, for an error."""
    if (w := load.window) is None:
        return ""
    return (
        f" ({start - w.start_unix:+.2f} to {end - w.start_unix:+.2f} s from the start of "
        f"a {w.end_unix - w.start_unix:.1f} s window)"
    )


def _clean_phase(
    pid: int, seconds: float
) -> tuple[float, float, tuple[CpuReading, CpuReading] | None]:
    """Wait out a phase without perf: its start and end (unix times) and the server's CPU
    read just before the one and just after the other (None if it was gone)."""
    before, start = tree_cpu(pid), time.time()
    time.sleep(seconds)
    end, after = time.time(), tree_cpu(pid)
    return start, end, None if before is None or after is None else (before, after)


def _tree(pid: int) -> list[int]:
    """The server and its children (prefork's workers), as they are now."""
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


def _wait_connected(port: int, connections: int, loadgen: subprocess.Popen[str]) -> None:
    """Until the load generator's processes hold `connections` established connections
    to `port` (counted on the client's side: the blocking model accepts one at a time);
    ExplainError if the load generator exits or CONNECT_S passes first."""
    deadline = time.monotonic() + CONNECT_S
    while True:
        try:
            client = psutil.Process(loadgen.pid)
            held = sum(
                1
                for proc in (client, *client.children(recursive=True))
                for c in proc.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
            )
        except psutil.Error:
            held = 0
        if held >= connections:
            return
        if loadgen.poll() is not None or time.monotonic() > deadline:
            raise ExplainError(f"the load generator did not connect ({held} of {connections})")
        time.sleep(0.01)


def combine(runs: Sequence[Explained]) -> Explained:
    """One model's repeats as one record: the median of every figure."""
    if len(runs) == 1:
        return runs[0]
    first, med = runs[0], statistics.median
    phases = tuple(
        Phase(
            p.name,
            med(r.phases[i].seconds for r in runs),
            med(r.phases[i].requests for r in runs),
            med(r.phases[i].user_us for r in runs),
            med(r.phases[i].sys_us for r in runs),
            None if any(r.phases[i].core_us is None for r in runs)
            else med(r.phases[i].core_us or 0.0 for r in runs),
            p.cpu_source if all(r.phases[i].cpu_source == p.cpu_source for r in runs)
            else "mixed",
        )
        for i, p in enumerate(first.phases)
    )  # fmt: skip

    def medians(
        items: Callable[[Explained], Sequence[tuple[str, float]]],
    ) -> list[tuple[str, float]]:
        names = {name for r in runs for name, _ in items(r)}
        table = [(n, med(dict(items(r)).get(n, 0.0) for r in runs)) for n in names]
        return sorted(table, key=lambda kv: -kv[1])

    totals = [r.syscalls_per_request for r in runs]
    clean = [r.phases[0].cpu_us for r in runs]
    return Explained(
        model=first.model,
        protocol=first.protocol,
        payload=first.payload,
        connections=first.connections,
        rate=first.rate,
        achieved=med(r.achieved for r in runs),
        client_bound=any(r.client_bound for r in runs),
        phases=phases,
        syscalls_per_request=None if None in totals else med(t or 0.0 for t in totals),
        syscalls=tuple((n, v) for n, v in medians(lambda r: r.syscalls) if v),
        parts=tuple(Cost(n, v) for n, v in medians(lambda r: [(c.name, c.us) for c in r.parts])),
        symbols=tuple(
            Cost(n, v) for n, v in medians(lambda r: [(c.name, c.us) for c in r.symbols])[:TOP]
        ),
        samples=sum(r.samples for r in runs),
        notes=tuple(dict.fromkeys(n for r in runs for n in r.notes)),
        repeats=len(runs),
        cpu_range=(min(clean), max(clean)),
        functions=tuple(
            FunctionCost(n, v, med(_kernel_us(r, n) for r in runs))
            for n, v in medians(lambda r: [(f.name, f.us) for f in r.functions])[:TOP]
        ),
    )


def _load_command(options: Options, port: int, plan: CpuPlan, phases: int) -> list[str]:
    window = phases * options.phase_s + 2 * LEAD_S + TEARDOWN_S
    rate = [] if options.rate is None else ["--rate", f"{options.rate:g}"]
    return [
        sys.executable, "-m", "clients.loadgen", "--target", f"127.0.0.1:{port}",
        "--protocol", options.protocol, "--payload", str(options.payload),
        "--connections", str(options.connections), *rate,
        "--duration", f"{window:g}", "--warmup", f"{WARMUP_S:g}",
        "--cpus", format_cpu_list(plan.client), "--quiet",
    ]  # fmt: skip


def _kernel_us(r: Explained, function: str) -> float:
    return next((f.kernel_us for f in r.functions if f.name == function), 0.0)


def save(results: Sequence[Explained], metadata: dict[str, Any], path: Path) -> None:
    data = {"schema": SCHEMA, "metadata": metadata, "models": [asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _from_schema_1(data: Document) -> Document:
    """Schema 1 (before commit 7050a76) had no fourth phase: no model has `functions`
    (schema 2 writes () where none were named), and each model's own schema moves up."""
    models = [{**m, "functions": [], "schema": 2} for m in data["models"]]
    return {**data, "models": models}


def _from_schema_2(data: Document) -> Document:
    """Schema 2 sampled every phase's CPU (ticks, interpolated): each phase says so."""
    models = [
        {
            **m,
            "phases": [{**p, "cpu_source": CPU_SAMPLED} for p in m["phases"]],
            "schema": 3,
        }
        for m in data["models"]
    ]
    return {**data, "models": models}


# explain.json's upgrades, {from_version: step} (common.migrate, docs/formats.md)
MIGRATIONS = Migrations("explain schema", SCHEMA, {1: _from_schema_1, 2: _from_schema_2})


def load(path: Path) -> tuple[list[Explained], dict[str, Any]]:
    """The models and the metadata of an explain.json, upgraded to this schema;
    ValueError (one line) for one it cannot read."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        data = MIGRATIONS.upgrade(data)
    except MigrationError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return [build_dataclass(Explained, m) for m in data["models"]], data["metadata"]

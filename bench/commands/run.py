"""`python -m bench run`: resolve the matrix, the store and the CPU plan, run the session
(bench.run.session), then print the summary and write the report.

A new run takes its matrix from a profile and the flags; `--resume RUN_DIR` takes the
interrupted run's own matrix and CPUs and runs only the cells it misses. Everything that
can be refused (the matrix, the CPUs, an external server, an interpreter, a resume at
another revision or host) is refused before any cell, with one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.analysis.search import MAX_STEPS
from bench.commands.arguments import add_cpu_arguments, add_out_arguments, add_window_arguments
from bench.run.cpus import CpuPlan, plan_cpus
from bench.run.external import check_external, parse_external
from bench.run.interpreters import InterpreterError, prepare
from bench.run.matrix import (
    DRIVERS,
    IDLE_MODES,
    MODES,
    SLOW_MODES,
    Matrix,
    MatrixError,
    load_profile,
    override,
    profile_names,
)
from bench.run.session import INTERRUPTED, run_session
from bench.store import RESULTS, RunStore, StoreError, resolve_run
from common.cli import (
    ArgumentParser,
    non_negative_int,
    positive_float,
    positive_int,
)
from common.invocation import interpreter

NAME = "run"
DEFAULT_PROFILE = "quick"
# The run flags --resume takes; every other one (the matrix, the CPUs, --run-id: all
# default None) the resumed run takes from its metadata, so given, it would be ignored.
WITH_RESUME = {"command", "resume", "force", "retry_failed", "no_report", "out"}
FLAG = {"protocols": "--protocol", "works": "--work", "externals": "--external"}
# The flags that replace the profile's matrix value of the same name as they are given
# (None: not given); --models, --no-grids and --work are turned into theirs below.
MATRIX_FLAGS = (
    "pythons", "server_host", "externals", "allow_remote", "expect_status", "expect_body",
    "protocols", "connections", "payloads", "modes", "backlogs", "idle", "idle_mode",
    "slow", "slow_mode", "slow_interval_ms", "repeats", "duration", "warmup", "driver",
    "seed", "inject_delay_ns", "allocator", "rates", "sweep", "arrivals", "slo", "search",
    "search_steps", "locust_workers", "locust_master_host", "locust_master_port", "workers",
)  # fmt: skip


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(NAME, help="run a matrix of cells and write the report")
    _axis_arguments(parser)
    _beside_arguments(parser)
    _load_arguments(parser)
    _driver_arguments(parser)
    _server_arguments(parser)
    _store_arguments(parser)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """0 once every cell ran (failed cells are rows too), 130 on Ctrl-C."""
    store, matrix, plan = _resume(args) if args.resume else _new_run(args, argv)
    if not run_session(
        store, matrix, plan, retry_failed=args.retry_failed, on_interrupt=_write_csv
    ):
        return INTERRUPTED
    from bench.report.summary import terminal_summary  # pandas: only once the cells are done

    print(terminal_summary(store.rows()))
    if args.no_report:
        print(f"rows: {_write_csv(store.path)}")
        return 0
    from bench.report.build import build_report_and_csv  # pandas, matplotlib: only here

    print(f"report: {build_report_and_csv([store.path])}")
    return 0


def _new_run(args: argparse.Namespace, argv: list[str]) -> tuple[RunStore, Matrix, CpuPlan]:
    """A new run's matrix (profile and flags), checked, its CPU plan and its store."""
    if args.retry_failed:
        raise StoreError("--retry-failed needs --resume RUN_DIR")
    from bench.run.machine import collect_metadata  # reads /proc and git: only for new runs

    matrix = resolve_matrix(args)
    check_before_cells(matrix)
    plan = plan_cpus(args.server_cpus, args.client_cpus)
    command = [interpreter(), "-m", "bench", *argv]  # runnable as shown in the report
    metadata = collect_metadata(command, matrix.profile, plan.to_dict())
    metadata["matrix"] = matrix.to_dict()
    return RunStore.create(args.out, args.run_id, metadata), matrix, plan


def _resume(args: argparse.Namespace) -> tuple[RunStore, Matrix, CpuPlan]:
    """The interrupted run's store, with its own matrix and CPU plan; refused where a flag
    would be ignored or the run was made at another revision or host (unless --force)."""
    given = [k for k, v in vars(args).items() if v is not None and k not in WITH_RESUME]
    given += ["out"] if args.out != RESULTS else []
    if given:
        flags = ", ".join(FLAG.get(name, f"--{name.replace('_', '-')}") for name in given)
        raise StoreError(
            f"--resume runs the cells the run still misses, with its own matrix and CPUs: "
            f"{flags} would be ignored; drop it, or start a new run without --resume"
        )
    store = RunStore.open(resolve_run(args.resume, RESULTS))
    if (mismatch := resume_mismatch(store.metadata)) and not args.force:
        raise StoreError(f"{mismatch}: its cells would mix (--force to resume anyway)")
    matrix = Matrix.from_dict(store.metadata["matrix"])
    check_before_cells(matrix)
    plan = plan_cpus(
        tuple(store.metadata["cpu_plan"]["server"]), tuple(store.metadata["cpu_plan"]["client"])
    )
    return store, matrix, plan


def _write_csv(run_dir: Path) -> Path:
    from bench.report.results_csv import write_results_csv

    return write_results_csv(run_dir)


def resolve_matrix(args: argparse.Namespace) -> Matrix:
    """The profile's matrix with the flags given; each external server is one more model."""
    matrix = load_profile(args.profile or DEFAULT_PROFILE)
    models = args.models
    if args.externals:  # each external server is one more model line
        names = [spec.partition("=")[0] for spec in args.externals]
        models = [*(models or matrix.models), *(n for n in names if n not in (models or ()))]
    return override(
        matrix,
        **{name: getattr(args, name) for name in MATRIX_FLAGS},
        models=models,
        grids=() if args.no_grids else None,
        works=[("" if w == "none" else w) for w in args.works] if args.works else None,
    )


def check_before_cells(matrix: Matrix) -> None:
    """Before any cell: each external server is allowed and answers, each interpreter
    exists and has its servers' environment (built here on first use), else exit 2."""
    for spec in matrix.externals:
        if problem := check_external(parse_external(spec), matrix.allow_remote):
            raise MatrixError(problem)
    for spec in matrix.pythons:
        try:
            prepare(spec, log=_progress)
        except InterpreterError as exc:
            raise MatrixError(str(exc)) from None


def _progress(line: str) -> None:
    sys.stderr.write(f"python {line}\n")


def resume_mismatch(metadata: dict[str, Any]) -> str | None:
    """Why resuming this run here would mix code versions or machines, or None."""
    import platform

    from bench.run.machine import REPO_ROOT, git_state

    then_sha = (metadata.get("git") or {}).get("sha")
    then_host = (metadata.get("host") or {}).get("hostname")
    now_sha, _dirty = git_state(REPO_ROOT)
    if then_sha != now_sha:
        return f"the run was made at git {str(then_sha)[:12]}, this checkout is {str(now_sha)[:12]}"
    if then_host != platform.node():
        return f"the run was made on host {then_host!r}, this is {platform.node()!r}"
    return None


def _axis_arguments(parser: ArgumentParser) -> None:
    """The matrix's profile and axes."""
    parser.add_argument(
        "--profile",
        help=f"one of {', '.join(profile_names())} or a .toml path (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"servers to run, from `bench list` (default: the profile's; {DEFAULT_PROFILE}: "
        "every available model family)",
    )
    parser.add_argument(
        "--protocol",
        "--protocols",
        dest="protocols",
        nargs="+",
        choices=["echo", "http"],
        help="echo: length-prefixed frames; http: GET / for payload 0, else POST /echo "
        f"(default: the profile's; {DEFAULT_PROFILE}: echo)",
    )
    parser.add_argument(
        "--connections",
        nargs="+",
        type=positive_int,
        metavar="N",
        help=f"concurrent connections, an axis (default: the profile's; {DEFAULT_PROFILE}: "
        "1 10 100 1000)",
    )
    parser.add_argument(
        "--payloads",
        nargs="+",
        type=int,
        metavar="BYTES",
        help="request payload sizes, an axis: echo frame bytes, or the http POST body "
        f"(0: GET /) (default: the profile's; {DEFAULT_PROFILE}: 64)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        help="persistent connections, or a new connection per request "
        "(default: the profile's; persistent)",
    )
    parser.add_argument(
        "--backlogs",
        nargs="+",
        type=int,
        metavar="N",
        help="listen() backlog as an axis; 0 is the system maximum (default 0)",
    )
    parser.add_argument(
        "--work",
        dest="works",
        nargs="+",
        metavar="KIND:US",
        help="server-side work per request as an axis: none, cpu:US, wait:US (default none)",
    )
    parser.add_argument(
        "--no-grids",
        action="store_true",
        default=None,
        help="run the profile's main product only, not its further grids (quick's idle "
        "sweep); any axis flag (--models, --connections, --idle, ...) leaves them out too",
    )


def _beside_arguments(parser: ArgumentParser) -> None:
    """What each cell holds beside its active connections: idle ones, slow ones."""
    parser.add_argument(
        "--idle",
        nargs="+",
        type=non_negative_int,
        metavar="N",
        help="idle connections held beside the active ones, an axis: each cell's server "
        "also holds N connections that stay silent (docs/idle.md) (default 0)",
    )
    parser.add_argument(
        "--idle-mode",
        choices=IDLE_MODES,
        help="warm: each idle connection sends one request first; silent: they never "
        "speak (default warm)",
    )
    parser.add_argument(
        "--slow",
        nargs="+",
        type=non_negative_int,
        metavar="N",
        help="slow connections beside the active ones, an axis: each sends its requests "
        "(reader: reads its replies) a byte at a time (docs/slow.md; default 0)",
    )
    parser.add_argument("--slow-mode", choices=SLOW_MODES, help="sender (default) or reader")
    parser.add_argument(
        "--slow-interval-ms",
        type=positive_float,
        metavar="MS",
        help="slow connections: milliseconds between two bytes (default 100)",
    )


def _load_arguments(parser: ArgumentParser) -> None:
    """How each cell loads its server: open loop, searches, repeats, windows."""
    parser.add_argument(
        "--rates",
        nargs="+",
        type=positive_float,
        metavar="RPS",
        help="offered load as an axis: open-loop cells at these rates (req/s) "
        "(default: none, closed loop only)",
    )
    parser.add_argument(
        "--sweep",
        nargs="+",
        type=positive_float,
        metavar="FRACTION",
        help="open-loop cells at these increasing fractions of the capacity a short "
        "closed-loop probe finds, e.g. 0.25 0.5 0.9 1.1 (default: no sweep)",
    )
    parser.add_argument(
        "--arrivals",
        choices=["uniform", "poisson"],
        help="how the open-loop cells' requests arrive (default poisson)",
    )
    parser.add_argument(
        "--slo",
        nargs="+",
        metavar="TARGET",
        help="latency targets for the capacity figures, e.g. p99:1ms p99.9:10ms "
        "(default: the report's p99 targets)",
    )
    parser.add_argument(
        "--search",
        action="store_true",
        default=None,
        help="search each cell's capacity at each --slo target (bracket, bisect, re-test; "
        "default: no search)",
    )
    parser.add_argument(
        "--search-steps",
        type=positive_int,
        metavar="N",
        help=f"budget of open-loop steps per search (default {MAX_STEPS})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        metavar="N",
        help="runs of each cell, in shuffled order; 6 or more to tell models apart "
        f"(default: the profile's; {DEFAULT_PROFILE}: 1)",
    )
    add_window_arguments(parser, duration=2.0, warmup=0.5, profile=DEFAULT_PROFILE)


def _driver_arguments(parser: ArgumentParser) -> None:
    """The load generator (locust's workers too), the cell order, and the servers' extra
    CPU per request and allocator."""
    parser.add_argument(
        "--driver",
        choices=DRIVERS,
        help="the load generator: sockbench's own, or locust (default loadgen)",
    )
    parser.add_argument(
        "--locust-workers",
        type=non_negative_int,
        metavar="N",
        help="with --driver locust: each cell runs only a locust master, which waits for N "
        "workers you start (docs/locust.md); 0 (default): locust runs here",
    )
    parser.add_argument(
        "--locust-master-host",
        metavar="HOST",
        help="the address the locust master binds and its workers connect to "
        "(default 127.0.0.1; another needs --allow-remote)",
    )
    parser.add_argument(
        "--locust-master-port",
        type=positive_int,
        metavar="PORT",
        help="the locust master's port (default 5557)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", help="shuffle seed for the cell order (default 0)"
    )
    parser.add_argument(
        "--inject-delay-ns",
        type=int,
        metavar="NS",
        help="extra server CPU nanoseconds per request (tests the regression gate; default 0)",
    )
    parser.add_argument(
        "--allocator",
        choices=["warm", "cold"],
        help="every server's glibc malloc thresholds: warm (default) as a long-running "
        "server has them, cold as a fresh process does (docs/models.md)",
    )


def _server_arguments(parser: ArgumentParser) -> None:
    """The interpreters, external servers, where servers listen and what they must
    answer, and the CPU plan."""
    parser.add_argument(
        "--pythons",
        nargs="+",
        metavar="VERSION|PATH",
        help="run the servers under these interpreters as an axis, e.g. 3.11 3.12 3.13 "
        "(pyenv or PATH), each with its own environment in .venv-servers/ (docs/models.md; "
        "default: the bench's own interpreter)",
    )
    parser.add_argument(
        "--external",
        dest="externals",
        action="append",
        metavar="NAME=HOST:PORT[,pid=PID]",
        help="a server you started, as one more model line NAME (repeatable); with pid=, "
        "its CPU and memory are sampled; loopback only unless --allow-remote",
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="processes (prefork) or pool threads (threadpool), for the models that take "
        "them (default: each model's own)",
    )
    parser.add_argument(
        "--server-host",
        metavar="ADDRESS",
        help="where the servers listen (default 127.0.0.1); locust workers on other "
        "machines need an address they reach (docs/locust.md)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow non-loopback addresses: --external, --server-host, "
        "--locust-master-host (the load crosses a network)",
    )
    parser.add_argument(
        "--expect-status",
        type=int,
        metavar="CODE",
        help="the status an external server's GET / must answer (default 200)",
    )
    parser.add_argument(
        "--expect-body",
        metavar="TEXT|@FILE",
        help="the body an external server's GET / must answer (default sockbench's "
        "'Hello, world!\\n'); the models and reference servers always answer sockbench's",
    )
    add_cpu_arguments(
        parser,
        server="the servers' CPUs, e.g. 0 or 0-3 (default: the first usable CPU)",
        client="the load generator's CPUs, e.g. 1 or 4-15 (default: the other usable CPUs)",
    )


def _store_arguments(parser: ArgumentParser) -> None:
    """Where the run goes, resuming one, and the report."""
    add_out_arguments(parser)
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="run only the cells still missing from an interrupted run, with its own "
        "matrix and CPUs (no matrix flags beside it)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: go on although the run was made at another git revision or host "
        "(default: refuse)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: run the failed cells again too (the new row replaces the old; "
        "default: keep them)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="skip the report at the end (the summary and results.csv are still written)",
    )

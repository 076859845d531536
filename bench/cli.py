"""`python -m bench run | report | compare | explain | list`: the product's main command line."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ab_cli, explain_cli, history_report
from bench.cpus import CpuPlanError, plan_cpus
from bench.external import check_external, parse_external
from bench.interpreters import InterpreterError, prepare
from bench.matrix import (
    DRIVERS,
    MODES,
    Cell,
    Matrix,
    MatrixError,
    load_profile,
    override,
    profile_names,
)
from bench.progress import Progress
from bench.record import Row
from bench.runner import run_cell
from bench.search import MAX_STEPS
from bench.slo_run import ESTIMATED_STEPS, run_searches
from bench.store import RunStore, StoreError
from common.cli import (
    ArgumentParser,
    cpu_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    usage_error,
)
from servers import SERVERS

RESULTS = Path("results")
INTERRUPTED = 130


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a matrix of cells and write the report")
    run.add_argument(
        "--profile",
        default="quick",
        help=f"one of {', '.join(profile_names())} or a .toml path (default quick)",
    )
    run.add_argument("--models", nargs="+", metavar="MODEL")
    run.add_argument(
        "--protocol", "--protocols", dest="protocols", nargs="+", choices=["echo", "http"]
    )
    run.add_argument("--connections", nargs="+", type=positive_int, metavar="N")
    run.add_argument("--payloads", nargs="+", type=int, metavar="BYTES")
    run.add_argument("--modes", nargs="+", choices=MODES)
    run.add_argument(
        "--backlogs",
        nargs="+",
        type=int,
        metavar="N",
        help="listen() backlog as an axis; 0 is the system maximum",
    )
    run.add_argument(
        "--work",
        dest="works",
        nargs="+",
        metavar="KIND:US",
        help="server-side work per request as an axis: none, cpu:US, wait:US",
    )
    run.add_argument(
        "--rates",
        nargs="+",
        type=positive_float,
        metavar="RPS",
        help="offered load as an axis: open-loop cells at these rates (req/s)",
    )
    run.add_argument(
        "--sweep",
        nargs="+",
        type=positive_float,
        metavar="FRACTION",
        help="open-loop cells at these increasing fractions of the capacity a short "
        "closed-loop probe finds, e.g. 0.25 0.5 0.9 1.1",
    )
    run.add_argument("--arrivals", choices=["uniform", "poisson"], help="of the open-loop cells")
    run.add_argument(
        "--slo",
        nargs="+",
        metavar="TARGET",
        help="latency targets for the capacity figures, e.g. p99:1ms p99.9:10ms",
    )
    run.add_argument(
        "--search",
        action="store_true",
        default=None,
        help="search each cell's capacity at each --slo target (bracket, bisect, re-test)",
    )
    run.add_argument(
        "--search-steps",
        type=positive_int,
        metavar="N",
        help=f"budget of open-loop steps per search (default {MAX_STEPS})",
    )
    run.add_argument("--repeats", type=positive_int)
    run.add_argument(
        "--duration", type=positive_float, metavar="S", help="measured window per cell"
    )
    run.add_argument("--warmup", type=non_negative_float, metavar="S")
    run.add_argument("--driver", choices=DRIVERS)
    run.add_argument(
        "--locust-workers",
        type=non_negative_int,
        metavar="N",
        help="with --driver locust: each cell runs only a locust master, which waits for N "
        "workers you start (docs/locust.md); 0 (default): locust runs here",
    )
    run.add_argument(
        "--locust-master-host",
        metavar="HOST",
        help="the address the locust master binds and its workers connect to "
        "(default 127.0.0.1; another needs --allow-remote)",
    )
    run.add_argument(
        "--locust-master-port",
        type=positive_int,
        metavar="PORT",
        help="the locust master's port (default 5557)",
    )
    run.add_argument("--seed", type=int, help="shuffle seed for the cell order")
    run.add_argument(
        "--inject-delay-ns",
        type=int,
        metavar="NS",
        help="extra server CPU nanoseconds per request (tests the regression gate; default 0)",
    )
    run.add_argument(
        "--allocator",
        choices=["warm", "cold"],
        help="every server's glibc malloc thresholds: warm (default) as a long-running "
        "server has them, cold as a fresh process does (docs/models.md)",
    )
    run.add_argument(
        "--pythons",
        nargs="+",
        metavar="VERSION|PATH",
        help="run the servers under these interpreters as an axis, e.g. 3.11 3.12 3.13 "
        "(pyenv or PATH), each with its own environment in .venv-servers/ (docs/models.md)",
    )
    run.add_argument(
        "--external",
        dest="externals",
        action="append",
        metavar="NAME=HOST:PORT[,pid=PID]",
        help="a server you started, as one more model line NAME (repeatable); with pid=, "
        "its CPU and memory are sampled; loopback only unless --allow-remote",
    )
    run.add_argument(
        "--server-host",
        metavar="ADDRESS",
        help="where the servers listen (default 127.0.0.1); locust workers on other "
        "machines need an address they reach (docs/locust.md)",
    )
    run.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow non-loopback addresses: --external, --server-host, "
        "--locust-master-host (the load crosses a network)",
    )
    run.add_argument(
        "--expect-status",
        type=int,
        metavar="CODE",
        help="the status an external server's GET / must answer (default 200)",
    )
    run.add_argument(
        "--expect-body",
        metavar="TEXT|@FILE",
        help="the body an external server's GET / must answer (default sockbench's "
        "'Hello, world!\\n'); the models and reference servers always answer sockbench's",
    )
    run.add_argument("--server-cpus", type=cpu_list, metavar="LIST", help="e.g. 0 or 0-3")
    run.add_argument("--client-cpus", type=cpu_list, metavar="LIST", help="e.g. 1 or 4-15")
    run.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        metavar="DIR",
        help="where run folders go (default results/)",
    )
    run.add_argument("--run-id", help="name of the run folder (default: a timestamp)")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="run only the cells still missing from an interrupted run",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="with --resume: go on although the run was made at another git revision or host",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: run the failed cells again too (the new row replaces the old)",
    )
    run.add_argument("--no-report", action="store_true", help="skip the report at the end")
    report = sub.add_parser("report", help="(re)build report.md, report.html and charts")
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="the models the load-latency overview chart draws (at most 6)",
    )
    sub.add_parser("list", help="list profiles and models")
    explain_cli.add_parser(sub)
    ab_cli.add_parser(sub)
    history_report.add_parser(sub)
    compare = sub.add_parser(
        "compare",
        help="compare two existing runs' repeats (exit 1 on a regression); the gate is bench ab",
    )
    compare.add_argument("base_run", type=Path, metavar="BASE_RUN")
    compare.add_argument("new_run", type=Path, metavar="NEW_RUN")
    compare.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        metavar="PCT",
        help="smallest change that counts, in percent (default 5)",
    )
    compare.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        metavar="A",
        help="significance level of the Mann-Whitney U test (default 0.05)",
    )
    compare.add_argument(
        "--force",
        action="store_true",
        help="compare runs whose machine or CPU plan differ (with a warning)",
    )
    compare.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="markdown summary (default NEW_RUN/compare.md); the chart goes beside it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, argv if argv is not None else sys.argv[1:])
        if args.command == "report":
            return cmd_report(args.run_dir, args.models)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "ab":
            return ab_cli.cmd_ab(args, argv if argv is not None else sys.argv[1:])
        if args.command == "history":
            return history_report.cmd_history(args)
        if args.command == "explain":
            return explain_cli.cmd_explain(args, argv if argv is not None else sys.argv[1:])
        return cmd_list()
    except (MatrixError, CpuPlanError, StoreError) as exc:
        return usage_error("python -m bench", exc)


def cmd_list() -> int:
    print("profiles:")
    for name in profile_names():
        print(f"  {name:<10} {load_profile(name).description}")
    print("models and reference servers:")
    for model in SERVERS.values():
        reason = model.unavailable_reason()
        print(f"  {model.name:<16} {'available' if reason is None else reason}")
    return 0


def resolve_matrix(args: argparse.Namespace) -> Matrix:
    matrix = load_profile(args.profile)
    models = args.models
    if args.externals:  # each external server is one more model line
        names = [spec.partition("=")[0] for spec in args.externals]
        models = [*(models or matrix.models), *(n for n in names if n not in (models or ()))]
    return override(
        matrix,
        models=models,
        pythons=args.pythons,
        server_host=args.server_host,
        externals=args.externals,
        allow_remote=args.allow_remote,
        expect_status=args.expect_status,
        expect_body=args.expect_body,
        protocols=args.protocols,
        connections=args.connections,
        payloads=args.payloads,
        modes=args.modes,
        backlogs=args.backlogs,
        repeats=args.repeats,
        works=[("" if w == "none" else w) for w in args.works] if args.works else None,
        duration=args.duration,
        warmup=args.warmup,
        driver=args.driver,
        seed=args.seed,
        inject_delay_ns=args.inject_delay_ns,
        allocator=args.allocator,
        rates=args.rates,
        sweep=args.sweep,
        arrivals=args.arrivals,
        slo=args.slo,
        search=args.search,
        search_steps=args.search_steps,
        locust_workers=args.locust_workers,
        locust_master_host=args.locust_master_host,
        locust_master_port=args.locust_master_port,
    )


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.retry_failed and not args.resume:
        raise StoreError("--retry-failed needs --resume RUN_DIR")
    if args.resume:
        store = RunStore.open(args.resume)
        if (mismatch := resume_mismatch(store.metadata)) and not args.force:
            raise StoreError(f"{mismatch}: its cells would mix (--force to resume anyway)")
        matrix = Matrix.from_dict(store.metadata["matrix"])
        check_before_cells(matrix)
        plan = plan_cpus(
            tuple(store.metadata["cpu_plan"]["server"]), tuple(store.metadata["cpu_plan"]["client"])
        )
    else:
        from bench.machine import collect_metadata  # reads /proc and git: only for new runs

        matrix = resolve_matrix(args)
        check_before_cells(matrix)
        plan = plan_cpus(args.server_cpus, args.client_cpus)
        metadata = collect_metadata(["python -m bench", *argv], matrix.profile, plan.to_dict())
        metadata["matrix"] = matrix.to_dict()
        store = RunStore.create(args.out, args.run_id, metadata)
    done = {
        (row.cell, row.repeat)
        for row in store.rows()
        if not (args.retry_failed and row.status == "failed")
    }
    cells = [c for c in matrix.cells() if (c.key, c.repeat) not in done]
    if plan.note:
        sys.stderr.write(f"note: {plan.note}\n")
    if matrix.locust_workers:  # started by hand, and again for each cell: say where
        sys.stderr.write(
            f"note: each cell waits for {matrix.locust_workers} locust workers to connect to "
            f"{matrix.locust_master_host}:{matrix.locust_master_port} (docs/locust.md)\n"
        )
    sys.stderr.write(
        f"run {store.path}: {len(cells)} cells to run"
        f"{f' ({len(done)} already done)' if done else ''}; server CPUs "
        f"{list(plan.server)}, load generator CPUs {list(plan.client)}\n"
    )
    # The bench process itself (and its psutil sampling) stays off the server's CPUs;
    # put back afterwards, for a caller running this in-process (the tests).
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(plan.client))
    searches = len(matrix.cells()) * len(matrix.slo) if matrix.search else 0
    progress = Progress(len(cells) + searches * ESTIMATED_STEPS)

    def run_one(cell: Cell, probe_rps: float | None = None) -> Row:
        progress.cell_started(f"{cell.key.key} r{cell.repeat}")
        row = run_cell(cell, matrix, plan, store.run_id, store.path)
        if probe_rps is not None:  # a search step: the capacity its search is planned around
            row = replace(row, probe_rps=probe_rps)
        store.append(row)
        progress.cell_finished(row)
        return row

    def search_ended(estimated: int, ran: int) -> None:
        progress.total += ran - estimated

    try:
        if matrix.search:
            todo = {(c.key, c.repeat) for c in cells}
            run_searches(matrix, store.rows(), todo, run_one, search_ended)
        else:
            for cell in cells:
                run_one(cell)
    except KeyboardInterrupt:
        store.update_metadata(interrupted=True)
        sys.stderr.write(
            f"\ninterrupted: {progress.done} of {len(cells)} cells kept in "
            f"{store.path}\nresume with: python -m bench run --resume "
            f"{store.path}\n"
        )
        return INTERRUPTED
    finally:
        os.sched_setaffinity(0, affinity)
    store.update_metadata(
        interrupted=False, finished_at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    if args.no_report:
        print(store.path)
        return 0
    return cmd_report(store.path)


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

    from bench.machine import REPO_ROOT, git_state

    then_sha = (metadata.get("git") or {}).get("sha")
    then_host = (metadata.get("host") or {}).get("hostname")
    now_sha, _dirty = git_state(REPO_ROOT)
    if then_sha != now_sha:
        return f"the run was made at git {str(then_sha)[:12]}, this checkout is {str(now_sha)[:12]}"
    if then_host != platform.node():
        return f"the run was made on host {then_host!r}, this is {platform.node()!r}"
    return None


def cmd_report(run_dir: Path, models: list[str] | None = None) -> int:
    from bench.report import build_report  # pandas and matplotlib load only here

    report = build_report(run_dir, models)
    print(f"report: {report}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import CompareError, run  # scipy loads only here

    try:
        return run(
            args.base_run,
            args.new_run,
            threshold_pct=args.threshold,
            alpha=args.alpha,
            force=args.force,
            out=args.out,
        )
    except CompareError as exc:
        return usage_error("python -m bench compare", exc)

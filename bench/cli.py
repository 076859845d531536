"""`python -m bench run | report | compare | explain | list`: the product's main command line."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.analysis.search import MAX_STEPS
from bench.commands import ab as ab_cli
from bench.commands import explain as explain_cli
from bench.gate import history_report
from bench.record import Row
from bench.run.cpus import CpuPlanError, plan_cpus
from bench.run.external import check_external, parse_external
from bench.run.interpreters import InterpreterError, prepare
from bench.run.matrix import (
    DRIVERS,
    MODES,
    Cell,
    Matrix,
    MatrixError,
    load_profile,
    override,
    profile_names,
)
from bench.run.progress import Progress
from bench.run.runner import run_cell
from bench.run.slo import ESTIMATED_STEPS, run_searches
from bench.store import RunStore, StoreError, resolve_run
from common.cli import (
    ArgumentParser,
    cpu_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    usage_error,
)
from common.invocation import interpreter, python_m
from servers import SERVERS

RESULTS = Path("results")
INTERRUPTED = 130
DEFAULT_PROFILE = "quick"
# The run flags --resume takes; every other one (the matrix, the CPUs, --run-id: all
# default None) the resumed run takes from its metadata, so given, it would be ignored.
WITH_RESUME = {"command", "resume", "force", "retry_failed", "no_report", "out"}
FLAG = {"protocols": "--protocol", "works": "--work", "externals": "--external"}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a matrix of cells and write the report")
    run.add_argument(
        "--profile",
        help=f"one of {', '.join(profile_names())} or a .toml path (default {DEFAULT_PROFILE})",
    )
    run.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"servers to run, from `bench list` (default: the profile's; {DEFAULT_PROFILE}: "
        "every available model family)",
    )
    run.add_argument(
        "--protocol",
        "--protocols",
        dest="protocols",
        nargs="+",
        choices=["echo", "http"],
        help="echo: length-prefixed frames; http: GET / for payload 0, else POST /echo "
        f"(default: the profile's; {DEFAULT_PROFILE}: echo)",
    )
    run.add_argument(
        "--connections",
        nargs="+",
        type=positive_int,
        metavar="N",
        help=f"concurrent connections, an axis (default: the profile's; {DEFAULT_PROFILE}: "
        "1 10 100 1000)",
    )
    run.add_argument(
        "--payloads",
        nargs="+",
        type=int,
        metavar="BYTES",
        help="request payload sizes, an axis: echo frame bytes, or the http POST body "
        f"(0: GET /) (default: the profile's; {DEFAULT_PROFILE}: 64)",
    )
    run.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        help="persistent connections, or a new connection per request "
        "(default: the profile's; persistent)",
    )
    run.add_argument(
        "--backlogs",
        nargs="+",
        type=int,
        metavar="N",
        help="listen() backlog as an axis; 0 is the system maximum (default 0)",
    )
    run.add_argument(
        "--work",
        dest="works",
        nargs="+",
        metavar="KIND:US",
        help="server-side work per request as an axis: none, cpu:US, wait:US (default none)",
    )
    run.add_argument(
        "--rates",
        nargs="+",
        type=positive_float,
        metavar="RPS",
        help="offered load as an axis: open-loop cells at these rates (req/s) "
        "(default: none, closed loop only)",
    )
    run.add_argument(
        "--sweep",
        nargs="+",
        type=positive_float,
        metavar="FRACTION",
        help="open-loop cells at these increasing fractions of the capacity a short "
        "closed-loop probe finds, e.g. 0.25 0.5 0.9 1.1 (default: no sweep)",
    )
    run.add_argument(
        "--arrivals",
        choices=["uniform", "poisson"],
        help="how the open-loop cells' requests arrive (default poisson)",
    )
    run.add_argument(
        "--slo",
        nargs="+",
        metavar="TARGET",
        help="latency targets for the capacity figures, e.g. p99:1ms p99.9:10ms "
        "(default: the report's p99 targets)",
    )
    run.add_argument(
        "--search",
        action="store_true",
        default=None,
        help="search each cell's capacity at each --slo target (bracket, bisect, re-test; "
        "default: no search)",
    )
    run.add_argument(
        "--search-steps",
        type=positive_int,
        metavar="N",
        help=f"budget of open-loop steps per search (default {MAX_STEPS})",
    )
    run.add_argument(
        "--repeats",
        type=positive_int,
        metavar="N",
        help="runs of each cell, in shuffled order; 6 or more to tell models apart "
        f"(default: the profile's; {DEFAULT_PROFILE}: 1)",
    )
    run.add_argument(
        "--duration",
        type=positive_float,
        metavar="S",
        help=f"measured window per cell, seconds (default: the profile's; {DEFAULT_PROFILE}: 2)",
    )
    run.add_argument(
        "--warmup",
        type=non_negative_float,
        metavar="S",
        help="seconds of load before the window, not counted "
        f"(default: the profile's; {DEFAULT_PROFILE}: 0.5)",
    )
    run.add_argument(
        "--driver",
        choices=DRIVERS,
        help="the load generator: sockbench's own, or locust (default loadgen)",
    )
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
    run.add_argument(
        "--seed", type=int, metavar="N", help="shuffle seed for the cell order (default 0)"
    )
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
        "(pyenv or PATH), each with its own environment in .venv-servers/ (docs/models.md; "
        "default: the bench's own interpreter)",
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
    run.add_argument(
        "--server-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the servers' CPUs, e.g. 0 or 0-3 (default: the first usable CPU)",
    )
    run.add_argument(
        "--client-cpus",
        type=cpu_list,
        metavar="LIST",
        help="the load generator's CPUs, e.g. 1 or 4-15 (default: the other usable CPUs)",
    )
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
        help="run only the cells still missing from an interrupted run, with its own "
        "matrix and CPUs (no matrix flags beside it)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="with --resume: go on although the run was made at another git revision or host "
        "(default: refuse)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: run the failed cells again too (the new row replaces the old; "
        "default: keep them)",
    )
    run.add_argument(
        "--no-report",
        action="store_true",
        help="skip the report at the end (the summary and results.csv are still written)",
    )
    report = sub.add_parser(
        "report",
        help="(re)build report.md, report.html and charts; a subset, or runs side by side",
    )
    report.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a run folder or a run id in results/; several: drawn side by side, each "
        "line labelled MODEL · RUN",
    )
    report.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="only these models (the load-latency overview chart draws them, at most 6)",
    )
    report.add_argument(
        "--metrics",
        nargs="+",
        metavar="METRIC",
        help="only these metrics' tables and charts, e.g. throughput p99 starved "
        "(names: `bench list`)",
    )
    report.add_argument(
        "--protocols",
        "--protocol",
        nargs="+",
        metavar="PROTOCOL",
        help="only the cells of these protocols (echo, http)",
    )
    report.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the report goes (default: the run's folder; a subset: "
        "RUN/subsets/<choice>/; several runs: results/side-by-side/<runs>/)",
    )
    sub.add_parser("list", help="list profiles, models and the report's metrics")
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
        help="compare runs whose machine or CPU plan differ (with a warning; default: refuse)",
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
            return cmd_report(
                [resolve_run(run, RESULTS) for run in args.runs],
                args.models,
                metrics=args.metrics,
                protocols=args.protocols,
                out=args.out,
            )
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
    from bench.report.frame import METRICS  # pandas: only for this list

    print("metrics (bench report --metrics; a chart's name works too):")
    for metric in METRICS:
        chart = f", chart {metric.chart}" if metric.chart else ""
        print(f"  {metric.name:<16} {metric.label}{chart}")
    return 0


def resolve_matrix(args: argparse.Namespace) -> Matrix:
    matrix = load_profile(args.profile or DEFAULT_PROFILE)
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
    else:
        from bench.run.machine import collect_metadata  # reads /proc and git: only for new runs

        matrix = resolve_matrix(args)
        check_before_cells(matrix)
        plan = plan_cpus(args.server_cpus, args.client_cpus)
        command = [interpreter(), "-m", "bench", *argv]  # runnable as shown in the report
        metadata = collect_metadata(command, matrix.profile, plan.to_dict())
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
        _write_csv(store.path)
        sys.stderr.write(
            f"\ninterrupted: {progress.done} of {len(cells)} cells kept in "
            f"{store.path}\nresume with: {python_m('bench', 'run', '--resume', store.path)}\n"
        )
        return INTERRUPTED
    finally:
        os.sched_setaffinity(0, affinity)
    store.update_metadata(
        interrupted=False, finished_at=datetime.now(UTC).isoformat(timespec="seconds")
    )
    from bench.report.summary import terminal_summary  # pandas: only once the cells are done

    print(terminal_summary(store.rows()))
    if args.no_report:
        print(f"rows: {_write_csv(store.path)}")
        return 0
    return cmd_report([store.path])  # it writes results.csv too


def _write_csv(run_dir: Path) -> Path:
    from bench.report.results_csv import write_results_csv

    return write_results_csv(run_dir)


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


def cmd_report(
    runs: list[Path],
    models: list[str] | None = None,
    *,
    metrics: list[str] | None = None,
    protocols: list[str] | None = None,
    out: Path | None = None,
) -> int:
    from bench.report.build import build_report  # pandas and matplotlib load only here

    report = build_report(runs, models, metrics=metrics, protocols=protocols, out=out)
    if len(runs) == 1 and report.parent == runs[0]:  # the run's own report: its table too
        _write_csv(runs[0])
    print(f"report: {report}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.gate.compare import CompareError, run  # scipy loads only here

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

"""The load-latency charts with many models: the knee, small multiples for every model,
the overview only for a few, and `bench report --models` picking them.

Runs are built from synthetic rows (an M/M/1-shaped curve per model, tests.helpers's
load result underneath), so nothing here starts a server.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench import cli
from bench.analysis import verdict
from bench.analysis.curves import KNEE_FACTOR, Step, knee
from bench.record import CellKey, Reason, Row
from bench.report.build import build_report
from bench.report.curve_section import OVERVIEW_MAX
from bench.store import RunStore
from clients.result import Interval, Latency, Rate
from servers import MODELS
from tests.helpers import SMALL_RUN, load_result

ELEVEN = list(MODELS)  # every model of the registry
FRACTIONS = (0.25, 0.5, 0.7, 0.9, 1.1)
SLICE_S = 0.1
SLICES = 20


def slices(rps: float, p99: int, *, drift: bool, backlog: bool) -> tuple[Interval, ...]:
    """A window of SLICES slices; with `drift`, throughput falls and p99 rises in the
    last third (what bench.analysis.verdict calls non-stationary)."""
    late = 2 * SLICES // 3
    return tuple(
        Interval(
            round(i * SLICE_S, 3),
            int(rps * SLICE_S * (0.4 if drift and i >= late else 1.0)),
            p99 * (5 if drift and i >= late else 1),
            i * 40 if backlog else 0,
        )
        for i in range(SLICES)
    )


def step_row(
    run_id: str,
    model: str,
    connections: int,
    fraction: float,
    capacity: float,
    repeat: int = 0,
    *,
    non_stationary: bool = False,
) -> Row:
    """One open-loop step: p99 grows as 1/(1 - load) below capacity; above it the step is
    overloaded, its rate not achieved and its tail a lower bound."""
    asked = fraction * capacity
    over = fraction >= 1.0
    achieved = min(asked, 0.9 * capacity) if over else asked
    p99 = 500_000 if over else int(100 * (1 + connections / 100) / (1 - fraction))
    latency = Latency(
        count=int(achieved), p50=p99 // 4, p90=p99 // 2, p99=p99, p999=2 * p99, max=2 * p99,
        mean=p99 / 4, censored=50 if over else 0, bounds=("p99", "p999") if over else (),
    )  # fmt: skip
    load = dataclasses.replace(
        load_result(throughput=achieved, connections=connections),
        rate=Rate(asked, asked, achieved, over),
        latency_all=latency,
        intervals=slices(achieved, p99, drift=non_stationary, backlog=over),
        interval_s=SLICE_S,
    )
    reasons = []
    if over:
        reasons.append(Reason("rate", "achieved less than 95% of the rate asked"))
        reasons.append(Reason("overloaded", "the backlog grew through the window"))
    drift = verdict.non_stationary(load.intervals)  # the verdict's own check
    assert (drift is not None) == non_stationary
    if drift is not None:
        reasons.append(Reason("non-stationary", drift))
    return Row(
        run_id,
        CellKey(model, connections=connections, load=f"f{fraction:g}"),
        repeat,
        "ok",
        load=load,
        verdict="suspect" if reasons else "valid",
        reasons=tuple(reasons),
        probe_rps=capacity,
    )


def curve_run(
    root: Path,
    run_id: str,
    models: Sequence[str],
    counts: Sequence[int] = (100, 1000),
    *,
    non_stationary: int = 0,
) -> Path:
    """A run folder: a closed-loop row and a sweep per model and connection count; the
    first `non_stationary` steps (in model, count, fraction order) drift."""
    meta = json.loads((SMALL_RUN / "metadata.json").read_text())
    meta["matrix"] = {"slo": ["p99:1ms", "p99:10ms"]}
    store = RunStore.create(root, run_id, meta)
    drifting = non_stationary
    for index, model in enumerate(models):
        capacity = 10_000.0 * (index + 1)
        for conns in counts:
            closed = load_result(throughput=capacity, connections=conns)
            store.append(Row(run_id, CellKey(model, connections=conns), 0, "ok", load=closed))
            for fraction in FRACTIONS:
                drift = drifting > 0
                drifting -= drift
                store.append(
                    step_row(run_id, model, conns, fraction, capacity, non_stationary=drift)
                )
    return store.path


# -- the knee -----------------------------------------------------------------------------


def steps(*latencies: float, overloaded_from: int | None = None) -> list[Step]:
    return [
        Step(1000.0 * (i + 1), 1000.0 * (i + 1), lat,
             overloaded_from is not None and i >= overloaded_from, False)
        for i, lat in enumerate(latencies)
    ]  # fmt: skip


def test_the_knee_is_the_last_step_before_latency_takes_off_for_good() -> None:
    flat_then_up = steps(100, 120, 150, 180, 2_000, 50_000)
    assert knee(flat_then_up) == flat_then_up[3]
    # one noisy step in the flat part, back under the line after it, is no knee
    spike = steps(100, 900, 120, 150, 2_000)
    assert knee(spike) == spike[3]
    # an overloaded step has taken off whatever its (lower-bound) latency says
    overloaded = steps(100, 120, 150, 200, overloaded_from=3)
    assert knee(overloaded) == overloaded[2]
    # the factor decides where "takes off" starts
    gentle = steps(100, 250, 400)
    assert knee(gentle) == gentle[1]
    assert knee(gentle, factor=2.0) == gentle[0]


def test_no_knee_without_a_flat_part_or_a_take_off() -> None:
    assert knee(steps(100, 120, 150)) is None  # the sweep ended before the knee
    assert knee(steps(100, 5000, 120)) is None  # back under the line at the top: noise
    assert knee(steps(500_000, 600_000, overloaded_from=0)) is None  # saturated from the start
    assert knee(steps(100)) is None
    assert knee([]) is None
    assert KNEE_FACTOR > 1


# -- the charts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eleven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = curve_run(tmp_path_factory.mktemp("curves"), "eleven", ELEVEN)
    build_report(run)
    return run


def test_eleven_models_get_small_multiples_and_no_tangled_overview(eleven: Path) -> None:
    report = (eleven / "report.md").read_text()
    charts = eleven / "charts"
    assert (charts / "curves_by_model_echo_p64.png").stat().st_size > 50_000
    svg = (charts / "curves_by_model_echo_p64.svg").read_text()
    for model in ELEVEN:  # a panel per model and connection count
        assert f"{model} · 100 conns" in svg and f"{model} · 1,000 conns" in svg
    assert not (charts / "curves_echo_p64.png").exists()
    assert "No overview chart" in report and "--models" in report
    assert "1,000 conns: knee" in report
    for target in ("p99_1ms", "p99_10ms"):
        assert (charts / f"capacity_{target}_echo_p64.png").exists()


def test_the_knee_column_gives_the_knee_step_rate(eleven: Path) -> None:
    report = (eleven / "report.md").read_text()
    section = report.split("### Capacity at each latency target (req/s)\n", 1)[1]
    table = [line for line in section.splitlines() if line.startswith("|")]
    header = [h.strip() for h in table[0].strip("|").split("|")]
    epoll = next(line for line in table[2:] if line.startswith("| epoll "))
    cells = dict(zip(header, (c.strip() for c in epoll.strip("|").split("|")), strict=True))
    # p99 grows as 1/(1 - load): the knee is the last fraction whose p99 is within
    # KNEE_FACTOR times the lowest step's, every step above it beyond
    lowest = 1 / (1 - FRACTIONS[0])
    flat = [f for f in FRACTIONS if f < 1 and 1 / (1 - f) <= KNEE_FACTOR * lowest]
    capacity = 10_000 * (ELEVEN.index("epoll") + 1)
    assert cells["100 conns: knee"] == f"{flat[-1] * capacity:,.0f}"
    assert cells["100 conns: closed loop"] == f"{capacity:,.0f}"


def test_a_few_models_get_the_overview_too(tmp_path: Path) -> None:
    few = ELEVEN[:OVERVIEW_MAX]
    run = curve_run(tmp_path, "few", few, counts=(100,))
    build_report(run)
    svg = (run / "charts" / "curves_echo_p64.svg").read_text()
    assert all(model in svg for model in few)
    assert (run / "charts" / "curves_by_model_echo_p64.png").exists()
    assert "No overview chart" not in (run / "report.md").read_text()


def test_models_flag_picks_the_overviews_models(eleven: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    for name in ("metadata.json", "results.jsonl"):
        (run / name).write_bytes((eleven / name).read_bytes())
    assert cli.main(["report", str(run), "--models", "epoll", "uvloop", "asyncio"]) == 0
    out = run / "subsets" / "models-epoll-uvloop-asyncio"  # the run's own report stays
    svg = (out / "charts" / "curves_echo_p64.svg").read_text()
    for model in ("epoll", "uvloop", "asyncio"):
        assert model in svg
    for model in set(ELEVEN) - {"epoll", "uvloop", "asyncio"}:
        assert f">{model}<" not in svg and f" {model}" not in svg, model
    report = (out / "report.md").read_text()
    # the subset holds only the models named: the overview is all of them, untitled
    overview = next(line for line in report.splitlines() if "/curves_echo_p64.png)" in line)
    assert overview.startswith("![Load-latency curves (p99, all requests): echo, 64 B frames]")
    for model in set(ELEVEN) - {"epoll", "uvloop", "asyncio"}:
        assert f"| {model} |" not in report and f" {model} ·" not in report, model
    assert "No overview chart" not in report


def test_models_flag_refuses_bad_names_with_one_line_and_exit_2(eleven: Path) -> None:
    before = sorted(p.name for p in (eleven / "charts").iterdir())
    subsets = sorted(p.name for p in (eleven / "subsets").glob("*"))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(eleven), "--models", "epoll", "nosuch"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "--models: 'nosuch' is not in this run" in done.stderr
    assert sorted(p.name for p in (eleven / "charts").iterdir()) == before  # nothing drawn
    assert sorted(p.name for p in (eleven / "subsets").glob("*")) == subsets


def test_more_models_than_the_overview_takes_get_the_line_instead(
    eleven: Path, tmp_path: Path
) -> None:
    models = ELEVEN[: OVERVIEW_MAX + 1]
    assert cli.main(["report", str(eleven), "--models", *models, "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "No overview chart with every model as a line" in report
    assert not (tmp_path / "charts" / "curves_echo_p64.png").exists()


def test_the_overview_command_the_report_prints_runs_as_printed(eleven: Path) -> None:
    """The report's hint for drawing the overview is run as written, from where the
    report was made (the printed interpreter is relative to it)."""
    report = (eleven / "report.md").read_text()
    hint = next(line for line in report.splitlines() if "No overview chart" in line)
    command = hint.split("every model; ", 1)[1].split(" draws it for", 1)[0]
    done = subprocess.run(
        command, shell=True, cwd=Path.cwd(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, command + "\n" + done.stderr
    models = command.split("--models ", 1)[1].split()
    assert len(models) == 3 and set(models) <= set(ELEVEN)
    subset = eleven / "subsets" / f"models-{'-'.join(models)}"
    assert f"report: {subset / 'report.md'}" in done.stdout
    assert (subset / "charts" / "curves_echo_p64.png").is_file()

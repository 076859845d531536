"""The slow-connection axis of `bench run` (--slow, --slow-mode, --slow-interval-ms): the
cell key and the row (unchanged at 0: written as schema 4, byte for byte), the matrix's
checks, the holders' reports summed, and the report's section on made-up rows; one small
real run at the end (real servers and holders on 127.0.0.1, port 0)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.record import MIGRATIONS, SCHEMA_VERSION, CellKey, Idle, Row, Slow
from bench.report.build import build_report
from bench.report.frame import load_frame
from bench.report.results_csv import HEADER, write_results_csv
from bench.report.slow_section import has_slow_axis
from bench.run.cpus import CpuPlan
from bench.run.matrix import Cell, Matrix, MatrixError, load_profile, override
from bench.run.runner import load_command
from bench.run.slow import all_starved, shortfall, summary
from bench.store import RunStore
from clients.hold_report import HoldReport, SlowCounts
from tests.helpers import SMALL_RUN, load_result, made_up_run, report_table

REPO = Path(__file__).resolve().parent.parent
SCHEMA_4_RUN = REPO / "results" / "reference" / "ab-aa-gate-edges" / "new" / "results.jsonl"
FAST = ["--duration", "0.3", "--warmup", "0.1", "--protocol", "echo", "--payloads", "64"]


# -- the cell key and the row -------------------------------------------------------------


def test_the_key_gains_a_suffix_only_with_slow_connections() -> None:
    assert CellKey("epoll", connections=10).key == "epoll/echo/c10/p64/persistent/loadgen"
    assert CellKey("epoll", slow=0, slow_mode="reader").key == CellKey("epoll").key
    assert CellKey("epoll", slow=100).key.endswith("/loadgen/s100")
    assert CellKey("epoll", idle=50, slow=100, slow_mode="reader").key.endswith("/i50/s100r")


def test_rows_without_slow_connections_are_written_as_schema_4_wrote_them() -> None:
    lines = SCHEMA_4_RUN.read_text().splitlines()
    assert lines
    for line in lines:  # today's rows, read and written again: the same bytes
        assert json.loads(line)["schema"] == 4
        assert Row.from_dict(json.loads(line)).to_json() == line
    held = Idle(10, 10, 10, 10, 0, 0, 0, 1, 0.5)
    row = Row("r", CellKey("epoll", idle=10), 0, "ok", load=load_result(), idle=held)
    written = json.loads(row.to_json())
    assert written["schema"] == 4 and "slow" not in written
    assert set(written["cell"]) == {f.name for f in dataclasses.fields(CellKey)} - {
        "slow",
        "slow_mode",
    }
    assert Row.from_dict(written) == row


def test_a_row_with_slow_connections_is_written_as_schema_5_and_round_trips() -> None:
    slow = Slow(100, 100, 100, 0, 0, 0, 300, 20_400, 20_400, 10.0, 3.0, 1)
    row = Row("r", CellKey("epoll", slow=100, slow_mode="reader"), 0, "ok", slow=slow)
    written = json.loads(row.to_json())
    assert written["schema"] == 5 and SCHEMA_VERSION == 6  # 6's split: no idle here
    assert written["key"].endswith("/s100r") and written["slow"]["requests"] == 300
    assert Row.from_dict(written) == row
    # a schema-4 row reads as one with no slow connection; nothing else changes
    assert MIGRATIONS.upgrade({"schema": 4, "run_id": "x"}) == {"schema": 6, "run_id": "x"}


# -- the matrix and the command line ------------------------------------------------------


def test_the_slow_axis_adds_cells_and_slow_0_leaves_every_cell_alone() -> None:
    base = Matrix(profile="t", models=("epoll", "threadpool"), connections=(10,), repeats=2)
    assert override(base, slow=[0]).cells() == base.cells()
    assert override(base, slow=[0], slow_mode="reader").cells() == base.cells()
    swept = override(base, slow=[0, 100], slow_mode="reader")
    assert sorted({c.key.key for c in swept.cells()}) == [
        "epoll/echo/c10/p64/persistent/loadgen",
        "epoll/echo/c10/p64/persistent/loadgen/s100r",
        "threadpool/echo/c10/p64/persistent/loadgen",
        "threadpool/echo/c10/p64/persistent/loadgen/s100r",
    ]
    # the 0 cells keep the default mode, so that they are every mode's baseline
    assert {c.key.slow_mode for c in swept.cells() if not c.key.slow} == {"sender"}
    assert Matrix.from_dict(swept.to_dict()) == swept
    old = {k: v for k, v in swept.to_dict().items() if not k.startswith("slow")}
    assert Matrix.from_dict(old).slow == (0,)  # a run's metadata from before the axis


def test_with_slow_connections_no_load_generator_of_the_run_busy_polls() -> None:
    """The slow holders share its CPUs: their bytes go out while it waits, where a
    spinning worker would be preempted for each. Every cell of such a run, 0 slow ones
    too, so that the cells compare."""
    plan = CpuPlan(server=(0,), client=(1,), available=(0, 1))
    base = Matrix(profile="t", models=("epoll",), connections=(10,))
    swept = override(base, slow=[0, 100])
    assert "--no-busy-poll" not in load_command(base.cells()[0], "127.0.0.1:1", base, plan)
    for cell in swept.cells():
        assert "--no-busy-poll" in load_command(cell, "127.0.0.1:1", swept, plan)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"slow": (-1,)}, "slow must be >= 0"),
        ({"slow": ()}, "slow must be >= 0"),
        ({"slow_mode": "loud"}, "slow-mode must be one of"),
        ({"slow_interval_ms": 0.0}, "slow-interval-ms must be above 0"),
        ({"slow": (10,), "payloads": (100_000,)}, "at most 65,536 bytes with --slow"),
        ({"slow": (10,), "expect_status": 200}, "no --expect-status or --expect-body"),
    ],
)
def test_the_matrix_refuses_a_bad_slow_axis(bad: dict[str, object], words: str) -> None:
    with pytest.raises(MatrixError, match=words):
        Matrix(profile="t", models=("epoll",), **bad)  # type: ignore[arg-type]


def test_bad_slow_flags_exit_2_before_any_cell(tmp_path: Path, capsys) -> None:
    for flags in (
        ["--slow", "-5"],
        ["--slow-mode", "loud"],
        ["--slow-interval-ms", "0"],
        ["--slow", "10", "--payloads", "100000"],
    ):
        try:  # argparse's errors exit; the matrix's are returned
            code = cli.main(["run", "--models", "epoll", *flags, "--out", str(tmp_path)])
        except SystemExit as exc:
            code = exc.code  # type: ignore[assignment]
        assert code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_the_slow_profile() -> None:
    profile = load_profile("slow")
    assert profile.slow == (0, 10, 100) and profile.repeats == 3
    assert {"threadpool", "epoll"} <= set(profile.models) and profile.connections == (10,)
    assert len(profile.cells()) == len(profile.models) * 3 * 3


# -- the holders' reports, summed -----------------------------------------------------------


def report(stage: str = "ready", **given: object) -> HoldReport:
    fields: dict[str, object] = {
        "stage": stage, "target": "127.0.0.1:1", "mode": "slow-sender", "protocol": "echo",
        "payload": 64, "sources": ("127.0.0.200",), "asked": 100, "established": 100,
        "refused": {"connect_refused": 0}, "warmed": 0, "bad_replies": 0, "lost": {},
        "held": 100, "closed_by_server": 0, "unasked": 0, "connect_s": 0.1, "warm_s": 0.0,
        "slow": SlowCounts(10.0, 0, 0, 0),
    }  # fmt: skip
    if stage == "final":
        fields.update(
            open_at_end=100, held_s=3.0, slow=SlowCounts(10.0, 400, 27_200, 27_000, 27_200, 30)
        )
    fields.update(given)
    return HoldReport(**fields)  # type: ignore[arg-type]


def test_holders_sum_into_one_slow_and_only_a_missing_connect_is_a_shortfall() -> None:
    ready = [report(), report(established=90, held=90, refused={"connect_refused": 10})]
    final = [report("final"), report("final", established=90, open_at_end=85, held_s=3.5,
                                     closed_by_server=3, bad_replies=2)]  # fmt: skip
    slow = summary(ready, final)
    assert (slow.asked, slow.established, slow.refused, slow.open_at_end) == (200, 190, 10, 185)
    assert (slow.requests, slow.bytes_sent, slow.closed_by_server, slow.bad_replies) == (
        800,
        54_400,
        3,
        2,
    )
    assert slow.held_s == 3.5 and slow.interval_ms == 10.0 and slow.holders == 2
    assert (slow.ticks, slow.late) == (54_400, 60)
    assert shortfall(slow) == "connected 190 of 200 slow connections (10 connects failed)"
    whole = summary([report()], [report("final", closed_by_server=40, open_at_end=60)])
    assert shortfall(whole) is None  # what the server did with them is the finding
    unknown = summary([report()], [])  # no final report: what they did is unknown
    assert unknown.open_at_end is None and unknown.requests == 0 and unknown.held_s is None


def test_every_active_connection_starved_beside_slow_ones_is_a_finding() -> None:
    load = load_result(throughput=0)
    starved = dataclasses.replace(
        load, connections=dataclasses.replace(load.connections, starved=10)
    )
    slowed = Cell(CellKey("threadpool", connections=10, slow=100), 0)
    assert all_starved(slowed, starved)
    assert not all_starved(Cell(CellKey("threadpool", connections=10), 0), starved)
    assert not all_starved(slowed, load)  # none starved and none answered: no finding
    assert not all_starved(slowed, load_result()) and not all_starved(slowed, None)


# -- the report, on made-up rows ------------------------------------------------------------

# p99 (µs) of the active clients beside N slow connections; threadpool starves at 100
P99 = {
    "epoll": {0: 100.0, 10: 110.0, 100: 120.0},
    "threadpool": {0: 90.0, 10: 95.0},
    "poll": {0: 80.0},
}
STARVED_P99 = 2_500_000.0


def slow_row(model: str, slow: int, repeat: int, mode: str = "sender") -> Row:
    cell = CellKey(model, connections=10, slow=slow, slow_mode=mode)
    held = Slow(slow, slow, slow, 0, 0, 0, 3 * slow, 68 * 3 * slow, 68 * 3 * slow, 10.0, 3.0, 1)
    if model == "epoll" and slow == 100:  # its holders fell behind: 10% of the slots late
        held = dataclasses.replace(held, ticks=20_000, late=2_000)
    if model == "threadpool" and slow == 100:
        load = load_result(throughput=0)
        assert load.latency_all is not None
        everyone = dataclasses.replace(load.latency_all, p99=STARVED_P99, bounds=("p99",))
        load = dataclasses.replace(
            load,
            latency_all=everyone,
            connections=dataclasses.replace(load.connections, starved=10),
        )
    else:
        load = load_result(throughput=50_000 - 100 * slow, p99=P99[model][slow])
    return Row("slow-run", cell, repeat, "ok", load=load, slow=held if slow else None)


def slow_rows() -> list[Row]:
    rows = [
        slow_row(model, slow, repeat)
        for repeat in range(2)
        for model in ("epoll", "threadpool")
        for slow in (0, 10, 100)
    ]
    rows += [slow_row("epoll", 10, repeat, "reader") for repeat in range(2)]
    rows += [slow_row("poll", 0, repeat) for repeat in range(2)]  # at 0 only: no line
    return rows


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return made_up_run(tmp_path_factory.mktemp("slow"), "slow-run", slow_rows())


def test_the_frame_reads_rows_without_the_slow_fields_as_slow_0() -> None:
    frame = load_frame(slow_rows())
    assert has_slow_axis(frame)
    assert sorted(set(frame["cell.slow"])) == [0, 10, 100]
    assert set(frame[frame["cell.slow"] == 0]["cell.slow_mode"]) == {"sender"}
    assert not has_slow_axis(load_frame(RunStore.open(SMALL_RUN).rows()))


def test_the_section_sets_the_active_clients_against_the_slow_ones(slow_run: Path) -> None:
    report = (slow_run / "report.md").read_text()
    title = "Slow connections: echo, 64 B frames, 10 active connections, slow senders"
    assert f"## {title}" in report
    senders = report.split(f"## {title}", 1)[1]
    table = report_table(senders, "The active clients against the slow connections beside them")
    assert set(table) == {"epoll", "threadpool"}  # poll was at 0 only
    epoll, pool = table["epoll"], table["threadpool"]
    assert (epoll["p99 µs at 0"], epoll["p99 µs at 100"], epoll["p99 × at 100"]) == (
        "100 (100–100)",  # the median of 2 repeats and its interval
        "120 (120–120)",
        "1.20",
    )
    assert pool["p99 µs at 100"].startswith("≥2,500,000") and pool["p99 × at 100"] == "≥27,777.78"
    assert (pool["starved % at 0"], pool["starved % at 100"], pool["req/s at 100"]) == (
        "0.0",
        "100.0",
        "0 (0–0)",
    )
    assert epoll["slow ones' req/s at 100"] == "100.0"  # 300 requests in 3 s held
    assert epoll["read with care"].startswith("10% of the slow ones' bytes over an interval late")
    assert "late" not in pool["read with care"]
    for stem in ("slow_latency_p99", "slow_throughput", "slow_starved"):
        assert (slow_run / "charts" / f"{stem}_echo_p64_c10_slowsender.png").stat().st_size
    # the readers have a section of their own, on the same 0-slow baseline
    assert "## Slow connections: echo, 64 B frames, 10 active connections, slow readers" in report
    # each count of slow connections is a group of its own, its title and files saying which
    assert "## echo, 64 B frames, 100 slow senders" in report
    assert "## echo, 64 B frames, 10 slow readers" in report


def test_results_csv_gains_the_slow_columns_only_with_a_slow_axis(
    slow_run: Path, tmp_path: Path
) -> None:
    with (slow_run / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    reader = next(r for r in rows if r["slow_mode"] == "reader")
    assert reader["key"].endswith("/s10r") and reader["slow_requests"] == "30"
    assert {r["slow"] for r in rows} == {"0", "10", "100"}
    run = tmp_path / "small_run"
    shutil.copytree(SMALL_RUN, run)
    assert "Slow connections" not in build_report(run).read_text()
    with write_results_csv(run).open() as file:
        assert tuple(next(csv.reader(file))) == HEADER


# -- a real run ---------------------------------------------------------------------------


@pytest.mark.real
def test_a_run_beside_slow_senders_makes_the_section(tmp_path: Path) -> None:
    """epoll serves beside 40 slow senders; the thread pool's 32 workers are theirs, so
    its active connections starve: a row all the same (ok, starved 100%), not a failure."""
    code = cli.main(
        ["run", *FAST, "--models", "epoll", "threadpool", "--connections", "4",
         "--slow", "0", "40", "--slow-interval-ms", "1", "--repeats", "1",
         "--out", str(tmp_path), "--run-id", "t"]
    )  # fmt: skip
    assert code == 0
    run = tmp_path / "t"
    rows = {(row.cell.model, row.cell.slow): row for row in RunStore.open(run).rows()}
    assert set(rows) == {(m, n) for m in ("epoll", "threadpool") for n in (0, 40)}
    for (_model, count), row in rows.items():
        assert row.status in ("ok", "client-bound"), row.reason
        assert row.load is not None
        if not count:
            assert row.slow is None and json.loads(row.to_json())["schema"] == 4
            continue
        assert row.slow is not None and row.cell.key.endswith("/s40")
        assert (row.slow.established, row.slow.open_at_end, row.slow.bad_replies) == (40, 40, 0)
        assert row.slow.requests > 0 and row.slow.interval_ms == 1.0
    assert rows[("epoll", 40)].load.requests > 0  # type: ignore[union-attr]
    pool = rows[("threadpool", 40)].load
    assert pool is not None and pool.requests == 0 and pool.connections.starved == 4
    report = (run / "report.md").read_text()
    assert "## Slow connections: echo, 64 B frames, 4 active connections, slow senders" in report

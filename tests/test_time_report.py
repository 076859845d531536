"""The report's "Over time" section (bench.report.time_section): a chart of throughput and p99
through the window for every repeat whose verdict is non-stationary, and for no other."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.analysis import verdict
from bench.record import CellKey, Reason, Row
from bench.report.build import build_report
from bench.report.charts.figures import save_time_chart
from bench.report.time_section import MAX_CHARTS, cell_title, non_stationary, time_section
from bench.store import RunStore
from clients.result import Interval
from tests.helpers import load_result
from tests.test_curve_charts import FRACTIONS, curve_run

HEADING = "## Over time: non-stationary cells"


def over_time_charts(run: Path) -> list[str]:
    return sorted(p.stem for p in (run / "charts").glob("over_time_*.png"))


def test_the_section_draws_exactly_the_non_stationary_repeats(tmp_path: Path) -> None:
    run = curve_run(tmp_path, "drift", ["epoll", "asyncio"], counts=(100,), non_stationary=3)
    build_report(run)
    rows = RunStore.open(run).rows()
    drifting = [r for r in rows if any(x.code == "non-stationary" for x in r.reasons)]
    assert len(drifting) == 3
    report = (run / "report.md").read_text()
    assert report.count(HEADING) == 1
    section = report.split(HEADING, 1)[1].split("\n## ", 1)[0]
    charts = over_time_charts(run)
    assert len(charts) == len(drifting)
    for row in drifting:
        assert f"| {row.cell.key} | {row.repeat} |" in section
        assert cell_title(row) in section  # each chart's title names its cell
    for row in (r for r in rows if r not in drifting):
        assert f"| {row.cell.key} |" not in section


def test_no_section_when_every_window_was_steady(tmp_path: Path) -> None:
    run = curve_run(tmp_path, "steady", ["epoll"], counts=(100,))
    build_report(run)
    assert HEADING not in (run / "report.md").read_text()
    assert over_time_charts(run) == []


def test_the_charts_are_capped_and_spread_over_the_models(tmp_path: Path) -> None:
    models = ["select", "epoll", "asyncio"]
    every = len(models) * len(FRACTIONS)
    assert every > MAX_CHARTS
    run = curve_run(tmp_path, "many", models, counts=(100,), non_stationary=every)
    build_report(run)
    charts = over_time_charts(run)
    assert len(charts) == MAX_CHARTS
    for model in models:  # none is crowded out by the models listed before it
        assert sum(c.startswith(f"over_time_{model}_") for c in charts) == MAX_CHARTS // 3
    report = (run / "report.md").read_text()
    section = report.split(HEADING, 1)[1].split("\n## ", 1)[0]
    assert f"{every - MAX_CHARTS} more are in the table without one" in section
    assert section.count("| no |") == every - MAX_CHARTS
    assert section.count("| yes |") == MAX_CHARTS


def drifting_closed_row(repeat: int, *, status: str = "ok") -> Row:
    slices = tuple(
        Interval(round(i * 0.1, 3), 3000 if i < 10 else 800, 90 if i < 10 else 4000)
        for i in range(15)
    )
    found = verdict.non_stationary(slices)
    assert found is not None
    load = dataclasses.replace(load_result(), intervals=slices, interval_s=0.1)
    return Row(
        "unit", CellKey("threaded", connections=1000), repeat, status,
        load=load if status != "failed" else None, verdict="suspect",
        reasons=(Reason("non-stationary", found),),
    )  # fmt: skip


def test_a_closed_loop_chart_says_what_the_verdict_found(tmp_path: Path) -> None:
    row = drifting_closed_row(4)
    failed = drifting_closed_row(5, status="failed")
    assert non_stationary([row, failed]) == [row]  # no figures, no chart
    section = time_section([row, failed], tmp_path, "the machine")
    assert section is not None and len(section.charts) == 1
    title, stem = section.charts[0]
    for part in ("threaded", "echo", "1,000 connections", "closed loop", "repeat 4"):
        assert part in title
    svg = (tmp_path / f"{Path(stem).name}.svg").read_text()
    assert "Verdict: throughput went from" in svg  # the caption, kept as text
    assert (tmp_path / f"{Path(stem).name}.png").stat().st_size > 20_000
    assert time_section([failed], tmp_path, "the machine") is None


def test_a_window_without_slices_still_draws(tmp_path: Path) -> None:
    save_time_chart([], 0.1, "empty", "caption", tmp_path / "empty")
    assert "no interval data" in (tmp_path / "empty.svg").read_text()

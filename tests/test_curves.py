"""bench.analysis.curves (targets, capacity at a target) and a real sweep through `bench run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.analysis.curves import Step, capacity, load_rate, parse_target
from bench.store import RunStore


def test_targets_parse_and_bad_ones_say_how() -> None:
    target = parse_target("p99:1ms")
    assert (target.percentile, target.limit_us, target.text) == ("p99", 1000, "p99:1ms")
    assert parse_target("p99.9:250us").percentile == "p999"
    assert parse_target("p50:0.5s").limit_us == 500_000
    for bad in ("p99:1", "p99", "p98:1ms", "99:1ms", "p99:-1ms", "p99:0ms"):
        with pytest.raises(ValueError, match="latency target"):
            parse_target(bad)


def test_load_rate() -> None:
    assert load_rate("", None) is None
    assert load_rate("r5000", None) == 5000
    assert load_rate("f0.5", 80_000) == 40_000
    assert load_rate("f0.5", None) is None  # no probe: no rate


def step(asked: float, latency: float, *, achieved: float | None = None, **kw: bool) -> Step:
    return Step(asked, achieved if achieved is not None else asked, latency,
                kw.get("overloaded", False), kw.get("client_bound", False))  # fmt: skip


def test_capacity_interpolates_between_the_steps_around_the_target() -> None:
    steps = [step(1000, 100), step(2000, 300), step(3000, 10_000)]
    found = capacity(steps, 1000)
    assert found.rps is not None and not found.at_least
    # log-linear between 300 us at 2000 and 10 ms at 3000: 1 ms at about 2343 req/s
    assert found.rps == pytest.approx(2000 + 1000 * 0.3433, rel=0.01)


def test_capacity_bounds_and_edges() -> None:
    assert capacity([step(1000, 100), step(2000, 200)], 1000).at_least  # sweep ran out
    bound = capacity([step(1000, 100), step(2000, 200, client_bound=True), step(3000, 5000)], 1000)
    assert bound.at_least and bound.rps == 2000
    overloaded = capacity([step(1000, 100), step(2000, 200, overloaded=True)], 1000)
    assert overloaded.rps == 1000 and not overloaded.at_least
    short = capacity([step(1000, 100), step(2000, 200, achieved=1500)], 1000)
    assert short.rps == 1000  # 75% of the asked rate: the step is not sound
    assert capacity([step(1000, 5000)], 1000).rps is None  # below the lowest step
    assert capacity([], 1000).rps is None


def test_bad_sweeps_and_targets_exit_2_with_one_line(tmp_path: Path) -> None:
    for args in (
        ["--sweep", "0.5", "0.25"],  # not increasing
        ["--slo", "p99:1"],  # no unit
        ["--rates", "0"],
        ["--driver", "locust", "--sweep", "0.5"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bench", "run", "--out", str(tmp_path), "--models", "epoll",
             *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.real
def test_a_sweep_gives_curves_and_capacities(tmp_path: Path) -> None:
    code = cli.main(
        ["run", "--models", "epoll", "--connections", "4", "--sweep", "0.2", "0.6",
         "--slo", "p99:100ms", "--duration", "0.5", "--warmup", "0.1", "--out", str(tmp_path),
         "--run-id", "c"]
    )  # fmt: skip
    assert code == 0
    rows = RunStore.open(tmp_path / "c").rows()
    assert sorted(r.cell.load for r in rows) == ["", "f0.2", "f0.6"]
    stepped = [r for r in rows if r.cell.load]
    for row in stepped:
        assert row.load is not None and row.load.params.rate is not None
        assert row.probe_rps is not None and row.probe_rps > 0
        fraction = float(row.cell.load[1:])
        assert row.load.params.rate == pytest.approx(fraction * row.probe_rps, rel=1e-3)
        assert row.load.params.arrivals == "poisson"
    assert len({r.probe_rps for r in stepped}) == 1  # one probe per cell key and repeat
    report = (tmp_path / "c" / "report.md").read_text()
    assert "## Load-latency curves: echo, 64 B frames" in report
    assert "4 conns: p99:100ms" in report
    for stem in ("curves_echo_p64", "capacity_p99_100ms_echo_p64"):
        assert (tmp_path / "c" / "charts" / f"{stem}.png").stat().st_size > 10_000


def test_a_capacity_with_repeats_below_the_sweep_says_how_many() -> None:
    from bench.analysis.curves import Capacity
    from bench.report.curve_section import capacity_text

    text, bar = capacity_text([Capacity(20_000.0, False, ""), Capacity(None, False, "")])
    assert "1 of 2 repeats below the lowest step" in text
    assert (bar.rps, bar.below, bar.repeats) == (20_000.0, 1, 2)  # drawn hatched, with a count
    text, bar = capacity_text([Capacity(None, False, ""), Capacity(None, False, "")])
    assert text == "below the lowest step" and bar.rps is None and bar.below == 2
    _text, bar = capacity_text([Capacity(20_000.0, False, ""), Capacity(30_000.0, True, "")])
    assert bar.below == 0 and bar.at_least

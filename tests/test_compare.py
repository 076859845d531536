"""bench.gate.compare and `python -m bench compare` on synthetic runs written with RunStore.

Every run here is made up: a few cells, 5 repeats each, values chosen so that the
Mann-Whitney test's answer is known (5 vs 5 fully separated: exact p = 2/252 = 0.008).
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.cli import main
from bench.gate import compare as compare_module
from bench.gate.compare import CompareError, compare_runs
from bench.gate.compare_report import headline
from bench.gate.compare_result import IMPROVEMENT, NO_CHANGE, REGRESSION, pct
from bench.gate.metrics import METRICS, load_value
from bench.record import CellKey, Row
from bench.store import RunStore
from clients.result import RESOLUTION_TENTH_US, RESOLUTION_US_TRUNCATED
from common.text import plural
from tests.helpers import load_result

REPO = Path(__file__).resolve().parents[1]
KEYS = [
    CellKey("epoll", connections=10),
    CellKey("epoll", connections=100),
    CellKey("poll", connections=10),
    CellKey("threaded", connections=100),
]
EPOLL10 = KEYS[0].key
POLL10 = KEYS[2].key
# ±1.5% around 1: low noise; seven distinct values so no ties, and enough for Holm over
# the 4 cells x 3 metrics: 7 vs 7 repeats reach p = 2 / C(14, 7) = 0.00058 <= 0.05 / 12.
LOW_NOISE = (0.985, 0.99, 0.995, 1.0, 1.005, 1.01, 1.015)
FAMILY = len(KEYS) * len(METRICS)

METADATA: dict[str, Any] = {
    "host": {
        "cpu_model": "AMD EPYC 7B13",
        "cpu_count": 2,
        "cpus_available": 2,
        "kernel": "6.18.44",
        "system": "Linux",
        "machine": "x86_64",
        "hostname": "vm",
    },
    "python": {"implementation": "CPython", "version": "3.11.7", "executable": "python"},
    "cpu_plan": {"server": [0], "client": [1], "available": [0, 1], "shared": False, "note": ""},
    "started_at": "2026-11-29T20:15:00+00:00",
}

Values = dict[str, list[tuple[float, float]]]  # key -> [(throughput, p99)] per repeat


@pytest.fixture(autouse=True)
def _no_chart(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering costs ~0.5 s a call: only tests asking for `real_chart` draw one."""
    if "real_chart" not in request.fixturenames:
        monkeypatch.setattr(compare_module, "write_chart", lambda cmp, stem: None)


@pytest.fixture
def real_chart() -> None:
    """Marker fixture: this test renders compare.png and compare.svg."""


def baseline_values() -> Values:
    return {
        key.key: [(10_000 * (1 + i / 10) * f, 500 * f) for f in LOW_NOISE]
        for i, key in enumerate(KEYS)
    }


def make_run(
    root: Path,
    run_id: str,
    values: Values,
    *,
    metadata: dict | None = None,
    extra_rows: Sequence[Row] = (),
    resolution: str = RESOLUTION_TENTH_US,
) -> Path:
    store = RunStore.create(root, run_id, metadata or METADATA)
    cells = {k.key: k for k in KEYS}
    for key, repeats in values.items():
        for repeat, (rps, p99) in enumerate(repeats):
            load = load_result(
                throughput=rps, p50=int(p99 / 3), p99=int(p99), resolution=resolution
            )
            store.append(Row(run_id, cells[key], repeat, "ok", load=load))
    for row in extra_rows:
        store.append(row)
    return store.path


def scaled(values: Values, key: str, *, rps: float = 1.0, p99: float = 1.0) -> Values:
    out = dict(values)
    out[key] = [(r * rps, p * p99) for r, p in values[key]]
    return out


def compare(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_runs_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_chart: None
) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", baseline_values())
    code, out, err = compare(tmp_path, capsys, str(base), str(new))
    assert code == 0, err
    assert "0 regressions, 0 improvements, 4 unchanged of 4 cells" in out
    assert (new / "compare.md").read_text(encoding="utf-8") == out
    assert (new / "compare.png").stat().st_size > 0
    assert (new / "compare.svg").stat().st_size > 0


def test_low_noise_throughput_drop_is_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", scaled(baseline_values(), POLL10, rps=0.90))
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 1
    assert "1 regression, 0 improvements, 3 unchanged of 4 cells" in out
    table = [line for line in out.splitlines() if line.startswith("| **regression**")]
    assert len(table) == 1 and POLL10 in table[0] and "-10.0%" in table[0]

    cmp = compare_runs(base, new)
    cell = cmp.cells[0]  # regressions come first
    assert (cell.key, cell.verdict) == (POLL10, REGRESSION)
    tput = cell.changes[0]
    assert tput.ratio == pytest.approx(0.90)
    assert tput.ci_low <= 0.90 <= tput.ci_high and tput.ci_high < 0.95
    assert tput.p_value == pytest.approx(2 / 3432)
    # Holm's first step: the smallest of the 12 p's times 12 (every other p is larger)
    assert tput.p_holm == pytest.approx(FAMILY * 2 / 3432)
    assert len(cmp.family) == FAMILY and cmp.can_find_regression


def test_improvement_is_symmetric_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", scaled(baseline_values(), EPOLL10, rps=1.10))
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 0
    assert "0 regressions, 1 improvement, 3 unchanged of 4 cells" in out
    assert compare_runs(base, new).cells[0].verdict == IMPROVEMENT


def test_large_noisy_drop_is_not_significant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Mean drop of ~15% but the repeats overlap: ranks 1..10 split {1,3,6,8,10} (base)
    # vs {2,4,5,7,9} (new), Mann-Whitney p ~ 0.69.
    values = baseline_values()
    values[POLL10] = [(r, 500) for r in (6_000, 9_000, 12_000, 16_000, 19_000)]
    noisy = dict(values)
    noisy[POLL10] = [(r, 500) for r in (7_000, 10_000, 11_000, 12_500, 12_800)]
    base = make_run(tmp_path, "base", values)
    new = make_run(tmp_path, "new", noisy)
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 0
    cell = next(c for c in compare_runs(base, new).cells if c.key == POLL10)
    tput = cell.changes[0]
    assert np.mean(noisy[POLL10], axis=0)[0] / np.mean(values[POLL10], axis=0)[0] < 0.87
    assert tput.ratio < 0.95 and tput.p_value > 0.05
    assert cell.verdict == NO_CHANGE
    assert "not significant" in out


def test_p99_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", scaled(baseline_values(), EPOLL10, p99=1.20))
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 1
    cell = compare_runs(base, new).cells[0]
    assert cell.key == EPOLL10 and cell.verdict == REGRESSION
    throughput, p99, worst = cell.changes
    assert (throughput.verdict, p99.verdict, worst.verdict) == (NO_CHANGE, REGRESSION, NO_CHANGE)
    assert p99.ratio == pytest.approx(1.20, rel=0.01)
    assert EPOLL10 in out


def test_starvation_is_a_regression_even_when_p99_improves(tmp_path: Path) -> None:
    """A change that starves connections can read as a p99 improvement; the worst wait
    of any connection catches it."""
    store = RunStore.create(tmp_path, "starving", METADATA)
    cells = {k.key: k for k in KEYS}
    for key, repeats in baseline_values().items():
        for repeat, (rps, p99) in enumerate(repeats):
            worst = 2_000_000 if key == EPOLL10 else 20_000
            faster = 0.8 if key == EPOLL10 else 1.0
            load = load_result(throughput=rps, p99=int(p99 * faster), worst_wait=worst)
            store.append(Row("starving", cells[key], repeat, "ok", load=load))
    base = make_run(tmp_path, "base", baseline_values())
    cell = next(c for c in compare_runs(base, store.path).cells if c.key == EPOLL10)
    verdicts = {change.metric.name: change.verdict for change in cell.changes}
    assert verdicts["worst_wait"] == REGRESSION and cell.verdict == REGRESSION


def test_threshold_and_alpha_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", scaled(baseline_values(), POLL10, rps=0.90))
    assert compare(tmp_path, capsys, str(base), str(new), "--threshold", "12")[0] == 0
    assert compare(tmp_path, capsys, str(base), str(new), "--alpha", "0.005")[0] == 0
    code, _, err = compare(tmp_path, capsys, str(base), str(new), "--alpha", "2")
    assert code == 2 and "--alpha" in err


def test_rows_of_another_latency_resolution_are_compared_with_a_note(tmp_path: Path) -> None:
    """A run from before load result schema 3 (whole µs, truncated) against a new one:
    compared, but every cell says that its latencies were measured differently."""
    base = make_run(tmp_path, "base", baseline_values(), resolution=RESOLUTION_US_TRUNCATED)
    new = make_run(tmp_path, "new", baseline_values())
    note = "latency measured to 1us-truncated in base, 0.1us in new"
    for cell in compare_runs(base, new).cells:
        assert any(n.startswith(note) for n in cell.notes), cell.notes
    same = compare_runs(new, make_run(tmp_path, "again", baseline_values()))
    assert not any("latency measured" in n for cell in same.cells for n in cell.notes)


def test_too_few_repeats_is_no_change_with_a_note(tmp_path: Path) -> None:
    two = {k: v[:2] for k, v in baseline_values().items()}
    base = make_run(tmp_path, "base", two)
    new = make_run(tmp_path, "new", scaled(two, POLL10, rps=0.5))
    cmp = compare_runs(base, new)
    assert cmp.exit_code == 0
    cell = next(c for c in cmp.cells if c.key == POLL10)
    assert cell.verdict == NO_CHANGE
    assert any(note.startswith("too few repeats (2 vs 2") for note in cell.notes)


def test_cells_in_one_run_only_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = baseline_values()  # a cell the new run did not run at all is not a failure
    base = make_run(tmp_path, "base", {k: v for k, v in values.items() if k != EPOLL10})
    new = make_run(tmp_path, "new", {k: v for k, v in values.items() if k != KEYS[3].key})
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 0
    assert "2 unchanged of 2 cells" in out
    assert f"| `{EPOLL10}` | only in new |" in out
    assert f"| `{KEYS[3].key}` | only in base | new: not in the run |" in out


def test_intervals_are_reproducible(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", scaled(baseline_values(), POLL10, rps=0.97))
    first = [(c.ci_low, c.ci_high) for cell in compare_runs(base, new).cells for c in cell.changes]
    again = [(c.ci_low, c.ci_high) for cell in compare_runs(base, new).cells for c in cell.changes]
    assert first == again and not any(math.isnan(v) for pair in first for v in pair)


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"host": {**METADATA["host"], "cpu_model": "Intel Xeon"}}, ["host.cpu_model"]),
        (
            {"cpu_plan": {**METADATA["cpu_plan"], "server": [1], "client": [0]}},
            ["cpu_plan.server", "cpu_plan.client"],
        ),
    ],
)
def test_different_setups_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, fields: list[str]
) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", baseline_values(), metadata={**METADATA, **change})
    code, out, err = compare(tmp_path, capsys, str(base), str(new))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert all(f in err for f in fields) and "--force" in err
    assert not (new / "compare.md").exists()

    code, out, err = compare(tmp_path, capsys, str(base), str(new), "--force")
    assert code == 0
    assert err.startswith("warning:") and all(f in err for f in fields)
    assert "Warning:" in out and all(f in out for f in fields)


def test_runs_of_different_matrices_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = {"profile": "nightly", "duration": 2.0, "warmup": 0.5, "repeats": 5}
    base = make_run(tmp_path, "base", baseline_values(), metadata={**METADATA, "matrix": matrix})
    same = {**METADATA, "matrix": {**matrix, "repeats": 3}}  # more or fewer repeats: fine
    older = {**METADATA, "matrix": {k: v for k, v in matrix.items() if k != "warmup"}}
    assert compare_runs(base, make_run(tmp_path, "older", baseline_values(), metadata=older))
    assert compare_runs(base, make_run(tmp_path, "same", baseline_values(), metadata=same))
    shorter = {**METADATA, "matrix": {**matrix, "duration": 1.0}}
    new = make_run(tmp_path, "new", baseline_values(), metadata=shorter)
    code, out, err = compare(tmp_path, capsys, str(base), str(new))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "matrix.duration: 2.0 vs 1.0" in err


def test_out_writes_the_summary_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], real_chart: None
) -> None:
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", baseline_values())
    summary = new / "summary.md"
    code, out, _ = compare(tmp_path, capsys, str(base), str(new), "--out", str(summary))
    assert code == 0
    assert summary.read_text(encoding="utf-8") == out
    assert headline(compare_runs(base, new)) in out.splitlines()[2]
    assert not (new / "compare.md").exists()
    assert (new / "compare.png").exists()


def test_no_common_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = baseline_values()
    base = make_run(tmp_path, "base", {EPOLL10: values[EPOLL10]})
    new = make_run(tmp_path, "new", {POLL10: values[POLL10]})
    with pytest.raises(CompareError, match="no cell has usable repeats in both"):
        compare_runs(base, new)
    empty = make_run(tmp_path, "empty", {})
    code, out, err = compare(tmp_path, capsys, str(base), str(empty))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_missing_run_folder_from_the_command_line(tmp_path: Path) -> None:
    """Run as a user would: one line on stderr, exit 2, no traceback."""
    base = make_run(tmp_path, "base", baseline_values())
    done = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(tmp_path / "missing"), str(base)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"python -m bench compare: error: base run: no run folder at {tmp_path / 'missing'}"
    ]


def test_cell_failing_every_new_repeat_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = baseline_values()
    base = make_run(tmp_path, "base", values)
    broken = next(k for k in KEYS if k.key == POLL10)
    failed = [Row("new", broken, r, "failed", reason="server exited") for r in range(5)]
    new = make_run(
        tmp_path, "new", {k: v for k, v in values.items() if k != POLL10}, extra_rows=failed
    )
    code, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert code == 1
    assert "1 cell failed in every new repeat" in out
    assert f"| `{POLL10}` | failed in new | new: 5 failed |" in out


def test_load_value_reads_each_metric_and_skips_what_is_not_a_number() -> None:
    row = Row("r", KEYS[0], 0, "ok", load=load_result(throughput=1234.5, p99=900, worst_wait=7))
    assert [load_value(row, spec.path) for spec in METRICS] == [1234.5, 900.0, 7.0]
    assert load_value(row, ("no_such_figure",)) is None
    assert load_value(Row("r", KEYS[0], 0, "failed"), METRICS[0].path) is None
    nan = Row("r", KEYS[0], 0, "ok", load=replace(load_result(), throughput_rps=math.nan))
    assert load_value(nan, ("throughput_rps",)) is None


def test_words_for_counts_and_changes() -> None:
    assert [plural(n, "cell") for n in (0, 1, 2)] == ["0 cells", "1 cell", "2 cells"]
    assert [pct(r) for r in (1.034, 0.95, 1.0, math.nan)] == ["+3.4%", "-5.0%", "+0.0%", "n/a"]


def test_tied_whole_microseconds_are_tested_exactly(tmp_path: Path) -> None:
    """p99 in whole µs ties: three 500s against three 600s is the most extreme split of
    3 vs 3, whose exact p is 0.1 (scipy's normal approximation said 0.05), so it can
    never be significant at 0.05, however large the change."""
    base_values = {k: [(10_000.0, 500.0)] * 3 for k in baseline_values()}
    new_values = dict(base_values)
    new_values[EPOLL10] = [(10_000.0, 600.0)] * 3
    base = make_run(tmp_path, "base", base_values)
    new = make_run(tmp_path, "new", new_values)
    cell = next(c for c in compare_runs(base, new).cells if c.key == EPOLL10)
    p99 = cell.changes[1]
    assert p99.ratio == pytest.approx(1.2)
    assert p99.p_value == pytest.approx(0.1) and p99.verdict == NO_CHANGE


def test_one_separated_cell_of_twelve_tests_is_not_a_regression_at_5_repeats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """5 vs 5 fully separated gives p = 2/252 = 0.0079, below 0.05 but not below 0.05/12:
    with 12 tests, one such p is what noise gives often (the old rule, untested for
    multiplicity, exited 1). The comparison says that it cannot find any regression."""
    five = {k: v[1:-1] for k, v in baseline_values().items()}
    base = make_run(tmp_path, "base", five)
    new = make_run(tmp_path, "new", scaled(five, POLL10, rps=0.90))
    code, out, err = compare(tmp_path, capsys, str(base), str(new))
    assert code == 0
    cmp = compare_runs(base, new)
    tput = next(c for c in cmp.cells if c.key == POLL10).changes[0]
    assert tput.p_value == pytest.approx(2 / 252) and tput.verdict == NO_CHANGE
    assert tput.p_holm == pytest.approx(FAMILY * 2 / 252)
    assert not cmp.can_find_regression
    reach = "No regression can be found at this size: Holm's first step over 12 tests needs"
    assert reach in out and f"warning: {reach}" in err
    assert "p ≥ 0.0079. 6 repeats a side could reach it" in out  # 2/924 = 0.0022
    assert "throughput -10.0% not significant (Holm p 0.095)" in out


def test_each_interval_says_its_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One coverage for all (7 vs 7: 96.2%) goes in the header; mixed repeats put each
    interval's own coverage beside it (7 vs 5: 95.2%)."""
    base = make_run(tmp_path, "base", baseline_values())
    new = make_run(tmp_path, "new", baseline_values())
    _, out, _ = compare(tmp_path, capsys, str(base), str(new))
    assert "change [96.2% interval]" in out
    fewer = dict(baseline_values())
    fewer[POLL10] = fewer[POLL10][1:-1]
    mixed = make_run(tmp_path, "mixed", fewer)
    _, out, _ = compare(tmp_path, capsys, str(base), str(mixed))
    assert "change [interval, coverage]" in out
    row = next(line for line in out.splitlines() if f"`{POLL10}`" in line)
    assert "] 95.2%" in row  # 7 vs 5 repeats

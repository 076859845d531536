"""bench.gate.ab_analysis and bench.studies.ab_power on made-up rows: verdicts, flags, skips."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.paired import AffectedChange, PairedChange
from bench.gate.ab_analysis import TESTS_PER_CELL, TOGETHER_EXPECTED, CellResult, analyse
from bench.gate.ab_report import AB_JSON, render, save
from bench.gate.history import entries_from_ab
from bench.record import CellKey, Reason, Row
from bench.store import RunStore
from bench.studies import ab_power
from tests.helpers import load_result

PAIRS = 12
REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"


def _rows(model: str, run_id: str, factor: float, seed: int, **load_changes) -> list[Row]:
    rng = np.random.default_rng(seed)  # the same seed on both sides: the same machine drift
    rows = []
    for repeat in range(PAIRS):
        drift = 1 + rng.normal(0, 0.08)
        load = replace(load_result(throughput=10_000 * drift * factor), **load_changes)
        rows.append(Row(run_id, CellKey(model=model, connections=10), repeat, "ok", load=load))
    return rows


def test_a_drop_is_a_regression_and_drift_is_not() -> None:
    base = _rows("epoll", "base", 1.0, 1) + _rows("poll", "base", 1.0, 2)
    new = _rows("epoll", "new", 0.85, 1) + _rows("poll", "new", 1.0, 2)
    results, m = analyse(base, new, alpha=0.05, threshold=0.05)
    assert m == 2 * TESTS_PER_CELL
    verdicts = {r.key.split("/")[0]: r.verdict for r in results}
    assert verdicts == {"epoll": "regression", "poll": "no change"}
    throughput = results[0].changes[0]
    assert isinstance(throughput, PairedChange) and 0.84 < throughput.ratio < 0.86


def test_errors_fail_the_gate_though_throughput_is_unchanged() -> None:
    base = _rows("epoll", "base", 1.0, 3)
    errors = {**load_result().errors, "reset": 1}
    new = _rows("epoll", "new", 1.0, 3, errors=errors)
    [result], _ = analyse(base, new, alpha=0.05, threshold=0.05)
    changes = {c.metric: c for c in result.changes}
    assert changes["throughput"].verdict == "no change"
    flagged = changes["errors"]
    assert isinstance(flagged, AffectedChange) and flagged.verdict == "regression"
    assert (flagged.base_affected, flagged.new_affected) == (0, PAIRS)
    assert result.verdict == "regression"


def test_both_at_once_the_suspect_test_counts_only_unexpected_reasons() -> None:
    """Together, every run is client-bound on a busy machine: that alone cannot fire, and
    cannot hide a side whose windows are also non-stationary."""
    designed = (Reason("client-bound", "shared CPU"), Reason("busy-machine", "shared CPU"))
    drifting = (*designed, Reason("non-stationary", "throughput moved"))

    def runs(run_id: str, reasons: tuple[Reason, ...]) -> list[Row]:
        return [
            replace(r, verdict="suspect", reasons=reasons) for r in _rows("epoll", run_id, 1, 5)
        ]

    def suspect(new: list[Row], expected: frozenset[str]) -> AffectedChange:
        [result], _ = analyse(runs("base", designed), new, 0.05, 0.05, expected)
        change = next(c for c in result.changes if c.metric == "suspect")
        assert isinstance(change, AffectedChange)
        return change

    same = suspect(runs("new", designed), TOGETHER_EXPECTED)
    assert (same.base_affected, same.new_affected, same.verdict) == (0, 0, "no change")
    worse = suspect(runs("new", drifting), TOGETHER_EXPECTED)
    assert (worse.base_affected, worse.new_affected, worse.verdict) == (0, PAIRS, "regression")
    blind = suspect(runs("new", drifting), frozenset())  # one after the other: all count
    assert (blind.base_affected, blind.new_affected) == (PAIRS, PAIRS)


def test_skipped_cells_are_skipped_and_out_of_the_family() -> None:
    skipped = [
        Row(r, CellKey(model="uvloop"), 0, "skipped", reason="no uvloop") for r in ("base", "new")
    ]
    results, m = analyse(
        _rows("epoll", "base", 1, 4) + [skipped[0]],
        _rows("epoll", "new", 1, 4) + [skipped[1]],
        0.05,
        0.05,
    )
    assert m == TESTS_PER_CELL
    assert [r.verdict for r in results] == ["no change", "skipped"]
    sources = {side: {"side": side, "given": side, "sha": ""} for side in ("base", "new")}
    meta = {
        **sources, "tests": m, "alpha": 0.05, "pairs": PAIRS, "threshold": 0.05,
        "server_cpus": "0", "client_cpus": "1", "when": "now", "command": "bench ab a b",
    }  # fmt: skip
    text = render(results, meta)
    assert "0 regression, 0 improvement, 1 no change, 1 skipped in 2 cells" in text
    assert "Warning" not in text  # 12 pairs can reach alpha/m = 0.05/7


def test_power_is_simulated_from_an_a_a_comparisons_pairs(tmp_path: Path) -> None:
    for side, seed in (("base", 5), ("new", 6)):
        store = RunStore.create(tmp_path, side, {"profile": "nightly"})
        for row in _rows("epoll", side, 1.0, seed):
            store.append(row)
    ratios = ab_power.noise(tmp_path)
    assert list(ratios) == ["epoll/echo/c10/p64/persistent/loadgen"]
    [diffs] = ratios.values()
    assert len(diffs) == PAIRS
    rng = np.random.default_rng(1)
    quiet = [0.01 * x for x in np.random.default_rng(2).normal(size=30)]
    assert ab_power.simulate(quiet, 12, 0.10, 1 - 0.05 / 7, 0.05, rng) == (1.0, 0.0)
    noisy = [0.3 * x for x in np.random.default_rng(2).normal(size=30)]
    power, alarms = ab_power.simulate(noisy, 12, 0.10, 1 - 0.05 / 7, 0.05, rng)
    assert power < 0.2 and alarms < 0.01


def test_cpu_measured_two_ways_is_not_compared() -> None:
    """A base from before the readings at the window's edges sampled the server's CPU,
    2-6% low: against the new way that would look like a CPU regression."""

    def with_cpu(rows: list[Row], us: float, source: str) -> list[Row]:
        return [replace(r, server_cpu_us_per_request=us, server_cpu_source=source) for r in rows]

    base = with_cpu(_rows("epoll", "base", 1.0, 5), 9.5, "sampled-ticks")
    new = with_cpu(_rows("epoll", "new", 1.0, 5), 10.0, "edges-ns")
    [result], _ = analyse(base, new, alpha=0.05, threshold=0.03)
    cpu = {c.metric: c for c in result.changes}["cpu_per_request"]
    assert isinstance(cpu, PairedChange) and math.isnan(cpu.ratio)  # left untested
    assert result.verdict == "no change"
    assert any("measured as sampled-ticks in base, edges-ns in new" in n for n in result.notes)
    # the same way on both sides: compared, and +5.3% is a regression
    same = with_cpu(_rows("epoll", "base", 1.0, 5), 9.5, "edges-ns")
    [result], _ = analyse(same, new, alpha=0.05, threshold=0.03)
    assert {c.metric: c for c in result.changes}["cpu_per_request"].verdict == "regression"


def _meta(m: int, pairs: int) -> dict[str, Any]:
    sources = {side: {"side": side, "given": side, "sha": ""} for side in ("base", "new")}
    return {
        **sources, "tests": m, "alpha": 0.05, "pairs": pairs, "threshold": 0.02,
        "server_cpus": "0", "client_cpus": "1", "when": "now", "command": "bench ab a b",
    }  # fmt: skip


def test_an_interval_short_of_pairs_says_what_it_covers(tmp_path: Path) -> None:
    """5 pairs cannot reach 1 - 0.05/8: the interval is their range, which covers the
    true ratio 15 times in 16, and ab.md and ab.json say so instead of 99.38%."""
    few, enough = _rows("epoll", "base", 1.0, 7)[:5], _rows("poll", "base", 1.0, 8)
    base = few + enough
    new = _rows("epoll", "new", 1.0, 7)[:5] + _rows("poll", "new", 1.0, 8)
    results, m = analyse(base, new, alpha=0.05, threshold=0.02)
    text = render(results, _meta(m, PAIRS))
    assert "covers the true ratio with at least 99.69%" in text  # 1 - 0.05/16
    throughput = results[0].changes[0]
    assert isinstance(throughput, PairedChange) and throughput.coverage == 1 - 2**-4
    assert f"{throughput.ratio:.3f} [{throughput.low:.3f}–{throughput.high:.3f}] (93.75%)" in text
    wide = results[1].changes[0]  # 12 pairs reach it: at least the level, and no label
    assert isinstance(wide, PairedChange) and wide.coverage is not None
    assert 1 - 0.05 / 16 <= wide.coverage < 1
    row = next(line for line in text.splitlines() if line.startswith(f"| {results[1].key} |"))
    assert f"{wide.low:.3f}–{wide.high:.3f}" in row and "%)" not in row
    save(results, _meta(m, PAIRS), tmp_path)
    changes = json.loads((tmp_path / AB_JSON).read_text())["cells"][0]["changes"]
    assert (changes[0]["coverage"], changes[0]["ends"]) == (1 - 2**-4, "[]")


def test_an_end_the_test_rejects_is_shown_open() -> None:
    """Zeros among the pairs can make the test reject the shift at an end: (1.000– is
    an interval that does not hold 1.000, though it reaches it."""
    change = PairedChange(
        "p99", 11, 1.03, 1.0, 1.057, 0.031, False, coverage=0.996, ends="(]"
    )  # fmt: skip
    text = render([CellResult("epoll/x", (change,))], _meta(8, 11))
    assert "| 1.030 (1.000–1.057] |" in text


def test_an_ab_json_from_before_the_coverage_reads_as_it_did(tmp_path: Path) -> None:
    """ab.json gained `coverage` and `ends` per continuous change in schema 1 (optional:
    docs/formats.md): a file without them reads the same."""
    folder = tmp_path / "ab-aa-together"
    shutil.copytree(REFERENCE / folder.name, folder)
    data = json.loads((folder / AB_JSON).read_text())
    for cell in data["cells"]:
        for change in cell["changes"]:
            change.pop("coverage", None)
            change.pop("ends", None)
    (folder / AB_JSON).write_text(json.dumps(data))
    old, now = entries_from_ab(folder), entries_from_ab(REFERENCE / folder.name)
    assert old and [e.to_json() for e in old] == [e.to_json() for e in now]

"""bench.gate.history: entries from the committed bench ab result, the JSONL file, the series."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from bench.gate.history import (
    METRICS,
    SCHEMA,
    HistoryEntry,
    HistoryError,
    anchors,
    append,
    entries_from_ab,
    load,
    machine_of,
    series,
)

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "ab-aa-together"


def _ab() -> dict:
    return json.loads((REFERENCE / "ab.json").read_text())


def test_entries_carry_the_ab_results_figures() -> None:
    ab = _ab()
    entries = entries_from_ab(REFERENCE)
    cells = [c for c in ab["cells"] if not c["skipped"]]
    assert [e.cell for e in entries] == [c["key"] for c in cells]
    rows = [json.loads(line) for line in (REFERENCE / "new" / "results.jsonl").open()]
    for entry, cell in zip(entries, cells, strict=True):
        assert entry.schema == SCHEMA
        assert (entry.base_sha, entry.new_sha) == (
            ab["metadata"]["base"]["sha"],
            ab["metadata"]["new"]["sha"],
        )
        assert entry.when == ab["metadata"]["when"]
        assert [m.name for m in entry.metrics] == list(METRICS)
        # the new side's median throughput, from the raw rows rather than through Row
        usable = [
            r["load"]["throughput_rps"]
            for r in rows
            if r["key"] == cell["key"] and r["status"] in ("ok", "client-bound")
        ]
        throughput = entry.metric("throughput")
        assert throughput is not None
        assert throughput.median == statistics.median(usable)
        assert throughput.repeats == len(usable)
        paired = {c["metric"]: c for c in cell["changes"]}
        for m in entry.metrics:
            assert (m.ratio, m.low, m.high, m.verdict, m.pairs) == tuple(
                paired[m.name][k] for k in ("ratio", "low", "high", "verdict", "pairs")
            )


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    history = tmp_path / "sub" / "history.jsonl"
    entries = entries_from_ab(REFERENCE)
    assert append(history, entries) == len(entries)
    assert load(history) == entries
    text = history.read_text()
    assert len(text.splitlines()) == len(entries)
    assert append(history, entries) == 0  # the same night is not added twice
    assert history.read_text() == text
    later = [replace(e, when="2026-12-03T02:00:00+00:00") for e in entries]
    assert append(history, later) == len(later)
    assert load(history) == entries + later


def test_fingerprint_ignores_kernel_and_python_patch_release() -> None:
    meta = json.loads((REFERENCE / "new" / "metadata.json").read_text())
    machine = machine_of(meta)
    assert machine.python == "CPython 3.11"
    assert (machine.server_cpus, machine.client_cpus) == ((0,), (1,))
    moved = json.loads(json.dumps(meta))
    moved["host"]["kernel"] = "7.0.0"
    moved["python"]["version"] = "3.11.99"
    moved["host"]["hostname"] = "elsewhere"
    assert machine_of(moved).fingerprint == machine.fingerprint
    other = json.loads(json.dumps(meta))
    other["host"]["cpu_count"] = 4
    assert machine_of(other).fingerprint != machine.fingerprint
    other = json.loads(json.dumps(meta))
    other["python"]["version"] = "3.12.1"
    assert machine_of(other).fingerprint != machine.fingerprint


def test_load_refuses_an_unknown_schema_and_names_the_line(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    entry = entries_from_ab(REFERENCE)[0]
    future = json.loads(entry.to_json()) | {"schema": SCHEMA + 1}
    history.write_text(entry.to_json() + "\n" + json.dumps(future) + "\n")
    with pytest.raises(HistoryError, match=rf"history.jsonl:2: schema {SCHEMA + 1}"):
        load(history)
    with pytest.raises(HistoryError):  # nor is it appended to
        append(history, [entry])


@pytest.mark.parametrize(
    "line",
    [
        '{"schema": 1, "when": "2026-12-0',  # a torn last line: refused, not skipped
        "[1, 2]",
        '{"schema": 1}',
    ],
)
def test_load_skips_nothing(tmp_path: Path, line: str) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(entries_from_ab(REFERENCE)[0].to_json() + "\n\n" + line + "\n")
    with pytest.raises(HistoryError, match=r"history.jsonl:3: "):
        load(history)


def test_an_entry_whose_fingerprint_is_not_its_machines_is_refused(tmp_path: Path) -> None:
    data = json.loads(entries_from_ab(REFERENCE)[0].to_json())
    data["machine"]["cpu_count"] = 64
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps(data) + "\n")
    with pytest.raises(HistoryError, match="fingerprint"):
        load(history)


def test_a_folder_that_is_not_an_ab_result_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no ab.json"):
        entries_from_ab(tmp_path)
    (tmp_path / "ab.json").write_text(json.dumps({"schema": 1, "cells": []}))
    with pytest.raises(HistoryError, match="not a bench ab result"):
        entries_from_ab(tmp_path)  # no base/ and new/ run folders
    (tmp_path / "ab.json").write_text(json.dumps({"schema": 9}))
    with pytest.raises(HistoryError, match="schema 9"):
        entries_from_ab(tmp_path)


def _night(
    entry: HistoryEntry, when: str, sha: str, ratio: float | None, anchor: str = "a1"
) -> HistoryEntry:
    """`entry` on another night: new is `sha`, base the anchor, the throughput ratio `ratio`
    (its interval 2% either side) and a throughput median that says nothing of it."""
    metrics = tuple(
        replace(
            m,
            median=1.0,
            ratio=ratio,
            low=None if ratio is None else ratio * 0.98,
            high=None if ratio is None else ratio * 1.02,
        )
        if m.name == "throughput"
        else m
        for m in entry.metrics
    )
    return replace(entry, when=when, base_sha=anchor, new_sha=sha, metrics=metrics)


def test_series_is_the_ratio_of_one_machine_cell_and_anchor_oldest_first() -> None:
    first, second = entries_from_ab(REFERENCE)[:2]
    entries = [
        _night(first, "2026-12-03T02:00:00+00:00", "c3", 0.9),
        _night(first, "2026-12-01T02:00:00+00:00", "c1", 1.01),
        _night(second, "2026-12-02T02:00:00+00:00", "other-cell", 7.0),
        _night(first, "2026-12-02T02:00:00+00:00", "c2", None),  # too few pairs to test
        _night(first, "2026-12-02T03:00:00+00:00", "c2b", float("nan")),
        _night(first, "2026-12-02T04:00:00+00:00", "c2c", 0.0),
        _night(first, "2026-12-04T01:00:00+01:00", "c4", 0.92),  # 00:00 UTC: after c3
        _night(first, "2026-12-05T02:00:00+00:00", "c5", 0.95, anchor="a2"),  # another series
    ]
    got = series(entries, first.fingerprint, first.cell, "throughput", "a1")
    assert [(n.new_sha, n.value) for n in got] == [("c1", 1.01), ("c3", 0.9), ("c4", 0.92)]
    assert {n.base_sha for n in got} == {"a1"}
    assert (got[1].low, got[1].high) == pytest.approx((0.9 * 0.98, 0.9 * 1.02))
    throughput = first.metric("throughput")
    assert throughput is not None and got[1].pairs == throughput.pairs == 16
    [other] = series(entries, first.fingerprint, first.cell, "throughput", "a2")
    assert (other.new_sha, other.value) == ("c5", 0.95)
    assert series(entries, "not-a-machine", first.cell, "throughput", "a1") == ()
    assert series(entries, first.fingerprint, first.cell, "throughput", "not-an-anchor") == ()


def test_anchors_in_the_order_of_their_first_night() -> None:
    first, second = entries_from_ab(REFERENCE)[:2]
    entries = [
        _night(first, "2026-12-09T02:00:00+00:00", "c9", 1.0, anchor="late"),
        _night(first, "2026-12-01T02:00:00+00:00", "c1", 1.0, anchor="early"),
        _night(first, "2026-12-10T02:00:00+00:00", "c10", 1.0, anchor="early"),
        _night(second, "2026-11-01T02:00:00+00:00", "c0", 1.0, anchor="other-cell"),
    ]
    assert anchors(entries, first.fingerprint, first.cell) == ["early", "late"]
    assert anchors(entries, first.fingerprint) == ["other-cell", "early", "late"]
    assert anchors(entries, "not-a-machine") == []
    # the committed A/A comparison: base and new are one commit, a fine anchor
    reference = entries_from_ab(REFERENCE)
    assert anchors(reference, first.fingerprint) == [first.base_sha] == [first.new_sha]


def test_a_night_whose_cpu_was_measured_two_ways_says_so_and_is_no_point(
    tmp_path: Path,
) -> None:
    """The anchor's side sampled the servers' CPU (before the readings at the window's
    edges), the night's read it at the edges: bench ab does not compare them, and the
    history keeps its reason instead of a ratio, so the series has no point there."""
    import shutil

    from bench.gate.ab_analysis import analyse
    from bench.gate.ab_report import save
    from bench.gate.history_report import entry_table
    from bench.store import RunStore

    refs = REFERENCE.parent
    shutil.copytree(refs / "ab-aa-gate-sampled" / "base", tmp_path / "base")
    shutil.copytree(refs / "ab-aa-gate-edges" / "new", tmp_path / "new")
    meta = json.loads((refs / "ab-aa-gate-edges" / "ab.json").read_text())["metadata"]
    results, _ = analyse(
        RunStore.open(tmp_path / "base").rows(),
        RunStore.open(tmp_path / "new").rows(),
        meta["alpha"],
        meta["threshold"],
        frozenset(meta.get("expected_reasons", ())),
    )
    save(results, meta, tmp_path)
    entries = entries_from_ab(tmp_path)
    for entry in entries:
        cpu = entry.metric("cpu_per_request")
        assert cpu is not None and cpu.ratio is None and cpu.median is not None
        assert cpu.note is not None and "sampled-ticks in base, edges-ns in new" in cpu.note
        throughput = entry.metric("throughput")
        assert throughput is not None and throughput.ratio is not None and not throughput.note
    first = entries[0]
    assert not series(entries, first.fingerprint, first.cell, "cpu_per_request", first.base_sha)
    assert "not compared (the sampled reading is 2-6% low)" in entry_table([first])

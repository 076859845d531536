"""bench.store (the run folder) and bench.run.machine (what goes into metadata.json)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from bench.record import SCHEMA_VERSION, CellKey, Row
from bench.run.machine import collect_metadata
from bench.store import METADATA_SCHEMA, RunStore, StoreError
from tests.helpers import load_result


def make_row(run_id: str, connections: int, repeat: int = 0, status: str = "ok") -> Row:
    load = load_result(throughput=200.0 * connections) if status == "ok" else None
    return Row(
        run_id=run_id,
        cell=CellKey("epoll", connections=connections),
        repeat=repeat,
        status=status,
        started_at="2026-11-29T20:15:00+00:00",
        wall_s=6.5,
        load=load,
        server={"peak_rss_bytes": 10 << 20} if load else {},
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path / "results", "run-1", {"profile": "quick"})


def test_create_writes_metadata_with_schema_and_default_run_id(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, None, {"profile": "quick", "cpu_plan": {"server": [0]}})
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", store.path.name)
    on_disk = json.loads((store.path / "metadata.json").read_text())
    assert on_disk == store.metadata
    assert on_disk["schema"] == METADATA_SCHEMA
    assert on_disk["run_id"] == store.path.name == store.run_id
    assert on_disk["cpu_plan"] == {"server": [0]}
    assert store.rows() == []


def test_create_refuses_an_existing_run_and_a_bad_id(tmp_path: Path) -> None:
    RunStore.create(tmp_path, "same", {})
    with pytest.raises(StoreError, match="already exists"):
        RunStore.create(tmp_path, "same", {})
    with pytest.raises(StoreError, match="invalid run id"):
        RunStore.create(tmp_path, "../escape", {})


def test_append_and_reload_roundtrip(store: RunStore) -> None:
    rows = [make_row("run-1", c, r) for r in range(2) for c in (1, 10)]
    rows.append(make_row("run-1", 100, status="failed"))
    for row in rows:
        store.append(row)
    reopened = RunStore.open(store.path)
    assert reopened.rows() == rows
    assert reopened.metadata["profile"] == "quick"
    # One JSON document per line, nothing else.
    lines = store.results_path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [r.cell.key for r in rows]


def test_truncated_last_line_is_skipped_with_a_warning(store: RunStore) -> None:
    store.append(make_row("run-1", 1))
    store.append(make_row("run-1", 10))
    torn = make_row("run-1", 100).to_json()[:57]  # a write cut short by a kill
    with open(store.results_path, "a", encoding="utf-8") as f:
        f.write(torn)
    with pytest.warns(RuntimeWarning, match=r"results\.jsonl:3: skipping a truncated last"):
        rows = store.rows()
    assert [r.cell.connections for r in rows] == [1, 10]

    # Resuming appends after cutting the torn tail, so it cannot corrupt the next row.
    with pytest.warns(RuntimeWarning, match="torn last line"):
        store.append(make_row("run-1", 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.cell.connections for r in store.rows()] == [1, 10, 100]


def test_corrupt_middle_line_is_an_error_naming_the_line(store: RunStore) -> None:
    store.append(make_row("run-1", 1))
    with open(store.results_path, "a", encoding="utf-8") as f:
        f.write('{"run_id": "run-1", "cell": \n')
    store.append(make_row("run-1", 10))
    with pytest.raises(StoreError, match=r"results\.jsonl:2: corrupt line") as info:
        store.rows()
    assert "\n" not in str(info.value)


def test_a_row_of_another_schema_is_an_error(store: RunStore) -> None:
    data = json.loads(make_row("run-1", 1).to_json())
    data["schema"] = 99
    store.results_path.write_text(json.dumps(data) + "\n")
    reads = f"rows of schema 99, this sockbench reads schema {SCHEMA_VERSION}: "
    with pytest.raises(StoreError, match=reads):
        store.rows()


def test_a_run_it_cannot_upgrade_says_how_to_make_it_again(tmp_path: Path) -> None:
    # schema 1 is upgraded (tests/test_migrations.py); 0 is older than the oldest it reads
    store = RunStore.create(tmp_path, "old", {"profile": "quick", "git": {"sha": "e82158c"}})
    data = json.loads(make_row("old", 1).to_json())
    data["schema"] = 0
    store.results_path.write_text(json.dumps(data) + "\n")
    with pytest.raises(StoreError) as info:
        store.rows()
    message = str(info.value)
    assert "\n" not in message
    assert "-m bench run --profile quick" in message and "git e82158c" in message
    # The command as printed resolves its interpreter and flags here; run in full it
    # would run the whole quick profile, so --help stands in for the cells.
    command = message.split("run it again (", 1)[1].split(")", 1)[0]
    assert not command.startswith("python ")  # a bare python is not the project's
    done = subprocess.run(
        f"{command} --help", shell=True, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and "--profile" in done.stdout, done.stderr


def test_a_cell_run_again_replaces_its_earlier_row(store: RunStore) -> None:
    store.append(make_row("run-1", 1, status="failed"))
    store.append(make_row("run-1", 10))
    store.append(make_row("run-1", 1))  # --retry-failed ran it again
    rows = store.rows()
    assert [(r.cell.connections, r.status) for r in rows] == [(10, "ok"), (1, "ok")]


def test_update_metadata_rewrites_atomically(store: RunStore) -> None:
    store.update_metadata(finished_at="2026-11-29T21:00:00+00:00", interrupted=False)
    store.update_metadata(interrupted=True)
    on_disk = json.loads((store.path / "metadata.json").read_text())
    assert on_disk["profile"] == "quick"  # earlier fields kept
    assert on_disk["finished_at"] == "2026-11-29T21:00:00+00:00"
    assert on_disk["interrupted"] is True
    assert RunStore.open(store.path).metadata == on_disk == store.metadata
    assert sorted(p.name for p in store.path.iterdir()) == ["metadata.json", "results.jsonl"]


def test_a_failed_metadata_update_leaves_the_old_file(store: RunStore) -> None:
    before = (store.path / "metadata.json").read_bytes()
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.update_metadata(bad=object())
    assert (store.path / "metadata.json").read_bytes() == before
    assert "bad" not in store.metadata
    assert not list(store.path.glob(".*tmp"))


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run folder"):
        RunStore.open(tmp_path / "nope")
    with pytest.raises(StoreError, match="not a run folder"):
        RunStore.open(tmp_path)
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable metadata"):
        RunStore.open(tmp_path)
    (tmp_path / "metadata.json").write_text('{"schema": 0}')
    with pytest.raises(StoreError, match="metadata schema 0") as info:
        RunStore.open(tmp_path)
    assert "\n" not in str(info.value)


def test_collect_metadata_is_complete_fast_and_json(tmp_path: Path) -> None:
    start = time.perf_counter()
    meta = collect_metadata(
        ["python", "-m", "bench", "run"], "quick", {"server": [0], "client": [1]}
    )
    assert time.perf_counter() - start < 2.0
    assert meta["schema"] == METADATA_SCHEMA
    assert meta["started_at"].endswith("+00:00")
    assert meta["command_line"] == ["python", "-m", "bench", "run"]
    assert meta["profile"] == "quick" and meta["cpu_plan"] == {"server": [0], "client": [1]}
    assert set(meta["git"]) == {"sha", "dirty"}
    assert meta["host"]["cpu_count"] >= 1 and meta["host"]["kernel"]
    assert meta["python"]["version"].count(".") == 2
    assert "pandas" in meta["packages"] and "pyperf" in meta["packages"]
    assert {"somaxconn", "nofile_soft", "nofile_hard"} <= set(meta["limits"])
    assert "perf_version" in meta["pyperf"]
    store = RunStore.create(tmp_path, None, meta)  # it must be storable as is
    assert RunStore.open(store.path).metadata["host"] == meta["host"]

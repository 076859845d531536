"""Versioned documents upgrade from the versions before them (common.migrate).

Each upgrade is tested on a file an older sockbench wrote, taken from git history
(tests/data/migrations/README.md names the commits), read through the document's
normal reader. The documents with no older version yet refuse a newer one in one line.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.explain.measure import MIGRATIONS as EXPLAIN_MIGRATIONS
from bench.explain.measure import SCHEMA as EXPLAIN_SCHEMA
from bench.explain.measure import load as load_explain
from bench.gate import history
from bench.gate.ab_report import MIGRATIONS as AB_MIGRATIONS
from bench.gate.ab_report import SCHEMA as AB_SCHEMA
from bench.gate.history import HistoryError, entries_from_ab
from bench.record import MIGRATIONS as ROW_MIGRATIONS
from bench.record import SCHEMA_VERSION
from bench.store import METADATA_MIGRATIONS, METADATA_SCHEMA, RunStore, StoreError
from bench.studies import loadgen_ab
from clients.result import MIGRATIONS as LOAD_MIGRATIONS
from clients.result import (
    RESOLUTION_LOCUST,
    RESOLUTION_TENTH_US,
    RESOLUTION_US_TRUNCATED,
    RESOLUTIONS,
    SCHEMA,
    LoadResult,
    LoadResultError,
)
from common.migrate import CannotUpgrade, MigrationError, Migrations

DATA = Path(__file__).parent / "data" / "migrations"
REFERENCE = Path(__file__).parent.parent / "results" / "reference"

# -- the mechanism ----------------------------------------------------------------------


def _step(name: str) -> Any:
    return lambda d: {**d, "steps": [*d.get("steps", []), name]}


def test_steps_run_in_order_and_set_each_version() -> None:
    table = Migrations("thing schema", 3, {1: _step("1->2"), 2: _step("2->3")})
    old = {"schema": 1, "x": 5}
    assert table.upgrade(old) == {"schema": 3, "x": 5, "steps": ["1->2", "2->3"]}
    assert old == {"schema": 1, "x": 5}  # the caller's document is left as it was
    assert table.upgrade({"schema": 2})["steps"] == ["2->3"]
    current = {"schema": 3}
    assert table.upgrade(current) is current


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"schema": 4}, "thing schema 4, this sockbench reads schema 3: written by a newer"),
        ({"schema": 1}, "thing schema 1, this sockbench reads schema 3: older than schema 2"),
        ({}, "thing schema None, this sockbench reads schema 3: the document has no version"),
        ({"schema": "2"}, "thing schema '2', this sockbench reads schema 3: not a version"),
        ({"schema": True}, "thing schema True, this sockbench reads schema 3: not a version"),
    ],
)
def test_what_it_cannot_read_is_refused_in_one_line(data: dict[str, Any], why: str) -> None:
    table = Migrations("thing schema", 3, {2: _step("2->3")})
    with pytest.raises(MigrationError, match=why) as info:
        table.upgrade(data)
    assert "\n" not in str(info.value)


def test_a_step_that_refuses_or_meets_another_shape_says_so() -> None:
    def refuse(_data: dict[str, Any]) -> dict[str, Any]:
        raise CannotUpgrade("version 1 never measured the frobs")

    with pytest.raises(MigrationError) as info:
        Migrations("thing schema", 2, {1: refuse}).upgrade({"schema": 1})
    assert str(info.value) == (
        "thing schema 1, this sockbench reads schema 2, and cannot upgrade it: "
        "version 1 never measured the frobs"
    )
    assert info.value.why == "version 1 never measured the frobs"
    with pytest.raises(MigrationError, match="not a well-formed schema 1 document"):
        Migrations("thing schema", 2, {1: lambda d: {**d, "b": d["a"]}}).upgrade({"schema": 1})


def test_a_table_with_a_gap_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="need one from each of"):
        Migrations("thing schema", 3, {1: _step("1->2")})


def test_every_table_ends_at_its_documents_current_version() -> None:
    assert (ROW_MIGRATIONS.current, ROW_MIGRATIONS.oldest) == (SCHEMA_VERSION, 1)
    assert (LOAD_MIGRATIONS.current, LOAD_MIGRATIONS.oldest) == (SCHEMA, 1)
    assert (EXPLAIN_MIGRATIONS.current, EXPLAIN_MIGRATIONS.oldest) == (EXPLAIN_SCHEMA, 1)
    assert (history.MIGRATIONS.current, history.MIGRATIONS.oldest) == (history.SCHEMA, 1)
    for table, schema in (
        (METADATA_MIGRATIONS, METADATA_SCHEMA),
        (AB_MIGRATIONS, AB_SCHEMA),
    ):
        assert table.current == schema and dict(table.steps) == {}  # next bump: one entry


# -- the row, 1 -> 2 (a93edd0) ----------------------------------------------------------


def test_a_run_of_row_schema_1_reads_upgraded() -> None:
    rows = RunStore.open(DATA / "row-v1").rows()
    raw = [json.loads(line) for line in (DATA / "row-v1" / "results.jsonl").open()]
    assert len(rows) == len(raw) == 44 and {r.schema for r in rows} == {SCHEMA_VERSION}
    first, old = rows[0], raw[0]
    assert first.cell.key == old["key"] == "gevent/echo/c10/p64/persistent/loadgen"
    assert first.server_cpu_us_per_request == old["server_cpu_us_per_request"] == 20.778
    assert first.server == old["server"] and first.started_at == old["started_at"]
    assert first.server_core_us_per_request is None and first.busy_before is None
    assert first.server_log is None and first.verdict == "valid" and first.reasons == ()
    assert first.load is not None and first.load.requests == 90102
    # schema 1's own bottleneck test: a worker over 90% CPU, status client-bound
    bound = [r for r in rows if r.status == "client-bound"]
    assert [r.cell.key for r in bound] == [
        o["key"] for o in raw if o["status"] == "client-bound"
    ] and len(bound) == 3
    for row in bound:
        assert row.verdict == "suspect" and [r.code for r in row.reasons] == ["client-bound"]
        assert row.load is not None and row.load.client.bound is True
        assert "over 90% CPU" in row.reasons[0].text
    assert all(r.verdict == "valid" for r in rows if r.status == "ok")


def test_a_row_of_schema_1_whose_load_cannot_be_upgraded_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(DATA / "row-v1", run)
    lines = (run / "results.jsonl").read_text().splitlines()
    row = json.loads(lines[5])
    row["load"]["errors"]["reset"] = 2
    lines[5] = json.dumps(row)
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(StoreError) as info:
        RunStore.open(run).rows()
    message = str(info.value)
    reads = f"rows of schema 1, this sockbench reads schema {SCHEMA_VERSION}: "
    assert "\n" not in message and reads in message
    assert "run it again (" in message and "git cc15440beb" in message
    assert "the load result in it: schema 1 counted its 2 errors from the first connect" in message


# -- the load result, 1 -> 2 (4f28acb) --------------------------------------------------


def test_a_load_result_of_schema_1_reads_upgraded() -> None:
    text = (DATA / "load-result-v1.json").read_text()
    old = json.loads(text)
    result = LoadResult.from_json(text)
    assert result.schema == SCHEMA and result.tool == "sockbench.loadgen"
    assert result.params.target == "127.0.0.1:43259" and result.params.cpus == (1,)
    assert result.params.verify is None and result.params.arrivals == "uniform"
    assert (result.requests, result.throughput_rps, result.duration_s) == (90102, 45051.0, 2.0)
    latency = result.latency
    assert (latency.p50, latency.p99, latency.p999, latency.max) == (207, 413, 3045, 5351)
    assert latency.count == result.requests and latency.censored == 0 and latency.bounds == ()
    assert result.latency_all is None  # schema 1 dropped the unanswered requests
    assert (result.connect.p50, result.connect.p99, result.connect.max) == (169, 704, 704)
    assert result.errors == old["errors"] and set(result.errors_before.values()) == {0}
    assert result.connections.established == 10 and result.connections.worst_wait_p99_us is None
    assert result.rate.asked is None and result.rate.sent == result.rate.achieved == 45051.0
    assert not result.rate.overloaded and result.intervals == () and result.histogram_all == ""
    client = result.client
    assert [w.cpu for w in client.workers] == [49.3] and client.workers[0].waited_for_work is None
    assert client.cores == (1,) and client.cores_busy is None
    assert client.bound is False and client.reasons == ()
    assert result.histogram == old["histogram"] and result.window is not None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"rate": 1000.0}, "neither counted what an open loop sent nor judged its backlog"),
        ({"errors": 3}, "counted its 3 errors from the first connect on"),
    ],
)
def test_a_load_result_of_schema_1_that_cannot_be_upgraded_says_why(
    change: dict[str, float], why: str
) -> None:
    data = json.loads((DATA / "load-result-v1.json").read_text())
    if "rate" in change:
        data["params"]["rate"] = data["rate"]["asked"] = change["rate"]
    else:
        data["errors"]["timeout"] = change["errors"]
    with pytest.raises(LoadResultError) as info:
        LoadResult.from_dict(data)
    message = str(info.value)
    assert "\n" not in message and why in message
    assert message.startswith(
        f"load result schema 1, this sockbench reads schema {SCHEMA}, and cannot"
    )
    assert message.endswith("run the load again with this version")


def test_loadgen_ab_reads_a_schema_1_result_through_the_upgrade() -> None:
    text = (DATA / "load-result-v1.json").read_text()

    class Finished:  # a load generator of an older checkout that printed `text`
        returncode = 0

        def communicate(self, timeout: float) -> tuple[str, str]:
            return text, ""

    old = json.loads(text)  # what loadgen_ab computed by hand before the upgrade existed
    by_hand = old["client"]["cpu_percent"][0] / 100 * old["duration_s"] * 1e6 / old["requests"]
    figure = loadgen_ab.cpu_us_per_request(Finished())  # type: ignore[arg-type]
    assert figure == pytest.approx(by_hand)


# -- explain.json, 1 -> 2 (7050a76), 2 -> 3 (the clean phase's CPU at its edges) -----


def test_an_explain_json_of_schema_1_reads_upgraded() -> None:
    old = json.loads((DATA / "explain-v1.json").read_text())
    results, metadata = load_explain(DATA / "explain-v1.json")
    assert old["schema"] == 1 and metadata == old["metadata"]
    assert [r.model for r in results] == ["epoll", "uvloop", "asyncio-buffered"]
    for result, raw in zip(results, old["models"], strict=True):
        assert result.functions == () and result.schema == EXPLAIN_SCHEMA
        assert result.achieved == raw["achieved"] and result.samples == raw["samples"]
        assert [p.name for p in result.phases] == [p["name"] for p in raw["phases"]]


def test_an_explain_json_of_schema_2_says_its_phases_cpu_was_sampled() -> None:
    """Schema 3 reads the clean phase's CPU at its edges; schema 2 sampled every phase."""
    old = json.loads((DATA / "explain-v2.json").read_text())
    results, _ = load_explain(DATA / "explain-v2.json")
    assert old["schema"] == 2 and [r.model for r in results] == ["epoll"]
    for result, raw in zip(results, old["models"], strict=True):
        assert result.schema == EXPLAIN_SCHEMA and result.phases
        assert all(p.cpu_source == "sampled-ticks" for p in result.phases)
        assert [p.user_us for p in result.phases] == [p["user_us"] for p in raw["phases"]]


def test_an_explain_json_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "explain.json"
    data = json.loads((DATA / "explain-v1.json").read_text()) | {"schema": EXPLAIN_SCHEMA + 1}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"explain schema {EXPLAIN_SCHEMA + 1}, this") as info:
        load_explain(path)
    assert "\n" not in str(info.value) and "written by a newer sockbench" in str(info.value)


# -- history.jsonl, 1 -> 2 (issue 29: the counted gate's entries join it) --------------


def test_a_history_of_schema_1_reads_as_paired_entries(tmp_path: Path) -> None:
    """Schema 1 held the wall-clock gate's paired entries only: each reads as one, equal
    to the entry made today from the same comparison; appending to it keeps its lines."""
    old = DATA / "history-v1.jsonl"
    raw = [json.loads(line) for line in old.read_text().splitlines()]
    assert {e["schema"] for e in raw} == {1} and all("kind" not in e for e in raw)
    entries = history.load(old)
    assert entries == entries_from_ab(REFERENCE / "ab-aa-together")
    assert all(isinstance(e, history.HistoryEntry) and e.schema == 2 for e in entries)
    path = tmp_path / "history.jsonl"
    shutil.copy(old, path)
    later = [replace(e, when="2027-01-01T00:00:00+00:00") for e in history.paired(entries)]
    assert history.append(path, later) == len(later)
    assert path.read_text().startswith(old.read_text())  # the old lines untouched
    assert history.load(path) == [*entries, *later]


# -- the documents with no older version: a newer one is refused ----------------------


def test_a_history_entry_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    entry = json.loads(entries_from_ab(REFERENCE / "ab-aa-together")[0].to_json())
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(entry | {"schema": history.SCHEMA + 1}) + "\n")
    with pytest.raises(HistoryError) as info:
        history.load(path)
    assert str(info.value) == (
        f"{path}:1: schema {history.SCHEMA + 1}, this sockbench reads schema "
        f"{history.SCHEMA}: written by a newer sockbench"
    )


def test_metadata_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text(json.dumps({"schema": METADATA_SCHEMA + 1}))
    with pytest.raises(StoreError) as info:
        RunStore.open(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'metadata.json'}: metadata schema {METADATA_SCHEMA + 1}, this sockbench "
        f"reads schema {METADATA_SCHEMA}: written by a newer sockbench"
    )


def test_an_ab_json_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ab"
    shutil.copytree(REFERENCE / "ab-aa-together", folder)
    data = json.loads((folder / "ab.json").read_text()) | {"schema": AB_SCHEMA + 1}
    (folder / "ab.json").write_text(json.dumps(data))
    with pytest.raises(HistoryError) as info:
        entries_from_ab(folder)
    assert str(info.value) == (
        f"{folder / 'ab.json'}: schema {AB_SCHEMA + 1}, this sockbench reads schema "
        f"{AB_SCHEMA}: written by a newer sockbench"
    )


def test_a_row_of_schema_2_reads_as_a_cell_with_no_idle_connection() -> None:
    """Schema 3 added the idle axis: a schema-2 row held none, and its key is unchanged."""
    lines = (DATA / "row-v2" / "results.jsonl").read_text().splitlines()
    rows = RunStore.open(DATA / "row-v2").rows()
    assert rows and len(rows) == len(lines)
    for line, row in zip(lines, rows, strict=True):
        written = json.loads(line)
        assert written["schema"] == 2 and row.schema == SCHEMA_VERSION
        assert row.idle is None and row.cell.idle == 0 and row.cell.idle_mode == "warm"
        assert row.cell.key == written["key"]
    assert ROW_MIGRATIONS.upgrade({"schema": 2, "run_id": "x"}) == {
        "schema": SCHEMA_VERSION,
        "run_id": "x",
        "idle": None,
        "load": None,
        "server_cpu_source": None,  # schema 4: it measured none
    }


# -- the row, 3 -> 4, and the load result, 2 -> 3: latency to 0.1 µs ------------------


def test_a_row_of_schema_3_says_its_server_cpu_was_sampled() -> None:
    """Schema 4 reads the server's CPU at the window's edges; an older row's was sampled
    in ticks (2-6% low), and says so where it has one, so no gate compares the two."""
    rows = RunStore.open(DATA / "row-v3").rows()
    measured = [r for r in rows if r.server_cpu_us_per_request is not None]
    assert measured and all(r.server_cpu_source == "sampled-ticks" for r in measured)
    assert all(r.server_cpu_source is None for r in rows if r.server_cpu_us_per_request is None)


LATENCY_FIELDS = ("count", "p50", "p90", "p99", "p999", "max", "mean", "censored")


def test_rows_of_schema_3_keep_their_microseconds_and_say_they_were_truncated() -> None:
    """Schema 4's load result keeps latencies to 0.1 µs; a row from before keeps its
    whole microseconds (no value moves) and says they were truncated."""
    lines = (DATA / "row-v3" / "results.jsonl").read_text().splitlines()
    rows = RunStore.open(DATA / "row-v3").rows()
    assert len(rows) == len(lines) == 7
    statuses = set()
    for line, row in zip(lines, rows, strict=True):
        written = json.loads(line)
        assert (written["schema"], written["load"]["schema"]) == (3, 2)
        assert row.schema == SCHEMA_VERSION and row.load is not None
        load, old = row.load, written["load"]
        assert load.schema == SCHEMA and load.latency_resolution == RESOLUTION_US_TRUNCATED
        assert load.latency_note is not None and "truncated" in load.latency_note
        for name in ("latency", "latency_all"):
            for field in LATENCY_FIELDS:
                value = getattr(getattr(load, name), field)
                assert value == old[name][field] and type(value) is type(old[name][field])
        assert load.connections.worst_wait_max_us == old["connections"]["worst_wait_max_us"]
        assert [i.p99_us for i in load.intervals] == [i["p99_us"] for i in old["intervals"]]
        assert load.histogram == old["histogram"]  # still µs, as latency_resolution says
        assert row.cell.key == written["key"] and row.idle is not None
        statuses.add(row.status)
    assert statuses == {"ok", "client-bound", "failed"}


def test_a_locust_row_of_schema_3_says_locusts_resolution() -> None:
    [line] = (DATA / "row-v3-locust" / "results.jsonl").read_text().splitlines()
    [row] = RunStore.open(DATA / "row-v3-locust").rows()
    old = json.loads(line)["load"]
    assert row.load is not None and row.load.tool == old["tool"] == "sockbench.locust"
    assert row.load.latency_resolution == RESOLUTION_LOCUST
    assert row.load.latency_note == old["latency_note"]  # locust's own words, unchanged
    assert row.load.latency == LoadResult.from_dict(old).latency
    assert [getattr(row.load.latency, f) for f in LATENCY_FIELDS] == [
        old["latency"][f] for f in LATENCY_FIELDS
    ]


def test_a_load_result_of_schema_2_upgrades_alone_and_a_bad_resolution_is_refused() -> None:
    old = json.loads((DATA / "row-v3" / "results.jsonl").read_text().splitlines()[0])["load"]
    result = LoadResult.from_dict(old)
    assert result.schema == SCHEMA and result.latency_resolution == RESOLUTION_US_TRUNCATED
    assert result.latency.p50 == old["latency"]["p50"]
    again = LoadResult.from_json(result.to_json())  # schema 3 as written: read unchanged
    assert again == result
    with pytest.raises(LoadResultError, match="latency_resolution 'ns' not in"):
        LoadResult.from_dict(result.to_dict() | {"latency_resolution": "ns"})
    assert set(RESOLUTIONS) == {RESOLUTION_TENTH_US, RESOLUTION_US_TRUNCATED, RESOLUTION_LOCUST}

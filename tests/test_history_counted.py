"""The counted gate's entries in the history: from a `bench ab --counted` folder, through
the file beside the paired entries, into series per build, cell and metric, and onto the
page, where the change-point rule meets series of exact counts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.cli import main
from bench.gate import history
from bench.gate.counted_history import CountedEntry, CountedMetric, counted_series
from bench.gate.counted_history_report import analyse_counted
from bench.gate.counted_report import save
from bench.gate.history import HistoryError, entries_from_ab, entries_from_folder, load
from tests.test_counted import _result

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "ab-aa-together"


def _folder(tmp_path: Path, name: str = "nightly-counted", **meta: object) -> Path:
    result = _result()
    folder = tmp_path / name
    folder.mkdir()
    save(replace(result, metadata={**result.metadata, **meta}), folder)
    return folder


def test_a_counted_folder_gives_news_counts_per_judged_cell(tmp_path: Path) -> None:
    [entry] = entries_from_folder(_folder(tmp_path))  # gevent was refused: no entry
    assert isinstance(entry, CountedEntry)
    assert (entry.cell, entry.base_sha, entry.new_sha) == ("epoll echo/64", "a" * 40, "b" * 40)
    assert entry.build == _result().build and entry.requests == (1000, 6000)
    instructions = entry.metric("instructions")
    assert instructions is not None and instructions.verdict == "regression"
    assert instructions.per_request == pytest.approx(18_700 * 1.02, abs=0.01)
    assert instructions.change == pytest.approx(0.02, abs=1e-6)
    assert entry.run == "nightly-counted"


def test_a_calibration_is_not_a_night(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="--new-inject-work 200: a calibration"):
        entries_from_folder(_folder(tmp_path, new_inject_work=200))


def test_both_kinds_share_the_file_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    paired = entries_from_ab(REFERENCE)
    counts = entries_from_folder(_folder(tmp_path))
    assert history.append(path, [*paired, *counts]) == len(paired) + 1
    assert load(path) == [*paired, *counts]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["paired"] * len(paired) + ["counted"]
    assert {line["schema"] for line in lines} == {history.SCHEMA}
    assert history.append(path, counts) == 0  # the same night is not added twice
    later = [replace(e, when="2026-12-08T10:00:00+00:00") for e in history.counted(counts)]
    assert history.append(path, later) == 1
    assert history.counted(load(path)) == [*counts, *later]


def test_an_unknown_kind_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    history.append(path, entries_from_folder(_folder(tmp_path)))
    line = json.loads(path.read_text()) | {"kind": "guessed"}
    path.write_text(path.read_text() + json.dumps(line) + "\n")
    with pytest.raises(HistoryError, match=r"history.jsonl:2: .*unknown kind 'guessed'"):
        load(path)


def _nights(values: list[float], build: str = "b1") -> list[CountedEntry]:
    """A night per value: epoll echo/64's instructions per request (3 system calls)."""
    return [
        CountedEntry(
            when=f"2026-12-{night + 1:02d}T03:00:00+00:00",
            build=build,
            cell="epoll echo/64",
            base_sha=f"c{night - 1}",
            new_sha=f"c{night}",
            requests=(500, 3000),
            tries=2,
            metrics=(
                CountedMetric("instructions", value, 1e-5, 0.0, "no change"),
                CountedMetric("syscalls", 3.0, 0.0, 0.0, "no change"),
            ),
        )
        for night, value in enumerate(values)
    ]


def test_a_series_is_one_builds_cell_and_metric_oldest_first() -> None:
    entries = _nights([3.0, 1.0, 2.0]) + _nights([9.0], build="b2")
    got = counted_series(list(reversed(entries)), "b1", "epoll echo/64", "instructions")
    assert [(n.new_sha, n.value) for n in got] == [("c0", 3.0), ("c1", 1.0), ("c2", 2.0)]
    [other] = counted_series(entries, "b2", "epoll echo/64", "instructions")
    assert other.value == 9.0


def test_the_change_point_rule_on_exact_counts() -> None:
    """Counted series barely move: an exactly constant one raises nothing (and does not
    crash the t-test), nor one with a few millionths of noise; a 10% step is a shift; a
    1% step is below the rule's 5% (the nightly gate catches it, night by night)."""
    level = 18_699.58
    assert analyse_counted(_nights([level] * 30)) == []
    wobble = [level * (1 + 2e-6 * ((i * 7) % 5 - 2)) for i in range(30)]
    assert analyse_counted(_nights(wobble)) == []
    [found] = analyse_counted(_nights([level] * 15 + [level * 1.1] * 15))
    assert (found.finding.kind, found.finding.night, found.metric) == ("shift", 15, "instructions")
    assert found.worse and found.finding.commits == "c14..c15"
    assert analyse_counted(_nights([level] * 15 + [level * 1.01] * 15)) == []


def test_bench_history_appends_a_counted_folder_and_draws_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = tmp_path / "history.jsonl", tmp_path / "out"
    history.append(path, _nights([18_700.0] * 8 + [20_570.0] * 8))
    folder = _folder(tmp_path)
    args = ["history", str(path), "--out", str(out), "--append", str(REFERENCE), str(folder)]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "5 entries added" in said and "1 finding in 21 entries" in said, said
    page, summary = (out / "index.html").read_text(), (out / "history.md").read_text()
    assert "<h2>Counted series</h2>" in page and "<h4>epoll echo/64</h4>" in page
    assert "<code>bench ab --counted</code>" in page and "`" not in page  # markdown's code
    # 4 paired cells x 4 metrics, then 2 builds' epoll echo/64 x 2 counted metrics
    assert page.count("data:image/svg+xml") == 4 * 4 + 2 * 2
    assert "## Counted series" in summary
    assert "epoll echo/64, instructions per request, shift, +10.00% (worse)" in summary

"""`bench history`: bad input (exit 2, nothing written), the page, the summary."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import replace
from html import escape
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.history import SCHEMA, HistoryEntry, append, entries_from_ab, load

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "ab-aa-together"


def _svgs(page: str) -> list[str]:
    return [
        base64.b64decode(data).decode()
        for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    ]


def test_missing_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["history", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no history at" in err
    assert not out.exists()


def test_unknown_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "history.jsonl"
    entry = json.loads(entries_from_ab(REFERENCE)[0].to_json()) | {"schema": SCHEMA + 1}
    history.write_text(json.dumps(entry) + "\n")
    out = tmp_path / "out"
    args = ["history", str(history), "--out", str(out), "--append", str(REFERENCE)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"schema {SCHEMA + 1}" in err
    assert not out.exists()
    assert history.read_text() == json.dumps(entry) + "\n"  # not appended to


def test_append_of_a_folder_that_is_not_an_ab_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    run = REFERENCE / "new"  # a run folder, but not a comparison
    assert main(["history", str(history), "--out", str(out), "--append", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a bench ab result" in err
    assert not history.exists() and not out.exists()


def test_append_then_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    args = ["history", str(history), "--out", str(out), "--append", str(REFERENCE)]
    assert main(args) == 0
    entries = entries_from_ab(REFERENCE)
    assert load(history) == entries
    assert "4 entries added" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    svgs = _svgs(page)
    assert len(svgs) == len(entries) * 4  # a chart per cell and metric
    assert all(svg.lstrip().startswith("<?xml") and "<svg" in svg for svg in svgs)
    for entry in entries:
        assert f">{entry.cell}</h3>" in page
    assert page.count("<tr><td>2026-12-02T13:00:35+00:00</td>") == len(entries)  # the table
    assert "None: no shift or drift" in (out / "history.md").read_text()


def _nights(entry: HistoryEntry, nights: int, drop_from: int) -> list[HistoryEntry]:
    """`nights` nights of one cell, its throughput 15% down from night `drop_from` on."""
    rng = np.random.default_rng(11)
    out = []
    for night in range(1, nights + 1):
        factor = (0.85 if night >= drop_from else 1.0) * math.exp(rng.normal(0, 0.01))
        metrics = tuple(
            replace(m, median=m.median * factor)
            if m.name == "throughput" and m.median is not None
            else m
            for m in entry.metrics
        )
        out.append(
            replace(
                entry,
                when=f"2026-11-{night:02d}T03:00:00+00:00",
                new_sha=f"{night:02d}" + "f" * 38,
                metrics=metrics,
            )
        )
    return out


def test_a_shift_in_the_summary_and_on_the_chart(tmp_path: Path) -> None:
    entry = entries_from_ab(REFERENCE)[0]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, _nights(entry, 20, drop_from=12))
    assert main(["history", str(history), "--out", str(out)]) == 0
    summary = (out / "history.md").read_text()
    section = summary.split("## Findings")[1].split("##")[0]
    findings = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(findings) == 1
    assert findings[0].startswith(f"- {entry.cell}, throughput, shift, -1")  # about -15%
    assert "(worse), commits 11ffffffff..12ffffffff" in findings[0]
    svgs = _svgs((out / "index.html").read_text())
    marked = [svg for svg in svgs if "11ffffffff..12ffffffff" in svg]
    assert len(marked) == 1  # the throughput chart's legend, and no other chart
    assert "throughput" in marked[0]
    assert re.search(r"11-\d\d", marked[0])  # nights are dated on the x axis


@pytest.mark.parametrize(
    ("paired", "says"),
    [
        (
            (0.85, 0.82, 0.88),
            "; the code: bench ab of 12ffffffff against the night before saw 0.850 [0.820-0.880]",
        ),
        (
            (1.0, 0.97, 1.03),
            "; not one commit: none of the 5 paired comparisons with the night before "
            "around it saw a step that way (the machine, or a slow drift)",
        ),
    ],
)
def test_a_shift_is_checked_against_that_nights_paired_ratio(
    tmp_path: Path, paired: tuple[float, float, float], says: str
) -> None:
    """Night after night the base is the night before: that night's bench ab measured the
    step itself, both versions at once; a step it did not see was the machine's."""
    nights = _nights(entries_from_ab(REFERENCE)[0], 20, drop_from=12)
    chained = [nights[0]]
    for before, night in zip(nights, nights[1:], strict=False):
        metrics = night.metrics
        if night.new_sha.startswith("12"):
            ratio, low, high = paired
            metrics = tuple(
                replace(m, ratio=ratio, low=low, high=high) if m.name == "throughput" else m
                for m in metrics
            )
        chained.append(replace(night, base_sha=before.new_sha, metrics=metrics))
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, chained)
    assert main(["history", str(history), "--out", str(out)]) == 0
    summary = (out / "history.md").read_text()
    [line] = [s for s in summary.splitlines() if ", throughput, shift," in s]
    assert line.endswith(says)
    assert escape(says) in (out / "index.html").read_text()

"""`bench history`: bad input (exit 2, nothing written), the page, the summary."""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.analysis.changepoints import SIZED_FOR_PHI
from bench.cli import main
from bench.gate.history import SCHEMA, HistoryEntry, append, entries_from_ab, load

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
    # the ratio new / anchor, its interval as error bars, the line at 1.0
    assert all("new / anchor" in svg for svg in svgs)
    assert all('id="interval"' in svg and 'id="no-change"' in svg for svg in svgs)
    anchor = entries[0].base_sha  # an A/A comparison: the anchor against itself
    assert page.count(f">Against anchor {anchor[:10]}</h3>") == 1
    for entry in entries:
        assert f">{entry.cell}</h4>" in page
    assert page.count("<tr><td>2026-12-02T13:00:35+00:00</td>") == len(entries)  # the table
    assert "(16 pairs)" in page
    point = "the Hodges-Lehmann ratio new / anchor of 16 pairs and its interval"
    assert "that night&#x27;s commit against the anchor, both at once" in page
    assert point in page and "share of the CPUs" in page
    summary = (out / "history.md").read_text()
    assert "None: no shift or drift" in summary
    assert point in summary and "share of the CPUs" in summary
    assert f"  - anchor `{anchor[:10]}`: 1 night (2026-12-02 to 2026-12-02), 4 cells" in summary


def _nights(
    entry: HistoryEntry, nights: int, drop_from: int, anchor: str | None = None
) -> list[HistoryEntry]:
    """`nights` nights of one cell against one anchor (the entry's base unless given): the
    throughput ratio new / anchor 15% down from night `drop_from` on, with 1% noise and an
    interval 3% either side; the new side's median swings by 40% with the machine, as it
    does beside the anchor, and says nothing of the code."""
    rng = np.random.default_rng(11)
    out = []
    for night in range(1, nights + 1):
        ratio = (0.85 if night >= drop_from else 1.0) * math.exp(rng.normal(0, 0.01))
        median = 10_000.0 * (0.6 if night % 3 else 1.0)
        metrics = tuple(
            replace(m, median=median, ratio=ratio, low=ratio * 0.97, high=ratio * 1.03)
            if m.name == "throughput"
            else m
            for m in entry.metrics
        )
        out.append(
            replace(
                entry,
                when=f"2026-11-{night:02d}T03:00:00+00:00",
                base_sha=anchor or entry.base_sha,
                new_sha=f"{night:02d}" + "f" * 38,
                metrics=metrics,
            )
        )
    return out


def _findings(out: Path) -> list[str]:
    section = (out / "history.md").read_text().split("## Findings")[1].split("##")[0]
    return [line for line in section.splitlines() if line.startswith("- ")]


def test_a_shift_of_the_ratio_in_the_summary_and_on_the_chart(tmp_path: Path) -> None:
    entry = entries_from_ab(REFERENCE)[0]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, _nights(entry, 20, drop_from=12))
    assert main(["history", str(history), "--out", str(out)]) == 0
    findings = _findings(out)
    assert len(findings) == 1
    head = f"- machine {entry.fingerprint}, anchor {entry.base_sha[:10]}, {entry.cell}, "
    assert findings[0].startswith(head + "throughput, shift, -1")  # about -15%
    assert "(worse), commits 11ffffffff..12ffffffff" in findings[0]
    svgs = _svgs((out / "index.html").read_text())
    marked = [svg for svg in svgs if "11ffffffff..12ffffffff" in svg]
    assert len(marked) == 1  # the throughput chart's legend, and no other chart
    assert "throughput" in marked[0]
    assert re.search(r"11-\d\d", marked[0])  # nights are dated on the x axis


def test_two_anchors_are_two_series(tmp_path: Path) -> None:
    """A new anchor starts a new series: its first nights are not a step from the old
    anchor's level, and a shift is found in the series it is in."""
    entry = entries_from_ab(REFERENCE)[0]
    old = _nights(entry, 20, drop_from=12, anchor="a" * 40)
    new = [
        replace(e, when=e.when.replace("2026-11", "2026-12"), new_sha="d" + e.new_sha[:-1])
        for e in _nights(entry, 20, drop_from=99, anchor="b" * 40)
    ]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, old + new)
    assert main(["history", str(history), "--out", str(out)]) == 0
    [finding] = _findings(out)
    assert f"anchor {'a' * 10}, {entry.cell}, throughput, shift" in finding
    assert "commits 11ffffffff..12ffffffff" in finding
    page = (out / "index.html").read_text()
    assert page.index(f">Against anchor {'a' * 10}</h3>") < page.index(
        f">Against anchor {'b' * 10}</h3>"
    )
    assert len(_svgs(page)) == 2 * 4  # a chart per anchor and metric
    summary = (out / "history.md").read_text()
    assert f"anchor `{'a' * 10}`: 20 nights (2026-11-01 to 2026-11-20), 1 cell" in summary
    assert f"anchor `{'b' * 10}`: 20 nights (2026-12-01 to 2026-12-20), 1 cell" in summary


def test_a_base_that_changes_every_night_is_drawn_not_analysed(tmp_path: Path) -> None:
    """Gate comparisons appended by mistake (the base: the night before): each base is a
    series of one night, too short for change points; the page is still written."""
    entry = entries_from_ab(REFERENCE)[0]
    nights = _nights(entry, 12, drop_from=6)
    chained = [replace(n, base_sha=f"{k:02d}" + "e" * 38) for k, n in enumerate(nights)]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, chained)
    assert main(["history", str(history), "--out", str(out)]) == 0
    assert _findings(out) == []
    page = (out / "index.html").read_text()
    assert page.count(">Against anchor ") == 12
    assert len(_svgs(page)) == 12 * 4


def _with_throughput(nights: list[HistoryEntry], ratios: list[float]) -> list[HistoryEntry]:
    return [
        replace(
            e,
            metrics=tuple(
                replace(m, ratio=r, low=r * 0.97, high=r * 1.03) if m.name == "throughput" else m
                for m in e.metrics
            ),
        )
        for e, r in zip(nights, ratios, strict=True)
    ]


def test_the_lag1_autocorrelation_of_each_series_from_20_nights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slow wave of the ratio: each night close to the one before (lag-1 about 0.9),
    above the phi the change-point rule is sized for: printed, warned, in history.md."""
    entry = entries_from_ab(REFERENCE)[0]
    wave = [1 + 0.01 * math.sin(2 * math.pi * night / 20) for night in range(25)]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    append(history, _with_throughput(_nights(entry, 25, drop_from=99), wave))
    assert main(["history", str(history), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    where = f"machine {entry.fingerprint}, anchor {entry.base_sha[:10]}, {entry.cell}"
    assert "Lag-1 autocorrelation of the nightly ratios" in printed
    assert f"sized for {SIZED_FOR_PHI:g}" in printed
    [line] = [line for line in printed.splitlines() if line.startswith(f"  {where}: ")]
    phi = float(re.fullmatch(r".*: throughput (-?[\d.]+)", line).group(1))  # type: ignore[union-attr]
    assert SIZED_FOR_PHI < phi < 1  # the other metrics do not vary: no figure
    [warning] = [line for line in printed.splitlines() if "warning:" in line]
    assert f"{where}, throughput: {phi:.2f}, above the {SIZED_FOR_PHI:g}" in warning
    assert "more than 5% of quiet series" in warning
    summary = (out / "history.md").read_text()
    assert "## Correlation between nights" in summary
    assert f"- {where}: throughput {phi:.2f}" in summary and f"- {warning.strip()}" in summary


def test_no_autocorrelation_below_20_nights_and_no_warning_at_or_below_the_sizing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = entries_from_ab(REFERENCE)[0]
    history, out = tmp_path / "history.jsonl", tmp_path / "out"
    alternating = [1.01 if night % 2 else 0.99 for night in range(25)]  # lag-1 about -1
    append(history, _with_throughput(_nights(entry, 25, drop_from=99), alternating)[:19])
    assert main(["history", str(history), "--out", str(out)]) == 0
    assert "Lag-1 autocorrelation" not in capsys.readouterr().out
    assert "Correlation between nights" not in (out / "history.md").read_text()
    append(history, _with_throughput(_nights(entry, 25, drop_from=99), alternating)[19:])
    assert main(["history", str(history), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{entry.cell}: throughput -0.9" in printed and "warning" not in printed

"""The committed reference runs match the code that draws them (issue 24, item 4).

Each committed run folder under results/reference/ (results.jsonl and metadata.json) is
drawn again from those two files alone, in a temporary folder, by the function that
`python -m bench report` calls (bench.report.build.build_report): its report.md must be
byte-identical to the committed one and its charts/ must hold the same file names. Each
committed `bench explain` output (explain.json) is drawn again the way `bench explain`
draws it (bench.explain.report.render over bench.explain.measure.load): explain.md must be
byte-identical. Each committed `bench ab` folder that keeps its two sides' runs (base/
and new/) is judged again the way `bench ab` judges it (bench.gate.ab_analysis.analyse
with the alpha, threshold and expected reasons its ab.json records): ab.md and ab.json
must be byte-identical. Nothing here starts a server or sends traffic (no `real` mark).

A change to what the report draws re-renders the committed runs in the same commit (the
failure message says how); this test is never loosened to let a stale run pass.

What a rendering holds is reproducible: the dates in report.md come from metadata.json,
no path of the folder it was drawn in appears, and two renderings of one run in two
folders are byte-identical (tested below on the smallest run; checked by hand on
reference-2core, whose report.html, PNG and SVG charts and pyperf.json agree too). Only
the charts' names are compared, not their bytes: those depend on the installed
matplotlib and FreeType, not on this code alone.

Folders of other kinds are skipped, each in SKIPPED with why; a new folder must either
be drawn here or be added there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.explain.measure import load as load_explained
from bench.explain.report import render as render_explained
from bench.gate.ab_analysis import analyse
from bench.gate.ab_report import AB_JSON, AB_MD, save
from bench.report.build import CHARTS_DIR, REPORT_MD, build_report
from bench.store import METADATA_FILE, RESULTS_FILE, RunStore
from common.invocation import interpreter, python_m

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
EXPLAIN_JSON = "explain.json"
EXPLAIN_MD = "explain.md"

SKIPPED = {  # folder -> why it is not drawn again here
    "ab-acceptance": "twenty bench ab folders that kept only ab.json and ab.md, not the "
    "two sides' runs they were judged from, and table.md, which its run.sh assembled",
    "crosscheck-nginx-2core": "output.txt is the console log of a live `make crosscheck` "
    "run and runs.json its raw data: nothing draws them from stored data",
    "verify-cost": "output.txt is the console log of a live run (run.sh): nothing draws "
    "it from stored data",
}


def _runs() -> list[Path]:
    return sorted(
        folder
        for folder in REFERENCE.iterdir()
        if (folder / RESULTS_FILE).is_file() and (folder / METADATA_FILE).is_file()
    )


def _explained() -> list[Path]:
    return sorted(folder for folder in REFERENCE.iterdir() if (folder / EXPLAIN_JSON).is_file())


def _judged() -> list[Path]:
    return sorted(
        folder
        for folder in REFERENCE.iterdir()
        if (folder / AB_JSON).is_file() and (folder / "base").is_dir() and (folder / "new").is_dir()
    )


def _name(folder: Path) -> str:
    return str(folder.relative_to(ROOT))


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _first_difference(committed: str, drawn: str) -> str:
    old, new = committed.splitlines(), drawn.splitlines()
    for n, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a != b:
            return f"line {n}:\n  committed: {a}\n  drawn now: {b}"
    return f"the committed file has {len(old)} lines, the drawn one {len(new)}"


def _rerender_run(folder: Path) -> str:
    """The fix, run from the checkout's root. The old charts go first: `bench report`
    overwrites the charts it draws and leaves any other in place."""
    return (
        f"If the change to the report is meant, re-render the committed run:\n"
        f"  rm -r {_name(folder)}/{CHARTS_DIR} && {python_m('bench', 'report', _name(folder))}\n"
        "and commit its report.md, report.html, charts/ and pyperf.json (`bench report` "
        "also writes results.csv, which reference runs do not commit)."
    )


def _rerender_explained(folder: Path) -> str:
    code = (
        "from pathlib import Path; from bench.explain.measure import load; "
        f"from bench.explain.report import render; d = Path('{_name(folder)}'); "
        f"r, m = load(d / '{EXPLAIN_JSON}'); "
        f"(d / '{EXPLAIN_MD}').write_text(render(r, m), encoding='utf-8')"
    )
    return (
        "If the change to explain.md is meant, re-render it (bench explain has no command "
        f'that only draws):\n  {interpreter()} -c "{code}"'
    )


def test_every_reference_folder_is_drawn_or_skipped_with_a_reason() -> None:
    drawn = {folder.name for folder in [*_runs(), *_explained(), *_judged()]}
    folders = {folder.name for folder in REFERENCE.iterdir() if folder.is_dir()}
    assert drawn, "no committed run found: the test would check nothing"
    assert not drawn & set(SKIPPED), "a folder is both drawn and skipped"
    assert folders - drawn == set(SKIPPED), (
        "a reference folder is neither drawn again here nor in SKIPPED with why"
    )


def _draw(folder: Path, into: Path) -> Path:
    """`bench report` on a copy of the run's rows and metadata, nothing drawn; report.md."""
    into.mkdir(parents=True)
    for name in (RESULTS_FILE, METADATA_FILE):
        shutil.copy2(folder / name, into / name)
    return build_report(into)


def test_a_rendering_holds_nothing_of_where_or_when_it_was_drawn(tmp_path: Path) -> None:
    """The premise of the byte comparison: two renderings of one run agree."""
    smallest = min(_runs(), key=lambda folder: (folder / RESULTS_FILE).stat().st_size)
    one = _draw(smallest, tmp_path / "one" / smallest.name)
    two = _draw(smallest, tmp_path / "two" / "elsewhere" / smallest.name)
    assert one.read_bytes() == two.read_bytes()
    assert str(tmp_path) not in one.read_text(encoding="utf-8")
    assert _names(one.parent / CHARTS_DIR) == _names(two.parent / CHARTS_DIR)


@pytest.mark.parametrize("folder", _runs(), ids=lambda folder: folder.name)
def test_a_committed_run_is_what_bench_report_draws_from_its_rows(
    folder: Path, tmp_path: Path
) -> None:
    drawn = _draw(folder, tmp_path / folder.name)

    committed = folder / REPORT_MD
    problems = []
    if not committed.is_file():
        problems.append(f"{_name(committed)} is missing")
    elif (old := committed.read_text(encoding="utf-8")) != (new := drawn.read_text("utf-8")):
        problems.append(
            f"{_name(committed)} differs from what `bench report` draws from its rows, at "
            f"{_first_difference(old, new)}"
        )
    charts, now = _names(folder / CHARTS_DIR), _names(drawn.parent / CHARTS_DIR)
    if charts != now:
        problems.append(
            f"{_name(folder / CHARTS_DIR)}: committed but no longer drawn: "
            f"{sorted(charts - now) or 'none'}; drawn but not committed: "
            f"{sorted(now - charts) or 'none'}"
        )
    if problems:
        pytest.fail("\n".join([*problems, _rerender_run(folder)]))


@pytest.mark.parametrize("folder", _explained(), ids=lambda folder: folder.name)
def test_a_committed_explain_md_is_what_its_explain_json_draws(folder: Path) -> None:
    results, metadata = load_explained(folder / EXPLAIN_JSON)
    committed = folder / EXPLAIN_MD
    assert committed.is_file(), f"{_name(committed)} is missing; {_rerender_explained(folder)}"
    old, new = committed.read_text(encoding="utf-8"), render_explained(results, metadata)
    if old != new:
        pytest.fail(
            f"{_name(committed)} differs from what its {EXPLAIN_JSON} draws, at "
            f"{_first_difference(old, new)}\n{_rerender_explained(folder)}"
        )


@pytest.mark.parametrize("folder", _judged(), ids=lambda folder: folder.name)
def test_a_committed_ab_is_what_its_two_sides_runs_judge(folder: Path, tmp_path: Path) -> None:
    meta = json.loads((folder / AB_JSON).read_text(encoding="utf-8"))["metadata"]
    results, _ = analyse(
        RunStore.open(folder / "base").rows(),
        RunStore.open(folder / "new").rows(),
        meta["alpha"],
        meta["threshold"],
        frozenset(meta.get("expected_reasons", ())),
    )
    save(results, meta, tmp_path)
    for name in (AB_MD, AB_JSON):
        old = (folder / name).read_text(encoding="utf-8")
        new = (tmp_path / name).read_text(encoding="utf-8")
        if old != new:
            pytest.fail(
                f"{_name(folder / name)} differs from what its base/ and new/ runs judge, at "
                f"{_first_difference(old, new)}\nIf the change to bench ab's page is meant, "
                f"write it again with bench.gate.ab_report.save over "
                f"bench.gate.ab_analysis.analyse, as this test does, into {_name(folder)}"
            )

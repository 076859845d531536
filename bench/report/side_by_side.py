"""Several runs in one report (`bench report RUN1 RUN2 ...`): one frame whose lines are
labelled `MODEL · RUN`, the runs' machines in the facts and under every chart.

Cells of different runs share a chart where they share their axes. An axis that is one
value within each run but differs between them (echo in one run, http in the other; a
payload each) is the difference the reader asked to see: it leaves the grouping, and the
section's title names each run's value.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bench.record import Row
from bench.report.document import Section, group_slug, group_title
from bench.report.facts import caption as run_caption
from bench.report.facts import machine_line
from bench.report.frame import GROUP_COLUMNS, RUN_SEP, load_frame
from bench.store import RunStore

RUN = "run_label"  # the frame's column: which run a row came from


def labels(stores: Sequence[RunStore]) -> list[str]:
    """Each run's label: its run id, or its folder's path where two ids are the same."""
    ids = [str(s.metadata.get("run_id") or s.path.name) for s in stores]
    return [i if ids.count(i) == 1 else str(s.path) for i, s in zip(ids, stores, strict=True)]


def combine(stores: Sequence[RunStore]) -> tuple[pd.DataFrame, dict[str, object], list[Row]]:
    """(frame of every run's rows, lines relabelled `MODEL · RUN`; the first run's
    metadata; every row)."""
    frames, rows = [], []
    for label, store in zip(labels(stores), stores, strict=True):
        run_rows = store.rows()
        rows += run_rows
        frame = load_frame(run_rows)
        frame["cell.model"] = frame["cell.model"].astype(str) + RUN_SEP + label
        frame["key"] = frame["key"].astype(str) + RUN_SEP + label
        frame[RUN] = label
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), stores[0].metadata, rows


def _run_of(cells: pd.DataFrame) -> pd.Series:
    return cells["cell.model"].astype(str).str.partition(RUN_SEP)[2]


def group_columns(cells: pd.DataFrame) -> list[str]:
    """GROUP_COLUMNS without those that are one value in each run but not the same in
    all: those runs' cells go on one chart."""
    runs = _run_of(cells)
    per_run = [cells[runs == run] for run in runs.unique()]
    return [
        c
        for c in GROUP_COLUMNS
        if not (
            all(part[c].nunique(dropna=False) == 1 for part in per_run)
            and cells[c].nunique(dropna=False) > 1
        )
    ]


def title_and_slug(
    group: pd.DataFrame, columns: Sequence[str], order: Sequence[str]
) -> tuple[str, str]:
    """The section's title and file-name part: each run's own where they differ, in the
    runs' `order`."""
    if list(columns) == GROUP_COLUMNS:
        first = group.iloc[0]
        return group_title(first), group_slug(first)
    runs = _run_of(group)
    present = sorted(runs.unique(), key=lambda run: list(order).index(run))
    firsts = {run: group[runs == run].iloc[0] for run in present}
    title = " vs ".join(f"{group_title(first)} ({run})" for run, first in firsts.items())
    slug = "--".join(dict.fromkeys(group_slug(first) for first in firsts.values()))
    return title, slug


DRIFT = (
    "Separate runs, not interleaved: a difference between them includes any change of the "
    "machine's speed between their times; within one run the cells compare."
)


def caption(stores: Sequence[RunStore]) -> str:
    """Under every chart: each run's machine, CPU plan and date, labelled, and why a
    difference between runs is weaker evidence than one within a run."""
    runs = [
        f"{label}: " + run_caption(store.metadata).replace("\n", " · ")
        for label, store in zip(labels(stores), stores, strict=True)
    ]
    return "\n".join([DRIFT, *runs])


def facts(stores: Sequence[RunStore]) -> list[tuple[str, str]]:
    """A fact per run: its machine, git revision and date."""
    out = []
    for label, store in zip(labels(stores), stores, strict=True):
        meta = store.metadata
        sha = str((meta.get("git") or {}).get("sha") or "no git")[:12]
        out.append(
            (
                f"Run {label}",
                f"{machine_line(meta)}; git {sha}; started {meta.get('started_at', '?')} "
                f"({store.path})",
            )
        )
    out.append(("Lines", f"MODEL{RUN_SEP}RUN: each model's line from each run, in its colour"))
    out.append(("Between runs", DRIFT))
    return out


def left_out_section(frame: pd.DataFrame) -> Section | None:
    """A line saying which of the runs' figures are not drawn side by side, if any."""
    opened = frame["cell.load"].fillna("").astype(str) != ""
    if not opened.any():
        return None
    section = Section("Not side by side")
    section.paragraphs.append(
        f"{int(opened.sum())} open-loop rows (load-latency curves, capacity searches) are "
        "drawn only in each run's own report: bench report RUN."
    )
    return section

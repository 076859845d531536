"""The report as a document: facts, legend, one section per group of cells with its
tables and charts, and the notes. Rendered by render_md and render_html beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.analysis.stats import TEST_NAME, PairTest, compare_adjacent, median_interval
from bench.record import USABLE
from bench.report.frame import Metric, model_sort_key, value_format
from clients.result import LOWER_BOUND_MARK
from clients.wire import describe

CLIENT_BOUND_MARK = "†"
PARTIAL_MARK = "‡"
SUSPECT_MARK = "§"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: bool = True  # right-align every column but the first


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)  # (title, path without ext)
    paragraphs: list[str] = field(default_factory=list)  # before the tables


@dataclass
class Document:
    title: str
    facts: list[tuple[str, str]]
    legend: list[str]
    sections: list[Section]
    notes: Table | None


def group_slug(cell: dict[str, Any] | pd.Series) -> str:
    """File-name part for a protocol x payload (x non-default axes) group."""
    slug = f"{cell['cell.protocol']}_p{int(cell['cell.payload'])}"
    if cell["cell.mode"] != "persistent":
        slug += f"_{cell['cell.mode']}"
    if cell["cell.driver"] != "loadgen":
        slug += f"_{cell['cell.driver']}"
    if int(cell["cell.backlog"]):
        slug += f"_b{int(cell['cell.backlog'])}"
    if cell["cell.work"]:
        slug += f"_w{cell['cell.work']}"
    if int(cell.get("cell.slow", 0) or 0):  # bench run --slow: as the cell key writes it
        slug += f"_s{int(cell['cell.slow'])}" + ("r" if cell["cell.slow_mode"] == "reader" else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", slug)


def group_title(cell: dict[str, Any] | pd.Series) -> str:
    """What the group's requests were: "http POST /echo, 64 B body, per-request
    connections" (clients.wire.describe and the non-default axes)."""
    parts = [describe(str(cell["cell.protocol"]), int(cell["cell.payload"]))]
    if cell["cell.mode"] != "persistent":
        parts.append(f"{cell['cell.mode']} connections")
    if cell["cell.driver"] != "loadgen":
        parts.append(f"driver {cell['cell.driver']}")
    if int(cell["cell.backlog"]):
        parts.append(f"backlog {int(cell['cell.backlog'])}")
    if cell["cell.work"]:
        parts.append(f"work {cell['cell.work']}")
    if int(cell.get("cell.slow", 0) or 0):
        parts.append(slow_label(cell["cell.slow"], cell["cell.slow_mode"]))
    return ", ".join(parts)


def slow_label(slow: Any, mode: Any) -> str:
    """ "100 slow senders", "1 slow reader" (bench run --slow)."""
    count = int(slow)
    return f"{count:,} slow {'reader' if mode == 'reader' else 'sender'}{'' if count == 1 else 's'}"


def format_cell(cell: pd.Series, metric: Metric) -> str:
    """A table entry: [≥]median [(low–high)] plus markers, or the cell's status."""
    if cell["status"] in ("failed", "skipped"):
        return str(cell["status"])
    median = cell[f"{metric.name}.median"]
    if pd.isna(median):
        return "n/a"
    fmt = value_format(metric, cell)  # one decimal for a fine latency (frame.FINE_FORMAT)
    text = format(median, fmt)
    if cell.get(f"{metric.name}.bound"):
        text = f"{LOWER_BOUND_MARK}{text}"
    if metric.ci:
        low, high = cell[f"{metric.name}.ci_low"], cell[f"{metric.name}.ci_high"]
        if not (pd.isna(low) or pd.isna(high)):  # one repeat has no interval
            text += f" ({format(low, fmt)}–{format(high, fmt)})"
    return " ".join([text, *cell_marks(cell)])


def cell_marks(cell: pd.Series) -> list[str]:
    """The marks of a usable cell, in their order: client-bound, suspect, partly failed."""
    marks = []
    if cell["status"] == "client-bound":
        marks.append(CLIENT_BOUND_MARK)
    if cell.get("verdict") == "suspect":
        marks.append(SUSPECT_MARK)
    if cell["n_failed"]:
        marks.append(PARTIAL_MARK)
    return marks


def metric_table(cells: pd.DataFrame, metric: Metric) -> Table:
    """Rows: connections; columns: models; for one group."""
    models = sorted(cells["cell.model"].unique(), key=model_sort_key)
    header = ["connections", *models]
    rows = []
    for conns in sorted(cells["cell.connections"].unique()):
        row = [f"{int(conns):,}"]
        for model in models:
            match = cells[(cells["cell.model"] == model) & (cells["cell.connections"] == conns)]
            row.append(format_cell(match.iloc[0], metric) if not match.empty else "")
        rows.append(row)
    return Table(metric.label, header, rows)


def legend(cells: pd.DataFrame) -> list[str]:
    """What the marks mean, and what the intervals cover with the repeats this run has."""
    repeats = sorted({int(n) for n in cells["n"]}) if not cells.empty else []
    if not repeats or max(repeats) < 2:
        interval = (
            "One repeat per cell: no interval is shown, and no difference between two "
            "values can be called significant (use --repeats 6 or the reference profile)."
        )
    else:
        coverages = ", ".join(
            f"{median_interval(range(n)).coverage:.0%} with {n} repeats" for n in repeats if n >= 2
        )
        interval = (
            '"(low–high)" is the distribution-free interval of the median from the '
            f"repeats' order statistics; it covers the true median with probability "
            f"{coverages} (absent with one repeat)."
        )
    return [
        "Each value is the median over a cell's repeats. " + interval,
        f'"{LOWER_BOUND_MARK}": a lower bound: requests still unanswered when the window '
        "ended decide this percentile, so the true value is at least this.",
        f"{SUSPECT_MARK} suspect: a check failed (client-bound, rate not achieved, "
        "unsteady window, busy machine, too few samples, a server worker restarted); see "
        "the Verdicts section.",
        f"{CLIENT_BOUND_MARK} client-bound: the load generator was the bottleneck or did not "
        "get its CPU, so throughput is a lower bound on what the server can do.",
        f"{PARTIAL_MARK} some repeats of this cell failed; the value uses the others.",
        '"failed": every repeat failed (see Notes); "skipped": not runnable on this '
        "machine; empty: not in the matrix.",
    ]


def verdict_section(cells: pd.DataFrame) -> Section | None:
    """Every suspect cell and why."""
    suspect = cells[cells["verdict"] == "suspect"]
    if suspect.empty:
        return None
    rows = [[str(c["key"]), str(c["reasons"])] for _, c in suspect.iterrows()]
    section = Section("Verdicts: suspect cells")
    section.paragraphs = [
        f"{len(suspect)} of {int((cells['verdict'].notna()).sum())} cells with figures are "
        "suspect: read their figures with the reason in mind (docs/verdicts.md says how)."
    ]
    section.tables = [Table("Suspect cells", ["cell", "why"], rows, numeric=False)]
    return section


def significance_section(frame: pd.DataFrame, group_columns: list[str]) -> Section | None:
    """Per group and connection count: which neighbours in the throughput ranking
    differ by more than noise (bench.analysis.stats.compare_adjacent). A model with a
    client-bound repeat keeps its place in the ranking, but its pairs are marked
    "lower bound: not tested"."""
    usable = frame[frame["status"].isin(USABLE)]
    if usable.empty:
        return None
    rows = []
    for keys, group in usable.groupby([*group_columns, "cell.connections"], sort=True):
        samples = {
            str(model): [float(v) for v in pd.to_numeric(g["load.throughput_rps"]).dropna()]
            for model, g in group.groupby("cell.model")
        }
        bound = {  # model -> (client-bound repeats, usable repeats)
            str(model): (int((g["status"] == "client-bound").sum()), len(g))
            for model, g in group.groupby("cell.model")
            if (g["status"] == "client-bound").any()
        }
        for test in compare_adjacent(samples, lower_bounds=bound):
            rows.append(
                [
                    f"{group_title(group.iloc[0])}, {int(keys[-1]):,} "
                    + ("connection" if int(keys[-1]) == 1 else "connections"),
                    f"{test.higher} > {test.lower}",
                    f"{test.ratio:.2f}x" if test.ratio == test.ratio else "n/a",
                    f"{test.p_adjusted:.3f}" if test.tested else "-",
                    _pair_verdict(test, bound),
                ]
            )
    section = Section("Significance: which throughput differences are more than noise")
    if not rows:
        section.paragraphs = [
            "No two models have two or more repeats at the same connection count, so no "
            "difference between models can be tested: do not rank models on these figures "
            "(run --repeats 6, or --profile reference)."
        ]
        return section
    section.paragraphs = [
        f"Models ranked by median throughput; each neighbour pair tested with a {TEST_NAME}. "
        '"not significant" means the repeats cannot tell the two apart: do not rank them. '
        f"A model with a client-bound repeat ({CLIENT_BOUND_MARK}: its throughput is only a "
        "lower bound) keeps its place in the ranking, but its pairs are marked "
        '"lower bound: not tested" and left out of Holm\'s count: its true figure could be '
        "higher, so where it ranks below its neighbour not even their order is known (and "
        "where above, the gap could be wider). Leaving its client-bound repeats out "
        "instead would bias it down (they are often its fastest) or drop it from the "
        "ranking; a run whose load generator keeps up (more client CPUs) can rank it."
    ]
    section.tables = [
        Table(
            "Adjacent pairs by throughput",
            ["cells", "pair", "ratio of medians", "p (Holm)", "verdict"],
            rows,
            numeric=False,
        )
    ]
    return section


def _pair_verdict(test: PairTest, bound: dict[str, tuple[int, int]]) -> str:
    if not test.tested:
        why = ", ".join(
            f"{name} client-bound in {bound[name][0]} of {bound[name][1]} repeats"
            for name in (test.higher, test.lower)
            if name in bound
        )
        return f"lower bound: not tested ({why})"
    if test.significant:
        return "significant"
    if test.min_p >= 0.05:
        return f"not significant (too few repeats: p cannot go below {test.min_p:.2f})"
    return "not significant"


def notes_table(df: pd.DataFrame) -> Table | None:
    """Every failed, skipped or client-bound repeat with its reason."""
    odd = df[df["status"] != "ok"]
    if odd.empty:
        return None
    rows = [
        [
            str(r["key"]),
            str(int(r["repeat"])),
            str(r["status"]),
            str(r["reason"]) if isinstance(r["reason"], str) else "",
        ]
        for _, r in odd.iterrows()
    ]
    return Table(
        "Notes: failed, skipped and client-bound repeats",
        ["cell", "repeat", "status", "reason"],
        rows,
        numeric=False,
    )

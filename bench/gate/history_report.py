"""`python -m bench history HISTORY.jsonl [--out DIR] [--append AB_FOLDER]`: the trend of
every cell over the nights, with its shifts and drift (bench.analysis.changepoints).

With --append, the `bench ab` folder's entries are added to the history first (bench.gate.history;
an entry already there is not added twice). Then, per machine fingerprint, per anchor
(the base of the nightly `bench ab ANCHOR HEAD --together`) and per cell, a chart of each
metric over the nights (x: the night's date and commit; y: the paired ratio new / anchor,
its interval as an error bar, a line at 1.0; shifts and drift marked, with their commit
ranges in the legend) and a table of every entry go to DIR/index.html (one
self-contained page, the charts inlined as SVG), and the findings, one line each, to
DIR/history.md. A series too short for bench.analysis.changepoints is drawn, not analysed.
The counted gate's series (its counts per request, per build: bench.gate.counted_history)
follow on the same page and in the same summary (bench.gate.counted_history_report).
Each series of 20 nights or more gets its lag-1 autocorrelation (printed, and in
history.md), and a warning above the one the change-point rule is sized for.

Exit status: 2 with one line for bad input (a missing or unreadable history, an unknown
schema, an --append folder that is not a bench ab result), checked before anything is
written; otherwise 0, findings or not. The nightly gate is `bench ab` (exit 1 on a
regression); the history is advisory: a drift is a reason to look, not to fail a build.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from bench.gate.ab_analysis import CONTINUOUS
from bench.gate.counted_history_report import CountedFound
from bench.gate.counted_history_report import html as counted_html
from bench.gate.counted_history_report import markdown as counted_markdown
from bench.gate.history import Entry, HistoryEntry, Night, anchors, counted, paired, series
from bench.store import write_text_atomic
from common.text import code_html, plural

if TYPE_CHECKING:
    from bench.analysis.changepoints import Finding

SPECS = {spec.name: spec for spec in CONTINUOUS}


@dataclass(frozen=True)
class Found:
    """A finding in one machine's series of one cell and metric against one anchor."""

    fingerprint: str
    anchor: str
    cell: str
    metric: str
    finding: Finding
    nights: tuple[Night, ...]

    @property
    def worse(self) -> bool:
        return (self.finding.change < 0) == SPECS[self.metric].higher_is_better

    def size(self) -> str:
        return self.finding.size(self.worse, len(self.nights))


# -- analysis ---------------------------------------------------------------------------


def keys(entries: Sequence[HistoryEntry]) -> dict[str, dict[str, list[str]]]:
    """Fingerprint -> its anchors (in the order of their first night) -> their cells (in
    the order they first appear)."""
    out: dict[str, dict[str, list[str]]] = {}
    for fingerprint in dict.fromkeys(e.fingerprint for e in entries):
        out[fingerprint] = {anchor: [] for anchor in anchors(entries, fingerprint)}
    for e in entries:
        cells = out[e.fingerprint][e.base_sha]
        if e.cell not in cells:
            cells.append(e.cell)
    return out


def analyse(everything: Sequence[Entry]) -> list[Found]:
    """bench.analysis.changepoints on every paired series; one too short for it finds
    nothing (the counted series: bench.gate.counted_history_report.analyse_counted)."""
    from bench.analysis.changepoints import find  # scipy's and Otava's code load only here

    entries = paired(everything)
    found = []
    for fingerprint, by_anchor in keys(entries).items():
        for anchor, cells in by_anchor.items():
            for cell in cells:
                for metric in SPECS:
                    nights = series(entries, fingerprint, cell, metric, anchor)
                    values = [n.value for n in nights]
                    for finding in find(values, [n.new_sha for n in nights]):
                        found.append(Found(fingerprint, anchor, cell, metric, finding, nights))
    return found


def correlations(everything: Sequence[Entry]) -> list[str]:
    """Per machine, anchor and cell with a series of MIN_PHI_NIGHTS nights or more: one
    line of each such metric's lag-1 autocorrelation (its last TREND_NIGHTS nights); then a
    warning line for each one above SIZED_FOR_PHI, the correlation the rule is sized for.
    Not for the counted series: their nights differ by a few millionths, if at all."""
    from bench.analysis.changepoints import SIZED_FOR_PHI, lag1_autocorrelation

    entries = paired(everything)
    lines, warnings = [], []
    for fingerprint, by_anchor in keys(entries).items():
        for anchor, cells in by_anchor.items():
            for cell in cells:
                where = f"machine {fingerprint}, anchor {anchor[:10]}, {cell}"
                phis = {
                    metric: lag1_autocorrelation(
                        [n.value for n in series(entries, fingerprint, cell, metric, anchor)]
                    )
                    for metric in SPECS
                }
                known = {metric: phi for metric, phi in phis.items() if phi is not None}
                if known:
                    lines.append(where + ": " + ", ".join(f"{m} {p:.2f}" for m, p in known.items()))
                warnings += [
                    f"warning: {where}, {metric}: {phi:.2f}, above the {SIZED_FOR_PHI:g} the "
                    "change-point rule is sized for: it may flag more than 5% of quiet series"
                    for metric, phi in known.items()
                    if phi > SIZED_FOR_PHI
                ]
    return lines + warnings


def correlation_head() -> str:
    from bench.analysis.changepoints import MIN_PHI_NIGHTS, SIZED_FOR_PHI, TREND_NIGHTS

    return (
        f"Lag-1 autocorrelation of the nightly ratios (the last {TREND_NIGHTS} nights of each "
        f"series of {MIN_PHI_NIGHTS} or more; the change-point rule is sized for "
        f"{SIZED_FOR_PHI:g}, docs/nightly.md; a shift or drift raises it too):"
    )


# -- output -----------------------------------------------------------------------------


def write(
    entries: Sequence[Entry],
    found: Sequence[Found],
    out: Path,
    counted_found: Sequence[CountedFound] = (),
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    page, summary = out / "index.html", out / "history.md"
    write_text_atomic(page, render_html(entries, found, counted_found))
    write_text_atomic(summary, render_markdown(entries, found, counted_found))
    return page, summary


def finding_line(f: Found) -> str:
    return (
        f"machine {f.fingerprint}, anchor {f.anchor[:10]}, {f.cell}, {f.metric}, "
        f"{f.finding.kind}, {f.size()}, commits {f.finding.commits} (p {f.finding.p:.2g})"
    )


def pairs_text(entries: Sequence[HistoryEntry]) -> str:
    """How many pairs the entries' ratios are over: "16", "12-16", or "N" when unknown."""
    counts = {m.pairs for e in entries for m in e.metrics if m.pairs}
    if not counts:
        return "N"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def what_a_point_is(entries: Sequence[HistoryEntry]) -> str:
    """The page's and the summary's words on what a point is (markdown)."""
    return (
        "Each point is that night's commit against the anchor, both at once (`bench ab "
        "ANCHOR HEAD --together`): the Hodges-Lehmann ratio new / anchor of "
        f"{pairs_text(entries)} pairs and its interval. The medians in the tables are each "
        "side's share of the CPUs, measured beside the other side, not standalone figures; "
        "they swing from night to night far more than the ratio does."
    )


def render_markdown(
    everything: Sequence[Entry], found: Sequence[Found], counted_found: Sequence[CountedFound] = ()
) -> str:
    entries = paired(everything)
    machines = {e.fingerprint: e.machine for e in entries}
    lines = ["# sockbench history", "", "## Findings", ""]
    if not found:
        lines.append("None: no shift or drift in any series.")
    lines += [f"- {finding_line(f)}" for f in found]
    lines += [
        "",
        what_a_point_is(entries),
        "",
        "Shifts: Apache Otava's E-Divisive; drift: Mann-Kendall with Sen's slope over the "
        "last nights (docs/nightly.md). Each commit range is the last night before the "
        "change and its first night. A series too short for them is not analysed. "
        "Advisory: the gate is `bench ab`.",
        "",
    ]
    lines += counted_markdown(counted(everything), counted_found)
    correlated = correlations(entries)
    if correlated:
        lines += ["## Correlation between nights", "", correlation_head(), ""]
        lines += [f"- {line}" for line in correlated] + [""]
    lines += ["## Machines and anchors", ""] if entries else []
    for fingerprint, by_anchor in keys(entries).items():
        lines.append(f"- `{fingerprint}`: {machines[fingerprint].describe()}")
        for anchor, cells in by_anchor.items():
            span = _span(_nights(entries, fingerprint, anchor))
            lines.append(f"  - anchor `{anchor[:10]}`: {span}, {plural(len(cells), 'cell')}")
    return "\n".join(lines) + "\n"


def _nights(entries: Sequence[HistoryEntry], fingerprint: str, anchor: str) -> list[str]:
    """The times of one machine's comparisons against one anchor, oldest first."""
    mine = {e.when for e in entries if (e.fingerprint, e.base_sha) == (fingerprint, anchor)}
    return sorted(mine, key=datetime.fromisoformat)


def _span(nights: Sequence[str]) -> str:
    return f"{plural(len(nights), 'night')} ({nights[0][:10]} to {nights[-1][:10]})"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
       color: #222; line-height: 1.4; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.6em; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(30em, 1fr)); gap: 1em; }
figure { margin: 0; } figure img { width: 100%; height: auto; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .2em .5em; } th { background: #f4f4f4; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; } .worse { color: #c62828; } .better { color: #2e7d32; }
"""


def render_html(
    everything: Sequence[Entry], found: Sequence[Found], counted_found: Sequence[CountedFound] = ()
) -> str:
    entries = paired(everything)
    machines = {e.fingerprint: e.machine for e in entries}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>sockbench history</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>sockbench history</h1>",
        f"<p>{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, "
        f"{plural(len(machines), 'machine')}. {code_html(what_a_point_is(entries))} "
        "The dotted line at 1.0 is the anchor's level. Circles mark the nights that "
        "<code>bench ab</code> itself judged a regression (red) or an improvement (green) "
        "against the anchor. Shifts (E-Divisive) and drift (Mann-Kendall) are marked with "
        "the commit range where they began; a series too short for them is drawn, not "
        "analysed. Advisory: the gate is <code>bench ab</code>.</p>",
        "<h2>Findings</h2>",
    ]
    if found:
        out.append(
            "<ul>"
            + "".join(
                f'<li class="{"worse" if f.worse else "better"}">{escape(finding_line(f))}</li>'
                for f in found
            )
            + "</ul>"
        )
    else:
        out.append("<p>None: no shift or drift in any series.</p>")
    for fingerprint, by_anchor in keys(entries).items():
        out.append(f"<h2>Machine {fingerprint}: {escape(machines[fingerprint].describe())}</h2>")
        for anchor, cells in by_anchor.items():
            out.append(
                f'<h3 id="{escape(fingerprint)}-{escape(anchor[:10])}">Against anchor '
                f"{escape(anchor[:10])}</h3>\n"
                f"<p>{_span(_nights(entries, fingerprint, anchor))}.</p>"
            )
            out += [cell_section(entries, found, fingerprint, anchor, cell) for cell in cells]
    out += counted_html(counted(everything), counted_found)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def cell_section(
    entries: Sequence[HistoryEntry],
    found: Sequence[Found],
    fingerprint: str,
    anchor: str,
    cell: str,
) -> str:
    """One machine's cell against one anchor: a chart per metric, then its entries."""
    key = (fingerprint, anchor, cell)
    out = [f'<h4 id="{escape("-".join((fingerprint, anchor[:10], cell)))}">{escape(cell)}</h4>']
    out.append('<div class="charts">')
    for metric in SPECS:
        nights = series(entries, fingerprint, cell, metric, anchor)
        mine = [f for f in found if (f.fingerprint, f.anchor, f.cell, f.metric) == (*key, metric)]
        out.append(f"<figure>{_image(chart_svg(cell, metric, nights, mine), metric)}</figure>")
    out.append("</div>")
    out.append(entry_table([e for e in entries if (e.fingerprint, e.base_sha, e.cell) == key]))
    return "\n".join(out)


def entry_table(entries: Sequence[HistoryEntry]) -> str:
    """Every entry: per metric the new side's median (of its repeats), the paired ratio
    new / anchor [interval] (of its pairs), and bench ab's verdict unless "no change"."""
    head = ["when", "anchor", "new", "run"] + [
        f"{name}: median ({SPECS[name].unit}), new / anchor" for name in SPECS
    ]
    body = []
    for e in sorted(entries, key=lambda e: datetime.fromisoformat(e.when)):
        cells = [e.when, e.base_sha[:10], e.new_sha[:10], e.run]
        for name in SPECS:
            m = e.metric(name)
            if m is None or m.median is None:
                cells.append("n/a")
                continue
            text = f"{m.median:{SPECS[name].fmt}} ({m.repeats})"
            if m.ratio is not None and m.low is not None and m.high is not None:
                text += f", {m.ratio:.3f} [{m.low:.3f}–{m.high:.3f}]"
                text += f" ({m.pairs} pairs)" if m.pairs else ""
            if m.verdict and m.verdict != "no change":
                text += f" {m.verdict}"
            if m.note:  # not a point of the series, and why
                text += f" ({m.note})"
            cells.append(text)
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="wide">{table}</div>'


def _image(svg: bytes, title: str) -> str:
    data = base64.b64encode(svg).decode("ascii")
    return f'<img alt="{escape(title)}" src="data:image/svg+xml;base64,{data}">'


# -- charts -----------------------------------------------------------------------------


def chart_svg(cell: str, metric: str, nights: Sequence[Night], found: Sequence[Found]) -> bytes:
    """One metric of one cell over the nights against one anchor, as SVG: the nights'
    ratios new / anchor with their intervals, a line at 1.0 (the anchor's level), bench
    ab's verdicts, then each finding with its commit range."""
    from bench.report.charts.series_plots import Series, marks, series_svg  # matplotlib

    return series_svg(
        Series(
            title=f"{SPECS[metric].title}, {cell}",
            ylabel="new / anchor",
            values=[n.value for n in nights],
            ticks=[f"{n.when[5:10]}\n{n.new_sha[:7]}" for n in nights],
            verdicts=[n.verdict for n in nights],
            marks=marks(found),
            judge="bench ab against the anchor",
            empty="no usable night",
            intervals=[
                None if n.low is None or n.high is None else (n.low, n.high) for n in nights
            ],
            level=1.0,
        )
    )

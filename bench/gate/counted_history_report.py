"""The counted series on the history's page (bench.gate.history_report draws the rest):
per build, per cell and metric, NEW's count per request night after night, with the
shifts and drift bench.analysis.changepoints finds in it.

The rule is the one sized for the wall-clock ratios (a shift must move the level by
SHIFT_MIN_CHANGE, 5%; a drift at least MIN_DRIFT_PER_NIGHT a night): on a counted series,
whose nights differ by a few millionths, it flags no noise, an exactly constant series
included, and sees steps of 5% or more and ramps of 0.25% a night; smaller steps are the
nightly gate's to catch, night by night (docs/nightly.md).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from bench.gate.counted import METRICS
from bench.gate.counted_history import (
    CountedEntry,
    CountedNight,
    counted_keys,
    counted_series,
)
from common.text import code_html, plural

if TYPE_CHECKING:
    from bench.analysis.changepoints import Finding


@dataclass(frozen=True)
class CountedFound:
    """A finding in one build's series of one cell and metric."""

    build: str
    cell: str
    metric: str
    finding: Finding
    nights: tuple[CountedNight, ...]

    @property
    def worse(self) -> bool:
        return self.finding.change > 0  # more instructions or system calls per request

    def size(self) -> str:  # exact counts: a digit more than the paired ratios'
        return self.finding.size(self.worse, len(self.nights), digits=2)

    def line(self) -> str:
        return (
            f"build {self.build}, {self.cell}, {METRICS[self.metric]}, {self.finding.kind}, "
            f"{self.size()}, commits {self.finding.commits} (p {self.finding.p:.2g})"
        )


def analyse_counted(entries: Sequence[CountedEntry]) -> list[CountedFound]:
    """bench.analysis.changepoints on every counted series."""
    from bench.analysis.changepoints import find

    found = []
    for build, cells in counted_keys(entries).items():
        for cell in cells:
            for metric in METRICS:
                nights = counted_series(entries, build, cell, metric)
                values = [n.value for n in nights]
                for finding in find(values, [n.new_sha for n in nights]):
                    found.append(CountedFound(build, cell, metric, finding, nights))
    return found


WHAT = (
    "Counted series (`bench ab --counted`, docs/nightly.md): each point is the night's "
    "commit's count per request under valgrind (instructions) or strace (system calls), "
    "not a ratio; a series is one build's (interpreter, valgrind, architecture), and "
    "another build starts another. The nightly gate judges each night against its base to "
    "0.5%; the shifts and drift here use the wall-clock series' rule, so they see steps of "
    "5% or more and ramps of 0.25% a night."
)


def markdown(entries: Sequence[CountedEntry], found: Sequence[CountedFound]) -> list[str]:
    """The summary's section on the counted series (none without counted entries)."""
    if not entries:
        return []
    lines = ["## Counted series", "", WHAT, ""]
    if not found:
        lines.append("No shift or drift in any counted series.")
    lines += [f"- {f.line()}" for f in found]
    lines += [""]
    for build, cells in counted_keys(entries).items():
        nights = sorted({e.when for e in entries if e.build == build}, key=datetime.fromisoformat)
        lines.append(
            f"- build `{build}`: {plural(len(nights), 'night')} ({nights[0][:10]} to "
            f"{nights[-1][:10]}), {plural(len(cells), 'cell')}"
        )
    return lines + [""]


def html(entries: Sequence[CountedEntry], found: Sequence[CountedFound]) -> list[str]:
    """The page's section on the counted series (none without counted entries)."""
    if not entries:
        return []
    out = ["<h2>Counted series</h2>", f"<p>{code_html(WHAT)}</p>"]
    if found:
        out.append(
            "<ul>"
            + "".join(
                f'<li class="{"worse" if f.worse else "better"}">{escape(f.line())}</li>'
                for f in found
            )
            + "</ul>"
        )
    for build, cells in counted_keys(entries).items():
        out.append(f"<h3>Build {escape(build)}</h3>")
        for cell in cells:
            out.append(f"<h4>{escape(cell)}</h4>")
            out.append('<div class="charts">')
            for metric in METRICS:
                nights = counted_series(entries, build, cell, metric)
                mine = [f for f in found if (f.build, f.cell, f.metric) == (build, cell, metric)]
                svg = chart_svg(cell, metric, nights, mine)
                data = base64.b64encode(svg).decode("ascii")
                out.append(
                    f'<figure><img alt="{escape(metric)}" '
                    f'src="data:image/svg+xml;base64,{data}"></figure>'
                )
            out.append("</div>")
            out.append(table([e for e in entries if (e.build, e.cell) == (build, cell)]))
    return out


def table(entries: Sequence[CountedEntry]) -> str:
    """Every night of one build's cell: each metric's count, spread and the gate's word."""
    head = ["when", "base", "new", "run", *METRICS.values()]
    body = []
    for e in sorted(entries, key=lambda e: datetime.fromisoformat(e.when)):
        cells = [e.when, e.base_sha[:10], e.new_sha[:10], e.run]
        for name in METRICS:
            m = e.metric(name)
            if m is None:
                cells.append("n/a")
                continue
            text = f"{m.per_request:,.3f} (spread {m.spread:.4%})"
            if m.change is not None:
                text += f", {m.change:+.2%} against base"
            if m.verdict and m.verdict != "no change":
                text += f" {m.verdict}"
            cells.append(text)
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (
        f'<div class="wide"><table><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def chart_svg(
    cell: str, metric: str, nights: Sequence[CountedNight], found: Sequence[CountedFound]
) -> bytes:
    """One counted series as SVG: the count per request over the nights, the gate's
    verdicts circled, the findings marked with their commit ranges."""
    from bench.report.charts.series_plots import Series, marks, series_svg  # matplotlib

    return series_svg(
        Series(
            title=f"{METRICS[metric]}, {cell}",
            ylabel=METRICS[metric],
            values=[n.value for n in nights],
            ticks=[f"{n.when[5:10]}\n{n.new_sha[:7]}" for n in nights],
            verdicts=[n.verdict for n in nights],
            marks=marks(found),
            judge="the gate against its base",
        )
    )

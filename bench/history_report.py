"""`python -m bench history HISTORY.jsonl [--out DIR] [--append AB_FOLDER]`: the trend of
every cell over the nights, with its shifts and drift (bench.changepoints).

With --append, the `bench ab` folder's entries are added to the history first (bench.history;
an entry already there is not added twice). Then, per machine fingerprint and cell, a
chart of each metric over the nights (x: the night's date and commit, y: the new side's
median; shifts and drift marked, with their commit ranges in the legend) and a table of
every entry go to DIR/index.html (one self-contained page, the charts inlined as SVG),
and the findings, one line each, to DIR/history.md.

Exit status: 2 with one line for bad input (a missing or unreadable history, an unknown
schema, an --append folder that is not a bench ab result), checked before anything is
written; otherwise 0, findings or not. The nightly gate is `bench ab` (exit 1 on a
regression); the history is advisory: a drift is a reason to look, not to fail a build.
"""

from __future__ import annotations

import argparse
import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.ab_analysis import CONTINUOUS
from bench.history import HistoryEntry, HistoryError, Night, append, entries_from_ab, load, series
from bench.store import write_text_atomic
from common.cli import usage_error

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from bench.changepoints import Finding

PROG = "python -m bench history"
OUT = Path("results") / "history"
SPECS = {spec.name: spec for spec in CONTINUOUS}
# Stable SVG ids and text kept as text: an unchanged history re-renders to the same bytes.
RC: Any = {"svg.hashsalt": "sockbench", "svg.fonttype": "none", "font.size": 9}
WORSE, BETTER = "#c62828", "#2e7d32"


@dataclass(frozen=True)
class Found:
    """A finding in one machine's series of one cell and metric."""

    fingerprint: str
    cell: str
    metric: str
    finding: Finding
    nights: tuple[Night, ...]

    @property
    def worse(self) -> bool:
        return (self.finding.change < 0) == SPECS[self.metric].higher_is_better

    def size(self) -> str:
        f, word = self.finding, "worse" if self.worse else "better"
        if f.per_night is None:
            return f"{f.change:+.1%} ({word})"
        span = len(self.nights) - f.night
        return f"{f.per_night:+.2%} a night, {f.change:+.1%} over {span} nights ({word})"


def add_parser(sub: Any) -> None:
    history = sub.add_parser(
        "history", help="trends over the nights, level shifts and drift (advisory: exit 0)"
    )
    history.add_argument("history", type=Path, metavar="HISTORY", help="the history (JSONL)")
    history.add_argument(
        "--out", type=Path, default=OUT, metavar="DIR", help=f"index.html and history.md ({OUT})"
    )
    history.add_argument(
        "--append",
        type=Path,
        metavar="AB_FOLDER",
        help="first add this bench ab result's cells to the history (created if missing)",
    )


def cmd_history(args: argparse.Namespace) -> int:
    try:  # Otava: an extra; missing, it fails before any work
        from bench import changepoints  # noqa: F401
    except ImportError as exc:
        return usage_error(
            PROG, f"needs {exc.name}: pip install -e '.[history]' (make install does)"
        )

    try:
        new = entries_from_ab(args.append) if args.append else []
        if args.history.exists() or not args.append:
            load(args.history)  # refuse a bad history before adding to it
        if args.append:
            added = append(args.history, new)
            print(f"{added} entries added to {args.history} ({len(new) - added} already there)")
        entries = load(args.history)
    except HistoryError as exc:
        return usage_error(PROG, exc)
    found = analyse(entries)
    page, summary = write(entries, found, args.out)
    print(f"{_plural(len(found), 'finding')} in {len(entries)} entries: {page}, {summary}")
    return 0


# -- analysis ---------------------------------------------------------------------------


def keys(entries: Sequence[HistoryEntry]) -> dict[str, list[str]]:
    """Fingerprint -> its cells, in the order they first appear."""
    out: dict[str, list[str]] = {}
    for e in entries:
        cells = out.setdefault(e.fingerprint, [])
        if e.cell not in cells:
            cells.append(e.cell)
    return out


def analyse(entries: Sequence[HistoryEntry]) -> list[Found]:
    from bench.changepoints import find  # scipy's and Otava's code load only here

    found = []
    for fingerprint, cells in keys(entries).items():
        for cell in cells:
            for metric in SPECS:
                nights = series(entries, fingerprint, cell, metric)
                values = [n.value for n in nights]
                for finding in find(values, [n.new_sha for n in nights]):
                    found.append(Found(fingerprint, cell, metric, finding, nights))
    return found


# -- output -----------------------------------------------------------------------------


def write(entries: Sequence[HistoryEntry], found: Sequence[Found], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    page, summary = out / "index.html", out / "history.md"
    write_text_atomic(page, render_html(entries, found))
    write_text_atomic(summary, render_markdown(entries, found))
    return page, summary


def finding_line(f: Found) -> str:
    return (
        f"{f.cell}, {f.metric}, {f.finding.kind}, {f.size()}, "
        f"commits {f.finding.commits} (p {f.finding.p:.2g}){code_or_machine(f)}"
    )


LOCATE_NIGHTS = 2  # a shift's night is placed within about 2 nights (docs/nightly.md)


def code_or_machine(f: Found) -> str:
    """What the nights' paired comparisons say of a shift. The medians carry the host's
    swings from one night to the next; a paired ratio, both versions at once, does not.
    Of the nights around the shift (its place is known to about 2 nights) whose base was
    the night before, one whose interval lies on the shift's side measured the step:
    the code. If none did, the step was likely the machine's."""
    if f.finding.kind != "shift":
        return ""
    night = f.finding.night
    around = range(max(1, night - LOCATE_NIGHTS), min(len(f.nights), night + LOCATE_NIGHTS + 1))
    chained = [
        (n, n.paired)
        for k in around
        if (n := f.nights[k]).base_sha == f.nights[k - 1].new_sha
        and n.paired is not None
        and n.paired.ratio is not None
        and n.paired.low is not None
        and n.paired.high is not None
    ]
    if not chained:
        return ""
    down = f.finding.change < 0
    for n, p in chained:
        if (p.high < 1) if down else (p.low > 1):  # type: ignore[operator]
            return (
                f"; the code: bench ab of {n.new_sha[:10]} against the night before saw "
                f"{p.ratio:.3f} [{p.low:.3f}-{p.high:.3f}]"
            )
    return (
        f"; not one commit: none of the {len(chained)} paired comparisons with the night "
        "before around it saw a step that way (the machine, or a slow drift)"
    )


def render_markdown(entries: Sequence[HistoryEntry], found: Sequence[Found]) -> str:
    machines = {e.fingerprint: e.machine for e in entries}
    lines = ["# sockbench history", "", "## Findings", ""]
    if not found:
        lines.append("None: no shift or drift in any series.")
    for fingerprint in machines:
        mine = [f for f in found if f.fingerprint == fingerprint]
        if mine and len(machines) > 1:
            lines += [f"Machine `{fingerprint}`:", ""]
        lines += [f"- {finding_line(f)}" for f in mine]
    lines += [
        "",
        "Shifts: Apache Otava's E-Divisive; drift: Mann-Kendall with Sen's slope over the "
        "last nights (docs/nightly.md). Each commit range is the last night before the "
        "change and its first night. Advisory: the gate is `bench ab`.",
        "",
        "## Machines",
        "",
    ]
    for fingerprint, machine in machines.items():
        its = [e for e in entries if e.fingerprint == fingerprint]
        nights = sorted({e.when for e in its}, key=datetime.fromisoformat)
        cells = len({e.cell for e in its})
        lines.append(
            f"- `{fingerprint}`: {machine.describe()}; {_plural(len(nights), 'night')} "
            f"({nights[0][:10]} to {nights[-1][:10]}), {_plural(cells, 'cell')}"
        )
    return "\n".join(lines) + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


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


def render_html(entries: Sequence[HistoryEntry], found: Sequence[Found]) -> str:
    machines = {e.fingerprint: e.machine for e in entries}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>sockbench history</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>sockbench history</h1>",
        f"<p>{len(entries)} {'entry' if len(entries) == 1 else 'entries'}, "
        f"{_plural(len(machines), 'machine')}. Each point is a night's median "
        "of the new side's usable repeats in <code>bench ab</code>; circles mark the nights "
        "that <code>bench ab</code> itself judged a regression (red) or an improvement "
        "(green). Shifts (E-Divisive) and drift (Mann-Kendall) are marked with the commit "
        "range where they began. Advisory: the gate is <code>bench ab</code>.</p>",
        "<h2>Findings</h2>",
    ]
    if found:
        out.append(
            "<ul>"
            + "".join(
                f'<li class="{"worse" if f.worse else "better"}">{escape(finding_line(f))}'
                + (f" (machine {f.fingerprint})" if len(machines) > 1 else "")
                + "</li>"
                for f in found
            )
            + "</ul>"
        )
    else:
        out.append("<p>None: no shift or drift in any series.</p>")
    for fingerprint, cells in keys(entries).items():
        out.append(f"<h2>Machine {fingerprint}: {escape(machines[fingerprint].describe())}</h2>")
        out += [cell_section(entries, found, fingerprint, cell) for cell in cells]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def cell_section(
    entries: Sequence[HistoryEntry], found: Sequence[Found], fingerprint: str, cell: str
) -> str:
    """One machine's cell: a chart per metric, then the table of its entries."""
    out = [f'<h3 id="{escape(fingerprint)}-{escape(cell)}">{escape(cell)}</h3>']
    out.append('<div class="charts">')
    for metric in SPECS:
        nights = series(entries, fingerprint, cell, metric)
        mine = [
            f for f in found if (f.fingerprint, f.cell, f.metric) == (fingerprint, cell, metric)
        ]
        out.append(f"<figure>{_image(chart_svg(cell, metric, nights, mine), metric)}</figure>")
    out.append("</div>")
    out.append(entry_table([e for e in entries if (e.fingerprint, e.cell) == (fingerprint, cell)]))
    return "\n".join(out)


def entry_table(entries: Sequence[HistoryEntry]) -> str:
    head = ["when", "base", "new", "run"] + [
        f"{name} ({SPECS[name].unit}), new/base" for name in SPECS
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
            if m.verdict and m.verdict != "no change":
                text += f" {m.verdict}"
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
    """One metric of one cell over the nights, as SVG."""
    import matplotlib  # only a report draws
    from matplotlib.figure import Figure

    spec = SPECS[metric]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        draw(ax, nights, found)
        ax.set_title(f"{spec.title}, {cell}", fontsize=9, loc="left")
        ax.set_ylabel(spec.unit)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()


def draw(ax: Axes, nights: Sequence[Night], found: Sequence[Found]) -> None:
    """The nights' medians, the gate's verdicts, then each finding with its commit range."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    if not nights:
        ax.text(0.5, 0.5, "no usable night", ha="center", va="center", transform=ax.transAxes)
        return
    x = range(len(nights))
    ax.plot(x, [n.value for n in nights], marker="o", markersize=3, color="#1f77b4", lw=1)
    for verdict, color in (("regression", WORSE), ("improvement", BETTER)):
        marked = [(i, n.value) for i, n in enumerate(nights) if n.verdict == verdict]
        if marked:
            xs, ys = zip(*marked, strict=True)
            label = f"bench ab: {verdict}"
            ax.scatter(xs, ys, s=60, facecolors="none", edgecolors=color, label=label)
    for f in found:
        color = WORSE if f.worse else BETTER
        start = f.finding.night - 0.5
        label = f"{f.finding.kind} {f.size()}\n{f.finding.commits}"
        if f.finding.kind == "shift":
            ax.axvline(start, color=color, ls="--", lw=1.2, label=label)
        else:
            ax.axvspan(start, len(nights) - 0.5, color=color, alpha=0.12, label=label)
    ticks = [int(t) for t in MaxNLocator(8, integer=True).tick_values(0, len(nights) - 1)]
    ticks = [t for t in ticks if 0 <= t < len(nights)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels([f"{nights[t].when[5:10]}\n{nights[t].new_sha[:7]}" for t in ticks])
    ax.set_xlim(-0.5, len(nights) - 0.5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6.5, loc="best")

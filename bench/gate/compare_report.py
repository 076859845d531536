"""`bench compare`'s outputs from a Comparison (bench.gate.compare_result): the headline,
compare.md (a table, regressions first, and the cells in one run only), and the chart
(compare.png and compare.svg, drawn by bench.report.charts.figures)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.analysis.stats import min_p_value
from bench.gate.compare_result import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    Comparison,
    MetricChange,
    pct,
)
from bench.gate.metrics import METRICS
from common.text import plural


def _p_text(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def headline(cmp: Comparison) -> str:
    """'N regressions, M improvements, K unchanged of T cells'."""
    text = (
        f"{plural(cmp.count(REGRESSION), 'regression')}, "
        f"{plural(cmp.count(IMPROVEMENT), 'improvement')}, "
        f"{cmp.count(NO_CHANGE)} unchanged of {plural(len(cmp.cells), 'cell')}"
    )
    if cmp.failed_in_new:
        text += f"; {plural(cmp.failed_in_new, 'cell')} failed in every new repeat"
    return text


def reach_note(cmp: Comparison) -> str | None:
    """Why this comparison cannot find any regression at all, or None where it can."""
    family = cmp.family
    if not family or cmp.can_find_regression:
        return None
    need = cmp.alpha / len(family)
    smallest = min(c.min_p for c in family)
    repeats = next(r for r in range(3, 100) if min_p_value(r, r) <= need)
    return (
        f"No regression can be found at this size: Holm's first step over "
        f"{plural(len(family), 'test')} needs p ≤ {need:.2g}, and these repeats give "
        f"p ≥ {smallest:.2g}. {repeats} repeats a side could reach it (docs/nightly.md)."
    )


def render_markdown(cmp: Comparison, chart: str | None = None) -> str:
    """The summary: headline, method line, table (regressions first), unmatched cells."""
    pct_text = f"{cmp.threshold * 100:g}%"
    out = [
        f"# sockbench compare: `{cmp.base.run_id}` → `{cmp.new.run_id}`",
        "",
        f"**{headline(cmp)}**"
        + (
            f" ({plural(len(cmp.unmatched), 'cell')} in one run only, listed below)"
            if cmp.unmatched
            else ""
        ),
        "",
        f"A regression is a change beyond ±{pct_text} (throughput down, p99 or worst wait up) "
        "that is also significant: two-sided Mann-Whitney U over the repeats (exact below "
        f"10 a side), Holm-corrected over the {plural(len(cmp.family), 'test')} of this "
        f"comparison (every metric of every cell with enough repeats), adjusted p ≤ {cmp.alpha:g}. "
        "base → new are medians over usable repeats (ok and client-bound); the change is the "
        "Hodges-Lehmann ratio new/base − 1 (the median ratio of every new repeat to every "
        "base repeat) with the interval that inverts the same test, at its exact coverage "
        "(a lower bound with tied values).",
        "",
    ]
    if (reach := reach_note(cmp)) is not None:
        out += [f"> **{reach}**", ""]
    if cmp.metadata_differences:
        out += [
            f"> **Warning:** compared with --force although the setups differ: "
            f"{_md('; '.join(cmp.metadata_differences))}",
            "",
        ]
    out += _cell_table(cmp)
    if cmp.unmatched:
        out += [
            "## Not compared",
            "",
            *_table_head(["cell", "where", "other run"]),
            *[f"| `{u.key}` | {u.where} | {_md(u.note)} |" for u in cmp.unmatched],
            "",
        ]
    if chart:
        out += [
            f"Chart: `{chart}.png` (and `.svg`) beside this file: the change of each "
            "metric with its interval, the ±threshold band shaded, regressions in red.",
            "",
        ]
    return "\n".join(out)


def _cell_table(cmp: Comparison) -> list[str]:
    """The compared cells' table, one row each, and the blank line after it."""
    coverages = {
        round(c.coverage, 3) for cell in cmp.cells for c in cell.changes if c.coverage == c.coverage
    }  # nan (no interval) is not a coverage
    shared = next(iter(coverages)) if len(coverages) == 1 else None
    interval = "interval, coverage" if shared is None else f"{shared:.1%} interval"
    header = ["verdict", "cell"]
    for spec in METRICS:
        header += [f"{spec.title} ({spec.unit}) base → new", f"change [{interval}]", "Holm p"]
    header += ["repeats", "notes"]
    out = _table_head(header, numeric_from=2, last_text=1)
    for cell in cmp.cells:
        entries = [
            f"**{cell.verdict}**" if cell.verdict != NO_CHANGE else cell.verdict,
            f"`{cell.key}`",
        ]
        for change in cell.changes:
            text = _change_text(change)
            if shared is None and not math.isnan(change.coverage):
                text += f" {change.coverage:.1%}"
            entries += [_medians(change), text, _p_text(change.p_holm)]
        first = cell.changes[0]
        entries += [f"{len(first.base)}/{len(first.new)}", _md("; ".join(cell.notes))]
        out.append("| " + " | ".join(entries) + " |")
    out.append("")
    return out


def _table_head(
    header: list[str], numeric_from: int | None = None, last_text: int = 0
) -> list[str]:
    rules = []
    for i in range(len(header)):
        numeric = numeric_from is not None and numeric_from <= i < len(header) - last_text
        rules.append(" ---: " if numeric else " --- ")
    return ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]


def _medians(change: MetricChange) -> str:
    if not change.base or not change.new:
        return "n/a"
    fmt = change.metric.fmt
    return (
        f"{format(statistics.median(change.base), fmt)} → "
        f"{format(statistics.median(change.new), fmt)}"
    )


def _change_text(change: MetricChange) -> str:
    if math.isnan(change.ratio):
        return "n/a"
    return f"{pct(change.ratio)} [{pct(change.ci_low)}, {pct(change.ci_high)}]"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def write_chart(cmp: Comparison, stem: Path) -> None:
    """compare.png and compare.svg: one forest-plot panel per metric."""
    from bench.report.charts.figures import save_comparison_chart  # matplotlib loads only here
    from bench.report.facts import caption

    records = [
        {
            "key": cell.key,
            "metric": change.metric.name,
            "ratio": change.ratio,
            "ci_low": change.ci_low,
            "ci_high": change.ci_high,
            "verdict": change.verdict,
        }
        for cell in cmp.cells
        for change in cell.changes
    ]
    panels = [(spec.name, f"Change in {spec.title}, new vs base") for spec in METRICS]
    title = f"Change vs baseline: {cmp.base.run_id} → {cmp.new.run_id}"
    save_comparison_chart(
        records,
        panels,
        threshold=cmp.threshold,
        title=title,
        caption_text=caption(cmp.new.metadata),
        stem=stem,
    )

"""ab.md and ab.json: what `bench ab` found, cell by cell."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.analysis.paired import (
    IMPROVEMENT,
    NO_CHANGE,
    REGRESSION,
    AffectedChange,
    PairedChange,
    smallest_p,
)
from bench.gate.ab_analysis import CONTINUOUS, FLAGS, SKIPPED, TESTS_PER_CELL, CellResult
from bench.store import write_text_atomic
from common.migrate import Migrations

SCHEMA = 1
AB_JSON = "ab.json"
AB_MD = "ab.md"
# ab.json's upgrades, {from_version: step} (common.migrate, docs/formats.md): none yet;
# its reader is bench.gate.history.entries_from_ab
MIGRATIONS = Migrations("schema", SCHEMA, {})
ORDER = (REGRESSION, IMPROVEMENT, NO_CHANGE, SKIPPED)


def counts(results: Sequence[CellResult]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in results) for v in ORDER}


def headline(results: Sequence[CellResult]) -> str:
    n = counts(results)
    return ", ".join(f"{n[v]} {v}" for v in ORDER) + f" in {len(results)} cells"


def render(results: Sequence[CellResult], meta: dict[str, Any]) -> str:
    base, new = meta["base"], meta["new"]
    m, alpha, pairs = meta["tests"], meta["alpha"], meta["pairs"]
    floor, level = smallest_p(pairs), 1 - alpha / max(m, 1)
    lines = [
        f"# bench ab: {_source(new)} against {_source(base)}",
        "",
        f"**{headline(results)}.** {pairs} pairs per cell, "
        + ("both sides of a pair at once" if meta.get("together") else "run A B B A back to back")
        + " on "
        f"server CPUs {meta['server_cpus']}, load generator CPUs {meta['client_cpus']}; "
        f"{meta['when']}. Command: `{meta['command']}`",
        "",
        f"One family of {m} tests ({TESTS_PER_CELL} per cell), Holm at alpha {alpha:g}. "
        "Continuous metrics: new / base, the Hodges-Lehmann estimate over the pairs' ratios "
        "and the interval of the ratios that the Wilcoxon signed-rank test (exact with ties "
        "and zeros) does not reject at alpha/m: it covers the true ratio with at least "
        f"{100 * level:.2f}% (an end in round brackets is not in it: the test rejects "
        "there); a regression needs Holm's rejection and the "
        f"whole interval beyond {100 * meta['threshold']:g}% in the bad direction. Counts: "
        "repeats affected, base → new, Fisher's exact test (one-sided).",
    ]
    if meta.get("expected_reasons"):
        lines += [
            "",
            "Both sides at once, every run is "
            + " and ".join(meta["expected_reasons"])
            + " by design: `suspect` counts the runs doubted for any other reason, and "
            "each side's throughput is its share of the CPUs, not a standalone figure.",
        ]
    if floor > alpha / max(m, 1):
        need = math.ceil(1 + math.log2(max(m, 1) / alpha))
        lines += [
            "",
            f"**Warning:** on {pairs} pairs the signed-rank test cannot give p below "
            f"{floor:.4f}, above alpha/m = {alpha / m:.5f}: no continuous metric can be "
            f"flagged. Use at least {need} pairs (docs/nightly.md).",
        ]
    heads = [spec.name for spec in CONTINUOUS] + [name for name, _ in FLAGS]
    lines += [
        "",
        "| cell | verdict | " + " | ".join(heads) + " |",
        "|---|---|" + "---|" * len(heads),
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.key} | skipped |" + " |" * len(heads))
            continue
        verdict = f"**{r.verdict}**" if r.verdict != NO_CHANGE else r.verdict
        lines.append(
            f"| {r.key} | {verdict} | "
            + " | ".join(_cell(c, alpha, level) for c in r.changes)
            + " |"
        )
    notes = [(r.key, n) for r in results for n in r.notes]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {key}: {note}" for key, note in notes]
    short = any(_short(c, level) for r in results for c in r.changes)
    lines += [
        "",
        "Marks: † significant after Holm; **bold**: the change's verdict where it is not "
        "`no change`"
        + (
            f"; (N%) after an interval: too few usable pairs for {100 * level:.2f}%, it is "
            "the range of their ratios, which covers the true ratio with probability N%"
            if short
            else ""
        )
        + ". Each side's rows are in `base/` and `new/` (`bench report` reads them).",
    ]
    return "\n".join(lines) + "\n"


def _cell(change: PairedChange | AffectedChange, alpha: float, level: float) -> str:
    mark = "†" if change.p_holm <= alpha else ""
    if isinstance(change, AffectedChange):
        c = change
        text = f"{c.base_affected}/{c.base_repeats} → {c.new_affected}/{c.new_repeats}{mark}"
    elif change.pairs == 0:
        text = "n/a"
    else:
        opening, closing = change.ends[0], change.ends[1]
        text = f"{change.ratio:.3f} {opening}{change.low:.3f}–{change.high:.3f}{closing}{mark}"
        if _short(change, level) and change.coverage is not None:
            text += f" ({100 * change.coverage:.2f}%)"
    return f"**{text} {change.verdict}**" if change.verdict != NO_CHANGE else text


def _short(change: PairedChange | AffectedChange, level: float) -> bool:
    """An interval that covers less than the level: too few pairs to reach it."""
    if not isinstance(change, PairedChange) or change.coverage is None:
        return False
    return change.coverage < level - 1e-12  # an exact test's interval covers >= level


def _source(source: dict[str, Any]) -> str:
    sha = source["sha"][:10] if source["sha"] else "no commit"
    return f"{source['side']} `{source['given']}` ({sha})"


def save(results: Sequence[CellResult], meta: dict[str, Any], folder: Path) -> Path:
    """ab.json (schema 1) and ab.md; the markdown's path."""
    data = {
        "schema": SCHEMA,
        "metadata": meta,
        "cells": [{**asdict(r), "verdict": r.verdict} for r in results],
    }
    text = json.dumps(_finite(data), indent=1, default=str, allow_nan=False)
    write_text_atomic(folder / AB_JSON, text + "\n")
    path = folder / AB_MD
    write_text_atomic(path, render(results, meta))
    return path


def _finite(value: Any) -> Any:
    """NaN (a metric not tested) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value

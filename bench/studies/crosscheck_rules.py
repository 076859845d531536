"""The crosscheck's rules, pure: the alternating runs at one connection count summed up
in one row (the bracketed ours/wrk ratios, medians per tool), and the verdict per row,
server-bound (the median ratio) or client-bound (every short run of ours said so).
No processes, no printing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

SATURATED = 95.0  # % busy: the server's core, not the load generator, set the pace


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio_text(value: float | None) -> str:
    """A ratio as the table and the verdicts print it: two decimals, `-` for none."""
    return "-" if value is None else f"{value:.2f}"


def bracketed_ratios(wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]]) -> list[float]:
    """ours[i] against the mean of wrk[i] and wrk[i + 1], the runs either side of it
    (a last run of ours without a wrk run after it, when interrupted, is left out)."""
    return [ratio for ratio, _run in bracketed(wrk, ours)]


def bracketed(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]]
) -> list[tuple[float, dict[str, Any]]]:
    """(ratio, our run) for each run of ours between two of wrk (bracketed_ratios)."""
    pairs = []
    for i, run in enumerate(ours[: len(wrk) - 1]):
        around = (wrk[i]["rps"] + wrk[i + 1]["rps"]) / 2
        if around > 0:
            pairs.append((run["rps"] / around, run))
    return pairs


def unflagged_short(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]], min_ratio: float
) -> int:
    """Runs of ours below min_ratio of wrk that neither called themselves client-bound
    nor had the server's core saturated (then the server set that run's pace)."""
    return sum(
        1
        for ratio, run in bracketed(wrk, ours)
        if ratio < min_ratio and not run.get("bound") and (run.get("server_cpu") or 0.0) < SATURATED
    )


def summarize(
    wrk: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]], min_ratio: float = 1.0
) -> dict[str, Any]:
    """One table row from the alternating runs at one connection count."""
    ratios = bracketed_ratios(wrk, ours)
    row = {
        "short": sum(1 for r in ratios if r < min_ratio),
        "unflagged": unflagged_short(wrk, ours, min_ratio),
        "ratio": _median(ratios),
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "rounds": len(ratios),
        # Interference only ever slows a run down, so each tool's best run is the
        # closest to an undisturbed one (timeit's reasoning): a second opinion.
        "best_ratio": (
            max(r["rps"] for r in ours) / max(r["rps"] for r in wrk)
            if ours and wrk and max(r["rps"] for r in wrk) > 0
            else None
        ),
    }
    row["ours_bound"] = sum(1 for run in ours if run.get("bound"))
    for runs, name in ((wrk, "wrk"), (ours, "ours")):
        for key in ("rps", "p50", "p99", "server_cpu", "client_cpu", "cpu"):
            row[f"{name}_{key}"] = _median([run.get(key) for run in runs])
        row[f"{name}_errors"] = sum(run["errors"] for run in runs)
    return row


def server_bound(row: dict[str, Any]) -> bool:
    """Whether the server's core was saturated under both tools (medians)."""
    return all(
        row[f"{name}_server_cpu"] is not None and row[f"{name}_server_cpu"] >= SATURATED
        for name in ("wrk", "ours")
    )


def below(rows: Sequence[tuple[int, dict[str, Any]]], min_ratio: float) -> list[int]:
    """The connection counts whose median ratio misses min_ratio (or has none)."""
    return [c for c, row in rows if row["ratio"] is None or row["ratio"] < min_ratio]


def verdicts(
    rows: Sequence[tuple[int, dict[str, Any]]], min_ratio: float
) -> list[tuple[int, str, bool, str]]:
    """(connections, rule, passed, why) per row. Server-bound: the median ratio reaches
    min_ratio. Client-bound (the server outruns one client core): every run of ours
    short of min_ratio flagged itself client-bound or had the server's core saturated
    (`unflagged` counts those that did neither)."""
    out = []
    for connections, row in rows:
        if server_bound(row):
            passed = row["ratio"] is not None and row["ratio"] >= min_ratio
            why = f"median ours/wrk {ratio_text(row['ratio'])} against {min_ratio}"
            out.append((connections, "server-bound", passed, why))
        else:
            short = row["short"]
            why = (
                f"{short} run(s) of ours below {min_ratio} of wrk, {row['unflagged']} of "
                f"them neither flagged client-bound nor with the server's core saturated"
            )
            out.append((connections, "client-bound", row["unflagged"] == 0, why))
    return out

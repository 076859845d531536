"""counted.md and counted.json: what `bench ab --counted` found, cell by cell; and the
reading of such a folder back (bench history appends its NEW side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.gate.counted import (
    METRICS,
    NOT_JUDGED,
    CountedCell,
    CountedChange,
    CountedResult,
    from_json,
    headline,
    to_json,
)
from bench.store import write_text_atomic

COUNTED_JSON = "counted.json"
COUNTED_MD = "counted.md"
SIDE_JSON = {"base": "cost-base.json", "new": "cost-new.json"}  # each side's cost.json


def save(result: CountedResult, folder: Path) -> Path:
    """counted.json and counted.md in `folder`; the path of counted.md."""
    write_text_atomic(folder / COUNTED_JSON, json.dumps(to_json(result), indent=1) + "\n")
    page = folder / COUNTED_MD
    write_text_atomic(page, render(result))
    return page


def load(folder: Path) -> CountedResult:
    """The folder's counted.json; ValueError with one line if it cannot be read."""
    path = Path(folder) / COUNTED_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return from_json(data)
    except FileNotFoundError:
        raise ValueError(f"{folder} is not a counted bench ab result: no {COUNTED_JSON}") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a counted result: missing or bad field {exc}") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _side(meta: dict[str, Any], side: str) -> str:
    source = meta.get(side) or {}
    sha = str(source.get("sha") or "")
    given = str(source.get("given") or "?")
    return f"`{given}` ({sha[:10]})" if sha and sha[:10] not in given else f"`{given}`"


def render(result: CountedResult) -> str:
    meta = dict(result.metadata)
    lo, hi = result.requests
    injected = {side: meta.get(f"{side}_inject_work") or 0 for side in ("base", "new")}
    lines = [
        f"# bench ab --counted: {_side(meta, 'new')} against {_side(meta, 'base')}",
        "",
        f"**{headline(result.cells)}.** {meta.get('when', '')}. Command: "
        f"`{meta.get('command', '')}`",
        "",
        "Counted, not timed: each side's servers ran under valgrind's cachegrind "
        "(instructions in user space) and strace (system calls), driven by the same "
        "requests one at a time on one connection; the cost of a request is the slope "
        f"between {lo:,} and {hi:,} requests, the smallest total of {result.tries} launches "
        "at each count (docs/cost.md). The same servers give the same counts however busy "
        "the machine is, so this gate has **no pairs and no p-values**: it compares two "
        "numbers per cell. The little that still differs between launches of the same "
        "servers is each side's **spread** (its launches' slopes' range over their mean); "
        f"a cell's threshold is max({100 * result.floor:g}%, {result.k:g} x the larger "
        "spread). A **regression** is more per request beyond it, an improvement less. "
        f"Build (the counts compare only under the same): `{result.build}`.",
        "",
        "Not seen: the kernel's work inside each system call, waits, and anything that "
        "depends on timing (gevent is refused for that: docs/cost.md).",
    ]
    if any(injected.values()):
        said = ", ".join(
            f"{side.upper()}'s servers with `--inject-work {n}`"
            for side, n in injected.items()
            if n
        )
        lines += [
            "",
            f"Injected: {said}, a known amount of work per request (a calibration of the "
            "gate, docs/nightly.md).",
        ]
    lines += ["", "| cell | verdict | " + " | ".join(METRICS.values()) + " |"]
    lines.append("|---|---|" + "---|" * len(METRICS))
    lines += [_row(cell) for cell in result.cells if cell.verdict != NOT_JUDGED]
    skipped = [cell for cell in result.cells if cell.verdict == NOT_JUDGED]
    if skipped:
        lines += ["", "Not judged:", ""]
        lines += [f"- {cell.key}: {cell.not_judged or 'no count'}" for cell in skipped]
    return "\n".join(lines) + "\n"


def _row(cell: CountedCell) -> str:
    by_metric = {c.metric: c for c in cell.changes}
    texts = [_change(by_metric[m]) if m in by_metric else "n/a" for m in METRICS]
    verdict = f"**{cell.verdict}**" if cell.verdict != "no change" else cell.verdict
    return f"| {cell.key} | {verdict} | " + " | ".join(texts) + " |"


def _change(c: CountedChange) -> str:
    fmt = ",.0f" if c.base >= 100 else ",.3f"
    mark = "" if c.verdict == "no change" else f" **{c.verdict}**"
    return (
        f"{c.base:{fmt}} → {c.new:{fmt}} ({c.change:+.2%}; threshold ±{c.threshold:.2%}, "
        f"spread {c.spread_base:.4%} / {c.spread_new:.4%}){mark}"
    )

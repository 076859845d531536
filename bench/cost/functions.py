"""`bench cost --functions`: where each request's instructions go, by C function.

Each model runs under callgrind at the two request counts; a function's own (exclusive)
instructions at the high count minus those at the low, over the requests between,
is its cost per request. Functions are named as the binary's symbols name them
(the interpreter's, libc's, an extension module's), each with its shared object, beside
`bench explain`'s perf view of the same layers in time.
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.cost import tools
from bench.cost.measure import CostError, Setup, refusal, run_counted
from bench.cost.pattern import Pattern

TOP = 15  # functions listed per model and pattern
_NAME = re.compile(r"\((\d+)\)(?:\s+(.*))?")
_RECURSION = re.compile(r"'\d+$")
# callgrind's name compression: a "(id) name" defines, a "(id)" refers; files share a table
_TABLES = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}
_FILES = ("fl", "fi", "fe", "cfi", "cfl")


def callgrind(folder: Path) -> list[str]:
    return [
        tools.VALGRIND,
        "--tool=callgrind",
        f"--max-threads={tools.MAX_THREADS}",
        f"--callgrind-out-file={folder}/callgrind.%p",
    ]


def self_costs(folder: Path) -> dict[tuple[str, str], int]:
    """{(shared object, function): its own instructions}, every process in `folder`."""
    costs: dict[tuple[str, str], int] = defaultdict(int)
    for path in sorted(folder.glob("callgrind.*")):
        names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
        ob = fn = "???"
        skip = False  # the line after calls= is the callee's inclusive cost, not ours
        for line in path.read_text(errors="replace").splitlines():
            key, eq, value = line.partition("=")
            if eq and key in _TABLES:
                name = _resolve(names[_TABLES[key]], value)
                if key == "ob":
                    ob = name
                elif key == "fn":
                    fn = _RECURSION.sub("", name)  # f'2: f called from itself, still f
            elif eq and key in _FILES:
                continue
            elif line.startswith("calls="):
                skip = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip:
                    skip = False
                    continue
                fields = line.split()
                if len(fields) >= 2 and fields[-1].isdigit():
                    costs[(ob, fn)] += int(fields[-1])
    return dict(costs)


def _resolve(table: dict[str, str], value: str) -> str:
    found = _NAME.match(value)
    if found is None:
        return value.strip()
    ident, name = found.groups()
    if name:
        table[ident] = name
    return table.get(ident, f"({ident})")


def per_request(model: str, pattern: Pattern, setup: Setup) -> dict[tuple[str, str], float]:
    """Each function's own instructions per request under `pattern`."""
    lo, hi = setup.requests
    totals = []
    for requests in (lo, hi):
        with tempfile.TemporaryDirectory(prefix="sockbench-callgrind-") as tmp:
            folder = Path(tmp)
            run_counted(model, pattern, requests, callgrind(folder), setup)
            totals.append(self_costs(folder))
    keys = set(totals[0]) | set(totals[1])
    return {key: (totals[1].get(key, 0) - totals[0].get(key, 0)) / (hi - lo) for key in keys}


def functions_page(
    models: Sequence[str],
    patterns: Sequence[Pattern],
    setup: Setup,
    jobs: int,
    progress: Callable[[str], None],
) -> str:
    """functions.md: the top functions per request for each model, per pattern without
    idle connections, and each shared object's share."""
    lines = [
        "# Where each request's instructions go, by C function",
        "",
        f"Callgrind, a function's own instructions at {setup.requests[1]:,} requests minus "
        f"those at {setup.requests[0]:,}, per request (docs/cost.md). `bench explain` shows "
        "the same layers in time, sampled by perf.",
    ]
    jobs_list = [(m, p) for p in patterns if not p.idle for m in models if not refusal(m, p)]
    with ThreadPoolExecutor(jobs) as pool:
        futures = {job: pool.submit(per_request, job[0], job[1], setup) for job in jobs_list}
        for (model, pattern), future in futures.items():
            progress(f"  callgrind: {model} {pattern.key}")
            lines += ["", f"## {model}: {pattern.words()}", ""]
            try:
                lines += _table(future.result())
            except CostError as exc:
                lines.append(f"Failed: {exc}")
    return "\n".join(lines) + "\n"


def _table(costs: dict[tuple[str, str], float]) -> list[str]:
    total = sum(costs.values())
    by_object: dict[str, float] = defaultdict(float)
    for (ob, _), value in costs.items():
        by_object[Path(ob).name] += value
    shares = ", ".join(
        f"{name} {value / total:.0%}"
        for name, value in sorted(by_object.items(), key=lambda item: -item[1])
        if value / total >= 0.01
    )
    rows = [
        f"{total:,.0f} instructions per request: {shares}.",
        "",
        "| function | object | instructions / request | share |",
        "|---|---|---:|---:|",
    ]
    for (ob, fn), value in sorted(costs.items(), key=lambda item: -item[1])[:TOP]:
        rows.append(f"| `{fn}` | {Path(ob).name} | {value:,.1f} | {value / total:.1%} |")
    return rows

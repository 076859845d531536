"""The run and its machine as text: the report's facts and every chart's caption."""

from __future__ import annotations

import shlex
from typing import Any

from bench.record import USABLE, Row
from bench.settings import allocator_text


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if value is None:
        return "n/a"
    return str(value)


def cpu_plan_text(plan: Any) -> str:
    """'server CPU 0, load generator CPUs 1-3' for bench.run.cpus plans, generic otherwise."""
    if not isinstance(plan, dict) or not {"server", "client"} <= plan.keys():
        return _plain(plan)
    text = f"server CPUs {_plain(plan['server'])}, load generator CPUs {_plain(plan['client'])}"
    if plan.get("shared"):
        text += " (shared: figures are pessimistic)"
    if plan.get("note"):
        text += f"; {plan['note']}"
    return text


def machine_line(meta: dict[str, Any]) -> str:
    host, py = meta.get("host", {}), meta.get("python", {})
    cores = host.get("cpu_count")
    avail = host.get("cpus_available")
    cores_text = f"{cores} cores" + (f" ({avail} available)" if avail not in (None, cores) else "")
    pythons = (meta.get("matrix") or {}).get("pythons")
    python_text = (
        f"servers under Python {', '.join(pythons)} (the harness: "
        f"{py.get('implementation', 'Python')} {py.get('version', '?')})"
        if pythons
        else f"{py.get('implementation', 'Python')} {py.get('version', '?')}"
    )
    return (
        f"{host.get('cpu_model') or 'unknown CPU'}, {cores_text}, "
        f"{host.get('system', 'Linux')} {host.get('kernel', '?')}, {python_text}"
    )


def run_facts(meta: dict[str, Any], rows: list[Row]) -> list[tuple[str, str]]:
    git = meta.get("git") or {}
    sha = git.get("sha")
    git_text = (
        "not a git checkout"
        if not sha
        else sha[:12] + (" (dirty working tree)" if git.get("dirty") else "")
    )
    dates = str(meta.get("started_at", "?"))
    if meta.get("finished_at"):
        dates += f" → {meta['finished_at']}"
    elif rows:
        dates += f" → last cell started {max(r.started_at for r in rows)}"
    if meta.get("interrupted"):
        dates += " (interrupted: partial run)"
    counts = {
        s: sum(r.status == s for r in rows) for s in ("ok", "client-bound", "failed", "skipped")
    }
    counts["suspect"] = sum(r.verdict == "suspect" and r.status in USABLE for r in rows)
    limits = meta.get("limits") or {}
    matrix = meta.get("matrix") or {}
    command = meta.get("command_line")
    extra = [("Interpreters", text)] if (text := interpreters_text(rows)) else []
    return [
        ("Run", str(meta.get("run_id", "?"))),
        ("Machine", machine_line(meta)),
        ("CPU plan", cpu_plan_text(meta.get("cpu_plan"))),
        ("Date (UTC)", dates),
        ("Git", git_text),
        ("Command", _command_text(command)),
        ("Profile", _plain(meta.get("profile"))),
        ("Allocator", allocator_text(str(matrix.get("allocator", "cold")))),
        (
            "Rows",
            f"{len(rows)} (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")",
        ),
        (
            "Limits",
            f"somaxconn {_plain(limits.get('somaxconn'))}, RLIMIT_NOFILE "
            f"{_plain(limits.get('nofile_soft'))}/{_plain(limits.get('nofile_hard'))}",
        ),
        (
            "Packages",
            ", ".join(f"{k} {v}" for k, v in sorted((meta.get("packages") or {}).items())) or "n/a",
        ),
        *extra,
    ]


def interpreters_text(rows: list[Row]) -> str:
    """With --pythons: each interpreter's version and GIL state as its servers read it
    when ready (a free-threaded build can have the GIL turned back on by an import)."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        facts = row.server.get("python") or {}
        if row.cell.python and facts:
            if facts.get("free_threaded"):
                gil = "GIL on" if facts.get("gil_enabled") else "GIL off"
                state = f"free-threaded, {row.cell.model}: {gil}"
            else:
                state = "with the GIL"
            seen.setdefault(f"{row.cell.python} ({facts.get('version')})", set()).add(state)
    return "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(seen.items()))


def _command_text(command: Any) -> str:
    if not isinstance(command, list) or not command:
        return _plain(command)
    # The first item may be a whole launcher ("python -m bench"): shown as is, unquoted.
    return " ".join([str(command[0]), *(shlex.quote(str(a)) for a in command[1:])])


def caption(meta: dict[str, Any]) -> str:
    """Two lines under every chart: the machine, then plan, date and run."""
    date = str(meta.get("started_at", ""))[:10] or "undated"
    sha = ((meta.get("git") or {}).get("sha") or "")[:8]
    return (
        f"{machine_line(meta)}\nCPU plan: {cpu_plan_text(meta.get('cpu_plan'))} · {date} · "
        f"run {meta.get('run_id', '?')}" + (f" @ {sha}" if sha else "")
    )

"""The import graph the layout promises: read from the source, no module imported.

common imports no other package of ours; clients and servers import nothing from each
other; bench may use them all; no cycle between modules; no module takes another's
private name. Imports inside functions (lazy ones) and under TYPE_CHECKING count too.

Between the wings, RULES below is the table: which modules a rule governs, which it
exempts, what they may not use (or the only modules of ours they may use), and a made-up
violation that shows the rule can fail. What a module "uses" is read with ast: every
module it imports, ours or not (`os.path`, `pandas`, `bench.run.matrix`), and the calls
that do I/O by themselves (`open()`, `print()`, `input()`, and the methods
`.open()`, `.read_text()`, `.write_text()`, `.read_bytes()`, `.write_bytes()`). That is
what "bench.analysis does no I/O" means checkably: none of those calls, and no import of
a module whose job is files, processes, sockets, threads or clocks (NO_IO). Only direct
uses count: analysis calling a function of ours that does I/O is for review to catch.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "servers", "clients", "bench")
ALLOWED = {  # package -> the packages of ours it may import
    "common": {"common"},
    "servers": {"servers", "common"},
    "clients": {"clients", "common"},
    "bench": {"bench", "servers", "clients", "common"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, str | None]]:
    """(module of ours, imported name or None) for every import in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:  # `from bench import plots`: a module, not a name
                    yield submodule, None
                else:
                    yield node.module, alias.name


IO_CALLS = {"open", "print", "input"}  # builtins called by name
IO_METHODS = {"open", "read_text", "write_text", "read_bytes", "write_bytes"}  # Path's


def uses(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module the file imports (ours as `imports` names them, others by their full
    dotted name) and every I/O call it makes, as `open()` or `.read_text()`."""
    found = {target for target, _ in imports(path, known)}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                found.add(node.module)
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in IO_CALLS:
                found.add(f"{node.func.id}()")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in IO_METHODS:
                found.add(f".{node.func.attr}()")
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target, _ in imports(path, known) if target != name}
        for name, path in known.items()
    }


def test_packages_import_only_what_the_layout_allows() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    ]
    assert not wrong


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles


def test_no_module_imports_another_modules_private_name() -> None:
    known = modules()
    private = [
        f"{name} imports {target}.{imported}"
        for name, path in known.items()
        for target, imported in imports(path, known)
        if imported and imported.startswith("_") and target != name
    ]
    assert not private


def test_the_checks_see_a_cycle_and_a_forbidden_edge(tmp_path: Path) -> None:
    """The graph reader on a made-up module: what it must catch, it does."""
    module = tmp_path / "m.py"
    module.write_text(
        "import servers.conn\nfrom clients import hist\n"
        "def f():\n    from servers.protocol import _GET_RESPONSE\n"
    )
    known = {"servers.conn": module, "clients.hist": module, "servers.protocol": module}
    assert set(imports(module, known)) == {
        ("servers.conn", None),
        ("clients.hist", None),
        ("servers.protocol", "_GET_RESPONSE"),
    }


def test_no_relative_import() -> None:
    """The readers above skip relative imports: there must be none, or they would hide."""
    relative = [
        f"{name}: from {'.' * node.level}{node.module or ''} import ..."
        for name, path in modules().items()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative


# The rules between wings. A pattern names a module and everything below it ("bench.run"
# is bench.run and bench.run.matrix); "*" is every module of the four packages; a call
# pattern ("open()", ".read_text()") names itself.
NO_IO = (
    "pandas", "matplotlib", "psutil",  # frames and figures are the report's
    "os", "sys", "io", "pathlib", "shutil", "tempfile", "glob",  # files, the environment
    "subprocess", "multiprocessing", "signal", "threading", "asyncio",  # processes
    "socket", "select", "selectors", "ssl", "http", "urllib",  # the network
    "time", "datetime",  # clocks
    *(f"{call}()" for call in sorted(IO_CALLS)),
    *(f".{method}()" for method in sorted(IO_METHODS)),
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    name: str
    words: str
    sources: tuple[str, ...]  # the modules it governs
    made_up: tuple[str, str]  # a use it must refuse: (source, target)
    forbidden: tuple[str, ...] = ()  # what they may not use
    allowed: tuple[str, ...] | None = None  # else: the only modules of ours they may use
    exempt: tuple[str, ...] = ()  # modules among `sources` it does not govern


RULES = (
    Rule(
        "commands-only-from-cli",
        "nothing but bench.cli imports bench.commands (a command may import a sibling)",
        sources=("*",),
        exempt=("bench.cli", "bench.commands"),
        forbidden=("bench.commands",),
        made_up=("bench.run.session", "bench.commands.report"),
    ),
    Rule(
        "analysis-imports-records-only",
        "bench.analysis imports of ours only itself, common, bench.record, clients.result",
        sources=("bench.analysis",),
        allowed=("bench.analysis", "common", "bench.record", "clients.result"),
        made_up=("bench.analysis.stats", "bench.store"),
    ),
    Rule(
        "analysis-no-io",
        "bench.analysis does no I/O: no pandas, matplotlib, files, processes, network, clocks",
        sources=("bench.analysis",),
        forbidden=NO_IO,
        made_up=("bench.analysis.curves", ".read_text()"),
    ),
    Rule(
        "report-not-run",
        "bench.report does not import bench.run, bench.commands or bench.gate",
        sources=("bench.report",),
        forbidden=("bench.run", "bench.commands", "bench.gate"),
        made_up=("bench.report.build", "bench.run.matrix"),
    ),
    Rule(
        "run-not-report",
        "bench.run does not import bench.report, bench.gate or bench.commands",
        sources=("bench.run",),
        forbidden=("bench.report", "bench.gate", "bench.commands"),
        made_up=("bench.run.session", "bench.report.build"),
    ),
    Rule(
        "explain-not-report",
        "bench.explain does not import bench.report, bench.gate or bench.commands",
        sources=("bench.explain",),
        forbidden=("bench.report", "bench.gate", "bench.commands"),
        made_up=("bench.explain.report", "bench.report.document"),
    ),
    Rule(
        "cost-not-report",
        "bench.cost does not import bench.report, bench.gate or bench.commands",
        sources=("bench.cost",),
        forbidden=("bench.report", "bench.gate", "bench.commands"),
        made_up=("bench.cost.page", "bench.report.document"),
    ),
    Rule(
        "nothing-imports-studies",
        "nothing outside bench.studies imports it: a study is run, never used",
        sources=("*",),
        exempt=("bench.studies",),
        forbidden=("bench.studies",),
        made_up=("bench.gate.ab", "bench.studies.ab_power"),
    ),
    Rule(
        "engine-not-locust",
        "clients.engine does not import clients.locust (gevent patches socket and select)",
        sources=("clients.engine",),
        forbidden=("clients.locust",),
        made_up=("clients.engine.worker", "clients.locust.result"),
    ),
    Rule(
        "locust-not-engine",
        "clients.locust does not import clients.engine",
        sources=("clients.locust",),
        forbidden=("clients.engine",),
        made_up=("clients.locust.driver", "clients.engine.hist"),
    ),
    Rule(
        "pandas-in-report-only",
        "only bench.report imports pandas",
        sources=("*",),
        exempt=("bench.report",),
        forbidden=("pandas",),
        made_up=("bench.gate.compare", "pandas"),
    ),
    Rule(
        "matplotlib-in-charts-only",
        "only bench.report.charts imports matplotlib",
        sources=("*",),
        exempt=("bench.report.charts",),
        forbidden=("matplotlib",),
        made_up=("bench.report.build", "matplotlib.pyplot"),
    ),
)


def under(name: str, pattern: str) -> bool:
    return pattern == "*" or name == pattern or name.startswith(pattern + ".")


def violations(rule: Rule, used: Mapping[str, set[str]]) -> list[str]:
    """`source uses target` for every use the rule refuses, in `used` (module -> uses)."""
    wrong = []
    for source, targets in sorted(used.items()):
        if not any(under(source, p) for p in rule.sources):
            continue
        if any(under(source, p) for p in rule.exempt):
            continue
        for target in sorted(targets):
            refused = any(under(target, p) for p in rule.forbidden)
            ours = target.split(".")[0] in PACKAGES
            if rule.allowed is not None and ours:
                refused |= not any(under(target, p) for p in rule.allowed)
            if refused:
                wrong.append(f"{source} uses {target}")
    return wrong


def used_by_module() -> dict[str, set[str]]:
    known = modules()
    return {name: uses(path, known) - {name} for name, path in known.items()}


@pytest.fixture(scope="module")
def used() -> dict[str, set[str]]:
    return used_by_module()


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_wing_rule(rule: Rule, used: dict[str, set[str]]) -> None:
    assert not violations(rule, used), rule.words


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_wing_rule_refuses_its_made_up_violation(rule: Rule) -> None:
    """A rule that can never fail is worthless: each refuses the use in its made_up."""
    source, target = rule.made_up
    assert violations(rule, {source: {target}}) == [f"{source} uses {target}"]
    for exempt in rule.exempt:  # and an exempt module may do what the others may not
        assert not violations(rule, {f"{exempt}.madeup": {target}})


def test_the_reader_sees_other_packages_lazy_imports_and_io_calls(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nimport numpy.typing as npt\nfrom matplotlib import pyplot\n"
        "from bench.run.matrix import MatrixError\n"
        "def f(p):\n    import pandas as pd\n    print(open(p).read(), p.read_text())\n"
        "    p.write_bytes(b'')\n    return sorted(p)\n"
    )
    assert uses(module, {}) == {
        "os.path",
        "numpy.typing",
        "matplotlib",
        "bench.run.matrix",
        "pandas",
        "print()",
        "open()",
        ".read_text()",
        ".write_bytes()",
    }
    # and the table's patterns read those names: os.path is os, pyplot is matplotlib
    no_io = next(rule for rule in RULES if rule.name == "analysis-no-io")
    assert len(violations(no_io, {"bench.analysis.m": uses(module, {})})) == 7

"""The import graph the layout promises: read from the source, no module imported.

common imports no other package of ours; clients and servers import nothing from each
other; bench may use them all; no cycle between modules; no module takes another's
private name. Imports inside functions (lazy ones) count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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

"""Module and function size, as a ratchet (issue 24, item 3).

A module of common, servers, clients or bench over MODULE_LINES lines, or a function
(or method, nested ones too) over FUNCTION_LINES lines, must be in the tables below with
the reason it stays long; "TODO split" marks one that has no such reason yet and waits
for its split. The test fails on a new long one (split it, or list it with its reason)
and on a listed one that is no longer long (take it out, so the table stays true).

A module's size is its count of lines; a function's is `end_lineno - lineno + 1` from
ast (its decorators not counted, its docstring counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "servers", "clients", "bench")
MODULE_LINES = 500
FUNCTION_LINES = 80
TODO = "TODO split"

LONG_MODULES = {  # path -> why it stays long
    "clients/locust/locustfile.py": "locust loads it by file path, so it may import no "
    "clients module: the users, their options and locust's bookkeeping live in this file",
}

LONG_FUNCTIONS = {  # (path, qualified name) -> why it stays long
    ("clients/engine/loops.py", "Loops._run_closed"): "the closed loop's hot path, "
    "inlined on purpose: a call per reply would cost client CPU per request",
    ("bench/run/matrix.py", "Matrix.__post_init__"): "one flat table of every check of "
    "a matrix, (condition, message) per line, read top to bottom",
}


def function_sizes(tree: ast.Module) -> dict[str, int]:
    """Qualified name (`Class.method`, `outer.inner`) -> lines, for every function."""
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    sizes[name] = child.end_lineno - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return sizes


def long_ones() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    modules: dict[str, int] = {}
    functions: dict[tuple[str, str], int] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            if (lines := len(text.splitlines())) > MODULE_LINES:
                modules[name] = lines
            for function, size in function_sizes(ast.parse(text, name)).items():
                if size > FUNCTION_LINES:
                    functions[(name, function)] = size
    return modules, functions


def problems(
    modules: dict[str, int],
    functions: dict[tuple[str, str], int],
    listed_modules: dict[str, str],
    listed_functions: dict[tuple[str, str], str],
) -> list[str]:
    """What the long ones found and the tables disagree on, one line each."""
    return [
        *(
            f"{path}: {lines} lines (over {MODULE_LINES}): split it, or list it in "
            "LONG_MODULES with the reason it must stay long"
            for path, lines in modules.items()
            if path not in listed_modules
        ),
        *(
            f"{path}: {name} is {lines} lines (over {FUNCTION_LINES}): split it, or list "
            "it in LONG_FUNCTIONS with the reason it must stay long"
            for (path, name), lines in functions.items()
            if (path, name) not in listed_functions
        ),
        *(
            f"{path} is no longer over {MODULE_LINES} lines: take it out of LONG_MODULES"
            for path in listed_modules
            if path not in modules
        ),
        *(
            f"{path}: {name} is no longer over {FUNCTION_LINES} lines (or is gone): take "
            "it out of LONG_FUNCTIONS"
            for path, name in listed_functions
            if (path, name) not in functions
        ),
    ]


def test_no_new_long_module_or_function_and_the_tables_are_true() -> None:
    found = problems(*long_ones(), LONG_MODULES, LONG_FUNCTIONS)
    assert not found, "\n".join(found)


def test_the_ratchet_refuses_a_new_long_one_and_a_listed_one_that_shrank() -> None:
    listed = {("a.py", "f"): "why"}
    assert problems({}, {("a.py", "f"): 81}, {}, listed) == []
    assert len(problems({}, {("a.py", "f"): 81, ("b.py", "g"): 90}, {}, listed)) == 1
    assert len(problems({}, {}, {}, listed)) == 1  # f shrank: the table must follow
    assert len(problems({"m.py": 501}, {}, {}, {})) == 1
    assert len(problems({}, {}, {"m.py": "why"}, {})) == 1


def test_every_listed_one_says_why() -> None:
    reasons = [*LONG_MODULES.values(), *LONG_FUNCTIONS.values()]
    assert all(reason.strip() for reason in reasons)


def test_the_reader_counts_methods_nested_functions_and_decorated_ones() -> None:
    tree = ast.parse(
        "class A:\n"
        "    @staticmethod\n"
        "    def m():\n"
        "        def inner():\n"
        "            pass\n"
        "        return inner\n"
        "async def f():\n"
        "    pass\n"
    )
    assert function_sizes(tree) == {"A.m": 4, "A.m.inner": 2, "f": 2}

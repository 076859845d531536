"""Every command line helps a newcomer: each option has help text, the help shows each
meaningful default, every parser is common.cli's (one-line usage errors, exit 2), and a
mistyped choice or subcommand gets the nearest valid one."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

import pytest

from common.cli import (
    ArgumentParser,
    DefaultsHelpFormatter,
    default_text,
    meaningful_default,
    suggest,
)

ROOT = Path(__file__).resolve().parent.parent

# Every command line of the project: the file that makes the parser -> "module:function"
# returning it. A new `ArgumentParser(` anywhere in the sources needs an entry here
# (test_every_parser_in_the_sources_is_registered).
PARSERS = {
    "bench/cli.py": "bench.cli:build_parser",
    "bench/studies/crosscheck.py": "bench.studies.crosscheck:build_parser",
    "bench/studies/scaling.py": "bench.studies.scaling:build_parser",
    "bench/studies/ab_power.py": "bench.studies.ab_power:build_parser",
    "bench/studies/compare_power.py": "bench.studies.compare_power:build_parser",
    "bench/studies/cost_aa.py": "bench.studies.cost_aa:build_parser",
    "bench/studies/history_sim.py": "bench.studies.history_sim:build_parser",
    "bench/studies/loadgen_ab.py": "bench.studies.loadgen_ab:build_parser",
    "clients/holder.py": "clients.holder:build_parser",
    "clients/loadgen.py": "clients.loadgen:build_parser",
    "clients/locust/driver.py": "clients.locust.driver:build_parser",
    "servers/__main__.py": "servers.__main__:build_parser",
}
# Subcommands defined in their own module (`def add_parser(sub)`), walked through the
# parser that mounts them: every `python -m bench` command has its home in bench/commands/.
SUBCOMMANDS = {
    "bench/commands/ab.py": ("bench/cli.py", "ab"),
    "bench/commands/compare.py": ("bench/cli.py", "compare"),
    "bench/commands/cost.py": ("bench/cli.py", "cost"),
    "bench/commands/explain.py": ("bench/cli.py", "explain"),
    "bench/commands/history.py": ("bench/cli.py", "history"),
    "bench/commands/hosts.py": ("bench/cli.py", "hosts"),
    "bench/commands/listing.py": ("bench/cli.py", "list"),
    "bench/commands/report.py": ("bench/cli.py", "report"),
    "bench/commands/run.py": ("bench/cli.py", "run"),
}
NOT_SOURCES = {"tests", "results", "build", "docs"}


def build(file: str) -> ArgumentParser:
    module, _, function = PARSERS[file].partition(":")
    factory: Callable[[], ArgumentParser] = getattr(importlib.import_module(module), function)
    return factory()


def sources() -> Iterator[Path]:
    """The project's Python files, not its tests, virtual environments or results."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in NOT_SOURCES or any(p.startswith(".") or ".egg" in p for p in parts):
            continue
        yield path


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and all its subcommands' parsers, each once."""
    seen: set[int] = set()
    todo = [parser]
    while todo:
        each = todo.pop(0)
        if id(each) in seen:
            continue
        seen.add(id(each))
        yield each
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    return (action for action in parser._actions if action.option_strings)


def name(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return f"{parser.prog} {'/'.join(action.option_strings)}"


def squash(text: str) -> str:
    """Text without any whitespace: the same however the help was wrapped."""
    return re.sub(r"\s+", "", text)


def entry(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's entry as the parser's help renders it."""
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return formatter.format_help()


def renderings(default: object) -> set[str] | None:
    """How hand-written help may spell a default (5.0: 5, 5.0; 50000.0: 50,000), or None
    for a value with no obvious spelling (then only the word "default" is checked)."""
    if isinstance(default, list | tuple):
        if all(isinstance(each, str | int | float) for each in default):
            return {default_text(default), ", ".join(map(default_text, default))}
        return None
    if isinstance(default, bool) or not isinstance(default, str | int | float | PurePath):
        return None
    spelled = {default_text(default), str(default)}
    if isinstance(default, int | float):
        spelled |= {f"{default:g}", f"{default:,}", f"{default:,.0f}"}
    return spelled


def help_problems(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """What is wrong with one option's help, if anything."""
    text = action.help
    if not isinstance(text, str) or text == argparse.SUPPRESS or not text.strip():
        return [f"{name(parser, action)}: no help text"]
    if not re.sub(r"\(?\bdefault\b[^)]*\)?", "", text, flags=re.I).strip(" ;,."):
        return [f"{name(parser, action)}: help gives only the default: {text!r}"]
    if not meaningful_default(action):
        return []
    rendered = entry(parser, action)
    if "default" not in rendered.lower():
        return [f"{name(parser, action)}: help does not show the default {action.default!r}"]
    if squash(rendered) not in squash(parser.format_help()):
        return [f"{name(parser, action)}: entry missing from format_help(): {rendered!r}"]
    spelled = renderings(action.default)
    if spelled is not None and not any(squash(s) in squash(rendered) for s in spelled):
        return [f"{name(parser, action)}: help names a default, not {default_text(action.default)}"]
    return []


# -- every parser ------------------------------------------------------------------------


def test_every_parser_in_the_sources_is_registered() -> None:
    made = re.compile(r"^(?!\s*class\b).*\bArgumentParser\(", re.M)
    mounted = re.compile(r"^def add_parser\(", re.M)
    found, subcommands = set(), set()
    for path in sources():
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(ROOT).as_posix()
        if made.search(text):
            found.add(relative)
        if mounted.search(text):
            subcommands.add(relative)
        if relative != "common/cli.py":
            assert "argparse.ArgumentParser(" not in text, (
                f"{relative}: use common.cli.ArgumentParser (one-line usage errors, exit 2, "
                "defaults in the help)"
            )
    assert found == set(PARSERS), "add the new parser to PARSERS (or drop the stale entry)"
    assert subcommands == set(SUBCOMMANDS), "add the subcommand's module to SUBCOMMANDS"


@pytest.mark.parametrize("file", sorted(SUBCOMMANDS))
def test_every_subcommand_module_is_mounted(file: str) -> None:
    parent, command = SUBCOMMANDS[file]
    assert command in {p.prog.rsplit(" ", 1)[-1] for p in walk(build(parent))}


@pytest.mark.parametrize("file", sorted(SUBCOMMANDS))
def test_each_subcommands_help_comes_from_its_own_module(file: str) -> None:
    """The module's add_parser alone, mounted on a bare parser, makes the same parser
    (the same --help) as the one its parent mounts: nothing is added from outside."""
    parent, command = SUBCOMMANDS[file]
    top = build(parent)
    mounted = {p.prog.rsplit(" ", 1)[-1]: p for p in walk(top)}[command]
    bare = ArgumentParser(prog=top.prog)
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    module.add_parser(bare.add_subparsers(dest="command"))
    [alone] = [p for p in walk(bare) if p is not bare]
    assert alone.prog == mounted.prog
    assert alone.format_help() == mounted.format_help()


@pytest.mark.parametrize("file", sorted(PARSERS))
def test_every_parser_is_common_clis(file: str) -> None:
    for parser in walk(build(file)):
        assert isinstance(parser, ArgumentParser), parser.prog
        assert isinstance(parser._get_formatter(), DefaultsHelpFormatter), parser.prog


@pytest.mark.parametrize("file", sorted(PARSERS))
def test_every_option_has_help_with_its_default(file: str) -> None:
    problems = [
        problem
        for parser in walk(build(file))
        for action in options(parser)
        for problem in help_problems(parser, action)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"default": 3}, "no help text"),
        ({"default": 3, "help": " "}, "no help text"),
        ({"default": 0.05, "help": "(default 0.05)"}, "only the default"),
        ({"default": 4, "help": "repeats (default 3)"}, "not 4"),
        ({"default": [8, 10], "nargs": "+", "help": "pairs (default 8 12)"}, "not 8 10"),
    ],
)
def test_the_walk_finds_what_a_newcomer_would_miss(kwargs: dict[str, Any], problem: str) -> None:
    parser = ArgumentParser(prog="x")
    action = parser.add_argument("--opt", **kwargs)
    assert problem in " ".join(help_problems(parser, action))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default": 3, "help": "repeats"},
        {"default": 3, "help": "repeats (default 3)"},
        {"default": 50_000.0, "help": "rate (default 50,000)"},
        {"default": 1.0, "help": "ratio (default 1.0)"},
        {"default": [8, 10], "nargs": "+", "help": "pairs (default 8 10)"},
        {"default": None, "help": "folder (default: a timestamp)"},
        {"action": "store_true", "help": "quiet"},
    ],
)
def test_the_walk_passes_good_help(kwargs: dict[str, Any]) -> None:
    parser = ArgumentParser(prog="x")
    action = parser.add_argument("--opt", **kwargs)
    assert help_problems(parser, action) == []


def test_locustfile_options_have_help() -> None:
    """clients/locust/locustfile.py adds options to locust's own parser: importing it would let
    gevent patch this process, so its add_argument calls are read, not run."""
    import ast

    tree = ast.parse((ROOT / "clients" / "locust" / "locustfile.py").read_text(encoding="utf-8"))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
    ]
    assert calls
    for call in calls:
        helps = [k.value for k in call.keywords if k.arg == "help"]
        assert helps and isinstance(helps[0], ast.Constant) and helps[0].value, ast.unparse(call)


# -- the formatter -----------------------------------------------------------------------


def rendered(**kwargs: Any) -> str:
    parser = ArgumentParser(prog="x")
    parser.add_argument("--opt", **kwargs)
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"default": 5, "help": "count"}, "count (default: 5)"),
        ({"default": 0, "help": "count"}, "count (default: 0)"),
        ({"default": 5.0, "help": "seconds"}, "seconds (default: 5)"),
        ({"default": 0.05, "help": "alpha"}, "alpha (default: 0.05)"),
        ({"default": [1, 2, 4], "nargs": "+", "help": "counts"}, "counts (default: 1 2 4)"),
        ({"default": Path("results/x"), "help": "where"}, "where (default: results/x)"),
        ({"default": "50%", "help": "share"}, "share (default: 50%)"),
        ({"default": "echo", "choices": ["echo", "http"], "help": "p"}, "p (default: echo)"),
    ],
)
def test_help_shows_a_meaningful_default(kwargs: dict[str, Any], shown: str) -> None:
    assert shown in rendered(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"help": "none given"},
        {"default": None, "help": "none given"},
        {"default": "", "help": "none given"},
        {"default": [], "nargs": "*", "help": "none given"},
        {"default": argparse.SUPPRESS, "help": "none given"},
        {"action": "store_true", "help": "none given"},
        {"action": "store_false", "help": "none given"},
        {"action": "count", "default": 0, "help": "none given"},
        {"default": 3, "help": "none given, as written (default three)"},
        {"default": 3, "help": "none given, as written; Default: 3"},
    ],
)
def test_help_shows_no_default_where_there_is_none_or_one_already(
    kwargs: dict[str, Any],
) -> None:
    text = rendered(**kwargs)
    assert "none given" in text
    assert "(default:" not in text


def test_subcommands_inherit_the_formatter() -> None:
    parser = ArgumentParser(prog="x")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run it")
    run.add_argument("--n", type=int, default=7, help="how many")
    assert isinstance(run, ArgumentParser)
    assert "how many (default: 7)" in " ".join(run.format_help().split())


def test_a_formatter_given_is_kept() -> None:
    parser = ArgumentParser(prog="x", formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", default=7, help="how many")
    assert "(default" not in parser.format_help()


# -- the nearest valid value -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, choices, said",
    [
        ("htp", ["echo", "http"], " (did you mean 'http'?)"),
        ("epol", ["select", "poll", "epoll"], " (did you mean 'epoll'?)"),
        ("EPOLL", ["poll", "epoll"], " (did you mean 'epoll'?)"),
        ("reprot", ["run", "report", "list"], " (did you mean 'report'?)"),
        ("asyncio_streams", ["asyncio", "asyncio-streams"], " (did you mean 'asyncio-streams'?)"),
        ("gopher", ["echo", "http"], ""),
        ("x", [], ""),
        ("", ["echo"], ""),
    ],
)
def test_suggest(value: str, choices: list[str], said: str) -> None:
    assert suggest(value, choices) == said


def test_suggest_takes_any_iterable() -> None:
    assert suggest("htp", iter(("echo", "http"))) == " (did you mean 'http'?)"
    assert suggest("htp", {"http": 1, "echo": 2}) == " (did you mean 'http'?)"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def parse_error(
    parse: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return one_error_line(captured.err)


@pytest.mark.parametrize(
    "file, argv, nearest",
    [
        ("servers/__main__.py", ["run", "epoll", "--protocol", "htp"], "'http'"),
        ("servers/__main__.py", ["lst"], "'list'"),
        ("bench/cli.py", ["reprot", "x"], "'report'"),
        ("bench/cli.py", ["explain", "epoll", "--protocol", "ecko"], "'echo'"),
        ("bench/studies/scaling.py", ["--protocol", "HTTP"], "'http'"),
        ("bench/studies/ab_power.py", ["f", "--metric", "throughput_"], "'throughput'"),
        ("clients/locust/driver.py", ["--target", "h:1", "--protocol", "eco"], "'echo'"),
    ],
)
def test_an_invalid_choice_names_the_nearest(
    file: str, argv: list[str], nearest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = parse_error(build(file).parse_args, argv, capsys)
    assert "invalid choice" in line
    assert line.endswith(f" (did you mean {nearest}?)")


def test_an_invalid_choice_far_from_all_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    line = parse_error(
        build("servers/__main__.py").parse_args, ["run", "x", "--protocol", "gopher"], capsys
    )
    assert "invalid choice: 'gopher'" in line and "did you mean" not in line


@pytest.mark.parametrize(
    "message, said",
    [
        # Python 3.11 to 3.13: the choices as reprs
        ("argument --protocol: invalid choice: 'htp' (choose from 'echo', 'http')", "'http'"),
        # newer Pythons join the choices with str()
        ("argument --protocol: invalid choice: 'htp' (choose from echo, http)", "'http'"),
        ("argument command: invalid choice: 'reprot' (choose from report, run)", "'report'"),
        ("argument --n: invalid choice: 3 (choose from 1, 2, 33)", "'33'"),
    ],
)
def test_error_reads_every_invalid_choice_format(
    message: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = parse_error(lambda _argv: ArgumentParser(prog="x").error(message), [], capsys)
    assert line == f"x: error: {message} (did you mean {said}?)"


@pytest.mark.parametrize(
    "message",
    [
        "the following arguments are required: --target",
        # Python 3.14's own suggestion (suggest_on_error=True): not a second one
        "argument --protocol: invalid choice: 'htp', maybe you meant 'http'? "
        "(choose from echo, http)",
        "argument --n: invalid choice: 'zzz' (choose from 'a', 'b')",
    ],
)
def test_error_adds_nothing_to_other_messages(
    message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = parse_error(lambda _argv: ArgumentParser(prog="x").error(message), [], capsys)
    assert line == f"x: error: {message}"


def test_unknown_model_names_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    from servers.__main__ import main

    assert main(["run", "epol"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "unknown model 'epol'" in line and line.endswith(" (did you mean 'epoll'?)")


def test_a_mistyped_subcommand_from_the_shell() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "reprot"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith("python -m bench: error: argument command: invalid choice: 'reprot'")
    assert line.endswith(" (did you mean 'report'?)")

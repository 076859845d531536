"""The load options both drivers share (clients.options): one name, type and default."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from clients import loadgen
from clients.locust import driver
from clients.options import LOCUST_DEFAULTS, SHARED, add_load_options, flag
from common.cli import ArgumentParser


def shared_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options that are shared ones, by name."""
    return {a.dest: a for a in parser._actions if a.dest in SHARED and a.option_strings}


def shape(action: argparse.Action) -> dict[str, Any]:
    """What a driver must not change about a shared option: everything but its help."""
    return {
        "flags": action.option_strings,
        "type": action.type,
        "choices": action.choices,
        "default": action.default,
        "required": action.required,
        "nargs": action.nargs,
        "const": action.const,
        "kind": type(action),
    }


def reference(defaults: dict[str, Any] | None = None) -> dict[str, argparse.Action]:
    parser = ArgumentParser(prog="x")
    add_load_options(parser, {name: "help" for name in SHARED}, defaults=defaults)
    return shared_actions(parser)


@pytest.mark.parametrize(
    "build, defaults",
    [(loadgen.build_parser, None), (driver.build_parser, LOCUST_DEFAULTS)],
    ids=["loadgen", "locust"],
)
def test_both_drivers_take_every_shared_option_as_defined(build: Any, defaults: Any) -> None:
    got = shared_actions(build())
    assert set(got) == set(SHARED)
    want = reference(defaults)
    for name in SHARED:
        assert shape(got[name]) == shape(want[name]), name


def test_the_drivers_differ_only_in_the_listed_defaults() -> None:
    ours, theirs = shared_actions(loadgen.build_parser()), shared_actions(driver.build_parser())
    differ = {n for n in SHARED if ours[n].default != theirs[n].default}
    assert differ == set(LOCUST_DEFAULTS)
    for name in SHARED:
        assert shape(ours[name]) | {"default": None} == shape(theirs[name]) | {"default": None}


def test_loadgen_lists_the_shared_options_where_it_always_did() -> None:
    flags = [a.option_strings[0] for a in loadgen.build_parser()._actions if a.option_strings]
    assert flags == [
        "-h",
        "--target",
        "--protocol",
        "--connections",
        "--processes",
        "--duration",
        "--warmup",
        "--payload",
        "--rate",
        "--arrivals",
        "--mode",
        "--timeout",
        "--cpus",
        "--no-busy-poll",
        "--allow-remote",
        "--server-pid",
        "--interval-log",
        "--verify",
        "--expect-status",
        "--expect-body",
        "--quiet",
    ]


def test_add_load_options_adds_those_named_in_that_order_with_their_help() -> None:
    parser = ArgumentParser(prog="x")
    helps = {"rate": "requests/s", "target": "where", "quiet": "hush"}
    add_load_options(parser, helps, "target", "rate", defaults={"timeout": 1.0})
    added = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert [a.option_strings for a in added] == [["--target"], ["--rate"]]
    assert [a.help for a in added] == ["where", "requests/s"]
    add_load_options(parser, helps, "quiet")
    assert parser.parse_args(["--target", "h:1", "--rate", "5", "--quiet"]) == argparse.Namespace(
        target="h:1", rate=5.0, quiet=True
    )


def test_add_load_options_without_names_adds_all_of_helps_and_applies_defaults() -> None:
    parser = ArgumentParser(prog="x")
    add_load_options(parser, {"payload": "bytes", "timeout": "s"}, defaults={"timeout": 10.0})
    assert parser.parse_args([]) == argparse.Namespace(payload=None, timeout=10.0)


@pytest.mark.parametrize(
    "names, defaults",
    [(("users",), None), (("target",), {"spawn_rate": 1})],
)
def test_add_load_options_refuses_an_option_it_does_not_share(names: Any, defaults: Any) -> None:
    with pytest.raises(ValueError, match="not shared load options"):
        add_load_options(ArgumentParser(prog="x"), {"target": "t"}, *names, defaults=defaults)


def test_flag_is_the_dest_spelled_as_a_flag() -> None:
    assert flag("allow_remote") == "--allow-remote" and flag("cpus") == "--cpus"

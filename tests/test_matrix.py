"""Matrix expansion from profiles and flags, and the CPU plan."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from bench.run.cpus import CpuPlanError, plan_cpus
from bench.run.matrix import Matrix, MatrixError, load_profile, override, profile_names
from common.cpus import parse_cpu_list
from servers import MODELS


def test_every_shipped_profile_loads() -> None:
    assert {"quick", "full", "c10k", "nightly"} <= set(profile_names())
    for name in profile_names():
        assert load_profile(name).cells()


def test_quick_is_every_model_family_at_1_to_1000_connections() -> None:
    quick = load_profile("quick")
    families = {name for name, model in MODELS.items() if not model.family}
    assert set(quick.models) == families and "asyncio-streams" not in families
    assert quick.connections == (1, 10, 100, 1000) and quick.protocols == ("echo",)
    cells = quick.cells()
    assert len(cells) == len(families) * 4
    assert len({c.key for c in cells}) == len(cells)
    # every variant belongs to a family that is itself a model; full runs them all
    assert {m.family for m in MODELS.values() if m.family} <= families
    assert set(load_profile("full").models) == set(MODELS)


def test_flags_override_the_profile_and_repeats_interleave() -> None:
    matrix = override(
        load_profile("quick"),
        models=["epoll", "threaded"],
        connections=[10, 100],
        repeats=3,
        payloads=None,
    )
    cells = matrix.cells()
    assert len(cells) == 2 * 2 * 3
    assert matrix.payloads == (64,)  # not given: the profile's value stays
    # every repeat holds each key once, and the order differs between repeats
    by_repeat = [[c.key for c in cells if c.repeat == r] for r in range(3)]
    assert all(Counter(keys) == Counter(by_repeat[0]) for keys in by_repeat)
    assert len({tuple(keys) for keys in by_repeat}) > 1
    assert [c.repeat for c in cells] == sorted(c.repeat for c in cells)


def test_same_seed_same_order() -> None:
    a = override(load_profile("quick"), seed=7).cells()
    assert a == override(load_profile("quick"), seed=7).cells()


def test_matrix_roundtrips_through_metadata() -> None:
    matrix = override(load_profile("nightly"), connections=[5])
    assert Matrix.from_dict(matrix.to_dict()) == matrix


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"models": ["nosuch"]}, "unknown model"),
        ({"connections": [0]}, "connections"),
        ({"repeats": 0}, "repeats"),
        ({"duration": 0.0}, "duration"),
        ({"modes": ["sideways"]}, "modes"),
        ({"works": ["sleep:5"]}, "bad work"),
        # what the load generator would refuse, refused before any cell
        ({"expect_status": 101}, "expect-status 101: a final HTTP status, 200 to 599"),
        ({"expect_status": 600}, "200 to 599"),
    ],
)
def test_bad_values_are_refused(flags: dict, message: str) -> None:
    with pytest.raises(MatrixError, match=message):
        override(load_profile("quick"), **flags)


def test_unknown_profile_and_bad_toml(tmp_path) -> None:
    with pytest.raises(MatrixError, match="no profile"):
        load_profile("nosuch")
    bad = tmp_path / "bad.toml"
    bad.write_text("models = [\n")
    with pytest.raises(MatrixError):
        load_profile(str(bad))
    typo = tmp_path / "typo.toml"
    typo.write_text('modles = ["epoll"]\n')
    with pytest.raises(MatrixError, match="unknown keys"):
        load_profile(str(typo))


def test_cpu_lists_and_plan() -> None:
    assert parse_cpu_list("0,2-3") == (0, 2, 3)
    with pytest.raises(ValueError, match="bad CPU list"):
        parse_cpu_list("a-b")
    with pytest.raises(ValueError, match="bad CPU list"):
        parse_cpu_list("3-1")
    available = sorted(os.sched_getaffinity(0))
    plan = plan_cpus()
    if len(available) > 1:
        assert not set(plan.server) & set(plan.client)
        assert set(plan.server) | set(plan.client) == set(available)
    with pytest.raises(CpuPlanError, match="not among"):
        plan_cpus(server=(max(available) + 1,))

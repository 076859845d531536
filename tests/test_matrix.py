"""Matrix expansion from profiles and flags, and the CPU plan."""

from __future__ import annotations

import os
import random
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
    main = [c for c in quick.cells() if not c.key.idle]
    assert len(main) == len(families) * 4
    assert len({c.key for c in quick.cells()}) == len(quick.cells())
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


def test_quick_adds_a_small_idle_sweep_as_a_grid_of_its_own() -> None:
    quick = load_profile("quick")
    (grid,) = quick.grids
    swept = set(grid.models or ())
    assert {"poll", "epoll", "select"} <= swept and grid.connections == (10,)
    assert grid.idle is not None and len(grid.idle) >= 3 and grid.idle[0] == 0
    cells = quick.cells()
    idle = [c.key for c in cells if c.key.idle]
    # the grid's cells at 0 idle are the main product's 10-connection ones: run once
    assert len(cells) == len(quick.models) * 4 + len(swept) * (len(grid.idle) - 1)
    assert {(k.model, k.connections, k.idle) for k in idle} == {
        (m, 10, n) for m in swept for n in grid.idle[1:]
    }
    assert quick.has_idle and Matrix.from_dict(quick.to_dict()) == quick
    # the main product alone: no grid, no idle axis, the order a profile without grids had
    alone = override(quick, grids=())
    assert not alone.has_idle and [c.key.idle for c in alone.cells()] == [0] * 4 * len(quick.models)
    order = alone.keys()
    random.Random(alone.seed * 1000).shuffle(order)
    assert [c.key for c in alone.cells() if c.repeat == 0] == order


def test_axis_flags_describe_the_matrix_so_the_grids_are_left_out() -> None:
    quick = load_profile("quick")
    for flags in ({"models": ["epoll"]}, {"connections": [100]}, {"idle": [0, 5]}):
        chosen = override(quick, **flags)
        assert chosen.grids == ()
        assert {c.key.idle for c in chosen.cells()} == set(flags.get("idle", [0]))
    # settings that are not axes keep them: the sweep runs with the repeats asked for
    again = override(quick, repeats=2, duration=1.0)
    assert again.grids == quick.grids and {c.repeat for c in again.cells() if c.key.idle} == {0, 1}


def test_a_grid_is_checked_like_a_profile(tmp_path) -> None:
    def profile(text: str) -> str:
        path = tmp_path / "p.toml"
        path.write_text('models = ["epoll"]\nconnections = [1]\n' + text)
        return str(path)

    with pytest.raises(MatrixError, match=r"grid 1: unknown keys \['repeats'\]; a grid sets"):
        load_profile(profile("[[grid]]\nrepeats = 2\n"))
    with pytest.raises(MatrixError, match="grid 2: idle must be >= 0"):
        load_profile(profile("[[grid]]\nidle = [0, 9]\n[[grid]]\nidle = [-1]\n"))
    with pytest.raises(MatrixError, match="grid 1: unknown model 'epol'"):
        load_profile(profile('[[grid]]\nmodels = ["epol"]\n'))
    families = load_profile(profile('[[grid]]\nmodels = "families"\nidle = [0, 5]\n'))
    assert "threaded" in (families.grids[0].models or ())


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

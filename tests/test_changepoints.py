"""bench.analysis.changepoints on made-up series: the right nights, the right commits, quiet noise;
and bench.studies.history_sim's counting."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from bench.analysis.changepoints import DRIFT, SHIFT, drift, find, shifts
from bench.studies import history_sim

NIGHTS = 30
COMMITS = [f"sha{night:02d}" for night in range(1, NIGHTS + 1)]  # night n (from 1): "sha<n>"


def _series(
    noise: float, seed: int, factor: Callable[[int], float], level: float = 100_000
) -> list[float]:
    """level x factor(night) x exp(noise e), nights 1..NIGHTS."""
    z = np.random.default_rng(seed).standard_normal(NIGHTS)
    return [
        level * factor(night) * math.exp(noise * e)
        for night, e in zip(range(1, NIGHTS + 1), z, strict=True)
    ]


def test_a_shift_at_night_15_names_nights_14_and_15() -> None:
    values = _series(0.01, 1, lambda night: 0.9 if night >= 15 else 1.0)
    found = find(values, COMMITS)
    assert [f.kind for f in found] == [SHIFT]  # a step is not a drift as well
    (shift,) = found
    assert (shift.night, shift.before, shift.after) == (14, "sha14", "sha15")
    assert shift.commits == "sha14..sha15"
    assert shift.change == pytest.approx(-0.10, abs=0.01)
    assert shift.p < 0.001


@pytest.mark.parametrize("seed", range(3))
def test_a_series_of_ratios_near_1(seed: int) -> None:
    """What bench.gate.history analyses: ratios new / anchor, about 1.5% of noise."""
    values = _series(0.015, 20 + seed, lambda night: 0.9 if night >= 15 else 1.0, level=1.0)
    (shift,) = find(values, COMMITS)
    assert (shift.kind, shift.commits) == (SHIFT, "sha14..sha15")
    assert find(_series(0.015, 30 + seed, lambda night: 1.0, level=1.0), COMMITS) == []


def test_a_rise_is_found_too() -> None:
    values = _series(0.01, 2, lambda night: 1.2 if night >= 21 else 1.0)
    (shift,) = shifts(values, COMMITS)
    assert (shift.before, shift.after) == ("sha20", "sha21")
    assert shift.change == pytest.approx(0.2, abs=0.02)


def test_a_drift_from_night_10_is_flagged_by_night_25_where_it_began() -> None:
    values = _series(0.01, 3, lambda night: 0.99 ** max(0, night - 10))[:25]
    found = [f for f in find(values, COMMITS[:25]) if f.kind == DRIFT]
    assert len(found) == 1
    (trend,) = found
    assert abs(trend.night - 10) <= 1  # night 11 (index 10) is the first one down
    assert (trend.before, trend.after) == (COMMITS[trend.night - 1], COMMITS[trend.night])
    assert trend.per_night == pytest.approx(-0.01, abs=0.002)
    assert trend.change < -0.1
    assert trend.p < 0.01


def test_a_slow_drift_below_the_minimum_is_not_flagged() -> None:
    # significant at 0.1% noise, but 0.1% a night is under MIN_DRIFT_PER_NIGHT
    values = _series(0.001, 4, lambda night: 0.999**night)
    assert drift(values, COMMITS) is None


@pytest.mark.parametrize("seed", range(5))
def test_pure_noise_raises_nothing(seed: int) -> None:
    assert find(_series(0.05, 100 + seed, lambda night: 1.0), COMMITS) == []


def test_one_odd_last_night_is_not_a_shift_yet() -> None:
    values = _series(0.01, 5, lambda night: 0.7 if night == NIGHTS else 1.0)
    assert shifts(values, COMMITS) == []
    assert shifts(values[:-1] + [values[-1]] * 3, COMMITS[:-1] + ["x", "y", "z"]) != []


def test_short_or_bad_series() -> None:
    assert find([1.0, 2.0, 3.0], COMMITS[:3]) == []
    with pytest.raises(ValueError, match="commits"):
        find([1.0, 2.0], COMMITS[:3])
    with pytest.raises(ValueError, match="positive"):
        find([1.0, 0.0, 1.0], COMMITS[:3])


def test_the_simulation_counts_what_it_finds() -> None:
    quiet = history_sim.run(1.0, seed=0, histories=3, noise_histories=5)
    assert (quiet.shift_found, quiet.drift_flagged, quiet.noise_flagged) == (3, 3, 0)
    assert quiet.passes
    loud = history_sim.run(30.0, seed=0, histories=3, noise_histories=5)
    assert loud.shift_found < 3  # at 30% noise a 10% shift is lost: the counts can fail
    assert not loud.passes

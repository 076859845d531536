"""bench.analysis.changepoints on made-up series: the right nights, the right commits, quiet noise;
and bench.studies.history_sim's counting."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from bench.analysis.changepoints import (
    DRIFT,
    MIN_PHI_NIGHTS,
    SHIFT,
    SIZED_FOR_PHI,
    drift,
    find,
    lag1_autocorrelation,
    mann_kendall,
    shifts,
)
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


# Pure noise correlated between nights (AR(1) at the phi the rule is sized for), each
# history analysed every night from 10 to 30 as the nightly job does: at most 5% raise a
# flag (issue 27). 400 histories, pass at 29 flagged or fewer (7.25%): a rule whose true
# rate is 5% passes with probability 0.981, one at 10% with 0.036 (binomial). The rule
# before issue 27 flagged 203 and 247 of these 400; 3% and 5% are the noise levels
# nearest the limit (docs/nightly.md).
@pytest.mark.parametrize("noise_pct", [3.0, 5.0])
def test_correlated_noise_analysed_every_night_raises_few_false_alarms(noise_pct: float) -> None:
    result = history_sim.nightly(noise_pct, SIZED_FOR_PHI, seed=27, histories=400)
    assert result.flagged <= 29, history_sim.nightly_line(result)


def test_the_simulations_correlated_noise_has_its_phi_and_sd() -> None:
    e = history_sim.draws(27, 9, 4000, phi=0.5)
    assert e.std() == pytest.approx(1.0, abs=0.02)
    lag1 = float((e[:, 1:] * e[:, :-1]).mean())  # mean 0, sd 1: the autocorrelation
    assert lag1 == pytest.approx(0.5, abs=0.02)
    assert np.array_equal(history_sim.draws(27, 9, 5, phi=0.0), history_sim.draws(27, 9, 5))


def test_mann_kendall_on_correlated_noise_is_near_its_level() -> None:
    """Hamed and Rao's inflation at SIZED_FOR_PHI: about 5% of AR(1) noise at that phi
    rejects at 0.05 (the raw test: about 22%); independent noise less often."""
    rows = history_sim.draws(28, 9, 2000, phi=SIZED_FOR_PHI)
    rate = np.mean([mann_kendall(row) < 0.05 for row in rows])
    assert 0.025 <= rate <= 0.065
    raw = np.mean([mann_kendall(row, phi=0.0) < 0.05 for row in rows])
    assert raw > 0.15
    trend = np.arange(30) * 0.2 + history_sim.draws(28, 10, 1)[0]
    assert mann_kendall(trend) < 1e-3 and mann_kendall(-trend) < 1e-3


def test_lag1_autocorrelation_from_20_nights_over_the_last_30() -> None:
    alternating = [1.01 if night % 2 else 1 / 1.01 for night in range(NIGHTS)]
    assert lag1_autocorrelation(alternating[: MIN_PHI_NIGHTS - 1]) is None
    assert lag1_autocorrelation(alternating[:MIN_PHI_NIGHTS]) == pytest.approx(-19 / 20)
    assert lag1_autocorrelation([1.0] * MIN_PHI_NIGHTS) is None  # no variation
    assert lag1_autocorrelation([5.0, 0.2, 3.0, *alternating]) == pytest.approx(-29 / 30)
    # on average over many series: about phi, less the small-sample bias (1 + 3 phi) / n
    for phi in (0.0, 0.5):
        rows = history_sim.draws(29, 9, 500, phi=phi)
        phis = [lag1_autocorrelation([math.exp(0.02 * e) for e in row]) for row in rows]
        mean = np.mean([p for p in phis if p is not None])
        assert None not in phis and mean == pytest.approx(phi - (1 + 3 * phi) / NIGHTS, abs=0.03)


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

"""bench.analysis.search: bracketing, bisection and re-tests against known pass/fail rules."""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.analysis.search import Found, Outcome, Plan, next_step

CAPACITY = 100_000.0  # the closed-loop figure the plan is built around


def search(judge: Callable[[float, int], bool | None], plan: Plan | None = None) -> Found:
    """Run a search to its end; `judge(rate, nth test of that rate)`."""
    plan = plan or Plan.around(CAPACITY)
    outcomes: list[Outcome] = []
    while True:
        step = next_step(plan, outcomes)
        if isinstance(step, Found):
            assert step.steps == len(outcomes) <= plan.max_steps
            return step
        nth = sum(1 for o in outcomes if o.rate == step)
        outcomes.append(Outcome(step, judge(step, nth)))


def _edge(true: float) -> Callable[[float, int], bool]:
    return lambda rate, _nth: rate <= true


def _noisy(true: float, rng: random.Random, flip: float) -> Callable[[float, int], bool]:
    return lambda rate, _nth: (rate <= true) != (rng.random() < flip)


def test_a_clean_threshold_is_found_within_the_precision() -> None:
    for true in (3_000.0, 41_000.0, 73_000.0, 180_000.0):
        found = search(_edge(true))
        assert found.rps is not None and not found.at_least
        assert true / 1.05 <= found.rps <= true, (true, found)
        assert found.high is not None and found.high > true
        assert "converged" in found.why


def _one_flip(true: float, flip_if: Callable[[float], bool]) -> Callable[[float, int], bool]:
    """Pass at or under `true`, except one step, the first that `flip_if` picks, flipped."""
    flipped: list[float] = []

    def judge(rate: float, _nth: int) -> bool:
        if not flipped and flip_if(rate):
            flipped.append(rate)
            return not rate <= true
        return rate <= true

    return judge


def test_one_noisy_failure_below_the_edge_is_retested_and_does_not_stick() -> None:
    judge = _one_flip(73_000, lambda rate: 60_000 <= rate <= 72_000)
    found = search(judge)
    assert found.rps is not None and 73_000 / 1.05 <= found.rps <= 73_000, found


def test_one_noisy_pass_above_the_edge_is_retested_and_does_not_stick() -> None:
    judge = _one_flip(40_000, lambda rate: 40_000 < rate <= 60_000)
    found = search(judge)
    assert found.rps is not None and 40_000 / 1.05 <= found.rps <= 40_000, found


def test_random_noise_rarely_moves_the_result_far() -> None:
    # every step flips with probability 10%; most searches still land within 10%
    close = 0
    for seed in range(200):
        rng = random.Random(seed)
        found = search(_noisy(50_000, rng, 0.1))
        close += found.rps is not None and abs(found.rps / 50_000 - 1) <= 0.10
    assert close >= 160, close


def test_every_rate_passing_ends_at_the_ceiling_as_a_lower_bound() -> None:
    found = search(lambda _rate, _n: True)
    assert found.at_least and found.rps is not None
    assert found.rps >= 0.95 * CAPACITY * 4


def test_every_rate_failing_ends_below_the_floor() -> None:
    found = search(lambda _rate, _n: False)
    assert found.rps is None and not found.at_least
    assert found.high is not None and found.high <= CAPACITY / 64 * 1.05


def test_a_rate_the_client_cannot_offer_caps_the_search() -> None:
    # the server would pass up to 300k; the load generator cannot offer 120k or more
    found = search(lambda rate, _n: None if rate >= 120_000 else rate <= 300_000)
    assert found.at_least and found.rps is not None
    assert 120_000 / 1.06 <= found.rps < 120_000, found


def test_the_budget_ends_the_search_and_keeps_the_bracket() -> None:
    found = search(lambda rate, _n: rate <= 73_000, Plan.around(CAPACITY, max_steps=4))
    assert found.steps == 4 and "budget" in found.why
    assert found.rps is not None and found.rps <= 73_000
    assert found.high is not None and found.high > 73_000


def test_replaying_the_same_outcomes_gives_the_same_next_rate() -> None:
    plan = Plan.around(CAPACITY)
    outcomes = [Outcome(50_000, True), Outcome(100_000, False), Outcome(70_700, True)]
    assert next_step(plan, outcomes) == next_step(plan, list(outcomes))
    assert next_step(plan, outcomes) == 84_100  # the geometric middle, 3 figures


def test_one_client_hiccup_is_tried_again_and_does_not_cap_the_search() -> None:
    hiccups: list[float] = []

    def judge(rate: float, _nth: int) -> bool | None:
        if not hiccups:  # the first step could not be offered, once
            hiccups.append(rate)
            return None
        return rate <= 73_000

    found = search(judge)
    assert found.rps is not None and not found.at_least
    assert 73_000 / 1.05 <= found.rps <= 73_000, found

"""bench.loadgen_ab's interval of the median (the A/B of the load generator's cost)."""

from __future__ import annotations

import random

from bench.loadgen_ab import median_interval


def test_median_interval_is_the_sign_test_order_statistics() -> None:
    # Textbook values: 95% of the median is x(6)..x(15) of 20, x(2)..x(9) of 10.
    assert median_interval([float(i) for i in range(1, 21)]) == (6.0, 15.0)
    assert median_interval([float(i) for i in range(1, 11)]) == (2.0, 9.0)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few to leave any out


def test_median_interval_covers_the_true_median_about_95_percent() -> None:
    rng = random.Random(7)
    covered = 0
    for _ in range(2000):
        low, high = median_interval([rng.gauss(1.0, 0.1) for _ in range(20)])
        covered += low <= 1.0 <= high
    assert 0.93 <= covered / 2000 <= 0.99  # 95.9% exactly for 20 values

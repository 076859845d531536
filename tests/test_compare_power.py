"""bench.studies.compare_power on the committed reference run: its counts come from
bench compare's own judgement, so they move with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.studies.compare_power import REFERENCE, Noise, aa, main, power, spreads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def noise() -> Noise:
    cells = spreads(ROOT / REFERENCE)
    assert len(cells) == 8  # the nightly profile's cells, 6 repeats each
    return Noise(cells, "normal", np.random.default_rng(1))


def test_at_5_repeats_nothing_can_exit(noise: Noise) -> None:
    exits, old, _, _ = aa(noise, 5, 40)
    assert exits == 0 and old > 0  # the rule before Holm exited on noise
    key = next(iter(noise.cov))
    assert power(noise, 5, 10, key, 0.5) == 0  # even a halving: p >= 0.0079 > 0.05/24


def test_at_12_repeats_a_halving_is_caught_and_intervals_hold(noise: Noise) -> None:
    key = "epoll/echo/c100/p64/persistent/loadgen"
    assert power(noise, 12, 10, key, 0.5) == 10
    _, _, held, count = aa(noise, 12, 20)
    assert min(held) / count > 0.85  # at least 95.5% each, give or take 160 draws


def test_the_command_prints_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT / REFERENCE), "--repeats", "5", "--trials", "4",
                 "--bootstrap-trials", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "## 5 vs 5 repeats" in out and "A/A false exits: 0.0%" in out
    assert "old bootstrap interval holds the true ratio, 3 vs 3" in out
    assert main([str(ROOT / "no-such-run")]) == 2

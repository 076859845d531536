"""clients.engine.hist: latency histograms recorded in nanoseconds, summarised in µs to
0.1 µs (issue 26, item 2). Pure: no server, no traffic."""

from __future__ import annotations

import os
import random
import socket
import statistics

import pytest

from clients.engine import hist
from clients.engine.connections import SECOND_NS
from clients.engine.loops import Loops
from clients.engine.plan import WorkerPlan
from clients.engine.worker import result_of

RESOLUTION_US = 0.1


@pytest.mark.parametrize(("low_ns", "high_ns"), [(20_000, 30_000), (20_500, 30_500)])
def test_uniform_latencies_read_their_true_median_and_mean(low_ns: int, high_ns: int) -> None:
    """Microsecond histograms (`v // 1000`) read every figure up to 1 µs low: uniform
    20-30 µs gave a mean of 24.5 and, shifted by half a microsecond, a median of 25
    against 25.5."""
    values = uniform_ns(low_ns, high_ns)  # ns, as the workers' loops keep them
    ordered = sorted(values)
    summary = hist.latency(hist.from_values(values))
    assert summary.count == len(values)
    assert summary.p50 == pytest.approx(statistics.median(values) / 1000, abs=RESOLUTION_US)
    assert summary.mean == pytest.approx(statistics.fmean(values) / 1000, abs=RESOLUTION_US)
    assert summary.p90 == pytest.approx(ordered[89_999] / 1000, abs=RESOLUTION_US)
    assert summary.max == pytest.approx(max(values) / 1000, abs=RESOLUTION_US)


def uniform_ns(low_ns: int, high_ns: int, n: int = 100_000) -> list[int]:
    rng = random.Random(26)
    return [rng.randrange(low_ns, high_ns + 1) for _ in range(n)]


@pytest.mark.parametrize(("low_ns", "high_ns"), [(20_000, 30_000), (20_500, 30_500)])
def test_a_workers_histograms_keep_its_nanoseconds(low_ns: int, high_ns: int) -> None:
    """The worker's own path: latencies its loops kept in ns, through `result_of` to the
    blobs the parent merges. No socket is opened: the loops only hold the values."""
    values = uniform_ns(low_ns, high_ns)
    plan = WorkerPlan(
        index=0, family=socket.AF_INET, address=("127.0.0.1", 9), protocol="echo",
        payload=64, mode="persistent", connections=1, first=0, total=1, rate=None,
        timeout=1.0, cpus=None, parent_pid=os.getpid(),
    )  # fmt: skip
    loops = Loops(plan)
    try:
        loops.lat.extend(values)
        loops.slices = [len(values) // 2, len(values)]
        loops.window_start, loops.end = 0, SECOND_NS
        result = result_of(loops)
    finally:
        loops.close()
    summary = hist.latency(hist.merge([result.latency]))
    assert summary.count == len(values)
    assert summary.p50 == pytest.approx(statistics.median(values) / 1000, abs=RESOLUTION_US)
    assert summary.mean == pytest.approx(statistics.fmean(values) / 1000, abs=RESOLUTION_US)
    halves = hist.merge(result.intervals)
    assert hist.encode(halves) == result.latency  # the slices hold every reply, in ns


def test_counting_by_bucket_first_equals_recording_every_value() -> None:
    """from_values counts values per bucket before it records them (one call per bucket,
    not per request): the histogram is the one that recording each value gives."""
    rng = random.Random(7)
    values = [int(rng.lognormvariate(10, 1.5)) for _ in range(20_000)] + [0, 1, 2_047, 2_048]
    one_by_one = hist.new_histogram()
    for value in values:
        one_by_one.record_value(value)
    built = hist.from_values(values)
    assert hist.encode(built) == hist.encode(one_by_one)
    assert built.get_max_value() == one_by_one.get_max_value()
    assert hist.latency(built) == hist.latency(one_by_one)


def test_a_value_past_one_hour_is_clamped_not_dropped() -> None:
    built = hist.from_values([1_500, 2_499, 10**18])
    assert built.get_total_count() == 3
    assert built.get_max_value() >= hist.HIGHEST_NS
    assert hist.HIGHEST_NS == 3_600 * 10**9  # one hour in ns: a late open loop still fits


def test_summary_figures_are_microseconds_with_one_decimal() -> None:
    summary = hist.latency(hist.from_values([1_234, 25_049, 25_051, 1_000_000]))
    for name in ("p50", "p90", "p99", "p999", "max", "mean"):
        value = getattr(summary, name)
        assert round(value, 1) == value, (name, value)
    assert hist.latency(hist.from_values([1_234])).p50 == 1.2
    connect = hist.connect_latency(hist.from_values([150_000] * 3))
    assert connect.p50 == connect.p99 == connect.max == pytest.approx(150.0, abs=0.1)
    assert hist.latency(hist.new_histogram()).p50 == 0

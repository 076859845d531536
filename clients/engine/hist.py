"""Latency histograms: build from raw values, ship between processes, merge, summarise.

Workers collect raw integer latencies during the window (recording into HdrHistogram
per request in pure Python would cost more than the request itself) and build one
histogram afterwards. Histograms travel as `encode()` blobs and are merged with
`decode_and_add()`, so percentiles are always computed over all samples, never averaged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

from clients.result import ConnectLatency, Latency

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: an open-loop run that falls behind still fits
SIGNIFICANT_FIGURES = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def from_values(values: Iterable[int], divisor: int = 1) -> HdrHistogram:
    """A histogram of `value // divisor` for each value (e.g. ns -> us with 1000).

    Counting equal values first makes this one record call per distinct value.
    """
    histogram = new_histogram()
    counts = Counter(values) if divisor == 1 else Counter(v // divisor for v in values)
    for value, count in counts.items():
        histogram.record_value(min(max(value, 0), HIGHEST_US), count)
    return histogram


def encode(histogram: HdrHistogram) -> str:
    blob: bytes = histogram.encode()
    return blob.decode("ascii")


def merge(blobs: Iterable[str]) -> HdrHistogram:
    merged = new_histogram()
    for blob in blobs:
        merged.decode_and_add(blob)
    return merged


def percentiles(histogram: HdrHistogram, wanted: dict[str, float]) -> dict[str, int]:
    """{name: value at percentile}; one pass over the counts for all of them."""
    if not histogram.get_total_count():
        return dict.fromkeys(wanted, 0)
    values = histogram.get_percentile_to_value_dict(list(wanted.values()))
    return {name: int(values[p]) for name, p in wanted.items()}


PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
# A bracket narrower than this (relative) is a value, not a bound: the figures move more
# than that from one repeat to the next, and in a closed loop every connection has a
# young request in flight at the end, which would otherwise mark most tails.
BOUND_TOLERANCE = 0.10


def latency(answered: HdrHistogram, censored: HdrHistogram | None = None) -> Latency:
    """The summary of `answered`, or of answered and censored samples together.

    A censored sample (a request still unanswered) is a lower bound. Each percentile is
    therefore bracketed: at least its value with the censored waits as they stand, at
    most its value if they never end. Where the two differ by more than BOUND_TOLERANCE,
    the censored requests decide it: the figure is named in `bounds` ("≥ value").
    """
    n_censored = int(censored.get_total_count()) if censored is not None else 0
    if not n_censored or censored is None:
        return _summary(answered, percentiles(answered, PERCENTILES))
    histogram = new_histogram()
    histogram.add(answered)
    histogram.add(censored)
    values = percentiles(histogram, PERCENTILES)
    total, n_answered = histogram.get_total_count(), answered.get_total_count()
    bounds = []
    for name, p in PERCENTILES.items():
        rank = math.ceil(p / 100 * total)  # the rank of the percentile, censored ones last
        if rank > n_answered:
            bounds.append(name)
            continue
        upper = answered.get_value_at_percentile(100.0 * rank / n_answered)
        if upper > values[name] * (1 + BOUND_TOLERANCE):
            bounds.append(name)
    # an unanswered request may wait for ever: the max and the mean are bounds
    return _summary(histogram, values, n_censored, (*bounds, "max", "mean"))


def _summary(
    histogram: HdrHistogram,
    values: dict[str, int],
    censored: int = 0,
    bounds: tuple[str, ...] = (),
) -> Latency:
    return Latency(
        count=int(histogram.get_total_count()),
        p50=values["p50"],
        p90=values["p90"],
        p99=values["p99"],
        p999=values["p999"],
        max=int(histogram.get_max_value()),
        mean=round(histogram.get_mean_value(), 1),
        censored=censored,
        bounds=bounds,
    )


def connect_latency(histogram: HdrHistogram) -> ConnectLatency:
    summary = percentiles(histogram, {"p50": 50.0, "p99": 99.0})
    return ConnectLatency(max=int(histogram.get_max_value()), **summary)


def spread(values: Sequence[int]) -> dict[str, int]:
    """p50, p99 and max of a few plain values (e.g. one per connection)."""
    if not values:
        return {"p50": 0, "p99": 0, "max": 0}
    ordered = sorted(values)

    def at(q: int) -> int:  # the nearest-rank percentile, as HdrHistogram reports
        return ordered[max(0, -(-len(ordered) * q // 100) - 1)]

    return {"p50": at(50), "p99": at(99), "max": ordered[-1]}


def jain_index(counts: Sequence[int]) -> float:
    """Jain's fairness index: 1.0 when every connection did equal work, 1/n when one
    did all of it. Nothing done at all is reported as 0.0, not as perfectly fair."""
    total = sum(counts)
    if not counts or not total:
        return 0.0
    return total * total / (len(counts) * sum(c * c for c in counts))

"""Latency histograms: build from raw values, ship between processes, merge, summarise.

Workers collect raw integer latencies in nanoseconds during the window (recording into
HdrHistogram per request in pure Python would cost more than the request itself) and
build one histogram afterwards. Histograms travel as `encode()` blobs and are merged with
`decode_and_add()`, so percentiles are always computed over all samples, never averaged.

Resolution: the histograms hold nanoseconds (1 ns to one hour) at 3 significant digits:
exact below 2,048 ns, buckets of 16 ns at 16-33 µs, at most 64 ns below 131 µs, then
0.05-0.1% of the value. The summaries (`Latency`, `ConnectLatency`) are microseconds
rounded to 0.1 µs (`to_us`; clients.result, `latency_resolution`): a percentile is its
bucket's highest value, so below 131 µs it reads at most 0.05 µs low and 0.12 µs high.
Before schema 3 of the load result the histograms held whole microseconds, `ns // 1000`:
every figure up to 1 µs low, 0.5 µs on average.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

from clients.result import ConnectLatency, Latency

LOWEST_NS = 1
HIGHEST_NS = 3_600 * 10**9  # one hour: an open loop that falls behind still fits
SIGNIFICANT_FIGURES = 3
NS_PER_US = 1000
# 3 significant digits: 2,048 sub-buckets, so a value of n bits shares its bucket with
# the values that agree with it on its top 11 bits
_BUCKET_BITS = (2 * 10**SIGNIFICANT_FIGURES - 1).bit_length()


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)


def from_values(values: Iterable[int]) -> HdrHistogram:
    """A histogram of latencies in nanoseconds.

    Values are counted per bucket first (each rounded down to its bucket's lowest value,
    which HdrHistogram records as the same bucket), so this is one record call per
    bucket in use, not per request. Negative values count as 0, values past one hour
    as one hour.
    """
    histogram = new_histogram()
    buckets: Counter[int] = Counter()
    for value, count in Counter(values).items():
        shift = value.bit_length() - _BUCKET_BITS
        buckets[value >> shift << shift if shift > 0 else value] += count
    for value, count in buckets.items():
        histogram.record_value(min(max(value, 0), HIGHEST_NS), count)
    return histogram


def sliced(values: Sequence[int], ends: Sequence[int]) -> tuple[list[HdrHistogram], HdrHistogram]:
    """(a histogram per slice of `values` ending at each of `ends`, one of all values):
    the whole is the slices added up (and any values after the last end), so each value
    is bucketed once."""
    starts = [0, *ends[:-1]]
    slices = [from_values(values[a:b]) for a, b in zip(starts, ends, strict=True)]
    whole = from_values(values[ends[-1] if ends else 0 :])
    for histogram in slices:
        whole.add(histogram)
    return slices, whole


def to_us(value_ns: float) -> float:
    """Nanoseconds as microseconds to 0.1 µs, the resolution every summary states."""
    return round(value_ns / NS_PER_US, 1)


def encode(histogram: HdrHistogram) -> str:
    blob: bytes = histogram.encode()
    return blob.decode("ascii")


def merge(blobs: Iterable[str]) -> HdrHistogram:
    merged = new_histogram()
    for blob in blobs:
        merged.decode_and_add(blob)
    return merged


def percentiles(histogram: HdrHistogram, wanted: dict[str, float]) -> dict[str, int]:
    """{name: value at percentile}, in the histogram's nanoseconds; one pass over the
    counts for all of them."""
    if not histogram.get_total_count():
        return dict.fromkeys(wanted, 0)
    values = histogram.get_percentile_to_value_dict(list(wanted.values()))
    return {name: int(values[p]) for name, p in wanted.items()}


def percentiles_us(histogram: HdrHistogram, wanted: dict[str, float]) -> dict[str, float]:
    """`percentiles` in microseconds to 0.1 µs."""
    return {name: to_us(v) for name, v in percentiles(histogram, wanted).items()}


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
    """The summary in microseconds to 0.1 µs; `values` in the histogram's nanoseconds."""
    return Latency(
        count=int(histogram.get_total_count()),
        p50=to_us(values["p50"]),
        p90=to_us(values["p90"]),
        p99=to_us(values["p99"]),
        p999=to_us(values["p999"]),
        max=to_us(histogram.get_max_value()),
        mean=to_us(histogram.get_mean_value()),
        censored=censored,
        bounds=bounds,
    )


def connect_latency(histogram: HdrHistogram) -> ConnectLatency:
    summary = percentiles_us(histogram, {"p50": 50.0, "p99": 99.0})
    return ConnectLatency(max=to_us(histogram.get_max_value()), **summary)


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of a few plain values (e.g. one per connection)."""
    if not values:
        return {"p50": 0, "p99": 0, "max": 0}
    ordered = sorted(values)

    def at(q: int) -> float:  # the nearest-rank percentile, as HdrHistogram reports
        return ordered[max(0, -(-len(ordered) * q // 100) - 1)]

    return {"p50": at(50), "p99": at(99), "max": ordered[-1]}


def jain_index(counts: Sequence[int]) -> float:
    """Jain's fairness index: 1.0 when every connection did equal work, 1/n when one
    did all of it. Nothing done at all is reported as 0.0, not as perfectly fair."""
    total = sum(counts)
    if not counts or not total:
        return 0.0
    return total * total / (len(counts) * sum(c * c for c in counts))

"""Latency histograms: build from raw values, ship between processes, merge, summarise.

Workers collect raw integer latencies during the window (recording into HdrHistogram
per request in pure Python would cost more than the request itself) and build one
histogram afterwards. Histograms travel as `encode()` blobs and are merged with
`decode_and_add()`, so percentiles are always computed over all samples, never averaged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from hdrh.histogram import HdrHistogram

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


def latency_summary(histogram: HdrHistogram) -> dict[str, float]:
    summary: dict[str, float] = dict(
        percentiles(histogram, {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9})
    )
    summary["max"] = int(histogram.get_max_value())
    summary["mean"] = round(histogram.get_mean_value(), 1)
    return summary


def connect_summary(histogram: HdrHistogram) -> dict[str, int]:
    summary = percentiles(histogram, {"p50": 50.0, "p99": 99.0})
    summary["max"] = int(histogram.get_max_value())
    return summary


def jain_index(counts: Sequence[int]) -> float:
    """Jain's fairness index: 1.0 when every connection did equal work, 1/n when one
    did all of it. Nothing done at all is reported as 0.0, not as perfectly fair."""
    total = sum(counts)
    if not counts or not total:
        return 0.0
    return total * total / (len(counts) * sum(c * c for c in counts))

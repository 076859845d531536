"""Interval histograms in HdrHistogram's histogram log format (version 1.3).

The format is the one HdrHistogram's Java `HistogramLogWriter` writes and every
HdrHistogram implementation's log reader (Java `HistogramLogReader` and
`HistogramLogProcessor`, the C, Go, Rust and Python ports) reads::

    #<comment>                                     optional, one line per comment line
    #Values in nanoseconds; Interval_Max in milliseconds (value / 1000000)
    #[Histogram log format version 1.3]
    #[StartTime: 1700000000.123 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
    #[BaseTime: 1700000000.123 (seconds since epoch)]
    "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
    0.000,1.000,12.351,HISTFAAAA...
    1.000,1.000,0.000,HISTFAAAA...

Each interval line is: start of the interval in seconds relative to BaseTime, its
length in seconds, its maximum value (see below) and the interval's histogram,
compressed (V2 encoding, deflate) and base64-encoded; times with 3 decimals as Java
writes them. StartTime is when the run began, to the millisecond; BaseTime equals it,
which states outright that the timestamps are offsets (without it a reader has to
guess that from their size).

Units: the histograms hold request latencies in integer nanoseconds, as
`clients.engine.hist` records them (1 ns to one hour, 3 significant digits). The log
format has no unit field, so every log states its unit in a comment line of its own
(UNIT_LINE, "#Values in nanoseconds; ..."), and `value_unit` reads it back. Java's
`HistogramLogProcessor` takes nanoseconds by default and prints milliseconds
(`-outputValueUnitRatio 1000000`), to 3 decimals: pass `-outputValueUnitRatio 1000`
for microseconds to 3 decimals (the figures' own resolution is 0.1 µs or better below
131 µs). Logs written before schema 3 of the load result held whole microseconds, each
latency truncated, and said so in their first comment ("latency in microseconds");
`value_unit` reads that too.

Interval_Max: Java writes the histogram's max divided by a "max value unit ratio"
that defaults to 1,000,000, i.e. nanoseconds shown as milliseconds. We divide our
nanoseconds by the same 1,000,000, so the column is the interval's max in milliseconds,
as Java's default writes and reads it. The column is informational: readers skip it and
take the max (and everything else) from the histogram itself.

Every interval gets a line, including one in which nothing completed (an empty
histogram), so a reader sees a stall as an interval with zero throughput rather
than as a hole in the log.

Times: workers time their intervals with CLOCK_MONOTONIC, which has no fixed
relation to the calendar; the log's StartTime is wall-clock time (seconds since the
epoch) so that logs of different runs and machines can be put side by side. The
caller converts: it takes one (monotonic, wall-clock) pair at the start of the run
and passes that wall-clock time as `start_unix`, with interval starts as offsets in
seconds from that moment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from hdrh.histogram import HdrHistogram

FORMAT_VERSION = "1.3"
LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
# Interval_Max = max value / this: nanoseconds -> milliseconds, Java's default ratio.
MAX_VALUE_UNIT_RATIO = 1_000_000.0
UNIT = "nanoseconds"
UNIT_LINE = f"#Values in {UNIT}; Interval_Max in milliseconds (value / 1000000)"
# "#Values in nanoseconds", or the comment of a log from before schema 3 of the load
# result, which ended "latency in microseconds"
_UNIT = re.compile(r"^#(?:Values|.*\blatency) in (\w+)", re.MULTILINE)

_START_TIME = re.compile(r"#\[StartTime:\s*([-+0-9.eE]+)")
_BASE_TIME = re.compile(r"#\[BaseTime:\s*([-+0-9.eE]+)")
_YEAR_SECONDS = 365 * 24 * 3600.0

Interval = tuple[float, float, HdrHistogram]


def _java_date(seconds: float) -> str:
    """Like Java's `Date.toString()` ("Wed May 29 23:48:24 UTC 2024"), always in UTC
    so that the same run writes the same log on every machine. Readers ignore it."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%a %b %d %H:%M:%S UTC %Y")


def write_interval_log(
    stream: TextIO,
    start_unix: float,
    intervals: Sequence[Interval],
    comment: str = "",
) -> None:
    """Write a histogram log of `intervals` to `stream`.

    start_unix: wall-clock start of the run in seconds since the epoch; written as
    StartTime and BaseTime, rounded to the millisecond.
    intervals: (start in seconds from start_unix, length in seconds, histogram of
    latencies in nanoseconds), in time order; empty histograms are written too.
    comment: optional text written first, each of its lines after a "#"; the unit
    line (UNIT_LINE) follows it.
    """
    if not math.isfinite(start_unix):
        raise ValueError(f"start_unix must be a finite time, not {start_unix}")
    previous = -math.inf
    for start, length, _ in intervals:
        if not (math.isfinite(start) and math.isfinite(length)) or length < 0:
            raise ValueError(f"bad interval: start {start}, length {length}")
        if start < previous:
            raise ValueError(f"intervals out of order: {start} after {previous}")
        previous = start

    start_seconds = round(start_unix * 1000) / 1000
    lines = [f"#{line}" for line in comment.splitlines()]
    lines.append(UNIT_LINE)
    lines.append(f"#[Histogram log format version {FORMAT_VERSION}]")
    lines.append(
        f"#[StartTime: {start_seconds:.3f} (seconds since epoch), {_java_date(start_seconds)}]"
    )
    lines.append(f"#[BaseTime: {start_seconds:.3f} (seconds since epoch)]")
    lines.append(LEGEND)
    for start, length, histogram in intervals:
        payload: bytes = histogram.encode()
        max_value: int = histogram.get_max_value()
        lines.append(
            f"{start:.3f},{length:.3f},{max_value / MAX_VALUE_UNIT_RATIO:.3f},"
            f"{payload.decode('ascii')}"
        )
    stream.write("".join(f"{line}\n" for line in lines))


def read_interval_log(stream: TextIO) -> tuple[float | None, list[Interval]]:
    """(StartTime, intervals) from a histogram log, as `write_interval_log` takes them.

    Interval starts are seconds from StartTime, computed the way Java's
    `HistogramLogReader` does: timestamp + BaseTime - StartTime. Without a BaseTime
    line, timestamps more than a year before StartTime are taken as offsets from it,
    others as absolute. StartTime is None when the log has no StartTime line (then
    the starts are the timestamps as written). Lines with a "Tag=" belong to other
    series and are skipped, as Java's processor does without `-tag`.
    """
    start_time: float | None = None
    base_time: float | None = None
    intervals: list[Interval] = []
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if match := _START_TIME.match(line):
                start_time = float(match.group(1))
            elif match := _BASE_TIME.match(line):
                base_time = float(match.group(1))
            continue
        if line.startswith('"StartTimestamp"') or line.startswith("Tag="):
            continue
        fields = line.split(",")
        if len(fields) != 4:
            raise ValueError(f"line {number}: expected 4 comma-separated fields: {line!r}")
        timestamp, length = float(fields[0]), float(fields[1])
        if base_time is None:
            relative = start_time is not None and timestamp < start_time - _YEAR_SECONDS
            base_time = start_time if relative and start_time is not None else 0.0
        if start_time is None:
            offset = timestamp
        else:
            offset = timestamp + base_time - start_time
        histogram = HdrHistogram.decode(fields[3])
        intervals.append((offset, length, histogram))
    return start_time, intervals


def value_unit(text: str) -> str | None:
    """The unit a log's comment states for its values ("nanoseconds"; "microseconds" in
    a log written before schema 3 of the load result); None where it states none."""
    match = _UNIT.search(text)
    return match.group(1) if match else None

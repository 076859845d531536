"""clients.engine.histlog: HdrHistogram interval logs, read back by us and by HdrHistogram's
own Java implementation.

The Java check needs `java` (a JRE) and Debian's libhdrhistogram-java jar (.ci/run
installs both); it is skipped only when one of them is missing.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.run.server_process import ServerProcess
from bench.store import RunStore
from clients.engine.hist import from_values, merge, new_histogram
from clients.engine.histlog import (
    UNIT_LINE,
    Interval,
    read_interval_log,
    value_unit,
    write_interval_log,
)
from clients.result import LoadResult

START = 1_700_000_000.123456  # StartTime is written to the millisecond: ...000.123

# Latencies in nanoseconds; the third second saw no completed request at all.
SAMPLES = [
    [120_000, 135_000, 150_000, 150_000, 4_000_000, 250_000_000],
    [90_000] * 500 + [1_234_567_000],
    [],
    list(range(1_000, 10_000_001, 1_000)),
]
MAX_NS = 1_235_222_527  # the highest value of 1_234_567_000's bucket (3 digits)


def intervals() -> list[Interval]:
    return [(float(i), 1.0, from_values(values)) for i, values in enumerate(SAMPLES)]


def written(comment: str = "") -> str:
    out = io.StringIO()
    write_interval_log(out, START, intervals(), comment=comment)
    return out.getvalue()


def test_header_is_javas() -> None:
    lines = written(comment="sockbench test\nsecond line").splitlines()
    assert lines[:4] == [
        "#sockbench test",
        "#second line",
        "#Values in nanoseconds; Interval_Max in milliseconds (value / 1000000)",
        "#[Histogram log format version 1.3]",
    ]
    assert lines[2] == UNIT_LINE and value_unit("\n".join(lines)) == "nanoseconds"
    assert lines[4].startswith("#[StartTime: 1700000000.123 (seconds since epoch), ")
    assert lines[4].endswith(" 2023]")
    assert lines[5] == "#[BaseTime: 1700000000.123 (seconds since epoch)]"
    assert lines[6] == (
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    )
    rows = lines[7:]
    assert len(rows) == len(SAMPLES)
    start, length, max_ms, payload = rows[1].split(",")
    assert (start, length) == ("1.000", "1.000")
    # Interval_Max is milliseconds, Java's default: the max of 1_234_567_000 ns
    # (1_235_222_527 at 3 digits)
    assert max_ms == "1235.223"
    assert payload.startswith("HISTF")


def test_round_trip() -> None:
    start_time, read = read_interval_log(io.StringIO(written(comment="round trip")))
    assert start_time == pytest.approx(START, abs=0.0005)
    assert [(start, length) for start, length, _ in read] == [
        (float(i), 1.0) for i in range(len(SAMPLES))
    ]
    for (_, _, original), (_, _, histogram) in zip(intervals(), read, strict=True):
        assert histogram.get_total_count() == original.get_total_count()
        assert histogram.get_max_value() == original.get_max_value()
        assert histogram.get_value_at_percentile(99.0) == original.get_value_at_percentile(99.0)


def test_empty_interval_is_written_and_read_as_zero() -> None:
    out = io.StringIO()
    write_interval_log(out, START, [(0.0, 1.0, new_histogram()), (1.0, 1.0, new_histogram())])
    assert len([line for line in out.getvalue().splitlines() if line[0].isdigit()]) == 2
    _, read = read_interval_log(io.StringIO(out.getvalue()))
    assert [(start, histogram.get_total_count()) for start, _, histogram in read] == [
        (0.0, 0),
        (1.0, 0),
    ]
    _, read = read_interval_log(io.StringIO(written()))
    assert read[2][2].get_total_count() == 0


def test_start_time_to_the_millisecond() -> None:
    for start in (START, 1_700_000_000.0, 1_700_000_000.9996):
        out = io.StringIO()
        write_interval_log(out, start, [])
        start_time, read = read_interval_log(io.StringIO(out.getvalue()))
        assert read == []
        assert start_time is not None
        assert round(start_time * 1000) == round(start * 1000)


def test_rejects_intervals_out_of_order() -> None:
    with pytest.raises(ValueError, match="out of order"):
        write_interval_log(io.StringIO(), START, [(1.0, 1.0, new_histogram()), (0.0, 1.0, 0)])


def test_the_unit_a_log_states() -> None:
    old = "#sockbench.loadgen echo to 127.0.0.1:1, 10 connections; latency in microseconds\n"
    assert value_unit(old + "#[Histogram log format version 1.3]\n") == "microseconds"
    assert value_unit("#[Histogram log format version 1.3]\n") is None


def test_reads_absolute_timestamps_without_base_time() -> None:
    """A log written by Java with absolute timestamps (no BaseTime line)."""
    payload = from_values([100, 200]).encode().decode("ascii")
    text = (
        "#[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]\n"
        f"1700000002.500,1.000,0.200,{payload}\n"
        f"Tag=other,1700000003.500,1.000,0.200,{payload}\n"
    )
    start_time, read = read_interval_log(io.StringIO(text))
    assert start_time == 1_700_000_000.0
    assert [(start, length) for start, length, _ in read] == [(2.5, 1.0)]


# --- the same file read by HdrHistogram's Java implementation -------------------------


def hdrhistogram_jar() -> Path | None:
    """$HDRHISTOGRAM_JAR, else Debian's libhdrhistogram-java (/usr/share/java)."""
    if os.environ.get("HDRHISTOGRAM_JAR"):
        return Path(os.environ["HDRHISTOGRAM_JAR"])
    candidates = [Path("/usr/share/java/hdrhistogram.jar")]
    candidates += sorted(Path("/usr/share/java").glob("hdrhistogram-*.jar"), reverse=True)
    if shutil.which("dpkg"):
        listed = subprocess.run(
            ["dpkg", "-L", "libhdrhistogram-java"], capture_output=True, text=True, check=False
        ).stdout.split()
        candidates += [Path(line) for line in listed if line.endswith(".jar")]
    return next((path for path in candidates if path.is_file()), None)


def java_rows(path: Path) -> list[list[str]]:
    """The data rows of a CSV that HistogramLogProcessor wrote (no comments, no legend)."""
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return list(csv.reader(lines))[1:]


def test_java_histogram_log_processor_reads_it(tmp_path: Path) -> None:
    java = shutil.which("java")
    jar = hdrhistogram_jar()
    if java is None:
        pytest.skip("no `java` on PATH (apt-get install default-jre-headless)")
    if jar is None:
        pytest.skip("HdrHistogram's jar is missing (apt-get install libhdrhistogram-java)")

    log = tmp_path / "latency.hlog"
    log.write_text(written(comment="sockbench test"))
    out = tmp_path / "java"
    # -outputValueUnitRatio 1: our nanoseconds printed as they are
    command = [java, "-cp", str(jar), "org.HdrHistogram.HistogramLogProcessor"]
    command += ["-i", str(log), "-o", str(out), "-csv", "-outputValueUnitRatio", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Exception" not in done.stderr, done.stderr

    assert f"#[StartTime: {round(START, 3):.3f} " in out.read_text()
    # "Timestamp","Int_Count","Int_50%","Int_90%","Int_Max","Total_Count","Total_50%",
    # "Total_90%","Total_99%","Total_99.9%","Total_99.99%","Total_Max"
    rows = java_rows(out)
    assert len(rows) == len(SAMPLES)  # the empty interval too
    total = new_histogram()
    for (start, length, histogram), row in zip(intervals(), rows, strict=True):
        total.add(histogram)
        assert float(row[0]) == pytest.approx(start + length, abs=0.002)  # interval end
        assert int(row[1]) == len(SAMPLES[int(start)]) == histogram.get_total_count()
        assert float(row[4]) == histogram.get_max_value()
        assert int(row[5]) == total.get_total_count()
        assert float(row[8]) == total.get_value_at_percentile(99.0)
        assert float(row[11]) == total.get_max_value()

    # Overall distribution (.hgrm): the last line holds the max of all intervals.
    merged = merge(histogram.encode().decode("ascii") for _, _, histogram in intervals())
    distribution = java_rows(Path(f"{out}.hgrm"))
    value, _, count = distribution[-1][:3]
    assert int(count) == merged.get_total_count() == sum(map(len, SAMPLES))
    assert float(value) == merged.get_max_value() == MAX_NS
    p99 = next(float(row[0]) for row in distribution if float(row[1]) >= 0.99)
    assert p99 == pytest.approx(merged.get_value_at_percentile(99.0), rel=1e-3)

    # Java's default unit ratio (1000000) reads our nanoseconds as milliseconds: its
    # interval maxima are the log's Interval_Max column, to the microsecond
    default = tmp_path / "java-default"
    command = [java, "-cp", str(jar), "org.HdrHistogram.HistogramLogProcessor"]
    command += ["-i", str(log), "-o", str(default), "-csv"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "Exception" not in done.stderr, done.stderr
    written_max = [line.split(",")[2] for line in log.read_text().splitlines() if line[0].isdigit()]
    assert [row[4] for row in java_rows(default)] == written_max
    assert written_max[1] == f"{MAX_NS / 1e6:.3f}"


@pytest.mark.real
def test_java_reads_the_interval_log_of_a_real_load(tmp_path: Path) -> None:
    """The log clients.loadgen writes for a cell, read by HdrHistogram's Java tools."""
    java, jar = shutil.which("java"), hdrhistogram_jar()
    if java is None or jar is None:
        pytest.skip("needs java and libhdrhistogram-java (apt-get install both)")
    log = tmp_path / "cell.hlog"
    with ServerProcess(model="epoll") as server:
        done = subprocess.run(
            [sys.executable, "-m", "clients.loadgen", "--target", f"127.0.0.1:{server.port}",
             "--connections", "4", "--processes", "1", "--duration", "0.5", "--warmup", "0.1",
             "--interval-log", str(log), "--quiet"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = LoadResult.from_json(done.stdout)
    out = tmp_path / "java"
    command = [java, "-cp", str(jar), "org.HdrHistogram.HistogramLogProcessor"]
    command += ["-i", str(log), "-o", str(out), "-csv", "-outputValueUnitRatio", "1"]
    read = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert read.returncode == 0 and "Exception" not in read.stderr, read.stderr
    rows = java_rows(out)
    assert len(rows) == len(result.intervals) == 5  # 100 ms intervals of a 0.5 s window
    assert [int(row[1]) for row in rows] == [i.count for i in result.intervals]
    assert int(rows[-1][5]) == result.requests  # Java's running total: every reply
    assert result.window is not None
    # the window's start, rounded to the millisecond as the writer does (round half to
    # even of the milliseconds: a ".3f" of the float itself differs at ...x.5 ms)
    start_ms = round(result.window.start_unix * 1000) / 1000
    assert f"#[StartTime: {start_ms:.3f} " in out.read_text()


@pytest.mark.real
def test_a_rows_p50_is_the_p50_of_its_interval_log(tmp_path: Path) -> None:
    """A `bench run` cell: the row's p50 is the p50 of the histograms its interval log
    holds, read back in the unit the log states (nanoseconds), by our reader and by
    Java's HistogramLogProcessor, within the row's resolution (0.1 µs). Logs in whole
    microseconds (before schema 3 of the load result) held every figure up to 1 µs low."""
    code = cli.main(
        ["run", "--models", "epoll", "--connections", "10", "--repeats", "1", "--duration",
         "1", "--warmup", "0.2", "--protocol", "echo", "--payloads", "64", "--out",
         str(tmp_path), "--run-id", "t", "--no-report"]
    )  # fmt: skip
    assert code == 0
    [row] = RunStore.open(tmp_path / "t").rows()
    assert row.load is not None and row.load.requests > 0 and row.load.interval_log
    log = tmp_path / "t" / row.load.interval_log
    text = log.read_text()
    assert re.search(r"^#.*\bnanoseconds\b", text, re.MULTILINE), "the log states no unit"
    _, intervals_read = read_interval_log(io.StringIO(text))
    ours = merge(h.encode().decode("ascii") for _, _, h in intervals_read)
    assert ours.get_total_count() == row.load.latency.count
    assert ours.get_value_at_percentile(50.0) / 1000 == pytest.approx(row.load.latency.p50, abs=0.1)
    java, jar = shutil.which("java"), hdrhistogram_jar()
    if java is None or jar is None:
        pytest.skip("Java's reading needs java and libhdrhistogram-java (apt-get install both)")
    out = tmp_path / "java"
    command = [java, "-cp", str(jar), "org.HdrHistogram.HistogramLogProcessor"]
    # -outputValueUnitRatio 1000: nanoseconds printed as microseconds
    command += ["-i", str(log), "-o", str(out), "-csv", "-outputValueUnitRatio", "1000"]
    read = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert read.returncode == 0 and "Exception" not in read.stderr, read.stderr
    total = java_rows(out)[-1]  # Total_Count, Total_50% after the last interval
    assert int(total[5]) == row.load.latency.count
    assert float(total[6]) == pytest.approx(row.load.latency.p50, abs=0.1)

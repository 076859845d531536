"""bench.report.build and the modules it drives (frame, document, charts, plots, report_md,
report_html, pyperf_export) on a fixed run.

tests/data/small_run is a small but realistic run: blocking, threaded, epoll and a
skipped uvloop; echo, 64 B, 1/10/100 connections; epoll repeated 3 times with its 100-
connection cell client-bound (so suspect); blocking at 100 connections failed, at 10 it
served one connection and starved nine (their worst wait is the 5 s window). The rows
are curated (round numbers), in the current row schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pyperf
import pytest

from bench.record import Row
from bench.report.build import build_report
from bench.report.charts import style
from bench.report.document import format_cell
from bench.report.frame import METRICS, aggregate, load_frame, model_sort_key
from bench.report.pyperf_export import write_pyperf_suite
from bench.store import RunStore
from clients.result import RESOLUTION_TENTH_US
from tests.helpers import SMALL_RUN

CHART_STEMS = (
    "throughput",
    "latency_p50",
    "latency_p99",
    "worst_wait",
    "cpu_per_request",
    "core_per_request",
    "peak_rss",
    "error_share",
    "starved",
)
EPOLL_C10 = "epoll/echo/c10/p64/persistent/loadgen"


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return RunStore.open(SMALL_RUN).rows()


def md_table(report: str, title: str) -> dict[tuple[int, str], str]:
    """{(connections, model): cell text} of the first table under `### title`."""
    lines = report.split(f"### {title}\n", 1)[1].strip().splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for model, text in zip(header[1:], cells[1:], strict=True):
            table[(int(cells[0].replace(",", "")), model)] = text
    return table


# -- frames ---------------------------------------------------------------------------


def test_load_frame_flattens_rows(rows: list[Row]) -> None:
    df = load_frame(rows)
    assert len(df) == 18
    assert {
        "load.latency.p99",
        "load.latency_all.p99",
        "load.connections.worst_wait_max_us",
        "load.connections.starved",
        "server.peak_rss_bytes",
        "cell.model",
        "key",
        "errors_total",
        "error_share",
    } <= set(df.columns)
    failed = df[df["status"] == "failed"].iloc[0]
    assert math.isnan(failed["load.throughput_rps"]) and math.isnan(failed["errors_total"])
    threaded = df[df["key"] == "threaded/echo/c100/p64/persistent/loadgen"].iloc[0]
    assert threaded["errors_total"] == 40  # 37 resets + 3 timeouts


def test_load_frame_of_no_rows_has_the_columns() -> None:
    df = load_frame([])
    assert df.empty and "load.throughput_rps" in df.columns
    assert aggregate(df).empty


def test_aggregate_medians_ci_and_statuses(rows: list[Row]) -> None:
    cells = aggregate(load_frame(rows)).set_index("key")
    epoll = cells.loc[EPOLL_C10]
    assert epoll["status"] == "ok" and epoll["n"] == 3
    assert epoll["throughput.median"] == 42000  # repeats 41000, 43500, 42000
    assert epoll["p99.median"] == 402  # repeats 410, 388, 402: a median, never a mean
    # three repeats: the interval of the median is [min, max], covering 75%
    assert (epoll["throughput.ci_low"], epoll["throughput.ci_high"]) == (41000, 43500)
    assert epoll["throughput.coverage"] == 0.75
    assert epoll["verdict"] == "valid" and not epoll["p99.bound"]
    single = cells.loc["threaded/echo/c1/p64/persistent/loadgen"]
    assert single["n"] == 1 and math.isnan(single["throughput.ci_low"])
    assert cells.loc["blocking/echo/c100/p64/persistent/loadgen", "status"] == "failed"
    bound = cells.loc["epoll/echo/c100/p64/persistent/loadgen"]
    assert bound["status"] == "client-bound" and bound["verdict"] == "suspect"
    assert "waited for work 2%" in bound["reasons"]
    starving = cells.loc["blocking/echo/c10/p64/persistent/loadgen"]
    assert starving["worst_wait.median"] == 5_000_000 and starving["censored.median"] == 10
    assert cells.loc["uvloop/echo/c1/p64/persistent/loadgen", "status"] == "skipped"
    # Known models in the fixed order, connections ascending within a model.
    assert list(dict.fromkeys(cells["cell.model"])) == ["blocking", "threaded", "epoll", "uvloop"]


def test_error_share_divides_one_scope() -> None:
    rows = RunStore.open(SMALL_RUN).rows()
    df = load_frame(rows).set_index("key")
    threaded = df.loc["threaded/echo/c100/p64/persistent/loadgen"]
    # 40 errors in the window over 120,000 answered + 40 failed requests in it
    assert threaded["error_share"] == pytest.approx(100 * 40 / 120_040)


def _with_latency(row: Row, p50: float, p99: float, resolution: str) -> Row:
    assert row.load is not None and row.load.latency_all is not None
    latency_all = dataclasses.replace(row.load.latency_all, p50=p50, p99=p99)
    load = dataclasses.replace(row.load, latency_all=latency_all, latency_resolution=resolution)
    return dataclasses.replace(row, load=load)


def test_a_latency_measured_to_a_tenth_shows_it_where_it_is_small(rows: list[Row]) -> None:
    """Load result schema 3 keeps latency to 0.1 µs: a table shows that tenth below 100 µs
    (three significant digits, as the histograms keep), and never for a row of whole,
    truncated µs (schema 2, upgraded: rows/reference runs render as they always did)."""
    epoll = [r for r in rows if r.cell.key == EPOLL_C10]
    assert len(epoll) == 3 and {r.load.latency_resolution for r in epoll if r.load} == {
        "1us-truncated"
    }
    figures = [(24.9, 402.4), (25.3, 388.0), (25.1, 410.6)]
    fine = [_with_latency(r, *f, RESOLUTION_TENTH_US) for r, f in zip(epoll, figures, strict=True)]
    p50, p99 = (next(m for m in METRICS if m.name == name) for name in ("p50", "p99"))

    def texts(chosen: list[Row]) -> tuple[str, str]:
        cell = aggregate(load_frame(chosen)).iloc[0]
        return format_cell(cell, p50), format_cell(cell, p99)

    assert texts(fine) == ("25.1 (24.9–25.3)", "402 (388–411)")
    truncated = [
        _with_latency(r, int(a), int(b), "1us-truncated")
        for r, (a, b) in zip(epoll, figures, strict=True)
    ]
    assert texts(truncated) == ("25 (24–25)", "402 (388–410)")
    # one repeat of whole µs: the cell's median is no finer than its coarsest repeat
    assert texts([*fine[:2], truncated[2]]) == ("25 (25–25)", "402 (388–410)")


# -- report.md ------------------------------------------------------------------------


def test_report_header_names_the_machine_and_run(built: Path) -> None:
    report = (built / "report.md").read_text()
    assert report.startswith("# sockbench report: 20261129-201500-a1b2\n")
    for fact in (
        "AMD EPYC 7B13, 2 cores",
        "Linux 6.18.44",
        "CPython 3.11.7",
        "server CPUs 0, load generator CPUs 1",
        "2026-11-29T20:15:00+00:00",
        "3da6cc3be7ed",
        "python -m bench run --profile small",
        "somaxconn 4096",
    ):
        assert fact in report


def test_report_tables_show_medians_failures_and_markers(built: Path) -> None:
    report = (built / "report.md").read_text()
    throughput = md_table(report, "Throughput (req/s)")
    assert throughput[(10, "epoll")] == "42,000 (41,000–43,500)"
    assert throughput[(1, "threaded")] == "12,100"  # one repeat: no interval
    assert throughput[(100, "blocking")] == "failed"
    assert throughput[(100, "epoll")].endswith(" † §")  # client-bound, so suspect
    assert throughput[(10, "uvloop")] == "skipped"
    p99 = md_table(report, "p99 latency, all requests (µs)")
    assert p99[(10, "epoll")] == "402 (388–410)"
    assert md_table(report, "p99.9 latency, all requests (µs)")[(100, "blocking")] == "failed"
    assert md_table(report, "Errors (count, whole run)")[(100, "threaded")] == "40"
    assert md_table(report, "Starved connections (% of connections)")[(10, "blocking")] == "90.0"
    worst = md_table(report, "Longest wait of any connection (µs, capped at the window)")
    assert worst[(10, "blocking")] == "5,000,000"  # starved: the whole window
    assert md_table(report, "Unanswered at the end (requests)")[(10, "blocking")] == "10"
    assert md_table(report, "Server peak RSS (MiB)")[(100, "threaded")] == "20.0"
    cpu = md_table(report, "Server CPU per request, process view (µs)")
    assert cpu[(1, "epoll")].startswith("18.8 (")
    assert "† client-bound" in report and "§ suspect" in report  # the legend
    assert "covers the true median with probability 75% with 3 repeats" in report
    assert "timeout: 99 of 100 connections" in report  # the failure's reason, in Notes
    assert "## Verdicts: suspect cells" in report
    assert "## Significance" in report and "no difference between models can be tested" in report


def test_every_chart_is_written_as_png_and_svg(built: Path) -> None:
    for stem in CHART_STEMS:
        png = built / "charts" / f"{stem}_echo_p64.png"
        svg = built / "charts" / f"{stem}_echo_p64.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000
        assert b"<svg" in svg.read_bytes()[:2000]
        assert f"(charts/{stem}_echo_p64.png)" in (built / "report.md").read_text()


def test_report_html_is_self_contained(built: Path) -> None:
    html = (built / "report.html").read_text()
    assert "<table" in html and "42,000 (41,000–43,500)" in html
    assert '<td class="failed">failed</td>' in html
    assert html.count('src="data:image/svg+xml;base64,') == len(CHART_STEMS)
    assert 'src="charts/' not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_report_of_an_empty_run(tmp_path: Path) -> None:
    meta = json.loads((SMALL_RUN / "metadata.json").read_text())
    store = RunStore.create(tmp_path, "empty", meta)
    report = build_report(store.path).read_text()
    assert "Rows:** 0" in report
    assert not (store.path / "pyperf.json").exists()


# -- plots ------------------------------------------------------------------------------


def test_model_styles_are_distinct_and_never_the_failed_marker() -> None:
    styles = list(style.MODEL_STYLES.values())
    assert len({s.color for s in styles}) == len({s.marker for s in styles}) == len(styles)
    assert not {"x", "X"} & {s.marker for s in styles}
    assert style.model_style("mystery") == style.model_style("mystery")
    assert style.model_style("mystery").marker != "x"
    assert sorted(["zeta", "epoll", "blocking"], key=model_sort_key) == [
        "blocking",
        "epoll",
        "zeta",
    ]


# -- pyperf ---------------------------------------------------------------------------


def slower(rows: list[Row], factor: float) -> list[Row]:
    """The same rows with throughput / factor and latencies * factor."""
    out = []
    for row in rows:
        if not row.load:
            out.append(row)
            continue
        load = row.load
        latency = load.latency_all or load.latency
        slow = dataclasses.replace(
            latency, **{k: getattr(latency, k) * factor for k in ("p50", "p99", "p999")}
        )
        worst = load.connections.worst_wait_max_us or 0
        load = dataclasses.replace(
            load,
            throughput_rps=load.throughput_rps / factor,
            latency_all=slow,
            connections=dataclasses.replace(
                load.connections, worst_wait_max_us=round(worst * factor)
            ),
        )
        out.append(dataclasses.replace(row, load=load))
    return out


def test_pyperf_suite_values(built: Path) -> None:
    suite = pyperf.BenchmarkSuite.load(str(built / "pyperf.json"))
    names = suite.get_benchmark_names()
    assert EPOLL_C10 in names and f"{EPOLL_C10}:p99" in names and f"{EPOLL_C10}:p99.9" in names
    assert f"{EPOLL_C10}:worst-wait" in names
    assert not any(name.startswith(("blocking/echo/c100", "uvloop/")) for name in names)
    bench = suite.get_benchmark(EPOLL_C10)
    assert bench.get_nrun() == 3 and bench.get_unit() == "second"
    assert bench.median() == pytest.approx(1 / 42000)
    assert suite.get_benchmark(f"{EPOLL_C10}:p99").median() == pytest.approx(402e-6)
    assert suite.get_benchmark("threaded/echo/c1/p64/persistent/loadgen").get_nrun() == 1


def test_pyperf_compare_to_and_stats_accept_the_export(rows: list[Row], tmp_path: Path) -> None:
    meta = RunStore.open(SMALL_RUN).metadata
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_pyperf_suite(rows, meta, a)
    write_pyperf_suite(slower(rows, 1.04), meta, b)
    outputs = {}
    for args in (["compare_to", str(a), str(b)], ["stats", str(a)]):
        done = subprocess.run(
            [sys.executable, "-m", "pyperf", *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        outputs[args[0]] = done.stdout
    assert "1.04x slower" in outputs["compare_to"]
    assert EPOLL_C10 in outputs["stats"]


def test_pyperf_export_without_usable_rows_warns(rows: list[Row], tmp_path: Path) -> None:
    failed = [r for r in rows if r.status in ("failed", "skipped")]
    with pytest.warns(RuntimeWarning, match="not written"):
        write_pyperf_suite(failed, {}, tmp_path / "none.json")
    assert not (tmp_path / "none.json").exists()

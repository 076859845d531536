"""bench.analysis.verdict: each check on numbers, and the report's Significance section."""

from __future__ import annotations

import dataclasses

import pandas as pd

from bench.analysis.verdict import judge, non_stationary, verdict
from bench.report.document import significance_section
from clients.result import Client, Interval, Rate, Worker
from tests.helpers import load_result


def steady(n: int = 20, count: int = 1000, p99: int = 200) -> tuple[Interval, ...]:
    return tuple(Interval(round(i * 0.1, 1), count, p99) for i in range(n))


def test_a_clean_cell_is_valid() -> None:
    load = dataclasses.replace(load_result(throughput=20_000), intervals=steady())
    assert judge(load, busy_before=1.0) == ()
    assert verdict(()) == "valid"


def test_each_check_gives_its_reason() -> None:
    base = dataclasses.replace(load_result(throughput=20_000), intervals=steady())
    bound = dataclasses.replace(
        base,
        client=Client((Worker(99.0, 3.0, 1.0),), (1,), 100.0, True, ("worker 0 waited ...",)),
    )
    slow = dataclasses.replace(base, rate=Rate(5000.0, 4900.0, 4700.0))
    busy = base
    few = load_result(throughput=2_000)  # 4,000 requests: too few for p99.9
    cases = {
        "client-bound": judge(bound, None),
        "rate": judge(slow, None),
        "busy-machine": judge(busy, busy_before=48.0),
        "few-samples": judge(few, None),
        "restarted": judge(base, None, restarts=1),
    }
    for code, reasons in cases.items():
        assert [r.code for r in reasons] == [code], (code, reasons)
        assert verdict(reasons) == "suspect"
    assert "achieved 4,700 req/s of the 5,000 asked (94%" in cases["rate"][0].text
    assert "p99.9 from 4,000 requests" in cases["few-samples"][0].text
    assert cases["restarted"][0].text == (
        "1 server worker process died and was replaced during the cell"
    )
    # 95% of the asked rate is enough
    assert judge(dataclasses.replace(base, rate=Rate(5000.0, 5000.0, 4760.0)), None) == ()


def test_non_stationary_windows() -> None:
    assert non_stationary(steady()) is None
    assert non_stationary(steady(4)) is None  # too short to judge
    ramp = tuple(Interval(i / 10, 500 + 100 * i, 200) for i in range(20))
    assert "throughput went from" in (non_stationary(ramp) or "")
    # noise of the size healthy cells show (thirds within 25%) is not a trend
    noisy = tuple(Interval(i / 10, 1000 if i < 7 else 800, 200) for i in range(21))
    assert non_stationary(noisy) is None
    growing_tail = tuple(Interval(i / 10, 1000, 200 if i < 14 else 9000) for i in range(21))
    assert "p99 ranged from 200 to 9,000 us" in (non_stationary(growing_tail) or "")
    small_tail = tuple(Interval(i / 10, 1000, 20 if i < 14 else 70) for i in range(21))
    assert non_stationary(small_tail) is None  # 3.5x, but 50 us apart


def _frame(
    samples: dict[tuple[str, int], list[float]],
    client_bound: frozenset[tuple[str, int, int]] = frozenset(),  # (model, connections, repeat)
) -> pd.DataFrame:
    records = []
    for (model, connections), values in samples.items():
        for repeat, value in enumerate(values):
            bound = (model, connections, repeat) in client_bound
            records.append(
                {
                    "cell.model": model,
                    "cell.protocol": "echo",
                    "cell.payload": 64,
                    "cell.mode": "persistent",
                    "cell.driver": "loadgen",
                    "cell.backlog": 0,
                    "cell.work": "",
                    "cell.connections": connections,
                    "status": "client-bound" if bound else "ok",
                    "repeat": repeat,
                    "load.throughput_rps": value,
                }
            )
    return pd.DataFrame.from_records(records)


def test_significance_section_separates_signal_from_noise() -> None:
    frame = _frame(
        {
            ("epoll", 10): [150, 152, 149, 151, 153, 150],
            ("select", 10): [120, 121, 119, 122, 120, 118],  # clearly slower
            ("poll", 10): [119, 121, 120, 118, 122, 117],  # indistinguishable from select
        }
    )
    section = significance_section(frame, ["cell.protocol", "cell.payload"])
    assert section is not None
    [table] = section.tables
    verdicts = {row[1]: row[4] for row in table.rows}
    assert verdicts["epoll > select"] == "significant"
    assert verdicts["select > poll"].startswith("not significant")
    assert "Mann-Whitney" in section.paragraphs[0]


def test_significance_section_says_when_nothing_can_be_tested() -> None:
    frame = _frame({("epoll", 10): [150], ("select", 10): [120]})
    section = significance_section(frame, ["cell.protocol"])
    assert section is not None and not section.tables
    assert "no difference between models can be tested" in section.paragraphs[0]


def test_significance_section_marks_lower_bounds_and_does_not_test_them() -> None:
    # uvloop client-bound in all 6 repeats (as at 10 connections in the reference run),
    # poll in 1 of 6: their throughput is a lower bound, so their order is not known
    frame = _frame(
        {
            ("uvloop", 10): [190, 191, 192, 193, 194, 195],
            ("epoll", 10): [150, 152, 149, 151, 153, 150],
            ("select", 10): [120, 121, 119, 122, 120, 118],
            ("poll", 10): [100, 101, 99, 102, 100, 98],
        },
        client_bound=frozenset({("uvloop", 10, r) for r in range(6)} | {("poll", 10, 3)}),
    )
    section = significance_section(frame, ["cell.protocol", "cell.payload"])
    assert section is not None
    [table] = section.tables
    rows = {row[1]: row for row in table.rows}
    assert list(rows) == ["uvloop > epoll", "epoll > select", "select > poll"]  # all ranked
    assert rows["uvloop > epoll"][3:] == [
        "-",
        "lower bound: not tested (uvloop client-bound in 6 of 6 repeats)",
    ]
    assert rows["select > poll"][3:] == [
        "-",
        "lower bound: not tested (poll client-bound in 1 of 6 repeats)",
    ]
    # the one pair tested is Holm-corrected over itself alone: 2 / C(12, 6)
    assert rows["epoll > select"][3:] == [f"{2 / 924:.3f}", "significant"]
    assert "client-bound" in section.paragraphs[0] and "not tested" in section.paragraphs[0]

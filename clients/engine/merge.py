"""Merging the workers' results into one LoadResult, and the verdicts drawn from them.

Pure functions of the workers' results (clients.engine.worker.WorkerResult): their
HdrHistograms, counters and per-connection counts merged, the interval slices, whether
an open loop's backlog kept growing (`overloaded`), and whether the load generator was
the bottleneck (`judge_client`, docs/loadgen.md, "Saturation").
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import replace

from clients import saturation
from clients.diagnosis import diagnose
from clients.engine import hist
from clients.engine.config import LoadConfig
from clients.engine.histlog import Interval as HistInterval
from clients.engine.loops import INTERVAL_NS
from clients.engine.plan import WorkerPlan
from clients.engine.worker import WorkerResult
from clients.errors import ERROR_KINDS
from clients.result import (
    RESOLUTION_TENTH_US,
    Client,
    Connections,
    Interval,
    LoadResult,
    Params,
    Rate,
    Window,
    Worker,
)

OVERLOAD_MARGIN = 10  # requests: a backlog must grow by more than this to be a trend


def build_result(
    config: LoadConfig,
    plans: Sequence[WorkerPlan],
    results: Sequence[WorkerResult],
    slices: Sequence[HistInterval],
    window: Window | None = None,
    cores_busy: float | None = None,
    interval_log: str | None = None,
) -> LoadResult:
    """The workers' results as one LoadResult: histograms and counters merged, the
    verdicts drawn (overload, client-bound) and the diagnosis of a run without replies."""
    answered = hist.merge(r.latency for r in results)
    censored = hist.merge(r.censored for r in results)
    requests = sum(r.requests for r in results)
    duration = config.duration
    per_conn = [n for r in results for n in r.per_conn]
    worst = hist.spread([w for r in results for w in r.worst_wait_us])
    open_loop = config.rate is not None
    sent = [r.sent for r in results]
    # a closed loop sends the next request as a reply arrives: sent is achieved
    sent_rps = round(
        sum(n or 0 for n in sent) / duration if None not in sent else requests / duration, 1
    )
    send_lag = hist.latency(hist.merge(r.send_lag for r in results)) if open_loop else None
    ends = max((len(r.backlog) for r in results), default=0)
    backlog = [sum(r.backlog[i] for r in results if i < len(r.backlog)) for i in range(ends)]
    result = LoadResult(
        tool="sockbench.loadgen",
        params=params(config, len(plans)),
        window=window,
        requests=requests,
        throughput_rps=round(requests / duration, 1),
        bytes=sum(r.bytes for r in results),
        duration_s=duration,
        latency=hist.latency(answered),
        latency_all=hist.latency(answered, censored),
        latency_uncorrected=(
            hist.latency(hist.merge(r.latency_sent for r in results)) if open_loop else None
        ),
        send_lag=send_lag,
        connect=hist.connect_latency(hist.merge(r.connect for r in results)),
        errors={kind: sum(r.errors[kind] for r in results) for kind in ERROR_KINDS},
        errors_before={kind: sum(r.errors_before[kind] for r in results) for kind in ERROR_KINDS},
        connections=Connections(
            asked=config.connections,
            established=sum(r.established for r in results),
            starved=sum(r.starved for r in results),
            worst_wait_p50_us=worst["p50"],
            worst_wait_p99_us=worst["p99"],
            worst_wait_max_us=worst["max"],
        ),
        fairness=round(hist.jain_index(per_conn), 4),
        rate=Rate(
            asked=config.rate,
            sent=sent_rps,
            achieved=round(requests / duration, 1),
            overloaded=overloaded(backlog),
        ),
        client=judge_client(
            results,
            config.cpus or sorted(os.sched_getaffinity(0)),
            cores_busy,
            late=saturation.late(config.rate, sent_rps, send_lag.p50)
            if config.rate is not None and send_lag is not None
            else None,
        ),
        intervals=summarise_intervals(slices, backlog),
        interval_s=INTERVAL_NS / 1e9,
        histogram=hist.encode(answered),
        histogram_all=hist.encode(hist.merge([hist.encode(answered), hist.encode(censored)])),
        interval_log=interval_log,
        latency_resolution=RESOLUTION_TENTH_US,
    )
    sample = next((r.protocol_sample for r in results if r.protocol_sample), None)
    return replace(result, diagnosis=diagnose(result, sample))


def params(config: LoadConfig, processes: int) -> Params:
    """The run's parameters as the result records them (an echo run's replies are
    always compared exactly, and expect no status)."""
    http = config.protocol == "http"
    return Params(
        target=config.target,
        protocol=config.protocol,
        connections=config.connections,
        processes=processes,
        duration=config.duration,
        warmup=config.warmup,
        payload=config.payload,
        rate=config.rate,
        mode=config.mode,
        timeout=config.timeout,
        cpus=tuple(sorted(set(config.cpus))) if config.cpus else None,
        arrivals=config.arrivals,
        verify=config.verify if http else "exact",
        expect_status=config.expect_status if http else None,
        expect_body=config.expect_body,
    )


def summarise_intervals(
    slices: Sequence[HistInterval], backlog: Sequence[int] = ()
) -> tuple[Interval, ...]:
    """Count and p99 of each merged slice, with the backlog at its end where known."""
    return tuple(
        Interval(
            round(start, 3),
            int(histogram.get_total_count()),
            hist.percentiles_us(histogram, {"p99": 99.0})["p99"],
            backlog[i] if i < len(backlog) else None,
        )
        for i, (start, _length, histogram) in enumerate(slices)
    )


def overloaded(backlog: Sequence[int]) -> bool:
    """The backlog kept growing: its last third well above its first (twice, and by
    more than OVERLOAD_MARGIN requests, so that a backlog of 2 then 5 is not a trend),
    and the middle third between the two."""
    if len(backlog) < 6:
        return False
    third = len(backlog) // 3
    first, middle, last = (
        statistics.median(backlog[:third]),
        statistics.median(backlog[third:-third]),
        statistics.median(backlog[-third:]),
    )
    return last > 2 * first + OVERLOAD_MARGIN and first <= middle <= last


def interval_histograms(results: Sequence[WorkerResult], duration: float) -> list[HistInterval]:
    """(offset s, length s, merged histogram) per interval, for the interval log."""
    step = INTERVAL_NS / 1e9
    slices = max((len(r.intervals) for r in results), default=0)
    out = []
    for i in range(slices):
        histogram = hist.merge(r.intervals[i] for r in results if i < len(r.intervals))
        out.append((i * step, min(step, duration - i * step), histogram))
    return out


def judge_client(
    results: Sequence[WorkerResult],
    cores: Sequence[int],
    cores_busy: float | None,
    late: list[str] | None = None,
) -> Client:
    """Client-bound when a worker hardly waited for work (it was the bottleneck) or
    waited for a CPU (contended); in an open loop (`late` given), when it did not keep
    its schedule instead of by idleness. See docs/loadgen.md, "Saturation"."""
    workers = []
    for r in results:
        share = 100.0 / r.window_s if r.window_s > 0 else 0.0
        delayed = None if r.run_delay_s is None else round(r.run_delay_s * share, 1)
        workers.append(Worker(round(r.cpu_s * share, 1), round(r.wait_s * share, 1), delayed))
    reasons = saturation.reasons(workers, idle_rule=late is None) + (late or [])
    return Client(
        workers=tuple(workers),
        cores=tuple(sorted(set(cores))),
        cores_busy=None if cores_busy is None else round(cores_busy, 1),
        bound=bool(reasons),
        reasons=tuple(reasons),
    )

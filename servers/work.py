"""Server-side work per request, the same for every model.

`cpu:US` burns US microseconds of CPU per request answered; `wait:US` waits US
microseconds without CPU, the way each model would (a sleep in thread models, a timer
in event loops), by setting the protocol's `hold_s` for the model to honour.
`--inject-delay-ns` adds CPU work too, outside the cell key: it exists to test the
regression gate, and spins on the wall clock (`perf_counter_ns`, no system call), since
reading the thread's CPU clock is a system call that costs more than the finest step.
`--inject-work N` adds N iterations of a pure-Python loop per request instead: a fixed
amount of work, so that its cost in instructions (`bench cost`, under valgrind) does not
depend on how fast the clock runs. It loops over `repeat`, not `range`: past 256,
range's integers are allocated, and an iteration would cost twice as much. Alone, either
subclasses the protocol instead of wrapping it: the wrapper's own calls cost more than a
10% slowdown at 10 connections, which would hide the knob's finest steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from servers.protocol import PROTOCOLS, Limits, ServerProtocol, protocol_factory

KINDS = ("cpu", "wait")


@dataclass(frozen=True)
class Work:
    cpu_us: int = 0
    wait_us: int = 0
    inject_ns: int = 0  # --inject-delay-ns
    inject_work: int = 0  # --inject-work: loop iterations per request

    def __bool__(self) -> bool:
        return bool(self.cpu_us or self.wait_us or self.inject_ns or self.inject_work)

    @property
    def injected_only(self) -> bool:
        return bool(self.inject_ns or self.inject_work) and not (self.cpu_us or self.wait_us)


def parse_work(text: str) -> Work:
    """'cpu:100' or 'wait:1000' (microseconds per request); '' is no work."""
    if not text:
        return Work()
    kind, _, amount = text.partition(":")
    if kind not in KINDS or not amount.isdigit():
        raise ValueError(f"bad work {text!r}; expected cpu:US or wait:US, e.g. wait:1000")
    return Work(cpu_us=int(amount)) if kind == "cpu" else Work(wait_us=int(amount))


def spin(us: float) -> None:
    """Busy CPU, not sleep: the point is to occupy the core (and, in threads, the GIL).

    Timed on this thread's CPU clock, so a preempted server still does all its work."""
    end = time.thread_time_ns() + int(us * 1000)
    while time.thread_time_ns() < end:
        pass


class WorkingProtocol:
    """Wraps a protocol: after each feed, does the work owed for the requests answered."""

    def __init__(self, inner: ServerProtocol, work: Work) -> None:
        self.inner, self.work = inner, work
        self.hold_s = 0.0
        self._seen = 0

    closing = property(lambda self: self.inner.closing)
    error = property(lambda self: self.inner.error)
    answered = property(lambda self: self.inner.answered)

    def feed(self, data: bytes) -> bytes:
        return self._after(self.inner.feed(data))

    def eof(self) -> bytes:
        return self._after(self.inner.eof())

    def _after(self, reply: bytes) -> bytes:
        requests = self.inner.answered - self._seen
        self._seen = self.inner.answered
        if requests and self.work.cpu_us:
            spin(requests * self.work.cpu_us)
        if requests and self.work.inject_ns:
            end = time.perf_counter_ns() + requests * self.work.inject_ns
            while time.perf_counter_ns() < end:
                pass
        if requests and self.work.inject_work:
            for _ in repeat(None, requests * self.work.inject_work):
                pass
        self.hold_s = requests * self.work.wait_us / 1e6
        return reply


def with_work(
    make_protocol: Callable[[], ServerProtocol], work: Work
) -> Callable[[], ServerProtocol]:
    if not work:
        return make_protocol
    return lambda: WorkingProtocol(make_protocol(), work)


def injecting(cls: Any, ns: int, iterations: int = 0) -> Any:
    """`cls` whose feed spins `ns` nanoseconds, then loops `iterations` times, per request
    it answered: one frame more per feed, nothing per attribute read (the replies of eof,
    at most one, owe nothing)."""
    clock = time.perf_counter_ns
    inner_feed = cls.feed

    def feed(self: ServerProtocol, data: bytes) -> bytes:
        before = self.answered
        reply: bytes = inner_feed(self, data)
        if self.answered != before:
            owed = self.answered - before
            if ns:
                end = clock() + owed * ns
                while clock() < end:
                    pass
            if iterations:
                for _ in repeat(None, owed * iterations):
                    pass
        return reply

    return type(f"Injecting{cls.__name__}", (cls,), {"feed": feed})


def work_factory(protocol: str, limits: Limits, work: Work) -> Callable[[], ServerProtocol]:
    """The per-connection protocol constructor for `protocol` doing `work`."""
    if work.injected_only:
        fast = injecting(PROTOCOLS[protocol], work.inject_ns, work.inject_work)
        return lambda: fast(limits)
    return with_work(protocol_factory(protocol, limits), work)

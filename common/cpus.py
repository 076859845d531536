"""CPU lists as taskset and /sys/devices/system/cpu spell them: '0,2-3' -> (0, 2, 3)."""

from __future__ import annotations

from collections.abc import Iterable


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """'1', '0,2', '2-5' or '0,4-7' -> sorted CPU numbers; ValueError with a one-line reason."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise ValueError(f"bad CPU list {text!r}; expected e.g. 0 or 1-3 or 0,2") from None
    return tuple(sorted(cpus))


def format_cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(map(str, sorted(cpus)))

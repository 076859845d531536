"""The kinds of error both load generators count, each a key of a result's `errors`."""

from __future__ import annotations

import errno

# "other": a failure the driver cannot classify (only locust's driver meets those)
ERROR_KINDS = (
    "connect_refused",
    "connect_timeout",
    "reset",
    "timeout",
    "mismatch",
    "closed",
    "other",
)


def error_kind(exc: OSError) -> str:
    """The kind of a failure of an open connection."""
    if exc.errno == errno.ETIMEDOUT:
        return "timeout"  # the kernel gave up retransmitting
    return "reset"  # ECONNRESET, EPIPE and the like

"""The likely cause, in one line, of a run that got no verified reply, or replies
that were no replies of the protocol spoken (`LoadResult.diagnosis`).

A load generator sees bytes and silences, not the server, so every line names likely
causes and says so ("may", "seems"): the commonest is a server of the other protocol.
An HTTP server waits for the end of a header that echo frames never contain, and an
echo server reads "GET " as a frame length (about 1.2 GB), over its limit: it closes the
connection (or, with a larger limit, waits for that many bytes).

Sans-IO and driver-neutral: `diagnose` reads any `LoadResult` (an older one lacks the
`protocol` kind: 0) and, where the native load generator kept them, the first bytes
that were no reply of the protocol spoken (clients.engine.connections's `sample`).
"""

from __future__ import annotations

from clients.result import LoadResult

SHOWN = 32  # characters of a reply quoted in a diagnosis, escaped
_CONNECT = ("connect_refused", "connect_timeout")
_LOST = ("closed", "reset")

# what a server of the other protocol does with this protocol's requests
_SILENT = {
    "echo": "an HTTP server waits for a header end that echo frames never send",
    "http": 'an echo server reads "GET " as a frame length and waits for that many bytes',
}
_CLOSES = {
    "echo": "an HTTP server may close on a request it cannot parse",
    "http": 'an echo server reads "GET " as a frame length over its limit and closes',
}


def diagnose(result: LoadResult, sample: bytes | None = None) -> str | None:
    """One line naming the likely cause where no request was verified in the window, or
    where replies were not of the protocol spoken; None for a run that needs none.

    Errors count the whole run (`errors` and `errors_before`): a server that drops every
    connection at its first request does so in the warm-up."""
    protocol = result.params.protocol
    counted: dict[str, int] = {}
    for errors in (result.errors_before, result.errors):
        for kind, n in errors.items():
            counted[kind] = counted.get(kind, 0) + n
    if counted.get("protocol"):
        return _not_the_protocol(protocol, counted["protocol"], result.requests, sample)
    if result.requests:
        return None
    established = result.connections.established
    if established == 0:
        failed = _listed(counted, _CONNECT)
        return (
            f"no connection was established{f' ({failed})' if failed else ''}: "
            f"is a server listening on {result.params.target}?"
        )
    if mismatched := counted.get("mismatch", 0):
        expected = "(--expect-status, --expect-body)" if protocol == "http" else "(its bytes)"
        others = _listed(counted, tuple(k for k in counted if k != "mismatch"))
        return (
            f"{mismatched:,} mismatched replies: the server answered well-formed {protocol}, "
            f"not what was expected {expected}" + (f"; also {others}" if others else "")
        )
    unexplained = [k for k, n in counted.items() if n and k not in (*_CONNECT, *_LOST)]
    lost = sum(counted.get(k, 0) for k in _LOST)
    if lost and not unexplained:
        every = (
            "every connection"
            if established is None or lost >= established
            else f"{lost:,} of {established:,} connections"
        )
        return (
            f"the server closed {every} without a reply ({_listed(counted, _LOST)}): it may "
            f"not speak {protocol}{_hint(_CLOSES, protocol)}, or it drops this client"
        )
    if not unexplained or unexplained == ["timeout"]:
        timed = counted.get("timeout", 0)
        return (
            "no connection got a reply in the window"
            + (f" ({timed:,} timed out)" if timed else "")
            + f": the server may not speak {protocol}{_hint(_SILENT, protocol)}, or it is hung"
        )
    return "no request was answered; errors: " + _listed(counted, tuple(counted))


def _not_the_protocol(protocol: str, count: int, requests: int, sample: bytes | None) -> str:
    """Replies that cannot be replies of `protocol`: what they look like instead."""
    shown = f" ({show(sample)})" if sample else ""
    if requests:
        return (
            f"{count:,} replies were not {protocol}{shown}, beside {requests:,} verified "
            "ones: the server may break its protocol now and then"
        )
    http_like = sample is not None and sample.startswith(b"HTTP/")
    if protocol == "echo":
        if http_like:
            return (
                f"replies look like HTTP{shown}: the server seems to speak http; "
                "use --protocol http"
            )
        return (
            f"replies are not echo frames of the length sent{shown}: the server may speak "
            "another protocol (http? then use --protocol http)"
        )
    if protocol == "http" and http_like:
        return (
            f"replies start like HTTP but do not parse as HTTP/1.x{shown}: the server may "
            "speak another HTTP version"
        )
    if protocol == "http":
        return f"replies are not HTTP{shown}: is it an echo server? use --protocol echo"
    return f"replies are not {protocol}{shown}: the server may speak another protocol"


def show(sample: bytes) -> str:
    """The start of a reply, escaped and short, in backquotes: its first line, at most
    SHOWN characters once escaped ("..." where cut there)."""
    line = sample.split(b"\n", 1)[0].removesuffix(b"\r")
    text = ""
    for i in range(len(line)):
        piece = repr(line[i : i + 1])[2:-1]  # b'x' or b"'" without the quotes
        if len(text) + len(piece) > SHOWN:
            return f"`{text}...`"
        text += piece
    return f"`{text}`"


def _hint(hints: dict[str, str], protocol: str) -> str:
    return f" ({hints[protocol]})" if protocol in hints else ""


def _listed(counted: dict[str, int], kinds: tuple[str, ...]) -> str:
    return ", ".join(f"{counted[k]:,} {k}" for k in kinds if counted.get(k))


__all__ = ["SHOWN", "diagnose", "show"]

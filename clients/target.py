"""Target addresses, shared by both drivers: parsing, writing, and the loopback-only rule."""

from __future__ import annotations

import ipaddress


def split_target(target: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); ValueError with a one-line reason."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host:
        raise ValueError(f"target {target!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"target {target!r} has no valid port") from None
    if not 0 < port < 65536:
        raise ValueError(f"target port {port} is outside 1-65535")
    return host, port


def join_target(host: str, port: int) -> str:
    """(host, port) -> `HOST:PORT`, an IPv6 address in brackets: split_target's inverse."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Decided without a DNS lookup: a loopback address, or `localhost`."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name: we would have to resolve it to know

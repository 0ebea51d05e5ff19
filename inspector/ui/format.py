"""Small text formatters shared by the window's tables and read-outs (sizes, rates, durations, addresses).

Must not import: Qt.
Thread: any; pure.
"""

from __future__ import annotations


def size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"
    return f"{n:.0f} GB"


def rate(n: float) -> str:
    if n < 0.05:
        return "0"
    if n < 10:
        return f"{n:.1f}"
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def delay_ms(ns: int | None) -> str:
    if ns is None:
        return ""
    ms = ns / 1e6
    if abs(ms) < 0.05:
        return ""
    if abs(ms) < 10:
        return f"+{ms:.1f} ms"
    if abs(ms) < 10_000:
        return f"+{ms:.0f} ms"
    return f"+{ms / 1000:.1f} s"


def rel_time(ns: int) -> str:
    s = ns / 1e9
    return f"{s:.3f} s" if s < 1000 else f"{s:.1f} s"


def addr(a: tuple[str, int] | None) -> str:
    if a is None:
        return "?"
    host, port = a
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def short_addr(a: tuple[str, int] | None) -> str:
    """``:50312`` for a loopback address (the usual case: client and proxy on one machine), else :func:`addr`."""
    if a is not None and a[0] in LOOPBACK:
        return f":{a[1]}"
    return addr(a)


def bytes_literal(data: bytes) -> str:
    return repr(bytes(data))


def hex_string(data: bytes) -> str:
    return data.hex(" ")

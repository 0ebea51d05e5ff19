"""Event-loop selection: uvloop where it is installed (Linux, macOS), the standard loop elsewhere (Windows); and
:class:`Alarm`, how the shells meet a release time.

Role: one function the CLI, the in-process runner and tests use, so every entry point relays on the same loop; one
timer both shells (TCP, ``proxy.server``; UDP, ``proxy.udpserver``) use for their cores' ``RequestWakeup``.
Set ``SOCKSCOPE_LOOP=asyncio`` to force the standard loop (for comparisons).
Must not import: Qt, ``inspector``.
Thread: any; the loop it returns is then owned by the thread that runs it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 64 << 20


def new_event_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("SOCKSCOPE_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def tune_allocator() -> bool:
    """On glibc, keep freed payload buffers in the heap for the next read instead of giving them back to the OS.

    Every read becomes a fresh ``bytes`` of up to 1 MiB (``server.READ_SIZE``). glibc serves those from ``mmap`` or
    trims the heap top as soon as they are freed, so the next read faults its pages in again (and the kernel zeroes
    them): measured here, 11,000-14,000 page faults per 512 MiB relayed. With these thresholds (allocations under
    4 MiB from the heap, up to 64 MiB of free heap kept) they fall to about 2,000. Bulk throughput moved within noise
    (+1-2 % in proxybench); what it buys is a long-running proxy whose heap, once grown by a recording's backlog or
    a burst, is reused instead of faulted in again every time. Called once by the proxy's own process (never by the
    window, which embeds the engine in a process it does not own).
    Returns whether the allocator took the settings; a no-op elsewhere (musl, macOS, Windows).
    """
    if not sys.platform.startswith("linux") or os.environ.get("SOCKSCOPE_MALLOC", "").lower() == "default":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


TIMER_EARLY = 0.0015
"""Seconds before a release time the alarm starts watching the clock itself."""


class Alarm:
    """A wake-up at a monotonic time in nanoseconds, met within one turn of the loop.

    Event-loop timers fire up to ~1 ms late (millisecond resolution, and the loop's cached clock), so the timer is
    set :data:`TIMER_EARLY` ahead and the last stretch is covered by yielding to the loop (polling I/O once more)
    until the moment comes; then ``on_time(now)`` runs. Setting it again replaces the previous time.
    """

    __slots__ = ("_at", "_handle", "_loop", "_on_time")

    def __init__(self, loop: asyncio.AbstractEventLoop, on_time: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_time = on_time
        self._handle: asyncio.Handle | None = None
        self._at = 0

    def set(self, at_ns: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = at_ns
        delay = (at_ns - time.monotonic_ns()) / 1e9
        if delay > TIMER_EARLY:
            self._handle = self._loop.call_later(delay - TIMER_EARLY, self._fire)
        else:
            self._handle = self._loop.call_soon(self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        now = time.monotonic_ns()
        if now < self._at:
            self._handle = self._loop.call_soon(self._fire)  # still early: poll I/O once more, then look again
            return
        self._handle = None
        self._on_time(now)

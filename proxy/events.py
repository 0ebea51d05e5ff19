"""Events: the only way facts reach a relay core. Each is a frozen dataclass named as a past-tense fact.

Role: inputs of :meth:`proxy.relay.Relay.handle`. Time arrives *in* the event (``now``, monotonic ns), so the
core never reads a clock.
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: created on the engine's event-loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.model import Direction, Origin, Side


@dataclass(frozen=True, slots=True)
class Event:
    now: int
    """Monotonic time in nanoseconds at which the shell observed the fact."""


@dataclass(frozen=True, slots=True)
class ClientAccepted(Event):
    """The listener accepted a client; the relay should open its upstream."""


@dataclass(frozen=True, slots=True)
class UpstreamOpened(Event):
    server_addr: tuple[str, int]


@dataclass(frozen=True, slots=True)
class UpstreamFailed(Event):
    timed_out: bool
    refused: bool
    detail: str


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    side: Side
    data: bytes


@dataclass(frozen=True, slots=True)
class EofReceived(Event):
    """The side sent FIN: it will send nothing more but may still read."""

    side: Side


@dataclass(frozen=True, slots=True)
class ConnectionLost(Event):
    """The side's socket is gone without a clean FIN (reset, or an error)."""

    side: Side
    reset: bool
    detail: str


@dataclass(frozen=True, slots=True)
class WakeupFired(Event):
    """A wake-up the core asked for (``RequestWakeup``) is due."""


@dataclass(frozen=True, slots=True)
class DataInjected(Event):
    """Bytes to send into the connection in ``direction``; they enter the receive path like live data."""

    direction: Direction
    data: bytes
    origin: Origin = Origin.INJECTED


@dataclass(frozen=True, slots=True)
class CloseRequested(Event):
    """The user (or a fault) asked to end the connection: FIN both ways, or a reset."""

    reset: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ShutdownRequested(Event):
    """The proxy is stopping: forward what is pending, then close both sides cleanly."""

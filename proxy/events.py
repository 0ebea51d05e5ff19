"""Events: the only way facts reach a relay core. Each is a frozen dataclass named as a past-tense fact.

Role: inputs of :meth:`proxy.relay.Relay.handle`. Time arrives *in* the event (``now``, monotonic ns), so the
core never reads a clock.
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: created on the engine's event-loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.model import Direction, Origin, Side

if TYPE_CHECKING:
    from proxy.conditions import Conditions, Spike


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


@dataclass(frozen=True, slots=True)
class ConditionsChanged(Event):
    """New conditions for this connection; messages already scheduled keep their release time."""

    conditions: Conditions


@dataclass(frozen=True, slots=True)
class SpikeStarted(Event):
    """A one-shot lag spike starts now in ``direction``: it also delays what is queued and not yet released."""

    direction: Direction
    spike: Spike


@dataclass(frozen=True, slots=True)
class FaultArmed(Event):
    """Drop or duplicate the next ``count`` messages in ``direction``."""

    direction: Direction
    kind: str  # "drop" | "duplicate"
    count: int = 1


@dataclass(frozen=True, slots=True)
class HoldArmed(Event):
    """Hold the next ``count`` messages in ``direction`` for the user."""

    direction: Direction
    count: int = 1


@dataclass(frozen=True, slots=True)
class ReleaseRequested(Event):
    """Forward a held message, as it is or with ``data`` instead (edited)."""

    msg_id: int
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class DropRequested(Event):
    """Do not forward a held or scheduled message."""

    msg_id: int


@dataclass(frozen=True, slots=True)
class ReleaseAllRequested(Event):
    """Forward every held message of this connection."""


@dataclass(frozen=True, slots=True)
class ReadingPaused(Event):
    """The shell stopped (``paused``) or resumed reading ``side``: backpressure, an upstream still connecting, a
    read framed in slices. Bytes waiting for the rest of a frame meanwhile are not late because of the framing."""

    side: Side
    paused: bool


@dataclass(frozen=True, slots=True)
class FramingRequested(Event):
    """The user chose ``framing`` (a ``--framing`` name, or ``auto`` to infer again) for ``direction`` of this live
    connection: it applies from the next read; bytes waiting for the rest of a frame go on as they are first."""

    direction: Direction
    framing: str

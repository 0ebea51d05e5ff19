"""Events: the only way facts reach a relay core. Each is an immutable dataclass (``proxy.model.frozen``) named
as a past-tense fact.

Role: inputs of :meth:`proxy.relay.Relay.handle`. Time arrives *in* the event (``now``, monotonic ns), so the
core never reads a clock.
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: created on the engine's event-loop thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.model import Direction, Origin, Side, frozen

if TYPE_CHECKING:
    from proxy.conditions import Conditions, Spike


@frozen
class Event:
    now: int
    """Monotonic time in nanoseconds at which the shell observed the fact."""


@frozen
class ClientAccepted(Event):
    """The listener accepted a client; the relay should open its upstream."""


@frozen
class UpstreamOpened(Event):
    server_addr: tuple[str, int]


@frozen
class UpstreamFailed(Event):
    timed_out: bool
    refused: bool
    detail: str


@frozen
class DataReceived(Event):
    side: Side
    data: bytes


@frozen
class EofReceived(Event):
    """The side sent FIN: it will send nothing more but may still read."""

    side: Side


@frozen
class ConnectionLost(Event):
    """The side's socket is gone without a clean FIN (reset, or an error)."""

    side: Side
    reset: bool
    detail: str


@frozen
class WakeupFired(Event):
    """A wake-up the core asked for (``RequestWakeup``) is due."""


@frozen
class DataInjected(Event):
    """Bytes to send into the connection in ``direction``; they enter the receive path like live data."""

    direction: Direction
    data: bytes
    origin: Origin = Origin.INJECTED


@frozen
class CloseRequested(Event):
    """The user (or a fault) asked to end the connection: FIN both ways, or a reset."""

    reset: bool
    detail: str = ""


@frozen
class ShutdownRequested(Event):
    """The proxy is stopping: forward what is pending, then close both sides cleanly."""


@frozen
class ConditionsChanged(Event):
    """New conditions for this connection; messages already scheduled keep their release time."""

    conditions: Conditions


@frozen
class SpikeStarted(Event):
    """A one-shot lag spike starts now in ``direction``: it also delays what is queued and not yet released."""

    direction: Direction
    spike: Spike


@frozen
class FaultArmed(Event):
    """Drop or duplicate the next ``count`` messages in ``direction``."""

    direction: Direction
    kind: str  # "drop" | "duplicate"
    count: int = 1


@frozen
class HoldArmed(Event):
    """Hold the next ``count`` messages in ``direction`` for the user."""

    direction: Direction
    count: int = 1


@frozen
class ReleaseRequested(Event):
    """Forward a held message, as it is or with ``data`` instead (edited)."""

    msg_id: int
    data: bytes | None = None


@frozen
class DropRequested(Event):
    """Do not forward a held or scheduled message."""

    msg_id: int


@frozen
class ReleaseAllRequested(Event):
    """Forward every held message of this connection."""


@frozen
class ReadingPaused(Event):
    """The shell stopped (``paused``) or resumed reading ``side``: backpressure, an upstream still connecting, a
    read framed in slices. Bytes waiting for the rest of a frame meanwhile are not late because of the framing."""

    side: Side
    paused: bool


@frozen
class FramingRequested(Event):
    """The user chose ``framing`` (a ``--framing`` name, or ``auto`` to infer again) for ``direction`` of this live
    connection: it applies from the next read; bytes waiting for the rest of a frame go on as they are first."""

    direction: Direction
    framing: str

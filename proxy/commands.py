"""Commands: what a relay core asks its shell to do. Each is a frozen dataclass named as an imperative.

Role: outputs of :meth:`proxy.relay.Relay.handle`; the asyncio shell (``proxy.server``) executes them in order.
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: created and executed on the engine's event-loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.model import Record, Side


@dataclass(frozen=True, slots=True)
class Command:
    pass


@dataclass(frozen=True, slots=True)
class OpenUpstream(Command):
    """Connect to the target; answer with ``UpstreamOpened`` or ``UpstreamFailed``."""


@dataclass(frozen=True, slots=True)
class SendData(Command):
    side: Side
    data: bytes


@dataclass(frozen=True, slots=True)
class HalfClose(Command):
    """Send FIN to ``side`` once everything written to it so far has been flushed."""

    side: Side


@dataclass(frozen=True, slots=True)
class CloseConnection(Command):
    """Close both sockets: flush and FIN, or reset (RST, via SO_LINGER 0) when ``reset``."""

    reset: bool


@dataclass(frozen=True, slots=True)
class ResetSide(Command):
    """Reset one side's socket now (RST), dropping anything unsent to it."""

    side: Side


@dataclass(frozen=True, slots=True)
class RequestWakeup(Command):
    """Deliver a ``WakeupFired`` at monotonic time ``at`` (ns). A later request replaces an earlier one."""

    at: int


@dataclass(frozen=True, slots=True)
class Publish(Command):
    """Hand a record to the subscribers (printer, control endpoint, recorder)."""

    record: Record

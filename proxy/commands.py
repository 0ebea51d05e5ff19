"""Commands: what a relay core asks its shell to do. Each is an immutable dataclass (``proxy.model.frozen``)
named as an imperative.

Role: outputs of :meth:`proxy.relay.Relay.handle`; the asyncio shell (``proxy.server``) executes them in order.
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: created and executed on the engine's event-loop thread.
"""

from __future__ import annotations

from proxy.model import Message, Record, Side, frozen


@frozen
class Command:
    pass


@frozen
class OpenUpstream(Command):
    """Connect to the target; answer with ``UpstreamOpened`` or ``UpstreamFailed``."""


@frozen
class SendData(Command):
    side: Side
    data: bytes


@frozen
class HalfClose(Command):
    """Send FIN to ``side`` once everything written to it so far has been flushed."""

    side: Side


@frozen
class CloseConnection(Command):
    """Close both sockets: flush and FIN, or reset (RST, via SO_LINGER 0) when ``reset``."""

    reset: bool


@frozen
class ResetSide(Command):
    """Reset one side's socket now (RST), dropping anything unsent to it."""

    side: Side


@frozen
class RequestWakeup(Command):
    """Deliver a ``WakeupFired`` at monotonic time ``at`` (ns). A later request replaces an earlier one."""

    at: int


@frozen
class Publish(Command):
    """Hand a record to the subscribers (printer, control endpoint, recorder)."""

    record: Record


@frozen
class Intercept(Command):
    """Hand a message just held for the addons (``modifies = True``, see ``proxy.addonhost``) to them; their
    decision comes back as a release (as it is, edited, later) or a drop. Follows the message's ``Publish``."""

    record: Message

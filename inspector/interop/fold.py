"""Fold a record stream into what was delivered: each message once, in final form, when its fate is known.

Role: a session holds ``Message`` records (published when framed) and later ``MessageUpdated`` records
(released, edited, dropped, discarded). Exporters want one final message per id: the bytes its destination
actually received (edited bytes included) and the time they left (the ``FORWARDED`` update's release time).
:class:`MessageFolder` does that with memory bounded by the messages still held or scheduled.

Must not import: PySide6, scapy, ``inspector.ui``.
Thread: any; one folder belongs to the thread that feeds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

from proxy.model import DelayReason, Message, MessageState, MessageUpdated, Origin

__all__ = ["Final_", "MessageFolder"]

_FORWARDED: Final = MessageState.FORWARDED
_FINAL_STATES: Final = frozenset({MessageState.FORWARDED, MessageState.DROPPED, MessageState.DISCARDED})


@dataclass(slots=True)
class Final_:
    """One message's outcome: ``message`` has the final state, data, release time and delays."""

    message: Message
    held: bool
    """The message was held for the user at some point (hold rule or "hold next")."""
    original: bytes | None = None
    """The bytes as captured, when the user edited them."""


class _Pending:
    __slots__ = ("held", "message", "original")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.held = message.state is MessageState.HELD
        self.original: bytes | None = None


class MessageFolder:
    """``feed`` a ``Message`` or ``MessageUpdated``; get back the messages whose fate became known."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def message(self, m: Message) -> Final_ | None:
        if m.state in _FINAL_STATES:
            held = bool(m.delays) and any(r is DelayReason.HOLD for r, _ in m.delays)
            return Final_(m, held)
        self._pending[m.id] = _Pending(m)
        return None

    def update(self, u: MessageUpdated) -> Final_ | None:
        p = self._pending.get(u.msg_id)
        if p is None:
            return None  # an update for a message recorded before this file started: nothing to show
        m = p.message
        if u.data is not None:
            if p.original is None:
                p.original = m.data
            m = replace(m, data=u.data, origin=Origin.EDITED)
        if u.state is MessageState.HELD:
            p.held = True
        if u.state in _FINAL_STATES:
            del self._pending[u.msg_id]
            release = u.release_ns if u.release_ns is not None else (u.time_ns if u.state is _FORWARDED else None)
            m = replace(m, state=u.state, release_ns=release, delays=u.delays or m.delays)
            held = p.held or any(r is DelayReason.HOLD for r, _ in m.delays)
            return Final_(m, held, p.original)
        p.message = replace(m, state=u.state, release_ns=u.release_ns if u.release_ns is not None else m.release_ns,
                            delays=u.delays or m.delays)
        return None

    def drain(self) -> Iterator[Final_]:
        """The messages still undecided at the end (held or scheduled when recording stopped), in id order."""
        for mid in sorted(self._pending):
            p = self._pending[mid]
            yield Final_(p.message, p.held, p.original)
        self._pending.clear()

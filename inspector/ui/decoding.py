"""The window's use of ``inspector.decode``: summaries for the table, views for the detail pane, encode on edit.

Role: one place that turns a store row into a decoded :class:`~inspector.decode.View`, with "decode as" per
connection/direction kept in the registry. A decoder never raises into Qt: the registry returns an error view.
Every decode here runs on the GUI thread with a deadline (:data:`SUMMARY_BUDGET_NS` for a table row,
:data:`VIEW_BUDGET_NS` for the detail pane, the editor and exports), so a hostile message never freezes the
window: past it the decode gives up, and the row or pane says so (``⚠ gave up decoding after N ms: …``) next to
the bytes in hex. A summary, given up or not, is cached with the row, so it costs its budget once.
Must not import: Qt (so it can be tested and benchmarked alone).
Thread: GUI thread.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from inspector.decode import (
    DecodeContext,
    View,
    default_registry,
    gave_up,
    gave_up_summary,
    set_deadline,
    with_deadline,
)
from inspector.store import MessageStore
from proxy.model import Direction

if TYPE_CHECKING:
    from inspector.decode import DecoderRegistry

SUMMARY_BUDGET_NS = 50_000_000
"""Most time one table row's summary may take to decode: enough for a 100 KB pickle of plain values, and a
screenful of rows that all need it costs a couple of seconds once (summaries are cached)."""
VIEW_BUDGET_NS = 250_000_000
"""Most time the full view of one message may take (the detail pane, the editor, an export of the table)."""


class Decoding:
    def __init__(self, store: MessageStore, registry: DecoderRegistry | None = None) -> None:
        """``registry`` None: the process's (:func:`~inspector.decode.default_registry`), taken on first use (the
        decoders cost ~60 ms the window's first frame need not wait for)."""
        self.store = store
        self._registry = registry
        self.summary_budget_ns = SUMMARY_BUDGET_NS
        self.view_budget_ns = VIEW_BUDGET_NS
        self._own: dict[int, tuple[DecodeContext, DecodeContext]] = {}

    @property
    def registry(self) -> DecoderRegistry:
        reg = self._registry
        if reg is None:
            reg = self._registry = default_registry()
        return reg

    def names(self) -> list[str]:
        from inspector.decode import AUTO

        return [AUTO, *self.registry]

    def view(self, row: int, decoder: str | None = None, *, detail: bool = True) -> View:
        """The row's message (a store row, or a re-framed message's handle) decoded within :attr:`view_budget_ns`;
        a view that gave up has a summary saying so (its text is the hex dump, as for any failed decode)."""
        s = self.store
        if s.payload_evicted(row):
            from inspector.decode import error_view

            return error_view("store", b"", f"payload evicted (memory cap); {s.size(row)} bytes were captured")
        msg = s.message(row)
        budget = self.view_budget_ns
        view = self.registry.decode_message(msg, decoder, detail=detail, deadline_ns=time.monotonic_ns() + budget)
        if gave_up(view):
            view = replace(view, summary=gave_up_summary(view, msg.data, budget))
        return view

    def summary(self, row: int) -> str:
        return self.store.summary(row, self._make_summary)

    def _make_summary(self, row: int) -> str:
        s = self.store
        if s.payload_evicted(row):
            return "(payload evicted)"
        data = s.payload(row)
        if not data:
            return "(empty)"
        shared = self.registry.context_for(s.conn_of(row), s.direction(row), detail=False)
        # A private copy of the registry's (shared, cached) context, whose deadline is set in place for each
        # row: building a context per row would cost more than a small message's decode.
        own = self._own.get(id(shared))
        if own is None or own[0] is not shared:
            if len(self._own) >= 4096:
                self._own.clear()
            own = self._own[id(shared)] = (shared, with_deadline(shared, None))
        ctx = own[1]
        budget = self.summary_budget_ns
        set_deadline(ctx, time.monotonic_ns() + budget)
        view = self.registry.decode(data, ctx)
        if view.error is not None and gave_up(view):
            return gave_up_summary(view, data, budget)
        return view.summary

    def encoders(self) -> list[str]:
        """The decoders that can turn edited text back into bytes (for editing and composing)."""
        return [name for name, d in self.registry.items() if callable(getattr(d, "encode", None))]

    # -- "decode as" and struct layouts, per connection and direction ----------------------------------------
    # Every change forgets the store's cached summaries (they are keyed by row only), so the table, the held
    # queue and anything else that asks ``summary()`` decode again with the new choice.

    def decode_as(self, name: str | None, conn_id: int | None = None, direction: Direction | None = None) -> None:
        """Use decoder ``name`` (None/"auto": automatic) for a connection and direction. ``direction`` None
        means both directions: a per-direction choice made earlier for that connection is removed, since it
        would otherwise win over the connection-wide one."""
        reg = self.registry
        if direction is None and conn_id is not None:
            for d in Direction:
                reg.decode_as.set(None, conn_id, d)
        reg.set_decode_as(name, conn_id, direction)
        self.store.invalidate_summaries()

    def current_decode_as(self, conn_id: int | None, direction: Direction | None) -> str:
        from inspector.decode import AUTO

        return self.registry.decode_as.lookup(conn_id, direction) or AUTO

    def set_struct_format(self, spec: str | None, conn_id: int | None = None,
                          direction: Direction | None = None) -> None:
        """The ``struct`` decoder's layout (``<Hff12sB player_id x y name state``) for a connection and
        direction (None: both). Raises ``ValueError`` with a readable message for a bad layout."""
        spec = (spec or "").strip() or None
        if spec is not None:
            from inspector.decode import parse_layout

            parse_layout(spec)
        reg = self.registry
        if direction is None and conn_id is not None:
            for d in Direction:
                reg.struct_formats.set(None, conn_id, d)
        reg.set_struct_format(spec, conn_id, direction)
        self.store.invalidate_summaries()

    def current_struct_format(self, conn_id: int | None, direction: Direction | None) -> str:
        return self.registry.struct_formats.lookup(conn_id, direction) or ""

    def preview(self, data: bytes, name: str, struct_format: str, conn_id: int | None,
                direction: Direction | None) -> View:
        """``data`` decoded as it would be with a choice not applied yet (the decode-as dialog's preview)."""
        from inspector.decode import AUTO

        ctx = replace(self.registry.context_for(conn_id, direction), decode_as=None if name == AUTO else name,
                      struct_format=struct_format.strip() or None,
                      deadline_ns=time.monotonic_ns() + self.view_budget_ns)
        view = self.registry.decode(data, ctx)
        if gave_up(view):
            view = replace(view, summary=gave_up_summary(view, data, self.view_budget_ns))
        return view

    def encode(self, decoder: str, edited: str, conn_id: int | None, direction: Direction | None) -> bytes:
        """Raises ``inspector.decode.EncodeError`` with a readable message."""
        return self.registry.encode(decoder, edited, self.registry.context_for(conn_id, direction))

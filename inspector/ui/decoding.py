"""The window's use of ``inspector.decode``: summaries for the table, views for the detail pane, encode on edit.

Role: one place that turns a store row into a decoded :class:`~inspector.decode.View`, with "decode as" per
connection/direction kept in the registry. A decoder never raises into Qt: the registry returns an error view.
Must not import: Qt (so it can be tested and benchmarked alone).
Thread: GUI thread.
"""

from __future__ import annotations

from inspector.decode import AUTO, DecoderRegistry, View, default_registry
from inspector.store import MessageStore
from proxy.model import Direction


class Decoding:
    def __init__(self, store: MessageStore, registry: DecoderRegistry | None = None) -> None:
        self.store = store
        self.registry = registry or default_registry()

    def names(self) -> list[str]:
        return [AUTO, *self.registry]

    def view(self, row: int, decoder: str | None = None) -> View:
        s = self.store
        if s.payload_evicted(row):
            from inspector.decode import error_view

            return error_view("store", b"", f"payload evicted (memory cap); {s.sizes[row]} bytes were captured")
        return self.registry.decode_message(s.message(row), decoder)

    def summary(self, row: int) -> str:
        return self.store.summary(row, self._make_summary)

    def _make_summary(self, row: int) -> str:
        s = self.store
        if s.payload_evicted(row):
            return "(payload evicted)"
        data = s.payload(row)
        if not data:
            return "(empty)"
        ctx = self.registry.context_for(s.conn_ids[row], Direction(s.dirs[row]))
        return self.registry.decode(data, ctx).summary

    def decode_as(self, name: str | None, conn_id: int | None = None, direction: Direction | None = None) -> None:
        self.registry.set_decode_as(name, conn_id, direction)
        self.store.invalidate_summaries()

    def current_decode_as(self, conn_id: int | None, direction: Direction | None) -> str:
        return self.registry.decode_as.lookup(conn_id, direction) or AUTO

    def encode(self, decoder: str, edited: str, conn_id: int, direction: Direction) -> bytes:
        """Raises ``inspector.decode.EncodeError`` with a readable message."""
        return self.registry.encode(decoder, edited, self.registry.context_for(conn_id, direction))

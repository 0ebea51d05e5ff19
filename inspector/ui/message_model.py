"""The message table's model: a thin adapter over the store's visible rows (Wireshark's packet list).

Role: ``rowCount`` is the number of visible rows already announced to the view; :meth:`on_applied` announces a
whole batch with one ``beginInsertRows`` and changed rows with one ``dataChanged`` over their span. Text is made
lazily in ``data()`` (only for rows on screen) and decoded summaries are cached in the store.
Must not import: ``inspector.bridge`` (it only receives :class:`~inspector.store.ApplyResult`).
Thread: GUI thread.
"""

from __future__ import annotations

import enum
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont

from inspector.store import ApplyResult, MessageStore
from inspector.ui import format as fmt
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.table_base import HeaderedTableModel
from proxy.model import Clock, Direction, MessageState, Origin

Index = QModelIndex | QPersistentModelIndex
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
"""``data(index, ROW_ROLE)`` is the store row behind a table row."""


class Column(enum.IntEnum):
    NUMBER = 0
    TIME = 1
    CONN = 2
    DIR = 3
    SIZE = 4
    SUMMARY = 5
    DELAY = 6
    STATE = 7


HEADERS = ("#", "time", "conn", "dir", "size", "summary", "+delay", "state")
TOOLTIPS = (
    "message number (engine id)", "arrival time (relative to the first message, or wall clock)",
    "connection", "direction: → client to server, ← server to client", "payload bytes",
    "decoded one-line summary", "delay the proxy added (latency, jitter, bandwidth, hold ...)",
    "what the proxy did with the message",
)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignCenter
_STATE_TEXT = {
    MessageState.FORWARDED: "", MessageState.SCHEDULED: "scheduled", MessageState.HELD: "HELD",
    MessageState.DROPPED: "dropped", MessageState.DISCARDED: "discarded",
}


def added_delay_text(s: MessageStore, row: int) -> str:
    """The delay sockscope added on purpose (latency, jitter, a hold, waiting behind one ...), as ``+200 ms``; empty
    when nothing was added: the fraction of a millisecond a message spends passing through is not a delay."""
    if not s.delays(row):
        return ""
    return fmt.delay_ms(s.added_delay_ns(row))


class MessageTableModel(HeaderedTableModel):
    HEADERS = HEADERS
    TOOLTIPS = TOOLTIPS

    def __init__(self, store: MessageStore, decoding: Decoding, parent: Any = None) -> None:
        super().__init__(parent)
        self.store = store
        self.decoding = decoding
        self._count = store.visible_count
        self.wall_clock = False
        self.clock: Clock | None = None
        self.colours = palette.current()
        self._strike = QFont()
        self._strike.setStrikeOut(True)
        self._bold = QFont()
        self._bold.setBold(True)

    # ------------------------------------------------------------------------------------------ Qt API

    def row_total(self) -> int:
        return self._count

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        pos, col = index.row(), index.column()
        if not 0 <= pos < self._count or not 0 <= col < len(HEADERS):
            return None
        s = self.store
        row = s.visible[pos]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ForegroundRole:
            st = s.state(row)
            if st in (MessageState.DROPPED, MessageState.DISCARDED):
                return self.colours.dropped
            if st is MessageState.HELD and col in (Column.STATE, Column.DELAY):
                return self.colours.held
            if col == Column.DIR:
                return self.colours.direction(Direction(s.dirs[row]))
            if col == Column.STATE and st is MessageState.SCHEDULED:
                return self.colours.muted
            return None
        if role == Qt.ItemDataRole.BackgroundRole:
            st = s.state(row)
            if st is MessageState.HELD:
                return self.colours.held_bg
            if s.origin(row) is not Origin.LIVE:
                return self.colours.special_bg
            return self.colours.direction_bg(Direction(s.dirs[row]))
        if role == Qt.ItemDataRole.FontRole:
            st = s.state(row)
            if st in (MessageState.DROPPED, MessageState.DISCARDED):
                return self._strike
            if st is MessageState.HELD and col == Column.STATE:
                return self._bold
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col in (Column.NUMBER, Column.TIME, Column.SIZE, Column.DELAY):
                return _RIGHT
            if col in (Column.DIR, Column.CONN):
                return _CENTER
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == Column.DELAY:
                parts = [f"{reason.value} {ns / 1e6:.1f} ms" for reason, ns in s.delays(row)]
                return ", ".join(parts) or None
            if col == Column.SUMMARY:
                return self.decoding.summary(row)
            if col == Column.STATE:
                o = s.origin(row)
                return f"{s.state(row).value}, origin {o.value}"
            return None
        return None

    def _text(self, row: int, col: int) -> str:
        s = self.store
        if col == Column.NUMBER:
            return str(s.ids[row])
        if col == Column.TIME:
            t = s.arrivals[row]
            if self.wall_clock and self.clock is not None:
                import datetime

                wall = datetime.datetime.fromtimestamp(self.clock.to_wall_ns(t) / 1e9)
                return wall.strftime("%H:%M:%S.%f")[:-3]
            return fmt.rel_time(t - (s.t0_ns or t))
        if col == Column.CONN:
            return f"#{s.conn_ids[row]}"
        if col == Column.DIR:
            return Direction(s.dirs[row]).arrow
        if col == Column.SIZE:
            return str(s.sizes[row])
        if col == Column.SUMMARY:
            return self.decoding.summary(row)
        if col == Column.DELAY:
            st = s.state(row)
            if st is MessageState.HELD:
                return "…held"
            return added_delay_text(s, row)
        if col == Column.STATE:
            text = _STATE_TEXT[s.state(row)]
            o = s.origin(row)
            if o is not Origin.LIVE:
                text = f"{o.value} {text}".strip()
            return text
        return ""

    # ------------------------------------------------------------------------------------------ store events

    def on_applied(self, result: ApplyResult) -> None:
        """Announce one batch: one insert for the new visible rows, one dataChanged for changed ones."""
        n = self.store.visible_count
        if n > self._count:
            self.beginInsertRows(QModelIndex(), self._count, n - 1)
            self._count = n
            self.endInsertRows()
        elif n < self._count:  # should not happen (append-only); recover rather than lie to the view
            self.reset()
            return
        if result.changed_rows:
            positions = [p for r in result.changed_rows if (p := self.store.visible_position(r)) is not None]
            if positions:
                self.dataChanged.emit(self.index(min(positions), 0), self.index(max(positions), len(HEADERS) - 1))

    def reset(self) -> None:
        """The visible rows were rebuilt (filter, clear): one reset."""
        self.beginResetModel()
        self._count = self.store.visible_count
        self.endResetModel()

    def refresh_all(self) -> None:
        """Text changed everywhere (decode as, clock mode, palette): one dataChanged, no reset."""
        if self._count:
            self.dataChanged.emit(self.index(0, 0), self.index(self._count - 1, len(HEADERS) - 1))

    def set_wall_clock(self, on: bool) -> None:
        self.wall_clock = on
        if self._count:
            self.dataChanged.emit(self.index(0, Column.TIME), self.index(self._count - 1, Column.TIME))

    def row_at(self, pos: int) -> int | None:
        return self.store.visible[pos] if 0 <= pos < self._count else None

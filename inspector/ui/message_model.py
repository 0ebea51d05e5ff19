"""The message table's model: a thin adapter over the store's view (Wireshark's packet list).

Role: ``rowCount`` is the number of view rows already announced to the view; :meth:`on_applied` announces a
whole batch with one ``beginInsertRows`` and changed rows with one ``dataChanged`` over their span. Reads the store
re-framed (``ApplyResult.view_edits``) are replaced where they are, one remove and one insert (or one
``dataChanged``) per read, in order. Text is made lazily in ``data()`` (only for rows on screen) and decoded
summaries are cached in the store.
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
from proxy.model import Clock, MessageState, Origin

Index = QModelIndex | QPersistentModelIndex
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
"""``data(index, ROW_ROLE)`` is the stored read behind a table row (for a re-framed message: the read that
completed it)."""
VIEW_ROW_ROLE = Qt.ItemDataRole.UserRole + 4
"""``data(index, VIEW_ROW_ROLE)`` is the store's row or derived-row handle for a table row (what the detail pane
shows: a re-framed message's own bytes)."""


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
        self._pending: list[tuple[int, int, Any]] = []
        """While a batch's view edits are announced: those not applied yet, through which a position of what the
        view shows now maps to the store's view (kind 0 remove, 1 insert, 2 replace; position; rows or count)."""
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
        row = self._row_at(pos)
        if row is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, col)
        if role == ROW_ROLE:
            return s.real_row(row)
        if role == VIEW_ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ForegroundRole:
            st = s.state(row)
            if st in (MessageState.DROPPED, MessageState.DISCARDED):
                return self.colours.dropped
            if st is MessageState.HELD and col in (Column.STATE, Column.DELAY):
                return self.colours.held
            if col == Column.DIR:
                return self.colours.direction(s.direction(row))
            if col == Column.STATE and st is MessageState.SCHEDULED:
                return self.colours.muted
            return None
        if role == Qt.ItemDataRole.BackgroundRole:
            st = s.state(row)
            if st is MessageState.HELD:
                return self.colours.held_bg
            if s.origin(row) is not Origin.LIVE:
                return self.colours.special_bg
            return self.colours.direction_bg(s.direction(row))
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
            if col == Column.NUMBER and s.is_derived(row):
                return reframed_tip(s, row)
            return None
        return None

    def _text(self, row: int, col: int) -> str:
        s = self.store
        if col == Column.NUMBER:
            return s.display_id(row)
        if col == Column.TIME:
            t = s.arrival(row)
            if self.wall_clock and self.clock is not None:
                import datetime

                wall = datetime.datetime.fromtimestamp(self.clock.to_wall_ns(t) / 1e9)
                return wall.strftime("%H:%M:%S.%f")[:-3]
            return fmt.rel_time(t - (s.t0_ns or t))
        if col == Column.CONN:
            return f"#{s.conn_of(row)}"
        if col == Column.DIR:
            return s.direction(row).arrow
        if col == Column.SIZE:
            return str(s.size(row))
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

    def _row_at(self, pos: int) -> int | None:
        """The store row (or handle) at table position ``pos``, as the table shows it now (mid-edit too)."""
        q = pos
        for kind, p, arg in self._pending:
            if q < p:
                continue
            if kind == 1:
                q += arg
            else:
                if q < p + len(arg):
                    return int(arg[q - p])
                if kind == 0:
                    q -= len(arg)
        v = self.store.view
        return v[q] if 0 <= q < len(v) else None

    def _announce_edits(self, result: ApplyResult) -> None:
        """Re-framed reads replaced by their messages, one change at a time, each announced against the rows the
        table shows at that moment (as Qt's model contract wants)."""
        ops: list[tuple[int, int, Any]] = []
        for e in result.view_edits:
            if e.removed and len(e.removed) == e.inserted:
                ops.append((2, e.pos, e.removed))
                continue
            if e.removed:
                ops.append((0, e.pos, e.removed))
            if e.inserted:
                ops.append((1, e.pos, e.inserted))
        root = QModelIndex()
        for k, (kind, p, arg) in enumerate(ops):
            self._pending = ops[k:]
            if kind == 0:
                self.beginRemoveRows(root, p, p + len(arg) - 1)
                self._count -= len(arg)
                self._pending = ops[k + 1:]
                self.endRemoveRows()
            elif kind == 1:
                self.beginInsertRows(root, p, p + arg - 1)
                self._count += arg
                self._pending = ops[k + 1:]
                self.endInsertRows()
            else:
                self._pending = ops[k + 1:]
                self.dataChanged.emit(self.index(p, 0), self.index(p + len(arg) - 1, len(HEADERS) - 1))
        self._pending = []

    def on_applied(self, result: ApplyResult) -> None:
        """Announce one batch: the re-framed rows, then one insert for the new rows, one dataChanged for changed
        ones."""
        if result.view_edits:
            if self._count != result.view_count_before:  # this model missed a batch: start again from the store
                self.reset()
                return
            self._announce_edits(result)
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
        self._pending = []
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
        """The store row or derived-row handle at table position ``pos``."""
        return self._row_at(pos) if 0 <= pos < self._count else None


def reframed_tip(s: MessageStore, row: int) -> str:
    """Where a re-framed message's bytes came from, for a tooltip."""
    f = s.frame(row)
    if f is None:
        return ""
    first, last = s.ids[f.sources[0]], s.ids[f.sources[-1]]
    reads = f"read #{first}" if first == last else f"reads #{first}–#{last}"
    return (f"one {f.framing} message re-framed from {reads}: the proxy passed {'it' if first == last else 'them'} "
            "on as received while it worked out the framing")

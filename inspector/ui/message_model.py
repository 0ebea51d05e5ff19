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
    "what the proxy did with the message (UDP: dropped, duplicate, corrupted, truncated, sent ahead; the tooltip "
    "says why)",
)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignCenter
_NCOLS = len(HEADERS)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole)
_ALIGNMENT = tuple(_RIGHT if col in (Column.NUMBER, Column.TIME, Column.SIZE, Column.DELAY)
                   else _CENTER if col in (Column.DIR, Column.CONN) else None for col in Column)
_CACHED_SLOT = {int(Qt.ItemDataRole.DisplayRole): 0, int(Qt.ItemDataRole.ForegroundRole): 1,
                int(Qt.ItemDataRole.BackgroundRole): 2, int(Qt.ItemDataRole.FontRole): 3}
_UNCACHED = frozenset({_ALIGN, int(Qt.ItemDataRole.ToolTipRole), ROW_ROLE, VIEW_ROW_ROLE})
_CELL_CACHE_ROWS = 512
"""Rows whose cells are kept: a few screens' worth; past that the cache starts again (it is only a cache)."""
_SHOWN_ATTRS = frozenset({"wall_clock", "clock", "colours"})
_STATE_TEXT = {
    MessageState.FORWARDED: "", MessageState.SCHEDULED: "scheduled", MessageState.HELD: "HELD",
    MessageState.DROPPED: "dropped", MessageState.DISCARDED: "discarded",
}


def _note_word(note: str) -> str:
    """The state cell's word for a datagram the proxy changed on its way (the note says how, in the tooltip)."""
    if "corrupted" in note:
        return "corrupted"
    if note.startswith("truncated"):
        return "truncated"
    if "sent ahead" in note:
        return "sent ahead"
    return ""


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
        self._cells: dict[int, tuple[tuple[Any, ...], ...]] = {}
        self._at: dict[int, tuple[tuple[Any, ...], ...]] = {}
        """The same tuples by table position, valid until the next announcement (``_forget``)."""
        for signal in (self.dataChanged, self.modelReset, self.rowsInserted, self.rowsRemoved, self.layoutChanged):
            signal.connect(self._forget)

    # ------------------------------------------------------------------------------------------ Qt API

    def row_total(self) -> int:
        return self._count

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._count  # asked once per painted cell: no further call

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # The view asks for seven roles of every cell it paints (about 900 calls for one screen of rows), so the
        # common ones are answered from one tuple per row, built on the first ask and dropped whenever the model
        # announces a change (``_forget``). Roles nobody answers return before anything is looked up. Between
        # two announcements a table position always shows the same row, so the tuple is found by position
        # first: most calls are two dict lookups (the first ask of a row, and mid-edit asks, take the long way).
        slot = _CACHED_SLOT.get(role)
        if slot is None:
            if role not in _UNCACHED:
                return None
        else:
            cells = self._at.get(index.row())
            if cells is not None:
                return cells[slot][index.column()]
        pos, col = index.row(), index.column()
        if not 0 <= pos < self._count or not 0 <= col < _NCOLS:  # an invalid index has row -1
            return None
        if role == _ALIGN:
            return _ALIGNMENT[col]
        row = self._row_at(pos)
        if row is None:
            return None
        if slot is not None:
            cells = self._cells.get(row)
            if cells is None:
                if len(self._cells) >= _CELL_CACHE_ROWS:
                    self._cells.clear()
                    self._at.clear()
                cells = self._cells[row] = self._row_cells(row)
            if not self._pending:  # mid-edit, positions move with each announced step
                self._at[pos] = cells
            return cells[slot][col]
        s = self.store
        if role == ROW_ROLE:
            return s.real_row(row)
        if role == VIEW_ROW_ROLE:
            return row
        # ToolTipRole
        if col == Column.DELAY:
            parts = [f"{reason.value} {ns / 1e6:.1f} ms" for reason, ns in s.delays(row)]
            return ", ".join(parts) or None
        if col == Column.SUMMARY:
            return self.decoding.summary(row)
        if col == Column.STATE:
            o = s.origin(row)
            note = s.note(row)
            return f"{s.state(row).value}, origin {o.value}" + (f"\n{note}" if note else "")
        if col == Column.NUMBER and s.is_derived(row):
            return reframed_tip(s, row)
        return None

    def _row_cells(self, row: int) -> tuple[tuple[Any, ...], ...]:
        """What the view shows of one row: display text, foreground, background and font for each column."""
        s = self.store
        st = s.state(row)
        c = self.colours
        direction = s.direction(row)
        texts = tuple(self._text(row, col) for col in range(_NCOLS))
        if st is MessageState.DROPPED or st is MessageState.DISCARDED:
            fg: tuple[Any, ...] = (c.dropped,) * _NCOLS
            fonts: tuple[Any, ...] = (self._strike,) * _NCOLS
        else:
            plain = c.muted if st is MessageState.SCHEDULED else None
            fg = tuple(c.held if st is MessageState.HELD and col in (Column.STATE, Column.DELAY)
                       else c.direction(direction) if col == Column.DIR
                       else plain if col == Column.STATE
                       else None
                       for col in range(_NCOLS))
            fonts = (None,) * Column.STATE + (self._bold if st is MessageState.HELD else None,)
            if s.flips(row):  # corrupted on purpose: the state cell says so in the error colour
                fg = (*fg[:Column.STATE], c.error)
        if st is MessageState.HELD:
            bg = c.held_bg
        elif s.origin(row) is not Origin.LIVE:
            bg = c.special_bg
        else:
            bg = c.direction_bg(direction)
        return texts, fg, (bg,) * _NCOLS, fonts

    def _forget(self, *_args: Any) -> None:
        self._cells.clear()
        self._at.clear()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _SHOWN_ATTRS and "_at" in self.__dict__:  # the clock, its mode or the palette changed
            self._forget()

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
            note = s.note(row)
            if note and not text:
                text = _note_word(note)
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
        self._at.clear()  # positions are about to move: nothing may answer by position until it is announced
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

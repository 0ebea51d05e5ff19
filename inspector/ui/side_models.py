"""Models for the connections dock and the held queue: small tables over the store, reset or updated per batch.

Role: the connections list (a few rows, updated in place with one ``dataChanged`` per batch; its last column is
each direction's framing, with how it was found and a warning when it stopped fitting in the tooltip) and the held
queue (the messages waiting for the user, in TCP order; usually a handful, so a reset per change is fine).
A UDP flow is a row too, named ``#N udp``: its state says how long it has been idle against the proxy's idle
timeout (the window refreshes it every second, :meth:`ConnectionsModel.tick`), and its framing column says
``datagrams`` (a datagram is a message: framing does not apply).
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt

from inspector.store import ApplyResult, ConnectionRow, MessageStore
from inspector.ui import format as fmt
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.framing_words import MENU_HINT, NOT_FOR_DATAGRAMS, lane_short, lane_tooltip
from inspector.ui.table_base import HeaderedTableModel
from proxy.model import Clock, CloseReason, Direction

Index = QModelIndex | QPersistentModelIndex
CONN_ROLE = Qt.ItemDataRole.UserRole + 2
MSG_ID_ROLE = Qt.ItemDataRole.UserRole + 3


class ConnectionsModel(HeaderedTableModel):
    HEADERS = ("conn", "msgs ↑/↓", "bytes ↑/↓", "state", "client", "framing")
    TOOLTIPS = ("connection number (● open, ○ closed); a UDP flow (the datagrams of one client address) is "
                "named #N udp", "messages client→server ↑ / server→client ↓",
                "bytes client→server ↑ / server→client ↓",
                "open, closed, reset …, and how many of its messages are held for you in the Intercept panel "
                "(the tooltip says how it ended); a UDP flow: how long since its last datagram, against the idle "
                "timeout that ends it", "the client's address (:port when on this machine)",
                "what one message is, client→server ↑ / server→client ↓: worked out by sockscope (auto…) or "
                "chosen; ⚠ when a framing stopped fitting (the tooltip says why; right-click to choose one)")
    STATE = 3
    """The counters come first, so a narrow panel shows them; the state says what is held."""
    FRAMING = 5

    def __init__(self, store: MessageStore, parent: Any = None) -> None:
        super().__init__(parent)
        self.store = store
        self.order: list[int] = list(store.connections)
        self._pos: dict[int, int] = {c: i for i, c in enumerate(self.order)}
        self.colours = palette.current()
        self.idle_timeout_s: float | None = None
        """The proxy's UDP idle timeout (from its hello), when it relays UDP."""
        self.clock: Clock | None = None
        """The engine's clock anchor: its monotonic time now is worked out from the wall clock (another process's
        monotonic clock, maybe another machine's)."""

    def engine_now_ns(self) -> int | None:
        c = self.clock
        return None if c is None else c.mono_ns + (time.time_ns() - c.wall_ns)

    def idle_s(self, c: ConnectionRow) -> float | None:
        """Seconds since flow ``c``'s last datagram (or its start), when the engine's clock is known."""
        now = self.engine_now_ns()
        return None if now is None else max(0.0, (now - c.last_ns) / 1e9)

    def state_text(self, c: ConnectionRow) -> str:
        if not c.is_udp:
            return c.state_text + (f" · {c.held} held" if c.held else "")
        if not c.is_open:
            return c.state_text
        idle = self.idle_s(c)
        if idle is None or self.idle_timeout_s is None:
            return "open"
        return "active" if idle < 1 else f"idle {idle:.0f} s of {self.idle_timeout_s:g} s"

    def tick(self) -> None:
        """Once a second: the idle time of open UDP flows moved on."""
        if any(c.is_udp and c.is_open for c in self.store.connections.values()):
            last = len(self.order) - 1
            self.dataChanged.emit(self.index(0, self.STATE), self.index(last, self.STATE))

    def row_total(self) -> int:
        return len(self.order)

    def conn(self, pos: int) -> ConnectionRow | None:
        if 0 <= pos < len(self.order):
            return self.store.connections.get(self.order[pos])
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        c = self.conn(index.row())
        col = index.column()
        if c is None or not 0 <= col < len(self.HEADERS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return (("● " if c.is_open else "○ ") + f"#{c.conn_id}" + (" udp" if c.is_udp else "")
                        + (f" replay of #{c.replay_of}" if c.replay_of else ""))
            if col == 1:
                return f"{c.msgs[0]} / {c.msgs[1]}"
            if col == 2:
                return f"{_short_size(c.bytes[0])} / {_short_size(c.bytes[1])}"
            if col == 3:
                return self.state_text(c)  # how it ended: the tooltip
            if col == 4:
                return fmt.short_addr(c.client_addr)
            if col == self.FRAMING:
                if c.is_udp:
                    return "—"  # none: a datagram is a message (the tooltip says so)
                return f"{lane_short(c.framing[0])} / {lane_short(c.framing[1])}"
        if role == CONN_ROLE:
            return c.conn_id
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == self.FRAMING and any(lane.stopped_fitting for lane in c.framing):
                return self.colours.held
            if not c.is_open:
                return self.colours.dropped
            if col == self.STATE and c.held:
                return self.colours.held
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.FRAMING:
                return framing_tooltip(c)
            ended = f": {c.detail}" if c.detail and c.detail != c.state_text else ""
            if c.is_udp:
                return self._flow_tooltip(c, ended) + self._bytes_line(c)
            framing = (f"\nframing ↑ {lane_short(c.framing[0])} ↓ {lane_short(c.framing[1])} "
                       "(the framing column's tooltip says why)")
            return (f"#{c.conn_id}: client {fmt.addr(c.client_addr)} → server "
                    f"{fmt.addr(c.server_addr or c.target_addr)}\n{c.state_text}{ended}".strip() + framing
                    + self._bytes_line(c))
        return None

    def _bytes_line(self, c: ConnectionRow) -> str:
        return f"\nbytes client→server ↑ {c.bytes[0]:,}, server→client ↓ {c.bytes[1]:,}"

    def _flow_tooltip(self, c: ConnectionRow, ended: str) -> str:
        lines = [f"UDP flow #{c.conn_id}: the datagrams of client {fmt.addr(c.client_addr)}, relayed to server "
                 f"{fmt.addr(c.server_addr or c.target_addr)} from a socket of its own"]
        timeout = f"{self.idle_timeout_s:g} s" if self.idle_timeout_s is not None else "the idle timeout"
        if c.is_open:
            idle = self.idle_s(c)
            since = "" if idle is None else f"; the last datagram was {idle:.1f} s ago"
            lines.append(f"open: UDP has no connection to close, so the proxy ends the flow after {timeout} "
                         f"without a datagram either way{since}")
        elif c.reason is CloseReason.IDLE_TIMEOUT:
            lines.append(f"ended by the idle timeout{ended} (a new datagram from the same address starts a new "
                         "flow)")
        else:
            lines.append(f"{c.state_text}{ended}")
        lines.append("framing: none, each datagram is one message")
        return "\n".join(lines)

    def on_applied(self, result: ApplyResult) -> None:
        new = [c for c in result.connections_added if c not in self._pos]
        if new:
            first = len(self.order)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for c in new:
                self._pos[c] = len(self.order)
                self.order.append(c)
            self.endInsertRows()
        # Counters change with every message: one dataChanged over all rows is cheaper than tracking which.
        if self.order and (result.first_new_row < len(self.store) or result.connections_changed or result.held_changed):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.order) - 1, len(self.HEADERS) - 1))

    def reset(self) -> None:
        self.beginResetModel()
        self.order = list(self.store.connections)
        self._pos = {c: i for i, c in enumerate(self.order)}
        self.endResetModel()


class HeldModel(HeaderedTableModel):
    """The held queue: messages waiting for Forward / Edit & forward / Drop, oldest first."""

    HEADERS = ("#", "conn", "dir", "size", "summary")

    def __init__(self, store: MessageStore, decoding: Decoding, parent: Any = None) -> None:
        super().__init__(parent)
        self.store = store
        self.decoding = decoding
        self.ids: list[int] = list(store.held)
        self.colours = palette.current()

    def row_total(self) -> int:
        return len(self.ids)

    def row_of(self, pos: int) -> int | None:
        if 0 <= pos < len(self.ids):
            return self.store.held.get(self.ids[pos])
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.row_of(index.row())
        col = index.column()
        if row is None or not 0 <= col < len(self.HEADERS):
            return None
        s = self.store
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return str(s.ids[row])
            if col == 1:
                return f"#{s.conn_ids[row]}"
            if col == 2:
                return Direction(s.dirs[row]).arrow + " " + Direction(s.dirs[row]).label
            if col == 3:
                return str(s.sizes[row])
            return self.decoding.summary(row)
        if role == MSG_ID_ROLE:
            return s.ids[row]
        if role == Qt.ItemDataRole.ForegroundRole and col == 2:
            return self.colours.direction(Direction(s.dirs[row]))
        if role == Qt.ItemDataRole.BackgroundRole:
            return self.colours.held_bg
        return None

    def on_applied(self, result: ApplyResult) -> None:
        if result.held_changed:
            self.reset()
        elif result.changed_rows and self.ids:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.ids) - 1, len(self.HEADERS) - 1))

    def reset(self) -> None:
        self.beginResetModel()
        self.ids = list(self.store.held)
        self.endResetModel()

    def refresh_all(self) -> None:
        """Summaries changed (decode as): one dataChanged over every row."""
        if self.ids:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.ids) - 1, len(self.HEADERS) - 1))


def _short_size(n: int) -> str:
    """Bytes in a few characters for the narrow panel (``36 B``, ``3KB``, ``1.2MB``; exact in the tooltip)."""
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n_ = n / 1000
        if n_ < 1000 or unit == "GB":
            return f"{n_:.1f}{unit}" if n_ < 9.95 else f"{n_:.0f}{unit}"
        n = round(n_)
    return f"{n}GB"


def framing_tooltip(c: ConnectionRow) -> str:
    """Both directions' framing of connection ``c``, how each was found, and what to do about a wrong one."""
    if c.is_udp:
        return f"#{c.conn_id} is a UDP flow: {NOT_FOR_DATAGRAMS}."
    lines = [f"#{c.conn_id} framing (what one message is):"]
    lines += [lane_tooltip(d, c.framing[d]) for d in Direction]
    if c.is_open:
        lines.append(f"To choose another, {MENU_HINT}.")
    return "\n".join(lines)

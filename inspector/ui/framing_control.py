"""Choosing a connection's framing in the window: a menu of one-click choices and a dialog for the rest.

Role: :class:`FramingControl` builds the "Framing" submenu of the Connections panel's and the message table's
context menus (the framing in force per direction, then auto, raw, lines, JSON, msgpack, header+body, common
length prefixes: one click sends it) and opens :class:`FramingDialog` for a framing with parameters: a terminator
typed like a Python bytes literal's body (``EOT\\x00``), a length prefix of 1, 2, 4 or 8 bytes, big or little
endian, counting itself or not, fixed-size records. A choice is checked here first (:func:`framing_name`; a bad one
is one line saying what is wrong) and then sent with the control protocol's ``set_connection_framing``
(docs/framing.md); the proxy applies it from each direction's next read, and its ``FramingInferred`` record (cause
``user``) updates the Connections panel and re-frames what came before for the view. It also turns the batch's
framing records into the window's warnings when a framing stopped fitting (:meth:`FramingControl.warnings`), and
for a direction of fixed-size records offers the struct layouts of that size (:attr:`FramingControl.layout_provider`,
set by whoever finds them; :class:`~inspector.ui.layout_offer.LayoutOfferDialog`).
Must not import: ``inspector.bridge`` (commands go through the window's ``send``).
Thread: GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from inspector.store import ApplyResult, MessageStore
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.framing_words import FROM_TO, NOT_FOR_DATAGRAMS, describe, lane_short, warning_text
from proxy.framing import DEFAULT_MAX_FRAME, FramingError, normalise_name, parse_delimiter
from proxy.model import Direction

if TYPE_CHECKING:
    from inspector.ui.layout_offer import LayoutLike, LayoutOfferDialog  # a dialog: imported when offered

__all__ = ["KINDS", "QUICK", "FramingControl", "FramingDialog", "LayoutProvider", "fixed_size", "framing_name"]

KINDS: Final = (
    ("auto", "auto: sockscope works it out again"),
    ("raw", "raw: each read is one message"),
    ("lines", "lines: each ends in a newline (\\n)"),
    ("delim", "messages ending in a terminator you type"),
    ("len", "a length prefix, then the message"),
    ("header16json", "header + body (Real Python: 2-byte header length, JSON header with content-length)"),
    ("msgpack", "msgpack objects, back to back"),
    ("json", "JSON values, back to back"),
    ("fixed", "fixed-size records (struct)"),
    ("websocket", "WebSocket: the HTTP Upgrade, then one message per frame (browser games)"),
)
"""The dialog's kinds of framing: key, and what the user reads."""
QUICK: Final = ("auto", "raw", "lines", "json", "msgpack", "header16json", "len16be", "len32be", "len32le", "websocket")
"""The one-click choices of the menu."""
WIDTHS: Final = (1, 2, 4, 8)
SAMPLE_LOOKBACK: Final = 5000
"""Rows looked at (newest first) for a record to show a layout's values with."""
LayoutProvider = Callable[[int, Direction, int], Sequence["LayoutLike"]]
"""(connection, direction, record size) -> the candidate layouts of that size."""


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def fixed_size(framing: str) -> int:
    """N for ``fixed:N``, else 0."""
    head, _, n = framing.partition(":")
    return int(n) if head == "fixed" and n.isdigit() else 0


def framing_name(kind: str, *, delimiter: str = "", width: int = 2, endian: str = "be", inclusive: bool = False,
                 size: str = "") -> str:
    """The ``--framing`` name of a choice, checked; ``FramingError`` with one sentence saying what is wrong."""
    if kind == "delim":
        if not delimiter:
            raise FramingError("Type the terminator that ends each message, e.g. EOT\\x00, \\r\\n or <END>.")
        try:
            parse_delimiter(delimiter)
        except FramingError as e:  # as typed, not as a Python repr (which doubles each backslash)
            why = str(e).replace(f"delimiter {delimiter!r}", f"terminator {delimiter}")
            raise FramingError(_sentence(why)) from None
        name = "delim:" + delimiter
    elif kind == "len":
        if width not in WIDTHS:
            raise FramingError("A length prefix has 1, 2, 4 or 8 bytes.")
        name = ("len8" if width == 1 else f"len{width * 8}{endian}") + ("-incl" if inclusive else "")
    elif kind == "fixed":
        text = size.strip()
        if not text.isdigit():
            raise FramingError(f"A record size is a whole number of bytes, e.g. 12 (not {text!r}).")
        n = int(text)
        if not 1 <= n <= DEFAULT_MAX_FRAME:
            raise FramingError(f"A record size is from 1 to {DEFAULT_MAX_FRAME} bytes, not {n}.")
        name = f"fixed:{n}"
    else:
        name = kind
    try:
        return normalise_name(name)
    except FramingError as e:
        raise FramingError(_sentence(str(e))) from None


class FramingDialog(QDialog):
    """The framing of one connection, for both directions or one: a kind and its parameters, checked as typed."""

    def __init__(self, conn_id: int, direction: Direction | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.conn_id = conn_id
        self.setWindowTitle(f"Framing of connection #{conn_id}")
        self.direction = QComboBox()
        self.direction.addItem("both directions", None)
        for d in Direction:
            self.direction.addItem(f"{d.arrow} {d.label}: {FROM_TO[d]}", d.label)
        if direction is not None:
            self.direction.setCurrentIndex(1 + int(direction))
        self.kind = QComboBox()
        for key, text in KINDS:
            self.kind.addItem(text, key)
        self.delimiter = QLineEdit()
        self.delimiter.setPlaceholderText("EOT\\x00")
        self.delimiter.setToolTip("the bytes that end each message, written as in a Python bytes literal: "
                                  "EOT\\x00, \\r\\n, \\0, <END> (\\xNN for any byte)")
        self.prefix_width = QComboBox()
        for w in WIDTHS:
            self.prefix_width.addItem(f"{w} byte{'s' if w > 1 else ''}", w)
        self.prefix_width.setCurrentIndex(1)
        self.endian = QComboBox()
        self.endian.addItem("big endian (network order, struct '>' or '!')", "be")
        self.endian.addItem("little endian (struct '<')", "le")
        self.inclusive = QCheckBox("the length counts the prefix too")
        self.record_size = QLineEdit()
        self.record_size.setPlaceholderText("12")
        self.record_size.setToolTip("bytes per record: struct.calcsize of the sender's format")
        self.name = QLabel()
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")

        form = QFormLayout()
        form.addRow("direction", self.direction)
        form.addRow("one message is", self.kind)
        self._rows: dict[str, list[QWidget]] = {}
        for key, label, widget in (("delim", "terminator", self.delimiter), ("len", "prefix", self.prefix_width),
                                   ("len", "byte order", self.endian), ("len", "", self.inclusive),
                                   ("fixed", "record size", self.record_size)):
            form.addRow(label, widget)
            self._rows.setdefault(key, []).append(widget)
            lbl = form.labelForField(widget)
            if lbl is not None:
                self._rows[key].append(lbl)
        form.addRow("framing", self.name)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok = QPushButton("Apply")
        self.ok.setDefault(True)
        self.buttons.addButton(self.ok, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        about = QLabel("The proxy uses it from each direction's next read on; what came before is re-framed in "
                       "the table as far as it fits. Nothing you choose here changes a byte your programs send.")
        about.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(about)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        for box in (self.kind, self.prefix_width, self.endian, self.direction):
            box.currentIndexChanged.connect(self._update)
        self.inclusive.toggled.connect(self._update)
        self.delimiter.textChanged.connect(self._update)
        self.record_size.textChanged.connect(self._update)
        self._update()

    def set_kind(self, key: str) -> None:
        i = self.kind.findData(key)
        if i >= 0:
            self.kind.setCurrentIndex(i)

    def chosen_direction(self) -> Direction | None:
        label = self.direction.currentData()
        return None if label is None else Direction.parse(str(label))

    def framing(self) -> str:
        """The chosen framing's name; ``FramingError`` saying what is wrong."""
        return framing_name(str(self.kind.currentData()), delimiter=self.delimiter.text(),
                            width=int(self.prefix_width.currentData()), endian=str(self.endian.currentData()),
                            inclusive=self.inclusive.isChecked(), size=self.record_size.text())

    def _update(self) -> None:
        kind = str(self.kind.currentData())
        for key, widgets in self._rows.items():
            for w in widgets:
                w.setVisible(key == kind)
        self.endian.setEnabled(self.prefix_width.currentData() != 1)  # one byte has no byte order
        try:
            name = self.framing()
        except FramingError as e:
            self.error.setText(str(e))
            self.error.show()
            self.name.setText("")
            self.ok.setEnabled(False)
            return
        self.error.setText("")
        self.error.hide()
        self.name.setText(f"{name}: {describe(name)}")
        self.ok.setEnabled(True)


class FramingControl(QObject):
    """The window's framing choices for a connection: a submenu, a dialog, and the warnings of a batch."""

    decoding_changed = Signal()
    """A struct layout was applied from the layouts offer (summaries and the detail pane are out of date)."""

    def __init__(self, store: MessageStore, send: Callable[..., None], report: Callable[[str], None],
                 parent: QWidget | None = None, decoding: Decoding | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.send = send
        self.report = report
        self.parent_widget = parent
        self.decoding = decoding
        self.dialog: FramingDialog | None = None
        self.layout_dialog: LayoutOfferDialog | None = None
        self.layout_provider: LayoutProvider | None = None
        """Finds the struct layouts for a direction of fixed-size records (None: the offer is not shown)."""
        self._warned: set[tuple[int, int, str]] = set()

    def menu(self, parent: QMenu, conn_id: int, direction: Direction | None = None) -> QMenu:
        """A "Framing" submenu: the framing in force per direction, one-click choices (for ``direction``, or both
        directions), and the dialog for the rest."""
        scope = "both directions" if direction is None else f"{direction.arrow} {direction.label}"
        c = self.store.connections.get(conn_id)
        if c is not None and c.is_udp:
            sub = QMenu(f"Framing of #{conn_id}: none for UDP", parent)
            a = sub.addAction(NOT_FOR_DATAGRAMS[0].upper() + NOT_FOR_DATAGRAMS[1:])
            a.setEnabled(False)
            return sub
        sub = QMenu(f"Framing of #{conn_id} ({scope})", parent)
        if c is not None:
            for d in Direction:
                lane = c.framing[d]
                a = sub.addAction(f"now {d.arrow} {d.label}: {lane_short(lane)}")
                a.setEnabled(False)
            sub.addSeparator()
        open_ = c is not None and c.is_open
        for name in QUICK:
            a = sub.addAction(f"{name}: {describe(name)}")
            a.setEnabled(open_)
            a.triggered.connect(lambda _=False, n=name: self.choose(conn_id, n, direction))
        sub.addSeparator()
        other = sub.addAction("Other… (a terminator, a length prefix, fixed-size records, per direction)")
        other.setEnabled(open_)
        other.triggered.connect(lambda: self.open_dialog(conn_id, direction))
        if not open_:
            sub.setToolTipsVisible(True)
            sub.setToolTip("the connection is closed: its framing can no longer change")
        if c is not None and self.layout_provider is not None and self.decoding is not None:
            for d in Direction if direction is None else (direction,):
                size = fixed_size(c.framing[d].framing)
                if size:
                    sub.addSeparator()
                    offer = sub.addAction(f"Struct layouts for {d.arrow} {d.label} records ({size} bytes)…")
                    offer.triggered.connect(lambda _=False, d=d, size=size: self.offer_layouts(conn_id, d, size))
        return sub

    def offer_layouts(self, conn_id: int, direction: Direction, size: int) -> LayoutOfferDialog | None:
        """The layouts of ``size`` bytes for a direction's records, to accept and rename (None: nothing offers
        them)."""
        if self.layout_provider is None or self.decoding is None:
            return None
        candidates = list(self.layout_provider(conn_id, direction, size))
        from inspector.ui.layout_offer import LayoutOfferDialog

        dlg = LayoutOfferDialog(self.decoding, conn_id, direction, candidates, self._sample(conn_id, direction, size),
                                self.parent_widget)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.applied.connect(lambda _spec: self.decoding_changed.emit())
        dlg.open()
        self.layout_dialog = dlg
        return dlg

    def _sample(self, conn_id: int, direction: Direction, size: int) -> bytes | None:
        """A recent record of the direction (its values show what each field holds)."""
        s = self.store
        d = int(direction)
        for r in range(len(s) - 1, max(-1, len(s) - 1 - SAMPLE_LOOKBACK), -1):
            if s.conn_ids[r] == conn_id and s.dirs[r] == d and s.sizes[r] >= size and not s.payload_evicted(r):
                return s.payload(r)[:size]
        return None

    def choose(self, conn_id: int, framing: str, direction: Direction | None = None) -> bool:
        """Send framing ``framing`` for a live connection (one direction, or both); False and said why if not."""
        try:
            name = normalise_name(framing)
        except FramingError as e:
            self.report(_sentence(f"Could not change the framing: {e}"))
            return False
        c = self.store.connections.get(conn_id)
        if c is None or not c.is_open:
            self.report(f"Could not change the framing: connection #{conn_id} is closed, so it sends nothing "
                        "more to frame.")
            return False
        if c.is_udp:
            self.report(f"Could not change the framing of #{conn_id}: {NOT_FOR_DATAGRAMS}.")
            return False
        args: dict[str, Any] = {"conn_id": conn_id, "framing": name}
        if direction is not None:
            args["direction"] = direction.label
        self.send("set_connection_framing", **args)
        return True

    def open_dialog(self, conn_id: int, direction: Direction | None = None) -> FramingDialog:
        dlg = FramingDialog(conn_id, direction, self.parent_widget)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def done(code: int) -> None:
            if code != QDialog.DialogCode.Accepted:
                return
            try:
                name = dlg.framing()
            except FramingError as e:  # the button is off while invalid; said anyway
                self.report(str(e))
                return
            self.choose(conn_id, name, dlg.chosen_direction())

        dlg.finished.connect(done)
        dlg.open()
        self.dialog = dlg
        return dlg

    def warnings(self, result: ApplyResult) -> list[str]:
        """The learner's sentences for the framings that stopped fitting in this batch (once per direction of a
        connection and kind of failure)."""
        out: list[str] = []
        for r in result.framings:
            c = self.store.connections.get(r.conn_id)
            lost = c.framing[r.direction].lost if c is not None else ""
            text = warning_text(r, lost)
            key = (r.conn_id, int(r.direction), r.cause)
            if text is not None and key not in self._warned:
                if len(self._warned) >= 10_000:
                    self._warned.clear()
                self._warned.add(key)
                out.append(text)
        return out

"""The detail pane: the selected message decoded (tree), as text, and as hex with the selected field highlighted.

Role: shows one store row. The tree comes from the decoder's ``View.fields``; choosing a field with a byte range
highlights those bytes in the hex view (hex and ASCII columns). "Decode as" changes the decoder for the
message's connection and direction; "Copy as" copies hex, text or a Python ``bytes`` literal.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QColor, QFontDatabase, QGuiApplication, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QTextEdit,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import AUTO, Field, View
from inspector.store import MessageStore
from inspector.ui import format as fmt
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from proxy.model import Direction

HEX_LIMIT = 64 << 10
BYTES_PER_LINE = 16
_HEX_COL = 10  # "00000000  "
_ASCII_COL = _HEX_COL + BYTES_PER_LINE * 3 + 1  # the padded hex area, then one space
_ASCII = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))
RANGE_ROLE = Qt.ItemDataRole.UserRole + 10


def hex_lines(data: bytes, limit: int = HEX_LIMIT) -> str:
    """16 bytes a line: offset, hex (gap after 8), ASCII. Column positions are fixed (see ``byte_columns``)."""
    out = []
    for off in range(0, min(len(data), limit), BYTES_PER_LINE):
        chunk = data[off:off + BYTES_PER_LINE]
        hexpart = " ".join(f"{b:02x}" for b in chunk[:8])
        if len(chunk) > 8:
            hexpart += "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        out.append(f"{off:08x}  {hexpart:<{BYTES_PER_LINE * 3}} {chunk.translate(_ASCII).decode('ascii')}")
    if len(data) > limit:
        out.append(f"… {len(data) - limit} more bytes not shown")
    return "\n".join(out)


def byte_columns(i: int) -> tuple[int, int, int]:
    """(line, hex column, ascii column) of byte ``i`` in :func:`hex_lines`' output."""
    k = i % BYTES_PER_LINE
    return i // BYTES_PER_LINE, _HEX_COL + k * 3 + (1 if k >= 8 else 0), _ASCII_COL + k


class HexView(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.data = b""
        self.highlighted: tuple[int, int] | None = None

    def set_data(self, data: bytes) -> None:
        self.data = data
        self.highlighted = None
        self.setPlainText(hex_lines(data))
        self.setExtraSelections([])

    def highlight(self, start: int | None, end: int | None) -> None:
        """Highlight bytes ``start .. end-1`` (both columns); None clears."""
        if start is None or end is None or end <= start:
            self.highlighted = None
            self.setExtraSelections([])
            return
        end = min(end, len(self.data), HEX_LIMIT)
        start = max(0, min(start, end))
        self.highlighted = (start, end)
        fmt_ = QTextCharFormat()
        colours = palette.current()
        fmt_.setBackground(colours.held_bg)
        fmt_.setForeground(QColor(colours.held).darker(150) if not colours.dark else colours.held)
        selections = []
        doc = self.document()
        i = start
        while i < end:
            line, hcol, acol = byte_columns(i)
            line_end = min(end, (line + 1) * BYTES_PER_LINE)
            n = line_end - i
            block = doc.findBlockByNumber(line)
            _, hcol_last, _ = byte_columns(line_end - 1)
            for col, length in ((hcol, hcol_last + 2 - hcol), (acol, n)):
                sel = QTextEdit.ExtraSelection()
                cur = QTextCursor(block)
                cur.setPosition(block.position() + col)
                cur.setPosition(block.position() + col + length, QTextCursor.MoveMode.KeepAnchor)
                sel.cursor = cur  # type: ignore[attr-defined]
                sel.format = fmt_  # type: ignore[attr-defined]
                selections.append(sel)
            i = line_end
        self.setExtraSelections(selections)
        cur = QTextCursor(doc.findBlockByNumber(start // BYTES_PER_LINE))
        self.setTextCursor(cur)
        self.ensureCursorVisible()


class DetailPane(QWidget):
    decode_as_changed = Signal()

    def __init__(self, store: MessageStore, decoding: Decoding, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.decoding = decoding
        self.row: int | None = None
        self.view: View | None = None

        self.title = QLabel("Select a message to see it decoded.")
        self.title.setMinimumWidth(50)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.decode_as = QComboBox()
        self.decode_as.setToolTip("Decode this connection's messages in this direction as …")
        self.decode_as.addItems(self.decoding.names())
        self.decode_as.activated.connect(self._decode_as_chosen)
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy as")
        self.copy_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.copy_button)
        self.copy_hex = QAction("Hex", self)
        self.copy_text = QAction("Text", self)
        self.copy_bytes = QAction("Python bytes literal", self)
        for a, kind in ((self.copy_hex, "hex"), (self.copy_text, "text"), (self.copy_bytes, "bytes")):
            a.triggered.connect(lambda _=False, k=kind: self.copy(k))
            menu.addAction(a)
        self.copy_button.setMenu(menu)

        head = QHBoxLayout()
        head.setContentsMargins(4, 2, 4, 2)
        head.addWidget(self.title, 1)
        head.addWidget(QLabel("decode as:"))
        head.addWidget(self.decode_as)
        head.addWidget(self.copy_button)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["field", "value", "bytes"])
        self.tree.setColumnWidth(0, 110)
        self.tree.setColumnWidth(1, 200)
        self.tree.currentItemChanged.connect(self._field_chosen)
        self.hex = HexView()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.hide()

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tree)
        split.addWidget(self.hex)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self.hex.setMinimumWidth(self.hex.fontMetrics().horizontalAdvance("0" * 60))
        split.setSizes([250, 640])
        self.tabs = QTabWidget()
        self.tabs.addTab(split, "Decoded + hex")
        self.tabs.addTab(self.text, "Text")
        self.tabs.setDocumentMode(True)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.warnings)
        lay.addWidget(self.tabs, 1)

    def show_row(self, row: int | None) -> None:
        self.row = row
        self.tree.clear()
        if row is None:
            self.title.setText("Select a message to see it decoded.")
            self.hex.set_data(b"")
            self.text.setPlainText("")
            self.warnings.hide()
            self.view = None
            return
        s = self.store
        d = Direction(s.dirs[row])
        view = self.view = self.decoding.view(row)
        data = s.payload(row)
        colours = palette.current()
        state = s.state(row).value
        origin = s.origin(row).value
        delay = fmt.delay_ms(s.added_delay_ns(row))
        self.title.setText(
            f"<b>#{s.ids[row]}</b> <span style='color:{colours.direction(d).name()}'>{d.arrow} {d.label}</span> "
            f"· conn #{s.conn_ids[row]} · {s.sizes[row]} B · {state}"
            + (f" · {origin}" if origin != "live" else "") + (f" · {delay}" if delay else "")
            + f" · <b>{view.decoder}</b>")
        self.decode_as.setCurrentText(self.decoding.current_decode_as(s.conn_ids[row], d))
        notes = list(view.warnings)
        if view.error:
            notes.insert(0, f"⚠ {view.error}")
        if (orig := s.original_payload(row)) is not None:
            notes.append(f"edited before forwarding; the original was {orig!r}"[:300])
        self.warnings.setText("\n".join(notes))
        self.warnings.setStyleSheet(f"color: {colours.error.name() if view.error else colours.held.name()}")
        self.warnings.setVisible(bool(notes))
        self.hex.set_data(data)
        self.text.setPlainText(view.text)
        fields = view.fields or (Field(view.decoder, view.summary, 0, len(data)),)
        self._fill_tree(fields)

    def _fill_tree(self, fields: tuple[Field, ...]) -> None:
        def add(parent: Any, f: Field) -> None:
            item = QTreeWidgetItem(parent, [f.name, f.value_repr,
                                            f"{f.start}–{f.end}" if f.start is not None and f.end is not None
                                            else ""])
            item.setData(0, RANGE_ROLE, (f.start, f.end))
            item.setToolTip(1, f.value_repr)
            for c in f.children:
                add(item, c)

        for f in fields:
            add(self.tree, f)
        self.tree.expandToDepth(1)

    def _field_chosen(self, item: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None = None) -> None:
        if item is None:
            self.hex.highlight(None, None)
            return
        rng = item.data(0, RANGE_ROLE) or (None, None)
        self.hex.highlight(rng[0], rng[1])

    def _decode_as_chosen(self, _index: int) -> None:
        if self.row is None:
            return
        name = self.decode_as.currentText()
        s = self.store
        self.decoding.decode_as(None if name == AUTO else name, s.conn_ids[self.row], Direction(s.dirs[self.row]))
        self.show_row(self.row)
        self.decode_as_changed.emit()

    def copy(self, kind: str) -> str:
        if self.row is None:
            return ""
        data = self.store.payload(self.row)
        if kind == "hex":
            text = fmt.hex_string(data)
        elif kind == "bytes":
            text = fmt.bytes_literal(data)
        else:
            text = self.view.text if self.view is not None else data.decode("utf-8", "replace")
        QGuiApplication.clipboard().setText(text)
        return text

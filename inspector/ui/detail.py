"""The detail pane: the selected message decoded (tree), as text, and as hex with the selected field highlighted.

Role: shows one store row (or a message the store re-framed for the view: a derived row's handle), and under its
title how the message was cut out of the stream (its framing, and for a re-framed message the reads it came from).
The tree comes from the decoder's ``View.fields``; choosing a field with a byte range highlights those bytes in the
hex view (hex and ASCII columns). "Decode as" changes the decoder for the
message's connection and direction; "Copy as" copies hex, text or a Python ``bytes`` literal. The message is
decoded within :data:`~inspector.ui.decoding.VIEW_BUDGET_NS` (``Decoding.view``): a hostile message whose decode
gives up is shown as ``⚠ gave up decoding after N ms …`` above its hex, never a frozen window.
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
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import Field, View, gave_up
from inspector.store import MessageStore
from inspector.ui import format as fmt
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.framing_words import message_note
from inspector.ui.message_model import added_delay_text
from proxy.model import Direction

HEX_LIMIT = 64 << 10
BYTES_PER_LINE = 16
_HEX_COL = 10  # "00000000  "
_ASCII_COL = _HEX_COL + BYTES_PER_LINE * 3 + 1  # the padded hex area, then one space
_ASCII = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))
RANGE_ROLE = Qt.ItemDataRole.UserRole + 10
TREE_MIN_PX = 200
STRUCT_TIP = ("the struct layout for this connection and direction: byte order (< little, > big), codes "
              "(B H I Q f d 12s ...), then a name per field; Enter applies")


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
        self.marked: tuple[int, ...] = ()
        """Bytes marked on their own (a corrupt impairment's flipped bits), whatever field is highlighted."""

    def set_data(self, data: bytes, marked: tuple[int, ...] = ()) -> None:
        self.data = data
        self.highlighted = None
        self.marked = tuple(sorted({i for i in marked if 0 <= i < min(len(data), HEX_LIMIT)}))
        self.setPlainText(hex_lines(data))
        self.setExtraSelections(self._marks())

    def _marks(self) -> list[QTextEdit.ExtraSelection]:
        if not self.marked:
            return []
        fmt_ = QTextCharFormat()
        colours = palette.current()
        fmt_.setBackground(colours.error)
        fmt_.setForeground(QColor("#ffffff"))
        fmt_.setFontWeight(700)
        out: list[QTextEdit.ExtraSelection] = []
        for i in self.marked:
            out += self._cells(i, i + 1, fmt_)
        return out

    def highlight(self, start: int | None, end: int | None) -> None:
        """Highlight bytes ``start .. end-1`` (both columns); None clears (the marked bytes stay marked)."""
        if start is None or end is None or end <= start:
            self.highlighted = None
            self.setExtraSelections(self._marks())
            return
        end = min(end, len(self.data), HEX_LIMIT)
        start = max(0, min(start, end))
        self.highlighted = (start, end)
        fmt_ = QTextCharFormat()
        colours = palette.current()
        fmt_.setBackground(colours.held_bg)
        fmt_.setForeground(QColor(colours.held).darker(150) if not colours.dark else colours.held)
        self.setExtraSelections(self._cells(start, end, fmt_) + self._marks())
        cur = QTextCursor(self.document().findBlockByNumber(start // BYTES_PER_LINE))
        self.setTextCursor(cur)
        self.ensureCursorVisible()

    def _cells(self, start: int, end: int, fmt_: QTextCharFormat) -> list[QTextEdit.ExtraSelection]:
        """Selections covering bytes ``start .. end-1`` in both the hex and the ASCII column."""
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
        return selections


def flips_text(data: bytes, flips: tuple[int, ...]) -> str:
    """The bits a corrupt impairment flipped, in words, with each byte as sent and as it left the proxy."""
    parts = []
    for bit in flips[:8]:
        i, b = bit >> 3, bit & 7
        now = data[i] if i < len(data) else None
        was = "" if now is None else f": 0x{now ^ (1 << b):02x} → 0x{now:02x}"
        parts.append(f"bit {b} of byte {i}{was}")
    more = f" and {len(flips) - 8} more" if len(flips) > 8 else ""
    return ("⚡ corrupted by the proxy: " + ", ".join(parts) + more
            + " (marked in red in the hex view; the bytes shown are those the peer got)")


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
        # The decoders' names (plugins included) are added by ``fill_decoders``, after the window's first frame or
        # when a message is first shown: listing them loads every decoder and looks up the plugins (~60 ms).
        self.decode_as.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.decode_as.activated.connect(self._decode_as_chosen)
        self.struct_format = QLineEdit()
        self.struct_format.setPlaceholderText("<Hff12sB player_id x y name state")
        self.struct_format.setToolTip(STRUCT_TIP)
        self.struct_format.setMinimumWidth(220)
        self.struct_format.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.struct_format.editingFinished.connect(self._struct_format_entered)
        self.struct_format.hide()
        self.copy_button = QPushButton("Copy as")
        self.copy_button.setToolTip("copy the message as hex, text or a Python bytes literal")
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
        head.addWidget(self.struct_format)
        head.addWidget(self.copy_button)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["field", "value", "bytes"])
        self.tree.headerItem().setToolTip(2, "byte range in the message (select a field to highlight it)")
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.currentItemChanged.connect(self._field_chosen)
        self.hex = HexView()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.hide()
        self.framing_note = QLabel()
        self.framing_note.setObjectName("framing_note")
        self.framing_note.setWordWrap(True)
        self.framing_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.framing_note.setContentsMargins(4, 0, 4, 0)
        self.framing_note.hide()

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("detail_split")
        split.addWidget(self.tree)
        split.addWidget(self.hex)
        # The hex view needs its full width (16 bytes and their ASCII column) to be read without scrolling sideways:
        # side by side with the tree when the pane is wide enough for both, else the tree above the hex
        # (resizeEvent). The splitter is the user's to move.
        fm = self.hex.fontMetrics()
        self.hex_width = fm.horizontalAdvance("0" * (_ASCII_COL + BYTES_PER_LINE + 1)) + 2 * self.hex.frameWidth() \
            + self.hex.document().documentMargin() * 2 + self.hex.verticalScrollBar().sizeHint().width() + 4
        self.hex.setMinimumWidth(fm.horizontalAdvance("0" * 24))
        self.tree.setMinimumWidth(TREE_MIN_PX)
        self.tree.setMinimumHeight(40)
        self.hex.setMinimumHeight(40)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([TREE_MIN_PX + 100, int(self.hex_width)])
        self.split = split
        self.tabs = QTabWidget()
        self.tabs.addTab(split, "Decoded + hex")
        self.tabs.addTab(self.text, "Text")
        self.tabs.setDocumentMode(True)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(head)
        lay.addWidget(self.framing_note)
        lay.addWidget(self.warnings)
        lay.addWidget(self.tabs, 1)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._arrange()

    def _arrange(self) -> None:
        """Tree and hex side by side when both fit, else one above the other (the hex at its full width)."""
        side_by_side = self.width() >= TREE_MIN_PX + self.hex_width + self.split.handleWidth() + 8
        want = Qt.Orientation.Horizontal if side_by_side else Qt.Orientation.Vertical
        if self.split.orientation() == want:
            return
        self.split.setOrientation(want)
        if side_by_side:
            self.split.setSizes([max(TREE_MIN_PX, self.width() - int(self.hex_width)), int(self.hex_width)])
        else:
            h = max(120, self.split.height())
            self.split.setSizes([h * 2 // 5, h * 3 // 5])

    def fill_decoders(self) -> None:
        """The "decode as" list: automatic, then every decoder. Once; before that the list is empty."""
        if not self.decode_as.count():
            self.decode_as.addItems(self.decoding.names())

    def show_row(self, row: int | None) -> None:
        self.fill_decoders()
        self.row = row
        self.tree.clear()
        if row is None:
            self.title.setText("Select a message to see it decoded.")
            self.hex.set_data(b"")
            self.text.setPlainText("")
            self.warnings.hide()
            self.framing_note.hide()
            self.struct_format.hide()
            self.view = None
            return
        s = self.store
        d = s.direction(row)
        conn = s.conn_of(row)
        view = self.view = self.decoding.view(row)
        data = s.payload(row)
        colours = palette.current()
        state = s.state(row).value
        origin = s.origin(row).value
        delay = added_delay_text(s, row)
        self.title.setText(
            f"<b>#{s.display_id(row)}</b> <span style='color:{colours.direction(d).name()}'>{d.arrow} {d.label}"
            f"</span> · conn #{conn} · {s.size(row)} B · {state}"
            + (f" · {origin}" if origin != "live" else "") + (f" · {delay}" if delay else "")
            + f" · <b>{view.decoder}</b>")
        self.decode_as.setCurrentText(self.decoding.current_decode_as(conn, d))
        self._show_struct_format(conn, d)
        note = message_note(s, row)
        self.framing_note.setText(note)
        self.framing_note.setStyleSheet(f"color: {colours.muted.name()}")
        self.framing_note.setVisible(bool(note))
        notes = list(view.warnings)
        if gave_up(view):
            notes.insert(0, view.summary)  # "⚠ gave up decoding after N ms (decoder): why · first bytes"
        elif view.error:
            notes.insert(0, f"⚠ {view.error}")
        if (orig := s.original_payload(row)) is not None:
            notes.append(f"edited before forwarding; the original was {orig!r}"[:300])
        flips = s.flips(row)
        # what the proxy did to a datagram; the flipped bits get a sentence of their own
        said = [f"UDP: {p}" for p in s.note(row).split("; ") if p and not (flips and p.startswith("corrupted"))]
        if flips:
            said.append(flips_text(data, flips))
        notes[:0] = said
        self.warnings.setText("\n".join(notes))
        self.warnings.setStyleSheet(f"color: {colours.error.name() if view.error else colours.held.name()}")
        self.warnings.setVisible(bool(notes))
        self.hex.set_data(data, tuple(bit >> 3 for bit in flips))
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

    def _show_struct_format(self, conn_id: int, d: Direction) -> None:
        is_struct = self.decode_as.currentText() == "struct"
        self.struct_format.setVisible(is_struct)
        if is_struct and not self.struct_format.hasFocus():
            self.struct_format.setText(self.decoding.current_struct_format(conn_id, d))
            self.struct_format.setStyleSheet("")

    def _decode_as_chosen(self, _index: int) -> None:
        if self.row is None:
            return
        name = self.decode_as.currentText()
        s = self.store
        conn_id, d = s.conn_of(self.row), s.direction(self.row)
        from inspector.decode import AUTO  # here: the decoders load after the first frame

        self.decoding.decode_as(None if name == AUTO else name, conn_id, d)
        self.show_row(self.row)
        if name == "struct" and not self.decoding.current_struct_format(conn_id, d):
            self.struct_format.setFocus()  # struct cannot guess the layout: ask for it right there
        self.decode_as_changed.emit()

    def set_struct_format(self, spec: str) -> bool:
        """Use layout ``spec`` for the shown message's connection and direction; False (and the reason shown)
        when it does not parse."""
        if self.row is None:
            return False
        s = self.store
        conn_id, d = s.conn_of(self.row), s.direction(self.row)
        if spec.strip() == self.decoding.current_struct_format(conn_id, d):
            return True
        try:
            if spec.strip():
                from inspector.decode import parse_layout  # here: the decoders load after the first frame

                parse_layout(spec.strip())
            self.decoding.set_struct_format(spec, conn_id, d)
        except ValueError as e:
            self.struct_format.setStyleSheet(f"QLineEdit {{ border: 1px solid {palette.current().error.name()}; }}")
            self.struct_format.setToolTip(f"⚠ {e}")
            self.warnings.setText(f"⚠ struct layout: {e}")
            self.warnings.setStyleSheet(f"color: {palette.current().error.name()}")
            self.warnings.show()
            return False
        self.struct_format.setStyleSheet("")
        self.struct_format.setToolTip(STRUCT_TIP)
        self.show_row(self.row)
        self.decode_as_changed.emit()
        return True

    def _struct_format_entered(self) -> None:
        self.set_struct_format(self.struct_format.text())

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

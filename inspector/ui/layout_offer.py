"""The "layouts" offer: struct layouts that fit a direction's fixed-size records, to accept and rename.

Role: when a direction of a connection carries fixed-size records (``fixed:N`` framing), the window can offer the
struct layouts of that size found for it (from the program's source, or a guess from the bytes: clearly marked
so). :class:`LayoutOfferDialog` lists them, shows each field with its value in a record that was captured, lets
the user rename the fields, and applies the chosen layout with ``Decoding.set_struct_format(spec, conn_id,
direction)`` (the struct decoder then decodes every record of that direction). The candidates are any objects with
the attributes of :class:`LayoutLike` (``inspector.layouts.Layout``), passed in: this module finds none itself.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, Protocol

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.framing_words import FROM_TO
from proxy.model import Direction

__all__ = ["CODE_WORDS", "LayoutLike", "LayoutOfferDialog", "layout_spec"]

CODE_WORDS: Final = {
    "b": "signed 1-byte int", "B": "unsigned 1-byte int", "h": "signed 2-byte int", "H": "unsigned 2-byte int",
    "i": "signed 4-byte int", "I": "unsigned 4-byte int", "l": "signed 4-byte int", "L": "unsigned 4-byte int",
    "q": "signed 8-byte int", "Q": "unsigned 8-byte int", "n": "signed size", "N": "unsigned size",
    "e": "2-byte float", "f": "4-byte float", "d": "8-byte float", "?": "bool", "c": "1 character",
    "s": "text (bytes)", "p": "Pascal string", "P": "pointer",
}
"""What each struct code holds, in words."""


class LayoutLike(Protocol):
    """What the dialog needs of a candidate layout (``inspector.layouts.Layout``)."""

    @property
    def fmt(self) -> str: ...

    @property
    def names(self) -> Sequence[str]: ...

    @property
    def origin(self) -> str:
        """Where it was found ("game.py:12 struct.Struct('<BBHff')"), or how it was guessed."""
        ...

    @property
    def guessed(self) -> bool: ...

    def spec(self) -> str: ...


def layout_spec(fmt: str, names: Sequence[str]) -> str:
    """The struct decoder's ``FORMAT name1 name2`` text; ``ValueError`` with one line saying what is wrong."""
    spec = " ".join([fmt, *names])
    from inspector.decode import parse_layout  # here: the decoders load after the first frame

    parse_layout(spec)
    return spec


class LayoutOfferDialog(QDialog):
    """Candidate layouts for one direction's records: choose one, rename its fields, use it."""

    applied = Signal(str)
    """The spec applied (``FORMAT name1 name2``)."""

    def __init__(self, decoding: Decoding, conn_id: int, direction: Direction, candidates: Sequence[LayoutLike],
                 sample: bytes | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decoding = decoding
        self.conn_id = conn_id
        self.direction = direction
        self.candidates = list(candidates)
        self.sample = sample or b""
        self.setWindowTitle(f"Struct layouts for connection #{conn_id} {direction.arrow} {direction.label}")
        size = self._size(self.candidates[0]) if self.candidates else 0
        about = QLabel(
            f"The messages {FROM_TO[direction]} on connection #{conn_id} are records of {size} bytes. These "
            "layouts fit that size. Choose one and name its fields; the table then shows every record decoded "
            "with it." if self.candidates else
            f"No struct layout was found for the messages {FROM_TO[direction]} on connection #{conn_id}.")
        about.setWordWrap(True)
        self.choices = QListWidget()
        for c in self.candidates:
            mark = "≈ guess: " if c.guessed else ""
            item = QListWidgetItem(f"{mark}{c.spec()}\n   {c.origin}")
            item.setToolTip("a guess from the bytes (integers, floats, text by their statistics): check the "
                            "values below before you trust it" if c.guessed else f"found in {c.origin}")
            self.choices.addItem(item)
        self.fields = QTableWidget(0, 4)
        self.fields.setHorizontalHeaderLabels(["name (edit me)", "type", "bytes", "value in a record"])
        header = self.fields.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.fields.verticalHeader().hide()
        self.spec_label = QLabel()
        self.spec_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")
        self.error.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use = QPushButton("Use this layout")
        self.use.setDefault(True)
        self.buttons.addButton(self.use, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(about)
        lay.addWidget(self.choices)
        lay.addWidget(self.fields, 1)
        lay.addWidget(self.spec_label)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self._filling = False
        self.choices.currentRowChanged.connect(self._show_candidate)
        self.fields.itemChanged.connect(lambda _item: self._check())
        if self.candidates:
            self.choices.setCurrentRow(0)
        else:
            self.use.setEnabled(False)

    @staticmethod
    def _size(c: LayoutLike) -> int:
        """The record size of a candidate; 0 for one whose format is not struct's (said when it is chosen)."""
        try:
            size = getattr(c, "size", None)
            return size if isinstance(size, int) else struct.calcsize(c.fmt)
        except (struct.error, ValueError, TypeError):
            return 0

    def chosen(self) -> LayoutLike | None:
        i = self.choices.currentRow()
        return self.candidates[i] if 0 <= i < len(self.candidates) else None

    def names(self) -> list[str]:
        """The field names as the user left them."""
        out = []
        for r in range(self.fields.rowCount()):
            item = self.fields.item(r, 0)
            out.append(item.text().strip() if item is not None else "")
        return out

    def rename(self, index: int, name: str) -> None:
        """Name field ``index`` (what typing in the table does)."""
        item = self.fields.item(index, 0)
        if item is not None:
            item.setText(name)

    def spec(self) -> str:
        """The chosen layout with the names given; ``ValueError`` with one line saying what is wrong."""
        c = self.chosen()
        if c is None:
            raise ValueError("choose a layout first")
        names = self.names()
        for i, n in enumerate(names):
            if not n:
                raise ValueError(f"field {i + 1} needs a name")
            if not n.isidentifier():
                raise ValueError(f"field name {n!r} is not an identifier: letters, digits and _, not starting "
                                 "with a digit (no spaces)")
        return layout_spec(c.fmt, names)

    def _show_candidate(self, _row: int) -> None:
        c = self.chosen()
        self._filling = True
        self.fields.setRowCount(0)
        if c is not None:
            try:
                from inspector.decode import parse_layout  # here: the decoders load after the first frame

                layout = parse_layout(c.spec())
            except ValueError as e:
                self._filling = False
                self.error.setText(f"⚠ this layout cannot be used: {e}")
                self.error.show()
                self.use.setEnabled(False)
                return
            values: tuple[object, ...] = ()
            if len(self.sample) >= layout.size:
                try:
                    values = struct.unpack_from(layout.fmt, self.sample)
                except struct.error:
                    values = ()
            self.fields.setRowCount(len(layout.items))
            i = 0
            for r, item in enumerate(layout.items):
                name = QTableWidgetItem(item.name)
                name.setFlags(name.flags() | Qt.ItemFlag.ItemIsEditable)
                kind = CODE_WORDS.get(item.code, item.code)
                if item.code in "sp":
                    kind = f"{item.size}-byte {kind}"
                elif item.count > 1:
                    kind = f"{item.count} × {kind}"
                cells = [name, QTableWidgetItem(f"{item.count if item.count > 1 else ''}{item.code}  {kind}"),
                         QTableWidgetItem(f"{item.offset}–{item.offset + item.size}"),
                         QTableWidgetItem(self._value(values, i, item.n_values))]
                for col, cell in enumerate(cells):
                    if col:
                        cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    self.fields.setItem(r, col, cell)
                i += item.n_values
        self._filling = False
        self._check()

    @staticmethod
    def _value(values: tuple[object, ...], i: int, n: int) -> str:
        if not values:
            return ""
        v: object = values[i] if n == 1 else list(values[i:i + n])
        if isinstance(v, bytes):
            v = v.rstrip(b"\0")
        if isinstance(v, float):
            return f"{v:.7g}"
        return repr(v)[:80]

    def _check(self) -> bool:
        if self._filling:
            return False
        try:
            spec = self.spec()
        except ValueError as e:
            self.error.setText(f"⚠ {e}")
            self.error.show()
            self.spec_label.setText("")
            self.use.setEnabled(False)
            return False
        self.error.hide()
        self.spec_label.setText(f"layout: {spec}")
        self.use.setEnabled(True)
        return True

    def accept(self) -> None:
        if not self._check():
            return
        spec = self.spec()
        try:
            self.decoding.set_struct_format(spec, self.conn_id, self.direction)
        except ValueError as e:
            self.error.setText(f"⚠ {e}")
            self.error.show()
            return
        self.applied.emit(spec)
        super().accept()

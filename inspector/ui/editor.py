"""The edit dialog: change a message in its decoder's editable form (or as hex), then forward or resend it.

Role: used for "Edit & forward" (a held message: ``release`` with new bytes) and "Edit & resend" (any message:
``inject`` a copy). The text is encoded back by the decoder (JSON, msgpack, text ...); encode errors are shown
inline and the dialog stays open.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import EncodeError
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from proxy.model import Direction

HEX = "hex (raw bytes)"


class EditDialog(QDialog):
    def __init__(self, decoding: Decoding, row: int, action: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decoding = decoding
        self.row = row
        s = decoding.store
        self.conn_id = s.conn_ids[row]
        self.direction = Direction(s.dirs[row])
        self.data = s.payload(row)
        self.result_bytes: bytes | None = None
        self.setWindowTitle(f"{action}: message #{s.ids[row]} ({self.direction.arrow} {self.direction.label}, "
                            f"conn #{self.conn_id})")
        view = decoding.view(row)
        self.form = QComboBox()
        if view.can_encode and view.editable is not None:
            self.form.addItem(view.decoder)
        self.form.addItem(HEX)
        self.form.currentTextChanged.connect(self._form_changed)
        self.edit = QPlainTextEdit()
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.textChanged.connect(self._check)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")
        self.size_label = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText(action)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        top = QHBoxLayout()
        top.addWidget(QLabel("edit as"))
        top.addWidget(self.form)
        top.addStretch(1)
        top.addWidget(self.size_label)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.resize(560, 320)
        self._views = {view.decoder: view.editable or ""}
        self._form_changed(self.form.currentText())

    def _form_changed(self, form: str) -> None:
        self.edit.setPlainText(self.data.hex(" ") if form == HEX else self._views.get(form, ""))

    def encoded(self) -> bytes:
        """The edited bytes; raises ``EncodeError``/``ValueError`` with a readable message."""
        form, text = self.form.currentText(), self.edit.toPlainText()
        if form == HEX:
            try:
                return bytes.fromhex(text)
            except ValueError as e:
                raise EncodeError(f"not hex: {e}") from None
        return self.decoding.encode(form, text, self.conn_id, self.direction)

    def _check(self) -> None:
        ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            data = self.encoded()
        except (EncodeError, ValueError) as e:
            self.error.setText(f"⚠ {e}")
            ok_button.setEnabled(False)
            return
        self.error.setText("")
        self.size_label.setText(f"{len(data)} bytes" + (" (unchanged)" if data == self.data else ""))
        ok_button.setEnabled(True)

    def accept(self) -> None:
        try:
            self.result_bytes = self.encoded()
        except (EncodeError, ValueError) as e:
            self.error.setText(f"⚠ {e}")
            return
        super().accept()

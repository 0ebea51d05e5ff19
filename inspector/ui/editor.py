"""The message editors: change a message (Edit & forward, Edit & resend) or write a new one (Compose).

Role: :class:`EditDialog` is used for "Edit & forward" (a held message: ``release`` with new bytes) and "Edit &
resend" (any message: ``inject`` a copy); :class:`ComposeDialog` writes a message from scratch and picks the
connection and direction it goes to (``inject``). Both encode the text with the decoders' encoders (JSON,
msgpack, text with escapes, struct, hex ...); encode errors are shown inline and the dialog stays open.
Must not import: ``inspector.bridge`` (the window sends what the dialogs produce).
Thread: GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import EncodeError
from inspector.ui import palette
from inspector.ui.decoding import Decoding
from proxy.model import Direction

HEX = "hex (raw bytes)"
PREVIEW_BYTES = 24

PLACEHOLDERS = {
    "text": "ping 1\\n\n\nText as UTF-8. Escapes: \\n newline, \\r, \\t, \\\\, \\xNN a byte, \\uNNNN a character.",
    "json": '{"type": "ping", "id": 1}',
    "msgpack": '{"type": "ping", "id": 1}\n\nOne Python literal per packed object (dict, list, str, int, '
               'float, bytes, None, True/False); several lines send several objects.',
    "hex": "70 69 6e 67 20 31 0a\n\nHex digits; spaces and line breaks are ignored.",
    HEX: "70 69 6e 67 20 31 0a",
}
"""What the text box shows while it is empty, per form."""


def direction_label(d: Direction) -> str:
    return f"{d.arrow} {d.label}  " + ("client → server" if d is Direction.C2S else "server → client")


class _MessageEditor(QDialog):
    """A form chooser, a text box, inline errors, the size of the result, and OK/Cancel."""

    def __init__(self, decoding: Decoding, action: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decoding = decoding
        self.result_bytes: bytes | None = None
        self.form = QComboBox()
        self.form.setToolTip("how you write the message: it is encoded to bytes by that decoder")
        self.edit = QPlainTextEdit()
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.textChanged.connect(self._check)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")
        self.size_label = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(action)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

    # subclasses say who the message is for
    def target(self) -> tuple[int | None, Direction | None]:
        raise NotImplementedError

    def encoded(self) -> bytes:
        """The bytes for the current text; raises ``EncodeError``/``ValueError`` with a readable message."""
        form, text = self.form.currentText(), self.edit.toPlainText()
        if form == HEX:
            try:
                return bytes.fromhex(text)
            except ValueError as e:
                raise EncodeError(f"not hex: {e}") from None
        conn_id, direction = self.target()
        return self.decoding.encode(form, text, conn_id, direction)

    def _check(self) -> bytes | None:
        try:
            data = self.encoded()
        except (EncodeError, ValueError) as e:
            self.error.setText(f"⚠ {e}")
            self.size_label.setText("")
            self.ok_button.setEnabled(False)
            return None
        self.error.setText("")
        self.size_label.setText(self._size_text(data))
        self.ok_button.setEnabled(self._can_send())
        return data

    def _size_text(self, data: bytes) -> str:
        return f"{len(data)} bytes"

    def _can_send(self) -> bool:
        return True

    def accept(self) -> None:
        try:
            self.result_bytes = self.encoded()
        except (EncodeError, ValueError) as e:
            self.error.setText(f"⚠ {e}")
            return
        if not self._can_send():
            return
        super().accept()


class EditDialog(_MessageEditor):
    """Edit a captured message: its decoder's editable form or its hex."""

    def __init__(self, decoding: Decoding, row: int, action: str, parent: QWidget | None = None, *,
                 about: str = "", blocked: str = "") -> None:
        super().__init__(decoding, action, parent)
        self.row = row
        s = decoding.store
        self.conn_id = s.conn_ids[row]
        self.direction = Direction(s.dirs[row])
        self.data = s.payload(row)
        self.blocked = blocked
        """Why the message cannot be sent (its connection closed), or empty."""
        self.setWindowTitle(f"{action}: message #{s.ids[row]} ({self.direction.arrow} {self.direction.label}, "
                            f"conn #{self.conn_id})")
        self.about = QLabel(about or f"Message #{s.ids[row]} ({self.direction.arrow} {self.direction.label}) on "
                                     f"connection #{self.conn_id}.")
        self.about.setWordWrap(True)
        self.blocked_label = QLabel(blocked)
        self.blocked_label.setWordWrap(True)
        self.blocked_label.setStyleSheet(f"color: {palette.current().error.name()}")
        self.blocked_label.setVisible(bool(blocked))
        view = decoding.view(row)
        if view.can_encode and view.editable is not None:
            self.form.addItem(view.decoder)
        self.form.addItem(HEX)
        self.form.currentTextChanged.connect(self._form_changed)
        top = QHBoxLayout()
        top.addWidget(QLabel("edit as"))
        top.addWidget(self.form)
        top.addStretch(1)
        top.addWidget(self.size_label)
        lay = QVBoxLayout(self)
        lay.addWidget(self.about)
        lay.addWidget(self.blocked_label)
        lay.addLayout(top)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.resize(560, 340)
        self._views = {view.decoder: view.editable or ""}
        self._form_changed(self.form.currentText())

    def _can_send(self) -> bool:
        return not self.blocked

    def target(self) -> tuple[int | None, Direction | None]:
        return self.conn_id, self.direction

    def _form_changed(self, form: str) -> None:
        self.edit.setPlainText(self.data.hex(" ") if form == HEX else self._views.get(form, ""))

    def _size_text(self, data: bytes) -> str:
        return f"{len(data)} bytes" + (" (unchanged)" if data == self.data else "")


class ComposeDialog(_MessageEditor):
    """Write a new message from scratch and send it on an open connection, in either direction.

    ``send_requested(conn_id, direction, data)`` is emitted by Send (which closes the dialog) and by
    "Send, keep open" (which does not, for sending several). The window turns it into ``inject``.
    """

    send_requested = Signal(int, object, bytes)

    def __init__(self, decoding: Decoding, connections: list[tuple[int, str]], conn_id: int | None = None,
                 direction: Direction = Direction.C2S, form: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(decoding, "Send", parent)
        self.setWindowTitle("Compose a message")
        self.sent = 0
        self.conn = QComboBox()
        self.conn.setToolTip("the open connection the message is sent on")
        self.direction = QComboBox()
        for d in Direction:
            self.direction.addItem(direction_label(d), d)
        self.direction.setToolTip("c2s: the server receives it as if your client had sent it;\n"
                                  "s2c: your client receives it as if the server had sent it")
        self.direction.setCurrentIndex(list(Direction).index(direction))
        forms = decoding.encoders()
        for name in forms:
            self.form.addItem(name)
        default = form if form in forms else "text" if "text" in forms else (forms[0] if forms else "")
        self.form.setCurrentText(default)
        self.form_note = QLabel()
        self.form_note.setWordWrap(True)
        self.form_note.setStyleSheet(f"color: {palette.current().muted.name()}")
        self.preview = QLabel()
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.preview.setToolTip("the first bytes that will be sent")
        self.keep_open = QPushButton("Send, keep open")
        self.keep_open.setToolTip("send and keep this dialog open to send more")
        self.keep_open.clicked.connect(self.send_keep_open)
        self.buttons.addButton(self.keep_open, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")
        self.ok_button.setToolTip("send the message and close this dialog")
        self.set_connections(connections, conn_id)

        grid = QGridLayout()
        grid.addWidget(QLabel("connection"), 0, 0)
        grid.addWidget(self.conn, 0, 1)
        grid.addWidget(QLabel("direction"), 0, 2)
        grid.addWidget(self.direction, 0, 3)
        grid.addWidget(QLabel("write as"), 1, 0)
        grid.addWidget(self.form, 1, 1)
        grid.addWidget(self.size_label, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(grid)
        lay.addWidget(self.form_note)
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.preview)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.resize(600, 380)
        self.form.currentTextChanged.connect(self._form_changed)
        self.direction.currentIndexChanged.connect(lambda _i: self._form_changed(self.form.currentText()))
        self.conn.currentIndexChanged.connect(lambda _i: self._form_changed(self.form.currentText()))
        self._form_changed(self.form.currentText())

    def set_connections(self, connections: list[tuple[int, str]], select: int | None = None) -> None:
        """The open connections as (id, label); keeps the current choice when it is still open."""
        keep = self.conn_id() if select is None else select
        self.conn.blockSignals(True)
        self.conn.clear()
        for cid, label in connections:
            self.conn.addItem(label, cid)
        if not connections:
            self.conn.addItem("no open connection: start your client first", None)
        i = self.conn.findData(keep) if keep is not None else -1
        self.conn.setCurrentIndex(i if i >= 0 else self.conn.count() - 1)
        self.conn.blockSignals(False)
        self.conn.setEnabled(bool(connections))
        if hasattr(self, "preview"):
            self._check()

    def conn_id(self) -> int | None:
        v = self.conn.currentData()
        return int(v) if v is not None else None

    def chosen_direction(self) -> Direction:
        d = self.direction.currentData()
        return d if isinstance(d, Direction) else Direction.C2S

    def target(self) -> tuple[int | None, Direction | None]:
        return self.conn_id(), self.chosen_direction()

    def _form_changed(self, form: str) -> None:
        conn_id, d = self.target()
        note, placeholder = "", PLACEHOLDERS.get(form, "")
        if form == "struct":
            spec = self.decoding.current_struct_format(conn_id, d)
            if not spec:
                note = ("struct needs a layout for this connection and direction first: Connections panel, "
                        "right click ▸ Decode as…, e.g. <Hff12sB player_id x y name state")
            else:
                try:
                    from inspector.decode import parse_layout  # here: the decoders load after the first frame

                    names = [it.name for it in parse_layout(spec).items]
                except ValueError:
                    names = []
                note = f"layout {spec}: one 'name = value' line per field"
                placeholder = "\n".join(f"{n} = 0" for n in names)
        elif form in ("json", "msgpack"):
            note = "A first line '# length-prefix >I' (or >H, <I, <H) puts the body's length in front."
        self.form_note.setText(note)
        self.form_note.setVisible(bool(note))
        self.edit.setPlaceholderText(placeholder)
        self._check()

    def _check(self) -> bytes | None:
        data = super()._check()
        if data is None:
            self.preview.setText("")
        else:
            head = data[:PREVIEW_BYTES].hex(" ")
            self.preview.setText(f"bytes: {head}" + (" …" if len(data) > PREVIEW_BYTES else "")
                                 if data else "bytes: (none yet)")
        self.keep_open.setEnabled(self.ok_button.isEnabled())
        return data

    def _can_send(self) -> bool:
        return self.conn_id() is not None and bool(self.edit.toPlainText())

    def send_keep_open(self) -> bool:
        """Send the current message and keep the dialog open; False (and the reason shown) if it cannot."""
        try:
            data = self.encoded()
        except (EncodeError, ValueError) as e:
            self.error.setText(f"⚠ {e}")
            return False
        conn_id = self.conn_id()
        if conn_id is None or not self._can_send():
            return False
        self.send_requested.emit(conn_id, self.chosen_direction(), data)
        self.sent += 1
        self.size_label.setText(f"{len(data)} bytes · sent {self.sent}×")
        return True

    def accept(self) -> None:
        if self.send_keep_open():
            self.result_bytes = self.encoded()
            QDialog.accept(self)


"""The "Decode as…" dialog: fix the decoder of a connection (one direction or both), with a struct layout box.

Role: the Connections panel's way to say "connection #3 is msgpack" or "its server→client messages are
``<Hff12sB player_id x y name state``", instead of letting auto-detection guess per message. A live preview
decodes that connection's first message with the choice before it is applied; a bad struct layout is shown
inline and OK stays disabled. Applying goes through :class:`~inspector.ui.decoding.Decoding` (which forgets the
cached summaries); the window then refreshes the table.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from inspector.ui import palette
from inspector.ui.decoding import Decoding
from inspector.ui.editor import direction_label
from proxy.model import Direction

STRUCT = "struct"
STRUCT_PLACEHOLDER = "<Hff12sB player_id x y name state"
STRUCT_HELP = ("byte order (< little, > big, ! network) then codes: B/H/I/Q unsigned 1/2/4/8 bytes, b/h/i/q "
               "signed, f/d float/double, 12s 12 bytes, ? bool, x padding; then a name per field")


class DecodeAsDialog(QDialog):
    def __init__(self, decoding: Decoding, conn_id: int, direction: Direction | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.decoding = decoding
        self.conn_id = conn_id
        self.setWindowTitle(f"Decode connection #{conn_id} as …")
        self.direction = QComboBox()
        self.direction.addItem("both directions", None)
        for d in Direction:
            self.direction.addItem(direction_label(d), d)
        self.direction.setCurrentIndex(0 if direction is None else 1 + list(Direction).index(direction))
        self.decoder = QComboBox()
        self.decoder.addItems(decoding.names())
        self.decoder.setToolTip("auto: the most confident decoder for each message")
        self.struct_format = QLineEdit()
        self.struct_format.setPlaceholderText(STRUCT_PLACEHOLDER)
        self.struct_format.setToolTip(STRUCT_HELP)
        self.struct_format.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.struct_help = QLabel(STRUCT_HELP)
        self.struct_help.setWordWrap(True)
        self.struct_help.setStyleSheet(f"color: {palette.current().muted.name()}")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setToolTip("the first message of this connection in that direction, decoded with this choice")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Apply")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("messages", self.direction)
        form.addRow("decode as", self.decoder)
        form.addRow("struct layout", self.struct_format)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.struct_help)
        lay.addWidget(self.error)
        lay.addWidget(self.preview)
        lay.addWidget(self.buttons)
        self.resize(560, 260)

        self._load()
        self.direction.currentIndexChanged.connect(lambda _i: self._load())
        self.decoder.currentTextChanged.connect(lambda _t: self._update())
        self.struct_format.textChanged.connect(lambda _t: self._update())
        self._update()

    def chosen_direction(self) -> Direction | None:
        d = self.direction.currentData()
        return d if isinstance(d, Direction) else None

    def _load(self) -> None:
        """Show what is set now for the chosen direction(s)."""
        d = self.chosen_direction()
        probe = d or Direction.C2S
        self.decoder.blockSignals(True)
        self.decoder.setCurrentText(self.decoding.current_decode_as(self.conn_id, probe))
        self.decoder.blockSignals(False)
        self.struct_format.blockSignals(True)
        self.struct_format.setText(self.decoding.current_struct_format(self.conn_id, probe))
        self.struct_format.blockSignals(False)
        self._update()

    def _sample(self) -> tuple[bytes, Direction] | None:
        s = self.decoding.store
        want = self.chosen_direction()
        for r in range(len(s)):
            if s.conn_ids[r] == self.conn_id and (want is None or s.dirs[r] == want) and not s.payload_evicted(r):
                # a read re-framed for the view: its first whole message, as the table shows it
                for h in (s.frames_ending_in(r) if s.reframed(r) else (r,)):
                    data = s.payload(h)
                    if data:
                        return data, Direction(s.dirs[r])
        return None

    def layout_error(self) -> str | None:
        if self.decoder.currentText() != STRUCT:
            return None
        spec = self.struct_format.text().strip()
        if not spec:
            return "struct needs a layout, e.g. " + STRUCT_PLACEHOLDER
        try:
            from inspector.decode import parse_layout  # here: the decoders load after the first frame

            parse_layout(spec)
        except ValueError as e:
            return str(e)
        return None

    def _update(self) -> None:
        is_struct = self.decoder.currentText() == STRUCT
        self.struct_format.setEnabled(is_struct)
        self.struct_help.setVisible(is_struct)
        err = self.layout_error()
        self.error.setText(f"⚠ {err}" if err else "")
        self.error.setVisible(bool(err))
        self.ok_button.setEnabled(err is None)
        sample = self._sample()
        if sample is None:
            self.preview.setText("<i>no message on this connection in that direction yet</i>")
            return
        data, d = sample
        view = self.decoding.preview(data, self.decoder.currentText(), self.struct_format.text() if is_struct else "",
                                     self.conn_id, d)
        text = f"⚠ {view.error}" if view.error else view.summary
        esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.preview.setText(f"first {d.label} message as <b>{view.decoder}</b>: {esc[:300]}")

    def apply(self) -> None:
        """Apply the choice (raises ``ValueError`` for a bad struct layout)."""
        d = self.chosen_direction()
        name = self.decoder.currentText()
        if name == STRUCT:
            self.decoding.set_struct_format(self.struct_format.text(), self.conn_id, d)
        from inspector.decode import AUTO  # here: the decoders load after the first frame

        self.decoding.decode_as(None if name == AUTO else name, self.conn_id, d)

    def accept(self) -> None:
        if self.layout_error() is not None:
            return
        try:
            self.apply()
        except (ValueError, KeyError) as e:
            self.error.setText(f"⚠ {e}")
            self.error.show()
            return
        super().accept()

"""The start page: shown when sockscope has no target yet. Asks two questions and shows the one line to change.

Role: "your server's address" and "the port your client should use", with the line of the user's client that
must change (``c.connect(("127.0.0.1", 5555))`` becomes port 5556), recent targets, and a demo button.
Emits ``start_requested(LinkOptions)``.
Must not import: ``inspector.bridge`` beyond its ``LinkOptions`` value type.
Thread: GUI thread.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from inspector.bridge import LinkOptions
from inspector.ui import palette
from proxy.options import UsageError, parse_hostport

FRAMINGS = ("auto", "raw", "lines", "len16", "len32", "len16le", "len32le", "header16json", "msgpack", "json")
"""The framing choices offered by name (``auto`` first: sockscope works it out; the box also takes any other name
``--framing`` takes, such as ``delim:EOT\\x00`` or ``fixed:12``)."""


class StartPage(QWidget):
    start_requested = Signal(object)  # LinkOptions
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        colours = palette.current()
        title = QLabel("<h2>Watch your game's traffic</h2>")
        intro = QLabel("sockscope sits between your client and your server and shows every message. "
                       "Tell it where your server is and which port your client should use instead.")
        intro.setWordWrap(True)
        self.target = QLineEdit("127.0.0.1:5555")
        self.target.setToolTip("where your server listens, as HOST:PORT")
        self.listen_port = QSpinBox()
        self.listen_port.setRange(1, 65535)
        self.listen_port.setValue(5556)
        self.listen_port.setToolTip("sockscope listens here on 127.0.0.1; point your client at it")
        self.framing = QComboBox()
        self.framing.setEditable(True)
        self.framing.addItems(FRAMINGS)
        self.framing.setToolTip("what one message is: auto = sockscope works it out from the first messages; "
                                "raw = each recv() as your code sees it; lines; length-prefixed; header16json "
                                "(a JSON header, then the body); msgpack or JSON streams; delim:TEXT; fixed:N")
        form = QFormLayout()
        form.addRow("Your server's address", self.target)
        form.addRow("The port your client should use", self.listen_port)
        form.addRow("Framing", self.framing)
        self.change = QLabel()
        self.change.setTextFormat(Qt.TextFormat.RichText)
        self.change.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        self._mono = mono
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.start_button = QPushButton("Start watching")
        self.start_button.setDefault(True)
        self.demo_button = QPushButton("Try the demo (a tiny server and client)")
        self.recent = QListWidget()
        self.recent.setMaximumHeight(110)
        self.recent.setToolTip("double-click to use a recent target")
        self.recent.itemDoubleClicked.connect(lambda item: self._use_recent(item.text()))
        self.start_button.clicked.connect(self._start)
        self.demo_button.clicked.connect(self.demo_requested.emit)
        self.target.textChanged.connect(self._update_change)
        self.listen_port.valueChanged.connect(self._update_change)
        self.target.returnPressed.connect(self._start)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.demo_button)
        buttons.addStretch(1)
        box = QVBoxLayout()
        box.addWidget(title)
        box.addWidget(intro)
        box.addLayout(form)
        box.addWidget(QLabel("<b>The one line to change in your client</b>"))
        box.addWidget(self.change)
        box.addLayout(buttons)
        box.addWidget(self.error)
        box.addWidget(QLabel("Recent targets"))
        box.addWidget(self.recent)
        box.addStretch(1)
        inner = QWidget()
        inner.setLayout(box)
        inner.setMaximumWidth(720)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(inner, 3)
        outer.addStretch(1)
        self.set_colours(colours)

    def set_colours(self, colours: palette.Colours) -> None:
        """The look changed (light or dark): the colours that are not the palette's own."""
        self.error.setStyleSheet(f"color: {colours.error.name()}")
        self._update_change()

    def _update_change(self) -> None:
        try:
            host, port = parse_hostport(self.target.text(), "server")
        except UsageError:
            host, port = "127.0.0.1", 5555
        colours = palette.current()
        listen = self.listen_port.value()
        self.change.setText(
            f"<pre style='font-family:{self._mono}'>"
            f"<span style='color:{colours.muted.name()}'># before: straight to the server</span>\n"
            f"<s>c.connect((\"{host}\", {port}))</s>\n"
            f"<span style='color:{colours.muted.name()}'># after: through sockscope</span>\n"
            f"<b style='color:{colours.c2s.name()}'>c.connect((\"127.0.0.1\", {listen}))</b></pre>")

    def _use_recent(self, text: str) -> None:
        target, _, listen = text.partition(" ← client port ")
        self.target.setText(target.strip())
        if listen.strip().isdigit():
            self.listen_port.setValue(int(listen))

    def options(self) -> LinkOptions:
        """The user's choices; raises ``UsageError`` with a readable message."""
        target = parse_hostport(self.target.text(), "server address")
        return LinkOptions(listen=("127.0.0.1", self.listen_port.value()), target=target,
                           framing=self.framing.currentText().strip() or "auto")

    def _start(self) -> None:
        try:
            opts = self.options()
        except UsageError as e:
            self.show_error(str(e))
            return
        self.show_error("")
        self.start_requested.emit(opts)

    def show_error(self, text: str) -> None:
        self.error.setText(text)

    def set_recent(self, items: list[str]) -> None:
        self.recent.clear()
        self.recent.addItems(items)

"""The filter bar: an expression (``json.type == "ping" and s2c``), checked as you type, applied on Enter.

Role: parses with ``inspector.filters.parse_filter``; a syntax error is shown inline under the text with a caret
at its column, and the field turns red; the last filters are kept as history (QSettings via the window).
Emits ``filter_changed(Filter | None)`` with a compiled filter, never a half-valid one.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QStringListModel, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QCompleter, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from inspector.ui import palette

if TYPE_CHECKING:
    # inspector.filters (and the decoders and field paths it brings) costs ~50 ms before the window's first frame:
    # it is imported when the filter box first gets the focus (its completions) or a filter is checked
    from inspector.filters import Filter, FilterError

HISTORY_MAX = 20


class FilterBar(QWidget):
    filter_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setMaxCount(HISTORY_MAX)
        self.combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        edit = self.combo.lineEdit()
        assert edit is not None
        self.edit = edit
        edit.setPlaceholderText('Filter: e.g.  s2c and text contains "pong"   ·   json.type == "ping"   ·   '
                                'size > 100   (Enter applies, Ctrl+F focuses)')
        edit.setClearButtonEnabled(True)
        self._words = QStringListModel(self)  # filled on the first focus-in: nothing can be typed before
        completer = QCompleter(self._words, self)
        completer.setCompletionMode(QCompleter.CompletionMode.InlineCompletion)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        edit.setCompleter(completer)
        self.combo.installEventFilter(self)  # the combo takes the focus and hands its key presses to the edit
        edit.installEventFilter(self)
        edit.returnPressed.connect(self.apply)
        edit.textEdited.connect(self._schedule_check)
        self.combo.activated.connect(lambda _i: self.apply())
        self.apply_button = QToolButton()
        self.apply_button.setText("Apply")
        self.apply_button.clicked.connect(self.apply)
        self.count = QLabel()
        self.count.setToolTip("messages shown by the filter / all captured messages")
        self.error = QLabel()
        self.error.setTextFormat(Qt.TextFormat.RichText)
        self.error.setWordWrap(True)  # a long error (the list of fields) wraps; it never widens the window
        self.error.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.error.hide()
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(250)
        self._check_timer.timeout.connect(self.check)
        self.current: Filter | None = None

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Filter"))
        row.addWidget(self.combo, 1)
        row.addWidget(self.apply_button)
        row.addWidget(self.count)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.setSpacing(1)
        lay.addLayout(row)
        lay.addWidget(self.error)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusIn and watched in (self.combo, self.edit) and not self._words.rowCount():
            from inspector.filters import FIELD_NAMES, KEYWORDS

            self._words.setStringList([*FIELD_NAMES, *KEYWORDS])
            self.combo.removeEventFilter(self)
            self.edit.removeEventFilter(self)
        return super().eventFilter(watched, event)

    @property
    def text(self) -> str:
        return self.edit.text()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)

    def _schedule_check(self, _text: str = "") -> None:
        self._check_timer.start()

    def check(self) -> Filter | FilterError | None:
        """Parse the current text; show or hide the inline error. Returns the filter or the error."""
        from inspector.filters import FilterError, parse_filter

        text = self.text.strip()
        if not text:
            self._show_error(None)
            return None
        try:
            f = parse_filter(text)
        except FilterError as e:
            self._show_error(e)
            return e
        self._show_error(None)
        return f

    def _show_error(self, e: FilterError | None) -> None:
        colours = palette.current()
        if e is None:
            self.error.hide()
            self.edit.setStyleSheet("")
            return
        text = self.text
        col = max(0, min(e.column, len(text)))
        before, at, after = text[:col], text[col:col + 1] or " ", text[col + 1:]

        def esc(s: str) -> str:
            return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        self.error.setText(
            f"<span style='color:{colours.error.name()}'>⚠ {esc(e.message)} (column {col + 1}):</span> "
            f"<code>{esc(before)}<u style='background:{colours.held_bg.name()}'>{esc(at)}</u>{esc(after)}</code>")
        self.error.show()
        self.edit.setStyleSheet(f"QLineEdit {{ border: 1px solid {colours.error.name()}; }}")

    def apply(self) -> None:
        from inspector.filters import FilterError

        result = self.check()
        if isinstance(result, FilterError):
            return
        self.current = result
        text = self.text.strip()
        if text:
            i = self.combo.findText(text)
            if i >= 0:
                self.combo.removeItem(i)
            self.combo.insertItem(0, text)
            self.combo.setCurrentIndex(0)
        self.filter_changed.emit(result)

    def history(self) -> list[str]:
        return [self.combo.itemText(i) for i in range(self.combo.count())]

    def set_history(self, items: Any) -> None:
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            return
        current = self.text
        self.combo.clear()
        self.combo.addItems([str(i) for i in items][:HISTORY_MAX])
        self.edit.setText(current)

    def set_counts(self, visible: int, total: int) -> None:
        noun = "message" if total == 1 else "messages"
        text = f"{visible:,} of {total:,} shown" if visible != total else f"{total:,} {noun}"
        if text != self.count.text():
            self.count.setText(text)

"""The intercept panel: hold the next message per direction, the held queue, and what to do with each held one.

Role: a held message blocks its direction (TCP order) until the user forwards it (as is or edited) or drops
it. The queue is a :class:`~inspector.ui.side_models.HeldModel`; the badge "N held" is mirrored in the dock's
title and the status bar so nobody wonders why the game froze.
Must not import: ``inspector.bridge`` (commands go through the window's ``send``).
Thread: GUI thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.ui import palette
from inspector.ui.side_models import MSG_ID_ROLE, HeldModel
from proxy.model import Direction


class InterceptPanel(QWidget):
    hold_next = Signal(object)  # Direction
    forward = Signal(int)  # msg id
    edit_forward = Signal(int)
    drop = Signal(int)
    forward_all = Signal()
    cancel_hold = Signal()
    rules_changed = Signal(list)  # rule maps for the engine's set_rules, in order

    def __init__(self, model: HeldModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        colours = palette.current()
        self.hold_c2s = QPushButton("Hold next c2s ↑")
        self.hold_c2s.setToolTip("hold the next client→server message until you forward it (Ctrl+H)")
        self.hold_s2c = QPushButton("Hold next s2c ↓")
        self.hold_s2c.setToolTip("hold the next server→client message until you forward it (Ctrl+Shift+H)")
        self.hold_c2s.clicked.connect(lambda: self.hold_next.emit(Direction.C2S))
        self.hold_s2c.clicked.connect(lambda: self.hold_next.emit(Direction.S2C))
        self.badge = QLabel()
        # "Hold next" waits for a message: said here until one is held (or the user cancels)
        self.armed_label = QLabel()
        self.armed_label.setWordWrap(True)
        self.armed_cancel = QPushButton("Cancel")
        self.armed_cancel.setToolTip("do not hold the next message after all")
        self.armed_cancel.clicked.connect(self.cancel_hold.emit)
        self.armed_box = QWidget()
        armed = QHBoxLayout(self.armed_box)
        armed.setContentsMargins(0, 0, 0, 0)
        armed.addWidget(self.armed_label, 1)
        armed.addWidget(self.armed_cancel)
        self.armed_box.hide()
        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(56)
        self.forward_button = QPushButton("Forward")
        self.forward_button.setToolTip("send the selected held message on, unchanged (Ctrl+Return)")
        self.edit_button = QPushButton("Edit && forward…")
        self.edit_button.setToolTip("edit the selected held message, then send it (Ctrl+E)")
        self.drop_button = QPushButton("Drop")
        self.drop_button.setToolTip("never send the selected held message (Ctrl+Delete)")
        self.all_button = QPushButton("Forward all")
        self.all_button.setToolTip("release every held message in order (Ctrl+Shift+Return)")
        self.forward_button.clicked.connect(lambda: self._with_selected(self.forward.emit))
        self.edit_button.clicked.connect(lambda: self._with_selected(self.edit_forward.emit))
        self.drop_button.clicked.connect(lambda: self._with_selected(self.drop.emit))
        self.all_button.clicked.connect(self.forward_all.emit)

        top = QHBoxLayout()
        top.addWidget(self.hold_c2s)
        top.addWidget(self.hold_s2c)
        top.addStretch(1)
        buttons = QGridLayout()
        buttons.setSpacing(4)
        for i, b in enumerate((self.forward_button, self.edit_button, self.drop_button, self.all_button)):
            buttons.addWidget(b, i // 2, i % 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(self.armed_box)
        lay.addWidget(self.badge)
        lay.addWidget(self.table, 1)
        lay.addLayout(buttons)
        lay.addWidget(self._build_rules())
        model.modelReset.connect(self.refresh)
        self.refresh()
        self.set_colours(colours)

    def set_colours(self, colours: palette.Colours) -> None:
        """The look changed (light or dark): the colours that are not the palette's own."""
        self.badge.setStyleSheet(f"color: {colours.held.name()}; font-weight: bold")
        self.armed_label.setStyleSheet(f"color: {colours.held.name()}")
        self.rule_error.setStyleSheet(f"color: {colours.error.name()}")

    def _build_rules(self) -> QGroupBox:
        """Rules: "when a message matches this filter, then hold / delay / drop / duplicate / close / reset"."""
        box = QGroupBox("Rules (first match wins)")
        self.rule_filter = QLineEdit()
        self.rule_filter.setPlaceholderText('a filter, e.g.  c2s and text ~ "ping"   ·   json.type == "move"')
        self.rule_action = QComboBox()
        self.rule_action.addItems(["hold", "delay", "drop", "duplicate", "close", "reset"])
        self.rule_delay = QSpinBox()
        self.rule_delay.setRange(1, 60_000)
        self.rule_delay.setValue(200)
        self.rule_delay.setSuffix(" ms")
        self.rule_delay.setToolTip("how long a matching message waits (on top of the conditions)")
        self.rule_delay.setVisible(False)  # shown for "delay" only: the row stays as narrow as the dock
        self.rule_action.currentTextChanged.connect(lambda a: self.rule_delay.setVisible(a == "delay"))
        self.rule_share = QSpinBox()
        self.rule_share.setRange(1, 100)
        self.rule_share.setValue(100)
        self.rule_share.setSuffix(" %")
        self.rule_share.setToolTip("the share of the matching messages the action applies to (\"drop 10 % of the "
                                   "unreliable ones\"); the proxy draws which from its --seed, so a run repeats")
        self.rule_add = QPushButton("Add rule")
        self.rule_add.clicked.connect(self.add_rule)
        self.rule_filter.returnPressed.connect(self.add_rule)
        self.rule_error = QLabel()
        self.rule_list = QListWidget()
        self.rule_list.setMaximumHeight(72)
        self.rule_list.setMinimumHeight(40)
        self.rule_remove = QPushButton("Remove")
        self.rule_remove.clicked.connect(self.remove_rule)
        self.rules: list[dict[str, Any]] = []
        self.rule_remove.setToolTip("remove the selected rule")
        self.rule_add.setToolTip("add the rule at the end of the list (Enter in the filter box)")
        when = QHBoxLayout()
        when.addWidget(QLabel("when"))
        when.addWidget(self.rule_filter, 1)
        then = QHBoxLayout()
        then.addWidget(QLabel("then"))
        then.addWidget(self.rule_action)
        then.addWidget(self.rule_delay)
        then.addWidget(self.rule_share)
        then.addWidget(self.rule_add)
        then.addStretch(1)
        below = QHBoxLayout()
        below.addStretch(1)
        below.addWidget(self.rule_remove)
        self.rule_error.setWordWrap(True)
        lay = QVBoxLayout(box)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(3)
        lay.addLayout(when)
        lay.addLayout(then)
        lay.addWidget(self.rule_error)
        lay.addWidget(self.rule_list)
        lay.addLayout(below)
        self.rule_error.hide()
        return box

    def add_rule(self) -> None:
        from inspector.filters import FilterError, parse_filter  # here: ~50 ms the window's first frame need not wait

        text = self.rule_filter.text().strip()
        try:
            parse_filter(text)  # the engine compiles it again; checking here puts the error next to the box
        except FilterError as e:
            self.rule_error.setText(f"column {e.column + 1}: {e}")
            self.rule_error.show()
            return
        if not text:
            self.rule_error.setText("type a filter: the rule applies to the messages it matches")
            self.rule_error.show()
            return
        self.rule_error.hide()
        action = self.rule_action.currentText()
        rule: dict[str, Any] = {"filter": text, "action": action, "name": f"{action} when {text}"}
        if action == "delay":
            rule["delay_ms"] = float(self.rule_delay.value())
        share = self.rule_share.value()
        if share < 100:  # as the engine writes rules: no share means every match
            rule["percent"] = float(share)
            rule["name"] = f"{action} {share} % when {text}"
        self.rules.append(rule)
        self.rule_list.addItem(rule_label(rule))
        self.rule_filter.clear()
        self.rules_changed.emit(list(self.rules))

    def remove_rule(self) -> None:
        row = self.rule_list.currentRow()
        if row < 0:
            return
        self.rule_list.takeItem(row)
        del self.rules[row]
        self.rules_changed.emit(list(self.rules))

    def selected_id(self) -> int | None:
        sel = self.table.selectionModel().selectedRows()
        idx = sel[0] if sel else (self.model.index(0, 0) if self.model.rowCount() else None)
        if idx is None or not idx.isValid():
            return None
        v = self.model.data(idx, MSG_ID_ROLE)
        return int(v) if v is not None else None

    def _with_selected(self, emit: object) -> None:
        mid = self.selected_id()
        if mid is not None:
            emit(mid)  # type: ignore[operator]

    def refresh(self) -> None:
        n = self.model.rowCount()
        self.badge.setText(f"{n} held" if n else "nothing held")
        for b in (self.forward_button, self.edit_button, self.drop_button, self.all_button):
            b.setEnabled(n > 0)
        if n and not self.table.selectionModel().selectedRows():
            self.table.selectRow(0)

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        """Show the rules in force (the proxy's, from its hello or another client's change); sends nothing."""
        self.rules = [dict(r) for r in rules]
        self.rule_list.clear()
        for r in self.rules:
            self.rule_list.addItem(rule_label(r))

    def set_live(self, live: bool) -> None:
        """Whether a proxy is running to hold messages for."""
        for b in (self.hold_c2s, self.hold_s2c):
            b.setEnabled(live)
            tip = b.toolTip().split("\n")[0]
            b.setToolTip(tip if live else f"{tip}\n(no proxy is running: start it first)")
        if not live:
            self.set_armed([])

    def set_armed(self, directions: list[Direction]) -> None:
        """The directions whose next message will be held (empty: none)."""
        if directions:
            names = " and ".join(f"{d.label} {d.arrow}" for d in directions)
            self.armed_label.setText(f"⏳ waiting for the next {names} message to hold it…")
        self.armed_box.setVisible(bool(directions))


def rule_label(rule: dict[str, Any]) -> str:
    """One line for a rule map (``proxy.rules.Rule.to_dict`` form): when what matches, then which action."""
    parts = [str(rule["filter"])] if rule.get("filter") else []
    if rule.get("direction"):
        parts.append(str(rule["direction"]))
    if rule.get("conn") is not None:
        parts.append(f"conn == {rule['conn']}")
    if rule.get("bytes_regex"):
        regex = rule["bytes_regex"]
        parts.append(f"bytes ~ {regex.decode('utf-8', 'replace') if isinstance(regex, bytes) else regex!s}")
    for key, op in (("min_size", ">="), ("max_size", "<=")):
        if rule.get(key) is not None:
            parts.append(f"size {op} {rule[key]}")
    action = str(rule.get("action", ""))
    if action == "delay":
        action += f" {float(rule.get('delay_ms') or 0):g} ms"
    share = rule.get("percent")
    if isinstance(share, int | float) and not isinstance(share, bool) and share < 100:
        action += f" ({share:g} % of them)"
    return f"when {' and '.join(parts) or 'any message'}  →  {action}"

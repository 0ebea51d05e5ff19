"""The Lab's hints in the window: a table of message types and the field of each role (inferred ones marked so),
and a dialog to pick the fields from the decoded tree of a message.

Role: :class:`HintsModel` is a thin adapter over :class:`~inspector.lab.hints.Hints`: one row per role in force of
each message type (its field, and where it came from: *inferred*, the hints file, or picked), narrow enough for
the Lab's side panel. :class:`PickFieldsDialog` shows one
message's decoded fields as a tree beside a box per role of its direction, each offering the fields that fit (from
:func:`~inspector.lab.hints.candidates`, obvious names first) or any path typed in; a double-click on a tree row
puts that field in the role box last used. On OK it sets the hints (source "window"); "(inferred)" gives a role
back to inference, "(none)" says the type has no such field.
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

from typing import Any, Final

from PySide6.QtCore import QModelIndex, QObject, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import render
from inspector.lab.hints import (
    ROLE_DIRECTION,
    ROLE_TEXT,
    ROLES,
    FieldRef,
    Hints,
    MessageType,
    candidates,
    leaves,
    path_text,
)
from inspector.ui import palette
from inspector.ui.table_base import HeaderedTableModel, Index

ROLE_HEADERS: Final = {"seq": "input seq", "ack": "ack", "tick": "tick", "time": "time", "pos": "position",
                       "predicted": "predicted"}
HEADERS: Final = ("message type", "role", "field", "from")
TOOLTIPS: Final = ("a direction and the value of the message's type field (t, type, kind ...); double-click to "
                   "pick its fields", "what the lab uses the field for", "the path of the field in the decoded "
                   "message (x, y: two fields)", "inferred from its name (correct it if it is wrong), the hints "
                   "file, or picked in the window")
INFER: Final = "(inferred)"
NONE: Final = "(none)"
TYPE_ROLE: Final = Qt.ItemDataRole.UserRole + 1
"""The row's :class:`MessageType`."""
SOURCE_TEXT: Final = {"inferred": "inferred", "file": "hints file", "window": "picked"}


class HintsModel(HeaderedTableModel):
    """One row per role in force of each message type of :attr:`hints` (a type with none: one row, so it can be
    picked); :meth:`sync` after the hints may have changed."""

    HEADERS = HEADERS
    TOOLTIPS = TOOLTIPS

    def __init__(self, hints: Hints, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.hints = hints
        self.rows: list[tuple[MessageType, str | None]] = []
        self.colours = palette.current()
        self._key: tuple[int, int, int] = (-1, -1, -1)
        self.sync()

    def row_total(self) -> int:
        return len(self.rows)

    def set_hints(self, hints: Hints) -> None:
        self.hints = hints
        self._key = (-1, -1, -1)
        self.sync()

    def _rows(self) -> list[tuple[MessageType, str | None]]:
        h = self.hints
        out: list[tuple[MessageType, str | None]] = []
        for mt in h.types()[:200]:
            given = h.given.get(mt, {})
            in_force = h.roles_for(mt)
            roles = [r for r in ROLES if r in in_force or (r in given and given[r].field is None)]
            out += [(mt, r) for r in roles] if roles else [(mt, None)]
        return out

    def sync(self) -> None:
        """Follow the hints: new rows at the end are inserted, anything else resets the table."""
        h = self.hints
        key = (h.version, h.inferred_version, len(h.seen) + len(h.given))
        if key == self._key:
            return
        self._key = key
        rows = self._rows()
        if rows[: len(self.rows)] == self.rows and len(rows) > len(self.rows):
            self.beginInsertRows(QModelIndex(), len(self.rows), len(rows) - 1)
            self.rows = rows
            self.endInsertRows()
        elif rows != self.rows:
            self.beginResetModel()
            self.rows = rows
            self.endResetModel()
        elif self.rows:
            self.dataChanged.emit(self.index(0, 2), self.index(len(self.rows) - 1, len(HEADERS) - 1))

    def cell(self, row: int, col: int) -> tuple[str, str | None]:
        """(text, source) of a cell; source None when the row has no hint."""
        mt, role = self.rows[row]
        if role is None:
            return ((mt.text, "—", "none found", "")[col], None)
        given = self.hints.given.get(mt, {}).get(role)
        if given is not None and given.field is None:
            source: str | None = given.source
            field = "— (none)"
        else:
            h = self.hints.roles_for(mt).get(role)
            source = h.source if h is not None else None
            field = h.field.text if h is not None and h.field is not None else ""
        return ((mt.text, ROLE_HEADERS[role], field, SOURCE_TEXT.get(source or "", ""))[col], source)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows) or not 0 <= index.column() < len(HEADERS):
            return None
        text, source = self.cell(index.row(), index.column())
        mt, r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return text
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 0:
                return f"{mt.text}: {self.hints.seen.get(mt, 0):,} messages; double-click to pick its fields"
            if r is None:
                return ("no field of this type looks like an input sequence, acknowledgement, tick, time or "
                        "position: double-click to pick its fields")
            what = {"inferred": "inferred from its name: correct it if it is wrong", "file": "from the hints file",
                    "window": "picked in the window"}.get(source or "", "")
            return f"{ROLE_TEXT[r]}: {what}"
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 0:
                return self.colours.direction(mt.direction)
            if source == "inferred" or r is None:
                return self.colours.muted
            return None
        if role == Qt.ItemDataRole.FontRole and source == "inferred" and col >= 2:
            f = QFont()
            f.setItalic(True)
            return f
        if role == TYPE_ROLE:
            return mt
        return None


def _short(v: object) -> str:
    text, cut = render(v, 60)
    return text + ("…" if cut else "")


class PickFieldsDialog(QDialog):
    """Pick, for one message type, which of a message's fields plays each role (see the module docstring)."""

    def __init__(self, hints: Hints, mt: MessageType, value: object, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lab_pick_fields")
        self.setWindowTitle(f"Lab fields of {mt.text}")
        self.hints, self.mt, self.value = hints, mt, value
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["field", "value"])
        self.tree.setRootIsDecorated(True)
        items: dict[tuple[str | int, ...], QTreeWidgetItem] = {}
        for path, v in leaves(value):
            parent_item = items.get(path[:-1])
            shown = "" if isinstance(v, dict | list | tuple) and len(path) < 5 else _short(v)
            item = QTreeWidgetItem([path_text(path[-1:]) if parent_item is None else str(path[-1]), shown])
            item.setData(0, Qt.ItemDataRole.UserRole, path_text(path))
            item.setToolTip(0, path_text(path))
            if parent_item is None:
                self.tree.addTopLevelItem(item)
            else:
                parent_item.addChild(item)
            items[path] = item
        self.tree.expandToDepth(1)
        self.tree.resizeColumnToContents(0)
        self.tree.itemDoubleClicked.connect(self._tree_picked)
        self.boxes: dict[str, QComboBox] = {}
        form = QFormLayout()
        options = candidates(mt.direction, value)
        in_force = hints.roles_for(mt)
        given = hints.given.get(mt, {})
        self._last_box: QComboBox | None = None
        for role in ROLES:
            if ROLE_DIRECTION[role] is not mt.direction:
                continue
            box = QComboBox()
            box.setEditable(True)
            box.setObjectName(f"lab_role_{role}")
            box.setToolTip(ROLE_TEXT[role] + "\n(inferred): let sockscope infer it from the names; (none): this "
                           "type has none; or pick or type a field (pos.x, players[0][1]; a position: x, y)")
            box.addItem(INFER)
            box.addItem(NONE)
            for f in options.get(role, []):
                box.addItem(f.text)
            h = given.get(role)
            if h is not None:
                box.setCurrentText(NONE if h.field is None else h.field.text)
            else:
                box.setCurrentText(INFER)
                inferred = in_force.get(role)
                if inferred is not None and inferred.field is not None:
                    box.setItemText(0, f"{INFER}: {inferred.field.text}")
                    box.setCurrentIndex(0)
            box.activated.connect(lambda _i, b=box: self._used(b))
            line = box.lineEdit()
            if line is not None:
                line.textEdited.connect(lambda _t, b=box: self._used(b))
            self.boxes[role] = box
            form.addRow(f"{ROLE_HEADERS[role]}:", box)
        self.error = QLabel()
        self.error.setStyleSheet(f"color: {palette.current().error.name()}")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        side = QVBoxLayout()
        side.addWidget(QLabel(f"<b>{mt.text}</b>: which field is which?<br>"
                              "<small>double-click a field on the left to put it in the box you used last</small>"))
        side.addLayout(form)
        side.addWidget(self.error)
        side.addStretch(1)
        side.addWidget(buttons)
        lay = QHBoxLayout(self)
        lay.addWidget(self.tree, 3)
        lay.addLayout(side, 2)
        self.resize(820, 420)

    def _used(self, box: QComboBox) -> None:
        self._last_box = box

    def _tree_picked(self, item: QTreeWidgetItem, _col: int) -> None:
        path = item.data(0, Qt.ItemDataRole.UserRole)
        box = self._last_box or next(iter(self.boxes.values()), None)
        if box is not None and isinstance(path, str):
            box.setCurrentText(path)
            self._last_box = box

    def choices(self) -> dict[str, FieldRef | str | None]:
        """Per role: a field, None for "(none)", or ``INFER``. ``ValueError`` names a role whose text is no path."""
        out: dict[str, FieldRef | str | None] = {}
        for role, box in self.boxes.items():
            text = box.currentText().strip()
            if not text or text.startswith(INFER):
                out[role] = INFER
            elif text == NONE:
                out[role] = None
            else:
                try:
                    out[role] = FieldRef.parse(text, point=role in ("pos", "predicted"))
                except ValueError as e:
                    raise ValueError(f"{ROLE_HEADERS[role]}: {e}") from None
        return out

    def apply(self) -> bool:
        """Set the hints from the boxes; False (and the reason shown) if a box holds no valid path."""
        try:
            chosen = self.choices()
        except ValueError as e:
            self.error.setText(f"⚠ {e}")
            return False
        given = self.hints.given.get(self.mt, {})
        for role, choice in chosen.items():
            old = given.get(role)
            if isinstance(choice, str):
                if old is not None:
                    self.hints.forget(self.mt, role)
            elif old is None or old.field != choice or old.source != "window":
                self.hints.set(self.mt, role, choice, "window")
        return True

    def accept(self) -> None:
        if self.apply():
            super().accept()

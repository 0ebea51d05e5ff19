"""The Lab dock: live latency-compensation plots for the learner's own game, a read-out of the figures that matter
(input-to-ack delay, inputs in flight, the interpolation delay to use, corrections) and the schema hints.

Role: :class:`LabController` owns a Qt-free :class:`~inspector.lab.analysis.LabAnalysis` over the window's store
and two timers: *only while the Lab is on screen*, slices of analysis (:mod:`inspector.ui.slices`, 40 a second)
look at the store's new rows, and a refresh timer (10 per second) notes the conditions in force (what the plots
draw beside the measures) and redraws; a session that never opens the Lab pays nothing, and one opened late
catches up a slice at a time.
It offers :attr:`panel` (scope, plots, read-out, hints table with "Pick fields…", "Load…", "Save…", "Infer
again") and :attr:`message_selected` (a dot was clicked). Hints come from ``sockscope --lab-hints FILE``
(:meth:`set_hints`), from inference (shown as *inferred*), or from the field picker
(:class:`~inspector.ui.lab_hints.PickFieldsDialog`).
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inspector.decode import default_registry
from inspector.lab.analysis import LabAnalysis
from inspector.lab.hints import Hints, HintsError, MessageType, load_hints
from inspector.store import MessageStore
from inspector.ui import palette
from inspector.ui.lab_hints import TYPE_ROLE, HintsModel, PickFieldsDialog
from inspector.ui.slices import SLICE_S, Slices
from inspector.ui.timeline.lab_plots import Conf, LabPlots
from proxy.model import Direction

REFRESH_MS: Final = 100
"""Longest a refresh tick spends analysing new rows (the rest waits for the next tick)."""
ConditionsFn = Callable[[], Any]
SelectedFn = Callable[[], "int | None"]


class LabController(QObject):
    message_selected = Signal(int)
    """A store row the user picked in a plot (the state that acknowledged or corrected an input)."""

    def __init__(self, store: MessageStore, parent: QObject | None = None, *,
                 conditions: ConditionsFn | None = None, selected_row: SelectedFn | None = None,
                 hints: Hints | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.analysis = LabAnalysis(store, hints)
        self.conditions = conditions
        self.selected_row = selected_row
        self.colours = palette.current()
        self.conn_id: int | None = None
        self.conf: list[Conf] = []
        self._conf_key: tuple[float, float, float, float] | None = None
        self._generation = -1
        self._dirty = True
        self.tick_ms: list[float] = []
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        # new rows are analysed in short slices between redraws, only while the Lab is shown (inspector.ui.slices)
        self.slices = Slices(lambda budget: self.panel.isVisible() and self.analysis.update(budget), self)

    # ------------------------------------------------------------------------------------------ widgets

    def _build(self) -> None:
        self.panel = QWidget()
        self.panel.setObjectName("lab_panel")
        self.scope = QComboBox()
        self.scope.setToolTip("show one connection (one client) or all")
        self.scope.addItem("all connections", None)
        self.scope.currentIndexChanged.connect(self._scope_chosen)
        self.follow_box = QCheckBox("Follow")
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip("keep the newest traffic in view (zooming or panning turns this off)")
        self.follow_box.toggled.connect(self._set_follow)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.scope)
        bar.addSpacing(8)
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.follow_box)

        self.plots = LabPlots()
        self.plots.row_clicked.connect(self.message_selected)
        self.plots.follow_changed.connect(self._follow_changed)

        self.readout = QLabel()
        self.readout.setObjectName("lab_readout")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setWordWrap(True)
        self.readout.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.readout.setContentsMargins(6, 4, 6, 4)
        self.hints_model = HintsModel(self.analysis.hints, self)
        self.hints_table = QTableView()
        self.hints_table.setObjectName("lab_hints_table")
        self.hints_table.setModel(self.hints_model)
        self.hints_table.verticalHeader().hide()
        self.hints_table.setShowGrid(False)
        self.hints_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.hints_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.hints_table.setWordWrap(False)
        self.hints_table.doubleClicked.connect(lambda idx: self.pick_fields(type_index=idx))
        hh = self.hints_table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setStretchLastSection(True)
        self.hints_table.verticalHeader().setDefaultSectionSize(self.hints_table.fontMetrics().height() + 6)
        self.pick_button = QPushButton("Pick fields…")
        self.pick_button.setToolTip("say which field of a message is which: from the type selected here, or else "
                                    "from the message selected in the table")
        self.pick_button.clicked.connect(lambda: self.pick_fields())
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip("read a hints file (TOML; docs/lab.md), as sockscope --lab-hints FILE does")
        self.load_button.clicked.connect(lambda: self.load_hints_file())
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("write the hints in force (inferred ones too) to a file for --lab-hints")
        self.save_button.clicked.connect(lambda: self.save_hints_file())
        self.reset_button = QPushButton("Infer again")
        self.reset_button.setToolTip("forget the hints given (file, window) and infer every field from its name")
        self.reset_button.clicked.connect(self.reset_hints)
        self.hints_error = QLabel()
        self.hints_error.setWordWrap(True)
        self.hints_error.setStyleSheet(f"color: {self.colours.error.name()}")
        self.hints_error.hide()
        buttons = QHBoxLayout()
        for b in (self.pick_button, self.load_button, self.save_button, self.reset_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        side = QWidget()
        side.setObjectName("lab_side")
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(2)
        sl.addWidget(self.readout)
        hints_label = QLabel("<b>Hints</b>: which field is which (<i>inferred</i> from names: correct them "
                             "if wrong)")
        hints_label.setWordWrap(True)
        hints_label.setContentsMargins(6, 4, 6, 0)
        sl.addWidget(hints_label)
        sl.addWidget(self.hints_table, 1)
        sl.addWidget(self.hints_error)
        sl.addLayout(buttons)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setObjectName("lab_split")
        self.split.addWidget(self.plots)
        self.split.addWidget(side)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.split.setCollapsible(0, False)
        lay = QVBoxLayout(self.panel)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.split, 1)

    def set_colours(self, colours: palette.Colours) -> None:
        self.colours = colours
        self.plots.set_colours(colours)
        self.hints_model.colours = colours
        self.hints_error.setStyleSheet(f"color: {colours.error.name()}")
        self.refresh(force=True)

    # ------------------------------------------------------------------------------------------ hints

    def set_hints(self, hints: Hints) -> None:
        """Use ``hints`` (a file's, or a fresh set): everything is measured again from the first message."""
        self.analysis.set_hints(hints)
        self.hints_model.set_hints(hints)
        self._show_hints_error("")
        self.refresh(force=True)

    def reset_hints(self) -> None:
        self.set_hints(Hints(type_fields=self.analysis.hints.type_fields))

    def _show_hints_error(self, text: str) -> None:
        self.hints_error.setText(html.escape(text).replace("\n", "<br>"))
        self.hints_error.setVisible(bool(text))

    def load_hints_file(self, path: str | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self.panel, "Load lab hints", "", "Hints (*.toml);;All files (*)")
            if not path:
                return False
        try:
            hints = load_hints(path)
        except HintsError as e:
            self._show_hints_error(str(e))
            return False
        self.set_hints(hints)
        return True

    def save_hints_file(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.panel, "Save lab hints", "lab-hints.toml", "Hints (*.toml)")
            if not path:
                return None
        Path(path).write_text(self.analysis.hints.to_toml(), encoding="utf-8")
        return path

    def _type_row(self, mt: MessageType) -> int | None:
        row = self.analysis.tracker.example_row.get(mt)
        return row if row is not None and 0 <= row < len(self.store) else None

    def pick_dialog(self, *, type_index: QModelIndex | None = None, row: int | None = None) -> PickFieldsDialog | str:
        """The field picker for the type selected in the hints table (``type_index``), else for the message at store
        ``row`` (default: the one selected in the window); or why there is none."""
        mt: MessageType | None = None
        if row is None:
            idx = type_index if type_index is not None else self.hints_table.currentIndex()
            if idx is not None and idx.isValid():
                mt = self.hints_model.data(idx, TYPE_ROLE)
                row = self._type_row(mt) if mt is not None else None
        if row is None and self.selected_row is not None:
            row = self.selected_row()
        if row is None or not 0 <= row < len(self.store):
            return "select a message (in the table) or a message type (here) first"
        view = default_registry().decode_message(self.store.message(row), detail=False)
        if view.error is not None or not view.values:
            return f"message #{self.store.display_id(row)} has no decoded fields ({view.decoder})"
        value = view.values[0]
        d = Direction(self.store.dirs[row])
        found = self.analysis.hints.type_of(d, value)
        if mt is None or found == mt:
            mt = found
        return PickFieldsDialog(self.analysis.hints, mt, value, self.panel)

    def pick_fields(self, *, type_index: QModelIndex | None = None, row: int | None = None) -> bool:
        dialog = self.pick_dialog(type_index=type_index, row=row)
        if isinstance(dialog, str):
            self._show_hints_error(dialog)
            return False
        self._show_hints_error("")
        ok = bool(dialog.exec())
        dialog.deleteLater()
        if ok:
            self.refresh(force=True)
        return ok

    # ------------------------------------------------------------------------------------------ refresh

    def _scope_chosen(self, _i: int) -> None:
        self.conn_id = self.scope.currentData()
        self.refresh(force=True)

    def _set_follow(self, on: bool) -> None:
        self.plots.set_follow(on)
        if on:
            self.refresh(force=True)

    def _follow_changed(self, on: bool) -> None:
        if self.follow_box.isChecked() != on:
            self.follow_box.setChecked(on)

    def _sync_scope(self) -> None:
        have = {self.scope.itemData(i) for i in range(self.scope.count())}
        for conn_id in sorted(self.analysis.tracker.conns):
            if conn_id not in have:
                c = self.store.connections.get(conn_id)
                port = f" :{c.client_addr[1]}" if c is not None and c.client_addr else ""
                self.scope.addItem(f"#{conn_id}{port}", conn_id)

    def _track_conditions(self) -> bool:
        if self.conditions is None:
            return False
        try:
            cond = self.conditions()
            key = (float(cond.c2s.latency_ms), float(cond.c2s.jitter.ms), float(cond.s2c.latency_ms),
                   float(cond.s2c.jitter.ms))
        except Exception:  # a half-built panel: try again next tick
            return False
        if key == self._conf_key:
            return False
        self._conf_key = key
        s = self.store
        t = (s.arrivals[-1] if len(s) else (s.t0_ns or 0)) if self.conf else (s.t0_ns or 0)
        if self.conf and self.conf[-1][0] >= t:
            self.conf[-1] = (t, *key)
        else:
            self.conf.append((t, *key))
        self.plots.set_configured(self.conf)
        return True

    def refresh(self, force: bool = False) -> None:
        """One tick: while the Lab is shown (or when forced), analyse new rows within the budget and redraw."""
        if not force and not self.panel.isVisible():
            return
        t0 = time.perf_counter()
        changed = self.analysis.update(SLICE_S) | self.slices.take()
        conf_changed = self._track_conditions()
        if self.analysis.generation != self._generation:
            self._generation = self.analysis.generation
            t_first = self.store.t0_ns or 0
            self.conf = [c for c in self.conf if c[0] >= t_first][-1:] or self.conf[-1:]
            if self.conf:
                self.conf[0] = (min(self.conf[0][0], t_first), *self.conf[0][1:])
            self.plots.set_configured(self.conf)
            force = True
        self._sync_scope()
        rows = self.hints_model.rowCount()
        self.hints_model.sync()
        if self.hints_model.rowCount() != rows:
            self.hints_table.resizeColumnsToContents()
        if changed or force or conf_changed:
            self.plots.refresh(self.analysis, self.conn_id)
            self._update_readout()
        self.tick_ms.append((time.perf_counter() - t0) * 1000)
        if len(self.tick_ms) > 1000:
            del self.tick_ms[:500]

    # ------------------------------------------------------------------------------------------ read-out

    def _update_readout(self) -> None:
        t = self.analysis.tracker
        conns = [c for c in t.conns.values() if self.conn_id is None or c.conn_id == self.conn_id]
        c = self.colours
        amber, muted = c.held.name(), c.muted.name()
        lines: list[str] = []
        recent = [(x, a) for cl in conns for x, a in zip(cl.delay.y[-60:], cl.delay.extra[-60:], strict=True)]
        if recent:
            med = sorted(x for x, _ in recent)[len(recent) // 2]
            added = sorted(a for _, a in recent)[len(recent) // 2]
            lines.append(f"<b>Input → ack</b>: {med:.0f} ms <span style='color:{amber}'>({added:.0f} added by "
                         f"sockscope)</span>")
        inputs = sum(cl.inputs for cl in conns)
        if inputs:
            now = sum(len(cl.pending) for cl in conns)
            mx = max(cl.max_in_flight for cl in conns)
            lines.append(f"<b>Inputs in flight</b>: {now} now, {mx} at most")
        adv = self.plots.advice
        if adv.intervals:
            lines.append(f"<b>Snapshots</b>: every {adv.median_ms:.0f} ms; p95 gap {adv.p95_ms:.0f}, "
                         f"p99 {adv.p99_ms:.0f} ms")
            lines.append(f"<b>Interpolation delay</b>: <span style='color:{c.c2s.name()}'><b>"
                         f"{adv.recommended_ms:.0f} ms</b></span> <span style='color:{muted}'>(two intervals "
                         f"{adv.two_intervals_ms:.0f} ms; covers 99 % of the gaps)</span>")
        corr = [y for cl in conns for y in cl.corrections.y[-300:]]
        if corr:
            lines.append(f"<b>Corrections</b>: {corr[-1]:.1f} px now; up to {max(corr):.1f} px "
                         f"<span style='color:{muted}'>(the last {len(corr)})</span>")
        lines += self._missing()
        for what, n in t.problems.most_common(3):
            lines.append(f"<span style='color:{c.error.name()}'>⚠ skipped {n:,}×: {html.escape(what)}</span>")
        text = "<br>".join(lines) or (f"<span style='color:{muted}'>Waiting for the game's messages: inputs "
                                      "(client → server, with a sequence number) and states (server → client, "
                                      "with an acknowledgement, tick or time).</span>")
        if text != self.readout.text():
            self.readout.setText(text)
        self.summary.setText(self._summary(conns))

    def _missing(self) -> list[str]:
        h = self.analysis.hints
        types = h.types()
        if not types:
            return []
        has = {role for mt in types for role in h.roles_for(mt)}
        muted = self.colours.muted.name()
        out: list[str] = []
        if not any(mt.direction is Direction.C2S for mt in types):
            return out
        if "seq" not in has:
            out.append(f"<span style='color:{muted}'>No input sequence number found in client → server messages: "
                       "select one and <i>Pick fields…</i></span>")
        if "ack" not in has and any(mt.direction is Direction.S2C for mt in types):
            out.append(f"<span style='color:{muted}'>No acknowledgement found in server → client messages (the "
                       "last input the server applied): the delay and the inputs in flight need one</span>")
        return out

    def _summary(self, conns: list[Any]) -> str:
        n = sum(cl.acked for cl in conns)
        if not n:
            return ""
        lag = self.conf[-1] if self.conf else None
        added = f" · sockscope adds {lag[1] + lag[3]:.0f} ms" if lag is not None else ""
        rtt = [x for cl in conns for x in cl.delay.y[-20:]]
        med = sorted(rtt)[len(rtt) // 2] if rtt else math.nan
        return (f"{n:,} inputs acknowledged · input → ack ≈ <b>{med:.0f} ms</b>{added}"
                if math.isfinite(med) else "")

    def stop(self) -> None:
        self.timer.stop()
        self.slices.stop()


__all__ = ["LabController"]

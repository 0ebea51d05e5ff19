"""The Timeline and Statistics docks, annotation badges for the message table, and the detail pane's note.

Role: :class:`TimelineController` owns the Qt-free :class:`~inspector.timeline.stats.Analysis` and one refresh
timer (10 per second, well under the window's ~30 batches/s): each tick processes the store's new rows within a
time budget and redraws only what is visible. It never gets one signal per message. The plots (pyqtgraph, numpy) are
made the first time the timeline is shown, not with the window: most sessions never open it. It offers:

- :attr:`panel`: pairing and scope controls, the RTT/throughput plots and the ladder side by side;
- :attr:`stats_panel`: the per-type table (:class:`StatsModel`, a thin adapter over ``GroupRow`` s) with
  "group by" and CSV export;
- :meth:`make_delegate`: a delegate that draws annotation badges on the table's summary column;
- :attr:`detail_note`: a label with the selected message's annotations (linked to ``docs/lessons/``) and, for
  a paired message, its round trip split into injected and network time;
- :attr:`message_selected` (a plot point or an arrow was clicked) and :meth:`select_row` (the table's selection).
Must not import: ``inspector.bridge``.
Thread: GUI thread.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QDesktopServices, QFontMetrics, QHelpEvent, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from inspector.store import MessageStore
from inspector.timeline.annotations import LESSONS, Annotation
from inspector.timeline.pairing import KeySpec, PairingRule
from inspector.timeline.stats import Analysis, DatagramCounts, GroupRow, rows_to_csv
from inspector.ui import format as fmt
from inspector.ui import palette
from inspector.ui.slices import SLICE_S, Slices
from inspector.ui.table_base import HeaderedTableModel
from inspector.ui.timeline.ladder import LadderView
from proxy.model import Direction

if TYPE_CHECKING:
    from inspector.ui.timeline.plots import TimelinePlots

Index = QModelIndex | QPersistentModelIndex
REFRESH_MS: Final = 100
"""How often the timeline redraws (and analyses a slice of new rows)."""
STATS_HEADERS: Final = ("dir", "type", "count", "rate (Hz)", "mean size", "max size", "bytes/s")
STATS_TIPS: Final = (
    "direction", "the decoded key messages are grouped by", "messages", "tick rate: (count − 1) / time from first "
    "to last", "mean payload bytes", "largest payload", "mean size × rate",
)
ConditionsFn = Callable[[], Any]
"""Returns the current ``proxy.conditions.Conditions`` (what the user configured), for the latency band."""


class StatsModel(HeaderedTableModel):
    HEADERS = STATS_HEADERS
    TOOLTIPS = STATS_TIPS

    """Rows of :class:`~inspector.timeline.stats.GroupRow`; replaced in one go per refresh."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[GroupRow] = []
        self.colours = palette.current()

    def row_total(self) -> int:
        return len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows) or not 0 <= index.column() < 7:
            return None
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (r.direction.arrow + " " + r.direction.label, r.key, f"{r.count:,}", f"{r.rate_hz:.1f}",
                    f"{r.mean_size:.1f}", str(r.max_size), f"{fmt.size(r.bytes_per_s)}/s")[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return self.colours.direction(r.direction)
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 2:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        if role == Qt.ItemDataRole.UserRole:
            return (r.count, r.rate_hz, r.mean_size, r.max_size, r.bytes_per_s)[col - 2] if col >= 2 else None
        return None

    def set_rows(self, rows: list[GroupRow]) -> None:
        if rows == self.rows:
            return
        if len(rows) == len(self.rows) and [(r.direction, r.key) for r in rows] == \
                [(r.direction, r.key) for r in self.rows]:
            self.rows = rows
            self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(STATS_HEADERS) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()


def configured_loss_pct(cond: Any) -> float:
    """The share of datagrams a direction's conditions lose: random loss and Gilbert-Elliott bursts together."""
    ge = float(cond.burst_loss.mean_loss_pct) if cond.burst_loss is not None else 0.0
    return round(100 - (100 - float(cond.loss_pct)) * (100 - ge) / 100, 2)


UDP_HEADERS: Final = ("dir", "datagrams", "lost", "dropped", "duplicated", "sent ahead", "corrupted")
UDP_TIPS: Final = (
    "direction of the UDP datagrams", "datagrams that arrived from their sender (copies not counted)",
    "lost to the loss models (random, Gilbert-Elliott bursts), measured; the configured rate in brackets",
    "dropped for another reason: MTU, a full bandwidth queue, a rule, the user",
    "copies made, as a share of the datagrams; the configured rate in brackets",
    "sent ahead of the ones before them (reorder), measured; the configured rate in brackets",
    "delivered with flipped bits, measured; the configured rate in brackets",
)


class UdpStatsModel(HeaderedTableModel):
    """What the UDP impairments did per direction, measured from the records, beside what is configured: one row
    per direction that carried datagrams (nothing for TCP-only traffic)."""

    HEADERS = UDP_HEADERS
    TOOLTIPS = UDP_TIPS

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[Direction, tuple[str, ...]]] = []
        self.colours = palette.current()

    def row_total(self) -> int:
        return len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows) or not 0 <= index.column() < len(UDP_HEADERS):
            return None
        d, cells = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return cells[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return self.colours.direction(d)
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 1:
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def set_counts(self, counts: dict[Direction, DatagramCounts], configured: Any) -> None:
        """``counts`` per direction; ``configured``: the ``Conditions`` in force (or None)."""
        rows: list[tuple[Direction, tuple[str, ...]]] = []
        for d, c in counts.items():
            if not c.datagrams and not c.duplicates:
                continue
            cond = configured.for_direction(d) if configured is not None else None

            def share(n: int, setting: float | None, c: DatagramCounts = c) -> str:
                text = f"{c.pct(n):.1f} %"
                return text if setting is None else f"{text} (set {setting:g} %)"

            loss = configured_loss_pct(cond) if cond is not None else None
            rows.append((d, (f"{d.arrow} {d.label}", f"{c.datagrams:,}", share(c.lost, loss),
                             share(c.dropped, None),
                             share(c.duplicates, cond.duplicate_fraction * 100 if cond is not None else None),
                             share(c.reordered, cond.reorder_pct if cond is not None else None),
                             share(c.corrupted, cond.corrupt_pct if cond is not None else None))))
        if rows == self.rows:
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()


class AnnotationDelegate(QStyledItemDelegate):
    """Draws annotation badges at the right of a table cell; their explanation is the cell's tooltip."""

    def __init__(self, controller: TimelineController, row_of: Callable[[Index], int | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.row_of = row_of

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        row = self.row_of(index)
        notes = self.controller.annotations(row) if row is not None else []
        if not notes:
            super().paint(painter, option, index)
            return
        fm = QFontMetrics(option.font)  # type: ignore[attr-defined]
        badges = [n.lesson.badge for n in notes]
        widths = [fm.horizontalAdvance(b) + 10 for b in badges]
        total = sum(widths) + 4 * len(widths)
        rect: QRect = option.rect  # type: ignore[attr-defined]
        opt = QStyleOptionViewItem(option)
        opt.rect = rect.adjusted(0, 0, -min(total, rect.width() // 2), 0)  # type: ignore[attr-defined]
        super().paint(painter, opt, index)
        c = self.controller.colours
        x = rect.right() - total + 2
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for b, w, n in zip(badges, widths, notes, strict=True):
            r = QRect(x, rect.top() + 2, w, rect.height() - 4)
            bg = QColor(c.error if n.kind.value in ("pickle", "discarded") else c.held)
            bg.setAlpha(40 if not c.dark else 90)
            painter.setBrush(bg)
            painter.setPen(c.error if n.kind.value in ("pickle", "discarded") else c.held)
            painter.drawRoundedRect(r, 3, 3)
            painter.drawText(r, Qt.AlignmentFlag.AlignCenter, b)
            x += w + 4
        painter.restore()

    def helpEvent(self, event: QHelpEvent, view: QAbstractItemView, option: QStyleOptionViewItem,
                  index: Index) -> bool:
        row = self.row_of(index)
        notes = self.controller.annotations(row) if row is not None else []
        if notes and event.type() == QEvent.Type.ToolTip:
            QToolTip.showText(event.globalPos(), "<br>".join(
                f"<b>{html.escape(n.lesson.title)}</b>: {html.escape(n.lesson.explanation)}" for n in notes), view)
            return True
        return super().helpEvent(event, view, option, index)


class TimelineController(QObject):
    message_selected = Signal(int)
    """A store row the user picked in a plot or the ladder."""

    def __init__(self, store: MessageStore, parent: QObject | None = None, *,
                 conditions: ConditionsFn | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.analysis = Analysis(store)
        self.conditions = conditions
        self.colours = palette.current()
        self.conn_id: int | None = None
        self.paused = False
        self._conf_key: tuple[float, float] | None = None
        self._conf: list[tuple[int, float, float]] = []
        self._udp_conf: dict[tuple[Direction, str], float] = {}
        self._bandwidth_conf: dict[Direction, float] = {}
        """Each direction's bandwidth in bytes/s as set (0: unlimited), drawn on the bytes/s plot."""
        self.scenario_plan: list[tuple[int, float]] = []
        """A loaded scenario's planned added round trip, (engine monotonic ns, ms) points (``set_scenario_plan``)."""
        self._generation = -1
        self._selected: int | None = None
        self.tick_ms: list[float] = []
        """Durations of recent refresh ticks (the benchmark reads them)."""
        self._build_panel()
        self._build_stats()
        self.detail_note = QLabel()
        self.detail_note.setWordWrap(True)
        self.detail_note.setTextFormat(Qt.TextFormat.RichText)
        self.detail_note.setOpenExternalLinks(False)
        self.detail_note.linkActivated.connect(self.open_lesson)
        self.detail_note.setContentsMargins(6, 2, 6, 2)
        self.detail_note.hide()
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        # new rows are analysed in short slices between redraws (inspector.ui.slices)
        self.slices = Slices(lambda budget: bool(self.analysis.pending) and self.analysis.update(budget), self)

    # ------------------------------------------------------------------------------------------ widgets

    def _build_panel(self) -> None:
        self.panel = QWidget()
        self.panel.setObjectName("timeline_panel")
        self.scope = QComboBox()
        self.scope.setToolTip("show one connection or all")
        self.scope.addItem("all connections", None)
        self.scope.currentIndexChanged.connect(self._scope_chosen)
        self.pair_mode = QComboBox()
        self.pair_mode.addItems(["auto", "by key"])
        self.pair_mode.setToolTip("auto: a request and the next answer on its connection\n"
                                  "by key: a decoded field (json.id, msgpack.seq) or a text pattern (ping (\\d+))")
        self.key_c2s = QLineEdit()
        self.key_c2s.setPlaceholderText("request key: json.id")
        self.key_s2c = QLineEdit()
        self.key_s2c.setPlaceholderText("answer key (optional)")
        for e in (self.key_c2s, self.key_s2c):
            e.setMaximumWidth(170)
            e.returnPressed.connect(self.apply_pairing)
        self.pair_mode.activated.connect(lambda _i: self.apply_pairing())
        self.pair_error = QLabel()
        self.pair_error.setStyleSheet(f"color: {self.colours.error.name()}")
        self.pause_box = QCheckBox("Pause")
        self.pause_box.setToolTip("freeze the plots and the ladder (capture goes on)")
        self.pause_box.toggled.connect(self.set_paused)
        self.follow_box = QCheckBox("Follow")
        self.follow_box.setChecked(True)
        self.follow_box.setToolTip("keep the newest traffic in view (zooming or panning turns this off)")
        self.follow_box.toggled.connect(self._set_follow)
        self.rtt_label = QLabel()
        self.rtt_label.setToolTip("median round trip of the last 20 pairs: added by sockscope + network and server")
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.scope)
        bar.addSpacing(8)
        bar.addWidget(QLabel("pairing"))
        bar.addWidget(self.pair_mode)
        bar.addWidget(self.key_c2s)
        bar.addWidget(self.key_s2c)
        bar.addWidget(self.pair_error)
        bar.addStretch(1)
        bar.addWidget(self.rtt_label)
        bar.addSpacing(8)
        bar.addWidget(self.follow_box)
        bar.addWidget(self.pause_box)
        # The plots (pyqtgraph and numpy: a good part of the window's start-up) are made when the timeline is first
        # shown or asked for; until then an empty widget keeps their place in the splitter.
        self._plots: TimelinePlots | None = None
        self._plots_slot = QWidget()
        self.ladder = LadderView(self.store)
        self.ladder.notes = lambda row: self.analysis.pairer.enet_note(row)  # the pairer is remade on a new rule
        self.ladder.row_clicked.connect(self.message_selected)
        self.ladder.follow_changed.connect(self._follow_changed)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setObjectName("timeline_split")
        self.split.addWidget(self._plots_slot)
        self.split.addWidget(self.ladder)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self.panel)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.split, 1)
        self._key_widgets_enabled()
        self.panel.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.panel and event.type() == QEvent.Type.Show and self._plots is None:
            self._build_plots()  # before the panel is first painted
        return super().eventFilter(watched, event)

    @property
    def plots(self) -> TimelinePlots:
        """The RTT and rate plots (made on first use)."""
        if self._plots is None:
            self._build_plots()
        assert self._plots is not None
        return self._plots

    def _build_plots(self) -> None:
        from inspector.ui.timeline.plots import TimelinePlots

        plots = TimelinePlots()
        plots.row_clicked.connect(self.message_selected)
        plots.follow_changed.connect(self._follow_changed)
        if plots.colours != self.colours:
            plots.set_colours(self.colours)
        if not self.follow_box.isChecked():
            plots.set_follow(False)
        if self._conf:
            plots.set_configured(self._conf)
        plots.set_configured_udp(self._udp_conf)
        plots.set_configured_bandwidth(self._bandwidth_conf)
        if self.scenario_plan:
            plots.set_scenario(self.scenario_plan)
        self._plots = plots
        sizes = self.split.sizes()
        self.split.replaceWidget(0, plots)
        self._plots_slot.deleteLater()
        self.split.setStretchFactor(0, 3)
        if sum(sizes):
            self.split.setSizes(sizes)
        plots.refresh(self.analysis, self.conn_id)
        plots.select_row(self._selected)

    def _build_stats(self) -> None:
        self.stats_panel = QWidget()
        self.stats_panel.setObjectName("statistics_panel")
        self.stats_model = StatsModel(self)
        self.stats_table = QTableView()
        self.stats_table.setModel(self.stats_model)
        self.stats_table.verticalHeader().hide()
        self.stats_table.setShowGrid(False)
        self.stats_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hh = self.stats_table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.group_by = QLineEdit()
        self.group_by.setPlaceholderText("auto: json type, msgpack command, pickle class, struct field, first word")
        self.group_by.setToolTip("group by a decoded field (json.kind, msgpack.cmd, struct.id) or a text pattern; "
                                 "empty for auto")
        self.group_by.returnPressed.connect(self.apply_group_by)
        self.group_error = QLabel()
        self.group_error.setStyleSheet(f"color: {self.colours.error.name()}")
        self.stats_scope = QComboBox()
        self.stats_scope.addItem("all connections", None)
        self.stats_scope.currentIndexChanged.connect(lambda _i: self.refresh_stats())
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(lambda: self.export_csv())
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.stats_scope)
        bar.addWidget(QLabel("group by"))
        bar.addWidget(self.group_by, 1)
        bar.addWidget(self.group_error)
        bar.addWidget(self.export_button)
        lay = QVBoxLayout(self.stats_panel)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.stats_table, 1)
        # UDP: what the impairments did, measured, beside what is set (shown once datagrams arrived)
        self.udp_model = UdpStatsModel(self)
        self.udp_table = QTableView()
        self.udp_table.setObjectName("udp_statistics")
        self.udp_table.setModel(self.udp_model)
        self.udp_table.verticalHeader().hide()
        self.udp_table.setShowGrid(False)
        self.udp_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.udp_table.setMaximumHeight(self.udp_table.verticalHeader().defaultSectionSize() * 3 + 8)
        self.udp_label = QLabel("<b>UDP datagrams</b>: measured, with what is set in brackets")
        self.udp_label.setContentsMargins(4, 4, 4, 0)
        lay.addWidget(self.udp_label)
        lay.addWidget(self.udp_table)
        for w in (self.udp_label, self.udp_table):
            w.hide()

    def set_colours(self, colours: palette.Colours) -> None:
        """The look changed (light or dark)."""
        self.colours = colours
        self.stats_model.colours = colours
        self.udp_model.colours = colours
        self.pair_error.setStyleSheet(f"color: {colours.error.name()}")
        self.group_error.setStyleSheet(f"color: {colours.error.name()}")
        if self._plots is not None:
            self._plots.set_colours(colours)
        self.ladder.colours = colours
        self.ladder.update()
        self._update_rtt_label()
        self.update_note(self._selected)

    def make_delegate(self, row_of: Callable[[Index], int | None], parent: QObject | None = None
                      ) -> AnnotationDelegate:
        return AnnotationDelegate(self, row_of, parent)

    # ------------------------------------------------------------------------------------------ settings

    def _key_widgets_enabled(self) -> None:
        by_key = self.pair_mode.currentIndex() == 1
        self.key_c2s.setEnabled(by_key)
        self.key_s2c.setEnabled(by_key)

    def apply_pairing(self) -> bool:
        self._key_widgets_enabled()
        try:
            rule = (PairingRule.parse(self.key_c2s.text(), self.key_s2c.text())
                    if self.pair_mode.currentIndex() == 1 else PairingRule())
        except ValueError as e:
            self.pair_error.setText(f"⚠ {e}")
            return False
        self.pair_error.setText("")
        if rule != self.analysis.rule:
            self.analysis.set_rule(rule)
            self.refresh(force=True)
        return True

    def set_pairing(self, c2s: str = "", s2c: str = "") -> bool:
        self.pair_mode.setCurrentIndex(1 if (c2s or s2c) else 0)
        self.key_c2s.setText(c2s)
        self.key_s2c.setText(s2c)
        return self.apply_pairing()

    def apply_group_by(self) -> bool:
        text = self.group_by.text().strip()
        try:
            key = KeySpec.parse(text) if text else None
        except ValueError as e:
            self.group_error.setText(f"⚠ {e}")
            return False
        self.group_error.setText("")
        self.analysis.set_stats_key(key)
        self.refresh(force=True)
        return True

    def _scope_chosen(self, _i: int) -> None:
        self.conn_id = self.scope.currentData()
        self.ladder.set_scope(self.conn_id)
        self.refresh(force=True)

    def set_scope(self, conn_id: int | None) -> None:
        self._sync_connections()
        i = self.scope.findData(conn_id)
        if i >= 0:
            self.scope.setCurrentIndex(i)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self.pause_box.isChecked() != paused:
            self.pause_box.setChecked(paused)
        if not paused:
            self.refresh(force=True)

    def _set_follow(self, on: bool) -> None:
        if self._plots is not None:
            self._plots.set_follow(on)
        self.ladder.set_follow(on)
        if on:
            self.refresh(force=True)

    def _follow_changed(self, on: bool) -> None:
        if self.follow_box.isChecked() != on:
            self.follow_box.setChecked(on)

    # ------------------------------------------------------------------------------------------ refresh

    def _sync_connections(self) -> None:
        for combo in (self.scope, self.stats_scope):
            have = {combo.itemData(i) for i in range(combo.count())}
            for conn_id, c in self.store.connections.items():
                if conn_id not in have:
                    combo.addItem(f"#{conn_id} :{c.client_addr[1]}", conn_id)

    def _track_conditions(self) -> None:
        if self.conditions is None:
            return
        try:
            cond = self.conditions()
            lo = cond.c2s.latency_ms + cond.s2c.latency_ms
            hi = lo + cond.c2s.jitter.ms + cond.s2c.jitter.ms
            udp: dict[tuple[Direction, str], float] = {}
            bandwidth: dict[Direction, float] = {}
            for d in Direction:
                dc = cond.for_direction(d)
                bandwidth[d] = float(dc.bandwidth_bps or 0)
                udp[(d, "lost")] = configured_loss_pct(dc)
                udp[(d, "duplicated")] = dc.duplicate_fraction * 100
                udp[(d, "sent ahead")] = float(dc.reorder_pct)
        except Exception:  # a half-built panel: try again next tick
            return
        if udp != self._udp_conf:
            self._udp_conf = udp
            if self._plots is not None:
                self._plots.set_configured_udp(udp)
        if bandwidth != self._bandwidth_conf:
            self._bandwidth_conf = bandwidth
            if self._plots is not None:
                self._plots.set_configured_bandwidth(bandwidth)
        if (lo, hi) != self._conf_key:
            self._conf_key = (lo, hi)
            s = self.store
            t = s.arrivals[-1] if len(s) else (s.t0_ns or 0)
            if self._conf and self._conf[-1][0] >= t:
                self._conf[-1] = (t, lo, hi)
            else:
                self._conf.append((t, lo, hi))
            if self._plots is not None:
                self._plots.set_configured(self._conf)

    def set_scenario_plan(self, points: list[tuple[int, float]]) -> None:
        """Draw a scenario's planned added round trip on the RTT plot (a dashed line beside the measured one and the
        configured band); an empty list removes it."""
        self.scenario_plan = points
        if self._plots is not None:
            self._plots.set_scenario(points)
            self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """One tick: analyse new rows (within the budget), then redraw what is visible."""
        t0 = time.perf_counter()
        changed = self.analysis.update(SLICE_S) | self.slices.take()
        self._track_conditions()
        if self.analysis.generation != self._generation:
            self._generation = self.analysis.generation
            self._conf = [(t, lo, hi) for t, lo, hi in self._conf if t >= (self.store.t0_ns or 0)][-1:]
            force = True
        if len(self.store.connections) + 1 > self.scope.count():
            self._sync_connections()
        if (changed or force) and not self.paused:
            if self.panel.isVisible() or force:
                if self._plots is not None:  # else made, and drawn, when the timeline is first shown
                    self._plots.refresh(self.analysis, self.conn_id)
                    self._plots.select_row(self._selected)
                self._update_rtt_label()
            if self.stats_panel.isVisible() or force:
                self.refresh_stats()
        if changed and self._selected is not None:
            # the selected message's lessons and pair may only be known now that its rows were analysed
            self.update_note(self._selected)
        if not self.paused and (self.ladder.isVisible() or force):
            self.ladder.refresh()
        self.tick_ms.append((time.perf_counter() - t0) * 1000)
        if len(self.tick_ms) > 1000:
            del self.tick_ms[:500]

    def refresh_stats(self) -> None:
        scope = self.stats_scope.currentData()
        self.stats_model.set_rows(self.analysis.stats.rows(scope))
        dg = self.analysis.datagrams
        counts = dg.total if scope is None else {d: dg.flows[(scope, d)] for d in Direction
                                                 if (scope, d) in dg.flows}
        configured = None
        if self.conditions is not None:
            with contextlib.suppress(Exception):  # the panel may be mid-edit: the measures stand on their own
                configured = self.conditions()
        self.udp_model.set_counts(counts, configured)
        shown = self.udp_model.rowCount() > 0
        for w in (self.udp_label, self.udp_table):
            w.setVisible(shown)

    def _update_rtt_label(self) -> None:
        rts = [rt for rt in self.analysis.pairer.round_trips[-200:]
               if self.conn_id is None or rt.pair.conn_id == self.conn_id][-20:]
        if not rts:
            self.rtt_label.setText("")
            return
        rtt = sorted(rt.rtt_ms for rt in rts)[len(rts) // 2]
        inj = sorted(rt.injected_ms for rt in rts)[len(rts) // 2]
        c = self.colours
        self.rtt_label.setText(f"RTT ≈ <b>{rtt:.0f} ms</b> = <span style='color:{c.held.name()}'>{inj:.0f} added"
                               f"</span> + {max(0.0, rtt - inj):.0f} network/server")

    # ------------------------------------------------------------------------------------------ selection and notes

    def select_row(self, row: int | None) -> None:
        """The table's selection changed: highlight it in the plots and the ladder, and fill the note."""
        self._selected = row
        if self._plots is not None:
            self._plots.select_row(row)
        self.ladder.select_row(row)
        self.update_note(row)

    def annotations(self, row: int) -> list[Annotation]:
        return self.analysis.annotator.for_row(self.store, row)

    def note_html(self, row: int | None) -> str:
        if row is None or not 0 <= row < len(self.store):
            return ""
        parts = []
        rt = self.analysis.pairer.round_trip_of(self.store, row)
        pair = self.analysis.pairer.pair_of(row)
        c = self.colours
        if pair is not None and pair.channel is not None:  # ENet: a reliable command and its acknowledgement
            other = pair.response_row if pair.request_row == row else pair.request_row
            what = html.escape(pair.key or "")
            role = f"carries {what}, acknowledged in" if pair.request_row == row else f"acknowledges {what} of"
            text = (f"⇄ ENet: {role} #{self.store.ids[other]}" +
                    (f": {html.escape(rt.describe())}" if rt is not None else ""))
            parts.append(f"<span style='color:{c.c2s.name()}'>{text}</span>")
        elif pair is not None:
            other = pair.response_row if pair.request_row == row else pair.request_row
            role = "request" if pair.request_row == row else "answer"
            text = (f"⇄ {role} of a pair with #{self.store.ids[other]}" +
                    (f": {html.escape(rt.describe())}" if rt is not None else " (not released yet)"))
            parts.append(f"<span style='color:{c.c2s.name()}'>{text}</span>")
        enet_note = self.analysis.pairer.enet_note(row)
        if enet_note:
            parts.append(f"<span style='color:{c.error.name()}'>{html.escape(enet_note)}</span>")
        for n in self.annotations(row):
            lesson = n.lesson
            url = QUrl.fromLocalFile(str(lesson.path)).toString()
            colour = c.error if n.kind.value in ("pickle", "discarded") else c.held
            parts.append(f"<span style='color:{colour.name()}'><b>{html.escape(lesson.badge)} "
                         f"{html.escape(lesson.title)}</b></span>"
                         + (f" ({html.escape(n.detail)})" if n.detail else "")
                         + f": {html.escape(lesson.explanation)} <a href='{url}'>Learn more</a>")
        return "<br>".join(parts)

    def update_note(self, row: int | None) -> None:
        text = self.note_html(row)
        if text != self.detail_note.text():
            self.detail_note.setText(text)
        self.detail_note.setVisible(bool(text))

    def open_lesson(self, url: str) -> None:
        QDesktopServices.openUrl(QUrl(url))

    # ------------------------------------------------------------------------------------------ export

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the statistics table as CSV (asks where when ``path`` is None); returns the path written."""
        self.analysis.run_to_end()
        rows = self.analysis.stats.rows(self.stats_scope.currentData())
        self.stats_model.set_rows(rows)
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.stats_panel, "Export statistics", "sockscope-stats.csv",
                                                  "CSV (*.csv)")
            if not path:
                return None
        Path(path).write_text(rows_to_csv(rows), encoding="utf-8")
        return path

    def stop(self) -> None:
        self.timer.stop()
        self.slices.stop()


__all__ = ["LESSONS", "AnnotationDelegate", "StatsModel", "TimelineController"]

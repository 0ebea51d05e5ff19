"""The main window: toolbar, filter bar, message table, detail pane, docks (connections, conditions, intercept,
log) and status bar, wired to a :class:`~inspector.bridge.Link` through a :class:`~inspector.bridge.RecordPump`
(records) and :class:`~inspector.bridge.LinkEvents` (what other clients of the proxy changed).

Role: composition and reactions only. Data lives in the store, rows in the models, engine access in the link.
The window starts its link on a worker thread (a child proxy may take a moment) and never blocks on the engine:
commands, sent by their wire names (docs/protocol.md), return futures whose failures are shown in the status bar
and the log. If the proxy cannot start or dies, the window says so in a banner, keeps what it captured, and
offers to start again. The layout fits the window from 1024x700 to 2560x1440 (:meth:`MainWindow.reset_layout`):
panels scroll rather than clip or overlap, a remembered layout that no longer fits is reset, the timeline waits
until asked for. What went wrong is said above the table in a learner's words (``inspector.ui.wording``).
Must not import: ``proxy.runner``/``proxy.server`` (only through the link).
Thread: GUI thread; ``_link_ready`` and ``_command_failed`` are emitted from worker threads, ``LinkEvents``' signals
from the link's reader thread (all queued).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QModelIndex, QObject, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QPaintEvent,
    QResizeEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from inspector.bridge import AttachLink, Link, LinkError, LinkOptions, make_link, nothing_listens, notice_text
from inspector.decode import existing_registry
from inspector.store import ApplyResult, MessageStore
from inspector.ui import format as fmt
from inspector.ui import none_guard, palette
from inspector.ui.conditions_dock import ConditionsPanel
from inspector.ui.decoding import Decoding
from inspector.ui.detail import DetailPane
from inspector.ui.filter_bar import FilterBar
from inspector.ui.framing_control import FramingControl
from inspector.ui.gc_guard import GuiThreadCollector
from inspector.ui.intercept_dock import InterceptPanel
from inspector.ui.message_model import ROW_ROLE, VIEW_ROW_ROLE, Column, MessageTableModel
from inspector.ui.pump import LinkEvents, RecordPump
from inspector.ui.side_models import CONN_ROLE, ConnectionsModel, HeldModel
from inspector.ui.start_page import FRAMINGS, StartPage
from inspector.ui.wording import NOT_RUNNING, failure_text, start_error_text
from proxy.model import Direction, MessageState, Notice
from proxy.options import UsageError, parse_hostport

if TYPE_CHECKING:
    from inspector.filters import Filter  # the filter bar imports inspector.filters when first used
    from inspector.layouts import Layout  # imported when a layout is offered: 17 ms of start-up otherwise
    from inspector.ui.decode_as import DecodeAsDialog  # dialogs: imported when first opened
    from inspector.ui.editor import ComposeDialog, EditDialog
    from inspector.ui.lab_dock import LabController
    from inspector.ui.timeline.dock import TimelineController

_FROM_TO = {Direction.C2S: "from your client to the server", Direction.S2C: "from the server to your client"}
DEFAULT_SIZE = (1440, 960)
"""The window's size the first time (smaller on a smaller screen)."""
TITLE_BAR_PX = 32
LAYOUT_VERSION = 2
"""Bumped when the default layout changes: a layout remembered from before is not restored."""
WIDE_W = 1200
"""From this width the Connections panel has a column of its own on the left (narrower: a tab on the right)."""
TALL_H = 880
"""From this height Conditions and Intercept are one above the other (lower: tabs)."""
RIGHT_MAX_PX = 520
CONN_MIN_PX, CONN_MAX_PX = 250, 360
SCROLLBAR_PX = 18
DOCK_TITLE_PX = 24
MIN_TABLE_W, MIN_TABLE_H = 420, 260
"""Less than this for the message table and detail pane and a restored layout is reset."""
TIMELINE_MIN_PX = 300
WINDOW_KEYS = frozenset({"Ctrl+E", "Ctrl+Shift+E", "Ctrl+K", "Ctrl+H", "Ctrl+Shift+H", "Ctrl+R", "Ctrl+T",
                         "Ctrl+Return", "Ctrl+Shift+Return", "Ctrl+Shift+C", "Ctrl+F"})
"""The window's shortcuts that win over a text box's own use of the keys (Ctrl+Delete, Ctrl+C ... stay the box's)."""
HELD_BADGE_PX = 70
"""Room kept in the toolbar for the "N held" badge."""
SYNC_FILTER_ROWS = 100_000
"""Below this many rows a filter is applied at once; above, in slices so the window stays responsive."""
RECENT_MAX = 8
RATE_WINDOW_S = 5.0
"""The status bar's rates are averages over this many seconds."""
TARGET_CHECK_MS = 2000
"""How often the window looks again for a server that was not running."""
NOTICE_MS = 20_000
"""How long a notice about a failed action stays (it can be closed sooner)."""
LOG_MAX_LINES = 2000


class _Pages(QStackedWidget):
    """The start page or the messages: only the page on show claims room (the start page's height must not keep
    the timeline from growing while the table is shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.currentChanged.connect(lambda _i: self.updateGeometry())

    def minimumSizeHint(self) -> QSize:
        page = self.currentWidget()
        return page.minimumSizeHint() if page is not None else super().minimumSizeHint()

    def sizeHint(self) -> QSize:
        page = self.currentWidget()
        return page.sizeHint() if page is not None else super().sizeHint()


LAYOUT_LOOKBACK = 2000
"""Rows looked back through for a direction's records when guessing a struct layout."""
LAYOUT_RECORDS = 32
"""Records a layout guess is made from (the guess needs about 8; more make it surer)."""


class MainWindow(QMainWindow):
    _link_ready = Signal(object, object)  # (link, error text or None)
    _command_failed = Signal(str)
    central: _Pages
    _start_page: StartPage | None

    def __init__(self, options: LinkOptions | None = None, *, attach: tuple[str, int, str] | None = None,
                 settings: QSettings | None = None, link_factory: Callable[[LinkOptions], Link] = make_link,
                 store: MessageStore | None = None) -> None:
        super().__init__()
        none_guard.install()
        self._collector = GuiThreadCollector(self)
        self._collector.start()
        self.destroyed.connect(self._collector.stop)
        self.setWindowTitle("sockscope")
        self.settings = settings if settings is not None else QSettings("sockscope", "sockscope")
        self.link_factory = link_factory
        self.link: Link | None = None
        self.options = options
        self.store = store if store is not None else MessageStore()
        self.decoding = Decoding(self.store)
        # The registry is the process's; what an earlier window set for its connection #1 is not this one's.
        # (One not made yet has nothing to forget: it is made on the first decode, after the first frame.)
        registry = existing_registry()
        if registry is not None:
            registry.clear_settings()
        self.colours = palette.current()
        self.model = MessageTableModel(self.store, self.decoding, self)
        self.conn_model = ConnectionsModel(self.store, self)
        self.held_model = HeldModel(self.store, self.decoding, self)
        self.pump = RecordPump(self.store, None, self)
        self.pump.applied.connect(self._on_applied)
        self.pump.link_died.connect(self._on_link_died)
        self._link_ready.connect(self._on_link_ready)
        self._command_failed.connect(self._report_error)
        self.link_events = LinkEvents(self)
        self.link_events.conditions_changed.connect(self._conditions_from_elsewhere)
        self.link_events.rules_changed.connect(self._rules_from_elsewhere)
        self.link_events.framing_changed.connect(self._framing_from_elsewhere)
        self.link_events.capture_changed.connect(self._capture_from_elsewhere)
        self.link_events.hold_changed.connect(self._hold_from_elsewhere)
        self.follow = True
        self._filtering: Any = None
        self._filter_timer = QTimer(self)
        self._filter_timer.setInterval(0)
        self._filter_timer.timeout.connect(self._filter_step)
        self._rate_samples: collections.deque[tuple[float, list[int], list[int]]] = collections.deque()
        """(time, messages, bytes) totals of the last seconds: rates are averaged over RATE_WINDOW_S."""
        self._rates = ([0.0, 0.0], [0.0, 0.0])
        self._starting = False
        self._used_ids = (0, 0)
        """The highest connection and message numbers this window has shown (a proxy it starts goes on after them)."""
        self._window_keys: set[QKeySequence] = set()
        self._layout_pending = ""
        self._first_paint_done = False
        self._check_on_main = False
        """What the first show does to the layout: "reset" (the default for the window's size), "check" (a
        restored one), or nothing."""
        self._armed: dict[Direction, int] = {}
        """Directions whose next message the user asked to hold -> the newest message number then."""
        self._own_proxy = False
        """Whether the link is a proxy this window started (its server is checked), not one attached to."""
        self._target_down = False
        self._notice_kind = ""
        self._target_timer = QTimer(self)
        self._target_timer.setSingleShot(True)
        self._target_timer.setInterval(TARGET_CHECK_MS)
        self._target_timer.timeout.connect(self._check_target)
        self.question: QMessageBox | None = None
        """The question the window is asking, if any (tests answer it with :func:`answer`-like clicks)."""
        self.editor: EditDialog | None = None
        self.composer: ComposeDialog | None = None
        self.decode_as_dialog: DecodeAsDialog | None = None
        self.context_menu: QMenu | None = None
        self.framing_control = FramingControl(self.store, self.send, self._report_error, self, self.decoding)
        self.framing_control.decoding_changed.connect(lambda: self._decoding_changed())
        self.source_layouts: list[Layout] = []
        """Struct layouts found in the program's source (``sockscope run --window``), offered for fixed-size records."""
        self.framing_control.layout_provider = self._layouts_for

        self._build_central()
        self._build_docks()
        self._build_toolbar()
        self._build_menus()
        self._build_status()
        self._keys_beat_text_boxes()
        self._restore_settings()

        self._rate_timer = QTimer(self)
        self._rate_timer.setInterval(1000)
        self._rate_timer.timeout.connect(self._update_rates)
        self._rate_timer.start()

        if attach is not None:
            self.attach(*attach)
        elif options is not None:
            self.start_link(options)
        else:
            self.central.setCurrentWidget(self.start_page)

    # =============================================================================================== building

    @property
    def start_page(self) -> StartPage:
        """The page that asks what to inspect: made when first shown, since a window started with a proxy, a file
        or an attach may never show it (a few milliseconds before the first frame)."""
        if self._start_page is None:
            page = self._start_page = StartPage()
            page.start_requested.connect(self.start_link)
            page.demo_requested.connect(lambda: self.start_link(LinkOptions(demo=True)))
            page.set_recent(self.recent_targets())
            page.set_colours(self.colours)
            self.central.insertWidget(0, page)
        return self._start_page

    def _build_central(self) -> None:
        self._start_page = None

        self.banner = QWidget()
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_button = QPushButton("Start again")
        self.banner_button.clicked.connect(self.restart_link)
        self.banner_close = QPushButton("✕")
        self.banner_close.setFlat(True)
        self.banner_close.setToolTip("hide this message")
        self.banner_close.clicked.connect(lambda: self.banner.hide())
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(8, 4, 8, 4)
        bl.addWidget(self.banner_text, 1)
        bl.addWidget(self.banner_button)
        bl.addWidget(self.banner_close)
        self.banner.setAutoFillBackground(True)
        self.banner.hide()

        # What went wrong with something the user asked for: in view until read (not a passing status-bar line).
        self.notice = QWidget()
        self.notice.setObjectName("notice")
        self.notice_text = QLabel()
        self.notice_text.setWordWrap(True)
        self.notice_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        notice_close = QPushButton("✕")
        notice_close.setFlat(True)
        notice_close.setToolTip("hide this message")
        notice_close.clicked.connect(lambda: self.notice.hide())
        nl = QHBoxLayout(self.notice)
        nl.setContentsMargins(8, 3, 8, 3)
        nl.addWidget(self.notice_text, 1)
        nl.addWidget(notice_close)
        self.notice.setAutoFillBackground(True)
        self.notice.hide()
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.setInterval(NOTICE_MS)
        self._notice_timer.timeout.connect(self.notice.hide)

        self.filter_bar = FilterBar()
        self.filter_bar.filter_changed.connect(self.set_filter)

        self.table = QTableView()
        self.table.setObjectName("messages")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        vh = self.table.verticalHeader()
        vh.hide()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # uniform row height: cheap scrolling
        vh.setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        hh = self.table.horizontalHeader()
        hh.setHighlightSections(False)
        hh.setStretchLastSection(False)
        # each column as wide as what it shows (in the user's font), so the summary gets the rest
        fm = self.table.fontMetrics()
        samples = {Column.NUMBER: "#00000", Column.TIME: "000.000 s", Column.CONN: "#000", Column.DIR: "dir",
                   Column.SIZE: "00000", Column.DELAY: "+0000 ms", Column.STATE: "scheduled"}
        for col, sample in samples.items():
            self.table.setColumnWidth(col, fm.horizontalAdvance(sample) + 16)
        hh.setSectionResizeMode(Column.SUMMARY, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(self._row_selected)
        self.table.verticalScrollBar().valueChanged.connect(self._scrolled)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)

        self.detail = DetailPane(self.store, self.decoding)
        self.detail.decode_as_changed.connect(self._decoding_changed)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("table_detail_split")
        self.split.addWidget(self.table)
        self.split.addWidget(self.detail)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)

        self.main_view = QWidget()
        mv = QVBoxLayout(self.main_view)
        mv.setContentsMargins(0, 0, 0, 0)
        mv.setSpacing(0)
        mv.addWidget(self.banner)
        mv.addWidget(self.notice)
        mv.addWidget(self.filter_bar)
        mv.addWidget(self.split, 1)

        self.central = _Pages()
        self.central.currentChanged.connect(self._page_changed)
        self.central.addWidget(self.main_view)
        self.central.setCurrentWidget(self.main_view)
        self.setCentralWidget(self.central)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea, *,
              scroll: bool = False) -> QDockWidget:
        """A dock; ``scroll``: its panel scrolls when the dock is smaller than the panel, so a squeezed dock never
        clips its controls or pushes over its neighbours."""
        d = QDockWidget(title, self)
        d.setObjectName(name)
        if scroll:
            area_ = QScrollArea()
            area_.setObjectName(f"{name}_scroll")
            area_.setWidget(widget)
            area_.setWidgetResizable(True)
            area_.setFrameShape(QFrame.Shape.NoFrame)
            area_.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            widget = area_
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _build_docks(self) -> None:
        self.conn_table = QTableView()
        self.conn_table.setModel(self.conn_model)
        self.conn_table.verticalHeader().hide()
        self.conn_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.conn_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        cv = self.conn_table.verticalHeader()
        cv.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        cv.setDefaultSectionSize(self.table.verticalHeader().defaultSectionSize())  # rows as tall as the table's
        self.conn_table.setWordWrap(False)
        self.conn_table.setTextElideMode(Qt.TextElideMode.ElideRight)
        ch = self.conn_table.horizontalHeader()
        ch.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        ch.setStretchLastSection(False)
        ch.setMinimumSectionSize(32)
        # The connection's name and its client share what the counts and the state leave: in a narrow panel
        # "#2 replay of #1" and the client's port shorten ("#2 repl…", whole in the tooltip) instead of pushing
        # columns out of view behind a sideways scrollbar.
        ch.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, name in enumerate(ConnectionsModel.HEADERS):
            if name.startswith("framing"):  # shortens too (whole in its tooltip)
                ch.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
            elif name == "client":
                # Six columns do not fit a side panel: the client's address is in every cell's tooltip and in the
                # detail pane, so its column is hidden (what one message is matters more to a learner).
                self.conn_table.setColumnHidden(col, True)
        self.conn_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conn_table.customContextMenuRequested.connect(self._conn_menu)
        self.conn_table.doubleClicked.connect(lambda idx: self._only_connection(idx))
        conn_box = QWidget()
        cl = QVBoxLayout(conn_box)
        cl.setContentsMargins(4, 4, 4, 4)
        cl.addWidget(self.conn_table, 1)
        row = QHBoxLayout()
        self.conn_close = QPushButton("Close")
        self.conn_close.setToolTip("close the selected connection cleanly (FIN)")
        self.conn_reset = QPushButton("Reset")
        self.conn_reset.setToolTip("reset the selected connection (RST); a UDP flow has no reset: it is ended")
        self.conn_only = QPushButton("Only this")
        self.conn_only.setToolTip("filter the table to the selected connection")
        self.conn_close.clicked.connect(lambda: self.close_connection(reset=False))
        self.conn_reset.clicked.connect(lambda: self.close_connection(reset=True))
        self.conn_only.clicked.connect(lambda: self._only_connection(self.conn_table.currentIndex()))
        for b in (self.conn_close, self.conn_reset, self.conn_only):
            row.addWidget(b)
        cl.addLayout(row)
        self.conn_dock = self._dock("Connections", "connections_dock", conn_box, Qt.DockWidgetArea.LeftDockWidgetArea)

        self.conditions = ConditionsPanel(self.send)
        self.conditions.close_button.clicked.connect(lambda: self.close_connection(reset=False))
        self.conditions.reset_button.clicked.connect(lambda: self.close_connection(reset=True))
        self.cond_dock = self._dock("Conditions", "conditions_dock", self.conditions,
                                    Qt.DockWidgetArea.RightDockWidgetArea, scroll=True)
        self.conditions.installEventFilter(self)  # it grows (a preset's source, a longer read-out): make room

        self.intercept = InterceptPanel(self.held_model)
        self.intercept.hold_next.connect(self.hold_next)
        self.intercept.forward.connect(self.forward)
        self.intercept.edit_forward.connect(self.edit_and_forward)
        self.intercept.drop.connect(self.drop)
        self.intercept.forward_all.connect(self.forward_all)
        self.intercept.cancel_hold.connect(self.cancel_hold)
        self.intercept.rules_changed.connect(lambda rules: self.send("set_rules", rules=rules))
        self.intercept_dock = self._dock("Intercept", "intercept_dock", self.intercept,
                                         Qt.DockWidgetArea.RightDockWidgetArea, scroll=True)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_MAX_LINES)
        self.log_dock = self._dock("Log", "log_dock", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.log_dock.hide()
        # The Timeline and Statistics docks are hidden until asked for (View ▸ Timeline, the toolbar): the table and
        # the detail get the room. What they show (the timeline's analysis, its views, the table's annotation badges
        # and the detail pane's note) is made right after the window's first paint, or as soon as something asks.
        self._timeline: TimelineController | None = None
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        self.timeline_dock = self._dock("Timeline", "timeline_dock", QWidget(), bottom)
        self.stats_dock = self._dock("Statistics", "statistics_dock", QWidget(), bottom)
        self.tabifyDockWidget(self.timeline_dock, self.stats_dock)
        self.timeline_dock.raise_()
        for d in (self.timeline_dock, self.stats_dock):
            d.hide()
            d.visibilityChanged.connect(self._timeline_wanted)
        # The Lab (issue 24): latency-compensation plots for the game's own inputs and states, made when first shown.
        self._lab: LabController | None = None
        self.lab_dock = self._dock("Lab", "lab_dock", QWidget(), bottom)
        self.tabifyDockWidget(self.stats_dock, self.lab_dock)
        self.lab_dock.hide()
        self.lab_dock.visibilityChanged.connect(lambda visible: self._build_lab() if visible else None)

    # -- timeline (issue 7): Timeline + Statistics docks, annotation badges, detail note, selection sync
    @property
    def timeline(self) -> TimelineController:
        """The timeline's controller (made after the window's first paint, or when first needed)."""
        if self._timeline is None:
            self._build_timeline()
        assert self._timeline is not None
        return self._timeline

    def _timeline_wanted(self, visible: bool) -> None:
        if visible and self._timeline is None:
            self._build_timeline()

    def _build_timeline(self) -> None:
        from inspector.ui.timeline.dock import TimelineController

        tl = self._timeline = TimelineController(self.store, self, conditions=self.conditions.value)
        for dock, panel in ((self.timeline_dock, tl.panel), (self.stats_dock, tl.stats_panel)):
            placeholder = dock.widget()
            dock.setWidget(panel)
            if placeholder is not None:
                placeholder.deleteLater()
        tl.message_selected.connect(self._select_store_row)
        self.table.setItemDelegateForColumn(
            Column.SUMMARY, tl.make_delegate(lambda idx: self.model.data(idx, ROW_ROLE), self.table))
        self.table.selectionModel().currentRowChanged.connect(
            lambda cur, _prev: tl.select_row(self.model.data(cur, ROW_ROLE) if cur.isValid() else None))
        detail_layout = self.detail.layout()
        if isinstance(detail_layout, QVBoxLayout):
            detail_layout.insertWidget(1, tl.detail_note)
        for panel in (tl.panel, tl.stats_panel):
            self._watch_text_boxes(panel)
        if tl.colours != self.colours:
            tl.set_colours(self.colours)
        tl.select_row(self.selected_row())
        self.table.viewport().update()  # the badges of rows already shown

    def _select_store_row(self, row: int) -> None:
        """A plot point or ladder arrow was clicked: select that message in the table (or at least show it)."""
        self.follow_action.setChecked(False)
        pos = self.store.visible_position(row)
        if pos is None:
            self.detail.show_row(row)
            self.timeline.select_row(row)
            self.statusBar().showMessage("that message is hidden by the filter; shown in the detail pane", 5000)
            return
        self.select_visible(pos)
        self.table.scrollTo(self.model.index(pos, 0))

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Proxy")
        tb.setObjectName("proxy_toolbar")
        tb.setMovable(False)
        self.listen_edit = QLineEdit()
        self.listen_edit.setPlaceholderText("client port")
        self.listen_edit.setToolTip("where your client connects (sockscope listens here)")
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("server HOST:PORT")
        self.target_edit.setToolTip("your server")
        address_px = self.listen_edit.fontMetrics().horizontalAdvance("127.0.0.1:55555") + 14
        for edit in (self.listen_edit, self.target_edit):
            edit.setFixedWidth(address_px)  # the whole address, never squeezed to its last digits
        tb.addWidget(QLabel(" client port "))
        tb.addWidget(self.listen_edit)
        tb.addWidget(QLabel(" → server "))
        tb.addWidget(self.target_edit)
        self.start_action = QAction("▶ Start", self)
        self.start_action.setToolTip("start (or restart) the proxy with these addresses")
        self.start_action.triggered.connect(self._toolbar_start)
        self.stop_action = QAction("■ Stop", self)
        self.stop_action.setToolTip("stop the proxy (what was captured stays)")
        self.stop_action.triggered.connect(self.stop_link)
        tb.addAction(self.start_action)
        tb.addAction(self.stop_action)
        tb.addSeparator()
        self.pause_action = QAction("Pause", self)
        self.pause_action.setCheckable(True)
        self.pause_action.setShortcut(QKeySequence(Qt.Key.Key_Space))
        self.pause_action.setToolTip("pause capture: traffic still flows, new messages are not added (Space)")
        self.pause_action.toggled.connect(self.set_paused)
        self.clear_action = QAction("Clear", self)
        self.clear_action.setShortcut(QKeySequence("Ctrl+K"))
        self.clear_action.setToolTip("forget the captured messages (Ctrl+K)")
        self.clear_action.triggered.connect(lambda: self.clear())
        tb.addAction(self.pause_action)
        tb.addAction(self.clear_action)
        tb.addSeparator()
        framing_label = tb.addWidget(QLabel(" Framing "))
        self.framing_combo = QComboBox()
        self.framing_combo.setEditable(True)
        self.framing_combo.addItems(FRAMINGS)
        self.framing_combo.setToolTip("what one message is (applies to new connections)")
        self.framing_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.framing_combo.setMinimumContentsLength(6)
        self.framing_combo.activated.connect(self._framing_chosen)
        framing_widget = tb.addWidget(self.framing_combo)
        preset_label = tb.addWidget(QLabel(" Preset "))
        self.preset_combo = QComboBox()
        self.preset_combo.setModel(self.conditions.preset.model())
        self.preset_combo.setToolTip("network conditions preset (details in the Conditions panel)")
        self.preset_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset_combo.setMinimumContentsLength(14)
        self.preset_combo.activated.connect(self._toolbar_preset)
        self.conditions.preset.currentIndexChanged.connect(self.preset_combo.setCurrentIndex)
        preset_widget = tb.addWidget(self.preset_combo)
        # In a narrow window these step aside (the Conditions panel has the presets; the framing is in the File
        # menu's start page too) so that the rest of the toolbar is never cut off.
        self._toolbar = tb
        self._toolbar_optional = [(preset_label, preset_widget), (framing_label, framing_widget)]
        tb.addSeparator()
        self.timeline_action = QAction("Timeline", self)
        self.timeline_action.setCheckable(True)
        self.timeline_action.setShortcut(QKeySequence("Ctrl+T"))
        self.timeline_action.setToolTip("show the round trips, message rates and the ladder diagram (Ctrl+T)")
        self.timeline_action.toggled.connect(self._timeline_toggled)
        self.timeline_dock.toggleViewAction().toggled.connect(self.timeline_action.setChecked)
        tb.addAction(self.timeline_action)
        tb.addSeparator()
        self.held_badge = QLabel()
        self.held_badge.setToolTip("messages held for you in the Intercept panel; their direction waits")
        tb.addWidget(self.held_badge)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        file.addAction(self.start_action)
        file.addAction(self.stop_action)
        demo = file.addAction("Start the &demo")
        demo.triggered.connect(lambda: self.start_link(LinkOptions(demo=True)))
        home = file.addAction("Start &page…")
        home.triggered.connect(lambda: self.central.setCurrentWidget(self.start_page))
        # Sessions (open/save, drag and drop, keep recording) and exports of the visible messages.
        from inspector.ui.sessions import SessionActions

        self.sessions = SessionActions(self)
        self.sessions.add_to_menu(file)
        toolbar = self.findChild(QToolBar, "proxy_toolbar")
        if toolbar is not None:  # "● Rec" next to the proxy controls, the same action as the menu's
            rec = self.sessions.record_action
            rec.setIconText("● Rec")
            rec.setToolTip("keep recording everything to a session file while live")
            toolbar.addSeparator()
            toolbar.addAction(rec)
        # Scenarios: a timeline of conditions played from here (File ▸ Load scenario…, a box in the Conditions panel)
        from inspector.ui.scenario_control import ScenarioControl

        file.addSeparator()
        self.scenario = ScenarioControl(self)
        self.scenario.add_to_menu(file)
        file.addSeparator()
        quit_ = file.addAction("&Quit")
        quit_.setShortcut(QKeySequence.StandardKey.Quit)
        quit_.triggered.connect(self.close)

        edit = mb.addMenu("&Edit")
        self.filter_action = edit.addAction("&Filter…")
        self.filter_action.setShortcut(QKeySequence("Ctrl+F"))
        self.filter_action.triggered.connect(self.focus_filter)
        edit.addSeparator()
        for label, kind, key in (("Copy as &hex", "hex", "Ctrl+Shift+C"), ("Copy as &text", "text", None),
                                 ("Copy as Python &bytes", "bytes", None)):
            a = edit.addAction(label)
            if key:
                a.setShortcut(QKeySequence(key))
            a.triggered.connect(lambda _=False, k=kind: self.detail.copy(k))

        view = mb.addMenu("&View")
        self.wall_action = view.addAction("&Wall-clock time")
        self.wall_action.setCheckable(True)
        self.wall_action.toggled.connect(self.model.set_wall_clock)
        self.follow_action = view.addAction("F&ollow new messages")
        self.follow_action.setCheckable(True)
        self.follow_action.setChecked(True)
        self.follow_action.setShortcut(QKeySequence("End"))
        self.follow_action.toggled.connect(self._set_follow)
        view.addSeparator()
        view.addAction(self.timeline_action)
        for dock in (self.conn_dock, self.cond_dock, self.intercept_dock, self.stats_dock, self.log_dock):
            view.addAction(dock.toggleViewAction())
        self.lab_action = self.lab_dock.toggleViewAction()
        self.lab_action.setText("&Lab (prediction, interpolation)")
        self.lab_action.setToolTip("input-to-ack delay, inputs in flight, snapshot intervals and the interpolation "
                                   "delay to use, corrections: for your game's own messages")
        view.addAction(self.lab_action)
        view.addSeparator()
        self.reset_layout_action = view.addAction("&Reset layout")
        self.reset_layout_action.setToolTip("put every panel back where it starts, sized for this window")
        self.reset_layout_action.triggered.connect(lambda: self.reset_layout())
        look = view.addMenu("&Look")
        group = QActionGroup(self)
        self.look_actions: dict[str, QAction] = {}
        current = str(self.settings.value("view/look", "system"))
        for key, label in (("system", "&System"), ("light", "&Light"), ("dark", "&Dark")):
            a = look.addAction(label)
            a.setData(key)
            a.setCheckable(True)
            a.setChecked(key == current)
            group.addAction(a)
            a.triggered.connect(lambda _=False, k=key: self.set_look(k))
            self.look_actions[key] = a

        capture = mb.addMenu("&Capture")
        capture.addAction(self.pause_action)
        capture.addAction(self.clear_action)

        icpt = mb.addMenu("&Intercept")
        self.hold_c2s_action = icpt.addAction("Hold next c2s ↑")
        self.hold_c2s_action.setShortcut(QKeySequence("Ctrl+H"))
        self.hold_c2s_action.triggered.connect(lambda: self.hold_next(Direction.C2S))
        self.hold_s2c_action = icpt.addAction("Hold next s2c ↓")
        self.hold_s2c_action.setShortcut(QKeySequence("Ctrl+Shift+H"))
        self.hold_s2c_action.triggered.connect(lambda: self.hold_next(Direction.S2C))
        icpt.addSeparator()
        fwd = icpt.addAction("&Forward held")
        fwd.setShortcut(QKeySequence("Ctrl+Return"))
        fwd.triggered.connect(lambda: self.intercept.forward_button.click())
        self.edit_action = icpt.addAction("&Edit && forward / edit && resend…")
        self.edit_action.setShortcut(QKeySequence("Ctrl+E"))
        self.edit_action.triggered.connect(self.edit_selected)
        self.compose_action = icpt.addAction("&Compose message…")
        self.compose_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.compose_action.setToolTip("write a new message and send it on an open connection (Ctrl+Shift+E)")
        self.compose_action.triggered.connect(lambda: self.compose())
        drop = icpt.addAction("&Drop held")
        drop.setShortcut(QKeySequence("Ctrl+Delete"))
        drop.triggered.connect(lambda: self.intercept.drop_button.click())
        allf = icpt.addAction("Forward &all")
        allf.setShortcut(QKeySequence("Ctrl+Shift+Return"))
        allf.triggered.connect(self.forward_all)
        icpt.addSeparator()
        self.replay_action = icpt.addAction("&Replay connection (as fast as possible)")
        self.replay_action.setShortcut(QKeySequence("Ctrl+R"))
        self.replay_action.triggered.connect(lambda: self.replay("fast"))
        timed = icpt.addAction("Replay connection with original &timing")
        timed.triggered.connect(lambda: self.replay("timing"))
        waiting = icpt.addAction("Replay connection &waiting for each reply")
        waiting.triggered.connect(lambda: self.replay("wait-reply"))

        from inspector.ui.addon_actions import AddonActions  # the Addons menu: Load addon… (docs/addons.md)

        self.addons = AddonActions(self, self)
        self.addons.add_to_menu(mb)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.st_link = QLabel("not started")
        self.st_conns = QLabel()
        self.st_rates = QLabel()
        self.st_held = QLabel()
        self.st_lost = QLabel()
        self.st_cond = QLabel()
        self.st_rec = QLabel()
        for w in (self.st_link, self.st_conns, self.st_rates, self.st_cond, self.st_held, self.st_lost, self.st_rec):
            sb.addPermanentWidget(w)
        self._update_status()

    # =============================================================================================== settings

    def _restore_settings(self) -> None:
        s = self.settings
        look = str(s.value("view/look", "system"))
        if look != "system":
            self.set_look(look, save=False)
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)  # type: ignore[arg-type]
        else:
            self.resize(*DEFAULT_SIZE)
        self._fit_to_screen()
        state = s.value("window/state")
        restored = False
        if state is not None and str(s.value("window/layout", "")) == str(LAYOUT_VERSION):
            restored = self.restoreState(state, LAYOUT_VERSION)  # type: ignore[arg-type]
            split = s.value("window/split")
            if restored and split is not None:
                self.split.restoreState(split)  # type: ignore[arg-type]
        if not restored:
            self.reset_layout()
        # once shown at its real size: the default layout for that size, or a restored one checked to still fit
        self._layout_pending = "check" if restored else "reset"
        self.filter_bar.set_history(s.value("filter/history", []))
        if self._start_page is not None:
            self._start_page.set_recent(self.recent_targets())
        self.wall_action.setChecked(str(s.value("view/wall_clock", "false")).lower() == "true")

    def _fit_to_screen(self) -> None:
        """The window fits the screen it is on (a size remembered on a bigger screen, or the default on a small
        one). Offscreen (tests, pictures) there is no screen to fit and the size is what was asked for."""
        if QGuiApplication.platformName() == "offscreen":
            return
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        w, h = min(self.width(), avail.width()), min(self.height(), avail.height() - TITLE_BAR_PX)
        if (w, h) != (self.width(), self.height()):
            self.resize(w, h)
            self.move(avail.topLeft())

    # -- the layout: from 1024x700 to 2560x1440

    def _docks(self) -> list[QDockWidget]:
        return [self.conn_dock, self.cond_dock, self.intercept_dock, self.timeline_dock, self.stats_dock,
                self.log_dock, self.lab_dock]

    def reset_layout(self) -> None:
        """The default layout for the window's size (View ▸ Reset layout): the table and the detail pane get the
        room; Conditions and Intercept on the right (one above the other when the window is tall enough, else tabs);
        Connections on the left (in a narrow window, a third tab on the right); the timeline and the log hidden
        until asked for."""
        w, h = self.width(), self.height()
        right, left, bottom = (Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea,
                               Qt.DockWidgetArea.BottomDockWidgetArea)
        for d in self._docks():
            d.setFloating(False)
            self.removeDockWidget(d)
        self.addDockWidget(right, self.cond_dock)
        stacked = h >= TALL_H
        if stacked:
            self.splitDockWidget(self.cond_dock, self.intercept_dock, Qt.Orientation.Vertical)
        else:
            self.tabifyDockWidget(self.cond_dock, self.intercept_dock)
        if w >= WIDE_W:
            self.addDockWidget(left, self.conn_dock)
        else:
            self.tabifyDockWidget(self.intercept_dock, self.conn_dock)
        self.addDockWidget(bottom, self.timeline_dock)
        self.tabifyDockWidget(self.timeline_dock, self.stats_dock)
        self.tabifyDockWidget(self.stats_dock, self.log_dock)
        self.tabifyDockWidget(self.log_dock, self.lab_dock)
        for d in (self.conn_dock, self.cond_dock, self.intercept_dock):
            d.show()
        for d in (self.timeline_dock, self.stats_dock, self.log_dock, self.lab_dock):
            d.hide()
        self.cond_dock.raise_()
        self.split.setSizes([h * 11 // 20, h * 9 // 20])
        self._size_docks()
        QTimer.singleShot(0, self, self._size_docks)  # again once the window is laid out at its size

    def _size_docks(self) -> None:
        w, h = self.width(), self.height()
        panels = max(self.conditions.minimumSizeHint().width(), self.intercept.minimumSizeHint().width())
        right = max(panels + SCROLLBAR_PX, min(w * 25 // 100, RIGHT_MAX_PX))
        docks, sizes = [self.cond_dock], [right]
        if self.dockWidgetArea(self.conn_dock) == Qt.DockWidgetArea.LeftDockWidgetArea:
            docks.append(self.conn_dock)
            sizes.append(max(CONN_MIN_PX, min(max(w * 18 // 100, self._connections_width()), CONN_MAX_PX)))
        self.resizeDocks(docks, sizes, Qt.Orientation.Horizontal)
        if not self.tabifiedDockWidgets(self.cond_dock):
            # room for a preset's source too (two more lines), so choosing one does not make the panel scroll
            extra = 0 if self.conditions.preset_source.isVisible() else 3 * self.fontMetrics().height()
            cond_h = min(self._conditions_height(right) + extra + DOCK_TITLE_PX, h * 60 // 100)
            self.resizeDocks([self.cond_dock, self.intercept_dock], [cond_h, max(200, h - cond_h)],
                             Qt.Orientation.Vertical)

    def _connections_width(self) -> int:
        """Room for every column of the Connections panel (a short connection name, typical counts), so that none
        is cut off at the right of a window wide enough for the panel to have a column of its own."""
        t = self.conn_table
        h = t.horizontalHeader()
        fm = t.fontMetrics()
        samples = {1: "1 / 1", 2: "19 B / 36 B", 3: "connecting", 4: ":55555"}  # the tutorial's exercise
        cols = sum(max(h.sectionSizeHint(c), t.sizeHintForColumn(c), fm.horizontalAdvance(s) + 12)
                   for c, s in samples.items())
        name = fm.horizontalAdvance("○ #0") + 12
        return cols + name + 2 * t.frameWidth() + 8  # 8: the panel's margins

    def layout_fits(self) -> bool:
        """Whether the table and detail pane have room and no panel on the right is narrower than its controls."""
        if self.table.width() < MIN_TABLE_W or self.split.height() < MIN_TABLE_H:
            return False
        panels = {self.cond_dock: self.conditions, self.intercept_dock: self.intercept}
        for area in (Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea):
            docks = [d for d in panels if self.dockWidgetArea(d) == area and d.isVisible() and not d.isFloating()]
            # docks in one area share its width (a tab behind another may report an old one: take the widest)
            if docks and max(d.widget().width() for d in docks) + 1 < max(
                    panels[d].minimumSizeHint().width() for d in docks):
                return False
        return True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.conditions and event.type() == QEvent.Type.LayoutRequest:
            QTimer.singleShot(0, self, self._fit_conditions_height)
        elif event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and \
                QKeySequence(event.keyCombination()) in self._window_keys:
            # A text box would take Ctrl+E (end of line), Ctrl+K (delete to the end), Ctrl+H ... for itself on
            # Linux: the window's shortcuts win, so Ctrl+E edits the held message wherever the focus is.
            event.ignore()
            return True
        return super().eventFilter(watched, event)

    def _keys_beat_text_boxes(self) -> None:
        """Let the window's Ctrl shortcuts reach it while a text box of the window (not of a dialog) has focus."""
        self._window_keys = {a.shortcut() for a in self.findChildren(QAction)
                             if not a.shortcut().isEmpty() and a.shortcut().toString() in WINDOW_KEYS}
        self._watch_text_boxes(self)

    def _watch_text_boxes(self, root: QWidget) -> None:
        # an editable combo box (the filter bar) and a spin box take the keys for their line edit themselves
        for box in (*root.findChildren(QLineEdit), *root.findChildren(QComboBox), *root.findChildren(QAbstractSpinBox)):
            box.installEventFilter(self)

    def _conditions_height(self, width: int) -> int:
        """How tall the Conditions panel is at ``width`` (its wrapped lines make it taller when narrow)."""
        panel = self.conditions
        lay = panel.layout()
        h = panel.sizeHint().height()
        if lay is not None and lay.hasHeightForWidth():
            h = max(h, lay.totalHeightForWidth(max(width - SCROLLBAR_PX, panel.minimumSizeHint().width())))
        return h + 4

    def _fit_conditions_height(self) -> None:
        """Conditions above Intercept: Conditions is as tall as its controls, taken from Intercept's held list
        (which scrolls), so it shows everything without scrolling when the window allows it."""
        dock = self.cond_dock
        if not dock.isVisible() or dock.isFloating() or self.tabifiedDockWidgets(dock) or \
                not self.intercept_dock.isVisible() or self.intercept_dock.isFloating():
            return
        have = dock.widget().height()
        need = self._conditions_height(dock.widget().width())
        if need <= have:
            return
        total = dock.height() + self.intercept_dock.height()
        room = total - self.intercept.minimumSizeHint().height() - 40
        if room > have:
            self.resizeDocks([dock, self.intercept_dock], [min(need + 30, room), total - min(need + 30, room)],
                             Qt.Orientation.Vertical)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_toolbar()

    def _fit_toolbar(self) -> None:
        """Hide the toolbar's optional controls that do not fit the window's width (room for "N held" too)."""
        optional = getattr(self, "_toolbar_optional", [])
        for pair in optional:
            for a in pair:
                a.setVisible(True)
        room = self.width() - HELD_BADGE_PX
        for pair in optional:
            if self._toolbar.sizeHint().width() <= room:
                break
            for a in pair:
                a.setVisible(False)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        pending, self._layout_pending = self._layout_pending, ""
        if pending == "reset":
            self.reset_layout()
        elif pending == "check":
            if self.central.currentWidget() is self.main_view:
                QTimer.singleShot(0, self, self._check_layout)
            else:  # the start page asks for less room than the table's page: check once that is on show
                self._check_on_main = True

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._first_paint_done:
            # The window is on screen: what it does not need for its first frame is made on the next turn of the
            # event loop (most of it is never seen until asked for).
            self._first_paint_done = True
            QTimer.singleShot(0, self, self._after_first_paint)

    def _after_first_paint(self) -> None:
        self.detail.fill_decoders()
        if self._timeline is None:
            self._build_timeline()
        self._collector.settle()

    def _page_changed(self, _index: int) -> None:
        if self._check_on_main and self.isVisible() and self.central.currentWidget() is self.main_view:
            self._check_on_main = False
            QTimer.singleShot(0, self, self._check_layout)

    def _check_layout(self) -> None:
        if not self.layout_fits():
            self.reset_layout()
            self.statusBar().showMessage("the layout you left did not fit this window: it is back to the default "
                                         "(View ▸ Reset layout does this any time)", 10000)

    def _timeline_toggled(self, on: bool) -> None:
        if on != self.timeline_dock.isVisible():
            self.show_timeline(on)

    def show_timeline(self, on: bool = True) -> None:
        """Show (or hide) the Timeline, tall enough for its plots and ladder to be read."""
        if not on:
            self.timeline_dock.hide()
            return
        _ = self.timeline  # made, if it was not yet
        self.timeline_dock.show()
        self.timeline_dock.raise_()
        if not self.timeline_dock.isFloating():
            self.resizeDocks([self.timeline_dock], [max(TIMELINE_MIN_PX, self.height() * 42 // 100)],
                             Qt.Orientation.Vertical)

    # -- the lab (issue 24): latency-compensation plots for the game's own inputs and states
    @property
    def lab(self) -> LabController:
        """The Lab's controller (made when the Lab is first shown or asked for)."""
        return self._build_lab()

    def _build_lab(self) -> LabController:
        if self._lab is None:
            from inspector.ui.lab_dock import LabController

            lab = self._lab = LabController(self.store, self, conditions=self.conditions.value,
                                            selected_row=self.selected_row)
            placeholder = self.lab_dock.widget()
            self.lab_dock.setWidget(lab.panel)
            if placeholder is not None:
                placeholder.deleteLater()
            lab.message_selected.connect(self._select_store_row)
            self._watch_text_boxes(lab.panel)
            if lab.colours != self.colours:
                lab.set_colours(self.colours)
        return self._lab

    def show_lab(self, on: bool = True, *, hints: object | None = None) -> None:
        """Show (or hide) the Lab, tall enough to read its plots; ``hints``: an ``inspector.lab.Hints`` to use
        (``sockscope --lab-hints``)."""
        if not on:
            self.lab_dock.hide()
            return
        lab = self._build_lab()
        if hints is not None:
            from inspector.lab.hints import Hints

            assert isinstance(hints, Hints)
            lab.set_hints(hints)
        self.lab_dock.show()
        self.lab_dock.raise_()
        if not self.lab_dock.isFloating():
            self.resizeDocks([self.lab_dock], [max(TIMELINE_MIN_PX + 60, self.height() * 45 // 100)],
                             Qt.Orientation.Vertical)

    def set_look(self, look: str, *, save: bool = True) -> None:
        """The light or dark look, or the system's (View ▸ Look)."""
        palette.apply_look(look)
        if save:
            self.settings.setValue("view/look", look)
        for a in getattr(self, "look_actions", {}).values():
            a.setChecked(a.data() == look)
        self._recolour()

    def _recolour(self) -> None:
        self.colours = palette.current()
        for m in (self.model, self.conn_model, self.held_model):
            m.colours = self.colours
        self.model.refresh_all()
        self.conditions.set_colours(self.colours)
        self.intercept.set_colours(self.colours)
        if hasattr(self, "scenario"):  # made with the menus
            self.scenario.set_colours(self.colours)
        if self._start_page is not None:
            self._start_page.set_colours(self.colours)
        if self._timeline is not None:
            self._timeline.set_colours(self.colours)
        if self._lab is not None:
            self._lab.set_colours(self.colours)
        if self.detail.row is not None:
            self.detail.show_row(self.detail.row)
        self._update_status()

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(LAYOUT_VERSION))
        s.setValue("window/layout", LAYOUT_VERSION)
        s.setValue("window/split", self.split.saveState())
        s.setValue("filter/history", self.filter_bar.history())
        s.setValue("view/wall_clock", self.wall_action.isChecked())
        s.sync()

    def recent_targets(self) -> list[str]:
        v = self.settings.value("recent/targets", [])
        if isinstance(v, str):
            v = [v]
        return [str(x) for x in v] if isinstance(v, list) else []

    def _remember_target(self, o: LinkOptions) -> None:
        entry = f"{fmt.addr(o.target)} ← client port {o.listen[1]}"
        items = [entry, *[x for x in self.recent_targets() if x != entry]][:RECENT_MAX]
        self.settings.setValue("recent/targets", items)
        if self._start_page is not None:
            self._start_page.set_recent(items)

    # =============================================================================================== link

    def start_link(self, options: LinkOptions) -> None:
        """Start a proxy with ``options`` (stopping the current one); the window stays responsive meanwhile."""
        if self._starting:
            return
        self.stop_link()
        options.first_ids = self.next_ids()
        self.options = options
        self._own_proxy = True
        link = self.link_factory(options)
        self._start_in_background(link, "starting the demo…" if options.demo else
                                  f"starting the proxy on port {options.listen[1]}…")

    def attach(self, host: str, port: int, token: str) -> None:
        self.stop_link()
        self._own_proxy = False
        self._start_in_background(AttachLink(host, port, token), f"attaching to {host}:{port}…")

    def _start_in_background(self, link: Link, what: str) -> None:
        self._starting = True
        self.central.setCurrentWidget(self.main_view)
        self.st_link.setText(what)
        self._hide_banner()
        self._target_timer.stop()
        if self._notice_kind == "target":
            self.notice.hide()
        self.link_events.watch(link)

        def run() -> None:
            try:
                link.start()
            except LinkError as e:
                self._link_ready.emit(link, str(e))
            except Exception as e:  # never leave the window waiting on an unexpected failure
                self._link_ready.emit(link, f"{type(e).__name__}: {e}")
            else:
                self._link_ready.emit(link, None)

        threading.Thread(target=run, name="sockscope-link-start", daemon=True).start()

    def _on_link_ready(self, link: Link, error: str | None) -> None:
        self._starting = False
        if error is not None:
            self._log("error", f"could not start: {error}")
            text = start_error_text(error)
            self.show_banner(f"The proxy could not start. {text}", error=True, restart=True)
            self.st_link.setText("not running")
            if not len(self.store):
                self.start_page.show_error(text)
                self.central.setCurrentWidget(self.start_page)
            self._update_status()
            return
        self.link = link
        self.model.clock = link.clock
        self.conn_model.clock = link.clock
        self.conn_model.idle_timeout_s = link.udp_idle_timeout_s
        self.pump.set_link(link)
        o = self.options
        if link.listen_addr is not None:
            self.listen_edit.setText(fmt.addr(link.listen_addr))
        if link.target_addr is not None:
            self.target_edit.setText(fmt.addr(link.target_addr))
        if o is not None and not o.demo:
            self._remember_target(o)
        if o is not None:
            self.framing_combo.setCurrentText(o.framing)
        self._show_transports(link.transports)
        self.setWindowTitle(f"sockscope — {link.description}" + (" (demo)" if o is not None and o.demo else ""))
        self._apply_live()
        self._log("info", f"proxy running ({link.kind}): {link.description}")
        # The panels show what is in force: the user's conditions for a proxy this window started with them
        # (the link has sent them), else the proxy's own (from its hello), and the proxy's rules.
        from proxy.conditions import Conditions, ConditionsError

        in_force = o.conditions if o is not None and o.conditions else link.conditions
        if in_force:
            with contextlib.suppress(ConditionsError):
                self.conditions.show_conditions(Conditions.from_dict(in_force))
        self.intercept.set_rules(link.rules)
        self._update_status()
        self._target_down = False
        self._check_target()
        self.addons.link_ready(link)  # this window's addon files, into the proxy it now has

    def _show_transports(self, transports: tuple[str, ...]) -> None:
        """What the controls offer follows what the proxy relays: the UDP impairments with UDP, and the framing
        only for TCP (a datagram is a message)."""
        udp = "udp" in transports
        self.conditions.set_udp(udp)
        from inspector.ui.framing_words import NOT_FOR_DATAGRAMS

        # UDP only: nothing has a framing, so its column gives its room to the flows' names
        self.conn_table.setColumnHidden(ConnectionsModel.FRAMING, "tcp" not in transports)
        if "tcp" not in transports:
            self.framing_combo.setEnabled(False)
            self.framing_combo.setEditText("none: UDP")
            self.framing_combo.setToolTip(f"this proxy relays UDP only: {NOT_FOR_DATAGRAMS}")
        else:
            self.framing_combo.setEnabled(True)
            self.framing_combo.setToolTip("what one message is (applies to new TCP connections)"
                                          + (f"; UDP flows: {NOT_FOR_DATAGRAMS}" if udp else ""))

    # -- the user's server

    def _check_target(self) -> None:
        """Say so while nothing listens where the user's server should be (a server on this machine); look
        again every few seconds until it does."""
        link, o = self.link, self.options
        if link is None or not link.alive or link.target_addr is None or not self._own_proxy or o is None or o.demo:
            return
        if nothing_listens(link.target_addr):
            if not self._target_down or (self.notice.isHidden() and self._notice_kind != "target"):
                self._target_down = True
                self.show_notice(
                    f"Nothing is listening on {fmt.addr(link.target_addr)}: your server is not running there (or "
                    "listens on another port). Start your server; sockscope looks again every few seconds. Until "
                    "then it has to turn your client away when it connects.", persistent=True, kind="target")
            self._target_timer.start()
        elif self._target_down:
            self._target_down = False
            if self._notice_kind == "target":
                self.notice.hide()
            self.statusBar().showMessage(f"your server at {fmt.addr(link.target_addr)} is listening now", 8000)

    def _server_answered(self) -> None:
        """The server sent a message, so it runs: "nothing is listening" is no longer true (a program that serves one
        client and exits, like the tutorial's exercise, is gone again before the window's next look, which would
        otherwise leave the warning standing under a conversation that worked)."""
        self._target_down = False
        self._target_timer.stop()
        if self._notice_kind == "target":
            self.notice.hide()

    def _server_unreachable(self, n: Notice) -> None:
        m = re.search(r"connection #(\d+): cannot reach the server at (\S+) \((.*)\)$", n.text)
        if m is None:
            return
        conn, addr, why = m.groups()
        self.show_notice(f"Your client connected (connection #{conn}), but sockscope could not reach your server "
                         f"at {addr} ({why.lower()}), so it closed your client's connection. Start your server, "
                         "then connect your client again.", persistent=True, kind="target")
        self._target_down = True
        self._target_timer.start()

    def _apply_live(self) -> None:
        """Controls that command the proxy work while a proxy is running (every proxy has every command)."""
        live = self.link is not None and self.link.alive
        self.intercept.set_live(live)
        for a in (self.hold_c2s_action, self.hold_s2c_action, self.replay_action, self.compose_action):
            a.setEnabled(live)
        for d in Direction:
            self.conditions.cols[d].spike.setEnabled(live)
        for b in (self.conn_close, self.conn_reset, self.conditions.close_button, self.conditions.reset_button):
            b.setEnabled(live)

    def stop_link(self) -> None:
        link, self.link = self.link, None
        self.pump.pump()  # take what is already queued
        self.pump.stop()
        if link is not None:
            link.on_announce = None
            link.stop()
            self._log("info", "proxy stopped")
        self._apply_live()
        self._update_status()

    def restart_link(self) -> None:
        """Start again: the same addresses, with the conditions the panel shows now."""
        if self.options is not None:
            c = self.conditions.value()
            self.options.conditions = None if c.is_passthrough else c.to_dict()
            self.start_link(self.options)
        else:
            self.central.setCurrentWidget(self.start_page)

    def _toolbar_start(self) -> None:
        try:
            listen = parse_hostport(self.listen_edit.text() or "127.0.0.1:5556", "client port")
            target = parse_hostport(self.target_edit.text() or "127.0.0.1:5555", "server")
        except UsageError as e:
            self._report_error(str(e))
            return
        base = self.options or LinkOptions()
        demo = base.demo and self.link is not None and self.link.target_addr == target
        self.start_link(LinkOptions(listen=(listen[0], 0 if demo else listen[1]), target=target,
                                    framing=self.framing_combo.currentText() or "auto",
                                    conditions=self.conditions.value().to_dict(), demo=demo,
                                    demo_interval=base.demo_interval, tcp=base.tcp, udp=base.udp,
                                    udp_idle_timeout=base.udp_idle_timeout, udp_max_flows=base.udp_max_flows))

    def _on_link_died(self, reason: str) -> None:
        self._log("error", f"proxy stopped: {reason}")
        if reason != "stopped":
            self.show_banner(f"The proxy stopped: {reason}. The messages captured so far stay in the table, but "
                             "your client's connections through sockscope were closed. Press Start again to "
                             "start the proxy again; your client then has to connect again.",
                             error=True, restart=True)
        self.st_link.setText("proxy stopped")
        self._apply_live()

    # =============================================================================================== records

    def _on_applied(self, result: ApplyResult) -> None:
        if self._filtering is not None:
            return  # a slice-wise refilter is running; it resets the model when done
        self.model.on_applied(result)
        self.conn_model.on_applied(result)
        self.held_model.on_applied(result)
        if self.follow and result.first_new_visible < self.store.visible_count:
            self.table.scrollToBottom()
        self.filter_bar.set_counts(self.store.visible_count, self.store.view_total)  # with the rows, not a second later
        if result.changed_rows and self.detail.row in result.changed_rows:
            self.detail.show_row(self.detail.row)
        for text in self.framing_control.warnings(result):  # a framing stopped fitting: said in a learner's words
            self.show_notice(text)
        for n in result.notices:
            self._log(n.level, notice_text(n))
            if n.level in ("warning", "error"):
                self.statusBar().showMessage(notice_text(n), 8000)
            if n.level == "error" and "cannot reach the server" in n.text:
                self._server_unreachable(n)
        if result.held_changed:
            self._update_held()
            if self._armed:
                self._disarm_held()
        s = self.store
        if self._target_down and any(s.dirs[r] == Direction.S2C for r in range(result.first_new_row, len(s))):
            self._server_answered()

    def _scrolled(self, value: int) -> None:
        at_bottom = value >= self.table.verticalScrollBar().maximum() - 1
        if at_bottom != self.follow:
            self.follow_action.setChecked(at_bottom)

    def _set_follow(self, on: bool) -> None:
        self.follow = on
        if on:
            self.table.scrollToBottom()

    def _row_selected(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = self.model.data(current, VIEW_ROW_ROLE) if current.isValid() else None
        self.detail.show_row(row)  # a message re-framed for the view shows its own bytes

    def selected_row(self) -> int | None:
        idx = self.table.currentIndex()
        return self.model.data(idx, ROW_ROLE) if idx.isValid() else None

    def select_visible(self, pos: int) -> None:
        self.table.selectRow(pos)
        self.table.setCurrentIndex(self.model.index(pos, 0))

    # =============================================================================================== filter

    def focus_filter(self) -> None:
        self.filter_bar.edit.setFocus()
        self.filter_bar.edit.selectAll()

    def set_filter(self, f: Filter | None) -> None:
        self._filter_timer.stop()
        if f is None:
            gen = self.store.refilter_steps(None)
        else:
            pred = f.predicate()
            message = self.store.message
            gen = self.store.refilter_steps(lambda r: pred(message(r)), chunk=20_000)
        if len(self.store) <= SYNC_FILTER_ROWS:
            for _ in gen:
                pass
            self._filter_done()
        else:
            self._filtering = gen
            self.filter_bar.count.setText("filtering…")
            self._filter_timer.start()

    def _filter_step(self) -> None:
        gen = self._filtering
        if gen is None:
            self._filter_timer.stop()
            return
        try:
            progress = next(gen)
        except StopIteration:
            progress = 1.0
        if progress >= 1.0:
            self._filter_timer.stop()
            self._filtering = None
            self._filter_done()
        else:
            self.filter_bar.count.setText(f"filtering… {progress:.0%}")

    @property
    def filtering(self) -> bool:
        return self._filtering is not None

    def _filter_done(self) -> None:
        selected = self.detail.row
        self.model.reset()
        self.filter_bar.set_counts(self.store.visible_count, self.store.view_total)
        pos = self.store.visible_position(selected) if selected is not None else None
        if pos is not None:
            self.select_visible(pos)
            self.table.scrollTo(self.model.index(pos, 0))
        elif self.follow:
            self.table.scrollToBottom()

    def _only_connection(self, idx: QModelIndex) -> None:
        conn = self.conn_model.data(idx, CONN_ROLE) if idx.isValid() else None
        if conn is not None:
            self.filter_bar.set_text(f"conn == {conn}")
            self.filter_bar.apply()

    # =============================================================================================== capture

    def set_paused(self, paused: bool) -> None:
        self.store.paused = paused
        self.pause_action.setText("Resume" if paused else "Pause")
        if paused:
            self.show_banner("Capture paused: traffic still flows, new messages are not added to the table "
                             "(held messages still are). Space resumes.", error=False)
        else:
            self._hide_banner()
        self._update_status()

    def clear(self, ask: bool = True) -> None:
        """Forget the captured messages (Ctrl+K); asks first when there is something to lose."""
        n = len(self.store)
        if ask and n:
            self.ask("Clear the captured messages?",
                     f"Clear the {n:,} captured message{'s' if n != 1 else ''} from the table?",
                     "They are gone from the window for good unless you saved them (File ▸ Save session…). "
                     "Held messages stay held, and the proxy keeps running.",
                     ["Clear"], lambda choice: self.clear(ask=False) if choice == "Clear" else None)
            return
        self.note_used_ids()
        self.store.clear()
        self.model.reset()
        self.held_model.reset()
        self.detail.show_row(None)
        if self._timeline is not None:
            self._timeline.select_row(None)  # no pair note or lesson about a message that is gone
        self.filter_bar.set_counts(0, 0)
        self.statusBar().showMessage(f"cleared {n:,} messages", 4000)

    # -- numbering: unique for the window's lifetime

    def note_used_ids(self) -> None:
        """Remember the highest numbers the table holds (before it is cleared or replaced)."""
        s = self.store
        conn = max(s.connections, default=0)
        msg = max(s.ids) if len(s) else 0
        self._used_ids = (max(self._used_ids[0], conn), max(self._used_ids[1], msg))

    def next_ids(self) -> tuple[int, int]:
        """The first connection and message numbers for a proxy this window starts."""
        self.note_used_ids()
        return self._used_ids[0] + 1, self._used_ids[1] + 1

    # -- questions

    def ask(self, title: str, text: str, detail: str, choices: list[str],
            then: Callable[[str | None], None]) -> QMessageBox:
        """Ask without blocking: ``then`` gets the chosen button's text, or None for Cancel (Esc, closed)."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text, QMessageBox.StandardButton.NoButton, self)
        box.setInformativeText(detail)
        buttons = [box.addButton(label, QMessageBox.ButtonRole.AcceptRole if i == 0
                                 else QMessageBox.ButtonRole.ActionRole) for i, label in enumerate(choices)]
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(buttons[0])
        box.setEscapeButton(cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished(_code: int) -> None:
            clicked = box.clickedButton()
            if self.question is box:
                self.question = None
            then(clicked.text() if clicked is not None and clicked in buttons else None)

        box.finished.connect(finished)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.question = box
        return box

    # =============================================================================================== commands

    def send(self, name: str, **args: Any) -> None:
        """Send command ``name`` (a wire name of docs/protocol.md, with its arguments) to the proxy; failures are
        reported (status bar + log), never raised."""
        link = self.link
        if link is None or not link.alive:
            if name == "set_conditions":  # kept in the panel: a proxy the window starts gets them
                self.statusBar().showMessage("no proxy is running: these conditions apply when you start it", 6000)
                return
            self._report_error(failure_text(name, NOT_RUNNING))
            return
        fut = link.command(name, **args)

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is not None:
                text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
                self._command_failed.emit(failure_text(name, text or type(exc).__name__))

        fut.add_done_callback(done)

    def hold_next(self, direction: Direction) -> None:
        if self.link is None or not self.link.alive:
            self.send("hold_next")  # says why not
            return
        self.send("hold_next", direction=direction.label, conn_id=self._selected_conn(), count=1)
        self._armed[direction] = max(self.store.ids, default=0)
        self.intercept.set_armed(list(self._armed))

    def cancel_hold(self) -> None:
        self.send("cancel_hold_next")
        self._armed.clear()
        self.intercept.set_armed([])

    def _disarm_held(self) -> None:
        """A message was held: its direction's "hold next" is done."""
        s = self.store
        for d, since in list(self._armed.items()):
            if any(s.dirs[r] == d and s.ids[r] > since for r in s.held.values()):
                del self._armed[d]
        self.intercept.set_armed(list(self._armed))

    def forward(self, msg_id: int) -> None:
        self.send("release", msg_id=msg_id)

    def drop(self, msg_id: int) -> None:
        self.send("drop", msg_id=msg_id)

    def forward_all(self) -> None:
        self.send("release_all")

    def edit_and_forward(self, msg_id: int) -> EditDialog | None:
        row = self.store.row_of(msg_id)
        if row is None:
            return None
        s = self.store
        conn, d = s.conn_ids[row], Direction(s.dirs[row])
        receiver = "server" if d is Direction.C2S else "client"
        about = (f"Message #{msg_id} ({d.arrow} {d.label}, {_FROM_TO[d]}) on connection #{conn} is held: the "
                 f"{receiver} has not received it. Change it below and press Forward: the {receiver} receives "
                 "your version instead. Cancel keeps it held.")
        return self._open_editor(row, "Forward", lambda data: self.send("edit", msg_id=msg_id, data=data), about)

    def edit_and_resend(self, row: int) -> EditDialog | None:
        s = self.store
        conn, d = s.conn_ids[row], Direction(s.dirs[row])
        mid = s.ids[row]
        c = s.connections.get(conn)
        sender = "your client" if d is Direction.C2S else "the server"
        about = (f"A copy of message #{mid} ({d.arrow} {d.label}, {_FROM_TO[d]}), which was already delivered. "
                 f"Change it below and press Send a copy: it goes on connection #{conn} as if {sender} had sent "
                 "it again.")
        blocked = ""
        if c is None or not c.is_open:
            about = f"Message #{mid} ({d.arrow} {d.label}) belongs to connection #{conn}, which is closed."
            blocked = (f"A copy can only be sent on an open connection. To send connection #{conn}'s client "
                       "messages again on a new connection, close this and use Intercept ▸ Replay connection "
                       "(Ctrl+R).")
        return self._open_editor(row, "Send a copy",
                                 lambda data: self.send("inject", conn_id=conn, direction=d.label, data=data),
                                 about, blocked)

    def edit_selected(self) -> EditDialog | None:
        """Ctrl+E: while a message is held, edit a held one (the table's selection if it is held, else the one
        selected in the Intercept panel); with nothing held, edit a copy of the table's selected message."""
        row = self.selected_row()
        if row is not None and self.store.state(row) is MessageState.HELD:
            return self.edit_and_forward(self.store.ids[row])
        mid = self.intercept.selected_id()
        if mid is not None:
            return self.edit_and_forward(mid)
        if row is None:
            self._report_error("Select a message first: a held one in the Intercept panel to edit it before it is "
                               "forwarded, or any message in the table to send an edited copy.")
            return None
        return self.edit_and_resend(row)

    def compose(self, conn_id: int | None = None, direction: Direction | None = None) -> ComposeDialog:
        """Open the compose dialog: a new message, written as text/JSON/msgpack/struct/hex, sent with ``inject``
        on an open connection (default: the selected one) in either direction (default: the selected message's).
        The sent messages appear in the table marked "injected"."""
        row = self.selected_row()
        if conn_id is None:
            conn_id = self._target_conn()
        if direction is None:
            direction = Direction(self.store.dirs[row]) if row is not None else Direction.C2S
        form = None
        if row is not None and self.store.conn_ids[row] == conn_id:
            view = self.decoding.view(row)
            form = view.decoder if view.can_encode else None
        if form is None and conn_id is not None:
            chosen = self.decoding.current_decode_as(conn_id, direction)
            form = None if chosen == "auto" else chosen
        from inspector.ui.editor import ComposeDialog

        dlg = ComposeDialog(self.decoding, self._open_connections(), conn_id, direction, form, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.send_requested.connect(self._inject)

        def refresh() -> None:
            with contextlib.suppress(RuntimeError):  # the dialog is gone
                dlg.set_connections(self._open_connections())

        self.conn_model.rowsInserted.connect(refresh)
        self.conn_model.dataChanged.connect(refresh)
        dlg.destroyed.connect(lambda: self._disconnect_quietly(refresh))
        dlg.open()
        self.composer = dlg
        return dlg

    def _disconnect_quietly(self, slot: Callable[[], None]) -> None:
        for sig in (self.conn_model.rowsInserted, self.conn_model.dataChanged):
            with contextlib.suppress(RuntimeError, TypeError):
                sig.disconnect(slot)

    def _open_connections(self) -> list[tuple[int, str]]:
        return [(c.conn_id, f"#{c.conn_id}  client {fmt.addr(c.client_addr)}")
                for c in self.store.connections.values() if c.is_open]

    def _inject(self, conn_id: int, direction: Direction, data: bytes) -> None:
        self.send("inject", conn_id=conn_id, direction=direction.label, data=data)
        self.statusBar().showMessage(f"sent {len(data)} bytes {direction.arrow} {direction.label} on "
                                     f"connection #{conn_id}", 5000)

    # -- decode as -----------------------------------------------------------------------------------------

    def decode_connection_as(self, conn_id: int | None = None, direction: Direction | None = None
                             ) -> DecodeAsDialog | None:
        """The "Decode as…" dialog for a connection (default: the selected one)."""
        if conn_id is None:
            conn_id = self._target_conn()
        if conn_id is None:
            self._report_error("select a connection first (Connections panel or a message)")
            return None
        from inspector.ui.decode_as import DecodeAsDialog

        dlg = DecodeAsDialog(self.decoding, conn_id, direction, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.accepted.connect(self._decoding_changed)
        dlg.open()
        self.decode_as_dialog = dlg
        return dlg

    def set_decoder(self, name: str, conn_id: int, direction: Direction | None = None) -> None:
        """Decode a connection's messages (one direction or both) with ``name`` ("auto" to detect again)."""
        self.decoding.decode_as(None if name == "auto" else name, conn_id, direction)
        self._decoding_changed()

    def _decoding_changed(self) -> None:
        """A "decode as" or struct layout changed: summaries (cache already dropped by ``Decoding``), the held
        queue, the detail pane, and a filter over decoded fields are all worked out again."""
        self.model.refresh_all()
        self.held_model.refresh_all()
        if self.detail.row is not None:
            self.detail.show_row(self.detail.row)
        current = self.filter_bar.current
        if current is not None and current.needs_decode:
            self.set_filter(current)

    def _open_editor(self, row: int, action: str, then: Callable[[bytes], None], about: str,
                     blocked: str = "") -> EditDialog:
        from inspector.ui.editor import EditDialog

        dlg = EditDialog(self.decoding, row, action, self, about=about, blocked=blocked)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished(code: int) -> None:
            if code == EditDialog.DialogCode.Accepted and dlg.result_bytes is not None:
                then(dlg.result_bytes)

        dlg.finished.connect(finished)
        dlg.open()
        self.editor = dlg
        return dlg

    def _selected_conn(self) -> int | None:
        idx = self.conn_table.currentIndex()
        conn = self.conn_model.data(idx, CONN_ROLE) if idx.isValid() else None
        return int(conn) if conn is not None else None

    def _target_conn(self) -> int | None:
        conn = self._selected_conn()
        if conn is None:
            row = self.selected_row()
            if row is not None:
                conn = self.store.conn_ids[row]
        if conn is None:
            open_ = [c.conn_id for c in self.store.connections.values() if c.is_open]
            conn = open_[-1] if len(open_) == 1 else None
        return conn

    def close_connection(self, reset: bool) -> None:
        conn = self._target_conn()
        if conn is None:
            self._report_error("select a connection first (Connections panel or a message)")
            return
        c = self.store.connections.get(conn)
        if reset and c is not None and c.is_udp:  # UDP has no reset: say what happens instead of pretending
            self.send("close", conn_id=conn)
            self.statusBar().showMessage(f"flow #{conn} ended: UDP has no reset (RST), so Reset ends a flow as "
                                         "Close does", 8000)
            return
        self.send("reset" if reset else "close", conn_id=conn)

    def replay(self, mode: str) -> None:
        conn = self._target_conn()
        if conn is None:
            self._report_error("select a connection to replay")
            return
        if mode == "timing":
            self.send("replay", conn_id=conn, mode=mode)  # the engine kept the original arrival times
            return
        # The client side as the table holds it, so a session opened from a file or an imported capture can be
        # replayed too (the engine only remembers connections it relayed itself).
        s = self.store
        messages = [s.payload(r) for r in range(len(s))
                    if s.conn_ids[r] == conn and s.dirs[r] == Direction.C2S
                    and s.state(r) not in (MessageState.DROPPED, MessageState.DISCARDED)]
        if not messages:
            self._report_error(f"connection #{conn} has no client-to-server messages to replay")
            return
        c = s.connections.get(conn)
        if c is not None and c.is_udp:  # a flow from a session file: the engine cannot know it was one
            self.send("replay", conn_id=conn, mode=mode, messages=messages, transport="udp")
        else:
            self.send("replay", conn_id=conn, mode=mode, messages=messages)

    def _framing_chosen(self, _i: int) -> None:
        text = self.framing_combo.currentText().strip()
        if self.link is not None and self.link.alive:
            self.send("set_framing", framing=text)
            self.statusBar().showMessage(f"framing {text} applies to new connections", 5000)
        elif self.options is not None:
            self.options.framing = text
            self.statusBar().showMessage(f"framing {text}: press ▶ Start to restart the proxy with it", 8000)

    def _toolbar_preset(self, index: int) -> None:
        self.conditions.preset.setCurrentIndex(index)
        self.conditions._preset_chosen(index)

    # =============================================================================================== context menus

    def _table_menu(self, pos: Any) -> None:
        row = self.selected_row()
        menu = QMenu(self)
        if row is not None:
            conn = self.store.conn_ids[row]
            if self.store.state(row) is MessageState.HELD:
                mid = self.store.ids[row]
                menu.addAction("Forward", lambda: self.forward(mid))
                menu.addAction("Edit && forward…", lambda: self.edit_and_forward(mid))
                menu.addAction("Drop", lambda: self.drop(mid))
            else:
                menu.addAction("Edit && resend…", lambda: self.edit_and_resend(row))
            menu.addSeparator()
            menu.addAction(self.compose_action)
            menu.addSeparator()
            menu.addAction(f"Only connection #{conn}", lambda: self._filter_to(f"conn == {conn}"))
            menu.addMenu(self._decoder_menu(menu, conn, Direction(self.store.dirs[row])))
            menu.addMenu(self.framing_control.menu(menu, conn, Direction(self.store.dirs[row])))
            menu.addAction("Copy as hex", lambda: self.detail.copy("hex"))
            menu.addAction("Copy as Python bytes", lambda: self.detail.copy("bytes"))
        else:
            menu.addAction(self.compose_action)
        self.context_menu = menu
        menu.popup(self.table.viewport().mapToGlobal(pos))

    def _decoder_menu(self, parent: QMenu, conn: int, direction: Direction | None) -> QMenu:
        """A submenu "Decode #N as ▸ auto / text / json / …" (checked: the current choice), then the dialog."""
        scope = f"{direction.arrow} {direction.label}" if direction is not None else "both directions"
        sub = QMenu(f"Decode #{conn} {scope} as", parent)
        current = self.decoding.current_decode_as(conn, direction or Direction.C2S)
        def chooser(name: str) -> Callable[[], None]:
            return lambda: self._choose_decoder(name, conn, direction)

        for name in self.decoding.names():
            a = sub.addAction(name)
            a.triggered.connect(chooser(name))
            a.setCheckable(True)
            a.setChecked(name == current)
        sub.addSeparator()
        sub.addAction("Per direction, struct layout…", lambda: self.decode_connection_as(conn, direction))
        return sub

    def _choose_decoder(self, name: str, conn: int, direction: Direction | None) -> None:
        if name == "struct" and not self.decoding.current_struct_format(conn, direction or Direction.C2S):
            dlg = self.decode_connection_as(conn, direction)  # struct cannot guess: ask for the layout
            if dlg is not None:
                dlg.decoder.setCurrentText("struct")
                dlg.struct_format.setFocus()
            return
        self.set_decoder(name, conn, direction)

    def _filter_to(self, text: str) -> None:
        self.filter_bar.set_text(text)
        self.filter_bar.apply()

    def _conn_menu(self, pos: Any) -> None:
        idx = self.conn_table.indexAt(pos)
        if idx.isValid():
            self.conn_table.selectRow(idx.row())
        conn = self._selected_conn()
        menu = QMenu(self)
        menu.addAction("Close (FIN)", lambda: self.close_connection(False))
        menu.addAction("Reset (RST)", lambda: self.close_connection(True))
        menu.addAction("Replay (as fast as possible)", lambda: self.replay("fast"))
        menu.addAction("Only this connection", lambda: self._only_connection(self.conn_table.currentIndex()))
        if conn is not None:
            menu.addSeparator()
            menu.addMenu(self._decoder_menu(menu, conn, None))
            menu.addAction("Decode as… (per direction, struct layout)", lambda: self.decode_connection_as(conn))
            menu.addMenu(self.framing_control.menu(menu, conn))
            menu.addAction(self.compose_action)
        self.context_menu = menu
        menu.popup(self.conn_table.viewport().mapToGlobal(pos))

    # =============================================================================================== status

    def show_banner(self, text: str, *, error: bool, restart: bool = False) -> None:
        c = self.colours
        bg, fg = (c.error, "#ffffff") if error else (c.held_bg, c.held.name() if not c.dark else "#ffffff")
        self.banner.setStyleSheet(f"background: {bg.name()}; color: {fg};")
        self.banner_text.setText(text)
        self.banner_button.setVisible(restart)
        self.banner.show()

    def _hide_banner(self) -> None:
        self.banner.hide()

    def _layouts_for(self, conn_id: int, direction: Direction, size: int) -> list[Layout]:
        """The struct layouts offered for a direction's ``size``-byte records: those of the program's source that
        fit, then a guess from the direction's recent records (marked as one)."""
        from inspector.layouts import guess_layout, layouts_for_size

        offered = layouts_for_size(self.source_layouts, size)
        s, d = self.store, int(direction)
        records: list[bytes] = []
        for r in range(len(s) - 1, max(-1, len(s) - 1 - LAYOUT_LOOKBACK), -1):
            if s.conn_ids[r] == conn_id and s.dirs[r] == d and not s.payload_evicted(r):
                data = s.payload(r)
                records += [data[i:i + size] for i in range(0, len(data) - size + 1, size)]
                if len(records) >= LAYOUT_RECORDS:
                    break
        guess = guess_layout(records[:LAYOUT_RECORDS]) if records else None
        if guess is not None and guess.size == size:
            offered.append(guess)
        return offered

    def _report_error(self, text: str) -> None:
        """Something the user asked for did not work: said in the window (until closed, or for a while), logged."""
        self.statusBar().showMessage(f"⚠ {text}", 10000)
        self._log("error", text)
        self.show_notice(text)

    def show_notice(self, text: str, *, persistent: bool = False, kind: str = "") -> None:
        """A line above the table about what went wrong: it stays ``NOTICE_MS`` (``persistent``: until closed or
        until what it is about is over)."""
        c = self.colours
        self.notice.setStyleSheet(f"#notice {{ background: {c.held_bg.name()}; }} #notice QLabel {{ color: "
                                  f"{c.held.name() if not c.dark else '#ffffff'}; }}")
        self.notice_text.setText(f"⚠ {text}")
        self._notice_kind = kind
        self.notice.show()
        if persistent:
            self._notice_timer.stop()
        else:
            self._notice_timer.start()

    def _log(self, level: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log.appendPlainText(f"{stamp} {level}: {text}")

    def _update_rates(self) -> None:
        self.conn_model.tick()  # a UDP flow's idle time moves on
        """Messages and bytes per second, averaged over the last few seconds: a game that pings every 1.5 s
        sends 0.7 messages a second, not 0 in one second and 1 in the next."""
        now = time.monotonic()
        s = self.store
        samples = self._rate_samples
        samples.append((now, s.totals_msgs[:], s.totals_bytes[:]))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        t0, msgs, byts = samples[0]
        dt = now - t0
        if dt < 0.5:
            return  # not enough to say yet
        self._rates = ([(s.totals_msgs[d] - msgs[d]) / dt for d in (0, 1)],
                       [(s.totals_bytes[d] - byts[d]) / dt for d in (0, 1)])
        self._update_status()
        self.filter_bar.set_counts(s.visible_count, s.view_total) if not self.filtering else None

    def _update_held(self) -> None:
        n = self.store.held_count
        text = f"{n} held" if n else ""
        self.held_badge.setText(f"  {text}  " if n else "")
        self.held_badge.setStyleSheet(f"background: {self.colours.held_bg.name()}; color: "
                                      f"{self.colours.held.name()}; font-weight: bold; border-radius: 3px"
                                      if n else "")
        self.st_held.setText(text)
        self.st_held.setStyleSheet(f"color: {self.colours.held.name()}; font-weight: bold" if n else "")
        self.intercept_dock.setWindowTitle(f"Intercept — {n} held" if n else "Intercept")

    # -- what another client of the proxy changed (another window, a script): shown at once, said in the status bar

    def _from_elsewhere(self, text: str) -> None:
        self.statusBar().showMessage(f"{text} (by another client of this proxy)", 5000)
        self._log("info", f"{text} by another client of this proxy")

    def _conditions_from_elsewhere(self, conditions: dict[str, Any]) -> None:
        from proxy.conditions import Conditions, ConditionsError

        if self.conditions.change_pending:
            return  # the user's own change is about to be sent: it will be the one in force
        try:
            c = Conditions.from_dict(conditions)
        except ConditionsError:
            return
        if c != self.conditions.value():
            self.conditions.set_conditions(c, send=False)
            self._from_elsewhere("conditions changed")

    def _rules_from_elsewhere(self, rules: list[dict[str, Any]]) -> None:
        self.intercept.set_rules(rules)
        self._from_elsewhere(f"rules changed ({len(rules)} in force)")

    def _framing_from_elsewhere(self, text: str) -> None:
        self.framing_combo.setCurrentText(text)
        self._from_elsewhere(f"framing for new connections changed to {text}")

    def _capture_from_elsewhere(self, paused: bool) -> None:
        self._from_elsewhere("the proxy's capture was paused" if paused else "the proxy's capture was resumed")

    def _hold_from_elsewhere(self, event: dict[str, Any]) -> None:
        armed = event.get("armed")
        if isinstance(armed, dict):
            where = f" on connection #{armed['conn_id']}" if armed.get("conn_id") is not None else ""
            self._from_elsewhere(f"the next {armed.get('count', 1)} {armed.get('direction')} message(s){where} "
                                 "will be held")
        else:
            self._from_elsewhere("holds of the next messages were cancelled")

    def _update_status(self) -> None:
        link = self.link
        if link is not None and link.alive:
            over = {("udp",): " (UDP)", ("tcp", "udp"): " (TCP and UDP)"}.get(link.transports, "")
            self.st_link.setText(f"listening {link.description}{over}")
        elif not self._starting:
            source = getattr(getattr(self, "sessions", None), "source_path", None)
            self.st_link.setText("proxy stopped" + (f" · showing {os.path.basename(source)}" if source else ""))
        conns = self.store.connections.values()
        open_ = sum(1 for c in conns if c.is_open)
        flows = sum(1 for c in conns if c.is_udp)
        tcp = len(self.store.connections) - flows
        # a UDP flow is not a connection: say both when there are flows (a learner's first UDP game has only flows)
        what = f"{tcp} conns" if not flows else f"{flows} UDP flow{'s' * (flows != 1)}" if not tcp else \
            f"{tcp} conns, {flows} UDP flow{'s' * (flows != 1)}"
        self.st_conns.setText(f"{open_} open / {what}")
        (m_up, m_down), (b_up, b_down) = self._rates
        c = self.colours
        self.st_rates.setText(
            f"<span style='color:{c.c2s.name()}'>↑ {fmt.rate(m_up)} msg/s {fmt.size(b_up)}/s</span> · "
            f"<span style='color:{c.s2c.name()}'>↓ {fmt.rate(m_down)} msg/s {fmt.size(b_down)}/s</span>")
        lost = (link.events.lost if link is not None else 0)
        extra = []
        if self.store.skipped_while_paused:
            extra.append(f"{self.store.skipped_while_paused:,} not captured (paused)")
        if self.store.rows_refused:
            extra.append(f"{self.store.rows_refused:,} refused (store full)")
        self.st_lost.setText(" · ".join(([f"{lost:,} events lost"] if lost else []) + extra))
        self.st_lost.setVisible(bool(lost or extra))  # said when there is something to say: room for messages
        self.st_lost.setStyleSheet(f"color: {c.error.name()}" if lost else "")
        self.st_cond.setText(self.conditions.summary())
        recording = getattr(self, "sessions", None)
        if recording is not None and recording.record_action.isChecked() and recording.spool_path:
            self.st_rec.setText(f"● recording to {os.path.basename(recording.spool_path)}")
            self.st_rec.setStyleSheet(f"color: {c.error.name()}")
        else:
            self.st_rec.setText("")
        self._update_held()

    # =============================================================================================== Qt events

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and palette.current() != self.colours:
            self._recolour()
        super().changeEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        with contextlib.suppress(Exception):
            self.save_settings()
        self.stop_link()
        self._rate_timer.stop()
        self._collector.stop()
        super().closeEvent(event)

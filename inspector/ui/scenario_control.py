"""The window's scenarios: File ▸ Load scenario…, a box at the top of the Conditions panel that says which step runs
now and what comes next, and the plan drawn on the timeline's round-trip plot beside what is measured.

Role: :class:`ScenarioControl` reads a scenario file with :func:`proxy.scenario.load` (its problems shown in a box,
one line each, and in the log) and plays it with the same :class:`proxy.scenario.Player` as ``sockscope-proxy
--scenario``, from the window: a single-shot ``QTimer`` wakes it at each time the player names (never a polling
loop), and each action becomes a command of the window's link (docs/protocol.md): ``set_conditions`` (also shown in
the Conditions panel), ``disconnect_all`` and ``refuse_connections``. Times are the engine's monotonic clock (a
proxy on this machine shares this process's; an attached one is reached through its hello's clock anchor), so the
spikes a step sets start when the plan says and the plan lines up with the messages on the timeline.
An edit the user makes in the Conditions panel is a change by hand: it stays until the scenario's next step
(:meth:`proxy.scenario.Player.user_changed`), and the box says so.
Time zero is when the scenario is loaded into a running proxy, or when the proxy starts if none runs yet (or, with
``start = "first-connection"``, when a client connects after that).
Must not import: ``inspector.ui.main_window`` (what it uses of the window is :class:`ScenarioWindow`, a
``Protocol``), ``inspector.bridge`` (the window's link is used through the window).
Thread: GUI thread.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from PySide6.QtCore import QObject, Qt, QTimer, Signal, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from inspector.ui import palette
from proxy.conditions import Conditions
from proxy.scenario import (
    PLAN_MAX_POINTS,
    RAMP_POINTS_DRAWN,
    Action,
    Apply,
    Disconnect,
    Finished,
    Player,
    Refuse,
    Say,
    Scenario,
    ScenarioError,
    load,
    rtt_series,
)

if TYPE_CHECKING:
    from inspector.bridge import Link
    from inspector.store import ApplyResult, MessageStore
    from inspector.ui.conditions_dock import ConditionsPanel
    from inspector.ui.pump import RecordPump
    from inspector.ui.timeline.dock import TimelineController

__all__ = ["ScenarioControl"]

STATUS_MS: Final = 500
"""How often the box's "since 5 s · next in 12 s" is brought up to date."""
PASSES_DRAWN: Final = 10
"""Passes of a repeating scenario drawn ahead on the timeline (redrawn as the run goes on)."""
LOCAL_LINKS: Final = ("child process", "in-process")
"""Links whose engine runs on this machine, on the same monotonic clock as the window."""


class ScenarioWindow(Protocol):
    """What a scenario uses of the main window (a ``Protocol``, so this module does not import the window back)."""

    link: Link | None
    store: MessageStore
    conditions: ConditionsPanel
    pump: RecordPump
    _link_ready: SignalInstance

    @property
    def timeline(self) -> TimelineController: ...

    def send(self, name: str, **args: Any) -> None: ...

    def _log(self, level: str, text: str) -> None: ...

    def statusBar(self) -> QStatusBar: ...


class ScenarioControl(QObject):
    """Loads, plays and stops scenarios in ``window`` (the main window, a QWidget)."""

    changed = Signal()
    """Something about the scenario changed: loaded, a step, finished, stopped (the box is up to date)."""

    def __init__(self, window: ScenarioWindow) -> None:
        if not isinstance(window, QWidget):
            raise TypeError("the scenario control belongs to a window (a QWidget)")
        super().__init__(window)
        self.window = window
        self.widget: QWidget = window
        """The window as the parent of dialogs."""
        self.scenario: Scenario | None = None
        self.player: Player | None = None
        self.lines: list[str] = []
        """What the scenario said, as the log shows it."""
        self.before: Conditions | None = None
        """The panel's conditions when the scenario started (put back by Stop)."""
        self.error_box: QMessageBox | None = None
        self.armed = False
        """Play when a proxy starts: a scenario loaded while none ran, or one the proxy's end interrupted (not one
        that finished or that the user stopped)."""
        self._known_conns: set[int] = set()
        self._drawn_pass = -1
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_MS)
        self._status_timer.timeout.connect(self._show_status)

        self.load_action = QAction("Load sce&nario…", self.widget)
        self.load_action.setToolTip("play a scenario file: a timeline of network conditions (docs/scenarios.md)")
        self.load_action.triggered.connect(self.choose_file)
        self.stop_action = QAction("Stop scenario", self.widget)
        self.stop_action.setToolTip("stop the scenario and put back the conditions from before it")
        self.stop_action.triggered.connect(lambda: self.stop())
        self.stop_action.setEnabled(False)
        self._build_box()

        # the panel's own edits are the user's: wrap what it sends through (the window gives it ``send``)
        panel = window.conditions
        panel_send = panel.send

        def send(name: str, **args: Any) -> None:
            if name == "set_conditions":
                self._changed_by_hand()
            panel_send(name, **args)

        panel.send = send
        window._link_ready.connect(self._link_ready)
        window.pump.applied.connect(self._applied)
        window.pump.link_died.connect(lambda reason: self._link_gone(f"the proxy stopped ({reason})"))

    def _build_box(self) -> None:
        self.box = QFrame()
        self.box.setObjectName("scenario_box")
        self.box.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint = QLabel("A change you make below lasts until the scenario's next step.")
        self.hint.setWordWrap(True)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(self.stop_action.toolTip())
        self.stop_button.clicked.connect(lambda: self.stop())
        self.load_button = QPushButton("Load…")
        self.load_button.setToolTip(self.load_action.toolTip())
        self.load_button.clicked.connect(self.choose_file)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.load_button)
        buttons.addWidget(self.stop_button)
        lay = QVBoxLayout(self.box)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.status)
        lay.addWidget(self.hint)
        lay.addLayout(buttons)
        self.box.hide()
        layout = self.window.conditions.layout()
        if isinstance(layout, QVBoxLayout):
            layout.insertWidget(0, self.box)
        self.set_colours(palette.current())

    def set_colours(self, c: palette.Colours) -> None:
        self.box.setStyleSheet(f"#scenario_box {{ background: {c.special_bg.name()}; }}")
        self.hint.setStyleSheet(f"color: {c.muted.name()}; font-size: small")

    def add_to_menu(self, menu: QMenu) -> None:
        menu.addAction(self.load_action)
        menu.addAction(self.stop_action)

    # ------------------------------------------------------------------------------------------ loading

    @property
    def running(self) -> bool:
        return self.player is not None and self.player.origin_ns is not None and not self.player.finished

    def choose_file(self) -> None:
        start = str(Path(self.scenario.source).parent) if self.scenario is not None else ""
        path, _ = QFileDialog.getOpenFileName(self.widget, "Load a scenario", start, "Scenarios (*.toml);;All (*)")
        if path:
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Read ``path`` and play it (now, or when the proxy starts); False, with the problems shown, if it is
        wrong. A scenario that was running stops first (its conditions are not put back: the new one sets its own)."""
        try:
            s = load(path)
        except ScenarioError as e:
            for problem in e.problems:
                self.window._log("error", f"scenario: {problem}")
            self._show_problems(str(path), e.problems)
            return False
        if self.running:
            self.stop(restore=False)
        self.scenario, self.player, self._drawn_pass = s, None, -1
        self.lines = []
        self.armed = True
        self.window._log("info", f"scenario loaded: {s.describe()}")
        self.stop_action.setEnabled(True)
        self.box.show()
        self._begin_when_ready()
        self._show_status()
        self.changed.emit()
        return True

    def _show_problems(self, path: str, problems: list[str]) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "This scenario cannot be played",
                          f"{Path(path).name} has {len(problems)} problem{'s' * (len(problems) != 1)}:",
                          QMessageBox.StandardButton.Ok, self.widget)
        box.setInformativeText("\n".join(problems))
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.finished.connect(lambda _r: setattr(self, "error_box", None))
        box.open()
        self.error_box = box
        self.window.statusBar().showMessage(f"⚠ scenario: {problems[0]}", 10000)

    # ------------------------------------------------------------------------------------------ time

    def engine_now(self) -> int:
        """Now on the engine's monotonic clock (what its spikes and records are in)."""
        link = self.window.link
        now = time.monotonic_ns()
        if link is None or link.kind in LOCAL_LINKS or link.clock is None:
            return now
        return link.clock.mono_ns + (time.time_ns() - link.clock.wall_ns)

    def _link_alive(self) -> bool:
        link = self.window.link
        return link is not None and link.alive

    def _begin_when_ready(self) -> None:
        s = self.scenario
        if s is None or self.player is not None or not self._link_alive():
            return
        if s.start == "first-connection":
            self._known_conns = set(self.window.store.connections)
            self.window._log("info", f"scenario {s.name!r}: waiting for the first connection")
            return
        self._begin(self.engine_now())

    def _begin(self, origin: int) -> None:
        assert self.scenario is not None
        self.before = self.window.conditions.value()
        self.player = Player(self.scenario)
        self._status_timer.start()
        self._run(self.player.start(self.engine_now(), origin))
        self._draw_plan()

    def _link_ready(self, link: object, error: str | None) -> None:
        if error is None and self.scenario is not None and self.armed and not self.running:
            self.player = None  # loaded while no proxy ran, or cut short when the last one stopped: from the start
            self._begin_when_ready()
            self._show_status()

    def _applied(self, result: ApplyResult) -> None:
        if (self.scenario is None or self.player is not None or not self.armed
                or self.scenario.start != "first-connection"):
            return
        if not self._link_alive():
            return
        new = [c for cid, c in self.window.store.connections.items() if cid not in self._known_conns]
        if new:
            self._begin(min(c.opened_ns for c in new))

    def _link_gone(self, why: str) -> None:
        if self.running:
            self._timer.stop()
            self._status_timer.stop()
            assert self.player is not None
            self.player.finished = True
            self.armed = True  # it plays again, from the start, when a proxy starts again
            name = self.scenario.name if self.scenario is not None else ""
            self._say(f"scenario {name!r}: stopped: {why}; it starts again with the proxy")
            self._show_status()
            self.changed.emit()

    # ------------------------------------------------------------------------------------------ playing

    def _tick(self) -> None:
        if self.player is None or not self.running:
            return
        if not self._link_alive():
            self._link_gone("the proxy is not running")
            return
        self._run(self.player.advance(self.engine_now()))

    def _run(self, actions: list[Action]) -> None:
        player = self.player
        for a in actions:
            self._act(a)
        if player is None or self.player is not player:
            return
        if player.pass_index != self._drawn_pass and self.scenario is not None and self.scenario.repeat != 1:
            self._draw_plan()
        due = player.due_ns
        if due is None:
            self._timer.stop()
        else:
            self._timer.start(max(0, -(-(due - self.engine_now()) // 1_000_000)))  # ms, rounded up
        self._show_status()
        self.changed.emit()

    def _act(self, a: Action) -> None:
        w = self.window
        if isinstance(a, Apply):
            w.conditions.show_conditions(a.conditions)
            w.send("set_conditions", conditions=a.conditions.to_dict())
        elif isinstance(a, Disconnect):
            w.send("disconnect_all", reset=a.reset)
        elif isinstance(a, Refuse):
            w.send("refuse_connections", on=a.on)
        elif isinstance(a, Say):
            self._say(a.text)
        elif isinstance(a, Finished):
            self.armed = False
            self._status_timer.stop()
            self.stop_action.setEnabled(False)
            if a.restore:
                self._restore()

    def _say(self, text: str) -> None:
        self.lines.append(text)
        self.window._log("info", text)
        # the status bar has room for the step's name (the log and the panel's box have the rest)
        self.window.statusBar().showMessage(": ".join(text.split(": ", 2)[:2]), 6000)

    def _restore(self) -> None:
        if self.before is not None:
            self.window.conditions.show_conditions(self.before)
            self.window.send("set_conditions", conditions=self.before.to_dict())

    def _changed_by_hand(self) -> None:
        if self.running:
            assert self.player is not None
            self._run(self.player.user_changed(self.engine_now()))

    def stop(self, restore: bool = True) -> None:
        """Stop the scenario; ``restore`` puts back the conditions from before it (and ends an outage)."""
        player, s = self.player, self.scenario
        if s is None:
            return
        self._timer.stop()
        self._status_timer.stop()
        self.stop_action.setEnabled(False)
        self.armed = False
        if player is None or player.finished or player.origin_ns is None:
            self.scenario = None if player is None else s  # loaded, not started: forgotten
            self.box.setVisible(self.scenario is not None)
            self._show_status()
            self.changed.emit()
            return
        player.finished = True
        if self._link_alive():
            self.window.send("refuse_connections", on=False)
            if restore:
                self._restore()
        self._say(f"scenario {s.name!r}: stopped" + ("; conditions restored" if restore else ""))
        self._show_status()
        self.changed.emit()

    # ------------------------------------------------------------------------------------------ showing

    def plan_points(self) -> list[tuple[int, float]]:
        """The planned added round trip on the engine's clock: (ns, ms) points for the passes around the current
        one (each pass is the same timeline again, from no conditions)."""
        s, player = self.scenario, self.player
        if s is None or player is None or player.origin_ns is None:
            return []
        length = s.length_s
        one = [(t, c) for t, c in s.plan(until_s=length, ramp_points=RAMP_POINTS_DRAWN) if t < length or length == 0]
        series = rtt_series(one, length)
        step = round(length * 1e9)
        now = player.pass_index
        last = now + PASSES_DRAWN if s.repeat is None else min(s.repeat, now + PASSES_DRAWN)
        first = max(0, now - 2)
        last = min(last, first + max(1, PLAN_MAX_POINTS // max(1, len(series))))  # a bounded line to draw
        passes = range(first, last) if step else range(1)
        return [(player.origin_ns + k * step + round(t * 1e9), ms) for k in passes for t, ms in series]

    def _draw_plan(self) -> None:
        if self.player is not None:
            self._drawn_pass = self.player.pass_index
        self.window.timeline.set_scenario_plan(self.plan_points())

    def _show_status(self) -> None:
        s, player = self.scenario, self.player
        if self.running and not self._link_alive():
            self._link_gone("the proxy is not running")
            return
        if s is None:
            self.box.hide()
            return
        self.box.show()
        self.title.setText(f"<b>Scenario</b> {html.escape(s.name)} <span style='color:"
                           f"{palette.current().muted.name()}'>({html.escape(Path(s.source).name)})</span>")
        if player is None:
            text = ("starts when the proxy starts" if not self._link_alive() else
                    "waiting for a client to connect" if s.start == "first-connection" else "starting")
        elif player.finished and self.armed:
            text = "stopped with the proxy: it starts again, from the beginning, when the proxy starts"
        elif player.finished:
            last = self.lines[-1] if self.lines else ""
            text = ("stopped" if ": stopped" in last else "finished") + (
                "; the conditions stay as they are" if "restored" not in last and s.at_end == "keep" else "")
        else:
            text = player.status(self.engine_now())
        self.status.setText(text)
        self.hint.setVisible(self.running)
        self.stop_button.setVisible(self.running or self.armed)

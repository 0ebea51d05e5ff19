"""The Lab dock in the real window (offscreen): its plots fed by a real small game (tests/lab_bot.py: a server and
headless bots on 127.0.0.1 speaking the lab's wire format) through the in-process engine, latency changed live
with the Conditions panel; the hints table (qtmodeltester) and the field picker; the plots on recorded sessions.

Waits are ``qtbot.waitUntil`` on what the window shows; nothing sleeps to synchronise.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import LinkOptions, ThreadLink
from inspector.lab import FieldRef, Hints, MessageType
from inspector.lab.analysis import LabAnalysis
from inspector.ui.lab_hints import INFER, NONE, TYPE_ROLE, HintsModel
from inspector.ui.main_window import MainWindow
from proxy.model import Direction
from tests.lab_bot import LabBot, LabServer
from tests.test_lab_core import Game, hand_session

WAIT = 15_000
C2S, S2C = Direction.C2S, Direction.S2C


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Any) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

    def make(options: LinkOptions | None = None) -> MainWindow:
        w = MainWindow(options, settings=settings, link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.resize(1600, 1000)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


def _offline(make_window: Callable[..., MainWindow], records: list[Any]) -> MainWindow:
    w = make_window(None)
    w.central.setCurrentWidget(w.main_view)
    w.store.apply(records)
    w.model.reset()
    w.show_lab()
    lab = w.lab
    while lab.analysis.pending:
        lab.refresh(force=True)
    lab.refresh(force=True)
    return w


def test_the_hints_model_passes_the_model_tester(qtmodeltester: Any) -> None:
    a = LabAnalysis(hand_session().store())
    a.run_to_end()
    m = HintsModel(a.hints)
    table = [tuple(m.data(m.index(r, c)) for c in range(4)) for r in range(m.rowCount())]
    assert table == [
        ("s2c welcome", "—", "none found", ""),
        ("c2s input", "input seq", "seq", "inferred"), ("c2s input", "predicted", "x, y", "inferred"),
        ("s2c state", "ack", "ack", "inferred"), ("s2c state", "tick", "tick", "inferred"),
        ("s2c state", "time", "time", "inferred"), ("s2c state", "position", "x, y", "inferred")]
    # (one check per model: the tester stays connected and checks every change that follows)
    qtmodeltester.check(m, force_py=True)
    a.hints.set(MessageType(S2C, "state"), "ack", None)
    a.hints.set(MessageType(S2C, "state"), "tick", FieldRef.parse("frame"), "file")
    a.hints.observe(MessageType(C2S, "chat"), {"t": "chat"})
    m.sync()
    table = [tuple(m.data(m.index(r, c)) for c in range(4)) for r in range(m.rowCount())]
    assert ("s2c state", "ack", "— (none)", "picked") in table and ("s2c state", "tick", "frame", "hints file") in table
    assert table[-1][0] == "c2s chat" and m.data(m.index(0, 0), TYPE_ROLE) == MessageType(S2C, "welcome")
    m.set_hints(Hints())
    assert m.rowCount() == 0


def test_a_recorded_session_fills_every_plot(make_window: Callable[..., MainWindow]) -> None:
    s, truth = Game(up_ms=60, down_ms=60, jitter_ms=10, mispredict_every=5, clients=2).run()
    w = _offline(make_window, s.records())
    lab = w.lab
    plots = lab.plots
    assert lab.panel.isVisible() and plots.isVisible()
    for conn in (1, 2):
        y = plots._curves[(conn, "delay")][1].yData
        assert len(y) == len(truth[conn]["delays"])
        assert float(np.median(y)) == pytest.approx(statistics.median(truth[conn]["delays"]), abs=1e-6)
        fy = plots._curves[(conn, "flight")][1].yData
        assert max(fy) == max(truth[conn]["in_flight"])
        cy = plots._curves[(conn, "corr")][1].yData
        assert max(cy) == pytest.approx(max(truth[conn]["corrections"]))
    heights = plots.bars.opts["height"]
    assert sum(heights) == sum(len(t["gaps"]) for t in truth.values())
    adv = plots.advice
    assert plots.marks["rec"].isVisible() and plots.marks["rec"].value() == adv.recommended_ms
    assert adv.recommended_ms >= max(adv.p99_ms, adv.two_intervals_ms)
    text = lab.readout.text()
    for words in ("Input → ack", "Inputs in flight", "Interpolation delay", "Corrections"):
        assert words in text, text
    # one connection: only its curves are drawn
    lab.scope.setCurrentIndex(lab.scope.findData(2))
    assert {k[0] for k in plots._curves} == {2}
    # a click on a correction dot selects the state in the table
    pts = plots.corr_dots.points()
    assert len(pts)
    plots._dots_clicked(plots.corr_dots, [pts[-1]])
    idx = w.table.currentIndex()
    row = plots.row_of_dot(plots.corr_dots, pts[-1].index())
    assert idx.isValid() and row is not None and w.selected_row() == row
    assert w.store.dirs[row] == S2C and b"state" in w.store.payload(row)


def test_the_hints_table_and_the_field_picker(make_window: Callable[..., MainWindow], qtbot: Any) -> None:
    s = hand_session()
    w = _offline(make_window, s.records())
    lab = w.lab
    m = lab.hints_model

    def row_of(text: str, role: str | None = None) -> int:
        return next(r for r in range(m.rowCount()) if m.data(m.index(r, 0)) == text
                    and (role is None or m.data(m.index(r, 1)) == role))

    assert m.data(m.index(row_of("c2s input", "input seq"), 3)) == "inferred"
    g = lab.analysis.generation
    # pick the fields of the state type: its ack is the tick (say), its position none
    dialog = lab.pick_dialog(type_index=m.index(row_of("s2c state"), 0))
    assert not isinstance(dialog, str)
    assert set(dialog.boxes) == {"ack", "tick", "time", "pos"}
    assert dialog.boxes["ack"].currentText() == f"{INFER}: ack"
    assert [dialog.boxes["pos"].itemText(i) for i in range(dialog.boxes["pos"].count())][2] == "x, y"
    assert dialog.tree.topLevelItemCount() == 6  # t, tick, time, ack, x, y
    dialog.boxes["pos"].setCurrentText(NONE)
    dialog.boxes["ack"].setCurrentText("a..b")
    assert not dialog.apply() and "ack" in dialog.error.text()
    # a double-click on a tree row puts that field in the box used last
    dialog._used(dialog.boxes["ack"])
    tick_item = next(dialog.tree.topLevelItem(i) for i in range(dialog.tree.topLevelItemCount())
                     if dialog.tree.topLevelItem(i).text(0) == "tick")
    dialog._tree_picked(tick_item, 0)
    assert dialog.boxes["ack"].currentText() == "tick"
    assert dialog.apply()
    state = MessageType(S2C, "state")
    given = lab.analysis.hints.given[state]
    assert given["ack"].field is not None and given["ack"].field.text == "tick" and given["ack"].source == "window"
    assert given["pos"].field is None
    lab.refresh(force=True)
    assert lab.analysis.generation == g + 1  # measured again with the new hints
    assert m.data(m.index(row_of("s2c state", "ack"), 2)) == "tick"
    assert m.data(m.index(row_of("s2c state", "ack"), 3)) == "picked"
    assert m.data(m.index(row_of("s2c state", "position"), 2)) == "— (none)"
    while lab.analysis.pending:
        lab.refresh(force=True)
    lab.refresh(force=True)
    assert lab.analysis.tracker.conns[1].correction_d.count == 0  # no position: no corrections
    # saved and loaded again, the hints are the same; a bad file is refused with its line, nothing changes
    path = lab.save_hints_file(str(w.settings.fileName()) + ".toml")
    assert path is not None
    assert lab.load_hints_file(path)
    assert lab.analysis.hints.given[state]["ack"].field == given["ack"].field
    bad = path + ".bad"
    with open(bad, "w", encoding="utf-8") as f:
        f.write('[s2c.state]\nack = "ack"\nseq = "x"\n')
    hints_before = lab.analysis.hints
    assert not lab.load_hints_file(bad)
    assert lab.hints_error.isVisibleTo(w) and f"{bad}:3:" in lab.hints_error.text()
    assert lab.analysis.hints is hints_before
    lab.reset_hints()
    assert not lab.analysis.hints.given and not lab.hints_error.isVisibleTo(w)
    # no message selected and no type selected: the picker says what to do
    lab.hints_table.clearSelection()
    lab.hints_table.setCurrentIndex(m.index(-1, -1))
    assert isinstance(lab.pick_dialog(), str)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_live_game_through_the_proxy_and_the_latency_slider_moves_the_ack_delay(
        make_window: Callable[..., MainWindow], qtbot: Any) -> None:
    server = LabServer()
    bots: list[LabBot] = []
    try:
        w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", server.port), framing="len32"))
        qtbot.waitUntil(lambda: w.link is not None and w.link.listen_addr is not None, timeout=WAIT)
        assert w.link is not None and w.link.listen_addr is not None
        w.show_lab()
        lab = w.lab
        assert lab.panel.isVisible()
        bots.append(LabBot(w.link.listen_addr[1]))
        # with no added lag: an input is acknowledged within about a tick (33 ms at 30 ticks/s)
        qtbot.waitUntil(lambda: 1 in lab.analysis.tracker.conns and len(lab.analysis.tracker.conns[1].delay) >= 60,
                        timeout=WAIT)
        conn = lab.analysis.tracker.conns[1]
        before = statistics.median(conn.delay.y[-60:])
        n = conn.delay.added
        for d in Direction:
            w.conditions.cols[d].latency.spin.setValue(100)
        # the lab notes what is configured (the amber band) ...
        qtbot.waitUntil(lambda: lab.conf and lab.conf[-1][1] + lab.conf[-1][3] == 200, timeout=WAIT)
        qtbot.waitUntil(lambda: conn.added_d.hi >= 199, timeout=WAIT)
        # ... and inputs sent after the change wait ~200 ms more for their acknowledgement
        qtbot.waitUntil(lambda: conn.delay.added >= n + 120, timeout=WAIT)
        after = [y for y, extra in zip(conn.delay.y[-60:], conn.delay.extra[-60:], strict=True) if extra >= 199]
        assert len(after) >= 30
        assert statistics.median(after) - before == pytest.approx(200, abs=40)
        # every plot has data
        plots = lab.plots
        for kind in ("delay", "added", "flight", "corr"):
            y = plots._curves[(1, kind)][1].yData
            assert y is not None and len(y), kind
        _x, lo = plots.band_lo.getData()
        assert lo is not None and max(lo) == 200
        expected = plots.flight_expected.yData
        assert expected is not None and max(expected) == pytest.approx(12, abs=3)  # 200 ms of 60 Hz inputs
        assert statistics.median(conn.in_flight.y[-60:]) >= 10
        # 30 states a second: about 33 ms apart (the latency step itself made one gap 100 ms longer)
        adv = plots.advice
        assert plots.marks["rec"].isVisible() and 28 <= adv.median_ms <= 40
        assert adv.recommended_ms >= adv.two_intervals_ms == 2 * adv.median_ms
        # prediction with reconciliation under constant lag: no corrections at all
        assert conn.correction_d.count >= 30 and conn.correction_d.hi == 0
        # the readout and the window stay responsive: refresh ticks are bounded by the analysis budget
        assert "Interpolation delay" in lab.readout.text()
    finally:
        for b in bots:
            b.stop()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_lab_never_shown_costs_nothing_and_catches_up_when_shown(
        make_window: Callable[..., MainWindow], qtbot: Any) -> None:
    s, _truth = Game(seconds=4, clients=2).run()
    w = make_window(None)
    w.central.setCurrentWidget(w.main_view)
    w.store.apply(s.records())
    w.model.reset()
    lab = w.lab  # made but not shown
    for _ in range(3):
        lab.refresh()  # what its timer does ten times a second
    assert lab.analysis.next_row == 0 and lab.analysis.decoded == 0
    w.show_lab()
    qtbot.waitUntil(lambda: lab.analysis.pending == 0, timeout=WAIT)
    assert lab.analysis.decoded == len(w.store)
    # each tick took at most its budget plus one row's work (never the whole backlog at once)
    assert len(lab.tick_ms) >= 2


def test_following_hands_pyqtgraph_only_the_latest_points(qtbot: Any) -> None:
    """However long the session, a refresh while following sets only the last two follow windows of points (the
    work per refresh is bounded); not following, every point the lab keeps."""
    from inspector.lab.core import SERIES_CAP
    from inspector.store import MessageStore
    from inspector.ui.timeline.lab_plots import FOLLOW_WINDOW_S, LabPlots
    from proxy.model import Message

    ms = 1_000_000
    a = LabAnalysis(MessageStore())
    n = SERIES_CAP  # 16 ms apart: 320 s of inputs
    for i in range(1, n + 1):
        a.tracker.message(1, C2S, {"t": "input", "seq": i}, i * 16 * ms, i * 16 * ms)
        if i % 2 == 0:
            a.tracker.message(1, S2C, {"t": "state", "ack": i}, i * 16 * ms, i * 16 * ms + 40 * ms)
    a.tracker.finish()
    a.store.apply([Message(1, 1, C2S, 0, b"{}", 16 * ms, 16 * ms),
                   Message(2, 1, C2S, 1, b"{}", (n + 1) * 16 * ms, (n + 1) * 16 * ms)])
    p = LabPlots()
    qtbot.addWidget(p)
    p.refresh(a, None)
    x = p._curves[(1, "delay")][1].xData  # what it was given (getData() is what is drawn in view)
    window = 2 * FOLLOW_WINDOW_S * 1000 / 16
    assert len(a.tracker.conns[1].delay) == n and len(x) <= window + 2
    assert len(p.delay_dots.points()) <= window + 2
    p.set_follow(False)
    p.refresh(a, None)
    assert len(p._curves[(1, "delay")][1].xData) == n

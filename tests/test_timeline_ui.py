"""The Timeline and Statistics docks in the real window (offscreen): plots and ladder fed by live demo traffic or
by records with chosen times, selection sync both ways, annotation badges and the detail note, CSV export.

Waits are ``qtbot.waitUntil``; the engine and its control endpoint run on a thread, the window attached over
loopback (``ThreadLink``).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QStyleOptionViewItem

from inspector.bridge import LinkOptions, ThreadLink
from inspector.store import MessageStore
from inspector.timeline.annotations import Kind
from inspector.timeline.stats import BIN_NS, Analysis
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import ROW_ROLE, Column
from inspector.ui.timeline.dock import StatsModel
from inspector.ui.timeline.ladder import HEADER_PX
from proxy.model import ConnectionOpened, DelayReason, Direction, Message, MessageState

WAIT = 10_000
MS = 1_000_000
C2S, S2C = Direction.C2S, Direction.S2C


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Any) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

    def make(options: LinkOptions | None = None, **kw: Any) -> MainWindow:
        kw.setdefault("link_factory", ThreadLink)
        w = MainWindow(options, settings=settings, **kw)
        qtbot.addWidget(w)
        w.resize(1360, 900)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


def selected_store_row(w: MainWindow) -> int | None:
    idx = w.table.currentIndex()
    return w.model.data(idx, ROW_ROLE) if idx.isValid() else None


def test_stats_model_passes_the_model_tester(qtmodeltester: Any) -> None:
    s = MessageStore()
    s.apply([Message(i + 1, 1 + i % 2, Direction(i % 3 == 0), i, b'{"type":"t%d"}' % (i % 4), i * MS, i * MS)
             for i in range(60)])
    a = Analysis(s)
    a.run_to_end()
    m = StatsModel()
    m.set_rows(a.stats.rows())
    assert m.rowCount() > 3
    qtmodeltester.check(m, force_py=True)
    m.set_rows(a.stats.rows(conn_id=1))
    qtmodeltester.check(m, force_py=True)


def test_live_demo_plots_match_the_table_and_clicks_select(qtbot: Any,
                                                           make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.02))
    assert not w.timeline_dock.isVisible()  # until asked for (issue 19): the table and detail get the room
    w.show_timeline()
    assert w.timeline_dock.isVisible() and w.timeline.plots.isVisible() and w.timeline.ladder.isVisible()
    qtbot.waitUntil(lambda: len(w.timeline.plots.data.rtt_x) >= 8, timeout=WAIT)
    tl = w.timeline
    w.pause_action.setChecked(True)  # freeze the store so plot, analysis and table describe the same rows
    qtbot.waitUntil(lambda: tl.analysis.pending == 0, timeout=WAIT)
    tl.refresh(force=True)
    d = tl.plots.data
    s = w.store
    # every point is a pong in the table, paired with the ping just before it on that connection
    table_rows = [w.model.data(w.model.index(i, 0), ROW_ROLE) for i in range(w.model.rowCount())]
    summaries = {r: w.model.data(w.model.index(i, Column.SUMMARY)) for i, r in enumerate(table_rows)}
    assert len(d.rtt_rows) >= 8
    t0 = s.t0_ns or 0
    for x, rtt, row in zip(d.rtt_x, d.rtt_ms, d.rtt_rows, strict=True):
        assert summaries[row].startswith('"pong ')
        n = summaries[row].strip('"').split()[1]
        ping = next(r for r in reversed(table_rows[: table_rows.index(row)]) if summaries[r] == f'"ping {n}"')
        assert x == pytest.approx((s.arrivals[ping] - t0) / 1e9)
        assert rtt == pytest.approx((s.releases[row] - s.arrivals[ping]) / 1e6)
    # throughput bins add up to the table's counts per direction
    for direction in Direction:
        n_dir = sum(1 for r in table_rows if s.dirs[r] == direction)
        assert sum(d.msgs_per_s[direction]) * BIN_NS / 1e9 == pytest.approx(n_dir)
    # clicking a point selects that message in the table; selecting in the table highlights it in the plots
    tl.plots.click_point(3)
    assert selected_store_row(w) == d.rtt_rows[3]
    assert "pair with" in tl.detail_note.text() and "round trip" in tl.detail_note.text()
    w.select_visible(2)
    assert tl.ladder.selected_row == selected_store_row(w)
    # a real mouse click on a real dot
    tl.plots.set_follow(True)
    tl.refresh(force=True)
    dots = tl.plots.rtt_dots.points()
    assert len(dots)
    vb = tl.plots.rtt_plot.vb
    scene_pos = vb.mapViewToScene(dots[-1].pos())
    view_pos = tl.plots.graphics.mapFromScene(scene_pos)
    qtbot.mouseClick(tl.plots.graphics.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(int(view_pos.x()),
                                                                                           int(view_pos.y())))
    qtbot.waitUntil(lambda: selected_store_row(w) == dots[-1].data(), timeout=WAIT)
    # statistics agree with the store
    w.timeline_dock.hide()
    w.stats_dock.show()
    w.stats_dock.raise_()
    tl.refresh(force=True)
    counts = {(r.direction, r.key): r.count for r in tl.stats_model.rows}
    pings = sum(1 for r in table_rows if s.dirs[r] == C2S and summaries[r].startswith('"ping'))
    assert counts[(C2S, "text ping")] == pings
    assert sum(counts.values()) == len(s)


def _fed_window(make_window: Callable[..., MainWindow]) -> tuple[MainWindow, MessageStore]:
    s = MessageStore()
    recs: list[Any] = [ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0)]
    mid = 0
    for i in range(300):  # 60 Hz for 5 s: input up (+50 ms latency), state down (+50 ms); a spike at 2 s
        t = 1_000 * MS + i * 16_666_667
        extra = 200 * MS if 120 <= i < 126 else 0
        mid += 1
        spike = ((DelayReason.SPIKE, extra),) if extra else ()
        recs.append(Message(mid, 1, C2S, i, b'{"type":"input","i":%d}' % i, t, t + 50 * MS + extra,
                            delays=((DelayReason.LATENCY, 50 * MS), *spike)))
        mid += 1
        recs.append(Message(mid, 1, S2C, i, b'{"type":"state","i":%d}' % i, t + 3 * MS, t + 53 * MS,
                            delays=((DelayReason.LATENCY, 50 * MS),)))
    mid += 1
    recs.append(Message(mid, 1, C2S, 300, pickle.dumps({"x": 1}, protocol=4), 6_100 * MS, None,
                        state=MessageState.HELD))
    s.apply(recs)
    w = make_window(None, store=s)
    w.central.setCurrentWidget(w.main_view)
    w.model.reset()
    w.timeline.analysis.run_to_end()
    w.timeline.refresh(force=True)
    return w, s


def test_ladder_places_arrows_at_the_recorded_times_and_aggregates(qtbot: Any,
                                                                   make_window: Callable[..., MainWindow]) -> None:
    w, s = _fed_window(make_window)
    lad = w.timeline.ladder
    qtbot.waitUntil(lambda: lad.height() > 150, timeout=WAIT)
    lad.set_follow(False)
    lad.ns_per_px = 0.5 * MS  # zoomed in: each message on its own
    lad.top_ns = 3_000 * MS
    arrows = lad.layout_arrows()
    assert arrows and all(a.count == 1 for a in arrows)
    for a in arrows:
        assert a.y_arrival == pytest.approx(HEADER_PX + (s.arrivals[a.row] - lad.top_ns) / lad.ns_per_px)
        if a.held:
            assert s.row_of(601) == a.row and a.y_release is None
        else:
            assert a.y_release == pytest.approx(lad.time_to_y(s.releases[a.row]))
            assert a.y_release - a.y_arrival == pytest.approx((s.releases[a.row] - s.arrivals[a.row]) / lad.ns_per_px)
    # the spike is visible as such
    lad.top_ns = 2_950 * MS
    assert any(a.spike for a in lad.layout_arrows())
    # zoomed out over the whole 5 s: aggregated, counts add up, the held message stays on its own
    lad.ns_per_px = 6_000 * MS / max(1, lad.height() - HEADER_PX)
    lad.top_ns = 900 * MS
    agg = lad.layout_arrows()
    assert any(a.count > 1 for a in agg)
    assert sum(a.count for a in agg) == len(s)
    assert sum(1 for a in agg if a.held) == 1
    # clicking an arrow selects its message in the table, and the table's selection is highlighted
    lad.ns_per_px = 0.5 * MS
    lad.top_ns = 3_000 * MS
    target = next(a for a in lad.layout_arrows() if a.direction is S2C and a.y_arrival > 60)
    x = int((lad.lane_x(2) + lad.lane_x(1)) / 2)
    qtbot.mouseClick(lad, Qt.MouseButton.LeftButton, pos=QPoint(x, int(target.y_arrival)))
    assert selected_store_row(w) == target.row
    w.select_visible(10)
    assert lad.selected_row == 10 and lad.top_ns <= s.arrivals[10] <= lad.top_ns + lad.span_ns
    pm = QPixmap(lad.size())
    lad.render(pm)  # paints with a selection, aggregates and a held bar without raising


def test_annotation_badges_and_detail_note(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w, s = _fed_window(make_window)
    held_row = s.row_of(601)
    assert held_row is not None
    notes = w.timeline.annotations(held_row)
    assert [n.kind for n in notes] == [Kind.PICKLE]
    pos = s.visible_position(held_row)
    assert pos is not None
    w.select_visible(pos)
    note = w.timeline.detail_note
    assert note.isVisibleTo(w) and "never unpickle" in note.text() and "lessons/pickle.md" in note.text()
    # the delegate paints a badge on that row and explains it in the tooltip
    delegate = w.table.itemDelegateForColumn(Column.SUMMARY)
    idx = w.model.index(pos, Column.SUMMARY)
    pm = QPixmap(400, 24)
    painter = QPainter(pm)
    opt = QStyleOptionViewItem()
    opt.rect = pm.rect()  # type: ignore[attr-defined]
    opt.font = w.table.font()  # type: ignore[attr-defined]
    delegate.paint(painter, opt, idx)
    painter.end()
    # a clean row has no lesson (it may show its pairing)
    w.select_visible(0)
    assert "pickle" not in note.text() and "Learn more" not in note.text()
    w.table.clearSelection()
    w.timeline.select_row(None)
    assert not note.isVisibleTo(w)


def test_pairing_by_key_and_csv_export(qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Any) -> None:
    w, _s = _fed_window(make_window)
    tl = w.timeline
    assert tl.set_pairing("json.i")
    tl.analysis.run_to_end()
    assert len(tl.analysis.pairer.pairs) == 300
    assert all(rt.injected_ns == 100 * MS or rt.injected_ns == 300 * MS for rt in tl.analysis.pairer.round_trips)
    assert not tl.set_pairing("ping (")
    assert "pattern" in tl.pair_error.text()
    tl.group_by.setText("json.type")
    assert tl.apply_group_by()
    out = tl.export_csv(str(tmp_path / "stats.csv"))
    assert out is not None
    text = (tmp_path / "stats.csv").read_text().splitlines()
    assert text[0].startswith("direction,type,count")
    assert "c2s,json.type=input,300," in "\n".join(text) and "s2c,json.type=state,300," in "\n".join(text)


# ------------------------------------------------------------------------------------------ issue 19, item 7


def _pings(times_s: list[float], rtt_ms: float = 2.0) -> list[Any]:
    """A ping at each time (seconds) and its pong ``rtt_ms`` later, on connection 1."""
    recs: list[Any] = [ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0)]
    mid = 0
    for i, t_s in enumerate(times_s):
        t = int(1_000 * MS + t_s * 1e9)
        rtt = int(rtt_ms * MS)
        recs.append(Message(mid + 1, 1, C2S, i, b"ping %d" % i, t, t))
        recs.append(Message(mid + 2, 1, S2C, i, b"pong %d" % i, t + rtt, t + rtt))
        mid += 2
    return recs


def _plotted(w: MainWindow, times_s: list[float], rtt_ms: float = 2.0) -> MainWindow:
    s = w.store
    s.apply(_pings(times_s, rtt_ms))
    w.model.reset()
    w.central.setCurrentWidget(w.main_view)
    w.show_timeline()
    w.timeline.analysis.run_to_end()
    w.timeline.refresh(force=True)
    return w


def test_message_rates_are_smooth_not_a_sawtooth(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """A ping every 0.5 s is 2 messages/s each way, drawn as a level line, not 4, 0, 4, 0 from 250 ms bins."""
    w = _plotted(make_window(None), [i * 0.5 for i in range(40)])
    _x, y = w.timeline.plots.msg_curves[C2S].getData()
    steady = list(y[8:-8])  # away from the start and the end
    assert steady and max(steady) - min(steady) <= 0.25 * (sum(steady) / len(steady)), steady
    assert sum(steady) / len(steady) == pytest.approx(2.0, rel=0.15)


def test_a_stopped_period_is_a_gap_not_a_slope(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """Pings stop for 10 s (a held message, Freeze): the round-trip line breaks, the rates drop to zero."""
    times = [i * 0.5 for i in range(10)] + [15 + i * 0.5 for i in range(10)]
    w = _plotted(make_window(None), times)
    x, y = w.timeline.plots.rtt_curve.getData()
    gap = [i for i in range(len(x)) if 5 < x[i] < 15]
    assert gap and all(math.isnan(y[i]) for i in gap), list(zip(x, y, strict=True))
    rx, ry = w.timeline.plots.msg_curves[C2S].getData()
    quiet = [v for t, v in zip(rx, ry, strict=True) if 8 < t < 14]
    assert quiet and max(quiet) == 0, quiet


def test_the_legend_sits_beside_the_plots_not_on_the_newest_data(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = _plotted(make_window(None), [i * 0.5 for i in range(20)])
    plots = w.timeline.plots
    assert not plots.rtt_plot.legend and not plots.msgs_plot.legend  # nothing drawn over the data
    text = plots.legend.text()
    for name in ("round trip", "added by sockscope", "configured", "client → server", "server → client"):
        assert name in text
    qtbot.waitUntil(lambda: plots.legend.isVisibleTo(w), timeout=WAIT)
    assert not plots.legend.geometry().intersects(plots.graphics.geometry())


def test_selecting_a_message_keeps_the_plots_following(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    w.show_timeline()
    tl = w.timeline
    qtbot.waitUntil(lambda: len(tl.plots.data.rtt_x) >= 10, timeout=WAIT)
    w.select_visible(1)  # an old message, long out of the ladder's view
    assert tl.follow_box.isChecked() and tl.plots.follow and tl.ladder.follow
    n = len(tl.plots.data.rtt_x)
    w.conditions.cols[C2S].latency.spin.setValue(30)  # the next slider move
    qtbot.waitUntil(lambda: len(tl.plots.data.rtt_x) >= n + 10, timeout=WAIT)
    tl.refresh(force=True)
    (_x0, x1), _ = tl.plots.rtt_plot.vb.viewRange()
    assert x1 >= tl.plots.data.rtt_x[-1]  # the newest round trip is in view


def test_the_timelines_checkboxes_are_visible_in_the_dark_look(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(None)
    w.central.setCurrentWidget(w.main_view)
    w.show_timeline()
    try:
        w.set_look("dark")
        assert w.colours.dark
        box = w.timeline.follow_box
        qtbot.waitUntil(lambda: box.isVisibleTo(w), timeout=WAIT)
        image = box.grab().toImage()
        bg = w.timeline.panel.palette().color(w.timeline.panel.backgroundRole())
        contrast = max(abs(image.pixelColor(x, y).lightness() - bg.lightness())
                       for x in range(min(image.width(), 24)) for y in range(image.height()))
        assert contrast >= 100, contrast  # the box's frame or tick stands out from the panel
    finally:
        w.set_look("system")

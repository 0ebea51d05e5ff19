"""The Timeline and Statistics docks in the real window (offscreen): plots and ladder fed by live demo traffic or
by records with chosen times, selection sync both ways, annotation badges and the detail note, CSV export.

Waits are ``qtbot.waitUntil``; the engine and its control endpoint run on a thread, the window attached over
loopback (``ThreadLink``).
"""

from __future__ import annotations

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

"""The window end to end (offscreen): live demo traffic, the detail pane, the filter bar, hold/edit/forward/drop
through to a real peer, the proxy dying, the start page, conditions, and a million-row store.

The engine and its control endpoint run on a thread of the test process and the window attaches to them over
loopback (``ThreadLink``), exactly as it attaches to its child proxy; waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import Link, LinkOptions, ThreadLink
from inspector.store import MessageStore
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from inspector.ui.pump import RecordPump
from proxy.conditions import Conditions
from proxy.model import CloseReason, Direction, Message, MessageState, Origin, Record
from tests.conftest import EchoServer, connect, recv_exact

WAIT = 10_000


@pytest.fixture
def settings(tmp_path: Any) -> QSettings:
    return QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot: Any, settings: QSettings) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(options: LinkOptions | None = None, **kw: Any) -> MainWindow:
        kw.setdefault("link_factory", ThreadLink)
        w = MainWindow(options, settings=settings, **kw)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


def wait_link(qtbot: Any, w: MainWindow) -> Link:
    qtbot.waitUntil(lambda: w.link is not None, timeout=WAIT)
    assert w.link is not None
    return w.link


def engine_of(w: MainWindow) -> ThreadLink:
    assert isinstance(w.link, ThreadLink) and w.link.engine is not None
    return w.link


def publish(w: MainWindow, records: list[Record]) -> None:
    """Records published by the window's engine (as if it had relayed them): they reach the window over the
    control protocol like any other."""
    engine = engine_of(w).engine
    engine.call(lambda: [engine.server.publish(r) for r in records])


def engine_conditions(w: MainWindow) -> Conditions:
    engine = engine_of(w).engine
    return engine.call(engine.server.conditions_for, None)  # type: ignore[no-any-return]


def summaries(w: MainWindow) -> list[str]:
    return [w.model.data(w.model.index(i, Column.SUMMARY)) for i in range(w.model.rowCount())]


def test_demo_traffic_appears_decoded(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: w.model.rowCount() >= 6, timeout=WAIT)
    text = summaries(w)
    assert text[0].startswith('"Hello from the exercise server')
    assert '"Ping received! 📥"' in text and '"ping 1"' in text and '"pong 1"' in text
    assert w.model.data(w.model.index(0, Column.DIR)) == "←"
    assert w.conn_model.rowCount() == 1
    assert "listening 127.0.0.1:" in w.st_link.text()
    w._rate_timer.stop()  # the count must follow the rows themselves, not the once-a-second status refresh
    n = w.model.rowCount()
    qtbot.waitUntil(lambda: w.model.rowCount() > n, timeout=WAIT)
    assert w.filter_bar.count.text() == f"{w.model.rowCount()} messages"


def test_selecting_a_row_fills_the_detail_pane_and_highlights_hex(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    payload = b'{"type":"ping","id":3}'
    with connect(link.listen_addr[1]) as c:
        c.sendall(payload)
        assert recv_exact(c, len(payload)) == payload
        qtbot.waitUntil(lambda: w.model.rowCount() >= 2, timeout=WAIT)
    assert w.model.data(w.model.index(0, Column.SUMMARY)) == payload.decode()
    w.select_visible(0)
    assert "#" in w.detail.title.text() and "json" in w.detail.title.text()
    assert w.detail.hex.toPlainText().startswith("00000000  7b 22 74 79")
    root = w.detail.tree.topLevelItem(0)
    assert root is not None and root.childCount() == 2
    w.detail.tree.setCurrentItem(root)
    assert w.detail.hex.highlighted == (0, len(payload))
    assert len(w.detail.hex.extraSelections()) == 4  # two lines, hex and ASCII columns
    assert w.detail.copy("bytes") == repr(payload)
    assert w.detail.copy("hex").startswith("7b 22")


def test_filter_bar_filters_and_shows_errors_inline(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: w.model.rowCount() >= 8, timeout=WAIT)
    w.filter_bar.set_text('s2c and text contains "pong"')
    w.filter_bar.apply()
    n = w.model.rowCount()
    assert 0 < n < len(w.store)
    qtbot.waitUntil(lambda: w.model.rowCount() > n + 2, timeout=WAIT)  # new rows respect the filter
    assert all(s.startswith('"pong') for s in summaries(w))
    assert w.filter_bar.history()[0] == 's2c and text contains "pong"'
    w.filter_bar.set_text("size > ")
    w.filter_bar.apply()
    assert w.filter_bar.error.isVisible() or not w.filter_bar.error.isHidden()
    assert "column" in w.filter_bar.error.text()
    assert all(s.startswith('"pong') for s in summaries(w))  # a bad filter leaves the last good one
    w.filter_bar.set_text("")
    w.filter_bar.apply()
    assert w.model.rowCount() == len(w.store)


def test_hold_edit_forward_and_drop_reach_the_real_peer(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        # Edit & forward
        w.intercept.hold_c2s.click()
        qtbot.waitUntil(lambda: w.intercept.hold_c2s.isEnabled(), timeout=WAIT)
        _wait_armed(qtbot, link)
        c.sendall(b"secret")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        assert w.held_model.rowCount() == 1 and "1 held" in w.held_badge.text()
        mid = w.intercept.selected_id()
        assert mid is not None
        dlg = w.edit_and_forward(mid)
        assert dlg is not None
        dlg.edit.setPlainText("SECRET!")
        dlg.accept()
        assert recv_exact(c, 7) == b"SECRET!"
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
        row = w.store.row_of(mid)
        assert row is not None and w.store.payload(row) == b"SECRET!" and w.store.origin(row) is Origin.EDITED
        # Drop
        w.hold_next(Direction.C2S)
        _wait_armed(qtbot, link)
        c.sendall(b"dropme")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        w.intercept.drop_button.click()
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
        dropped = w.store.row_of(mid + 2) if w.store.row_of(mid + 2) is not None else len(w.store) - 1
        assert MessageState.DROPPED in {w.store.state(r) for r in range(len(w.store))}
        # Forward (as is): the dropped bytes never arrive, the forwarded ones do
        w.hold_next(Direction.C2S)
        _wait_armed(qtbot, link)
        c.sendall(b"fine")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        w.intercept.forward_button.click()
        assert recv_exact(c, 4) == b"fine"
        del dropped


def _wait_armed(qtbot: Any, link: Link) -> None:
    """Commands are asynchronous: a no-op round trip through the engine's loop orders us after hold_next."""
    fut = link.command("ping")
    qtbot.waitUntil(fut.done, timeout=WAIT)
    assert fut.exception() is None


def test_window_survives_the_proxy_dying(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    link = wait_link(qtbot, w)
    qtbot.waitUntil(lambda: w.model.rowCount() >= 3, timeout=WAIT)
    assert isinstance(link, ThreadLink)
    link.kill()
    qtbot.waitUntil(lambda: not w.banner.isHidden(), timeout=WAIT)
    assert "proxy stopped" in w.banner_text.text().lower()
    rows = w.model.rowCount()
    w.filter_bar.set_text("c2s")
    w.filter_bar.apply()  # still usable
    assert 0 < w.model.rowCount() < rows
    w.hold_next(Direction.C2S)  # a command to a dead proxy is reported, not raised
    assert "not running" in w.log.toPlainText()
    w.restart_link()
    qtbot.waitUntil(lambda: w.link is not None and w.link.alive and w.link is not link, timeout=WAIT)


def test_start_page_asks_and_reports_errors(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    try:
        w = make_window(None)
        assert w.central.currentWidget() is w.start_page
        page = w.start_page
        page.target.setText("127.0.0.1:7777")
        page.listen_port.setValue(busy.getsockname()[1])
        assert "7777" in page.change.text() and str(busy.getsockname()[1]) in page.change.text()
        page.start_button.click()
        qtbot.waitUntil(lambda: "already in use" in page.error.text(), timeout=WAIT)
        assert w.central.currentWidget() is page and w.link is None
        page.target.setText("nonsense:port")
        page.start_button.click()
        assert "bad port" in page.error.text()
    finally:
        busy.close()


def test_conditions_panel_changes_the_proxys_conditions_live(qtbot: Any,
                                                            make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0)))
    wait_link(qtbot, w)
    panel = w.conditions
    panel.cols[Direction.C2S].latency.spin.setValue(100)
    panel.cols[Direction.S2C].latency.spin.setValue(100)
    panel.cols[Direction.S2C].jitter.spin.setValue(20)
    qtbot.waitUntil(lambda: engine_conditions(w).s2c.jitter.ms == 20, timeout=WAIT)
    c = engine_conditions(w)
    assert c.c2s.latency_ms == 100 and c.s2c.latency_ms == 100
    assert "added round trip ≈ 220 ms" in panel.readout.text()
    assert "loss shows up as" in panel.note.text()
    panel.select_preset("Mobile 3G")
    qtbot.waitUntil(lambda: engine_conditions(w) == panel.value(), timeout=WAIT)
    assert "Unity" in panel.preset_source.text()
    panel.cols[Direction.S2C].spike.click()  # a spike now: the engine's global s2c conditions gain one
    qtbot.waitUntil(lambda: len(engine_conditions(w).s2c.spikes) == len(panel.value().s2c.spikes) + 1, timeout=WAIT)
    panel.cols[Direction.C2S].freeze.click()
    qtbot.waitUntil(lambda: engine_conditions(w).c2s.frozen, timeout=WAIT)
    assert "FROZEN" in panel.readout.text()
    assert "failed" not in w.log.toPlainText() and "Could not" not in w.log.toPlainText()


def test_connection_actions_and_held_badge(qtbot: Any, make_window: Callable[..., MainWindow],
                                          echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hi")
        assert recv_exact(c, 2) == b"hi"
        w.hold_next(Direction.C2S)
        _wait_armed(qtbot, link)
        c.sendall(b"ping")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        assert "1 held" in w.st_held.text() and "1 held" in w.intercept_dock.windowTitle()
        w.intercept.forward_all.emit()
        assert recv_exact(c, 4) == b"ping"
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
        conn = w.store.conn_ids[0]
        w.conn_table.selectRow(0)
        w.conn_reset.click()
        qtbot.waitUntil(lambda: not w.store.connections[conn].is_open, timeout=WAIT)
    assert w.store.connections[conn].reason is CloseReason.PROXY_RESET
    assert "failed" not in w.log.toPlainText() and "Could not" not in w.log.toPlainText()


@pytest.mark.slow
def test_a_million_rows_scroll_and_filter(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    store = MessageStore()
    payload = b"x" * 63
    for start in range(0, 1_000_000, 100_000):
        store.apply([Message(i + 1, 1 + (i & 3), Direction(i & 1), i, payload + bytes([i & 0x7F]), i, i)
                     for i in range(start, start + 100_000)])
    w = make_window(None, store=store)
    w.central.setCurrentWidget(w.main_view)
    w.model.reset()
    assert w.model.rowCount() == 1_000_000
    w.table.scrollToBottom()
    w.select_visible(999_999)
    assert w.detail.row == 999_999
    assert w.model.data(w.model.index(999_999, Column.NUMBER)) == "1000000"
    w.filter_bar.set_text("conn == 2 and s2c")
    w.filter_bar.apply()
    assert w.filtering  # sliced: the window keeps painting
    qtbot.waitUntil(lambda: not w.filtering, timeout=60_000)
    assert w.model.rowCount() == 250_000
    w.table.scrollToTop()
    assert w.model.data(w.model.index(0, Column.CONN)) == "#2"


def test_pump_applies_in_batches(qtbot: Any) -> None:
    store = MessageStore()
    link = Link()  # only its queue is used
    pump = RecordPump(store, link)
    batches: list[int] = []
    pump.applied.connect(lambda r: batches.append(len(store) - r.first_new_row))
    link.events.put_many([Message(i, 1, Direction.C2S, i, b"x", i, i) for i in range(1, 1001)])
    pump.set_link(link)
    qtbot.waitUntil(lambda: batches == [1000], timeout=WAIT)
    # a flood (1,000 records in a batch): the table is repainted half as often; a trickle: at ~30 a second again
    from inspector.ui.pump import BUSY_INTERVAL_MS, PUMP_INTERVAL_MS

    assert pump._timer.interval() == BUSY_INTERVAL_MS
    link.events.put_many([Message(i, 1, Direction.C2S, i, b"x", i, i) for i in range(1001, 1004)])
    qtbot.waitUntil(lambda: len(store) == 1003, timeout=WAIT)
    assert pump._timer.interval() == PUMP_INTERVAL_MS and batches == [1000, 3]


def test_a_flood_is_shown_after_what_was_due(qtbot: Any) -> None:
    """Under a flood the timer's batch is applied, then what was already due runs (here a timer that fires on
    every turn of the event loop), then the batch is shown; a direct call shows at once; every batch is shown
    once, in order."""
    from PySide6.QtCore import QTimer

    from inspector.ui.pump import BUSY_BATCH

    store = MessageStore()
    link = Link()
    pump = RecordPump(store, link)
    shown: list[int] = []
    pump.applied.connect(lambda r: shown.append(r.first_new_row))
    between: list[bool] = []  # per turn: applied but not shown yet?
    turn = QTimer()
    turn.setInterval(0)
    turn.timeout.connect(lambda: between.append(len(store) > 0 and not shown))
    turn.start()
    n = BUSY_BATCH * 2
    link.events.put_many([Message(i, 1, Direction.C2S, i, b"x", i, i) for i in range(1, n + 1)])
    pump.set_link(link)
    qtbot.waitUntil(lambda: shown == [0], timeout=WAIT)
    turn.stop()
    assert any(between)  # something due ran between the apply and the show
    link.events.put_many([Message(i, 1, Direction.C2S, i, b"x", i, i) for i in range(n + 1, 2 * n + 1)])
    pump.stop()
    pump.pump()  # a direct call (tests, "take what is queued"): shown before it returns
    assert shown == [0, n] and len(store) == 2 * n


@pytest.mark.parametrize("mode", ["fast", "wait-reply", "timing"])
def test_replay_and_resend_reach_the_real_peer(qtbot: Any, make_window: Callable[..., MainWindow],
                                               echo_server: EchoServer, mode: str) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        for word in (b"one", b"two"):
            c.sendall(word)
            assert recv_exact(c, 3) == word
        qtbot.waitUntil(lambda: len(w.store) >= 4, timeout=WAIT)
        first = w.store.conn_ids[0]
        # resend a copy, edited, into the live connection: the echo comes back to the client
        dlg = w.edit_and_resend(0)
        assert dlg is not None
        dlg.edit.setPlainText("ONE")
        dlg.accept()
        assert recv_exact(c, 3) == b"ONE"
    qtbot.waitUntil(lambda: not w.store.connections[first].is_open, timeout=WAIT)
    w.conn_table.selectRow(0)
    w.replay(mode)

    def replay_done() -> bool:
        new = [cid for cid in w.store.connections if cid != first]
        if not new:
            return False
        rows = [r for r in range(len(w.store)) if w.store.conn_ids[r] == new[0] and w.store.dirs[r] == 1]
        return b"".join(w.store.payload(r) for r in rows) == b"onetwoONE"

    qtbot.waitUntil(replay_done, timeout=WAIT)


def test_a_rule_from_the_intercept_panel_can_take_a_share(qtbot: Any, make_window: Callable[..., MainWindow],
                                                        echo_server: EchoServer) -> None:
    """"Drop 50 % of the client's messages", made in the panel, reaches the real engine: some messages are dropped,
    the others echoed, each shown in its state; the list says the share."""
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    panel = w.intercept
    panel.rule_filter.setText('c2s and text ~ "m"')
    panel.rule_action.setCurrentText("drop")
    panel.rule_share.setValue(50)
    panel.add_rule()
    assert panel.rules == [{"filter": 'c2s and text ~ "m"', "action": "drop",
                            "name": 'drop 50 % when c2s and text ~ "m"', "percent": 50.0}]
    assert panel.rule_list.item(0).text() == 'when c2s and text ~ "m"  →  drop (50 % of them)'
    server = engine_of(w).engine.server
    qtbot.waitUntil(lambda: [r.percent for r in server.shared.rules] == [50.0], timeout=WAIT)  # in force
    with connect(link.listen_addr[1]) as c:
        states: list[MessageState] = []
        for i in range(20):
            before = len(w.store)
            c.sendall(b"m%02d" % i)

            def settled(before: int = before) -> bool:
                rows = [r for r in range(before, len(w.store)) if w.store.dirs[r] == Direction.C2S]
                return bool(rows) and w.store.state(rows[0]) in (MessageState.FORWARDED, MessageState.DROPPED)

            qtbot.waitUntil(settled, timeout=WAIT)
            row = next(r for r in range(before, len(w.store)) if w.store.dirs[r] == Direction.C2S)
            states.append(w.store.state(row))
            if states[-1] is MessageState.FORWARDED:
                assert recv_exact(c, 3) == b"m%02d" % i
    dropped = states.count(MessageState.DROPPED)
    assert 0 < dropped < 20  # a share: neither none nor all (the engine's draws are seeded: the same every run)


def test_rules_from_the_intercept_panel_hold_and_delay(qtbot: Any, make_window: Callable[..., MainWindow],
                                                       echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    panel = w.intercept
    panel.rule_filter.setText("c2s and size >")  # a broken filter: the error shows, nothing is sent
    panel.add_rule()
    assert panel.rule_error.isVisibleTo(w) and not panel.rules
    panel.rule_filter.setText('c2s and text ~ "secret"')
    panel.rule_action.setCurrentText("hold")
    panel.add_rule()
    assert panel.rule_list.count() == 1
    with connect(link.listen_addr[1]) as c:
        # the rule reaches the engine asynchronously: wait until a matching message is really held
        def held_one() -> bool:
            return w.store.held_count >= 1

        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        c.sendall(b"secret")
        qtbot.waitUntil(held_one, timeout=WAIT)
        w.forward_all()
        assert recv_exact(c, 6) == b"secret"
        panel.rule_list.setCurrentRow(0)
        panel.remove_rule()
        assert panel.rules == []

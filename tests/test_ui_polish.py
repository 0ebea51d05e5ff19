"""The window's last gaps (issue 6): compose a message from scratch, "decode as" per connection (with a struct
layout) from the Connections panel and the detail pane, and the latency sliders measured on live demo traffic.

Engines and their control endpoints run on a thread of the test process, the window attached over loopback
(``ThreadLink``), with real sockets; waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from PySide6.QtCore import QPoint, QSettings
from PySide6.QtGui import QKeySequence

from inspector.bridge import LinkOptions, ThreadLink
from inspector.decode import default_registry
from inspector.ui.decode_as import DecodeAsDialog
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from proxy.model import ConnectionOpened, Direction, Message, MessageState, Origin
from tests.conftest import EchoServer, connect, recv_exact
from tests.test_ui_window import WAIT, publish, wait_link

LAYOUT = "<Hff12sB player_id x y name state"
RECORD = struct.pack("<Hff12sB", 7, 1.5, 2.5, b"bob", 1)


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Any) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

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


@pytest.fixture(autouse=True)
def fresh_decoder_choices() -> Iterator[None]:
    """"Decode as" lives in the process-wide registry (filters and exports share it): restore it after."""
    reg = default_registry()
    saved = (dict(reg.decode_as._by), dict(reg.struct_formats._by))
    yield
    reg.decode_as._by.clear()
    reg.decode_as._by.update(saved[0])
    reg.struct_formats._by.clear()
    reg.struct_formats._by.update(saved[1])


def _rows(w: MainWindow, conn: int | None = None, origin: Origin | None = None) -> list[int]:
    s = w.store
    return [r for r in range(len(s)) if (conn is None or s.conn_ids[r] == conn)
            and (origin is None or s.origin(r) is origin)]


# ------------------------------------------------------------------------------------------------ compose


def test_compose_sends_new_messages_both_ways_marked_injected(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    assert w.compose_action.shortcut() == QKeySequence("Ctrl+Shift+E") and w.compose_action.isEnabled()
    menus = {a.text(): a.menu() for a in w.menuBar().actions()}
    assert w.compose_action in menus["&Intercept"].actions()
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        qtbot.waitUntil(lambda: len(w.store) >= 2, timeout=WAIT)
        conn = w.store.conn_ids[0]
        w.select_visible(0)

        # the table's context menu offers it too
        w._table_menu(QPoint(1, 1))
        assert w.context_menu is not None and w.compose_action in w.context_menu.actions()
        w.context_menu.close()

        dlg = w.compose()
        assert dlg.conn_id() == conn and dlg.chosen_direction() is Direction.C2S
        assert dlg.form.currentText() == "text" and {"json", "msgpack", "hex"} <= {
            dlg.form.itemText(i) for i in range(dlg.form.count())}
        assert not dlg.ok_button.isEnabled()  # nothing typed yet
        # JSON, with a mistake first: shown inline, Send disabled
        dlg.form.setCurrentText("json")
        dlg.edit.setPlainText('{"type": "ping", "id": }')
        assert not dlg.ok_button.isEnabled() and "⚠" in dlg.error.text()
        dlg.edit.setPlainText('{"type": "ping", "id": 7}')
        assert dlg.ok_button.isEnabled() and dlg.preview.text().startswith("bytes: 7b 22")
        # c2s: the server gets it (and echoes it back to the client)
        dlg.send_keep_open()
        sent = b'{"type": "ping", "id": 7}'
        assert recv_exact(c, len(sent)) == sent
        # s2c, msgpack: the client gets it straight from "the server"
        dlg.direction.setCurrentIndex(1)
        dlg.form.setCurrentText("msgpack")
        dlg.edit.setPlainText('{"type": "pong", "id": 7}')
        dlg.accept()
        packed = msgpack.packb({"type": "pong", "id": 7})
        assert recv_exact(c, len(packed)) == packed

        def injected() -> list[int]:
            return _rows(w, conn, Origin.INJECTED)

        qtbot.waitUntil(lambda: len(injected()) == 2, timeout=WAIT)
    rows = injected()
    s = w.store
    assert [(Direction(s.dirs[r]), s.payload(r)) for r in rows] == [(Direction.C2S, sent), (Direction.S2C, packed)]
    for r in rows:
        pos = s.visible_position(r)
        assert pos is not None
        assert w.model.data(w.model.index(pos, Column.STATE)).startswith("injected")
        assert w.model.data(w.model.index(pos, 0), 8) == w.colours.special_bg  # BackgroundRole


def test_compose_without_an_open_connection_cannot_send(qtbot: Any, make_window: Callable[..., MainWindow],
                                                        echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    dlg = w.compose()
    dlg.edit.setPlainText("hello")
    assert dlg.conn_id() is None and not dlg.ok_button.isEnabled() and "no open connection" in dlg.conn.currentText()
    # a connection opens while the dialog is up: it is offered at once
    with connect(link.listen_addr[1]) as c:
        qtbot.waitUntil(lambda: dlg.conn_id() is not None, timeout=WAIT)
        assert dlg.ok_button.isEnabled()
        dlg.accept()
        assert recv_exact(c, 5) == b"hello"  # sent c2s, echoed by the server


# ------------------------------------------------------------------------------------------------ decode as


def _fed_window(qtbot: Any, make_window: Callable[..., MainWindow]) -> MainWindow:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0)))
    wait_link(qtbot, w)
    publish(w, [
        ConnectionOpened(1, ("127.0.0.1", 40001), ("127.0.0.1", 5555), 0),
        ConnectionOpened(2, ("127.0.0.1", 40002), ("127.0.0.1", 5555), 0),
        Message(1, 1, Direction.C2S, 0, RECORD, 1_000, 2_000),
        Message(2, 2, Direction.C2S, 0, RECORD, 3_000, 4_000),
        Message(3, 1, Direction.S2C, 0, b'{"ok": true}', 5_000, 6_000),
        Message(4, 1, Direction.C2S, 1, RECORD, 7_000, None, Origin.LIVE, MessageState.HELD),
    ])
    qtbot.waitUntil(lambda: len(w.store) == 4 and w.held_model.rowCount() == 1, timeout=WAIT)
    return w


def _summary(w: MainWindow, row: int) -> str:
    pos = w.store.visible_position(row)
    assert pos is not None
    return str(w.model.data(w.model.index(pos, Column.SUMMARY)))


def test_decode_as_from_the_connections_panel_with_a_struct_layout(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = _fed_window(qtbot, make_window)
    assert _summary(w, 0).startswith("07 00 00 00")  # auto cannot know the layout
    w.filter_bar.set_text("struct.player_id == 7")
    w.filter_bar.apply()
    assert w.model.rowCount() == 0

    w.conn_table.selectRow(0)
    w._conn_menu(QPoint(1, 1))
    assert w.context_menu is not None
    titles = [a.text() for a in w.context_menu.actions()]
    assert "Decode #1 both directions as" in titles and any(t.startswith("Decode as…") for t in titles)
    w.context_menu.close()

    dlg = w.decode_connection_as(1, Direction.C2S)
    assert isinstance(dlg, DecodeAsDialog)
    dlg.decoder.setCurrentText("struct")
    assert not dlg.ok_button.isEnabled() and "needs a layout" in dlg.error.text()
    dlg.struct_format.setText("<Hzz player_id")
    assert not dlg.ok_button.isEnabled() and "unknown struct code" in dlg.error.text()
    dlg.struct_format.setText(LAYOUT)
    assert dlg.ok_button.isEnabled() and "player_id=7" in dlg.preview.text()
    dlg.accept()

    # the cached summaries of connection 1, c2s, are decoded again; connection 2 and s2c are left alone
    assert _summary(w, 0).startswith("player_id=7 x=1.5 y=2.5 name='bob' state=1")
    assert w.decoding.summary(1).startswith("07 00 00 00")  # hidden by the filter now
    assert str(w.held_model.data(w.held_model.index(0, 4))).startswith("player_id=7")
    # the filter over a decoded field was applied again with the new decoder
    assert [w.store.conn_ids[w.store.visible[i]] for i in range(w.model.rowCount())] == [1, 1]
    w.filter_bar.set_text("")
    w.filter_bar.apply()
    assert _summary(w, 1).startswith("07 00 00 00") and _summary(w, 2) == '{"ok": true}'

    # the quick submenu: connection 1, both directions, as hex (replaces the per-direction choice)
    w._conn_menu(QPoint(1, 1))
    assert w.context_menu is not None
    sub = next(a.menu() for a in w.context_menu.actions() if a.text() == "Decode #1 both directions as")
    next(a for a in sub.actions() if a.text() == "hex").trigger()
    w.context_menu.close()
    assert _summary(w, 0).startswith("07 00 00 00") and _summary(w, 2).startswith("7b 22")
    assert w.decoding.current_decode_as(1, Direction.C2S) == "hex"


def test_decode_as_from_the_detail_pane_asks_for_the_struct_layout(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = _fed_window(qtbot, make_window)
    pos = w.store.visible_position(1)  # connection 2
    assert pos is not None
    w.select_visible(pos)
    detail = w.detail
    assert detail.struct_format.isHidden()
    detail.decode_as.setCurrentText("struct")
    detail.decode_as.activated.emit(detail.decode_as.currentIndex())
    assert not detail.struct_format.isHidden()  # struct cannot guess: the layout box appears
    assert "no struct format" in detail.warnings.text()
    assert not detail.set_struct_format("<Hq!! nope")
    assert "struct layout" in detail.warnings.text()
    assert detail.set_struct_format(LAYOUT)
    assert _summary(w, 1).startswith("player_id=7")
    assert _summary(w, 0).startswith("07 00 00 00")  # connection 1 keeps auto
    assert "struct" in detail.title.text() and detail.tree.topLevelItemCount() == 5
    detail.decode_as.setCurrentText("auto")
    detail.decode_as.activated.emit(detail.decode_as.currentIndex())
    assert _summary(w, 1).startswith("07 00 00 00") and detail.struct_format.isHidden()


# ------------------------------------------------------------------------------------------------ latency


@pytest.mark.slow
def test_latency_sliders_delay_the_demo_pings_by_what_they_say(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.1))
    wait_link(qtbot, w)
    s = w.store

    def delays_ms(d: Direction, n: int = 3) -> list[float]:
        """The proxy's added delay (release - arrival) of the last ``n`` released pings/pongs."""
        out: list[float] = []
        for r in range(len(s) - 1, -1, -1):
            if s.dirs[r] == d and s.sizes[r] <= 8 and (delay := s.added_delay_ns(r)) is not None:
                out.append(delay / 1e6)
                if len(out) == n:
                    break
        return out if len(out) == n else []

    qtbot.waitUntil(lambda: bool(delays_ms(Direction.C2S)) and bool(delays_ms(Direction.S2C)), timeout=WAIT)
    assert max(delays_ms(Direction.C2S) + delays_ms(Direction.S2C)) < 50  # pass-through: nothing added

    slack = 80.0  # scheduling on a busy test machine; the lower bound is exact

    def settled(c2s: float, s2c: float) -> bool:
        up, down = delays_ms(Direction.C2S), delays_ms(Direction.S2C)
        return (bool(up) and bool(down) and all(c2s - 0.5 <= x <= c2s + slack for x in up)
                and all(s2c - 0.5 <= x <= s2c + slack for x in down))

    cols = w.conditions.cols

    def drag(d: Direction, ms: int) -> None:  # the slider to the position of ``ms`` on its stepped scale
        ls = cols[d].latency
        ls.slider.setValue(ls.position_of(ms))

    drag(Direction.C2S, 150)
    drag(Direction.S2C, 100)
    assert cols[Direction.C2S].latency.spin.value() == 150 and cols[Direction.S2C].latency.spin.value() == 100
    assert "added round trip ≈ 250 ms" in w.conditions.readout.text()
    qtbot.waitUntil(lambda: settled(150, 100), timeout=WAIT)

    drag(Direction.C2S, 300)  # grows by another 150 ms
    drag(Direction.S2C, 0)
    qtbot.waitUntil(lambda: settled(300, 0), timeout=WAIT)
    assert w.conditions.summary() == "+300 ms RTT"

"""The window over a UDP proxy (issue 21): flows in the Connections panel, datagrams as decoded rows, the datagram
impairments set live from the Conditions panel (loss, duplicate, corrupt) showing in the rows and the detail pane,
a flow ending on its idle timeout, and ``sockscope demo --udp``.

The engine and its control endpoint run on a thread of the test process (``ThreadLink``) or in the child process
``sockscope demo --udp`` starts (``ChildProcessLink``); the window attaches over loopback either way. Real UDP
sockets on 127.0.0.1; waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QSettings, Qt

from inspector import app
from inspector.bridge import ChildProcessLink, LinkOptions, ThreadLink
from inspector.ui.conditions_dock import ALL_LOST
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from inspector.ui.side_models import ConnectionsModel
from proxy.conditions import Conditions
from proxy.model import CloseReason, Direction, MessageState, Origin
from proxy.presets import PRESETS
from tests.test_ui_window import WAIT, wait_link

TIMEOUT = 2.0


class UdpEcho:
    """A UDP echo server on 127.0.0.1 that counts what it got (a real peer for the flows)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            if self._stop.is_set():
                return
            self.got.append(data)
            self.sock.sendto(data, addr)

    def close(self) -> None:
        self._stop.set()
        self.sock.sendto(b"", self.sock.getsockname())  # wakes recvfrom
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.close()


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


def udp_window(make_window: Callable[..., MainWindow], qtbot: Any, echo: UdpEcho, **kw: Any) -> tuple[MainWindow, int]:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo.port), tcp=False, udp=True, **kw))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None and link.transports == ("udp",)
    return w, link.listen_addr[1]


def client() -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(TIMEOUT)
    return c


def rows_of(w: MainWindow, pred: Callable[[int], bool]) -> list[int]:
    s = w.store
    return [r for r in range(len(s)) if pred(r)]


def state_tip(w: MainWindow, row: int) -> str:
    pos = w.store.visible_position(row)
    assert pos is not None
    return str(w.model.data(w.model.index(pos, Column.STATE), Qt.ItemDataRole.ToolTipRole))


def state_text(w: MainWindow, row: int) -> str:
    pos = w.store.visible_position(row)
    assert pos is not None
    return str(w.model.data(w.model.index(pos, Column.STATE)))


def set_live(qtbot: Any, w: MainWindow, edit: Callable[[], None], check: Callable[[Conditions], bool]) -> None:
    """Edit the Conditions panel as a user does, then wait until the engine has the change (it is sent over the
    control protocol a moment after the last edit)."""
    edit()
    assert w.conditions.change_pending
    engine = w.link.engine  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: check(engine.call(engine.server.conditions_for, None)), timeout=WAIT)


def pos(seq: int) -> bytes:
    return json.dumps({"type": "pos", "seq": seq, "x": 1.5, "y": 2.5}).encode()


@pytest.mark.timeout(60)
def test_a_udp_echo_game_shows_its_datagrams_decoded_and_its_flow(
        qtbot: Any, qtmodeltester: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    qtmodeltester.check(w.model, force_py=True)  # one model per tester: the Connections one in the idle test
    with client() as c:
        for i in range(3):
            c.sendto(pos(i), ("127.0.0.1", port))
            assert c.recvfrom(100)[0] == pos(i)
    qtbot.waitUntil(lambda: w.model.rowCount() == 6, timeout=WAIT)
    summaries = [w.model.data(w.model.index(i, Column.SUMMARY)) for i in range(6)]
    assert summaries[0] == pos(0).decode() and summaries[1] == pos(0).decode()  # each datagram one row, as JSON
    assert [w.model.data(w.model.index(i, Column.DIR)) for i in range(2)] == ["→", "←"]
    [conn] = w.store.connections.values()
    assert conn.is_udp
    cm = w.conn_model
    assert cm.data(cm.index(0, 0)) == f"● #{conn.conn_id} udp"
    assert cm.data(cm.index(0, cm.FRAMING)) == "—"
    assert "framing does not apply to UDP" in cm.data(cm.index(0, cm.FRAMING), Qt.ItemDataRole.ToolTipRole)
    assert cm.data(cm.index(0, cm.STATE)) in ("active", "idle 1 s of 60 s")
    tip = cm.data(cm.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert "UDP flow" in tip and "after 60 s without a datagram" in tip
    # framing does not apply: the menus and the toolbar say so instead of offering framings
    menu = w.framing_control.menu(w.menuBar().addMenu("x"), conn.conn_id)
    assert "none for UDP" in menu.title()
    assert [a.text() for a in menu.actions()] == ["Framing does not apply to UDP: each datagram is one message, "
                                                  "exactly as it was sent (the network keeps datagram boundaries)"]
    assert not w.framing_control.choose(conn.conn_id, "lines")
    assert not w.framing_combo.isEnabled() and "UDP only" in w.framing_combo.toolTip()
    assert w.conn_table.isColumnHidden(cm.FRAMING)  # UDP only: no framing anywhere
    w.select_visible(0)
    assert "framing does not apply" in w.detail.framing_note.text()
    w._update_status()
    assert w.st_conns.text() == "1 open / 1 UDP flow"  # a flow is not called a connection
    # the timeline pairs each datagram with its answer by their fields (here the echo: the same seq)
    w.timeline.analysis.run_to_end()
    rts = [rt for rt in w.timeline.analysis.pairer.round_trips if rt.pair.conn_id == conn.conn_id]
    assert len(rts) == 3, rts
    assert w.conditions.udp and w.conditions.burst_button.isVisibleTo(w.conditions)


@pytest.mark.timeout(60)
def test_loss_100_set_live_drops_the_next_datagrams_with_why_and_the_echo_stops(
        qtbot: Any, qtmodeltester: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    with client() as c:
        c.sendto(pos(0), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(0)
        loss = w.conditions.cols[Direction.C2S].loss
        assert loss.maximum() == 100  # UDP: a datagram can be lost for good
        set_live(qtbot, w, lambda: loss.setValue(100), lambda cond: cond.c2s.burst_loss == ALL_LOST)
        for i in range(1, 4):
            c.sendto(pos(i), ("127.0.0.1", port))
        dropped = lambda: rows_of(w, lambda r: w.store.state(r) is MessageState.DROPPED)  # noqa: E731
        qtbot.waitUntil(lambda: len(dropped()) == 3, timeout=WAIT)
        for r in dropped():
            assert w.store.direction(r) is Direction.C2S
            assert state_text(w, r) == "dropped"
            assert state_tip(w, r) == "dropped, origin live\nlost: loss 100 % (every datagram)"
        # the proxy decided before anything was sent: the server never got them, so nothing comes back
        assert echo.got == [pos(0)]
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(100)
    assert "c2s loss 100 %" in w.conditions.readout.text()
    # the Statistics panel measures it, beside what is set
    tl = w.timeline
    tl.analysis.run_to_end()
    tl.refresh_stats()
    m = tl.udp_model
    cells = [[m.data(m.index(r, c)) for c in range(m.columnCount())] for r in range(m.rowCount())]
    assert cells[0][:3] == ["→ c2s", "4", "75.0 % (set 100 %)"], cells  # the first one went before the loss
    assert cells[1][:3] == ["← s2c", "1", "0.0 % (set 0 %)"], cells
    assert not tl.udp_table.isHidden()
    qtmodeltester.check(m, force_py=True)
    # and the timeline draws it over time, with the loss that is set as a dotted line
    w.timeline_dock.show()
    qtbot.waitUntil(lambda: tl._plots is not None, timeout=WAIT)
    tl.refresh(force=True)
    plots = tl._plots
    assert plots is not None and plots.udp_shown
    plots.set_compact(0)  # a timeline tall enough for every plot (resizeEvent picks the level by height)
    assert plots.udp_plot in plots.graphics.ci.items and plots.udp_plot.getAxis("bottom").isVisible()
    assert "UDP, last 2 s" in plots.legend.text()
    plots.set_compact(2)  # tiny: the round trips only, and the legend says no more
    assert plots.udp_plot not in plots.graphics.ci.items and "UDP" not in plots.legend.text()
    plots.set_compact(1)
    _x, lost = plots.udp_curves[(Direction.C2S, "lost")].getData()
    assert lost is not None and lost[-1] == 75.0  # 3 of the 4 in the last 2 s
    assert plots.udp_set[(Direction.C2S, "lost")].isVisible() and plots.udp_set[(Direction.C2S, "lost")].value() == 100
    assert not plots.udp_set[(Direction.S2C, "lost")].isVisible()  # nothing set: no line
    assert not plots.udp_set[(Direction.C2S, "duplicated")].isVisible()
    assert "UDP, last 2 s" in plots.legend.text()


@pytest.mark.timeout(60)
def test_duplicate_set_live_shows_the_copies(qtbot: Any, make_window: Callable[..., MainWindow],
                                            echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    dup = w.conditions.cols[Direction.C2S].duplicate
    set_live(qtbot, w, lambda: dup.setValue(100), lambda cond: cond.c2s.duplicate_fraction == 1.0)
    with client() as c:
        c.sendto(pos(7), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(7)
        assert c.recvfrom(100)[0] == pos(7)  # the server got it twice, so it answered twice
    copies = lambda: rows_of(w, lambda r: w.store.origin(r) is Origin.DUPLICATE)  # noqa: E731
    qtbot.waitUntil(lambda: len(copies()) == 1, timeout=WAIT)
    [r] = copies()
    original = min(rows_of(w, lambda r: w.store.direction(r) is Direction.C2S))
    assert state_text(w, r) == "duplicate"
    assert f"duplicate of message {w.store.ids[original]}" in state_tip(w, r)
    assert w.store.payload(r) == pos(7)


@pytest.mark.timeout(60)
def test_corrupt_set_live_marks_the_row_and_the_flipped_bit_in_the_detail_pane(
        qtbot: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    corrupt = w.conditions.cols[Direction.C2S].corrupt
    set_live(qtbot, w, lambda: corrupt.setValue(100), lambda cond: cond.c2s.corrupt_pct == 100)
    sent = pos(3)
    with client() as c:
        c.sendto(sent, ("127.0.0.1", port))
        got = c.recvfrom(100)[0]
    diff = [i for i in range(len(sent)) if sent[i] != got[i]]
    assert len(diff) == 1 and bin(sent[diff[0]] ^ got[diff[0]]).count("1") == 1  # one bit, as the echo saw it
    qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=WAIT)
    row = rows_of(w, lambda r: w.store.direction(r) is Direction.C2S)[0]
    assert w.store.payload(row) == got
    assert state_text(w, row) == "corrupted"
    bit = w.store.flips(row)[0]
    assert bit >> 3 == diff[0]
    assert f"corrupted: bit {bit & 7} of byte {diff[0]} flipped" in state_tip(w, row)
    pos_ = w.store.visible_position(row)
    assert pos_ is not None
    assert w.model.data(w.model.index(pos_, Column.STATE), Qt.ItemDataRole.ForegroundRole) == w.colours.error
    w.select_visible(pos_)
    text = w.detail.warnings.text()
    assert f"corrupted by the proxy: bit {bit & 7} of byte {diff[0]}: 0x{sent[diff[0]]:02x} → 0x{got[diff[0]]:02x}" \
        in text
    assert w.detail.hex.marked == (diff[0],)
    assert len(w.detail.hex.extraSelections()) >= 2  # the flipped byte, in the hex and the ASCII column
    w.detail.tree.setCurrentItem(w.detail.tree.topLevelItem(0))  # a field highlighted: the mark stays
    assert len(w.detail.hex.extraSelections()) >= 4


@pytest.mark.timeout(60)
def test_a_flow_idle_for_its_timeout_closes_its_row_saying_so(
        qtbot: Any, qtmodeltester: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo, udp_idle_timeout=0.5)
    qtmodeltester.check(w.conn_model, force_py=True)
    assert w.conn_model.idle_timeout_s == 0.5
    with client() as c:
        c.sendto(pos(1), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(1)
    qtbot.waitUntil(lambda: len(w.store.connections) == 1, timeout=WAIT)
    [conn] = w.store.connections.values()
    qtbot.waitUntil(lambda: not conn.is_open, timeout=WAIT)
    assert conn.reason is CloseReason.IDLE_TIMEOUT
    cm: ConnectionsModel = w.conn_model
    assert cm.data(cm.index(0, 0)).startswith("○ #")
    assert cm.data(cm.index(0, cm.STATE)) == "idle timeout"
    tip = cm.data(cm.index(0, cm.STATE), Qt.ItemDataRole.ToolTipRole)
    assert "ended by the idle timeout: no datagram either way for 0.5 s" in tip


@pytest.mark.timeout(60)
def test_the_panel_shows_udp_impairments_only_for_udp_and_presets_carry_loss(
        qtbot: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, _ = udp_window(make_window, qtbot, echo)
    panel = w.conditions
    col = panel.cols[Direction.S2C]
    for box in (col.duplicate, col.reorder, col.corrupt, col.mtu):
        assert box.isVisibleTo(panel) and box.toolTip()
    assert "netem's reorder" in col.reorder.toolTip() and "netem's corrupt" in col.corrupt.toolTip()
    advanced = (col.ge_p, col.ge_r, col.ge_bad, col.ge_good, col.reorder_gap, col.duplicate_ms, col.mtu_action)
    assert not any(box.isVisibleTo(panel) for box in advanced)  # behind "More…"
    panel.burst_button.click()
    assert all(box.isVisibleTo(panel) and box.toolTip() for box in advanced)
    assert "Gilbert-Elliott" in col.ge_p.toolTip()
    set_live(qtbot, w, lambda: (col.ge_p.setValue(2), col.ge_r.setValue(25), col.ge_bad.setValue(80),
                                col.ge_good.setValue(1)),
             lambda cond: cond.s2c.burst_loss is not None and cond.s2c.burst_loss.bad_loss_pct == 80)
    assert panel.value().s2c.burst_loss is not None and panel.value().s2c.burst_loss.good_loss_pct == 1
    set_live(qtbot, w, lambda: (col.mtu.setValue(1200), col.mtu_action.setCurrentText("truncate"),
                                col.reorder.setValue(25), col.reorder_gap.setValue(5)),
             lambda cond: cond.s2c.mtu == 1200 and cond.s2c.mtu_action == "truncate" and cond.s2c.reorder_gap == 5)
    panel.select_preset("Mobile 4G")
    engine = w.link.engine  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: engine.call(engine.server.conditions_for, None) == PRESETS["Mobile 4G"].conditions,
                    timeout=WAIT)
    assert panel.cols[Direction.C2S].loss.value() == PRESETS["Mobile 4G"].conditions.c2s.loss_pct == 4
    assert "c2s loss 4 %" in panel.readout.text() and "delay" not in panel.readout.text()
    # a TCP proxy: the datagram rows go away, loss stays below 100 %
    panel.set_udp(False)
    assert not col.duplicate.isVisibleTo(panel) and not panel.burst_button.isVisibleTo(panel)
    assert col.loss.maximum() == 99


def test_sockscope_udp_flags_reach_the_proxy_the_window_starts() -> None:
    args = app.build_parser().parse_args(["--udp-only", "--listen", "127.0.0.1:7001", "--target", "127.0.0.1:7000",
                                          "--udp-idle-timeout", "30", "--loss", "c2s=5"])
    options, _ = app.link_from_args(args)
    assert options is not None and (options.tcp, options.udp, options.udp_idle_timeout) == (False, True, 30.0)
    argv = ChildProcessLink(options).argv()
    assert argv[argv.index("--udp-only") + 1:argv.index("--udp-only") + 3] == ["--udp-idle-timeout", "30.0"]
    both, _ = app.link_from_args(app.build_parser().parse_args(["--udp", "--target", "127.0.0.1:7000"]))
    assert both is not None and (both.tcp, both.udp) == (True, True) and "--udp" in ChildProcessLink(both).argv()
    demo, _ = app.link_from_args(app.build_parser().parse_args(["demo", "--udp"]))
    assert demo is not None and demo.demo and (demo.tcp, demo.udp) == (False, True) and demo.demo_interval == 0.1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("factory", [ThreadLink, ChildProcessLink], ids=["thread", "child"])
def test_sockscope_demo_udp_shows_datagrams_within_seconds(
        qtbot: Any, make_window: Callable[..., MainWindow], factory: Any) -> None:
    options, _ = app.link_from_args(app.build_parser().parse_args(["demo", "--udp"]))
    w = make_window(options, link_factory=factory)
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: w.model.rowCount() >= 6, timeout=WAIT)
    texts = [str(w.model.data(w.model.index(i, Column.SUMMARY))) for i in range(6)]
    assert any(t.startswith('{"type":"pos"') for t in texts) and any(t.startswith('{"type":"state"') for t in texts)
    assert all(c.is_udp for c in w.store.connections.values())
    assert "(demo)" in w.windowTitle() and w.conditions.udp


@pytest.mark.timeout(60)
def test_sockscope_proxy_demo_udp_runs_the_udp_game_loop() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "proxy", "--demo", "--udp-only", "--demo-pings", "5",
                          "--demo-interval", "0.02"], capture_output=True, text=True, encoding="utf-8", timeout=30)
    assert out.returncode == 0, out.stderr
    assert "UDP on 127.0.0.1:" in out.stdout and "listening on" not in out.stdout
    assert out.stdout.count('json {"type":"pos"') == 5 and out.stdout.count('json {"type":"state"') == 5


@pytest.mark.timeout(60)
def test_a_datagram_held_from_the_window_is_edited_dropped_or_forwarded_and_the_flow_goes_on(
        qtbot: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    """The Intercept panel on a flow, as on a connection: the held datagram waits (the server has not got it) while
    later ones go on; edited, it goes out as one datagram with the new bytes; dropped, never."""
    w, port = udp_window(make_window, qtbot, echo)
    link = w.link
    assert link is not None
    with client() as c:
        c.sendto(pos(0), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(0)
        # hold the next client datagram, then edit it
        w.intercept.hold_c2s.click()
        fut = link.command("ping")  # commands are asynchronous: a round trip orders us after hold_next
        qtbot.waitUntil(fut.done, timeout=WAIT)
        c.sendto(b"secret", ("127.0.0.1", port))
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        c.sendto(pos(1), ("127.0.0.1", port))  # not held back: UDP has no order to keep
        assert c.recvfrom(100)[0] == pos(1)
        assert echo.got == [pos(0), pos(1)]
        mid = w.intercept.selected_id()
        assert mid is not None
        dlg = w.edit_and_forward(mid)
        assert dlg is not None
        dlg.edit.setPlainText("SECRET!")
        dlg.accept()
        assert c.recvfrom(100)[0] == b"SECRET!"
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
        # hold, then drop: the server never gets it
        w.hold_next(Direction.C2S)
        fut = link.command("ping")
        qtbot.waitUntil(fut.done, timeout=WAIT)
        c.sendto(b"dropme", ("127.0.0.1", port))
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        w.intercept.drop_button.click()
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
        c.sendto(pos(2), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(2)
    assert echo.got == [pos(0), pos(1), b"SECRET!", pos(2)]
    dropped = rows_of(w, lambda r: w.store.state(r) is MessageState.DROPPED)
    assert [w.store.payload(r) for r in dropped] == [b"dropme"]


@pytest.mark.timeout(60)
def test_replaying_a_flow_from_the_window_sends_its_datagrams_again_as_a_new_flow(
        qtbot: Any, make_window: Callable[..., MainWindow], echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    sent = [pos(0), b"", b"\x00\xffbinary"]
    with client() as c:
        for data in sent:
            c.sendto(data, ("127.0.0.1", port))
            assert c.recvfrom(100)[0] == data
    qtbot.waitUntil(lambda: len(w.store) == 6, timeout=WAIT)
    [first] = w.store.connections
    w.conn_table.selectRow(0)
    w.replay("fast")
    qtbot.waitUntil(lambda: len(echo.got) == 2 * len(sent), timeout=WAIT)
    assert echo.got == sent + sent  # byte for byte, the empty datagram too
    qtbot.waitUntil(lambda: len(w.store.connections) == 2, timeout=WAIT)
    [new] = [c for cid, c in w.store.connections.items() if cid != first]
    assert new.is_udp and new.replay_of == first
    replayed = [w.store.payload(r) for r in range(len(w.store))
                if w.store.conn_ids[r] == new.conn_id and w.store.direction(r) is Direction.C2S]
    assert replayed == sent and all(w.store.origin(r) is Origin.REPLAYED for r in range(len(w.store))
                                    if w.store.conn_ids[r] == new.conn_id and w.store.direction(r) is Direction.C2S)


@pytest.mark.timeout(60)
def test_reset_on_a_flow_ends_it_and_says_udp_has_no_reset(qtbot: Any, make_window: Callable[..., MainWindow],
                                                            echo: UdpEcho) -> None:
    w, port = udp_window(make_window, qtbot, echo)
    with client() as c:
        c.sendto(pos(0), ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == pos(0)
    qtbot.waitUntil(lambda: len(w.store) == 2, timeout=WAIT)
    [conn] = w.store.connections.values()
    w.conn_table.selectRow(0)
    w.conn_reset.click()
    qtbot.waitUntil(lambda: not conn.is_open, timeout=WAIT)
    assert conn.reason is CloseReason.PROXY_CLOSED  # ended as Close ends it, not "reset by proxy"
    assert "UDP has no reset" in w.statusBar().currentMessage()

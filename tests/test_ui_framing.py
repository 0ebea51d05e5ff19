"""The window's side of framing (issue 20, items 1 to 3): what was inferred and why, a warning in a learner's words
when a framing stops fitting, choosing a connection's framing in one click or with the dialog, and the reads the
proxy passed on raw while it inferred re-framed into whole messages in the table.

The window is attached over the control protocol to a real engine (``ThreadLink``, ``--framing auto``) with real
sockets on 127.0.0.1, and plays games of tests/games through it; waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from inspector.bridge import LinkOptions, ThreadLink
from inspector.ui.framing_control import FramingDialog, framing_name
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import VIEW_ROW_ROLE
from inspector.ui.side_models import ConnectionsModel
from proxy.framing import FramingError, frames_exactly
from proxy.model import Direction
from tests.conftest import EchoServer, connect, recv_exact
from tests.games.harness import Tap, _serve_thread, load
from tests.test_ui_learner import learner_words
from tests.test_ui_window import WAIT, wait_link

pytestmark = pytest.mark.slow  # games played through the window's proxy: in the full run, not the fast loop

C2S, S2C = Direction.C2S, Direction.S2C


@pytest.fixture
def settings(tmp_path: Any) -> QSettings:
    return QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot: Any, settings: QSettings) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []

    def make(target_port: int) -> MainWindow:
        w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", target_port), framing="auto"),
                       settings=settings, link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


class Game:
    """A corpus game's server on a free port (``port``), waiting for :meth:`play` to send its client through the
    window's proxy."""

    def __init__(self, name: str, n: int) -> None:
        self.module: ModuleType = load(name)
        self.n = n
        listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = listener.getsockname()[1]
        self.server_taps: list[Tap] = []
        self.errors: list[BaseException] = []
        self.server = _serve_thread(self.module, listener, n, self.server_taps, self.errors)

    def play(self, qtbot: Any, w: MainWindow) -> Tap:
        """The whole game through the window's proxy; the client socket's tap (every byte it sent and got)."""
        link = wait_link(qtbot, w)
        assert link.listen_addr is not None
        taps: list[Tap] = []
        self.module.play(link.listen_addr[1], self.n, lambda s: Tap(s, taps))
        self.server.join(10)
        assert not self.errors and not self.server.is_alive()
        qtbot.waitUntil(lambda: bool(w.store.connections), timeout=WAIT)  # the window takes the records in
        return taps[0]


def the_connection(qtbot: Any, w: MainWindow) -> int:
    """The connection the window shows (once its records are in)."""
    qtbot.waitUntil(lambda: bool(w.store.connections), timeout=WAIT)
    return max(w.store.connections)


def rows_of(w: MainWindow, d: Direction) -> list[int]:
    """The table's rows of direction ``d``, as the store row or derived-row handle behind each."""
    m = w.model
    rows = [m.data(m.index(i, 0), VIEW_ROW_ROLE) for i in range(m.rowCount())]
    return [r for r in rows if w.store.direction(r) is d]


def framing_cell(w: MainWindow, conn: int, role: int = 0) -> Any:
    m = w.conn_model
    pos = m.order.index(conn)
    return m.data(m.index(pos, ConnectionsModel.FRAMING), role)


def wait_framed(qtbot: Any, w: MainWindow, conn: int, c2s: str, s2c: str) -> None:
    def done() -> bool:
        c = w.store.connections.get(conn)
        return c is not None and (c.framing[0].framing, c.framing[1].framing) == (c2s, s2c)

    qtbot.waitUntil(done, timeout=WAIT)


def conn_menu(qtbot: Any, w: MainWindow, conn: int) -> QMenu:
    """Right-click connection ``conn`` in the Connections panel: its "Framing" submenu."""
    m = w.conn_model
    qtbot.waitUntil(lambda: conn in m.order, timeout=WAIT)
    idx = m.index(m.order.index(conn), 0)
    w.conn_table.setCurrentIndex(idx)  # as the right-click does (also when the panel is a tab behind another)
    w._conn_menu(w.conn_table.visualRect(idx).center())
    menu = w.context_menu
    assert menu is not None
    sub = next((a.menu() for a in menu.actions() if a.menu() is not None and a.text().startswith("Framing of")),
               None)
    assert isinstance(sub, QMenu), [a.text() for a in menu.actions()]
    return sub


def action(menu: QMenu, prefix: str) -> QAction:
    found = next((a for a in menu.actions() if a.text().startswith(prefix)), None)
    assert found is not None, [a.text() for a in menu.actions()]
    return found


# ------------------------------------------------------------------------------------------ item 1


@pytest.mark.timeout(60)
def test_the_window_says_which_framing_was_inferred_and_why(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    game = Game("len16_json", 6)
    w = make_window(game.port)
    game.play(qtbot, w)
    conn = max(w.store.connections)
    wait_framed(qtbot, w, conn, "len16be", "len16be")
    assert framing_cell(w, conn) == "len16be / len16be"
    tip = framing_cell(w, conn, 3)  # ToolTipRole
    assert "2-byte big-endian length prefix" in tip and "messages fit" in tip, tip
    assert "worked out from the first messages" in tip and "client to the server" in tip, tip
    qtbot.waitUntil(lambda: len(rows_of(w, S2C)) == 6, timeout=WAIT)
    w.select_visible(w.model.rowCount() - 1)
    note = w.detail.framing_note
    assert note.isVisibleTo(w) and "len16be" in note.text() and "length prefix" in note.text(), note.text()


@pytest.mark.timeout(60)
def test_a_framing_that_stops_fitting_is_said_in_a_learners_words(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(echo_server.port)
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        for i in range(3):
            line = f"move {i} north\n".encode()
            c.sendall(line)
            assert recv_exact(c, len(line)) == line
        conn = the_connection(qtbot, w)
        wait_framed(qtbot, w, conn, "lines", "lines")
        assert w.notice.isHidden()
        c.sendall(b"partial move")  # no newline: the proxy waits for the rest, at most 250 ms
        assert recv_exact(c, 12) == b"partial move"  # the game goes on: the bytes were passed on as they came
        qtbot.waitUntil(lambda: "stopped fitting" in w.notice_text.text(), timeout=WAIT)
    text = w.notice_text.text().removeprefix("⚠ ")
    learner_words(text)
    assert f"Connection #{conn}" in text and "newline-terminated lines" in text and "not held up" in text, text
    assert "working the framing out again" in text and "right-click the connection" in text, text
    assert framing_cell(w, conn).startswith("⚠ auto…"), framing_cell(w, conn)
    assert "stopped fitting" in framing_cell(w, conn, 3)


# ------------------------------------------------------------------------------------------ item 2


@pytest.mark.timeout(60)
def test_one_click_chooses_a_connections_framing(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(echo_server.port)
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hi")
        assert recv_exact(c, 2) == b"hi"
        conn = the_connection(qtbot, w)
        sub = conn_menu(qtbot, w, conn)
        assert "now → c2s" in sub.actions()[0].text()
        action(sub, "lines:").trigger()  # both directions, one click
        wait_framed(qtbot, w, conn, "lines", "lines")
        assert w.store.connections[conn].framing[0].cause == "user"
        assert "chosen by you" in framing_cell(w, conn, 3)
        c.sendall(b"one\ntwo\n")  # one read, two messages: the proxy frames it now
        assert recv_exact(c, 8) == b"one\ntwo\n"
        qtbot.waitUntil(lambda: [w.store.payload(r) for r in rows_of(w, C2S)][-2:] == [b"one\n", b"two\n"],
                        timeout=WAIT)
    assert w.notice.isHidden(), w.notice_text.text()


@pytest.mark.timeout(60)
def test_the_framing_dialog_checks_what_is_typed_and_sets_one_direction(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(echo_server.port)
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"\x01")
        assert recv_exact(c, 1) == b"\x01"
        conn = the_connection(qtbot, w)
        action(conn_menu(qtbot, w, conn), "Other…").trigger()
        dlg = w.framing_control.dialog
        assert isinstance(dlg, FramingDialog) and dlg.isVisible()
        dlg.direction.setCurrentIndex(1)  # c2s only
        dlg.set_kind("delim")
        assert not dlg.ok.isEnabled() and "Type the terminator" in dlg.error.text()
        dlg.delimiter.setText("EOT\\x0")
        error = dlg.error.text()
        assert not dlg.ok.isEnabled() and error == "Terminator EOT\\x0: \\x needs two hex digits.", error
        dlg.delimiter.setText("EOT\\x00")
        assert dlg.ok.isEnabled() and dlg.error.isHidden() and dlg.name.text().startswith("delim:EOT\\x00")
        dlg.ok.click()
        wait_framed(qtbot, w, conn, "delim:EOT\\x00", "auto")
        c.sendall(b'{"move": 1}EOT\x00{"move": 2}EOT\x00')
        recv_exact(c, 30)
        want = [b'{"move": 1}EOT\x00', b'{"move": 2}EOT\x00']
        qtbot.waitUntil(lambda: [w.store.payload(r) for r in rows_of(w, C2S)][-2:] == want, timeout=WAIT)
    assert w.notice.isHidden(), w.notice_text.text()


def test_every_choice_of_the_dialog_is_a_framing_name_or_one_line_saying_why_not(qtbot: Any) -> None:
    dlg = FramingDialog(3, None)
    qtbot.addWidget(dlg)
    for kind, _text in (("auto", ""), ("raw", ""), ("lines", ""), ("header16json", ""), ("msgpack", ""),
                        ("json", "")):
        dlg.set_kind(kind)
        assert dlg.framing() == kind and dlg.ok.isEnabled()
    dlg.set_kind("len")
    for width, endian, incl, name in ((1, "be", False, "len8"), (2, "le", False, "len16le"),
                                      (4, "be", True, "len32be-incl"), (8, "le", False, "len64le")):
        dlg.prefix_width.setCurrentIndex(dlg.prefix_width.findData(width))
        dlg.endian.setCurrentIndex(dlg.endian.findData(endian))
        dlg.inclusive.setChecked(incl)
        assert dlg.framing() == name and dlg.ok.isEnabled()
        assert dlg.endian.isEnabled() == (width != 1)  # one byte has no byte order
    dlg.set_kind("fixed")
    for size, ok in (("", False), ("abc", False), ("0", False), ("12", True), ("99999999999", False)):
        dlg.record_size.setText(size)
        assert dlg.ok.isEnabled() == ok, (size, dlg.error.text())
        if not ok:
            text = dlg.error.text()
            assert text.endswith(".") and "\n" not in text and text[0].isupper(), text
    dlg.record_size.setText("12")
    assert dlg.framing() == "fixed:12"
    for bad in ("", "\\", "\\q", "\\x4", "\\777", "x" * 65):
        with pytest.raises(FramingError) as e:
            framing_name("delim", delimiter=bad)
        text = str(e.value)
        assert text.endswith(".") and "\n" not in text and text[0].isupper(), text
    assert framing_name("delim", delimiter="\\r\\n") == "delim:\\r\\n"
    assert framing_name("delim", delimiter="\\n") == "lines"


# ------------------------------------------------------------------------------------------ item 3


@pytest.mark.timeout(60)
def test_a_read_holding_three_length_prefixed_messages_shows_as_three_rows(
        qtbot: Any, qtmodeltester: Any, make_window: Callable[..., MainWindow]) -> None:
    n = 5
    game = Game("batched", n)
    w = make_window(game.port)
    qtmodeltester.check(w.model, force_py=True)  # stays connected: the re-framing's removes and inserts are checked
    client = game.play(qtbot, w)
    conn = max(w.store.connections)
    wait_framed(qtbot, w, conn, "len32be", "len32be")
    sent = {C2S: bytes(client.sent), S2C: bytes(client.received)}
    s = w.store
    for d in Direction:
        qtbot.waitUntil(lambda d=d: b"".join(s.payload(r) for r in rows_of(w, d)) == sent[d], timeout=WAIT)
        rows = rows_of(w, d)
        assert len(rows) == 3 * n, [s.payload(r) for r in rows]
        assert all(frames_exactly("len32be", s.payload(r)) == 1 for r in rows)  # one message per row
    # the proxy passed the first read on as it came (three messages in one read), and the store kept it
    first = rows_of(w, C2S)[0]
    assert s.is_derived(first)
    read = s.real_row(first)
    assert s.reframed(read) and frames_exactly("len32be", s.payload(read)) == 3
    assert s.payload(read) == b"".join(s.payload(r) for r in rows_of(w, C2S)[:3])
    assert s.connections[conn].framing[0].reframed >= 1
    # the detail pane shows the message, and where it came from
    w.select_visible(w.store.visible_position(rows_of(w, C2S)[1]) or 0)
    assert w.detail.row == rows_of(w, C2S)[1]
    assert "re-framed" in w.detail.framing_note.text() and f"#{s.ids[read]}.2" in w.detail.title.text()
    assert w.detail.hex.data == s.payload(rows_of(w, C2S)[1])
    shown = w.model.rowCount()
    assert w.filter_bar.count.text() == f"{shown} messages", w.filter_bar.count.text()  # not "36 of 30 shown"


@pytest.mark.timeout(60)
def test_a_line_sent_in_three_pieces_shows_as_one_row(
        qtbot: Any, qtmodeltester: Any, make_window: Callable[..., MainWindow]) -> None:
    game = Game("split_sends", 4)
    w = make_window(game.port)
    qtmodeltester.check(w.model, force_py=True)
    client = game.play(qtbot, w)
    conn = max(w.store.connections)
    wait_framed(qtbot, w, conn, "lines", "lines")
    lines = bytes(client.sent).splitlines(keepends=True)
    s = w.store
    qtbot.waitUntil(lambda: [s.payload(r) for r in rows_of(w, C2S)] == lines, timeout=WAIT)
    reads = [r for r in range(len(s)) if s.dirs[r] == C2S]  # the pieces, as they came, are kept
    assert len(reads) > len(lines) and b"".join(s.payload(r) for r in reads) == bytes(client.sent)

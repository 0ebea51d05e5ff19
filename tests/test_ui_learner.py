"""What a learner runs into in the window (issue 19): Ctrl+E and the edit dialogs, failures said in a learner's words,
Open session while live, a server that is not running, the status bar's rates, delays and armed holds, Clear,
``sockscope FILE``, wall-clock times in ``python -m inspector.dump``, and the light or dark look.

The window is attached over the control protocol to a real engine (``ThreadLink``) with real sockets on 127.0.0.1;
waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QObject, QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QMessageBox

from inspector.bridge import Link, LinkOptions, ThreadLink
from inspector.ui.main_window import MainWindow
from proxy.model import Direction
from tests.conftest import EchoServer, connect, recv_exact
from tests.test_ui_window import WAIT, wait_link

INTERNAL_WORDS = ("set_conditions", "hold_next", "release", "inject", "set_rules", "engine", "_")


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


def barrier(qtbot: Any, link: Link) -> None:
    """Commands run in order: a no-op round trip through the engine orders the test after what was sent."""
    fut = link.command("ping")
    qtbot.waitUntil(fut.done, timeout=WAIT)


def answer(w: MainWindow, choice: str) -> None:
    """Click ``choice`` in the question the window is asking."""
    box = w.question
    assert isinstance(box, QMessageBox), "the window asks nothing"
    button = next((b for b in box.buttons() if b.text().replace("&", "") == choice), None)
    assert button is not None, [b.text() for b in box.buttons()]
    button.click()


def learner_words(text: str) -> None:
    assert text and text[0].isupper() and text.rstrip().endswith((".", ")")), text
    low = text.lower()
    for word in ("set_conditions", "hold_next", "release_all", "inject", "set_rules", "engine", "none"):
        assert word not in low, (word, text)


# ------------------------------------------------------------------------------------------ item 2: Ctrl+E


@pytest.mark.timeout(60)
def test_ctrl_e_edits_the_held_message_and_the_dialog_says_which(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        qtbot.waitUntil(lambda: len(w.store) >= 2, timeout=WAIT)
        w.select_visible(0)  # the table selects a message that is not held (as after following the tutorial)
        w.intercept.hold_c2s.click()
        barrier(qtbot, link)
        c.sendall(b"Ping received!")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        held = w.intercept.selected_id()
        assert held is not None
        w.intercept.table.setFocus()
        assert w.edit_action.shortcut() == QKeySequence("Ctrl+E")
        w.edit_action.trigger()  # Ctrl+E
        dlg = w.editor
        assert dlg is not None and dlg.isVisible()
        assert dlg.ok_button.text() == "Forward"
        about = dlg.about.text()
        assert f"#{held}" in about and "held" in about and "server" in about, about
        dlg.edit.setPlainText("Ping received! (edited)")
        dlg.accept()
        assert recv_exact(c, 23) == b"Ping received! (edited)"  # the server got the edit (and echoed it)
    qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
    assert w.notice.isHidden()


@pytest.mark.timeout(60)
def test_resending_on_a_closed_connection_is_explained_not_failed(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
    qtbot.waitUntil(lambda: len(w.store) >= 2 and not w.store.connections[w.store.conn_ids[0]].is_open,
                    timeout=WAIT)
    w.select_visible(0)
    w.edit_action.trigger()  # nothing is held: Ctrl+E edits a copy of the selected message
    dlg = w.editor
    assert dlg is not None
    assert dlg.ok_button.text() == "Send a copy" and not dlg.ok_button.isEnabled()
    about = dlg.about.text() + " " + dlg.blocked_label.text()
    assert "#1" in about and "closed" in about and "Replay" in about, about
    assert dlg.blocked_label.isVisibleTo(dlg)


@pytest.mark.timeout(60)
def test_a_failed_action_is_shown_in_a_learners_words(qtbot: Any, make_window: Callable[..., MainWindow],
                                                     echo_server: EchoServer) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    w.forward(4242)  # not held (never was)
    qtbot.waitUntil(lambda: not w.notice.isHidden(), timeout=WAIT)
    text = w.notice_text.text().removeprefix("⚠ ")
    assert text.startswith("Could not forward the held message:") and "#4242" in text, text
    learner_words(text)
    w.stop_link()
    assert link is not None
    w.hold_next(Direction.C2S)
    text = w.notice_text.text().removeprefix("⚠ ")
    assert text.startswith("Could not hold the next message: the proxy is not running."), text
    assert "Start" in text
    learner_words(text)


# ------------------------------------------------------------------------------------------ item 8: the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.slow  # waits out the server check's interval (2 s): the full run only
@pytest.mark.timeout(60)
def test_a_server_that_is_not_running_is_said_at_start_when_a_client_comes_and_until_it_runs(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    port = _free_port()
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    qtbot.waitUntil(lambda: not w.notice.isHidden(), timeout=WAIT)  # said at once, not when a client comes
    text = w.notice_text.text().removeprefix("⚠ ")
    assert f"Nothing is listening on 127.0.0.1:{port}" in text and "Start your server" in text, text
    learner_words(text)
    # a client comes anyway: it is turned away, and the window says why in the same place (not a passing line)
    try:
        with socket.create_connection(("127.0.0.1", link.listen_addr[1]), timeout=10) as c:
            assert c.recv(10) == b""
    except ConnectionResetError:
        pass  # sockscope resets the client, as the refused server would have
    qtbot.waitUntil(lambda: "could not reach your server" in w.notice_text.text(), timeout=WAIT)
    text = w.notice_text.text().removeprefix("⚠ ")
    assert f"127.0.0.1:{port}" in text and "connect your client again" in text, text
    learner_words(text)
    # the server starts: the window notices by itself and the warning goes
    server = socket.create_server(("127.0.0.1", port))
    try:
        qtbot.waitUntil(lambda: w.notice.isHidden(), timeout=WAIT)
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_a_port_in_use_is_explained_with_the_windows_own_controls(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        w = make_window(LinkOptions(listen=("127.0.0.1", port), target=("127.0.0.1", 5555)))
        qtbot.waitUntil(lambda: bool(w.start_page.error.text()), timeout=WAIT)
        for text in (w.start_page.error.text(), w.banner_text.text()):
            assert f"Port {port} is already in use" in text and "toolbar" in text, text
            assert "--listen" not in text
    finally:
        busy.close()


# ------------------------------------------------------------------------------------------ item 5: Open while live


@pytest.mark.timeout(60)
def test_open_session_while_live_asks_first_and_says_the_proxy_stopped(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer, tmp_path: Any) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link = wait_link(qtbot, w)
    assert link.listen_addr is not None
    saved = tmp_path / "earlier.sockscope"
    with connect(link.listen_addr[1]) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        qtbot.waitUntil(lambda: len(w.store) >= 2, timeout=WAIT)
        assert w.sessions.save_session(str(saved))
        assert not w.sessions.open_file(str(saved))  # not yet: the user is asked
        assert w.question is not None and "Stop the live capture" in w.question.text()
        assert "closed" in w.question.informativeText()
        answer(w, "Cancel")
        assert w.link is link and link.alive
        c.sendall(b"still here")  # the game's connection was not touched
        assert recv_exact(c, 10) == b"still here"
        w.sessions.open_file(str(saved))
        answer(w, "Open without saving")
        qtbot.waitUntil(lambda: not w.sessions.busy and w.link is None, timeout=WAIT)
        assert c.recv(10) in (b"", b"hello")  # the proxy stopped: the client is told, not left hanging
    assert w.sessions.source_path is not None and len(w.store) == 2
    assert "listening" not in w.st_link.text() and "stopped" in w.st_link.text()
    assert not w.banner.isHidden() and "Start again" in w.banner_text.text()
    # the panels say what a stopped proxy means, without internal names
    w.conditions.cols[Direction.C2S].latency.spin.setValue(50)
    w.conditions.apply()
    assert w.notice.isHidden()
    assert "apply when you start" in w.statusBar().currentMessage()
    assert not w.intercept.hold_c2s.isEnabled()
    w.restart_link()  # capture live again: the new proxy starts with the panel's conditions
    link2 = wait_link(qtbot, w)
    qtbot.waitUntil(lambda: w.link is not None and w.link.alive, timeout=WAIT)
    assert link2.command("snapshot").result(10)["conditions"]["c2s"]["latency_ms"] == 50


# ------------------------------------------------------------------------------------ item 9: what the window says


@pytest.mark.slow  # a slow game's rate needs seconds of it: the full run only
@pytest.mark.timeout(60)
def test_the_status_bar_shows_a_slow_games_rate(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """Pings every 1.2 s are about 0.8 messages a second each way, not "0 msg/s"."""
    w = make_window(LinkOptions(demo=True, demo_interval=1.2))
    wait_link(qtbot, w)
    w._rate_timer.stop()
    w._update_rates()  # the window's first look at the totals
    qtbot.waitUntil(lambda: sum(1 for r in range(len(w.store)) if w.store.payload(r).startswith(b"pong")) >= 3,
                    timeout=WAIT)
    w._update_rates()
    w._update_status()
    import re

    text = w.st_rates.text()
    up = re.search(r"↑ (\d+\.\d) msg/s", text)  # a tenth: 0.8, not "0" or "1"
    down = re.search(r"↓ (\d+\.\d) msg/s", text)
    assert up and down, text
    assert 0.4 <= float(up.group(1)) <= 1.5 and 0.4 <= float(down.group(1)) <= 1.5, text


@pytest.mark.timeout(60)
def test_no_delay_is_shown_where_sockscope_added_none(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    from inspector.ui.message_model import Column
    from proxy.model import ConnectionOpened, DelayReason, Message, MessageState
    from tests.test_ui_window import publish

    w = make_window(LinkOptions(listen=("127.0.0.1", 0)))
    wait_link(qtbot, w)
    publish(w, [
        ConnectionOpened(1, ("127.0.0.1", 40001), ("127.0.0.1", 5555), 0),
        # passed through the scheduler with nothing to wait for: 0.3 ms between arrival and release
        Message(1, 1, Direction.C2S, 0, b"ping 1", 1_000_000, 1_300_000),
        Message(2, 1, Direction.S2C, 0, b"pong 1", 2_000_000, 202_000_000, delays=((DelayReason.LATENCY,
                                                                                  200_000_000),)),
        Message(3, 1, Direction.C2S, 1, b"ping 2", 3_000_000, None, state=MessageState.SCHEDULED,
                delays=((DelayReason.LATENCY, 200_000_000),)),
    ])
    qtbot.waitUntil(lambda: w.model.rowCount() == 3, timeout=WAIT)
    delay = [w.model.data(w.model.index(i, Column.DELAY)) for i in range(3)]
    state = [w.model.data(w.model.index(i, Column.STATE)) for i in range(3)]
    assert delay[:2] == ["", "+200 ms"], delay
    assert state == ["", "", "scheduled"], state
    w.select_visible(0)
    assert "ms" not in w.detail.title.text()


@pytest.mark.timeout(60)
def test_hold_next_says_it_waits_until_a_message_is_held_then_stops_saying_it(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.2))
    link = wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store) >= 3, timeout=WAIT)
    w.hold_next(Direction.C2S)
    assert w.intercept.armed_box.isVisibleTo(w) and "next c2s" in w.intercept.armed_label.text()
    qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
    assert not w.intercept.armed_box.isVisibleTo(w)
    assert "will be held" not in w.statusBar().currentMessage()
    w.forward_all()
    qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)
    # cancel before anything is held
    w.hold_next(Direction.S2C)
    w.intercept.armed_cancel.click()
    assert not w.intercept.armed_box.isVisibleTo(w)
    barrier(qtbot, link)
    n = len(w.store)
    qtbot.waitUntil(lambda: len(w.store) >= n + 4, timeout=WAIT)
    assert w.store.held_count == 0  # the cancel reached the proxy


@pytest.mark.timeout(60)
def test_clear_asks_first_and_leaves_no_stale_note(qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store) >= 8, timeout=WAIT)
    pong = next(i for i in range(w.model.rowCount()) if w.store.payload(w.store.visible[i]).startswith(b"pong"))
    w.select_visible(pong)
    qtbot.waitUntil(lambda: w.timeline.detail_note.isVisibleTo(w), timeout=WAIT)  # "⇄ answer of a pair with #…"
    assert w.clear_action.shortcut() == QKeySequence("Ctrl+K")
    w.clear_action.trigger()
    assert w.question is not None and "Clear" in w.question.text()
    answer(w, "Cancel")
    assert len(w.store) >= 8
    w.clear_action.trigger()
    answer(w, "Clear")
    assert w.model.rowCount() <= 2  # what arrived since
    assert not w.timeline.detail_note.isVisibleTo(w) and w.detail.row is None


# ------------------------------------------------------------------------------------------ item 10


def _session(path: Any, n: int = 6) -> None:
    from inspector.interop.session_io import SessionWriter
    from proxy.model import Clock, ConnectionOpened, Message

    # the engine's clock read 5 s (monotonic) at 2023-11-14 22:13:20 UTC
    with SessionWriter(path, clock=Clock(5_000_000_000, 1_700_000_000_000_000_000), target=("127.0.0.1", 5555)) as w:
        w.write(ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 6_000_000_000))
        for i in range(n):
            t = 6_000_000_000 + i * 250_000_000
            w.write(Message(i + 1, 1, Direction(i & 1), i >> 1, b"ping %d" % i, t, t))


@pytest.mark.timeout(60)
def test_sockscope_opens_a_file_given_on_its_command_line(qtbot: Any, qapp: Any, tmp_path: Any) -> None:
    from inspector import app
    from proxy.options import UsageError

    path = tmp_path / "game.sockscope"
    _session(path)
    args = app.build_parser().parse_args([str(path)])  # `sockscope game.sockscope`
    opened = app.file_from_args(args)
    options, attach = app.link_from_args(args)
    assert opened == str(path) and options is None and attach is None
    w = app.create_window(qapp, options, attach, opened)
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: len(w.store) == 6 and not w.sessions.busy, timeout=WAIT)
        assert w.central.currentWidget() is w.main_view and w.sessions.source_path == str(path)
        assert w.question is None  # nothing live to stop: nobody is asked
    finally:
        w.close()
    for word, message in (("nosuchfile.pcapng", "no such file"), ("dmeo", "give demo")):
        with pytest.raises(UsageError, match=message):
            app.file_from_args(app.build_parser().parse_args([word]))
    assert app.main([str(tmp_path / "missing.sockscope")]) == 2


def test_dump_prints_wall_clock_times(tmp_path: Any) -> None:
    import subprocess
    import sys
    import time

    path = tmp_path / "game.sockscope"
    _session(path, 2)
    out = subprocess.run([sys.executable, "-m", "inspector.dump", str(path)], capture_output=True, text=True,
                         encoding="utf-8", timeout=60)
    assert out.returncode == 0, out.stderr
    first = 1_700_000_000 + 1.0  # arrival 6 s on the engine's clock, anchored at 5 s
    want = time.strftime("%H:%M:%S", time.localtime(first)) + ".000"
    second = time.strftime("%H:%M:%S", time.localtime(first + 0.25)) + ".250"
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{want} #1 opened"), lines
    assert lines[1].startswith(f"{want} #1 → c2s") and lines[2].startswith(f"{second} #1 ← s2c"), lines
    assert time.strftime("%Y-%m-%d", time.localtime(first)) in out.stderr


@pytest.mark.timeout(60)
def test_the_window_keeps_its_settings_out_of_the_users_real_file(
        qtbot: Any, isolated_settings: Any, echo_server: EchoServer) -> None:
    from pathlib import Path

    from tests.conftest import settings_snapshot

    before = settings_snapshot()
    w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)),
                   link_factory=ThreadLink)  # the settings the app itself opens
    qtbot.addWidget(w)
    try:
        wait_link(qtbot, w)
        w.save_settings()
        assert any(str(echo_server.port) in t for t in w.recent_targets())  # a target was remembered ...
        assert Path(w.settings.fileName()).is_relative_to(isolated_settings)  # ... in the session's directory
        assert settings_snapshot() == before  # and the user's real file is as it was
    finally:
        w.stop_link()
        w.close()


@pytest.mark.timeout(60)
def test_the_light_or_dark_look_is_chosen_in_the_view_menu_and_remembered(
        qtbot: Any, make_window: Callable[..., MainWindow], settings: QSettings) -> None:
    from PySide6.QtGui import QPalette

    w = make_window(None)
    try:
        view = next(a.menu() for a in w.menuBar().actions() if a.text() == "&View")
        look = next(a.menu() for a in view.actions() if a.text() == "&Look")
        names = [a.text().replace("&", "") for a in look.actions()]
        assert names == ["System", "Light", "Dark"]
        w.look_actions["dark"].trigger()
        assert w.colours.dark and w.model.colours.dark and w.timeline.plots.colours.dark
        QApplication.processEvents()  # the widgets get the new palette
        assert w.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert str(settings.value("view/look")) == "dark"
        w.look_actions["light"].trigger()
        QApplication.processEvents()
        assert not w.colours.dark and w.palette().color(QPalette.ColorRole.Window).lightness() > 200
        w.look_actions["dark"].trigger()
        w2 = make_window(None)  # the next start uses the look chosen last
        assert w2.colours.dark and w2.look_actions["dark"].isChecked()
    finally:
        w.set_look("system")


@pytest.mark.timeout(60)
def test_the_windows_shortcuts_work_while_typing_in_a_text_box(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """On Linux a text box takes Ctrl+E (end of line) and Ctrl+K (delete to the end) for itself: with the focus in
    the filter bar (where it is at start), Ctrl+E must still edit the held message and Ctrl+K still clear."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    w = make_window(LinkOptions(demo=True, demo_interval=0.1))
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store) >= 3, timeout=WAIT)
    w.activateWindow()
    qtbot.waitActive(w)
    edit = w.filter_bar.edit
    # The offscreen platform has no emacs-style key bindings: make the filter bar's box take Ctrl+E and Ctrl+K for
    # itself as it does under X11, where the editable combo box accepts the ShortcutOverride for its line edit.
    linux_keys = _LinuxTextKeys(edit)
    w.filter_bar.combo.installEventFilter(linux_keys)
    edit.installEventFilter(linux_keys)
    edit.setFocus()
    QTest.keyClick(edit, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)  # Hold next c2s
    qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
    edit.setFocus()
    QTest.keyClicks(edit, "c2s")
    QTest.keyClick(edit, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)  # Edit & forward
    assert w.editor is not None and w.editor.isVisible() and w.editor.ok_button.text() == "Forward"
    assert edit.text() == "c2s"
    w.editor.reject()
    edit.setFocus()
    edit.setCursorPosition(0)
    QTest.keyClick(edit, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)  # Clear (asks)
    assert w.question is not None and edit.text() == "c2s"
    answer(w, "Cancel")
    w.forward_all()


class _LinuxTextKeys(QObject):
    """What QLineEdit does under X11's key bindings: it claims Ctrl+E (end of line) and Ctrl+K (delete to the end
    of the line) in the ShortcutOverride, so a window shortcut on those keys never fires."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QKeyEvent

        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and \
                event.modifiers() == Qt.KeyboardModifier.ControlModifier and event.key() in (Qt.Key.Key_E,
                                                                                           Qt.Key.Key_K):
            event.accept()
        return False

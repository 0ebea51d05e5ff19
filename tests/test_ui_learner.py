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
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMessageBox

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

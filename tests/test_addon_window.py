"""The window's Addons menu with a real engine: "Load addon…" loads a file into the proxy the window is attached to
(the engine and its control endpoint on a thread of this process, as ``sockscope --attach`` sees them), what the
addon does shows in the table and its reports in the log; a file that cannot load is said with its line; files given
with ``sockscope -s FILE`` reach the proxy the window starts or attaches to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog

from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from proxy.runner import ProxyThread
from tests.conftest import CONTROL_TOKEN, EchoServer, connect, recv_exact
from tests.test_addon_hooks import write_addon

pytestmark = pytest.mark.slow  # the window attached over the control protocol: in the full run, not the fast loop

WAIT = 10_000
HOSTILE = Path(__file__).resolve().parent / "hostile" / "addons"

SHOUT = """
    from proxy.addons import Addon, AddonContext, Message

    class Shout(Addon):
        modifies = True

        def message(self, ctx: AddonContext, msg: Message) -> None:
            if msg.direction.label == "c2s":
                if msg.data == b"boom":
                    raise ValueError("no booms here")
                ctx.replace(msg.data.upper())

    addons = [Shout()]
"""


@pytest.fixture
def proxy(start_endpoint: Callable[..., ProxyThread], echo_server: EchoServer) -> ProxyThread:
    return start_endpoint(echo_server.port)


def attached(qtbot: Any, tmp_path: Path, proxy: ProxyThread) -> MainWindow:
    w = MainWindow(attach=("127.0.0.1", proxy.control_port, CONTROL_TOKEN),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.link is not None, timeout=WAIT)
    return w


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, proxy: ProxyThread) -> Iterator[MainWindow]:
    w = attached(qtbot, tmp_path, proxy)
    yield w
    w.stop_link()


@pytest.mark.timeout(60)
def test_load_addon_from_the_menu_changes_the_traffic_and_reports_in_the_log(
        qtbot: Any, tmp_path: Path, window: MainWindow, proxy: ProxyThread, monkeypatch: pytest.MonkeyPatch) -> None:
    w = window
    path = write_addon(tmp_path, SHOUT, "shout.py")
    asked: list[str] = []

    def choose(parent: object, caption: str, folder: str, filters: str) -> tuple[str, str]:
        asked.append(caption)
        return str(path), filters

    monkeypatch.setattr(QFileDialog, "getOpenFileName", choose)
    menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "A&ddons")
    assert [a.text() for a in menu.actions()] == ["&Load addon…", "&Unload addons"]
    w.addons.load_action.trigger()
    assert asked == ["Load addon"]
    qtbot.waitUntil(lambda: "addon 'Shout' (shout.py) loaded" in w.log.toPlainText(), timeout=WAIT)
    qtbot.waitUntil(lambda: "addon shout.py loaded: Shout" in w.statusBar().currentMessage(), timeout=WAIT)
    assert w.addons.paths == [str(path)] and w.addons.unload_action.isEnabled()
    with connect(proxy.port) as c:
        c.sendall(b"quiet")
        assert recv_exact(c, 5) == b"QUIET"
        # the table shows the message as the addon left it (edited)
        qtbot.waitUntil(lambda: any(w.model.data(w.model.index(r, Column.SUMMARY)) == '"QUIET"'
                                    for r in range(w.model.rowCount())), timeout=WAIT)
        c.sendall(b"boom")
        assert recv_exact(c, 4) == b"boom"  # the hook raised: the message went on unchanged
        qtbot.waitUntil(lambda: "raised ValueError: no booms here at line 10" in w.log.toPlainText(), timeout=WAIT)
    assert "Traceback (most recent call last):" in w.log.toPlainText()
    w.addons.unload_action.trigger()
    qtbot.waitUntil(lambda: "addon file shout.py unloaded" in w.log.toPlainText(), timeout=WAIT)
    with connect(proxy.port) as c:
        c.sendall(b"calm")
        assert recv_exact(c, 4) == b"calm"


@pytest.mark.timeout(60)
def test_a_file_that_cannot_load_is_said_with_its_line(qtbot: Any, window: MainWindow) -> None:
    window.addons.load(str(HOSTILE / "raises_at_import.py"))
    qtbot.waitUntil(lambda: window.notice.isVisible(), timeout=WAIT)
    text = window.notice_text.text()
    assert "the addon raises_at_import.py could not be loaded" in text
    assert "RuntimeError: boom at import at line 3" in text and "\n" not in text
    assert window.addons.paths == []


@pytest.mark.timeout(60)
def test_files_given_with_dash_s_reach_the_proxy_the_window_attaches_to(
        qtbot: Any, tmp_path: Path, proxy: ProxyThread) -> None:
    from inspector import app

    path = write_addon(tmp_path, SHOUT, "shout.py")
    args = app.build_parser().parse_args(["--attach", f"127.0.0.1:{proxy.control_port}", "-s", str(path)])
    assert args.scripts == [str(path)]
    w = MainWindow(attach=("127.0.0.1", proxy.control_port, CONTROL_TOKEN),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.addons.preset(args.scripts)  # what app.create_window does with them
    w.show()
    try:
        qtbot.waitUntil(lambda: "addon 'Shout' (shout.py) loaded" in w.log.toPlainText(), timeout=WAIT)
        with connect(proxy.port) as c:
            c.sendall(b"hi")
            assert recv_exact(c, 2) == b"HI"
    finally:
        w.stop_link()


def test_a_proxy_the_window_starts_gets_dash_s_on_its_command_line(tmp_path: Path) -> None:
    from inspector import app
    from inspector.bridge import ChildProcessLink

    args = app.build_parser().parse_args(["--target", "127.0.0.1:5555", "-s", "rel/shout.py", "--script", "b.py"])
    options, attach = app.link_from_args(args)
    assert options is not None and attach is None
    argv = ChildProcessLink(options).argv()
    first, second = os.path.abspath("rel/shout.py"), os.path.abspath("b.py")
    assert argv[argv.index(first) - 1] == "-s" and argv[argv.index(second) - 1] == "-s"

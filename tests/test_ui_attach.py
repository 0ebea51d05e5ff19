"""The window attached to a proxy over the control protocol (``sockscope --attach``): traffic, commands, and the
proxy going away. The proxy engine and its control endpoint run in-process; the window talks msgpack to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from proxy.model import Direction
from proxy.runner import ProxyThread
from tests.conftest import CONTROL_TOKEN, EchoServer, connect, recv_exact

pytestmark = pytest.mark.slow  # the window attached over the control protocol: in the full run, not the fast loop

TOKEN = CONTROL_TOKEN
WAIT = 10_000


class Endpoint:
    def __init__(self, proxy: ProxyThread) -> None:
        assert proxy.control is not None
        self.proxy = proxy
        self.cs = proxy.control
        self.port = proxy.control_port

    def close_control(self) -> None:
        self.proxy.run_coroutine(self.cs.close())


@pytest.fixture
def endpoint(start_endpoint: Callable[..., ProxyThread], echo_server: EchoServer) -> Endpoint:
    return Endpoint(start_endpoint(echo_server.port))


@pytest.fixture
def window(qtbot: Any, tmp_path: Any, endpoint: Endpoint) -> Iterator[MainWindow]:
    w = MainWindow(attach=("127.0.0.1", endpoint.port, TOKEN),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.link is not None, timeout=WAIT)
    yield w
    w.stop_link()


def test_attached_window_shows_traffic_and_edits_held_messages(qtbot: Any, window: MainWindow,
                                                               endpoint: Endpoint) -> None:
    w = window
    assert w.link is not None and w.link.kind == "control"
    assert w.link.listen_addr == endpoint.proxy.server.listen_addr
    with connect(endpoint.proxy.port) as c:
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        qtbot.waitUntil(lambda: w.model.rowCount() >= 2, timeout=WAIT)
        assert w.model.data(w.model.index(0, Column.SUMMARY)) == '"hello"'
        fut = w.link.command("hold_next", direction="c2s", count=1)
        qtbot.waitUntil(fut.done, timeout=WAIT)
        assert fut.exception() is None
        c.sendall(b"secret")
        qtbot.waitUntil(lambda: w.store.held_count == 1, timeout=WAIT)
        mid = w.intercept.selected_id()
        assert mid is not None
        dlg = w.edit_and_forward(mid)
        assert dlg is not None
        dlg.edit.setPlainText("public")
        dlg.accept()
        assert recv_exact(c, 6) == b"public"
        qtbot.waitUntil(lambda: w.store.held_count == 0, timeout=WAIT)


def test_attached_window_survives_the_control_endpoint_closing(qtbot: Any, window: MainWindow,
                                                              endpoint: Endpoint) -> None:
    endpoint.close_control()
    qtbot.waitUntil(lambda: not window.banner.isHidden(), timeout=WAIT)
    assert "proxy stopped" in window.banner_text.text().lower()
    window.hold_next(Direction.C2S)
    assert "not running" in window.log.toPlainText()


def test_attached_window_follows_what_another_client_changes(qtbot: Any, window: MainWindow,
                                                              endpoint: Endpoint) -> None:
    """Conditions, rules and framing set by another client (a script, another window) show in this window as
    soon as the proxy announces them; the change the window makes itself is not echoed back into its panel."""
    from proxy.conditions import Conditions, DirectionConditions
    from proxy.control.client import ControlClient

    with ControlClient("127.0.0.1", endpoint.port, TOKEN) as other:
        wanted = Conditions(DirectionConditions(latency_ms=120), DirectionConditions(latency_ms=30))
        other.call("set_conditions", conditions=wanted.to_dict())
        qtbot.waitUntil(lambda: window.conditions.value().c2s.latency_ms == 120, timeout=WAIT)
        assert window.conditions.value().s2c.latency_ms == 30
        assert "by another client" in window.log.toPlainText()
        other.call("set_rules", rules=[{"action": "drop", "filter": 'text contains "x"'}])
        qtbot.waitUntil(lambda: len(window.intercept.rules) == 1, timeout=WAIT)
        assert window.intercept.rule_list.item(0).text() == 'when text contains "x"  →  drop'
        other.call("set_framing", framing="lines")
        qtbot.waitUntil(lambda: window.framing_combo.currentText() == "lines", timeout=WAIT)

        # This window's own change reaches the other client, and is not applied to this window a second time.
        seen: list[object] = []
        window.link_events.conditions_changed.connect(seen.append)
        window.conditions.cols[Direction.C2S].latency.spin.setValue(250)
        got: list[dict[str, Any]] = []

        def announced() -> bool:
            while not other.events.empty():
                ev = other.events.get_nowait()
                if ev and ev["type"] == "conditions_changed" and ev["conditions"]["c2s"]["latency_ms"] == 250:
                    got.append(ev)
            return bool(got)

        qtbot.waitUntil(announced, timeout=WAIT)
        assert window.link is not None
        fut = window.link.command("ping")  # its reply comes after the announcement on this window's connection
        qtbot.waitUntil(fut.done, timeout=WAIT)
        QCoreApplication.processEvents()  # deliver whatever the reader thread queued for the GUI thread
        assert seen == [] and window.conditions.value().c2s.latency_ms == 250


def test_rules_and_conditions_in_force_show_when_the_window_attaches(qtbot: Any, tmp_path: Any,
                                                                     endpoint: Endpoint) -> None:
    from proxy.control.client import ControlClient

    with ControlClient("127.0.0.1", endpoint.port, TOKEN) as script:
        script.call("set_conditions", conditions={"c2s": {"latency_ms": 42}})
        script.call("set_rules", rules=[{"action": "hold", "direction": "c2s", "bytes_regex": "login"}])
    w = MainWindow(attach=("127.0.0.1", endpoint.port, TOKEN),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: w.link is not None, timeout=WAIT)
        assert w.conditions.value().c2s.latency_ms == 42
        assert [r["action"] for r in w.intercept.rules] == ["hold"]
        assert w.intercept.rule_list.item(0).text() == "when c2s and bytes ~ login  →  hold"
    finally:
        w.stop_link()


# ------------------------------------------------------------------------------ the token, never on a command line


@pytest.mark.timeout(60)
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc/<pid>/cmdline (Linux)")
def test_the_child_proxy_gets_its_token_from_its_environment_not_its_command_line(echo_server: EchoServer) -> None:
    """Issue 16 item 6: the window started its proxy with ``--token=...``, which every local user sees in ``ps``."""
    from inspector.bridge import ChildProcessLink, LinkOptions

    link = ChildProcessLink(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    link.start()
    try:
        assert link.proc is not None
        pid = link.proc.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert link.token.encode() not in cmdline, cmdline
        assert b"--token" not in cmdline
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"SOCKSCOPE_TOKEN={link.token}".encode() in environ
        assert link.alive and link.command("ping").result(10)["echo"] is None  # and the window's link works with it
    finally:
        link.stop()


def test_attach_refuses_a_token_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from inspector import app

    with pytest.raises(SystemExit) as e:
        app.main(["--attach", "127.0.0.1:7000", "--token", "s3cret"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "SOCKSCOPE_TOKEN" in err and "s3cret" not in err


def test_attach_takes_the_token_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    from inspector.app import attach_from_args, build_parser
    from proxy.options import UsageError

    monkeypatch.setenv("SOCKSCOPE_TOKEN", "fr0m-env")
    assert attach_from_args(build_parser().parse_args(["--attach", "127.0.0.1:7000"])) == ("127.0.0.1", 7000,
                                                                                           "fr0m-env")
    f = tmp_path / "token"
    f.write_text("fr0m-file\n")
    args = build_parser().parse_args(["--attach", "127.0.0.1:7000", "--token-file", str(f)])
    assert attach_from_args(args)[2] == "fr0m-file"
    monkeypatch.delenv("SOCKSCOPE_TOKEN")
    with pytest.raises(UsageError, match="SOCKSCOPE_TOKEN"):
        attach_from_args(build_parser().parse_args(["--attach", "127.0.0.1:7000"]))

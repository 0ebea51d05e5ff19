"""The demo lives as long as the window (issue 19, item 1): its client waits for a held reply as long as it takes,
connects again when the user closes or resets its connection, and connection and message numbers stay unique for
the window's lifetime, also across "Start again".

The window is attached over the control protocol to a real engine (``ThreadLink``: engine and endpoint on a thread
of the test process; ``ChildProcessLink``: the ``python -m proxy --demo`` child that ``sockscope demo`` runs).
Waits are ``qtbot.waitUntil``, never sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import ChildProcessLink, LinkOptions, ThreadLink
from inspector.ui.main_window import MainWindow
from proxy.demo import DemoClient, DemoServer
from proxy.model import Direction
from tests.test_ui_window import WAIT, wait_link

pytestmark = pytest.mark.slow  # the demo's window, child proxy and client: in the full run, not the fast loop


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


def pings_on(w: MainWindow, conn: int) -> int:
    s = w.store
    return sum(1 for r in range(len(s)) if s.conn_ids[r] == conn and s.payload(r).startswith(b"pong"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["reset", "close"])
def test_the_demo_client_connects_again_when_the_user_ends_its_connection(
        qtbot: Any, make_window: Callable[..., MainWindow], how: str) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store.connections) == 1 and pings_on(w, min(w.store.connections)) >= 2,
                    timeout=WAIT)
    first = min(w.store.connections)
    w.conn_table.selectRow(0)
    (w.conn_reset if how == "reset" else w.conn_close).click()
    qtbot.waitUntil(lambda: not w.store.connections[first].is_open, timeout=WAIT)
    # the demo's client notices, connects again, is welcomed again and pings on
    qtbot.waitUntil(lambda: len(w.store.connections) == 2, timeout=WAIT)
    second = max(w.store.connections)
    qtbot.waitUntil(lambda: pings_on(w, second) >= 2, timeout=WAIT)
    s = w.store
    welcome = [r for r in range(len(s)) if s.conn_ids[r] == second and s.dirs[r] == Direction.S2C]
    assert s.payload(welcome[0]).startswith(b"Hello from the exercise server")
    assert w.link is not None and w.link.alive and w.banner.isHidden()


def _ids(w: MainWindow) -> tuple[set[int], set[int]]:
    return set(w.store.connections), {w.store.ids[r] for r in range(len(w.store))}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("factory", [ThreadLink, ChildProcessLink], ids=["thread", "child"])
def test_numbers_stay_unique_across_start_again(qtbot: Any, make_window: Callable[..., MainWindow],
                                                factory: Any) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05), link_factory=factory)
    link = wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store) >= 6, timeout=2 * WAIT)
    w.stop_link()
    conns_before, ids_before = _ids(w)
    n = len(w.store)
    w.restart_link()
    qtbot.waitUntil(lambda: w.link is not None and w.link is not link and w.link.alive, timeout=2 * WAIT)
    qtbot.waitUntil(lambda: len(w.store) >= n + 6, timeout=2 * WAIT)
    conns_after, ids_after = _ids(w)
    new_conns = conns_after - conns_before
    assert new_conns and min(new_conns) > max(conns_before), (conns_before, conns_after)
    new_ids = [w.store.ids[r] for r in range(n, len(w.store))]
    assert min(new_ids) > max(ids_before)
    assert len(ids_after) == len(w.store)  # every message number once in the table
    # and after Clear (Ctrl+K) too: the window remembers what it has used
    used = max(ids_after)
    w.clear(ask=False)
    w.stop_link()
    w.restart_link()
    qtbot.waitUntil(lambda: len(w.store) >= 2, timeout=2 * WAIT)
    assert min(w.store.ids[r] for r in range(len(w.store))) > used
    assert min(set(w.store.connections) - conns_after) > max(conns_after)


# ------------------------------------------------------------------------------------------- the demo's client


class _Holder:
    """A server that welcomes, reads the reply, then reads pings and answers each one only when told."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.answer = threading.Event()
        self.got_ping = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"Hello")
            conn.recv(2048)
            while data := conn.recv(2048):
                self.got_ping.set()
                self.answer.wait(30)
                conn.sendall(b"pong" + data[4:])
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def test_the_demo_client_has_no_read_timeout_and_stops_at_once_when_told() -> None:
    """While the user holds a ping, the client waits (no socket timeout ends it); stop() ends the wait."""
    server = _Holder()
    lines: list[str] = []
    client = DemoClient("127.0.0.1", server.port, None, 0.01, say=lines.append).start()
    try:
        assert server.got_ping.wait(10)
        sock = client.sock
        assert sock is not None and sock.gettimeout() is None  # blocking: the reply may take minutes
        server.answer.set()
        client.stop()
        client.thread.join(10)
        assert not client.thread.is_alive()
        assert client.error is None
    finally:
        server.close()


def test_the_demo_client_tries_again_while_the_server_is_away() -> None:
    server = DemoServer(say=lambda _l: None).start()
    port = server.port
    server.stop()  # nobody listens on the port for a while
    lines: list[str] = []
    refused = threading.Event()

    def say(line: str) -> None:
        lines.append(line)
        if "cannot connect" in line:
            refused.set()

    client = DemoClient("127.0.0.1", port, None, 0.01, say=say, retry_s=0.05).start()
    try:
        assert refused.wait(10), lines
        assert client.thread.is_alive()  # it did not give up
        back = socket.create_server(("127.0.0.1", port))  # the server comes back on the same port
        try:
            back.settimeout(10)
            conn, _ = back.accept()  # and the client connects to it
            conn.close()
        finally:
            back.close()
    finally:
        client.stop()
        client.thread.join(10)
    assert client.error is None


@pytest.mark.timeout(60)
def test_when_the_proxy_goes_away_the_banner_says_what_happened_and_what_to_do(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    link = wait_link(qtbot, w)
    qtbot.waitUntil(lambda: len(w.store) >= 3, timeout=WAIT)
    assert isinstance(link, ThreadLink)
    link.kill()  # the engine shuts down: its endpoint says goodbye to the window
    qtbot.waitUntil(lambda: not w.banner.isHidden(), timeout=WAIT)
    text = w.banner_text.text()
    assert "The proxy stopped: the proxy was shut down." in text, text
    assert "bye" not in text.lower() and "Start again" in text and "stay in the table" in text
    assert w.banner_button.isVisible() and w.banner_button.text() == "Start again"


@pytest.mark.timeout(60)
def test_sockscope_demo_preset_is_in_force_from_the_first_message(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """``sockscope demo --preset "Mobile 4G"`` (item 4): the child proxy starts with the preset, so even the
    demo's welcome is delayed, and the panel names the preset in force."""
    from inspector.app import build_parser, link_from_args

    options, attach = link_from_args(build_parser().parse_args(["demo", "--preset", "Mobile 4G"]))
    assert options is not None and attach is None
    options.demo_interval = 0.05
    w = make_window(options, link_factory=ChildProcessLink)
    link = wait_link(qtbot, w)
    try:
        qtbot.waitUntil(lambda: len(w.store) >= 4 and w.store.added_delay_ns(0) is not None, timeout=2 * WAIT)
    except qtbot.TimeoutError:  # say what the window saw: this failed once in a full run and never alone
        rows = [(w.store.payload(r)[:24], w.store.added_delay_ns(r)) for r in range(min(6, len(w.store)))]
        pytest.fail(f"{len(w.store)} rows {rows}; the window's log:\n{w.log.toPlainText()}")
    snapshot = link.command("snapshot").result(10)
    assert snapshot["conditions"]["c2s"]["latency_ms"] == 80 and snapshot["conditions"]["s2c"]["loss_pct"] == 4
    delay = w.store.added_delay_ns(0)
    assert w.store.payload(0).startswith(b"Hello") and delay is not None and delay >= 80e6
    assert w.conditions.preset.currentText() == "Mobile 4G"
    assert "Unity" in w.conditions.preset_source.text()
    assert "added round trip ≈ 200 ms" in w.conditions.readout.text()

"""The two addons docs/addons.md ships (docs/examples/addons/), through a real relay with real sockets: the peer
receives exactly the expected bytes. And both type-check with ``mypy --strict``, as an addon author's would.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.framing import FramingSpec
from proxy.model import Message, MessageState, MessageUpdated
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from tests.conftest import IO_TIMEOUT, Recorder, connect
from tests.test_addon_hooks import _decoded_values, load, wait_line  # noqa: F401  (an autouse fixture)
from tests.test_udp_sockets import UdpEcho, client

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples" / "addons"


class Sink:
    """A TCP server that keeps every byte of its one client's connection, until the client closes it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.data = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(IO_TIMEOUT)
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(IO_TIMEOUT)
                while chunk := conn.recv(65536):
                    self.data += chunk
        except OSError:
            pass
        finally:
            self.done.set()

    def received(self) -> bytes:
        assert self.done.wait(IO_TIMEOUT), "the client's connection did not end"
        return self.data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def send_all(port: int, data: bytes) -> None:
    with connect(port) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        c.recv(1)  # the proxy passes the server's close on once everything went through


@pytest.mark.timeout(60)
def test_rename_player_rewrites_the_name_field_and_nothing_else(
        sink: Sink, start_proxy: Callable[..., ProxyThread], recorder: Recorder) -> None:
    p = start_proxy(sink.port, FramingSpec("lines", "lines"))
    assert load(p, EXAMPLES / "rename_player.py") == ["RenamePlayer"]
    sent = (b'{"type": "join", "name": "Ada", "speed": 3}\n'
            b'{"type":"pos","x":1,"y":2}\n'  # no name: untouched, spacing and all
            b'not json at all\n'
            b'{"type": "chat", "name": "Ada", "text": "hi \\u00e9"}\r\n')
    send_all(p.port, sent)
    assert sink.received() == (b'{"type": "join", "name": "Grace", "speed": 3}\n'
                               b'{"type":"pos","x":1,"y":2}\n'
                               b'not json at all\n'
                               b'{"type": "chat", "name": "Grace", "text": "hi \\u00e9"}\r\n')
    wait_line(recorder, "#1: renamed 'Ada' to 'Grace'")
    edited = [u.data for u in recorder.of(MessageUpdated) if u.data is not None]
    assert [json.loads(e)["name"] for e in edited] == ["Grace", "Grace"]  # the window shows them as edited


@pytest.mark.timeout(60)
def test_drop_every_third_drops_updates_3_6_9_on_tcp(
        sink: Sink, start_proxy: Callable[..., ProxyThread], recorder: Recorder) -> None:
    p = start_proxy(sink.port, FramingSpec("lines", "lines"))
    load(p, EXAMPLES / "drop_every_third.py")
    updates = [json.dumps({"type": "pos", "seq": i, "x": i, "y": 0}).encode() + b"\n" for i in range(1, 10)]
    chat = b'{"type": "chat", "text": "not a position"}\n'
    send_all(p.port, b"".join([*updates[:4], chat, *updates[4:]]))
    kept = [u for i, u in enumerate(updates, 1) if i % 3]
    assert sink.received() == b"".join([*kept[:3], chat, *kept[3:]])
    wait_line(recorder, "#1 ended: 3 position updates dropped")
    dropped = [u.msg_id for u in recorder.of(MessageUpdated) if u.state is MessageState.DROPPED]
    assert [m.data for m in recorder.of(Message) if m.id in dropped] == [updates[2], updates[5], updates[8]]


@pytest.mark.timeout(60)
def test_drop_every_third_drops_datagrams_3_6_9_of_a_udp_flow(recorder: Recorder) -> None:
    echo = UdpEcho()
    p = ProxyThread(ProxyConfig(listen_port=0, target_port=echo.port, tcp=False, udp=True), (recorder,)).start()
    c = client()
    try:
        load(p, EXAMPLES / "drop_every_third.py")
        updates = [json.dumps({"type": "pos", "seq": i, "x": i, "y": 0}).encode() for i in range(1, 10)]
        for u in updates:
            c.sendto(u, ("127.0.0.1", p.port))
            if updates.index(u) % 3 != 2:
                assert c.recv(200) == u  # one at a time: the echo of each kept update comes back
        c.sendto(b"end", ("127.0.0.1", p.port))
        assert c.recv(200) == b"end"  # the last dropped one would have come before it
        assert echo.received == [u for i, u in enumerate(updates, 1) if i % 3] + [b"end"]
    finally:
        c.close()
        p.stop()
        echo.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_examples_type_check_strictly() -> None:
    """What an addon author gets from the typed API: ``mypy --strict`` on the shipped examples finds nothing."""
    files = sorted(str(p) for p in EXAMPLES.glob("*.py"))
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
                         capture_output=True, text=True, cwd=ROOT, timeout=110)
    assert out.returncode == 0, out.stdout + out.stderr

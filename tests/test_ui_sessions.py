"""The window's sessions: save and reopen (identical records), open with a progress dialog and cancel, drag and drop,
keep recording to a file while live, and export of the visible messages. Offscreen; waits are qtbot.waitUntil."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from inspector.bridge import LinkOptions, ThreadLink
from inspector.interop.session_io import SessionWriter
from inspector.ui.main_window import MainWindow
from proxy.model import Clock, ConnectionOpened, Direction, Message, Record
from proxy.session import open_session
from tests.conftest import EchoServer, connect, recv_exact

WAIT = 10_000


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

    def make(options: LinkOptions | None = None) -> MainWindow:
        w = MainWindow(options, settings=settings, link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.sessions.cancel()
        w.stop_link()
        w.close()


def _records(path: Path) -> list[Record]:
    with open_session(path) as s:
        return list(s)


def _write_session(path: Path, n: int) -> None:
    with SessionWriter(path, clock=Clock(0, 1_700_000_000_000_000_000), target=("127.0.0.1", 5555)) as w:
        w.write(ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0))
        for i in range(n):
            w.write(Message(i + 1, 1, Direction(i & 1), i >> 1, b"ping %d \xf0\x9f\x93\xa5" % i, i * 1000, i * 1000))


@pytest.mark.slow
def test_open_shows_progress_first_rows_at_once_and_save_is_identical(
        qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    path = tmp_path / "big.sockscope"
    _write_session(path, 60_000)
    assert path.stat().st_size > 1 << 20  # big enough for the dialog to show at once
    w = make_window()
    assert w.sessions.open_session(str(path))
    dlg = w.sessions.progress
    assert dlg is not None and dlg.isVisible()  # a progress dialog with a Cancel button, shown at once
    assert 0 < len(w.store) < 60_000  # the first batch is in the table before the file is read
    assert w.sessions.first_rows_s is not None and w.sessions.first_rows_s < 1.0
    qtbot.waitUntil(lambda: not w.sessions.busy, timeout=WAIT)
    assert len(w.store) == 60_000 and w.model.rowCount() == 60_000
    saved = tmp_path / "saved.sockscope"
    assert w.sessions.save_session(str(saved))
    assert _records(saved) == _records(path)


@pytest.mark.slow
def test_cancel_keeps_what_was_loaded(qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    path = tmp_path / "big.sockscope"
    _write_session(path, 200_000)
    w = make_window()
    w.sessions.open_session(str(path))
    assert w.sessions.progress is not None
    from PySide6.QtWidgets import QPushButton

    button = w.sessions.progress.findChild(QPushButton)
    assert button is not None and button.text() == "Cancel"
    button.click()
    assert not w.sessions.busy and w.sessions.progress is None
    loaded = len(w.store)
    assert 0 < loaded < 200_000
    QApplication.processEvents()
    assert len(w.store) == loaded  # nothing more arrives after cancel


def test_errors_are_reported_not_raised(make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    w = make_window()
    (tmp_path / "x.sockscope").write_bytes(b"GIF89a" + bytes(64))
    assert not w.sessions.open_file(str(tmp_path / "x.sockscope"))
    assert "not a sockscope session" in (w.sessions.last_error or "")
    (tmp_path / "x.pcap").write_bytes(b"nonsense" * 8)
    assert not w.sessions.open_file(str(tmp_path / "x.pcap"))
    assert "not a pcap or pcapng" in (w.sessions.last_error or "")


def test_drop_a_capture_on_the_window_imports_it(qtbot: Any, make_window: Callable[..., MainWindow],
                                                 tmp_path: Path) -> None:
    from scapy.utils import wrpcap

    from tests.test_interop import REPLY, _exercise_packets

    cap = tmp_path / "lo.pcap"
    wrpcap(str(cap), _exercise_packets())
    w = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cap))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    # Qt only delivers drop events during a real drag, so hand the event to the window's filter as Qt would.
    assert w.sessions.eventFilter(w, drop) and drop.isAccepted()
    qtbot.waitUntil(lambda: len(w.store) == 8 and not w.sessions.busy, timeout=WAIT)
    assert w.store.payload(1) == REPLY
    saved = tmp_path / "imported.sockscope"
    assert w.sessions.save_session(str(saved))
    assert [r.data for r in _records(saved) if isinstance(r, Message)][1] == REPLY


def test_live_capture_records_to_a_file_and_exports_visible(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer, tmp_path: Path) -> None:
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    seen: list[Record] = []
    w.pump.on_batch.append(seen.extend)
    qtbot.waitUntil(lambda: w.link is not None and w.sessions.writer is not None, timeout=WAIT)
    assert w.link is not None and w.link.listen_addr is not None
    s = connect(w.link.listen_addr[1])
    s.sendall(b"first")
    assert recv_exact(s, 5) == b"first"
    qtbot.waitUntil(lambda: len(w.store) >= 2, timeout=WAIT)
    live = tmp_path / "live.sockscope"
    assert w.sessions.record_to(str(live))  # everything so far, then what follows
    s.sendall("second 📥".encode())
    assert recv_exact(s, 11) == "second 📥".encode()
    s.shutdown(socket.SHUT_WR)
    s.recv(10)
    s.close()
    qtbot.waitUntil(lambda: len(w.store) >= 4 and any(not c.is_open for c in w.store.connections.values()),
                    timeout=WAIT)
    w.pump.pump()
    w.sessions.writer.flush()  # type: ignore[union-attr]
    assert _records(live) == seen  # exactly the records the window received
    saved = tmp_path / "saved.sockscope"
    assert w.sessions.save_session(str(saved))
    assert _records(saved) == seen

    w.filter_bar.set_text("dir == c2s")
    w.filter_bar.apply()
    assert w.store.visible_count == 2
    out = tmp_path / "visible.jsonl"
    assert w.sessions.export_visible("jsonl", str(out))
    qtbot.waitUntil(lambda: not w.sessions.exporting, timeout=WAIT)
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [d["text"] for d in lines if d["type"] == "message"] == ["first", "second 📥"]
    for fmt, name in (("pcapng", "visible.pcapng"), ("script", "replay.py")):
        assert w.sessions.export_visible(fmt, str(tmp_path / name))
        qtbot.waitUntil(lambda: not w.sessions.exporting, timeout=WAIT)
        assert (tmp_path / name).stat().st_size > 0
    assert "second" in (tmp_path / "replay.py").read_text(encoding="utf-8")
    w.sessions.stop_recording_to_file()
    assert w.sessions.spool_is_temp and not w.sessions.record_action.isChecked()


def test_the_live_spool_writes_each_record_as_received_without_encoding_it_again(
        qtbot: Any, make_window: Callable[..., MainWindow], echo_server: EchoServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a flood the spool was a tenth of the GUI thread: every record encoded again. It now writes the
    frames the control protocol delivered (a session file's record frames), and the file reads back the same."""
    import inspector.interop.session_io as session_io

    encoded: list[Record] = []
    encode = session_io.record_to_dict

    def counting(r: Record) -> dict[str, Any]:
        encoded.append(r)
        return encode(r)

    monkeypatch.setattr(session_io, "record_to_dict", counting)
    w = make_window(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port)))
    seen: list[Record] = []
    w.pump.on_batch.append(seen.extend)
    qtbot.waitUntil(lambda: w.link is not None and w.sessions.writer is not None, timeout=WAIT)
    assert w.link is not None and w.link.listen_addr is not None
    s = connect(w.link.listen_addr[1])
    for i in range(20):
        s.sendall(b"ping %d \xf0\x9f\x93\xa5" % i)
        assert recv_exact(s, len(b"ping %d \xf0\x9f\x93\xa5" % i)) == b"ping %d \xf0\x9f\x93\xa5" % i
    s.close()
    qtbot.waitUntil(lambda: any(not c.is_open for c in w.store.connections.values()), timeout=WAIT)
    w.pump.pump()
    assert w.sessions.writer is not None and w.sessions.spool_path is not None
    w.sessions.writer.flush()
    assert len(seen) >= 42  # opened, connected, 40 messages, closed
    assert _records(Path(w.sessions.spool_path)) == seen
    assert encoded == []


def test_the_record_queue_keeps_frames_aligned_with_records_when_it_drops() -> None:
    from inspector.bridge import RecordQueue

    q = RecordQueue(bound=3)
    opened = ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0)
    msgs = [Message(i, 1, Direction.C2S, i, b"x", i, i) for i in range(1, 5)]
    q.put_frames([opened, msgs[0]], [b"f-open", b"f-1"])
    q.put(msgs[1])  # made on this side: no frame
    q.put_frames(msgs[2:], [b"f-3", b"f-4"])  # past the bound: messages are dropped with their frames
    records, frames = q.drain_frames()
    assert records == [opened, msgs[0], msgs[1]]
    assert frames == [b"f-open", b"f-1", None]
    assert q.lost == 2
    assert q.drain_frames() == ([], [])

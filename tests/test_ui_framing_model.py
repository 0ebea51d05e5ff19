"""The message table's model while the store re-frames reads it already shows (issue 20, item 3): Qt's model tester
watches every remove, insert and change, and after each batch the table shows exactly the store's view; a model
that missed a batch starts again from the store.

The records are the proxy's own (``FramingInferred`` after the raw reads it passed on); the window end to end, with
a real proxy and real games, is tests/test_ui_framing.py.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from PySide6.QtCore import Qt

from inspector.store import MessageStore
from inspector.ui import none_guard
from inspector.ui.decoding import Decoding
from inspector.ui.message_model import ROW_ROLE, VIEW_ROW_ROLE, Column, MessageTableModel
from proxy.model import ConnectionOpened, Direction, FramingInferred, Message, MessageState, Origin

pytestmark = pytest.mark.usefixtures("qapp")
C2S, S2C = Direction.C2S, Direction.S2C


@pytest.fixture(autouse=True)
def _guard(qapp: Any) -> None:
    """As the window does: Qt signals emitted from Python cost ``True`` a reference with PySide6 6.12 on Python
    3.11 (``inspector.ui.none_guard``), and the model tester makes hundreds of such calls."""
    none_guard.install()


def len16(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


class Feed:
    """Messages of several connections with per-direction seqs, as the proxy numbers them."""

    def __init__(self) -> None:
        self.next_id = 1
        self.seqs: dict[tuple[int, Direction], int] = {}

    def msg(self, conn: int, d: Direction, data: bytes, state: MessageState = MessageState.FORWARDED) -> Message:
        i, self.next_id = self.next_id, self.next_id + 1
        seq = self.seqs.get((conn, d), 0)
        self.seqs[(conn, d)] = seq + 1
        t = i * 1_000_000
        return Message(i, conn, d, seq, data, t, t + 10, Origin.LIVE, state)

    def inferred(self, conn: int, d: Direction, framing: str, since: int = 0, cause: str = "inferred"
                 ) -> FramingInferred:
        n = self.seqs.get((conn, d), 0)
        return FramingInferred(conn, d, framing, f"{framing} fits", n, 0, 1, since, n - since, cause)


def shown(model: MessageTableModel) -> list[int]:
    return [model.data(model.index(i, 0), VIEW_ROW_ROLE) for i in range(model.rowCount())]


def test_reframing_announced_rows_passes_the_model_tester(qtmodeltester: Any) -> None:
    s = MessageStore()
    model = MessageTableModel(s, Decoding(s))
    qtmodeltester.check(model, force_py=True)  # stays connected: every signal below is checked
    f = Feed()
    a, b, c = len16(b'{"n":1}'), len16(b'{"n":2}'), len16(b'{"n":3}')
    batches: list[list[Any]] = [
        [ConnectionOpened(1, ("127.0.0.1", 40001), ("127.0.0.1", 5555), 0),
         ConnectionOpened(2, ("127.0.0.1", 40002), ("127.0.0.1", 5555), 0),
         f.msg(1, C2S, a + b), f.msg(2, C2S, b"other\n"), f.msg(1, S2C, b"he"), f.msg(2, S2C, b"x")],
        [f.msg(1, S2C, b"llo\nwor"), f.msg(2, C2S, b"more\n"), f.msg(1, S2C, b"ld\n")],
        # the decisions, with new reads around them in the same batch
        [f.msg(2, S2C, b"y"), f.inferred(1, C2S, "len16be"), f.inferred(1, S2C, "lines"), f.msg(1, C2S, c)],
        [f.msg(1, C2S, a + c, MessageState.SCHEDULED), f.inferred(2, C2S, "lines")],
    ]
    for batch in batches:
        model.on_applied(s.apply(batch))
        assert shown(model) == list(s.view)
    payloads = [s.payload(h) for h in s.view]
    assert payloads[:2] == [a, b]  # the first read's two frames, where the read was
    assert b"hello\n" in payloads and b"world\n" in payloads and b"he" not in payloads
    assert model.data(model.index(1, Column.NUMBER)) == "1.2"
    assert model.data(model.index(1, 0), ROW_ROLE) == 0  # the read behind it (what menus act on)
    tip = model.data(model.index(1, Column.NUMBER), Qt.ItemDataRole.ToolTipRole)
    assert "re-framed from read #1" in tip
    assert model.data(model.index(1, Column.SIZE)) == str(len(b))


def test_a_filtered_view_and_a_missed_batch(qtmodeltester: Any) -> None:
    s = MessageStore()
    model = MessageTableModel(s, Decoding(s))
    qtmodeltester.check(model, force_py=True)
    f = Feed()
    model.on_applied(s.apply([ConnectionOpened(1, ("127.0.0.1", 40001), ("127.0.0.1", 5555), 0),
                              f.msg(1, C2S, len16(b"ping") + len16(b"pong")), f.msg(1, S2C, b"ok")]))
    s.refilter(lambda r: s.payload(r).endswith(b"ing"))  # the read ends in "pong": hidden
    model.reset()
    assert model.rowCount() == 0
    model.on_applied(s.apply([f.inferred(1, C2S, "len16be")]))  # its "ping" frame is shown now
    assert [s.payload(h) for h in shown(model)] == [len16(b"ping")]
    s.refilter(None)
    model.reset()
    # a batch the model did not follow (a slice-wise filter was running): it starts again from the store
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    s.apply([f.msg(1, S2C, b"x\ny")])
    model.on_applied(s.apply([f.msg(1, S2C, b"\n"), f.inferred(1, S2C, "lines")]))
    assert resets == [1] and shown(model) == list(s.view)
    assert [s.payload(h) for h in s.view] == [len16(b"ping"), len16(b"pong"), b"okx\n", b"y\n"]

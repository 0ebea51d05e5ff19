"""The Qt models over the store: Qt's model tester on each, one insert per batch, colours and strike-through."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from inspector.store import MessageStore
from inspector.ui.decoding import Decoding
from inspector.ui.message_model import ROW_ROLE, Column, MessageTableModel
from inspector.ui.side_models import ConnectionsModel, HeldModel
from proxy.model import Clock, ConnectionOpened, DelayReason, Direction, Message, MessageState, MessageUpdated, Origin

pytestmark = pytest.mark.usefixtures("qapp")


def msg(i: int, d: Direction = Direction.C2S, data: bytes = b"ping", state: MessageState = MessageState.FORWARDED,
        conn: int = 1) -> Message:
    release = None if state is MessageState.HELD else i * 1_000_000 + 5_000_000
    delays = () if release is None else ((DelayReason.LATENCY, 5_000_000),)  # the +delay column shows added delay
    return Message(i, conn, d, i, data, i * 1_000_000, release, Origin.LIVE, state, delays=delays)


@pytest.fixture
def store() -> MessageStore:
    s = MessageStore()
    s.apply([ConnectionOpened(1, ("127.0.0.1", 4000), ("127.0.0.1", 5555), 0),
             ConnectionOpened(2, ("127.0.0.1", 4001), ("127.0.0.1", 5555), 0),
             msg(1, data=b'{"type":"ping","id":1}'), msg(2, Direction.S2C, "Hello 🚀".encode()),
             msg(3, state=MessageState.HELD, conn=2), msg(4, state=MessageState.DROPPED)])
    return s


def test_message_model_passes_qt_model_tester(qtmodeltester, store: MessageStore) -> None:  # type: ignore[no-untyped-def]
    model = MessageTableModel(store, Decoding(store))
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == 4
    assert model.data(model.index(0, Column.SUMMARY)) == '{"type":"ping","id":1}'
    assert model.data(model.index(1, Column.DIR)) == "←"
    assert model.data(model.index(2, Column.STATE)) == "HELD"
    assert model.data(model.index(2, Column.DELAY)) == "…held"
    assert model.data(model.index(0, Column.DELAY)) == "+5.0 ms"
    assert model.data(model.index(3, 0), ROW_ROLE) == 3
    font = model.data(model.index(3, Column.SUMMARY), 6)  # FontRole
    assert font is not None and font.strikeOut()
    assert model.data(model.index(2, 0), 8) == model.colours.held_bg  # BackgroundRole
    model.set_wall_clock(True)
    qtmodeltester.check(model, force_py=True)


def test_side_models_pass_qt_model_tester(qtmodeltester, store: MessageStore) -> None:  # type: ignore[no-untyped-def]
    conns = ConnectionsModel(store)
    held = HeldModel(store, Decoding(store))
    qtmodeltester.check(conns, force_py=True)
    qtmodeltester.check(held, force_py=True)
    assert conns.rowCount() == 2 and held.rowCount() == 1
    assert conns.data(conns.index(0, 1)) == "2 / 1"  # the counts first: a narrow panel shows them
    assert conns.data(conns.index(0, 4)) == ":4000"  # loopback client: the port is what tells them apart
    assert "4000" in conns.data(conns.index(0, 4), 3)  # ToolTipRole: the full address
    assert "↑" in conns.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert conns.data(conns.index(1, 3)) == "connecting · 1 held"  # the state says what is held
    assert held.data(held.index(0, 4)) == '"ping"'
    changed: list[int] = []
    held.dataChanged.connect(lambda a, b, _roles=(): changed.append(b.row()))
    held.refresh_all()  # after "decode as": one signal over the queue
    assert changed == [0]
    qtmodeltester.check(held, force_py=True)


def test_one_insert_per_batch_and_changes_in_one_signal(qtbot, store: MessageStore) -> None:  # type: ignore[no-untyped-def]
    model = MessageTableModel(store, Decoding(store))
    inserts: list[tuple[int, int]] = []
    changes: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, a, b: inserts.append((a, b)))
    model.dataChanged.connect(lambda a, b, _roles=(): changes.append((a.row(), b.row())))
    result = store.apply([msg(i) for i in range(5, 505)])
    model.on_applied(result)
    assert inserts == [(4, 503)] and model.rowCount() == 504
    result = store.apply([MessageUpdated(3, 2, Direction.C2S, MessageState.FORWARDED, 9, 10),
                          MessageUpdated(1, 1, Direction.C2S, MessageState.DROPPED, 9, 10)])
    model.on_applied(result)
    assert changes == [(0, 2)]


def test_model_follows_a_refilter_with_one_reset(qtbot, qtmodeltester, store: MessageStore) -> None:  # type: ignore[no-untyped-def]
    model = MessageTableModel(store, Decoding(store))
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    store.refilter(lambda r: store.direction(r) is Direction.S2C)
    model.reset()
    assert resets == [1] and model.rowCount() == 1
    model.on_applied(store.apply([msg(9, Direction.S2C), msg(10)]))
    assert model.rowCount() == 2
    qtmodeltester.check(model, force_py=True)


def test_what_a_row_shows_follows_every_change_after_it_was_shown(store: MessageStore) -> None:
    """The model answers the view from one cached tuple per row: every change it announces, and the clock mode and
    palette, must show at the next read, never the cached value."""
    from inspector.ui import palette

    model = MessageTableModel(store, Decoding(store))
    fg, bg, font = Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.FontRole
    held = model.index(2, Column.STATE)
    assert model.data(held) == "HELD" and model.data(held, font).bold()
    assert model.data(model.index(2, 0), bg) == model.colours.held_bg
    # the held message is dropped: the engine says so and the pump announces the change
    model.on_applied(store.apply([MessageUpdated(3, 2, Direction.C2S, MessageState.DROPPED, 9_000_000)]))
    assert model.data(held) == "dropped"
    assert model.data(model.index(2, Column.SUMMARY), font).strikeOut()
    assert model.data(model.index(2, 0), bg) != model.colours.held_bg
    # a new batch: the new row is read, and the old rows still read right
    model.on_applied(store.apply([msg(5, Direction.S2C, b"pong")]))
    assert model.rowCount() == 5 and "pong" in model.data(model.index(4, Column.SUMMARY))
    assert model.data(model.index(4, Column.DIR), fg) == model.colours.direction(Direction.S2C)
    relative = model.data(model.index(0, Column.TIME))
    model.clock = Clock(0, 1_700_000_000 * 10**9)
    model.set_wall_clock(True)
    assert model.data(model.index(0, Column.TIME)) != relative
    model.set_wall_clock(False)
    assert model.data(model.index(0, Column.TIME)) == relative
    other = palette.LIGHT if model.colours is palette.DARK else palette.DARK
    assert other.direction_bg(Direction.S2C) != model.colours.direction_bg(Direction.S2C)
    model.colours = other
    assert model.data(model.index(1, 0), bg) == other.direction_bg(Direction.S2C)
    assert model.data(model.index(0, 0), Qt.ItemDataRole.DecorationRole) is None
    assert model.data(model.index(0, 0), Qt.ItemDataRole.TextAlignmentRole) == model.data(model.index(1, 0), 7)

"""The "layouts" offer (issue 20, item 4, the window's side): for a direction of fixed-size records the connection's
Framing menu offers the struct layouts of that size; the dialog lists them (a guess clearly marked), shows each field
with its value in a captured record, lets the user rename the fields, and applies the layout so that the table
decodes every record with it.

The candidates are given by a provider, as ``inspector.layouts`` will give them (a tiny frozen dataclass with that
API here); the traffic is the struct_records game of tests/games, played through a real proxy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import LinkOptions, ThreadLink
from inspector.ui.layout_offer import LayoutOfferDialog
from inspector.ui.main_window import MainWindow
from inspector.ui.message_model import Column
from proxy.model import Direction
from tests.test_ui_framing import Game, action, conn_menu, rows_of, wait_framed
from tests.test_ui_window import WAIT

pytestmark = pytest.mark.slow  # games played through the window's proxy: in the full run, not the fast loop

C2S = Direction.C2S


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Any) -> Iterator[Callable[[int], MainWindow]]:
    made: list[MainWindow] = []

    def make(target_port: int) -> MainWindow:
        w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", target_port), framing="auto"),
                       settings=QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat),
                       link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_link()


@dataclass(frozen=True)
class Layout:
    """What ``inspector.layouts.Layout`` offers: a struct format, field names, where it came from."""

    fmt: str
    names: tuple[str, ...]
    origin: str
    guessed: bool

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def spec(self) -> str:
        return " ".join([self.fmt, *self.names])


FOUND = Layout("<BBHff", ("kind", "buttons", "seq", "x", "y"), "game.py:12 INPUT = struct.Struct('<BBHff')", False)
GUESS = Layout("<III", ("int0", "int1", "int2"), "guessed from 3 records", True)


@pytest.mark.timeout(60)
def test_the_layouts_of_a_records_size_are_offered_renamed_and_used(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    game = Game("struct_records", 5)
    w = make_window(game.port)
    asked: list[tuple[int, Direction, int]] = []

    def provider(conn: int, d: Direction, size: int) -> list[Layout]:
        asked.append((conn, d, size))
        return [lay for lay in (FOUND, GUESS) if lay.size == size]

    w.framing_control.layout_provider = provider
    game.play(qtbot, w)
    conn = max(w.store.connections)
    wait_framed(qtbot, w, conn, "fixed:12", "fixed:40")
    sub = conn_menu(qtbot, w, conn)
    action(sub, "Struct layouts for ← s2c records (40 bytes)")  # each direction of records has its offer
    action(sub, "Struct layouts for → c2s records (12 bytes)").trigger()
    assert asked == [(conn, C2S, 12)]
    dlg = w.framing_control.layout_dialog
    assert isinstance(dlg, LayoutOfferDialog) and dlg.isVisible()
    assert dlg.choices.count() == 2 and dlg.choices.item(1).text().startswith("≈ guess: <III")
    assert "game.py:12" in dlg.choices.item(0).text()
    assert [dlg.fields.item(r, 0).text() for r in range(dlg.fields.rowCount())] == list(FOUND.names)
    last = struct.unpack("<BBHff", w.store.payload(rows_of(w, C2S)[-1]))
    assert dlg.fields.item(2, 3).text() == repr(last[2])  # the value of "seq" in the latest record
    dlg.rename(3, "stick x")
    assert not dlg.use.isEnabled() and "not an identifier" in dlg.error.text() and "\n" not in dlg.error.text()
    dlg.rename(3, "stick_x")
    assert dlg.use.isEnabled() and dlg.spec_label.text() == "layout: <BBHff kind buttons seq stick_x y"
    dlg.use.click()
    assert w.decoding.current_struct_format(conn, C2S) == "<BBHff kind buttons seq stick_x y"
    assert w.decoding.current_struct_format(conn, Direction.S2C) == ""  # the other direction is left alone
    pos = w.store.visible_position(rows_of(w, C2S)[-1])
    assert pos is not None
    qtbot.waitUntil(lambda: "stick_x" in str(w.model.data(w.model.index(pos, Column.SUMMARY))), timeout=WAIT)


def test_no_candidates_and_a_bad_candidate_say_so(qtbot: Any) -> None:
    from inspector.store import MessageStore
    from inspector.ui.decoding import Decoding

    d = Decoding(MessageStore())
    empty = LayoutOfferDialog(d, 1, C2S, [])
    qtbot.addWidget(empty)
    assert not empty.use.isEnabled()
    bad = LayoutOfferDialog(d, 1, C2S, [Layout("<Hz", ("a",), "somewhere", False)])
    qtbot.addWidget(bad)
    assert not bad.use.isEnabled() and "cannot be used" in bad.error.text()


@pytest.mark.timeout(60)
def test_the_window_offers_the_programs_own_layouts_and_a_guess(
        qtbot: Any, make_window: Callable[..., MainWindow]) -> None:
    """With no provider set by a test: the layouts ``sockscope run --window`` found in the program's source
    (``source_layouts``, real ``inspector.layouts.Layout`` objects) that fit a record size, then a guess made from
    the direction's captured records, marked as one."""
    from inspector.layouts import Layout as RealLayout

    game = Game("struct_records", 12)
    w = make_window(game.port)
    found = RealLayout("<BBHff", ("kind", "buttons", "seq", "x", "y"), "game.py:12 struct.pack", False)
    other = RealLayout("<Q", ("tick",), "game.py:30 struct.pack", False)
    w.source_layouts = [found, other]
    game.play(qtbot, w)
    conn = max(w.store.connections)
    wait_framed(qtbot, w, conn, "fixed:12", "fixed:40")
    offered = w.framing_control.layout_provider(conn, C2S, 12)  # type: ignore[misc]
    assert offered[0] == found and all(lay.size == 12 for lay in offered)
    assert other not in offered  # 8 bytes do not divide 12
    guesses = [lay for lay in offered if lay.guessed]
    assert len(guesses) == 1 and offered[-1] is guesses[0]
    s2c = w.framing_control.layout_provider(conn, Direction.S2C, 40)  # type: ignore[misc]
    assert s2c[0] == other and found not in s2c  # 5 records of 8 bytes fill 40; 12 bytes do not
    assert s2c[-1].guessed and s2c[-1].size == 40

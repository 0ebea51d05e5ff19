"""The window's garbage collection (inspector/ui/gc_guard.py): automatic collection is off while a window lives, and
what exists once the window has started is frozen, so a full collection scans only what came later.

A real window, offscreen; which objects a collection would scan (``gc.get_objects`` leaves the frozen out), never
timings. (The test suite's conftest also freezes what survives each Qt test; this checks the window's own.)
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import LinkOptions, ThreadLink
from inspector.ui import gc_guard
from inspector.ui.main_window import MainWindow

WAIT = 10_000


def _scanned(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_the_started_window_is_out_of_full_collections(qtbot: Any, tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc_guard, "_settled", False)  # as in a fresh process
    w = MainWindow(LinkOptions(), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   link_factory=ThreadLink)
    qtbot.addWidget(w)
    assert _scanned(w.table)  # made, not frozen yet
    w.show()
    qtbot.waitUntil(lambda: gc_guard._settled, timeout=WAIT)  # after the first paint
    assert not gc.isenabled()
    for part in (w, w.table, w.model, w.store, w.timeline):  # the window and what it built after its first paint
        assert not _scanned(part)
    # what comes later is collected as usual
    later: dict[str, list[int]] = {"k": []}
    assert _scanned(later)
    w.stop_link()


def test_a_window_made_later_settles_nothing_again(qtbot: Any, tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gc_guard, "_settled", True)  # an earlier window of this process did
    w = MainWindow(LinkOptions(), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   link_factory=ThreadLink)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._timeline is not None, timeout=WAIT)  # its first paint's work is done
    assert _scanned(w.table)  # one freeze per process: this window stays collectable
    w.stop_link()

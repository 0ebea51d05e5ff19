"""``python tools/screenshots.py OUTDIR [--size WxH]``: drive the real window with live demo traffic and save PNGs.

Role: documentation pictures that cannot go stale (docs/window.md): the demo's traffic decoded, a held message
being edited, the conditions panel shaping traffic, and a message composed from scratch. The window runs the demo
through an engine and control endpoint on a thread of this process (``inspector.bridge.ThreadLink``), attached
over loopback as it attaches to its child proxy. Runs offscreen (``QT_QPA_PLATFORM=offscreen``) or under
``xvfb-run``. Each picture is ``QWidget.grab()`` of the window (dialogs are painted onto the window's picture).
A development tool, not shipped in the package.
Must not import: nothing special; it is a script over the public window API.
Thread: GUI thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: the repository's packages

if TYPE_CHECKING:
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QWidget


def window_with_dialog(window: QWidget, dlg: QWidget) -> QPixmap:
    """The window's picture with ``dlg`` (its own top-level window) painted on it, with a title bar, where a
    window manager would put it: offscreen there is no window manager to draw them together."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter

    shot = window.grab()
    dpic = dlg.grab()
    title_h = 26
    x, y = (shot.width() - dpic.width()) // 2, (shot.height() - dpic.height()) // 3
    painter = QPainter(shot)
    pal = dlg.palette()
    painter.fillRect(x - 1, y - title_h - 1, dpic.width() + 2, dpic.height() + title_h + 2, pal.dark())
    painter.fillRect(x, y - title_h, dpic.width(), title_h, pal.mid())
    painter.setPen(pal.windowText().color())
    painter.drawText(x + 10, y - 8, dlg.windowTitle())
    painter.drawPixmap(QPoint(x, y), dpic)
    painter.end()
    return shot


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1600x1150, got {text!r}") from None
    if not sep or min(size) < 200:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of at least 200x200, got {text!r}")
    return size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/screenshots.py", description=__doc__.split("\n", 1)[0])
    ap.add_argument("out", metavar="OUTDIR", help="where the PNGs go (created if missing)")
    ap.add_argument("--size", type=_size, default=(1600, 1150), metavar="WxH", help="window size (default 1600x1150)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import LinkOptions, ThreadLink
    from inspector.ui.main_window import MainWindow
    from proxy.model import Direction

    app = QApplication.instance() or QApplication([])

    def with_dialog(dlg: QWidget) -> QPixmap:
        return window_with_dialog(w, dlg)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)

    def wait_until(pred: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not reach the state in time")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    w = MainWindow(LinkOptions(demo=True, demo_interval=0.25), settings=settings, link_factory=ThreadLink)
    w.resize(*args.size)
    w.show()
    wait_until(lambda: w.link is not None and w.model.rowCount() >= 24)
    w.log_dock.hide()
    if hasattr(w, "timeline_dock"):  # the timeline has pictures of its own (docs/timeline.png): here, room for the rest
        w.timeline_dock.hide()
        w.stats_dock.hide()

    # 1. demo traffic, a pong selected
    pos = next(i for i in range(w.model.rowCount()) if w.store.direction(w.store.visible[i]) is Direction.S2C
               and i > 3)
    w.select_visible(pos)
    w.follow_action.setChecked(False)
    w.table.scrollTo(w.model.index(pos, 0))
    settle(0.3)
    w.grab().save(str(out / "window-demo.png"))

    # 2. a held message being edited
    w.follow_action.setChecked(True)
    w.hold_next(Direction.C2S)
    wait_until(lambda: w.store.held_count == 1)
    settle(0.6)
    mid = w.intercept.selected_id()
    assert mid is not None
    row = w.store.row_of(mid)
    held_pos = w.store.visible_position(row) if row is not None else None
    if held_pos is not None:
        w.select_visible(held_pos)
    dlg = w.edit_and_forward(mid)
    assert dlg is not None
    dlg.edit.setPlainText("ping 999 (edited)")
    dlg.resize(520, 230)
    settle(0.3)
    with_dialog(dlg).save(str(out / "window-held.png"))
    dlg.reject()
    w.forward_all()
    wait_until(lambda: w.store.held_count == 0)

    # 3. the conditions panel shaping traffic
    w.conditions.cols[Direction.C2S].latency.spin.setValue(60)
    w.conditions.cols[Direction.S2C].latency.spin.setValue(90)
    w.conditions.cols[Direction.S2C].jitter.spin.setValue(20)
    w.conditions.apply()
    first = len(w.store)
    wait_until(lambda: len(w.store) >= first + 10)
    settle(1.2)
    delayed = [i for i in range(w.model.rowCount()) if w.store.visible[i] >= first]
    if delayed:
        w.select_visible(delayed[-2] if len(delayed) > 1 else delayed[-1])
    w.cond_dock.raise_()
    settle(0.3)
    w.grab().save(str(out / "window-conditions.png"))

    # 4. a message composed from scratch: JSON, server → client, on the demo's connection
    w.conditions.clear()
    pong = next((i for i in range(w.model.rowCount() - 1, -1, -1)
                 if w.store.direction(w.store.visible[i]) is Direction.S2C), None)
    if pong is not None:
        w.select_visible(pong)
    composer = w.compose(direction=Direction.S2C)
    composer.form.setCurrentText("json")
    composer.edit.setPlainText('{"type": "pong", "id": 999, "note": "sent by hand from sockscope"}')
    composer.resize(620, 330)
    w._update_status()  # the status bar says "no conditions" now, not at its next tick
    settle(0.3)
    with_dialog(composer).save(str(out / "window-compose.png"))
    composer.accept()  # really sent: the row appears marked "injected"
    settle(0.5)

    w.close()
    print(f"saved window-demo.png, window-held.png, window-conditions.png, window-compose.png in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

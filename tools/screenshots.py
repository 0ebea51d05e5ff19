"""``python tools/screenshots.py OUTDIR [--size WxH ...] [--only STATE ...]``: the real window, at any size, through
the states a learner goes through, as PNGs to look at.

Role: pictures that cannot go stale, and a way to look at the window at the sizes people use (1024x700 to
2560x1440) before calling a change done. For each ``--size`` (default: the window's own default size) it saves

- ``window-STATE-WxH.png`` for the demo (``sockscope demo``): ``demo`` (its traffic decoded, a pong selected),
  ``held`` (a ping held and being edited), ``conditions`` (latency and jitter shaping the pings), ``compose`` (a
  message written from scratch), ``timeline`` (round trips, rates and the ladder), ``dark`` (the demo in the dark
  look);
- ``tutorial/NN-STEP-WxH.png`` for the states of docs/tutorial.md (the welcome decoded, 200 ms each way, the
  reply held and edited, the edit forwarded, the replay, the positions as JSON, msgpack and pickle, a hostile
  pickle), driven with the tutorial's own scripts by ``tools/tutorial_shots.py``'s :class:`Shooter`.

docs/ keeps the ``window-*`` pictures at 1024x700 and 1600x1000 (``python tools/screenshots.py docs --size 1024x700
--size 1600x1000 --only demo held conditions compose timeline``), the README shows the default size's demo
(``--size 1440x960 --only demo``), and docs/tutorial.md links each of its pictures (``python tools/tutorial_shots.py
docs/tutorial --size 1024x700``) to the same state at 1600x1000 (``python tools/screenshots.py docs --size 1600x1000
--only 01-welcome 02-latency ... 09-hostile-pickle``).

Each picture is ``QWidget.grab()`` of the window (a dialog is painted where a window manager would put it). The
window's proxy is an engine and control endpoint on a thread of this process (``inspector.bridge.ThreadLink``),
attached over loopback as it attaches to its child proxy. Runs offscreen (``QT_QPA_PLATFORM=offscreen``) or under
``xvfb-run``. A development tool, not shipped in the package.
Must not import at module level: PySide6 or the window (``--help`` stays cheap).
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

from tools.tutorial_shots import SCRIPTS, STEPS, WINDOW_SIZE, copy_scripts, pick_ports, window_size

if TYPE_CHECKING:
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication, QWidget

    from inspector.ui.main_window import MainWindow

DEMO_STATES = ("demo", "held", "conditions", "compose", "timeline", "dark")
TUTORIAL_STATES = tuple(name.removesuffix(".png") for name, _ in STEPS.values())
STEP_TIMEOUT = 20.0


def window_with_dialog(window: QWidget, dlg: QWidget) -> QPixmap:
    """The window's picture with ``dlg`` (its own top-level window) painted on it, with a title bar, where a
    window manager would put it: offscreen there is no window manager to draw them together."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QPainter

    shot = window.grab()
    dpic = dlg.grab()
    title_h = 26
    # centred on the window, as Qt places a dialog over its parent
    x, y = (shot.width() - dpic.width()) // 2, max(title_h + 4, (shot.height() - dpic.height() + title_h) // 2)
    painter = QPainter(shot)
    pal = dlg.palette()
    painter.fillRect(x - 1, y - title_h - 1, dpic.width() + 2, dpic.height() + title_h + 2, pal.dark())
    painter.fillRect(x, y - title_h, dpic.width(), title_h, pal.mid())
    painter.setPen(pal.windowText().color())
    painter.drawText(x + 10, y - 8, dlg.windowTitle())
    painter.drawPixmap(QPoint(x, y), dpic)
    painter.end()
    return shot


class DemoShots:
    """One window on the demo at one size, and the states of it that are photographed."""

    def __init__(self, app: QApplication, out: Path, size: tuple[int, int], wanted: set[str]) -> None:
        from PySide6.QtCore import QSettings

        from inspector import app as cli
        from inspector.bridge import ThreadLink
        from inspector.ui.main_window import MainWindow

        self.app, self.out, self.size, self.wanted = app, out, size, wanted
        settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)
        options, _ = cli.link_from_args(cli.build_parser().parse_args(["demo"]))  # `sockscope demo`'s defaults
        assert options is not None
        options.demo_interval = 0.25
        self.w: MainWindow = MainWindow(options, settings=settings,
                                        link_factory=ThreadLink)
        self.w.resize(*size)
        self.w.show()
        self.wait_until(lambda: self.w.link is not None and self.w.model.rowCount() >= 24, "demo traffic")

    def wait_until(self, pred: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not pred():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            self.app.processEvents()
            time.sleep(0.01)

    def settle(self, seconds: float) -> None:
        """Let the window paint (rate timers, batched row updates) before a picture; never a synchronisation."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.01)

    def save(self, state: str, dialog: QWidget | None = None) -> None:
        self.settle(0.3)
        self.w._update_status()  # the status bar refreshes once a second; the picture should not show it stale
        shot = window_with_dialog(self.w, dialog) if dialog is not None else self.w.grab()
        name = f"window-{state}-{self.size[0]}x{self.size[1]}.png"
        if not shot.save(str(self.out / name)):
            raise RuntimeError(f"could not write {self.out / name}")
        print(f"saved {name}", flush=True)

    def run(self) -> None:
        from proxy.model import Direction

        w = self.w
        s = w.store
        if "demo" in self.wanted:  # a pong selected, its detail below
            pos = next(i for i in range(w.model.rowCount()) if s.direction(s.visible[i]) is Direction.S2C and i > 3)
            w.follow_action.setChecked(False)
            w.select_visible(pos)
            w.table.scrollTo(w.model.index(pos, 0))
            self.save("demo")
            w.follow_action.setChecked(True)
        if "held" in self.wanted:
            w.intercept_dock.raise_()
            w.hold_next(Direction.C2S)
            self.wait_until(lambda: s.held_count == 1, "a held ping")
            mid = w.intercept.selected_id()
            assert mid is not None
            held = s.row_of(mid)
            held_pos = s.visible_position(held) if held is not None else None
            if held_pos is not None:  # the held ping selected in the table too, its detail below
                w.select_visible(held_pos)
                w.table.scrollTo(w.model.index(held_pos, 0))
            dlg = w.edit_selected()  # Ctrl+E
            assert dlg is not None
            dlg.edit.setPlainText("ping 999 (edited)")
            self.save("held", dlg)
            dlg.reject()
            w.forward_all()
            self.wait_until(lambda: s.held_count == 0, "the held ping to leave")
        if "conditions" in self.wanted:
            w.cond_dock.raise_()
            cols = w.conditions.cols
            cols[Direction.C2S].latency.spin.setValue(60)
            cols[Direction.S2C].latency.spin.setValue(90)
            cols[Direction.S2C].jitter.spin.setValue(20)
            w.conditions.apply()
            first = len(s)
            self.wait_until(lambda: len(s) >= first + 10, "shaped pings")
            self.settle(0.8)
            delayed = [i for i in range(w.model.rowCount()) if s.visible[i] >= first]
            w.select_visible(delayed[-2])
            self.save("conditions")
        if "timeline" in self.wanted:
            w.show_timeline()
            self.settle(2.5)  # a few seconds of round trips against the configured band
            self.save("timeline")
            w.show_timeline(False)
        if "compose" in self.wanted:
            w.conditions.clear()
            pong = next((i for i in range(w.model.rowCount() - 1, -1, -1) if s.direction(s.visible[i]) is
                         Direction.S2C), None)
            if pong is not None:
                w.select_visible(pong)
            composer = w.compose(direction=Direction.S2C)
            composer.form.setCurrentText("json")
            composer.edit.setPlainText('{"type": "pong", "id": 999, "note": "sent by hand from sockscope"}')
            self.save("compose", composer)
            composer.accept()  # really sent: the row appears marked "injected"
        if "dark" in self.wanted:
            w.set_look("dark", save=False)
            self.settle(0.3)
            self.save("dark")
            w.set_look("system", save=False)

    def close(self) -> None:
        self.w.close()


def tutorial_states(app: QApplication, out: Path, size: tuple[int, int], wanted: set[str]) -> None:
    """The states of docs/tutorial.md, with the tutorial's own scripts, at ``size``."""
    from tools.tutorial_shots import Shooter

    steps = [n for n, (name, _) in STEPS.items() if name.removesuffix(".png") in wanted]
    if not steps:
        return
    suffix = f"-{size[0]}x{size[1]}"
    out = out / "tutorial"  # next to the tutorial's own pictures and scripts (docs/tutorial)
    out.mkdir(parents=True, exist_ok=True)
    ports = pick_ports(prefer_doc=False)
    with tempfile.TemporaryDirectory(prefix="sockscope-shots-") as tmp:
        scripts = Path(tmp)
        copy_scripts(SCRIPTS, scripts, *ports)
        for n in steps:
            shooter = Shooter(app, out, scripts, ports, size,
                              name=lambda name: f"{name.removesuffix('.png')}{suffix}.png")
            try:
                getattr(shooter, f"step{n}")()
            finally:
                shooter.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/screenshots.py", description=__doc__.split("\n", 1)[0],
                                 epilog="states: " + " ".join((*DEMO_STATES, *TUTORIAL_STATES)))
    ap.add_argument("out", metavar="OUTDIR", help="where the PNGs go (created if missing)")
    ap.add_argument("--size", type=window_size, action="append", metavar="WxH",
                    help="window size, repeatable (default: the window's default, 1440x960)")
    ap.add_argument("--only", nargs="+", metavar="STATE", choices=(*DEMO_STATES, *TUTORIAL_STATES),
                    help="take only these states (default: all)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    wanted = set(args.only or (*DEMO_STATES, *TUTORIAL_STATES))
    for size in args.size or [WINDOW_SIZE]:
        if wanted & set(DEMO_STATES):
            shots = DemoShots(app, out, size, wanted)
            try:
                shots.run()
            finally:
                shots.close()
        tutorial_states(app, out, size, wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())

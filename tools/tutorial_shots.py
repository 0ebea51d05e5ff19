"""``python tools/tutorial_shots.py OUTDIR [--only N ...] [--size WxH]``: the pictures of ``docs/tutorial.md``.

Role: drive the real window through each step of the tutorial with the tutorial's own scripts
(``docs/tutorial/*.py``, run as child processes) and save ``OUTDIR/NN-step.png``. The window is a
:class:`~inspector.ui.main_window.MainWindow` in front of the exercise's server, listening where the tutorial says
(5556 → 5555 when those ports are free, other free loopback ports otherwise: the scripts are copied to a temporary
directory with their port numbers changed, the same one-line edit the tutorial asks for). Each step starts from an
empty table and no conditions, so ``--only`` can take any subset. The window has the size and the layout a newcomer's
window has (the default, 1440x960, unless ``--size`` says otherwise), with the panel each step talks about in front.
``tools/screenshots.py`` uses :class:`Shooter` to render these states at other sizes. Runs offscreen
(``QT_QPA_PLATFORM=offscreen``) or under ``xvfb-run``; the pictures are ``QWidget.grab()`` of the window, the edit
dialog painted in by ``tools.screenshots.window_with_dialog``. The window's proxy is
an engine and control endpoint on a thread of this process (``inspector.bridge.ThreadLink``), attached over loopback
as it attaches to its child proxy. A development tool, not shipped in the package.
Must not import at module level: PySide6 or the window (``--help`` and the step list stay cheap); never unpickles.
Thread: GUI thread; one daemon thread per child process reads its stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: the repository's packages

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from inspector.ui.main_window import MainWindow

SCRIPTS = Path(__file__).resolve().parent.parent / "docs" / "tutorial"
"""The tutorial's scripts in a source checkout."""
DOC_SERVER_PORT, DOC_CLIENT_PORT = 5555, 5556
WINDOW_SIZE = (1440, 960)
"""The window's default size (``inspector.ui.main_window.DEFAULT_SIZE``): what a newcomer sees."""
STEP_TIMEOUT = 15.0

STEPS: dict[int, tuple[str, str]] = {
    1: ("01-welcome.png", "the exercise through the window: the welcome and the reply, decoded"),
    2: ("02-latency.png", "200 ms each way: the rows show +200 ms, the panel a 400 ms round trip"),
    3: ("03-hold-edit.png", "the reply held and being edited before it reaches the server"),
    4: ("04-edited.png", "the edited reply forwarded: the server got the new text"),
    5: ("05-replay.png", "the conversation replayed to the server on a new connection"),
    6: ("06-json.png", "a position sent as JSON"),
    7: ("07-msgpack.png", "the same position as msgpack"),
    8: ("08-pickle.png", "the same position as pickle"),
    9: ("09-hostile-pickle.png", "a hostile pickle: what it would call, shown without running it"),
}
EDITED_REPLY = "Ping received! 📥 (edited by sockscope on the way)"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        if os.name != "nt":  # as the exercise's server and the proxy do: a closed connection's TIME_WAIT is no owner
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def pick_ports(prefer_doc: bool = True) -> tuple[int, int]:
    """(server port, client port): the tutorial's 5555/5556 when both are free (and wanted), else two free ports."""
    if prefer_doc and _port_free(DOC_SERVER_PORT) and _port_free(DOC_CLIENT_PORT):
        return DOC_SERVER_PORT, DOC_CLIENT_PORT
    server = _free_port()
    client = _free_port()
    while client == server:
        client = _free_port()
    return server, client


def copy_scripts(src: Path, dst: Path, server_port: int, client_port: int) -> None:
    """Copy ``src/*.py`` to ``dst``: 5555 becomes ``server_port`` and the exercise's client connects to
    ``client_port`` (the tutorial's one-line edit)."""
    for f in src.glob("*.py"):
        text = f.read_text(encoding="utf-8").replace(str(DOC_SERVER_PORT), str(server_port))
        if f.name == "exercise.py":
            text, n = re.subn(r"^CLIENT_PORT = \d+", f"CLIENT_PORT = {client_port}", text, flags=re.M)
            if n != 1:
                raise RuntimeError("exercise.py has no `CLIENT_PORT = ...` line to change")
        (dst / f.name).write_text(text, encoding="utf-8")


class Child:
    """A tutorial script running as a child process; its stdout lines are collected by a daemon thread."""

    def __init__(self, script: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        self.name = script.name
        self.argv = [sys.executable, str(script), *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, encoding="utf-8", env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name=f"read-{script.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed at the end of the output (no unclosed pipe left to the garbage collector)
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

    def output(self, timeout: float = 10.0) -> list[str]:
        """Every line, once the process has ended and its output has been read to the end."""
        self._reader.join(timeout)
        return list(self.lines)

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)


class Shooter:
    """One window in front of the exercise's server, and the steps that photograph it (one step per window)."""

    def __init__(self, app: QApplication, out: Path, scripts: Path, ports: tuple[int, int],
                 size: tuple[int, int] = WINDOW_SIZE, name: Callable[[str], str] = lambda n: n) -> None:
        from PySide6.QtCore import QSettings

        from inspector import app as cli
        from inspector.bridge import ThreadLink
        from inspector.ui.main_window import MainWindow

        self.app, self.out, self.scripts, self.name = app, out, scripts, name
        self.server_port, self.client_port = ports
        self.children: list[Child] = []
        settings = QSettings(str(scripts / "shots.ini"), QSettings.Format.IniFormat)
        settings.clear()
        # what `sockscope --listen 127.0.0.1:5556 --target 127.0.0.1:5555` starts (the tutorial's command)
        options, _ = cli.link_from_args(cli.build_parser().parse_args(
            ["--listen", f"127.0.0.1:{self.client_port}", "--target", f"127.0.0.1:{self.server_port}"]))
        assert options is not None
        self.w: MainWindow = MainWindow(options, settings=settings, link_factory=ThreadLink)
        w = self.w
        w.resize(*size)
        w.show()  # the window's own layout for its size, as a newcomer gets it
        self.wait_until(lambda: w.link is not None, "the proxy to start")
        self.settle(0.2)

    def front(self, dock: object) -> None:
        """Bring a panel to the front (in a small window Conditions, Intercept and Connections are tabs)."""
        from PySide6.QtWidgets import QDockWidget

        assert isinstance(dock, QDockWidget)
        dock.show()
        dock.raise_()
        self.settle(0.05)

    # ------------------------------------------------------------------------------------------ waiting

    def wait_until(self, pred: Callable[[], bool], what: str = "the window to reach the state") -> None:
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

    def barrier(self) -> None:
        """Wait until the engine has run every command sent so far (commands run in order; this one is a no-op)."""
        link = self.w.link
        assert link is not None
        link.command("ping").result(STEP_TIMEOUT)

    # ------------------------------------------------------------------------------------------ helpers

    def run(self, script: str, *args: str) -> Child:
        child = Child(self.scripts / script, *args)
        self.children.append(child)
        return child

    def finish(self, child: Child) -> None:
        self.wait_until(lambda: child.proc.poll() is not None, f"{child.name} to finish")
        lines = child.output()  # its last lines too
        if child.proc.returncode != 0:
            raise RuntimeError(f"{child.argv} failed:\n" + "\n".join(lines))

    def rows(self) -> int:
        return int(self.w.model.rowCount())

    def select(self, pred: Callable[[int], bool]) -> int:
        """Select the last visible row whose store row satisfies ``pred``; returns its store row."""
        w = self.w
        for pos in reversed(range(w.model.rowCount())):
            row = w.store.visible[pos]
            if pred(row):
                w.select_visible(pos)
                w.table.scrollTo(w.model.index(pos, 0))
                return int(row)
        raise LookupError("no such row")

    def c2s(self, row: int) -> bool:
        from proxy.model import Direction

        return Direction(self.w.store.dirs[row]) is Direction.C2S

    def choose_field(self, name: str) -> None:
        """Select a field of the detail tree (its bytes light up in the hex view)."""
        from PySide6.QtWidgets import QTreeWidgetItemIterator

        it = QTreeWidgetItemIterator(self.w.detail.tree)
        while (item := it.value()) is not None:
            if item.text(0) == name:
                self.w.detail.tree.setCurrentItem(item)
                return
            it += 1

    def settle_for_picture(self) -> None:
        self.settle(0.4)
        self.w._update_status()  # the status bar refreshes once a second; the picture should not show it stale

    def save(self, step: int) -> None:
        self.settle_for_picture()
        name = self.name(STEPS[step][0])
        if not self.w.grab().save(str(self.out / name)):
            raise RuntimeError(f"could not write {self.out / name}")
        print(f"saved {name}: {STEPS[step][1]}", flush=True)

    def save_with_dialog(self, step: int, dialog: object) -> None:
        """The window with a dialog painted where a window manager would put it (offscreen has none)."""
        from PySide6.QtWidgets import QDialog

        from tools.screenshots import window_with_dialog

        assert isinstance(dialog, QDialog)
        self.settle_for_picture()
        shot = window_with_dialog(self.w, dialog)
        name = self.name(STEPS[step][0])
        if not shot.save(str(self.out / name)):
            raise RuntimeError(f"could not write {self.out / name}")
        print(f"saved {name}: {STEPS[step][1]}", flush=True)

    # ------------------------------------------------------------------------------------------ the steps

    def exercise_once(self) -> Child:
        child = self.run("exercise.py")
        self.finish(child)
        self.wait_until(lambda: self.rows() >= 2, "the welcome and the reply")
        return child

    def step1(self) -> None:
        self.exercise_once()
        self.select(self.c2s)
        self.w.follow_action.setChecked(False)
        self.save(1)

    def step2(self) -> None:
        from proxy.model import Direction

        w = self.w
        self.front(w.cond_dock)
        for d in Direction:
            w.conditions.cols[d].latency.spin.setValue(200)
        w.conditions.apply()
        self.barrier()
        child = self.exercise_once()
        if not child.saw("round trip"):
            raise RuntimeError("the exercise did not print its round trip")
        self.select(self.c2s)
        self.save(2)

    def step3(self, keep_dialog: bool = True) -> Child:
        from proxy.model import Direction

        w = self.w
        self.front(w.intercept_dock)
        w.hold_next(Direction.C2S)
        self.barrier()
        child = self.run("exercise.py")
        self.wait_until(lambda: w.store.held_count == 1, "the reply to be held")
        mid = w.intercept.selected_id()
        if mid is None:
            w.intercept.table.selectRow(0)
            mid = w.intercept.selected_id()
        assert mid is not None
        row = w.store.row_of(mid)
        pos = w.store.visible_position(row) if row is not None else None
        if pos is not None:
            w.select_visible(pos)
        dlg = w.edit_and_forward(mid)
        assert dlg is not None
        dlg.edit.setPlainText(EDITED_REPLY)
        dlg.resize(560, 240)
        if keep_dialog:
            self.save_with_dialog(3, dlg)
        self._held_child, self._dialog = child, dlg
        return child

    def step4(self) -> None:
        w = self.w
        self.step3(keep_dialog=False)
        child, dlg = self._held_child, self._dialog
        dlg.accept()
        self.finish(child)
        if not child.saw(EDITED_REPLY):
            raise RuntimeError("the server did not get the edited reply:\n" + "\n".join(child.lines))
        self.wait_until(lambda: w.store.held_count == 0, "the held reply to leave")
        self.select(self.c2s)
        self.save(4)

    def step5(self) -> None:
        w = self.w
        child = self.run("exercise.py", "--keep-serving")
        self.wait_until(lambda: child.saw("still listening"), "the exercise to serve its first client")
        self.wait_until(lambda: self.rows() >= 2, "the first conversation")
        self.select(self.c2s)
        w.replay("fast")
        self.wait_until(lambda: sum(1 for line in child.lines if "Client says" in line) >= 2,
                        "the server to hear the replayed reply")
        self.wait_until(lambda: len(w.store.connections) >= 2 and self.rows() >= 4, "the replay's rows")
        replay_conn = max(w.store.connections)
        self.select(lambda r: self.c2s(r) and w.store.conn_ids[r] == replay_conn)
        self.front(w.conn_dock)
        w.conn_table.selectRow(w.conn_model.rowCount() - 1)
        self.save(5)
        child.stop()

    def decoder_layout(self) -> None:
        """Steps 6-9 are about one message and its decoding: the detail pane gets the room the table had."""
        w = self.w
        total = sum(w.split.sizes())
        w.split.setSizes([total // 4, total - total // 4])
        self.settle(0.05)

    def _position(self, step: int, script: str, field: str) -> None:
        self.decoder_layout()
        self.finish(self.run(script, str(self.client_port)))
        self.wait_until(lambda: self.rows() >= 1, f"the message of {script}")
        self.select(self.c2s)
        self.w.detail.tree.expandAll()
        self.choose_field(field)
        self.save(step)

    def step6(self) -> None:
        self._position(6, "positions_json.py", "x")

    def step7(self) -> None:
        self._position(7, "positions_msgpack.py", "x")

    def step8(self) -> None:
        self._position(8, "positions_pickle.py", "x")

    def step9(self) -> None:
        self.decoder_layout()
        child = self.run("hostile_pickle.py", str(self.client_port))
        self.finish(child)
        self.wait_until(lambda: self.rows() >= 1, "the hostile pickle")
        self.select(self.c2s)
        self.w.detail.tree.expandAll()
        self.save(9)

    def close(self) -> None:
        for c in self.children:
            c.stop()
        self.w.close()  # stops the in-process proxy: the next step's window can listen on the same port


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python tools/tutorial_shots.py",
                                description="Save the pictures of docs/tutorial.md by driving the real window.",
                                epilog="steps: " + "; ".join(f"{n} {name}" for n, (name, _) in STEPS.items()))
    p.add_argument("outdir", type=Path, help="where to save the PNGs (docs/tutorial)")
    p.add_argument("--only", type=int, action="append", choices=sorted(STEPS), metavar="N",
                   help="take only step N (repeatable); default all")
    p.add_argument("--free-ports", action="store_true",
                   help="use any free ports, not 5555/5556 (tests; the toolbar then shows other numbers)")
    p.add_argument("--scripts", type=Path, default=SCRIPTS, help="the tutorial's scripts (default %(default)s)")
    p.add_argument("--size", type=window_size, default=WINDOW_SIZE, metavar="WxH",
                   help="the window's size (default: its own default, 1440x960)")
    return p.parse_args(list(argv))


def window_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (argparse type)."""
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1024x700, got {text!r}") from None
    if not sep or min(size) < 200:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of at least 200x200, got {text!r}")
    return size


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.scripts / "exercise.py").is_file():
        print(f"tutorial_shots: no exercise.py in {args.scripts} (use --scripts)", file=sys.stderr)
        return 2
    args.outdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    ports = pick_ports(prefer_doc=not args.free_ports)
    with tempfile.TemporaryDirectory(prefix="sockscope-tutorial-") as tmp:
        scripts = Path(tmp)
        copy_scripts(args.scripts, scripts, *ports)
        for n in sorted(set(args.only or STEPS)):
            shooter = Shooter(app, args.outdir, scripts, ports, args.size)  # a new window per step: #1 again
            try:
                getattr(shooter, f"step{n}")()
            finally:
                shooter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

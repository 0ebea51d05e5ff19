"""The window's Addons menu: "Load addon…" sends a Python file to the proxy (``load_addon``, docs/addons.md).

Role: :class:`AddonActions` owns the menu's actions and the files this window loaded. A file is loaded into the
proxy the window runs or is attached to; the files stay remembered, so a proxy the window starts again (or
attaches to) gets them too (a child proxy started with ``sockscope -s FILE`` already has those). What the proxy
says about addons (loaded, a hook's traceback, disabled, loaded again after a change) arrives as notices, which the
log panel shows; a file that cannot load is said above the table, with its line.
Only ``inspector.ui.main_window`` imports this module; what it uses of the window is :class:`AddonWindow`, a
``Protocol``, so it does not import the window back.
Must not import: ``inspector.ui.main_window``, ``proxy.runner``/``proxy.server`` (only through the link).
Thread: GUI thread; the command's reply arrives on the link's reader thread and is passed on by a queued signal.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenuBar, QStatusBar, QWidget

from inspector.bridge import Link, LinkOptions


class AddonWindow(Protocol):
    """What the addon actions use of the main window (:class:`inspector.ui.main_window.MainWindow`)."""

    link: Link | None
    options: LinkOptions | None

    def statusBar(self) -> QStatusBar: ...  # Qt's name

    def _report_error(self, text: str) -> None: ...

    def _log(self, level: str, text: str) -> None: ...

ADDON_FILTER = "Python files (*.py);;All files (*)"


def script_paths(args: list[str]) -> list[str]:
    """The files ``-s``/``--script`` name in a proxy command line."""
    out = []
    for i, a in enumerate(args[:-1]):
        if a in ("-s", "--script"):
            out.append(args[i + 1])
    out += [a.split("=", 1)[1] for a in args if a.startswith("--script=")]
    return out


class AddonActions(QObject):
    """The Addons menu of a main window (see the module's docstring); ``parent`` is the window as a widget."""

    _replied = Signal(str, object, object)  # path, result (or None), error text (or None)

    def __init__(self, window: AddonWindow, parent: QWidget) -> None:
        super().__init__(parent)
        self.w = window
        self.paths: list[str] = []
        """Addon files of this window, in the order they were loaded."""
        self.load_action = QAction("&Load addon…", parent)
        self.load_action.setShortcut(QKeySequence("Ctrl+Shift+L"))
        self.load_action.setToolTip("load a Python file whose hooks see, change, drop, delay or inject messages "
                                    "(docs/addons.md); it is loaded again when you save it")
        self.load_action.triggered.connect(lambda: self.load())
        self.unload_action = QAction("&Unload addons", parent)
        self.unload_action.setToolTip("stop every addon this window loaded (messages held for them go on)")
        self.unload_action.triggered.connect(self.unload_all)
        self.unload_action.setEnabled(False)
        self._replied.connect(self._on_reply)

    def preset(self, paths: list[str]) -> None:
        """Files given on the command line (``sockscope -s FILE``): loaded into the proxy once there is one."""
        for path in paths:
            self._remember(os.path.abspath(path))

    def add_to_menu(self, bar: QMenuBar) -> None:
        menu = bar.addMenu("A&ddons")
        menu.setToolTipsVisible(True)
        menu.addAction(self.load_action)
        menu.addAction(self.unload_action)

    def load(self, path: str | None = None) -> None:
        """Load ``path`` into the proxy (asks for the file when None); remembered for the proxies started later."""
        if path is None:
            start = os.path.dirname(self.paths[-1]) if self.paths else ""
            path, _ = QFileDialog.getOpenFileName(self.parent(), "Load addon", start, ADDON_FILTER)  # type: ignore[arg-type]
            if not path:
                return
        path = os.path.abspath(path)
        link = self.w.link
        if link is None or not link.alive:
            self._remember(path)
            self.w.statusBar().showMessage(f"no proxy is running: {os.path.basename(path)} is loaded when you "
                                           "start it", 8000)
            return
        self._send(link, path)

    def unload_all(self) -> None:
        link = self.w.link
        for path in self.paths:
            if link is not None and link.alive:
                link.command("unload_addon", path=path)
        self.paths.clear()
        self.unload_action.setEnabled(False)
        self.w._log("info", "addons unloaded")

    def link_ready(self, link: Link) -> None:
        """A proxy started or was attached: load this window's files into it (a child started with ``-s FILE`` has
        those already)."""
        options = self.w.options
        given = set(script_paths(options.extra_args)) if options is not None and link.kind == "child process" else set()
        for path in self.paths:
            if path not in given:
                self._send(link, path)

    def _send(self, link: Link, path: str) -> None:
        self.w.statusBar().showMessage(f"loading the addon {os.path.basename(path)}…", 4000)
        fut = link.command("load_addon", path=path)

        def done(f: Any) -> None:
            exc = f.exception()
            if exc is None:
                self._replied.emit(path, f.result(), None)
            else:
                self._replied.emit(path, None, str(exc) or type(exc).__name__)

        fut.add_done_callback(done)

    def _remember(self, path: str) -> None:
        if path not in self.paths:
            self.paths.append(path)
        self.unload_action.setEnabled(True)

    def _on_reply(self, path: str, result: object, error: str | None) -> None:
        name = os.path.basename(path)
        if error is not None:
            first, _, rest = error.partition("\n")
            self.w._report_error(f"the addon {name} could not be loaded: {first.removeprefix('load_addon: ')}")
            if rest:
                self.w._log("error", rest)
            return
        self._remember(path)
        names = result.get("addons", []) if isinstance(result, dict) else []
        self.w.statusBar().showMessage(f"addon {name} loaded: {', '.join(map(str, names))}", 8000)

"""Cyclic garbage collection on the GUI thread only.

Role: Python's cyclic collector runs on whichever thread happens to allocate when a threshold is crossed. In the
window's process that can be a worker (the control client's reader, an in-process engine) collecting a widget
left in a reference cycle, and destroying a QWidget off the GUI thread deadlocks against Qt's own locks (seen:
``~QWidget`` on the engine thread waiting for the GIL while the GUI thread, holding the GIL, waited for Qt's
mutex). So while a window lives, automatic collection is off and a timer collects on the GUI thread, generation by
generation as the thresholds say (the same scheme as pyqtgraph's ``GarbageCollector``).
Once the window has started (:meth:`GuiThreadCollector.settle`, after its first paint), what exists then (Qt's and
our modules, classes and widgets: ~55,000 objects) is collected once and frozen (``gc.freeze``): a full collection
then scans only what came later, and stops costing the GUI thread 25-60 ms every half minute of a capture (measured
with 20,000 and 620,000 rows). Done once per process: what was frozen lives as long as the process does (the
application's own start-up), and is never collected.
Must not import: ``inspector.bridge``, ``proxy`` internals.
Thread: GUI thread.
"""

from __future__ import annotations

import contextlib
import gc

from PySide6.QtCore import QObject, QTimer

_users = 0
_was_enabled = True
_settled = False


class GuiThreadCollector(QObject):
    """Start with a window, stop with it; nested windows share one switch-off of the automatic collector."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 200) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._running = False

    def start(self) -> None:
        global _users, _was_enabled
        if self._running:
            return
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _users += 1
        self._running = True
        self._timer.start()

    def stop(self) -> None:
        global _users
        if not self._running:
            return
        self._running = False
        with contextlib.suppress(RuntimeError):  # called from ``destroyed``: the timer may be gone already
            self._timer.stop()
        _users -= 1
        if _users == 0:
            self.collect()
            if _was_enabled:
                gc.enable()

    def settle(self) -> None:
        """The window has started: collect everything once and freeze the survivors (once per process; see the
        module docstring)."""
        global _settled
        if not self._running or _settled:
            return
        gc.collect()
        gc.freeze()
        _settled = True

    def collect(self) -> None:
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c2 > t2:
            gc.collect(2)
        elif c1 > t1:
            gc.collect(1)
        elif c0 > t0:
            gc.collect(0)

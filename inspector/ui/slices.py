"""Background work on the GUI thread in short slices between redraws (the timeline's and the Lab's analysis).

Role: :class:`Slices` runs ``step(budget_s)`` on a 25 ms timer of its own and remembers whether any slice changed
something, for the next redraw to :meth:`take`. Under a flood the analysis of new rows is the GUI thread's largest
Python cost; done in 2 ms slices, it never keeps the event loop from input, painting and the record pump for
longer, whatever the backlog (up to 80 ms a second in all).
Must not import: widgets (``QtCore`` only).
Thread: GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from PySide6.QtCore import QObject, QTimer

__all__ = ["SLICE_MS", "SLICE_S", "Slices"]

SLICE_MS: Final = 25
"""How often a slice runs."""
SLICE_S: Final = 0.002
"""Longest one slice works (the work checks its own clock: a step may end a little past it)."""


class Slices(QObject):
    """Calls ``step(SLICE_S)`` every :data:`SLICE_MS` while started; ``step`` returns True when it changed
    something (and does nothing, cheaply, when there is nothing to do)."""

    def __init__(self, step: Callable[[float], bool], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._step = step
        self._changed = False
        self._timer = QTimer(self)
        self._timer.setInterval(SLICE_MS)
        self._timer.timeout.connect(self.run)
        self._timer.start()

    def run(self) -> bool:
        """One slice now; True if it changed something."""
        changed = self._step(SLICE_S)
        self._changed = self._changed or changed
        return changed

    def take(self) -> bool:
        """Whether any slice changed something since the last call (the redraw asks)."""
        changed, self._changed = self._changed, False
        return changed

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

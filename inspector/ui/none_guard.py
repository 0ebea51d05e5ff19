"""A guard against a PySide6 refcount bug that kills the interpreter on Python < 3.12 (None, True, False).

Role: with PySide6-Essentials 6.12.0 on CPython 3.11, every call of a ``void`` Qt method from Python
(``QLabel.setText``, ``QTimer.start``, ``beginInsertRows`` ...) returns ``None`` without taking a reference to it,
so ``None``'s reference count drops by one per call; methods returning ``bool`` do the same to ``True`` and
``False``. A live window makes ~100 such calls a second and CPython
aborts with "none_dealloc: deallocating None" after about two minutes. (From 3.12 on these are immortal and
the bug is harmless.) :func:`install` checks for the bug once and, only if it is present, tops the three
singletons' counts up every half second with ``Py_IncRef`` (through ``ctypes``): permanent references that
are never released, so nothing is freed wrongly at exit either, and no memory is used.
Remove when the project requires a fixed PySide6 or Python >= 3.12.
Must not import: anything from ``inspector`` or ``proxy``.
Thread: GUI thread.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QCoreApplication, QObject, QTimer

FLOOR = 50_000
"""Below this count of references, the guard adds references back up to ``TARGET``."""
TARGET = 150_000
_SINGLETONS: tuple[object, ...] = (None, True, False)
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None
_added = 0
_timer: QTimer | None = None
bug_present: bool | None = None


def _probe() -> bool:
    o = QObject()
    before = sys.getrefcount(None)
    for _ in range(200):
        o.setObjectName("probe")
    return sys.getrefcount(None) - before < -100


def _add(obj: object, n: int) -> None:
    """``n`` permanent references to ``obj``: what ``n`` calls of ``Py_IncRef`` do (this runs only before 3.12,
    whose objects start with their reference count, ``ob_refcnt``), in one addition rather than ``n`` ctypes calls
    (150,000 of those took 0.1-0.2 s of the window's start)."""
    global _added
    before = sys.getrefcount(obj)
    _incref(obj)  # once through the API: the count lives where the next line expects it
    refcnt = ctypes.c_ssize_t.from_address(id(obj))
    if refcnt.value != before:  # not the layout we know: one call at a time, as before
        for _ in range(n - 1):
            _incref(obj)
    else:
        refcnt.value += n - 1
    _added += n


def _top_up(floor: int = FLOOR) -> None:
    for obj in _SINGLETONS:
        count = sys.getrefcount(obj)
        if count < floor:
            _add(obj, TARGET - count)


def install() -> bool:
    """Start the guard if this PySide6/Python pair has the bug; returns whether it is active. Idempotent."""
    global _timer, bug_present
    if _timer is not None:
        return True
    if sys.version_info >= (3, 12):
        bug_present = False
        return False
    bug_present = _probe()
    app = QCoreApplication.instance()
    if not bug_present or app is None:
        return False
    _top_up(TARGET)
    _timer = QTimer(app)
    _timer.setInterval(500)
    _timer.timeout.connect(_top_up)
    _timer.start()
    return True


def added_references() -> int:
    return _added

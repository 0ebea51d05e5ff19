"""The Qt half of the window's link: records drained onto the GUI thread in batches, announcements as signals.

Role: :class:`RecordPump`, a ``QTimer`` on the GUI thread that drains a link's :class:`~inspector.bridge.RecordQueue`
at most ~30 times a second and applies each batch to the :class:`~inspector.store.MessageStore` in one go (the
batching point between the client's reader thread and the table; under a flood a batch is shown, and so the table
repainted, in an event-loop turn after the one that applied it, so input and timers already due go between the two
blocks), and :class:`LinkEvents`, which turns the proxy's
announcements of changes made by other clients into Qt signals delivered on the GUI thread.
Must not import: widgets (``QtCore`` only).
Thread: GUI thread; :meth:`LinkEvents.announce` is called on the link's reader thread and only emits signals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from PySide6.QtCore import QObject, QTimer, Signal

from inspector.bridge import Link
from inspector.store import ApplyResult, MessageStore
from proxy.model import Record

__all__ = ["PUMP_INTERVAL_MS", "LinkEvents", "RecordPump"]

PUMP_INTERVAL_MS: Final = 33
"""How often the GUI thread drains the queue: at most ~30 batches a second."""
BUSY_INTERVAL_MS: Final = 66
"""The interval under a flood (``BUSY_BATCH`` records or more per batch): about 15 batches, and so 15 repaints of
the followed table, a second. Painting a screen of rows is the window's largest cost under ingest (a third of a
core at 20,000 messages/s at 30 a second); nobody reads rows that scroll by faster than that, and the game and
the proxy share the machine."""
BUSY_BATCH: Final = 500

class RecordPump(QObject):
    """Drains a link's queue into the store on the GUI thread, at most ~30 times a second (~15 under a flood).

    ``applied`` carries each batch's :class:`ApplyResult` (one per tick that had records); ``link_died``
    fires once with the reason when the engine goes away.
    """

    applied = Signal(object)
    link_died = Signal(str)

    def __init__(self, store: MessageStore, link: Link | None = None, parent: QObject | None = None,
                 interval_ms: int = PUMP_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.store = store
        self.link = link
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._interval = interval_ms  # a caller's own interval (tests) is kept as given
        self._timer.timeout.connect(self._on_timer)
        self._died_reported = False
        self._unshown: list[ApplyResult] = []
        self.last_batch_size = 0
        self.on_batch: list[Callable[[list[Record]], None]] = []
        """Extra consumers of every raw batch (the timeline), called before ``applied`` is emitted."""
        self.last_frames: list[bytes | None] = []
        """The batch's records as received over the control protocol (a session file's record frames), aligned
        with the records given to ``on_batch``; None for a record made on this side (the spool encodes those)."""

    def set_link(self, link: Link | None) -> None:
        self.link = link
        self._died_reported = False
        if link is not None:
            self._timer.start()

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _on_timer(self) -> None:
        self.pump(defer_show=True)

    def show_pending(self) -> None:
        """Emit ``applied`` for the batches applied but not shown yet, oldest first."""
        while self._unshown:
            self.applied.emit(self._unshown.pop(0))

    def pump(self, defer_show: bool = False) -> ApplyResult | None:
        """Apply what the link has queued; ``applied`` is emitted before returning, except under a flood on the
        timer (``defer_show``), when it follows in a moment of its own (see below)."""
        link = self.link
        if link is None:
            return None
        self.show_pending()  # every result once, in order, before the next
        records, self.last_frames = link.events.drain_frames()
        result = None
        framing = getattr(link, "framing", None)
        if framing is not None:  # what a connection opened in this batch starts with
            self.store.new_connection_framing = framing
        if records:
            self.last_batch_size = len(records)
            busy = len(records) >= BUSY_BATCH
            if busy != (self._timer.interval() == BUSY_INTERVAL_MS) and self._interval == PUMP_INTERVAL_MS:
                self._timer.setInterval(BUSY_INTERVAL_MS if busy else PUMP_INTERVAL_MS)
            for consumer in self.on_batch:
                consumer(records)
            result = self.store.apply(records)
            if defer_show and busy:
                # Showing a flood's batch (the table's repaint after it: 12 ms of the GUI thread at 20,000
                # messages/s) waits for the input and timers already due, rather than adding to the apply's block.
                self._unshown.append(result)
                QTimer.singleShot(1, self, self.show_pending)
            else:
                self.applied.emit(result)
        if not self._died_reported and not link.alive:
            self._died_reported = True
            self.link_died.emit(link.death or "the proxy stopped")
        return result


class LinkEvents(QObject):
    """Changes another client of the proxy made, as Qt signals. :meth:`watch` a link before starting it; its
    reader thread emits, and the receivers (which live on the GUI thread) get them queued, in order."""

    conditions_changed = Signal(object)
    """The global conditions now in force (``Conditions.to_dict`` form)."""
    rules_changed = Signal(object)
    """The rules now in force: a list of ``Rule.to_dict`` maps."""
    framing_changed = Signal(str)
    """The framing for new connections, as text (``lines``, ``c2s=len16,s2c=raw``)."""
    capture_changed = Signal(bool)
    """Whether the proxy's capture is now paused."""
    hold_changed = Signal(object)
    """The ``hold_changed`` announcement: armed holds (``hold_next``) and what was just armed (``armed``)."""

    def watch(self, link: Link) -> None:
        link.on_announce = self.announce

    def announce(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == "conditions_changed":
            conditions = event.get("conditions")
            if event.get("conn_id") is None and isinstance(conditions, Mapping):  # the window shows the global ones
                self.conditions_changed.emit(dict(conditions))
        elif kind == "rules_changed":
            rules = event.get("rules")
            if isinstance(rules, list):
                self.rules_changed.emit([dict(r) for r in rules if isinstance(r, Mapping)])
        elif kind == "framing_changed":
            framing = event.get("framing")
            if isinstance(framing, Mapping) and isinstance(framing.get("text"), str):
                self.framing_changed.emit(framing["text"])
        elif kind == "capture":
            self.capture_changed.emit(bool(event.get("paused")))
        elif kind == "hold_changed":
            self.hold_changed.emit(dict(event))

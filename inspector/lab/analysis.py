"""The lab over a message store: decode each row once, feed the tracker in time budgets, and the one-call API.

Role: :class:`LabAnalysis` walks a :class:`~inspector.store.MessageStore`'s rows in order (at most ``budget_s``
per :meth:`~LabAnalysis.update`, so a flood or a long session never blocks the window), decodes each row once
(summary-only) and hands every decoded top-level value to the :class:`~inspector.lab.core.LabTracker`. A server →
client message counts once it has actually been delivered (the store's state is *forwarded*: a scheduled
message's planned time may still grow with a freeze or a queue); one dropped or discarded never reached the
client. A client → server message counts from its arrival; the part of its delay sockscope added is read when
its acknowledgement comes. It starts over when the store is cleared or a given hint changes.

:func:`analyse` is the API for tests and plugins: records in (``proxy.model`` messages and their updates, as a
recorder or a session file gives them), a :class:`~inspector.lab.report.LabReport` out.
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; the window's GUI thread (the Lab dock's timer) or the caller's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from inspector.decode import DecoderRegistry, default_registry
from inspector.lab.core import ConnLab, Digest, LabTracker, interpolation_advice
from inspector.lab.hints import Hints, load_hints
from inspector.lab.report import ConnReport, LabReport
from inspector.store import NO_TIME, MessageStore
from proxy.model import Direction, MessageState, Origin, Record

__all__ = ["LabAnalysis", "analyse", "analyse_session", "analyse_store"]

MAX_VALUES: Final = 64
"""Decoded values looked at per message (a read with hundreds of coalesced JSON values is not a game tick)."""
_FINAL_GONE: Final = frozenset({MessageState.DROPPED, MessageState.DISCARDED})
_CLIENT_ORIGINS: Final = frozenset({Origin.LIVE, Origin.EDITED})
_FOREVER: Final = 1 << 62


class LabAnalysis:
    """Feeds a store's rows to a :class:`LabTracker` (see the module docstring)."""

    def __init__(self, store: MessageStore, hints: Hints | None = None,
                 registry: DecoderRegistry | None = None) -> None:
        self.store = store
        self.hints = hints if hints is not None else Hints()
        self.registry = registry or default_registry()
        self.generation = 0
        """Bumped whenever everything is recomputed: views must redraw from scratch."""
        self.decoded = 0
        """Rows decoded since the last start (a deterministic cost measure)."""
        self._reset()

    def _reset(self) -> None:
        self.tracker = LabTracker(self.hints, release_of=self._release_of)
        self.next_row = 0
        self.newest_ns = 0
        self.decoded = 0
        self._ids = self.store.ids
        self._version = self.hints.version
        self.generation += 1

    def set_hints(self, hints: Hints) -> None:
        self.hints = hints
        self._reset()

    def restart(self) -> None:
        """Start over from the first row (a given hint changed)."""
        self._reset()

    def _release_of(self, row: int) -> int | None:
        s = self.store
        if not 0 <= row < len(s):
            return None
        r = s.releases[row]
        return None if r == NO_TIME else r

    def _status(self, row: int) -> tuple[bool, int | None]:
        s = self.store
        if not 0 <= row < len(s):
            return True, None
        st = s.state(row)
        if st in _FINAL_GONE:
            return True, None
        if st is MessageState.FORWARDED:
            r = s.releases[row]
            return True, None if r == NO_TIME else r
        return False, None

    @property
    def pending(self) -> int:
        """Rows not looked at yet."""
        return max(0, len(self.store) - self.next_row) if self.store.ids is self._ids else len(self.store)

    def update(self, budget_s: float = 0.008) -> bool:
        """Look at new rows for at most ``budget_s`` seconds; True if anything changed."""
        s = self.store
        if s.ids is not self._ids or len(s) < self.next_row:  # the store was cleared
            self.hints.reset_inference()
            self._reset()
        elif self.hints.version != self._version:
            self._reset()
        tracker = self.tracker
        changed = tracker.settle(self._status) > 0
        n = len(s)
        deadline = time.perf_counter() + budget_s
        row = self.next_row
        while row < n:
            self._row(row)
            row += 1
            if not row & 7 and time.perf_counter() > deadline:
                break
        changed = changed or row != self.next_row
        self.next_row = row
        if changed:
            tracker.settle(self._status)
        if row:
            self.newest_ns = max(self.newest_ns, s.arrivals[row - 1])
        # A state in the heap has been delivered (its release is the final one): the records come in the order
        # the engine published them, so every input that reached the proxy before that release is a row already
        # in the store. Caught up, every such state can be applied; else only those before the rows still to read.
        tracker.advance(self.newest_ns if row < n else _FOREVER)
        return changed

    def _row(self, row: int) -> None:
        s = self.store
        d = Direction(s.dirs[row])
        st = s.state(row)
        if d is Direction.S2C and st in _FINAL_GONE:
            return  # never reached the client
        if s.payload_evicted(row) or not s.sizes[row]:
            return
        view = self.registry.decode_message(s.message(row), detail=False)
        self.decoded += 1
        if view.error is not None or not view.values:
            return
        release: int | None = None
        if st is MessageState.FORWARDED and s.releases[row] != NO_TIME:
            release = s.releases[row]
        elif d is Direction.C2S and s.releases[row] != NO_TIME:
            release = s.releases[row]  # planned; the final one is read when its acknowledgement comes
        from_client = s.origin(row) in _CLIENT_ORIGINS
        conn, arrival = s.conn_ids[row], s.arrivals[row]
        self.newest_ns = max(self.newest_ns, arrival)
        for value in view.values[:MAX_VALUES]:
            self.tracker.message(conn, d, value, arrival, release, row, from_client=from_client)

    def run_to_end(self, *, finish: bool = False) -> None:
        """Process every row now (tests, reports); ``finish``: also apply states not delivered yet."""
        while self.pending:
            self.update(budget_s=1.0)
        self.update(budget_s=1.0)
        if finish:
            self.tracker.settle(self._status)
            self.tracker.finish()

    # ------------------------------------------------------------------------------------------ report

    def report(self, *, finish: bool = True) -> LabReport:
        """What has been measured so far, per connection and overall (everything is processed first)."""
        self.run_to_end(finish=finish)
        t = self.tracker
        conns = {cid: _conn_report(c) for cid, c in sorted(t.conns.items()) if c.inputs or c.states}
        return LabReport(
            overall=_overall([c for c in t.conns.values() if c.inputs or c.states]),
            connections=conns,
            hints=tuple((mt.text, role, f, src) for mt, role, f, src in self.hints.describe()),
            problems=tuple(t.problems.most_common()),
        )


def _rate(c: ConnLab) -> float:
    if c.states < 2 or c.first_state is None or c.last_state_release is None:
        return math.nan
    span = (c.last_state_release - c.first_state) / 1e9
    return (c.states - 1) / span if span > 0 else math.nan


def _conn_report(c: ConnLab) -> ConnReport:
    return ConnReport(
        conn_id=c.conn_id, inputs=c.inputs, acked=c.acked, unacked=len(c.pending),
        input_ack_ms=c.delay_d.distribution(), added_ms=c.added_d.distribution(),
        in_flight=c.in_flight_d.distribution(), max_in_flight=c.max_in_flight, states=c.states,
        snapshot_rate_hz=_rate(c), snapshot_interval_ms=c.interval_d.distribution(),
        interpolation=interpolation_advice(c.window.counts), corrections_px=c.correction_d.distribution())


def _merged(ds: list[Digest]) -> Digest:
    out = Digest()
    for d in ds:
        out.merge(d)
    return out


def _overall(conns: list[ConnLab]) -> ConnReport:
    counts = [0] * len(conns[0].window.counts) if conns else []
    for c in conns:
        for i, v in enumerate(c.window.counts):
            counts[i] += v
    rates = [r for c in conns if math.isfinite(r := _rate(c))]
    return ConnReport(
        conn_id=None, inputs=sum(c.inputs for c in conns), acked=sum(c.acked for c in conns),
        unacked=sum(len(c.pending) for c in conns),
        input_ack_ms=_merged([c.delay_d for c in conns]).distribution(),
        added_ms=_merged([c.added_d for c in conns]).distribution(),
        in_flight=_merged([c.in_flight_d for c in conns]).distribution(),
        max_in_flight=max((c.max_in_flight for c in conns), default=0), states=sum(c.states for c in conns),
        snapshot_rate_hz=sum(rates) / len(rates) if rates else math.nan,
        snapshot_interval_ms=_merged([c.interval_d for c in conns]).distribution(),
        interpolation=interpolation_advice(counts),
        corrections_px=_merged([c.correction_d for c in conns]).distribution())


def analyse_store(store: MessageStore, hints: Hints | str | Path | None = None, *,
                  registry: DecoderRegistry | None = None) -> LabReport:
    """The lab's figures for everything in ``store``; ``hints``: a :class:`Hints`, a hints file, or None to infer
    them from field names."""
    if isinstance(hints, str | Path):
        hints = load_hints(hints)
    return LabAnalysis(store, hints, registry).report()


def analyse(records: Iterable[Record], hints: Hints | str | Path | None = None, *,
            registry: DecoderRegistry | None = None) -> LabReport:
    """The lab's figures for captured records (``proxy.model.Message`` and ``MessageUpdated`` in the order the
    engine published them, e.g. a recorder's list or a session file's records). Raises
    :class:`~inspector.lab.hints.HintsError` for a bad hints file.

    >>> report = analyse(recorder.records, "hints.toml")             # doctest: +SKIP
    >>> assert report.overall.corrections_px.max <= 5, report.text()  # doctest: +SKIP
    """
    store = MessageStore()
    store.apply(records)
    return analyse_store(store, hints, registry=registry)


def analyse_session(path: str | Path, hints: Hints | str | Path | None = None, *,
                    registry: DecoderRegistry | None = None) -> LabReport:
    """The lab's figures for a session file (``--record``, File ▸ Save, a failed test's saved session).
    Raises ``proxy.session.SessionError`` for a file that is not a session, ``HintsError`` for bad hints."""
    from proxy.session import open_session

    if isinstance(hints, str | Path):
        hints = load_hints(hints)  # before reading a possibly big session: a mistake there is found at once
    store = MessageStore()
    reader = open_session(path)
    batch: list[Record] = []
    for record in reader:
        batch.append(record)
        if len(batch) >= 4096:
            store.apply(batch)
            batch = []
    store.apply(batch)
    return analyse_store(store, hints, registry=registry)

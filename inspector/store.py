"""The message store: every captured message and connection, all rows vs visible rows (Wireshark's packet list).

Role: the single source of truth behind the window's tables. Records from the engine (``proxy.model``) go in
through :meth:`MessageStore.apply` in batches; the Qt models are thin adapters that read rows from here and
turn an :class:`ApplyResult` into one ``beginInsertRows`` per batch.

Layout (so a million rows stay cheap): one row per message, stored column-wise in ``array`` objects and a
``bytearray`` of small codes, plus one list of payload ``bytes`` (the engine's own objects, never copied).
There are no per-row dicts or objects. A message is found by id through a bisect over the (increasing) ids,
with a dict fallback if ids ever arrive out of order. The *visible* rows are an ``array('I')`` of row
numbers, rebuilt by :meth:`refilter` and extended as matching rows are appended.

Bounded memory policy: payload bytes are capped (``max_payload_bytes``, default 1 GiB). Past the cap, the
oldest payloads are released: their rows stay (size, times, state) and :meth:`payload` returns ``b""`` with
:meth:`payload_evicted` true, so the window says "payload evicted" instead of showing wrong bytes. Past
``max_rows`` new messages are not stored at all and counted in ``rows_refused``.

Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; owned by the Qt (GUI) thread. The bridge hands it batches on that thread.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Record,
    Side,
    UpstreamConnected,
)

__all__ = [
    "NO_TIME",
    "ApplyResult",
    "ConnectionRow",
    "MessageStore",
    "RowPredicate",
]

NO_TIME: Final = -(1 << 63)
"""Sentinel in the release-time column: not released yet (held)."""

STATES: Final[tuple[MessageState, ...]] = tuple(MessageState)
ORIGINS: Final[tuple[Origin, ...]] = tuple(Origin)
_STATE_CODE: Final = {s: i for i, s in enumerate(STATES)}
_ORIGIN_CODE: Final = {o: i for i, o in enumerate(ORIGINS)}
_HELD: Final = _STATE_CODE[MessageState.HELD]
_SCHEDULED: Final = _STATE_CODE[MessageState.SCHEDULED]

SUMMARY_CACHE_MAX: Final = 100_000
"""Most cached summaries; past it the cache is cleared (the table only ever shows a screenful)."""

RowPredicate = Callable[[int], bool]
"""A visibility test over a row number (see :meth:`MessageStore.message` to get the row as a record)."""


@dataclass(slots=True)
class ConnectionRow:
    """One relayed connection as the window shows it (a few per session, so a plain mutable object)."""

    conn_id: int
    client_addr: tuple[str, int]
    target_addr: tuple[str, int]
    opened_ns: int
    replay_of: int | None = None
    server_addr: tuple[str, int] | None = None
    closed_ns: int | None = None
    reason: CloseReason | None = None
    detail: str = ""
    half_closed: set[Side] = field(default_factory=set)
    msgs: list[int] = field(default_factory=lambda: [0, 0])
    """Messages seen, indexed by ``Direction``."""
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    """Payload bytes seen, indexed by ``Direction``."""
    held: int = 0

    @property
    def is_open(self) -> bool:
        return self.closed_ns is None

    @property
    def state_text(self) -> str:
        if self.reason is not None:
            return self.reason.value
        if self.server_addr is None:
            return "connecting"
        if self.half_closed:
            return "half-closed (" + ", ".join(s.name.lower() for s in sorted(self.half_closed)) + ")"
        return "open"


@dataclass(slots=True)
class ApplyResult:
    """What one :meth:`MessageStore.apply` changed, for the Qt adapters to signal precisely."""

    first_new_row: int
    """Rows ``first_new_row .. len(store) - 1`` were appended."""
    first_new_visible: int
    """Visible positions ``first_new_visible .. visible_count - 1`` were appended."""
    changed_rows: list[int] = field(default_factory=list)
    """Existing rows whose state, release time or payload changed."""
    connections_added: list[int] = field(default_factory=list)
    connections_changed: set[int] = field(default_factory=set)
    notices: list[Notice] = field(default_factory=list)
    held_changed: bool = False
    ignored: int = 0
    """Records this store did not understand (counted, never raised)."""

    @property
    def empty(self) -> bool:
        return (not self.changed_rows and not self.connections_added and not self.connections_changed
                and not self.notices and not self.held_changed)


class MessageStore:
    """Append-only rows of messages plus connections, with a filtered visible index. GUI thread only."""

    def __init__(self, *, max_payload_bytes: int = 1 << 30, max_rows: int = 50_000_000) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_rows = max_rows
        self._init_columns()
        self.connections: dict[int, ConnectionRow] = {}
        self.held: dict[int, int] = {}
        """Held messages in arrival order: message id -> row. Drives the intercept panel."""
        self.paused = False
        """While paused, new live messages are not stored (held ones still are: they need the user)."""
        self.skipped_while_paused = 0
        self.rows_refused = 0
        self.totals_msgs = [0, 0]
        self.totals_bytes = [0, 0]
        self._predicate: RowPredicate | None = None
        self.summary_cache: dict[int, str] = {}

    def _init_columns(self) -> None:
        self.ids = array("Q")
        self.conn_ids = array("I")
        self.seqs = array("I")
        self.dirs = bytearray()
        self.states = bytearray()
        self.origins = bytearray()
        self.arrivals = array("q")
        self.releases = array("q")
        self.sizes = array("I")
        self._payloads: list[bytes] = []
        self._payload_bytes = 0
        self._evicted_upto = 0
        """Rows below this index have had their payload released (memory cap)."""
        self._delays: dict[int, tuple[tuple[DelayReason, int], ...]] = {}
        self._originals: dict[int, bytes] = {}
        self._ids_sorted = True
        self._id_index: dict[int, int] | None = None
        self.visible = array("I")
        self.t0_ns: int | None = None

    # ------------------------------------------------------------------------------------------- sizes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def visible_count(self) -> int:
        return len(self.visible)

    @property
    def payload_bytes(self) -> int:
        return self._payload_bytes

    @property
    def held_count(self) -> int:
        return len(self.held)

    # ------------------------------------------------------------------------------------------- input

    def apply(self, records: Iterable[Record]) -> ApplyResult:
        """Apply a batch of engine records in order and report what changed."""
        result = ApplyResult(len(self.ids), len(self.visible))
        changed: set[int] = set()
        for r in records:
            if isinstance(r, Message):
                self._append(r, result)
            elif isinstance(r, MessageUpdated):
                row = self._update(r, result)
                if row is not None and row < result.first_new_row:
                    changed.add(row)
            elif isinstance(r, ConnectionOpened):
                self.connections[r.conn_id] = ConnectionRow(r.conn_id, r.client_addr, r.target_addr, r.time_ns,
                                                            r.replay_of)
                result.connections_added.append(r.conn_id)
            elif isinstance(r, UpstreamConnected):
                self._touch_conn(r.conn_id, result).server_addr = r.server_addr
            elif isinstance(r, HalfClosed):
                self._touch_conn(r.conn_id, result).half_closed.add(r.side)
            elif isinstance(r, ConnectionClosed):
                c = self._touch_conn(r.conn_id, result)
                c.closed_ns, c.reason, c.detail = r.time_ns, r.reason, r.detail
            elif isinstance(r, Notice):
                result.notices.append(r)
            else:
                result.ignored += 1
        result.changed_rows = sorted(changed)
        if self._payload_bytes > self.max_payload_bytes:
            self._evict()
        return result

    def _touch_conn(self, conn_id: int, result: ApplyResult) -> ConnectionRow:
        c = self.connections.get(conn_id)
        if c is None:  # the opening record was lost (attached late or events dropped): make a placeholder
            c = self.connections[conn_id] = ConnectionRow(conn_id, ("?", 0), ("?", 0), 0)
            result.connections_added.append(conn_id)
        else:
            result.connections_changed.add(conn_id)
        return c

    def _append(self, m: Message, result: ApplyResult) -> None:
        d = int(m.direction)
        conn = self._touch_conn(m.conn_id, result)
        conn.msgs[d] += 1
        conn.bytes[d] += len(m.data)
        self.totals_msgs[d] += 1
        self.totals_bytes[d] += len(m.data)
        held = m.state is MessageState.HELD
        if (self.paused and not held) or len(self.ids) >= self.max_rows:
            if self.paused and not held:
                self.skipped_while_paused += 1
            else:
                self.rows_refused += 1
            return
        row = len(self.ids)
        ids = self.ids
        if ids and m.id <= ids[-1]:
            self._ids_sorted = False
            self._id_index = None
        if self._id_index is not None:
            self._id_index[m.id] = row
        ids.append(m.id)
        self.conn_ids.append(m.conn_id)
        self.seqs.append(m.seq)
        self.dirs.append(d)
        self.states.append(_STATE_CODE[m.state])
        self.origins.append(_ORIGIN_CODE[m.origin])
        self.arrivals.append(m.arrival_ns)
        self.releases.append(NO_TIME if m.release_ns is None else m.release_ns)
        self.sizes.append(len(m.data))
        self._payloads.append(m.data)
        self._payload_bytes += len(m.data)
        if m.delays:
            self._delays[row] = m.delays
        if self.t0_ns is None:
            self.t0_ns = m.arrival_ns
        if held:
            self.held[m.id] = row
            conn.held += 1
            result.held_changed = True
        pred = self._predicate
        if pred is None or pred(row):
            self.visible.append(row)

    def _update(self, u: MessageUpdated, result: ApplyResult) -> int | None:
        row = self.row_of(u.msg_id)
        if row is None:
            result.ignored += 1
            return None
        old = self.states[row]
        self.states[row] = _STATE_CODE[u.state]
        if u.release_ns is not None:
            self.releases[row] = u.release_ns
        if u.delays:
            self._delays[row] = u.delays
        if u.data is not None and row >= self._evicted_upto:
            if row not in self._originals:
                self._originals[row] = self._payloads[row]
            self._payload_bytes += len(u.data) - len(self._payloads[row])
            self._payloads[row] = u.data
            self.sizes[row] = len(u.data)
            self.origins[row] = _ORIGIN_CODE[Origin.EDITED]
        self.summary_cache.pop(row, None)
        if old == _HELD and u.state is not MessageState.HELD:
            self.held.pop(u.msg_id, None)
            c = self.connections.get(u.conn_id)
            if c is not None:
                c.held = max(0, c.held - 1)
                result.connections_changed.add(u.conn_id)
            result.held_changed = True
        elif old != _HELD and u.state is MessageState.HELD:
            self.held[u.msg_id] = row
            c = self.connections.get(u.conn_id)
            if c is not None:
                c.held += 1
                result.connections_changed.add(u.conn_id)
            result.held_changed = True
        return row

    def _evict(self) -> None:
        """Release the oldest payloads until payload memory is back under 3/4 of the cap."""
        target = self.max_payload_bytes * 3 // 4
        i = self._evicted_upto
        payloads, empty = self._payloads, b""
        held_rows = set(self.held.values())
        while self._payload_bytes > target and i < len(payloads):
            if i not in held_rows:  # a held message's bytes are still needed to release it
                self._payload_bytes -= len(payloads[i])
                payloads[i] = empty
                self._originals.pop(i, None)
            i += 1
        self._evicted_upto = i

    # ------------------------------------------------------------------------------------------- lookup

    def row_of(self, msg_id: int) -> int | None:
        """The row of message ``msg_id``, or None if it is not stored."""
        ids = self.ids
        if self._ids_sorted:
            i = bisect.bisect_left(ids, msg_id)
            return i if i < len(ids) and ids[i] == msg_id else None
        if self._id_index is None:
            self._id_index = {mid: r for r, mid in enumerate(ids)}
        return self._id_index.get(msg_id)

    def direction(self, row: int) -> Direction:
        return Direction(self.dirs[row])

    def state(self, row: int) -> MessageState:
        return STATES[self.states[row]]

    def origin(self, row: int) -> Origin:
        return ORIGINS[self.origins[row]]

    def release_ns(self, row: int) -> int | None:
        r = self.releases[row]
        return None if r == NO_TIME else r

    def added_delay_ns(self, row: int) -> int | None:
        r = self.releases[row]
        return None if r == NO_TIME else r - self.arrivals[row]

    def delays(self, row: int) -> tuple[tuple[DelayReason, int], ...]:
        return self._delays.get(row, ())

    def payload(self, row: int) -> bytes:
        return self._payloads[row]

    def payload_evicted(self, row: int) -> bool:
        return row < self._evicted_upto and self.sizes[row] > 0 and not self._payloads[row]

    def original_payload(self, row: int) -> bytes | None:
        """The bytes as captured, when the user edited the message before forwarding it."""
        return self._originals.get(row)

    def message(self, row: int) -> Message:
        """Row ``row`` as a ``proxy.model.Message`` (what filters and decoders take); built on demand."""
        return Message(
            id=self.ids[row], conn_id=self.conn_ids[row], direction=Direction(self.dirs[row]), seq=self.seqs[row],
            data=self._payloads[row], arrival_ns=self.arrivals[row], release_ns=self.release_ns(row),
            origin=ORIGINS[self.origins[row]], state=STATES[self.states[row]], delays=self._delays.get(row, ()))

    def held_rows(self) -> list[int]:
        return list(self.held.values())

    # ------------------------------------------------------------------------------------------- summaries

    def summary(self, row: int, make: Callable[[int], str]) -> str:
        """The decoded one-line summary of ``row``, computed once by ``make(row)`` and cached."""
        cache = self.summary_cache
        s = cache.get(row)
        if s is None:
            if len(cache) >= SUMMARY_CACHE_MAX:
                cache.clear()
            s = cache[row] = make(row)
        return s

    def invalidate_summaries(self) -> None:
        """Forget every cached summary (the user changed "decode as" or a decoder setting)."""
        self.summary_cache.clear()

    # ------------------------------------------------------------------------------------------- filtering

    @property
    def predicate(self) -> RowPredicate | None:
        return self._predicate

    def refilter(self, predicate: RowPredicate | None) -> None:
        """Rebuild the visible rows with ``predicate`` (None shows every row)."""
        for _ in self.refilter_steps(predicate, chunk=1 << 62):
            pass

    def refilter_steps(self, predicate: RowPredicate | None, chunk: int = 50_000) -> Iterator[float]:
        """Like :meth:`refilter` but in steps of ``chunk`` rows, yielding progress (0..1) between steps.

        The visible index is swapped in only at the end, so a reader never sees a half-built index; rows
        appended while the steps run are filtered too.
        """
        self._predicate = predicate
        n = len(self.ids)
        if predicate is None:
            self.visible = array("I", range(n))
            yield 1.0
            return
        out = array("I")
        start = 0
        while True:
            n = len(self.ids)
            if start >= n:
                break
            end = min(n, start + chunk)
            out.extend(r for r in range(start, end) if predicate(r))
            start = end
            if start < len(self.ids):
                yield start / max(1, len(self.ids))
        self.visible = out
        yield 1.0

    def visible_position(self, row: int) -> int | None:
        """Where ``row`` sits among the visible rows, or None if it is filtered out."""
        v = self.visible
        i = bisect.bisect_left(v, row)
        return i if i < len(v) and v[i] == row else None

    # ------------------------------------------------------------------------------------------- clearing

    def clear(self) -> None:
        """Forget every message (connections stay, their counters too; held messages are kept in the queue)."""
        held = [(mid, self.message(r)) for mid, r in self.held.items()]
        self._init_columns()
        self.held.clear()
        self.summary_cache.clear()
        self.skipped_while_paused = 0
        for _, m in held:  # held messages still block their direction: keep them visible
            self._append_silently(m)

    def _append_silently(self, m: Message) -> None:
        result = ApplyResult(0, 0)
        conn = self.connections.get(m.conn_id)
        saved = (conn.msgs[:], conn.bytes[:], conn.held) if conn else None
        totals = (self.totals_msgs[:], self.totals_bytes[:])
        self._append(m, result)
        if conn is not None and saved is not None:
            conn.msgs, conn.bytes, conn.held = saved
        self.totals_msgs, self.totals_bytes = totals

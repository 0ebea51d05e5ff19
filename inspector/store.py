"""The message store: every captured message and connection, all rows vs visible rows (Wireshark's packet list).

Role: the single source of truth behind the window's tables. Records from the engine (``proxy.model``) go in
through :meth:`MessageStore.apply` in batches; the Qt models are thin adapters that read rows from here and
turn an :class:`ApplyResult` into one ``beginInsertRows`` per batch.

Layout (so a million rows stay cheap): one row per message, stored column-wise in ``array`` objects and a
``bytearray`` of small codes, plus one list of payload ``bytes`` (the engine's own objects, never copied).
There are no per-row dicts or objects. A message is found by id through a bisect over the (increasing) ids,
with a dict fallback if ids ever arrive out of order. The *visible* rows are an ``array('I')`` of row
numbers, rebuilt by :meth:`refilter` and extended as matching rows are appended.

Re-framed rows (a view): while the proxy infers a direction's framing it passes each read on raw, one message
per read. When a :class:`~proxy.model.FramingInferred` record says which framing those reads follow (or the user
chose one), :mod:`inspector.reframe` cuts them into that framing's messages. The reads stay as they are (rows, ids,
bytes: everything that iterates the store's rows, such as saving a session, a replay or the timeline, sees them);
the table shows :attr:`MessageStore.view` instead of :attr:`MessageStore.visible`, where a read that was not one
message is replaced by the messages that ended in it. Those messages are *derived rows*: handles from
:data:`DERIVED_BASE` on, accepted by the row accessors (``payload``, ``message``, ``state`` ...; their payload is
sliced from the reads when asked for, their state is that of the read that completed them) but never valid as
an index into the column arrays. The work is bounded: at most ``REFRAME_MAX_SOURCES`` reads and
``inspector.reframe.REFRAME_MAX_BYTES`` bytes per re-framing, one re-framing per framing record. Each batch's
changes to the view are :class:`ViewEdit` s for the table model.

Bounded memory policy: payload bytes are capped (``max_payload_bytes``, default 1 GiB). Past the cap, the
oldest payloads are released: their rows stay (size, times, state) and :meth:`payload` returns ``b""`` with
:meth:`payload_evicted` true, so the window says "payload evicted" instead of showing wrong bytes. Past
``max_rows`` new messages are not stored at all and counted in ``rows_refused``.

Every UDP datagram is also handed, as it is appended and before anything decodes it, to the ENet decoder's book of
flows (``inspector.decode._enet.FLOWS``): a fragmented ENet message is reassembled there in capture order.

Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; owned by the Qt (GUI) thread. The bridge hands it batches on that thread.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    FramingInferred,
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

if TYPE_CHECKING:
    from inspector.reframe import Cut  # imported when a view is first re-framed

__all__ = [
    "DERIVED_BASE",
    "NO_TIME",
    "ApplyResult",
    "ConnectionRow",
    "Frame",
    "LaneFraming",
    "MessageStore",
    "RowPredicate",
    "ViewEdit",
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

DERIVED_BASE: Final = 1 << 31
"""Handles of re-framed (derived) rows start here; real rows are below (``max_rows`` is far less)."""
REFRAME_MAX_SOURCES: Final = 64
"""Reads of a direction kept track of since its framing last changed (the first ones: a framing starts at a
message boundary): what a framing inferred or chosen later may re-frame. The proxy infers within 12 reads."""
HISTORY_MAX: Final = 16
"""Framing changes remembered per direction (for the detail pane)."""
_MOVED: Final = frozenset((_STATE_CODE[MessageState.FORWARDED], _SCHEDULED))
"""States of reads that may be re-framed: on their way or delivered (not held, dropped or discarded)."""
_LIVE: Final = _ORIGIN_CODE[Origin.LIVE]

def _first_datagram(m: Message) -> None:
    """Hand a UDP datagram, in capture order, to the ENet decoder's book of flows (fragments to reassemble, connect
    ids); imported on the first datagram, so a TCP-only window never loads the decoders for it."""
    global _observe_datagram
    from inspector.decode._enet import observe_datagram

    _observe_datagram = observe_datagram
    observe_datagram(m)


_observe_datagram: Callable[[Message], None] = _first_datagram


def _forget_flows() -> None:
    """Empty the ENet book of flows, if the decoders are loaded (else it has nothing to forget)."""
    enet = sys.modules.get("inspector.decode._enet")
    if enet is not None:
        enet.FLOWS.clear()


RowPredicate = Callable[[int], bool]
"""A visibility test over a row number (see :meth:`MessageStore.message` to get the row as a record)."""


@dataclass(slots=True)
class LaneFraming:
    """What the window knows of one direction's framing (from the proxy's ``FramingInferred`` records)."""

    framing: str = ""
    """The framing in force: a ``--framing`` name, ``auto`` while the proxy infers, "" when not known."""
    cause: str = ""
    """The last record's cause (``inferred``, ``remembered``, ``user``, ``stall`` ...), or ``start``: the framing
    set for new connections when this one opened."""
    reason: str = ""
    from_seq: int = 0
    lost: str = ""
    """The framing that last stopped fitting (a stall, a contradiction, or given up), "" if none did."""
    lost_reason: str = ""
    history: list[tuple[int, str, str, str]] = field(default_factory=list)
    """(from_seq, framing, cause, reason) of each change, oldest first (the last ``HISTORY_MAX``)."""
    reframed: int = 0
    """Reads re-framed for the view so far."""
    note: str = ""
    """Why the last re-framing did not happen, "" if it did (or there was nothing to do)."""

    @property
    def stopped_fitting(self) -> bool:
        """Whether the last change was a framing that stopped fitting (and none has been found since)."""
        return self.cause in ("stall", "contradiction", "limit")

    def at(self, seq: int) -> tuple[str, str, str] | None:
        """(framing, cause, reason) in force for message ``seq``, when known."""
        found = None
        for from_seq, framing, cause, reason in self.history:
            if from_seq <= seq:
                found = (framing, cause, reason)
        return found


@dataclass(slots=True)
class Frame:
    """A message re-framed for the view out of stored reads: from byte ``start`` of ``sources[0]`` to byte ``end``
    (exclusive) of ``sources[-1]``, the read that completed it (whose id, time and state it shows)."""

    sources: tuple[int, ...]
    start: int
    end: int
    size: int
    index: int
    """Among the messages that ended in ``sources[-1]``, from 0."""
    count: int
    framing: str


@dataclass(frozen=True, slots=True)
class ViewEdit:
    """A change to the view's middle: at position ``pos`` (counted after the edits before it in the same batch),
    rows ``removed`` were taken out and ``inserted`` rows put in their place."""

    pos: int
    removed: tuple[int, ...]
    inserted: int


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
    framing: list[LaneFraming] = field(default_factory=lambda: [LaneFraming(), LaneFraming()])
    """Per direction (indexed by ``Direction``): the framing in force and how it was found."""
    transport: str = "tcp"
    """``tcp`` for a connection, ``udp`` for a flow (the datagrams of one client address)."""
    last_ns: int = 0
    """When its last message arrived (engine monotonic time): a UDP flow ends after the idle timeout without one."""

    @property
    def is_open(self) -> bool:
        return self.closed_ns is None

    @property
    def is_udp(self) -> bool:
        return self.transport == "udp"

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
    """View positions ``first_new_visible .. visible_count - 1`` are new (after ``view_edits``)."""
    view_count_before: int = 0
    """The view's length when the batch began (what a model that followed every batch shows)."""
    view_edits: list[ViewEdit] = field(default_factory=list)
    """Changes to view positions below ``first_new_visible`` (re-framed rows), in order."""
    framings: list[FramingInferred] = field(default_factory=list)
    """Framing changes in this batch (the window warns about those that did not hold)."""
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
                and not self.notices and not self.held_changed and not self.view_edits and not self.framings)


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
        self.new_connection_framing: tuple[str, str] | None = None
        """The proxy's framing for new connections (c2s, s2c), when known: what a connection starts with."""
        self.reframe_work = 0
        """Bytes fed to framers to re-frame reads for the view, in total (a deterministic cost measure)."""
        self._ws_feeds: dict[int, Callable[[Message], None]] = {}
        """Directions framed as ``websocket`` (key conn_id << 1 | direction): each live message goes to the WebSocket
        decoder's stream tracker too, in order, so fragments are reassembled and compressed messages inflated with
        their context (``inspector/decode/_websocket.py``)."""
        _forget_flows()  # a new capture numbers its connections from 1 again: #1 here is another flow

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
        self._notes: dict[int, str] = {}
        """Rows with a note (why a datagram was dropped, truncated, corrupted ...): sparse, most have none."""
        self._flips: dict[int, tuple[int, ...]] = {}
        """Rows whose bits a corrupt impairment flipped -> the bit positions (byte × 8 + bit)."""
        self._originals: dict[int, bytes] = {}
        self._ids_sorted = True
        self._id_index: dict[int, int] | None = None
        self.visible = array("I")
        """The real rows the filter lets through, in row order (what exports and sessions take)."""
        self.view = self.visible
        """What the table shows: ``visible`` with each re-framed read replaced by the messages that ended in it.
        The same array as ``visible`` until something is re-framed."""
        self.t0_ns: int | None = None
        self._frames: list[Frame] = []
        """Derived rows: handle ``DERIVED_BASE + i`` is ``_frames[i]``."""
        self._superseded: dict[int, list[int]] = {}
        """Re-framed reads -> the handles of the messages that ended in them (possibly none)."""
        self._frame_of: dict[int, int] = {}
        """Re-framed reads -> the first derived row holding some of their bytes (where the view shows them)."""
        self._runs: dict[int, list[int]] = {}
        """Per direction of a connection (``conn_id << 1 | direction``): the first seq of its current framing,
        then its first ``REFRAME_MAX_SOURCES`` stored rows since then: what a framing record may re-frame."""
        self._view_generation: int = getattr(self, "_view_generation", 0) + 1
        """Bumped by every re-framing and clearing (a slice-wise refilter that saw one starts again)."""

    # ------------------------------------------------------------------------------------------- sizes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def visible_count(self) -> int:
        """Rows of the view (what the table shows)."""
        return len(self.view)

    @property
    def view_total(self) -> int:
        """Rows the view has with no filter: the stored reads, each re-framed one counted as its messages."""
        return len(self.ids) - len(self._superseded) + len(self._frames)

    @property
    def payload_bytes(self) -> int:
        return self._payload_bytes

    @property
    def held_count(self) -> int:
        return len(self.held)

    # ------------------------------------------------------------------------------------------- input

    def apply(self, records: Iterable[Record]) -> ApplyResult:
        """Apply a batch of engine records in order and report what changed."""
        n_view = len(self.view)
        result = ApplyResult(len(self.ids), n_view, n_view)
        changed: set[int] = set()
        run: list[Message] = []  # consecutive messages are stored together (a flood is nearly all messages)
        ws = self._ws_feeds
        for r in records:
            if type(r) is Message:
                if ws:
                    feed = ws.get(r.conn_id << 1 | r.direction)
                    if feed is not None:
                        feed(r)
                run.append(r)
                continue
            if run:
                self._append_many(run, result)
                run = []
            if isinstance(r, Message):
                if ws:
                    feed = ws.get(r.conn_id << 1 | r.direction)
                    if feed is not None:
                        feed(r)
                self._append_many([r], result)
            elif isinstance(r, MessageUpdated):
                row = self._update(r, result)
                if row is not None and row < result.first_new_row:
                    changed.add(row)
                    derived = self._superseded.get(row)
                    if derived:
                        changed.update(derived)
            elif isinstance(r, FramingInferred):
                self._framing(r, result)
            elif isinstance(r, ConnectionOpened):
                c = self.connections[r.conn_id] = ConnectionRow(r.conn_id, r.client_addr, r.target_addr, r.time_ns,
                                                                r.replay_of, transport=r.transport, last_ns=r.time_ns)
                start = self.new_connection_framing
                if c.is_udp:  # a datagram is a message: nothing to frame, nothing inferred
                    for lane in c.framing:
                        lane.framing, lane.cause = "datagram", "udp"
                        lane.reason = "a UDP datagram is one message: the network keeps its boundaries"
                        lane.history.append((0, lane.framing, lane.cause, lane.reason))
                elif start is not None:
                    for d, name in enumerate(start):
                        if name == "websocket":
                            self._follow_websocket(r.conn_id, d, [])
                        lane = c.framing[d]
                        lane.framing, lane.cause = name, "start"
                        lane.reason = ("inferred from the first messages" if name == "auto"
                                       else "the framing set for new connections")
                        lane.history.append((0, name, "start", lane.reason))
                result.connections_added.append(r.conn_id)
            elif isinstance(r, UpstreamConnected):
                self._touch_conn(r.conn_id, result).server_addr = r.server_addr
            elif isinstance(r, HalfClosed):
                self._touch_conn(r.conn_id, result).half_closed.add(r.side)
            elif isinstance(r, ConnectionClosed):
                c = self._touch_conn(r.conn_id, result)
                c.closed_ns, c.reason, c.detail = r.time_ns, r.reason, r.detail
                if ws:
                    ws.pop(r.conn_id << 1, None)
                    ws.pop(r.conn_id << 1 | 1, None)
                self._runs.pop(r.conn_id << 1, None)  # nothing more will be re-framed on it
                self._runs.pop(r.conn_id << 1 | 1, None)
            elif isinstance(r, Notice):
                result.notices.append(r)
            else:
                result.ignored += 1
        if run:
            self._append_many(run, result)
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
        self._append_many((m,), result)

    def _append_many(self, msgs: Sequence[Message], result: ApplyResult) -> None:
        """Store messages in order. One loop with every column's ``append`` bound once: at 40,000 records a
        second this is the largest part of the window's work, and Python's attribute lookups were half of it."""
        ids = self.ids
        ids_append, conn_append, seq_append = ids.append, self.conn_ids.append, self.seqs.append
        dir_append, state_append, origin_append = self.dirs.append, self.states.append, self.origins.append
        arrival_append, release_append = self.arrivals.append, self.releases.append
        size_append, payload_append = self.sizes.append, self._payloads.append
        state_code, origin_code, held_state = _STATE_CODE, _ORIGIN_CODE, MessageState.HELD
        totals_msgs, totals_bytes = self.totals_msgs, self.totals_bytes
        runs, pred = self._runs, self._predicate
        visible_append = self.visible.append
        view_append = None if self.view is self.visible else self.view.append
        paused, room = self.paused, self.max_rows - len(ids)
        payload_bytes = 0
        last_conn_id: int | None = None
        conn: ConnectionRow | None = None
        try:
            for m in msgs:
                d = int(m.direction)
                n = len(m.data)
                if m.conn_id != last_conn_id or conn is None:
                    conn = self._touch_conn(m.conn_id, result)
                    last_conn_id = m.conn_id
                conn.msgs[d] += 1
                conn.bytes[d] += n
                if m.arrival_ns > conn.last_ns:
                    conn.last_ns = m.arrival_ns
                totals_msgs[d] += 1
                totals_bytes[d] += n
                held = m.state is held_state
                if (paused and not held) or room <= 0:
                    if paused and not held:
                        self.skipped_while_paused += 1
                    else:
                        self.rows_refused += 1
                    continue
                room -= 1
                row = len(ids)
                if ids and m.id <= ids[-1]:
                    self._ids_sorted = False
                    self._id_index = None
                if self._id_index is not None:
                    self._id_index[m.id] = row
                ids_append(m.id)
                conn_append(m.conn_id)
                seq_append(m.seq)
                dir_append(d)
                state_append(state_code[m.state])
                origin_append(origin_code[m.origin])
                arrival_append(m.arrival_ns)
                release_append(NO_TIME if m.release_ns is None else m.release_ns)
                size_append(n)
                payload_append(m.data)
                payload_bytes += n
                if m.delays:
                    self._delays[row] = m.delays
                if m.note:
                    self._notes[row] = m.note
                if m.flips:
                    self._flips[row] = m.flips
                if self.t0_ns is None:
                    self.t0_ns = m.arrival_ns
                if held:
                    self.held[m.id] = row
                    conn.held += 1
                    result.held_changed = True
                key = m.conn_id << 1 | d
                run = runs.get(key)
                if run is None:
                    runs[key] = [m.seq, row]
                elif len(run) <= REFRAME_MAX_SOURCES:
                    run.append(row)
                if conn.transport == "udp":  # before anything decodes the row: a fragment may complete an ENet message
                    _observe_datagram(m)
                if pred is None or pred(row):
                    visible_append(row)
                    if view_append is not None:
                        view_append(row)
        finally:
            self._payload_bytes += payload_bytes

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
        for h in self._superseded.get(row, ()):
            self.summary_cache.pop(h, None)
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

    # ------------------------------------------------------------------------------------------- framing

    def _framing(self, r: FramingInferred, result: ApplyResult) -> None:
        """A direction's framing changed: remember it, and re-frame for the view the reads it says are whole
        messages of the new framing (see :class:`~proxy.model.FramingInferred`)."""
        c = self._touch_conn(r.conn_id, result)
        d = int(r.direction)
        lane = c.framing[d]
        if r.cause in ("stall", "contradiction", "limit"):
            lane.lost, lane.lost_reason = lane.framing or "the framing", r.reason
        lane.framing, lane.cause, lane.reason, lane.from_seq = r.framing, r.cause, r.reason, r.from_seq
        lane.history.append((r.from_seq, r.framing, r.cause, r.reason))
        del lane.history[:-HISTORY_MAX]
        result.framings.append(r)
        key = r.conn_id << 1 | d
        run = self._runs.get(key)
        if r.framing == "websocket" and key not in self._ws_feeds:
            seqs = self.seqs
            backlog = [] if run is None or r.cause not in ("inferred", "remembered") else [
                self.message(row) for row in run[1:] if r.since_seq <= seqs[row] < r.from_seq]
            self._follow_websocket(r.conn_id, d, backlog)
        if r.framing not in ("raw", "auto") and run is not None:
            if r.cause in ("inferred", "remembered"):
                self._reframe(lane, run, r.since_seq, r.from_seq, r.framing, True, result)
            elif r.cause == "resync":  # the read that fitted the framing again
                self._reframe(lane, run, r.from_seq - 1, r.from_seq, r.framing, True, result)
            elif r.cause == "user":  # what came since the framing last changed, as far as it fits
                self._reframe(lane, run, run[0], r.from_seq, r.framing, False, result)
        if not (r.framing == "raw" and r.cause in ("inferred", "remembered")):
            self._runs[key] = [r.from_seq]  # raw inferred: the reads so far and the next are alike, keep them

    def _follow_websocket(self, conn_id: int, d: int, backlog: list[Message]) -> None:
        from inspector.decode import default_registry
        from inspector.decode._websocket import TRACKER  # imported when a WebSocket connection first shows up

        self._ws_feeds[conn_id << 1 | d] = TRACKER.feeder(self, conn_id, Direction(d), backlog)
        default_registry().set_framing("websocket", conn_id, Direction(d))  # its decoder reads every message

    def _reframe(self, lane: LaneFraming, run: list[int], lo: int, hi: int, framing: str, exact: bool,
                 result: ApplyResult) -> None:
        """Re-frame the stored reads with seq ``lo`` .. ``hi - 1`` of a run (``exact``: all of them, as the proxy
        promised; else as many from ``lo`` as fit) and put the messages in their place in the view."""
        lane.note = ""
        if hi <= lo:
            return
        seqs, payloads = self.seqs, self._payloads
        rows = [row for row in run[1:] if lo <= seqs[row] < hi]
        # The proxy says where its framing starts; a read it passed on just before (the rest of a frame that
        # stalled) may precede it, so an exact cut may also start one or two reads later.
        tries = (0, 1, 2) if exact else (0,)
        why = ""
        for skip in tries:
            if skip and (skip >= len(rows) or lo + skip >= hi):
                break
            usable = self._usable(rows[skip:], lo + skip, hi if exact else None)
            if isinstance(usable, str):
                why = why or usable  # the first reason says most (the later tries are the unusual case)
                continue
            sources = usable
            from inspector.reframe import cut  # imported when a view is first re-framed (start-up time)

            outcome = cut([payloads[row] for row in sources], framing, exact=exact)
            self.reframe_work += outcome.work
            if not outcome.reads:
                why = why or outcome.why
                continue
            lane.reframed += self._apply_cut(sources[:outcome.reads], outcome, result)
            return
        lane.note = why

    def _usable(self, rows: list[int], lo: int, hi: int | None) -> list[int] | str:
        """``rows`` if they are the reads ``lo`` .. ``hi - 1`` (``hi`` None: from ``lo``, as many as are usable),
        stored, in order, live, on their way or delivered and not re-framed before; else why not."""
        out: list[int] = []
        states, origins, seqs = self.states, self.origins, self.seqs
        for i, row in enumerate(rows):
            why = ""
            if seqs[row] != lo + i:
                why = "some of its messages were not captured (paused, or the window fell behind)"
            elif origins[row] != _LIVE or states[row] not in _MOVED or row in self._superseded:
                why = "a message among them was held, dropped, injected or edited"
            elif self.payload_evicted(row):
                why = "their bytes were released (memory cap)"
            if why:
                if hi is None and out:
                    return out
                return why
            out.append(row)
        if hi is not None and len(out) != hi - lo:
            return ("more messages than the window keeps track of" if len(rows) >= REFRAME_MAX_SOURCES
                    else "some of its messages were not captured (paused, or the window fell behind)")
        return out or "nothing to re-frame"

    def _apply_cut(self, sources: list[int], c: Cut, result: ApplyResult) -> int:
        """Derived rows for the messages of ``c`` that are not a whole read, in the view where their reads were.
        Returns how many reads were re-framed."""
        sizes = [len(self._payloads[row]) for row in sources]
        whole = c.whole_reads(sizes)
        ending: dict[int, list[int]] = {}
        frame_of: dict[int, int] = {}
        new: list[tuple[int, int, int, int]] = []
        for p in c.pieces:
            if p.first in whole and p.first == p.last:
                continue
            new.append((p.first, p.last, p.start, p.end))
        if not new:
            return 0  # each read was one message: the view is right as it is
        if self.view is self.visible:
            self.view = array("I", self.visible)
        base = DERIVED_BASE + len(self._frames)
        per_last: dict[int, int] = {}
        for _first, last, _s, _e in new:
            per_last[last] = per_last.get(last, 0) + 1
        seen: dict[int, int] = {}
        for k, (first, last, start, end) in enumerate(new):
            handle = base + k
            src = tuple(sources[first:last + 1])
            size = (end - start if first == last else
                    sizes[first] - start + sum(sizes[first + 1:last]) + end)
            index = seen.get(last, 0)
            seen[last] = index + 1
            self._frames.append(Frame(src, start, end, size, index, per_last[last], c.framing))
            ending.setdefault(sources[last], []).append(handle)
            for row in src:
                frame_of.setdefault(row, handle)
        reframed = sorted(frame_of)
        for row in reframed:
            self._superseded[row] = ending.get(row, [])
        self._frame_of.update(frame_of)
        self._view_generation += 1
        self._place(reframed, result)
        return len(reframed)

    def _place(self, reframed: list[int], result: ApplyResult) -> None:
        """Replace each re-framed read in the view by the messages that ended in it (those the filter lets
        through), recording the edits to what a model already shows."""
        view, key, pred = self.view, self._key, self._predicate
        boundary = result.first_new_visible
        for row in reframed:
            handles = [h for h in self._superseded[row] if pred is None or pred(h)]
            p = bisect.bisect_left(view, key(row), key=key)
            removed: tuple[int, ...] = (row,) if p < len(view) and view[p] == row else ()
            if not removed and not handles:
                continue
            view[p:p + len(removed)] = array("I", handles)
            if p < boundary:
                result.view_edits.append(ViewEdit(p, removed, len(handles)))
                boundary += len(handles) - len(removed)
        result.first_new_visible = boundary

    def _key(self, handle: int) -> int:
        """Where a row sits in the view: real rows in row order, a derived row just after where its read was."""
        if handle < DERIVED_BASE:
            return handle << 16
        f = self._frames[handle - DERIVED_BASE]
        return f.sources[-1] << 16 | (f.index + 1)

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

    # Every accessor below takes a row or a derived row's handle (what the view holds); the column arrays take
    # real rows only.

    def is_derived(self, row: int) -> bool:
        """Whether ``row`` is a message re-framed for the view (a handle, not a stored read)."""
        return row >= DERIVED_BASE

    def frame(self, row: int) -> Frame | None:
        """The re-framed message behind a derived row (None for a real row)."""
        return self._frames[row - DERIVED_BASE] if row >= DERIVED_BASE else None

    def real_row(self, row: int) -> int:
        """The stored read behind ``row``: itself, or for a derived row the read that completed it."""
        return self._frames[row - DERIVED_BASE].sources[-1] if row >= DERIVED_BASE else row

    def reframed(self, row: int) -> bool:
        """Whether the read ``row`` is shown in the view as the messages it held (it is not in the view itself)."""
        return row in self._superseded

    def frames_ending_in(self, row: int) -> list[int]:
        """The derived rows of the messages that ended in re-framed read ``row`` (empty for other rows)."""
        return list(self._superseded.get(row, ()))

    def msg_id(self, row: int) -> int:
        """The engine's id of the message, or of the read that completed a derived row."""
        return self.ids[self.real_row(row)]

    def display_id(self, row: int) -> str:
        """The number the table shows: the id, or for a derived row the completing read's id (``12.2`` for the
        second of several messages that ended in read 12)."""
        f = self.frame(row)
        if f is None:
            return str(self.ids[row])
        mid = self.ids[f.sources[-1]]
        return f"{mid}.{f.index + 1}" if f.count > 1 else str(mid)

    def conn_of(self, row: int) -> int:
        return self.conn_ids[self.real_row(row)]

    def dir_code(self, row: int) -> int:
        return self.dirs[self.real_row(row)]

    def seq_of(self, row: int) -> int:
        return self.seqs[self.real_row(row)]

    def arrival(self, row: int) -> int:
        return self.arrivals[self.real_row(row)]

    def size(self, row: int) -> int:
        f = self.frame(row)
        return self.sizes[row] if f is None else f.size

    def direction(self, row: int) -> Direction:
        return Direction(self.dirs[self.real_row(row)])

    def state(self, row: int) -> MessageState:
        return STATES[self.states[self.real_row(row)]]

    def origin(self, row: int) -> Origin:
        return ORIGINS[self.origins[self.real_row(row)]]

    def release_ns(self, row: int) -> int | None:
        r = self.releases[self.real_row(row)]
        return None if r == NO_TIME else r

    def added_delay_ns(self, row: int) -> int | None:
        row = self.real_row(row)
        r = self.releases[row]
        return None if r == NO_TIME else r - self.arrivals[row]

    def delays(self, row: int) -> tuple[tuple[DelayReason, int], ...]:
        return self._delays.get(self.real_row(row), ())

    def payload(self, row: int) -> bytes:
        f = self.frame(row)
        if f is None:
            return self._payloads[row]
        p = self._payloads
        src = f.sources
        if len(src) == 1:
            return p[src[0]][f.start:f.end]
        if self.payload_evicted(row):
            return b""
        return b"".join([p[src[0]][f.start:], *(p[r] for r in src[1:-1]), p[src[-1]][:f.end]])

    def payload_evicted(self, row: int) -> bool:
        f = self.frame(row)
        if f is not None:
            return any(self.payload_evicted(r) for r in f.sources)
        return row < self._evicted_upto and self.sizes[row] > 0 and not self._payloads[row]

    def original_payload(self, row: int) -> bytes | None:
        """The bytes as captured, when the user edited the message before forwarding it."""
        return self._originals.get(row)

    def note(self, row: int) -> str:
        """Why a datagram was dropped, or what was done to it (truncated, corrupted, sent ahead); "" for most."""
        return self._notes.get(self.real_row(row), "")

    def flips(self, row: int) -> tuple[int, ...]:
        """The bit positions (byte × 8 + bit, bit 0 the least significant) a corrupt impairment flipped."""
        return self._flips.get(self.real_row(row), ())

    def message(self, row: int) -> Message:
        """Row ``row`` as a ``proxy.model.Message`` (what filters and decoders take); built on demand. A derived
        row is its bytes with the id, seq, times and state of the read that completed it."""
        real = self.real_row(row)
        return Message(
            id=self.ids[real], conn_id=self.conn_ids[real], direction=Direction(self.dirs[real]), seq=self.seqs[real],
            data=self.payload(row), arrival_ns=self.arrivals[real], release_ns=self.release_ns(real),
            origin=ORIGINS[self.origins[real]], state=STATES[self.states[real]], delays=self._delays.get(real, ()),
            note=self._notes.get(real, ""), flips=self._flips.get(real, ()))

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

        The visible rows and the view are swapped in only at the end, so a reader never sees a half-built index;
        rows appended while the steps run are filtered too (a re-framing meanwhile starts the steps again).
        """
        self._predicate = predicate
        while True:
            generation = self._view_generation
            if predicate is None:
                n = len(self.ids)
                self.visible = array("I", range(n))
                self.view = self.visible
                if self._superseded:  # every row, each re-framed read replaced by its messages
                    self.view = array("I")
                    prev = 0
                    for r in sorted(self._superseded):
                        self.view.extend(range(prev, r))
                        self.view.extend(self._superseded[r])
                        prev = r + 1
                    self.view.extend(range(prev, n))
                yield 1.0
                return
            out = array("I")
            view = array("I")
            superseded = self._superseded
            start = 0
            restart = False
            while True:
                n = len(self.ids)
                if start >= n:
                    break
                end = min(n, start + chunk)
                if not superseded:
                    out.extend(r for r in range(start, end) if predicate(r))
                else:
                    for r in range(start, end):
                        if predicate(r):
                            out.append(r)
                            if r not in superseded:
                                view.append(r)
                        derived = superseded.get(r)
                        if derived:
                            view.extend(h for h in derived if predicate(h))
                start = end
                if start < len(self.ids):
                    yield start / max(1, len(self.ids))
                    if self._view_generation != generation:
                        restart = True
                        break
            if restart:
                continue
            self.visible = out
            self.view = view if superseded else out
            yield 1.0
            return

    def visible_position(self, row: int) -> int | None:
        """Where ``row`` sits in the view, or None if it is filtered out. A re-framed read is where the first
        message holding its bytes is."""
        v = self.view
        if v is self.visible:
            i = bisect.bisect_left(v, row)
            return i if i < len(v) and v[i] == row else None
        row = self._frame_of.get(row, row)
        key = self._key
        i = bisect.bisect_left(v, key(row), key=key)
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

"""Per-message-type statistics, throughput series, and :class:`Analysis`, the driver that feeds every timeline
computation from the store.

Role: :class:`DatagramStats` counts, per UDP flow direction, what the network model did to the datagrams (lost,
dropped, duplicated, sent ahead, corrupted), measured from the records, to set beside the configured values.
:class:`TypeStats` groups messages by a decoded key (auto: JSON/msgpack ``type``/``command``, the pickle's
class, the first struct field, the first word of text; or a :class:`~inspector.timeline.pairing.KeySpec` the user
picks) and gives count, rate (the tick rate: ``(count - 1) / (last - first)``), mean and max size, bytes/s, and a
CSV export. :class:`Throughput` bins messages and bytes per connection and direction. :class:`Analysis` walks the
store's new rows in order (with a time budget per call, so a flood never blocks the GUI), decodes each row at most
once, and hands it to the pairer, the statistics, the throughput bins and the annotator. It notices a cleared
store and starts over.
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; GUI thread (the timeline dock's refresh timer) or tests.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from typing import Final

from inspector.decode import DecoderRegistry, PickleObject, View, default_registry
from inspector.store import MessageStore
from inspector.timeline.annotations import Annotator
from inspector.timeline.pairing import KeySpec, Pairer, PairingRule, ViewFn, key_text
from proxy.model import Direction, MessageState, Origin

__all__ = [
    "BIN_NS",
    "Analysis",
    "DatagramCounts",
    "DatagramStats",
    "GroupRow",
    "Throughput",
    "TypeStats",
    "auto_type_key",
    "rows_to_csv",
]

TYPE_FIELDS: Final = ("type", "command", "cmd", "kind", "event", "action", "op", "msg", "t")
"""Map keys that name a message's type, tried in this order (JSON and msgpack)."""
BIN_NS: Final = 250_000_000
"""Throughput bin width (a quarter second)."""
CSV_HEADER: Final = ("direction", "type", "count", "rate_hz", "mean_size", "max_size", "bytes_per_s")


def auto_type_key(view: View, data: bytes) -> str:
    """The group a message belongs to when the user has not picked a key."""
    dec = view.decoder
    if view.error is not None:
        return f"{dec} (error)"
    first = view.values[0] if view.values else None
    if dec in ("json", "msgpack"):
        if isinstance(first, dict):
            for k in TYPE_FIELDS:
                v = first.get(k, first.get(k.encode(), None)) if dec == "msgpack" else first.get(k)
                if v is not None and not isinstance(v, dict | list):
                    return f"{dec} {k}={key_text(v)}"
            return f"{dec} {{{', '.join(sorted(key_text(k) for k in first)[:3])}}}"
        return f"{dec} {type(first).__name__}"
    if dec == "pickle":
        return f"pickle {first.class_name}" if isinstance(first, PickleObject) else f"pickle {type(first).__name__}"
    if dec == "struct":
        if isinstance(first, dict) and first:
            k, v = next(iter(first.items()))
            return f"struct {k}={key_text(v)}"
        return "struct"
    if dec == "text":
        words = data[:64].decode("utf-8", "replace").split(None, 1)
        return f"text {words[0][:24]}" if words else "text (blank)"
    return f"{dec} ({len(data)} B)" if len(data) <= 8 else dec


@dataclass(slots=True)
class _Group:
    count: int = 0
    bytes: int = 0
    max_size: int = 0
    first_ns: int = 0
    last_ns: int = 0

    def add(self, size: int, t: int) -> None:
        if self.count == 0:
            self.first_ns = t
        self.count += 1
        self.bytes += size
        self.max_size = max(self.max_size, size)
        self.first_ns = min(self.first_ns, t)
        self.last_ns = max(self.last_ns, t)

    def merge(self, other: _Group) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.first_ns, self.last_ns = other.first_ns, other.last_ns
        self.count += other.count
        self.bytes += other.bytes
        self.max_size = max(self.max_size, other.max_size)
        self.first_ns = min(self.first_ns, other.first_ns)
        self.last_ns = max(self.last_ns, other.last_ns)


@dataclass(frozen=True, slots=True)
class GroupRow:
    direction: Direction
    key: str
    count: int
    rate_hz: float
    mean_size: float
    max_size: int
    bytes_per_s: float
    total_bytes: int


@dataclass
class TypeStats:
    key: KeySpec | None = None
    """None: :func:`auto_type_key`; else messages without this key are grouped as "(no key)"."""
    groups: dict[tuple[int, int, str], _Group] = field(default_factory=dict)
    """(connection, direction, key) -> counters."""

    def feed(self, store: MessageStore, row: int, view_fn: ViewFn) -> None:
        data = store.payload(row)
        if self.key is None:
            k = auto_type_key(view_fn(), data)
        else:
            k = self.key.extract(data, view_fn) or "(no key)"
            k = f"{self.key.text}={k}" if k != "(no key)" else k
        g = self.groups.get((store.conn_ids[row], store.dirs[row], k))
        if g is None:
            g = self.groups[(store.conn_ids[row], store.dirs[row], k)] = _Group()
        g.add(store.sizes[row], store.arrivals[row])

    def rows(self, conn_id: int | None = None) -> list[GroupRow]:
        """One row per (direction, key), for one connection or all; busiest first."""
        merged: dict[tuple[int, str], _Group] = {}
        for (c, d, k), g in self.groups.items():
            if conn_id is None or c == conn_id:
                merged.setdefault((d, k), _Group()).merge(g)
        out = []
        for (d, k), g in merged.items():
            span = (g.last_ns - g.first_ns) / 1e9
            rate = (g.count - 1) / span if g.count > 1 and span > 0 else 0.0
            mean = g.bytes / g.count if g.count else 0.0
            out.append(GroupRow(Direction(d), k, g.count, rate, mean, g.max_size, mean * rate, g.bytes))
        out.sort(key=lambda r: (-r.count, r.direction, r.key))
        return out


def rows_to_csv(rows: list[GroupRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow((r.direction.label, r.key, r.count, f"{r.rate_hz:.3f}", f"{r.mean_size:.1f}", r.max_size,
                    f"{r.bytes_per_s:.1f}"))
    return buf.getvalue()


@dataclass
class Throughput:
    """Messages and bytes per :data:`BIN_NS` bin, per (connection, direction)."""

    bins: dict[tuple[int, int], dict[int, list[int]]] = field(default_factory=dict)

    def feed(self, conn: int, d: int, size: int, t: int) -> None:
        lane = self.bins.get((conn, d))
        if lane is None:
            lane = self.bins[(conn, d)] = {}
        b = lane.get(t // BIN_NS)
        if b is None:
            lane[t // BIN_NS] = [1, size]
        else:
            b[0] += 1
            b[1] += size

    def series(self, d: Direction, conn_id: int | None = None) -> tuple[list[int], list[float], list[float]]:
        """(bin start ns, messages/s, bytes/s), bins in time order, empty bins between filled ones as zeros."""
        merged: dict[int, list[int]] = {}
        for (c, dd), lane in self.bins.items():
            if dd != d or (conn_id is not None and c != conn_id):
                continue
            for k, (n, b) in lane.items():
                m = merged.get(k)
                if m is None:
                    merged[k] = [n, b]
                else:
                    m[0] += n
                    m[1] += b
        if not merged:
            return [], [], []
        lo, hi = min(merged), max(merged)
        per_s = 1e9 / BIN_NS
        ts, msgs, byts = [], [], []
        for k in range(lo, hi + 1):
            n, b = merged.get(k, (0, 0))
            ts.append(k * BIN_NS)
            msgs.append(n * per_s)
            byts.append(b * per_s)
        return ts, msgs, byts


class _RowView:
    """Decodes one row at most once, on demand."""

    __slots__ = ("registry", "row", "store", "view")

    def __init__(self, store: MessageStore, registry: DecoderRegistry, row: int) -> None:
        self.store, self.registry, self.row = store, registry, row
        self.view: View | None = None

    def __call__(self) -> View:
        if self.view is None:
            self.view = self.registry.decode_message(self.store.message(self.row), detail=False)
        return self.view



@dataclass(slots=True)
class DatagramCounts:
    """One direction of UDP traffic, as measured: each datagram that arrived counted once, copies apart."""

    datagrams: int = 0
    """Datagrams that arrived from their sender (copies, injections and replays not counted)."""
    lost: int = 0
    """Lost to the loss models (random, burst): their rows say ``lost: ...``."""
    dropped: int = 0
    """Dropped for another reason: MTU, a full bandwidth queue, a rule, the user, a wait cap."""
    duplicates: int = 0
    """Copies made (origin duplicate)."""
    reordered: int = 0
    """Sent ahead of the datagrams before them (netem's reorder)."""
    corrupted: int = 0
    """Delivered with flipped bits."""

    def pct(self, n: int) -> float:
        """``n`` as a percentage of the datagrams that arrived (0 before any)."""
        return 100.0 * n / self.datagrams if self.datagrams else 0.0


class DatagramStats:
    """What the UDP impairments did, measured per direction over every flow (``total``) and per flow (``flows``),
    from each datagram's first record: its state, origin, note and flipped bits. A held datagram the user drops
    later is counted as it first arrived (held, not dropped)."""

    def __init__(self) -> None:
        self.total: dict[Direction, DatagramCounts] = {d: DatagramCounts() for d in Direction}
        self.flows: dict[tuple[int, Direction], DatagramCounts] = {}
        self._udp: dict[int, bool] = {}
        self.bins: dict[tuple[int | None, Direction], dict[int, list[int]]] = {}
        """(flow or None for all, direction) -> time bin (``BIN_NS``) -> [datagrams, lost, duplicated, sent ahead]:
        what the timeline plots over time."""

    def series(self, conn_id: int | None, d: Direction, window_bins: int = 8
               ) -> tuple[list[float], list[float], list[float], list[float]]:
        """Bin start times (ns) and the lost, duplicated and sent-ahead percentages of the datagrams that arrived
        in the ``window_bins`` bins up to each (2 s by default): rates a learner can set beside the configured
        ones, steady enough to read at a few datagrams a second."""
        bins = self.bins.get((conn_id, d))
        if not bins:
            return [], [], [], []
        first, last = min(bins), max(bins)
        xs: list[float] = []
        lost: list[float] = []
        dup: list[float] = []
        ahead: list[float] = []
        window: list[list[int]] = []
        sums = [0, 0, 0, 0]
        for b in range(first, last + 1):
            counts = bins.get(b, [0, 0, 0, 0])
            window.append(counts)
            for i in range(4):
                sums[i] += counts[i]
            if len(window) > window_bins:
                old = window.pop(0)
                for i in range(4):
                    sums[i] -= old[i]
            xs.append(float(b * BIN_NS))
            n = sums[0]
            lost.append(100.0 * sums[1] / n if n else float("nan"))
            dup.append(100.0 * sums[2] / n if n else float("nan"))
            ahead.append(100.0 * sums[3] / n if n else float("nan"))
        return xs, lost, dup, ahead

    def feed(self, s: MessageStore, row: int) -> bool:
        """Count ``row`` if it is a datagram; True if it was."""
        conn = s.conn_ids[row]
        udp = self._udp.get(conn)
        if udp is None:
            c = s.connections.get(conn)
            if c is None:
                return False
            udp = self._udp[conn] = c.is_udp
        if not udp:
            return False
        d = s.direction(row)
        key = (conn, d)
        lane = self.flows.get(key)
        if lane is None:
            lane = self.flows[key] = DatagramCounts()
        before = (lane.datagrams, lane.lost, lane.duplicates, lane.reordered)
        for counts in (lane, self.total[d]):
            _count_datagram(counts, s, row)
        delta = (lane.datagrams - before[0], lane.lost - before[1], lane.duplicates - before[2],
                 lane.reordered - before[3])
        if any(delta):
            b = s.arrivals[row] // BIN_NS
            scope: int | None
            for scope in (conn, None):
                per = self.bins.get((scope, d))
                if per is None:
                    per = self.bins[(scope, d)] = {}
                binned = per.get(b)
                if binned is None:
                    binned = per[b] = [0, 0, 0, 0]
                for i in range(4):
                    binned[i] += delta[i]
        return True


def _count_datagram(counts: DatagramCounts, s: MessageStore, row: int) -> None:
    origin = s.origin(row)
    if origin is Origin.DUPLICATE:
        counts.duplicates += 1
        return
    if origin is not Origin.LIVE:
        return
    counts.datagrams += 1
    note = s.note(row)
    if s.state(row) is MessageState.DROPPED:
        if note.startswith("lost:"):
            counts.lost += 1
        else:
            counts.dropped += 1
        return
    if "sent ahead" in note:
        counts.reordered += 1
    if s.flips(row):
        counts.corrupted += 1


class Analysis:
    """Feeds the store's rows to the pairer, the statistics, the throughput bins and the annotator."""

    def __init__(self, store: MessageStore, registry: DecoderRegistry | None = None,
                 rule: PairingRule | None = None, stats_key: KeySpec | None = None) -> None:
        self.store = store
        self.registry = registry or default_registry()
        self.rule = rule or PairingRule()
        self.stats_key = stats_key
        self.generation = 0
        """Bumped whenever everything is recomputed (cleared store, new rule): views must redraw from scratch."""
        self._reset()

    def _reset(self) -> None:
        self.pairer = Pairer(self.rule)
        self.stats = TypeStats(self.stats_key)
        self.throughput = Throughput()
        self.annotator = Annotator()
        self.datagrams = DatagramStats()
        self.next_row = 0
        self._ids = self.store.ids
        self.generation += 1

    def set_rule(self, rule: PairingRule) -> None:
        self.rule = rule
        self._reset()

    def set_stats_key(self, key: KeySpec | None) -> None:
        self.stats_key = key
        self._reset()

    @property
    def pending(self) -> int:
        """Rows not looked at yet."""
        return max(0, len(self.store) - self.next_row) if self.store.ids is self._ids else len(self.store)

    def update(self, budget_s: float = 0.010) -> bool:
        """Process new rows for at most ``budget_s`` seconds; True if anything changed."""
        s = self.store
        if s.ids is not self._ids or len(s) < self.next_row:  # the store was cleared
            self._reset()
        settled = self.pairer.settle(s)
        n = len(s)
        if self.next_row >= n:
            return settled > 0
        deadline = time.perf_counter() + budget_s
        pairer, stats, tp, ann, reg = self.pairer, self.stats, self.throughput, self.annotator, self.registry
        dg = self.datagrams
        row = self.next_row
        while row < n:
            rv = _RowView(s, reg, row)
            pairer.feed(s, row, rv)
            stats.feed(s, row, rv)
            tp.feed(s.conn_ids[row], s.dirs[row], s.sizes[row], s.arrivals[row])
            ann.feed(s, row, rv)
            dg.feed(s, row)
            row += 1
            if not row & 15 and time.perf_counter() > deadline:
                break
        self.next_row = row
        return True

    def run_to_end(self) -> None:
        """Process everything now (tests, exports)."""
        while self.update(budget_s=1.0) and self.pending:
            pass

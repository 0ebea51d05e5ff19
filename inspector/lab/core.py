"""The lab's computation: per connection, the input-to-acknowledgement delay, inputs in flight, snapshot intervals
and corrections, fed one decoded message at a time.

Role: :class:`LabTracker` takes each decoded message with its times (engine clock, ns) and follows what the
*client* lives through, on its side of the proxy:

- an input (a client → server message with a sequence number ``N``) counts from when it reached the proxy
  (``arrival``: the client's ``send``);
- a state (a server → client message with an acknowledgement, tick or time) counts from when the proxy
  delivered it (``release``: what the client's ``recv`` sees), so states are applied in release order, once no
  earlier input can still come (:meth:`LabTracker.advance`).

From these: **input-to-ack delay** of ``N`` = release of the first state with ``ack >= N`` - arrival of ``N``
(with the part sockscope added: the input's recorded delay plus that state's); **inputs in flight** = inputs
sent whose sequence is above the latest acknowledgement the client has received (sampled at every input and
every acknowledgement); **snapshot interval** = the gap between two consecutive states of a connection as the
client receives them; **correction** of ``N`` = the distance between the position the client predicted with
input ``N`` and the position in the state whose ``ack == N``.

Odd values are counted in :attr:`LabTracker.problems` and skipped, never raised: a sequence number that is not
a whole number, a position that is not 2-3 finite numbers, an acknowledgement that goes back. Sequence numbers
that wrap around (255 -> 0 in a byte, 65535 -> 0 in 16 bits) are unwrapped (:class:`SeqSpace`).

Bounded: each message costs O(1) amortised (a heap push/pop per state); the plotted series keep the newest
:data:`SERIES_CAP` points per connection (:class:`Series`); the session's figures are :class:`Digest` s (exact up
to :data:`EXACT_CAP` values, then a log histogram with 1 % buckets); inputs waiting for an acknowledgement are
capped at :data:`PENDING_MAX` per connection; only the :data:`LIVE_CONNS` connections heard from most recently keep
their series (every connection keeps its figures).
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; one thread (the window's GUI thread, a test, a plugin).
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from inspector.fields import MISSING
from inspector.lab.hints import Hints, MessageType, as_count, as_point, as_time
from inspector.lab.report import Distribution, Interpolation
from proxy.model import Direction

__all__ = [
    "EXACT_CAP",
    "HIST_BINS",
    "LIVE_CONNS",
    "PENDING_MAX",
    "SERIES_CAP",
    "WINDOW",
    "ConnLab",
    "Digest",
    "LabTracker",
    "SeqSpace",
    "Series",
    "WindowHist",
]

SERIES_CAP: Final = 20_000
PENDING_MAX: Final = 65_536
EXACT_CAP: Final = 50_000
LIVE_CONNS: Final = 32
HIST_BINS: Final = 1000
"""Snapshot intervals are counted in 1 ms bins up to this many ms (longer ones in the last bin)."""
WINDOW: Final = 600
"""The snapshot-interval histogram and its percentiles are over this many latest intervals per connection
(20 s at 30 states a second): moving the jitter slider shows in the histogram within seconds."""
RATE_WINDOW: Final = 64
MS: Final = 1e6


class Series:
    """Points over time, capped at :data:`SERIES_CAP` (the oldest quarter is dropped when full).

    ``t``: engine time (ns); ``y``: the value; ``extra``: a second value (the part sockscope added, the input's
    sequence); ``rows``: the store row a click selects (-1: none). ``added`` counts every point ever added, so a
    view redraws only when it grew."""

    __slots__ = ("added", "cap", "extra", "rows", "t", "y")

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap or SERIES_CAP
        self.t = array("q")
        self.y = array("d")
        self.extra = array("d")
        self.rows = array("q")
        self.added = 0

    def add(self, t: int, y: float, extra: float = math.nan, row: int = -1) -> None:
        if len(self.t) >= self.cap:
            cut = self.cap // 4
            for a in (self.t, self.y, self.extra, self.rows):
                del a[:cut]
        self.t.append(t)
        self.y.append(y)
        self.extra.append(extra)
        self.rows.append(row)
        self.added += 1

    def __len__(self) -> int:
        return len(self.t)

    def clear(self) -> None:
        for a in (self.t, self.y, self.extra, self.rows):
            del a[:]


class Digest:
    """Count, mean, min, max and percentiles of a quantity over a whole session, in bounded memory: exact values
    up to :data:`EXACT_CAP`, then buckets 1 % wide (percentiles within 1 %; min and max stay exact)."""

    __slots__ = ("_bins", "_exact", "count", "hi", "lo", "total")
    _BASE: Final = 0.001
    _STEP: Final = math.log(1.01)

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.lo = math.inf
        self.hi = -math.inf
        self._exact: array[float] | None = array("d")
        self._bins: Counter[int] | None = None

    def add(self, v: float) -> None:
        v = max(0.0, v)
        self.count += 1
        self.total += v
        self.lo = min(self.lo, v)
        self.hi = max(self.hi, v)
        if self._exact is not None:
            self._exact.append(v)
            if len(self._exact) > EXACT_CAP:
                self._bins = Counter(self._bucket(x) for x in self._exact)
                self._exact = None
        else:
            assert self._bins is not None
            self._bins[self._bucket(v)] += 1

    def merge(self, other: Digest) -> None:
        """Add ``other``'s values (for the figures over every connection)."""
        if not other.count:
            return
        if other._exact is not None and self._exact is not None and \
                len(self._exact) + len(other._exact) <= EXACT_CAP:
            self._exact.extend(other._exact)
        else:
            if self._bins is None:
                assert self._exact is not None
                self._bins = Counter(self._bucket(x) for x in self._exact)
                self._exact = None
            if other._exact is not None:
                self._bins.update(self._bucket(x) for x in other._exact)
            else:
                assert other._bins is not None
                self._bins.update(other._bins)
        self.count += other.count
        self.total += other.total
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)

    def _bucket(self, v: float) -> int:
        return 0 if v < self._BASE else int(math.log(v / self._BASE) / self._STEP) + 1

    def _value(self, b: int) -> float:
        return 0.0 if b == 0 else self._BASE * math.exp((b - 0.5) * self._STEP)

    def quantile(self, q: float) -> float:
        """The value below which a share ``q`` of the values lie (nearest rank); NaN when empty."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q * self.count))
        if self._exact is not None:
            return sorted(self._exact)[rank - 1]
        assert self._bins is not None
        seen = 0
        for b in sorted(self._bins):
            seen += self._bins[b]
            if seen >= rank:
                return min(self.hi, max(self.lo, self._value(b)))
        return self.hi

    def distribution(self) -> Distribution:
        if not self.count:
            return Distribution()
        if self._exact is not None:
            s = sorted(self._exact)

            def q(p: float) -> float:
                return s[max(1, math.ceil(p * len(s))) - 1]
            return Distribution(self.count, self.total / self.count, self.lo, q(0.5), q(0.95), q(0.99), self.hi)
        return Distribution(self.count, self.total / self.count, self.lo, self.quantile(0.5), self.quantile(0.95),
                            self.quantile(0.99), self.hi)


class WindowHist:
    """The latest :data:`WINDOW` snapshot intervals in 1 ms bins: a histogram to draw and percentiles that follow
    the conditions as they change (O(1) per interval, O(:data:`HIST_BINS`) per query)."""

    __slots__ = ("counts", "recent")

    def __init__(self) -> None:
        self.counts = array("i", bytes(4 * (HIST_BINS + 1)))
        self.recent: deque[int] = deque()

    def add(self, ms: float) -> None:
        b = min(HIST_BINS, max(0, math.ceil(ms - 1e-9)))  # bin b holds gaps in (b - 1, b] ms
        self.counts[b] += 1
        self.recent.append(b)
        if len(self.recent) > WINDOW:
            self.counts[self.recent.popleft()] -= 1

    def __len__(self) -> int:
        return len(self.recent)


def quantile_of_bins(counts: array[int] | list[int], q: float) -> float:
    """Nearest-rank percentile of 1 ms bins (bin b: gaps in (b - 1, b] ms), as the bin's upper edge: a gap of
    49.3 ms is covered by 50 ms."""
    n = sum(counts)
    if not n:
        return math.nan
    rank = max(1, math.ceil(q * n))
    seen = 0
    for b, c in enumerate(counts):
        seen += c
        if seen >= rank:
            return float(b)
    return float(len(counts) - 1)


def interpolation_advice(counts: array[int] | list[int]) -> Interpolation:
    """Valve's rule of thumb (two snapshot intervals: one lost snapshot never starves the renderer) beside what
    covers the measured gaps (p95, p99); the recommendation is the larger of two intervals and the p99 gap."""
    n = sum(counts)
    if not n:
        return Interpolation()
    median = quantile_of_bins(counts, 0.5)
    p95, p99 = quantile_of_bins(counts, 0.95), quantile_of_bins(counts, 0.99)
    return Interpolation(n, median, 2 * median, p95, p99, max(2 * median, p99))


class SeqSpace:
    """Unwraps a client's input sequence numbers, and the server's acknowledgements of them, onto one growing
    line: a number that falls by more than half the range its values have used (8, 16, 32 or 63 bits) wrapped."""

    __slots__ = ("epoch", "last", "modulus")

    def __init__(self) -> None:
        self.epoch = 0
        self.last: int | None = None
        self.modulus = 1 << 8

    def _grow(self, raw: int) -> None:
        while raw >= self.modulus and self.modulus < 1 << 63:
            self.modulus = 1 << {8: 16, 16: 32, 32: 63}[self.modulus.bit_length() - 1]

    def input(self, raw: int) -> int:
        self._grow(raw)
        last = self.last
        if last is not None and raw < last and last - raw > self.modulus // 2:
            self.epoch += self.modulus
        self.last = raw
        return self.epoch + raw

    def ack(self, raw: int) -> int:
        """``raw`` unwrapped to the value nearest the latest input's (an acknowledgement trails its inputs)."""
        self._grow(raw)
        if self.last is None:
            return raw
        ref = self.epoch + self.last
        m = self.modulus
        return min((self.epoch + raw + k * m for k in (-1, 0, 1) if self.epoch + raw + k * m >= 0),
                   key=lambda v: abs(v - ref))


@dataclass(slots=True)
class _Input:
    seq: int
    arrival: int
    release: int | None
    row: int
    predicted: tuple[float, ...] | None


@dataclass(slots=True)
class _State:
    release: int | None
    arrival: int
    row: int
    ack: int | None
    pos: tuple[float, ...] | None


@dataclass
class ConnLab:
    """One connection's lab: what its client lives through. Series for the plots, digests for the report."""

    conn_id: int
    seqs: SeqSpace = field(default_factory=SeqSpace)
    pending: deque[_Input] = field(default_factory=deque)
    last_ack: int | None = None
    last_input: int | None = None
    heap: list[tuple[int, int, _State]] = field(default_factory=list)
    unsettled: deque[_State] = field(default_factory=deque)
    """States not released yet when seen (scheduled, held, frozen), in arrival order."""
    last_state_release: int | None = None
    last_time_ns: int = 0
    delay: Series = field(default_factory=Series)
    """x: the input's arrival; y: input-to-ack delay (ms); extra: the part sockscope added (ms); row: the state."""
    in_flight: Series = field(default_factory=Series)
    corrections: Series = field(default_factory=Series)
    """x: the state's release; y: px; extra: the input's sequence; row: the state."""
    intervals: Series = field(default_factory=Series)
    window: WindowHist = field(default_factory=WindowHist)
    delay_d: Digest = field(default_factory=Digest)
    added_d: Digest = field(default_factory=Digest)
    in_flight_d: Digest = field(default_factory=Digest)
    interval_d: Digest = field(default_factory=Digest)
    correction_d: Digest = field(default_factory=Digest)
    inputs: int = 0
    acked: int = 0
    states: int = 0
    max_in_flight: int = 0
    first_state: int | None = None
    input_times: deque[int] = field(default_factory=deque)
    has_series: bool = True

    def input_interval_ms(self) -> float:
        """Median gap between the latest inputs (ms), NaN with fewer than two."""
        t = self.input_times
        if len(t) < 2:
            return math.nan
        gaps = sorted(b - a for a, b in zip(t, list(t)[1:], strict=False))
        return gaps[len(gaps) // 2] / MS

    def drop_series(self) -> None:
        for s in (self.delay, self.in_flight, self.corrections, self.intervals):
            s.clear()
        self.has_series = False


ReleaseOf = Callable[[int], int | None]
"""Looks up a row's release time later (an input that was held when it was first seen)."""


class LabTracker:
    """Feeds decoded messages to their connection's :class:`ConnLab` according to the :class:`Hints`."""

    def __init__(self, hints: Hints, release_of: ReleaseOf | None = None) -> None:
        self.hints = hints
        self.release_of = release_of
        self.conns: dict[int, ConnLab] = {}
        self.problems: Counter[str] = Counter()
        """"c2s input: seq not a whole number" -> how many messages."""
        self.example_row: dict[MessageType, int] = {}
        """The latest store row of each message type (the window's field picker starts from it)."""
        self._n = 0
        self.work = 0
        """Messages and states handled (a deterministic cost measure for tests)."""

    def conn(self, conn_id: int) -> ConnLab:
        c = self.conns.get(conn_id)
        if c is None:
            c = self.conns[conn_id] = ConnLab(conn_id)
            live = [x for x in self.conns.values() if x.has_series]
            if len(live) > LIVE_CONNS:
                min(live, key=lambda x: x.last_time_ns).drop_series()
        return c

    def message(self, conn_id: int, direction: Direction, value: object, arrival_ns: int, release_ns: int | None,
                row: int = -1, *, from_client: bool = True) -> None:
        """One decoded message. ``release_ns`` None: not released yet (a server → client message must then wait:
        call this once it is). ``from_client`` False: a client → server message the client did not send (injected,
        replayed, a duplicate made by the proxy): not one of its inputs."""
        self.work += 1
        hints = self.hints
        mt = hints.type_of(direction, value)
        hints.observe(mt, value)
        self.example_row[mt] = row
        roles = hints.roles_for(mt)
        if not roles:
            return
        if direction is Direction.C2S:
            h = roles.get("seq")
            if h is None or not from_client:
                return
            assert h.field is not None
            seq = as_count(h.field.get(value))
            if isinstance(seq, str):
                self.problems[f"{mt.text}: {_label('seq', h.field.text)} {_why(seq, h.field.get(value))}"] += 1
                return
            predicted = self._point(mt.text, "predicted", roles.get("predicted"), value)
            c = self.conn(conn_id)
            self.advance_conn(c, arrival_ns)
            self._input(c, seq, arrival_ns, release_ns, row, predicted)
            return
        if not any(r in roles for r in ("ack", "tick", "time")):
            return
        ack: int | None = None
        h = roles.get("ack")
        if h is not None:
            assert h.field is not None
            raw = h.field.get(value)
            a = as_count(raw)
            if isinstance(a, str):
                self.problems[f"{mt.text}: {_label('ack', h.field.text)} {_why(a, raw)}"] += 1
            else:
                ack = a
        for role in ("tick", "time"):
            h = roles.get(role)
            if h is not None:
                assert h.field is not None
                raw = h.field.get(value)
                bad = as_count(raw) if role == "tick" else as_time(raw)
                if isinstance(bad, str):
                    self.problems[f"{mt.text}: {_label(role, h.field.text)} {_why(bad, raw)}"] += 1
        pos = self._point(mt.text, "pos", roles.get("pos"), value)
        c = self.conn(conn_id)
        state = _State(release_ns, arrival_ns, row, ack, pos)
        if release_ns is None or c.unsettled:
            c.unsettled.append(state)  # in arrival order: TCP delivers in that order (the head holds the rest)
            return
        self._n += 1
        heapq.heappush(c.heap, (release_ns, self._n, state))

    def settle(self, status: Callable[[int], tuple[bool, int | None]], only: ConnLab | None = None) -> int:
        """Move states that were not released when first seen onto the client's timeline once they are:
        ``status(row)`` says (final?, release ns or None if it never reached the client). Returns how many."""
        n = 0
        for c in (only,) if only is not None else self.conns.values():
            q = c.unsettled
            while q:
                s = q[0]
                done, release = (True, s.release) if s.release is not None else status(s.row)
                if not done:
                    break
                q.popleft()
                n += 1
                if release is not None:
                    s.release = release
                    self._n += 1
                    heapq.heappush(c.heap, (release, self._n, s))
        return n

    def _point(self, where: str, role: str, h: object, value: object) -> tuple[float, ...] | None:
        if h is None:
            return None
        f = h.field  # type: ignore[attr-defined]
        raw = f.get(value)
        p = as_point(raw)
        if isinstance(p, str):
            self.problems[f"{where}: {_label(role, f.text)} {_why(p, raw)}"] += 1
            return None
        return p

    # ------------------------------------------------------------------------------------------ inputs

    def _input(self, c: ConnLab, raw: int, arrival: int, release: int | None, row: int,
               predicted: tuple[float, ...] | None) -> None:
        seq = c.seqs.input(raw)
        c.last_time_ns = max(c.last_time_ns, arrival)
        if c.last_input is not None and seq <= c.last_input:
            if seq == c.last_input and c.pending and c.pending[-1].seq == seq:
                if predicted is not None and c.pending[-1].predicted is None:
                    c.pending[-1].predicted = predicted  # the prediction sent in a message of its own
                return
            self.problems[f"connection #{c.conn_id}: input sequence went back from {c.last_input} to {seq} "
                          "(inputs in flight start again)"] += 1
            c.pending.clear()
            c.last_ack = None
        c.last_input = seq
        c.inputs += 1
        c.input_times.append(arrival)
        if len(c.input_times) > RATE_WINDOW:
            c.input_times.popleft()
        if c.last_ack is not None and seq <= c.last_ack:
            self.problems[f"connection #{c.conn_id}: input acknowledged before it was sent"] += 1
            return
        c.pending.append(_Input(seq, arrival, release, row, predicted))
        if len(c.pending) > PENDING_MAX:
            c.pending.popleft()
            self.problems[f"connection #{c.conn_id}: more than {PENDING_MAX:,} inputs without an "
                          "acknowledgement (the oldest are forgotten)"] += 1
        self._sample_in_flight(c, arrival, sent=True)

    def _sample_in_flight(self, c: ConnLab, t: int, *, sent: bool) -> None:
        n = len(c.pending)
        c.max_in_flight = max(c.max_in_flight, n)
        if sent:  # the report's figure: how many were in flight when the client sent one (the learner's view)
            c.in_flight_d.add(n)
        if c.has_series:
            c.in_flight.add(t, n)

    # ------------------------------------------------------------------------------------------ states

    def advance(self, now_ns: int) -> None:
        """Apply the states the client has received by ``now_ns`` (every connection)."""
        for c in self.conns.values():
            if c.heap and c.heap[0][0] <= now_ns:
                self.advance_conn(c, now_ns)

    def advance_conn(self, c: ConnLab, now_ns: int) -> None:
        heap = c.heap
        while heap and heap[0][0] <= now_ns:
            self._state(c, heapq.heappop(heap)[2])

    def finish(self) -> None:
        """Apply every state still waiting (the end of a recorded session); one never released is left out."""
        for c in self.conns.values():
            c.unsettled.clear()
            while c.heap:
                self._state(c, heapq.heappop(c.heap)[2])

    def _state(self, c: ConnLab, s: _State) -> None:
        self.work += 1
        assert s.release is not None
        t = s.release
        c.last_time_ns = max(c.last_time_ns, t)
        c.states += 1
        if c.first_state is None:
            c.first_state = t
        if c.last_state_release is not None:
            gap = (t - c.last_state_release) / MS
            c.window.add(gap)
            c.interval_d.add(gap)
            if c.has_series:
                c.intervals.add(t, gap, row=s.row)
        c.last_state_release = t
        if s.ack is None:
            return
        ack = c.seqs.ack(s.ack)
        if c.last_ack is not None and ack <= c.last_ack:
            if ack < c.last_ack:
                self.problems[f"connection #{c.conn_id}: acknowledgement went back"] += 1
            return
        c.last_ack = ack
        state_added = (s.release - s.arrival) / MS
        last: _Input | None = None
        popped = False
        while c.pending and c.pending[0].seq <= ack:
            i = c.pending.popleft()
            popped = True
            rel = i.release
            if rel is None and self.release_of is not None and i.row >= 0:
                rel = self.release_of(i.row)
            added = state_added + ((rel - i.arrival) / MS if rel is not None else 0.0)
            delay = (t - i.arrival) / MS
            c.acked += 1
            c.delay_d.add(delay)
            c.added_d.add(added)
            if c.has_series:
                c.delay.add(i.arrival, delay, added, s.row)
            last = i
        if popped:
            self._sample_in_flight(c, t, sent=False)
        if last is not None and last.seq == ack and last.predicted is not None and s.pos is not None:
            a, b = last.predicted, s.pos
            px = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=False)))
            c.correction_d.add(px)
            if c.has_series:
                c.corrections.add(t, px, float(last.seq), s.row)

    def reset(self) -> None:
        self.conns.clear()
        self.problems.clear()


def _label(role: str, field: str) -> str:
    return role if field == role else f"{role} ({field})"


def _why(reason: str, raw: object) -> str:
    if raw is MISSING:
        return "missing"
    return reason


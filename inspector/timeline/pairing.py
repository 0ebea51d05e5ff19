"""Request/response pairing per connection, and what each round trip was made of.

Role: turns store rows into :class:`Pair` s (a client→server request and the server→client message that answers
it) and each pair into a :class:`RoundTrip`: the round-trip time seen from the client's side of the proxy, the part
sockscope injected (the recorded delays of both messages) and the rest (network and the peer's own time).

Two ways to pair, per connection:

- **auto**: a server→client message answers the *most recent* client→server message that the proxy had already
  released to the server when the answer arrived (a server cannot answer what it has not received). Older
  unanswered requests are given up on, so one unanswered message never shifts every later pair.
- **by key**: a :class:`KeySpec` picked from decoded fields (``json.id``, ``msgpack.seq``, ``pickle.seq``,
  ``struct.seq``) or a regular expression on the text (``ping (\\d+)`` / ``pong (\\d+)``; the first group is the key,
  or the whole match). A response pairs with the latest request of the same connection carrying the same key.
- **ENet** (auto, on a UDP flow whose datagrams decode as ENet): each reliable command (a reliable send, a
  fragment, a ping, a connect ...) pairs with the ACK the other side sends for it: same channel, the ACK's
  acknowledged reliable sequence number, and its echo of the sent time of the datagram that carried the command,
  so the copy that got through is the one paired, not a lost one before it. That is ENet's own reliable round trip,
  per channel (:attr:`Pair.channel`). A reliable command seen again in a later datagram of the same direction is a
  retransmission (ENet resends what was not acknowledged in time): :meth:`Pairer.enet_note` says so for the
  ladder and the detail pane, and says of a lost datagram which later one carried its commands again.

Times (all from the records, engine clock): ``rtt = response.release - request.arrival`` (what the client waits
between its ``send`` reaching the proxy and the answer leaving it), ``injected = (request.release -
request.arrival) + (response.release - response.arrival)``, ``network = rtt - injected = response.arrival -
request.release`` (proxy→server→proxy: the server's network and its own processing).

Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; used on the GUI thread by the timeline dock (and directly by tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from inspector.decode import PickleObject, View, render
from inspector.fields import MISSING, resolve
from inspector.store import NO_TIME, MessageStore
from proxy.model import DelayReason, Direction, MessageState
from proxy.userregex import RegexError, UserRegex, compile_user_regex

__all__ = [
    "DECODED_NAMESPACES",
    "KeySpec",
    "Pair",
    "Pairer",
    "PairingRule",
    "RoundTrip",
    "ViewFn",
    "round_trip",
]

DECODED_NAMESPACES: Final = ("json", "msgpack", "pickle", "struct", "text", "hex", "enet", "godot")
"""Decoder names a :class:`KeySpec` may start with (``json.id``)."""

PENDING_MAX: Final = 256
"""Unanswered requests remembered per connection (auto) or in all (by key) before the oldest are forgotten."""

ViewFn = Callable[[], View]
"""Returns the decoded view of the message being looked at (decoded at most once, on demand)."""

_FIELD_RE: Final = re.compile(r"^(?P<ns>[a-z_]+)((\.[A-Za-z_][\w-]*)|(\[-?\d+\])|(\.\d+))+$")
_SEG_RE: Final = re.compile(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\.(\d+)")


def key_text(value: object) -> str:
    """A decoded value as a short, stable key (bytes shown as text when they are text)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, PickleObject):
        return value.class_name
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:79] + "…"
    # Bounded: a decoded value can describe far more than its bytes (a pickle's memo: 2**40 nodes in 200 bytes).
    text, cut = render(value, 79)
    return text[:79] + "…" if cut or len(text) > 80 else text


@dataclass(frozen=True)
class KeySpec:
    """A key taken from each message: a decoded field (``json.id``) or a text pattern (``ping (\\d+)``)."""

    text: str
    namespace: str | None = None
    path: tuple[str | int, ...] = ()
    pattern: UserRegex | None = None

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        """Raises ``ValueError`` with a readable message when ``text`` is neither a field path nor a regex."""
        t = text.strip()
        if not t:
            raise ValueError("empty key")
        m = _FIELD_RE.match(t)
        if m is not None and m.group("ns") in DECODED_NAMESPACES:
            path: list[str | int] = []
            for seg in _SEG_RE.finditer(t, len(m.group("ns"))):
                name, idx, num = seg.groups()
                path.append(name if name is not None else int(idx if idx is not None else num))
            return cls(t, m.group("ns"), tuple(path))
        try:
            return cls(t, pattern=compile_user_regex(t, capture=True))
        except RegexError as e:
            raise ValueError(f"not a field (json.id) nor a valid pattern: {e}") from None

    @property
    def needs_view(self) -> bool:
        return self.namespace is not None

    def extract(self, data: bytes, view: ViewFn) -> str | None:
        """The key of one message, or None when it has none."""
        if self.pattern is not None:
            # RE2 (linear time) over at most 4 KiB: a pattern typed in the timeline runs on the GUI thread.
            group = self.pattern.first_group(data[:4096])
            return None if group is None else group.decode("utf-8", "replace")
        v = view()
        if v.error is not None or v.decoder != self.namespace:
            return None
        for root in v.values:
            found = resolve(root, self.path)
            if found is not MISSING:
                return key_text(found)
        return None


@dataclass(frozen=True)
class PairingRule:
    """Auto pairing (no keys), or one key for both directions, or one per direction."""

    c2s_key: KeySpec | None = None
    s2c_key: KeySpec | None = None

    @classmethod
    def parse(cls, c2s: str = "", s2c: str = "") -> PairingRule:
        """``parse()`` is auto; ``parse("json.id")`` keys both directions; ``parse("ping (\\d+)", "pong (\\d+)")``."""
        if not c2s.strip() and not s2c.strip():
            return cls()
        a = KeySpec.parse(c2s or s2c)
        b = KeySpec.parse(s2c) if s2c.strip() else a
        return cls(a, b)

    @property
    def auto(self) -> bool:
        return self.c2s_key is None or self.s2c_key is None

    def describe(self) -> str:
        if self.auto:
            return "auto (a request and the next answer)"
        assert self.c2s_key is not None and self.s2c_key is not None
        if self.c2s_key.text == self.s2c_key.text:
            return f"by key {self.c2s_key.text}"
        return f"by key {self.c2s_key.text} → {self.s2c_key.text}"


@dataclass(frozen=True, slots=True)
class Pair:
    conn_id: int
    request_row: int
    response_row: int
    key: str | None = None
    channel: int | None = None
    """For an ENet command and its acknowledgement: the ENet channel (255 for connect, ping and other control
    commands); None for every other pair."""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One pair's timing, in nanoseconds of the engine's monotonic clock."""

    pair: Pair
    sent_ns: int
    """When the request reached the proxy."""
    rtt_ns: int
    injected_ns: int
    network_ns: int
    injected_by: tuple[tuple[DelayReason, int], ...] = ()
    """The injected part split by reason (both messages' recorded delays, summed per reason)."""

    @property
    def rtt_ms(self) -> float:
        return self.rtt_ns / 1e6

    @property
    def injected_ms(self) -> float:
        return self.injected_ns / 1e6

    @property
    def network_ms(self) -> float:
        return self.network_ns / 1e6

    def describe(self) -> str:
        # a reason that added less than half a millisecond (a queue of 0.2 ms) is not worth a "queue 0"
        parts = ", ".join(f"{r.value} {ms}" for r, ns in self.injected_by if (ms := f"{ns / 1e6:.0f}") != "0")
        return (f"round trip {self.rtt_ms:.1f} ms = {self.injected_ms:.1f} ms added by sockscope"
                + (f" ({parts})" if parts else "") + f" + {self.network_ms:.1f} ms network and server")


_GONE: Final = frozenset({MessageState.DROPPED, MessageState.DISCARDED, MessageState.HELD})
_LOST: Final = frozenset({MessageState.DROPPED, MessageState.DISCARDED})


def _nth(n: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def round_trip(store: MessageStore, pair: Pair) -> RoundTrip | None:
    """The timing of ``pair``, or None while either message is unreleased (held) or never reached its peer."""
    q, r = pair.request_row, pair.response_row
    if store.state(q) in _GONE or store.state(r) in _GONE:
        return None
    q_rel, r_rel = store.releases[q], store.releases[r]
    if q_rel == NO_TIME or r_rel == NO_TIME:
        return None
    q_arr, r_arr = store.arrivals[q], store.arrivals[r]
    injected = (q_rel - q_arr) + (r_rel - r_arr)
    by: dict[DelayReason, int] = {}
    for reason, ns in (*store.delays(q), *store.delays(r)):
        by[reason] = by.get(reason, 0) + ns
    rtt = r_rel - q_arr
    return RoundTrip(pair, q_arr, rtt, injected, rtt - injected, tuple(by.items()))


@dataclass
class Pairer:
    """Pairs rows as they are fed (in store order) and keeps the round trips in arrival order of the request."""

    rule: PairingRule = field(default_factory=PairingRule)
    pairs: list[Pair] = field(default_factory=list)
    by_row: dict[int, int] = field(default_factory=dict)
    """Store row (request or response) -> index in :attr:`pairs`."""
    round_trips: list[RoundTrip] = field(default_factory=list)
    """Settled pairs (both messages released), in the order they settled."""
    _auto: dict[int, list[int]] = field(default_factory=dict)
    _keyed: dict[tuple[int, str], int] = field(default_factory=dict)
    _unsettled: list[int] = field(default_factory=list)
    _udp: dict[int, bool] = field(default_factory=dict)
    _sent: dict[tuple[int, int, int, int], list[tuple[int, int | None]]] = field(default_factory=dict)
    """ENet: (conn, direction, channel, reliable seq) -> its transmissions (row, header sent time), until acked."""
    _what: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    """ENet: the same keys -> how a pair names the command (``ch0 #5``, or ``ping #2`` on the control channel)."""
    notes: dict[int, str] = field(default_factory=dict)
    """ENet: rows that resent reliable commands, or whose commands were resent later (see :meth:`enet_note`)."""

    def feed(self, store: MessageStore, row: int, view: ViewFn) -> Pair | None:
        """Look at one new row; returns the pair it completes, if any (an ENet datagram may complete several:
        all are in :attr:`pairs`; the first is returned)."""
        conn = store.conn_ids[row]
        d = store.dirs[row]
        rule = self.rule
        if rule.auto and self._is_udp(store, conn):
            v = view()
            if v.decoder == "enet" and v.error is None:
                return self._enet(store, row, conn, d, v)
        if rule.auto:
            pending = self._auto.setdefault(conn, [])
            if d == Direction.C2S:
                pending.append(row)
                if len(pending) > PENDING_MAX:
                    del pending[: len(pending) - PENDING_MAX]
                return None
            arrival = store.arrivals[row]
            releases = store.releases
            for i in range(len(pending) - 1, -1, -1):
                rel = releases[pending[i]]
                if rel != NO_TIME and rel <= arrival:
                    q = pending[i]
                    del pending[: i + 1]
                    return self._add(store, Pair(conn, q, row))
            return None
        spec = rule.c2s_key if d == Direction.C2S else rule.s2c_key
        assert spec is not None
        key = spec.extract(store.payload(row), view)
        if key is None:
            return None
        if d == Direction.C2S:
            self._keyed.pop((conn, key), None)
            self._keyed[(conn, key)] = row
            if len(self._keyed) > PENDING_MAX * 64:
                self._keyed.pop(next(iter(self._keyed)))
            return None
        q_row = self._keyed.pop((conn, key), None)
        return None if q_row is None else self._add(store, Pair(conn, q_row, row, key))

    def _add(self, store: MessageStore, pair: Pair) -> Pair:
        i = len(self.pairs)
        self.pairs.append(pair)
        self.by_row.setdefault(pair.request_row, i)  # an ENet datagram can be in several pairs: the first is shown
        self.by_row.setdefault(pair.response_row, i)
        self._unsettled.append(i)
        self.settle(store)
        return pair

    def _is_udp(self, store: MessageStore, conn: int) -> bool:
        udp = self._udp.get(conn)
        if udp is None:
            c = store.connections.get(conn)
            udp = self._udp[conn] = c is not None and c.is_udp
        return udp

    def _enet(self, store: MessageStore, row: int, conn: int, d: int, v: View) -> Pair | None:
        """One ENet datagram: note its reliable commands (and whether they are resent), pair its acks."""
        first: Pair | None = None
        lost = store.state(row) in _LOST
        sent = self._sent
        other = d ^ 1
        for c in v.values:
            if not isinstance(c, dict):
                continue
            ch, seq = c.get("channel"), c.get("seq")
            if not isinstance(ch, int) or not isinstance(seq, int):
                continue
            if c.get("command") == "ack":
                if lost:  # never reached the sender of the command: ENet will resend it
                    continue
                acked = c.get("acked_seq")
                key = (conn, other, ch, acked if isinstance(acked, int) else seq)
                tx = sent.pop(key, None)
                what = self._what.pop(key, f"ch{ch} #{key[3]}")
                if not tx:
                    continue
                echo = c.get("acked_sent_time")
                q = next((r for r, t in reversed(tx) if t == echo), None)
                if q is None:  # no copy carried that sent time (the capture missed it): the last that got through
                    q = next((r for r, t in reversed(tx) if t is not None), tx[-1][0])
                pair = self._add(store, Pair(conn, q, row, what, ch))
                first = first or pair
            elif c.get("reliable") is True:
                key = (conn, d, ch, seq)
                tx = sent.get(key)
                if tx is None:
                    tx = sent[key] = []
                    self._what[key] = f"ch{ch} #{seq}" if ch != 255 else f"{c.get('command')} #{seq}"
                    if len(sent) > PENDING_MAX * 64:  # never acknowledged (the capture began late, the peer left)
                        self._what.pop(next(iter(sent)), None)
                        sent.pop(next(iter(sent)))
                elif len(tx) < 64:
                    prev = tx[-1][0]
                    what = f"ch{ch} #{seq}" if ch != 255 else f"{c.get('command')} #{seq}"
                    self._note(row, f"↻ resends {what} ({_nth(len(tx) + 1)} try)")
                    self._note(prev, f"{what} sent again in #{store.ids[row]}")
                t = c.get("sent_time")
                tx.append((row, None if lost or not isinstance(t, int) else t))  # a lost copy is never acked
        return first

    def _note(self, row: int, text: str) -> None:
        old = self.notes.get(row)
        if old is None:
            self.notes[row] = text
        elif text not in old and len(old) < 200:
            self.notes[row] = f"{old}; {text}"

    def enet_note(self, row: int) -> str | None:
        """For the ladder: what ENet's reliability did with this datagram (resent commands, or was resent)."""
        return self.notes.get(row)

    def settle(self, store: MessageStore) -> int:
        """Time the pairs whose messages have been released since; returns how many settled."""
        if not self._unsettled:
            return 0
        keep: list[int] = []
        n = 0
        for i in self._unsettled:
            p = self.pairs[i]
            rt = round_trip(store, p)
            if rt is not None:
                self.round_trips.append(rt)
                n += 1
            elif MessageState.HELD in (store.state(p.request_row), store.state(p.response_row)):
                keep.append(i)
        self._unsettled = keep
        return n

    def pair_of(self, row: int) -> Pair | None:
        i = self.by_row.get(row)
        return None if i is None else self.pairs[i]

    def round_trip_of(self, store: MessageStore, row: int) -> RoundTrip | None:
        p = self.pair_of(row)
        return None if p is None else round_trip(store, p)

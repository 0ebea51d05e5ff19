"""Teaching annotations: things about a message worth explaining to someone learning sockets.

Role: looks at store rows as they arrive (in store order) and marks the ones that show a lesson:

- ``coalesced``: one read (one message under ``raw`` framing) holds several application messages: several JSON
  values, msgpack objects, struct records or newline-terminated lines. "Your two ``send()`` calls arrived as one
  ``recv()``."
- ``split``: a JSON value, msgpack object, pickle or UTF-8 character that is incomplete at the end of one read and
  completed by the next read in the same direction. Both reads are marked.
- ``pickle``: the message is a pickle; unpickling it would run whatever it names.
- ``discarded``: the connection closed while this message was still held or scheduled, so it never arrived
  (``MessageUpdated`` with state DISCARDED; ``ConnectionClosed.discarded`` counts them).
- ``nagle``: Nagle's algorithm suspected: several small client→server writes coalesced into one read after a gap
  (the first small write goes at once, the next ones wait for its ACK, delayed ~40 ms on Linux and ~200 ms on
  Windows), or small client→server reads that keep arriving at ~40 ms / ~200 ms intervals with coalescing.

The stream's lessons (coalesced, split, Nagle) are about TCP: a UDP flow's datagrams are never marked with them (a
datagram is one message, as it was sent; an ENet datagram that looks like half a msgpack object is not one).
Each annotation links to a short page in ``docs/lessons/``. Detection is cheap (prefix-capped) and never runs
captured code: pickles are walked with ``pickletools.genops`` only.
Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: not thread-safe; GUI thread (the timeline dock) or tests.
"""

from __future__ import annotations

import codecs
import enum
import json
import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgpack

from inspector.store import MessageStore
from inspector.timeline.pairing import ViewFn
from proxy.model import Direction, MessageState

__all__ = [
    "LESSONS",
    "LESSONS_DIR",
    "Annotation",
    "Annotator",
    "Kind",
    "Lesson",
    "app_message_count",
    "incomplete_tail",
]

CHECK_MAX: Final = 256 << 10
"""Split detection looks at no more than this many bytes of a read."""
SMALL_WRITE: Final = 536
"""A "small" segment for Nagle's algorithm (less than a full segment; 536 is TCP's default MSS)."""
NAGLE_GAP_MIN_NS: Final = 20_000_000
NAGLE_INTERVALS_MS: Final = (40.0, 200.0)
NAGLE_TOLERANCE: Final = 0.2
NAGLE_RUN: Final = 4

LESSONS_DIR: Final = Path(__file__).resolve().parents[2] / "docs" / "lessons"


class Kind(enum.StrEnum):
    COALESCED = "coalesced"
    SPLIT = "split"
    PICKLE = "pickle"
    DISCARDED = "discarded"
    NAGLE = "nagle"


@dataclass(frozen=True)
class Lesson:
    badge: str
    """A few characters for the table row."""
    title: str
    explanation: str
    page: str
    """File name in ``docs/lessons/``."""

    @property
    def path(self) -> Path:
        return LESSONS_DIR / self.page


LESSONS: Final[dict[Kind, Lesson]] = {
    Kind.COALESCED: Lesson(
        "⧉ coalesced", "Several messages in one read",
        "Your separate send() calls arrived as one recv(). TCP is a byte stream, not a message stream: the "
        "receiver must split the bytes itself (newline, length prefix, or a self-delimiting format).",
        "coalescing.md"),
    Kind.SPLIT: Lesson(
        "✂ split", "One message split across reads",
        "This value did not fit in one recv(): it is incomplete here and completed by the next read. Keep a "
        "buffer and only decode whole messages.",
        "split-reads.md"),
    Kind.PICKLE: Lesson(
        "⚠ pickle", "A pickle on the wire",
        "Unpickling bytes from the network runs whatever code the sender names: anyone who can reach your "
        "port can take over your program. Use JSON or msgpack (sockscope shows pickles with a safe reader).",
        "pickle.md"),
    Kind.DISCARDED: Lesson(
        "✕ closed while held", "Connection closed with data still held",
        "The connection ended while this message was still held or delayed by sockscope, so the peer never got "
        "it. A close does not wait for data someone is still holding back.",
        "closed-with-held.md"),
    Kind.NAGLE: Lesson(
        "⏱ Nagle?", "Nagle's algorithm suspected",
        "Small writes were held back by the sender's TCP and then sent together, ~40 ms (Linux) or ~200 ms "
        "(Windows) later. For a game, set TCP_NODELAY on the client socket.",
        "nagle.md"),
}


@dataclass(frozen=True, slots=True)
class Annotation:
    kind: Kind
    row: int
    detail: str = ""
    """What was seen on this message (e.g. "3 JSON values", "completed by #18")."""

    @property
    def lesson(self) -> Lesson:
        return LESSONS[self.kind]

    def text(self) -> str:
        lesson = self.lesson
        return f"{lesson.title}" + (f" ({self.detail})" if self.detail else "") + f": {lesson.explanation}"


# ------------------------------------------------------------------------------------------------ detection helpers


def app_message_count(data: bytes, decoder: str, values: int, error: bool) -> tuple[int, str]:
    """How many application messages one read holds, and what they are ("JSON values", "lines" ...)."""
    if not error and values > 1:
        if decoder == "json":
            return values, "JSON values"
        if decoder == "msgpack":
            return values, "msgpack objects"
        if decoder == "struct":
            return values, "struct records"
    if decoder == "text" and data.endswith(b"\n"):
        lines = sum(1 for line in data[:CHECK_MAX].split(b"\n")[:-1] if line.strip())
        if lines > 1:
            return lines, "lines"
    return 1, ""


_MSGPACK_CONTAINER: Final = frozenset(range(0x80, 0xA0)) | frozenset(range(0xDC, 0xE0))
_WS: Final = b" \t\r\n"


def _json_tail(data: bytes) -> int | None:
    """Offset of an incomplete trailing JSON value (after zero or more complete ones), else None."""
    text = data.decode("latin-1")  # one char per byte: offsets stay byte offsets; structure is ASCII
    dec = json.JSONDecoder()
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return None
        try:
            _, pos = dec.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            return pos if text[pos] in "{[" else None


def _msgpack_tail(data: bytes) -> int | None:
    if not data or data[0] not in _MSGPACK_CONTAINER:
        return None
    up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=CHECK_MAX * 2)
    up.feed(data)
    pos = 0
    try:
        for _ in up:
            pos = up.tell()
    except Exception:  # malformed: not msgpack after all
        return None
    if pos >= len(data) or data[pos] not in _MSGPACK_CONTAINER:
        return None
    return pos


def _pickle_end(data: bytes) -> int | None:
    """Offset just past a pickle's STOP opcode, or None when ``data`` ends before it (or is not a pickle)."""
    try:
        for op, _arg, pos in pickletools.genops(data):
            if op.name == "STOP":
                return (pos or 0) + 1
    except Exception:
        return None
    return None


def _pickle_tail(data: bytes) -> int | None:
    if len(data) < 2 or data[0] != 0x80 or not 2 <= data[1] <= 5:
        return None
    return 0 if _pickle_end(data) is None else None


def _utf8_tail(data: bytes) -> int | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.start >= len(data) - 3:
            return e.start
    return None


_TAILS: Final = (("pickle", _pickle_tail), ("msgpack", _msgpack_tail), ("json", _json_tail), ("utf-8", _utf8_tail))
_KIND_NAMES: Final = {"pickle": "pickle", "msgpack": "msgpack object", "json": "JSON value",
                      "utf-8": "UTF-8 character"}


def incomplete_tail(data: bytes) -> tuple[str, int] | None:
    """(format, offset) of an incomplete value at the end of ``data``, or None."""
    data = data[:CHECK_MAX]
    for name, fn in _TAILS:
        off = fn(data)
        if off is not None:
            return name, off
    return None


def _completes(kind: str, tail: bytes, nxt: bytes) -> bool:
    """Does ``nxt`` complete the incomplete ``tail`` of the format ``kind``?"""
    nxt = nxt[:CHECK_MAX]
    both = tail + nxt
    if kind == "utf-8":
        dec = codecs.getincrementaldecoder("utf-8")()
        try:
            return bool(dec.decode(both[: len(tail) + 4], final=False))
        except UnicodeDecodeError:
            return False
    if kind == "pickle":
        end = _pickle_end(both)
        return end is not None and end > len(tail)
    if kind == "msgpack":
        up = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=CHECK_MAX * 4)
        up.feed(both)
        try:
            next(up)
        except Exception:
            return False
        return bool(up.tell() > len(tail))
    text = both.decode("latin-1")
    try:
        _, end = json.JSONDecoder().raw_decode(text, 0)
    except (json.JSONDecodeError, RecursionError):
        return False
    return end > len(tail)


# ------------------------------------------------------------------------------------------------ the annotator


@dataclass
class _Lane:
    tail: bytes = b""
    kind: str = ""
    row: int = -1


@dataclass
class _NagleState:
    last_arrival: int | None = None
    gaps: list[tuple[int, bool]] = field(default_factory=list)
    """Recent (gap ns, coalesced) of small client→server reads."""


@dataclass
class Annotator:
    """Feed rows in store order; ask :meth:`for_row`. State-based notes (discarded) are read live."""

    by_row: dict[int, list[Annotation]] = field(default_factory=dict)
    counts: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    _lanes: dict[tuple[int, int], _Lane] = field(default_factory=dict)
    _nagle: dict[int, _NagleState] = field(default_factory=dict)
    _udp: dict[int, bool] = field(default_factory=dict)

    def _add(self, kind: Kind, row: int, detail: str) -> None:
        notes = self.by_row.setdefault(row, [])
        if any(a.kind is kind for a in notes):
            return
        notes.append(Annotation(kind, row, detail))
        self.counts[kind] += 1

    def feed(self, store: MessageStore, row: int, view: ViewFn) -> None:
        data = store.payload(row)
        if not data:
            return
        conn, d = store.conn_ids[row], store.dirs[row]
        v = view()
        udp = self._udp.get(conn)
        if udp is None:
            c = store.connections.get(conn)
            udp = self._udp[conn] = c is not None and c.is_udp
        if udp:  # a datagram is one message, whole: the stream's lessons (coalesced, split, Nagle) do not apply
            if v.decoder == "pickle":
                self._add(Kind.PICKLE, row, "decoded safely; never unpickle it in your program")
            return
        count, what = app_message_count(data, v.decoder, len(v.values), v.error is not None)
        if count > 1:
            self._add(Kind.COALESCED, row, f"{count} {what} in one read")
        if v.decoder == "pickle":
            self._add(Kind.PICKLE, row, "decoded safely; never unpickle it in your program")
        self._split(store, row, conn, d, data)
        if d == Direction.C2S:
            self._nagle_check(store, row, conn, data, count > 1)

    def _split(self, store: MessageStore, row: int, conn: int, d: int, data: bytes) -> None:
        lane = self._lanes.setdefault((conn, d), _Lane())
        if lane.kind and _completes(lane.kind, lane.tail, data):
            name = _KIND_NAMES[lane.kind]
            self._add(Kind.SPLIT, lane.row, f"a {name} continues in #{store.ids[row]}")
            self._add(Kind.SPLIT, row, f"completes the {name} started in #{store.ids[lane.row]}")
            both = lane.tail + data[:CHECK_MAX]
            found = incomplete_tail(both)
            if found is not None and found[1] >= len(lane.tail):
                lane.kind, lane.tail, lane.row = found[0], both[found[1]:], row
            else:
                lane.kind, lane.tail, lane.row = "", b"", -1
            return
        found = incomplete_tail(data)
        if found is None:
            lane.kind, lane.tail, lane.row = "", b"", -1
        else:
            lane.kind, lane.tail, lane.row = found[0], data[found[1]:CHECK_MAX], row

    def _nagle_check(self, store: MessageStore, row: int, conn: int, data: bytes, coalesced: bool) -> None:
        st = self._nagle.setdefault(conn, _NagleState())
        arrival = store.arrivals[row]
        last, st.last_arrival = st.last_arrival, arrival
        if last is None or len(data) > SMALL_WRITE * 4:
            st.gaps.clear()
            return
        gap = arrival - last
        if coalesced and gap >= NAGLE_GAP_MIN_NS:
            self._add(Kind.NAGLE, row, f"{len(data)} bytes of small writes arrived together after {gap / 1e6:.0f} ms")
            return
        st.gaps.append((gap, coalesced))
        if len(st.gaps) > NAGLE_RUN:
            del st.gaps[0]
        if len(st.gaps) == NAGLE_RUN and any(c for _, c in st.gaps):
            for interval in NAGLE_INTERVALS_MS:
                if all(abs(g / 1e6 - interval) <= interval * NAGLE_TOLERANCE for g, _ in st.gaps):
                    self._add(Kind.NAGLE, row, f"small reads keep arriving every ~{interval:.0f} ms")
                    break

    def for_row(self, store: MessageStore, row: int) -> list[Annotation]:
        notes = list(self.by_row.get(row, ()))
        if 0 <= row < len(store) and store.state(row) is MessageState.DISCARDED:
            notes.append(Annotation(Kind.DISCARDED, row, "never delivered"))
        return notes

    def discarded_rows(self, store: MessageStore) -> list[int]:
        code = list(MessageState).index(MessageState.DISCARDED)
        return [i for i, s in enumerate(store.states) if s == code]

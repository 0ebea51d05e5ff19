"""Framing inference: which framing a direction's bytes follow, found by watching its first reads.

Role: ``Inference.observe(read)`` is fed each read of one direction of one connection, in order, and returns a
:class:`Decision` once it is confident (or once it is sure nothing fits: ``raw``). It never holds a byte: while it
watches, every read is passed on as it is, one message per read (what ``AutoFramer``, the framer named ``auto``,
does). It decides only where a read ends on a message boundary of the framing it picks, so that framing starts
with the next read and every byte before it fits it: the reads shown raw while inferring can be re-framed for the
view without guessing.

How: every candidate framing scans the same window of bytes from its first byte, each keeping its own count of
messages, of reads that ended exactly on one of its boundaries ("aligned"), and of degenerate messages (an empty
payload, a one-byte msgpack object): the HTTP Upgrade to WebSocket then its frames (``websocket``, built only when
the first read starts with ``GET `` or ``HTTP/1.``: the head alone, upgrading to websocket, decides), 1-, 2-, 4- and
8-byte length prefixes (big and little endian, counting the prefix or not), the Real Python header+body format
(``header16json``), ``\\r\\n``, ``\\n`` and ``\\0`` terminators, a multi-byte terminator learnt from what the reads
end with (``EOT\\0``, ``<END>``), JSON and msgpack streams, and fixed-size records (the greatest common divisor of
the read sizes when one read is that size, binary bytes only, at most 1 KiB). A candidate fits when
it is aligned with the last read, has enough messages (one for a length prefix of 2 bytes or more, whose exact
match with the read is strong evidence; two for the rest; three for fixed records) and few degenerate ones; the
most specific fitting candidate wins (the order of ``_RANK``). Nothing promising after 3 reads, or nothing fitting
within 12 reads or 64 KiB: ``raw``.

Memory (:class:`FramingMemory`): what was decided, or the best evidence of a connection that ended first (a
connection per request shows one message each way), is kept per target and direction; a later connection starts
with it as a hint that needs fewer messages to be believed, and is still checked against the bytes.

Cost: bounded by the bytes watched (at most ``INFER_BYTES`` per inference, JSON at most ``JSON_WATCH_BYTES``);
each candidate scans its bytes once (offsets into one shared window, no copies; JSON uses the incremental framer
of ``proxy.framing``, msgpack drives msgpack's unpacker as ``MsgpackFramer`` does, with runs of one-byte objects
counted by one regex match). Every new connection's directions pay it (``--framing auto`` is the default), so it
does no work that cannot change a decision: a candidate is built only once the bytes leave it a chance (a length
prefix once its first frame is all there, the Real Python header once its brace could be checked, a text
terminator once one arrives, JSON and msgpack only for a first read they may start), a dead one is not visited
again, and only candidates the read left on a boundary are asked whether they fit. Ties of rank go to the order
all candidates were once built in (``key``). ``tests/test_inference_equivalence.py`` holds the decisions of the
simpler inference that built and scanned every candidate, on thousands of read sequences. Once a decision is made
the window is dropped and the chosen framer runs alone.

Must not import: Qt, ``inspector``, asyncio, sockets, ``time``.
Thread: engine loop thread; pure objects owned by one relay (the memory by the engine's ``Shared`` state).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from heapq import heappop, heappush
from operator import attrgetter
from typing import Final, Literal

import msgpack

from proxy.framing import (
    _MSGPACK_DECLARED,
    _SCALAR_START,
    DEFAULT_MAX_FRAME,
    DelimiterFramer,
    FramingError,
    JsonFramer,
    LengthPrefixFramer,
    WatchingFramer,
    compile_json_runs,
    delimiter_name,
    header_body_length,
    length_name,
    make_framer,
    register_framer,
)
from proxy.model import Direction
from proxy.websocket import HEAD_MAX as WS_HEAD_MAX
from proxy.websocket import looks_like_upgrade
from proxy.websocket import parse_head as parse_ws_head

compile_json_runs()  # the engine imports this module at start: never compiled later, on the relay's thread

__all__ = [
    "INFER_BYTES",
    "INFER_READS",
    "AutoFramer",
    "Decision",
    "FramingMemory",
    "Hint",
    "Inference",
    "describe",
]

INFER_BYTES: Final = 64 << 10
"""Bytes of a direction watched at most; past them without a decision the direction stays raw."""
INFER_READS: Final = 12
"""Reads watched at most before deciding (raw if nothing fits by then)."""
RAW_AFTER_READS: Final = 3
"""After this many reads with no candidate even promising, the direction is raw."""
JSON_WATCH_BYTES: Final = 16 << 10
"""The JSON candidate scans in Python: it watches at most this much."""
_SUFFIX: Final = 16
"""Bytes at the end of reads (or messages) compared to learn a terminator."""
MAX_FRAMES: Final = 256
"""Messages a candidate may find in the window: more is no game's first dozen reads (and each costs a Python step)."""
FIXED_MAX: Final = 1024
"""The largest fixed record inferred: game state records are small, while bulk reads of one buffer size are not
records."""
_STREAM_SLICE: Final = 256
"""JSON and msgpack candidates are fed this much at a time, so a degenerate one stops early."""

# Most specific first: an exact length match is the strongest evidence; fixed records the weakest.
_RANK: Final = {"websocket": -1, "header16json": 0, "len64": 1, "len32": 2, "len16": 3, "len8": 4, "custom": 5,
                "crlf": 6, "lines": 7, "nul": 8, "json": 9, "msgpack": 10, "fixed": 11}
_TEXT_BYTES: Final = bytes(range(0x20, 0x7F)) + b"\t\r\n"
_PAYLOAD_END: Final = frozenset(b"}])\"'.0123456789abcdefghijklmnopqrstuvwxyz")
"""Bytes that end a typical payload rather than begin a terminator: stripped from the front of a common suffix
(``}EOT\\0`` -> ``EOT\\0``, ``o<END>`` -> ``<END>``)."""


_HIGH_BYTES: Final = bytes(range(0x80, 0x100))
_NOT_CONTROL: Final = _TEXT_BYTES + _HIGH_BYTES


def _has_control(data: bytes | bytearray) -> bool:
    """Whether ``data`` has a byte below 0x80 that text never has (a control byte other than tab, CR and LF)."""
    return bool(data.translate(None, _NOT_CONTROL))


def _is_text(data: bytes | bytearray) -> bool:
    rest = data.translate(None, _TEXT_BYTES)
    if not rest:
        return True
    if rest.translate(None, _HIGH_BYTES):
        return False  # a control byte
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _common_suffix(a: bytes, b: bytes) -> bytes:
    n = 0
    m = min(len(a), len(b))
    while n < m and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:] if n else b""


def _terminator(suffix: bytes) -> bytes:
    """The terminator a common suffix shows, without the payload's own last bytes."""
    i = 0
    while i < len(suffix) and suffix[i] in _PAYLOAD_END:
        i += 1
    return suffix[i:]


def describe(name: str) -> str:
    """A framing name in words, for reasons and documentation."""
    if name == "raw":
        return "raw (each read is a message)"
    if name == "auto":
        return "inferred from the first messages"
    if name == "websocket":
        return "WebSocket (an HTTP Upgrade, then one message per RFC 6455 frame)"
    if name == "header16json":
        return "2-byte big-endian header length, JSON header with content-length, then the body (Real Python style)"
    if name == "lines":
        return "newline-terminated lines"
    if name == "json":
        return "a stream of JSON values"
    if name == "msgpack":
        return "a stream of msgpack objects"
    if name.startswith("fixed:"):
        return f"fixed-size records of {name[6:]} bytes"
    if name.startswith("delim:"):
        text = name[6:]
        if text == "\\r\\n":
            return "lines ending in \\r\\n"
        if text == "\\x00":
            return "messages ending in a zero byte"
        return f"messages ending in {text}"
    if name.startswith("len"):
        incl = name.endswith("-incl")
        core = name.removesuffix("-incl")
        bits = int(core[3:-2] if core[-2:] in ("be", "le") else core[3:])
        order = {"be": " big-endian", "le": " little-endian"}.get(core[-2:], "")
        return f"{bits // 8}-byte{order} length prefix" + (" counting itself" if incl else "")
    return name


# ------------------------------------------------------------------------------------------------ candidates


class _Candidate:
    """One framing hypothesis scanning the shared window from its first byte."""

    __slots__ = ("aligned", "alive", "frames", "key", "last_aligned", "name", "need", "rank", "seen", "tiny",
                 "wake")
    text_only = False

    def __init__(self, name: str, rank: int, need: int) -> None:
        self.name = name
        self.rank = rank
        self.key = rank << 16
        """The rank, then the order the candidates were once all built in: the most specific wins, ties go to the
        first (the big-endian length before the little-endian one)."""
        self.need = need
        self.frames = self.tiny = self.aligned = 0
        self.wake = 0
        """The window length below which a read can change nothing but ``last_aligned`` (a length prefix waiting
        for the rest of its frame): inference does not call ``advance`` until then."""
        self.alive = True
        self.last_aligned = False
        self.seen = 0
        """Bytes of the window when it was last advanced."""

    def advance(self, window: bytearray, data: bytes) -> bool:
        """Scan what the read ``data`` (now the end of ``window``) adds; True if the window ends on a boundary."""
        raise NotImplementedError

    def degenerate(self, reads: int) -> bool:
        # Many messages per read are scraps (a "delimiter" cutting text into pieces) when they are tiny; a batch of
        # sensible messages per send (a tick's 40 entity updates, one JSON line each) is a game's normal traffic.
        if self.tiny * 4 > self.frames:
            return True
        if self.frames > 16 * reads:
            # Lines of 24 bytes or more on average: a batch per send (pretty-printed JSON's short lines and binary
            # scraps stay degenerate, and so does any other framing: only text's terminators get this way)
            return not (self.text_only and self.seen >= 24 * self.frames)
        return False

    def hopeless(self) -> bool:
        """Too many messages, or mostly degenerate ones already: stop scanning (it can never fit)."""
        if self.frames > MAX_FRAMES or (self.frames >= 8 and self.tiny * 4 > self.frames):
            self.alive = False
            return True
        return False

    def fits(self, reads: int) -> bool:
        return self.alive and self.last_aligned and self.frames >= self.need and not self.degenerate(reads)

    def promising(self, reads: int) -> bool:
        return self.alive and self.aligned > 0 and self.frames > 0 and not self.degenerate(reads)


def _length_meta(width: int, endian: str, inclusive: bool) -> tuple[str, int]:
    return length_name(width, endian, inclusive), _RANK["len8" if width == 1 else f"len{width * 8}"]


_ByteOrder = Literal["big", "little"]
_LENGTH_GROUPS: Final[tuple[tuple[int, str, _ByteOrder, tuple[tuple[bool, str, int], ...]], ...]] = tuple(
    (width, endian, "big" if endian == "be" else "little",
     tuple((inclusive, *_length_meta(width, endian, inclusive)) for inclusive in (False, True)))
    for width, endian in ((8, "be"), (8, "le"), (4, "be"), (4, "le"), (2, "be"), (2, "le"), (1, "be")))
"""The length prefixes scanned for, in the order they are built (the order breaks ties of rank): per width and byte
order, the length not counting then counting the prefix, with their names and ranks computed once."""


class _Length(_Candidate):
    __slots__ = ("inclusive", "json_header", "order", "pos", "strong", "width")

    def __init__(self, width: int, endian: str, inclusive: bool, meta: tuple[str, int] | None = None) -> None:
        name, rank = meta if meta is not None else _length_meta(width, endian, inclusive)
        super().__init__(name, rank, 2)
        self.width = width
        self.order: Final[_ByteOrder] = "big" if endian == "be" else "little"
        self.inclusive = inclusive
        self.pos = 0
        self.strong = 0
        """Messages with a payload of 4 bytes or more: a length that small could match a read by chance."""
        self.json_header = False
        """A payload was a JSON map declaring a content length: the Real Python format's header, whose body is
        still to come. Then two messages are not enough for this simpler reading."""

    def advance(self, window: bytearray, data: bytes) -> bool:
        n = len(window)
        w = self.width
        pos = self.pos
        order = self.order
        inclusive = self.inclusive
        while pos + w <= n:
            length = int.from_bytes(window[pos:pos + w], order)
            total = length if inclusive else w + length
            if total < w or total > INFER_BYTES:
                self.alive = False  # impossible, or more than the window could ever confirm
                return False
            if pos + total > n:
                self.wake = pos + total
                break
            self.frames += 1
            payload = total - w
            if payload >= 4:
                self.strong += 1
            if payload == 0:
                self.tiny += 1
            elif (w == 2 and not self.json_header and window[pos + w] == 0x7B
                  and self.name == "len16be"):
                try:
                    header_body_length(window[pos + w:pos + total])
                except ValueError:
                    pass
                else:
                    self.json_header = True
                    self.need = 3
            pos += total
            if self.hopeless():
                return False
        else:
            self.wake = pos + w
        self.pos = pos
        return pos == n

    def fits(self, reads: int) -> bool:
        if self.width == 1 and (self.aligned < 2 or self.aligned * 2 < reads):
            # One byte's length over random binary records ends exactly at the end of some read about once in
            # 128: with hundreds of connections that happens every run. A game's frames end where its reads do
            # (at least every other read, when it sends a prefix and its payload apart).
            return False
        return super().fits(reads) and (self.strong > 0 or self.frames >= 2)

    def promising(self, reads: int) -> bool:
        if self.width == 1 and self.aligned * 2 < reads:
            return False
        return super().promising(reads) and (self.strong > 0 or self.frames >= 2)


class _Delimiter(_Candidate):
    __slots__ = ("delimiter", "from_reads", "pos", "scanned", "suffix", "text_only")

    def __init__(self, delimiter: bytes, rank: int, from_reads: bool = False, text_only: bool = False) -> None:
        super().__init__(_DELIMITER_NAMES.get(delimiter) or delimiter_name(delimiter), rank, 2)
        self.delimiter = delimiter
        self.from_reads = from_reads
        self.text_only = text_only
        """Messages must be text: binary records that happen to end in a zero byte (a False, a small int's high
        byte) are not zero-terminated messages, and a real terminator of one byte cannot frame binary data."""
        self.pos = 0
        self.scanned = 0
        self.suffix: bytes | None = None
        """What every message so far ends with (up to ``_SUFFIX`` bytes): shows a longer terminator such as
        ``EOT\\0`` behind a ``\\0``."""

    def advance(self, window: bytearray, data: bytes) -> bool:
        d = self.delimiter
        k = len(d)
        n = len(window)
        pos = self.pos
        while True:
            i = window.find(d, max(self.scanned, pos))
            if i < 0:
                self.scanned = max(pos, n - k + 1)
                break
            end = i + k
            if i == pos and k == 1 and d in _BYTE_RUNS:
                # A run of empty messages (zero bytes in a binary record): counted at once, dying where the step by
                # step count would have (each step adds one message and one empty one)
                run = _BYTE_RUNS[d].match(window, pos).end() - pos  # type: ignore[union-attr]
                frames, tiny = self.frames, self.tiny
                die_at = min(MAX_FRAMES - frames + 1, max(1, 8 - frames, (frames - 4 * tiny) // 3 + 1))
                if die_at <= run:
                    self.frames, self.tiny, self.alive = frames + die_at, tiny + die_at, False
                    return False
                self.frames, self.tiny = frames + run, tiny + run
                self.suffix = d if self.suffix is None else _common_suffix(self.suffix, d)
                pos = self.scanned = pos + run
                continue
            if self.text_only and not _is_text(window[pos:i]):
                self.alive = False
                return False
            self.frames += 1
            if end - pos == k:
                self.tiny += 1  # an empty message
            tail = bytes(window[max(pos, end - _SUFFIX):end])
            self.suffix = tail if self.suffix is None else _common_suffix(self.suffix, tail)
            pos = self.scanned = end
            if self.hopeless():
                return False
        self.pos = pos
        if n - pos > INFER_BYTES // 2:
            self.alive = False  # half the window without a terminator
        return pos == n


_TEXT_DELIMITERS: Final = ((b"\r\n", _RANK["crlf"]), (b"\n", _RANK["lines"]), (b"\x00", _RANK["nul"]))
_BYTE_RUNS: Final = {b"\n": re.compile(b"\n+"), b"\x00": re.compile(b"\x00+")}
_DELIMITER_NAMES: Final = {d: delimiter_name(d) for d, _ in _TEXT_DELIMITERS}


class _HeaderJson(_Candidate):
    __slots__ = ("pending", "pos")

    def __init__(self) -> None:
        super().__init__("header16json", _RANK["header16json"], 1)
        self.pos = 0
        self.pending = 0  # total size of the frame at ``pos`` once its header was read

    def advance(self, window: bytearray, data: bytes) -> bool:
        n = len(window)
        pos = self.pos
        while True:
            total = self.pending
            if not total:
                if pos + 2 > n:
                    break
                h = (window[pos] << 8) | window[pos + 1]
                if h == 0 or (pos + 2 < n and window[pos + 2] != 0x7B):
                    self.alive = False
                    return False
                if pos + 2 + h > n:
                    break
                try:
                    total = 2 + h + header_body_length(window[pos + 2:pos + 2 + h])
                except ValueError:
                    self.alive = False
                    return False
                if total > INFER_BYTES:
                    self.alive = False
                    return False
                self.pending = total
            if pos + total > n:
                break
            self.frames += 1
            self.pending = 0
            pos += total
            if self.hopeless():
                return False
        self.pos = pos
        return pos == n


class _WebSocket(_Candidate):
    """The HTTP Upgrade to WebSocket (the client's ``GET`` or the server's ``101``), then RFC 6455 frames: built only
    for a direction whose first read starts like an HTTP head. The head alone is evidence enough (one message)."""

    __slots__ = ("head_done", "pos", "scanned")

    def __init__(self) -> None:
        super().__init__("websocket", _RANK["websocket"], 1)
        self.pos = 0
        self.scanned = 0
        self.head_done = False

    def advance(self, window: bytearray, data: bytes) -> bool:
        n = len(window)
        pos = self.pos
        if not self.head_done:
            end = window.find(b"\r\n\r\n", self.scanned)
            if end < 0:
                if n > WS_HEAD_MAX:
                    self.alive = False
                self.scanned = max(0, n - 3)
                return False
            end += 4
            try:
                hs = parse_ws_head(window[:end])
            except ValueError:
                self.alive = False
                return False
            if not hs.upgrades_to_websocket or not (hs.request or hs.status == 101):
                self.alive = False
                return False
            self.head_done = True
            self.frames = 1
            pos = end
        while pos + 2 <= n:
            b0, b1 = window[pos], window[pos + 1]
            if (b0 & 0x0F) not in _WS_OPCODES:
                self.alive = False
                return False
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if pos + 4 > n:
                    break
                length, head = (window[pos + 2] << 8) | window[pos + 3], 4
            elif length == 127:
                if pos + 10 > n:
                    break
                length, head = int.from_bytes(window[pos + 2:pos + 10], "big"), 10
            total = head + (4 if b1 & 0x80 else 0) + length
            if total > INFER_BYTES:
                self.alive = False  # more than the window could ever confirm
                return False
            if pos + total > n:
                self.wake = pos + total
                break
            self.frames += 1
            pos += total
            if self.hopeless():
                return False
        self.pos = pos
        return pos == n

    def degenerate(self, reads: int) -> bool:
        return False  # a burst of small frames (pings, one-byte updates) is a game's normal traffic


_WS_OPCODES: Final = frozenset((0, 1, 2, 8, 9, 10))


class _Stream(_Candidate):
    """JSON or msgpack. JSON: the incremental framer of ``proxy.framing`` fed each read (its own bounded buffer).
    msgpack: msgpack's unpacker driven as ``proxy.framing.MsgpackFramer`` drives it (the same declared-length
    check, the same cap), counting each object's size from offsets into the window instead of copying it out."""

    __slots__ = ("budget", "checked", "consumed", "fed", "framer", "given", "skipped", "unpacker")

    def __init__(self, kind: str) -> None:
        super().__init__(kind, _RANK[kind], 2)
        self.framer: JsonFramer | None = None  # made at the first read
        # msgpack's unpacker is about 40 KiB (its parse stack): made only for a stream that may be msgpack
        self.unpacker: msgpack.Unpacker | None = None
        self.budget = JSON_WATCH_BYTES if kind == "json" else INFER_BYTES
        self.fed = 0
        self.consumed = 0  # msgpack: the window offset where the next object starts
        self.checked = False  # msgpack: that object's declared length was compared with the cap
        self.given = 0  # msgpack: the window offset up to which the unpacker was fed
        self.skipped = 0  # msgpack: one-byte objects counted without it (its tell() leaves them out)

    def _die(self) -> bool:
        self.alive = False
        self.framer = None  # its buffer goes now, not when the connection ends
        self.unpacker = None
        return False

    def advance(self, window: bytearray, data: bytes) -> bool:
        self.fed += len(data)
        if self.fed > self.budget:
            return self._die()
        if self.name != "json":
            return self._msgpack(window, data)
        f = self.framer
        if f is None:
            f = self.framer = JsonFramer(JSON_WATCH_BYTES)
        for start in range(0, len(data), _STREAM_SLICE):
            frames = f.feed(data[start:start + _STREAM_SLICE])
            if f.fallback is not None:
                return self._die()
            for fr in frames:
                body = fr.strip()
                if not body:
                    continue  # whitespace passed on alone: neither a message nor evidence
                if body[0] not in b'{["':
                    # A bare number or literal: no game's message, and "true" "false" sent back to back are
                    # JSON only read by read ("truefalse" is not)
                    self.tiny += 1
                self.frames += 1
            if self.hopeless():
                return self._die()
        return f.buffered == 0

    def _msgpack(self, window: bytearray, data: bytes) -> bool:
        up = self.unpacker
        if up is None:
            if _is_text(data):
                # ASCII text parses as msgpack (every byte below 0x80 is an integer), but a program sending
                # msgpack sends maps and arrays, whose first bytes are not text
                return self._die()
            up = self.unpacker = msgpack.Unpacker(max_buffer_size=INFER_BYTES + (1 << 20), read_size=1024,
                                                  raw=True, strict_map_key=False)
        consumed = self.consumed
        given = self.given
        n = len(window)
        for start in range(n - len(data), n, _STREAM_SLICE):
            avail = min(start + _STREAM_SLICE, n)
            try:
                while consumed < avail:
                    if given == consumed:
                        # The unpacker holds nothing: a run of one-byte objects (fixints, nil, booleans, empty
                        # containers) is counted here at C speed, and the unpacker never sees it
                        run = _MSGPACK_ONE_BYTE.match(window, consumed, avail).end() - consumed  # type: ignore[union-attr]
                        if run:
                            self.frames += run
                            self.tiny += run
                            consumed = given = consumed + run
                            self.skipped += run
                            continue
                    if given < avail:
                        up.feed(window[given:avail])
                        given = avail
                    if not self.checked:
                        spec = _MSGPACK_DECLARED.get(window[consumed])
                        if spec is None:
                            self.checked = True
                        elif avail - consumed >= spec[0]:
                            self.checked = True
                            head, unit, extra = spec
                            declared = int.from_bytes(window[consumed + 1:consumed + head], "big")
                            if head + extra + declared * unit > INFER_BYTES:
                                return self._die()  # MsgpackFramer gives up on such a header at once
                    try:
                        up.skip()
                    except msgpack.OutOfData:
                        break
                    end = up.tell() + self.skipped
                    size = end - consumed
                    consumed = end
                    self.checked = False
                    if size > INFER_BYTES:
                        return self._die()
                    self.frames += 1
                    if size <= 1:
                        self.tiny += 1
            except Exception:  # FormatError, StackError, BufferFull, ValueError: where MsgpackFramer gives up
                return self._die()
            self.consumed = consumed
            self.given = given
            if self.hopeless():
                return self._die()
        return consumed == len(window)


class _Fixed(_Candidate):
    """Records of ``size`` bytes (from a hint); the general case is computed from the read sizes instead."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__(f"fixed:{size}", _RANK["fixed"], 3)
        self.size = size

    def advance(self, window: bytearray, data: bytes) -> bool:
        self.frames = len(window) // self.size
        return len(window) % self.size == 0

    def fits(self, reads: int) -> bool:
        # Any read of N bytes "fits" fixed:N, and a 20-byte hello then 64-byte messages realign every fifth read:
        # a remembered record size holds only when two reads or more all were whole records.
        return reads >= 2 and self.aligned == reads and super().fits(reads)

    def promising(self, reads: int) -> bool:
        return self.aligned == reads and super().promising(reads)


_MSGPACK_ONE_BYTE: Final = re.compile(rb"[\x00-\x80\x90\xa0\xc0\xc2\xc3\xe0-\xff]*")
"""A run of msgpack objects of one byte each: fixints, nil, false, true, an empty map, array or string."""
_STANDARD: Final = frozenset(["websocket", "header16json", "json", "msgpack", *(name for *_, pairs in _LENGTH_GROUPS
                                                                  for _, name, _ in pairs),
                              *_DELIMITER_NAMES.values()])
"""The candidates every inference starts with (unless the first read already rules them out)."""
_JSON_START: Final = frozenset(b'"[{') | _SCALAR_START
"""Bytes a JSON value may start with: a stream whose first byte after whitespace is another is not JSON."""
_WHITESPACE: Final = b" \t\r\n"
_key: Final = attrgetter("key")
_BUILD: Final = 1 << 10
_DELIMITER_SEQ: Final = 1 + 2 * len(_LENGTH_GROUPS)
_HINTED: Final = _DELIMITER_SEQ + len(_TEXT_DELIMITERS) + 2
"""The place of a hinted candidate that is not one of the standard ones (then the learnt terminators)."""


def _candidate_for(name: str) -> _Candidate | None:
    """A candidate for a framing named by a hint (``None`` for ``raw`` and names inference does not scan for)."""
    if name == "header16json":
        return _HeaderJson()
    if name == "websocket":
        return _WebSocket()
    if name in ("json", "msgpack"):
        return _Stream(name)
    if name.startswith("fixed:"):
        return _Fixed(int(name[6:]))
    try:
        f = make_framer(name)
    except FramingError:
        return None
    if isinstance(f, LengthPrefixFramer):
        return _Length(f.width, f.endian, f.inclusive)
    if isinstance(f, DelimiterFramer):
        return _Delimiter(f.delimiter, _RANK["custom"])
    return None


# ------------------------------------------------------------------------------------------------ inference


@dataclass(frozen=True, slots=True)
class Hint:
    """What an earlier connection to the same target showed for this direction."""

    framing: str
    messages: int
    """Messages that fitted it there."""
    confirmed: bool
    """Inference decided it (rather than a connection that ended while still watching)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The framing a direction follows, from the end of the watched window on."""

    framing: str
    """A name ``proxy.framing.make_framer`` takes (``raw`` when nothing fits)."""
    reason: str
    """In words, with the evidence: "2-byte big-endian length prefix: 3 of 3 messages fit (3 reads)"."""
    messages: int
    """Messages of that framing in the watched window (0 for raw)."""
    reads: int
    """Reads watched (each passed on as one message)."""
    watched: int
    """Bytes watched: the framing starts at this offset of the inference window."""
    remembered: bool = False
    """Decided on the strength of a hint from earlier connections."""


class Inference:
    """Watches one direction's reads until it can name their framing (see the module docstring)."""

    def __init__(self, hint: Hint | None = None) -> None:
        self.window = bytearray()
        self.reads = 0
        self.observed = 0
        self._gcd = 0
        self._binary = False
        self._read_ends: bytes | None = None  # common suffix of every read so far
        self._pickles = True  # every read so far looks like one whole pickle
        self._pickle_starts = True  # every read so far starts like a pickle (protocol 2 to 5)
        self._shortest = 1 << 62
        self._sizes: set[int] = set()  # the read sizes seen (a fixed record size must be one of them)
        self._cands: list[_Candidate] = []  # every candidate built, in the order that breaks ties of rank
        self._live: list[_Candidate] = []  # those still alive (the same order)
        self._aligned: list[_Candidate] = []  # those the last read left on a boundary (the same order)
        self._waiting: list[tuple[int, int]] = []
        """A heap of (window bytes needed, what): -1 the header, a length group to check, or ``_BUILD`` plus the
        place of a length prefix whose first frame is not all there yet (nothing happens to it until it is)."""
        self._unseen: list[int] = []  # text terminators not seen yet (their candidates are built when they are)
        self._json: _Candidate | None = None
        self._learnt: _Delimiter | None = None
        self._seq = _HINTED
        self.hint = hint
        self._hinted: _Candidate | None = None

    def observe(self, data: bytes) -> Decision | None:
        """Watch one more read (passed on raw by the caller); a decision once one is possible."""
        if not data:
            return None
        if type(data) is not bytes:
            data = bytes(data)
        self.reads += 1
        size = len(data)
        self.observed += size
        if self.observed > INFER_BYTES:
            return self._raw(f"no framing showed in the first {INFER_BYTES >> 10} KiB")
        window = self.window
        window += data
        self._gcd = math.gcd(self._gcd, size)
        if size < self._shortest:
            self._shortest = size
        if len(self._sizes) < 64:
            self._sizes.add(size)
        text = True
        if not self._binary and not _is_text(data):
            self._binary = True
            text = False
        ends = self._read_ends
        if ends is None:
            self._read_ends = data[-_SUFFIX:]
        elif ends:  # (once empty, it stays empty)
            self._read_ends = _common_suffix(ends, data[-_SUFFIX:])
        if self._pickle_starts and not (size > 2 and data[0] == 0x80 and 2 <= data[1] <= 5):
            self._pickle_starts = False
        if self._pickles and not (self._pickle_starts and data[-1] == 0x2E):
            self._pickles = False
        n = len(window)
        if self.reads == 1:
            self._start(data, text)
        else:
            if self._waiting and n >= self._waiting[0][0]:
                self._build_waiting(window)
            if self._unseen:
                self._look_for_terminators(window, data)
        aligned = []
        pruned = hard = False
        hard_known = False
        for c in self._live:
            c.seen = n
            if c.wake > n:
                c.last_aligned = False  # waiting for the rest of a frame: nothing else can change
                continue
            if c.advance(window, data):
                c.last_aligned = True
                c.aligned += 1
                aligned.append(c)
                continue
            c.last_aligned = False
            if not c.alive:
                pruned = True
            elif c.text_only and c.frames == 0:
                # No message yet, and a byte no text has is already waiting: the first terminator to come ends a
                # message that is not text, and this candidate dies then without ever counting one
                if not hard_known:
                    hard, hard_known = _has_control(data), True
                if hard:
                    c.alive = False
                    pruned = True
        if pruned:
            self._live = [c for c in self._live if c.alive]
        self._aligned = aligned
        self._learn_terminator()
        return self._decide()

    # -------------------------------------------------------------------------------------------- internals

    def _start(self, data: bytes, text: bool) -> None:
        """The candidates, built at the first read: those it already rules out are not built (each would die on
        its first step, exactly as when it was built and scanned). A length prefix wider than the read, and the
        Real Python header, are built once the window is long enough to check them."""
        size = len(data)
        if looks_like_upgrade(data):
            self._adopt(_WebSocket(), 0)
        if size >= 3:
            self._add_header(data)
        else:
            heappush(self._waiting, (3, -1))
        for group, (width, _, order, _) in enumerate(_LENGTH_GROUPS):
            if size < width:
                heappush(self._waiting, (width, group))
            elif int.from_bytes(data[:width], order) <= INFER_BYTES:  # (larger: no frame can have that length)
                self._add_lengths(group, data)
        hard = _has_control(data)
        for i, (delimiter, rank) in enumerate(_TEXT_DELIMITERS):
            if delimiter in data:
                self._adopt(_Delimiter(delimiter, rank, text_only=True), _DELIMITER_SEQ + i)
            elif not hard and size <= INFER_BYTES // 2:
                self._unseen.append(i)
        first = data.lstrip(_WHITESPACE)
        if not first or first[0] in _JSON_START:
            self._json = _Stream("json")
            self._adopt(self._json, _HINTED - 2)
        if not text:
            self._adopt(_Stream("msgpack"), _HINTED - 1)
        hint = self.hint
        if hint is not None and hint.framing != "raw" and hint.framing not in _STANDARD:
            cand = _candidate_for(hint.framing)
            if cand is not None:
                cand.need = 1 if hint.confirmed else max(1, cand.need - hint.messages)
                self._hinted = cand
                self._adopt(cand, _HINTED)

    def _look_for_terminators(self, window: bytearray, data: bytes) -> None:
        """Build a text terminator's candidate at the read that brings its first terminator. Until then it could
        only die: of a control byte (the message it would end is not text) or of half the window unterminated."""
        n = len(window)
        hard = _has_control(data)
        unseen = []
        for i in self._unseen:
            delimiter, rank = _TEXT_DELIMITERS[i]
            if window.find(delimiter, max(0, n - len(data) - len(delimiter) + 1)) >= 0:
                self._adopt(_Delimiter(delimiter, rank, text_only=True), _DELIMITER_SEQ + i)
            elif not hard and n <= INFER_BYTES // 2:
                unseen.append(i)
        self._unseen = unseen

    def _build_waiting(self, window: bytearray) -> None:
        waiting = self._waiting
        while waiting and waiting[0][0] <= len(window):
            what = heappop(waiting)[1]
            if what < 0:
                self._add_header(window)
            elif what < _BUILD:
                self._add_lengths(what, window)
            else:
                seq = what - _BUILD
                width, endian, _, pairs = _LENGTH_GROUPS[(seq - 1) // 2]
                inclusive, name, rank = pairs[(seq - 1) % 2]
                self._adopt(_Length(width, endian, inclusive, (name, rank)), seq)

    def _add_header(self, window: bytes | bytearray) -> None:
        if ((window[0] << 8) | window[1]) != 0 and window[2] == 0x7B:
            self._adopt(_HeaderJson(), 0)

    def _add_lengths(self, group: int, window: bytes | bytearray) -> None:
        width, endian, order, pairs = _LENGTH_GROUPS[group]
        length = int.from_bytes(window[:width], order)
        for inclusive, name, rank in pairs:
            total = length if inclusive else width + length
            if width <= total <= INFER_BYTES:
                seq = 1 + 2 * group + inclusive
                if total <= len(window):
                    self._adopt(_Length(width, endian, inclusive, (name, rank)), seq)
                else:
                    heappush(self._waiting, (total, _BUILD + seq))

    def _adopt(self, cand: _Candidate, seq: int) -> None:
        cand.key = (cand.rank << 16) | seq
        self._cands.append(cand)
        self._live.append(cand)
        hint = self.hint
        if seq < _HINTED and hint is not None and cand.name == hint.framing:
            cand.need = 1 if hint.confirmed else max(1, cand.need - hint.messages)
            self._hinted = cand

    def _learn_terminator(self) -> None:
        """A terminator every read ends with (two reads at least), other than the ones always scanned for."""
        ends = self._read_ends
        if self.reads < 2 or not ends or self._pickles:
            return
        t = _terminator(ends)
        if self._pickle_starts and b"." in t:
            t = t[t.index(b".") + 1:]  # pickles end with STOP ("."), often after the same opcodes: not the terminator
        if not t or t in (b"\n", b"\r\n", b"\x00") or (self._learnt is not None and self._learnt.delimiter == t):
            return
        if not self._acceptable_terminator(t):
            return
        cand = _Delimiter(t, _RANK["custom"], from_reads=True)
        self._seq += 1
        cand.key = (cand.rank << 16) | self._seq
        # the whole window at once (at most INFER_BYTES, scanned by bytearray.find): every read ended with it
        cand.last_aligned = cand.advance(self.window, b"")
        cand.aligned = int(cand.last_aligned)
        old = self._learnt
        if old is not None:
            self._cands.remove(old)
            if old in self._live:
                self._live.remove(old)
            if old in self._aligned:
                self._aligned.remove(old)
        self._learnt = cand
        self._cands.append(cand)
        if cand.alive:
            self._live.append(cand)
            if cand.last_aligned:
                self._aligned.append(cand)

    def _acceptable_terminator(self, t: bytes) -> bool:
        """Whether ``t`` looks like a terminator a program chose rather than text its messages share."""
        if len(t) == 1 and t[0] >= 0x20:
            return False  # ";" or "!" ending every read is a coincidence of the text, not a framing
        if self._shortest <= len(t):
            return False  # a read that is only the "terminator": identical messages, not a terminator
        if b" " in t:
            return False  # " points!": words the messages end with
        core = t.strip(b"\t\r\n")
        if core and all(b in b"}])\"'" for b in core):
            return False  # "\n}\n": the end of pretty-printed JSON values, not a terminator
        punctuation = sum(0x21 <= b <= 0x7E and not chr(b).isalnum() for b in t)
        if any(0x61 <= b <= 0x7A for b in t) and punctuation < 2:
            return False  # "points!" is text; "<end>" is a terminator
        printable = sum(0x21 <= b <= 0x7E for b in t)
        payloads = bytes(self.window).replace(t, b"")
        if not payloads:
            return False  # nothing but the "terminator", over and over
        if _is_text(payloads):
            return True
        return len(t) >= 3 and printable >= 3  # binary messages (pickles) with a terminator such as <END>

    def _fixed(self) -> tuple[int, int] | None:
        """(record size, records) when the reads look like fixed-size binary records."""
        size = self._gcd
        if not self._binary or not 2 <= size <= FIXED_MAX or self._pickles:
            return None  # (pickles of one shape have one size, but the next may not)
        if size not in self._sizes:
            return None  # a 20-byte hello then 64-byte messages share a divisor of 4, but no record is 4 bytes
        return size, len(self.window) // size

    def _decide(self) -> Decision | None:
        reads = self.reads
        hinted = self._hinted
        if hinted is not None and hinted.fits(reads):
            return self._decision(hinted.name, hinted.frames, remembered=True)
        # a candidate fits only where the read left it on a boundary
        fitting = [c for c in self._aligned if c.fits(reads)]
        hint = self.hint
        if not fitting and reads == 1 and hint is not None and hint.framing == "raw" and hint.confirmed:
            return self._raw("as on earlier connections to this server, no framing fits", remembered=True)
        if fitting:
            best = min(fitting, key=_key)
            if best.rank in (_RANK["crlf"], _RANK["lines"]):
                # Pretty-printed JSON: one value spans several lines. JSON wins where it frames fewer, bigger
                # messages; while it is one message short of fitting, wait a read rather than decide for lines.
                js = self._json
                if (js is not None and js.alive and js.last_aligned and 0 < js.frames < best.frames
                        and not js.degenerate(reads)):
                    if not js.fits(reads):
                        return None
                    best = js
            name = best.name
            if isinstance(best, _Delimiter) and not best.from_reads and best.suffix and best.frames >= 2:
                t = _terminator(best.suffix)
                if len(t) > len(best.delimiter) and t.endswith(best.delimiter) and self._acceptable_terminator(t):
                    name = delimiter_name(t)  # "\0" ends every message, and so does "EOT\0": name the latter
            return self._decision(name, best.frames)
        fixed = self._fixed()
        if fixed is not None and fixed[1] >= 3:
            return self._decision(f"fixed:{fixed[0]}", fixed[1])
        if reads >= INFER_READS:
            return self._raw(f"no framing fits the first {reads} reads")
        if reads >= RAW_AFTER_READS and fixed is None and not any(c.promising(reads) for c in self._live):
            return self._raw(f"no framing fits the first {reads} reads")
        return None

    def _decision(self, name: str, messages: int, remembered: bool = False) -> Decision:
        reason = f"{describe(name)}: {messages} of {messages} messages fit ({self.reads} "
        reason += "read)" if self.reads == 1 else "reads)"
        if remembered:
            reason = "as on earlier connections to this server, " + reason
        return Decision(name, reason, messages, self.reads, self.observed, remembered)

    def _raw(self, why: str, remembered: bool = False) -> Decision:
        return Decision("raw", f"{why}: each read is a message (raw)", 0, self.reads, self.observed, remembered)

    def best_evidence(self) -> tuple[str, int] | None:
        """The most specific promising candidate and its messages: what a connection that ends before a decision
        leaves to the next one."""
        reads = self.reads
        promising = [c for c in self._aligned if c.promising(reads)]
        if promising:
            best = min(promising, key=_key)
            return best.name, best.frames
        fixed = self._fixed()
        if fixed is not None and fixed[1] >= 1:
            return f"fixed:{fixed[0]}", fixed[1]
        return None


# ------------------------------------------------------------------------------------------------ the framer


class AutoFramer(WatchingFramer):
    """The framer named ``auto``: each read is a message while :class:`Inference` watches; once it decides, the
    decided framer (``inner``) frames every later byte. The relay swaps ``inner`` in itself (so the decided framing
    costs what it costs alone) and publishes the decision; other users (a capture import) just keep feeding this.
    ``skip``: see :class:`~proxy.framing.WatchingFramer`.
    """

    __slots__ = ("decision", "inference")
    name = "auto"

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, hint: Hint | None = None, skip: int = 0) -> None:
        super().__init__(max_frame, skip)
        self.inference: Inference | None = Inference(hint)
        self.decision: Decision | None = None

    def _watch(self, data: bytes) -> None:
        assert self.inference is not None
        d = self.inference.observe(data)
        if d is not None:
            self.decision = d
            self.inner = make_framer(d.framing, self.max_frame)
            self.inference = None  # the window's memory goes with it


# ------------------------------------------------------------------------------------------------ memory


Target = tuple[str, int]


class FramingMemory:
    """Per target and direction: the framing last inferred, or the best evidence of connections that ended while
    inference was still watching. Bounded (``MAX_ENTRIES``); single-threaded (the engine loop)."""

    MAX_ENTRIES: Final = 256

    def __init__(self) -> None:
        self._confirmed: dict[tuple[Target, Direction], str] = {}
        self._evidence: dict[tuple[Target, Direction], tuple[str, dict[int, int]]] = {}

    def hint(self, target: Target, direction: Direction) -> Hint | None:
        key = (target, direction)
        name = self._confirmed.get(key)
        if name is not None:
            return Hint(name, 0, True)
        ev = self._evidence.get(key)
        if ev is not None:
            return Hint(ev[0], sum(ev[1].values()), False)
        return None

    def confirm(self, target: Target, direction: Direction, framing: str) -> None:
        key = (target, direction)
        self._evidence.pop(key, None)
        self._confirmed.pop(key, None)
        if len(self._confirmed) >= self.MAX_ENTRIES:
            del self._confirmed[next(iter(self._confirmed))]
        self._confirmed[key] = framing

    def observe(self, target: Target, direction: Direction, conn_id: int, framing: str, messages: int) -> None:
        """Connection ``conn_id``, still inferring, has ``messages`` fitting ``framing`` so far."""
        key = (target, direction)
        if key in self._confirmed:
            return
        ev = self._evidence.get(key)
        if ev is None or ev[0] != framing:
            if ev is not None and sum(ev[1].values()) > messages:
                return  # keep the stronger evidence
            if len(self._evidence) >= self.MAX_ENTRIES:
                del self._evidence[next(iter(self._evidence))]
            ev = self._evidence[key] = (framing, {})
        counts = ev[1]
        counts[conn_id] = messages
        if len(counts) > 16:
            del counts[next(iter(counts))]

    def forget(self, target: Target, direction: Direction, framing: str) -> None:
        """``framing`` turned out wrong for this target (a stall, a contradiction): do not suggest it again."""
        key = (target, direction)
        if self._confirmed.get(key) == framing:
            del self._confirmed[key]
        ev = self._evidence.get(key)
        if ev is not None and ev[0] == framing:
            del self._evidence[key]


register_framer("auto", AutoFramer)

"""WebSocket decoder (RFC 6455, RFC 7692): the Upgrade handshake, each frame's header, control frames, and the
payload, reassembled and inflated, decoded by the usual decoders.

Role: the proxy's ``websocket`` framing (``proxy/websocket.py``) makes each frame one message, and the HTTP Upgrade
request and response one message each. This decoder shows a head as its request or status line and headers (the
``Sec-WebSocket-Accept`` checked against the client's key, ``Sec-WebSocket-Extensions`` parsed with the websockets
library's header parser: permessage-deflate with its context takeover and window bits), and a frame as FIN, RSV1-3,
opcode, MASK, masking key and length, then its payload: unmasked (the library's C ``apply_mask``), a close frame's
code and reason, and a data message's content decoded by the registry's other decoders (JSON, msgpack, text ...).
The editable form is ``# websocket <opcode> [as=<decoder>]`` then the payload in that decoder's editable form;
:meth:`WebSocketDecoder.encode` makes a whole frame of it: a fresh header, masked with a fresh key from client to
server (the library's ``Frame.serialize``), never compressed (RSV1 clear), so it reads right whatever the
receiver's inflate context is.

Messages are stateful, frames are not: a fragmented message spans frames, and with permessage-deflate's context
takeover a compressed message may refer back to the messages before it. :class:`StreamTracker` follows each
WebSocket direction in stream order (the window's store feeds it every live message of a direction framed as
``websocket``, the terminal's summariser likewise) and keeps, per frame that needs it, the reassembled message and
what it inflates to; :meth:`WebSocketDecoder.decode` looks a frame up there (by the very bytes object the store
keeps, else by value), and without it decodes the frame alone (a compressed message that refers back to earlier
ones then says so). Inflating is capped everywhere: at most ``INFLATE_MAX`` bytes per message, and a direction's
inflated bytes at most ``RATIO`` times its compressed bytes, so a decompression bomb costs what its bytes are
worth and says so; the tracker's memory is capped too (``TRACK_BYTES``), oldest first.

The summary path (every row of the table) has shortcuts that give the very views of the general path (tests compare
them on recorded and generated traffic): a whole message in one frame is followed and summarised with its header read
in place; a text message that is one JSON value takes its summary from the JSON decoder's ``summary_of_text``; a
binary message goes straight to the decoder that surely won the direction's last one when it is exactly as sure
(:meth:`WebSocketDecoder._binary`); the tracker keeps plain tuples, which the garbage collector stops walking.

Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: decoding from any thread; :class:`StreamTracker` is fed on one thread (the store's, the GUI thread) and read
from any (its tables are dicts updated by single assignments, each entry immutable).
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from websockets.exceptions import InvalidHeader
from websockets.frames import CLOSE_CODE_EXPLANATIONS, Frame, Opcode
from websockets.headers import parse_extension
from websockets.utils import accept_key, apply_mask

from proxy.model import Direction, Message, Origin

from ._api import (
    MAX_PARSE,
    DecodeContext,
    Decoder,
    EncodeError,
    Field,
    View,
    clip,
    error_view,
    hex_dump,
)
from ._json import JsonDecoder
from ._payload import summary_view

if TYPE_CHECKING:
    from ._registry import DecoderRegistry

__all__ = ["INFLATE_MAX", "TRACKER", "StreamInfo", "StreamTracker", "WebSocketDecoder", "parse_header"]

NAME = "websocket"
INFLATE_MAX: Final = MAX_PARSE
"""Most bytes one compressed message is inflated to (for display, filters and the tracker)."""
RATIO: Final = 256
"""A direction's inflated bytes stay under this many times its compressed bytes, plus ``INFLATE_MAX``."""
HEAD_MAX: Final = 16 << 10
"""Longest HTTP head read."""
TRACK_BYTES: Final = 64 << 20
"""Bytes of reassembled and inflated payloads the tracker keeps, oldest released first."""
TRACK_ENTRIES: Final = 200_000
TRACK_LANES: Final = 4096
FRAME_MAX: Final = 16 << 20
"""A frame declaring more than this stops the tracker's framing of its direction (the proxy's cap)."""
_TAIL: Final = b"\x00\x00\xff\xff"
_OPCODES: Final = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
_BY_NAME: Final = {v: k for k, v in _OPCODES.items()}
_CLOSE_NAMES: Final = {int(k): v for k, v in CLOSE_CODE_EXPLANATIONS.items()}
_HEADER = "# websocket"
_SURE_MAX: Final = 4096
_depth = threading.local()
"""How deep this thread is in WebSocket decodes: a payload is never decoded as a WebSocket frame again."""


# ------------------------------------------------------------------------------------------------ parsing



def whole_data_frame(data: bytes) -> int | None:
    """The header's size when ``data`` is exactly one whole final text or binary frame (FIN set, any RSV bits), as
    :func:`parse_header` reads a header but without making its tuple (the tracker and the table's summaries ask
    this of every message); None for anything else."""
    n = len(data)
    if n < 2:
        return None
    b0 = data[0]
    opcode = b0 & 0x0F
    if b0 & 0x80 == 0 or not (opcode == 1 or opcode == 2):
        return None
    b1 = data[1]
    length = b1 & 0x7F
    size = 2
    if length >= 126:
        if length == 126:
            if n < 4:
                return None
            length = (data[2] << 8) | data[3]
            size = 4
        else:
            if n < 10:
                return None
            length = int.from_bytes(data[2:10], "big")
            size = 10
    if b1 >= 0x80:
        size += 4
    return size if size + length == n else None

class Header(NamedTuple):
    """One frame's header (a tuple: made for every frame decoded)."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    length: int
    """Payload length as declared."""
    length_bytes: int
    """1, 3 or 9: the bytes of the length field (after the first byte)."""
    key: bytes
    size: int
    """Header bytes, masking key included: the payload starts here."""

    @property
    def total(self) -> int:
        return self.size + self.length

    @property
    def control(self) -> bool:
        return self.opcode >= 8


def parse_header(data: bytes | bytearray, pos: int = 0) -> Header | None:
    """The frame header at ``pos`` of ``data``, or None when ``data`` ends inside it."""
    n = len(data) - pos
    if n < 2:
        return None
    b0, b1 = data[pos], data[pos + 1]
    length = b1 & 0x7F
    size = 2
    if length == 126:
        if n < 4:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        size = 4
    elif length == 127:
        if n < 10:
            return None
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
        size = 10
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if n < size + 4:
            return None
        key = bytes(data[pos + size:pos + size + 4])
        size += 4
    return Header(bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10), b0 & 0x0F, masked,
                  length, 1 + (size - 2 - (4 if masked else 0)), key, size)


def _strong_frame(data: bytes, h: Header) -> bool:
    """Whether bytes of unknown framing are, beyond doubt, one whole frame (a rule in the proxy, where no stream
    says so): an uncompressed text frame or a control frame, of exactly this length, with FIN, no reserved bit, a
    non-zero masking key if masked, and a payload that is text (a close frame: a valid code; a client's ping or
    pong: any bytes). A binary or
    compressed frame's payload looks like any binary record's, so it is never claimed from its bytes alone."""
    if (h.total != len(data) or not h.fin or h.rsv1 or h.rsv2 or h.rsv3 or h.length == 0
            or h.opcode not in (1, 8, 9, 10) or (h.masked and h.key == b"\x00\x00\x00\x00")):
        return False
    payload = _payload(data, h)
    if h.opcode == 8:
        return h.length >= 2 and 1000 <= int.from_bytes(payload[:2], "big") < 5000 and bool(
            _TEXT.fullmatch(payload, 2))
    if h.control:  # a ping or a pong: a client's carries any bytes (the library's, four random ones)
        return h.length <= 125 and (h.masked or bool(_TEXT.fullmatch(payload)))
    return h.length >= 2 and bool(_TEXT.fullmatch(payload))


_TEXT: Final = re.compile(rb"[\t\n\r\x20-\x7e\x80-\xff]*")
"""Text a game sends (no control bytes); UTF-8 validity is the text decoder's to judge."""


def _payload(data: bytes, h: Header) -> bytes:
    body = data[h.size:h.size + h.length]
    return apply_mask(body, h.key) if h.masked else body


def _looks_like_head(data: bytes) -> bool:
    return data[:4] == b"GET " or data[:7] == b"HTTP/1."


@dataclass(frozen=True, slots=True)
class _Head:
    request: bool
    first_line: str
    status: int
    headers: tuple[tuple[str, str], ...]
    size: int

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None


def _parse_head(data: bytes) -> _Head:
    end = data.find(b"\r\n\r\n", 0, HEAD_MAX)
    if end < 0:
        raise ValueError(f"the HTTP head does not end (no blank line in the first {min(len(data), HEAD_MAX)} bytes)")
    lines = data[:end].decode("latin-1").split("\r\n")
    first = lines[0]
    request = first.startswith("GET ")
    status = 0
    if not request:
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ValueError(f"not an HTTP status line: {first[:80]!r}")
        status = int(parts[1])
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not an HTTP header line: {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return _Head(request, first, status, tuple(headers), end + 4)


def _deflate_params(head: _Head) -> tuple[list[tuple[str, str | None]] | None, str | None]:
    """The permessage-deflate parameters of a head (the first offer, or the answer), and a parse error if any."""
    value = head.get("sec-websocket-extensions")
    if not value:
        return None, None
    try:
        exts = parse_extension(value)
    except InvalidHeader as e:
        return None, f"Sec-WebSocket-Extensions cannot be read: {e}"
    for name, params in exts:
        if name == "permessage-deflate":
            return list(params), None
    return None, None


def _deflate_words(params: list[tuple[str, str | None]], request: bool) -> str:
    """The parameters in words: what was offered, or what the server agreed to."""
    p = dict(params)
    parts = []
    for side in ("server", "client"):
        bits = p.get(f"{side}_max_window_bits", "")
        window = f"{bits}-bit window" if bits else ("window bits negotiable" if f"{side}_max_window_bits" in p
                                                      else "15-bit window")
        takeover = "no context takeover" if f"{side}_no_context_takeover" in p else "context takeover"
        parts.append(f"{side} {window}, {takeover}")
    return ("offered: " if request else "") + "; ".join(parts)


# ------------------------------------------------------------------------------------------------ tracking


class StreamInfo(NamedTuple):
    """What only the stream shows about one frame (a fragment, or a compressed message's frame)."""

    opcode: int
    """The message's opcode (1 text, 2 binary)."""
    fragment: int
    """This frame's place in its message, from 1."""
    final: bool
    compressed: bool
    piece: bytes
    """This frame's payload, unmasked and inflated (up to the caps)."""
    message: bytes | None = None
    """On a message's last frame: the whole message, reassembled and inflated (up to the caps)."""
    fragments: int = 1
    wire_bytes: int = 0
    """The message's payload bytes on the wire (compressed), up to this frame."""
    note: str = ""
    """Why the message is not shown whole (a cap, a context the tracker lost)."""
    accept: str | None = None
    """For a server's 101 response: whether its Sec-WebSocket-Accept fits the client's key."""

    @property
    def size(self) -> int:
        return len(self.piece) + (len(self.message) if self.message is not None else 0)


_new_info: Final = tuple.__new__
"""``_new_info(StreamInfo, (every field))``: a :class:`StreamInfo` without the named tuple's Python ``__new__``."""
_Record = tuple[Any, ...]
"""What the tracker keeps of a frame: its :class:`StreamInfo`'s fields in a plain tuple (after the frame's bytes, in
the table by identity). A plain tuple of bytes, numbers and strings is one the garbage collector stops tracking,
where a named tuple is tracked for as long as it lives: tens of thousands kept would make every full collection
walk them all."""


@dataclass(slots=True)
class _Lane:
    buf: bytearray = field(default_factory=bytearray)
    mode: int = 0  # 0 start, 1 head, 2 frames, 3 stopped
    stopped: str = ""
    inflater: zlib._Decompress | None = None
    credit: int = INFLATE_MAX
    in_message: bool = False
    opcode: int = 0
    compressed: bool = False
    fragment: int = 0
    parts: list[bytes] = field(default_factory=list)
    out: int = 0
    wire: int = 0
    note: str = ""
    lost: str = ""  # why compressed messages of this direction can no longer be inflated


class StreamTracker:
    """Follows WebSocket directions in stream order (see the module docstring). One per process: :data:`TRACKER`."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[tuple[int, int, int], _Lane] = OrderedDict()
        self._by_id: OrderedDict[int, _Record] = OrderedDict()
        """id(the frame's bytes) -> (those bytes, then its StreamInfo's fields)."""
        self._by_value: OrderedDict[tuple[int, int, bytes], _Record] = OrderedDict()
        """(connection, direction, the frame's bytes) -> its StreamInfo's fields."""
        self._bytes = 0
        self._keys: dict[tuple[int, int], str] = {}  # (owner, conn) -> the client's Sec-WebSocket-Key
        self.known: set[tuple[int, int]] = set()
        """(conn_id, direction) of the directions followed (for every owner): decoders trust those bytes more."""
        self.work = 0
        """Bytes of payload inflated or reassembled (a deterministic measure of the cost)."""

    # -- feeding

    def feeder(self, owner: object, conn_id: int, direction: Direction,
               backlog: list[Message] | tuple[Message, ...] = ()) -> Callable[[Message], None]:
        """Start following a direction (``backlog``: its messages already seen, in order); returns the function
        to call with each later message of that direction, in order."""
        key = (id(owner), conn_id, int(direction))
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= TRACK_LANES:
                self._lanes.popitem(last=False)
            lane = self._lanes[key] = _Lane()
        if len(self.known) < 4 * TRACK_LANES:
            self.known.add((conn_id, int(direction)))

        def feed(msg: Message) -> None:
            if msg.origin is Origin.LIVE or msg.origin is Origin.REPLAYED:
                self._feed(key, lane, msg.data)

        for m in backlog:
            feed(m)
        return feed

    def observe(self, owner: object, msg: Message) -> None:
        """Feed one message of a direction followed already (no-op for others)."""
        lane = self._lanes.get((id(owner), msg.conn_id, int(msg.direction)))
        if lane is not None and (msg.origin is Origin.LIVE or msg.origin is Origin.REPLAYED):
            self._feed((id(owner), msg.conn_id, int(msg.direction)), lane, msg.data)

    def reset(self) -> None:
        """Forget everything: connection numbers start again (a new window, a new session)."""
        self._lanes.clear()
        self._by_id.clear()
        self._by_value.clear()
        self._keys.clear()
        self.known.clear()
        self._bytes = 0

    def following(self, owner: object, conn_id: int, direction: Direction) -> bool:
        return (id(owner), conn_id, int(direction)) in self._lanes

    def forget(self, owner: object) -> None:
        """Forget an owner's directions (its store was cleared); what was looked up stays until released."""
        o = id(owner)
        for key in [k for k in self._lanes if k[0] == o]:
            del self._lanes[key]

    def lookup(self, data: bytes, conn_id: int | None, direction: Direction | None) -> StreamInfo | None:
        hit = self._by_id.get(id(data))
        if hit is not None and hit[0] is data:
            return _new_info(StreamInfo, hit[1:])
        if conn_id is None or direction is None:
            return None
        rec = self._by_value.get((conn_id, int(direction), data))
        return None if rec is None else _new_info(StreamInfo, rec)

    # -- internals

    def _feed(self, key: tuple[int, int, int], lane: _Lane, data: bytes) -> None:
        if lane.mode == 3 or not data:
            return
        buf = lane.buf
        if not buf and lane.mode == 2:
            if self._whole_message(key, lane, data):
                return
            h = parse_header(data)
            if h is not None and h.total == len(data):  # the usual case: the message is one frame
                info = self._frame(key, lane, data, h)
                if info is not None:
                    self._keep(key, data, info, True)
                return
        buf += data
        while buf:
            if lane.mode == 0:
                lane.mode = 1 if buf[0] in b"GH" else 2
            if lane.mode == 1:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > HEAD_MAX:
                        self._stop(lane, "an HTTP head longer than 16 KiB")
                    return
                head = bytes(buf[:end + 4])
                del buf[:end + 4]
                lane.mode = 2
                info = self._head(key, head)
                if info is not None:
                    self._keep(key, data if head == data else head, info, head == data)
                continue
            h = parse_header(buf)
            if h is None:
                return
            if h.opcode not in _OPCODES or h.total > FRAME_MAX:
                self._stop(lane, "the bytes stopped being WebSocket frames")
                return
            if len(buf) < h.total:
                return
            frame = bytes(buf[:h.total])
            del buf[:h.total]
            info = self._frame(key, lane, frame, h)
            if info is not None:
                self._keep(key, data if frame == data else frame, info, frame == data)

    def _whole_message(self, key: tuple[int, int, int], lane: _Lane, data: bytes) -> bool:
        """A data message in one frame, the usual case, between messages (what :meth:`_frame` does with it, its
        header read here as :func:`parse_header` reads it, without making its tuple); False, having done
        nothing, for anything else."""
        if lane.in_message:
            return False
        size = whole_data_frame(data)
        if size is None:
            return False
        n = len(data)
        b0 = data[0]
        opcode = b0 & 0x0F
        masked = data[1] >= 0x80
        compressed = b0 & 0x40 != 0
        payload = apply_mask(data[size:], data[size - 4:size]) if masked else data[size:]
        wire = len(payload)
        # (between messages lane.parts is empty already: every message's end empties it)
        lane.opcode, lane.compressed, lane.fragment, lane.out, lane.wire, lane.note = opcode, compressed, 1, 0, wire, ""
        self.work += wire
        piece = self._inflate(lane, payload, True) if compressed else payload
        if len(piece) > INFLATE_MAX:
            piece = piece[:INFLATE_MAX]
            lane.note = lane.note or f"the message is longer than {INFLATE_MAX} bytes: shown up to there"
        lane.out = len(piece)
        note = lane.note
        if compressed or note:  # (a whole uncompressed message: nothing the frame does not show itself)
            # (_keep's work, by the bytes object's id)
            self._by_id[id(data)] = (data, opcode, 1, True, compressed, piece, piece, 1, wire, note, None)
            self._bytes += 2 * len(piece) + n
            if self._bytes > TRACK_BYTES or len(self._by_id) + len(self._by_value) > TRACK_ENTRIES:
                self._release()
        return True

    def _stop(self, lane: _Lane, why: str) -> None:
        lane.mode, lane.stopped = 3, why
        lane.buf.clear()
        lane.inflater = None
        lane.parts = []

    def _head(self, key: tuple[int, int, int], head: bytes) -> StreamInfo | None:
        try:
            hs = _parse_head(head)
        except ValueError:
            return None
        conn = (key[0], key[1])
        if hs.request:
            k = hs.get("sec-websocket-key")
            if k is not None and len(self._keys) < 4 * TRACK_LANES:
                self._keys[conn] = k
            return None
        k = self._keys.pop(conn, None)
        got = hs.get("sec-websocket-accept")
        if k is None or got is None:
            return None
        ok = accept_key(k) == got
        return StreamInfo(0, 0, True, False, b"", accept="fits the client's Sec-WebSocket-Key" if ok else
                          f"does not fit the client's Sec-WebSocket-Key (expected {accept_key(k)})")

    def _frame(self, key: tuple[int, int, int], lane: _Lane, frame: bytes, h: Header) -> StreamInfo | None:
        op = h.opcode
        if op >= 8:
            return None  # control frames stand alone
        if op != 0:
            note = "a new message began before the last one ended (RFC 6455 5.4)" if lane.in_message else ""
            lane.in_message, lane.opcode, lane.compressed = True, op, h.rsv1
            lane.fragment, lane.parts, lane.out, lane.wire, lane.note = 0, [], 0, 0, note
        elif not lane.in_message:
            return StreamInfo(0, 1, h.fin, False, b"", note="a continuation frame with no message to continue")
        lane.fragment += 1
        payload = _payload(frame, h)
        lane.wire += len(payload)
        self.work += len(payload)
        piece = payload
        if lane.compressed:
            piece = self._inflate(lane, payload, h.fin)
        room = INFLATE_MAX - lane.out
        if len(piece) > room:
            piece = piece[:max(room, 0)]
            lane.note = lane.note or f"the message is longer than {INFLATE_MAX} bytes: shown up to there"
        lane.out += len(piece)
        lane.parts.append(piece)
        if not h.fin:
            if lane.fragment == 1 and not lane.compressed:
                return StreamInfo(lane.opcode, 1, False, False, piece, note=lane.note)
            return StreamInfo(lane.opcode, lane.fragment, False, lane.compressed, piece, wire_bytes=lane.wire,
                              note=lane.note)
        lane.in_message = False
        if lane.fragment == 1 and not lane.compressed and not lane.note:
            lane.parts = []
            return None  # a whole uncompressed message in one frame: nothing the frame does not show itself
        message = b"".join(lane.parts)
        lane.parts = []
        return StreamInfo(lane.opcode, lane.fragment, True, lane.compressed, piece, message, lane.fragment,
                          lane.wire, lane.note)

    def _inflate(self, lane: _Lane, payload: bytes, fin: bool) -> bytes:
        if lane.lost:
            lane.note = lane.note or lane.lost
            return b""
        if lane.inflater is None:
            lane.inflater = zlib.decompressobj(-15)
        credit = lane.credit + RATIO * len(payload)
        if credit > RATIO * FRAME_MAX:
            credit = RATIO * FRAME_MAX
        lane.credit = credit
        allow = INFLATE_MAX + 1 - lane.out
        if credit < allow:
            allow = credit
        if allow <= 0:
            self._lose(lane, "this direction inflates past what its bytes allow (a decompression bomb?)")
            return b""
        try:
            out = lane.inflater.decompress(payload, allow)
            if fin and not lane.inflater.unconsumed_tail and len(out) < allow:
                out += lane.inflater.decompress(_TAIL, allow - len(out))
        except zlib.error as e:
            self._lose(lane, f"it does not inflate ({e})")
            return b""
        self.work += len(out)
        lane.credit -= len(out)
        if lane.inflater.unconsumed_tail or len(out) >= allow:
            self._lose(lane, f"a message inflated past {INFLATE_MAX} bytes (a decompression bomb?): shown up to "
                             "there; later compressed messages of this direction are not inflated")
        return out

    def _lose(self, lane: _Lane, why: str) -> None:
        lane.lost = why
        lane.note = why
        lane.inflater = None

    def _keep(self, key: tuple[int, int, int], data: bytes, info: StreamInfo, by_id: bool) -> None:
        self._bytes += info.size + len(data)
        if by_id:
            self._by_id[id(data)] = (data, *info)
        else:
            self._by_value[(key[1], key[2], data)] = tuple(info)
        self._release()

    def _release(self) -> None:
        """The oldest entries let go while the tables are over their caps."""
        while self._bytes > TRACK_BYTES or len(self._by_id) + len(self._by_value) > TRACK_ENTRIES:
            if self._by_id:
                old = self._by_id.popitem(last=False)[1]
                d, rec = old[0], old[1:]
            else:  # (the frame's bytes are the key's: counted when kept, so here too)
                (_conn, _d, d), rec = self._by_value.popitem(last=False)
            self._bytes -= len(rec[4]) + (len(rec[5]) if rec[5] is not None else 0) + len(d)


TRACKER = StreamTracker()
"""The process's tracker: the window's store and the terminal's summariser feed it, the decoder reads it."""


# ------------------------------------------------------------------------------------------------ the decoder


def _close_words(code: int) -> str:
    name = _CLOSE_NAMES.get(code)
    if name is not None:
        return name
    if 3000 <= code < 4000:
        return "registered for libraries and frameworks"
    if 4000 <= code < 5000:
        return "the application's own code"
    return "not a valid close code"


class WebSocketDecoder:
    """Frames and the Upgrade handshake; see the module docstring."""

    name = NAME
    framings = (NAME,)
    """Where the framing is ``websocket`` every message is a frame or a head: the registry asks this decoder alone
    (the payload's decoder is picked inside)."""

    def __init__(self, tracker: StreamTracker | None = None) -> None:
        self.tracker = tracker if tracker is not None else TRACKER
        self._registry: DecoderRegistry | None = None
        self._sure: dict[tuple[int | None, Direction | None], tuple[object, int, float, Decoder]] = {}
        """(connection, direction) -> the registry's decoders and settings generation then, the confidence and the
        decoder that surely won its last binary message (see :meth:`_binary`; a decoder registered or a setting
        changed since voids it); entries are replaced whole (safe across threads)."""

    def bind_registry(self, registry: DecoderRegistry) -> None:
        """The registry whose other decoders read the payloads (called when it registers this decoder; a decoder used
        on its own makes one of text, JSON, msgpack and hex)."""
        self._registry = registry

    def clear_settings(self) -> None:
        """Connection numbers start again (called by :meth:`DecoderRegistry.clear_settings`)."""
        self.tracker.reset()
        self._sure.clear()

    @property
    def registry(self) -> DecoderRegistry:
        reg = self._registry
        if reg is None:  # used on its own: the payloads by the built-ins that need no setting
            from ._hex import HexDecoder
            from ._json import JsonDecoder
            from ._msgpack import MsgpackDecoder
            from ._registry import DecoderRegistry
            from ._text import TextDecoder

            reg = self._registry = DecoderRegistry([TextDecoder(), JsonDecoder(), MsgpackDecoder(), HexDecoder()])
        return reg

    # -- confidence

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if getattr(_depth, "n", 0) or len(data) < 2:
            return 0.0
        ours = ctx.framing == NAME or (ctx.conn_id is not None and ctx.direction is not None
                                       and (ctx.conn_id, int(ctx.direction)) in self.tracker.known)
        if _looks_like_head(data):
            low = data[:HEAD_MAX].lower()
            if b"\r\nupgrade:" in low and b"websocket" in low:
                return 0.95
            return 0.0
        h = parse_header(data)
        if h is None or h.opcode not in _OPCODES:
            return 0.0
        if ours:
            return 0.97 if h.total == len(data) else 0.2
        return 0.6 if _strong_frame(data, h) else 0.0

    # -- decoding

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        if not ctx.detail:  # (never a head: a head's first byte, G or H, has no FIN bit)
            view = self._summary_of_usual_frame(data, ctx)
            if view is not None:
                return view
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        try:
            if data[:1] in b"GH" and _looks_like_head(data):  # (frames rarely begin so: skip the slices)
                return self._decode_head(data, ctx)
            return self._decode_frame(data, ctx)
        finally:
            _depth.n = depth

    def _decode_head(self, data: bytes, ctx: DecodeContext) -> View:
        try:
            hs = _parse_head(data)
        except ValueError as e:
            return error_view(NAME, data, str(e), detail=ctx.detail)
        warnings: list[str] = []
        params, err = _deflate_params(hs)
        if err:
            warnings.append(err)
        info = self.tracker.lookup(data, ctx.conn_id, ctx.direction)
        if hs.request:
            path = hs.first_line[4:].rsplit(" ", 1)[0]
            summary = f"Upgrade request GET {path}"
            if "websocket" not in (hs.get("upgrade") or "").lower():
                warnings.append("no 'Upgrade: websocket' header: this is not a WebSocket handshake")
            if not hs.get("sec-websocket-key"):
                warnings.append("no Sec-WebSocket-Key: a server must refuse the upgrade")
        else:
            summary = hs.first_line.split(" ", 1)[1] if " " in hs.first_line else hs.first_line
            if hs.status != 101:
                warnings.append(f"status {hs.status}: the server refused the upgrade, the connection stays HTTP")
        if params is not None:
            summary += f" · permessage-deflate ({_deflate_words(params, hs.request)})"
        elif hs.get("sec-websocket-extensions"):
            summary += f" · extensions: {hs.get('sec-websocket-extensions')}"
        elif not hs.request and hs.status == 101:
            summary += " · no compression"
        rest = len(data) - hs.size
        if rest > 0:
            warnings.append(f"{rest} bytes after the head: WebSocket frames, shown as rows once the framing is "
                            "websocket")
        value: dict[str, object] = {
            "handshake": "request" if hs.request else "response",
            "status": hs.status,
            "headers": {k.lower(): v for k, v in hs.headers},
            "deflate": dict(params) if params is not None else None,
        }
        if hs.request:
            value["path"] = hs.first_line[4:].rsplit(" ", 1)[0]
        if not ctx.detail:
            return View(NAME, clip(summary), warnings=tuple(warnings), values=(value,))
        fields: list[Field] = []
        offset = len(hs.first_line) + 2
        fields.append(Field("request line" if hs.request else "status line", hs.first_line, 0, offset - 2))
        header_fields = []
        raw_lines = data[offset:hs.size - 4].split(b"\r\n")
        pos = offset
        for (name, val), raw in zip(hs.headers, raw_lines, strict=False):
            children: tuple[Field, ...] = ()
            shown = val
            lname = name.lower()
            if lname == "sec-websocket-extensions" and params is not None:
                children = tuple(Field(k, "(present)" if v is None else v, pos, pos + len(raw)) for k, v in params)
            elif lname == "sec-websocket-accept" and info is not None and info.accept:
                shown = f"{val}  ({info.accept})"
            header_fields.append(Field(name, clip(shown, 160), pos, pos + len(raw), children))
            pos += len(raw) + 2
        fields.append(Field("headers", f"{len(hs.headers)} headers", offset, hs.size - 2, tuple(header_fields)))
        if params is not None:
            fields.append(Field("permessage-deflate", _deflate_words(params, hs.request), None, None,
                                tuple(Field(k, "(present)" if v is None else v) for k, v in params)))
        text = data[:hs.size].decode("latin-1").replace("\r\n", "\n")
        if rest > 0:
            text += f"\n({rest} more bytes: frames)\n" + hex_dump(data[hs.size:hs.size + 256])
        return View(NAME, clip(summary), tuple(fields), text, tuple(warnings), values=(value,))

    def _summary_of_usual_frame(self, data: bytes, ctx: DecodeContext) -> View | None:
        """The summary view (``detail`` False: the table, filters) of a whole message in one frame, the usual case,
        built with less work; None for anything else, which :meth:`_decode_frame` does (it gives the same view
        for this case: tests compare them). Called before :meth:`decode` counts this thread's depth: it counts
        it itself around what may decode a payload with the registry. The header is read here as
        :func:`parse_header` reads it, without making its tuple (this runs for every row)."""
        size = whole_data_frame(data)
        if size is None or data[0] & 0x30:  # no RSV2/RSV3 here
            return None
        length = len(data) - size
        b0 = data[0]
        opcode = b0 & 0x0F
        masked = data[1] >= 0x80
        direction = ctx.direction
        if direction is not None and (direction is Direction.C2S) is not masked:
            return None
        rsv1 = b0 & 0x40 != 0
        info = self.tracker.lookup(data, ctx.conn_id, direction)
        if rsv1:
            if info is None or info.note or info.message is None or info.fragments != 1:
                return None
            content = info.message
            flags = f" (deflate {info.wire_bytes}→{len(content)} B)"
        elif info is not None:
            return None
        else:
            content = apply_mask(data[size:], data[size - 4:size]) if masked else data[size:]
            flags = ""
        op = _OPCODES[opcode]
        json: tuple[str, object] | bool | None = None
        if opcode == 1 and content[:1] in (b"{", b"["):  # the usual text message: one JSON value, shown as JSON
            decoder = self.registry._decoders.get("json")
            if type(decoder) is JsonDecoder:
                try:
                    json = decoder.summary_of_text(content, content.decode("utf-8"), ctx)
                except Exception:  # not UTF-8 (or a bug): _inner says so
                    json = None
        if isinstance(json, tuple):
            shown, payload = json
            truncated = False
        else:
            depth = getattr(_depth, "n", 0)  # (the builtin JSON reader above never decodes a payload again)
            _depth.n = depth + 1
            try:
                inner = self._inner(content, opcode, ctx, json is False)
            finally:
                _depth.n = depth
            if inner is None:
                return None
            values = inner.values
            payload = values[0] if len(values) == 1 else list(values) if values else None
            decoder_name = inner.decoder
            shown = inner.summary if decoder_name == "text" or decoder_name == "json" else \
                f"{decoder_name} {inner.summary}"
            truncated = inner.truncated
        value: dict[str, object] = {"opcode": op, "fin": True, "rsv1": rsv1, "masked": masked, "length": length,
                                    "compressed": rsv1, "payload": payload}
        summary = f"{op}{flags} {shown}" if content else f"{op}{flags} (empty)"
        return summary_view(NAME, clip(summary), (value,), (), truncated)

    def _decode_frame(self, data: bytes, ctx: DecodeContext) -> View:
        h = parse_header(data)
        if h is None:
            return error_view(NAME, data, f"{len(data)} bytes are not a whole WebSocket frame header",
                              detail=ctx.detail)
        if h.opcode not in _OPCODES:
            return error_view(NAME, data, f"reserved opcode {h.opcode}: not a WebSocket frame", detail=ctx.detail)
        warnings: list[str] = []
        if h.total > len(data):
            warnings.append(f"the frame declares {h.length} payload bytes but only {len(data) - h.size} are here")
        elif h.total < len(data):
            warnings.append(f"{len(data) - h.total} bytes after this frame (more frames: use the websocket framing)")
        self._violations(h, ctx, warnings)
        op = _OPCODES[h.opcode]
        info = self.tracker.lookup(data, ctx.conn_id, ctx.direction) if not h.control else None
        # (a compressed message the tracker inflated needs no unmasking here: its content is the tracker's)
        payload = b"" if info is not None and info.compressed and not ctx.detail else _payload(data, h)
        value: dict[str, object] = {"opcode": op, "fin": h.fin, "rsv1": h.rsv1, "masked": h.masked,
                                    "length": h.length}
        fields: list[Field] = []
        flags = ""
        content: bytes | None = payload
        content_op = h.opcode
        inner_note = ""
        if h.control:
            summary, extra = self._control(h, payload, warnings, value)
            content = None
        else:
            compressed = h.rsv1 if h.opcode else (info is not None and info.compressed)
            value["compressed"] = compressed
            if info is not None:
                content_op = info.opcode
                if info.note:
                    warnings.append(info.note)
                if info.final and info.message is not None:
                    content = info.message
                    if info.fragments > 1:
                        flags = f" (end of a {info.fragments}-frame message)"
                        value["fragments"] = info.fragments
                elif not info.final:
                    content = None
                    flags = f" fragment {info.fragment}, continues"
                    value["fragment"] = info.fragment
                if compressed and content is not None:
                    flags += f" (deflate {info.wire_bytes}→{len(content)} B)"
                elif compressed:
                    flags += f" (deflate: {len(info.piece)} B inflated)"
            elif compressed and h.opcode:
                content, inner_note = self._inflate_alone(payload, h.fin)
                if inner_note:
                    warnings.append(inner_note)
                flags = f" (deflate {len(payload)}→{len(content)} B)"
                if not h.fin:
                    flags += " fragment 1, continues"
                    content = None
            elif h.opcode == 0:
                flags = " (a fragment: its message is shown on its last frame)"
                content = None
                warnings.append("the rest of this message was not seen in stream order (fragments are reassembled "
                                "as the window receives them)")
            elif not h.fin:
                flags = " fragment 1, continues"
                content = None
            summary = op + flags
            extra = []
        inner = None
        if content is not None:
            inner = self._inner(content, content_op, ctx)
            if inner is not None:
                value["payload"] = (inner.values[0] if len(inner.values) == 1 else list(inner.values) if inner.values
                                    else None)
                shown = inner.summary if inner.decoder in ("text", "json") else f"{inner.decoder} {inner.summary}"
                summary = f"{summary} {shown}" if content else f"{summary} (empty)"
        elif not h.control:
            shown_piece = info.piece if info is not None else payload if not h.rsv1 else b""
            if shown_piece:
                summary += f" {clip(repr(shown_piece[:80]), 90)}"
        cut = h.total != len(data) or (inner is not None and inner.truncated)
        if not ctx.detail:
            return View(NAME, clip(summary), warnings=tuple(warnings), truncated=cut, values=(value,))
        b0 = data[0]
        fields.append(Field("FIN", f"{int(h.fin)} ({'last frame' if h.fin else 'more follow'})", 0, 1))
        fields.append(Field("RSV1", f"{int(h.rsv1)}" + (" (deflate)" if h.rsv1 else ""), 0, 1))
        fields.append(Field("RSV2, RSV3", f"{(b0 >> 5) & 1}, {(b0 >> 4) & 1}", 0, 1))
        fields.append(Field("opcode", f"{h.opcode} ({op})", 0, 1))
        fields.append(Field("MASK", f"{int(h.masked)}" + (" (masked)" if h.masked else ""), 1, 2))
        fields.append(Field("payload length", f"{h.length}" + ("" if h.length_bytes == 1 else
                                                                f" ({8 * (h.length_bytes - 1)}-bit)"),
                            1, 1 + h.length_bytes))
        if h.masked:
            fields.append(Field("masking key", h.key.hex(" "), h.size - 4, h.size))
        end = min(len(data), h.total)
        fields.append(Field("payload", f"{end - h.size} B" + (", masked" if h.masked else ""), h.size, end,
                            tuple(extra)))
        if inner is not None:
            whole = (info is not None and info.fragments > 1) or h.rsv1 or content_op != h.opcode
            what = "message" if whole else "content"
            about = []
            if info is not None and info.fragments > 1:
                about.append(f"{info.fragments} frames")
            if (info is not None and info.compressed) or h.rsv1:
                about.append(f"inflated to {len(content or b'')} B")
            shift = None if whole else h.size
            kids = tuple(_shift(f, shift) for f in inner.fields)
            fields.append(Field(what, f"{inner.decoder}" + (f", {', '.join(about)}" if about else ""), None, None,
                                kids))
        text_parts = [f"{op} frame, FIN {int(h.fin)}, RSV1 {int(h.rsv1)}, {h.length} payload bytes"
                      + (f", masked with {h.key.hex()}" if h.masked else "")]
        if inner is not None:
            text_parts.append(inner.text)
        elif h.control and payload:
            text_parts.append(hex_dump(payload))
        editable = None if cut else self._editable(h, payload, content, content_op, inner)
        return View(NAME, clip(summary), tuple(fields), "\n\n".join(text_parts), tuple(warnings),
                    can_encode=editable is not None, truncated=cut,
                    editable=editable, values=(value,))

    def _violations(self, h: Header, ctx: DecodeContext, warnings: list[str]) -> None:
        if ctx.direction is Direction.C2S and not h.masked:
            warnings.append("a client frame that is not masked (RFC 6455 5.1: the server must close the connection)")
        elif ctx.direction is Direction.S2C and h.masked:
            warnings.append("a server frame that is masked (RFC 6455 5.1: the client must close the connection)")
        if h.control and h.length > 125:
            warnings.append(f"a {_OPCODES[h.opcode]} frame of {h.length} bytes (RFC 6455 5.5: at most 125)")
        if h.control and not h.fin:
            warnings.append("a fragmented control frame (RFC 6455 5.5: control frames are never fragmented)")
        if h.rsv1 and (h.control or h.opcode == 0):
            warnings.append("RSV1 on a control or continuation frame (RFC 7692: only a message's first frame)")
        if h.rsv2 or h.rsv3:
            warnings.append("RSV2/RSV3 set: no negotiated extension defines them")
        if h.length >> 63:
            warnings.append("a 64-bit length with its top bit set (RFC 6455 5.2)")

    def _control(self, h: Header, payload: bytes, warnings: list[str],
                 value: dict[str, object]) -> tuple[str, list[Field]]:
        op = _OPCODES[h.opcode]
        if h.opcode == 8:
            if not payload:
                value["close"] = {"code": None, "reason": ""}
                return "close (no code)", []
            if len(payload) == 1:
                warnings.append("a close frame with a 1-byte payload (RFC 6455 5.5.1: a code is 2 bytes)")
                return "close (bad payload)", []
            code = struct.unpack("!H", payload[:2])[0]
            reason_bytes = payload[2:]
            try:
                reason = reason_bytes.decode("utf-8")
            except UnicodeDecodeError:
                reason = reason_bytes.decode("utf-8", "replace")
                warnings.append("the close reason is not UTF-8 (RFC 6455 5.5.1)")
            words = _close_words(code)
            if code in (1005, 1006, 1015) or not (1000 <= code < 5000) or (1016 <= code < 3000):
                warnings.append(f"close code {code} must not be sent in a close frame (RFC 6455 7.4)")
            value["close"] = {"code": code, "reason": reason}
            summary = f"close {code} ({words})" + (f" {reason!r}" if reason else "")
            return summary, [Field("code", f"{code} ({words})", h.size, h.size + 2),
                             Field("reason", repr(reason), h.size + 2, h.size + len(payload))]
        text = payload.decode("utf-8", "replace")
        value["payload"] = text if text.isprintable() else payload.hex()
        shown = repr(text) if text.isprintable() else payload.hex(" ")
        return f"{op} {clip(shown, 80)}" if payload else f"{op} (empty)", []

    def _inflate_alone(self, payload: bytes, fin: bool) -> tuple[bytes, str]:
        """A compressed message inflated without the messages before it (the tracker did not see its stream)."""
        d = zlib.decompressobj(-15)
        try:
            out = d.decompress(payload, INFLATE_MAX + 1)
            if fin and not d.unconsumed_tail and len(out) <= INFLATE_MAX:
                out += d.decompress(_TAIL, INFLATE_MAX + 1 - len(out))
        except zlib.error as e:
            return b"", (f"does not inflate alone ({e}): with context takeover a compressed message may refer "
                         "back to the messages before it, which were not seen in stream order here")
        if len(out) > INFLATE_MAX or d.unconsumed_tail:
            return out[:INFLATE_MAX], f"inflates past {INFLATE_MAX} bytes (a decompression bomb?): shown up to there"
        return out, ""

    def _inner(self, content: bytes, opcode: int, ctx: DecodeContext, not_json: bool = False) -> View | None:
        """The content's view; ``not_json``: its JSON reading is known to fail (its view would not be used)."""
        # The frame's own context: "decode as" and the framing are the frame's, and neither ``decode_with`` nor
        # ``auto`` reads them to pick a decoder (``decode`` would: the framing names this decoder)
        inner_ctx = ctx
        reg = self.registry
        if opcode == 1:
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError as e:
                return error_view("text", content, f"a text message that is not UTF-8 at byte {e.start} "
                                  "(RFC 6455 8.1: the receiver must fail the connection)", detail=ctx.detail)
            if not not_json and content.lstrip()[:1] in (b"{", b"["):
                view = self._json(reg, content, text, inner_ctx)
                if view.error is None:
                    return view
            return reg.decode_with("text", content, inner_ctx)
        return self._binary(reg, content, inner_ctx)

    @staticmethod
    def _json(reg: DecoderRegistry, content: bytes, text: str, ctx: DecodeContext) -> View:
        """``reg.decode_with("json", content, ctx)``; the built-in JSON decoder is given the text already read."""
        decoder = reg._decoders.get("json")
        if type(decoder) is JsonDecoder:
            try:
                return decoder.decode_text(content, text, ctx)
            except Exception:  # (as decode_with would take it: the general call says so)
                pass
        return reg.decode_with("json", content, ctx)

    def _binary(self, reg: DecoderRegistry, content: bytes, ctx: DecodeContext) -> View:
        """``reg.auto(content, ctx)``: a binary message's decoder, the one that surely won the last binary message
        of the same direction decoding it straight away when it is exactly as confident of this one (ranking every
        decoder is most of the cost of a small message). The reasoning and the rule are :func:`decode_payload`'s
        (a plain win at 0.8 or more; never with a struct layout, whose confidence follows sizes). Only where the
        registry keeps no such memory itself: a direction with a framing (that of websocket)."""
        if ctx.framing is None or ctx.struct_format is not None:
            return reg.auto(content, ctx)
        lane = (ctx.conn_id, ctx.direction)
        memo = self._sure
        hit = memo.get(lane)
        if hit is not None and hit[0] is reg._scorers and hit[1] == reg._generation:
            decoder = hit[3]
            try:
                same = decoder.confidence(content, ctx) == hit[2]
            except Exception:  # a plugin's bug: as auto would, take it as "cannot"
                same = False
            if same:
                view = reg._decode_by(decoder, content, ctx)
                if view.error is None:
                    return view
        view = reg.auto(content, ctx)
        if view.error is None:
            ranked = reg._ranked(content, ctx)
            if ranked and ranked[0][1] == view.decoder and ranked[0][0] >= 0.8:
                if len(memo) >= _SURE_MAX:
                    memo.clear()
                memo[lane] = (reg._scorers, reg._generation, ranked[0][0], ranked[0][2])
            elif hit is not None:
                memo.pop(lane, None)
        return view

    def _editable(self, h: Header, payload: bytes, content: bytes | None, opcode: int,
                  inner: View | None) -> str | None:
        if h.control:
            if h.length > 125:
                return None
            if h.opcode == 8:
                if len(payload) == 1:
                    return None
                body = "" if not payload else (f"{struct.unpack('!H', payload[:2])[0]} "
                                               f"{payload[2:].decode('utf-8', 'replace')}").rstrip()
                return f"{_HEADER} close\n{body}"
            try:
                return f"{_HEADER} {_OPCODES[h.opcode]}\n{payload.decode('utf-8')}"
            except UnicodeDecodeError:
                return f"{_HEADER} {_OPCODES[h.opcode]} as=hex\n{payload.hex(' ')}"
        if content is None:
            return None
        op = _OPCODES[opcode]
        fin = "" if h.fin else " fin=0"
        note = " (was compressed: goes out uncompressed)" if h.rsv1 else ""
        if inner is not None and inner.can_encode and inner.editable is not None and inner.decoder != "text":
            return f"{_HEADER} {op}{fin} as={inner.decoder}{note}\n{inner.editable}"
        if opcode == 1:
            return f"{_HEADER} {op}{fin}{note}\n{content.decode('utf-8', 'replace')}"
        return f"{_HEADER} {op}{fin} as=hex{note}\n{content.hex(' ')}"

    # -- encoding

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        """A whole frame for the editable form (see the module docstring); raises :class:`EncodeError`."""
        first, _nl, body = edited.partition("\n")
        opcode, fin, as_ = 1, True, None
        if first.startswith(_HEADER):
            words = first[len(_HEADER):].split("(")[0].split()
            if words:
                if words[0] not in _BY_NAME:
                    raise EncodeError(f"unknown opcode {words[0]!r}: use text, binary, ping, pong, close or "
                                      "continuation")
                opcode = _BY_NAME[words[0]]
            for w in words[1:]:
                k, _eq, v = w.partition("=")
                if k == "fin" and v in ("0", "1"):
                    fin = v == "1"
                elif k == "as" and v:
                    as_ = v
                else:
                    raise EncodeError(f"unknown word {w!r} on the '# websocket' line (use fin=0 or as=DECODER)")
        else:
            body = edited
        if opcode == 8:
            payload = self._close_payload(body)
        elif as_ == "hex":
            try:
                payload = bytes.fromhex(body)
            except ValueError as e:
                raise EncodeError(f"not hex: {e}") from None
        elif as_ is not None:
            payload = self.registry.encode(as_, body, ctx)
        else:
            payload = body.encode("utf-8")
        if opcode >= 8 and len(payload) > 125:
            raise EncodeError(f"a {_OPCODES[opcode]} frame carries at most 125 bytes (RFC 6455 5.5); this one "
                              f"has {len(payload)}")
        if opcode >= 8 and not fin:
            raise EncodeError("control frames cannot be fragmented (fin=0)")
        if opcode == 1 and as_ not in (None, "text", "json"):
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise EncodeError("a text frame must be UTF-8: use '# websocket binary' for bytes") from None
        mask = ctx.direction is Direction.C2S
        return Frame(Opcode(opcode), payload, fin=fin).serialize(mask=mask)

    @staticmethod
    def _close_payload(body: str) -> bytes:
        text = body.strip()
        if not text:
            return b""
        code_text, _, reason = text.partition(" ")
        try:
            code = int(code_text)
        except ValueError:
            raise EncodeError(f"a close frame is written 'CODE reason', e.g. '1000 bye'; got {code_text!r}") from None
        if not 0 <= code < 65536:
            raise EncodeError(f"close code {code} does not fit 2 bytes")
        return struct.pack("!H", code) + reason.strip().encode("utf-8")


def _shift(f: Field, by: int | None) -> Field:
    if by is None:
        return Field(f.name, f.value_repr, None, None, tuple(_shift(c, None) for c in f.children))
    return Field(f.name, f.value_repr, None if f.start is None else f.start + by,
                 None if f.end is None else f.end + by, tuple(_shift(c, by) for c in f.children))

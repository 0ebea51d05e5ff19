"""WebSocket on TCP (RFC 6455, RFC 7692): the ``websocket`` framer, and what the relay needs to keep a compressed
direction right when a message is dropped, edited or duplicated.

Role: :class:`WebSocketFramer` cuts a direction's bytes into the relay's messages: the HTTP Upgrade head (the
client's ``GET`` request or the server's ``101 Switching Protocols`` response) as one message, then **one message
per WebSocket frame**, header and (still masked, still compressed) payload exactly as on the wire. A frame is the
relay's unit because it is the wire's: control frames (ping, pong, close) may come between the fragments of a data
message and must reach the peer in that order, so a fragmented message is several messages, and holding, dropping
or editing acts on one frame. Reassembling fragments and inflating permessage-deflate happen for display in the
inspector (``inspector/decode/_websocket.py``), not here. Like every framer, it never changes a byte, its work is
bounded by the bytes fed (a frame header is read once, however the frame is split), a frame declaring more than
``max_frame`` makes it give up at once (the bytes then go on raw), and bytes that cannot be WebSocket (a reserved
opcode, a 64-bit length with its top bit set, a refused upgrade) make it give up with the reason.

Compression and the relay (the "wire"): with permessage-deflate and context takeover, each compressed message may
refer back to the bytes of the messages before it, so the receiver's inflater must see every compressed message
the sender sent, in order. Dropping, editing or duplicating one would silently corrupt what follows. So the framer
follows each direction's compression: it inflates every compressed data frame as it frames it (on the relay's
thread, capped: at most ``TRACK_MESSAGE_MAX`` bytes out per message and ``TRACK_RATIO`` times the compressed
bytes in, so a decompression bomb costs what its bytes are worth; past the cap it stops following and says so).
The relay tells it what happened to each frame (:meth:`outgoing` when one is written, :meth:`dropped`,
:meth:`replaced` for an edit). Until something is dropped, edited or duplicated, every frame goes out as it came.
Once one compressed message did not reach the receiver as sent, every later compressed message of that direction
is forwarded **uncompressed** (RSV1 clear, re-masked with a fresh key from client to server): an uncompressed
message never touches the receiver's inflate context, so the receiver reads exactly what the sender meant. A
duplicated compressed message is sent uncompressed for the same reason. :attr:`notes` says so, once each, for
the relay's notices.

Must not import: Qt, ``inspector``, asyncio, sockets, ``time``.
Thread: engine loop thread; pure objects owned by one relay.
"""

from __future__ import annotations

import os
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from proxy.framing import DEFAULT_MAX_FRAME, register_framer

__all__ = [
    "HEAD_MAX",
    "OPCODE_NAMES",
    "TRACK_MESSAGE_MAX",
    "TRACK_RATIO",
    "Handshake",
    "WebSocketFramer",
    "build_frame",
    "looks_like_upgrade",
    "parse_head",
    "unmask",
]

HEAD_MAX: Final = 16 << 10
"""Longest HTTP head (request or response line and headers) waited for; browsers send about 500 bytes."""
TRACK_MESSAGE_MAX: Final = 1 << 20
"""Most bytes one compressed message is inflated to while the framer follows a direction's compression."""
TRACK_RATIO: Final = 256
"""A direction's inflated bytes stay under this many times its compressed bytes (plus ``TRACK_MESSAGE_MAX``):
a decompression bomb stops the following instead of costing the relay's thread more than its bytes are worth."""

OPCODE_NAMES: Final = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
_VALID_OPCODES: Final = frozenset(OPCODE_NAMES)
_TAIL: Final = b"\x00\x00\xff\xff"
"""RFC 7692 7.2.2: the end of a flushed deflate block, stripped by the sender, appended again to inflate."""

_START, _HEAD, _FRAMES = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Handshake:
    """An HTTP Upgrade head, as far as the framer needs it."""

    request: bool
    """The client's request (``GET``); else the server's response."""
    first_line: str
    status: int
    """The response's status code (0 for a request)."""
    headers: tuple[tuple[str, str], ...]
    """Names lower-cased, values as sent (stripped), in order."""

    def header(self, name: str) -> str | None:
        """The values of header ``name`` joined by ``, `` (as HTTP allows), or None."""
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    @property
    def upgrades_to_websocket(self) -> bool:
        up = self.header("upgrade") or ""
        return "websocket" in up.lower()

    def deflate(self) -> dict[str, str | None] | None:
        """The permessage-deflate parameters (names lower-cased; None for a parameter without a value) of the
        first permessage-deflate offer or answer, or None without one."""
        ext = self.header("sec-websocket-extensions")
        if not ext:
            return None
        for offer in ext.split(","):
            parts = [p.strip() for p in offer.split(";")]
            if parts[0].lower() != "permessage-deflate":
                continue
            params: dict[str, str | None] = {}
            for p in parts[1:]:
                if not p:
                    continue
                k, eq, v = p.partition("=")
                params[k.strip().lower()] = v.strip().strip('"') if eq else None
            return params
        return None


def looks_like_upgrade(data: bytes | bytearray) -> bool:
    """Whether ``data`` starts like an HTTP Upgrade head: ``GET `` or ``HTTP/1.``."""
    return data[:4] == b"GET " or data[:7] == b"HTTP/1."


def parse_head(head: bytes | bytearray) -> Handshake:
    """An HTTP head (up to and including its blank line) as a :class:`Handshake`; ``ValueError`` says why not."""
    try:
        text = bytes(head).decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise ValueError("the HTTP head is not text") from None
    lines = text.split("\r\n")
    first = lines[0]
    request = first.startswith("GET ")
    status = 0
    if not request:
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise ValueError(f"not an HTTP request or response line: {first[:60]!r}")
        status = int(parts[1])
    elif not first.endswith((" HTTP/1.1", " HTTP/1.0")):
        raise ValueError(f"not an HTTP/1.1 request line: {first[:60]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"not an HTTP header line: {line[:60]!r}")
        headers.append((name.lower(), value.strip()))
    return Handshake(request, first, status, tuple(headers))


def unmask(data: bytes | bytearray | memoryview, key: bytes | bytearray) -> bytes:
    """``data`` XOR the 4-byte masking ``key`` repeated (RFC 6455 5.3): masking and unmasking are the same.
    One big-integer XOR: C speed for any length, without a dependency on the relay's thread."""
    n = len(data)
    if not n:
        return b""
    k = bytes(key) * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(k[:n], "little")).to_bytes(n, "little")


def build_frame(fin: bool, opcode: int, payload: bytes, mask: bool, rsv1: bool = False,
                key: bytes | None = None) -> bytes:
    """One frame: header (7-, 16- or 64-bit length) and payload, masked with ``key`` (a fresh random key when
    None) when ``mask`` (client to server)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 1 << 16:
        head = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    if key is None:
        key = os.urandom(4)
    return head + key + unmask(payload, key)


@dataclass(slots=True)
class _Out:
    """A compressed data frame the framer cut, with what it inflates to, until it is written or dropped."""

    frame: bytes
    plain: bytes
    opcode: int
    """The frame's own opcode: 1 or 2 on a message's first frame, 0 on a continuation."""
    fin: bool
    masked: bool
    edited: bool = False


@dataclass(slots=True)
class _Follow:
    """What the framer knows of its direction's compression."""

    inflater: zlib._Decompress | None = None
    in_message: bool = False  # a data message has begun and not ended (its FIN frame not seen yet)
    compressed: bool = False  # the current (or last) data message has RSV1 on its first frame
    takeover: bool = True  # the sender may refer back to earlier messages (unless its handshake said not)
    lost: str | None = None  # why the framer stopped following the compression
    credit: int = TRACK_MESSAGE_MAX
    message_out: int = 0
    pending: deque[_Out] = field(default_factory=deque)


class WebSocketFramer:
    """The ``websocket`` framing: the HTTP Upgrade head, then one message per frame (see the module docstring)."""

    name = "websocket"
    slice_bytes = 0
    can_hold = True

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.fallback: str | None = None
        self._buf = bytearray()
        self._state = _START
        self._total = 0  # the frame being received, once its header was read (0: not yet)
        self._scanned = 0  # head bytes known to hold no blank line
        self.work = 0
        """Bytes looked at, plus one per call: framing stays O(n) however the stream is split (tests assert it)."""
        self.handshake: Handshake | None = None
        """The Upgrade head this direction began with, when the framer saw it."""
        self.frames = 0
        """Frames cut so far (not counting the head)."""
        self._follow = _Follow()
        self._altered = False  # a compressed message did not reach the receiver as the sender sent it
        self._last: _Out | None = None  # the last followed frame written (a duplicate of it comes next)
        self.notes: list[str] = []
        """Things the relay should tell the user (one line each), taken and cleared by it."""
        self._said: set[str] = set()

    # ------------------------------------------------------------------------------------------ framing

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def remaining(self) -> int | None:
        return self._total - len(self._buf) if self._total else None

    def flush(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        self._total = 0
        self._scanned = 0
        return rest

    def _give_up(self, reason: str, out: list[bytes]) -> list[bytes]:
        self.fallback = f"websocket framing gave up: {reason}; the bytes were passed on raw"
        rest = self.flush()
        if rest:
            out.append(rest)
        self._follow.pending.clear()
        return out

    def feed(self, data: bytes) -> list[bytes]:
        if self.fallback is not None:
            return [data] if data else []
        buf = self._buf
        buf += data
        out: list[bytes] = []
        self.work += 1
        total = self._total
        if total and len(buf) < total:
            return out  # the rest of a frame whose header was read: nothing to look at again
        while buf:
            state = self._state
            if state == _FRAMES:
                n = len(buf)
                if not total:
                    if n < 2:
                        break
                    b0 = buf[0]
                    if (b0 & 0x0F) not in _VALID_OPCODES:
                        return self._give_up(f"reserved opcode {b0 & 0x0F} in frame {self.frames + 1} (not "
                                             "WebSocket, or an extension sockscope does not know)", out)
                    b1 = buf[1]
                    length = b1 & 0x7F
                    head = 2
                    if length == 126:
                        if n < 4:
                            break
                        length = (buf[2] << 8) | buf[3]
                        head = 4
                    elif length == 127:
                        if n < 10:
                            break
                        length = int.from_bytes(buf[2:10], "big")
                        head = 10
                        if length >> 63:
                            return self._give_up(f"frame {self.frames + 1} declares a 64-bit length with its top "
                                                 "bit set (RFC 6455 5.2 forbids it)", out)
                    if b1 & 0x80:
                        head += 4
                    self.work += head
                    total = head + length
                    if total > self.max_frame:
                        return self._give_up(f"frame {self.frames + 1} declares {length} bytes, more than the "
                                             f"{self.max_frame}-byte cap", out)
                if n < total:
                    self._total = total
                    break
                if n == total:
                    frame = bytes(buf)
                    buf.clear()
                else:
                    frame = bytes(buf[:total])
                    del buf[:total]
                self._total = total = 0
                self.frames += 1
                out.append(frame)
                if frame[0] & 0x70 or self._follow.in_message:
                    self._follow_frame(frame)
                elif frame[0] & 0x0F in (1, 2):
                    self._follow.compressed = False
                    self._follow.in_message = not frame[0] & 0x80
            elif state == _START:
                self._state = _HEAD if (buf[0] == 0x47 or buf[0] == 0x48) else _FRAMES  # "G"ET, "H"TTP/1.1
            else:
                end = buf.find(b"\r\n\r\n", self._scanned)
                if end < 0:
                    self.work += len(buf) - self._scanned + 1
                    if len(buf) > HEAD_MAX:
                        return self._give_up(f"an HTTP head longer than {HEAD_MAX} bytes", out)
                    self._scanned = max(0, len(buf) - 3)
                    break
                end += 4
                self.work += end - self._scanned
                self._scanned = 0
                head_bytes = bytes(buf[:end])
                del buf[:end]
                out.append(head_bytes)
                why = self._handshake(head_bytes)
                if why is not None:
                    return self._give_up(why, out)
                self._state = _FRAMES
        return out

    def _handshake(self, head: bytes) -> str | None:
        """Take in the Upgrade head; why the stream is not WebSocket after it, or None."""
        try:
            hs = parse_head(head)
        except ValueError as e:
            return str(e)
        self.handshake = hs
        if not hs.request and hs.status != 101:
            return f"the server answered {hs.first_line[:60]!r}, not 101 Switching Protocols"
        if not hs.upgrades_to_websocket:
            return f"{hs.first_line[:60]!r} does not upgrade to websocket"
        params = hs.deflate()
        if not hs.request and params is not None and "server_no_context_takeover" in params:
            self._follow.takeover = False  # this direction's sender starts every message afresh
        return None

    # ------------------------------------------------------------------------------------------ the wire

    def _note(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.notes.append(text)

    def _follow_frame(self, frame: bytes) -> None:
        """A data frame of a compressed message, or a frame with reserved bits (see the module docstring)."""
        f = self._follow
        b0 = frame[0]
        op = b0 & 0x0F
        if op >= 8:
            return  # control frames are never compressed, and may come between fragments
        if op != 0:
            f.compressed = bool(b0 & 0x40)
            f.message_out = 0
        f.in_message = not b0 & 0x80
        if not f.compressed or f.lost is not None or not f.takeover:
            return
        b1 = frame[1]
        length = b1 & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        masked = bool(b1 & 0x80)
        payload: bytes | memoryview = memoryview(frame)[head + 4:] if masked else memoryview(frame)[head:]
        if masked:
            payload = unmask(payload, frame[head:head + 4])
        fin = bool(b0 & 0x80)
        if f.inflater is None:
            f.inflater = zlib.decompressobj(-15)
        f.credit = min(f.credit + TRACK_RATIO * len(payload), TRACK_RATIO * self.max_frame)
        allow = min(TRACK_MESSAGE_MAX - f.message_out, f.credit)
        if allow <= 0:  # (zlib reads a max_length of 0 as "no limit")
            self._lose("the compressed messages inflate past the proxy's budget (a decompression bomb?)")
            return
        try:
            plain = f.inflater.decompress(bytes(payload), allow)
            if fin and not f.inflater.unconsumed_tail:
                plain += f.inflater.decompress(_TAIL, max(1, allow - len(plain)))
        except zlib.error as e:
            self._lose(f"frame {self.frames} does not inflate ({e}): not permessage-deflate?")
            return
        if f.inflater.unconsumed_tail or len(plain) >= allow:
            self._lose(f"a message inflates past {allow} bytes (a decompression bomb, or a huge message)")
            return
        f.credit -= len(plain)
        f.message_out += len(plain)
        f.pending.append(_Out(frame, plain, op, fin, masked))

    def _lose(self, why: str) -> None:
        f = self._follow
        f.lost = why
        f.inflater = None
        if self._altered:
            self._note("lost", f"sockscope stopped following this direction's compression ({why}): later compressed "
                               "messages go on as they came, and the receiver may fail to inflate them")

    def _alter(self, how: str, whole: bool) -> None:
        if not self._altered:
            self._altered = True
            self._note("altered", f"a compressed message was {how}: later compressed messages go out uncompressed "
                                  "(RSV1 clear), inflated by sockscope, so that the receiver, whose inflate context "
                                  "no longer matches the sender's, still reads them right")
        if not whole:
            self._note("fragment", f"a fragment of a fragmented message was {how}: the receiver sees that message "
                                   "broken")
        if self._follow.lost is not None:
            self._note("lost", "sockscope no longer follows this direction's compression "
                               f"({self._follow.lost}): the receiver may fail to inflate the messages that follow")

    def _find(self, data: bytes) -> int:
        for i, e in enumerate(self._follow.pending):
            if e.frame is data:
                return i
        return -1

    def outgoing(self, data: bytes) -> bytes:
        """The bytes to write for message ``data`` (a frame this framer cut, an edit, an injected or duplicated
        message): ``data`` itself, unless a compressed message must go out uncompressed (module docstring)."""
        pending = self._follow.pending
        if not pending and self._last is None:
            return data
        i = 0 if pending and pending[0].frame is data else self._find(data)
        if i < 0:
            last = self._last
            if last is not None and last.frame is data and not last.edited:
                if last.opcode and last.fin:  # a whole compressed message sent twice: the copy goes uncompressed
                    self._note("duplicate", "a duplicated compressed message was sent uncompressed (RSV1 clear): "
                                            "inflating it twice would corrupt the receiver's inflate context")
                    return build_frame(True, last.opcode, last.plain, last.masked)
                self._alter("duplicated", False)
            return data  # not one of ours: injected, edited, or not compressed
        for _ in range(i):  # frames cut before this one that were never written: dropped
            gone = pending.popleft()
            self._alter("dropped", gone.opcode != 0 and gone.fin)
        e = pending.popleft()
        self._last = e
        if e.edited or not self._altered:
            return e.frame
        return build_frame(e.fin, e.opcode, e.plain, e.masked)

    def dropped(self, data: bytes) -> None:
        """Message ``data`` was dropped (never written)."""
        i = self._find(data)
        if i >= 0:
            e = self._follow.pending[i]
            del self._follow.pending[i]
            self._alter("dropped", e.opcode != 0 and e.fin)

    def replaced(self, old: bytes, new: bytes) -> None:
        """Message ``old`` was edited into ``new`` (to be written in its place)."""
        i = self._find(old)
        if i >= 0:
            e = self._follow.pending[i]
            self._alter("edited", e.opcode != 0 and e.fin)
            e.frame, e.edited = new, True

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes


register_framer("websocket", WebSocketFramer)

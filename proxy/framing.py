"""Framing: decides what one "message" is in a byte stream, per direction. Framing never changes bytes.

Role: pure, incremental framers. ``feed(data)`` returns the complete frames found so far (concatenating every
frame ever returned, plus ``flush()`` at the end, gives back exactly the bytes fed). Each framer caps the size
of one frame (``max_frame``); past the cap, or when the stream is not what the framing says (bad msgpack, bad
JSON), the framer falls back to ``raw`` for the rest of the stream and sets ``fallback`` to a human-readable
reason the relay publishes once. Nothing is lost or reordered by a fallback.

Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: engine loop thread; pure objects owned by one relay.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Protocol

import msgpack

from proxy.model import Direction

DEFAULT_MAX_FRAME = 16 * 1024 * 1024

FRAMING_NAMES = ("raw", "lines", "len16", "len16be", "len16le", "len32", "len32be", "len32le", "fixed:N",
                 "msgpack", "json")


class FramingError(ValueError):
    """A framing specification that cannot be parsed (user input)."""


class Framer(Protocol):
    name: str
    fallback: str | None
    """Set once when the framer gave up on its framing and passes the rest of the stream on raw."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def flush(self) -> bytes:
        """Bytes of an incomplete frame at end of stream (possibly empty); the framer is then empty."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        ...


class RawFramer:
    """Each read is a message: exactly what a learner's ``recv()`` would see."""

    __slots__ = ("fallback", "name")

    def __init__(self) -> None:
        self.name = "raw"
        self.fallback: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        return [data] if data else []

    def flush(self) -> bytes:
        return b""

    @property
    def buffered(self) -> int:
        return 0


class _BufferedFramer:
    """Shared buffer handling: subclasses implement ``_scan`` returning the end offset of the next frame."""

    name = "?"

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.fallback: str | None = None
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _scan(self, buf: bytearray) -> int | None:
        """Length of the first complete frame at the start of ``buf``, or None if more bytes are needed.

        May raise ``ValueError`` when the stream is not valid for this framing.
        """
        raise NotImplementedError

    def _give_up(self, reason: str) -> list[bytes]:
        self.fallback = f"{self.name} framing gave up: {reason}; passing the rest of this direction on raw"
        rest = bytes(self._buf)
        self._buf.clear()
        return [rest] if rest else []

    def feed(self, data: bytes) -> list[bytes]:
        if self.fallback is not None:
            return [data] if data else []
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            try:
                n = self._scan(buf)
            except ValueError as e:
                out.extend(self._give_up(str(e)))
                return out
            if n is None:
                if len(buf) > self.max_frame:
                    out.extend(self._give_up(f"frame larger than the {self.max_frame}-byte cap"))
                break
            if n > self.max_frame:
                out.extend(self._give_up(f"a {n}-byte frame exceeds the {self.max_frame}-byte cap"))
                break
            if n == len(buf):
                out.append(bytes(buf))
                buf.clear()
            else:
                out.append(bytes(buf[:n]))
                del buf[:n]
        return out

    def flush(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class LinesFramer(_BufferedFramer):
    """One message per ``\\n``-terminated line (the newline stays in the message)."""

    name = "lines"

    def __init__(self, max_frame: int) -> None:
        super().__init__(max_frame)
        self._scanned = 0  # bytes already known to hold no newline: keeps total work O(n)

    def _scan(self, buf: bytearray) -> int | None:
        i = buf.find(b"\n", self._scanned)
        if i < 0:
            self._scanned = len(buf)
            return None
        self._scanned = 0
        return i + 1


class LengthPrefixFramer(_BufferedFramer):
    """A 2- or 4-byte unsigned length prefix (big or little endian) counting the payload after it."""

    def __init__(self, width: int, endian: str, max_frame: int) -> None:
        super().__init__(max_frame)
        self.name = f"len{width * 8}{endian}"
        self._hdr = struct.Struct(("!" if endian == "be" else "<") + ("H" if width == 2 else "I"))

    def _scan(self, buf: bytearray) -> int | None:
        hs = self._hdr.size
        if len(buf) < hs:
            return None
        n: int = self._hdr.unpack_from(buf)[0]
        total = hs + n
        if total > self.max_frame:
            return total  # the base class turns this into a fallback before buffering the whole frame
        return total if len(buf) >= total else None


class FixedFramer(_BufferedFramer):
    """Fixed-size records of ``size`` bytes."""

    def __init__(self, size: int, max_frame: int) -> None:
        super().__init__(max_frame)
        self.name = f"fixed:{size}"
        self.size = size

    def _scan(self, buf: bytearray) -> int | None:
        return self.size if len(buf) >= self.size else None


class MsgpackFramer(_BufferedFramer):
    """One message per msgpack object in a stream of concatenated objects."""

    name = "msgpack"

    def __init__(self, max_frame: int) -> None:
        super().__init__(max_frame)
        # One streaming Unpacker for the whole stream: it only skips objects, and tell() gives each object's
        # absolute end offset, so every byte is looked at once however the stream is split.
        self._up = msgpack.Unpacker(max_buffer_size=max_frame + (1 << 20), raw=True, strict_map_key=False)
        self._consumed = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self.fallback is not None:
            return [data] if data else []
        buf = self._buf
        buf += data
        out: list[bytes] = []
        try:
            self._up.feed(data)
            while True:
                try:
                    self._up.skip()
                except msgpack.OutOfData:
                    break
                end: int = self._up.tell()
                n = end - self._consumed
                self._consumed = end
                if n > self.max_frame:
                    out.extend(self._give_up(f"a {n}-byte frame exceeds the {self.max_frame}-byte cap"))
                    return out
                out.append(bytes(buf[:n]))
                del buf[:n]  # CPython bytearray deletes from the front in O(1)
        except (msgpack.BufferFull, msgpack.FormatError, msgpack.StackError, ValueError) as e:
            out.extend(self._give_up(f"not msgpack ({type(e).__name__}: {e})"))
            return out
        if len(buf) > self.max_frame:
            out.extend(self._give_up(f"frame larger than the {self.max_frame}-byte cap"))
        return out


_WS = frozenset(b" \t\r\n")
_NUMBER_START = frozenset(b"-0123456789")
_LITERAL = re.compile(rb"true|false|null")


class JsonFramer(_BufferedFramer):
    """One message per JSON value in concatenated JSON or NDJSON; whitespace after a value belongs to it.

    A scanner tracks nesting and strings so it finds value boundaries without parsing twice; each complete
    frame is then validated with ``json.loads`` so a stream that is not JSON falls back to raw.
    """

    name = "json"

    def __init__(self, max_frame: int) -> None:
        super().__init__(max_frame)
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._pos = 0  # how far the scanner has looked
        self._depth = 0
        self._in_str = False
        self._escape = False
        self._started = False
        self._value_start = 0

    def _scan(self, buf: bytearray) -> int | None:
        n = len(buf)
        i = self._pos
        if not self._started:
            while i < n and buf[i] in _WS:
                i += 1
            if i == n:
                # whitespace alone is passed on at once so no byte waits for a value that may never come
                self._pos = 0
                return n if n else None
            self._started = True
            self._value_start = i
            c = buf[i]
            if c not in b"{[\"" and c not in _NUMBER_START and c not in b"tfn":
                raise ValueError(f"byte {bytes([c])!r} cannot start a JSON value")
        start = self._value_start
        first = buf[start]
        end: int | None = None
        if first in b"{[" or first == 0x22:  # container or string: track depth and strings
            depth, in_str, esc = self._depth, self._in_str, self._escape
            if i == start:
                depth, in_str, esc = 0, False, False
            while i < n:
                c = buf[i]
                i += 1
                if in_str:
                    if esc:
                        esc = False
                    elif c == 0x5C:
                        esc = True
                    elif c == 0x22:
                        in_str = False
                        if depth == 0:
                            end = i
                            break
                elif c == 0x22:
                    in_str = True
                elif c in b"{[":
                    depth += 1
                elif c in b"}]":
                    depth -= 1
                    if depth == 0:
                        end = i
                        break
            self._depth, self._in_str, self._escape = depth, in_str, esc
        else:  # number or literal: ends at whitespace or a structural character
            while i < n and buf[i] not in _WS and buf[i] not in b"{[\"]},":
                i += 1
            if i < n:
                end = i
            elif first in b"tfn" and _LITERAL.fullmatch(bytes(buf[start:i])):
                end = i  # a complete literal needs no terminator
        if end is None:
            self._pos = i
            return None
        try:
            json.loads(bytes(buf[start:end]))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"not JSON ({e})") from None
        while end < n and buf[end] in _WS:
            end += 1
        self._reset_scan()
        return end


@dataclass(frozen=True, slots=True)
class FramingSpec:
    """The framing chosen for each direction of new connections."""

    c2s: str = "raw"
    s2c: str = "raw"
    max_frame: int = DEFAULT_MAX_FRAME

    def for_direction(self, direction: Direction) -> str:
        return self.c2s if direction is Direction.C2S else self.s2c

    def make(self, direction: Direction) -> Framer:
        return make_framer(self.for_direction(direction), self.max_frame)

    def __str__(self) -> str:
        return self.c2s if self.c2s == self.s2c else f"c2s={self.c2s},s2c={self.s2c}"


def _normalise(name: str) -> str:
    n = name.strip().lower()
    if n in ("len16", "len32"):
        n += "be"
    return n


def make_framer(name: str, max_frame: int = DEFAULT_MAX_FRAME) -> Framer:
    """Build a framer from a name such as ``raw``, ``lines``, ``len32be``, ``fixed:12``, ``msgpack``."""
    n = _normalise(name)
    if n == "raw":
        return RawFramer()
    if n == "lines":
        return LinesFramer(max_frame)
    if n == "msgpack":
        return MsgpackFramer(max_frame)
    if n == "json":
        return JsonFramer(max_frame)
    m = re.fullmatch(r"len(16|32)(be|le)", n)
    if m:
        return LengthPrefixFramer(int(m.group(1)) // 8, m.group(2), max_frame)
    m = re.fullmatch(r"fixed:(\d+)", n)
    if m:
        size = int(m.group(1))
        if not 1 <= size <= max_frame:
            raise FramingError(f"fixed:N needs 1 <= N <= {max_frame}, got {size}")
        return FixedFramer(size, max_frame)
    raise FramingError(f"unknown framing {name!r}; expected one of: {', '.join(FRAMING_NAMES)}")


def parse_framing(text: str, max_frame: int = DEFAULT_MAX_FRAME) -> FramingSpec:
    """Parse ``len32be`` (both directions) or ``c2s=fixed:12,s2c=fixed:40``; validates every name."""
    text = text.strip()
    if not text:
        raise FramingError("empty framing; e.g. --framing lines or --framing c2s=fixed:12,s2c=raw")
    if "=" not in text:
        make_framer(text, max_frame)
        n = _normalise(text)
        return FramingSpec(n, n, max_frame)
    parts: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("c2s", "s2c"):
            raise FramingError(f"bad framing part {item!r}; e.g. --framing c2s=fixed:12,s2c=lines")
        make_framer(value, max_frame)
        parts[key] = _normalise(value)
    return FramingSpec(parts.get("c2s", "raw"), parts.get("s2c", "raw"), max_frame)

"""The control protocol's wire: frames, the protocol version, every limit, and the one frame reader of both ends.

Role: a frame is a u32 big-endian length followed by that many bytes of one msgpack map (docs/protocol.md).
Session files (:mod:`proxy.session`) store records in the same frames. This module packs frames
(:func:`pack_frame`, and :func:`pack_framed` which keeps a large payload as a piece of its own), cuts a byte
stream back into frames (:class:`FrameReader`, used by the endpoint and by the client alike), decodes a frame with
limits relative to its size (:func:`unpack_frame`), and reads the small auth frame an unauthenticated client
sends (:func:`decode_auth`). Nothing here knows what a frame means.

Limits, all checked here or from here:

- :data:`MAX_FRAME`: the largest frame either end accepts (the proxy never sends a bigger one: larger payloads
  arrive truncated, see :mod:`proxy.control.endpoint`);
- :data:`AUTH_MAX_FRAME`, :data:`AUTH_MAX_KEYS`: what a client may send before it has authenticated;
- :data:`HELLO_MAX_FRAME`: what a client accepts before the proxy's ``hello``;
- :data:`SMALL_FRAME`, :data:`CONTAINER_FLOOR`, :data:`CONTAINER_RATIO`: what decoding a frame may cost;
- :data:`COMMAND_MAX_DEPTH`: how deeply a command may nest containers.

Must not import: Qt, ``inspector``, asyncio, the engine (this is pure bytes and msgpack).
Thread: any; a :class:`FrameReader` belongs to one reading thread.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from typing import Any, Final

import msgpack

__all__ = [
    "AUTH_MAX_FRAME",
    "AUTH_MAX_KEYS",
    "COMMAND_MAX_DEPTH",
    "CONTAINER_FLOOR",
    "CONTAINER_RATIO",
    "HELLO_MAX_FRAME",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "SMALL_FRAME",
    "SPLICE_MIN",
    "FrameLimitError",
    "FrameReader",
    "FrameTooLarge",
    "decode_auth",
    "nesting_exceeds",
    "new_token",
    "pack_frame",
    "pack_framed",
    "unpack_frame",
]

PROTOCOL_VERSION: Final = 1
"""Every frame's ``"v"``; it changes only for incompatible changes."""
MAX_FRAME: Final = 64 << 20
"""The largest frame either end accepts (an inject or an edit carries at most this much data)."""
AUTH_MAX_FRAME: Final = 4096
"""The largest first (auth) frame: checked from its length prefix, before a byte of it is buffered or decoded. Until
a client has authenticated it costs the proxy at most this much memory, and its frame is decoded as a flat map of at
most :data:`AUTH_MAX_KEYS` scalars (:func:`decode_auth`)."""
AUTH_MAX_KEYS: Final = 16
HELLO_MAX_FRAME: Final = 1 << 20
"""The first frame a client accepts (``hello``, or a ``bye`` saying why not) is a few KiB. Until it has come,
whatever answers on the port may not be a sockscope proxy at all, so a bigger claim ends the connection before
anything is allocated."""
COMMAND_MAX_DEPTH: Final = 32
"""Containers nested deeper than this in a command are refused with an error reply (the deepest real command,
``set_conditions``, nests 4): handlers and error messages never meet a structure deep enough to hurt."""
SPLICE_MIN: Final = 16 << 10
"""Payloads at least this big are not copied into a packed frame but kept as a piece of their own."""

_U32: Final = struct.Struct(">I")
_BIN32: Final = b"\xc6"  # msgpack bin 32


# ------------------------------------------------------------------------------------------------ packing


def pack_frame(obj: dict[str, Any]) -> bytes:
    """One frame: u32 big-endian length, then the msgpack map (bytes as ``bin``). Values must be plain
    (str, int, float, bool, None, bytes, lists, dicts): ``TypeError`` otherwise."""
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return _U32.pack(len(body)) + body


def pack_framed(packer: msgpack.Packer, d: dict[str, Any]) -> tuple[bytes, ...]:
    """``d`` as a frame (what :func:`pack_frame` makes), in pieces to write one after another (``writev``,
    ``writelines``).

    A ``"data"`` payload of at least :data:`SPLICE_MIN` bytes is one of the pieces, the very object given, not a
    copy: at bulk rates the copies, not the packing, are what costs. It is packed as ``bin 32``, which every
    msgpack reader accepts. Otherwise the result is one piece. ``packer`` must pack bytes as ``bin``.
    """
    data = d.get("data")
    if type(data) is not bytes or len(data) < SPLICE_MIN:
        body = packer.pack(d)
        return (_U32.pack(len(body)) + body,)
    pack = packer.pack
    head: list[bytes] = [packer.pack_map_header(len(d))]
    tail: list[bytes] = []
    into = head
    for k, v in d.items():
        if k == "data":
            head += [pack(k), _BIN32 + _U32.pack(len(data))]
            into = tail
        else:
            into += [pack(k), pack(v)]
    before, after = b"".join(head), b"".join(tail)
    return _U32.pack(len(before) + len(data) + len(after)) + before, data, after


# ------------------------------------------------------------------------------------------------ reading


class FrameTooLarge(ValueError):
    """A length prefix claims more than the reader's limit; the connection is over (nothing of it was buffered)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes is larger than the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FrameReader:
    """Cuts a byte stream into frame bodies, for a reader that receives straight into its memory.

    Receive into :meth:`get_buffer` (``sock.recv_into``, or ``asyncio.BufferedProtocol.get_buffer``), report how
    much arrived with :meth:`buffer_updated`, then take every whole frame with :meth:`frames`. Bodies are
    ``memoryview`` slices of the reader's memory, valid until the next :meth:`get_buffer`: decode them at once.

    Memory is one buffer of ``chunk`` bytes, plus, while a frame too big for it arrives, one buffer of exactly that
    frame's size. A frame whose length prefix exceeds :attr:`limit` raises :class:`FrameTooLarge` as soon as its
    four length bytes are in, before anything of it is allocated. ``limit`` may change between frames (the endpoint
    raises it once a client has authenticated).
    """

    __slots__ = ("_big", "_big_fill", "_buf", "_end", "_start", "_view", "limit")

    def __init__(self, limit: int, chunk: int) -> None:
        if chunk < 4:
            raise ValueError("a frame reader's chunk must hold a length prefix (4 bytes)")
        self.limit = limit
        self._buf = bytearray(chunk)
        self._view = memoryview(self._buf)
        self._start = 0  # first byte not yet taken as a frame
        self._end = 0  # first byte not yet received
        self._big: memoryview | None = None  # a frame too big for the buffer, being received
        self._big_fill = 0

    @property
    def capacity(self) -> int:
        """Bytes of memory this reader holds now."""
        return len(self._buf) + (len(self._big) if self._big is not None else 0)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as frames."""
        return self._big_fill if self._big is not None else self._end - self._start

    def get_buffer(self) -> memoryview:
        """Where the next bytes go (never empty)."""
        if self._big is not None:
            return self._big[self._big_fill:]
        if self._end == len(self._buf):  # full, with a partial frame at the end: move it to the front
            k = self._end - self._start
            self._buf[:k] = self._view[self._start:self._end]
            self._start, self._end = 0, k
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` arrived in the buffer :meth:`get_buffer` returned."""
        if self._big is not None:
            self._big_fill += nbytes
        else:
            self._end += nbytes

    def frames(self) -> Iterator[memoryview]:
        """Every whole frame body received so far, in order. Stop early and the rest stays for the next call."""
        big = self._big
        if big is not None:
            if self._big_fill < len(big):
                return
            self._big = None
            self._big_fill = 0
            yield big
            return
        view, pos, end = self._view, self._start, self._end
        unpack_from = _U32.unpack_from
        try:
            while end - pos >= 4:
                (n,) = unpack_from(view, pos)
                if n > self.limit:
                    raise FrameTooLarge(n, self.limit)
                stop = pos + 4 + n
                if stop > end:
                    if 4 + n > len(self._buf):  # it will never fit: receive the rest into a buffer of its own
                        have = end - pos - 4
                        big = memoryview(bytearray(n))
                        big[:have] = view[pos + 4:end]
                        self._big, self._big_fill = big, have
                        pos = end
                    break
                pos = stop
                yield view[stop - n:stop]
        finally:
            if pos == end:
                self._start = self._end = 0
            else:
                self._start = pos


# ------------------------------------------------------------------------------------------------ decoding
# A msgpack frame from a socket is decoded into Python objects, and an object costs far more than its bytes: an
# empty array is one byte on the wire and a 56-byte list (plus an 8-byte slot in its parent) in memory, so a
# 48 MiB frame of empty arrays would become gigabytes. Limits relative to the frame's size keep what a frame can
# cost near what it weighs. Nesting needs no limit here: msgpack's C unpacker keeps open containers on a fixed
# stack of 1,024 levels (no recursion) and raises ``StackError`` past it; code that walks decoded values must
# still never recurse on them (see ``nesting_exceeds``).

SMALL_FRAME: Final = 64 << 10
"""Frames up to this size are decoded with msgpack's own limits (each container at most as many items as the
frame has bytes): whatever they hold costs a few MiB at most, and the hot path pays nothing more."""
CONTAINER_FLOOR: Final = 4096
CONTAINER_RATIO: Final = 32
"""A bigger frame may hold at most ``CONTAINER_FLOOR + size // CONTAINER_RATIO`` arrays and maps in all (a
2,000-connection ``snapshot`` reply has one per ~50 bytes; a frame of empty arrays has one per byte)."""


class FrameLimitError(ValueError):
    """A frame holds more than its size allows (too many containers, a container longer than the frame)."""


def _limits(size: int) -> dict[str, int]:
    return {"max_str_len": size, "max_bin_len": size, "max_ext_len": size, "max_array_len": size,
            "max_map_len": size // 2}


def unpack_frame(data: bytes | bytearray | memoryview) -> Any:
    """Decode one frame body (``raw=False``, string map keys) with limits relative to its size.

    Raises ``FrameLimitError`` past a limit, ``msgpack.StackError`` past 1,024 nesting levels, and msgpack's
    other ``ValueError`` exceptions for malformed data. A frame of ``SMALL_FRAME`` bytes or less costs one C call.
    """
    size = memoryview(data).nbytes
    if size <= SMALL_FRAME:
        return msgpack.unpackb(data, raw=False)  # msgpack's defaults are the size-relative limits above
    left = CONTAINER_FLOOR + size // CONTAINER_RATIO

    def count(obj: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise FrameLimitError(f"a {size}-byte frame holds more than the limit of "
                                  f"{CONTAINER_FLOOR + size // CONTAINER_RATIO} arrays and maps")
        return obj

    try:
        return msgpack.unpackb(data, raw=False, list_hook=count, object_hook=count, **_limits(size))
    except ValueError as e:
        if "exceeds max_" in str(e):
            raise FrameLimitError(f"a {size}-byte frame is over a limit: {e}") from None
        raise


def nesting_exceeds(obj: object, limit: int) -> bool:
    """Whether ``obj`` (decoded msgpack: lists, tuples, dicts, scalars) nests containers deeper than ``limit``.

    Iterative, and stops at the first container past the limit: cost at most the number of objects.
    """
    stack: list[tuple[object, int]] = [(obj, 0)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, dict):
            children: Any = [*o.keys(), *o.values()]
        elif isinstance(o, list | tuple):
            children = o
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list | tuple))
    return False


# ------------------------------------------------------------------------------------------------ auth


def decode_auth(body: bytes | memoryview) -> dict[str, Any]:
    """The auth frame as a dict of at most ``AUTH_MAX_KEYS`` string keys to scalars (or empty containers).

    Read header by header with nested containers refused outright (``max_array_len=0``), so an unauthenticated
    client's frame costs a few dozen small objects at most, whatever it holds. ``ValueError`` says what is wrong.
    """
    size = memoryview(body).nbytes
    limit = max(1, size)
    up = msgpack.Unpacker(raw=False, max_buffer_size=limit, max_array_len=0, max_map_len=0, max_str_len=limit,
                          max_bin_len=limit, max_ext_len=limit)
    up.feed(body)
    try:
        n = up.read_map_header()
        if n > AUTH_MAX_KEYS:
            raise ValueError(f"the auth frame has {n} keys (at most {AUTH_MAX_KEYS})")
        obj: dict[str, Any] = {}
        for _ in range(n):
            key, value = up.unpack(), up.unpack()
            if not isinstance(key, str):
                raise ValueError(f"the auth frame has a {type(key).__name__} key; keys are strings")
            obj[key] = value
    except msgpack.OutOfData:
        raise ValueError("the frame ends inside a msgpack value") from None
    except ValueError as e:
        text = str(e)
        if "Unexpected type header" in text:
            raise ValueError(f"expected a map (the auth frame), got {_msgpack_kind(body)}") from None
        if "exceeds max_array_len" in text or "exceeds max_map_len" in text:
            raise ValueError("the auth frame must be a flat map of scalars") from None
        raise ValueError(text[:100]) from None
    except Exception as e:  # msgpack's FormatError and friends: never let a client's bytes raise out of here
        raise ValueError(f"not a msgpack value ({type(e).__name__})") from None
    if up.tell() != size:
        raise ValueError(f"{size - up.tell()} bytes after the auth map inside its frame")
    return obj


def _msgpack_kind(body: bytes | memoryview) -> str:
    b = body[0] if len(body) else -1
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        return "an array"
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        return "a string"
    if b in (0xC4, 0xC5, 0xC6):
        return "bytes"
    if 0xD4 <= b <= 0xD8 or b in (0xC7, 0xC8, 0xC9):
        return "an ext value"
    return "a scalar" if b >= 0 else "nothing"


def new_token() -> str:
    """A random token (128 bits, URL-safe) that never starts with ``-`` (a token pasted into a shell, say
    ``SOCKSCOPE_TOKEN=-abc``, is easier to get right without one)."""
    while True:
        token = secrets.token_urlsafe(16)
        if not token.startswith("-"):
            return token

"""Framing: decides what one "message" is in a byte stream, per direction. Framing never changes bytes.

Role: pure, incremental framers. ``feed(data)`` returns the complete frames found so far (concatenating every
frame ever returned, plus ``flush()`` at the end, gives back exactly the bytes fed). Each framer caps the size
of one frame (``max_frame``); past the cap, or when the stream is not what the framing says (bad msgpack, bad
JSON, a header that is no JSON map, nesting deeper than a framer can follow), the framer gives up: it passes
everything on raw from then on and sets ``fallback`` to a human-readable reason. Nothing is lost or reordered by
a fallback. What the relay does next (infer again, or wait raw for the framing to fit again: ``ResyncFramer``)
and the stall bound (an incomplete frame never waits more than 250 ms) live in ``proxy.relay``; framing
inference (``auto``) lives in ``proxy.inference``.

Framing names (``make_framer``): ``raw``; ``auto``; ``lines``; ``delim:ESC`` (a terminator written with Python
bytes escapes, e.g. ``delim:EOT\x00``); ``len8``, ``len16``/``len32``/``len64`` with ``be``/``le`` (a length
prefix counting the bytes after it; ``-incl``: counting itself too); ``fixed:N``; ``msgpack``; ``json``;
``header16json`` (a 2-byte big-endian header length, a JSON header map with ``content-length``, then the body:
the Real Python socket tutorial's message format); ``websocket`` (the HTTP Upgrade head, then one message per
WebSocket frame: :mod:`proxy.websocket`, which registers it when imported, as :mod:`proxy.inference` does).

Runs on the relay's thread, so every framer's cost is bounded by the bytes it is fed: no recursion (the JSON
scanner is iterative, msgpack's C unpacker uses a fixed stack), no rescans (a frame arriving byte by byte costs
O(n) in total; ``work`` counts it), and no exception escapes ``feed`` whatever the bytes are.

Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: engine loop thread; pure objects owned by one relay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import msgpack

from proxy.model import Direction

DEFAULT_MAX_FRAME = 16 * 1024 * 1024

FRAMING_NAMES = ("auto", "raw", "lines", "delim:ESC", "len8", "len16", "len16be", "len16le", "len32", "len32be",
                 "len32le", "len64be", "len64le", "lenNxx-incl", "fixed:N", "msgpack", "json", "header16json",
                 "websocket")
MAX_DELIMITER = 64
"""Bytes a ``delim:`` terminator may have."""


class FramingError(ValueError):
    """A framing specification that cannot be parsed (user input)."""


class Framer(Protocol):
    name: str
    fallback: str | None
    """Set once when the framer gave up on its framing and passes the rest of the stream on raw."""
    can_hold: bool
    """False for framers that never keep a byte back (raw, and ``auto`` while it infers): the relay then skips its
    stall-bound checks entirely."""
    slice_bytes: int
    """The most bytes the shell should feed in one go (0: any read). Set by framers that scan in Python, whose
    worst case per byte is high: a read is then framed a slice per loop iteration, so other connections go on."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def flush(self) -> bytes:
        """Bytes of an incomplete frame at end of stream (possibly empty); the framer is then empty."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        ...

    def remaining(self) -> int | None:
        """Bytes still to come for the frame held now, when the framing knows (a declared length, a record size)."""
        ...


class RawFramer:
    """Each read is a message: exactly what a learner's ``recv()`` would see."""

    __slots__ = ("fallback", "name")
    slice_bytes = 0
    can_hold = False

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

    def remaining(self) -> int | None:
        return None


class _BufferedFramer:
    """Shared buffer handling: subclasses implement ``_scan`` returning the end offset of the next frame."""

    name = "?"
    slice_bytes = 0
    can_hold = True

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.fallback: str | None = None
        self._buf = bytearray()
        self.work = 0
        """Bytes looked at so far, plus one per call: a deterministic measure that framing stays O(n) however
        the stream is split (tests assert it; it costs one integer add per scan)."""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def remaining(self) -> int | None:
        """Bytes still to come for the frame held now, when the framing knows (a declared length, a record size)."""
        return None

    def _scan(self, buf: bytearray) -> int | None:
        """Length of the first complete frame at the start of ``buf``, or None if more bytes are needed.

        May raise ``ValueError`` when the stream is not valid for this framing; any other exception is a bug,
        and is also turned into a fallback rather than lose the connection.
        """
        raise NotImplementedError

    def _give_up(self, reason: str) -> list[bytes]:
        self.fallback = f"{self.name} framing gave up: {reason}; the bytes were passed on raw"
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
            except Exception as e:  # a framer may never lose bytes, whatever they hold: not even through a bug
                out.extend(self._give_up(f"internal error ({type(e).__name__}: {e})"))
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


class DelimiterFramer(_BufferedFramer):
    """One message per terminator-ended piece (the terminator stays in the message): ``\\n``, ``\\r\\n``, ``\\0``,
    or any byte string such as ``EOT\\0``."""

    def __init__(self, delimiter: bytes, max_frame: int) -> None:
        super().__init__(max_frame)
        if not delimiter:
            raise FramingError("a delimiter needs at least one byte")
        self.delimiter = delimiter
        self.name = delimiter_name(delimiter)
        self._scanned = 0  # bytes already known to hold no whole terminator: keeps total work O(n)

    def _scan(self, buf: bytearray) -> int | None:
        d = self.delimiter
        i = buf.find(d, self._scanned)
        if i < 0:
            # a terminator may straddle this read and the next: look again at its last len(d) - 1 bytes only
            self.work += len(buf) - self._scanned + 1
            self._scanned = max(self._scanned, len(buf) - len(d) + 1)
            return None
        self.work += i + len(d) - self._scanned + 1
        self._scanned = 0
        return i + len(d)


class LinesFramer(DelimiterFramer):
    """One message per ``\\n``-terminated line (the newline stays in the message)."""

    def __init__(self, max_frame: int) -> None:
        super().__init__(b"\n", max_frame)


_LENGTH_DESC: Final = {1: "1-byte", 2: "2-byte", 4: "4-byte", 8: "8-byte"}


class LengthPrefixFramer(_BufferedFramer):
    """A 1-, 2-, 4- or 8-byte unsigned length prefix (big or little endian) counting the payload after it, or with
    ``inclusive`` the whole frame, prefix included."""

    def __init__(self, width: int, endian: str, max_frame: int, inclusive: bool = False) -> None:
        super().__init__(max_frame)
        if width not in _LENGTH_DESC or endian not in ("be", "le"):
            raise FramingError(f"a length prefix has 1, 2, 4 or 8 bytes, big (be) or little (le) endian; "
                               f"got {width} bytes {endian}")
        self.width = width
        self.endian = endian
        self.inclusive = inclusive
        self.name = length_name(width, endian, inclusive)
        self._order: Final = "big" if endian == "be" else "little"

    def _scan(self, buf: bytearray) -> int | None:
        self.work += 1
        w = self.width
        if len(buf) < w:
            return None
        n = int.from_bytes(buf[:w], self._order)
        if self.inclusive:
            if n < w:
                raise ValueError(f"a length of {n} cannot count its own {w}-byte prefix")
            total = n
        else:
            total = w + n
        if total > self.max_frame:
            return total  # the base class turns this into a fallback before buffering the whole frame
        return total if len(buf) >= total else None

    def remaining(self) -> int | None:
        buf = self._buf
        if len(buf) < self.width:
            return None
        n = int.from_bytes(buf[:self.width], self._order)
        total = n if self.inclusive else self.width + n
        return max(0, total - len(buf))


class FixedFramer(_BufferedFramer):
    """Fixed-size records of ``size`` bytes."""

    def __init__(self, size: int, max_frame: int) -> None:
        super().__init__(max_frame)
        self.name = f"fixed:{size}"
        self.size = size

    def _scan(self, buf: bytearray) -> int | None:
        self.work += 1
        return self.size if len(buf) >= self.size else None

    def remaining(self) -> int | None:
        return self.size - len(self._buf) if self._buf else None


_LENGTH_KEYS: Final = frozenset({"contentlength", "bodylength", "length"})


def header_body_length(header: bytes | bytearray) -> int:
    """The body length a JSON header declares (``content-length``, also spelt ``content_length``, ``Content-Length``,
    ``body_length``, ``length``); ``ValueError`` saying why when the header is not a JSON map that declares one.

    The header is at most 64 KiB (a 2-byte length), parsed by Python's C JSON parser: linear, no Python recursion
    (a nesting bomb ends in a ``RecursionError`` the framer turns into a fallback like any other error).
    """
    if not header or header.lstrip()[:1] != b"{":
        raise ValueError("the header is not a JSON map")
    try:
        obj = json.loads(header)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"the header is not JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise ValueError("the header is not a JSON map")
    for key, value in obj.items():
        if isinstance(key, str) and key.lower().replace("-", "").replace("_", "") in _LENGTH_KEYS:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            raise ValueError(f"the header's {key!r} is not a length ({str(value)[:20]!r})")
    raise ValueError("the header declares no content-length")


class HeaderJsonFramer(_BufferedFramer):
    """A 2-byte big-endian header length, a JSON header map declaring ``content-length``, then that many bytes of
    body; one message is all three. This is the message format of the widely read Real Python socket tutorial
    (``libserver.py``/``libclient.py``)."""

    name = "header16json"

    def __init__(self, max_frame: int) -> None:
        super().__init__(max_frame)
        self._total: int | None = None  # the frame in progress, once its header has been read

    def _scan(self, buf: bytearray) -> int | None:
        self.work += 1
        total = self._total
        if total is None:
            if len(buf) < 2:
                return None
            h = (buf[0] << 8) | buf[1]
            if h == 0:
                raise ValueError("an empty header")
            if len(buf) > 2 and buf[2] not in b"{ \t\r\n":
                raise ValueError("the header is not a JSON map")
            if len(buf) < 2 + h:
                return None
            self.work += h
            total = self._total = 2 + h + header_body_length(buf[2:2 + h])
            if total > self.max_frame:
                return total
        if len(buf) < total:
            return None
        self._total = None
        return total

    def remaining(self) -> int | None:
        return None if self._total is None else max(0, self._total - len(self._buf))


# msgpack headers that declare a length: first byte -> (header size, bytes per declared unit, fixed extra bytes).
# From the header alone, the smallest frame the object can be is known (an array element is at least one byte).
_MSGPACK_DECLARED: Final[dict[int, tuple[int, int, int]]] = {
    0xC4: (2, 1, 0), 0xC5: (3, 1, 0), 0xC6: (5, 1, 0),  # bin 8/16/32
    0xD9: (2, 1, 0), 0xDA: (3, 1, 0), 0xDB: (5, 1, 0),  # str 8/16/32
    0xC7: (2, 1, 1), 0xC8: (3, 1, 1), 0xC9: (5, 1, 1),  # ext 8/16/32 (plus the type byte)
    0xDC: (3, 1, 0), 0xDD: (5, 1, 0),  # array 16/32
    0xDE: (3, 2, 0), 0xDF: (5, 2, 0),  # map 16/32
}
MSGPACK_MAX_DEPTH: Final = 1024
"""msgpack's C unpacker keeps open containers on a fixed stack of this many levels (no recursion); deeper is an
error the framer turns into a fallback."""


class MsgpackFramer(_BufferedFramer):
    """One message per msgpack object in a stream of concatenated objects.

    The objects are skipped, never built, by msgpack's C unpacker: no Python object per element, no recursion
    (its stack is a fixed array of ``MSGPACK_MAX_DEPTH`` levels), and it resumes where it stopped, so every
    byte is looked at once however the stream is split. A top-level header that declares more than the cap
    (a 4 GB ``bin 32``, an ``array 32`` of 4 billion items) falls back at once instead of buffering up to the cap.
    """

    name = "msgpack"

    def __init__(self, max_frame: int) -> None:
        super().__init__(max_frame)
        # One streaming Unpacker for the whole stream: tell() gives each object's absolute end offset.
        # read_size sets the buffer's first allocation (else max_buffer_size: 17 MiB per direction, of which
        # inference's watching alone touched 16 KiB per connection); it grows with what is fed.
        self._up = msgpack.Unpacker(max_buffer_size=max_frame + (1 << 20), read_size=1024, raw=True,
                                    strict_map_key=False)
        self._consumed = 0
        self._head_checked = False  # the current object's declared length was compared with the cap

    def _declared_too_big(self, buf: bytearray) -> str | None:
        spec = _MSGPACK_DECLARED.get(buf[0])
        if spec is None:
            self._head_checked = True
            return None
        head, unit, extra = spec
        if len(buf) < head:
            return None
        self._head_checked = True
        declared = int.from_bytes(buf[1:head], "big")
        least = head + extra + declared * unit
        if least > self.max_frame:
            return f"a frame of at least {least} bytes (declared in its header) exceeds the {self.max_frame}-byte cap"
        return None

    def feed(self, data: bytes) -> list[bytes]:
        if self.fallback is not None:
            return [data] if data else []
        self.work += len(data) + 1
        buf = self._buf
        buf += data
        out: list[bytes] = []
        try:
            self._up.feed(data)
            while buf:
                if not self._head_checked:
                    too_big = self._declared_too_big(buf)
                    if too_big is not None:
                        out.extend(self._give_up(too_big))
                        return out
                try:
                    self._up.skip()
                except msgpack.OutOfData:
                    break
                end: int = self._up.tell()
                n = end - self._consumed
                self._consumed = end
                self._head_checked = False
                if n > self.max_frame:
                    out.extend(self._give_up(f"a {n}-byte frame exceeds the {self.max_frame}-byte cap"))
                    return out
                out.append(bytes(buf[:n]))
                del buf[:n]  # CPython bytearray deletes from the front in O(1)
        except msgpack.BufferFull:
            out.extend(self._give_up(f"frame larger than the {self.max_frame}-byte cap"))
            return out
        except msgpack.StackError:
            out.extend(self._give_up(f"nesting deeper than {MSGPACK_MAX_DEPTH} levels"))
            return out
        except Exception as e:  # FormatError, ValueError; anything else would be a bug: never lose the bytes
            out.extend(self._give_up(f"not msgpack ({type(e).__name__}: {e})"))
            return out
        if len(buf) > self.max_frame:
            out.extend(self._give_up(f"frame larger than the {self.max_frame}-byte cap"))
        return out


# The JSON scanner's token patterns. Each is anchored (``match`` at a position) and has no nested ambiguity, so
# Python's backtracking engine runs each in time linear in what it consumes.
_WS_RUN = re.compile(rb"[ \t\r\n]*+")
_STRING_BODY = rb'(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+'
_STR_BODY = re.compile(_STRING_BODY)
_ESCAPE_PREFIX = re.compile(rb"\\(?:u[0-9a-fA-F]{0,3})?")
_SCALAR_RUN = re.compile(rb"[-+.0-9A-Za-z]*+")
_NUMBER_OR_LITERAL = rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?|true|false|null|NaN|-?Infinity"
_SCALAR = re.compile(_NUMBER_OR_LITERAL)
_LITERAL = re.compile(rb"true|false|null")
# Fast paths: whole runs of array items or object members, each followed by a comma, in one C-level match instead
# of a Python step per token. An item may be a scalar, a string, or a container of those ([1, 2], {"x": 1}): game
# messages are mostly such runs (lists of positions, of entity states). What a run stops before (a deeper container,
# the last item, bytes not here yet) is left to the step-by-step scanner, which goes on from there, so a run never
# looks at a byte more than twice. Runs nest containers two levels below where they start (``_RUN_DEPTH``).
_W = rb"[ \t\r\n]*+"
_QUOTED = rb'"' + _STRING_BODY + rb'"'
# (empty containers first: tried first, they cost a dense ``[],[],…`` stream half as much, and others nothing)
_FLAT = rb"(?:\[" + _W + rb"\]|\{" + _W + rb"\}|" + _QUOTED + rb"|(?:" + _NUMBER_OR_LITERAL + rb"))"
_MEMBER = _QUOTED + _W + rb":" + _W + _FLAT
_ITEM = (rb"(?:" + _FLAT + rb"|\[" + _W + rb"(?:" + _FLAT + _W + rb"," + _W + rb")*+" + _FLAT + _W + rb"\]|\{" + _W
         + rb"(?:" + _MEMBER + _W + rb"," + _W + rb")*+" + _MEMBER + _W + rb"\})")
_RUN_DEPTH = 2
_CUT_ITEM = 512
_KEY_COLON = _W + _QUOTED + _W + rb":" + _W
_ARRAY_RUN: re.Pattern[bytes]
"""Items each with its comma (group 1), then maybe a last item and the closing bracket (group 2)."""
_OBJECT_RUN: re.Pattern[bytes]
"""Members each with its comma (group 1), then maybe a last member and the closing brace (group 2), or the key of
a member whose value is a deeper container (which the scanner then opens)."""
_runs_compiled = False


def compile_json_runs() -> None:
    """Compile the two run patterns (about 10 ms): when the first JSON framer is made, not at every import of this
    module (the window parses framing names at start). The engine calls it at start (``proxy.inference``), so a
    relay never pays it on its thread."""
    global _ARRAY_RUN, _OBJECT_RUN, _runs_compiled
    if _runs_compiled:
        return
    _ARRAY_RUN = re.compile(rb"((?:" + _W + _ITEM + _W + rb",)*+)(?:" + _W + _ITEM + _W + rb"(\]))?")
    _OBJECT_RUN = re.compile(rb"((?:" + _KEY_COLON + _ITEM + _W + rb",)*+)(?:" + _KEY_COLON
                             + rb"(?:" + _ITEM + _W + rb"(\})|(?=[\[{])))?")
    _runs_compiled = True

_WS_BYTES = frozenset(b" \t\r\n")
_SCALAR_START = frozenset(b"-0123456789tfnNI")
_OPENERS = frozenset(b"[{")

DEFAULT_MAX_JSON_DEPTH = 512
"""Nesting past which the JSON framer falls back to raw: no game sends that, and Python's own ``json`` (which
decoders use) refuses a little under 1,000 levels. The scanner itself has no recursion to run out of."""

# A scalar cut by the end of what has arrived is checked as a prefix by this automaton over only the new bytes, so
# bytes that can never become JSON (``00``, ``1.x``, ``hello``) fall back at once instead of waiting for a
# terminator that a peer waiting for an answer would never send; and a long number arriving byte by byte costs
# O(n). States 0-8 are inside a number; 100 + 16 * w + k is inside literal ``_LITERALS[w]`` with k bytes matched.
_LITERALS = (b"true", b"false", b"null", b"NaN", b"Infinity")
_N_START, _N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(9)
_LITERAL_START = {word[0]: 100 + 16 * w + 1 for w, word in enumerate(_LITERALS)}


def _scalar_prefix(state: int, buf: bytearray, i: int, end: int) -> int:
    """Run the automaton from ``state`` over ``buf[i:end]``: the new state, or -1 once these bytes cannot begin a
    JSON number or literal."""
    while i < end:
        c = buf[i]
        i += 1
        if state >= 100:
            w, k = divmod(state - 100, 16)
            word = _LITERALS[w]
            if k < len(word) and c == word[k]:
                state += 1
                continue
            return -1
        digit = 0x30 <= c <= 0x39
        if state == _N_START or state == _N_MINUS:
            if c == 0x30:
                state = _N_ZERO
            elif digit:
                state = _N_INT
            elif c == 0x2D and state == _N_START:
                state = _N_MINUS
            elif c in _LITERAL_START and (state == _N_START or c == 0x49):  # -Infinity
                state = _LITERAL_START[c]
            else:
                return -1
        elif state == _N_ZERO or state == _N_INT or state == _N_FRAC:
            if c == 0x2E and state != _N_FRAC:
                state = _N_DOT
            elif c == 0x65 or c == 0x45:
                state = _N_E
            elif digit and state != _N_ZERO:
                pass
            else:
                return -1
        elif state == _N_DOT:
            if not digit:
                return -1
            state = _N_FRAC
        elif state == _N_E:
            if c == 0x2B or c == 0x2D:
                state = _N_ESIGN
            elif digit:
                state = _N_EXP
            else:
                return -1
        elif not digit:  # _N_ESIGN, _N_EXP
            return -1
        else:
            state = _N_EXP
    return state


# Scanner states (what the next token may be)
_TOP, _VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _AFTER, _STRING, _SCALAR_TOKEN = range(9)


class JsonFramer(_BufferedFramer):
    """One message per JSON value in concatenated JSON or NDJSON; whitespace after a value belongs to it.

    An iterative scanner (a state, a stack of open brackets, strings and escapes) finds where each value ends and
    checks its grammar as it goes, without building any object and without recursion: deep nesting costs a byte
    of stack per level up to ``max_depth``, then the direction falls back to raw. Scanning resumes where it
    stopped when more bytes arrive, so a value arriving byte by byte costs O(n) in total. Bytes inside strings
    are not checked for UTF-8: framing is about boundaries, and a decoder says what the text is.
    """

    name = "json"
    slice_bytes = 2 << 10
    """Its costliest shape (``[[[0]]]`` items) scans at about 3.6 MB/s (279 ms per MiB): a 2 KiB slice is about
    0.6 ms of the loop's time, so a game sharing the proxy with a huge JSON value waits about that per direction."""

    def __init__(self, max_frame: int, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
        super().__init__(max_frame)
        self.max_depth = max_depth
        if not _runs_compiled:
            compile_json_runs()
        self._reset_scan()

    def _reset_scan(self) -> None:
        self._pos = 0  # next byte to look at
        self._state = _TOP
        self._stack = bytearray()  # the open brackets, innermost last
        self._key = False  # the string being scanned is an object key
        self._tok = 0  # start of the scalar being scanned
        self._tok_state = _N_START  # its prefix automaton's state (see _scalar_prefix) ...
        self._tok_checked = 0  # ... after the bytes up to here
        self._no_run = -1  # items of the container open at this depth were too deep for a run: do not try again

    def _scan(self, buf: bytearray) -> int | None:
        n = len(buf)
        i = begin = self._pos
        st = self._state
        stack = self._stack
        while True:
            if st == _STRING:
                j = _STR_BODY.match(buf, i).end()  # type: ignore[union-attr]
                if j < n and buf[j] == 0x22:
                    i = j + 1
                    if self._key:
                        st = _COLON
                        continue
                elif j == n or (buf[j] == 0x5C and _ESCAPE_PREFIX.fullmatch(buf, j)):
                    self._suspend(j, st, begin)  # the string (or an escape in it) goes on in later bytes
                    return None
                else:
                    what = "a control character" if buf[j] < 0x20 else "a bad escape"
                    raise ValueError(f"not JSON ({what} in a string at byte {j})")
            elif st == _SCALAR_TOKEN:
                j = _SCALAR_RUN.match(buf, i).end()  # type: ignore[union-attr]
                if j == n and (stack or not _LITERAL.fullmatch(buf, self._tok, n)):
                    # a number may go on, so it needs a terminator (a whole literal at top level does not); but
                    # bytes that cannot begin one are refused now, not held waiting
                    self._tok_state = _scalar_prefix(self._tok_state, buf, self._tok_checked, j)
                    if self._tok_state < 0:
                        shown = bytes(buf[self._tok:min(j, self._tok + 20)])
                        raise ValueError(f"not JSON ({shown!r} cannot begin a number or literal)")
                    self._tok_checked = j
                    self._suspend(j, st, begin)
                    return None
                if not _SCALAR.fullmatch(buf, self._tok, j):
                    shown = bytes(buf[self._tok:min(j, self._tok + 20)])
                    raise ValueError(f"not JSON ({shown!r} is not a number or literal)")
                i = j
            else:
                if len(stack) < self._no_run:
                    self._no_run = -1  # that container has ended
                if i < n and buf[i] in _WS_BYTES:
                    i = _WS_RUN.match(buf, i).end()  # type: ignore[union-attr]
                if i == n:
                    if st == _TOP:
                        # whitespace alone is passed on at once: a peer may be waiting for that newline
                        self.work += n - begin + 1
                        self._pos = 0
                        return n or None
                    self._suspend(i, st, begin)
                    return None
                c = buf[i]
                if st == _AFTER:
                    if c == 0x2C:  # ,
                        st = _VALUE if stack[-1] == 0x5B else _KEY
                        i += 1
                        continue
                    # closing brackets, as many as follow one another (a tight loop: deep ends cost little)
                    while True:
                        if c != (0x5D if stack[-1] == 0x5B else 0x7D):
                            raise ValueError(f"not JSON (unexpected {bytes([c])!r} at byte {i})")
                        stack.pop()
                        i += 1
                        if not stack or i == n:
                            break
                        c = buf[i]
                        if c != 0x5D and c != 0x7D:
                            break
                    if stack:
                        continue  # still _AFTER
                elif st == _COLON:
                    if c != 0x3A:
                        raise ValueError(f"not JSON (expected ':' at byte {i}, got {bytes([c])!r})")
                    st = _VALUE
                    i += 1
                    continue
                else:
                    # A run of whole items or members in one match, unless it would fail at once (an item that
                    # opens two containers: ``[[``), or could nest past the cap.
                    depth = len(stack)
                    if (st != _TOP and depth + _RUN_DEPTH <= self.max_depth and depth != self._no_run
                            and not ((c == 0x5B or c == 0x7B) and i + 1 < n and buf[i + 1] in _OPENERS)):
                        m = None
                        if st == _KEY or st == _KEY_OR_CLOSE:
                            m = _OBJECT_RUN.match(buf, i)
                        elif stack[-1] == 0x5B:
                            m = _ARRAY_RUN.match(buf, i)
                        if m is not None and m.end() == i:
                            # An array's items tend to share a shape: if this one is too deep for a run, the
                            # next ones are too. Asking again per item would double the cost of such arrays.
                            # (Not when the item may just be cut by the end of what has arrived.)
                            if n - i > _CUT_ITEM:
                                self._no_run = depth
                        elif m is not None:
                            closed = m.end(2) > 0
                            if m.end() > m.end(1) and not closed:
                                st = _VALUE  # stopped after the key of a member whose value is a container
                            elif m.end(1) > i:
                                st = _VALUE if stack[-1] == 0x5B else _KEY
                            i = m.end()
                            if not closed:
                                continue
                            stack.pop()
                            if stack:
                                st = _AFTER
                                continue
                            end = _WS_RUN.match(buf, i).end()  # type: ignore[union-attr]
                            self.work += end - begin + 1
                            self._reset_scan()
                            return end
                    if st == _KEY or st == _KEY_OR_CLOSE:
                        if c == 0x22:
                            st, self._key = _STRING, True
                            i += 1
                            continue
                        if c != 0x7D or st == _KEY:
                            raise ValueError(f"not JSON (expected a key at byte {i}, got {bytes([c])!r})")
                        stack.pop()
                        i += 1
                    else:  # _TOP, _VALUE, _VALUE_OR_CLOSE: a value starts here
                        if c == 0x22:
                            st, self._key = _STRING, False
                            i += 1
                            continue
                        if c == 0x5B or c == 0x7B:
                            # opening brackets, as many as follow one another (inside arrays: an object needs a key)
                            while True:
                                if len(stack) >= self.max_depth:
                                    raise ValueError(f"nesting deeper than {self.max_depth} levels")
                                stack.append(c)
                                i += 1
                                if c == 0x7B or i == n or buf[i] not in _OPENERS:
                                    break
                                c = buf[i]
                            st = _VALUE_OR_CLOSE if c == 0x5B else _KEY_OR_CLOSE
                            continue
                        if c in _SCALAR_START:
                            st, self._tok = _SCALAR_TOKEN, i
                            self._tok_state, self._tok_checked = _N_START, i
                            continue
                        if c == 0x5D and st == _VALUE_OR_CLOSE:
                            stack.pop()
                            i += 1
                        else:
                            raise ValueError(f"not JSON (byte {bytes([c])!r} at {i} cannot start a value)")
            # A value just ended: inside a container, what follows it; at top level, the frame (and the
            # whitespace already here after it).
            if stack:
                st = _AFTER
                continue
            end = _WS_RUN.match(buf, i).end()  # type: ignore[union-attr]
            self.work += end - begin + 1
            self._reset_scan()
            return end

    def _suspend(self, i: int, state: int, begin: int) -> None:
        """Remember where scanning stopped; the next call goes on from there."""
        self.work += i - begin + 1
        self._pos, self._state = i, state


# ------------------------------------------------------------------------------------------------ names


def length_name(width: int, endian: str, inclusive: bool = False) -> str:
    """``len16be``, ``len8``, ``len32le-incl``: the name of a length-prefix framing."""
    return ("len8" if width == 1 else f"len{width * 8}{endian}") + ("-incl" if inclusive else "")


_ESCAPES_OUT: Final = {0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def delimiter_text(delimiter: bytes) -> str:
    """A terminator written with Python bytes escapes, readable and safe in a ``--framing`` value: printable ASCII
    as it is, except the backslash and the ``,`` and ``=`` that separate a per-direction framing."""
    out = []
    for b in delimiter:
        esc = _ESCAPES_OUT.get(b)
        if esc is not None:
            out.append(esc)
        elif 0x21 <= b <= 0x7E and b not in (0x2C, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def delimiter_name(delimiter: bytes) -> str:
    """``lines`` for ``\\n``, otherwise ``delim:`` and the escaped terminator (``delim:EOT\\x00``)."""
    return "lines" if delimiter == b"\n" else "delim:" + delimiter_text(delimiter)


_SIMPLE_ESCAPES: Final = {"\\": 0x5C, "'": 0x27, '"': 0x22, "a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A, "r": 0x0D,
                          "t": 0x09, "v": 0x0B}


def parse_delimiter(text: str) -> bytes:
    """Bytes from a terminator written like a Python bytes literal's body: ``EOT\\x00``, ``\\r\\n``, ``<END>``,
    ``\\0``. Characters outside ASCII stand for their UTF-8 bytes. ``FramingError`` says what is wrong."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if c != "\\":
            out += c.encode("utf-8")
            continue
        if i >= n:
            raise FramingError(f"delimiter {text!r} ends with a lone backslash (write \\\\ for one backslash)")
        e = text[i]
        i += 1
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e == "x":
            h = text[i:i + 2]
            if len(h) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in h):
                raise FramingError(f"delimiter {text!r}: \\x needs two hex digits")
            out.append(int(h, 16))
            i += 2
        elif e in "01234567":
            j = i
            while j < n and j < i + 2 and text[j] in "01234567":
                j += 1
            value = int(e + text[i:j], 8)
            if value > 0xFF:
                raise FramingError(f"delimiter {text!r}: octal escape \\{e + text[i:j]} is over 255")
            out.append(value)
            i = j
        else:
            raise FramingError(f"delimiter {text!r}: unknown escape \\{e} (use \\xNN for any byte)")
    if not out:
        raise FramingError("delim: needs a terminator, e.g. delim:EOT\\x00 or delim:\\r\\n")
    if len(out) > MAX_DELIMITER:
        raise FramingError(f"a delimiter may have at most {MAX_DELIMITER} bytes, got {len(out)}")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class FramingSpec:
    """The framing chosen for each direction of new connections (names as ``make_framer`` takes them)."""

    c2s: str = "raw"
    s2c: str = "raw"
    max_frame: int = DEFAULT_MAX_FRAME

    def for_direction(self, direction: Direction) -> str:
        return self.c2s if direction is Direction.C2S else self.s2c

    def make(self, direction: Direction) -> Framer:
        return make_framer(self.for_direction(direction), self.max_frame)

    def __str__(self) -> str:
        return self.c2s if self.c2s == self.s2c else f"c2s={self.c2s},s2c={self.s2c}"


_LEN_NAME = re.compile(r"len(8|16|32|64)(be|le)?(-incl)?")


def normalise_name(name: str) -> str:
    """The canonical spelling of a framing name (``len16`` -> ``len16be``, ``delim:\\n`` -> ``lines``); validates it."""
    stripped = name.strip()
    low = stripped.lower()
    if low.startswith("delim:"):
        return delimiter_name(parse_delimiter(stripped[len("delim:"):]))
    m = _LEN_NAME.fullmatch(low)
    if m:
        bits, endian, incl = m.groups()
        if bits == "8":
            if endian == "le":
                raise FramingError("len8 has no byte order: write len8")
            endian = "be"
        return length_name(int(bits) // 8, endian or "be", bool(incl))
    if low not in ("auto", "websocket"):  # known by name; built once proxy.inference (proxy.websocket) is imported
        make_framer(low)  # raises FramingError for an unknown name
    return low


_LAYERED: dict[str, Callable[[int], Framer]] = {}
"""Framers defined by modules built on this one (``auto``: :mod:`proxy.inference`, which builds its candidates from
the framers here), registered by them when imported: this module never imports them."""


def register_framer(name: str, factory: Callable[[int], Framer]) -> None:
    """Let :func:`make_framer` build ``name`` (called by the module that defines it, when imported)."""
    _LAYERED[name] = factory


def make_framer(name: str, max_frame: int = DEFAULT_MAX_FRAME) -> Framer:
    """Build a framer from a name: ``raw``, ``auto``, ``lines``, ``len32be``, ``fixed:12``, ``delim:EOT\\x00`` ..."""
    stripped = name.strip()
    n = stripped.lower()
    if n == "raw":
        return RawFramer()
    if n == "auto":
        factory = _LAYERED.get("auto")
        if factory is None:
            raise FramingError("auto framing needs proxy.inference: import it before building an auto framer")
        return factory(max_frame)
    if n == "lines":
        return LinesFramer(max_frame)
    if n == "msgpack":
        return MsgpackFramer(max_frame)
    if n == "json":
        return JsonFramer(max_frame)
    if n == "header16json":
        return HeaderJsonFramer(max_frame)
    if n == "websocket":
        factory = _LAYERED.get("websocket")
        if factory is None:
            raise FramingError("websocket framing needs proxy.websocket: import it before building a websocket "
                               "framer")
        return factory(max_frame)
    if n.startswith("delim:"):
        return DelimiterFramer(parse_delimiter(stripped[len("delim:"):]), max_frame)
    m = _LEN_NAME.fullmatch(n)
    if m and not (m.group(1) == "8" and m.group(2) == "le"):
        return LengthPrefixFramer(int(m.group(1)) // 8, m.group(2) or "be", max_frame, bool(m.group(3)))
    m = re.fullmatch(r"fixed:(\d+)", n)
    if m:
        size = int(m.group(1))
        if not 1 <= size <= max_frame:
            raise FramingError(f"fixed:N needs 1 <= N <= {max_frame}, got {size}")
        return FixedFramer(size, max_frame)
    raise FramingError(f"unknown framing {name!r}; expected one of: {', '.join(FRAMING_NAMES)}")


_PER_DIRECTION = re.compile(r"\s*(c2s|s2c)\s*=", re.IGNORECASE)


def parse_framing(text: str, max_frame: int = DEFAULT_MAX_FRAME) -> FramingSpec:
    """Parse ``len32be`` (both directions) or ``c2s=fixed:12,s2c=fixed:40``; validates every name.

    A direction left out is ``raw``. A ``delim:`` terminator that holds a comma writes it as ``\\x2c``.
    """
    text = text.strip()
    if not text:
        raise FramingError("empty framing; e.g. --framing auto, --framing lines or --framing c2s=fixed:12,s2c=raw")
    if not _PER_DIRECTION.match(text):
        if "=" in text and not text.lower().startswith("delim:"):
            raise FramingError(f"bad framing {text!r}; e.g. --framing c2s=fixed:12,s2c=lines")
        n = normalise_name(text)
        return FramingSpec(n, n, max_frame)
    parts: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("c2s", "s2c"):
            raise FramingError(f"bad framing part {item!r}; e.g. --framing c2s=fixed:12,s2c=lines")
        parts[key] = normalise_name(value)
    return FramingSpec(parts.get("c2s", "raw"), parts.get("s2c", "raw"), max_frame)


# ------------------------------------------------------------------------------------------------ resync

RESYNC_CHECK_MAX: Final = 64 << 10
"""Reads longer than this are not tried against the framing while waiting for it to fit again: one message per
read is a lock-step game's shape, and the check must stay cheap (JSON scans in Python)."""


def frames_exactly(name: str, data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> int:
    """How many frames of framing ``name`` ``data`` is, exactly (nothing left over, nothing refused); 0 if it is not.
    Bounded by ``len(data)`` (a fresh framer, fed once)."""
    f = make_framer(name, max_frame)
    frames = f.feed(data)
    if f.fallback is not None or f.buffered:
        return 0
    return len(frames)


class WatchingFramer:
    """What ``auto`` and resyncing share: each read passed on whole (never held) while :meth:`_watch` looks at it;
    once it names a framer (``inner``), every later byte goes to that one. ``skip``: bytes passed on first without
    being watched (the rest of a frame that stalled, so that watching starts on a message boundary)."""

    __slots__ = ("fallback", "inner", "max_frame", "skip")
    slice_bytes = 0
    can_hold = False

    def __init__(self, max_frame: int, skip: int) -> None:
        self.max_frame = max_frame
        self.skip = skip
        self.fallback: str | None = None
        self.inner: Framer | None = None
        """The framer that frames every byte from the next read on, once one was found."""

    def feed(self, data: bytes) -> list[bytes]:
        inner = self.inner
        if inner is not None:
            framed = inner.feed(data)
            self.fallback = inner.fallback
            return framed
        if not data:
            return []
        out: list[bytes] = []
        if self.skip:
            take = min(self.skip, len(data))
            self.skip -= take
            out.append(data[:take])
            data = data[take:]
            if not data:
                return out
        self._watch(data)
        out.append(data)
        return out

    def _watch(self, data: bytes) -> None:
        """Look at one read (passed on whole by :meth:`feed`); set ``inner`` once the framing is known."""
        raise NotImplementedError

    def flush(self) -> bytes:
        return b"" if self.inner is None else self.inner.flush()

    @property
    def buffered(self) -> int:
        return 0 if self.inner is None else self.inner.buffered

    def remaining(self) -> int | None:
        return None if self.inner is None else self.inner.remaining()


class ResyncFramer(WatchingFramer):
    """Raw until a read fits framing ``target`` exactly (whole frames, nothing left over), then ``target`` again.

    The relay puts it in place of an explicit framing that stalled or was contradicted by the bytes: each read is
    passed on as it is (one message, never held), and once a read ends on a frame boundary of ``target`` the next
    byte starts a frame, so a fresh ``target`` framer takes over from the next read on (``inner``). ``skip``: the
    rest of the frame that stalled, when its framing knew its size; those bytes go on first, as they come, and the
    bytes after them are where the check starts (a record that was slow to arrive does not shift the framing).
    """

    __slots__ = ("name", "target")

    def __init__(self, target: str, max_frame: int = DEFAULT_MAX_FRAME, skip: int = 0) -> None:
        super().__init__(max_frame, skip)
        self.name = "raw"
        self.target = target

    def _watch(self, data: bytes) -> None:
        if len(data) <= RESYNC_CHECK_MAX and frames_exactly(self.target, data, self.max_frame):
            self.inner = make_framer(self.target, self.max_frame)

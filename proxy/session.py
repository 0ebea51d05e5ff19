"""Session files: the on-disk format of ``--record FILE`` and a streaming reader for it.

Role: the format's single definition (writer helpers used by :mod:`proxy.recorder`, and the reader used by
replay and by the window's "open session"). The format is specified for humans in docs/session-format.md:

    MAGIC (18 bytes: b"SOCKSCOPE-SESSION\\n")
    u32 big-endian header length, msgpack header map   (format version, clock anchor, settings, ...)
    repeated: u32 big-endian record length, msgpack record map  (``proxy.codec`` wire form)

A crash can only cut the file inside its last record (records are appended whole) or, when the recorder wrote
with direct I/O, leave less than a block of zero bytes after it (see :mod:`proxy.filesink`); either tail is
reported through ``SessionReader.truncated``, never raised. Anything else that is wrong (another file type,
a newer format, a corrupt header, an impossible length, a record that does not decode, a value outside what
the engine ever writes) raises :class:`SessionError`: one line naming the file, the byte offset and the
problem, after every whole record before it was yielded.

Hostile files: a length is believed only up to :data:`MAX_HEADER`/:data:`MAX_RECORD` and only as far as the
file really goes (bytes are read in chunks as they exist, so memory follows the file, never a length field);
msgpack is unpacked with limits on container sizes, and a large record may hold at most
:data:`MAX_CONTAINERS` maps and arrays, so a few bytes per empty container cannot become gigabytes of Python
objects. Times must fit signed 64-bit nanoseconds (0 .. 2^63-1), ids and counts likewise, ports 0..65535, so
every consumer (exports, the window) can rely on them.
Must not import: Qt, ``inspector``, asyncio.
Thread: any; a reader belongs to the thread that iterates it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Final

import msgpack

from proxy.codec import CodecError, record_from_dict
from proxy.model import Clock, Message, Record

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_RECORD",
    "SessionError",
    "SessionHeader",
    "SessionReader",
    "encode_header",
    "encode_record",
    "open_session",
    "shown_path",
    "sockscope_version",
]

MAGIC: Final = b"SOCKSCOPE-SESSION\n"
FORMAT_VERSION: Final = 1
MAX_HEADER: Final = 1 << 20
"""A header is a few hundred bytes; anything near this is corruption, not a header."""
MAX_RECORD: Final = 256 << 20
"""Larger than any record the engine writes (a frame is capped at --max-frame, 16 MiB by default, and an
edited message is bounded by the control protocol's 64 MiB frame): a larger length means corruption."""
MAX_CONTAINERS: Final = 1024
"""Maps and arrays in one large record or header (a record has two or three): an empty array is one byte in
the file but about 60 in memory, so a record made of them is refused rather than unpacked."""
_CHECK_CONTAINERS_ABOVE: Final = 64 << 10
"""Records smaller than this are unpacked without counting (their worst case is a few MiB, and fast)."""
_STR_MAX, _ARRAY_MAX, _MAP_MAX = 1 << 20, 256, 64
"""What a record or header may hold: strings up to 1 MiB (notices), small arrays (delays, addresses) and
maps. Payloads are ``bin``, bounded by the record's length."""
_TEXT_MAX: Final = 200
"""Characters of a value or an exception quoted in an error message."""
_I64: Final = 1 << 63
_U32: Final = struct.Struct(">I")


class SessionError(Exception):
    """The file is not a readable session; the message (one line) names the file, the offset and what is wrong."""


def _short(text: object) -> str:
    """``text`` on one line, cut to a few hundred characters: error messages quote values from the file."""
    s = " ".join(str(text).split())
    return s if len(s) <= _TEXT_MAX else s[:_TEXT_MAX] + f"… ({len(s):,} characters)"


class _Budget:
    """Counts the maps and arrays msgpack builds (its hooks) and stops it past :data:`MAX_CONTAINERS`."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, obj: Any) -> Any:
        self.n += 1
        if self.n > MAX_CONTAINERS:
            raise ValueError(f"more than {MAX_CONTAINERS} maps and arrays")
        return obj


def _unpack(body: bytes, counted: bool) -> Any:
    if not counted:
        return msgpack.unpackb(body, raw=False, max_str_len=_STR_MAX, max_array_len=_ARRAY_MAX, max_map_len=_MAP_MAX)
    budget = _Budget()
    return msgpack.unpackb(body, raw=False, max_str_len=_STR_MAX, max_array_len=_ARRAY_MAX, max_map_len=_MAP_MAX,
                           list_hook=budget, object_hook=budget)


def _unpack_error(e: Exception) -> str:
    return _short(e) if str(e).strip() else type(e).__name__


def _outside_data(d: dict[Any, Any]) -> int:
    """Bytes of strings and binaries in a (large) record outside its ``data``: a bound for error messages,
    which quote the values they reject."""
    total = 0
    stack: list[Any] = [v for k, v in d.items() if k != "data"]
    while stack:
        v = stack.pop()
        if isinstance(v, str | bytes):
            total += len(v)
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return total


def _in_range(v: int | None) -> bool:
    return v is None or 0 <= v < _I64


def _range_problem(r: Record) -> str | None:
    """What is outside the values the engine writes, or None. Message, the bulk of every session, is checked
    with one expression; the rest field by field."""
    if isinstance(r, Message) and not r.delays and 0 <= (r.id | r.conn_id | r.seq | r.arrival_ns
                                                       | (r.release_ns or 0)) < _I64:
        return None  # each is in 0..2^63-1 exactly when their bitwise or is
    kind = type(r).__name__
    for name in ("id", "msg_id", "conn_id", "seq", "arrival_ns", "release_ns", "time_ns", "replay_of", "bytes_c2s",
                 "bytes_s2c", "messages_c2s", "messages_s2c", "discarded", "from_seq", "at_offset", "since_seq",
                 "messages"):
        v = getattr(r, name, None)
        if not _in_range(v):
            return f"{kind}.{name} {v} is out of range (0 to 2^63-1)"
    for name in ("client_addr", "target_addr", "server_addr"):
        addr = getattr(r, name, None)
        if addr is not None and not 0 <= addr[1] <= 65535:
            return f"{kind}.{name} port {addr[1]} is not 0..65535"
    for reason, ns in getattr(r, "delays", ()):
        if not -_I64 <= ns < _I64:
            return f"{kind}.delays {reason.value} {ns} is out of range"
    return None


def sockscope_version() -> str:
    try:
        from importlib.metadata import version

        return version("sockscope")
    except Exception:  # not installed (a plain checkout on sys.path): still write a usable header
        return "unknown"


@dataclass(frozen=True, slots=True)
class SessionHeader:
    """What a session file says about itself (the msgpack header map, typed)."""

    format: int
    created_wall_ns: int
    clock: Clock
    """The engine's anchor: converts every record's monotonic ``*_ns`` times to wall-clock time."""
    listen: tuple[str, int] | None
    target: tuple[str, int] | None
    framing: dict[str, Any]
    """``{"c2s": "raw", "s2c": "lines", "max_frame": 16777216}`` at the time recording started."""
    sockscope_version: str
    raw: dict[str, Any]
    """The whole header map, including keys this version does not know."""


def encode_header(*, clock: Clock, listen: tuple[str, int] | None, target: tuple[str, int] | None,
                  framing: dict[str, Any], created_wall_ns: int) -> bytes:
    """MAGIC plus the length-prefixed header map: the first bytes of every session file."""
    header = {
        "format": FORMAT_VERSION,
        "created_wall_ns": created_wall_ns,
        "clock": {"mono_ns": clock.mono_ns, "wall_ns": clock.wall_ns},
        "listen": None if listen is None else [listen[0], listen[1]],
        "target": None if target is None else [target[0], target[1]],
        "framing": framing,
        "sockscope_version": sockscope_version(),
    }
    body: bytes = msgpack.packb(header, use_bin_type=True)
    return MAGIC + _U32.pack(len(body)) + body


def encode_record(packed: bytes) -> bytes:
    """One record as stored: u32 big-endian length, then the msgpack bytes of ``record_to_dict``."""
    return _U32.pack(len(packed)) + packed


def _addr(v: object) -> tuple[str, int] | None:
    if (isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)
            and not isinstance(v[1], bool) and 0 <= v[1] <= 65535):
        return (v[0], v[1])
    return None


def _ns_value(v: object, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _I64:
        raise ValueError(f"{key} {_short(repr(v))} is not a time in nanoseconds (0 to 2^63-1)")
    return v


def shown_path(path: str) -> str:
    """A file name as error messages show it: as is, or escaped if it holds a newline or another control
    character, so the message stays one line."""
    return path if path.isprintable() else ascii(path)


class SessionReader:
    """Streams a session's records without loading the file. Use as an iterator, once.

    ``header`` is read on open. ``progress`` (0.0-1.0) and ``bytes_read`` advance during iteration, for a
    progress bar. After iteration, ``truncated`` says whether the file ended inside a record (a crash or a
    copy of a file still being written) and ``records`` how many whole records were read.
    """

    def __init__(self, path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> None:
        self.path = os.fspath(path)
        self._shown = shown_path(self.path)
        self._chunk = chunk
        try:
            self._f: IO[bytes] = open(self.path, "rb")
        except OSError as e:
            raise SessionError(f"{self._shown}: cannot open: {e.strerror or e}") from None
        try:
            self.total_bytes = os.fstat(self._f.fileno()).st_size
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise
        self.bytes_read = self._f.tell()
        self.truncated = False
        self.truncated_bytes = 0
        """Bytes after the last whole record (0 unless ``truncated``)."""
        self.records = 0
        self._iterated = False

    # ---------------------------------------------------------------------------------- header

    def _fail(self, offset: int, what: str) -> SessionError:
        return SessionError(f"{self._shown}: {what} (at byte {offset})")

    def _read_header(self) -> SessionHeader:
        start = self._f.read(len(MAGIC))
        if start != MAGIC:
            if MAGIC.startswith(start):
                raise SessionError(f"{self._shown}: file ends inside the session header ({len(start)} bytes): "
                                   "nothing was recorded")
            raise SessionError(f"{self._shown}: not a sockscope session (it starts with {start[:18]!r}, expected "
                               f"{MAGIC!r})")
        raw_len = self._f.read(4)
        if len(raw_len) < 4:
            raise SessionError(f"{self._shown}: file ends inside the session header: nothing was recorded")
        (n,) = _U32.unpack(raw_len)
        if n == 0 or n > MAX_HEADER:
            raise self._fail(len(MAGIC), f"corrupt session header: length {n} is impossible")
        if n > self.total_bytes - len(MAGIC) - 4:  # checked before reading: never allocate what is not there
            raise SessionError(f"{self._shown}: file ends inside the session header: nothing was recorded")
        body = self._f.read(n)
        if len(body) < n:
            raise SessionError(f"{self._shown}: file ends inside the session header: nothing was recorded")
        at = len(MAGIC) + 4
        try:
            h = _unpack(body, counted=True)
        except Exception as e:
            raise self._fail(at, f"corrupt session header: not msgpack ({_unpack_error(e)})") from None
        if not isinstance(h, dict):
            raise self._fail(at, f"corrupt session header: expected a map, got {type(h).__name__}")
        fmt = h.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise self._fail(at, f"corrupt session header: format version {_short(repr(fmt))} is not a number "
                                 "from 1")
        if fmt > FORMAT_VERSION:
            raise SessionError(f"{self._shown}: session format {fmt} was written by a newer sockscope "
                               f"({_short(h.get('sockscope_version', '?'))}); this one reads format "
                               f"{FORMAT_VERSION}")
        clock = h.get("clock")
        c = clock if isinstance(clock, dict) else {}
        try:
            anchor = Clock(_ns_value(c.get("mono_ns"), "mono_ns"), _ns_value(c.get("wall_ns"), "wall_ns"))
        except ValueError as e:
            raise self._fail(at, f"corrupt session header: bad clock anchor: {e}") from None
        created = h.get("created_wall_ns")
        try:
            created = _ns_value(0 if created is None else created, "created_wall_ns")
        except ValueError as e:
            raise self._fail(at, f"corrupt session header: {e}") from None
        framing = h.get("framing")
        return SessionHeader(
            format=fmt,
            created_wall_ns=created,
            clock=anchor,
            listen=_addr(h.get("listen")),
            target=_addr(h.get("target")),
            framing=framing if isinstance(framing, dict) else {},
            sockscope_version=_short(h.get("sockscope_version", "unknown")),
            raw=h,
        )

    # ---------------------------------------------------------------------------------- records

    @property
    def progress(self) -> float:
        return 1.0 if self.total_bytes <= 0 else min(1.0, self.bytes_read / self.total_bytes)

    def __iter__(self) -> Iterator[Record]:
        if self._iterated:
            raise SessionError(f"{self._shown}: a SessionReader is iterated once; open the session again")
        self._iterated = True
        return self._records()

    def _records(self) -> Iterator[Record]:
        f = self._f
        unpackb = msgpack.unpackb
        buf = bytearray()
        pos = self.bytes_read  # offset of buf[0] in the file, for error messages
        eof = False
        try:
            while True:
                # Parse every whole record in the buffer, then read more: memory stays about one chunk,
                # plus one record when a record is larger than a chunk.
                i = 0
                n_buf = len(buf)
                while n_buf - i >= 4:
                    (n,) = _U32.unpack_from(buf, i)
                    if n == 0 and self._only_zeros_after(buf, i):
                        # A direct-I/O writer pads its last block with zeros and cuts the file back at once;
                        # a crash in between leaves the padding: the file ends here, like any cut file.
                        self.truncated = True
                        self.truncated_bytes = self.total_bytes - (pos + i)
                        self.bytes_read = self.total_bytes
                        return
                    if n == 0 or n > MAX_RECORD:
                        raise self._fail(pos + i, f"corrupt record: length {n} is impossible "
                                                  f"(after {self.records} whole records)")
                    if n_buf - i - 4 < n:
                        break
                    body = bytes(buf[i + 4:i + 4 + n])
                    big = n > _CHECK_CONTAINERS_ABOVE
                    try:
                        d = _unpack(body, counted=True) if big else unpackb(
                            body, raw=False, max_str_len=_STR_MAX, max_array_len=_ARRAY_MAX, max_map_len=_MAP_MAX)
                    except Exception as e:
                        raise self._fail(pos + i, f"corrupt record #{self.records + 1}: not msgpack "
                                                  f"({_unpack_error(e)})") from None
                    if big and isinstance(d, dict) and _outside_data(d) > _STR_MAX:
                        raise self._fail(pos + i, f"corrupt record #{self.records + 1}: more than "
                                                  f"{_STR_MAX} bytes of text outside its data")
                    try:
                        record = record_from_dict(d)
                    except CodecError as e:
                        raise self._fail(pos + i, f"corrupt record #{self.records + 1}: {_short(e)}") from None
                    if type(record) is not Message or record.delays or not 0 <= (
                            record.id | record.conn_id | record.seq | record.arrival_ns | (record.release_ns or 0)
                    ) < _I64:  # the common case inline; _range_problem says what is wrong
                        problem = _range_problem(record)
                        if problem is not None:
                            raise self._fail(pos + i, f"corrupt record #{self.records + 1}: {problem}")
                    i += 4 + n
                    self.records += 1
                    self.bytes_read = pos + i
                    yield record
                if i:
                    del buf[:i]
                    pos += i
                if eof:
                    break
                chunk = f.read(self._chunk)
                if not chunk:
                    eof = True
                    continue
                buf += chunk
            if buf:
                self.truncated = True
                self.truncated_bytes = len(buf)
            self.bytes_read = self.total_bytes
        finally:
            f.close()

    def _only_zeros_after(self, buf: bytearray, i: int) -> bool:
        """Whether the buffer from ``i`` and the rest of the file hold nothing but zero bytes (reads to the end)."""
        if buf.count(0, i) != len(buf) - i:
            return False
        while chunk := self._f.read(self._chunk):
            if chunk.count(0) != len(chunk):
                return False
        return True

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_session(path: str | os.PathLike[str]) -> SessionReader:
    """Open a session file and read its header; iterate the result for its records.

    Raises :class:`SessionError` if the file cannot be opened or is not a session this version reads.
    """
    return SessionReader(path)

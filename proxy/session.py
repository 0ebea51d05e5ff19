"""Session files: the on-disk format of ``--record FILE`` and a streaming reader for it.

Role: the format's single definition (writer helpers used by :mod:`proxy.recorder`, and the reader used by
replay and by the window's "open session"). The format is specified for humans in docs/session-format.md:

    MAGIC (18 bytes: b"SOCKSCOPE-SESSION\\n")
    u32 big-endian header length, msgpack header map   (format version, clock anchor, settings, ...)
    repeated: u32 big-endian record length, msgpack record map  (``proxy.codec`` wire form)

A crash can only cut the file inside its last record (records are appended whole) or, when the recorder wrote
with direct I/O, leave less than a block of zero bytes after it (see :mod:`proxy.filesink`); either tail is
reported through ``SessionReader.truncated``, never raised. Anything else that is wrong (another file type,
a newer format, a corrupt header, an impossible length, a record that does not decode) raises
:class:`SessionError` naming the byte offset and the problem.
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
from proxy.model import Clock, Record

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
    "sockscope_version",
]

MAGIC: Final = b"SOCKSCOPE-SESSION\n"
FORMAT_VERSION: Final = 1
MAX_HEADER: Final = 1 << 20
"""A header is a few hundred bytes; anything near this is corruption, not a header."""
MAX_RECORD: Final = 256 << 20
"""Larger than any record the engine writes (a frame is capped at --max-frame, 16 MiB by default, and an
edited message is bounded by the control protocol's 64 MiB frame): a larger length means corruption."""

_U32: Final = struct.Struct(">I")


class SessionError(Exception):
    """The file is not a readable session; the message names the file, the offset and what is wrong."""


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
    if isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int):
        return (v[0], v[1])
    return None


class SessionReader:
    """Streams a session's records without loading the file. Use as an iterator, once.

    ``header`` is read on open. ``progress`` (0.0-1.0) and ``bytes_read`` advance during iteration, for a
    progress bar. After iteration, ``truncated`` says whether the file ended inside a record (a crash or a
    copy of a file still being written) and ``records`` how many whole records were read.
    """

    def __init__(self, path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> None:
        self.path = os.fspath(path)
        self._chunk = chunk
        try:
            self._f: IO[bytes] = open(self.path, "rb")
        except OSError as e:
            raise SessionError(f"{self.path}: cannot open: {e.strerror or e}") from None
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
        return SessionError(f"{self.path}: {what} (at byte {offset})")

    def _read_header(self) -> SessionHeader:
        start = self._f.read(len(MAGIC))
        if start != MAGIC:
            if MAGIC.startswith(start):
                raise SessionError(f"{self.path}: file ends inside the session header ({len(start)} bytes): "
                                   "nothing was recorded")
            raise SessionError(f"{self.path}: not a sockscope session (it starts with {start[:18]!r}, expected "
                               f"{MAGIC!r})")
        raw_len = self._f.read(4)
        if len(raw_len) < 4:
            raise SessionError(f"{self.path}: file ends inside the session header: nothing was recorded")
        (n,) = _U32.unpack(raw_len)
        if n == 0 or n > MAX_HEADER:
            raise self._fail(len(MAGIC), f"corrupt session header: length {n} is impossible")
        body = self._f.read(n)
        if len(body) < n:
            raise SessionError(f"{self.path}: file ends inside the session header: nothing was recorded")
        try:
            h = msgpack.unpackb(body, raw=False)
        except Exception as e:
            raise self._fail(len(MAGIC) + 4, f"corrupt session header: not msgpack ({e})") from None
        if not isinstance(h, dict):
            raise self._fail(len(MAGIC) + 4, f"corrupt session header: expected a map, got {type(h).__name__}")
        fmt = h.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise self._fail(len(MAGIC) + 4, f"corrupt session header: format version {fmt!r} is not a number")
        if fmt > FORMAT_VERSION:
            raise SessionError(f"{self.path}: session format {fmt} was written by a newer sockscope "
                               f"({h.get('sockscope_version', '?')}); this one reads format {FORMAT_VERSION}")
        clock = h.get("clock")
        try:
            anchor = Clock(int(clock["mono_ns"]), int(clock["wall_ns"]))  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            raise self._fail(len(MAGIC) + 4, f"corrupt session header: bad clock anchor {clock!r}") from None
        framing = h.get("framing")
        return SessionHeader(
            format=fmt,
            created_wall_ns=int(h.get("created_wall_ns") or 0),
            clock=anchor,
            listen=_addr(h.get("listen")),
            target=_addr(h.get("target")),
            framing=framing if isinstance(framing, dict) else {},
            sockscope_version=str(h.get("sockscope_version", "unknown")),
            raw=h,
        )

    # ---------------------------------------------------------------------------------- records

    @property
    def progress(self) -> float:
        return 1.0 if self.total_bytes <= 0 else min(1.0, self.bytes_read / self.total_bytes)

    def __iter__(self) -> Iterator[Record]:
        if self._iterated:
            raise SessionError(f"{self.path}: a SessionReader is iterated once; open the session again")
        self._iterated = True
        return self._records()

    def _records(self) -> Iterator[Record]:
        f = self._f
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
                    try:
                        d = msgpack.unpackb(body, raw=False)
                        record = record_from_dict(d)
                    except CodecError as e:
                        raise self._fail(pos + i, f"corrupt record #{self.records + 1}: {e}") from None
                    except Exception as e:
                        raise self._fail(pos + i, f"corrupt record #{self.records + 1}: not msgpack ({e})") from None
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

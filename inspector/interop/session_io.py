"""Session files for the window and the command line: a streaming loader, a writer, and store rows as records.

Role:

- :class:`SessionWriter` appends records to a session file in the format of ``proxy.session`` (the same bytes
  ``proxy.recorder.Recorder`` writes), buffered like the recorder. The window uses it to spool a live
  capture (so "Save session…" is a copy of exactly what arrived) and ``sockscope import`` to write sessions.
- :class:`SessionLoader` steps through a session in bounded batches (for a progress bar with cancel): memory
  is one batch plus the reader's 1 MiB chunk, whatever the file's size.
- :func:`store_records` turns rows of an ``inspector.store.MessageStore`` (the visible messages) back into
  records, for the exporters.

Must not import: PySide6, ``inspector.ui``, ``proxy.server``.
Thread: any; each object belongs to the thread that uses it (the window's are on the GUI thread).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

import msgpack

from proxy.codec import record_to_dict
from proxy.model import (
    Clock,
    ConnectionClosed,
    ConnectionOpened,
    HalfClosed,
    Record,
    Side,
    UpstreamConnected,
)
from proxy.session import SessionError, SessionHeader, SessionReader, encode_header, open_session

if TYPE_CHECKING:
    from inspector.store import MessageStore

__all__ = ["SessionError", "SessionLoader", "SessionWriter", "read_records", "store_records"]

_U32: Final = struct.Struct(">I")
DEFAULT_FRAMING: Final[dict[str, Any]] = {"c2s": "raw", "s2c": "raw", "max_frame": 16 << 20, "text": "raw"}


class SessionWriter:
    """Write ``path`` as a session file: the header now, then every record given to :meth:`write`.

    ``append=True`` continues an existing session file (its header is kept; nothing is rewritten). Records are
    buffered and written when the buffer passes ``flush_bytes`` and on :meth:`flush`/:meth:`close`; a file
    cut short still reads back up to its last whole record.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 listen: tuple[str, int] | None = None, target: tuple[str, int] | None = None,
                 framing: dict[str, Any] | None = None, append: bool = False,
                 flush_bytes: int = 256 << 10) -> None:
        self.path = os.fspath(path)
        self.flush_bytes = flush_bytes
        self.records_written = 0
        self._buf = bytearray()
        self._packer = msgpack.Packer(use_bin_type=True)
        if append:
            with open_session(self.path):  # refuses anything that is not a session we can read
                pass
            self._file: IO[bytes] | None = open(self.path, "ab")
        else:
            self._file = open(self.path, "wb")
            self._file.write(encode_header(clock=clock or Clock.now(), listen=listen, target=target,
                                           framing=framing or DEFAULT_FRAMING, created_wall_ns=time.time_ns()))
            self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, record: Record) -> None:
        body = self._packer.pack(record_to_dict(record))
        buf = self._buf
        buf += _U32.pack(len(body))
        buf += body
        self.records_written += 1
        if len(buf) >= self.flush_bytes:
            self.flush()

    def write_many(self, records: Iterable[Record]) -> None:
        for r in records:
            self.write(r)

    def write_framed(self, records: Sequence[Record], frames: Sequence[bytes | None]) -> None:
        """``records``, each given as its frame already encoded (as the control protocol delivered it: the same
        length prefix and map a session file holds) or None to encode it here."""
        if len(frames) != len(records):
            raise ValueError(f"{len(records)} records but {len(frames)} frames")
        buf = self._buf
        for r, f in zip(records, frames, strict=True):
            if f is None:
                body = self._packer.pack(record_to_dict(r))
                buf += _U32.pack(len(body))
                buf += body
            else:
                buf += f
        self.records_written += len(records)
        if len(buf) >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered records to the OS (whole records only, so a reader never sees half of one)."""
        if self._file is None or not self._buf:
            return
        data, self._buf = self._buf, bytearray()
        self._file.write(data)
        self._file.flush()

    def close(self) -> None:
        """Flush and close; safe to call twice."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            f, self._file = self._file, None
            f.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionLoader:
    """Read a session in batches: ``while not loader.done: apply(loader.next_batch())``.

    ``progress`` (0..1) follows the bytes read. Raises :class:`proxy.session.SessionError` on open (not a
    session, newer format, corrupt header) and from :meth:`next_batch` when a record is corrupt, after the
    records before it were returned; a file cut short inside its last record is not an error (``truncated`` is
    then true after the last batch).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._reader: SessionReader = open_session(path)
        self.header: SessionHeader = self._reader.header
        self.path = self._reader.path
        self._it: Iterator[Record] = iter(self._reader)
        self.done = False
        self.records = 0
        self._error: SessionError | None = None

    @property
    def progress(self) -> float:
        return 1.0 if self.done else self._reader.progress

    @property
    def total_bytes(self) -> int:
        return self._reader.total_bytes

    @property
    def truncated(self) -> bool:
        return self._reader.truncated

    @property
    def truncated_bytes(self) -> int:
        return self._reader.truncated_bytes

    def next_batch(self, max_records: int = 20_000, max_seconds: float | None = None) -> list[Record]:
        """Up to ``max_records`` records (fewer at the end, or when ``max_seconds`` has passed).

        A corrupt record ends the batch with the records before it; the :class:`SessionError` is raised by the
        next call, so a caller applying each batch keeps everything that could be read.
        """
        if self._error is not None:
            error, self._error = self._error, None
            self.close()
            raise error
        out: list[Record] = []
        if self.done:
            return out
        it = self._it
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        append = out.append
        try:
            while len(out) < max_records:
                for _ in range(min(512, max_records - len(out))):
                    append(next(it))
                if deadline is not None and time.perf_counter() >= deadline:
                    break
        except StopIteration:
            self.done = True
        except SessionError as e:
            if not out:
                self.close()
                raise
            self._error = e
        except BaseException:
            self.close()
            raise
        self.records += len(out)
        return out

    def close(self) -> None:
        self.done = True
        self._reader.close()

    def __enter__(self) -> SessionLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | os.PathLike[str]) -> tuple[SessionHeader, Iterator[Record]]:
    """The header and a streaming iterator over the records of the session at ``path``."""
    reader = open_session(path)
    return reader.header, iter(reader)


def store_records(store: MessageStore, rows: Iterable[int]) -> Iterator[Record]:
    """Records describing ``rows`` of ``store`` (e.g. its visible rows), in row order.

    Each connection is opened (and marked upstream-connected) before its first message, and closed (or
    half-closed) after the last row, at the times the store knows. Messages carry their final state, data and
    release time, so an exporter sees exactly what the table shows.
    """
    seen: dict[int, None] = {}
    conns = store.connections
    for row in rows:
        cid = store.conn_ids[row]
        if cid not in seen:
            seen[cid] = None
            c = conns.get(cid)
            if c is not None:
                yield ConnectionOpened(cid, c.client_addr, c.target_addr, c.opened_ns, c.replay_of)
                if c.server_addr is not None:
                    yield UpstreamConnected(cid, c.server_addr, c.opened_ns)
            else:
                yield ConnectionOpened(cid, ("?", 0), ("?", 0), store.arrivals[row])
        yield store.message(row)
    for cid in seen:
        c = conns.get(cid)
        if c is None:
            continue
        if c.closed_ns is not None and c.reason is not None:
            yield ConnectionClosed(cid, c.reason, c.detail, c.closed_ns, c.bytes[0], c.bytes[1], c.msgs[0],
                                   c.msgs[1])
        else:
            for side in sorted(c.half_closed):
                yield HalfClosed(cid, Side(side), c.opened_ns)


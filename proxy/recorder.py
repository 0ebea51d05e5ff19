"""``--record FILE``: a subscriber that appends every published record to a session file.

Role: writes the format defined in :mod:`proxy.session` (header, then length-prefixed msgpack records).
Each record is packed on the engine thread and copied at once into the staging memory of a
:class:`proxy.filesink.StagedFile`, whose own I/O thread writes every full 8 MiB segment, and whatever is staged
``flush_interval`` (100 ms) after the first unwritten record, and everything on close. The recorder is also the
server's :class:`proxy.server.ReadSink`: raw reads land in staging after room for their record's fixed-size head,
so a bulk payload is written to the file from the very memory the relay read it into. The engine thread never
waits for the disk: measured here, a plain ``write()`` on the loop thread held bulk relaying to the disk's
~450 MB/s (0.2-0.35x of relaying without recording).
Every record is kept. If the disk falls more than ``backlog_bytes`` (128 MiB) behind, message payloads are cut
to their first ``keep_bytes`` in the file (the record, its size and a notice in the file say so) until the
writer catches up: game traffic never gets near this; a bulk transfer faster than the disk does.
Records are appended whole, so after a crash the file reads back up to the last whole record.

If the disk fails (full, removed), recording stops with one ``Notice`` and relaying goes on.
Must not import: Qt, ``inspector``.
Thread: construct, call and close it on the engine's event-loop thread; the file is written by its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Final

import msgpack

from proxy.codec import MESSAGE_HEAD, framing_to_dict, message_head_tail, record_to_dict, truncated_dict
from proxy.control.wire import pack_framed
from proxy.filesink import StagedFile, open_staged
from proxy.model import Message, MessageUpdated, Notice, Record
from proxy.server import READ_SIZE, ProxyServer
from proxy.session import encode_header

__all__ = ["Recorder"]

_TAIL_ROOM: Final = 1024
"""Room kept after a read landing in staging for the rest of its record (timestamps, state, delays)."""
_READ_LEAST: Final = 64 << 10
"""Smallest staging room offered to a read; with less left in the segment, reads use the relay's own buffer."""


class Recorder:
    """Record everything ``server`` publishes into ``path`` (created or truncated) until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], server: ProxyServer, *, flush_interval: float = 0.1,
                 backlog_bytes: int = 128 << 20, keep_bytes: int = 4096, direct: bool | None = None) -> None:
        self.path = os.fspath(path)
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.flush_interval = flush_interval
        self.backlog_bytes = backlog_bytes
        self.keep_bytes = keep_bytes
        self.truncated_payloads = 0
        """Message payloads cut in the file because the disk fell behind."""
        self.records = 0
        """Records appended (in the file once flushed and written; all of them after :meth:`close`)."""
        self.staged_reads = 0
        """Messages whose payload the relay read straight into the file's staging memory (no copy)."""
        self.failed: str | None = None
        """Why recording stopped early (a disk error), else None."""
        self._timer: asyncio.TimerHandle | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        cfg = server.config
        header = encode_header(clock=server.clock, listen=server.listen_addr,
                               target=(cfg.target_host, cfg.target_port), framing=framing_to_dict(server.framing),
                               created_wall_ns=time.time_ns())
        # OSError here (bad directory, no permission) propagates: the CLI reports it before serving.
        self._file: StagedFile | None = open_staged(self.path, header, direct=direct, on_error=self._on_io_error)
        self.direct = self._file.direct
        """Whether the file is written with direct I/O (see :mod:`proxy.filesink`)."""
        self._unsubscribe: Callable[[], None] | None = server.subscribe(self)
        self._landed: bytes | None = None
        if server.read_sink is None:
            server.read_sink = self

    def read_buffer(self) -> memoryview | None:
        """:class:`proxy.server.ReadSink`: the relay's next read may land in staging, right after room for its
        record's head, so that a message's payload is never copied for the file (measured: the copy was most of
        the recording's cost on the engine thread at bulk rates)."""
        f = self._file
        if f is None or f.backlog > self.backlog_bytes:
            return None
        return f.reserve(MESSAGE_HEAD, _TAIL_ROOM, _READ_LEAST, READ_SIZE)

    def read_landed(self, data: bytes) -> None:
        self._landed = data

    def __call__(self, record: Record) -> None:
        f = self._file
        if f is None:
            return
        landed = self._landed
        if landed is not None:
            self._landed = None
            # The message made of that whole read, published before anything else was appended: its payload is
            # already in place. Anything else (a framed stream's pieces, a record in between) takes the copy.
            if type(record) is Message and record.data is landed:  # type: ignore[attr-defined]
                head, tail = message_head_tail(self._packer, record)  # type: ignore[arg-type]
                if f.commit(head, len(landed), tail):
                    self.records += 1
                    self.staged_reads += 1
                    if self._timer is None:
                        self._timer = self.loop.call_later(self.flush_interval, self._on_timer)
                    return
        if f.backlog > self.backlog_bytes and type(record) in (Message, MessageUpdated):
            d = truncated_dict(record, self.keep_bytes)  # type: ignore[arg-type]
            if self.truncated_payloads == 0:
                self.loop.call_soon(self._warn_behind)
            self.truncated_payloads += 1
        else:
            d = record_to_dict(record)
        for piece in pack_framed(self._packer, d):
            f.append(piece)
        self.records += 1
        if self._timer is None:
            self._timer = self.loop.call_later(self.flush_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand the staged records to the I/O thread now (they reach the OS soon after; no fsync)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._file is not None:
            self._file.flush()

    def _on_io_error(self, e: OSError) -> None:
        """I/O thread: the disk failed; the file writes nothing more."""
        why = f"recording to {self.path} stopped: {e.strerror or e}"
        self.failed = why
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self.loop.call_soon_threadsafe(self._fail, why)

    def _warn_behind(self) -> None:
        self.server.publish(Notice(
            "warning", f"recording to {self.path} fell {self.backlog_bytes >> 20} MiB behind the disk: message "
            f"payloads are cut to {self.keep_bytes} bytes in the file (sizes kept) until it catches up",
            time.monotonic_ns()))

    def _fail(self, why: str) -> None:
        if self._unsubscribe is None:
            return
        self._detach()
        print(f"sockscope: {why}", file=sys.stderr, flush=True)
        # Published after detaching, so the notice cannot come back into this recorder.
        self.server.publish(Notice("error", why, time.monotonic_ns()))

    def _detach(self) -> None:
        if self.server.read_sink is self:
            self.server.read_sink = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def close(self) -> None:
        """Write what is staged, stop listening and close the file. Safe to call twice."""
        self._detach()

    def __repr__(self) -> str:
        return f"Recorder({self.path!r}, records={self.records})"

"""``--record FILE``: a subscriber that appends every published record to a session file.

Role: writes the format defined in :mod:`proxy.session` (header, then length-prefixed msgpack records).
Records are packed into an in-memory buffer on the engine thread and written out when the buffer passes
``flush_bytes`` or ``flush_records``, when ``flush_interval`` (100 ms) has passed since the first unwritten
record, and on close. A write is one ``write()`` of at most about ``flush_bytes`` to the OS page cache, so
the loop is never held for long, and memory stays bounded by one buffer (plus one record larger than it).
Every record is kept: unlike a control subscriber, the recording is the ground truth and never drops.
Records are appended whole, so after a crash the file reads back up to the last whole record.

If the disk fails (full, removed), recording stops with one ``Notice`` and relaying goes on.
Must not import: Qt, ``inspector``.
Thread: the engine's event-loop thread (construct, call and close it there).
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from collections.abc import Callable
from typing import IO, Final

import msgpack

from proxy.codec import framing_to_dict, record_to_dict
from proxy.model import Notice, Record
from proxy.server import ProxyServer
from proxy.session import encode_header

__all__ = ["Recorder"]

_U32: Final = struct.Struct(">I")


class Recorder:
    """Record everything ``server`` publishes into ``path`` (created or truncated) until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], server: ProxyServer, *, flush_interval: float = 0.1,
                 flush_bytes: int = 256 << 10, flush_records: int = 4096) -> None:
        self.path = os.fspath(path)
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.flush_records = flush_records
        self.records_written = 0
        self.bytes_written = 0
        self.failed: str | None = None
        """Why recording stopped early (a disk error), else None."""
        self._buf = bytearray()
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        # OSError here (bad directory, no permission) propagates: the CLI reports it before serving.
        self._file: IO[bytes] | None = open(self.path, "wb")
        cfg = server.config
        header = encode_header(clock=server.clock, listen=server.listen_addr,
                               target=(cfg.target_host, cfg.target_port), framing=framing_to_dict(server.framing),
                               created_wall_ns=time.time_ns())
        self._file.write(header)
        self._file.flush()
        self.bytes_written = len(header)
        self._unsubscribe: Callable[[], None] | None = server.subscribe(self)

    def __call__(self, record: Record) -> None:
        if self._file is None:
            return
        body = self._packer.pack(record_to_dict(record))
        buf = self._buf
        buf += _U32.pack(len(body))
        buf += body
        self._pending += 1
        if len(buf) >= self.flush_bytes or self._pending >= self.flush_records:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.flush_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Write the buffered records to the file now (they reach the OS; no fsync)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._file is None or not self._buf:
            return
        data = self._buf
        self._buf = bytearray()
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._fail(f"recording to {self.path} stopped: {e.strerror or e}")
            return
        self.records_written += self._pending
        self.bytes_written += len(data)
        self._pending = 0

    def _fail(self, why: str) -> None:
        self.failed = why
        self._detach()
        print(f"sockscope: {why}", file=sys.stderr, flush=True)
        # Published after detaching, so the notice cannot come back into this recorder.
        self.server.publish(Notice("error", why, time.monotonic_ns()))

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        """Write what is buffered, stop listening and close the file. Safe to call twice."""
        self.flush()
        self._detach()

    def __repr__(self) -> str:
        return f"Recorder({self.path!r}, records={self.records_written})"

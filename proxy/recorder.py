"""``--record FILE``: a subscriber that appends every published record to a session file.

Role: writes the format defined in :mod:`proxy.session` (header, then length-prefixed msgpack records).
Records are packed into an in-memory buffer on the engine thread and handed to a writer thread when the buffer
passes ``flush_bytes`` or ``flush_records``, when ``flush_interval`` (100 ms) has passed since the first
unwritten record, and on close. The engine thread never waits for the disk: measured here, a plain ``write()``
on the loop thread held bulk relaying to the disk's ~450 MB/s (0.2-0.35x of relaying without recording).
The writer takes everything queued as one batch and appends it through a :mod:`proxy.filesink` sink (direct
I/O where the filesystem has it, so the page cache costs the relay no CPU).
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
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Final

import msgpack

from proxy.codec import framing_to_dict, pack_framed, record_to_dict, truncated_dict
from proxy.filesink import DirectSink, Sink, open_sink
from proxy.model import Message, MessageUpdated, Notice, Record
from proxy.server import ProxyServer
from proxy.session import encode_header

__all__ = ["Recorder"]

_LINGER: Final = 0.02
"""How long the writer keeps a burst open for more data before it finishes the file's last block."""
_NAP: Final = 0.002
_NOTHING: Final = object()


class Recorder:
    """Record everything ``server`` publishes into ``path`` (created or truncated) until :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str], server: ProxyServer, *, flush_interval: float = 0.1,
                 flush_bytes: int = 256 << 10, flush_records: int = 4096, backlog_bytes: int = 128 << 20,
                 keep_bytes: int = 4096, direct: bool | None = None) -> None:
        self.path = os.fspath(path)
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.flush_records = flush_records
        self.backlog_bytes = backlog_bytes
        self.keep_bytes = keep_bytes
        self.truncated_payloads = 0
        """Message payloads cut in the file because the disk fell behind."""
        self.records_written = 0
        self.bytes_written = 0
        self.failed: str | None = None
        """Why recording stopped early (a disk error), else None."""
        self._buf = bytearray()
        self._chunks: list[bytes] = []  # whole pieces ready for the writer: big payloads are never copied
        self._chunked_bytes = 0
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        cfg = server.config
        header = encode_header(clock=server.clock, listen=server.listen_addr,
                               target=(cfg.target_host, cfg.target_port), framing=framing_to_dict(server.framing),
                               created_wall_ns=time.time_ns())
        # OSError here (bad directory, no permission) propagates: the CLI reports it before serving.
        self._sink: Sink | None = open_sink(self.path, header, direct=direct)
        self.direct = isinstance(self._sink, DirectSink)
        """Whether the file is written with direct I/O (see :mod:`proxy.filesink`)."""
        self.bytes_written = len(header)
        self._backlog = 0  # bytes handed to the writer thread and not yet written (read racily: a hint)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[list[bytes], int, int] | None] = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._writer = threading.Thread(target=self._write_loop, name="sockscope-recorder", daemon=True)
        self._writer.start()
        self._unsubscribe: Callable[[], None] | None = server.subscribe(self)

    def __call__(self, record: Record) -> None:
        if self._sink is None:
            return
        if self._backlog > self.backlog_bytes and type(record) in (Message, MessageUpdated):
            d = truncated_dict(record, self.keep_bytes)  # type: ignore[arg-type]
            if self.truncated_payloads == 0:
                self.loop.call_soon(self._warn_behind)
            self.truncated_payloads += 1
        else:
            d = record_to_dict(record)
        pieces = pack_framed(self._packer, d)
        buf = self._buf
        if len(pieces) == 1:
            buf += pieces[0]
        else:  # a big payload: handed to the writer as it is, never copied here
            head, data, tail = pieces
            buf += head
            self._chunks.append(bytes(buf))
            self._chunks.append(data)
            self._chunked_bytes += len(buf) + len(data)
            buf.clear()
            buf += tail
        self._after_append()

    def _after_append(self) -> None:
        self._pending += 1
        if len(self._buf) + self._chunked_bytes >= self.flush_bytes or self._pending >= self.flush_records:
            self.flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.flush_interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Hand the buffered records to the writer thread now (they reach the OS soon after; no fsync)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sink is None or not (self._buf or self._chunks):
            return
        chunks = self._chunks
        if self._buf:
            chunks.append(bytes(self._buf))
        size = self._chunked_bytes + len(self._buf)
        self._buf = bytearray()
        self._chunks = []
        self._chunked_bytes = 0
        with self._lock:
            self._backlog += size
            self._idle.clear()
        self._queue.put((chunks, size, self._pending))
        self._pending = 0

    def wait_written(self, timeout: float = 10.0) -> bool:
        """Block until everything handed to the writer is in the file (for tests and ``close``)."""
        return self._idle.wait(timeout)

    def _write_loop(self) -> None:
        q = self._queue
        stop = False
        while not stop:
            item = q.get()
            if item is None:
                return
            # A burst: stage what arrives as it arrives (the sink writes whole 8 MiB segments), and finish the
            # file's last block only once nothing more has come for a moment. Every system call gives the GIL
            # away and must win it back from the busy event-loop thread: a few big writes keep up with bulk
            # relaying where a write per message fell behind.
            until = time.monotonic() + _LINGER
            while True:
                self._write(item[0], item[1], item[2], final=False)
                nxt = self._next(until)
                if nxt is _NOTHING:
                    break
                if nxt is None:
                    stop = True
                    break
                item = nxt  # type: ignore[assignment]
            self._write([], 0, 0, final=True)
            with self._lock:
                if self._backlog <= 0 and q.empty():
                    self._idle.set()

    def _next(self, until: float) -> object:
        """The next queued item, waiting in short naps until ``until``; ``_NOTHING`` when none came."""
        q = self._queue
        while True:
            try:
                return q.get_nowait()
            except queue.Empty:
                if time.monotonic() >= until:
                    return _NOTHING
                time.sleep(_NAP)

    def _write(self, chunks: list[bytes], size: int, records: int, *, final: bool) -> None:
        sink = self._sink
        if sink is not None and self.failed is None:
            try:
                sink.write_batch(chunks, final=final)
            except (OSError, ValueError) as e:
                why = f"recording to {self.path} stopped: {getattr(e, 'strerror', None) or e}"
                self.failed = why
                self.loop.call_soon_threadsafe(self._fail, why)
            else:
                self.records_written += records
                self.bytes_written += size
        if size:
            with self._lock:
                self._backlog -= size

    def _warn_behind(self) -> None:
        self.server.publish(Notice(
            "warning", f"recording to {self.path} fell {self.backlog_bytes >> 20} MiB behind the disk: message "
            f"payloads are cut to {self.keep_bytes} bytes in the file (sizes kept) until it catches up",
            time.monotonic_ns()))

    def _fail(self, why: str) -> None:
        self.failed = why
        self._detach(wait=False)
        print(f"sockscope: {why}", file=sys.stderr, flush=True)
        # Published after detaching, so the notice cannot come back into this recorder.
        self.server.publish(Notice("error", why, time.monotonic_ns()))

    def _detach(self, wait: bool = True) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer.is_alive():
            self._queue.put(None)
            if wait:
                self._writer.join(30)
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def close(self) -> None:
        """Write what is buffered, stop listening and close the file. Safe to call twice."""
        self.flush()
        self._detach()

    def __repr__(self) -> str:
        return f"Recorder({self.path!r}, records={self.records_written})"

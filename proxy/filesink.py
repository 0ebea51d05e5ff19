"""Append-only file output for the recorder: direct I/O where the OS has it, ordinary buffered writes elsewhere.

Role: the recorder's writer thread hands batches of byte chunks to a sink, which appends them to the session file.
Two sinks, one interface (``write_batch``, ``size``, ``close``):

- :class:`DirectSink` (Linux, filesystems that accept ``O_DIRECT``): chunks are copied into an aligned staging
  buffer and written from there straight to the device, bypassing the page cache. Measured on the 2-core test
  machine, buffered writes of a bulk recording cost 0.1-1.3 CPU seconds per 512 MiB (the kernel allocating page cache,
  which on a VM whose free memory is handed back to the host means faulting it in again), while direct writes cost
  0.02-0.06 s: the CPU stays with the relay. A chunk of up to 512 KiB (a game's message, most reads) is copied into
  the staging buffer holding the GIL, about 25-50 µs: giving the GIL away and winning it back from the busy
  event-loop thread costs more (measured: half the writer's CPU and context switches). A bigger one (a full 1 MiB
  bulk read, a 50 MB frame) goes through ``ctypes.memmove``, which releases the GIL, so the event loop never waits
  milliseconds for it. A partial last block is written padded and the file is cut back to its true length at once
  (``ftruncate``), so the file always ends at the last byte handed in; a crash between the two leaves zero bytes
  after the last record, which :mod:`proxy.session` reads as a cut file.
- :class:`BufferedSink`: one ``writev`` per batch (Windows: ``write`` loops).

Must not import: Qt, ``inspector``.
Thread: created on any thread; ``write_batch`` and ``close`` from one thread at a time (the recorder's writer).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Protocol

__all__ = ["BLOCK", "BufferedSink", "DirectSink", "Sink", "open_sink"]

BLOCK: Final = 4096
"""Alignment of direct I/O offsets, lengths and buffers (the largest logical block size in common use)."""
STAGING: Final = 8 << 20
_IOV_MAX: Final = 512
_SMALL: Final = 512 << 10
"""Chunks up to this size are copied into staging holding the GIL (see the module docstring)."""


class Sink(Protocol):
    size: int
    """Bytes in the file: everything handed to ``write_batch`` so far."""

    def write_batch(self, chunks: list[bytes], *, final: bool = True) -> None:
        """Append ``chunks``; raises OSError (disk full, device gone). With ``final`` False more is coming soon:
        the sink may keep a partial block back until a later call (``final`` True) or ``close``."""
        ...

    def close(self) -> None: ...


def open_sink(path: str, first: bytes, *, direct: bool | None = None) -> Sink:
    """Create or truncate ``path`` and write ``first`` (the session header) through the sink.

    ``direct`` None uses direct I/O when the platform and the filesystem accept it, else buffered writes; True
    insists (OSError if impossible); False never tries. Errors opening the file propagate.
    """
    if direct is not False and hasattr(os, "O_DIRECT"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        except OSError as e:
            if direct or e.errno != errno.EINVAL:  # EINVAL: this filesystem has no direct I/O (tmpfs)
                raise
        else:
            sink = DirectSink(fd)
            try:
                sink.write_batch([first])
            except OSError as e:
                sink.close()
                if direct or e.errno != errno.EINVAL:  # the open was accepted but the writes are not (FUSE)
                    raise
            else:
                return sink
    elif direct:
        raise OSError(errno.EINVAL, "direct I/O is not available on this platform")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    buffered = BufferedSink(fd)
    try:
        buffered.write_batch([first])
    except BaseException:
        buffered.close()
        raise
    return buffered


class BufferedSink:
    """Ordinary writes through the page cache."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0

    def write_batch(self, chunks: list[bytes], *, final: bool = True) -> None:
        fd = self.fd
        if not hasattr(os, "writev"):  # Windows
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                self.size += len(chunk)
            return
        chunks = list(chunks)
        i = 0
        while i < len(chunks):
            batch = chunks[i:i + _IOV_MAX]
            n = os.writev(fd, batch)
            if n == 0 and any(batch):
                raise OSError(errno.EIO, "the file took no bytes")
            self.size += n
            for c in batch:  # a short write: skip what went out, retry the rest
                if n >= len(c):
                    n -= len(c)
                    i += 1
                else:
                    chunks[i] = c[n:]
                    break

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


_memmove = ctypes.memmove


class _Segment:
    """One aligned staging buffer and the write of it in flight, if any."""

    __slots__ = ("addr", "buf", "pending", "view")

    def __init__(self) -> None:
        self.buf = mmap.mmap(-1, STAGING)  # page-aligned, so aligned for direct I/O
        # Fault the pages in now, before traffic: 2,048 page faults per buffer would otherwise land on the
        # first seconds of a bulk recording and put the writer behind.
        self.buf.write(bytes(STAGING))
        self.buf.seek(0)
        self.view = memoryview(self.buf)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))
        self.pending: Future[None] | None = None

    def settle(self) -> None:
        """Wait for the write in flight; raises its OSError."""
        if self.pending is not None:
            f, self.pending = self.pending, None
            f.result()

    def release(self) -> None:
        self.view.release()
        with contextlib.suppress(BufferError):  # the ctypes view of the buffer lives until collected
            self.buf.close()


class DirectSink:
    """``O_DIRECT`` writes from two aligned staging buffers: while a full one is written by an I/O thread, the
    next is filled. See the module docstring."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self._segs = (_Segment(), _Segment())
        self._seg = self._segs[0]
        self._io = ThreadPoolExecutor(1, thread_name_prefix="sockscope-record-io")
        self._pos = 0  # file offset of the current segment's first byte (a multiple of BLOCK)
        self._fill = 0  # bytes staged in the current segment
        self._closed = False

    def write_batch(self, chunks: list[bytes], *, final: bool = True) -> None:
        for chunk in chunks:
            self._stage(chunk)
        if final:
            self._write_staged()

    def _stage(self, chunk: bytes) -> None:
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        n = len(chunk)
        if not n:
            return
        if n <= _SMALL and self._fill + n <= STAGING:
            self._seg.view[self._fill:self._fill + n] = chunk
            self._fill += n
            self.size += n
            return
        src = ctypes.cast(ctypes.c_char_p(chunk), ctypes.c_void_p).value
        assert src is not None
        off = 0
        while off < n:
            k = min(STAGING - self._fill, n - off)
            _memmove(self._seg.addr + self._fill, src + off, k)  # releases the GIL while it copies
            self._fill += k
            off += k
            self.size += k
            if self._fill == STAGING:
                self._hand_off()

    def _hand_off(self) -> None:
        """The current segment is full: the I/O thread writes it while the other one fills."""
        seg = self._seg
        seg.pending = self._io.submit(_pwrite_all, self.fd, seg.view, STAGING, self._pos)
        self._pos += STAGING
        self._fill = 0
        self._seg = self._segs[1] if seg is self._segs[0] else self._segs[0]
        self._seg.settle()

    def _write_staged(self) -> None:
        """Everything staged to the file: whole blocks, then the last partial block padded and cut back."""
        for s in self._segs:
            s.settle()
        seg = self._seg
        whole = self._fill & ~(BLOCK - 1)
        if whole:
            _pwrite_all(self.fd, seg.view, whole, self._pos)
            rest = self._fill - whole
            if rest:
                _memmove(seg.addr, seg.addr + whole, rest)
            self._pos += whole
            self._fill = rest
        if self._fill:
            seg.view[self._fill:BLOCK] = bytes(BLOCK - self._fill)
            _pwrite_all(self.fd, seg.view, BLOCK, self._pos)
            os.ftruncate(self.fd, self._pos + self._fill)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._write_staged()
        self._io.shutdown(wait=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        for s in self._segs:
            s.release()


def _pwrite_all(fd: int, view: memoryview, n: int, pos: int) -> None:
    done = 0
    while done < n:  # direct writes are whole or fail; a short one is retried from where it stopped
        k = os.pwrite(fd, view[done:n], pos + done)
        if k <= 0:
            raise OSError(errno.EIO, "the file took no bytes")
        done += k

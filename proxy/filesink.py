"""Append-only file output for the recorder: staged in memory on the event-loop thread, written by an I/O thread.

Role: :class:`StagedFile` takes the recorder's bytes on the event-loop thread and copies them at once into a
staging segment (8 MiB, page-aligned, on huge pages where the kernel has them, faulted in before traffic). Or it
lends the memory where the next bytes go (:meth:`StagedFile.reserve`): the relay reads a payload straight into it
and the recorder commits it there with its record's head and tail around it (:meth:`StagedFile.commit`), no copy.
A full segment, or whatever :meth:`flush` finds staged, is handed to one I/O thread that writes it; the loop
thread never waits for the disk. Two ways to write:

- direct I/O (Linux, filesystems that accept ``O_DIRECT``): whole blocks straight from the segment to the device,
  bypassing the page cache. A partial last block is written padded and the file is cut back to its true length at
  once (``ftruncate``), so the file always ends at the last byte flushed; a crash between the two leaves zero bytes
  after the last record, which :mod:`proxy.session` reads as a cut file. The next write rewrites that block whole.
- buffered writes everywhere else (tmpfs, Windows, macOS): the same segments, written through the page cache.

Why copy on the loop thread rather than hand the payload objects to a writer thread (the design before): measured on
the 2-core test machine, every payload kept alive until a writer got to it grew the heap by the writer's lag, and
each relayed read then faulted fresh pages in (10,000-30,000 page faults per 512 MiB, which on a VM that hands free
memory back to the host are expensive), and the writer had to win the GIL from the busy loop for every chunk. The
copy here reads a payload that is still in the CPU's cache, into memory faulted in once. Buffered writes of a bulk
recording cost 0.1-1.3 CPU seconds per 512 MiB on that machine (allocating page cache), direct writes 0.02-0.06 s.

Must not import: Qt, ``inspector``.
Thread: ``append``, ``reserve``, ``commit``, ``flush`` and ``close`` on one thread (the engine's event loop); the
writes run on the file's own I/O thread, which also reports errors through ``on_error``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

__all__ = ["BLOCK", "SEGMENT", "StagedFile", "open_staged"]

BLOCK: Final = 4096
"""Alignment of direct I/O offsets, lengths and buffers (the largest logical block size in common use)."""
SEGMENT: Final = 8 << 20
"""Bytes per staging segment: one direct write per full segment."""
_HUGE: Final = 2 << 20
KEEP_SEGMENTS: Final = 6
"""Segments made when the file opens (48 MiB, faulted in by the I/O thread before the first write), so a disk that
is briefly slower than the relay (measured here: 8 MiB direct writes take 2.5-15 ms, i.e. 0.6-3 GB/s) costs no
page faults on the loop thread. When more are needed the disk is behind for longer: the loop thread makes them,
they stay while traffic keeps coming, and the ones beyond this many are unmapped after ``IDLE_TRIM`` seconds
without a shortage (making and unmapping them at each shortage cost the loop thread milliseconds each time)."""
IDLE_TRIM: Final = 5.0

WriteAt = Callable[[int, memoryview, int], int]
"""``(fd, data, offset) -> bytes written``: one write system call (replaced in tests by a stuck or failing disk)."""


def open_staged(path: str, first: bytes, *, direct: bool | None = None,
                on_error: Callable[[OSError], None] | None = None) -> StagedFile:
    """Create or truncate ``path`` and write ``first`` (the session header) through a new :class:`StagedFile`.

    ``direct`` None uses direct I/O when the platform and the filesystem accept it, else buffered writes; True
    insists (OSError if impossible); False never tries. Errors opening or writing the header propagate.
    """
    if direct is not False and hasattr(os, "O_DIRECT"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        except OSError as e:
            if direct or e.errno != errno.EINVAL:  # EINVAL: this filesystem has no direct I/O (tmpfs)
                raise
        else:
            f = StagedFile(fd, direct=True)
            try:
                f.append(first)
                f.sync()
            except OSError as e:
                f.close()
                if direct or e.errno != errno.EINVAL:  # the open was accepted but the writes are not (FUSE)
                    raise
            else:
                f.on_error = on_error
                return f
    elif direct:
        raise OSError(errno.EINVAL, "direct I/O is not available on this platform")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    f = StagedFile(fd, direct=False)
    try:
        f.append(first)
        f.sync()
    except BaseException:
        f.close()
        raise
    f.on_error = on_error
    return f


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    return os.pwrite(fd, data, offset)


def _write(fd: int, data: memoryview, offset: int) -> int:  # buffered: jobs run in file order, so append
    return os.write(fd, data)


class _Segment:
    """One page-aligned staging buffer, faulted in when made; on Linux backed by transparent huge pages where the
    kernel has them (``madvise``). Measured here, 8 MiB direct writes from huge pages ran at 4.9 GB/s for 0.004 CPU
    seconds per GiB, from 4 KiB pages at 2.6 GB/s for 0.034 s: the kernel pins 4 pages per write instead of 2,048.
    The segment also faults in 3x faster."""

    __slots__ = ("buf", "view")

    def __init__(self) -> None:
        private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        advise = getattr(mmap, "MADV_HUGEPAGE", None)
        if private and advise is not None:
            # Only private anonymous memory gets huge pages (mmap's default is shared), and only whole aligned
            # ones: map one huge page more and use the aligned part.
            self.buf = mmap.mmap(-1, SEGMENT + _HUGE, flags=private)
            c = ctypes.c_char.from_buffer(self.buf)
            off = -ctypes.addressof(c) % _HUGE
            del c
            with contextlib.suppress(OSError):  # a kernel without THP: 4 KiB pages
                self.buf.madvise(advise, off, SEGMENT)
            self.view = memoryview(self.buf)[off:off + SEGMENT]
        else:
            self.buf = mmap.mmap(-1, SEGMENT)
            self.view = memoryview(self.buf)
        # Fault the pages in now rather than on the first seconds of a bulk recording.
        zeros = bytes(1 << 20)
        for i in range(0, SEGMENT, 1 << 20):
            self.view[i:i + (1 << 20)] = zeros

    def release(self) -> None:
        self.view.release()
        with contextlib.suppress(BufferError):  # a write's slice may still be referenced until collected
            self.buf.close()


class StagedFile:
    """An append-only file: :meth:`append` copies into staging, :meth:`flush` hands what is staged to the I/O
    thread. See the module docstring."""

    def __init__(self, fd: int, *, direct: bool, on_error: Callable[[OSError], None] | None = None) -> None:
        self.fd = fd
        self.direct = direct
        self.on_error = on_error
        """Called on the I/O thread with the first write error; nothing more is written after it."""
        self.size = 0
        """Bytes appended so far."""
        self.written = 0
        """Bytes known to be in the file (updated by the I/O thread; read it as a hint)."""
        self.error: OSError | None = None
        self._write_at: WriteAt = _pwrite if direct else _write
        self._seg = _Segment()
        self._free: list[_Segment] = [_Segment()]
        self._base = 0  # file offset of the current segment's first byte (a multiple of SEGMENT)
        self._fill = 0  # bytes staged in the current segment
        self._handed = 0  # bytes of the current segment already handed to the I/O thread
        self._io = ThreadPoolExecutor(1, thread_name_prefix="sockscope-record-io")
        self._pad_buf = mmap.mmap(-1, BLOCK) if direct else None  # the I/O thread's padded last block
        self._pad = memoryview(self._pad_buf) if self._pad_buf is not None else memoryview(b"")
        self._lock = threading.Lock()  # guards _free against the I/O thread
        self._reserved: tuple[_Segment, int, int] | None = None  # (segment, start, tail room) of a reserve()
        self._short_at = 0.0  # when the loop thread last found no idle segment
        self._closed = False
        # The rest of the pool is faulted in by the I/O thread, off the loop thread, before the first write.
        self._last: Future[None] | None = self._io.submit(self._fill_pool)

    def _fill_pool(self) -> None:
        for _ in range(KEEP_SEGMENTS - 2):
            seg = _Segment()
            with self._lock:
                if self._closed:
                    seg.release()
                    return
                self._free.append(seg)

    @property
    def backlog(self) -> int:
        """Bytes appended and not yet in the file."""
        return self.size - self.written

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into staging; a full segment goes to the I/O thread. Never waits for the disk."""
        self._reserved = None
        n = len(data)
        fill = self._fill
        if fill + n < SEGMENT:
            self._seg.view[fill:fill + n] = data
            self._fill = fill + n
            self.size += n
            return
        src = memoryview(data).cast("B")
        off = 0
        while off < n:
            k = min(SEGMENT - self._fill, n - off)
            self._seg.view[self._fill:self._fill + k] = src[off:off + k]
            self._fill += k
            self.size += k
            off += k
            if self._fill == SEGMENT:
                self._seal()

    def reserve(self, head: int, tail: int, least: int, most: int) -> memoryview | None:
        """Staging memory for a piece of ``least`` to ``most`` bytes to be appended with :meth:`commit`, after a
        head of exactly ``head`` bytes and before a tail of up to ``tail``; None if the current segment has less
        room. Nothing is appended until ``commit``, and any append in between cancels the reservation."""
        start = self._fill + head
        room = SEGMENT - start - tail
        if room < least:
            self._reserved = None
            return None
        self._reserved = (self._seg, start, tail)
        return self._seg.view[start:start + min(room, most)]

    def commit(self, head: bytes, n: int, tail: bytes) -> bool:
        """Append ``head``, the first ``n`` bytes of the reserved memory (already filled: not copied) and ``tail``.
        False, appending nothing, if the reservation was cancelled or the head or tail is not what was promised."""
        r, self._reserved = self._reserved, None
        fill = self._fill
        if r is None or r[0] is not self._seg or r[1] != fill + len(head) or len(tail) > r[2]:
            return False
        view = self._seg.view
        start = fill + len(head)
        end = start + n
        view[fill:start] = head
        view[end:end + len(tail)] = tail
        self._fill = end + len(tail)
        self.size += self._fill - fill
        if self._fill == SEGMENT:
            self._seal()
        return True

    def flush(self) -> None:
        """Hand everything staged to the I/O thread (it reaches the OS soon after; no fsync)."""
        if self._fill > self._handed:
            self._submit(self._seg, self._handed, self._fill, recycle=False)
            self._handed = self._fill

    def sync(self, timeout: float | None = None) -> bool:
        """Flush, then block until every write handed over so far is done; raises the write error if one failed.
        For tests, the header and ``close``; False on timeout."""
        self.flush()
        last = self._last
        if last is not None:
            try:
                last.result(timeout)
            except TimeoutError:
                return False
        if self.error is not None:
            raise self.error
        return True

    def close(self) -> None:
        """Write everything staged, wait for it, close the file. Errors were already reported; safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self.flush()
        with self._lock:
            self._closed = True
        self._io.shutdown(wait=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self._seg.release()
        self._pad.release()
        if self._pad_buf is not None:
            with contextlib.suppress(BufferError):
                self._pad_buf.close()
        for s in self._free:
            s.release()
        self._free.clear()

    def _seal(self) -> None:
        """The current segment is full: it goes to the I/O thread and an idle one (or a new one) takes its place."""
        self._submit(self._seg, self._handed, SEGMENT, recycle=True)
        self._base += SEGMENT
        self._fill = self._handed = 0
        with self._lock:
            seg = self._free.pop() if self._free else None
        if seg is None:  # the disk is behind: staging grows
            self._short_at = time.monotonic()
            seg = _Segment()
        self._seg = seg

    def _submit(self, seg: _Segment, start: int, end: int, *, recycle: bool) -> None:
        self._last = self._io.submit(self._write_job, seg, self._base, start, end, recycle)

    def _write_job(self, seg: _Segment, base: int, start: int, end: int, recycle: bool) -> None:
        """I/O thread: write ``seg[start:end]`` at ``base + start``."""
        try:
            if self.error is None:
                if self.direct:
                    self._write_direct(seg, base, start, end)
                else:
                    self._write_all(seg.view[start:end], base + start)
                self.written = base + end
        except OSError as e:
            self.error = e
            if self.on_error is not None:
                self.on_error(e)
        finally:
            if recycle:
                spare: list[_Segment] = []
                with self._lock:
                    self._free.append(seg)
                    if len(self._free) > KEEP_SEGMENTS and time.monotonic() - self._short_at > IDLE_TRIM:
                        spare = self._free[KEEP_SEGMENTS:]
                        del self._free[KEEP_SEGMENTS:]
                for s in spare:
                    s.release()

    def _write_direct(self, seg: _Segment, base: int, start: int, end: int) -> None:
        lo = start & ~(BLOCK - 1)  # rewrite the block a flush left padded
        whole = end & ~(BLOCK - 1)
        if whole > lo:
            self._write_all(seg.view[lo:whole], base + lo)
        if end > whole:
            # The loop thread may be appending right after ``end`` in this block: write a padded copy of it.
            pad = self._pad
            pad[:end - whole] = seg.view[whole:end]
            pad[end - whole:] = bytes(BLOCK - (end - whole))
            self._write_all(pad, base + whole)
            os.ftruncate(self.fd, base + end)

    def _write_all(self, view: memoryview, offset: int) -> None:
        done, n = 0, len(view)
        while done < n:  # direct writes are whole or fail; a short one is retried from where it stopped
            k = self._write_at(self.fd, view[done:], offset + done)
            if k <= 0:
                raise OSError(errno.EIO, "the file took no bytes")
            done += k

"""The recorder's staged file: direct I/O and buffered writes give the same file, flush after flush, on a real disk;
a stuck or failing disk never blocks the appending thread."""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import msgpack
import pytest

from proxy import filesink
from proxy.codec import record_to_dict
from proxy.control.wire import SPLICE_MIN, pack_framed
from proxy.filesink import BLOCK, KEEP_SEGMENTS, SEGMENT, StagedFile, open_staged
from proxy.model import DelayReason, Direction, Message, MessageState, Origin
from proxy.session import SessionReader, encode_header, encode_record


def _direct_works(d: Path) -> bool:
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        open_staged(str(d / "probe"), b"x", direct=True).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["direct", "buffered"])
def direct(request: pytest.FixtureRequest, tmp_path: Path) -> bool:
    if request.param == "direct" and not _direct_works(tmp_path):
        pytest.skip("this filesystem has no direct I/O")
    return bool(request.param == "direct")


def test_appends_reach_the_file_exactly_at_every_sync(tmp_path: Path, direct: bool) -> None:
    """After every sync the file holds exactly the bytes appended so far: a partial last block is never left
    padded, a flush in the middle of a block is rewritten whole by the next one, pieces bigger than a segment go
    through whole, and short pieces between big ones keep their order."""
    rng = random.Random(7)
    path = tmp_path / "f.bin"
    f = open_staged(str(path), b"HEADER", direct=direct)
    assert f.direct is direct
    expected = bytearray(b"HEADER")
    sizes = [1, 3, BLOCK - 1, BLOCK, BLOCK + 1, 100, SPLICE_MIN, 256 << 10, SEGMENT - 7, SEGMENT + 5, 2 * SEGMENT + 1]
    for batch in range(14):
        for _ in range(rng.randint(1, 5)):
            piece = rng.randbytes(rng.choice(sizes))
            f.append(piece)
            expected += piece
            if rng.random() < 0.3:
                f.flush()  # a flush in the middle: the I/O thread writes while more is appended
        assert f.sync(10)
        assert f.size == f.written == len(expected) == os.path.getsize(path), batch
    f.close()
    assert path.read_bytes() == expected


def test_a_segment_filled_exactly_then_flushed(tmp_path: Path, direct: bool) -> None:
    path = tmp_path / "f.bin"
    f = open_staged(str(path), b"", direct=direct)
    a, b = os.urandom(SEGMENT), os.urandom(BLOCK + 3)
    f.append(a)
    f.flush()
    f.append(b)
    f.close()
    assert path.read_bytes() == a + b


def test_bytearray_and_memoryview_pieces_are_written_too(tmp_path: Path, direct: bool) -> None:
    f = open_staged(str(tmp_path / "f"), b"", direct=direct)
    f.append(bytearray(b"abc"))
    f.append(b"")
    f.append(memoryview(b"defg"))
    f.append(memoryview(bytearray(b"h" * SEGMENT)))
    f.close()
    assert (tmp_path / "f").read_bytes() == b"abcdefg" + b"h" * SEGMENT


def test_direct_insisted_on_where_impossible_is_an_error(tmp_path: Path) -> None:
    if hasattr(os, "O_DIRECT") and _direct_works(tmp_path):
        shm = Path("/dev/shm")
        if not shm.is_dir() or _direct_works(shm):
            pytest.skip("no filesystem without direct I/O to try")
        with pytest.raises(OSError):
            open_staged(str(shm / f"sockscope-test-{os.getpid()}"), b"x", direct=True)
        (shm / f"sockscope-test-{os.getpid()}").unlink(missing_ok=True)
        # and by default it falls back to buffered writes there
        f = open_staged(str(shm / f"sockscope-test-{os.getpid()}"), b"x")
        assert not f.direct
        f.close()
        (shm / f"sockscope-test-{os.getpid()}").unlink()
    else:
        with pytest.raises(OSError):
            open_staged(str(tmp_path / "f"), b"x", direct=True)


def test_a_stuck_disk_never_blocks_appending_and_loses_nothing(tmp_path: Path, direct: bool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The I/O thread hangs in a write: appends go on (staging grows past the segments made at the start), and once
    the disk answers the file is complete. The extra segments stay while traffic comes, and are given back once
    there has been no shortage for ``IDLE_TRIM`` seconds."""
    path = tmp_path / "f.bin"
    f = open_staged(str(path), b"H", direct=direct)
    gate = threading.Event()
    entered = threading.Event()
    real = f._write_at

    def stuck(fd: int, data: memoryview, offset: int) -> int:
        entered.set()
        assert gate.wait(30)
        return real(fd, data, offset)

    f._write_at = stuck
    pieces = [os.urandom(1 << 20) for _ in range((KEEP_SEGMENTS + 3) * (SEGMENT >> 20))]
    for p in pieces:
        f.append(p)  # never waits: this thread would hang here if it did
    assert entered.wait(10)
    assert f.backlog >= len(pieces) << 20
    gate.set()
    assert f.sync(30)
    assert len(f._free) > KEEP_SEGMENTS  # kept for the next burst
    monkeypatch.setattr(filesink, "IDLE_TRIM", 0.0)
    tail = os.urandom(2 * SEGMENT)
    f.append(tail)
    assert f.sync(30)
    assert len(f._free) <= KEEP_SEGMENTS
    f.close()
    assert path.read_bytes() == b"H" + b"".join(pieces) + tail


def test_a_failing_disk_is_reported_once_and_appending_goes_on(tmp_path: Path, direct: bool) -> None:
    errors: list[OSError] = []
    f = open_staged(str(tmp_path / "f"), b"H", direct=direct, on_error=errors.append)

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    f._write_at = full
    for _ in range(3):
        f.append(os.urandom(SEGMENT))  # seals segments: each write job fails
    with pytest.raises(OSError, match="No space"):
        f.sync(10)
    f.append(b"more")
    f.close()
    assert len(errors) == 1 and errors[0].errno == errno.ENOSPC
    assert isinstance(f, StagedFile) and f.error is errors[0]


@pytest.mark.parametrize("m", [
    Message(5, 3, Direction.S2C, 7, b"abc" * 10_000, 123_456_789, None),
    Message(2**40, 1, Direction.C2S, 2**33, b"", 1, 2, Origin.INJECTED, MessageState.SCHEDULED,
            ((DelayReason.QUEUE, 45), (DelayReason.LATENCY, 10**9))),
    Message(1, 1, Direction.C2S, 0, b"x", 0, 0),
])
def test_message_head_tail_is_the_message_record_with_a_fixed_size_head(m: Message) -> None:
    """Head, payload and tail read back as exactly the record ``pack_framed`` writes, whatever the values: this
    is what the recorder writes around a payload the relay read into staging."""
    from proxy.codec import MESSAGE_HEAD, message_head_tail, record_from_dict

    packer = msgpack.Packer(use_bin_type=True)
    head, tail = message_head_tail(packer, m)
    assert len(head) == MESSAGE_HEAD
    blob = head + m.data + tail
    assert int.from_bytes(blob[:4], "big") == len(blob) - 4
    d = msgpack.unpackb(blob[4:], raw=False)
    assert list(d) == list(record_to_dict(m)) and d == record_to_dict(m)
    assert record_from_dict(d) == m
    assert d == msgpack.unpackb(b"".join(pack_framed(packer, record_to_dict(m)))[4:], raw=False)


def test_pack_framed_splices_big_payloads_without_copying() -> None:
    packer = msgpack.Packer(use_bin_type=True)
    big = os.urandom(SPLICE_MIN)
    small = Message(1, 1, Direction.C2S, 0, b"x" * (SPLICE_MIN - 1), 5, 5)
    large = Message(2, 1, Direction.S2C, 0, big, 6, 7)
    for m in (small, large):
        pieces = pack_framed(packer, record_to_dict(m))
        joined = b"".join(pieces)
        assert int.from_bytes(joined[:4], "big") == len(joined) - 4
        assert msgpack.unpackb(joined[4:], raw=False) == record_to_dict(m)
    pieces = pack_framed(packer, record_to_dict(large))
    assert len(pieces) == 3 and pieces[1] is big


def _header() -> bytes:
    from proxy.model import Clock

    return encode_header(clock=Clock(1, 2), listen=("127.0.0.1", 1), target=("127.0.0.1", 2),
                         framing={"c2s": "raw", "s2c": "raw", "max_frame": 16}, created_wall_ns=3)


@pytest.mark.parametrize("padding", [4, 5, BLOCK - 1, BLOCK * 3])
def test_zero_padding_left_by_a_crash_reads_as_a_cut_file(tmp_path: Path, padding: int) -> None:
    records = [Message(i, 1, Direction.C2S, i, bytes([i]) * i, i, i) for i in range(1, 20)]
    blob = _header() + b"".join(encode_record(msgpack.packb(record_to_dict(r), use_bin_type=True)) for r in records)
    path = tmp_path / "s.sockscope"
    path.write_bytes(blob + bytes(padding))
    s = SessionReader(path, chunk=1024)
    assert list(s) == records
    assert s.truncated and s.truncated_bytes == padding and s.progress == 1.0


def test_a_zero_length_before_real_bytes_is_still_corruption(tmp_path: Path) -> None:
    from proxy.session import SessionError

    r = Message(1, 1, Direction.C2S, 0, b"a", 1, 1)
    blob = _header() + encode_record(msgpack.packb(record_to_dict(r), use_bin_type=True))
    path = tmp_path / "s.sockscope"
    path.write_bytes(blob + bytes(8) + b"\x01" + bytes(5000))
    with pytest.raises(SessionError, match="length 0 is impossible"):
        list(SessionReader(path, chunk=1024))


def test_allocator_tuning_takes_on_glibc_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform
    import sys

    from proxy.loop import tune_allocator

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert tune_allocator()
    else:
        assert not tune_allocator()
    monkeypatch.setenv("SOCKSCOPE_MALLOC", "default")
    assert not tune_allocator()


def test_reserved_memory_is_appended_in_place_by_commit(tmp_path: Path, direct: bool) -> None:
    """A piece written into reserved staging memory is appended between its head and tail without a copy; an
    append after the reservation cancels it (the caller then appends the piece normally); a segment filled to
    the byte by a commit goes to the disk."""
    path = tmp_path / "f.bin"
    f = open_staged(str(path), b"H", direct=direct)
    view = f.reserve(3, 10, 1, 100)
    assert view is not None and len(view) == 100
    view[:5] = b"hello"
    assert f.commit(b"<h>", 5, b"</t>")
    view = f.reserve(3, 10, 1, 100)
    assert view is not None
    view[:4] = b"lost"
    f.append(b"[appended]")  # takes the space: the reservation is void
    assert not f.commit(b"<h>", 4, b"")
    assert not f.commit(b"<h>", 4, b"")  # and stays void
    view = f.reserve(1, 4, 1, 100)
    assert view is not None
    assert not f.commit(b"<h>", 1, b"")  # a head of another size than reserved
    room = SEGMENT - f.size - 2  # fill the first segment to its last byte
    view = f.reserve(1, 1, room, room)
    assert view is not None and len(view) == room
    view[:] = b"z" * room
    assert f.commit(b"(", room, b")")
    assert f.reserve(1, 1, SEGMENT, SEGMENT) is None  # never more than a segment
    f.close()
    assert path.read_bytes() == b"H<h>hello</t>[appended](" + b"z" * room + b")"

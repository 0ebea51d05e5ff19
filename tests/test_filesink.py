"""The recorder's file sinks: direct I/O and buffered writes give the same file, batch after batch, on a real disk."""

from __future__ import annotations

import os
import random
from pathlib import Path

import msgpack
import pytest

from proxy.codec import SPLICE_MIN, pack_framed, record_to_dict
from proxy.filesink import BLOCK, STAGING, BufferedSink, DirectSink, open_sink
from proxy.model import Direction, Message
from proxy.session import SessionReader, encode_header, encode_record


def _direct_works(d: Path) -> bool:
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        open_sink(str(d / "probe"), b"x", direct=True).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["direct", "buffered"])
def direct(request: pytest.FixtureRequest, tmp_path: Path) -> bool:
    if request.param == "direct" and not _direct_works(tmp_path):
        pytest.skip("this filesystem has no direct I/O")
    return bool(request.param == "direct")


def test_batches_reach_the_file_exactly_and_at_once(tmp_path: Path, direct: bool) -> None:
    """After every batch the file holds exactly the bytes handed in so far: a partial last block is never left
    padded, a chunk bigger than the staging buffer goes through whole, and short chunks between big ones keep
    their order."""
    rng = random.Random(7)
    path = tmp_path / "f.bin"
    sink = open_sink(str(path), b"HEADER", direct=direct)
    assert isinstance(sink, DirectSink if direct else BufferedSink)
    expected = bytearray(b"HEADER")
    sizes = [1, 3, BLOCK - 1, BLOCK, BLOCK + 1, 100, SPLICE_MIN, 256 << 10, STAGING - 7, STAGING + 5, 2 * STAGING + 1]
    for batch in range(12):
        chunks = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.randint(1, 5))]
        sink.write_batch(chunks)
        for c in chunks:
            expected += c
        assert sink.size == len(expected) == os.path.getsize(path), batch
    sink.close()
    assert path.read_bytes() == expected


def test_a_bytearray_chunk_is_written_too(tmp_path: Path, direct: bool) -> None:
    sink = open_sink(str(tmp_path / "f"), b"", direct=direct)
    sink.write_batch([bytearray(b"abc"), b"", memoryview(b"defg").tobytes()])
    sink.close()
    assert (tmp_path / "f").read_bytes() == b"abcdefg"


def test_direct_insisted_on_where_impossible_is_an_error(tmp_path: Path) -> None:
    if hasattr(os, "O_DIRECT") and _direct_works(tmp_path):
        shm = Path("/dev/shm")
        if not shm.is_dir() or _direct_works(shm):
            pytest.skip("no filesystem without direct I/O to try")
        with pytest.raises(OSError):
            open_sink(str(shm / f"sockscope-test-{os.getpid()}"), b"x", direct=True)
        (shm / f"sockscope-test-{os.getpid()}").unlink(missing_ok=True)
        # and by default it falls back to buffered writes there
        sink = open_sink(str(shm / f"sockscope-test-{os.getpid()}"), b"x")
        assert isinstance(sink, BufferedSink)
        sink.close()
        (shm / f"sockscope-test-{os.getpid()}").unlink()
    else:
        with pytest.raises(OSError):
            open_sink(str(tmp_path / "f"), b"x", direct=True)


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

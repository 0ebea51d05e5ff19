"""Session files: a live recording reads back byte-exact; a cut file reads up to the cut; corruption is named."""

from __future__ import annotations

import os
import random
import shutil
import struct
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgpack
import pytest

from proxy.codec import record_to_dict
from proxy.model import ConnectionClosed, Direction, Message, Notice
from proxy.recorder import Recorder
from proxy.runner import ProxyThread
from proxy.session import MAGIC, SessionError, encode_header, encode_record, open_session
from tests.conftest import EchoServer, connect, recv_exact
from tests.conftest import Recorder as Records

CONNS = 100


def _start_recording(p: ProxyThread, path: Path, **kw: Any) -> Recorder:
    return p.call(lambda: Recorder(path, p.server, **kw))


def _record_traffic(start_proxy: Any, recorder: Records, echo_server: EchoServer, path: Path,
                    conns: int, rounds: int, direct: bool | None = None) -> dict[int, bytes]:
    """Relay ``conns`` interleaved connections while recording; returns what each client sent, by local port."""
    p = start_proxy(echo_server.port)
    rec = _start_recording(p, path, direct=direct)
    rng = random.Random(4)
    socks = [connect(p.port) for _ in range(conns)]
    sent: dict[int, bytearray] = {s.getsockname()[1]: bytearray() for s in socks}
    for _ in range(rounds):
        chunks = []
        for s in socks:
            chunk = rng.randbytes(rng.randint(1, 3000))
            s.sendall(chunk)
            sent[s.getsockname()[1]] += chunk
            chunks.append(chunk)
        for s, chunk in zip(socks, chunks, strict=True):
            assert recv_exact(s, len(chunk)) == chunk
    for s in socks:
        s.close()
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed) and len(recorder.of(ConnectionClosed)) >= conns)
    p.call(rec.close)
    assert rec.failed is None
    return {port: bytes(b) for port, b in sent.items()}


@pytest.mark.parametrize("direct", [None, False], ids=["direct-io-where-possible", "buffered"])
def test_recording_of_100_connections_is_byte_exact(start_proxy: Any, recorder: Records,
                                                    echo_server: EchoServer, tmp_path: Path,
                                                    direct: bool | None) -> None:
    path = tmp_path / "s.sockscope"
    sent = _record_traffic(start_proxy, recorder, echo_server, path, CONNS, rounds=5, direct=direct)
    session = open_session(path)
    assert session.header.format == 1
    assert session.header.target == ("127.0.0.1", echo_server.port)
    assert session.header.framing["c2s"] == "raw"
    streams: dict[tuple[int, Direction], list[Message]] = defaultdict(list)
    port_of: dict[int, int] = {}
    closed = set()
    kinds = set()
    last_progress = 0.0
    for r in session:
        kinds.add(type(r).__name__)
        assert session.progress >= last_progress
        last_progress = session.progress
        if isinstance(r, Message):
            streams[(r.conn_id, r.direction)].append(r)
        elif isinstance(r, ConnectionClosed):
            closed.add(r.conn_id)
        elif hasattr(r, "client_addr"):
            port_of[r.conn_id] = r.client_addr[1]  # type: ignore[union-attr]
    assert not session.truncated and session.progress == 1.0
    assert {"ConnectionOpened", "UpstreamConnected", "Message", "ConnectionClosed"} <= kinds
    assert len(port_of) == CONNS and closed == set(port_of)
    for conn_id, port in port_of.items():
        for d in Direction:
            msgs = streams[(conn_id, d)]
            assert [m.seq for m in msgs] == list(range(len(msgs)))
            assert b"".join(m.data for m in msgs) == sent[port], (conn_id, d)


def test_recorded_records_equal_published_records(start_proxy: Any, recorder: Records,
                                                  echo_server: EchoServer, tmp_path: Path) -> None:
    path = tmp_path / "s.sockscope"
    _record_traffic(start_proxy, recorder, echo_server, path, conns=3, rounds=3)
    got = list(open_session(path))
    # The test's own subscriber was registered first, so it saw everything the recorder saw, in order.
    assert got == recorder.records[-len(got):]
    assert got[0] == recorder.records[0]


def _header() -> bytes:
    from proxy.model import Clock

    return encode_header(clock=Clock(1, 2), listen=("127.0.0.1", 1), target=("127.0.0.1", 2),
                         framing={"c2s": "raw", "s2c": "raw", "max_frame": 16}, created_wall_ns=3)


def _write_session(path: Path, records: list[Any]) -> list[int]:
    """A session file written by hand; returns the offset where each record ends."""
    data = _header()
    ends = []
    for r in records:
        data += encode_record(msgpack.packb(record_to_dict(r), use_bin_type=True))
        ends.append(len(data))
    path.write_bytes(data)
    return ends


def _sample_records(n: int) -> list[Any]:
    return [Message(i, 1, Direction(i % 2), i // 2, bytes([i % 256]) * (i * 7 % 50 + 1), i, i) for i in range(1, n)]


def test_truncated_file_reads_up_to_the_cut(tmp_path: Path) -> None:
    records = _sample_records(30)
    full = tmp_path / "full"
    ends = _write_session(full, records)
    header_end = len(_header())
    blob = full.read_bytes()
    cut = tmp_path / "cut"
    for size in sorted({header_end, header_end + 2, *ends, *(e - 1 for e in ends), *(e + 3 for e in ends[:-1])}):
        cut.write_bytes(blob[:size])
        s = open_session(cut)
        got = list(s)
        whole = sum(1 for e in ends if e <= size)
        assert got == records[:whole], size
        assert s.truncated == (size not in ends and size != header_end), size
        assert s.records == whole


def test_cut_inside_the_header_says_nothing_was_recorded(tmp_path: Path) -> None:
    full = tmp_path / "full"
    _write_session(full, [])
    blob = full.read_bytes()
    for size in (0, 5, len(MAGIC), len(MAGIC) + 2, len(blob) - 1):
        p = tmp_path / f"cut{size}"
        p.write_bytes(blob[:size])
        with pytest.raises(SessionError, match="nothing was recorded"):
            open_session(p)


def test_live_recording_is_readable_before_close(start_proxy: Any, echo_server: EchoServer, tmp_path: Path) -> None:
    """Flushed within ~100 ms without closing: what a crash would leave behind reads back."""
    p = start_proxy(echo_server.port)
    path = tmp_path / "live"
    rec = _start_recording(p, path)
    s = connect(p.port)
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    deadline = time.monotonic() + 5
    found: list[Message] = []
    while time.monotonic() < deadline and len(found) < 2:
        # A copy, as a crash would leave it: the recorder keeps writing to the original.
        shutil.copy(path, tmp_path / "copy")
        found = [r for r in open_session(tmp_path / "copy") if isinstance(r, Message)]
        time.sleep(0.02)  # polling a file another thread writes: no event to wait on
    assert [m.data for m in found] == [b"ping", b"ping"]
    s.close()
    p.call(rec.close)


@pytest.mark.parametrize(("mangle", "words"), [
    (lambda b: b"GIF89a" + b[6:], "not a sockscope session"),
    (lambda b: b[:len(MAGIC)] + struct.pack(">I", 1 << 30) + b[len(MAGIC) + 4:], "corrupt session header: length"),
    (lambda b: b[:len(MAGIC) + 4] + b"\xc1" + b[len(MAGIC) + 5:], "corrupt session header: not msgpack"),
])
def test_corrupt_header_is_named(tmp_path: Path, mangle: Any, words: str) -> None:
    p = tmp_path / "s"
    _write_session(p, _sample_records(3))
    p.write_bytes(mangle(p.read_bytes()))
    with pytest.raises(SessionError, match=words) as e:
        open_session(p)
    assert str(p) in str(e.value)


def test_newer_format_is_refused_clearly(tmp_path: Path) -> None:
    body = msgpack.packb({"format": 99, "clock": {"mono_ns": 0, "wall_ns": 0}, "sockscope_version": "9.0"})
    p = tmp_path / "new"
    p.write_bytes(MAGIC + struct.pack(">I", len(body)) + body)
    with pytest.raises(SessionError, match="format 99 was written by a newer sockscope"):
        open_session(p)


def test_corrupt_record_is_named_with_its_offset(tmp_path: Path) -> None:
    p = tmp_path / "s"
    ends = _write_session(p, _sample_records(5))
    blob = bytearray(p.read_bytes())
    blob[ends[1]:ends[1] + 4] = struct.pack(">I", 0xFFFFFFF0)  # third record's length
    p.write_bytes(bytes(blob))
    s = open_session(p)
    it = iter(s)
    assert next(it) and next(it)
    with pytest.raises(SessionError, match=rf"corrupt record: length \d+ is impossible .*at byte {ends[1]}"):
        next(it)
    blob = bytearray(p.read_bytes())
    blob[ends[1]:ends[1] + 6] = struct.pack(">I", 2) + b"\x81\xc1"  # a map with an invalid byte
    p.write_bytes(bytes(blob[:ends[1] + 6]))
    with pytest.raises(SessionError, match="corrupt record #3"):
        list(open_session(p))


def test_unknown_record_type_is_corruption(tmp_path: Path) -> None:
    p = tmp_path / "s"
    _write_session(p, [])
    with open(p, "ab") as f:
        f.write(encode_record(msgpack.packb({"type": "weird"})))
    with pytest.raises(SessionError, match="unknown record type 'weird'"):
        list(open_session(p))


def test_missing_file() -> None:
    with pytest.raises(SessionError, match="cannot open"):
        open_session("/nonexistent/dir/x.sockscope")


def test_streams_large_files_in_chunks(tmp_path: Path) -> None:
    """Records bigger than the read chunk, and many of them: the reader never needs the whole file."""
    records = [Message(i, 1, Direction.C2S, i - 1, os.urandom(3000), 0, 0) for i in range(1, 50)]
    p = tmp_path / "s"
    _write_session(p, records)
    from proxy.session import SessionReader

    s = SessionReader(p, chunk=1000)
    assert list(s) == records and not s.truncated


def test_recorder_stops_cleanly_on_disk_error(start_proxy: Any, recorder: Records, echo_server: EchoServer,
                                              tmp_path: Path) -> None:
    p = start_proxy(echo_server.port)
    rec = _start_recording(p, tmp_path / "s")

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(28, "No space left on device")

    def breaking() -> None:
        assert rec._file is not None
        rec._file._write_at = full

    p.call(breaking)
    s = connect(p.port)
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"  # relaying goes on
    n = recorder.wait_for(lambda r: isinstance(r, Notice) and "recording" in r.text)
    assert "No space left" in n.text  # type: ignore[union-attr]
    s.sendall(b"y")
    assert recv_exact(s, 1) == b"y"
    assert rec.failed is not None
    s.close()


def test_a_slow_disk_never_stalls_relaying(start_proxy: Any, recorder: Records, echo_server: EchoServer,
                                           tmp_path: Path) -> None:
    """The I/O thread is stuck (a disk that does not answer): relaying goes on, the recording keeps every
    record but cuts payloads once it is ``backlog_bytes`` behind, says so, and is complete once the disk is back."""
    import threading

    p = start_proxy(echo_server.port)
    path = tmp_path / "slow.sockscope"
    rec = _start_recording(p, path, backlog_bytes=64 << 10, keep_bytes=16, flush_interval=0.001)
    gate = threading.Event()
    f = rec._file
    assert f is not None
    real = f._write_at

    def stuck(fd: int, data: memoryview, offset: int) -> int:
        gate.wait(30)
        return real(fd, data, offset)

    def install() -> None:
        f._write_at = stuck

    p.call(install)
    blob = b"z" * (32 << 10)
    with connect(p.port) as c:
        for _ in range(8):  # 256 KiB each way while the disk is stuck: every echo still comes back
            c.sendall(blob)
            assert recv_exact(c, len(blob)) == blob
    note = recorder.wait_for(lambda r: isinstance(r, Notice) and "behind the disk" in r.text)
    assert note is not None
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    gate.set()
    p.call(rec.close)
    assert rec.truncated_payloads > 0
    msgs = [r for r in open_session(path) if isinstance(r, Message)]
    assert len(msgs) == len(recorder.of(Message))  # no record is lost, only payload bytes
    assert any(len(m.data) == 16 for m in msgs) and any(len(m.data) == len(blob) for m in msgs)


@pytest.mark.parametrize("direct", [None, False], ids=["direct-io-where-possible", "buffered"])
@pytest.mark.parametrize("framing", ["raw", "len32be"])
def test_bulk_reads_land_in_the_recording_without_a_copy_and_read_back_exact(
        start_proxy: Any, recorder: Records, echo_server: EchoServer, tmp_path: Path, direct: bool | None,
        framing: str) -> None:
    """Reads of a bulk transfer land straight in the file's staging memory (the relay's read is the recording's
    copy) when a whole read is one message; framed messages (several per read, or one across reads) take the
    ordinary path. Either way every message reads back byte-exact and in order, both directions."""
    from proxy.framing import FramingSpec

    p = start_proxy(echo_server.port, FramingSpec(framing, framing))
    path = tmp_path / "bulk.sockscope"
    rec = _start_recording(p, path, direct=direct)
    rng = random.Random(9)
    sent = bytearray()
    with connect(p.port) as c:
        for _ in range(48):
            body = rng.randbytes(rng.choice([1, 100, 5000, 70_000, 300_000, 1 << 20]))
            chunk = body if framing == "raw" else b"".join(len(x).to_bytes(4, "big") + x for x in (body, body[:9]))
            c.sendall(chunk)
            assert recv_exact(c, len(chunk)) == chunk
            sent += chunk
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    p.call(rec.close)
    assert rec.failed is None
    assert rec.staged_reads > 0 if framing == "raw" else rec.staged_reads == 0
    msgs = [r for r in open_session(path) if isinstance(r, Message)]
    live = recorder.of(Message)
    assert msgs == live  # every field, every byte, the same order as published
    for d in Direction:
        assert b"".join(m.data for m in msgs if m.direction is d) == sent

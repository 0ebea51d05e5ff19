"""What the WebSocket stream tracker keeps per frame: records the garbage collector need not walk, released oldest
first from either table within the caps (a frame looked up by identity, or one cut out of a read, by value)."""

from __future__ import annotations

import gc
import zlib

import pytest

from inspector.decode import _websocket
from inspector.decode._websocket import StreamInfo, StreamTracker
from proxy.model import Direction, Message
from proxy.websocket import build_frame


def _deflated(z: zlib._Compress, text: bytes) -> bytes:
    out = z.compress(text) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def _kept_bytes(t: StreamTracker) -> int:
    """What the tracker's byte count should be: its records' pieces and messages, and the bytes kept by identity."""
    total = 0
    for rec in t._by_id.values():
        total += StreamInfo(*rec[1:]).size + len(rec[0])
    for (_conn, _d, data), rec in t._by_value.items():
        total += StreamInfo(*rec).size + len(data)
    return total


def test_the_records_kept_are_not_walked_by_the_garbage_collector() -> None:
    """Tens of thousands of kept frames must not each be an object every full collection walks (a named tuple is
    tracked for as long as it lives; a plain tuple of bytes and numbers is untracked by the first collection)."""
    t = StreamTracker()
    feed = t.feeder(object(), 1, Direction.S2C)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    frames = [build_frame(True, 1, _deflated(z, b'{"tick": %d}' % i), False, rsv1=True) for i in range(50)]
    for i, f in enumerate(frames):
        feed(Message(i, 1, Direction.S2C, i, f, 0, 0))
    gc.collect()
    assert len(t._by_id) == 50
    assert not any(gc.is_tracked(rec) for rec in t._by_id.values())
    info = t.lookup(frames[7], 1, Direction.S2C)
    assert info is not None and info.message == b'{"tick": 7}' and info.compressed and info.fragments == 1


def test_records_kept_by_value_are_released_within_the_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames cut out of reads that held two frames each are kept by value; past the entry cap the oldest go,
    and the byte count stays that of what is kept (the release once failed on these records, and did not count
    out the frame's bytes it had counted in)."""
    monkeypatch.setattr(_websocket, "TRACK_ENTRIES", 8)
    t = StreamTracker()
    feed = t.feeder(object(), 1, Direction.S2C)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    frames = [build_frame(True, 2, _deflated(z, b"state %d " % i * 3), False, rsv1=True) for i in range(40)]
    for i in range(0, 40, 2):
        feed(Message(i, 1, Direction.S2C, i, frames[i] + frames[i + 1], 0, 0))
    assert not t._by_id and len(t._by_value) == 8
    assert t._bytes == _kept_bytes(t)
    assert t.lookup(frames[0], 1, Direction.S2C) is None
    last = t.lookup(frames[39], 1, Direction.S2C)
    assert last is not None and last.message == b"state 39 " * 3

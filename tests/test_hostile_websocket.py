"""Hostile WebSocket streams (tests/hostile/websocket/, see its README): the framer passes every byte exactly and
linearly, the decoder and its stream tracker answer every frame with one-line complaints and never raise, work
and memory stay bounded by the bytes (a decompression bomb is capped and says so), and a real proxy passes each
stream through without a stall."""

from __future__ import annotations

import itertools
import random
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from inspector.decode import View, builtin_decoders, default_registry
from inspector.decode._registry import DecoderRegistry
from inspector.decode._websocket import INFLATE_MAX, RATIO, StreamTracker, WebSocketDecoder
from proxy.framing import FramingSpec
from proxy.model import Direction, Message
from proxy.runner import ProxyThread
from proxy.websocket import TRACK_MESSAGE_MAX, WebSocketFramer, build_frame
from tests.conftest import EchoServer, connect, recv_exact

CASES = sorted((Path(__file__).parent / "hostile" / "websocket").glob("*.bin"))
SMALL_CAP = 4096

FALLS_BACK = {
    "huge-declared-length": "more than the",
    "length-top-bit-set": "top bit set",
    "reserved-opcode": "reserved opcode 3",
    "head-never-ends": "an HTTP head longer than 16384 bytes",
    "upgrade-refused-403": "'HTTP/1.1 403 Forbidden', not 101 Switching Protocols",
}
"""Files the framer gives up on (at the default cap), and the words of its one-line reason."""
COMPLAINT = {
    "deflate-bomb-16mib": "inflated past 1048576 bytes",
    "deflate-garbage": "does not inflate",
    "deflate-refers-to-unseen-history": "invalid distance too far back",
    "unmasked-client-frame": "not masked",
    "masked-server-frame": "server frame that is masked",
    "ping-200-bytes": "at most 125",
    "fragmented-ping": "fragmented control frame",
    "continuation-without-start": "no message to continue",
    "new-message-before-the-last-ended": "a new message began before the last one ended",
    "rsv1-on-continuation": "RSV1 on a control or continuation frame",
    "rsv2-rsv3-set": "RSV2/RSV3 set",
    "close-reserved-code-1005": "must not be sent",
    "close-one-byte": "1-byte payload",
    "close-reason-not-utf8": "close reason is not UTF-8",
    "close-code-999": "must not be sent",
    "text-not-utf8": "not UTF-8",
}
"""What the decoder says about a frame of each file (in a warning, an error or the summary)."""


def stem(path: Path) -> str:
    return path.stem.split("--", 1)[1]


def direction(path: Path) -> Direction:
    return Direction.C2S if path.name.startswith("c2s") else Direction.S2C


def test_every_file_is_described_in_the_readme() -> None:
    readme = (CASES[0].parent / "README.md").read_text()
    assert {p.name for p in CASES} == {line.split("|")[1].strip() for line in readme.splitlines()
                                       if line.startswith("| ") and ".bin" in line}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [1 << 24, SMALL_CAP], ids=["cap16MiB", "cap4KiB"])
@pytest.mark.parametrize("how", ["whole", "byte_by_byte", "random_splits", "trailing_bytes"])
@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_the_framer_passes_every_byte_exactly_and_linearly(path: Path, how: str, cap: int) -> None:
    data = path.read_bytes()
    tail = b""
    if how == "whole":
        chunks = [data]
    elif how == "byte_by_byte":
        chunks = [data[i:i + 1] for i in range(len(data))]
    elif how == "random_splits":
        rng = random.Random(len(data))
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, len(data) // 50 + 3)))
        chunks = [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]
    else:
        tail = b"\x81\x05after" + b"\x00\xff trailer"
        chunks = [data + tail[:4], tail[4:]]
    f = WebSocketFramer(cap)
    frames = []
    for ch in chunks:
        frames.extend(f.feed(ch))
    assert b"".join(frames) + f.flush() == data + tail
    assert all(frames)
    assert f.work <= 8 * len(data + tail) + 16 * len(chunks), (f.work, len(data))
    name = stem(path)
    if cap > SMALL_CAP and name in FALLS_BACK and how != "trailing_bytes":
        assert f.fallback is not None and FALLS_BACK[name] in f.fallback
    if f.fallback is not None:
        assert f.fallback.startswith("websocket framing gave up: ") and "\n" not in f.fallback
        assert f.fallback.endswith("the bytes were passed on raw")


def decode_stream(path: Path, tracker: StreamTracker) -> tuple[list[View], WebSocketFramer]:
    data = path.read_bytes()
    f = WebSocketFramer()
    frames = f.feed(data)
    rest = f.flush()
    if rest:
        frames.append(rest)
    reg = DecoderRegistry(builtin_decoders())
    ws = reg["websocket"]
    assert isinstance(ws, WebSocketDecoder)
    ws.tracker = tracker
    d = direction(path)
    owner = object()
    feed = tracker.feeder(owner, 7, d)
    views = []
    for i, fr in enumerate(frames):
        m = Message(i, 7, d, i, fr, 0, 0)
        feed(m)
        for detail in (True, False):
            views.append(reg.decode_message(m, detail=detail, deadline_ns=time.monotonic_ns() + 2_000_000_000))
    return views, f


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_every_frame_decodes_to_one_line_complaints_never_an_exception(path: Path) -> None:
    tracker = StreamTracker()
    views, _f = decode_stream(path, tracker)
    said = []
    for v in views:
        assert "\n" not in v.summary and len(v.summary) <= 200
        assert v.error is None or "\n" not in v.error
        assert all("\n" not in w for w in v.warnings)
        said.append(" ".join([v.summary, v.error or "", *v.warnings]))
    name = stem(path)
    if name in COMPLAINT:
        assert any(COMPLAINT[name] in s for s in said), said[:6]
    # bounded by the bytes: inflating is capped by RATIO per compressed byte, plus one message's cap
    assert tracker.work <= RATIO * path.stat().st_size + 2 * INFLATE_MAX


def test_a_frame_inside_a_frame_is_decoded_once_not_recursively() -> None:
    path = next(p for p in CASES if "frame-inside-frame" in p.name)
    views, _ = decode_stream(path, StreamTracker())
    frame = [v for v in views if v.values and isinstance(v.values[0], dict) and v.values[0].get("opcode") == "binary"]
    assert frame and all(not str(v.summary).count("binary binary") for v in frame)
    assert all(v.decoder == "websocket" for v in frame)


def test_many_fragments_are_reassembled_once() -> None:
    path = next(p for p in CASES if "many-fragments" in p.name)
    tracker = StreamTracker()
    views, _ = decode_stream(path, tracker)
    last = [v for v in views if v.values and isinstance(v.values[0], dict) and v.values[0].get("fragments")]
    assert last[0].values[0]["payload"] == "a" + "b" * 3000 + "c"
    assert tracker.work <= 2 * path.stat().st_size


def test_a_64_mib_bomb_costs_at_most_its_cap_in_the_decoder_and_the_engine() -> None:
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (co.compress(bytes(64 << 20)) + co.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frame = build_frame(True, 2, bomb, mask=False, rsv1=True)
    reg = default_registry()
    tracemalloc.start()
    try:
        f = WebSocketFramer()
        assert f.feed(frame) == [frame]
        view = reg.decode_with("websocket", frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f._follow.lost is not None and "inflates past" in f._follow.lost
    assert any("inflates past" in w for w in view.warnings)
    assert peak < 6 * max(INFLATE_MAX, TRACK_MESSAGE_MAX) + 4 * len(frame), peak


# ------------------------------------------------------------------------------------------ through a real proxy


@pytest.mark.timeout(60)
@pytest.mark.parametrize("framing", ["websocket", "auto"])
@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_each_stream_crosses_a_real_proxy_exactly(start_proxy: Callable[..., ProxyThread], echo_server: EchoServer,
                                                  path: Path, framing: str) -> None:
    data = path.read_bytes()
    p = start_proxy(echo_server.port, framing=FramingSpec(framing, framing))
    with connect(p.port) as s:
        s.sendall(data)
        assert recv_exact(s, len(data)) == data  # echoed: through the relay both ways

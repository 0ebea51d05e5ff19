"""The ``websocket`` framer (proxy/websocket.py) and its Upgrade detection in ``auto`` (proxy/inference.py).

Traffic is real: the websockets library's sans-IO client and server (the same code its asyncio API runs) make the
bytes, with permessage-deflate on as the library's default. Framers are fed whole, one byte at a time, and in
random pieces; the invariant of every framer holds (the frames, joined with ``flush()``, are the input). The
"wire" part (a compressed direction kept right after a drop, an edit, a duplicate) is checked against the
library's own receiver: it must read exactly what the sender meant.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
    enable_client_permessage_deflate,
    enable_server_permessage_deflate,
)
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from proxy.framing import FramingSpec, make_framer, normalise_name, parse_framing
from proxy.inference import AutoFramer, Inference
from proxy.websocket import TRACK_MESSAGE_MAX, WebSocketFramer, build_frame, parse_head, unmask

# ------------------------------------------------------------------------------------------ real traffic


@dataclass
class Session:
    """A client and a server of the websockets library, talking sans-IO; what each sent, frame by frame."""

    client: ClientProtocol
    server: ServerProtocol
    c2s: list[bytes] = field(default_factory=list)
    s2c: list[bytes] = field(default_factory=list)

    def from_client(self) -> list[bytes]:
        out = self.client.data_to_send()
        self.c2s.extend(b for b in out if b)
        for b in out:
            self.server.receive_data(b)
        return [b for b in out if b]

    def from_server(self) -> list[bytes]:
        out = self.server.data_to_send()
        self.s2c.extend(b for b in out if b)
        for b in out:
            self.client.receive_data(b)
        return [b for b in out if b]


def open_session(deflate: bool = True, no_context_takeover: bool = False) -> Session:
    if no_context_takeover:
        cext = [ClientPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True)]
        sext = [ServerPerMessageDeflateFactory(server_no_context_takeover=True, client_no_context_takeover=True)]
    else:
        cext = list(enable_client_permessage_deflate(None)) if deflate else []
        sext = list(enable_server_permessage_deflate(None)) if deflate else []
    s = Session(ClientProtocol(parse_uri("ws://127.0.0.1:5555/game"), extensions=cext), ServerProtocol(extensions=sext))
    s.client.send_request(s.client.connect())
    s.from_client()
    request = s.server.events_received()[0]
    s.server.send_response(s.server.accept(request))
    s.from_server()
    s.client.events_received()
    return s


def chatty(s: Session, rounds: int = 6) -> None:
    """Text, binary, repeats (context takeover makes them tiny), a fragmented message with a ping between its
    fragments, pings and pongs, then a close with a code and a reason."""
    for i in range(rounds):
        s.client.send_text(f'{{"type": "move", "seq": {i}, "x": {i * 1.5}}}'.encode())
        s.client.send_text(b'{"type": "move", "seq": 0, "x": 0.0}')
        s.from_client()
        s.server.send_binary(bytes([0x82, 0xA1, 0x74, 0xA5]) + b"state" + bytes([0xA1, 0x78, i]))
        s.server.send_text(("tick " * 40).encode())
        s.from_server()
    s.client.send_text(b"part one, ", fin=False)
    s.client.send_ping(b"between")
    s.client.send_continuation(b"part two", fin=True)
    s.from_client()
    s.from_server()  # the pong
    s.server.send_close(4001, "game over")
    s.from_server()
    s.from_client()  # the client echoes the close


def traffic(deflate: bool = True) -> Session:
    s = open_session(deflate)
    chatty(s)
    return s


def feed_all(chunks: list[bytes], framer: WebSocketFramer | None = None) -> tuple[list[bytes], WebSocketFramer]:
    f = framer or WebSocketFramer()
    frames: list[bytes] = []
    for c in chunks:
        frames.extend(f.feed(c))
    return frames, f


def pieces(data: bytes, rng: random.Random, most: int = 40) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, most)
        out.append(data[i:i + n])
        i += n
    return out


# ------------------------------------------------------------------------------------------ framing


@pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "plain"])
@pytest.mark.parametrize("split", ["whole", "bytes", "random", "one-read"])
def test_each_frame_is_one_message_however_the_stream_is_split(deflate: bool, split: str) -> None:
    s = traffic(deflate)
    for sent in (s.c2s, s.s2c):
        data = b"".join(sent)
        if split == "whole":
            chunks = sent
        elif split == "bytes":
            chunks = [data[i:i + 1] for i in range(len(data))]
        elif split == "random":
            chunks = pieces(data, random.Random(len(data)))
        else:
            chunks = [data]
        frames, f = feed_all(chunks)
        assert f.fallback is None
        assert frames == sent  # the library writes the head, then each frame, as one chunk each
        assert f.flush() == b""
        assert f.work <= 4 * len(data) + len(chunks) + 16 * len(frames)


def test_the_handshake_is_parsed_and_deflate_parameters_read() -> None:
    s = traffic()
    _, fc = feed_all(s.c2s)
    _, fs = feed_all(s.s2c)
    assert fc.handshake is not None and fc.handshake.request and fc.handshake.upgrades_to_websocket
    assert fc.handshake.deflate() == {"client_max_window_bits": None}
    assert fs.handshake is not None and fs.handshake.status == 101
    assert fs.handshake.deflate() == {"server_max_window_bits": "12", "client_max_window_bits": "12"}


def test_trailing_partial_frame_is_held_then_flushed() -> None:
    s = traffic()
    data = b"".join(s.c2s)
    last = s.c2s[-1]
    f = WebSocketFramer()
    frames = f.feed(data[:-3])
    assert frames == s.c2s[:-1]
    assert f.buffered == len(last) - 3
    assert f.remaining() == 3
    assert f.flush() == last[:-3]
    assert f.buffered == 0


def test_a_frame_cut_before_its_length_waits_without_knowing_the_rest() -> None:
    f = WebSocketFramer()
    frame = build_frame(True, 2, bytes(300), mask=True)  # 16-bit length: the header is 8 bytes
    assert f.feed(frame[:3]) == []
    assert f.remaining() is None
    assert f.feed(frame[3:5]) == []
    assert f.remaining() == len(frame) - 5
    assert f.feed(frame[5:]) == [frame]


def test_a_big_frame_byte_by_byte_costs_linear_work() -> None:
    frame = build_frame(True, 2, bytes(range(256)) * 1024, mask=True)  # 256 KiB, 64-bit length
    f = WebSocketFramer()
    out = []
    for i in range(len(frame)):
        out.extend(f.feed(frame[i:i + 1]))
    assert out == [frame]
    assert f.work <= 2 * len(frame) + 32


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("mask", [True, False])
def test_every_length_encoding(length: int, mask: bool) -> None:
    payload = bytes(i & 0xFF for i in range(length))
    frame = build_frame(True, 2, payload, mask)
    frames, _f = feed_all([frame + b"\x89\x00"])
    assert frames == [frame, b"\x89\x00"]
    # the library reads it back the same
    parsed = list(_parse_with_library(frame, mask))
    assert parsed == [payload]


def _parse_with_library(frame: bytes, mask: bool) -> Iterator[bytes]:
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(frame)
    gen = Frame.parse(reader.read_exact, mask=mask)
    try:
        next(gen)
    except StopIteration as stop:
        yield stop.value.data


def test_unmask_is_its_own_inverse_and_agrees_with_the_library() -> None:
    from websockets.utils import apply_mask

    rng = random.Random(7)
    for n in (0, 1, 3, 4, 5, 1000, 65537):
        data = rng.randbytes(n)
        key = rng.randbytes(4)
        assert unmask(data, key) == apply_mask(data, key)
        assert unmask(unmask(data, key), key) == data


GIVE_UPS = {
    "reserved opcode": b"\x83\x00",
    "top bit of a 64-bit length": b"\x82\x7f\x80" + bytes(7),
    "over the cap": b"\x82\x7f" + (1 << 40).to_bytes(8, "big"),
    "refused upgrade": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
    "not an upgrade": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a head that never ends": b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * (20 << 10),
}


@pytest.mark.parametrize("name", list(GIVE_UPS))
def test_bytes_that_are_not_websocket_give_up_with_a_reason_losing_nothing(name: str) -> None:
    data = GIVE_UPS[name] + b"after"
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        f = WebSocketFramer(max_frame=1 << 20)
        frames = []
        for c in chunks:
            frames.extend(f.feed(c))
        assert f.fallback is not None and f.fallback.startswith("websocket framing gave up: ")
        assert "\n" not in f.fallback
        assert b"".join(frames) + f.flush() == data
        assert f.buffered == 0


def test_a_declared_length_over_the_cap_gives_up_at_once() -> None:
    f = WebSocketFramer(max_frame=1 << 20)
    out = f.feed(b"\x82\x7f" + (2 << 20).to_bytes(8, "big"))
    assert f.fallback is not None and "more than the 1048576-byte cap" in f.fallback
    assert out == [b"\x82\x7f" + (2 << 20).to_bytes(8, "big")] and f.buffered == 0


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_any_split_round_trip(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    f = WebSocketFramer(max_frame=4096)
    frames = []
    for a, b in itertools.pairwise(bounds):
        frames.extend(f.feed(data[a:b]))
    assert b"".join(frames) + f.flush() == data


def test_the_name_is_known_to_every_framing_entry_point() -> None:
    assert normalise_name(" WebSocket ") == "websocket"
    assert parse_framing("websocket") == FramingSpec("websocket", "websocket")
    assert isinstance(make_framer("websocket"), WebSocketFramer)


def test_parse_head_refuses_what_is_not_http_in_one_line() -> None:
    for bad in (b"GET /\r\n\r\n", b"HTTP/1.1 1O1 Nope\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n"):
        with pytest.raises(ValueError) as e:
            parse_head(bad)
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ inference


@pytest.mark.parametrize("deflate", [True, False])
def test_auto_infers_websocket_from_the_upgrade_in_each_direction(deflate: bool) -> None:
    s = traffic(deflate)
    for sent in (s.c2s, s.s2c):
        inf = Inference()
        d = inf.observe(sent[0])
        assert d is not None and d.framing == "websocket" and d.reads == 1
        assert "WebSocket" in d.reason


def test_auto_waits_for_a_frame_cut_by_the_read_then_decides() -> None:
    s = traffic()
    data = s.s2c[0] + s.s2c[1]
    inf = Inference()
    assert inf.observe(data[:-2]) is None
    d = inf.observe(data[-2:])
    assert d is not None and d.framing == "websocket" and d.messages == 2


def test_auto_then_frames_every_later_read_with_the_websocket_framer() -> None:
    s = traffic()
    auto = AutoFramer()
    out = []
    for b in s.c2s:
        out.extend(auto.feed(b))
    assert isinstance(auto.inner, WebSocketFramer)
    assert out == s.c2s


@pytest.mark.parametrize("first", [
    b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nHost: x\r\n",  # the head is not over
])
def test_plain_http_or_a_refused_upgrade_is_not_websocket(first: bytes) -> None:
    d = Inference().observe(first)
    assert d is None or d.framing != "websocket"


# ------------------------------------------------------------------------------------------ the wire


def deliver(frames: list[bytes], to_server: bool, s: Session) -> list[object]:
    """Give the receiving library the bytes; what it read (messages as str/bytes, or its protocol error)."""
    receiver = s.server if to_server else s.client
    for b in frames:
        receiver.receive_data(b)
    got: list[object] = []
    for ev in receiver.events_received():
        if isinstance(ev, Frame) and ev.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            got.append(ev.data)
    if receiver.parser_exc is not None:
        got.append(receiver.parser_exc)
    return got


def sent_and_framed(messages: list[bytes]) -> tuple[Session, WebSocketFramer, list[bytes]]:
    """A session whose client sends ``messages`` (compressed, context takeover); the server has not read them."""
    s = open_session()
    f = WebSocketFramer()
    f.feed(s.c2s[0])
    frames = []
    for m in messages:
        s.client.send_text(m)
        for b in s.client.data_to_send():
            frames.extend(f.feed(b))
    return s, f, frames


MOVES = [b'{"type": "hello", "name": "alice"}', b'{"type": "chat", "text": "greetings, everyone"}',
         b'{"type": "chat", "text": "greetings, everyone!!"}', b'{"type": "chat", "text": "greetings, everyone"}']
"""Each message after the second refers back to the second (context takeover): losing it breaks them."""


def test_untouched_frames_go_out_as_they_came() -> None:
    s, f, frames = sent_and_framed(MOVES)
    out = [f.outgoing(fr) for fr in frames]
    assert all(a is b for a, b in zip(out, frames, strict=True))
    assert deliver(out, True, s) == MOVES
    assert f.take_notes() == []


def test_without_the_wire_a_dropped_compressed_message_corrupts_the_next() -> None:
    s, _, frames = sent_and_framed(MOVES)
    got = deliver([frames[0], *frames[2:]], True, s)  # message 1 dropped, the rest sent as they came
    assert got[: 1] == [MOVES[0]] and got[1:] != MOVES[2:]  # the receiver reads garbage or fails


def test_after_a_drop_the_later_compressed_messages_go_uncompressed_and_read_right() -> None:
    s, f, frames = sent_and_framed(MOVES)
    out = [f.outgoing(frames[0])]
    f.dropped(frames[1])
    notes = f.take_notes()
    assert len(notes) == 1 and "uncompressed (RSV1 clear)" in notes[0]
    out += [f.outgoing(fr) for fr in frames[2:]]
    assert all(not b[0] & 0x40 and b[1] & 0x80 for b in out[1:])  # RSV1 clear, still masked (client to server)
    assert deliver(out, True, s) == [MOVES[0], *MOVES[2:]]


def test_a_drop_the_wire_was_not_told_of_is_noticed_at_the_next_write() -> None:
    s, f, frames = sent_and_framed(MOVES)
    out = [f.outgoing(frames[0])] + [f.outgoing(fr) for fr in frames[2:]]
    assert deliver(out, True, s) == [MOVES[0], *MOVES[2:]]


def test_an_edit_goes_as_edited_and_the_rest_uncompressed() -> None:
    s, f, frames = sent_and_framed(MOVES)
    edited = build_frame(True, 1, b'{"type": "teleport"}', mask=True)
    f.replaced(frames[1], edited)
    out = [f.outgoing(frames[0]), f.outgoing(edited)] + [f.outgoing(fr) for fr in frames[2:]]
    assert out[1] is edited
    assert deliver(out, True, s) == [MOVES[0], b'{"type": "teleport"}', *MOVES[2:]]


def test_a_duplicated_compressed_message_is_sent_uncompressed_the_second_time() -> None:
    s, f, frames = sent_and_framed(MOVES)
    out = []
    for fr in frames:
        out.append(f.outgoing(fr))
        if fr is frames[1]:
            out.append(f.outgoing(fr))
    assert out[2] is not frames[1] and not out[2][0] & 0x40
    assert deliver(out, True, s) == [MOVES[0], MOVES[1], MOVES[1], *MOVES[2:]]
    assert any("duplicated" in n for n in f.take_notes())


def test_server_to_client_frames_sent_uncompressed_are_not_masked() -> None:
    s = open_session()
    f = WebSocketFramer()
    f.feed(s.s2c[0])
    frames = []
    for m in MOVES:
        s.server.send_text(m)
        for b in s.server.data_to_send():
            frames.extend(f.feed(b))
    f.dropped(frames[0])
    out = [f.outgoing(fr) for fr in frames[1:]]
    assert all(not b[1] & 0x80 for b in out)
    assert deliver(out, False, s) == MOVES[1:]


def test_a_sender_without_context_takeover_needs_no_following() -> None:
    s = open_session(no_context_takeover=True)
    f = WebSocketFramer()
    f.feed(s.s2c[0])
    frames = []
    for m in MOVES:
        s.server.send_text(m)
        for b in s.server.data_to_send():
            frames.extend(f.feed(b))
    f.dropped(frames[1])
    out = [f.outgoing(frames[0])] + [f.outgoing(fr) for fr in frames[2:]]
    assert all(a is b for a, b in zip(out, [frames[0], *frames[2:]], strict=True))  # as they came
    assert deliver(out, False, s) == [MOVES[0], *MOVES[2:]]


def test_a_decompression_bomb_stops_the_following_within_its_cap() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = comp.compress(bytes(64 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff")
    frame = build_frame(True, 2, bomb[:-4], mask=False, rsv1=True)
    f = WebSocketFramer(max_frame=1 << 20)
    f.feed(b"\x89\x00")
    assert f.feed(frame) == [frame]
    assert f._follow.lost is not None and "inflates past" in f._follow.lost
    assert not f._follow.pending  # nothing kept of it
    f.dropped(frame)
    assert f.outgoing(frame) is frame
    assert TRACK_MESSAGE_MAX < 64 << 20


# ------------------------------------------------------------------------------------------ the terminal


def test_the_terminal_summariser_follows_a_websocket_direction_in_order() -> None:
    """``sockscope-proxy`` prints each frame decoded: compressed messages inflated with their context, fragments
    reassembled, because the summariser feeds the stream tracker every message of a websocket direction."""
    from inspector.decode import default_registry
    from inspector.summary import Summariser
    from proxy.model import Direction, FramingInferred, Message

    s = open_session()
    for m in (b'{"type": "chat", "text": "greetings, everyone"}', b'{"type": "chat", "text": "greetings, everyone"}'):
        s.client.send_text(m)
    s.client.send_text(b"one, ", fin=False)
    s.client.send_continuation(b"two", fin=True)
    s.from_client()
    reg = default_registry()
    summ = Summariser(reg)
    try:
        summ.observe(FramingInferred(1, Direction.C2S, "websocket", "inferred", 1, len(s.c2s[0]), 0, 0, 1,
                                     "inferred"))
        lines = [summ(Message(i, 1, Direction.C2S, i, b, 0, 0), 1 << 62) for i, b in enumerate(s.c2s[1:], 1)]
    finally:
        reg.clear_settings()
    assert lines[0] is not None and lines[0].startswith("websocket text (deflate ")
    assert lines[1] is not None and '"greetings, everyone"' in lines[1]  # 5 bytes on the wire, read whole
    assert lines[2] is not None and "fragment 1, continues" in lines[2]
    assert lines[3] is not None and "end of a 2-frame message" in lines[3] and "one, two" in lines[3]


@pytest.mark.parametrize("deflate", [True, False])
def test_the_summary_shortcut_gives_the_full_decodes_summary_view(deflate: bool) -> None:
    """The table and filters decode each frame's summary through a shortcut for the usual frame; it must give what
    the general path gives (summary, values, warnings, truncation), frame by frame."""
    from inspector.decode import DecodeContext, DecoderRegistry, builtin_decoders
    from inspector.decode._websocket import StreamTracker, WebSocketDecoder
    from proxy.model import Direction, Message

    s = traffic(deflate)
    reg = DecoderRegistry(builtin_decoders())
    dec = reg["websocket"]
    assert isinstance(dec, WebSocketDecoder)
    dec.tracker = StreamTracker()
    shortcuts = 0
    for d, sent in ((Direction.C2S, s.c2s), (Direction.S2C, s.s2c)):
        feed = dec.tracker.feeder(object(), 1, d)
        ctx = DecodeContext(direction=d, conn_id=1, detail=False)
        for i, b in enumerate(sent):
            feed(Message(i, 1, d, i, b, 0, 0))
            if i == 0:
                continue
            fast = dec._summary_of_usual_frame(b, ctx)
            slow = dec._decode_frame(b, ctx)
            if fast is not None:
                shortcuts += 1
                assert (fast.summary, fast.values, fast.warnings, fast.truncated, fast.error) == (
                    slow.summary, slow.values, slow.warnings, slow.truncated, slow.error)
            assert dec.decode(b, ctx) == (fast or slow)
    assert shortcuts >= 20


def test_the_windows_framing_menu_offers_websocket_in_one_click() -> None:
    """A connection that upgraded before sockscope was told (or a WebSocket without the Upgrade in view) gets its
    framing from the menu's one-click choices, as the other common framings do."""
    from inspector.ui.framing_control import KINDS, QUICK, framing_name
    from proxy.framing import make_framer

    assert "websocket" in QUICK and "websocket" in dict(KINDS)
    framer = make_framer(framing_name("websocket"))
    frame = bytes((0x81, 2)) + b"hi"  # a text frame from the server, with no Upgrade head before it
    assert framer.feed(frame + frame[:1]) == [frame]

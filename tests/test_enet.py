"""The ENet and Godot decoders on datagrams built byte by byte (tests/enet_bytes.py, from protocol.h and Godot's
sources): every command type field by field, checksums, compression, truncation at every byte, trailing bytes,
fragments reassembled through the flow book as the store feeds it, Godot's SceneMultiplayer packets and Variants,
and the filter fields rules use."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest

from inspector.decode import DecodeContext, DecoderRegistry, builtin_decoders
from inspector.decode._enet import FLOWS, FlowBook, describe
from inspector.decode._godot import GodotValue, parse_packet, read_variant
from inspector.filters import parse_filter
from inspector.store import MessageStore
from proxy.model import ConnectionOpened, Direction, Message, MessageState
from tests import enet_bytes as e

REG = DecoderRegistry(builtin_decoders())
C2S = DecodeContext(direction=Direction.C2S, conn_id=900)
SUMMARY = DecodeContext(direction=Direction.C2S, conn_id=900, detail=False)


def dec(data: bytes, ctx: DecodeContext = C2S) -> Any:
    view = REG.decode(data, ctx)
    assert view.decoder == "enet", (view.decoder, view.summary, data.hex(" "))
    assert view.error is None, view.error
    return view


def values(data: bytes, ctx: DecodeContext = C2S) -> list[dict[str, Any]]:
    return list(dec(data, ctx).values)


# ------------------------------------------------------------------------------------------------------------
# Every command, field by field


def test_connect_as_pyenet_sends_it() -> None:
    # the first datagram of a pyenet 1.3.17 client, as captured through the relay
    data = bytes.fromhex("8fffde5f82ff000100 00ffff00000578000100000000000400000000000000000000138800000002000000020000"
                         "00000000002a".replace(" ", ""))
    data = data[:4] + data[4:]
    (v,) = values(data)
    assert v["command"] == "connect" and v["channel"] == 255 and v["seq"] == 1 and v["reliable"] is True
    assert v["peer"] == 0xFFF and v["sent_time"] == 0xDE5F
    assert (v["mtu"], v["window"], v["channels"]) == (1400, 65536, 4)
    assert (v["throttle_interval"], v["throttle_acceleration"], v["throttle_deceleration"]) == (5000, 2, 2)


def test_every_command_type_field_by_field() -> None:
    d = (e.header(3, session=2, sent_time=1000)
         + e.ack(0, 7, 990) + e.verify_connect(5, channels=3, connect_id=0xABCDEF01, seq=1)
         + e.disconnect(42) + e.ping(9) + e.reliable(0, 10, b'{"t":"hi"}')
         + e.unreliable(1, 10, 4, b"\x81\xa1x\x01") + e.unsequenced(2, 6, b"unseq")
         + e.bandwidth_limit(1000, 2000) + e.throttle_configure(5000, 2, 3)
         + e.fragment(3, 11, 11, 2, 0, 10, 0, b"abcde"))
    vs = values(d)
    assert [v["command"] for v in vs] == ["ack", "verify_connect", "disconnect", "ping", "send_reliable",
                                          "send_unreliable", "send_unsequenced", "bandwidth_limit",
                                          "throttle_configure", "send_fragment"]
    assert all(v["peer"] == 3 and v["sent_time"] == 1000 for v in vs)
    a, vc, dis, pg, rel, unrel, unseq, bw, thr, frag = vs
    assert (a["channel"], a["seq"], a["acked_seq"], a["acked_sent_time"]) == (0, 7, 7, 990) and "reliable" not in a
    assert (vc["outgoing_peer"], vc["channels"], vc["connect_id"], vc["mtu"]) == (5, 3, 0xABCDEF01, 1400)
    assert dis["data"] == 42 and dis["reliable"] is True
    assert pg["seq"] == 9 and pg["channel"] == 255
    assert (rel["channel"], rel["seq"], rel["reliable"], rel["mode"], rel["lane"], rel["size"]) == \
        (0, 10, True, "reliable", "0/reliable", 10)
    assert rel["payload"] == {"t": "hi"} and rel["payload_decoder"] == "json"
    assert (unrel["channel"], unrel["unreliable_seq"], unrel["reliable"], unrel["lane"]) == (1, 4, False,
                                                                                            "1/unreliable")
    assert unrel["payload"] == {"x": 1} and unrel["payload_decoder"] == "msgpack"
    assert (unseq["group"], unseq["mode"], unseq["reliable"], unseq["payload"]) == (6, "unsequenced", False, "unseq")
    assert (bw["incoming_bandwidth"], bw["outgoing_bandwidth"]) == (1000, 2000)
    assert (thr["throttle_interval"], thr["throttle_acceleration"], thr["throttle_deceleration"]) == (5000, 2, 3)
    assert frag["fragment"] == {"start": 11, "number": 0, "count": 2, "total": 10, "offset": 0}
    assert frag["reassembled"] is False
    # the summary leads with each send's channel and reliability
    s = dec(d).summary
    assert s.startswith("ch0 reliable #10 10 B: json") and "ch1 unreliable #4" in s and "ch2 unsequenced group 6" in s
    assert "ch3 reliable #11 fragment 1/2 of 10 B" in s
    text = dec(d).text  # everything, in the datagram's order
    assert text.index("1. ack ch0 #7") < text.index("2. verify_connect") < text.index("10. ch3 reliable #11")


def test_unreliable_fragment_and_unsequenced_disconnect() -> None:
    d = e.header(1) + e.fragment(1, 4, 9, 3, 1, 3000, 1000, b"u" * 20, unreliable_fragment=True) \
        + e.disconnect(0, seq=0, connected=False)
    frag, dis = values(d)
    assert frag["command"] == "send_unreliable_fragment" and frag["reliable"] is False
    assert frag["lane"] == "1/unreliable" and frag["unreliable_seq"] == 9 and frag["seq"] == 4
    assert dis["reliable"] is False and "unsequenced" in dec(d).text


def test_the_field_tree_has_byte_ranges() -> None:
    d = e.header(0, sent_time=5) + e.reliable(2, 1, b'{"a":1}')
    view = dec(d)
    hdr, cmd = view.fields
    assert (hdr.start, hdr.end) == (0, 4)
    assert (cmd.start, cmd.end) == (4, len(d))
    names = {f.name: (f.start, f.end, f.value_repr) for f in cmd.children}
    assert names["channel"] == (5, 6, "2")
    assert names["reliable seq"] == (6, 8, "1")
    assert names["data length"] == (8, 10, "7")
    payload = names["payload (json)"]
    assert payload[:2] == (10, len(d))
    # the payload's own fields point into the datagram
    (pf,) = [f for f in cmd.children if f.name == "payload (json)"]
    assert pf.children and all(c.start is None or c.start >= 10 for c in pf.children)


def test_summary_only_views_match_detailed_ones() -> None:
    d = e.header(0, sent_time=5) + e.ack(0, 3, 4) + e.reliable(0, 4, b'{"a":1}') + e.unreliable(1, 4, 2, b"hi")
    full, short = dec(d), dec(d, SUMMARY)
    assert (full.decoder, full.summary, full.values, full.error) == (short.decoder, short.summary, short.values,
                                                                      short.error)


# ------------------------------------------------------------------------------------------------------------
# Header settings: checksum, compression


def test_a_checksum_is_found_and_verified() -> None:
    body = e.connect(connect_id=0x01020304)
    d = e.with_checksum(e.header(0xFFF, sent_time=10), body)  # before a peer exists: computed with 0
    view = dec(d)
    assert "checksum verified" in view.text and view.summary.endswith("crc ok")
    assert view.values[0]["connect_id"] == 0x01020304
    bad = bytearray(d)
    bad[5] ^= 1
    assert "checksum WRONG" in dec(bytes(bad)).text


def test_a_checksum_after_the_connect_needs_the_flows_connect_id() -> None:
    book = FlowBook()
    reg = DecoderRegistry(builtin_decoders())
    reg["enet"].book = book  # type: ignore[attr-defined]
    cid = struct.pack(">I", 0x0A0B0C0D)
    first = e.with_checksum(e.header(0xFFF, sent_time=1), e.connect(connect_id=0x0A0B0C0D))
    later = e.with_checksum(e.header(0, sent_time=2), e.reliable(0, 2, b"hello"), cid)
    ctx = DecodeContext(direction=Direction.C2S, conn_id=1)
    assert "not verified" in reg.decode(later, ctx).text  # the connect id is not known yet
    book.observe(Message(1, 1, Direction.C2S, 0, first, 0, 0))
    view = reg.decode(later, ctx)
    assert view.decoder == "enet" and "checksum verified" in view.text and view.values[0]["payload"] == "hello"


def test_zlib_compression_is_inflated_and_others_are_said_to_be_compressed() -> None:
    commands = e.reliable(0, 3, b'{"big": "' + b"a" * 200 + b'"}')
    d = e.header(0, sent_time=5, compressed=True) + zlib.compress(commands)
    view = dec(d)
    assert view.summary.startswith("[zlib]") and view.values[0]["payload"] == {"big": "a" * 200}
    other = e.header(0, sent_time=5, compressed=True) + bytes(range(60))
    view = REG.decode(other, DecodeContext(decode_as="enet"))
    assert view.error is None and view.summary.startswith("compressed datagram, 60 B")
    assert view.values[0]["compressed"] is True
    # not taken for ENet on a flow it has not seen: random bytes with that bit set are not evidence
    assert REG.decode(other).decoder != "enet"


# ------------------------------------------------------------------------------------------------------------
# Hostile shapes: truncation at every byte, trailing bytes


def test_truncation_at_every_byte_never_raises_and_says_where() -> None:
    parts = [e.header(0, sent_time=7), e.ack(0, 1, 6), e.reliable(0, 2, b'{"k": [1, 2, 3]}'),
             e.fragment(1, 3, 3, 2, 0, 40, 0, b"x" * 20), e.connect()]
    d = b"".join(parts)
    bounds = {sum(len(x) for x in parts[:i]) for i in range(2, len(parts) + 1)}
    for n in range(len(d) + 1):
        for detail in (True, False):
            view = REG.decode(d[:n], DecodeContext(decode_as="enet", detail=detail))
            assert len(view.summary) <= 200
            if n < 2:
                assert view.error is not None and "2-byte header" in view.error
            elif n in bounds:  # a whole datagram of fewer commands
                assert view.error is None and not any("stop early" in w for w in view.warnings)
                assert len(view.values) == len([b for b in bounds if b <= n])
            elif view.error is None:
                assert any("stop early" in w or "after the last" in w or "no command" in w for w in view.warnings), n
        if n not in bounds:
            assert REG.decode(d[:n]).decoder != "enet", n


def test_trailing_bytes_are_shown_and_lower_the_confidence() -> None:
    d = e.header(0, sent_time=7) + e.reliable(0, 2, b"hello") + b"\x01\x02"
    view = REG.decode(d, DecodeContext(decode_as="enet"))
    assert view.values[0]["payload"] == "hello"
    assert any("2 bytes after the last command" in w for w in view.warnings)
    assert REG.decode(d).decoder != "enet"


# ------------------------------------------------------------------------------------------------------------
# Auto detection


@pytest.mark.parametrize("data", [
    e.header(0, sent_time=9) + e.reliable(0, 1, b"hi"),
    e.header(0) + e.ack(0, 1, 9) + e.ack(1, 2, 9),
    e.header(0) + e.unreliable(1, 0, 1, b"\x01\x02\x03"),
    e.header(0xFFF, sent_time=1) + e.connect(),
])
def test_enet_datagrams_are_picked_by_auto(data: bytes) -> None:
    assert REG.confidences(data)[0][0] == "enet"
    assert REG.decode(data).decoder == "enet"


@pytest.mark.parametrize("data", [
    b'{"type": "move", "x": 1}', b"hello world\n", b"\x82\xa1t\xa4move\xa1x\x01", b"\x00" * 10, b"\xff" * 40,
    struct.pack("<Hff", 1, 2.0, 3.0), b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.",
])
def test_other_messages_are_not_taken_for_enet(data: bytes) -> None:
    assert REG.decode(data).decoder != "enet"


def test_describe() -> None:
    assert describe(e.header(0) + e.ack(0, 1, 9)) == "ack@0#1"
    assert describe(b"\x00").startswith("not ENet")


# ------------------------------------------------------------------------------------------------------------
# Fragments, reassembled through the book as the store feeds it


def _store_with_flow(conn: int) -> MessageStore:
    store = MessageStore()
    store.apply([ConnectionOpened(conn, ("127.0.0.1", 5000), ("127.0.0.1", 6000), 0, transport="udp")])
    return store


@pytest.mark.parametrize("unrel", [False, True])
def test_a_fragmented_message_is_whole_on_the_datagram_that_completed_it(unrel: bool) -> None:
    conn = 7001 + unrel
    message = b'{"map": "' + b"x" * 3000 + b'"}'
    dgrams = e.fragments(2, 40, message, 1000, unreliable_fragment=unrel, reliable_seq=39)
    order = [0, 2, 3, 1]  # out of order: the second fragment completes it
    store = _store_with_flow(conn)
    store.apply([Message(100 + i, conn, Direction.C2S, i, dgrams[k], i, i) for i, k in enumerate(order)])
    reg = DecoderRegistry(builtin_decoders())
    views = [reg.decode_message(store.message(r)) for r in range(4)]
    whole = views[3]
    v = whole.values[0]
    assert v["reassembled"] is True and v["payload"] == {"map": "x" * 3000} and v["size"] == len(message)
    assert "reassembled from 4 fragments" in whole.summary
    assert any(f.name.startswith("reassembled message (json)") for f in whole.fields[1].children)
    for view, k in zip(views[:3], order[:3], strict=True):
        v = view.values[0]
        assert v["reassembled"] is False and v["fragment"]["number"] == k
        assert "whole in message 103" in view.summary
    # decoded alone (no book entry for this flow) a fragment is only a fragment
    alone = reg.decode(dgrams[1], DecodeContext(direction=Direction.C2S, conn_id=99999))
    assert alone.values[0]["reassembled"] is False and "whole in" not in alone.summary


def test_a_lost_fragment_does_not_count_until_it_is_sent_again() -> None:
    conn = 7010
    message = bytes(range(256)) * 10
    dgrams = e.fragments(0, 5, message, 1000)
    resent = e.fragments(0, 5, message, 1000, sent_time=350)[1]  # later: its header's sent time differs
    store = _store_with_flow(conn)
    store.apply([Message(200, conn, Direction.C2S, 0, dgrams[0], 0, 0),
                 Message(201, conn, Direction.C2S, 1, dgrams[1], 1, None, state=MessageState.DROPPED,
                         note="lost: random loss 10 %"),
                 Message(202, conn, Direction.C2S, 2, dgrams[2], 2, 2),
                 Message(203, conn, Direction.C2S, 3, resent, 3, 3)])  # ENet resends the lost one
    reg = DecoderRegistry(builtin_decoders())
    last = reg.decode_message(store.message(3)).values[0]
    assert last["reassembled"] is True and last["payload"] == message
    lost = reg.decode_message(store.message(1))
    assert lost.values[0]["reassembled"] is False and "whole in message 203" in lost.summary


def test_the_book_is_bounded() -> None:
    book = FlowBook(max_partial=4, max_partial_bytes=10_000, max_done=3)
    for i in range(50):  # 50 messages of which only the first fragment ever comes
        book.observe(Message(i, 1, Direction.C2S, i, e.fragments(0, 100 + 3 * i, b"z" * 3000, 1000)[0], 0, 0))
    assert len(book.partial) <= 4 and book.partial_bytes <= 10_000 and book.dropped >= 46
    for i in range(10):  # whole messages: only the last three are kept
        for d in e.fragments(1, 1000 + 3 * i, bytes([i]) * 2500, 1000):
            book.observe(Message(i, 2, Direction.C2S, i, d, 0, 0))
    assert len(book.done) == 3 and book.done_bytes == 3 * 2500
    # a message claiming more than ENet's 32 MiB limit is not reassembled
    book.observe(Message(0, 3, Direction.C2S, 0, e.header(0, sent_time=1)
                         + e.fragment(0, 1, 1, 2, 0, 1 << 30, 0, b"x"), 0, 0))
    assert not any(k[0] == 3 for k in book.partial)


def test_the_store_feeds_only_udp_flows() -> None:
    store = MessageStore()
    store.apply([ConnectionOpened(7020, ("127.0.0.1", 1), ("127.0.0.1", 2), 0)])  # TCP
    d = e.header(0xFFF, sent_time=1) + e.connect()
    store.apply([Message(1, 7020, Direction.C2S, 0, d, 0, 0)])
    assert FLOWS.flow(7020) is None
    store = _store_with_flow(7021)
    store.apply([Message(1, 7021, Direction.C2S, 0, d, 0, 0)])
    info = FLOWS.flow(7021)
    assert info is not None and info.datagrams == 1 and info.connect_ids == (struct.pack(">I", 0x1234),)


# ------------------------------------------------------------------------------------------------------------
# Godot


def test_godot_variants() -> None:
    for v in [None, True, False, 0, -5, 1 << 40, 1.5, "héllo", [1, "a", [2]], {"k": 1, 2: [3]}, b"\x00\x01\x02"]:
        assert read_variant(e.variant(v)) == v
    vec = read_variant(e.variant(e.Vec2((1.5, -2.0))))
    assert isinstance(vec, GodotValue) and vec == {"x": 1.5, "y": -2.0} and repr(vec) == "Vector2(1.5, -2.0)"


def test_a_godot_remote_call_in_an_enet_payload() -> None:
    packet = e.rpc(3, 1, [42, "ping", e.Vec2((1.0, 2.0)), True])
    d = e.header(0, sent_time=3) + e.reliable(0, 5, packet)
    (v,) = values(d)
    assert v["payload_decoder"] == "godot"
    p = v["payload"]
    assert (p["command"], p["node"], p["method"]) == ("remote_call", 3, 1)
    assert p["args"][:2] == [42, "ping"] and p["args"][2] == {"x": 1.0, "y": 2.0} and p["args"][3] is True
    assert 'rpc node 3 method 1(42, \'ping\', Vector2(1.0, 2.0), True)' in dec(d).summary


def test_godot_packets_of_every_command() -> None:
    cases = [
        (e.rpc(70000, 300, [1.25]), {"command": "remote_call", "node": 70000, "method": 300, "args": [1.25]}),
        (e.rpc(0, 2, [], path="Main/Player"), {"command": "remote_call", "node": "Main/Player", "method": 2}),
        (e.rpc(5, 0, [b"\x01\x02"]), {"command": "remote_call", "node": 5, "args": [b"\x01\x02"]}),
        (e.simplify_path(3, "Main/Player"), {"command": "simplify_path", "path": "Main/Player", "id": 3}),
        (e.confirm_path("Main/Player", False), {"command": "confirm_path", "path": "Main/Player", "valid": False}),
        (e.raw(b"abc"), {"command": "raw", "size": 3}),
        (e.spawn(0, 4, 9, "Enemy", [11], [e.Vec2((3.0, 4.0))]),
         {"command": "spawn", "name": "Enemy", "scene": 0, "spawner": 4, "net_id": 9, "synchronizers": [11]}),
        (e.spawn(0xFF, 4, 10, "Boss", arg={"hp": 100}), {"command": "spawn", "scene": None, "argument": {"hp": 100}}),
        (e.despawn(9), {"command": "despawn", "net_id": 9}),
        (e.sync(77, [(11, [e.Vec2((1.0, 1.0)), 3]), (0x80000002, [True])]), {"command": "sync", "time": 77}),
        (e.sys(0, payload=b"secret"), {"command": "sys", "sys": "auth", "data": b"secret"}),
        (e.sys(1, 123456), {"command": "sys", "sys": "add_peer", "peer": 123456}),
        (e.sys(2, 123456), {"command": "sys", "sys": "del_peer", "peer": 123456}),
        (e.sys(3, -2, e.rpc(1, 0, [7])), {"command": "sys", "sys": "relay", "peer": -2}),
    ]
    for packet, expect in cases:
        p = parse_packet(packet)
        for k, want in expect.items():
            assert p.value[k] == want, (packet.hex(" "), k, p.value)
        view = REG.decode(packet, DecodeContext(decode_as="godot"))
        assert view.decoder == "godot" and view.error is None and view.summary
    assert parse_packet(e.sync(77, [(11, [3])])).value["nodes"] == [{"net_id": 11, "values": [3]}]
    assert parse_packet(e.sys(3, -2, e.rpc(1, 0, [7]))).value["packet"]["args"] == [7]
    for bad in [b"", b"\x08", b"\x05\x01\x02", e.simplify_path(3, "x")[:-1], e.rpc(1, 0, [1, 2])[:-1], b"\x07\x09"]:
        view = REG.decode(bad, DecodeContext(decode_as="godot"))
        assert view.error is not None and view.error.startswith("not a Godot")


def test_a_godot_flow_shows_even_weak_packets_as_godot() -> None:
    """A RAW packet (any bytes behind 0x03) is no evidence alone; after a Godot client's CONNECT (255 channels, its
    peer id as data) the flow's payloads are read as Godot's first."""
    conn = 7030
    store = _store_with_flow(conn)
    store.apply([Message(1, conn, Direction.C2S, 0, e.header(0xFFF, sent_time=1)
                         + e.connect(channels=255, data=1234567), 0, 0)])
    packet = e.raw(b'{"hello": 1}')
    d = e.header(0, sent_time=2) + e.reliable(0, 2, packet)
    store.apply([Message(2, conn, Direction.C2S, 1, d, 0, 0)])
    reg = DecoderRegistry(builtin_decoders())
    view = reg.decode_message(store.message(1))
    p = view.values[0]["payload"]
    assert view.values[0]["payload_decoder"] == "godot" and p["command"] == "raw" and p["payload"] == {"hello": 1}
    assert "godot raw 12 B · json" in view.summary
    assert reg.decode_message(store.message(0)).values[0]["godot_peer"] == 1234567
    # elsewhere the same bytes are the game's own: 0x03 then text
    other = reg.decode(d, DecodeContext(direction=Direction.C2S, conn_id=99998))
    assert other.values[0]["payload_decoder"] != "godot"


# ------------------------------------------------------------------------------------------------------------
# Filters


def _msg(data: bytes) -> Message:
    return Message(1, 1, Direction.C2S, 0, data, 0, 0)


@pytest.mark.parametrize(("text", "hits"), [
    ("enet.channel == 1 and enet.reliable == false", [False, True, False, True]),
    ('enet.lane == "1/unreliable"', [False, True, False, True]),
    ('enet.command == "ack"', [False, False, True, False]),
    ("enet.reliable == true", [True, False, False, False]),
    ('enet.payload.t == "move"', [False, True, False, False]),
    ("enet.fragment.count == 2", [False, False, False, True]),
])
def test_filters_on_enet_fields(text: str, hits: list[bool]) -> None:
    msgs = [
        e.header(0, sent_time=1) + e.reliable(0, 1, b'{"t":"chat"}'),
        e.header(0) + e.unreliable(1, 1, 1, b'{"t":"move"}'),
        e.header(0) + e.ack(1, 1, 5),
        e.header(0) + e.fragment(1, 1, 2, 2, 0, 10, 0, b"12345", unreliable_fragment=True),
    ]
    f = parse_filter(text)

    def provider(m: Message) -> Any:
        return REG.decode(m.data, SUMMARY)

    assert [f.matches(_msg(m), provider) for m in msgs] == hits


def test_a_remote_call_is_named_by_the_path_its_sender_announced() -> None:
    conn = 7040
    store = _store_with_flow(conn)
    announce = e.header(0, sent_time=1) + e.reliable(0, 1, e.simplify_path(3, "Players/Ada"))
    call = e.header(0) + e.unsequenced(1, 1, e.rpc(3, 0, [e.Vec2((1.0, 2.0))]))
    back = e.header(0) + e.unsequenced(1, 1, e.rpc(3, 0, [e.Vec2((1.0, 2.0))]))
    store.apply([Message(1, conn, Direction.C2S, 0, announce, 0, 0), Message(2, conn, Direction.C2S, 1, call, 0, 0),
                 Message(3, conn, Direction.S2C, 0, back, 0, 0)])
    reg = DecoderRegistry(builtin_decoders())
    view = reg.decode_message(store.message(1))
    assert view.values[0]["payload"]["path"] == "Players/Ada"
    assert "godot rpc Players/Ada (node 3) method 0(Vector2(1.0, 2.0))" in view.summary
    other_way = reg.decode_message(store.message(2))  # the server's cache ids are its own
    assert "path" not in other_way.values[0]["payload"] and "rpc node 3 method 0" in other_way.summary


def test_the_filter_bar_completes_enet_fields() -> None:
    from inspector.filters import FIELD_NAMES

    assert {"enet", "godot", "enet.channel", "enet.reliable", "enet.lane"} <= set(FIELD_NAMES)

"""proxy.codec: every record type round-trips exactly, through msgpack too; bad dicts say what is wrong."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.codec import (
    RECORD_TYPES,
    CodecError,
    direction_from_wire,
    record_from_dict,
    record_to_dict,
    truncated_dict,
)
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    FramingInferred,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Side,
    UpstreamConnected,
)

ints = st.integers(min_value=0, max_value=2**63 - 1)
ids = st.integers(min_value=1, max_value=2**40)
addrs = st.tuples(st.text(max_size=40), st.integers(min_value=0, max_value=65535))
delays = st.lists(st.tuples(st.sampled_from(DelayReason), ints), max_size=4).map(tuple)

messages = st.builds(Message, id=ids, conn_id=ids, direction=st.sampled_from(Direction), seq=ints,
                     data=st.binary(max_size=300), arrival_ns=ints, release_ns=st.none() | ints,
                     origin=st.sampled_from(Origin), state=st.sampled_from(MessageState), delays=delays)
updates = st.builds(MessageUpdated, msg_id=ids, conn_id=ids, direction=st.sampled_from(Direction),
                    state=st.sampled_from(MessageState), time_ns=ints, release_ns=st.none() | ints,
                    data=st.none() | st.binary(max_size=300), delays=delays)
opened = st.builds(ConnectionOpened, conn_id=ids, client_addr=addrs, target_addr=addrs, time_ns=ints,
                   replay_of=st.none() | ids)
upstream = st.builds(UpstreamConnected, conn_id=ids, server_addr=addrs, time_ns=ints)
half = st.builds(HalfClosed, conn_id=ids, side=st.sampled_from(Side), time_ns=ints)
closed = st.builds(ConnectionClosed, conn_id=ids, reason=st.sampled_from(CloseReason), detail=st.text(max_size=80),
                   time_ns=ints, bytes_c2s=ints, bytes_s2c=ints, messages_c2s=ints, messages_s2c=ints,
                   discarded=ints)
notices = st.builds(Notice, level=st.sampled_from(["info", "warning", "error"]), text=st.text(max_size=80),
                    time_ns=ints, conn_id=st.none() | ids, direction=st.none() | st.sampled_from(Direction))

framings = st.builds(FramingInferred, conn_id=ids, direction=st.sampled_from(Direction), framing=st.text(max_size=30),
                     reason=st.text(max_size=80), from_seq=ints, at_offset=ints, time_ns=ints, since_seq=ints,
                     messages=ints, cause=st.sampled_from(["inferred", "remembered", "stall", "contradiction",
                                                           "resync", "limit"]))

STRATEGIES = {
    "message": messages,
    "message_updated": updates,
    "connection_opened": opened,
    "upstream_connected": upstream,
    "half_closed": half,
    "connection_closed": closed,
    "notice": notices,
    "framing_inferred": framings,
}


def test_every_record_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == RECORD_TYPES


@pytest.mark.parametrize("type_name", sorted(STRATEGIES))
def test_round_trip_exact(type_name: str) -> None:
    @given(STRATEGIES[type_name])
    def check(record: object) -> None:
        d = record_to_dict(record)  # type: ignore[arg-type]
        assert d["type"] == type_name
        assert record_from_dict(d) == record
        wire = msgpack.unpackb(msgpack.packb(d, use_bin_type=True), raw=False)
        back = record_from_dict(wire)
        assert back == record
        assert type(back) is type(record)

    check()


@given(messages)
def test_dict_is_plain(record: Message) -> None:
    """Only plain types: no enum or tuple leaks into what other processes and files see."""

    def plain(v: object) -> bool:
        if isinstance(v, dict):
            return all(type(k) is str and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or type(v) in (str, int, bytes)

    assert plain(record_to_dict(record))


def test_readable_wire_values() -> None:
    m = Message(7, 3, Direction.S2C, 0, b"hi", 10, 15, Origin.EDITED, MessageState.FORWARDED,
                ((DelayReason.LATENCY, 5),))
    d = record_to_dict(m)
    assert d["direction"] == "s2c" and d["origin"] == "edited" and d["delays"] == [["latency", 5]]
    assert record_to_dict(HalfClosed(1, Side.CLIENT, 2))["side"] == "client"
    assert record_to_dict(ConnectionClosed(1, CloseReason.CLIENT_RESET, "", 0, 0, 0, 0, 0))["reason"] == "client reset"


def test_truncated_dict_keeps_size_and_flags() -> None:
    m = Message(1, 1, Direction.C2S, 0, b"x" * 1000, 0, 0)
    d = truncated_dict(m, 16)
    assert d["data"] == b"x" * 16 and d["size"] == 1000 and d["truncated"] is True
    assert record_from_dict(d).data == b"x" * 16  # still decodes; the flag tells the reader
    small = truncated_dict(Message(1, 1, Direction.C2S, 0, b"abc", 0, 0), 16)
    assert "truncated" not in small and small["data"] == b"abc"
    assert "truncated" not in truncated_dict(MessageUpdated(1, 1, Direction.C2S, MessageState.DROPPED, 0), 16)


def test_unknown_keys_are_ignored() -> None:
    d = record_to_dict(UpstreamConnected(1, ("127.0.0.1", 5), 9))
    d["v"] = 1
    d["future_field"] = [1, 2]
    assert record_from_dict(d) == UpstreamConnected(1, ("127.0.0.1", 5), 9)


@pytest.mark.parametrize(("d", "words"), [
    ({"type": "nope"}, "unknown record type 'nope'"),
    ({}, "unknown record type None"),
    ({"type": "half_closed", "conn_id": 1, "side": "left", "time_ns": 0}, "half_closed.side"),
    ({"type": "upstream_connected", "conn_id": "1", "server_addr": ["h", 1], "time_ns": 0},
     "upstream_connected.conn_id: expected an integer"),
    ({"type": "upstream_connected", "conn_id": 1, "server_addr": ["h"], "time_ns": 0}, "server_addr"),
    ({"type": "notice", "level": "info", "text": "t", "time_ns": 0, "direction": "up"}, "notice.direction"),
])
def test_bad_dicts_say_what_is_wrong(d: dict[str, object], words: str) -> None:
    with pytest.raises(CodecError, match=words.replace("(", r"\(").replace("[", r"\[")):
        record_from_dict(d)


def test_bad_message_fields() -> None:
    good = record_to_dict(Message(1, 1, Direction.C2S, 0, b"a", 0, None))
    for key, value, words in [("data", "text", "message.data: expected bytes"),
                              ("state", "gone", "message.state: unknown value"),
                              ("delays", [["slow", 1]], "unknown reason"),
                              ("id", True, "message.id: expected an integer"),
                              ("seq", 1.0, "message.seq: expected an integer"),
                              ("release_ns", "soon", "message.release_ns: expected an integer"),
                              ("direction", ["c2s"], "message.direction"),
                              ("origin", None, "message.origin: unknown value"),
                              ("delays", "", "message.delays: expected a list"),
                              ("delays", None, "message.delays: expected a list")]:
        bad = {**good, key: value}
        with pytest.raises(CodecError, match=words):
            record_from_dict(bad)


def test_message_fast_path_and_checked_path_agree() -> None:
    plain = Message(7, 2, Direction.S2C, 3, b"xy", 10, 20, Origin.INJECTED, MessageState.HELD)
    assert record_from_dict(record_to_dict(plain)) == plain
    d = record_to_dict(plain)
    del d["delays"]  # older writers left it out
    assert record_from_dict(d) == plain
    assert record_from_dict({**d, "direction": 1}) == plain  # the numeric direction takes the checked path
    delayed = Message(8, 2, Direction.C2S, 4, b"z", 10, 30, delays=((DelayReason.LATENCY, 20),))
    assert record_from_dict(record_to_dict(delayed)) == delayed


def test_direction_from_wire() -> None:
    assert direction_from_wire("c2s") is Direction.C2S
    assert direction_from_wire(1) is Direction.S2C
    for bad in ("up", 2, True, None):
        with pytest.raises(CodecError):
            direction_from_wire(bad)


def test_not_a_record() -> None:
    with pytest.raises(CodecError, match="not a record"):
        record_to_dict("hello")  # type: ignore[arg-type]


def test_records_written_before_udp_still_load_and_udp_fields_round_trip() -> None:
    from proxy.codec import record_from_dict, record_to_dict
    from proxy.model import ConnectionOpened, Direction, Message, MessageState, Origin

    old_opened = {"type": "connection_opened", "conn_id": 1, "client_addr": ["127.0.0.1", 5], "time_ns": 3,
                  "target_addr": ["127.0.0.1", 6], "replay_of": None}  # no "transport": a session from before UDP
    assert record_from_dict(old_opened) == ConnectionOpened(1, ("127.0.0.1", 5), ("127.0.0.1", 6), 3)
    udp = ConnectionOpened(2, ("127.0.0.1", 5), ("127.0.0.1", 6), 3, None, "udp")
    assert record_from_dict(record_to_dict(udp)) == udp
    plain = Message(1, 2, Direction.C2S, 0, b"x", 5, 5)
    assert "note" not in record_to_dict(plain) and "flips" not in record_to_dict(plain)
    impaired = Message(1, 2, Direction.C2S, 0, b"y", 5, None, Origin.LIVE, MessageState.FORWARDED, (),
                       "corrupted: bit 0 of byte 0 flipped", (0,))
    assert record_from_dict(record_to_dict(impaired)) == impaired
    with pytest.raises(ValueError, match="transport"):
        record_from_dict({**old_opened, "transport": "sctp"})

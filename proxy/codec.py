"""Records to plain msgpack-able dicts and back: the one wire form shared by the control protocol and sessions.

Role: ``record_to_dict`` turns every record type of :mod:`proxy.model` into a dict of ``str``, ``int``,
``bytes``, ``list`` and ``None`` only; ``record_from_dict`` rebuilds the identical record. The round trip is
exact (``record_from_dict(record_to_dict(r)) == r``), also through ``msgpack.packb``/``unpackb``.

Wire form (documented for users in docs/protocol.md and docs/session-format.md):

- ``"type"`` names the record: ``message``, ``message_updated``, ``connection_opened``,
  ``upstream_connected``, ``half_closed``, ``connection_closed``, ``notice``, ``framing_inferred``.
- Field names are the dataclass field names (``conn_id``, ``arrival_ns``, ...), so the protocol reads like
  the model. Readable keys cost little here: msgpack packs short strings in C, and the dict build dominates.
- ``Direction`` is ``"c2s"``/``"s2c"``, ``Side`` is ``"client"``/``"server"``; string enums (``Origin``,
  ``MessageState``, ``DelayReason``, ``CloseReason``) are their values; addresses are ``[host, port]``;
  ``delays`` is a list of ``[reason, ns]`` pairs; bytes stay bytes (msgpack ``bin``).
- Decoding ignores keys it does not know, so a newer writer can add fields (the control endpoint adds
  ``"v"``, and ``"size"``/``"truncated"`` on a truncated payload).

Speed: encoding runs once per record on the engine thread, so each encoder is a straight dict literal with
enum conversions through precomputed tables (no ``Enum.value`` property calls, no ``dataclasses.asdict``).
Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: any; pure functions.
"""

from __future__ import annotations

import functools
import reprlib
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgpack

from proxy.framing import FramingSpec
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
    Record,
    Side,
    UpstreamConnected,
)

__all__ = [
    "MESSAGE_HEAD",
    "RECORD_TYPES",
    "CodecError",
    "bytes_field",
    "direction_field",
    "direction_from_wire",
    "framing_to_dict",
    "int_field",
    "message_head_tail",
    "number_field",
    "opt_int_field",
    "opt_number_field",
    "record_from_dict",
    "record_to_dict",
    "shown",
    "str_field",
    "truncated_dict",
]


class CodecError(ValueError):
    """A dict is not a valid record (unknown type, missing or mistyped field). The message says which."""


# Enum <-> wire tables. Dict lookups are several times cheaper than ``member.value`` (a property).
_DIR_OUT: Final[dict[Direction, str]] = {Direction.C2S: "c2s", Direction.S2C: "s2c"}
_DIR_IN: Final[dict[str, Direction]] = {v: k for k, v in _DIR_OUT.items()}
_SIDE_OUT: Final[dict[Side, str]] = {Side.CLIENT: "client", Side.SERVER: "server"}
_SIDE_IN: Final[dict[str, Side]] = {v: k for k, v in _SIDE_OUT.items()}
_ORIGIN_OUT: Final[dict[Origin, str]] = {m: m.value for m in Origin}
_ORIGIN_IN: Final[dict[str, Origin]] = {m.value: m for m in Origin}
_STATE_OUT: Final[dict[MessageState, str]] = {m: m.value for m in MessageState}
_STATE_IN: Final[dict[str, MessageState]] = {m.value: m for m in MessageState}
_DELAY_OUT: Final[dict[DelayReason, str]] = {m: m.value for m in DelayReason}
_CLOSE_OUT: Final[dict[CloseReason, str]] = {m: m.value for m in CloseReason}


def direction_from_wire(value: object) -> Direction:
    """``"c2s"``/``"s2c"`` (also 0/1) to a ``Direction``; ``CodecError`` otherwise."""
    if isinstance(value, str):
        d = _DIR_IN.get(value)
        if d is not None:
            return d
    elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return Direction(value)
    raise CodecError(f"direction: expected 'c2s' or 's2c', got {shown(value)}")


def _delays_out(delays: tuple[tuple[DelayReason, int], ...]) -> list[list[Any]]:
    out = _DELAY_OUT
    return [[out[reason], ns] for reason, ns in delays]


# ------------------------------------------------------------------------------------------------ encoders


def _enc_message(r: Message) -> dict[str, Any]:
    d = {
        "type": "message",
        "id": r.id,
        "conn_id": r.conn_id,
        "direction": _DIR_OUT[r.direction],
        "seq": r.seq,
        "data": r.data,
        "arrival_ns": r.arrival_ns,
        "release_ns": r.release_ns,
        "origin": _ORIGIN_OUT[r.origin],
        "state": _STATE_OUT[r.state],
        # The fast path has no delays: skip the list comprehension for it.
        "delays": _delays_out(r.delays) if r.delays else [],
    }
    if r.note:  # UDP impairments only (a datagram with flips always has a note); TCP messages skip both keys
        d["note"] = r.note
        d["flips"] = list(r.flips)
    return d


def _enc_message_updated(r: MessageUpdated) -> dict[str, Any]:
    return {
        "type": "message_updated",
        "msg_id": r.msg_id,
        "conn_id": r.conn_id,
        "direction": _DIR_OUT[r.direction],
        "state": _STATE_OUT[r.state],
        "time_ns": r.time_ns,
        "release_ns": r.release_ns,
        "data": r.data,
        "delays": _delays_out(r.delays) if r.delays else [],
    }


def _enc_opened(r: ConnectionOpened) -> dict[str, Any]:
    return {
        "type": "connection_opened",
        "conn_id": r.conn_id,
        "client_addr": [r.client_addr[0], r.client_addr[1]],
        "target_addr": [r.target_addr[0], r.target_addr[1]],
        "time_ns": r.time_ns,
        "replay_of": r.replay_of,
        "transport": r.transport,
    }


def _enc_upstream(r: UpstreamConnected) -> dict[str, Any]:
    return {
        "type": "upstream_connected",
        "conn_id": r.conn_id,
        "server_addr": [r.server_addr[0], r.server_addr[1]],
        "time_ns": r.time_ns,
    }


def _enc_half_closed(r: HalfClosed) -> dict[str, Any]:
    return {"type": "half_closed", "conn_id": r.conn_id, "side": _SIDE_OUT[r.side], "time_ns": r.time_ns}


def _enc_closed(r: ConnectionClosed) -> dict[str, Any]:
    return {
        "type": "connection_closed",
        "conn_id": r.conn_id,
        "reason": _CLOSE_OUT[r.reason],
        "detail": r.detail,
        "time_ns": r.time_ns,
        "bytes_c2s": r.bytes_c2s,
        "bytes_s2c": r.bytes_s2c,
        "messages_c2s": r.messages_c2s,
        "messages_s2c": r.messages_s2c,
        "discarded": r.discarded,
    }


def _enc_notice(r: Notice) -> dict[str, Any]:
    return {
        "type": "notice",
        "level": r.level,
        "text": r.text,
        "time_ns": r.time_ns,
        "conn_id": r.conn_id,
        "direction": None if r.direction is None else _DIR_OUT[r.direction],
    }


def _enc_framing_inferred(r: FramingInferred) -> dict[str, Any]:
    return {
        "type": "framing_inferred",
        "conn_id": r.conn_id,
        "direction": _DIR_OUT[r.direction],
        "framing": r.framing,
        "reason": r.reason,
        "from_seq": r.from_seq,
        "at_offset": r.at_offset,
        "time_ns": r.time_ns,
        "since_seq": r.since_seq,
        "messages": r.messages,
        "cause": r.cause,
    }


_ENCODERS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    Message: _enc_message,
    MessageUpdated: _enc_message_updated,
    ConnectionOpened: _enc_opened,
    UpstreamConnected: _enc_upstream,
    HalfClosed: _enc_half_closed,
    ConnectionClosed: _enc_closed,
    Notice: _enc_notice,
    FramingInferred: _enc_framing_inferred,
}


def record_to_dict(record: Record) -> dict[str, Any]:
    """The wire form of ``record`` (a fresh dict the caller may extend, e.g. with ``"v"``)."""
    try:
        enc = _ENCODERS[type(record)]
    except KeyError:
        raise CodecError(f"not a record: {type(record).__name__}") from None
    return enc(record)


def truncated_dict(record: Message | MessageUpdated, keep: int) -> dict[str, Any]:
    """The wire form with ``data`` cut to its first ``keep`` bytes, plus ``"size"`` and ``"truncated": True``.

    Used when a control subscriber falls behind: the event still says what happened and how big it was.
    """
    d = record_to_dict(record)
    data = d["data"]
    if data is not None and len(data) > keep:
        d["size"] = len(data)
        d["data"] = data[:keep]
        d["truncated"] = True
    return d


# ------------------------------------------------------------------------------------------------ field checks
# One set of checks for every map that arrives from a file or a socket: records here, command arguments in
# proxy.control.commands. Each names the key and shows the bad value (bounded: a client's value can be huge or
# deeply nested), so a bad map says what is wrong rather than building something that breaks later. Record
# decoding prefixes the record type (``message.id: ...``); the control endpoint prefixes the command.


def _make_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 2, 40, 40, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 4
    return r


_REPR: Final = _make_repr()


def shown(value: object, limit: int = 60) -> str:
    """``repr`` for an error message, bounded in length and depth whatever a peer sent (a plain ``repr`` of a
    1,000-level list raises RecursionError; of a 3,000-character string, makes a 3,000-character line)."""
    return _REPR.repr(value)[:limit]


def int_field(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CodecError(f"{key}: expected an integer, got {shown(v)}")
    return v


def opt_int_field(d: Mapping[str, Any], key: str) -> int | None:
    return None if d.get(key) is None else int_field(d, key)


def number_field(d: Mapping[str, Any], key: str) -> float:
    """An int or a float (not a bool, not NaN), as a float."""
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        raise CodecError(f"{key}: expected a number, got {shown(v)}")
    return float(v)


def opt_number_field(d: Mapping[str, Any], key: str) -> float | None:
    return None if d.get(key) is None else number_field(d, key)


def str_field(d: Mapping[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise CodecError(f"{key}: expected a string, got {shown(v)}")
    return v


def bytes_field(d: Mapping[str, Any], key: str) -> bytes:
    v = d.get(key)
    if not isinstance(v, bytes):
        raise CodecError(f"{key}: expected bytes (msgpack bin), got {type(v).__name__}")
    return v


def direction_field(d: Mapping[str, Any], key: str = "direction") -> Direction:
    return direction_from_wire(d.get(key))


def _addr(d: Mapping[str, Any], key: str) -> tuple[str, int]:
    v = d.get(key)
    if (not isinstance(v, list | tuple) or len(v) != 2 or not isinstance(v[0], str)
            or isinstance(v[1], bool) or not isinstance(v[1], int)):
        raise CodecError(f"{key}: expected [host, port], got {shown(v)}")
    return (v[0], v[1])


def _enum(d: Mapping[str, Any], key: str, cls: Any) -> Any:
    v = d.get(key)
    try:
        return cls(v)
    except ValueError:
        raise CodecError(f"{key}: unknown value {shown(v)}") from None


def _delays(d: Mapping[str, Any]) -> tuple[tuple[DelayReason, int], ...]:
    v = d.get("delays", [])
    if not isinstance(v, list | tuple):
        raise CodecError(f"delays: expected a list, got {shown(v)}")
    out: list[tuple[DelayReason, int]] = []
    for item in v:
        if (not isinstance(item, list | tuple) or len(item) != 2 or isinstance(item[1], bool)
                or not isinstance(item[1], int)):
            raise CodecError(f"delays: expected [reason, ns] pairs, got {shown(item)}")
        try:
            out.append((DelayReason(item[0]), item[1]))
        except ValueError:
            raise CodecError(f"delays: unknown reason {shown(item[0])}") from None
    return tuple(out)


# ------------------------------------------------------------------------------------------------ decoders


def _dec_message(d: Mapping[str, Any]) -> Message:
    # Fast path for the dict _enc_message writes (a session holds millions): exact types, no delays. Anything
    # else goes through the checks below, which say what is wrong.
    try:
        i, c, s, a, rel, data = d["id"], d["conn_id"], d["seq"], d["arrival_ns"], d["release_ns"], d["data"]
        direction, origin, state = _DIR_IN[d["direction"]], _ORIGIN_IN[d["origin"]], _STATE_IN[d["state"]]
    except (KeyError, TypeError):
        pass
    else:
        if (type(i) is int and type(c) is int and type(s) is int and type(a) is int and type(data) is bytes
                and (rel is None or type(rel) is int) and d.get("delays", []) == [] and "note" not in d):
            return Message(i, c, direction, s, data, a, rel, origin, state)
    return _dec_message_checked(d)


def _dec_message_checked(d: Mapping[str, Any]) -> Message:
    return Message(
        id=int_field(d, "id"),
        conn_id=int_field(d, "conn_id"),
        direction=direction_field(d),
        seq=int_field(d, "seq"),
        data=bytes_field(d, "data"),
        arrival_ns=int_field(d, "arrival_ns"),
        release_ns=opt_int_field(d, "release_ns"),
        origin=_enum(d, "origin", Origin),
        state=_enum(d, "state", MessageState),
        delays=_delays(d),
        note=str_field(d, "note") if "note" in d else "",
        flips=_flips(d),
    )


def _flips(d: Mapping[str, Any]) -> tuple[int, ...]:
    v = d.get("flips", [])
    if not isinstance(v, list | tuple) or not all(type(x) is int and x >= 0 for x in v):
        raise CodecError(f"flips: expected a list of bit positions, got {shown(v)}")
    return tuple(v)


def _dec_message_updated(d: Mapping[str, Any]) -> MessageUpdated:
    return MessageUpdated(
        msg_id=int_field(d, "msg_id"),
        conn_id=int_field(d, "conn_id"),
        direction=direction_field(d),
        state=_enum(d, "state", MessageState),
        time_ns=int_field(d, "time_ns"),
        release_ns=opt_int_field(d, "release_ns"),
        data=None if d.get("data") is None else bytes_field(d, "data"),
        delays=_delays(d),
    )


def _dec_opened(d: Mapping[str, Any]) -> ConnectionOpened:
    return ConnectionOpened(
        conn_id=int_field(d, "conn_id"),
        client_addr=_addr(d, "client_addr"),
        target_addr=_addr(d, "target_addr"),
        time_ns=int_field(d, "time_ns"),
        replay_of=opt_int_field(d, "replay_of"),
        transport=_transport(d),
    )


def _transport(d: Mapping[str, Any]) -> str:
    """``tcp`` when absent: sessions written before UDP existed have no such key."""
    v = d.get("transport", "tcp")
    if v not in ("tcp", "udp"):
        raise CodecError(f"transport: expected 'tcp' or 'udp', got {shown(v)}")
    return str(v)


def _dec_upstream(d: Mapping[str, Any]) -> UpstreamConnected:
    return UpstreamConnected(conn_id=int_field(d, "conn_id"), server_addr=_addr(d, "server_addr"),
                             time_ns=int_field(d, "time_ns"))


def _dec_half_closed(d: Mapping[str, Any]) -> HalfClosed:
    side = _SIDE_IN.get(d.get("side"))  # type: ignore[arg-type]
    if side is None:
        raise CodecError(f"side: expected 'client' or 'server', got {shown(d.get('side'))}")
    return HalfClosed(conn_id=int_field(d, "conn_id"), side=side, time_ns=int_field(d, "time_ns"))


def _dec_closed(d: Mapping[str, Any]) -> ConnectionClosed:
    return ConnectionClosed(
        conn_id=int_field(d, "conn_id"),
        reason=_enum(d, "reason", CloseReason),
        detail=str_field(d, "detail"),
        time_ns=int_field(d, "time_ns"),
        bytes_c2s=int_field(d, "bytes_c2s"),
        bytes_s2c=int_field(d, "bytes_s2c"),
        messages_c2s=int_field(d, "messages_c2s"),
        messages_s2c=int_field(d, "messages_s2c"),
        discarded=int_field(d, "discarded") if "discarded" in d else 0,
    )


def _dec_notice(d: Mapping[str, Any]) -> Notice:
    return Notice(
        level=str_field(d, "level"),
        text=str_field(d, "text"),
        time_ns=int_field(d, "time_ns"),
        conn_id=opt_int_field(d, "conn_id"),
        direction=None if d.get("direction") is None else direction_field(d),
    )


def _dec_framing_inferred(d: Mapping[str, Any]) -> FramingInferred:
    return FramingInferred(
        conn_id=int_field(d, "conn_id"),
        direction=direction_field(d),
        framing=str_field(d, "framing"),
        reason=str_field(d, "reason"),
        from_seq=int_field(d, "from_seq"),
        at_offset=int_field(d, "at_offset"),
        time_ns=int_field(d, "time_ns"),
        since_seq=int_field(d, "since_seq") if "since_seq" in d else 0,
        messages=int_field(d, "messages") if "messages" in d else 0,
        cause=str_field(d, "cause") if "cause" in d else "inferred",
    )


_DECODERS: Final[dict[str, Callable[[Mapping[str, Any]], Record]]] = {
    "message": _dec_message,
    "message_updated": _dec_message_updated,
    "connection_opened": _dec_opened,
    "upstream_connected": _dec_upstream,
    "half_closed": _dec_half_closed,
    "connection_closed": _dec_closed,
    "notice": _dec_notice,
    "framing_inferred": _dec_framing_inferred,
}

RECORD_TYPES: Final[frozenset[str]] = frozenset(_DECODERS)
"""The ``type`` values that name a record (every other control event type is protocol-level)."""


def record_from_dict(d: Mapping[str, Any]) -> Record:
    """Rebuild the record ``record_to_dict`` produced; ``CodecError`` says what is wrong with a bad dict."""
    if not isinstance(d, Mapping):
        raise CodecError(f"expected a map, got {type(d).__name__}")
    t = d.get("type")
    dec = _DECODERS.get(t) if isinstance(t, str) else None
    if dec is None:
        raise CodecError(f"unknown record type {shown(t)}; expected one of {', '.join(sorted(_DECODERS))}")
    try:
        return dec(d)
    except CodecError as e:
        raise CodecError(f"{t}.{e}") from None


def framing_to_dict(spec: FramingSpec) -> dict[str, Any]:
    """A framing as the protocol and session headers show it: ``{"c2s", "s2c", "max_frame", "text"}``."""
    return {"c2s": spec.c2s, "s2c": spec.s2c, "max_frame": spec.max_frame, "text": str(spec)}


# ------------------------------------------------------------------------------------------ a message, spliced
# The frame itself (u32 length + msgpack map) is proxy.control.wire's; this is a Message record's fixed layout in
# it, for the recorder.

_BIN32: Final = b"\xc6"  # msgpack bin 32


def _fixed_head() -> tuple[struct.Struct, tuple[bytes, ...]]:
    k = functools.partial(msgpack.packb, use_bin_type=True)
    parts = (b"\x8b" + k("type") + k("message") + k("id") + b"\xcf", k("conn_id") + b"\xcf", k("direction"),
             k("seq") + b"\xcf", k("data") + _BIN32)
    a, b, c, d, e = (len(x) for x in parts)
    return struct.Struct(f">I{a}sQ{b}sQ{c}s4s{d}sQ{e}sI"), parts


_HEAD, _HEAD_PARTS = _fixed_head()
MESSAGE_HEAD: Final = _HEAD.size
"""Bytes of :func:`message_head_tail`'s head, whatever the message."""
_AFTER_DATA: Final = ("arrival_ns", "release_ns", "origin", "state", "delays")
_AFTER_KEYS: Final = {key: msgpack.packb(key) for key in _AFTER_DATA}


def message_head_tail(packer: msgpack.Packer, r: Message) -> tuple[bytes, bytes]:
    """The framed session record of ``r`` (what ``proxy.control.wire.pack_framed(packer, record_to_dict(r))``
    writes, with the same keys and values) as a head of exactly :data:`MESSAGE_HEAD` bytes and a tail, to go
    either side of the payload.

    The head's integers are packed as uint 64 and the payload's length as bin 32, which every msgpack reader
    accepts, so its size never depends on the values: the recorder lets the relay read a payload straight into
    the file's staging memory after a gap of that size, and writes head and tail around it afterwards.
    """
    assert not r.note and not r.flips, "a datagram's record never lands in the recorder's staging memory"
    d = _enc_message(r)
    pack, keys = packer.pack, _AFTER_KEYS
    tail = b"".join([keys[k] + pack(d[k]) for k in _AFTER_DATA])
    a, b, c, dd, e = _HEAD_PARTS
    n = len(r.data)
    head = _HEAD.pack(MESSAGE_HEAD - 4 + n + len(tail), a, r.id, b, r.conn_id, c, pack(d["direction"]), dd, r.seq,
                      e, n)
    return head, tail

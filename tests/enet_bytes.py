"""Builders of ENet datagrams and Godot SceneMultiplayer packets, byte by byte, for the ENet tests.

Written from lsalzman/enet's protocol.h (big-endian) and Godot's modules/multiplayer sources (little-endian), not
from the decoder under test, so a test built with them checks the decoder against the format.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

USUAL_FLAGS = {1: 0x00, 2: 0x80, 3: 0x80, 4: 0x80, 5: 0x80, 6: 0x80, 7: 0x00, 8: 0x80, 9: 0x40, 10: 0x80,
               11: 0x80, 12: 0x00}


def header(peer: int = 0, session: int = 0, sent_time: int | None = None, compressed: bool = False) -> bytes:
    word = peer | session << 12 | (0x8000 if sent_time is not None else 0) | (0x4000 if compressed else 0)
    return struct.pack(">H", word) + (b"" if sent_time is None else struct.pack(">H", sent_time))


def command(kind: int, channel: int, seq: int, body: bytes = b"", flags: int | None = None) -> bytes:
    f = USUAL_FLAGS[kind] if flags is None else flags
    return bytes([kind | f, channel]) + struct.pack(">H", seq) + body


def ack(channel: int, seq: int, sent_time: int) -> bytes:
    return command(1, channel, seq, struct.pack(">HH", seq, sent_time))


def connect(outgoing_peer: int = 0, mtu: int = 1400, window: int = 65536, channels: int = 4, connect_id: int = 0x1234,
            data: int = 0, seq: int = 1) -> bytes:
    return command(2, 0xFF, seq, struct.pack(">HBBIIIIIIIIII", outgoing_peer, 0xFF, 0xFF, mtu, window, channels, 0, 0,
                                             5000, 2, 2, connect_id, data))


def verify_connect(outgoing_peer: int = 0, mtu: int = 1400, channels: int = 4, connect_id: int = 0x1234,
                   seq: int = 1) -> bytes:
    return command(3, 0xFF, seq, struct.pack(">HBBIIIIIIIII", outgoing_peer, 0, 0, mtu, 65536, channels, 0, 0, 5000,
                                             2, 2, connect_id))


def disconnect(data: int = 0, seq: int = 7, connected: bool = True) -> bytes:
    return command(4, 0xFF, seq, struct.pack(">I", data), 0x80 if connected else 0x40)


def ping(seq: int) -> bytes:
    return command(5, 0xFF, seq)


def reliable(channel: int, seq: int, payload: bytes) -> bytes:
    return command(6, channel, seq, struct.pack(">H", len(payload)) + payload)


def unreliable(channel: int, seq: int, unreliable_seq: int, payload: bytes) -> bytes:
    return command(7, channel, seq, struct.pack(">HH", unreliable_seq, len(payload)) + payload)


def unsequenced(channel: int, group: int, payload: bytes) -> bytes:
    return command(9, channel, 0, struct.pack(">HH", group, len(payload)) + payload)


def bandwidth_limit(incoming: int, outgoing: int, seq: int = 3) -> bytes:
    return command(10, 0xFF, seq, struct.pack(">II", incoming, outgoing))


def throttle_configure(interval: int, acceleration: int, deceleration: int, seq: int = 4) -> bytes:
    return command(11, 0xFF, seq, struct.pack(">III", interval, acceleration, deceleration))


def fragment(channel: int, seq: int, start: int, count: int, number: int, total: int, offset: int, piece: bytes,
             unreliable_fragment: bool = False) -> bytes:
    return command(12 if unreliable_fragment else 8, channel, seq,
                   struct.pack(">HHIIII", start, len(piece), count, number, total, offset) + piece)


def fragments(channel: int, first_seq: int, message: bytes, size: int, *, unreliable_fragment: bool = False,
              reliable_seq: int = 0, sent_time: int = 100) -> list[bytes]:
    """``message`` cut as ENet cuts it (``size`` bytes a fragment), one datagram each."""
    pieces = [message[i : i + size] for i in range(0, len(message), size)]
    out = []
    for n, piece in enumerate(pieces):
        if unreliable_fragment:
            body = fragment(channel, reliable_seq, first_seq, len(pieces), n, len(message), n * size, piece, True)
            out.append(header(0) + body)
        else:
            body = fragment(channel, first_seq + n, first_seq, len(pieces), n, len(message), n * size, piece)
            out.append(header(0, sent_time=sent_time) + body)
    return out


def with_checksum(datagram_header: bytes, commands: bytes, connect_id: bytes = b"\0\0\0\0") -> bytes:
    """ENet's checksum: CRC32 of the datagram with the field holding the peer's connect id (0 without a peer)."""
    crc = zlib.crc32(datagram_header + connect_id + commands)
    return datagram_header + struct.pack(">I", crc) + commands


# ------------------------------------------------------------------------------------------------------------
# Godot: Variants (core/io/marshalls.cpp) and SceneMultiplayer packets


class Vec2(tuple):  # type: ignore[type-arg]
    """A Vector2 to encode."""


def variant(v: Any) -> bytes:
    """Godot's binary serialization of ``v`` (single precision)."""
    if v is None:
        return struct.pack("<I", 0)
    if isinstance(v, bool):
        return struct.pack("<II", 1, int(v))
    if isinstance(v, int):
        if -(1 << 31) <= v < 1 << 31:
            return struct.pack("<Ii", 2, v)
        return struct.pack("<Iq", 2 | 1 << 16, v)
    if isinstance(v, float):
        return struct.pack("<Id", 3 | 1 << 16, v) if struct.unpack("<f", struct.pack("<f", v))[0] != v \
            else struct.pack("<If", 3, v)
    if isinstance(v, str):
        raw = v.encode()
        return struct.pack("<II", 4, len(raw)) + raw + b"\0" * (-len(raw) % 4)
    if isinstance(v, Vec2):
        return struct.pack("<Iff", 5, *v)
    if isinstance(v, bytes):
        return struct.pack("<II", 29, len(v)) + v + b"\0" * (-len(v) % 4)
    if isinstance(v, list):
        return struct.pack("<II", 28, len(v)) + b"".join(variant(x) for x in v)
    if isinstance(v, dict):
        return struct.pack("<II", 27, len(v)) + b"".join(variant(k) + variant(x) for k, x in v.items())
    raise TypeError(type(v))


def compressed(v: Any) -> bytes:
    """MultiplayerAPI::encode_and_compress_variant."""
    if isinstance(v, bool):
        return bytes([1 | (0x80 if v else 0)])
    if isinstance(v, int):
        for mode, fmt in ((0, "<b"), (1, "<h"), (2, "<i"), (3, "<q")):
            try:
                return bytes([2 | mode << 6]) + struct.pack(fmt, v)
            except struct.error:
                continue
    return variant(v)


def rpc(node: int, method: int, args: list[Any], *, path: str | None = None) -> bytes:
    """A remote call as SceneRPCInterface::_send_rpc writes it."""
    if path is not None:
        node_comp, node_bytes = 2, b""
    elif node <= 0xFF:
        node_comp, node_bytes = 0, bytes([node])
    elif node <= 0xFFFF:
        node_comp, node_bytes = 1, struct.pack("<H", node)
    else:
        node_comp, node_bytes = 2, struct.pack("<I", node)
    name_comp, name_bytes = (0, bytes([method])) if method <= 0xFF else (1, struct.pack("<H", method))
    raw = len(args) == 1 and isinstance(args[0], bytes)
    if not args or raw:
        body = args[0] if raw else b""
        byte_only = True
    else:
        body = bytes([len(args)]) + b"".join(compressed(a) for a in args)
        byte_only = False
    meta = 0 | node_comp << 4 | name_comp << 6 | (0x80 if byte_only else 0)
    if path is None:
        return bytes([meta]) + node_bytes + name_bytes + body
    head_len = 1 + 4 + len(name_bytes)
    ofs = head_len + len(body)
    return bytes([meta]) + struct.pack("<I", 0x80000000 | ofs) + name_bytes + body + path.encode() + b"\0"


def simplify_path(cache_id: int, path: str, md5: str = "0123456789abcdef0123456789abcdef") -> bytes:
    return b"\x01" + md5.encode() + b"\0" + struct.pack("<I", cache_id) + path.encode() + b"\0"


def confirm_path(path: str, valid: bool = True) -> bytes:
    return b"\x02" + bytes([int(valid)]) + path.encode() + b"\0"


def raw(data: bytes) -> bytes:
    return b"\x03" + data


def spawn(scene: int, spawner: int, net_id: int, name: str, syncs: list[int] = [], state: list[Any] = [],  # noqa: B006
          arg: Any = None) -> bytes:
    n = name.encode() + b"\0"
    out = bytes([4, scene]) + struct.pack("<IIII", spawner, net_id, len(syncs), len(n))
    out += b"".join(struct.pack("<I", s) for s in syncs) + n
    if scene == 0xFF:
        a = compressed(arg)
        out += struct.pack("<I", len(a)) + a
    return out + b"".join(compressed(v) for v in state)


def despawn(net_id: int) -> bytes:
    return b"\x05" + struct.pack("<I", net_id)


def sync(time: int, nodes: list[tuple[int, list[Any]]]) -> bytes:
    out = b"\x06" + struct.pack("<H", time)
    for nid, values in nodes:
        state = b"".join(compressed(v) for v in values)
        out += struct.pack("<II", nid, len(state)) + state
    return out


def sys(sub: int, peer: int = 0, payload: bytes = b"") -> bytes:
    if sub == 0:
        return b"\x07\x00" + payload
    return b"\x07" + bytes([sub]) + struct.pack("<i", peer) + payload

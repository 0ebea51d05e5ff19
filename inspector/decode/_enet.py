"""ENet (the UDP transport of Godot, and of many C and C++ games) decoded datagram by datagram.

Role: reads one datagram as lsalzman/enet's protocol.h and protocol.c lay it out, all fields big-endian: the header
(peer id in the low 12 bits, session in bits 12-13, the SENT_TIME and COMPRESSED flags in bits 15 and 14, then the
16-bit sent time when flagged, then a CRC32 when the application set ``host->checksum``: detected, and verified
when the flow's connect id is known), and the commands that follow, each with its 4-byte command header (type in
the low 4 bits, ACKNOWLEDGE 0x80 and UNSEQUENCED 0x40 flags, channel, reliable sequence number) and the fixed body
of its type: ACK, CONNECT, VERIFY_CONNECT, DISCONNECT, PING, SEND_RELIABLE, SEND_UNRELIABLE, SEND_FRAGMENT,
SEND_UNSEQUENCED, BANDWIDTH_LIMIT, THROTTLE_CONFIGURE, SEND_UNRELIABLE_FRAGMENT. A send's payload (the game's
message) is decoded by the usual decoders (JSON, msgpack, pickle, struct ..., and Godot's SceneMultiplayer, see
``_godot``). A compressed datagram is inflated when its compressor is ENet's range coder (``_rangecoder``: pyenet's
``compress_with_range_coder()``, Godot's COMPRESS_RANGE_CODER) or zlib (Godot's COMPRESS_ZLIB), and said to be
compressed otherwise (Godot's FastLZ and Zstandard).

A fragmented message spans datagrams, so its reassembly needs the flow's earlier datagrams: :class:`FlowBook`
(one per process, :data:`FLOWS`) is fed every UDP datagram in capture order by whoever sees them in order (the
window's message store, the terminal's summariser) through :func:`observe_datagram`, and keeps, per flow and
direction, the fragments of messages not yet complete and the messages reassembled, all bounded (see its
docstring). The decoder then shows the whole message on the datagram that completed it, and on the others which
part they are. The book also remembers each flow's connect id (to verify checksums), whether its client is a
Godot game (its CONNECT asks for 255 channels and carries the peer id Godot picked), and that the flow is ENet.

Each command becomes one value for filters and rules (``enet.channel == 1 and enet.reliable == false``,
``enet.lane == "1/unreliable"``, ``enet.command == "ack"``, ``enet.payload.type == "input"``): see
docs/decoders.md. Everything is bounded by the datagram's size; commands past :data:`MAX_COMMANDS` are counted,
not shown.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: decoding from any thread. :data:`FLOWS` is fed from one thread (the window's or the terminal's); the
decoder only reads it, and every entry it reads is replaced whole, so a decode on another thread sees a consistent
entry or none.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from proxy.model import Direction, Message, MessageState

from . import _godot, _rangecoder
from ._api import MAX_DUMP, MAX_NODES, DecodeContext, Field, View, clip, error_view, hex_dump, past_deadline
from ._payload import LaneKey, decode_payload, nesting, summary_view
from ._render import TreeBudget

if TYPE_CHECKING:
    from ._registry import DecoderRegistry

NAME: Final = "enet"
MAX_MTU: Final = 4096
"""ENET_PROTOCOL_MAXIMUM_MTU: ENet never sends a bigger datagram."""
MAX_COMMANDS: Final = 256
"""Commands decoded from one datagram (ENet sends at most 32); the rest are counted."""
NO_PEER: Final = 0xFFF

CMD_NAMES: Final = ("none", "ack", "connect", "verify_connect", "disconnect", "ping", "send_reliable",
                    "send_unreliable", "send_fragment", "send_unsequenced", "bandwidth_limit", "throttle_configure",
                    "send_unreliable_fragment")
SIZES: Final = (0, 8, 48, 44, 8, 4, 6, 8, 24, 8, 12, 16, 24)
"""commandSizes[] of protocol.c: the command header and the fixed body of each type."""
_BODY: Final = (None, struct.Struct(">HH"), struct.Struct(">HBBIIIIIIIIII"), struct.Struct(">HBBIIIIIIIII"),
                struct.Struct(">I"), None, struct.Struct(">H"), struct.Struct(">HH"), struct.Struct(">HHIIII"),
                struct.Struct(">HH"), struct.Struct(">II"), struct.Struct(">III"), struct.Struct(">HHIIII"))
_DATA_LEN_AT: Final = {6: 0, 7: 1, 8: 1, 9: 1, 12: 1}
"""Sends: which body field is the payload's length."""
FLAG_ACK: Final = 0x80
FLAG_UNSEQUENCED: Final = 0x40
_USUAL_FLAGS: Final = (None, (0,), (FLAG_ACK,), (FLAG_ACK,), (FLAG_ACK, FLAG_UNSEQUENCED), (FLAG_ACK,), (FLAG_ACK,),
                       (0,), (FLAG_ACK,), (FLAG_UNSEQUENCED,), (FLAG_ACK,), (FLAG_ACK,), (0,))
"""The flags ENet itself sets on each command type (a disconnect is unsequenced when not connected)."""
_CONTROL_CHANNEL: Final = 0xFF
_MODES: Final = {6: "reliable", 7: "unreliable", 8: "reliable", 9: "unsequenced", 12: "unreliable"}
COMPRESSED: Final = 0.88
"""The confidence in a compressed datagram of a known flow, or one that inflated to exact commands. Below JSON's 0.9
(whose ``{`` and ``[`` have the compressed bit's value), and none of ENet's values equals another decoder's: a tie
would go to the one registered first, and the registry's memory of a connection's sure winner (``_sure_for``) counts
on a different value meaning a different kind."""
CONFIDENCE_WORK: Final = 20_000
"""Range-coder steps a confidence check may spend on a compressed datagram of a flow not yet known to be ENet."""
MAX_MESSAGE: Final = 32 << 20
"""ENET_HOST_DEFAULT_MAXIMUM_PACKET_SIZE: a fragmented message claiming more is not reassembled."""

_U16 = struct.Struct(">H")


# ------------------------------------------------------------------------------------------------------------
# Parsing


class Command:
    """One command of a datagram."""

    __slots__ = ("body", "channel", "data_end", "data_start", "flags", "kind", "offset", "seq")

    def __init__(self, kind: int, flags: int, channel: int, seq: int, offset: int, body: tuple[int, ...],
                 data_start: int, data_end: int) -> None:
        self.kind = kind
        self.flags = flags
        self.channel = channel
        self.seq = seq
        """The reliable sequence number of its command header."""
        self.offset = offset
        self.body = body
        self.data_start = data_start
        self.data_end = data_end
        """The payload of a send (empty range for the others)."""

    @property
    def name(self) -> str:
        return CMD_NAMES[self.kind]

    @property
    def end(self) -> int:
        return max(self.data_end, self.offset + SIZES[self.kind])

    @property
    def is_send(self) -> bool:
        return self.kind in _MODES

    @property
    def is_fragment(self) -> bool:
        return self.kind in (8, 12)


class Parsed:
    """A datagram as read: header fields, commands, and what did not fit."""

    __slots__ = ("checksum_at", "commands", "compressed", "data", "error", "header_size", "more", "peer",
                 "sent_time", "session", "trailing", "unusual", "weak")

    def __init__(self) -> None:
        self.data = b""
        self.peer = 0
        self.session = 0
        self.sent_time: int | None = None
        self.compressed = False
        self.header_size = 0
        self.checksum_at: int | None = None
        self.commands: list[Command] = []
        self.error: str | None = None
        """Why the commands stop before the end (a truncated or unknown command)."""
        self.trailing = 0
        """Bytes after the last whole command that are not one (ENet ignores them)."""
        self.more = 0
        """Bytes after the first MAX_COMMANDS commands, not read."""
        self.unusual: list[str] = []
        """Things ENet itself never sends (flags, channels): legal to a receiver, but evidence against ENet."""
        self.weak = False
        """Only after a sequence number wrapped (or a record of zeros): no evidence for a flow not yet known."""

    @property
    def exact(self) -> bool:
        return self.error is None and self.trailing == 0


def parse(data: bytes, checksum: bool = False, start: int | None = None) -> Parsed:
    """Read ``data`` as one ENet datagram; ``checksum``: a CRC32 follows the header. Never raises."""
    p = Parsed()
    p.data = data
    n = len(data)
    if n < 2:
        p.error = f"{n} bytes is shorter than ENet's 2-byte header"
        return p
    word = (data[0] << 8) | data[1]
    p.peer = word & 0x0FFF
    p.session = (word >> 12) & 3
    p.compressed = bool(word & 0x4000)
    hs = 4 if word & 0x8000 else 2
    if hs == 4:
        if n < 4:
            p.error = "the sent time is cut off"
            return p
        p.sent_time = (data[2] << 8) | data[3]
    if checksum:
        p.checksum_at = hs
        hs += 4
        if n < hs:
            p.error = "the checksum is cut off"
            return p
    p.header_size = hs
    if p.compressed:
        return p
    _commands(p, data, hs if start is None else start, n)
    return p


def _commands(p: Parsed, data: bytes, off: int, n: int) -> None:
    cmds = p.commands
    sizes, bodies = SIZES, _BODY
    while off < n:
        if n - off < 4:
            p.trailing = n - off
            return
        first = data[off]
        kind = first & 0x0F
        if kind == 0 or kind > 12:
            p.error = f"unknown command type {kind} at byte {off}"
            return
        size = sizes[kind]
        if off + size > n:
            p.error = f"{CMD_NAMES[kind]} at byte {off} needs {size} bytes, {n - off} left"
            return
        body_struct = bodies[kind]
        body = body_struct.unpack_from(data, off + 4) if body_struct is not None else ()
        ds = de = off + size
        at = _DATA_LEN_AT.get(kind)
        if at is not None:
            de = ds + body[at]
            if de > n:
                p.error = f"{CMD_NAMES[kind]} at byte {off} carries {body[at]} bytes, {n - ds} left"
                return
        if len(cmds) >= MAX_COMMANDS:
            p.more = n - off  # ENet sends at most 32: the rest is not read at all (a 64 KiB datagram of pings)
            return
        cmds.append(Command(kind, first & 0xF0, data[off + 1], (data[off + 2] << 8) | data[off + 3], off, body,
                                ds, de))
        off = de


def _check(p: Parsed) -> None:
    """Fill ``p.unusual`` (what a real ENet sender never does) and ``p.weak`` (what it does only once its sequence
    numbers wrap around: a zero sequence number, an ack of sent time 0; zero-filled records look like that)."""
    u = p.unusual
    weak = False
    if len(p.commands) > 32 or p.more:
        u.append(f"{len(p.commands)}{'+' if p.more else ''} commands (ENet sends at most 32)")
    if len(p.data) > MAX_MTU:
        u.append(f"{len(p.data)} bytes (ENet's datagrams are at most {MAX_MTU})")
    needs_time = False
    for c in p.commands:
        kind = c.kind
        if c.flags & 0x30:
            u.append(f"{c.name} with reserved bits 0x{c.flags & 0x30:02x}")
        if c.flags & 0xC0 not in _USUAL_FLAGS[kind]:  # type: ignore[operator]
            u.append(f"{c.name} with flags 0x{c.flags & 0xC0:02x}")
        if c.flags & FLAG_ACK:
            needs_time = True
            weak = weak or c.seq == 0
        if kind == 1:
            if c.seq != c.body[0]:
                u.append("an ack whose header does not repeat the acknowledged sequence number")
            weak = weak or c.seq == 0 or c.body[1] == 0
        elif kind in (7, 9, 12):
            weak = weak or c.body[0] == 0
        if kind in _MODES:
            if c.channel == _CONTROL_CHANNEL:
                u.append(f"{c.name} on channel 255")
            if kind == 8 or kind == 12:  # a fragment
                _start, length, count, number, total, offset = c.body
                if not (number < count <= 1 << 20 and offset <= total and length <= total - offset):
                    u.append("a fragment outside its message")
                weak = weak or count < 2
        elif kind != 1 and c.channel != _CONTROL_CHANNEL:
            u.append(f"{c.name} on channel {c.channel}")
        if kind == 2:
            if not (576 <= c.body[3] <= MAX_MTU and 1 <= c.body[5] <= 255):
                u.append("connect with an impossible MTU or channel count")
        elif kind != 2 and p.peer == NO_PEER and kind not in (1, 4):
            u.append(f"{c.name} to no peer (0xFFF)")
    if needs_time and p.sent_time is None:
        u.append("a reliable command without the header's sent time")
    if p.sent_time is not None and not needs_time:
        u.append("a sent time without a reliable command")
    p.weak = weak


def best_parse(data: bytes, flow: FlowInfo | None = None) -> Parsed:
    """The reading of ``data`` that fits: without a checksum, else with one (``host->checksum`` set)."""
    plain = parse(data)
    if plain.compressed or (plain.exact and plain.commands and not (flow is not None and flow.checksum)):
        return plain
    crc = parse(data, checksum=True)
    if crc.exact and crc.commands:
        return crc
    return plain


# ------------------------------------------------------------------------------------------------------------
# Per-flow state: fragments, reassembled messages, connect ids


class FlowInfo:
    """What the book knows of one flow (both directions)."""

    __slots__ = ("checksum", "connect_ids", "datagrams", "godot_paths", "godot_peer")

    def __init__(self) -> None:
        self.datagrams = 0
        """Datagrams of this flow that read as ENet exactly."""
        self.connect_ids: tuple[bytes, ...] = ()
        """The connect ids (as their 4 wire bytes) of the flow's CONNECTs: what a checksum is computed with."""
        self.godot_peer: int | None = None
        """The peer id a Godot client announced in its CONNECT (255 channels, data = its unique id)."""
        self.checksum = False
        """A datagram of this flow carried a checksum that verified."""
        self.godot_paths: dict[int, dict[int, str]] = {}
        """Godot: per direction, the node paths its sender announced (SIMPLIFY_PATH), by cache id: a remote call
        names its node by that id."""


class Reassembled:
    """A fragmented message made whole."""

    __slots__ = ("count", "data", "last", "last_crc", "msg_id")

    def __init__(self, data: bytes, count: int, last: int, last_crc: int, msg_id: int) -> None:
        self.data = data
        self.count = count
        self.last = last
        """The fragment number whose arrival completed it."""
        self.last_crc = last_crc
        """CRC32 of the datagram that completed it (a datagram decoded later is matched by it: a lost copy of the
        same fragment differs in its header's sent time)."""
        self.msg_id = msg_id
        """The captured message (datagram) that completed it."""


FragKey = tuple[int, int, int, int, int, int]
"""(conn, direction, channel, unreliable?, start sequence, reliable sequence for unreliable fragments)."""


class _Partial:
    __slots__ = ("count", "got", "held", "total")

    def __init__(self, count: int, total: int) -> None:
        self.count = count
        self.total = total
        self.got: dict[int, tuple[int, bytes]] = {}
        """Fragment number -> (offset, bytes): nothing is allocated for the claimed total until it is all here."""
        self.held = 0


class FlowBook:
    """Fragments and flow facts, fed in capture order; bounded:

    - at most :attr:`max_flows` flows (past it the oldest is forgotten);
    - at most :attr:`max_partial` messages being reassembled per flow and direction, :attr:`max_partial_total` in
      all, and :attr:`max_partial_bytes` of their fragments (past any, the oldest partial message is dropped: ENet
      would have given up on it long before). Fragments are kept as they came: the claimed total length is never
      allocated, and a message is made whole only when its fragments cover it exactly;
    - at most :attr:`max_done` reassembled messages kept, :attr:`max_done_bytes` in all (the oldest go first; a
      fragment whose message was forgotten is shown as a fragment only);
    - a message claiming more than :data:`MAX_MESSAGE` bytes is not reassembled.
    Every datagram costs work proportional to its size plus a few dictionary operations.
    """

    def __init__(self, max_flows: int = 4096, max_partial: int = 32, max_partial_total: int = 4096,
                 max_partial_bytes: int = 64 << 20, max_done: int = 4096, max_done_bytes: int = 64 << 20) -> None:
        self.max_flows = max_flows
        self.max_partial = max_partial
        self.max_partial_total = max_partial_total
        self.max_partial_bytes = max_partial_bytes
        self.max_done = max_done
        self.max_done_bytes = max_done_bytes
        self.flows: OrderedDict[int, FlowInfo] = OrderedDict()
        self.partial: OrderedDict[FragKey, _Partial] = OrderedDict()
        self._lanes: dict[tuple[int, int], OrderedDict[FragKey, None]] = {}
        self.partial_bytes = 0
        self.done: OrderedDict[FragKey, Reassembled] = OrderedDict()
        self.done_bytes = 0
        self.dropped = 0
        """Partial messages given up on (a cap was reached, or the fragments did not cover the message)."""

    def clear(self) -> None:
        self.flows.clear()
        self.partial.clear()
        self._lanes.clear()
        self.done.clear()
        self.partial_bytes = self.done_bytes = 0

    def flow(self, conn_id: int | None) -> FlowInfo | None:
        return None if conn_id is None else self.flows.get(conn_id)

    def observe(self, msg: Message) -> None:
        """One captured datagram, in capture order (a lost or dropped one never reached its peer: skipped)."""
        data = msg.data
        if len(data) < 6 or len(data) > MAX_MTU or msg.state is MessageState.DROPPED:
            return
        info = self.flows.get(msg.conn_id)
        p = best_parse(data, info)
        if p.compressed and (info is not None or _worth_inflating(data)):
            q, _how = _inflate(p, CONFIDENCE_WORK)
            if q is not None:
                p = q
                data = q.data  # the commands' offsets are in the inflated bytes
        if not p.exact or not p.commands:
            return
        _check(p)
        if (p.unusual or p.weak) and info is None:
            return  # not evidence enough to start a flow
        if info is None:
            if len(self.flows) >= self.max_flows:
                self.flows.popitem(last=False)
            info = self.flows[msg.conn_id] = FlowInfo()
        info.datagrams += 1
        if p.checksum_at is not None and verify_checksum(p, info) is True:
            info.checksum = True
        d = int(msg.direction)
        for c in p.commands:
            kind = c.kind
            if kind == 2:
                cid = data[c.offset + 40 : c.offset + 44]
                if cid not in info.connect_ids:
                    info.connect_ids = (*info.connect_ids[-3:], cid)
                channels, connect_data = c.body[5], c.body[12]
                if channels == 255 and connect_data >= 2 and msg.direction is Direction.C2S:
                    info.godot_peer = connect_data
            elif kind in (8, 12):
                self._fragment(msg, d, c, data)
            elif kind == 6 and c.data_end - c.data_start >= 40 and data[c.data_start] == 1:
                self._godot_path(info, d, data[c.data_start : c.data_end])

    @staticmethod
    def _godot_path(info: FlowInfo, d: int, packet: bytes) -> None:
        """A SIMPLIFY_PATH (always sent reliably): remember which node the sender's cache id stands for."""
        try:
            p = _godot.parse_packet(packet)
        except (_godot.BadPacket, ValueError, IndexError):
            return
        paths = info.godot_paths.setdefault(d, {})
        if len(paths) < 4096:
            paths[p.value["id"]] = p.value["path"]

    def _fragment(self, msg: Message, d: int, c: Command, data: bytes) -> None:
        start_seq, length, count, number, total, offset = c.body
        if not (number < count <= 1 << 20 and 0 < total <= MAX_MESSAGE and offset <= total
                and length <= total - offset):
            return
        unrel = int(c.kind == 12)
        key = (msg.conn_id, d, c.channel, unrel, start_seq, c.seq if unrel else 0)
        if key in self.done:
            return  # a retransmission of a part of a message already whole
        part = self.partial.get(key)
        if part is None or part.count != count or part.total != total:
            if part is not None:
                self._drop(key)
            part = _Partial(count, total)
            self.partial[key] = part
            lane = self._lanes.get(key[:2])  # type: ignore[arg-type]
            if lane is None:
                lane = self._lanes[key[:2]] = OrderedDict()  # type: ignore[index]
            lane[key] = None
            if len(lane) > self.max_partial:
                self._drop(next(iter(lane)))
                self.dropped += 1
            if len(self.partial) > self.max_partial_total:
                self._drop(next(iter(self.partial)))
                self.dropped += 1
        if number in part.got:
            return
        piece = data[c.data_start : c.data_end]
        part.got[number] = (offset, piece)
        part.held += len(piece)
        self.partial_bytes += len(piece)
        if len(part.got) == count:
            self._drop(key)
            whole = _joined(part)
            if whole is None:
                self.dropped += 1
                return
            self.done[key] = Reassembled(whole, count, number, zlib.crc32(data), msg.id)
            self.done_bytes += len(whole)
            while self.done and (len(self.done) > self.max_done or self.done_bytes > self.max_done_bytes):
                _, old = self.done.popitem(last=False)
                self.done_bytes -= len(old.data)
        while self.partial_bytes > self.max_partial_bytes and self.partial:
            self._drop(next(iter(self.partial)))
            self.dropped += 1

    def _drop(self, key: FragKey) -> None:
        part = self.partial.pop(key, None)
        if part is not None:
            self.partial_bytes -= part.held
            lane = self._lanes.get(key[:2])  # type: ignore[arg-type]
            if lane is not None:
                lane.pop(key, None)
                if not lane:
                    del self._lanes[key[:2]]  # type: ignore[arg-type]

    def reassembled(self, key: FragKey) -> Reassembled | None:
        return self.done.get(key)


def _joined(part: _Partial) -> bytes | None:
    """The message, when its fragments cover ``part.total`` bytes exactly, one after the other; else None."""
    if part.held != part.total:
        return None
    at = 0
    pieces = []
    for offset, piece in sorted(part.got.values()):
        if offset != at:
            return None
        pieces.append(piece)
        at += len(piece)
    return b"".join(pieces)


FLOWS = FlowBook()
"""The process's book (the window's store and the terminal's summariser feed it)."""


def _godot_paths(conn_id: int | None, direction: Direction | None) -> dict[int, str] | None:
    """The node paths a flow's sender in ``direction`` announced (for the Godot decoder's summaries)."""
    flow = FLOWS.flow(conn_id)
    if flow is None or direction is None or not flow.godot_paths:
        return None
    return flow.godot_paths.get(int(direction))


_godot.PATHS = _godot_paths  # Godot's decoder names a remote call's node by them, without importing this module


def observe_datagram(msg: Message) -> None:
    """Feed :data:`FLOWS` one UDP datagram in capture order; never raises (a bug must not lose a capture)."""
    try:
        FLOWS.observe(msg)
    except Exception:  # pragma: no cover - the book is an aid to decoding, never a reason to fail
        pass


def verify_checksum(p: Parsed, flow: FlowInfo | None) -> bool | None:
    """Whether the datagram's CRC32 is right (ENet computes it with the checksum field holding the flow's connect
    id, or 0 before a peer is assigned); None when it cannot be told (the connect id is not known)."""
    at = p.checksum_at
    if at is None:
        return None
    data = p.data
    want = data[at : at + 4]
    candidates = [b"\0\0\0\0"] if p.peer == NO_PEER else list(flow.connect_ids if flow is not None else ())
    for cid in candidates:
        if struct.pack(">I", zlib.crc32(data[:at] + cid + data[at + 4 :])) == want:
            return True
    return False if candidates else None


RANGE_CODER: Final = "range coder (ENet's compress_with_range_coder, Godot's COMPRESS_RANGE_CODER)"
_inflated: tuple[bytes, int, tuple[Parsed | None, str]] | None = None
"""The last datagram inflated, with its work budget (the registry asks for the confidence, then decodes it)."""


def _inflate(p: Parsed, work: int = _rangecoder.MAX_WORK, deadline_ns: int | None = None
             ) -> tuple[Parsed | None, str]:
    """A compressed datagram's commands, when the compressor is one we can undo: ENet's range coder (pyenet's
    ``compress_with_range_coder()``, Godot's ``COMPRESS_RANGE_CODER``) or zlib (Godot's ``COMPRESS_ZLIB``); the
    reading must then be exact. Tried after the header, then after a checksum (which covers the inflated bytes)."""
    global _inflated
    memo = _inflated
    if memo is not None and memo[0] is p.data and memo[1] >= work:
        return memo[2]
    result = _inflate_at(p, p.header_size, work, deadline_ns)
    if result[0] is None and p.checksum_at is None and len(p.data) > p.header_size + 4:
        with_crc = _inflate_at(p, p.header_size + 4, work, deadline_ns)
        if with_crc[0] is not None:
            with_crc[0].checksum_at = p.header_size
            result = with_crc
    _inflated = (p.data, work, result)
    return result


def _inflate_at(p: Parsed, hs: int, work: int, deadline_ns: int | None) -> tuple[Parsed | None, str]:
    body = p.data[hs:]
    limit = MAX_MTU - hs
    how = ""
    out: bytes | None = None
    if len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0:
        try:
            z = zlib.decompressobj()
            out = z.decompress(body, limit)
            how = "zlib (Godot's COMPRESS_ZLIB)"
            if z.unconsumed_tail or not z.eof:
                return None, "zlib, but it does not inflate within ENet's 4096-byte MTU"
        except zlib.error:
            out = None
    elif body[:4] == b"\x28\xb5\x2f\xfd":
        return None, "Zstandard (Godot's COMPRESS_ZSTD): not decoded"
    if out is None:
        try:
            out = _rangecoder.decompress(body, limit, work, deadline_ns)
            how = RANGE_CODER
        except _rangecoder.Corrupt as e:
            return None, f"Godot's FastLZ, or not ENet's range coder ({e}): not decoded"
    whole = p.data[:hs] + out
    q = Parsed()
    for slot in ("peer", "session", "sent_time", "checksum_at"):
        setattr(q, slot, getattr(p, slot))
    q.data = whole
    q.header_size = hs
    _commands(q, whole, hs, len(whole))
    if not (q.exact and q.commands):
        return None, "Godot's FastLZ, or not ENet's range coder: not decoded"
    return q, how


def _worth_inflating(data: bytes) -> bool:
    """Whether a compressed-looking datagram of a flow not known to be ENet is worth a try: a small peer id (ENet
    numbers peers from 0; Godot's servers take 32 by default). Text and JSON often have the compressed flag's bit set
    (letters), but rarely such a second byte."""
    return data[0] & 0x0F == 0 and data[1] < 0x40


# ------------------------------------------------------------------------------------------------------------
# The decoder


def _lane(c: Command) -> str:
    return f"{c.channel}/{_MODES[c.kind]}"


class EnetDecoder:
    """ENet datagrams; see the module docstring. ``registry``: where payloads are decoded (default: the process's
    registry); ``book``: the flows' fragments and facts (default: :data:`FLOWS`)."""

    name = NAME

    def __init__(self, registry: DecoderRegistry | None = None, book: FlowBook | None = None,
                 decode_payloads: bool = True) -> None:
        self.registry = registry
        self.book = book if book is not None else FLOWS
        self.decode_payloads = decode_payloads
        """False: payloads are shown by their size only (the ENet layer alone: its benchmark)."""
        self._memo: tuple[bytes, FlowInfo | None, Parsed] | None = None
        self.lanes: dict[LaneKey, tuple[str, float]] = {}
        """The decoder of each channel's last payload (see :func:`decode_payload`)."""

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        n = len(data)
        if n < 6 or n > MAX_MTU or nesting() or ctx.framing not in (None, "raw", "datagram"):
            return 0.0
        flow = self.book.flow(ctx.conn_id)
        known = flow is not None and flow.datagrams > 0
        if data[0] & 0x40:  # compressed: the flow's past, or the commands inside
            if known:
                return COMPRESSED
            if not _worth_inflating(data):
                return 0.0
            q, _how = _inflate(parse(data), CONFIDENCE_WORK)
            if q is None:
                return 0.0
            _check(q)
            return 0.0 if q.unusual or q.weak else COMPRESSED
        p = self._parsed(data, flow)
        if not p.commands or p.error is not None:
            return 0.0
        if known:
            return 0.2 if p.trailing else 0.6 if p.unusual else 0.96
        if p.trailing or p.unusual or p.weak:
            return 0.0  # a record that happens to parse: ENet needs better evidence on a flow it has not seen
        return 0.94 if p.checksum_at is not None else 0.92

    def forget_connections(self) -> None:
        """Numbering starts again (a new window or session): what was learnt of connection #1 is not the new #1's."""
        self.book.clear()
        self.lanes.clear()
        self._memo = None

    def _parsed(self, data: bytes, flow: FlowInfo | None) -> Parsed:
        """``data`` parsed and checked; the registry asks for the confidence, then decodes the same bytes: the
        reading is kept for that (one tuple, replaced whole: safe across threads)."""
        memo = self._memo
        if memo is not None and memo[0] is data and memo[1] is flow:
            return memo[2]
        p = best_parse(data, flow)
        if p.commands:
            _check(p)
        self._memo = (data, flow, p)
        return p

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        flow = self.book.flow(ctx.conn_id)
        p = self._parsed(data, flow)
        warnings: list[str] = []
        how = ""
        if p.compressed:
            q, how = _inflate(p, deadline_ns=ctx.deadline_ns)
            if q is None:
                return self._compressed_view(p, how, ctx)
            p = q
            _check(p)
        if not p.commands and p.error is not None:
            return error_view(NAME, data, f"not ENet: {p.error}", detail=ctx.detail)
        if not p.commands and not p.trailing:
            warnings.append("no command after the header")
        if p.error is not None:
            warnings.append(f"the commands stop early: {p.error}")
        if p.trailing:
            warnings.append(f"{p.trailing} bytes after the last command (ENet ignores them)")
        if p.more:
            warnings.append(f"only the first {MAX_COMMANDS} commands are decoded ({p.more} more bytes not read)")
        if p.unusual:
            warnings.extend(f"unusual for ENet: {u}" for u in p.unusual[:4])
        checked: bool | None = None
        if p.checksum_at is not None:
            checked = verify_checksum(p, flow)
            if checked is False:
                warnings.append("the checksum is wrong: ENet drops this datagram")
        return _Builder(self, p, p.data, ctx, flow, how, checked, warnings).view()

    def _compressed_view(self, p: Parsed, how: str, ctx: DecodeContext) -> View:
        data = p.data
        summary = f"compressed datagram, {len(data) - p.header_size} B ({how})"
        head = {"command": "compressed", "peer": p.peer, "sent_time": p.sent_time, "compressed": True,
                "size": len(data) - p.header_size}
        if not ctx.detail:
            return View(decoder=NAME, summary=clip(summary), values=(head,))
        fields = (_header_field(p), Field("compressed commands", f"{len(data) - p.header_size} bytes ({how})",
                                          p.header_size, len(data)))
        text = (f"ENet datagram, compressed ({how}).\nThe commands inside cannot be shown without the compressor "
                "the game set (ENetConnection.compress(); COMPRESS_NONE eases debugging).\n\n" + hex_dump(data))
        return View(decoder=NAME, summary=clip(summary), fields=fields, text=text, values=(head,),
                    truncated=len(data) > MAX_DUMP)


def _header_field(p: Parsed) -> Field:
    flags = [f for f, on in (("sent time", p.sent_time is not None), ("compressed", p.compressed)) if on]
    peer = "none (0xFFF)" if p.peer == NO_PEER else str(p.peer)
    kids = [Field("peer id", peer, 0, 2), Field("session", str(p.session), 0, 2),
            Field("flags", ", ".join(flags) or "none", 0, 2)]
    if p.sent_time is not None:
        kids.append(Field("sent time", f"{p.sent_time} (ms, low 16 bits of the sender's clock)", 2, 4))
    if p.checksum_at is not None:
        at = p.checksum_at
        kids.append(Field("checksum (CRC32)", f"0x{p.data[at : at + 4].hex()}", at, at + 4))
    return Field("header", f"peer {peer}, session {p.session}" + (f", sent {p.sent_time}" if p.sent_time is not None
                                                                   else ""), 0, p.header_size, tuple(kids))


_CONNECT_KEYS: Final = (
    ("outgoing_peer", "outgoing peer id", 2), ("incoming_session", "incoming session", 1),
    ("outgoing_session", "outgoing session", 1), ("mtu", "mtu", 4), ("window", "window size", 4),
    ("channels", "channel count", 4), ("incoming_bandwidth", "incoming bandwidth", 4),
    ("outgoing_bandwidth", "outgoing bandwidth", 4), ("throttle_interval", "throttle interval", 4),
    ("throttle_acceleration", "throttle acceleration", 4), ("throttle_deceleration", "throttle deceleration", 4),
    ("connect_id", "connect id", 4), ("data", "data", 4))
_CHECKSUM_WORDS: Final = {True: "ok", False: "WRONG", None: "unchecked"}


_NO_TREE: Final = TreeBudget(0)
"""The budget of a summary's builder: never read or spent (only a view with detail has a tree)."""


class _Builder:
    """Makes one datagram's view: summary and values always; the field tree and text only with detail."""

    __slots__ = ("budget", "checked", "ctx", "data", "dec", "flow", "how", "late", "p", "warnings")

    def __init__(self, dec: EnetDecoder, p: Parsed, data: bytes, ctx: DecodeContext, flow: FlowInfo | None,
                 how: str, checked: bool | None, warnings: list[str]) -> None:
        self.dec, self.p, self.data, self.ctx, self.flow = dec, p, data, ctx, flow
        self.how, self.checked, self.warnings = how, checked, warnings
        self.budget = TreeBudget(MAX_NODES) if ctx.detail else _NO_TREE  # (a summary has no tree)
        self.late = False

    def view(self) -> View:
        p, ctx = self.p, self.ctx
        detail = ctx.detail
        if not detail:
            return self._summary_view(p)
        values: list[dict[str, Any]] = []
        parts: list[str] = []
        controls: list[str] = []
        acks: list[str] = []
        fields: list[Field] = [_header_field(p)] if detail else []
        lines: list[str] = []
        for c in p.commands:
            value, text, payload = self.command(c)
            values.append(value)
            if c.kind == 1:
                acks.append(text)
            elif c.kind in _MODES:  # the game's messages first: what the row is about
                parts.append(text)
            else:
                controls.append(text)
            if detail:
                lines.append(text)
                budget = self.budget
                if budget.left > 0:
                    node = self.field(len(lines), c, text, payload, value)
                    if self.how:  # its bytes are the inflated ones, not the datagram's
                        node = _unplaced(node)
                    budget.left -= _count(node)
                    if budget.left >= 0:
                        fields.append(node)
                    else:
                        budget.truncated = True
        summary = self._summary(parts, controls, acks)
        n = len(p.commands)
        head = (f"ENet datagram: {n} command{'s' * (n != 1)}, peer {'none' if p.peer == NO_PEER else p.peer}, "
                f"session {p.session}" + (f", sent time {p.sent_time}" if p.sent_time is not None else "")
                + (f", compressed ({self.how})" if self.how else ""))
        if p.checksum_at is not None:
            head += {True: ", checksum verified", False: ", checksum WRONG",
                     None: ", checksum not verified (the flow's connect id is not known)"}[self.checked]
        text = head + "\n\n" + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(lines))
        if self.warnings:
            text += "\n\n" + "\n".join(f"⚠ {w}" for w in self.warnings)
        return View(decoder=NAME, summary=clip(summary), fields=tuple(fields), text=text,
                    warnings=tuple(self.warnings),
                    truncated=self.budget.truncated or bool(p.more) or len(self.data) > MAX_DUMP,
                    values=tuple(values))

    def _summary_view(self, p: Parsed) -> View:
        """The view without detail: what :meth:`view` makes of the commands, without the tree and the text."""
        values: list[dict[str, Any]] = []
        sends: list[str] = []
        controls: list[str] = []
        acks: list[str] = []
        command = self.command
        for c in p.commands:
            value, text, _payload = command(c)
            values.append(value)
            kind = c.kind
            if kind == 1:
                acks.append(text)
            elif kind in _MODES:  # the game's messages first: what the row is about
                sends.append(text)
            else:
                controls.append(text)
        return summary_view(NAME, clip(self._summary(sends, controls, acks)), tuple(values), tuple(self.warnings))

    def _summary(self, parts: list[str], controls: list[str], acks: list[str]) -> str:
        """The row's line: the sends, then the other commands, then the acks in one."""
        if controls:
            parts.extend(controls)
        if acks:
            if len(acks) == 1:
                parts.append(acks[0])  # "ack ch0 #5 (sent 9)"
            else:
                parts.append(f"{len(acks)} acks: " + ", ".join([a[4:] for a in acks[:4]])
                             + (", …" if len(acks) > 4 else ""))
        summary = " · ".join(parts) or f"no command ({len(self.data)} B)"
        p = self.p
        if p.checksum_at is not None:
            summary += " · crc " + _CHECKSUM_WORDS[self.checked]
        if self.how:
            summary = ("[range-coded] " if self.how == RANGE_CODER else "[zlib] ") + summary
        return summary

    def command(self, c: Command) -> tuple[dict[str, Any], str, View | None]:
        """The command's value (for filters), its one-line text, and its payload's view (sends)."""
        p = self.p
        kind, body, ch = c.kind, c.body, c.channel
        v: dict[str, Any]
        if kind == 1:  # (the same keys in the same order as below, in one literal: most commands are acks)
            a, b = body
            v = {"command": "ack", "channel": ch, "seq": c.seq, "peer": p.peer, "sent_time": p.sent_time,
                 "acked_seq": a, "acked_sent_time": b}
            return v, f"ack ch{ch} #{a} (sent {b})", None
        v = {"command": CMD_NAMES[kind], "channel": ch, "seq": c.seq, "peer": p.peer, "sent_time": p.sent_time,
             "reliable": bool(c.flags & FLAG_ACK)}
        mode = _MODES.get(kind)
        if mode is None:
            return v, self.control(c, v), None
        v["mode"] = mode
        v["lane"] = f"{ch}/{mode}"
        size = c.data_end - c.data_start
        v["size"] = size
        if kind == 7:
            v["unreliable_seq"] = body[0]
            head = f"ch{ch} unreliable #{body[0]}"
        elif kind == 9:
            v["group"] = body[0]
            head = f"ch{ch} unsequenced group {body[0]}"
        elif kind == 6:
            head = f"ch{ch} reliable #{c.seq}"
        else:
            return self.fragment(c, v, f"ch{ch} {mode} #{c.seq if kind == 8 else body[0]}")
        view = self.payload(self.data[c.data_start : c.data_end], ch)
        return v, f"{head} {size} B" + _payload_text(view, v), view

    def control(self, c: Command, v: dict[str, Any]) -> str:
        kind, body = c.kind, c.body
        if kind in (2, 3):
            for (key, _name, _w), val in zip(_CONNECT_KEYS, body, strict=False):
                v[key] = val
            godot = kind == 2 and body[5] == 255 and body[12] >= 2
            if godot:
                v["godot_peer"] = body[12]
            return (f"{CMD_NAMES[kind]}: {body[5]} channels, mtu {body[3]}, connect id 0x{body[11]:08x}"
                    + (f", data {body[12]}" if kind == 2 else f", your peer id {body[0]}")
                    + (f" (a Godot client, peer id {body[12]})" if godot else ""))
        if kind == 4:
            v["data"] = body[0]
            return f"disconnect (data {body[0]})" + ("" if c.flags & FLAG_ACK else ", unsequenced: not connected")
        if kind == 5:
            return "ping"
        if kind == 10:
            v["incoming_bandwidth"], v["outgoing_bandwidth"] = body
            return f"bandwidth_limit in {body[0]} B/s, out {body[1]} B/s (0: unlimited)"
        v["throttle_interval"], v["throttle_acceleration"], v["throttle_deceleration"] = body
        return f"throttle_configure interval {body[0]} ms, acceleration {body[1]}, deceleration {body[2]}"

    def fragment(self, c: Command, v: dict[str, Any], head: str) -> tuple[dict[str, Any], str, View | None]:
        start_seq, _length, count, number, total, offset = c.body
        v["fragment"] = {"start": start_seq, "number": number, "count": count, "total": total, "offset": offset}
        if c.kind == 12:
            v["unreliable_seq"] = start_seq
        ctx = self.ctx
        done = None
        if ctx.conn_id is not None and ctx.direction is not None:
            unrel = int(c.kind == 12)
            key = (ctx.conn_id, int(ctx.direction), c.channel, unrel, start_seq, c.seq if unrel else 0)
            done = self.dec.book.reassembled(key)
        if done is not None and done.last == number and done.last_crc == zlib.crc32(self.p.data):
            v["reassembled"] = True
            v["size"] = len(done.data)
            whole = self.payload(done.data, c.channel)
            return v, f"{head} {total} B reassembled from {count} fragments" + _payload_text(whole, v), whole
        v["reassembled"] = False
        frag = f"{head} fragment {number + 1}/{count} of {total} B"
        return v, frag + (f" (whole in message {done.msg_id})" if done is not None else ""), None

    def payload(self, payload: bytes, channel: int) -> View | None:
        if not self.dec.decode_payloads:
            return None
        ctx = self.ctx
        if ctx.deadline_ns is not None and past_deadline(ctx):  # the commands' fields are cheap and still come;
            if not self.late:  # the payloads wait for no one
                self.late = True
                self.warnings.append("past the decoding deadline: the remaining payloads are shown by size only")
            return None
        flow = self.flow
        prefer = "godot" if flow is not None and flow.godot_peer is not None else None
        if ctx.detail and self.budget.left <= 0:  # the tree is full: the rest need only their summaries
            ctx = DecodeContext(ctx.direction, ctx.conn_id, ctx.struct_format, ctx.json_delimiter, None, False,
                                ctx.deadline_ns, None)
        d = ctx.direction
        lane = (ctx.conn_id, None if d is None else int(d), channel, ctx.struct_format)
        return decode_payload(self.dec.registry, payload, ctx, prefer, self.dec.lanes, lane)

    def field(self, i: int, c: Command, text: str, payload: View | None, v: dict[str, Any]) -> Field:
        """The command's node in the tree, with byte ranges."""
        data, kind, body = self.data, c.kind, c.body
        off = c.offset
        o = off + 4
        flags = ", ".join(n for n, f in (("acknowledge", FLAG_ACK), ("unsequenced", FLAG_UNSEQUENCED)) if c.flags & f)
        kids = [Field("command", f"0x{data[off]:02x}: {c.name}" + (f" ({flags})" if flags else ""), off, off + 1),
                Field("channel", "255 (control)" if c.channel == 255 else str(c.channel), off + 1, off + 2),
                Field("reliable seq", str(c.seq), off + 2, off + 4)]
        named: list[tuple[str, str, int]] = []
        if kind == 1:
            named = [("acknowledges reliable seq", str(body[0]), 2), ("its sent time", str(body[1]), 2)]
        elif kind in (2, 3):
            named = [(name, f"0x{val:08x}" if key == "connect_id" else str(val), w)
                     for (key, name, w), val in zip(_CONNECT_KEYS, body, strict=False)]
        elif kind == 4:
            named = [("data", str(body[0]), 4)]
        elif kind == 10:
            named = [("incoming bandwidth", str(body[0]), 4), ("outgoing bandwidth", str(body[1]), 4)]
        elif kind == 11:
            named = [("interval", str(body[0]), 4), ("acceleration", str(body[1]), 4), ("deceleration", str(body[2]),
                                                                                        4)]
        elif kind == 6:
            named = [("data length", str(body[0]), 2)]
        elif kind in (7, 9):
            named = [("unreliable seq" if kind == 7 else "unsequenced group", str(body[0]), 2),
                     ("data length", str(body[1]), 2)]
        elif kind in (8, 12):
            named = [("start sequence", str(body[0]), 2), ("data length", str(body[1]), 2),
                     ("fragment count", str(body[2]), 4), ("fragment number", str(body[3]), 4),
                     ("total length", str(body[4]), 4), ("fragment offset", str(body[5]), 4)]
        for name, val, w in named:
            kids.append(Field(name, val, o, o + w))
            o += w
        s, e = c.data_start, c.data_end
        if v.get("reassembled") and payload is not None:  # the whole message lies in other datagrams too
            kids.append(Field(f"reassembled message ({payload.decoder})", clip(payload.summary, 120), s, e,
                              tuple(_unplaced(f) for f in payload.fields)))
        elif payload is not None:
            kids.append(Field(f"payload ({payload.decoder})", clip(payload.summary, 120), s, e,
                              tuple(_shift(f, s) for f in payload.fields)))
        elif e > s:
            kids.append(Field("fragment data" if c.is_fragment else "payload", f"{e - s} bytes", s, e))
        return Field(f"{i}. {c.name}", clip(text, 160), off, c.end, tuple(kids))


def _payload_text(view: View | None, v: dict[str, Any]) -> str:
    if view is None:
        return ""
    vals = view.values
    v["payload"] = vals[0] if len(vals) == 1 else list(vals)
    v["payload_decoder"] = view.decoder
    return f": {view.decoder} {view.summary}" if view.error is None else f": {view.summary}"


def _shift(f: Field, by: int) -> Field:
    return Field(f.name, f.value_repr, None if f.start is None else f.start + by,
                 None if f.end is None else f.end + by, tuple(_shift(c, by) for c in f.children))


def _count(f: Field) -> int:
    return 1 + sum(_count(c) for c in f.children)


def _unplaced(f: Field) -> Field:
    return Field(f.name, f.value_repr, None, None, tuple(_unplaced(c) for c in f.children))


def describe(data: bytes) -> str:
    """One line for a datagram (tests, tools): its commands and their channels, or why it is not ENet."""
    p = best_parse(data)
    if p.compressed:
        return "compressed"
    if not p.commands:
        return f"not ENet: {p.error}"
    return ", ".join(f"{c.name}@{c.channel}#{c.seq}" for c in p.commands) + (f" (+{p.trailing} B)" if p.trailing
                                                                               else "")


__all__ = ["FLOWS", "MAX_MTU", "NAME", "Command", "EnetDecoder", "FlowBook", "FlowInfo", "Parsed", "best_parse",
           "decode_payload", "describe", "observe_datagram", "parse", "verify_checksum"]

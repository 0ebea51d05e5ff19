"""Import a pcap or pcapng capture: reassemble each TCP connection and frame it into sockscope records.

Role: read the capture with scapy's reader (``scapy.utils.RawPcapReader``: classic pcap in either byte order and
time resolution, and pcapng), find the IPv4/IPv6 TCP segments, reassemble each direction of each connection
and cut the byte streams into messages with ``proxy.framing`` (the framing the user chose), producing the
records a live capture would have (``ConnectionOpened``, ``UpstreamConnected``, ``Message``, ``HalfClosed``,
``ConnectionClosed``, ``Notice``). The result can be written as a session (``sockscope import``), decoded,
filtered and used for session replay (:func:`client_messages`).

Reassembly is exact or it says so: segments are placed by sequence number, so out-of-order segments wait for
the hole before them, and retransmissions and overlaps are trimmed to the bytes not yet delivered (the first
copy wins). A hole that is never filled (a missing segment, or a packet cut short by the capture's snap length)
is reported in :attr:`ImportReport.gaps` and as a ``Notice`` in the session; the bytes after it are NOT
imported (never guessed or zero-filled), because a framer cannot know where messages resume.

Speed: scapy's reader yields raw frames (about 3 µs a packet); Ethernet (with VLAN tags), Linux cooked (v1, v2),
BSD loopback and raw-IP frames are parsed with ``struct`` here, since dissecting with scapy's layers costs
about 100 µs a packet. Frames of any other link type are dissected by scapy (slow, but correct).
Corrupt or truncated files: scapy stops reading at the damage; the importer notices that the file was not
read to its end and reports where (:attr:`ImportReport.warnings`), keeping what came before. A file that is
not a capture at all raises :class:`CaptureError` with a clear message.

Must not import: PySide6, ``inspector.ui``; scapy only inside functions (start-up time).
Thread: any; an importer belongs to the thread that iterates it.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from proxy.framing import DEFAULT_MAX_FRAME, Framer, FramingSpec, parse_framing
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
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

__all__ = ["CaptureError", "CaptureImporter", "Gap", "ImportReport", "client_messages", "import_capture"]

OOO_CAP: Final = 64 << 20
"""Out-of-order bytes buffered per direction waiting for a hole; past it the hole is declared a gap."""
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_TCP: Final = struct.Struct("!HHIIBB")
_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN, _ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
_MAGICS: Final = frozenset({b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1",
                            b"\x0a\x0d\x0d\x0a"})


class CaptureError(Exception):
    """The file cannot be imported at all (missing, not a capture); the message says why."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Bytes of one direction that were never captured: ``missing`` bytes at stream offset ``offset``."""

    conn_id: int
    direction: Direction
    offset: int
    missing: int | None
    """None when the size of the hole is unknown (nothing after it was captured before the stream ended)."""
    dropped_after: int
    """Bytes captured after the hole, not imported."""

    def __str__(self) -> str:
        size = f"{self.missing} bytes" if self.missing is not None else "bytes"
        return (f"connection #{self.conn_id} {self.direction.label}: {size} missing from the capture after stream "
                f"byte {self.offset}; the {self.dropped_after} bytes captured after the gap are not imported")


@dataclass(slots=True)
class ImportReport:
    packets: int = 0
    tcp_segments: int = 0
    not_tcp: int = 0
    connections: int = 0
    messages: int = 0
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    retransmitted: int = 0
    """Segments (or parts of them) that repeated bytes already delivered."""
    out_of_order: int = 0
    gaps: list[Gap] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated_file: bool = False


class _Half:
    """One direction of a connection: reassembly state, framer and counters."""

    __slots__ = ("base", "broken", "closed", "dropped", "fin_at", "framer", "msgs", "nbytes", "off", "ooo",
                 "ooo_bytes", "seq")

    def __init__(self, framer: Framer) -> None:
        self.base: int | None = None
        self.off = 0
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_bytes = 0
        self.fin_at: int | None = None
        self.closed = False
        self.broken = False
        self.dropped = 0
        self.framer = framer
        self.seq = 0
        self.msgs = 0
        self.nbytes = 0


class _Conn:
    __slots__ = ("cid", "client", "ended", "half", "server", "synack")

    def __init__(self, cid: int, client: tuple[str, int], server: tuple[str, int], spec: FramingSpec) -> None:
        self.cid = cid
        self.client = client
        self.server = server
        self.half = (_Half(spec.make(Direction.C2S)), _Half(spec.make(Direction.S2C)))
        self.synack = False
        self.ended = False


class CaptureImporter:
    """``for record in CaptureImporter(path, framing="lines").records(): ...``; then read ``report``."""

    def __init__(self, path: str | os.PathLike[str], *, framing: str = "raw", server_ports: Iterable[int] = (),
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.path = os.fspath(path)
        self.spec = parse_framing(framing, max_frame)  # FramingError (a ValueError) for a bad name
        self.server_ports = frozenset(server_ports)
        self.report = ImportReport()
        self._conns: dict[tuple[tuple[str, int], tuple[str, int]], _Conn] = {}
        self._next_conn = 1
        self._next_msg = 1
        self._out: list[Record] = []
        self.first_target: tuple[str, int] | None = None

    # ----------------------------------------------------------------------------------------- reading

    def _open(self) -> Any:
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise CaptureError(f"{self.path}: cannot open: {e.strerror or e}") from None
        if size == 0:
            raise CaptureError(f"{self.path}: the file is empty")
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapReader

        try:
            f = open(self.path, "rb")  # ours, so it is closed whatever scapy makes of it
        except OSError as e:
            raise CaptureError(f"{self.path}: cannot open: {e.strerror or e}") from None
        start = f.read(8)
        f.seek(0)
        try:
            if start[:4] not in _MAGICS and start[:2] != b"\x1f\x8b":
                raise Scapy_Exception("unknown magic number")
            return RawPcapReader(f)  # type: ignore[arg-type]  # scapy accepts open files too
        except Scapy_Exception as e:
            f.close()
            raise CaptureError(f"{self.path}: not a pcap or pcapng capture (it starts with {start!r}; {e})") from None
        except (OSError, EOFError, struct.error, ValueError) as e:
            f.close()
            raise CaptureError(f"{self.path}: cannot read the capture header: {e}") from None

    def records(self) -> Iterator[Record]:
        """The records, streamed in capture order; raises :class:`CaptureError` if the file is no capture."""
        reader = self._open()
        size = os.path.getsize(self.path)
        log = logging.getLogger("scapy.runtime")
        caught = _Collect()
        log.addHandler(caught)
        try:
            linktype = getattr(reader, "linktype", 1)
            nano = bool(getattr(reader, "nano", False))
            read = getattr(reader, "_read_packet", None)
            out = self._out
            while True:
                try:
                    # scapy's iterator cuts frames at 65,535 bytes; loopback frames can be a little longer.
                    pkt = read(size=262_144) if read is not None else next(reader)
                except (EOFError, StopIteration):
                    break
                except Exception as e:  # scapy's readers raise assorted errors on damaged blocks
                    self._warn(f"the capture is damaged after packet {self.report.packets}: {e}")
                    self.report.truncated_file = True
                    break
                data, meta = pkt
                self.report.packets += 1
                lt = getattr(meta, "linktype", None)
                ts = _timestamp_ns(meta, nano)
                ip = self._network(data, linktype if lt is None else lt)
                if ip is None:
                    self.report.not_tcp += 1
                    continue
                self._segment(ip, ts, getattr(meta, "wirelen", None), len(data))
                if out:
                    yield from out
                    out.clear()
            pos = _position(reader)
            if pos is not None and pos < size and not self.report.truncated_file:
                self.report.truncated_file = True
                self._warn(f"the capture ends early: only {pos:,} of its {size:,} bytes could be read (the file is "
                           f"truncated or damaged after packet {self.report.packets}); the rest is not imported")
        finally:
            log.removeHandler(caught)
            reader.close()
        for msg in caught.messages:
            if "truncated" in msg.lower():
                if not self.report.truncated_file:
                    self.report.truncated_file = True
                    self._warn(f"the capture ends inside packet {self.report.packets}: the file was cut short "
                               "(that packet is incomplete)")
            else:
                self._warn(f"scapy: {msg}")
        self._finish()
        yield from self._out
        self._out.clear()

    def _warn(self, text: str, conn_id: int | None = None, direction: Direction | None = None, ts: int = 0) -> None:
        self.report.warnings.append(text)
        self._out.append(Notice("warning", text, ts, conn_id, direction))

    # ----------------------------------------------------------------------------------------- layers

    def _network(self, data: bytes, linktype: int) -> bytes | None:
        """The IP packet inside a frame, or None when the frame is not IP."""
        if linktype == 1:  # Ethernet
            et = int.from_bytes(data[12:14], "big")
            off = 14
            while et in (_ETH_VLAN, _ETH_QINQ) and len(data) >= off + 4:
                et = int.from_bytes(data[off + 2:off + 4], "big")
                off += 4
            return data[off:] if et in (_ETH_IPV4, _ETH_IPV6) else None
        if linktype in (101, 12, 14, 228, 229):  # raw IP
            return data
        if linktype in (0, 108):  # BSD loopback: a 4-byte address family
            return data[4:] if len(data) > 4 and data[4] >> 4 in (4, 6) else None
        if linktype == 113:  # Linux cooked capture v1
            et = int.from_bytes(data[14:16], "big")
            return data[16:] if et in (_ETH_IPV4, _ETH_IPV6) else None
        if linktype == 276:  # Linux cooked capture v2
            et = int.from_bytes(data[0:2], "big")
            return data[20:] if et in (_ETH_IPV4, _ETH_IPV6) else None
        return _scapy_network(data, linktype)

    def _segment(self, ip: bytes, ts: int, wirelen: int | None, caplen: int) -> None:
        if len(ip) < 20:
            return
        version = ip[0] >> 4
        if version == 4:
            vihl, _tos, total, _id, frag, _ttl, proto, _sum, s, d = _IPV4.unpack_from(ip)
            if proto != 6:
                self.report.not_tcp += 1
                return
            if frag & 0x3FFF:
                self._warn(f"packet {self.report.packets}: an IP fragment; fragments are not reassembled", ts=ts)
                return
            ihl = (vihl & 0x0F) * 4
            end = total if total else len(ip)
            declared = end - ihl
            tcp = ip[ihl:end]
            src, dst = str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(d))
        elif version == 6 and len(ip) >= 40:
            plen = int.from_bytes(ip[4:6], "big")
            nh = ip[6]
            off = 40
            while nh in (0, 43, 60) and len(ip) >= off + 8:  # hop-by-hop, routing, destination options
                nh, off = ip[off], off + 8 + ip[off + 1] * 8
            if nh != 6:
                self.report.not_tcp += 1
                if nh == 44:
                    self._warn(f"packet {self.report.packets}: an IPv6 fragment; fragments are not reassembled",
                               ts=ts)
                return
            declared = 40 + plen - off
            tcp = ip[off:40 + plen]
            src = str(ipaddress.IPv6Address(ip[8:24]))
            dst = str(ipaddress.IPv6Address(ip[24:40]))
        else:
            self.report.not_tcp += 1
            return
        if len(tcp) < 20:
            return
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(tcp)
        hl = (doff >> 4) * 4
        payload = tcp[hl:]
        missing_tail = max(0, declared - hl - len(payload))  # cut by the snap length
        self.report.tcp_segments += 1
        self._tcp((src, sport), (dst, dport), seq, flags, payload, missing_tail, ts)

    # ----------------------------------------------------------------------------------------- connections

    def _tcp(self, a: tuple[str, int], b: tuple[str, int], seq: int, flags: int, payload: bytes, missing_tail: int,
             ts: int) -> None:
        key = (a, b) if a <= b else (b, a)
        c = self._conns.get(key)
        syn_only = flags & (_SYN | _ACK) == _SYN
        if c is not None and c.ended and syn_only:
            del self._conns[key]  # the ports were reused: a new connection
            c = None
        if c is None:
            if flags & _RST and not payload:
                return  # a reset for a connection we never saw
            c = self._new_conn(a, b, flags, ts)
            self._conns[key] = c
        if c.ended:
            return
        d = 0 if a == c.client else 1
        h = c.half[d]
        if flags & _SYN:
            h.base = (seq + 1) % _MOD
            if d == 1 and not c.synack:
                c.synack = True
                self._out.append(UpstreamConnected(c.cid, c.server, ts))
            return
        if h.base is None:  # no handshake seen for this direction: start where the capture starts
            h.base = seq
            if payload or flags & _FIN:
                self._warn(f"connection #{c.cid} {Direction(d).label}: the capture starts in the middle of the "
                           "stream (no SYN); bytes before it are not in the capture", c.cid, Direction(d), ts)
        rel = (seq - h.base) % _MOD
        if rel >= _HALF:
            rel -= _MOD  # before the start: an old retransmission
        if payload and not h.broken and not h.closed:
            self._data(c, d, rel, payload, ts)
        if missing_tail and not h.broken:
            self._warn(f"connection #{c.cid} {Direction(d).label}: a segment was cut by the capture's snap length "
                       f"({missing_tail} bytes not captured)", c.cid, Direction(d), ts)
        if flags & _FIN and h.fin_at is None:
            h.fin_at = rel + len(payload) + missing_tail
            self._maybe_fin(c, d, ts)
        if flags & _RST:
            self._end(c, CloseReason.CLIENT_RESET if d == 0 else CloseReason.SERVER_RESET, "reset (RST) in the capture",
                      ts)

    def _new_conn(self, a: tuple[str, int], b: tuple[str, int], flags: int, ts: int) -> _Conn:
        if flags & (_SYN | _ACK) == _SYN:
            client, server = a, b
        elif flags & (_SYN | _ACK) == _SYN | _ACK:
            client, server = b, a
        elif self.server_ports and (a[1] in self.server_ports) != (b[1] in self.server_ports):
            client, server = (b, a) if a[1] in self.server_ports else (a, b)
        else:
            client, server = (a, b) if a[1] > b[1] else (b, a)
        cid = self._next_conn
        self._next_conn += 1
        c = _Conn(cid, client, server, self.spec)
        self.report.connections += 1
        if self.first_target is None:
            self.first_target = server
        self._out.append(ConnectionOpened(cid, client, server, ts))
        if not flags & _SYN:
            guess = "" if self.server_ports and server[1] in self.server_ports else \
                " (guessed: the higher port is the client; --server-port says otherwise)"
            self._warn(f"connection #{cid}: no handshake in the capture; client {client[0]}:{client[1]}, server "
                       f"{server[0]}:{server[1]}{guess}", cid, None, ts)
            c.synack = True
            self._out.append(UpstreamConnected(cid, server, ts))
        return c

    def _data(self, c: _Conn, d: int, rel: int, payload: bytes, ts: int) -> None:
        h = c.half[d]
        end = rel + len(payload)
        if end <= h.off:
            self.report.retransmitted += 1
            return
        if rel > h.off:
            self.report.out_of_order += 1
            heapq.heappush(h.ooo, (rel, payload))
            h.ooo_bytes += len(payload)
            if h.ooo_bytes > OOO_CAP:
                self._gap(c, d, ts)
            return
        if rel < h.off:
            self.report.retransmitted += 1
            payload = payload[h.off - rel:]
        chunk = [payload]
        h.off += len(payload)
        ooo = h.ooo
        while ooo and ooo[0][0] <= h.off:
            r, p = heapq.heappop(ooo)
            h.ooo_bytes -= len(p)
            if r + len(p) <= h.off:
                self.report.retransmitted += 1
                continue
            p = p[h.off - r:]
            chunk.append(p)
            h.off += len(p)
        self._deliver(c, d, chunk[0] if len(chunk) == 1 else b"".join(chunk), ts)
        self._maybe_fin(c, d, ts)

    def _deliver(self, c: _Conn, d: int, data: bytes, ts: int) -> None:
        self._emit(c, d, c.half[d].framer.feed(data), ts)

    def _emit(self, c: _Conn, d: int, frames: list[bytes], ts: int) -> None:
        if not frames:
            return
        h = c.half[d]
        direction = Direction(d)
        out = self._out
        for f in frames:
            out.append(Message(self._next_msg, c.cid, direction, h.seq, f, ts, ts, Origin.LIVE,
                               MessageState.FORWARDED))
            self._next_msg += 1
            h.seq += 1
            h.msgs += 1
            h.nbytes += len(f)
            self.report.messages += 1
            self.report.bytes[d] += len(f)

    def _maybe_fin(self, c: _Conn, d: int, ts: int) -> None:
        h = c.half[d]
        if h.fin_at is None or h.closed or h.off < h.fin_at:
            return
        self._close_half(c, d, ts)
        self._out.append(HalfClosed(c.cid, Side(d), ts))
        if c.half[1 - d].closed:
            self._end(c, CloseReason.CLOSED, "", ts)

    def _close_half(self, c: _Conn, d: int, ts: int) -> None:
        h = c.half[d]
        if h.closed:
            return
        h.closed = True
        if not h.broken:
            self._emit(c, d, [rest] if (rest := h.framer.flush()) else [], ts)
        if h.framer.fallback is not None:
            self._warn(f"connection #{c.cid} {Direction(d).label}: {h.framer.fallback}", c.cid, Direction(d), ts)

    def _gap(self, c: _Conn, d: int, ts: int) -> None:
        """Declare the hole before the buffered out-of-order bytes (or before the FIN) a gap."""
        h = c.half[d]
        if h.broken:
            return
        if h.ooo:
            first = min(r for r, _ in h.ooo)
            missing: int | None = first - h.off
        elif h.fin_at is not None and h.fin_at > h.off:
            missing = h.fin_at - h.off
        else:
            return
        gap = Gap(c.cid, Direction(d), h.off, missing, h.ooo_bytes)
        h.broken = True
        h.ooo.clear()
        h.ooo_bytes = 0
        self.report.gaps.append(gap)
        self._out.append(Notice("warning", str(gap), ts, c.cid, Direction(d)))

    def _end(self, c: _Conn, reason: CloseReason, detail: str, ts: int) -> None:
        if c.ended:
            return
        for d in (0, 1):
            self._gap(c, d, ts)
            self._close_half(c, d, ts)
        c.ended = True
        h0, h1 = c.half
        self._out.append(ConnectionClosed(c.cid, reason, detail, ts, h0.nbytes, h1.nbytes, h0.msgs, h1.msgs))

    def _finish(self) -> None:
        for c in list(self._conns.values()):
            if c.ended:
                continue
            for d in (0, 1):
                self._gap(c, d, 0)
            still = [Direction(d).label for d in (0, 1) if not c.half[d].closed]
            for d in (0, 1):
                if not c.half[d].closed and not c.half[d].broken:
                    self._emit(c, d, [rest] if (rest := c.half[d].framer.flush()) else [], 0)
            self._out.append(Notice("info", f"connection #{c.cid} was still open when the capture ended "
                                            f"({', '.join(still)} not closed)", 0, c.cid))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _timestamp_ns(meta: Any, nano: bool) -> int:
    if hasattr(meta, "tshigh"):
        resol = int(meta.tsresol) or 1_000_000
        ts = (int(meta.tshigh) << 32) | int(meta.tslow)
        return ts * 1_000_000_000 // resol
    sec, frac = int(meta.sec), int(meta.usec)
    return sec * 1_000_000_000 + (frac if nano else frac * 1000)


def _position(reader: Any) -> int | None:
    f = getattr(reader, "f", None)
    try:
        return int(f.tell()) if f is not None else None
    except (OSError, ValueError):
        return None


def _scapy_network(data: bytes, linktype: int) -> bytes | None:
    """Dissect a frame of an unusual link type with scapy and return its IP packet's bytes."""
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    cls = conf.l2types.num2layer.get(linktype)
    if cls is None:
        return None
    try:
        pkt = cls(data)
    except Exception:
        return None
    for layer in (IP, IPv6):
        if pkt.haslayer(layer):
            return bytes(pkt[layer])
    return None


def import_capture(path: str | os.PathLike[str], *, framing: str = "raw",
                   server_ports: Iterable[int] = ()) -> tuple[list[Record], ImportReport]:
    """Import a whole capture into memory (small captures and tests); see :class:`CaptureImporter`."""
    imp = CaptureImporter(path, framing=framing, server_ports=server_ports)
    records = list(imp.records())
    return records, imp.report


def client_messages(records: Iterable[Record], conn_id: int) -> list[bytes]:
    """The client side of connection ``conn_id`` as the server received it (edited included, dropped excluded),
    for ``ProxyServer.replay(conn_id, messages=...)``. Works on imported captures and on recorded sessions."""
    from inspector.interop.fold import MessageFolder

    folder = MessageFolder()
    out: list[bytes] = []
    for r in records:
        if r.conn_id != conn_id if isinstance(r, Message | MessageUpdated) else True:
            continue
        f = folder.message(r) if isinstance(r, Message) else folder.update(r)  # type: ignore[arg-type]
        if f is not None and f.message.direction is Direction.C2S and f.message.state is MessageState.FORWARDED:
            out.append(f.message.data)
    return out

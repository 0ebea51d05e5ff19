"""Export a capture to pcapng as synthetic Ethernet/IPv4 (or IPv6)/TCP and UDP frames that Wireshark can follow.

Role: each sockscope connection becomes ONE synthetic TCP stream ``client_addr <-> target_addr`` (in reality the
proxy holds two TCP connections; the export shows what each end received):

- c2s carries the bytes as the server received them (edited and injected messages included, dropped ones
  excluded), s2c the bytes as the client received them, each message at its release time (the
  ``MessageUpdated(FORWARDED)`` time for delayed or held messages);
- a three-way handshake at the connection's opening, consistent sequence and acknowledgement numbers
  (deterministic ISNs), FIN or RST as the connection ended, messages larger than the MSS split into segments
  (IPv4 total length stays under 65,535, so Wireshark reassembles them);
- a packet comment on each message's first segment: message id, direction and seq, arrival time, the added
  delay and its reasons, origin, held/edited. ``tshark -r out.pcapng -qz follow,tcp,raw,N`` gives back exactly
  the bytes each side received (``stream_of`` maps connection ids to Wireshark's stream numbers).

A UDP flow (``ConnectionOpened.transport == "udp"``) becomes one UDP packet per delivered datagram, client port <->
server port, at its release time: c2s as the server received them, s2c as the client received them (dropped
datagrams are not in the file; duplicates are, once per copy delivered; a corrupted one carries the bytes as
forwarded). No handshake or close: the first datagram's comment names the flow and the last says how it ended.
``udp_stream_of`` maps flow ids to Wireshark's ``udp.stream`` numbers.

Formats: scapy writes the file (``scapy.utils.RawPcapNgWriter``: section and interface blocks, enhanced packet
blocks with comments), imported lazily. Building every frame with scapy costs about 450 µs a packet (about
2,000 messages/s), so the default ``engine="fast"`` packs the fixed 54-byte header layout with ``struct`` and
computes the checksums (RFC 1071) itself; ``engine="scapy"`` builds every frame with scapy's layers instead
and is the reference the tests compare the fast path against, byte for byte.

Must not import: PySide6, ``inspector.ui``; scapy only inside functions (start-up time).
Thread: any; one exporter belongs to the thread that feeds it.
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import struct
import sys
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from proxy.model import (
    Clock,
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Origin,
    Record,
    Side,
    UpstreamConnected,
)

from .fold import Final_, MessageFolder

__all__ = ["DEFAULT_MSS", "ExportStats", "PcapngExporter", "export_records"]

DEFAULT_MSS: Final = 65_000
"""Largest TCP payload per frame: IPv4's 65,535-byte total length minus headers, rounded down."""
MAX_MSS: Final = 65_495

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
WINDOW: Final = 65_535
TTL: Final = 64

_OPEN, _DATA, _FIN, _RST = 0, 1, 2, 3
_ETH4: Final = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")  # Ethernet + IPv4 + TCP, 54 bytes
_ETH6: Final = struct.Struct("!6s6sHIHBB16s16sHHIIBBHHH")  # Ethernet + IPv6 + TCP, 74 bytes
_UDP4: Final = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")  # Ethernet + IPv4 + UDP, 42 bytes
_UDP6: Final = struct.Struct("!6s6sHIHBB16s16sHHHH")  # Ethernet + IPv6 + UDP, 62 bytes
MAX_UDP_PAYLOAD: Final = (65_507, 65_527)
"""The largest UDP payload over IPv4 (65,535 - 20 - 8) and over IPv6 (65,535 - 8): a longer message (none comes from
the UDP relay) is not exported and counted in ``ExportStats.too_long``."""
_LITTLE: Final = sys.byteorder == "little"
_MAX_WALL_NS: Final = (1 << 63) - 1
_SYNTH_NET: Final = int(ipaddress.IPv4Address("198.18.0.0"))  # RFC 2544 benchmarking range
_RESET_BY_CLIENT: Final = frozenset({CloseReason.CLIENT_RESET})
_RESETS: Final = frozenset({CloseReason.CLIENT_RESET, CloseReason.SERVER_RESET, CloseReason.UPSTREAM_REFUSED,
                            CloseReason.UPSTREAM_TIMEOUT, CloseReason.UPSTREAM_ERROR, CloseReason.PROXY_RESET,
                            CloseReason.ERROR})


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(data: bytes) -> int:
    """The RFC 1071 one's-complement sum of ``data`` as big-endian 16-bit words, folded to 16 bits."""
    if len(data) & 1:
        data += b"\0"
    s = _fold(sum(array("H", data)))  # native-order words: summed in C, then swapped once
    return ((s & 0xFF) << 8 | s >> 8) if _LITTLE else s


def _words(b: bytes) -> int:
    return sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))


@dataclass(slots=True)
class ExportStats:
    packets: int = 0
    messages: int = 0
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    """Payload bytes written per ``Direction``."""
    connections: int = 0
    not_delivered: int = 0
    """Messages that never reached their peer (dropped, discarded, still held): not in the stream."""
    after_close: int = 0
    """Messages released after their connection had ended in the export (should be 0)."""
    flows: int = 0
    """UDP flows in the file (``connections`` counts TCP streams)."""
    too_long: int = 0
    """Datagram messages longer than a UDP packet can carry (see ``MAX_UDP_PAYLOAD``): not in the file."""


class _Conn:
    __slots__ = ("addr", "cid", "ended", "fin", "isn", "last", "mac", "note", "nxt", "opened", "partial", "port",
                 "replay_of", "udp", "v6", "what")

    def __init__(self, cid: int, client: tuple[str, int], target: tuple[str, int], replay_of: int | None,
                 synth: dict[str, bytes], udp: bool = False) -> None:
        self.cid = cid
        self.udp = udp
        self.note: str | None = None
        """A UDP flow's opening comment, put on its first datagram (a flow has no packet of its own)."""
        self.replay_of = replay_of
        self.what = (client, target)
        a, b = _ip(client[0], synth), _ip(target[0], synth)
        if len(a) != len(b):  # one IPv4, one IPv6: show both as IPv6 (v4-mapped)
            a, b = (_v4_mapped(a), _v4_mapped(b))
        self.v6 = len(a) == 16
        self.addr = (a, b)
        self.port = (client[1] or 49152 + cid % 16384, target[1] or 1 + cid % 1000)
        self.mac = (b"\x02\x00" + a[-4:], b"\x02\x01" + b[-4:])
        self.isn = ((cid * 0x9E3779B1 + 0x1000) & 0xFFFFFFFF, (cid * 0x85EBCA77 + 0x2000) & 0xFFFFFFFF)
        self.nxt = [self.isn[0], self.isn[1]]
        self.fin = [False, False]
        self.ended = False
        self.opened = False
        self.last = [0, 0]
        # Checksum partial sums that do not change per packet: addresses, protocol, ports, data offset, window.
        parts = []
        for d in (0, 1):
            src, dst = self.addr[d], self.addr[1 - d]
            sp, dp = self.port[d], self.port[1 - d]
            parts.append(_words(src) + _words(dst) + sp + dp + (17 if udp else 6 + WINDOW))
        self.partial = (parts[0], parts[1])


def _ip(host: str, synth: dict[str, bytes]) -> bytes:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).packed
    except ValueError:  # "replay", "?" or a name: a stable made-up address, named in the SYN's comment
        got = synth.get(host)
        if got is None:
            got = synth[host] = (_SYNTH_NET + 1 + len(synth)).to_bytes(4, "big")
        return got


def _v4_mapped(a: bytes) -> bytes:
    return a if len(a) == 16 else b"\0" * 10 + b"\xff\xff" + a


class PcapngExporter:
    """``add`` records (a session's, or :func:`~inspector.interop.session_io.store_records`), then ``close``."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None, mss: int = DEFAULT_MSS,
                 engine: str = "fast", comments: bool = True) -> None:
        if not 1 <= mss <= MAX_MSS:
            raise ValueError(f"mss must be 1..{MAX_MSS}, got {mss}")
        if engine not in ("fast", "scapy"):
            raise ValueError(f"engine must be 'fast' or 'scapy', got {engine!r}")
        from scapy.utils import RawPcapNgWriter

        self.path = os.fspath(path)
        self.clock = clock or Clock(0, 0)
        self.mss = mss
        self.engine = engine
        self.comments = comments
        self.stats = ExportStats()
        self.stream_of: dict[int, int] = {}
        """Connection id -> Wireshark's ``tcp.stream`` number in the exported file."""
        self.udp_stream_of: dict[int, int] = {}
        """UDP flow id -> Wireshark's ``udp.stream`` number in the exported file."""
        self._folder = MessageFolder()
        self._conns: dict[int, _Conn] = {}
        self._synth: dict[str, bytes] = {}
        self._heap: list[tuple[int, int, int, _Conn, int, bytes, str | None]] = []
        self._n = 0
        self._wm = -(1 << 63)
        self._clock_cache: tuple[int, str] = (-1, "")
        self._w: Any = RawPcapNgWriter(self.path)
        self._w.linktype = 1  # DLT_EN10MB: Ethernet
        self._w.write_header(None)
        self._closed = False

    # ----------------------------------------------------------------------------------------- input

    def add_many(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    def add(self, r: Record) -> None:
        t: int
        if isinstance(r, Message):
            t = r.arrival_ns
            f = self._folder.message(r)
            if f is not None:
                self._final(f)
        elif isinstance(r, MessageUpdated):
            t = r.time_ns
            f = self._folder.update(r)
            if f is not None:
                self._final(f)
        elif isinstance(r, ConnectionOpened):
            t = r.time_ns
            self._open(r.conn_id, r.client_addr, r.target_addr, t, r.replay_of, r.transport == "udp")
        elif isinstance(r, UpstreamConnected):
            t = r.time_ns
            c = self._conns.get(r.conn_id)
            if c is not None and not c.opened and c.what[1][0] == "?":
                self._conns[r.conn_id] = _Conn(r.conn_id, c.what[0], r.server_addr, c.replay_of, self._synth, c.udp)
        elif isinstance(r, HalfClosed):
            t = r.time_ns
            c = self._conn(r.conn_id, t)
            d = 0 if r.side is Side.CLIENT else 1
            self._push(max(t, c.last[d]), _FIN, c, d, b"", f"#{c.cid}: the {r.side.name.lower()} closed its "
                                                               "side (FIN)")
        elif isinstance(r, ConnectionClosed):
            t = r.time_ns
            self._close(r)
        else:
            return
        if t > self._wm:
            self._wm = t
            self._release(t)

    def _conn(self, cid: int, t: int) -> _Conn:
        c = self._conns.get(cid)
        if c is None:  # opened before the recording started
            c = self._open(cid, ("?", 0), ("?", 0), t, None)
        return c

    def _open(self, cid: int, client: tuple[str, int], target: tuple[str, int], t: int,
              replay_of: int | None, udp: bool = False) -> _Conn:
        c = self._conns[cid] = _Conn(cid, client, target, replay_of, self._synth, udp)
        c.last = [t, t]
        what = "flow" if udp else "connection"
        text = (f"sockscope {what} #{cid}: client {client[0]}:{client[1]} ↔ server {target[0]}:{target[1]}"
                + (f" (replay of #{replay_of})" if replay_of is not None else ""))
        if udp:
            text += (". UDP: c2s holds the datagrams as the server received them, s2c as the client received them "
                     "(dropped ones are not here).")
        else:
            text += (". One synthetic TCP stream: c2s holds the bytes as the server received them, s2c as the "
                     "client received them.")
        self._push(t, _OPEN, c, 0, b"", text)
        return c

    def _final(self, f: Final_) -> None:
        m = f.message
        if m.state is not MessageState.FORWARDED:
            self.stats.not_delivered += 1
            return
        c = self._conn(m.conn_id, m.arrival_ns)
        d = int(m.direction)
        t = m.release_ns if m.release_ns is not None else m.arrival_ns
        if t < c.last[d]:
            t = c.last[d]
        c.last[d] = t
        self._push(t, _DATA, c, d, m.data, self._comment(f) if self.comments else None)

    def _close(self, r: ConnectionClosed) -> None:
        c = self._conn(r.conn_id, r.time_ns)
        t = max(r.time_ns, c.last[0], c.last[1])
        c.last = [t, t]
        text = f"#{c.cid} ended: {r.reason.value}" + (f" ({r.detail})" if r.detail else "")
        if c.udp:
            self._push(t, _FIN, c, 0, b"", text)
        elif r.reason in _RESETS:
            self._push(t, _RST, c, 0 if r.reason in _RESET_BY_CLIENT else 1, b"", text)
        else:
            self._push(t, _FIN, c, 0, b"", text)
            self._push(t, _FIN, c, 1, b"", text)

    def _push(self, t: int, kind: int, c: _Conn, d: int, data: bytes, comment: str | None) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, kind, c, d, data, comment))

    def _release(self, upto: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= upto:
            self._emit(*heapq.heappop(heap))

    # ----------------------------------------------------------------------------------------- comments

    def _wall_ns(self, mono_ns: int) -> int:
        """Wall-clock time for the file: a session's times and anchor are each within 0..2^63-1 ns, but their
        sum can still fall before 1970, which pcapng (unsigned) and some platforms' clocks cannot show."""
        return min(max(0, self.clock.to_wall_ns(mono_ns)), _MAX_WALL_NS)

    def _clock_text(self, mono_ns: int) -> str:
        wall = self._wall_ns(mono_ns)
        sec, ns = divmod(wall, 1_000_000_000)
        cached_sec, text = self._clock_cache
        if sec != cached_sec:
            text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
            self._clock_cache = (sec, text)
        return f"{text}.{ns // 1000:06d}"

    def _comment(self, f: Final_) -> str:
        m = f.message
        parts = [f"sockscope #{m.id} {m.direction.label} seq {m.seq}", f"arrived {self._clock_text(m.arrival_ns)}"]
        delay = (m.release_ns - m.arrival_ns) if m.release_ns is not None else 0
        if delay > 0:
            why = ", ".join(f"{r.value} {ns / 1e6:.3f} ms" for r, ns in m.delays if ns)
            parts.append(f"released {delay / 1e6:.3f} ms later" + (f" ({why})" if why else ""))
        else:
            parts.append("released at once")
        if m.origin is not Origin.LIVE:
            parts.append(f"origin {m.origin.value}")
        if f.held or any(r is DelayReason.HOLD for r, _ in m.delays):
            parts.append("held for the user")
        if f.original is not None:
            parts.append(f"edited ({len(f.original)} bytes captured, {len(m.data)} sent)")
        return " · ".join(parts)

    # ----------------------------------------------------------------------------------------- packets

    def _emit(self, t: int, _n: int, kind: int, c: _Conn, d: int, data: bytes, comment: str | None) -> None:
        if c.udp:
            self._emit_udp(t, kind, c, d, data, comment)
            return
        if kind == _OPEN:
            if c.opened:
                return
            c.opened = True
            self.stream_of[c.cid] = len(self.stream_of)
            self.stats.connections += 1
            ic, is_ = c.isn
            self._packet(t, c, 0, ic, 0, SYN, b"", comment)
            self._packet(t, c, 1, is_, (ic + 1) & 0xFFFFFFFF, SYN | ACK, b"", None)
            c.nxt = [(ic + 1) & 0xFFFFFFFF, (is_ + 1) & 0xFFFFFFFF]
            self._packet(t, c, 0, c.nxt[0], c.nxt[1], ACK, b"", None)
            return
        if not c.opened:
            self._emit(t, 0, _OPEN, c, 0, b"", None)
        nxt = c.nxt
        if kind == _DATA:
            if c.ended or c.fin[d]:
                self.stats.after_close += 1
                return
            self.stats.messages += 1
            self.stats.bytes[d] += len(data)
            mss = self.mss
            n = len(data)
            if n <= mss:
                self._packet(t, c, d, nxt[d], nxt[1 - d], PSH | ACK, data, comment)
                nxt[d] = (nxt[d] + n) & 0xFFFFFFFF
                return
            view = memoryview(data)
            count = (n + mss - 1) // mss
            for i, off in enumerate(range(0, n, mss)):
                seg = bytes(view[off:off + mss])
                note = None
                if comment is not None:
                    note = f"{comment} · segment 1 of {count}" if i == 0 else None
                self._packet(t, c, d, nxt[d], nxt[1 - d], (PSH | ACK) if i == count - 1 else ACK, seg, note)
                nxt[d] = (nxt[d] + len(seg)) & 0xFFFFFFFF
        elif kind == _FIN:
            if c.ended or c.fin[d]:
                return
            c.fin[d] = True
            self._packet(t, c, d, nxt[d], nxt[1 - d], FIN | ACK, b"", comment)
            nxt[d] = (nxt[d] + 1) & 0xFFFFFFFF
            self._packet(t, c, 1 - d, nxt[1 - d], nxt[d], ACK, b"", None)
        elif kind == _RST:
            if c.ended:
                return
            c.ended = True
            self._packet(t, c, d, nxt[d], nxt[1 - d], RST | ACK, b"", comment)

    def _emit_udp(self, t: int, kind: int, c: _Conn, d: int, data: bytes, comment: str | None) -> None:
        """A flow's events: its opening and end are comments (on its first datagram, and on a last empty-bodied
        note kept for the end), each delivered datagram one packet."""
        if kind == _OPEN:
            if not c.opened:
                c.opened = True
                c.note = comment
                self.udp_stream_of[c.cid] = len(self.udp_stream_of)
                self.stats.flows += 1
            return
        if kind != _DATA:  # the flow ended: said on the next packet of the flow, if any (UDP has no close)
            c.ended = True
            return
        if not c.opened:
            self._emit_udp(t, _OPEN, c, 0, b"", None)
        if len(data) > MAX_UDP_PAYLOAD[c.v6]:
            self.stats.too_long += 1
            return
        self.stats.messages += 1
        self.stats.bytes[d] += len(data)
        if c.note is not None:
            comment = c.note if comment is None else f"{c.note} · {comment}"
            c.note = None
        frame = self._udp_fast(c, d, data) if self.engine == "fast" else self._udp_scapy(c, d, data)
        self._write(t, frame, comment)

    def _packet(self, t: int, c: _Conn, d: int, seq: int, ack: int, flags: int, payload: bytes,
                comment: str | None) -> None:
        frame = self._frame_fast(c, d, seq, ack, flags, payload) if self.engine == "fast" else \
            self._frame_scapy(c, d, seq, ack, flags, payload)
        self._write(t, frame, comment)

    def _write(self, t: int, frame: bytes, comment: str | None) -> None:
        wall = self._wall_ns(t)
        if comment is not None:
            frame = _Commented(frame)
            frame.comments = [comment.encode("utf-8")]
        self._w.write_packet(frame, sec=wall / 1e9)
        self.stats.packets += 1

    @staticmethod
    def _frame_fast(c: _Conn, d: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
        tcp_len = 20 + len(payload)
        src, dst = c.addr[d], c.addr[1 - d]
        s = (c.partial[d] + tcp_len + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
             + (0x5000 | flags))
        if payload:
            s += _sum16(payload)
        tcp_sum = ~_fold(s) & 0xFFFF
        sp, dp = c.port[d], c.port[1 - d]
        if not c.v6:
            total = 20 + tcp_len
            ip_sum = ~_fold(0x4500 + total + 0x4000 + (TTL << 8 | 6) + _words(src) + _words(dst)) & 0xFFFF
            hdr = _ETH4.pack(c.mac[1 - d], c.mac[d], 0x0800, 0x45, 0, total, 0, 0x4000, TTL, 6, ip_sum, src, dst,
                             sp, dp, seq, ack, 0x50, flags, WINDOW, tcp_sum, 0)
        else:
            hdr = _ETH6.pack(c.mac[1 - d], c.mac[d], 0x86DD, 0x60000000, tcp_len, 6, TTL, src, dst,
                             sp, dp, seq, ack, 0x50, flags, WINDOW, tcp_sum, 0)
        return hdr + payload if payload else hdr

    @staticmethod
    def _frame_scapy(c: _Conn, d: int, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
        from scapy.layers.inet import TCP

        return _scapy_frame(c, d, TCP(sport=c.port[d], dport=c.port[1 - d], seq=seq, ack=ack, flags=flags,
                                      window=WINDOW, urgptr=0), payload)

    @staticmethod
    def _udp_fast(c: _Conn, d: int, payload: bytes) -> bytes:
        udp_len = 8 + len(payload)
        src, dst = c.addr[d], c.addr[1 - d]
        s = c.partial[d] + udp_len + udp_len  # the pseudo-header's length, then the UDP header's
        if payload:
            s += _sum16(payload)
        udp_sum = ~_fold(s) & 0xFFFF or 0xFFFF  # RFC 768: a computed 0 is sent as all ones
        sp, dp = c.port[d], c.port[1 - d]
        if not c.v6:
            total = 20 + udp_len
            ip_sum = ~_fold(0x4500 + total + 0x4000 + (TTL << 8 | 17) + _words(src) + _words(dst)) & 0xFFFF
            hdr = _UDP4.pack(c.mac[1 - d], c.mac[d], 0x0800, 0x45, 0, total, 0, 0x4000, TTL, 17, ip_sum, src, dst,
                             sp, dp, udp_len, udp_sum)
        else:
            hdr = _UDP6.pack(c.mac[1 - d], c.mac[d], 0x86DD, 0x60000000, udp_len, 17, TTL, src, dst,
                             sp, dp, udp_len, udp_sum)
        return hdr + payload if payload else hdr

    @staticmethod
    def _udp_scapy(c: _Conn, d: int, payload: bytes) -> bytes:
        from scapy.layers.inet import UDP

        return _scapy_frame(c, d, UDP(sport=c.port[d], dport=c.port[1 - d]), payload)

    # ----------------------------------------------------------------------------------------- end

    def close(self) -> ExportStats:
        """Write everything still queued (messages held or scheduled at the end are not delivered) and close."""
        if self._closed:
            return self.stats
        self._closed = True
        try:
            self.stats.not_delivered += sum(1 for _ in self._folder.drain())
            self._release(1 << 63)
        finally:
            self._w.close()
        return self.stats

    def __enter__(self) -> PcapngExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scapy_frame(c: _Conn, d: int, transport: Any, payload: bytes) -> bytes:
    """Ethernet / IPv4 or IPv6 / ``transport`` / ``payload`` built by scapy: the reference the fast frames are
    tested against, byte for byte."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def mac(b: bytes) -> str:
        return ":".join(f"{x:02x}" for x in b)

    src, dst = c.addr[d], c.addr[1 - d]
    if c.v6:
        ip: Any = IPv6(src=str(ipaddress.IPv6Address(src)), dst=str(ipaddress.IPv6Address(dst)), hlim=TTL, tc=0, fl=0)
    else:
        ip = IP(src=str(ipaddress.IPv4Address(src)), dst=str(ipaddress.IPv4Address(dst)), id=0, flags="DF", ttl=TTL,
                tos=0)
    pkt = Ether(src=mac(c.mac[d]), dst=mac(c.mac[1 - d])) / ip / transport
    if payload:
        pkt = pkt / Raw(payload)
    return bytes(pkt)


class _Commented(bytes):
    """Frame bytes carrying pcapng packet comments (scapy's writer reads a packet's ``comments``)."""

    comments: list[bytes]


def export_records(records: Iterable[Record], path: str | os.PathLike[str], *, clock: Clock | None = None,
                   mss: int = DEFAULT_MSS, engine: str = "fast") -> PcapngExporter:
    """Export ``records`` to ``path``; returns the closed exporter (``stats``, ``stream_of``)."""
    ex = PcapngExporter(path, clock=clock, mss=mss, engine=engine)
    try:
        ex.add_many(records)
    finally:
        ex.close()
    return ex


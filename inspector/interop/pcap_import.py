"""Import a pcap or pcapng capture: reassemble each TCP connection and frame it into sockscope records; each UDP
flow's datagrams become its messages.

Role: read the capture (classic pcap in either byte order and time resolution, gzip-compressed or not, and
pcapng), find the IPv4/IPv6 TCP segments, reassemble each direction of each connection and cut the byte streams
into messages with ``proxy.framing`` (the framing the user chose), producing the records a live capture would
have (``ConnectionOpened``, ``UpstreamConnected``, ``Message``, ``HalfClosed``, ``ConnectionClosed``,
``Notice``). The result can be written as a session (``sockscope import``), decoded, filtered and used for
session replay (:func:`client_messages`).

Reassembly is exact or it says so: segments are placed by sequence number (unwrapped against the bytes already
delivered, so streams longer than 4 GiB and numbers that wrap are placed right), so out-of-order segments wait
for the hole before them, and retransmissions and overlaps are trimmed to the bytes not yet delivered (the first
copy wins). A hole that is never filled (a missing segment, or a packet cut short by the capture's snap length)
is reported in :attr:`ImportReport.gaps` and as a ``Notice`` in the session; the bytes after it are NOT
imported (never guessed or zero-filled), because a framer cannot know where messages resume. Out-of-order bytes
waiting for a hole are capped (:data:`OOO_CAP`), and a segment gigabytes ahead costs only its own bytes.

UDP: the datagrams between two addresses are one flow (``ConnectionOpened`` with ``transport="udp"``), its client
the address that sent first (or the one not on a ``server_ports`` port), each datagram one message, byte for byte:
datagrams are never framed or joined, whatever framing the TCP streams get. A datagram the capture's snap length
cut short is skipped with a warning (never imported partly). Flows end with the capture (UDP has no close).

Hostile or damaged files. The file is read by :class:`_Reader` here, not by a library: every length field is
checked against the bytes the file still holds before anything is read or allocated, so memory follows the
file's real size, never what a header claims. What can go wrong, and what happens:

- not a capture at all, or a file header that cannot be read: :class:`CaptureError` (one line, names the file);
- damage further in (a block length that lies, a packet longer than any packet, a timestamp past the year 2262
  or before 1970, an interface the file never described, an option running out of its block): reading stops
  there; every record before it is produced, and :attr:`ImportReport.damage` holds one line naming the file,
  the packet, the byte offset and what is wrong (also an ``error`` ``Notice`` in the records);
- a file that ends inside a packet (a copy of a capture still being written): not an error; what came before
  is imported and a warning says where the file ends (:attr:`ImportReport.truncated_file`);
- a packet whose IP or TCP header lengths are impossible: that packet is skipped with a warning (the file is
  fine; the traffic in it is odd), and its bytes, if the stream needed them, become a reported gap.

Speed: the reader and the Ethernet (with VLAN tags), Linux cooked (v1, v2), BSD loopback and raw-IP link layers
are plain ``struct`` (a few µs a packet). Frames of any other link type are dissected by scapy, down to the IP
layer only (slow, but correct).

Must not import: PySide6, ``inspector.ui``; scapy only inside functions (start-up time).
Thread: any; an importer belongs to the thread that iterates it.
"""

from __future__ import annotations

import gzip
import heapq
import ipaddress
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final

import proxy.inference  # noqa: F401  (registers the ``auto`` framing a capture may be imported with)
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
from proxy.session import shown_path

__all__ = ["CaptureError", "CaptureImporter", "Gap", "ImportReport", "client_messages", "import_capture"]

OOO_CAP: Final = 64 << 20
"""Out-of-order bytes buffered per direction waiting for a hole; past it the hole is declared a gap."""
MAX_PACKET: Final = 16 << 20
"""A packet claiming more captured bytes is damage: real frames stay under 256 KiB (Wireshark's own limit)."""
MAX_BLOCK: Final = MAX_PACKET + (64 << 10)
"""Likewise for a pcapng block: one packet plus generous room for options and comments."""
MAX_NS: Final = (1 << 63) - 1
"""Timestamps are signed 64-bit nanoseconds everywhere (records, sessions, exports): up to the year 2262."""
_READ_STEP: Final = 1 << 20
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_TCP: Final = struct.Struct("!HHIIBB")
_UDP: Final = struct.Struct("!HHH")
_TCP_UDP: Final = (6, 17)
_MOD: Final = 1 << 32
_HALF: Final = 1 << 31
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN, _ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
_PCAP_MAGICS: Final[dict[bytes, tuple[str, int]]] = {  # magic -> (byte order, nanoseconds per fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}
_SHB: Final = 0x0A0D0D0A
_BOM: Final = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}


class CaptureError(Exception):
    """The file cannot be imported at all (missing, not a capture, unreadable header); one line naming the file."""


class _Damage(Exception):
    """The file is wrong from here on: stop, keep what came before."""


class _Cut(Exception):
    """The file ends early (inside a packet or block): stop, keep what came before; not an error."""


@dataclass(slots=True)
class _Iface:
    """A pcapng interface: its link type and how its timestamps convert to nanoseconds."""

    linktype: int
    snaplen: int
    unit: str = "1 µs"
    mul: int = 1000
    div: int = 1
    shift: int = 0
    offset_ns: int = 0

    def ns(self, raw: int) -> int:
        t = raw * self.mul
        if self.shift:
            t >>= self.shift
        if self.div != 1:
            t //= self.div
        return t + self.offset_ns


class _Reader:
    """Streams ``(frame, time_ns, linktype)`` from a pcap or pcapng file.

    Every length is checked against what the file still holds (or read in 1 MiB steps when the size is unknown,
    as inside gzip), so a length field can never make it allocate more than the file's real size. Stops at the
    first damage (``damage``) or at a cut (``cut``), both one line; raises :class:`CaptureError` from
    :meth:`open` when the file header is not one it can read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.shown = shown_path(path)
        self.f: IO[bytes] | gzip.GzipFile | None = None
        self.raw: IO[bytes] | None = None
        self.size: int | None = None
        """Bytes in the file, None when unknown (gzip)."""
        self.pos = 0
        self.packets = 0
        self.damage: str | None = None
        self.cut: str | None = None
        self.pcapng = False
        self._endian = "<"
        self._frac_ns = 1000
        self._linktype = 1
        self._ifaces: list[_Iface] = []
        self._last_ns = 0

    # ------------------------------------------------------------------------------------------ low level

    def _read(self, n: int) -> bytes:
        """Up to ``n`` bytes; never asks for more than the file holds, so memory follows the file."""
        assert self.f is not None
        if self.size is not None:
            n = min(n, self.size - self.pos)
        if n <= _READ_STEP:
            b = self.f.read(n)
        else:
            parts: list[bytes] = []
            got = 0
            while got < n:
                chunk = self.f.read(min(_READ_STEP, n - got))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            b = b"".join(parts)
        self.pos += len(b)
        return b

    def close(self) -> None:
        for f in (self.f, self.raw):
            if f is not None:
                f.close()

    def open(self) -> None:
        try:
            self.raw = open(self.path, "rb")
        except OSError as e:
            raise CaptureError(f"{self.shown}: cannot open: {e.strerror or e}") from None
        try:
            self.size = os.fstat(self.raw.fileno()).st_size
            if self.size == 0:
                raise CaptureError(f"{self.shown}: the file is empty")
            self.f = self.raw
            if self.raw.read(2) == b"\x1f\x8b":
                self.f = gzip.GzipFile(fileobj=self.raw, mode="rb")
                self.size = None
            self.raw.seek(0)
            start = self._read(4)
            if start in _PCAP_MAGICS:
                self._pcap_header(start)
            elif start == struct.pack("<I", _SHB):
                self.pcapng = True
                self._section(0, start + self._read(4))
            else:
                raise CaptureError(f"{self.shown}: not a pcap or pcapng capture (it starts with {start!r})")
        except CaptureError:
            self.close()
            raise
        except _Damage as e:
            self.close()
            raise CaptureError(f"{self.shown}: not a pcap or pcapng capture: {e}") from None
        except _Cut as e:
            self.close()
            raise CaptureError(f"{self.shown}: {e}") from None
        except (OSError, EOFError, zlib.error) as e:
            self.close()
            raise CaptureError(f"{self.shown}: cannot read the capture header: {_oneline(e)}") from None

    def packets_(self) -> Iterator[tuple[bytes, int, int]]:
        """Every packet until the end, the first damage or a cut (then ``damage`` or ``cut`` says which)."""
        try:
            yield from (self._pcapng_packets() if self.pcapng else self._pcap_packets())
        except _Damage as e:
            self.damage = f"{self.shown}: {e}"
        except _Cut as e:
            self.cut = str(e)
        except EOFError:  # gzip: the compressed stream stops early
            self.cut = f"the compressed capture ends early, after packet {self.packets}"
        except (OSError, zlib.error) as e:
            self.damage = f"{self.shown}: cannot read past packet {self.packets} (byte {self.pos}): {_oneline(e)}"

    # ------------------------------------------------------------------------------------------ classic pcap

    def _pcap_header(self, magic: bytes) -> None:
        self._endian, self._frac_ns = _PCAP_MAGICS[magic]
        rest = self._read(20)
        if len(rest) < 20:
            raise _Cut(f"the file ends inside its 24-byte pcap header ({4 + len(rest)} bytes)")
        network = struct.unpack(self._endian + "HHiIII", rest)[5]
        self._linktype = network & 0x03FFFFFF  # the top bits carry FCS information

    def _pcap_packets(self) -> Iterator[tuple[bytes, int, int]]:
        rec = struct.Struct(self._endian + "IIII")
        frac_ns, linktype = self._frac_ns, self._linktype
        while True:
            at = self.pos
            n = self.packets + 1
            head = self._read(16)
            if not head:
                return
            if len(head) < 16:
                raise _Cut(f"the capture ends inside the header of packet {n} (record at byte {at})")
            sec, frac, caplen, _origlen = rec.unpack(head)
            if caplen > MAX_PACKET:
                raise _Damage(f"packet {n} (record at byte {at}) claims {caplen} captured bytes, more than any packet "
                              f"(the limit is {MAX_PACKET})")
            data = self._read(caplen)
            if len(data) < caplen:
                raise _Cut(f"the capture ends inside packet {n} (record at byte {at}): {len(data)} of its {caplen} "
                           "bytes are in the file; that packet and anything after it are not imported")
            self.packets = n
            yield data, sec * 1_000_000_000 + frac * frac_ns, linktype  # u32 seconds: always < MAX_NS

    # ------------------------------------------------------------------------------------------ pcapng

    def _section(self, at: int, head: bytes) -> None:
        """A section header block whose type and length (``head``) were read: byte order and version; it
        forgets the interfaces of the section before."""
        bom = self._read(4) if len(head) == 8 else b""
        if len(bom) < 4:
            raise _Cut(f"the capture ends inside the section header at byte {at}")
        endian = _BOM.get(bom)
        if endian is None:
            raise _Damage(f"the section header at byte {at} has the byte-order magic 0x{bom.hex()}, "
                          "neither order of 0x1a2b3c4d")
        self._endian = endian
        label = f"the section header at byte {at}"
        length = struct.unpack(endian + "I", head[4:8])[0]
        self._check_length(label, length, minimum=28)
        rest = self._read(length - 12)
        if len(rest) < length - 12:
            raise _Cut(f"the capture ends inside {label}")
        self._check_trailer(label, length, rest)
        major, minor = struct.unpack_from(endian + "HH", rest)
        if major != 1:
            raise _Damage(f"the section header at byte {at} is pcapng version {major}.{minor}; this reads 1.x")
        self._ifaces = []

    def _check_length(self, label: str, length: int, minimum: int = 12) -> None:
        if length < minimum:
            raise _Damage(f"{label}: block length {length} is impossible (a block is at least {minimum} bytes)")
        if length % 4:
            raise _Damage(f"{label}: block length {length} is not a multiple of 4")
        if length > MAX_BLOCK:
            raise _Damage(f"{label}: block length {length} is more than any block (the limit is {MAX_BLOCK})")

    def _check_trailer(self, label: str, length: int, rest: bytes) -> None:
        trailer = struct.unpack(self._endian + "I", rest[-4:])[0]
        if trailer != length:
            raise _Damage(f"{label}: the block starts with length {length} but its trailing length is {trailer}")

    def _pcapng_packets(self) -> Iterator[tuple[bytes, int, int]]:
        names = {1: "interface", 5: "statistics", 4: "name resolution"}
        while True:
            at = self.pos
            head = self._read(8)
            if not head:
                return
            if len(head) < 8:
                raise _Cut(f"the capture ends inside the header of the block at byte {at}")
            kind, length = struct.unpack(self._endian + "II", head)
            if kind == _SHB:  # a new section: its length is read once its byte order is known
                self._section(at, head)
                continue
            if kind in (2, 3, 6):
                label = f"packet {self.packets + 1} (block at byte {at})"
            else:
                label = f"the {names.get(kind, f'type {kind:#x}')} block at byte {at}"
            self._check_length(label, length)
            rest = self._read(length - 8)
            if len(rest) < length - 8:
                raise _Cut(f"the capture ends inside {label}: {8 + len(rest)} of its {length} bytes are in the file; "
                           "the rest is not imported")
            self._check_trailer(label, length, rest)
            body = rest[:-4]
            if kind == 1:
                self._interface(label, body)
            elif kind in (2, 3, 6):
                self.packets += 1
                yield self._packet(label, kind, body)

    def _options(self, label: str, body: bytes, off: int) -> Iterator[tuple[int, bytes]]:
        e = self._endian
        while off + 4 <= len(body):
            code, n = struct.unpack_from(e + "HH", body, off)
            off += 4
            if code == 0:
                return
            if n > len(body) - off:
                raise _Damage(f"{label}: option {code} claims {n} bytes; the block has {len(body) - off} left")
            yield code, body[off:off + n]
            off += n + (-n % 4)

    def _interface(self, label: str, body: bytes) -> None:
        if len(body) < 8:
            raise _Damage(f"{label} is too short ({len(body)} bytes of body, 8 needed)")
        linktype, _reserved, snaplen = struct.unpack_from(self._endian + "HHI", body)
        iface = _Iface(linktype, snaplen)
        for code, value in self._options(label, body, 8):
            if code == 9:  # if_tsresol: 10^-x or, with the top bit, 2^-x seconds
                if len(value) != 1:
                    raise _Damage(f"{label}: if_tsresol is {len(value)} bytes, not 1")
                x = value[0] & 0x7F
                if value[0] & 0x80:
                    iface.unit, iface.mul, iface.div, iface.shift = f"2^-{x} s", 1_000_000_000, 1, x
                else:
                    iface.unit = {0: "1 s", 3: "1 ms", 6: "1 µs", 9: "1 ns"}.get(x, f"10^-{x} s")
                    iface.mul, iface.div, iface.shift = (10 ** (9 - x), 1, 0) if x <= 9 else (1, 10 ** (x - 9), 0)
            elif code == 14:  # if_tsoffset: seconds added to every timestamp
                if len(value) != 8:
                    raise _Damage(f"{label}: if_tsoffset is {len(value)} bytes, not 8")
                iface.offset_ns = struct.unpack(self._endian + "q", value)[0] * 1_000_000_000
        self._ifaces.append(iface)

    def _packet(self, where: str, kind: int, body: bytes) -> tuple[bytes, int, int]:
        e = self._endian
        if kind == 3:  # simple packet block: interface 0, no timestamp, captured length implied
            if len(body) < 4:
                raise _Damage(f"{where}: a simple packet block too short for its 4-byte length")
            if not self._ifaces:
                raise _Damage(f"{where}: a simple packet block before any interface was described")
            origlen = struct.unpack_from(e + "I", body)[0]
            snap = self._ifaces[0].snaplen
            caplen = min(origlen, len(body) - 4, snap if snap else origlen)
            return body[4:4 + caplen], self._last_ns, self._ifaces[0].linktype
        if len(body) < 20:
            raise _Damage(f"{where}: an {'enhanced ' if kind == 6 else ''}packet block of {len(body) + 12} bytes is "
                          "too short for its 20-byte fixed part")
        if kind == 6:
            iface_id, hi, lo, caplen, _origlen = struct.unpack_from(e + "IIIII", body)
        else:  # the obsolete packet block: a 16-bit interface id and a drop count
            iface_id, _drops, hi, lo, caplen, _origlen = struct.unpack_from(e + "HHIIII", body)
        if iface_id >= len(self._ifaces):
            raise _Damage(f"{where} names interface {iface_id}; the section describes {len(self._ifaces)}")
        if caplen > len(body) - 20:
            raise _Damage(f"{where} says it captured {caplen} bytes; its block holds {len(body) - 20}")
        iface = self._ifaces[iface_id]
        raw = hi << 32 | lo
        t = iface.ns(raw)
        if not 0 <= t <= MAX_NS:
            raise _Damage(f"{where}: timestamp {raw:#x} in units of {iface.unit}"
                          + (f" plus an offset of {iface.offset_ns // 1_000_000_000} s" if iface.offset_ns else "")
                          + " is out of range (before 1970 or after 2262)")
        self._last_ns = t
        return body[20:20 + caplen], t, iface.linktype


def _oneline(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "…"


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
    udp_datagrams: int = 0
    not_tcp: int = 0
    """Packets that are neither TCP nor UDP (skipped)."""
    connections: int = 0
    """TCP connections and UDP flows."""
    flows: int = 0
    """Of ``connections``, the UDP flows."""
    messages: int = 0
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    retransmitted: int = 0
    """Segments (or parts of them) that repeated bytes already delivered."""
    out_of_order: int = 0
    gaps: list[Gap] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated_file: bool = False
    """The file ends inside a packet (a copy of a capture still being written): not an error."""
    damage: str | None = None
    """One line naming the file, the place and what is wrong, when reading stopped at damage (None otherwise);
    everything before it was imported."""
    malformed: int = 0
    """Packets skipped because their IP or TCP header lengths are impossible."""


class _Half:
    """One direction of a connection: reassembly state, framer and counters."""

    __slots__ = ("base", "broken", "closed", "cut_warned", "dropped", "fin_at", "framer", "msgs", "nbytes", "off",
                 "ooo", "ooo_bytes", "seq")

    def __init__(self, framer: Framer) -> None:
        self.base: int | None = None
        self.off = 0
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_bytes = 0
        self.fin_at: int | None = None
        self.closed = False
        self.broken = False
        self.cut_warned = False
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


class _Flow:
    __slots__ = ("bytes", "cid", "client", "last", "msgs", "server")

    def __init__(self, cid: int, client: tuple[str, int], server: tuple[str, int], ts: int) -> None:
        self.cid = cid
        self.client = client
        self.server = server
        self.msgs = [0, 0]
        self.bytes = [0, 0]
        self.last = ts


class CaptureImporter:
    """``for record in CaptureImporter(path, framing="lines").records(): ...``; then read ``report``."""

    def __init__(self, path: str | os.PathLike[str], *, framing: str = "raw", server_ports: Iterable[int] = (),
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.path = os.fspath(path)
        self.spec = parse_framing(framing, max_frame)  # FramingError (a ValueError) for a bad name
        self.server_ports = frozenset(server_ports)
        self.report = ImportReport()
        self._conns: dict[tuple[tuple[str, int], tuple[str, int]], _Conn] = {}
        self._flows: dict[tuple[tuple[str, int], tuple[str, int]], _Flow] = {}
        self._next_conn = 1
        self._next_msg = 1
        self._out: list[Record] = []
        self.first_target: tuple[str, int] | None = None

    # ----------------------------------------------------------------------------------------- reading

    def records(self) -> Iterator[Record]:
        """The records, streamed in capture order; raises :class:`CaptureError` if the file is no capture.

        Damage further in never raises: the records before it are produced, then ``report.damage`` says what
        and where (and an ``error`` notice is the last record before the connections are closed out).
        """
        reader = _Reader(self.path)
        reader.open()
        out = self._out
        ts = 0
        try:
            for data, ts, linktype in reader.packets_():
                self.report.packets += 1
                ip = self._network(data, linktype)
                if ip is None:
                    self.report.not_tcp += 1
                    continue
                self._segment(ip, ts)
                if out:
                    yield from out
                    out.clear()
        finally:
            reader.close()
        if self.report.malformed > 1:
            self._warn(f"{self.report.malformed - 1} more packets with impossible IP or TCP header lengths were "
                       "skipped")
        if reader.damage is not None:
            self.report.damage = reader.damage
            out.append(Notice("error", reader.damage, ts))
        elif reader.cut is not None:
            self.report.truncated_file = True
            self._warn(reader.cut, ts=ts)
        self._finish()
        yield from out
        out.clear()

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

    def _malformed(self, what: str, ts: int) -> None:
        self.report.malformed += 1
        if self.report.malformed == 1:
            self._warn(f"packet {self.report.packets}: {what}; the packet is skipped", ts=ts)

    def _segment(self, ip: bytes, ts: int) -> None:
        if len(ip) < 20:
            return
        version = ip[0] >> 4
        if version == 4:
            vihl, _tos, total, _id, frag, _ttl, proto, _sum, s, d = _IPV4.unpack_from(ip)
            if proto not in _TCP_UDP:
                self.report.not_tcp += 1
                return
            if frag & 0x3FFF:
                self._warn(f"packet {self.report.packets}: an IP fragment; fragments are not reassembled", ts=ts)
                return
            ihl = (vihl & 0x0F) * 4
            if ihl < 20:
                return self._malformed(f"IPv4 header length {ihl} is impossible (at least 20)", ts)
            end = total if total else len(ip)  # 0: segmentation offload, the capture has the real length
            if end < ihl:
                return self._malformed(f"IPv4 total length {end} is shorter than its {ihl}-byte header", ts)
            declared = end - ihl
            tcp = ip[ihl:end]
            src, dst = str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(d))
        elif version == 6 and len(ip) >= 40:
            plen = int.from_bytes(ip[4:6], "big")
            nh = ip[6]
            off = 40
            while nh in (0, 43, 60) and len(ip) >= off + 8:  # hop-by-hop, routing, destination options
                nh, off = ip[off], off + 8 + ip[off + 1] * 8
            if nh not in _TCP_UDP:
                self.report.not_tcp += 1
                if nh == 44:
                    self._warn(f"packet {self.report.packets}: an IPv6 fragment; fragments are not reassembled",
                               ts=ts)
                return
            end = 40 + plen if plen else len(ip)  # 0: a jumbogram or offload, the capture has the real length
            if end < off:
                return self._malformed(f"IPv6 payload length {plen} is shorter than its extension headers", ts)
            declared = end - off
            tcp = ip[off:end]
            src = str(ipaddress.IPv6Address(ip[8:24]))
            dst = str(ipaddress.IPv6Address(ip[24:40]))
            proto = nh
        else:
            self.report.not_tcp += 1
            return
        if proto == 17:
            return self._datagram((src, dst), tcp, declared, ts)
        if declared < 20:
            return self._malformed(f"a TCP segment of {declared} bytes is shorter than a TCP header", ts)
        if len(tcp) < 20:
            return  # the capture's snap length cut the TCP header: nothing to place
        sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(tcp)
        hl = (doff >> 4) * 4
        if hl < 20:
            return self._malformed(f"TCP header length {hl} is impossible (at least 20)", ts)
        if hl > declared:
            return self._malformed(f"TCP header length {hl} is longer than the {declared}-byte segment its IP "
                                   "header describes", ts)
        payload = tcp[hl:]
        missing_tail = declared - hl - len(payload)  # cut by the snap length
        self.report.tcp_segments += 1
        self._tcp((src, sport), (dst, dport), seq, flags, payload, missing_tail, ts)

    def _datagram(self, hosts: tuple[str, str], udp: bytes, declared: int, ts: int) -> None:
        if declared < 8:
            return self._malformed(f"a UDP datagram of {declared} bytes is shorter than a UDP header", ts)
        if len(udp) < 8:
            return  # the capture's snap length cut the UDP header
        sport, dport, length = _UDP.unpack_from(udp)
        if length < 8 or length > declared:  # 0 is allowed over IPv6 for jumbograms only; treat it as the IP length
            if length != 0:
                return self._malformed(f"UDP length {length} does not fit the {declared}-byte packet its IP header "
                                       "describes", ts)
            length = declared
        a, b = (hosts[0], sport), (hosts[1], dport)
        if len(udp) < length:
            self._warn(f"packet {self.report.packets}: a UDP datagram cut by the capture's snap length "
                       f"({length - len(udp)} of {length - 8} bytes not captured); it is skipped", ts=ts)
            return
        self.report.udp_datagrams += 1
        key = (a, b) if a <= b else (b, a)
        f = self._flows.get(key)
        if f is None:
            client, server = a, b
            if self.server_ports and (a[1] in self.server_ports) != (b[1] in self.server_ports):
                client, server = (b, a) if a[1] in self.server_ports else (a, b)
            f = self._flows[key] = _Flow(self._next_conn, client, server, ts)
            self._next_conn += 1
            self.report.connections += 1
            self.report.flows += 1
            if self.first_target is None:
                self.first_target = server
            self._out.append(ConnectionOpened(f.cid, client, server, ts, transport="udp"))
            self._out.append(UpstreamConnected(f.cid, server, ts))
        d = 0 if a == f.client else 1
        data = bytes(udp[8:length])
        f.last = ts
        f.msgs[d] += 1
        f.bytes[d] += len(data)
        self.report.messages += 1
        self.report.bytes[d] += len(data)
        self._out.append(Message(self._next_msg, f.cid, Direction(d), f.msgs[d] - 1, data, ts, ts))
        self._next_msg += 1

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
        # Unwrap against the bytes delivered so far: within 2 GiB ahead or behind of them, whatever the stream's
        # length (a plain modulo of the ISN would misplace everything after the first 2 GiB).
        delta = (seq - h.base - h.off) % _MOD
        rel = h.off + (delta - _MOD if delta >= _HALF else delta)
        if payload and not h.broken and not h.closed:
            self._data(c, d, rel, payload, ts)
        if missing_tail and not h.broken and not h.cut_warned:
            h.cut_warned = True
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
        for f in self._flows.values():
            self._out.append(ConnectionClosed(f.cid, CloseReason.CLOSED, "the capture ends (UDP has no close)",
                                              f.last, f.bytes[0], f.bytes[1], f.msgs[0], f.msgs[1]))
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


def _scapy_network(data: bytes, linktype: int) -> bytes | None:
    """Dissect a frame of an unusual link type with scapy and return its IP packet's bytes."""
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    cls = conf.l2types.num2layer.get(linktype)
    if cls is None:
        return None
    try:
        for stop in (IP, IPv6):  # dissect down to the IP layer only: the layers above cost time and are not used
            pkt = cls(data, stop_dissection_after=stop)
            if pkt.haslayer(stop):
                return bytes(pkt[stop])
    except Exception:  # scapy's dissectors raise assorted errors on odd frames
        return None
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

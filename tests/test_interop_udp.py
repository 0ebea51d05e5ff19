"""UDP flows in the interop formats: pcapng export as UDP packets Wireshark reads, and UDP import from captures.

Real bytes through real files: the exporter's fast frames equal scapy's byte for byte; tshark reads each packet's
ports, payload and checksum as valid; a capture of datagrams imports as flows (``transport="udp"``), one message per
datagram, byte-exact, next to the TCP connections of the same file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from inspector.interop.pcap_import import CaptureImporter
from inspector.interop.pcapng_export import export_records
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    MessageState,
    Origin,
    Record,
    UpstreamConnected,
)

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def _udp_records() -> list[Record]:
    big = bytes(range(256)) * 255 + b"end"  # 65,283 bytes: one datagram, no segments
    return [
        ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 7000), 1_000, transport="udp"),
        UpstreamConnected(1, ("127.0.0.1", 7000), 1_000),
        Message(1, 1, Direction.C2S, 0, b'{"x": 1}', 2_000, 2_000),
        Message(2, 1, Direction.S2C, 0, b'{"ack": 1}', 3_000, 3_000),
        Message(3, 1, Direction.C2S, 1, b"lost", 4_000, None, state=MessageState.DROPPED, note="lost: random loss"),
        Message(4, 1, Direction.C2S, 2, b"twice", 5_000, 5_000),
        Message(5, 1, Direction.C2S, 3, b"twice", 5_000, 6_000, Origin.DUPLICATE),
        Message(6, 1, Direction.C2S, 4, b"", 7_000, 7_000),  # an empty datagram is a datagram
        Message(7, 1, Direction.S2C, 1, big, 8_000, 8_000),
        ConnectionOpened(2, ("::1", 40001), ("::1", 7000), 9_000, transport="udp"),
        Message(8, 2, Direction.C2S, 0, b"v6", 9_500, 9_500),
        ConnectionOpened(3, ("127.0.0.1", 50000), ("127.0.0.1", 5555), 9_600),  # TCP beside it
        Message(9, 3, Direction.C2S, 0, b"tcp bytes", 9_700, 9_700),
        ConnectionClosed(1, CloseReason.IDLE_TIMEOUT, "", 10_000, 0, 0, 0, 0),
        ConnectionClosed(3, CloseReason.CLOSED, "", 11_000, 0, 0, 0, 0),
    ]


def test_udp_flows_export_fast_frames_equal_to_scapys(tmp_path: Path) -> None:
    recs = _udp_records()
    fast = export_records(recs, tmp_path / "fast.pcapng")
    slow = export_records(recs, tmp_path / "scapy.pcapng", engine="scapy")
    assert (tmp_path / "fast.pcapng").read_bytes() == (tmp_path / "scapy.pcapng").read_bytes()
    assert fast.stats == slow.stats
    s = fast.stats
    assert (s.flows, s.connections) == (2, 1)
    assert s.messages == 8 and s.not_delivered == 1  # the duplicate is delivered too; the lost one is not
    assert fast.udp_stream_of == {1: 0, 2: 1} and fast.stream_of == {3: 0}


def test_udp_checksums_are_valid_and_scapy_reads_every_datagram(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    export_records(_udp_records(), tmp_path / "u.pcapng")
    seen = []
    for pkt in rdpcap(str(tmp_path / "u.pcapng")):
        if UDP not in pkt:
            continue
        udp = pkt[UDP]
        ip = pkt[IP] if IP in pkt else pkt[IPv6]
        sent = udp.chksum
        again = ip.__class__(bytes(ip))  # a copy whose checksum scapy computes afresh
        del again[UDP].chksum
        assert again.__class__(bytes(again))[UDP].chksum == sent
        seen.append((udp.sport, udp.dport, bytes(udp.payload)))
    big = bytes(range(256)) * 255 + b"end"
    assert seen == [(40000, 7000, b'{"x": 1}'), (7000, 40000, b'{"ack": 1}'), (40000, 7000, b"twice"),
                    (40000, 7000, b"twice"), (40000, 7000, b""), (7000, 40000, big), (40001, 7000, b"v6")]


@needs_tshark
def test_wireshark_reads_the_flows_with_their_comments(tmp_path: Path) -> None:
    out = tmp_path / "u.pcapng"
    export_records(_udp_records(), out)
    assert TSHARK is not None
    fields = ["udp.stream", "udp.length", "udp.checksum.status", "frame.comment"]
    argv = [TSHARK, "-r", str(out), "-o", "udp.check_checksum:TRUE", "-Y", "udp", "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    lines = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    rows = [line.split("\t") for line in lines]
    assert [r[0] for r in rows] == ["0"] * 6 + ["1"]
    assert [int(r[1]) for r in rows] == [8 + n for n in (8, 10, 5, 5, 0, 65_283, 2)]
    assert all(r[2] == "1" for r in rows), rows  # 1: Good (0 bad, 2 unverified)
    assert "sockscope flow #1" in rows[0][3] and "UDP" in rows[0][3]
    assert "origin duplicate" in rows[3][3]


def test_a_capture_of_datagrams_imports_as_flows_byte_exact(tmp_path: Path) -> None:
    recs = _udp_records()
    export_records(recs, tmp_path / "u.pcapng")
    got = list(CaptureImporter(tmp_path / "u.pcapng", framing="lines").records())
    opened = [r for r in got if isinstance(r, ConnectionOpened)]
    assert [(r.client_addr, r.target_addr, r.transport) for r in opened] == [
        (("127.0.0.1", 40000), ("127.0.0.1", 7000), "udp"), (("::1", 40001), ("::1", 7000), "udp"),
        (("127.0.0.1", 50000), ("127.0.0.1", 5555), "tcp")]
    flows = {r.conn_id for r in opened if r.transport == "udp"}
    msgs = [(m.conn_id, m.direction, m.data) for m in got if isinstance(m, Message) and m.conn_id in flows]
    big = bytes(range(256)) * 255 + b"end"
    f1, f2 = (r.conn_id for r in opened[:2])
    # one message per datagram whatever the framing asked for TCP: datagrams are never re-framed or joined
    assert msgs == [(f1, Direction.C2S, b'{"x": 1}'), (f1, Direction.S2C, b'{"ack": 1}'),
                    (f1, Direction.C2S, b"twice"), (f1, Direction.C2S, b"twice"), (f1, Direction.C2S, b""),
                    (f1, Direction.S2C, big), (f2, Direction.C2S, b"v6")]
    closed = [r for r in got if isinstance(r, ConnectionClosed) and r.conn_id in flows]
    assert len(closed) == 2  # the flows end with the capture


def test_hostile_udp_headers_and_cut_datagrams_are_skipped_with_one_line_each(tmp_path: Path) -> None:
    """A UDP length that lies, a header shorter than 8 bytes, a datagram the snap length cut: each is skipped with a
    warning that says why; the good datagram between them is imported whole."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    def pkt(payload: bytes, **udp: int) -> object:
        return Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=7000, **udp) / Raw(payload)

    lying = pkt(b"abc", len=500)  # the UDP header claims more than the IP packet holds
    short = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=17) / Raw(b"\x01\x02\x03")  # no room for a header
    good = pkt(b"good datagram")
    path = tmp_path / "h.pcap"
    wrpcap(str(path), [lying, short, good, pkt(b"x" * 200)], snaplen=0)
    raw = bytearray(path.read_bytes())
    # cut the last packet's captured length (classic pcap record header: ts_sec ts_usec incl_len orig_len)
    last = len(raw) - len(bytes(pkt(b"x" * 200))) - 16
    incl = int.from_bytes(raw[last + 8:last + 12], "little")
    raw[last + 8:last + 12] = (incl - 150).to_bytes(4, "little")
    del raw[len(raw) - 150:]
    path.write_bytes(bytes(raw))
    imp = CaptureImporter(path)
    got = list(imp.records())
    assert [m.data for m in got if isinstance(m, Message)] == [b"good datagram"]
    text = " | ".join(imp.report.warnings)
    assert "UDP length 500" in text and "snap length" in text, text
    assert imp.report.malformed == 2 and imp.report.flows == 1

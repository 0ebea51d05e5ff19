"""inspector.interop without Qt: session files, pcapng export (checked with tshark), pcap import, JSONL, replay scripts,
and the ``sockscope export`` / ``sockscope import`` commands. Real files and real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inspector.interop.cli import main as cli_main
from inspector.interop.fold import MessageFolder
from inspector.interop.jsonl import JsonlExporter
from inspector.interop.pcap_import import CaptureError, CaptureImporter, client_messages, import_capture
from inspector.interop.pcapng_export import PcapngExporter, export_records
from inspector.interop.session_io import SessionLoader, SessionWriter
from proxy.model import (
    Clock,
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    HalfClosed,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Record,
    Side,
    UpstreamConnected,
)
from proxy.recorder import Recorder
from proxy.session import open_session
from tests.conftest import EchoServer, abort_with_reset, connect, recv_exact, recv_until_eof
from tests.conftest import Recorder as Records

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark; .ci/run "
                                                         "installs it when run as root)")
WELCOME = "Hello from the exercise server! 🚀".encode()
REPLY = "Ping received! 📥".encode()


def _records(path: Path) -> list[Record]:
    with open_session(path) as s:
        return list(s)


def _header(path: Path) -> Any:
    with open_session(path) as s:
        return s.header


# ------------------------------------------------------------------------------------------------ session files


def _sample_records() -> list[Record]:
    return [
        ConnectionOpened(1, ("127.0.0.1", 50000), ("127.0.0.1", 5555), 1_000),
        UpstreamConnected(1, ("127.0.0.1", 5555), 1_100),
        Message(1, 1, Direction.S2C, 0, WELCOME, 2_000, 2_000),
        Message(2, 1, Direction.C2S, 0, REPLY, 3_000, None, state=MessageState.HELD),
        MessageUpdated(2, 1, Direction.C2S, MessageState.FORWARDED, 9_000, 9_000, b"edited",
                       ((DelayReason.HOLD, 6_000),)),
        Message(3, 1, Direction.C2S, 1, bytes(range(256)) * 800, 10_000, 12_000, state=MessageState.SCHEDULED,
                delays=((DelayReason.LATENCY, 2_000),)),
        MessageUpdated(3, 1, Direction.C2S, MessageState.FORWARDED, 12_000, 12_000,
                       delays=((DelayReason.LATENCY, 2_000),)),
        Message(4, 1, Direction.C2S, 2, b"dropped", 13_000, None, state=MessageState.HELD),
        MessageUpdated(4, 1, Direction.C2S, MessageState.DROPPED, 14_000),
        HalfClosed(1, Side.CLIENT, 15_000),
        Message(5, 1, Direction.S2C, 1, b"bye", 16_000, 16_000),
        ConnectionClosed(1, CloseReason.CLOSED, "", 17_000, 0, 0, 0, 0),
        ConnectionOpened(2, ("127.0.0.1", 50001), ("127.0.0.1", 5555), 20_000),
        Message(6, 2, Direction.C2S, 0, b"x", 21_000, 21_000),
        ConnectionClosed(2, CloseReason.CLIENT_RESET, "", 22_000, 1, 0, 1, 0),
        Notice("info", "done", 23_000),
    ]


def test_session_written_and_reopened_is_identical(tmp_path: Path) -> None:
    path = tmp_path / "s.sockscope"
    recs = _sample_records()
    with SessionWriter(path, clock=Clock(5, 6), target=("127.0.0.1", 5555), flush_bytes=64) as w:
        w.write_many(recs)
    assert _records(path) == recs
    assert _header(path).clock == Clock(5, 6)
    # appending continues the same file
    with SessionWriter(path, append=True) as w:
        w.write(recs[0])
    assert _records(path) == [*recs, recs[0]]
    # a writer refuses to append to something that is not a session
    (tmp_path / "x.bin").write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(Exception, match="not a sockscope session"):
        SessionWriter(tmp_path / "x.bin", append=True)


@pytest.mark.slow
def test_streaming_loader_reads_a_million_messages_in_bounded_memory(tmp_path: Path) -> None:
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc/self/statm (Linux) to watch memory")
    path = tmp_path / "big.sockscope"
    n = 1_000_000
    with SessionWriter(path, clock=Clock(0, 0)) as w:
        w.write(ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0))
        for i in range(n):
            w.write(Message(i + 1, 1, Direction(i & 1), i >> 1, b"ping %d" % i, i * 1000, i * 1000))
    size = path.stat().st_size
    assert size > 40 << 20

    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    base = rss()
    peak = base
    loader = SessionLoader(path)
    seen = 0
    progress = []
    last_id = 0
    while not loader.done:
        batch = loader.next_batch(max_records=50_000)
        seen += sum(1 for r in batch if isinstance(r, Message))
        if batch and isinstance(batch[-1], Message):
            last_id = batch[-1].id
        progress.append(loader.progress)
        peak = max(peak, rss())
    assert seen == n and last_id == n
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 20
    grew = peak - base
    assert grew < 48 << 20, f"loading a {size >> 20} MiB session grew memory by {grew >> 20} MiB"


def _live_session(start_proxy: Any, recorder: Records, echo_server: EchoServer,
                  path: Path) -> tuple[dict[int, bytes], int, int]:
    """Record held/edited/dropped/injected/large traffic and a reset; returns what each client received."""
    p = start_proxy(echo_server.port)
    rec = p.call(lambda: Recorder(path, p.server))
    received: dict[int, bytes] = {}

    a = connect(p.port)
    opened = recorder.wait_for(lambda r: isinstance(r, ConnectionOpened)
                               and r.client_addr[1] == a.getsockname()[1])
    cid_a = opened.conn_id  # type: ignore[union-attr]
    got = bytearray()
    a.sendall(REPLY)
    got += recv_exact(a, len(REPLY))
    p.call(p.server.hold_next, Direction.C2S, cid_a)
    a.sendall(b"secret")
    held = recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"secret")
    p.call(p.server.release, held.id, b"EDITED")  # type: ignore[union-attr]
    got += recv_exact(a, 6)
    p.call(p.server.hold_next, Direction.C2S, cid_a)
    a.sendall(b"dropme")
    held = recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"dropme")
    p.call(p.server.drop, held.id)  # type: ignore[union-attr]
    p.call(p.server.inject, cid_a, Direction.C2S, b"INJ")
    got += recv_exact(a, 3)
    big = os.urandom(300_000)
    a.sendall(big)
    got += recv_exact(a, len(big))
    a.shutdown(socket.SHUT_WR)
    got += recv_until_eof(a)
    a.close()
    received[cid_a] = bytes(got)
    assert bytes(got).startswith(REPLY + b"EDITEDINJ")

    b = connect(p.port)
    opened = recorder.wait_for(lambda r: isinstance(r, ConnectionOpened)
                               and r.client_addr[1] == b.getsockname()[1])
    cid_b = opened.conn_id  # type: ignore[union-attr]
    b.sendall(b"x" * 10)
    received[cid_b] = recv_exact(b, 10)
    abort_with_reset(b)
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed) and r.conn_id == cid_b)
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed) and r.conn_id == cid_a)
    p.call(rec.close)
    return received, cid_a, cid_b


def _follow(pcap: Path, stream: int) -> tuple[bytes, bytes]:
    """``tshark -qz follow,tcp,raw,N``: (bytes node 0 sent, bytes node 1 sent)."""
    assert TSHARK is not None
    out = subprocess.run([TSHARK, "-r", str(pcap), "-qz", f"follow,tcp,raw,{stream}"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Node 1:")) + 1
    a, b = bytearray(), bytearray()
    for line in lines[first:]:
        if line.startswith("="):
            break
        if line.startswith("\t"):
            b += bytes.fromhex(line.strip())
        elif line.strip():
            a += bytes.fromhex(line.strip())
    return bytes(a), bytes(b)


@needs_tshark
def test_pcapng_export_follows_to_exactly_the_bytes_each_side_received(
        start_proxy: Any, recorder: Records, echo_server: EchoServer, tmp_path: Path) -> None:
    session = tmp_path / "live.sockscope"
    received, cid_a, cid_b = _live_session(start_proxy, recorder, echo_server, session)
    reader = open_session(session)
    out = tmp_path / "live.pcapng"
    ex = export_records(reader, out, clock=reader.header.clock)
    assert ex.stats.after_close == 0 and ex.stats.not_delivered == 1  # the dropped message
    for cid in (cid_a, cid_b):
        c2s, s2c = _follow(out, ex.stream_of[cid])
        # the echo server returns exactly what it received, so both directions equal what the client read
        assert c2s == received[cid], f"connection #{cid} c2s"
        assert s2c == received[cid], f"connection #{cid} s2c"
    # the CLI writes the same file
    assert cli_main(["export", str(session), "--to", str(tmp_path / "cli.pcapng")]) == 0
    assert (tmp_path / "cli.pcapng").read_bytes() == out.read_bytes()
    # FIN, RST, comments and checksums as Wireshark sees them
    fields = subprocess.run(
        [TSHARK, "-r", str(out), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields",
         "-e", "tcp.stream", "-e", "tcp.flags.str", "-e", "tcp.checksum.status", "-e", "frame.comment",
         "-e", "ip.checksum.status"], capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in fields.splitlines()]
    assert all(r[2] == "1" and r[4] == "1" for r in rows), "every checksum is good (status 1)"
    flags_b = [r[1] for r in rows if r[0] == str(ex.stream_of[cid_b])]
    assert "R" in flags_b[-1]
    assert any("F" in f for r in rows if r[0] == str(ex.stream_of[cid_a]) for f in [r[1]])
    comments = "\n".join(r[3] for r in rows)
    assert "held for the user" in comments and "origin injected" in comments and "edited (6 bytes captured" in comments


def test_fast_frames_equal_scapy_frames(tmp_path: Path) -> None:
    recs = _sample_records()
    recs.insert(12, ConnectionOpened(3, ("::1", 50002), ("127.0.0.1", 5555), 19_000))  # mixed families
    recs.insert(13, Message(7, 3, Direction.C2S, 0, b"v6 " * 7, 19_500, 19_500))
    recs.insert(14, ConnectionOpened(4, ("replay", 0), ("127.0.0.1", 5555), 19_600, replay_of=1))
    recs.insert(15, Message(8, 4, Direction.C2S, 0, b"odd", 19_700, 19_700))
    fast = export_records(recs, tmp_path / "fast.pcapng", mss=1000)
    slow = export_records(recs, tmp_path / "scapy.pcapng", mss=1000, engine="scapy")
    assert (tmp_path / "fast.pcapng").read_bytes() == (tmp_path / "scapy.pcapng").read_bytes()
    assert fast.stats == slow.stats and fast.stats.packets > 200


@needs_tshark
def test_synthetic_export_with_small_mss_follows(tmp_path: Path) -> None:
    recs = _sample_records()
    out = tmp_path / "s.pcapng"
    ex = export_records(recs, out, mss=1460)
    c2s, s2c = _follow(out, ex.stream_of[1])
    assert c2s == b"edited" + bytes(range(256)) * 800
    assert s2c == WELCOME + b"bye"
    assert _follow(out, ex.stream_of[2]) == (b"x", b"")
    assert TSHARK is not None
    comments = subprocess.run([TSHARK, "-r", str(out), "-T", "fields", "-e", "frame.comment"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
    assert "released 0.002 ms later (latency 0.002 ms) · segment 1 of 141" in comments  # 204,800 bytes / 1460


# ------------------------------------------------------------------------------------------------ pcap import


def _seg(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: str, data: bytes = b"",
         t: float = 0.0) -> Any:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    p = Ether() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags)
    if data:
        p = p / data
    p.time = t
    return p


C = ("127.0.0.1", 50123)
S = ("127.0.0.1", 5555)


def _exercise_packets() -> list[Any]:
    """The tutorial's exchange as the loopback interface would show it: welcome, reply, three ping/pongs, close."""
    ic, is_ = 1000, 5000
    pk = [_seg(C, S, ic, 0, "S", t=1.0), _seg(S, C, is_, ic + 1, "SA", t=1.001),
          _seg(C, S, ic + 1, is_ + 1, "A", t=1.002), _seg(S, C, is_ + 1, ic + 1, "PA", WELCOME, t=1.01),
          _seg(C, S, ic + 1, is_ + 1 + len(WELCOME), "PA", REPLY, t=1.02)]
    cs, ss = ic + 1 + len(REPLY), is_ + 1 + len(WELCOME)
    for n in range(1, 4):
        m, r = f"ping {n}".encode(), f"pong {n}".encode()
        pk.append(_seg(C, S, cs, ss, "PA", m, t=1.0 + n))
        cs += len(m)
        pk.append(_seg(S, C, ss, cs, "PA", r, t=1.001 + n))
        ss += len(r)
    pk += [_seg(C, S, cs, ss, "FA", t=5), _seg(S, C, ss, cs + 1, "FA", t=5.001),
           _seg(C, S, cs + 1, ss + 1, "A", t=5.002)]
    return pk


def test_import_of_the_exercise_decodes_and_filters(tmp_path: Path) -> None:
    from scapy.utils import wrpcap

    from inspector.decode import decode_message
    from inspector.filters import parse_filter

    path = tmp_path / "lo.pcap"
    wrpcap(str(path), _exercise_packets())
    recs, report = import_capture(path)
    assert report.gaps == [] and report.warnings == [] and report.connections == 1
    msgs = [r for r in recs if isinstance(r, Message)]
    assert [m.data for m in msgs] == [WELCOME, REPLY, b"ping 1", b"pong 1", b"ping 2", b"pong 2", b"ping 3", b"pong 3"]
    assert msgs[0].direction is Direction.S2C and msgs[1].direction is Direction.C2S
    assert msgs[1].arrival_ns == 1_020_000_000
    view = decode_message(msgs[1])
    assert view.decoder == "text" and "📥" in view.summary
    assert [m.data for m in parse_filter('text contains "📥"').select(msgs)] == [REPLY]
    assert [type(r).__name__ for r in recs if not isinstance(r, Message)] == [
        "ConnectionOpened", "UpstreamConnected", "HalfClosed", "HalfClosed", "ConnectionClosed"]
    opened = recs[0]
    assert isinstance(opened, ConnectionOpened) and opened.client_addr == C and opened.target_addr == S


def test_import_with_framing_writes_a_readable_session(tmp_path: Path) -> None:
    from scapy.utils import wrpcap

    pk = _exercise_packets()[:3]
    ic, is_ = 1001, 5001
    stream = b"".join(f"line {i}\n".encode() for i in range(5))
    pk.append(_seg(C, S, ic, is_, "PA", stream[:13], t=2.0))  # split mid-line
    pk.append(_seg(C, S, ic + 13, is_, "PA", stream[13:], t=2.1))
    wrpcap(str(tmp_path / "lines.pcapng"), pk)  # .pcapng name, classic pcap content: the reader checks the magic
    out = tmp_path / "lines.sockscope"
    assert cli_main(["import", str(tmp_path / "lines.pcapng"), "--framing", "lines", "-o", str(out)]) == 0
    header = _header(out)
    assert header.framing["c2s"] == "lines" and header.target == S
    msgs = [r for r in _records(out) if isinstance(r, Message)]
    assert [m.data for m in msgs] == [f"line {i}\n".encode() for i in range(5)]
    assert [m.arrival_ns for m in msgs] == [2_000_000_000, 2_100_000_000, 2_100_000_000, 2_100_000_000,
                                            2_100_000_000]


def test_reordered_and_duplicated_segments_reassemble(tmp_path: Path) -> None:
    from scapy.utils import PcapNgWriter

    data = os.urandom(5000)
    ic, is_ = 7, 99
    hs = [_seg(C, S, ic, 0, "S", t=1), _seg(S, C, is_, ic + 1, "SA", t=1.1), _seg(C, S, ic + 1, is_ + 1, "A", t=1.2)]
    segs = [(ic + 1 + off, data[off:off + 1000]) for off in range(0, 5000, 1000)]
    order = [segs[2], segs[0], segs[0], segs[4], segs[1], segs[3], segs[2]]  # out of order, dups
    overlap = (ic + 1 + 500, data[500:1700])  # a retransmission overlapping two segments
    pk = hs + [_seg(C, S, s, is_ + 1, "PA", d, t=2 + i / 10) for i, (s, d) in enumerate([*order[:3], overlap,
                                                                                          *order[3:]])]
    pk.append(_seg(C, S, ic + 1 + 5000, is_ + 1, "FA", t=3))
    with PcapNgWriter(str(tmp_path / "r.pcapng")) as w:
        w.write(pk)
    recs, report = import_capture(tmp_path / "r.pcapng")
    got = b"".join(r.data for r in recs if isinstance(r, Message) and r.direction is Direction.C2S)
    assert got == data
    assert report.gaps == [] and report.out_of_order >= 2 and report.retransmitted >= 2
    assert any(isinstance(r, HalfClosed) and r.side is Side.CLIENT for r in recs)


def test_a_missing_segment_is_reported_not_guessed(tmp_path: Path) -> None:
    from scapy.utils import wrpcap

    pk = _exercise_packets()
    del pk[5]  # "ping 1" never captured
    wrpcap(str(tmp_path / "gap.pcap"), pk)
    recs, report = import_capture(tmp_path / "gap.pcap")
    c2s = [r.data for r in recs if isinstance(r, Message) and r.direction is Direction.C2S]
    assert c2s == [REPLY]  # nothing after the hole, nothing invented
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert (gap.direction, gap.offset, gap.missing, gap.dropped_after) == (Direction.C2S, len(REPLY), 6, 12)
    assert any(isinstance(r, Notice) and "6 bytes missing" in r.text for r in recs)
    s2c = [r.data for r in recs if isinstance(r, Message) and r.direction is Direction.S2C]
    assert s2c[1:] == [b"pong 1", b"pong 2", b"pong 3"]  # the other direction is intact
    err = _run_cli(["import", str(tmp_path / "gap.pcap"), "-o", str(tmp_path / "gap.sockscope")])
    assert err[0] == 0 and "6 bytes missing" in err[2]


def test_mid_stream_capture_uses_server_port(tmp_path: Path) -> None:
    from scapy.utils import wrpcap

    pk = _exercise_packets()[3:9]
    wrpcap(str(tmp_path / "mid.pcap"), pk)
    recs, report = import_capture(tmp_path / "mid.pcap", server_ports=[5555])
    opened = recs[0]
    assert isinstance(opened, ConnectionOpened) and opened.target_addr == S
    assert any("no handshake" in w for w in report.warnings)
    assert [r.data for r in recs if isinstance(r, Message)][:2] == [WELCOME, REPLY]


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    code = cli_main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_corrupt_and_truncated_files_give_clear_errors(tmp_path: Path) -> None:
    from scapy.utils import PcapNgWriter, wrpcap

    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"GIF89a" + os.urandom(200))
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        import_capture(junk)
    code, _, err = _run_cli(["import", str(junk), "-o", str(tmp_path / "o.sockscope")])
    assert code == 2 and "not a pcap or pcapng" in err and "Traceback" not in err
    assert not (tmp_path / "o.sockscope").exists()
    (tmp_path / "empty.pcap").write_bytes(b"")
    with pytest.raises(CaptureError, match="empty"):
        import_capture(tmp_path / "empty.pcap")
    with pytest.raises(CaptureError, match="cannot open"):
        import_capture(tmp_path / "missing.pcap")

    # cut inside the 7th packet: the first six import, where the file ends is reported (not an error)
    whole = tmp_path / "whole.pcap"
    wrpcap(str(whole), _exercise_packets())
    raw = whole.read_bytes()
    offsets, off = [], 24
    while off < len(raw):
        offsets.append(off)
        off += 16 + struct.unpack_from("<I", raw, off + 8)[0]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[:offsets[6] + 30])
    recs, report = import_capture(cut)
    assert report.truncated_file and report.packets == 6 and report.damage is None
    assert any("ends inside packet 7" in w for w in report.warnings)
    assert [r.data for r in recs if isinstance(r, Message)] == [WELCOME, REPLY, b"ping 1"]

    # a pcapng with a corrupt block in the middle
    ng = tmp_path / "ng.pcapng"
    with PcapNgWriter(str(ng)) as w:
        w.write(_exercise_packets())
    data = bytearray(ng.read_bytes())
    off = 0
    for _ in range(9):  # section header, interface, then the 7th packet's block
        off += struct.unpack_from("<I", data, off + 4)[0]
    struct.pack_into("<I", data, off + 4, 0xFFFFFFF0)  # an impossible block length
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(bytes(data))
    code, _, err = _run_cli(["import", str(bad), "-o", str(tmp_path / "bad.sockscope")])
    assert code == 2 and "error:" in err and "Traceback" not in err, err  # reported, what came before kept
    assert str(bad) in err and "4294967280" in err and len(err.splitlines()) == 1
    kept = [r for r in _records(tmp_path / "bad.sockscope") if isinstance(r, Message)]
    assert [m.data for m in kept][:2] == [WELCOME, REPLY]
    assert _header(tmp_path / "bad.sockscope").format == 1

    # sessions: not a session, and a corrupt record, through the export command
    code, _, err = _run_cli(["export", str(junk), "--to", str(tmp_path / "x.pcapng")])
    assert code == 2 and "not a sockscope session" in err
    good = tmp_path / "good.sockscope"
    with SessionWriter(good) as sw:
        sw.write_many(_sample_records())
    broken = bytearray(good.read_bytes())
    broken[-40:-30] = b"\xc1" * 10  # msgpack's "never used" byte
    (tmp_path / "broken.sockscope").write_bytes(bytes(broken))
    code, _, err = _run_cli(["export", str(tmp_path / "broken.sockscope"), "--to", str(tmp_path / "b.jsonl")])
    assert code == 2 and "corrupt record" in err
    assert (tmp_path / "b.jsonl").read_text(encoding="utf-8").count('"type":"message"') >= 2  # kept before it
    code, _, err = _run_cli(["export", str(good), "--to", str(tmp_path / "x.txt")])
    assert code == 2 and "extension" in err


def test_reassembled_client_side_replays_against_a_live_server(
        tmp_path: Path, start_proxy: Any, recorder: Records, echo_server: EchoServer) -> None:
    from scapy.utils import wrpcap

    wrpcap(str(tmp_path / "lo.pcap"), _exercise_packets())
    recs, _ = import_capture(tmp_path / "lo.pcap")
    messages = client_messages(recs, 1)
    assert messages == [REPLY, b"ping 1", b"ping 2", b"ping 3"]
    p = start_proxy(echo_server.port)
    fut = asyncio.run_coroutine_threadsafe(p.server.replay(1, messages=messages, mode="wait-reply"), p.loop)
    new = fut.result(10)
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed) and r.conn_id == new)
    echoed = b"".join(r.data for r in recorder.of(Message) if r.conn_id == new and r.direction is Direction.S2C)
    assert echoed == b"".join(messages)


# ------------------------------------------------------------------------------------------------ JSONL, scripts


def test_jsonl_and_replay_script_exports(tmp_path: Path, echo_server: EchoServer) -> None:
    session = tmp_path / "s.sockscope"
    with SessionWriter(session, clock=Clock(0, 1_700_000_000_000_000_000)) as w:
        w.write_many(_sample_records())
        w.write(Message(9, 2, Direction.C2S, 1, b'{"type": "move", "x": 3}', 21_500, 21_500))
    code, out, _ = _run_cli(["export", str(session), "--to", str(tmp_path / "m.jsonl")])
    assert code == 0 and "messages" in out
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()]
    msgs = {d["id"]: d for d in lines if d["type"] == "message"}
    assert msgs[1]["text"] == WELCOME.decode() and msgs[1]["decoded"]["decoder"] == "text"
    assert msgs[2]["hex"] == b"edited".hex() and msgs[2]["held"] and msgs[2]["original_hex"] == REPLY.hex()
    assert msgs[4]["state"] == "dropped"
    assert msgs[9]["decoded"]["decoder"] == "json" and msgs[9]["decoded"]["values"] == [{"type": "move", "x": 3}]
    assert msgs[3]["text"] is None and bytes.fromhex(msgs[3]["hex"]) == bytes(range(256)) * 800
    assert msgs[1]["arrival"].startswith("2023-11-14T22:13:20")
    assert [d["conn"] for d in lines if d["type"] == "connection"] == [1, 2]
    code, _, _ = _run_cli(["export", str(session), "--filter", "dir == c2s", "--conn", "1", "--to",
                           str(tmp_path / "f.jsonl")])
    lines = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["id"] for d in lines if d["type"] == "message"] == [2, 3, 4]

    script = tmp_path / "replay.py"
    assert _run_cli(["export", str(session), "--conn", "1", "--to", str(script)])[0] == 0
    text = script.read_text(encoding="utf-8")
    assert "import socket" in text and "never reached the server" in text and "time.sleep" in text
    run = subprocess.run([sys.executable, str(script), "127.0.0.1", str(echo_server.port), "--fast"],
                         capture_output=True, text=True, timeout=30, encoding="utf-8")
    assert run.returncode == 0, run.stderr
    assert "-> 'edited'" in run.stdout and "<- 'edited" in run.stdout


@pytest.mark.parametrize(("payload", "decoder", "keys", "expected"), [
    (b'"\\ud800 lone"', "json", ("values",), ["\ud800 lone"]),  # JSON's escape for a lone surrogate
    (b"hello world, this is text \xff ok", "text", ("values",), ["hello world, this is text \udcff ok"]),
    (b'{"hp": NaN, "x": Infinity}', "json", ("values_repr",), ["{'hp': nan, 'x': inf}"]),
    (b"[" * 950 + b"]" * 950, "json text", ("values", "values_repr"), None),  # near the recursion limit
    (msgpack.packb({1: "a"}), "msgpack", ("values_repr",), ["{1: 'a'}"]),
], ids=["lone-surrogate", "invalid-utf8", "nan", "deep", "int-keys"])
def test_jsonl_export_writes_valid_json_for_hostile_values(
    tmp_path: Path, payload: bytes, decoder: str, keys: tuple[str, ...], expected: list[object] | None
) -> None:
    out = tmp_path / "m.jsonl"
    with JsonlExporter(out) as x:
        x.add(Message(1, 1, Direction.C2S, 0, payload, 1, 1))
        x.add(Message(2, 1, Direction.C2S, 1, b'{"after": true}', 2, 2))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    first, second = lines[1], lines[2]
    assert first["decoded"]["decoder"] in decoder.split() and bytes.fromhex(first["hex"]) == payload
    found = [k for k in keys if k in first["decoded"]]
    assert found and (expected is None or first["decoded"][found[0]] == expected)
    assert second["decoded"]["values"] == [{"after": True}]  # nothing lost after a hostile message


def test_folder_gives_each_message_once_with_its_final_bytes() -> None:
    folder = MessageFolder()
    finals = []
    for r in _sample_records():
        if isinstance(r, Message):
            f = folder.message(r)
        elif isinstance(r, MessageUpdated):
            f = folder.update(r)
        else:
            continue
        if f is not None:
            finals.append((f.message.id, f.message.state, f.message.data[:6], f.held))
    assert finals == [(1, MessageState.FORWARDED, WELCOME[:6], False), (2, MessageState.FORWARDED, b"edited", True),
                      (3, MessageState.FORWARDED, bytes(range(6)), False), (4, MessageState.DROPPED, b"droppe", True),
                      (5, MessageState.FORWARDED, b"bye", False), (6, MessageState.FORWARDED, b"x", False)]


def test_interop_imports_neither_qt_nor_scapy_up_front() -> None:
    code = ("import sys, inspector.interop.cli, inspector.interop.pcapng_export, inspector.interop.pcap_import, "
            "inspector.interop.jsonl, inspector.interop.replay_script, inspector.interop.session_io; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'scapy'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=Path(__file__).resolve().parents[1])


def test_sockscope_command_dispatches_export_and_import(tmp_path: Path) -> None:
    from inspector.app import main as app_main

    with SessionWriter(tmp_path / "s.sockscope") as w:
        w.write_many(_sample_records())
    assert app_main(["export", str(tmp_path / "s.sockscope"), "--to", str(tmp_path / "s.pcapng")]) == 0
    assert app_main(["import", str(tmp_path / "s.pcapng"), "-o", str(tmp_path / "back.sockscope")]) == 0
    back = [r for r in _records(tmp_path / "back.sockscope") if isinstance(r, Message)]
    # pcapng -> session: the delivered byte streams survive the round trip
    assert b"".join(m.data for m in back if m.conn_id == 1 and m.direction is Direction.C2S) == \
        b"edited" + bytes(range(256)) * 800
    run = subprocess.run([sys.executable, "-m", "inspector.interop", "export", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and "--to" in run.stdout


def test_capture_importer_refuses_a_bad_framing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown framing"):
        CaptureImporter(tmp_path / "x.pcap", framing="nope")
    with pytest.raises(ValueError):
        PcapngExporter(tmp_path / "x.pcapng", mss=0)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64) | st.text(max_size=32).map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(data="x\ufffdy".encode())
@example(data="x\ufffdy".encode() + b"\xff")
def test_jsonl_text_field_is_exactly_strict_utf8(data: bytes) -> None:
    from inspector.interop.jsonl import _utf8_or_none

    try:
        expected: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        expected = None
    assert _utf8_or_none(data) == expected

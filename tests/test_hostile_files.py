"""Hostile files users open: pcap/pcapng captures (``sockscope import``, File > Open) and session files
(``sockscope export``, File > Open session).

Every malformed file gives one line naming the file and what is wrong (exit status 2 from the command line, no
traceback) and loses nothing that could be read before the damage; no length field makes the reader allocate more
than the file holds. The small files are the corpus under tests/hostile/pcap and tests/hostile/session (one README
line each), built by the writers in this module (``python -m tests.test_hostile_files`` rewrites them); each is run
through the real command line. Large inputs are generated here. A Hypothesis target mutates real files (our own
pcapng export and session writer) with flips, cuts, insertions and length rewrites.
"""

from __future__ import annotations

import ast
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import tokenize
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from inspector.interop.cli import main as cli_main
from inspector.interop.pcap_import import CaptureError, CaptureImporter
from inspector.interop.session_io import SessionLoader, SessionWriter
from proxy.codec import record_to_dict
from proxy.model import (
    Clock,
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    Notice,
    Record,
    UpstreamConnected,
)
from proxy.session import MAGIC, SessionError, encode_header, open_session

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = Path(__file__).resolve().parent / "hostile"
PCAP_DIR = HOSTILE / "pcap"
SESSION_DIR = HOSTILE / "session"

# ------------------------------------------------------------------------------------------------ capture writers
# Written with struct here (not scapy), so the corpus is byte-for-byte reproducible and every field can lie.

C = ("127.0.0.1", 50123)
S = ("127.0.0.1", 5555)
WELCOME = "Hello from the exercise server! 🚀".encode()
REPLY = "Ping received! 📥".encode()
MESSAGES = [WELCOME, REPLY, b"ping 1", b"pong 1", b"ping 2", b"pong 2", b"ping 3", b"pong 3"]
DAMAGED = 5
"""Index of the packet the damaged files spoil ("ping 1"): the welcome and the reply come before it."""
BEFORE = MESSAGES[:2]
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int, payload: bytes = b"", *,
          ihl: int = 5, doff: int = 5, total: int | None = None) -> bytes:
    """Ethernet + IPv4 + TCP. ``ihl``/``doff`` are written as given (they may lie); the headers are 20 bytes
    plus zero options up to what they say when they say more."""
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (doff & 15) << 4, flags,
                      65535, 0, 0) + b"\0" * max(0, doff * 4 - 20)
    ip_opts = b"\0" * max(0, ihl * 4 - 20)
    length = 20 + len(ip_opts) + len(tcp) + len(payload) if total is None else total
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 15), 0, length, 0, 0x4000, 64, 6, 0,
                     bytes(map(int, src[0].split("."))), bytes(map(int, dst[0].split(".")))) + ip_opts
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + tcp + payload


def exchange(ic: int = 1000, is_: int = 5000) -> list[tuple[int, bytes]]:
    """(time in ns, frame): handshake, welcome, reply, three ping/pongs, both FINs: the tutorial's exchange."""
    out = [(1_000_000_000, frame(C, S, ic, 0, SYN)), (1_001_000_000, frame(S, C, is_, ic + 1, SYN | ACK)),
           (1_002_000_000, frame(C, S, ic + 1, is_ + 1, ACK)),
           (1_010_000_000, frame(S, C, is_ + 1, ic + 1, PSH | ACK, WELCOME)),
           (1_020_000_000, frame(C, S, ic + 1, is_ + 1 + len(WELCOME), PSH | ACK, REPLY))]
    cs, ss = ic + 1 + len(REPLY), is_ + 1 + len(WELCOME)
    for n in range(1, 4):
        m, r = f"ping {n}".encode(), f"pong {n}".encode()
        out.append(((1 + n) * 1_000_000_000, frame(C, S, cs, ss, PSH | ACK, m)))
        cs += len(m)
        out.append(((1 + n) * 1_000_000_000 + 1_000_000, frame(S, C, ss, cs, PSH | ACK, r)))
        ss += len(r)
    out += [(5_000_000_000, frame(C, S, cs, ss, FIN | ACK)), (5_001_000_000, frame(S, C, ss, cs + 1, FIN | ACK)),
            (5_002_000_000, frame(C, S, cs + 1, ss + 1, ACK))]
    return out


def pcap_header(*, snaplen: int = 262_144, linktype: int = 1, nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, data: bytes, *, caplen: int | None = None, origlen: int | None = None) -> bytes:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return struct.pack("<IIII", sec, ns // 1000, len(data) if caplen is None else caplen,
                       len(data) if origlen is None else origlen) + data


def pcap(packets: list[tuple[int, bytes]], **kw: Any) -> bytes:
    return pcap_header(**kw) + b"".join(pcap_record(t, d) for t, d in packets)


def block(kind: int, body: bytes, *, length: int | None = None, trailer: int | None = None, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(e + "II", kind, n if length is None else length) + body + struct.pack(
        e + "I", n if trailer is None else trailer)


def option(code: int, value: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(bom: int = 0x1A2B3C4D, e: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(e + "IHHq", bom, 1, 0, -1), e=e)


def idb(*, linktype: int = 1, snaplen: int = 0, options: bytes = b"", e: str = "<") -> bytes:
    return block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + (options + option(0, b"", e) if options else b""),
                 e=e)


def epb(ts: int, data: bytes, *, iface: int = 0, caplen: int | None = None, e: str = "<", **kw: Any) -> bytes:
    body = struct.pack(e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data) if caplen is None else caplen,
                       len(data)) + data
    return block(6, body, e=e, **kw)


def pcapng(packets: list[tuple[int, bytes]], *, damaged: bytes | None = None, at: int = DAMAGED,
           header: bytes | None = None, unit_ns: int = 1000, e: str = "<") -> bytes:
    """A pcapng of ``packets`` (µs timestamps unless ``unit_ns`` says otherwise); ``damaged`` replaces packet ``at``."""
    blocks = [header if header is not None else shb(e=e) + idb(e=e)]
    for i, (t, d) in enumerate(packets):
        blocks.append(damaged if damaged is not None and i == at else epb(t // unit_ns, d, e=e))
    return b"".join(blocks)


def _at(packets: list[tuple[int, bytes]], i: int, replacement: bytes, **kw: Any) -> bytes:
    return pcap_header(**kw) + b"".join(replacement if j == i else pcap_record(t, d)
                                        for j, (t, d) in enumerate(packets))


def _before_ping1(extra: bytes) -> bytes:
    """The exchange with one more packet just before "ping 1": a hostile copy of it, which must not count."""
    ex = exchange()
    t = ex[DAMAGED][0] - 1000
    return pcap_header() + b"".join(pcap_record(t2, d) for t2, d in ex[:DAMAGED]) + pcap_record(t, extra) + \
        b"".join(pcap_record(t2, d) for t2, d in ex[DAMAGED:])


def _ping1(**kw: Any) -> bytes:
    cs = 1000 + 1 + len(REPLY)
    return frame(C, S, cs, 5000 + 1 + len(WELCOME), PSH | ACK, b"ping 1", **kw)


def _cut_inside(data: bytes, packets: list[tuple[int, bytes]], index: int, into: int) -> bytes:
    off = 24 + sum(16 + len(d) for _, d in packets[:index])
    return data[:off + into]


# ------------------------------------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Case:
    make: Callable[[], bytes]
    readme: str
    code: int
    """Exit status of ``sockscope import`` / ``sockscope export``."""
    says: tuple[str, ...]
    """Words the one stderr line must contain (besides the file's name)."""
    kept: list[bytes] | None
    """The messages the output holds (None: no output is written)."""
    lines: int = 1
    """stderr lines (an error, or warnings for damage that is not an error)."""


def _ex() -> list[tuple[int, bytes]]:
    return exchange()


PCAP_CASES: dict[str, Case] = {
    "epb-timestamp-all-ones.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(0xFFFF_FFFF_FFFF_FFFF, _ex()[DAMAGED][1])),
        "packet 6 has the timestamp 0xFFFFFFFFFFFFFFFF (µs): 584,542 years, beyond any 64-bit nanosecond time",
        2, ("packet 6", "timestamp", "0xffffffffffffffff"), BEFORE),
    "block-length-4gib.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], length=0xFFFFFFF0)),
        "packet 6's block says it is 4 GiB long (0xFFFFFFF0) in a file of 1.3 KB",
        2, ("4294967280", "block"), BEFORE),
    "block-length-zero.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], length=0)),
        "packet 6's block length is 0 (a block is at least 12 bytes)", 2, ("block", "length 0"), BEFORE),
    "block-length-unaligned.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], length=91, trailer=91)),
        "packet 6's block length is 91, not a multiple of 4", 2, ("block", "multiple of 4"), BEFORE),
    "block-trailer-mismatch.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], trailer=0x1234)),
        "packet 6's block ends with a length (0x1234) that differs from the one it starts with",
        2, ("block", "trailing length"), BEFORE),
    "epb-too-short.pcapng": Case(
        lambda: pcapng(_ex(), damaged=block(6, struct.pack("<I", 0))),
        "packet 6 is an enhanced packet block of 16 bytes, too short for its 20-byte fixed part",
        2, ("packet 6", "too short"), BEFORE),
    "epb-caplen-past-block.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], caplen=100_000)),
        "packet 6 says it captured 100,000 bytes; its block holds 60", 2, ("packet 6", "100000"), BEFORE),
    "unknown-interface.pcapng": Case(
        lambda: pcapng(_ex(), damaged=epb(_ex()[DAMAGED][0] // 1000, _ex()[DAMAGED][1], iface=7)),
        "packet 6 names interface 7; the file describes one interface", 2, ("packet 6", "interface 7"), BEFORE),
    "bad-byte-order-magic.pcapng": Case(
        lambda: pcapng(_ex(), header=shb(bom=0x12345678) + idb()),
        "the section header's byte-order magic is 0x12345678, neither order of 0x1A2B3C4D",
        2, ("byte-order magic",), None),
    "tsresol-seconds-huge-timestamp.pcapng": Case(
        lambda: pcapng(_ex(), header=shb() + idb(options=option(9, b"\x80")), unit_ns=1_000_000_000,
                       damaged=epb(1 << 40, _ex()[DAMAGED][1])),
        "the interface counts whole seconds (if_tsresol 2^0); packet 6 is at 2^40 s, past any 64-bit ns time",
        2, ("packet 6", "timestamp"), BEFORE),
    "tsresol-huge-exponent.pcapng": Case(
        lambda: pcapng(_ex(), header=shb() + idb(options=option(9, b"\x7f"))),
        "if_tsresol 10^-127 s: legal, absurd; every time rounds to 0 ns and everything imports",
        0, (), MESSAGES, lines=0),
    "tsoffset-huge.pcapng": Case(
        lambda: pcapng(_ex(), header=shb() + idb(options=option(14, struct.pack("<q", 1 << 62)))),
        "if_tsoffset adds 2^62 seconds to every timestamp: the first packet is already out of range",
        2, ("packet 1", "timestamp"), []),
    "option-length-lies.pcapng": Case(
        lambda: pcapng(_ex(), header=shb() + block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 4000))),
        "the interface block's if_tsresol option claims 4,000 bytes inside a 24-byte block",
        2, ("option",), []),
    "caplen-4gib.pcap": Case(
        lambda: _at(_ex(), DAMAGED, struct.pack("<IIII", 6, 0, 0xFFFFFF00, 60) + _ex()[DAMAGED][1],
                    snaplen=0xFFFFFFFF),
        "classic pcap whose snaplen is 0xFFFFFFFF and whose packet 6 claims 4 GiB captured",
        2, ("packet 6", "4294967040"), BEFORE),
    "header-cut.pcap": Case(
        lambda: pcap_header()[:13], "a classic pcap cut inside its 24-byte file header", 2, ("header",), None),
    "cut-inside-packet-7.pcap": Case(
        lambda: _cut_inside(pcap(_ex()), _ex(), 6, 30),
        "a classic pcap cut 30 bytes into packet 7 (a copy of a capture still being written): not an error",
        0, ("ends inside packet 7",), [*MESSAGES[:3]]),
    "ipv4-ihl-zero.pcap": Case(
        lambda: _before_ping1(_ping1(ihl=0)),
        "an extra copy of \"ping 1\" whose IPv4 header length is 0: skipped, not read as TCP from the IP header",
        0, ("packet 6", "IPv4 header length 0"), MESSAGES),
    "tcp-data-offset-2.pcap": Case(
        lambda: _before_ping1(_ping1(doff=2)),
        "an extra copy of \"ping 1\" whose TCP data offset is 8 bytes: skipped, its header never becomes payload",
        0, ("packet 6", "TCP header length 8"), MESSAGES),
    "tcp-data-offset-past-ip.pcap": Case(
        lambda: _before_ping1(_ping1(doff=15, total=20 + 24)),
        "an extra copy of \"ping 1\" whose TCP header (60 bytes) is longer than the IPv4 packet says it is",
        0, ("packet 6", "TCP header length 60"), MESSAGES),
}


def _session_head() -> bytes:
    return encode_header(clock=Clock(0, 1_700_000_000_000_000_000), listen=("127.0.0.1", 5556), target=S,
                         framing={"c2s": "raw", "s2c": "raw"}, created_wall_ns=1_700_000_000_000_000_000)


def _good_records() -> list[Record]:
    return [ConnectionOpened(1, C, S, 1_000), UpstreamConnected(1, S, 1_100),
            Message(1, 1, Direction.S2C, 0, WELCOME, 2_000, 2_000),
            Message(2, 1, Direction.C2S, 0, REPLY, 3_000, 3_000)]


def _after_records() -> list[Record]:
    return [Message(3, 1, Direction.C2S, 1, b"ping 1", 4_000, 4_000),
            ConnectionClosed(1, CloseReason.CLOSED, "", 5_000, len(REPLY) + 6, len(WELCOME), 2, 1)]


def _rec(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _records_bytes(records: list[Record]) -> bytes:
    return b"".join(_rec(record_to_dict(r)) for r in records)


def session(hostile: bytes, *, head: bytes | None = None, after: bool = True) -> bytes:
    """A session: the header, four good records, ``hostile`` bytes, then more good records."""
    return (_session_head() if head is None else head) + _records_bytes(_good_records()) + hostile + (
        _records_bytes(_after_records()) if after else b"")


def _header_with(**changes: Any) -> bytes:
    h = {"format": 1, "created_wall_ns": 1, "clock": {"mono_ns": 0, "wall_ns": 0}, "listen": None,
         "target": ["127.0.0.1", 5555], "framing": {"c2s": "raw", "s2c": "raw"}, "sockscope_version": "test"}
    h.update(changes)
    body = msgpack.packb(h, use_bin_type=True)
    return MAGIC + struct.pack(">I", len(body)) + body


def _message_dict(**changes: Any) -> dict[str, Any]:
    d = record_to_dict(Message(3, 1, Direction.C2S, 1, b"ping 1", 4_000, 4_000))
    d.update(changes)
    return d


def _opened_dict(**changes: Any) -> dict[str, Any]:
    d = record_to_dict(ConnectionOpened(2, C, S, 3_500))
    d.update(changes)
    return d


SESSION_CASES: dict[str, Case] = {
    "record-length-4gib.sockscope": Case(
        lambda: session(b"\xff\xff\xff\xff" + b"\x00" * 64),
        "after four records, a record length of 0xFFFFFFFF (4 GiB) in a file of 400 bytes",
        2, ("length 4294967295",), BEFORE),
    "record-length-zero.sockscope": Case(
        lambda: session(b"\x00\x00\x00\x00"),
        "a record length of 0 followed by more records (zero padding only counts at the very end)",
        2, ("length 0",), BEFORE),
    "record-not-a-map.sockscope": Case(
        lambda: session(_rec([1, 2, 3])), "a record that is a msgpack array, not a map", 2, ("expected a map",),
        BEFORE),
    "record-wrong-types.sockscope": Case(
        lambda: session(_rec(_message_dict(data="ping 1", id="three"))),
        "a message record whose id is a string and whose data is text, not bytes", 2, ("record #5",), BEFORE),
    "record-not-msgpack.sockscope": Case(
        lambda: session(struct.pack(">I", 8) + b"\xc1" * 8), "a record of 8 bytes msgpack never uses (0xc1)",
        2, ("record #5", "not msgpack"), BEFORE),
    "record-time-out-of-range.sockscope": Case(
        lambda: session(_rec(_message_dict(arrival_ns=(1 << 64) - 1, release_ns=-(1 << 63)))),
        "a message arriving at 2^64-1 ns and released at -2^63 ns", 2, ("record #5", "arrival_ns"), BEFORE),
    "record-port-out-of-range.sockscope": Case(
        lambda: session(_rec(_opened_dict(client_addr=["127.0.0.1", 70_000]))),
        "a connection whose client port is 70000", 2, ("record #5", "70000"), BEFORE),
    "record-array-bomb.sockscope": Case(
        lambda: session(_rec(_message_dict(delays=[[]] * 5000))),
        "a message whose delays list holds 5,000 empty arrays (each would become a Python list)",
        2, ("record #5",), BEFORE),
    "record-huge-string.sockscope": Case(
        lambda: session(_rec(_message_dict(origin="x" * 50_000))),
        "a message whose origin is a 50 KB string: the one-line error quotes a short prefix, not the string",
        2, ("record #5",), BEFORE),
    "cut-inside-last-record.sockscope": Case(
        lambda: session(_rec(_message_dict())[:-5], after=False),
        "a recording cut 5 bytes before the end of its last record (a crash): every whole record reads, no error",
        0, ("ends inside a record",), BEFORE),
    "header-length-4gib.sockscope": Case(
        lambda: MAGIC + b"\xff\xff\xff\xff" + b"\x80" * 32, "the header length is 0xFFFFFFFF", 2,
        ("header", "4294967295"), None),
    "header-not-msgpack.sockscope": Case(
        lambda: MAGIC + struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1", "the header is 4 bytes msgpack never uses",
        2, ("header",), None),
    "header-not-a-map.sockscope": Case(
        lambda: MAGIC + struct.pack(">I", 4) + msgpack.packb([1, 2, 3]), "the header is an array",
        2, ("header", "map"), None),
    "header-created-not-a-number.sockscope": Case(
        lambda: session(b"", head=_header_with(created_wall_ns="soon")),
        "the header's created_wall_ns is the string 'soon'", 2, ("header", "created_wall_ns"), None),
    "header-clock-infinite.sockscope": Case(
        lambda: session(b"", head=_header_with(clock={"mono_ns": float("inf"), "wall_ns": 0})),
        "the header's clock anchor is infinity", 2, ("header", "clock"), None),
    "header-clock-huge.sockscope": Case(
        lambda: session(b"", head=_header_with(clock={"mono_ns": -(1 << 63), "wall_ns": (1 << 64) - 1})),
        "the header's clock anchor is -2^63 / 2^64-1 ns, so wall times would be 1,000 years off the calendar",
        2, ("header", "clock"), None),
    "header-format-zero.sockscope": Case(
        lambda: session(b"", head=_header_with(format=0)), "the header says format 0 (formats start at 1)",
        2, ("header", "format"), None),
    "host-with-python-code.sockscope": Case(
        lambda: session(_rec(_opened_dict(target_addr=["x\nimport os; os.system('echo PWNED')\r#", 5555]))
                        + _rec(_message_dict(id=9, conn_id=2, seq=0, data=b"hello from 2"))),
        "a connection whose server host holds a newline and Python code, for the replay-script export",
        0, (), [*BEFORE, b"hello from 2", b"ping 1"], lines=0),
}

CORPUS: dict[Path, dict[str, Case]] = {PCAP_DIR: PCAP_CASES, SESSION_DIR: SESSION_CASES}


def write_corpus() -> None:
    """Rewrite tests/hostile/{pcap,session} and their READMEs from the cases above."""
    for folder, cases in CORPUS.items():
        folder.mkdir(parents=True, exist_ok=True)
        kind = folder.name
        lines = [f"# Hostile {kind} files", "",
                 "Built by `tests/test_hostile_files.py` (`python -m tests.test_hostile_files` rewrites them); "
                 "each is checked there through the real command line.", ""]
        for name, case in cases.items():
            (folder / name).write_bytes(case.make())
            lines.append(f"- `{name}`: {case.readme}")
        (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_corpus_files_are_the_ones_this_module_builds() -> None:
    for folder, cases in CORPUS.items():
        files = {p.name for p in folder.iterdir() if p.name != "README.md"}
        assert files == set(cases), f"{folder}: run `python -m tests.test_hostile_files` to rewrite the corpus"
        readme = (folder / "README.md").read_text(encoding="utf-8")
        for name, case in cases.items():
            assert (folder / name).read_bytes() == case.make(), name
            assert f"- `{name}`: " in readme, name
            assert len((folder / name).read_bytes()) < 64 << 10  # small files only; big inputs are made in tests


# ------------------------------------------------------------------------------------------------ command line


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "inspector.interop", *argv], capture_output=True, text=True,
                          encoding="utf-8", timeout=60, cwd=ROOT, env=env)


def _session_messages(path: Path) -> list[bytes]:
    with open_session(path) as s:
        return [r.data for r in s if isinstance(r, Message)]


def _check_stderr(run: subprocess.CompletedProcess[str], path: Path, case: Case) -> None:
    err = run.stderr
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == case.lines, err
    assert all(len(line) < 1000 for line in lines), err
    if case.lines:
        assert str(path) in lines[-1], err
        for word in case.says:
            assert word in lines[-1], (word, err)
    assert run.returncode == case.code, (run.returncode, err)
    if case.code == 2:
        assert lines[-1].startswith(("sockscope import: error: ", "sockscope export: error: ")), err


@pytest.mark.slow  # a process per file; the readers themselves are tested in-process above
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(PCAP_CASES))
def test_hostile_capture_through_sockscope_import(name: str, tmp_path: Path) -> None:
    case = PCAP_CASES[name]
    path = PCAP_DIR / name
    out = tmp_path / "out.sockscope"
    run = _run("import", str(path), "-o", str(out))
    _check_stderr(run, path, case)
    if case.kept is None:
        assert not out.exists()
    else:
        assert _session_messages(out) == case.kept
        with open_session(out) as s:
            errors = [r.text for r in s if isinstance(r, Notice) and r.level == "error"]
        assert len(errors) == (case.code == 2)  # the saved session says its source was damaged, and how
        assert all(f"error: {e}; " in run.stderr for e in errors)


@pytest.mark.slow  # a process per file; the readers themselves are tested in-process above
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(SESSION_CASES))
def test_hostile_session_through_sockscope_export(name: str, tmp_path: Path) -> None:
    case = SESSION_CASES[name]
    path = SESSION_DIR / name
    out = tmp_path / "out.jsonl"
    run = _run("export", str(path), "--to", str(out))
    _check_stderr(run, path, case)
    if case.kept is None:
        assert not out.exists()
    else:
        lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert [bytes.fromhex(d["hex"]) for d in lines if d["type"] == "message"] == case.kept


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["record-time-out-of-range.sockscope", "record-port-out-of-range.sockscope",
                                  "record-length-4gib.sockscope"])
def test_damaged_session_exports_to_pcapng_up_to_the_damage(name: str, tmp_path: Path) -> None:
    from inspector.interop.pcap_import import import_capture

    case = SESSION_CASES[name]
    out = tmp_path / "out.pcapng"
    run = _run("export", str(SESSION_DIR / name), "--to", str(out))
    _check_stderr(run, SESSION_DIR / name, case)
    records, report = import_capture(out)  # the pcapng is whole and holds what came before the damage
    assert [r.data for r in records if isinstance(r, Message)] == case.kept
    assert report.damage is None and not report.truncated_file


@pytest.mark.timeout(60)
def test_replay_script_of_a_hostile_session_runs_no_code_from_it(tmp_path: Path) -> None:
    script = tmp_path / "replay.py"
    run = _run("export", str(SESSION_DIR / "host-with-python-code.sockscope"), "--to", str(script))
    assert run.returncode == 0, run.stderr
    _only_in_strings_and_comments(script.read_text(encoding="utf-8"), "PWNED")


def _only_in_strings_and_comments(source: str, marker: str) -> None:
    tree = ast.parse(source)  # still a valid script...
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"socket", "sys", "time"}, imported  # ...running only its own code
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "system"]
    seen = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if marker in tok.string:
            assert tok.type in (tokenize.COMMENT, tokenize.STRING), tok
            seen += 1
    assert seen, "the marker should still be shown, harmlessly"


def test_replay_script_source_name_cannot_break_out_of_the_docstring(tmp_path: Path) -> None:
    from inspector.interop.replay_script import ReplayScriptExporter

    out = tmp_path / "r.py"
    x = ReplayScriptExporter(out, source='evil"""\nimport os; os.system("echo PWNED")\n"""')
    x.add_many(_good_records())
    x.close()
    _only_in_strings_and_comments(out.read_text(encoding="utf-8"), "PWNED")
    y = ReplayScriptExporter(out, source="s")
    y.add_many([ConnectionOpened(-3, C, S, 0), Message(1, -3, Direction.C2S, 0, b"x", 1, 1)])
    y.close()
    ast.parse(out.read_text(encoding="utf-8"))  # a negative connection id still makes a valid name


# ------------------------------------------------------------------------------------------------ what still reads


def _formats() -> dict[str, bytes]:
    ex = exchange()
    half = len(ex) // 2
    return {
        "pcap-little-endian-µs": pcap(ex),
        "pcap-big-endian-ns": struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1) + b"".join(
            struct.pack(">IIII", t // 1_000_000_000, t % 1_000_000_000, len(d), len(d)) + d for t, d in ex),
        "pcap-gzip": __import__("gzip").compress(pcap(ex)),
        "pcapng-little-endian": pcapng(ex),
        "pcapng-big-endian": pcapng(ex, e=">"),
        "pcapng-ns-two-sections-and-other-blocks": (
            shb() + idb(linktype=113) + idb(options=option(9, b"\x09")) + block(5, b"\0" * 16)
            + b"".join(epb(t, d, iface=1) for t, d in ex[:half])
            + shb(e=">") + idb(e=">", options=option(9, b"\x09", ">") + option(14, struct.pack(">q", 0), ">"))
            + b"".join(epb(t, d, e=">") for t, d in ex[half:])),
    }


@pytest.mark.parametrize("name", list(_formats()))
def test_every_capture_format_still_reads_exactly(name: str, tmp_path: Path) -> None:
    path = tmp_path / "c.cap"
    path.write_bytes(_formats()[name])
    imp = CaptureImporter(path)
    records = list(imp.records())
    msgs = [r for r in records if isinstance(r, Message)]
    assert [m.data for m in msgs] == MESSAGES
    assert [m.arrival_ns for m in msgs] == [t for t, _ in exchange()[3:11]]  # the data packets' times
    assert imp.report.damage is None and not imp.report.truncated_file and imp.report.warnings == []
    assert any(isinstance(r, ConnectionClosed) for r in records)


# ------------------------------------------------------------------------------------------------ big inputs


def _peak_while(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(120)
def test_a_session_record_of_nested_empty_arrays_costs_no_more_than_the_file(tmp_path: Path) -> None:
    # 2 million empty arrays in 2 MB, nested 250 to an array (small arrays are allowed): about 120 MB unpacked.
    inner = b"\xdc" + struct.pack(">H", 250) + b"\x90" * 250
    middle = b"\xdc" + struct.pack(">H", 250) + inner * 250
    outer = b"\xdc" + struct.pack(">H", 32) + middle * 32
    body = msgpack.packb(_message_dict(), use_bin_type=True)
    body = b"\x8c" + body[1:] + msgpack.packb("extra") + outer  # one more key whose value is the bomb
    path = tmp_path / "bomb.sockscope"
    path.write_bytes(session(struct.pack(">I", len(body)) + body))
    size = path.stat().st_size

    def read() -> str:
        with pytest.raises(SessionError) as e, open_session(path) as s:
            list(s)
        return str(e.value)

    text, peak = _peak_while(read)
    assert "record #5" in text and "\n" not in text and str(path) in text
    assert peak < 4 * size, f"{peak:,} bytes to read a {size:,}-byte file"


@pytest.mark.timeout(120)
def test_tcp_sequence_jumps_and_wraps_cost_no_memory_or_time(tmp_path: Path) -> None:
    """Segments gigabytes ahead, behind, and across the 32-bit wrap: buffered as what the file holds, no more."""
    ic, is_ = 0xFFFF_FF00, 5000  # the client's sequence numbers wrap after 255 bytes
    hs = exchange(ic, is_)[:3]
    packets = list(hs)
    sent = bytearray()
    seq = ic + 1
    for i in range(2000):  # 2,000 x 100 bytes across the wrap, each followed by a jump of 1..3 GiB
        chunk = bytes([i % 251]) * 100
        packets.append((2_000_000_000 + i, frame(C, S, seq, is_ + 1, PSH | ACK, chunk)))
        sent += chunk
        packets.append((2_000_000_000 + i, frame(C, S, seq + (i % 3 + 1) * (1 << 30), is_ + 1, PSH | ACK, b"j" * 100)))
        seq += 100
    path = tmp_path / "jumps.pcap"
    path.write_bytes(pcap(packets))

    def run() -> tuple[list[Record], Any]:
        imp = CaptureImporter(path)
        return list(imp.records()), imp.report

    (records, report), peak = _peak_while(run)
    got = b"".join(r.data for r in records if isinstance(r, Message) and r.direction is Direction.C2S)
    assert got == bytes(sent)  # the jumps never land in the stream and never stop it
    assert report.damage is None
    assert peak < 40 * path.stat().st_size


def test_reassembly_offsets_past_2_gib_unwrap_relative_to_the_stream() -> None:
    """A stream longer than 2 GiB: sequence numbers are unwrapped against the bytes delivered so far."""
    imp = CaptureImporter("unused.pcap")
    chunk = b"z" * 65_536
    imp._tcp(C, S, 7, SYN, b"", 0, 0)
    imp._tcp(S, C, 9, SYN | ACK, b"", 0, 0)
    seq = 8
    total = 0
    for _ in range((1 << 31) // len(chunk) + 8):  # 2 GiB + 512 KiB, one 64 KiB segment at a time
        imp._tcp(C, S, seq & 0xFFFFFFFF, PSH | ACK, chunk, 0, 0)
        seq += len(chunk)
        total += len(chunk)
        imp._out.clear()
    c = next(iter(imp._conns.values()))
    assert c.half[0].off == total and not c.half[0].ooo and imp.report.retransmitted == 0


# ------------------------------------------------------------------------------------------------ the window


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Iterator[Any]:
    from PySide6.QtCore import QSettings

    from inspector.bridge import ThreadLink
    from inspector.ui.main_window import MainWindow

    w = MainWindow(None, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   link_factory=ThreadLink)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.sessions.cancel()
    w.stop_link()
    w.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("folder", "name", "words"), [
    (PCAP_DIR, "epb-timestamp-all-ones.pcapng", ("packet 6", "timestamp")),
    (PCAP_DIR, "block-length-4gib.pcapng", ("block",)),
    (SESSION_DIR, "record-length-4gib.sockscope", ("length 4294967295",)),
    (SESSION_DIR, "record-time-out-of-range.sockscope", ("arrival_ns",)),
])
def test_window_open_of_a_damaged_file_says_what_and_keeps_what_came_before(
        qtbot: Any, window: Any, folder: Path, name: str, words: tuple[str, ...]) -> None:
    w = window
    w.sessions.open_file(str(folder / name))
    qtbot.waitUntil(lambda: not w.sessions.busy, timeout=10_000)
    error = w.sessions.last_error or ""
    assert name in error and "\n" not in error, error
    for word in words:
        assert word in error, error
    assert name in w.statusBar().currentMessage()
    assert [w.store.message(i).data for i in range(len(w.store))] == BEFORE


# ------------------------------------------------------------------------------------------------ fuzzing


def _seed_pcapng() -> bytes:
    from inspector.interop.pcapng_export import export_records

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "seed.pcapng"
        export_records([*_good_records(), *_after_records()], p, clock=Clock(0, 1_700_000_000_000_000_000))
        return p.read_bytes()


def _seed_session() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "seed.sockscope"
        with SessionWriter(p, clock=Clock(0, 1_700_000_000_000_000_000), target=S) as sw:
            sw.write_many([*_good_records(), *_after_records()])
        return p.read_bytes()


SEEDS: dict[str, bytes] = {}


def _seed(kind: str) -> bytes:
    if kind not in SEEDS:
        SEEDS[kind] = {"pcapng": _seed_pcapng, "pcap": lambda: pcap(exchange()), "session": _seed_session}[kind]()
    return SEEDS[kind]


def _length_fields(kind: str, data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format) of every length field of the seed: where rewriting a length is interesting."""
    out: list[tuple[int, str]] = []
    if kind == "pcapng":
        off = 0
        while off + 8 <= len(data):
            n = struct.unpack_from("<I", data, off + 4)[0]
            out += [(off + 4, "<I"), (off + n - 4, "<I")]
            if struct.unpack_from("<I", data, off)[0] == 6:
                out.append((off + 20, "<I"))  # captured length
            off += n
    elif kind == "pcap":
        off = 24
        while off + 16 <= len(data):
            out += [(off + 8, "<I"), (off + 12, "<I"), (off, "<I")]
            off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    else:
        out.append((len(MAGIC), ">I"))
        off = len(MAGIC) + 4 + struct.unpack_from(">I", data, len(MAGIC))[0]
        while off + 4 <= len(data):
            out.append((off, ">I"))
            off += 4 + struct.unpack_from(">I", data, off)[0]
    return out


INTERESTING = [0, 1, 4, 11, 12, 13, 20, 27, 28, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF]


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(_seed(kind))
    fields = _length_fields(kind, bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "length", "length", "bytes"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "bytes":
            data[pos:pos + 8] = draw(st.sampled_from([b"\xff" * 8, b"\0" * 8, b"\x7f\xff\xff\xff\xff\xff\xff\xff"]))
        else:
            off, fmt = draw(st.sampled_from(fields))
            if off + 4 <= len(data):
                value = draw(st.sampled_from(INTERESTING) | st.integers(0, 0xFFFFFFFF))
                struct.pack_into(fmt, data, off, value)
    return bytes(data)


FUZZ = settings(max_examples=int(os.environ.get("SOCKSCOPE_FUZZ_EXAMPLES", "150")), deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow])
"""``SOCKSCOPE_FUZZ_EXAMPLES=5000`` for a longer hunt."""
MEMORY_BUDGET = 24 << 20
"""Generous: the files are a few KB; a reader that believes a length field allocates gigabytes."""


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    """A directory for the examples' files, after importing what the exports import (scapy, the decoders), so
    no example is timed or measured for an import."""
    with tempfile.TemporaryDirectory(prefix="sockscope-fuzz-") as d:
        tmp = Path(d)
        path = tmp / "warm.sockscope"
        path.write_bytes(_seed("session"))
        for fmt in (".jsonl", ".pcapng", ".py"):
            cli_main(["export", str(path), "--to", str(tmp / f"warm{fmt}")], out=io.StringIO(), err=io.StringIO())
        (tmp / "warm.pcap").write_bytes(_seed("pcap"))
        cli_main(["import", str(tmp / "warm.pcap"), "-o", str(path)], out=io.StringIO(), err=io.StringIO())
        yield tmp


def _one_line_naming(text: str, path: Path) -> None:
    assert "\n" not in text and str(path) in text and len(text) < 2000, text


def _fuzz_import(tmp: Path, data: bytes, suffix: str) -> None:
    path = tmp / f"in{suffix}"
    path.write_bytes(data)
    out = tmp / "out.sockscope"

    def run() -> None:
        imp = CaptureImporter(path, framing="lines")
        try:
            for _ in imp.records():
                pass
        except CaptureError as e:
            _one_line_naming(str(e), path)
            event("refused")
        else:
            if imp.report.damage is not None:
                _one_line_naming(imp.report.damage, path)
            event("damage" if imp.report.damage else "cut" if imp.report.truncated_file else "read")
        o, e2 = io.StringIO(), io.StringIO()
        code = cli_main(["import", str(path), "-o", str(out)], out=o, err=e2)
        assert code in (0, 2), e2.getvalue()
        errors = [line for line in e2.getvalue().splitlines() if ": error: " in line]
        assert len(errors) == (code == 2), e2.getvalue()
        if errors:
            _one_line_naming(errors[0], path)

    _, peak = _peak_while(run)
    assert peak < MEMORY_BUDGET, f"{peak:,} bytes for a {len(data):,}-byte file"


@pytest.mark.slow
@FUZZ
@given(data=mutated("pcapng"))
def test_fuzz_pcapng_import(fuzz_dir: Path, data: bytes) -> None:
    _fuzz_import(fuzz_dir, data, ".pcapng")


@pytest.mark.slow
@FUZZ
@given(data=mutated("pcap"))
def test_fuzz_pcap_import(fuzz_dir: Path, data: bytes) -> None:
    _fuzz_import(fuzz_dir, data, ".pcap")


@pytest.mark.slow
@FUZZ
@given(data=mutated("session"), fmt=st.sampled_from([".jsonl", ".pcapng", ".py"]))
def test_fuzz_session_reader_and_export(fuzz_dir: Path, data: bytes, fmt: str) -> None:
    path = fuzz_dir / "in.sockscope"
    path.write_bytes(data)

    def run() -> None:
        try:
            with open_session(path) as s:
                for _ in s:
                    pass
            event("cut" if s.truncated else "read")
        except SessionError as e:
            _one_line_naming(str(e), path)
            event("refused" if "record" not in str(e) else "damage")
        try:
            loader = SessionLoader(path)
        except SessionError:
            pass
        else:
            with loader:
                while not loader.done:
                    try:
                        loader.next_batch(max_records=3)
                    except SessionError as e:
                        _one_line_naming(str(e), path)
                        break
        o, e2 = io.StringIO(), io.StringIO()
        code = cli_main(["export", str(path), "--to", str(fuzz_dir / f"out{fmt}")], out=o, err=e2)
        assert code in (0, 2), e2.getvalue()
        errors = [line for line in e2.getvalue().splitlines() if ": error: " in line]
        assert len(errors) == (code == 2), e2.getvalue()
        if errors:
            _one_line_naming(errors[0], path)

    _, peak = _peak_while(run)
    assert peak < MEMORY_BUDGET, f"{peak:,} bytes for a {len(data):,}-byte file"


if __name__ == "__main__":
    write_corpus()
    print(f"wrote {sum(len(c) for c in CORPUS.values())} files under {HOSTILE}")

"""``sockscope export`` and ``sockscope import``: the interop formats from the command line, without Qt.

Role: argument parsing and progress/summary lines for

- ``sockscope export SESSION --to out.pcapng | out.jsonl | replay.py`` (format chosen by the extension, or
  ``--format``), optionally ``--filter EXPR`` (the window's filter language) and ``--conn N``;
- ``sockscope import CAPTURE.pcap[ng] -o SESSION [--framing F] [--server-port P]``, which writes a session file
  readable by ``proxy.session`` (and the window's File → Open session…), reporting gaps and damage.

Exit status: 0 done (gaps, warnings and a file cut short inside its last packet or record are reported on
stderr but are not failures); 2 a usage error, or an input that is missing, not a capture/session, or damaged;
1 the output could not be written. An input error is one line on stderr naming the file, the place and what is
wrong, never a traceback; with damage further in, everything before it is still written to the output (a
complete file) and the line says so.
Must not import: PySide6, ``inspector.ui``; scapy only through the exporters, lazily.
Thread: main thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

from proxy.model import (
    ConnectionClosed,
    ConnectionOpened,
    HalfClosed,
    Message,
    MessageUpdated,
    Record,
    UpstreamConnected,
)
from proxy.session import SessionError, SessionReader, open_session, shown_path

__all__ = ["FORMATS", "build_parser", "format_for", "main"]

FORMATS = {".pcapng": "pcapng", ".pcap": "pcapng", ".jsonl": "jsonl", ".ndjson": "jsonl", ".py": "script"}


class _Usage(Exception):
    pass


def format_for(path: str, explicit: str | None = None) -> str:
    """``pcapng``, ``jsonl`` or ``script`` for an output path (by extension) or an explicit ``--format``."""
    if explicit:
        return explicit
    ext = os.path.splitext(path)[1].lower()
    try:
        return FORMATS[ext]
    except KeyError:
        raise _Usage(f"cannot tell the format of {path!r} from its extension; use .pcapng, .jsonl or .py "
                     "(or --format)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sockscope", description="Export sessions and import captures.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="export a session file to pcapng, JSON lines or a replay script",
                       description="Export a session (from --record FILE or the window's Save session…).")
    e.add_argument("session", help="a sockscope session file")
    e.add_argument("--to", "-o", required=True, metavar="OUT",
                   help="out.pcapng (Wireshark), out.jsonl (JSON lines) or replay.py (a Python script)")
    e.add_argument("--format", choices=["pcapng", "jsonl", "script"], help="override the extension")
    e.add_argument("--filter", metavar="EXPR", help="only messages matching this filter (as in the window)")
    e.add_argument("--conn", type=int, action="append", metavar="N", help="only connection N (repeatable)")
    e.add_argument("--mss", type=int, default=65_000, help="pcapng: largest TCP payload per frame")
    e.add_argument("--engine", choices=["fast", "scapy"], default="fast",
                   help="pcapng: build frames with struct (fast) or with scapy's layers (slow reference)")
    e.add_argument("--no-decode", action="store_true", help="jsonl: leave out the decoded views (faster)")
    i = sub.add_parser("import", help="import a pcap/pcapng capture as a session file",
                       description="Reassemble the TCP connections of a capture into a sockscope session.")
    i.add_argument("capture", help="a .pcap or .pcapng file (tcpdump, Wireshark, dumpcap)")
    i.add_argument("-o", "--output", required=True, metavar="SESSION", help="the session file to write")
    i.add_argument("--framing", default="raw", metavar="F",
                   help="raw, lines, len16, len32, msgpack, json, fixed:N or c2s=...,s2c=... (default raw)")
    i.add_argument("--server-port", type=int, action="append", metavar="P",
                   help="the server's port, for connections whose handshake is not in the capture")
    return p


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from proxy.cli import console_safe

    console_safe()
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from inspector.interop.pcap_import import CaptureError

    try:
        if args.command == "export":
            return _export(args, out, err)
        return _import(args, out, err)
    except (_Usage, SessionError, CaptureError) as e:
        print(f"sockscope {args.command}: error: {e}", file=err)
        return 2
    except OSError as e:  # writing the output (input errors are SessionError/CaptureError)
        print(f"sockscope {args.command}: error: {' '.join(str(e).split())}", file=err)
        return 1


class _UntilDamage:
    """The records of a session up to a corrupt one: iteration ends there, ``error`` keeps the reason, so the
    exporters finish (and close) a complete file holding everything before the damage."""

    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.error: SessionError | None = None

    def __iter__(self) -> Iterator[Record]:
        try:
            yield from self._records
        except SessionError as e:
            self.error = e


def _selected(records: Iterator[Record], args: argparse.Namespace) -> Iterator[Record]:
    conns = set(args.conn) if args.conn else None
    pred = None
    if args.filter:
        from inspector.filters import FilterError, parse_filter

        try:
            pred = parse_filter(args.filter).predicate()
        except FilterError as e:
            raise _Usage(f"--filter: {e}") from None
    if conns is None and pred is None:
        yield from records
        return
    kept: set[int] = set()
    for r in records:
        if isinstance(r, ConnectionOpened | UpstreamConnected | HalfClosed | ConnectionClosed):
            if conns is None or r.conn_id in conns:
                yield r
        elif isinstance(r, Message):
            if (conns is None or r.conn_id in conns) and (pred is None or pred(r)):
                kept.add(r.id)
                yield r
        elif isinstance(r, MessageUpdated):
            if r.msg_id in kept:
                yield r


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    fmt = format_for(args.to, args.format)
    with open_session(args.session) as reader:
        return _export_from(reader, fmt, args, out, err)


def _export_from(reader: SessionReader, fmt: str, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    header = reader.header
    t0 = time.perf_counter()
    source = _UntilDamage(iter(reader))
    records = _selected(iter(source), args)
    if fmt == "pcapng":
        from inspector.interop.pcapng_export import PcapngExporter

        try:
            ex = PcapngExporter(args.to, clock=header.clock, mss=args.mss, engine=args.engine)
        except ValueError as e:
            raise _Usage(str(e)) from None
        with ex:
            ex.add_many(records)
        s = ex.stats
        summary = (f"{s.messages:,} messages ({s.bytes[0]:,} bytes c2s, {s.bytes[1]:,} s2c) in {s.connections} "
                   f"connections, {s.packets:,} packets")
        if s.not_delivered:
            summary += f"; {s.not_delivered:,} dropped/held messages are not in the streams"
        n = s.messages
    elif fmt == "jsonl":
        from inspector.interop.jsonl import JsonlExporter

        jx = JsonlExporter(args.to, clock=header.clock, decode=not args.no_decode)
        try:
            jx.add_many(records)
        finally:
            n = jx.close()
        summary = f"{n:,} messages"
    else:
        from inspector.interop.replay_script import ReplayScriptExporter

        rx = ReplayScriptExporter(args.to, source=os.path.basename(args.session))
        rx.add_many(records)
        n = rx.close()
        summary = f"a script that sends {n:,} client messages"
    dt = time.perf_counter() - t0
    print(f"wrote {args.to}: {summary} ({dt:.2f} s)", file=out)
    if source.error is not None:
        print(f"sockscope export: error: {source.error}; everything before it is in {args.to}", file=err)
        return 2
    if reader.truncated:
        print(f"sockscope export: note: {shown_path(args.session)} ends inside a record ({reader.truncated_bytes} "
              "bytes ignored; the recording was cut short)", file=err)
    return 0


def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from inspector.interop.pcap_import import CaptureImporter
    from inspector.interop.session_io import SessionWriter
    from proxy.codec import framing_to_dict
    from proxy.framing import FramingError, parse_framing
    from proxy.model import Clock

    try:
        spec = parse_framing(args.framing)
        imp = CaptureImporter(args.capture, framing=args.framing, server_ports=args.server_port or ())
    except FramingError as e:
        raise _Usage(f"--framing: {e}") from None
    if os.path.abspath(args.output) == os.path.abspath(args.capture):
        raise _Usage("the output would overwrite the capture")
    t0 = time.perf_counter()
    tmp = args.output + ".part"
    try:
        it = imp.records()
        first = next(it, None)  # opens the capture: a file that is no capture fails before we write anything
        with SessionWriter(tmp, clock=Clock(0, 0), target=imp.first_target, framing=framing_to_dict(spec)) as w:
            if first is not None:
                w.write(first)
            w.write_many(it)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    r = imp.report
    name = shown_path(args.capture)
    for warning in r.warnings:
        print(f"sockscope import: warning: {name}: {warning}", file=err)
    for gap in r.gaps:
        print(f"sockscope import: gap: {name}: {gap}", file=err)
    extra = []
    if r.retransmitted:
        extra.append(f"{r.retransmitted:,} retransmitted")
    if r.out_of_order:
        extra.append(f"{r.out_of_order:,} out of order")
    if r.not_tcp:
        extra.append(f"{r.not_tcp:,} not TCP (skipped)")
    dt = time.perf_counter() - t0
    print(f"wrote {args.output}: {r.messages:,} messages in {r.connections} connections from {r.packets:,} packets"
          + (f" ({', '.join(extra)})" if extra else "") + (f"; {len(r.gaps)} gaps" if r.gaps else "")
          + f" ({dt:.2f} s)", file=out)
    if r.damage is not None:
        kept = (f"everything before it ({r.packets:,} packets) is in {args.output}" if r.packets else
                f"no packet came before it ({args.output} holds no messages)")
        print(f"sockscope import: error: {r.damage}; {kept}", file=err)
        return 2
    return 0

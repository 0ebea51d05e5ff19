"""Interop benchmark: pcapng export, pcap import, JSONL export, and opening a 1,000,000-message session.

Run by hand from the repository root (not collected by pytest):

    python tests/bench/bench_interop.py [--quick]

Prints one JSON object (messages/s are end to end: reading the session file, folding, framing, writing):

- ``export_pcapng``: session -> pcapng with the default fast path (struct frames, scapy's pcapng writer);
  ``export_pcapng_scapy``: the same with every frame built by scapy's layers (the slow reference).
- ``import_pcapng``: the exported pcapng -> records (scapy's reader, struct parsing, reassembly, framing) -> session.
- ``export_jsonl`` with and without the decoded views (the session holds JSON position updates), and with views
  for the same updates as text, JSON, msgpack and pickle (the pickle reader is a pure-Python simulation that
  never unpickles, so it is the slowest).
- ``open_1m``: the window opens a 1,000,000-message session: seconds until the first rows are in the table, and
  until everything is loaded (offscreen Qt). Target: first rows < 1 s.
Targets: export and import >= 50,000 messages/s.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from inspector.interop.jsonl import JsonlExporter
from inspector.interop.pcap_import import CaptureImporter
from inspector.interop.pcapng_export import PcapngExporter
from inspector.interop.session_io import SessionWriter
from proxy.model import Clock, CloseReason, ConnectionClosed, ConnectionOpened, Direction, Message, UpstreamConnected
from proxy.session import open_session


def _json_position(i: int) -> bytes:
    return b'{"type": "pos", "x": %d, "y": 7}' % i


PAYLOADS: dict[str, Callable[[int], bytes]] = {
    "json": _json_position,
    "text": lambda i: b"Ping received! %d" % i,
    "msgpack": lambda i: msgpack.packb({"type": "pos", "x": i, "y": 7}),
    "pickle": lambda i: pickle.dumps({"type": "pos", "x": i, "y": 7}),
}
"""A game's position update (or the tutorial's reply) in each format the window decodes."""


def write_session(path: Path, n: int, conns: int = 10, payload: Callable[[int], bytes] = _json_position) -> None:
    with SessionWriter(path, clock=Clock(0, 1_700_000_000_000_000_000)) as w:
        for c in range(1, conns + 1):
            w.write(ConnectionOpened(c, ("127.0.0.1", 40000 + c), ("127.0.0.1", 5555), 0))
            w.write(UpstreamConnected(c, ("127.0.0.1", 5555), 0))
        seqs = [[0, 0] for _ in range(conns + 1)]
        for i in range(n):
            c = 1 + i % conns
            d = (i // conns) & 1
            w.write(Message(i + 1, c, Direction(d), seqs[c][d], payload(i),
                            1_000 + i * 10_000, 1_000 + i * 10_000))
            seqs[c][d] += 1
        for c in range(1, conns + 1):
            w.write(ConnectionClosed(c, CloseReason.CLOSED, "", n * 10_000 + 5_000,
                                     0, 0, 0, 0))


def rate(n: int, seconds: float) -> dict[str, float]:
    return {"messages": n, "seconds": round(seconds, 3), "messages_per_s": round(n / seconds)}


def bench_export(session: Path, out: Path, engine: str, limit: int | None = None) -> dict[str, float]:
    t = time.perf_counter()
    with open_session(session) as s:
        ex = PcapngExporter(out, clock=s.header.clock, engine=engine)
        n = 0
        for r in s:
            ex.add(r)
            if isinstance(r, Message):
                n += 1
                if limit is not None and n >= limit:
                    break
        ex.close()
    return rate(ex.stats.messages, time.perf_counter() - t)


def bench_import(capture: Path, out: Path) -> dict[str, float]:
    t = time.perf_counter()
    imp = CaptureImporter(capture)
    with SessionWriter(out, clock=Clock(0, 0)) as w:
        w.write_many(imp.records())
    return rate(imp.report.messages, time.perf_counter() - t)


def bench_jsonl(session: Path, out: Path, decode: bool) -> dict[str, float]:
    t = time.perf_counter()
    with open_session(session) as s:
        jx = JsonlExporter(out, clock=s.header.clock, decode=decode)
        jx.add_many(s)
        n = jx.close()
    return rate(n, time.perf_counter() - t)


def bench_open_1m(path: Path) -> dict[str, float]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from inspector.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as d:
        w = MainWindow(None, settings=QSettings(os.path.join(d, "s.ini"), QSettings.Format.IniFormat))
        w.show()
        app.processEvents()
        t = time.perf_counter()
        w.sessions.open_session(str(path))
        app.processEvents()  # paint the first rows
        first = time.perf_counter() - t
        while w.sessions.busy:
            app.processEvents()
        total = time.perf_counter() - t
        rows = len(w.store)
        w.close()
    return {"first_rows_s": round(first, 3), "all_loaded_s": round(total, 2), "rows": rows,
            "records_per_s": round(rows / total)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 50_000 if args.quick else 200_000
    results: dict[str, object] = {"messages": n}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        session = tmp / "s.sockscope"
        write_session(session, n)
        results["export_pcapng"] = bench_export(session, tmp / "s.pcapng", "fast")
        results["export_pcapng_scapy"] = bench_export(session, tmp / "scapy.pcapng", "scapy", limit=2_000)
        results["import_pcapng"] = bench_import(tmp / "s.pcapng", tmp / "back.sockscope")
        results["export_jsonl_decoded"] = bench_jsonl(session, tmp / "s.jsonl", True)
        results["export_jsonl_plain"] = bench_jsonl(session, tmp / "p.jsonl", False)
        by_format: dict[str, float] = {}
        for name, payload in PAYLOADS.items():
            fmt_session = tmp / f"{name}.sockscope"
            write_session(fmt_session, n // 4, payload=payload)
            by_format[name] = bench_jsonl(fmt_session, tmp / f"{name}.jsonl", True)["messages_per_s"]
        results["export_jsonl_decoded_msgs_per_s_by_format"] = by_format
        big = tmp / "big.sockscope"
        write_session(big, 200_000 if args.quick else 1_000_000)
        results["open_1m"] = bench_open_1m(big)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""By hand: ``python tests/bench/bench_ui.py [--only startup] [--base REV] [--rounds N]`` prints JSON with the window's
ingest, memory and start-up figures. Run it with nothing else running.

- ``ingest``: a producer thread feeds demo-sized messages at 20,000/s into a window's link queue for 5 s while a
  2 ms timer measures event-loop latency (p50/p99/max) on the GUI thread.
- ``rss_1m``: resident memory after 1,000,000 64-byte messages in a store.
- ``startup``: ``sockscope demo --time-startup`` to the window shown and to the first decoded client message, each
  start a fresh process with fresh settings, in interleaved rounds with a bare PySide6 main window (4 docks) as the
  yardstick and, with ``--base REV``, that commit's ``sockscope demo`` (``git archive``, in a temporary directory):
  medians and ratios to the bare window measured in the same run.
Runs offscreen. Must not import: nothing special. Thread: GUI thread plus one producer thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]


def ingest(rate: int = 20_000, seconds: float = 5.0) -> dict[str, float]:
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import Link, LinkOptions
    from inspector.ui.main_window import MainWindow
    from proxy.model import ConnectionOpened, Direction, Message

    class FeedLink(Link):
        kind = "bench"

        def start(self) -> None:
            self.listen_addr, self.target_addr = ("127.0.0.1", 5556), ("127.0.0.1", 5555)

        def stop(self) -> None:
            self.death = "stopped"

    _app = QApplication.instance() or QApplication([])  # kept alive for the whole benchmark

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()
    w = MainWindow(LinkOptions(), settings=QSettings("/tmp/bench_ui.ini", QSettings.Format.IniFormat),
                   link_factory=lambda o: FeedLink())
    w.show()
    for _ in range(100):
        if w.link is not None:
            break
        spin(50)
    link = w.link
    assert link is not None, w.log.toPlainText()
    link.events.put(ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0))
    stop = threading.Event()
    sent = [0]

    def produce() -> None:
        t0 = time.perf_counter()
        i = 0
        while not stop.is_set():
            due = int((time.perf_counter() - t0) * rate)
            batch = []
            while i < due:
                i += 1
                d = Direction(i & 1)
                batch.append(Message(i, 1, d, i, f"ping {i}".encode() if d is Direction.C2S else f"pong {i}".encode(),
                                     time.monotonic_ns(), time.monotonic_ns()))
            link.events.put_many(batch)
            sent[0] = i
            time.sleep(0.001)

    lat: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lat.append((now - last[0]) * 1000 - 2)
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    timer.start()
    th = threading.Thread(target=produce, daemon=True)
    th.start()
    spin(int(seconds * 1000))  # a real event loop (a Python processEvents loop would distort the figures)
    stop.set()
    th.join()
    timer.stop()
    lat.sort()
    result = {"rate_target": rate, "sent": sent[0], "stored": len(w.store), "lost": link.events.lost,
              "loop_latency_p50_ms": round(lat[len(lat) // 2], 2),
              "loop_latency_p99_ms": round(lat[int(len(lat) * 0.99)], 2), "loop_latency_max_ms": round(lat[-1], 2)}
    w.close()
    return result


def rss_1m() -> dict[str, float]:
    code = ("import resource\nfrom inspector.store import MessageStore\nfrom proxy.model import Message, Direction\n"
            "s = MessageStore()\n"
            "for b in range(0, 1_000_000, 50_000):\n"
            "    s.apply([Message(i + 1, 1, Direction(i & 1), i, bytes(63) + bytes([i & 255]), i, i)"
            " for i in range(b, b + 50_000)])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {"rows": 1_000_000, "rss_mb": round(int(out.split()[-1]) / 1024, 1)}


BARE_WINDOW = '''\
import time
T0 = time.perf_counter()
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow, QPlainTextEdit, QTableView, QToolBar

app = QApplication([])
w = QMainWindow()
w.setCentralWidget(QTableView())
w.addToolBar(QToolBar("tools"))
w.menuBar().addMenu("&File")
areas = (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
         Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea)
for i, area in enumerate(areas):
    d = QDockWidget(f"dock {i}", w)
    d.setObjectName(f"dock{i}")
    d.setWidget(QTableView() if i < 3 else QPlainTextEdit())
    w.addDockWidget(area, d)
w.resize(1440, 960)
w.show()
app.processEvents()
print(f"sockscope: window shown after {(time.perf_counter() - T0) * 1000:.0f} ms", flush=True)
'''
"""The yardstick: a bare PySide6 main window with a table, a toolbar, a menu and 4 docks, shown the way
``sockscope --time-startup`` shows its window (``show()``, then one ``processEvents()``)."""


def _launch(argv: list[str], tree: Path | None, wait_first_row: bool) -> dict[str, float]:
    """One start in a fresh process with fresh settings: ``*_wall_ms`` from ``Popen`` to the line (interpreter start
    included, what a user waits), ``*_ms`` as the process itself measured it."""
    with tempfile.TemporaryDirectory(prefix="sockscope-bench-ui-") as config:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=config)
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                             cwd=str(tree) if tree is not None else None)
        assert p.stdout is not None
        out: dict[str, float] = {}
        try:
            for line in p.stdout:
                if "window shown after" in line:
                    out["shown_wall_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                    out["shown_ms"] = float(line.split("after")[1].split()[0])
                    if not wait_first_row:
                        break
                elif "first decoded client message after" in line:
                    out["first_row_wall_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                    out["first_row_ms"] = float(line.split("after")[1].split()[0])
                    break
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    return out


def startup(rev: str | None = None, rounds: int = 7) -> dict[str, Any]:
    """``sockscope demo --time-startup`` (window shown; first decoded client message: the demo pings every 0.5 s)
    against the bare window, in interleaved rounds; with ``rev``, that commit's ``sockscope demo`` too (from
    ``git archive``). Medians, and ratios to the bare window measured in the same run."""
    demo = [sys.executable, "-m", "inspector", "demo", "--time-startup"]
    variants: list[tuple[str, list[str], Path | None, bool]] = [
        ("bare PySide6 window", [sys.executable, "-c", BARE_WINDOW], None, False)]
    base_dir = None
    if rev is not None:
        base_dir = Path(tempfile.mkdtemp(prefix="sockscope-bench-ui-base-"))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_dir)], input=archive, check=True)
        short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True,
                               check=True).stdout.strip()
        variants.append((f"sockscope at {short}", demo, base_dir, True))
    variants.append(("sockscope (working tree)", demo, ROOT, True))
    for _label, _argv, tree, _first in variants[1:]:
        # As installed: pip writes bytecode, and Python caches it on first import. Without this, a tree edited since
        # its last run (or one run under PYTHONDONTWRITEBYTECODE) would compile its changed modules at every start.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "inspector", "proxy"], cwd=tree,
                       capture_output=True, check=False)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in variants}
    try:
        for _ in range(rounds):
            for label, argv, tree, first_row in variants:
                runs[label].append(_launch(argv, tree, first_row))
    finally:
        if base_dir is not None:
            shutil.rmtree(base_dir, ignore_errors=True)
    result: dict[str, Any] = {"rounds": rounds}
    for label, rs in runs.items():
        keys = sorted({k for r in rs for k in r})
        result[label] = {k: statistics.median(r[k] for r in rs if k in r) for k in keys}
        result[label]["shown_wall_ms_all"] = [r.get("shown_wall_ms") for r in rs]
    bare = result["bare PySide6 window"]
    for label, _argv, _tree, _first in variants[1:]:
        v = result[label]
        v["shown_wall_x_bare"] = round(v["shown_wall_ms"] / bare["shown_wall_ms"], 2)
        v["shown_x_bare"] = round(v["shown_ms"] / bare["shown_ms"], 2)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("ingest", "rss", "startup"), action="append",
                    help="run only these parts (repeatable; default all)")
    ap.add_argument("--base", metavar="REV", help="startup: compare with this commit too (e.g. HEAD~1)")
    ap.add_argument("--rounds", type=int, default=7, help="startup: interleaved rounds (default 7)")
    args = ap.parse_args()
    parts = set(args.only or ("ingest", "rss", "startup"))
    report: dict[str, Any] = {}
    if "ingest" in parts:
        report["ingest"] = ingest()
    if "rss" in parts:
        report["rss_1m"] = rss_1m()
    if "startup" in parts:
        report["startup"] = startup(args.base, args.rounds)
    report["bench_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=2))

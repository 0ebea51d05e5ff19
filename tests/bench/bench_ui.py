"""By hand: ``python tests/bench/bench_ui.py`` prints JSON with the window's ingest and memory figures.

- ``ingest``: a producer thread feeds demo-sized messages at 20,000/s into a window's link queue for 5 s while a
  2 ms timer measures event-loop latency (p50/p99/max) on the GUI thread.
- ``rss_1m``: resident memory after 1,000,000 64-byte messages in a store.
- ``startup``: time from ``sockscope`` start to the window shown (``--time-startup``), in a subprocess.
Runs offscreen. Must not import: nothing special. Thread: GUI thread plus one producer thread.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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


def startup() -> dict[str, float]:
    """``sockscope demo``: window shown, and the first decoded client message (the demo pings every 0.5 s)."""
    p = subprocess.Popen([sys.executable, "-m", "inspector", "demo", "--time-startup"], stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert p.stdout is not None
    out: dict[str, float] = {}
    for line in p.stdout:
        if "window shown after" in line:
            out["window_shown_ms"] = float(line.split("after")[1].split()[0])
        elif "first decoded client message after" in line:
            out["first_decoded_row_ms"] = float(line.split("after")[1].split()[0])
            break
    p.terminate()
    p.wait(10)
    return out


if __name__ == "__main__":
    print(json.dumps({"ingest": ingest(), "rss_1m": rss_1m(), "startup": startup(),
                      "bench_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=2))

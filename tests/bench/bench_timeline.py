"""By hand: ``python tests/bench/bench_timeline.py`` prints JSON: the window's event-loop latency with the Timeline
dock (RTT and throughput plots, ladder) visible while 4 demo clients ping at 60 Hz through the in-process engine.

``python tests/bench/bench_timeline.py --screenshots docs`` instead drives the same window with latency, jitter
and a lag spike and saves ``docs/timeline.png`` (the Timeline dock) and ``docs/ladder.png`` (the ladder).
Target: loop latency p99 < 50 ms. Runs offscreen.
Must not import: nothing special. Thread: GUI thread; the engine and the demo peers on their own threads.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _window(interval: float, clients: int) -> tuple[Any, Any, list[Any]]:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import LinkOptions, ThreadLink
    from inspector.ui.main_window import MainWindow
    from proxy.demo import DemoClient

    app = QApplication.instance() or QApplication([])
    ini = Path("/tmp/bench_timeline.ini")
    ini.unlink(missing_ok=True)
    w = MainWindow(LinkOptions(demo=True, demo_interval=interval),
                   settings=QSettings(str(ini), QSettings.Format.IniFormat), link_factory=ThreadLink)
    w.resize(1500, 980)
    w.show()
    w.show_timeline()  # hidden until asked for (issue 19)
    _spin(app, lambda: w.link is not None, 10)
    assert w.link is not None and w.link.listen_addr is not None, w.log.toPlainText()
    extra = [DemoClient("127.0.0.1", w.link.listen_addr[1], None, interval, say=lambda _l: None).start()
             for _ in range(clients - 1)]
    return app, w, extra


def _spin(app: Any, until: Any, seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        loop = QEventLoop()
        QTimer.singleShot(50, loop.quit)
        loop.exec()


def loop_latency(seconds: float = 8.0, clients: int = 4, hz: float = 60.0) -> dict[str, float]:
    from PySide6.QtCore import QEventLoop, QTimer

    app, w, extra = _window(1 / hz, clients)
    _spin(app, lambda: len(w.store.connections) >= clients, 10)
    lat: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lat.append((now - last[0]) * 1000 - 2)
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    n0 = len(w.store)
    w.timeline.tick_ms.clear()
    timer.start()
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    lat.sort()
    ticks = sorted(w.timeline.tick_ms)
    result = {
        "connections": len(w.store.connections), "messages": len(w.store) - n0,
        "messages_per_s": round((len(w.store) - n0) / seconds, 1),
        "round_trips": len(w.timeline.analysis.pairer.round_trips), "analysis_backlog": w.timeline.analysis.pending,
        "plots_visible": bool(w.timeline.plots.isVisible() and w.timeline.ladder.isVisible()),
        "loop_latency_p50_ms": round(lat[len(lat) // 2], 2), "loop_latency_p99_ms": round(lat[int(len(lat) * .99)], 2),
        "loop_latency_max_ms": round(lat[-1], 2),
        "timeline_tick_p50_ms": round(ticks[len(ticks) // 2], 2) if ticks else None,
        "timeline_tick_p99_ms": round(ticks[int(len(ticks) * .99)], 2) if ticks else None,
        "target_p99_ms": 50,
    }
    for c in extra:
        c.stop()
    w.close()
    return result


def screenshots(out: Path) -> list[str]:
    from proxy.conditions import Conditions, DirectionConditions, Jitter

    app, w, extra = _window(1 / 30, 2)
    _spin(app, lambda: len(w.timeline.analysis.pairer.round_trips) >= 40, 10)
    w.conditions.set_conditions(Conditions(DirectionConditions(latency_ms=40, jitter=Jitter(8)),
                                           DirectionConditions(latency_ms=40, jitter=Jitter(8))), send=True)
    _spin(app, lambda: False, 2.5)
    w.conditions.spike_now(Direction_s2c())
    _spin(app, lambda: False, 2.5)
    w.timeline.refresh(force=True)
    w.timeline.ladder.select_row(None)
    rows = w.timeline.plots.data.rtt_rows
    if rows:
        w._select_store_row(rows[-12])
    _spin(app, lambda: False, 0.3)
    from PySide6.QtCore import Qt

    w.resizeDocks([w.timeline_dock], [430], Qt.Orientation.Vertical)
    w.timeline_dock.setMinimumHeight(430)  # a taller ladder for the picture
    _spin(app, lambda: False, 0.3)
    out.mkdir(parents=True, exist_ok=True)
    paths = [str(out / "timeline.png"), str(out / "ladder.png")]
    w.timeline_dock.grab().save(paths[0])
    lad = w.timeline.ladder
    lad.set_follow(False)
    lad.ns_per_px = 1_500_000  # 1.5 ms per pixel: each 30 Hz message on its own
    s = w.store
    spiked = [r for r in range(len(s)) if any(reason.value == "spike" for reason, _ in s.delays(r))]
    if spiked:
        lad.top_ns = s.arrivals[spiked[0]] - 150_000_000
    lad.update()
    w.grab().save(str(out / "timeline-window.png"))
    lad.grab().save(paths[1])
    for c in extra:
        c.stop()
    w.close()
    return paths


def Direction_s2c() -> Any:
    from proxy.model import Direction

    return Direction.S2C


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--screenshots":
        print(json.dumps({"saved": screenshots(Path(sys.argv[2]))}))
    else:
        print(json.dumps({"timeline_loop_latency": loop_latency()}, indent=2))

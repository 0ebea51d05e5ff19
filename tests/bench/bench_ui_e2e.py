"""By hand: ``python tests/bench/bench_ui_e2e.py [--rate 20000] [--seconds 5]`` prints JSON: the window's ingest
measured end to end, as a user runs it.

A game client (its own process) sends newline-terminated JSON messages at half ``--rate`` per second, paced in
1 ms batches, to an echo server (its own process) through a real proxy process (``python -m proxy --control``); the
window, in this process, is attached to that proxy over the control protocol, as ``sockscope --attach`` is. A 2 ms
timer on the GUI thread measures how late the event loop runs (p50/p99/max); at the end the figures say how many
messages the game sent and got back, how many reached the window's store, and how many events the proxy dropped
for the window (its subscriber budget). Issue 18's target: GUI event-loop p99 < 30 ms at 20,000 msg/s.

``--rounds N`` (N > 1) interleaves the window with its floor: a bare PySide6 main window (four docks, a table of
16 static rows) under the very same game, echo and proxy processes, nobody attached to the proxy. The floor's p99
is what the operating system's scheduling of four busy processes on this machine costs any window; the window's
p99 above it is ours. The result then holds each round and the medians.

Runs offscreen. Must not import: nothing special. Thread: the GUI thread; the game and echo are processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
TOKEN = "bench-ui-e2e"

ECHO = r"""
import asyncio, sys
async def main():
    async def handle(r, w):
        while d := await r.read(1 << 16):
            w.write(d)
            await w.drain()
        w.close()
    s = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

GAME = r"""
import json, socket, sys, threading, time
port, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
got = [0]
def reader():
    while True:
        d = s.recv(1 << 16)
        if not d:
            return
        got[0] += d.count(b"\n")
threading.Thread(target=reader, daemon=True).start()
t0 = time.perf_counter(); i = 0
while (now := time.perf_counter() - t0) < seconds:
    due = int(now * rate)
    batch = b"".join(b'{"type": "pos", "id": %d, "x": %d, "y": %d}\n' % (n, n % 640, n % 480) for n in range(i, due))
    if batch:
        s.sendall(batch)
    i = due
    time.sleep(0.001)
deadline = time.perf_counter() + 5
while got[0] < i and time.perf_counter() < deadline:
    time.sleep(0.01)
print(json.dumps({"sent": i, "echoed": got[0]}), flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=1, help="interleave the window with a bare window's floor")
    args = ap.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication


    app = QApplication.instance() or QApplication([])

    def spin(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def one(floor: bool) -> dict[str, Any]:
        children: list[subprocess.Popen[str]] = []
        try:
            return _measure(args, app, spin, children, floor=floor)
        finally:
            for p in children:
                if p.poll() is None:
                    p.terminate()
                    p.wait(10)

    if args.rounds <= 1:
        print(json.dumps(one(False), indent=2))
        return 0
    rounds: dict[str, list[dict[str, Any]]] = {"floor": [], "window": []}
    for i in range(args.rounds):
        for kind in (("floor", "window") if i % 2 == 0 else ("window", "floor")):
            rounds[kind].append(one(kind == "floor"))
            print(kind, rounds[kind][-1]["loop_latency_p99_ms"], file=sys.stderr, flush=True)

    def median(kind: str, key: str) -> float:
        values = sorted(r[key] for r in rounds[kind])
        return values[len(values) // 2]

    summary = {kind: {key: median(kind, key) for key in ("loop_latency_p50_ms", "loop_latency_p99_ms",
                                                         "loop_latency_max_ms")} for kind in rounds}
    summary["window_over_floor_p99"] = round(summary["window"]["loop_latency_p99_ms"]
                                             / max(summary["floor"]["loop_latency_p99_ms"], 0.01), 2)
    print(json.dumps({"rounds": rounds, "medians": summary}, indent=2))
    return 0


def _floor_window() -> Any:
    """A bare PySide6 main window as a user's would be: a table of 16 rows × 8 columns and four docks."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QStandardItem, QStandardItemModel
    from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QTableView

    w = QMainWindow()
    model = QStandardItemModel(16, 8, w)
    for r in range(16):
        for c in range(8):
            model.setItem(r, c, QStandardItem(f"{r}:{c}"))
    table = QTableView(w)
    table.setModel(model)
    w.setCentralWidget(table)
    for area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea,
                 Qt.DockWidgetArea.BottomDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea):
        dock = QDockWidget("dock", w)
        dock.setWidget(QLabel("dock"))
        w.addDockWidget(area, dock)
    w.resize(1280, 800)
    return w


def _measure(args: argparse.Namespace, app: object, spin: Any, children: list[subprocess.Popen[str]],
             floor: bool = False) -> dict[str, Any]:
    from PySide6.QtCore import QSettings, QTimer

    from inspector.ui.main_window import MainWindow

    echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    children.append(echo)
    assert echo.stdout is not None
    echo_port = int(echo.stdout.readline())
    env = {**os.environ, "SOCKSCOPE_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    proxy = subprocess.Popen([sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--target",
                              f"127.0.0.1:{echo_port}", "--control", "127.0.0.1:0", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=ROOT)
    children.append(proxy)
    assert proxy.stdout is not None
    port = control = 0
    while not (port and control):
        line = proxy.stdout.readline()
        if not line:
            raise SystemExit("the proxy did not start")
        if "control on" in line:
            control = int(line.rsplit(":", 1)[1].split()[0])
        elif "listening on" in line:
            port = int(line.split("listening on")[1].split("→")[0].strip().rsplit(":", 1)[1])
    if floor:
        w = _floor_window()
        w.show()
    else:
        w = MainWindow(attach=("127.0.0.1", control, TOKEN),
                       settings=QSettings(str(Path("/tmp") / "bench_ui_e2e.ini"), QSettings.Format.IniFormat))
        w.show()
        for _ in range(200):
            if w.link is not None:
                break
            spin(25)
        assert w.link is not None, w.log.toPlainText()
    spin(300)

    lat: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lat.append((now - last[0]) * 1000 - 2)
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    game = subprocess.Popen([sys.executable, "-c", GAME, str(port), str(args.rate // 2), str(args.seconds)],
                            stdout=subprocess.PIPE, text=True)
    prof = None
    if os.environ.get("BENCH_PROFILE"):  # where the GUI thread's time goes under ingest (a pstats file)
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    timer.start()
    while game.poll() is None:
        spin(50)  # a real event loop: the window's own timers and signals run as they do for a user
    timer.stop()
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["BENCH_PROFILE"])
    assert game.stdout is not None
    played = json.loads(game.stdout.read().strip().splitlines()[-1])
    spin(500)  # what is still on its way to the window
    lat.sort()
    if floor:
        w.close()
        return {"rate_target": args.rate, "seconds": args.seconds, **played,
                "loop_latency_p50_ms": round(lat[len(lat) // 2], 2),
                "loop_latency_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
                "loop_latency_max_ms": round(lat[-1], 2)}
    if os.environ.get("BENCH_DEBUG"):
        sizes = sorted(w.store.sizes[r] for r in range(min(2000, len(w.store))))
        print("sizes", sizes[:5], sizes[-5:], file=sys.stderr)
        for c in w.store.connections.values():
            print("framing", c.conn_id, [(f.framing, f.cause) for f in c.framing], file=sys.stderr)
    dropped = getattr(w.link, "dropped", None)
    result = {"rate_target": args.rate, "seconds": args.seconds, **played,
              "messages_in_window": len(w.store),
              "dropped_for_window": dropped,
              "loop_latency_p50_ms": round(lat[len(lat) // 2], 2),
              "loop_latency_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
              "loop_latency_max_ms": round(lat[-1], 2), "target_p99_ms": 30}
    w.stop_link()
    w.close()
    return result


if __name__ == "__main__":
    sys.exit(main())

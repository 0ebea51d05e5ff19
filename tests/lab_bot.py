"""A tiny game that speaks the lab's wire format (notes: docs/lab.md), for the Lab's window tests and pictures.

Role: :class:`LabServer` is an authoritative server on 127.0.0.1 (a thread per client reading inputs, a tick
thread applying them and sending each client its state 30 times a second); :class:`LabBot` is a headless client
sending 60 inputs a second with the position it predicts (client-side prediction, optionally with server
reconciliation), walking in a square. Frames are a 4-byte big-endian length and a msgpack map:

- client -> server ``{"t": "input", "seq": N, "dx": .., "dy": .., "x": PX, "y": PY}``
- server -> client ``{"t": "state", "tick": T, "time": MS, "ack": LAST_SEQ, "x": X, "y": Y, "players": [...]}``

It is the same protocol as docs/examples/game (without pygame), so the window can be shown live in tests.
``python tests/lab_bot.py --screenshots DIR`` takes the pictures of docs/lab.md (run under Xvfb at 1600x1000).
Must not import: nothing of sockscope (it is the game, not the tool), except in :func:`screenshots`.
Thread: its own threads; :meth:`stop` ends them all.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import threading
import time
from typing import Any

import msgpack

SPEED = 4
WIDTH, HEIGHT, SIZE = 640, 480, 24
HEADER = struct.Struct(">I")


def move(x: int, y: int, dx: int, dy: int) -> tuple[int, int]:
    return min(max(x + dx * SPEED, 0), WIDTH - SIZE), min(max(y + dy * SPEED, 0), HEIGHT - SIZE)


def send(sock: socket.socket, value: dict[str, Any]) -> None:
    payload = msgpack.packb(value)
    sock.sendall(HEADER.pack(len(payload)) + payload)


def frames(sock: socket.socket) -> Any:
    """Yield each received message until the peer closes."""
    buf = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        buf += data
        while len(buf) >= 4:
            (n,) = HEADER.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            yield msgpack.unpackb(bytes(buf[4:4 + n]))
            del buf[:4 + n]


class LabServer:
    def __init__(self, tick_hz: float = 30) -> None:
        self.tick_hz = tick_hz
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.players: dict[int, list[int]] = {}
        self.inputs: dict[int, list[dict[str, Any]]] = {}
        self.clients: dict[int, socket.socket] = {}
        self.running = True
        self.threads = [threading.Thread(target=self._accept, daemon=True, name="lab-server-accept"),
                        threading.Thread(target=self._ticks, daemon=True, name="lab-server-ticks")]
        for t in self.threads:
            t.start()

    def _accept(self) -> None:
        pid = 0
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            pid += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.players[pid] = [100 + 60 * pid, 100 + 40 * pid, 0]
                self.inputs[pid] = []
                self.clients[pid] = conn
            t = threading.Thread(target=self._read, args=(conn, pid), daemon=True, name=f"lab-server-{pid}")
            self.threads.append(t)
            t.start()

    def _read(self, conn: socket.socket, pid: int) -> None:
        for msg in frames(conn):
            if msg.get("t") == "input":
                with self.lock:
                    self.inputs[pid].append(msg)
        with self.lock:
            self.clients.pop(pid, None)
        conn.close()

    def _ticks(self) -> None:
        start = time.perf_counter()
        n = 0
        while self.running:
            n += 1
            out = []
            with self.lock:
                for pid, pending in self.inputs.items():
                    p = self.players[pid]
                    for m in pending:
                        p[0], p[1] = move(p[0], p[1], int(m["dx"]), int(m["dy"]))
                        p[2] = int(m["seq"])
                    pending.clear()
                everyone = [[pid, x, y, s] for pid, (x, y, s) in self.players.items()]
                for pid, conn in self.clients.items():
                    x, y, s = self.players[pid]
                    out.append((conn, {"t": "state", "tick": n, "time": round((time.perf_counter() - start) * 1000),
                                       "ack": s, "x": x, "y": y, "players": everyone}))
            for conn, state in out:
                with contextlib.suppress(OSError):
                    send(conn, state)
            time.sleep(max(0.0, start + n / self.tick_hz - time.perf_counter()))

    def stop(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.close()
        with self.lock:
            conns = list(self.clients.values())
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        for t in self.threads:
            t.join(timeout=5)


class LabBot:
    """A headless client: 60 inputs a second, predicting its own position (and reconciling, unless told not to)."""

    LEG = 45

    def __init__(self, port: int, *, input_hz: float = 60, reconcile: bool = True, corner: int = 0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.input_hz, self.reconcile, self.corner = input_hz, reconcile, corner
        self.lock = threading.Lock()
        self.pos: tuple[int, int] | None = None
        self.pending: list[tuple[int, int, int]] = []
        self.seq = 0
        self.states = 0
        self.running = True
        self.threads = [threading.Thread(target=self._send_loop, daemon=True, name="lab-bot-send"),
                        threading.Thread(target=self._recv_loop, daemon=True, name="lab-bot-recv")]
        for t in self.threads:
            t.start()

    def _recv_loop(self) -> None:
        for msg in frames(self.sock):
            if msg.get("t") != "state":
                continue
            with self.lock:
                self.states += 1
                ack, server = int(msg["ack"]), (int(msg["x"]), int(msg["y"]))
                self.pending = [p for p in self.pending if p[0] > ack]
                # without reconciliation the client takes the server's word as it is: the inputs still in flight
                # are undone (its position snaps back), so what it predicts next is off by them
                x, y = server
                if self.reconcile:
                    for _, dx, dy in self.pending:
                        x, y = move(x, y, dx, dy)
                self.pos = (x, y)

    def _send_loop(self) -> None:
        start = time.perf_counter()
        frame = 0
        while self.running:
            frame += 1
            leg = (frame // self.LEG + self.corner) % 4
            dx, dy = [(1, 0), (0, 1), (-1, 0), (0, -1)][leg]
            with self.lock:
                if self.pos is not None:
                    self.seq += 1
                    self.pos = move(*self.pos, dx, dy)
                    self.pending.append((self.seq, dx, dy))
                    msg = {"t": "input", "seq": self.seq, "dx": dx, "dy": dy, "x": self.pos[0], "y": self.pos[1]}
                else:
                    msg = None
            if msg is not None:
                try:
                    send(self.sock, msg)
                except OSError:
                    return
            time.sleep(max(0.0, start + frame / self.input_hz - time.perf_counter()))

    def stop(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


def screenshots(out: str, size: tuple[int, int] = (1600, 1000)) -> None:
    """The pictures of docs/lab.md: the real window, the bots playing through its in-process proxy."""
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import LinkOptions, ThreadLink
    from inspector.ui.main_window import MainWindow
    from proxy.model import Direction

    app = QApplication.instance() or QApplication(sys.argv[:1])
    server = LabServer()
    settings = QSettings(os.path.join(out, ".lab-shots.ini"), QSettings.Format.IniFormat)
    w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", server.port), framing="len32"),
                   settings=settings, link_factory=ThreadLink)
    w.resize(*size)
    w.show()
    bots: list[LabBot] = []

    def wait(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    try:
        while w.link is None or w.link.listen_addr is None:
            wait(0.05)
        port = w.link.listen_addr[1]
        for d in Direction:
            w.conditions.cols[d].latency.spin.setValue(40)
        wait(0.5)
        bots = [LabBot(port, corner=0), LabBot(port, corner=2, reconcile=False)]
        w.show_lab()
        wait(6)
        for d in Direction:
            w.conditions.cols[d].latency.spin.setValue(100)
            w.conditions.cols[d].jitter.spin.setValue(15)
        wait(8)
        w.lab.scope.setCurrentIndex(1)
        wait(1)
        w.grab().save(os.path.join(out, "lab-window.png"))
        w.lab.scope.setCurrentIndex(2)
        wait(1)
        w.lab.panel.grab().save(os.path.join(out, "lab-no-reconciliation.png"))
        w.lab.scope.setCurrentIndex(1)
        w.lab.hints_table.selectRow(0)
        dialog = w.lab.pick_dialog()
        assert not isinstance(dialog, str), dialog
        dialog.show()
        wait(0.5)
        dialog.grab().save(os.path.join(out, "lab-pick-fields.png"))
        dialog.close()
    finally:
        for b in bots:
            b.stop()
        w.stop_link()
        server.stop()
        w.close()
        with contextlib.suppress(OSError):
            os.remove(os.path.join(out, ".lab-shots.ini"))


def game_screenshots(out: str, game: str, size: tuple[int, int] = (1600, 1000)) -> None:
    """Pictures of the Lab with docs/examples/game itself (its server and two headless bots, one with every
    technique off, one predicting and reconciling) at 2 x 100 ms, then with 30 ms of server -> client jitter:
    lab-game-lag.png (the client with nothing on), lab-game-reconcile.png, lab-game-jitter.png."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from inspector.bridge import LinkOptions, ThreadLink
    from inspector.ui.main_window import MainWindow
    from proxy.model import Direction

    env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy", PYGAME_HIDE_SUPPORT_PROMPT="1")
    app = QApplication.instance() or QApplication(sys.argv[:1])
    server = subprocess.Popen([sys.executable, os.path.join(game, "server.py"), "--port", "0"],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    port = int(server.stdout.readline().split(":")[1].split()[0])
    settings = QSettings(os.path.join(out, ".lab-shots.ini"), QSettings.Format.IniFormat)
    w = MainWindow(LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", port), framing="len32"),
                   settings=settings, link_factory=ThreadLink)
    w.resize(*size)
    w.show()
    clients: list[subprocess.Popen[bytes]] = []

    def wait(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    try:
        while w.link is None or w.link.listen_addr is None:
            wait(0.05)
        for d in Direction:
            w.conditions.cols[d].latency.spin.setValue(100)
        wait(0.5)
        lp = str(w.link.listen_addr[1])
        for flags in (["--no-predict", "--no-reconcile", "--no-interpolate"],
                      ["--predict", "--reconcile", "--interpolate"]):
            clients.append(subprocess.Popen([sys.executable, os.path.join(game, "client.py"), "--port", lp,
                                             "--headless", "--bot", "--duration", "60", *flags], env=env))
            wait(0.3)
        w.show_lab()
        wait(10)
        w.lab.scope.setCurrentIndex(w.lab.scope.findData(1))
        wait(1)
        w.lab.panel.grab().save(os.path.join(out, "lab-game-lag.png"))
        w.lab.scope.setCurrentIndex(w.lab.scope.findData(2))
        wait(1)
        w.lab.panel.grab().save(os.path.join(out, "lab-game-reconcile.png"))
        w.conditions.cols[Direction.S2C].jitter.spin.setValue(30)
        wait(21)  # the histogram's 600 intervals all under jitter
        w.lab.panel.grab().save(os.path.join(out, "lab-game-jitter.png"))
    finally:
        for c in clients:
            c.kill()
            c.wait()
        w.stop_link()
        server.kill()
        server.wait()
        w.close()
        with contextlib.suppress(OSError):
            os.remove(os.path.join(out, ".lab-shots.ini"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--screenshots", metavar="DIR", help="take docs/lab.md's pictures into DIR")
    p.add_argument("--game", metavar="DIR", help="with --screenshots: the pictures with docs/examples/game (DIR) "
                                                "instead of this file's bots")
    p.add_argument("--serve", action="store_true", help="run the server and two bots until Ctrl+C")
    args = p.parse_args()
    if args.screenshots:
        if args.game:
            game_screenshots(args.screenshots, args.game)
        else:
            screenshots(args.screenshots)
        return
    server = LabServer()
    print(f"lab server on 127.0.0.1:{server.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

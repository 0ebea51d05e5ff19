"""The tutorial's exercise as a live demo: a server that sends a welcome, a client that answers and then pings.

Role: the peers behind ``sockscope-proxy --demo`` (and, later, ``sockscope demo``). They are written the way the
tutorial writes them (blocking ``socket`` calls, 2048-byte ``recv``), so what the learner sees through the proxy is
what their own code would produce. The server answers each ``ping N`` with ``pong N``.
Must not import: Qt, ``inspector``.
Thread: each peer runs on its own daemon thread; nothing here touches the proxy's event loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from proxy.printer import say

BUFFER_SIZE = 2048
WELCOME = "Hello from the exercise server! 🚀"
REPLY = "Ping received! 📥"


def _print(line: str) -> None:
    say(line)  # never blocks: the demo's peers share the proxy's terminal


class DemoServer:
    """Serves any number of clients: welcome, read the reply, then answer pings until the client leaves."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, say: Callable[[str], None] = _print) -> None:
        self.say = say
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen()
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="demo-server", daemon=True)

    def start(self) -> DemoServer:
        self.thread.start()
        return self

    def _serve(self) -> None:
        self.say(f"[SERVER] listening on 127.0.0.1:{self.port}")
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), name="demo-server-conn", daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.send(WELCOME.encode("utf-8"))
                data = conn.recv(BUFFER_SIZE)
                if not data:
                    return
                self.say(f"[SERVER] Client says: {data.decode('utf-8', 'replace')}")
                while data := conn.recv(BUFFER_SIZE):
                    text = data.decode("utf-8", "replace")
                    if text.startswith("ping"):
                        conn.sendall(("pong" + text[4:]).encode("utf-8"))
            except OSError as e:
                self.say(f"[SERVER] connection ended: {e}")

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


class DemoClient:
    """Connects (through the proxy), prints the welcome, answers, then pings once a second."""

    def __init__(self, host: str, port: int, pings: int | None = None, interval: float = 1.0,
                 say: Callable[[str], None] = _print) -> None:
        self.host, self.port, self.pings, self.interval, self.say = host, port, pings, interval, say
        self.rtts_ms: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-client", daemon=True)

    def start(self) -> DemoClient:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=10) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                msg = c.recv(BUFFER_SIZE).decode("utf-8", "replace")
                self.say(f"[CLIENT] Message received: {msg}")
                c.send(REPLY.encode("utf-8"))
                n = 0
                while (self.pings is None or n < self.pings) and not self._stop.wait(self.interval):
                    n += 1
                    t0 = time.perf_counter()
                    c.sendall(f"ping {n}".encode())
                    reply = c.recv(BUFFER_SIZE)
                    if not reply:
                        self.say("[CLIENT] the server closed the connection")
                        return
                    rtt = (time.perf_counter() - t0) * 1000
                    self.rtts_ms.append(rtt)
                    self.say(f"[CLIENT] {reply.decode('utf-8', 'replace')}  (round trip {rtt:.1f} ms)")
        except OSError as e:
            self.error = str(e)
            self.say(f"[CLIENT] connection failed: {e}")

    def stop(self) -> None:
        self._stop.set()

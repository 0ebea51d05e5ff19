"""The tutorial's exercise as a live demo: a server that sends a welcome, a client that answers and then pings.

Role: the peers behind ``sockscope-proxy --demo`` and ``sockscope demo``. They are written the way the
tutorial writes them (blocking ``socket`` calls, 2048-byte ``recv``), so what the learner sees through the proxy is
what their own code would produce. The server answers each ``ping N`` with ``pong N``.
The UDP pair (``--demo --udp``, ``sockscope demo --udp``) is a game's position loop: the client sends its position
as a small JSON datagram ten times a second and never waits for an answer; the server answers each datagram with
the state it holds. Loss, duplicates and corruption set in the window show up at once in both directions.
Must not import: Qt, ``inspector``.
Thread: each peer runs on its own daemon thread; nothing here touches the proxy's event loop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from proxy.printer import say

BUFFER_SIZE = 2048
WELCOME = "Hello from the exercise server! 🚀"
REPLY = "Ping received! 📥"
RETRY_S = 1.0
"""Seconds the endless demo client waits before it connects again (longer after repeated failures, at most 5)."""


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
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # on Linux close() alone leaves accept() waiting, the port bound
        self.sock.close()


class DemoClient:
    """Connects (through the proxy), prints the welcome, answers, then pings every ``interval`` seconds.

    It waits for each answer as long as it takes (a user may hold a ping in the window for minutes), and with
    ``pings=None`` (the demo behind the window) it lives until :meth:`stop`: when its connection ends (the user
    closed or reset it, the server went away) it connects again after ``retry_s``. Ping numbers go on across
    connections. With a number of ``pings`` it pings that often on one connection and ends.
    """

    def __init__(self, host: str, port: int, pings: int | None = None, interval: float = 1.0,
                 say: Callable[[str], None] = _print, retry_s: float = RETRY_S) -> None:
        self.host, self.port, self.pings, self.interval, self.say = host, port, pings, interval, say
        self.retry_s = retry_s
        self.rtts_ms: list[float] = []
        self.error: str | None = None
        """Why the client gave up (only with a number of ``pings``: the endless demo never gives up)."""
        self.connections = 0
        self.sock: socket.socket | None = None
        """The current connection (None between connections)."""
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-client", daemon=True)

    @property
    def forever(self) -> bool:
        return self.pings is None

    def start(self) -> DemoClient:
        self.thread.start()
        return self

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._one_connection()
                failures = 0
            except OSError as e:
                if self._stop.is_set():
                    return
                if not self.forever:
                    self.error = str(e)
                    self.say(f"[CLIENT] connection failed: {e}")
                    return
                failures += 1
                if failures == 1:  # said once, not every retry
                    self.say(f"[CLIENT] cannot connect or the connection broke ({e}); trying again")
            if not self.forever or self._stop.is_set() or (self.pings is not None and self._sent >= self.pings):
                return
            if failures == 0:
                self.say("[CLIENT] the connection ended; connecting again")
            if self._stop.wait(min(self.retry_s * max(1, failures), 5.0)):
                return

    def _one_connection(self) -> None:
        # A timeout for connecting only: once connected the client blocks for as long as an answer takes.
        c = socket.create_connection((self.host, self.port), timeout=10)
        with self._lock:
            if self._stop.is_set():
                c.close()
                return
            self.sock = c
        try:
            c.settimeout(None)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            msg = c.recv(BUFFER_SIZE).decode("utf-8", "replace")
            if not msg:
                self.say("[CLIENT] the server closed the connection before its welcome")
                return
            self.say(f"[CLIENT] Message received: {msg}")
            c.sendall(REPLY.encode("utf-8"))
            while (self.pings is None or self._sent < self.pings) and not self._stop.wait(self.interval):
                self._sent += 1
                t0 = time.perf_counter()
                c.sendall(f"ping {self._sent}".encode())
                reply = c.recv(BUFFER_SIZE)
                if not reply:
                    self.say("[CLIENT] the server closed the connection")
                    return
                rtt = (time.perf_counter() - t0) * 1000
                self.rtts_ms.append(rtt)
                self.say(f"[CLIENT] {reply.decode('utf-8', 'replace')}  (round trip {rtt:.1f} ms)")
        finally:
            with self._lock:
                self.sock = None
            c.close()

    def stop(self) -> None:
        """Stop at once, also while waiting for an answer."""
        self._stop.set()
        with self._lock:
            sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv()


# ------------------------------------------------------------------------------------------ the UDP demo

UDP_INTERVAL = 0.1
"""Seconds between the UDP demo client's position updates (10 a second, a slow game's tick)."""
UDP_BUFFER = 2048


class UdpDemoServer:
    """A game server's UDP loop: every datagram is a position update; the answer is the state the server now holds
    for that player (``{"type": "state", "ack": SEQ, "x": X, "y": Y}``). Datagrams that are not JSON get
    ``{"type": "error", ...}`` back, so a corrupted datagram is seen to matter. Serves any number of clients (each
    address is a player)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, say: Callable[[str], None] = _print) -> None:
        self.say = say
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="demo-udp-server", daemon=True)

    def start(self) -> UdpDemoServer:
        self.thread.start()
        return self

    def _serve(self) -> None:
        import json

        self.say(f"[SERVER] UDP on 127.0.0.1:{self.port}")
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(UDP_BUFFER)
            except OSError:
                if self._stop.is_set():
                    return
                continue  # Windows reports a client's ICMP "port unreachable" here: not the server's problem
            if self._stop.is_set():
                return
            self.received += 1
            try:
                msg = json.loads(data)
                reply = {"type": "state", "ack": msg["seq"], "x": msg["x"], "y": msg["y"]}
            except (ValueError, KeyError, TypeError):
                reply = {"type": "error", "why": "not a position update", "size": len(data)}
            with contextlib.suppress(OSError):
                self.sock.sendto(json.dumps(reply, separators=(",", ":")).encode(), addr)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            # a datagram to itself wakes the blocked recvfrom (closing alone does not, on Linux)
            self.sock.sendto(b"", ("127.0.0.1", self.port))
        self.sock.close()


class UdpDemoClient:
    """A player: sends its position (``{"type": "pos", "seq": N, "x": X, "y": Y}``, walking a circle) every
    ``interval`` seconds and reads whatever comes back meanwhile, never waiting for an answer (on UDP an answer
    may never come). With ``updates=None`` it runs until :meth:`stop`; otherwise it sends that many and ends."""

    def __init__(self, host: str, port: int, updates: int | None = None, interval: float = UDP_INTERVAL,
                 say: Callable[[str], None] = _print) -> None:
        self.host, self.port, self.updates, self.interval, self.say = host, port, updates, interval, say
        self.sent = 0
        self.answers = 0
        self.rtts_ms: list[float] = []
        self.error: str | None = None
        self._sent_at: dict[int, float] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-udp-client", daemon=True)

    def start(self) -> UdpDemoClient:
        self.thread.start()
        return self

    def _run(self) -> None:
        import json
        import math
        import select

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((self.host, self.port))  # a UDP connect sends nothing: it fixes where datagrams go
            sock.setblocking(False)
            next_at = time.monotonic()
            while not self._stop.is_set() and (self.updates is None or self.sent < self.updates):
                now = time.monotonic()
                if now >= next_at:
                    self.sent += 1
                    angle = self.sent / 20 * math.tau
                    update = {"type": "pos", "seq": self.sent, "x": round(100 + 50 * math.cos(angle), 1),
                              "y": round(100 + 50 * math.sin(angle), 1)}
                    self._sent_at[self.sent] = now
                    if len(self._sent_at) > 1000:  # answers to old updates were lost: forget them
                        self._sent_at.pop(next(iter(self._sent_at)))
                    with contextlib.suppress(OSError):  # nothing listens yet (ICMP refused): keep sending
                        sock.send(json.dumps(update, separators=(",", ":")).encode())
                    next_at += self.interval
                    if next_at < now:
                        next_at = now + self.interval
                ready, _, _ = select.select([sock], [], [], max(0.0, min(0.2, next_at - time.monotonic())))
                if ready:
                    self._read(sock)
            # the last answers are on their way
            deadline = time.monotonic() + min(1.0, 5 * self.interval)
            while not self._stop.is_set() and self.updates is not None and time.monotonic() < deadline:
                ready, _, _ = select.select([sock], [], [], 0.05)
                if ready:
                    self._read(sock)
        except OSError as e:
            self.error = str(e)
            self.say(f"[CLIENT] UDP failed: {e}")
        finally:
            sock.close()

    def _read(self, sock: socket.socket) -> None:
        import json

        while True:
            try:
                data = sock.recv(UDP_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable from an earlier send: the next may get through
                return
            self.answers += 1
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                sent = self._sent_at.pop(json.loads(data)["ack"], None)
                if sent is not None:
                    self.rtts_ms.append((time.monotonic() - sent) * 1000)
                    if self.answers % 50 == 1:
                        self.say(f"[CLIENT] {self.answers} answers to {self.sent} updates "
                                 f"(round trip {self.rtts_ms[-1]:.1f} ms)")

    def stop(self) -> None:
        self._stop.set()

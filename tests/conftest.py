"""Shared fixtures: real sockets on 127.0.0.1, an in-process engine thread (with its control endpoint when a test
talks the control protocol, as the window and scripts do), and bounded waits.

Every network helper here has a timeout, so a broken relay fails a test instead of hanging CI.
"""

from __future__ import annotations

import gc
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from proxy.cli import _raise_fd_limit  # noqa: E402
from proxy.framing import FramingSpec  # noqa: E402
from proxy.model import Record  # noqa: E402
from proxy.runner import ProxyThread  # noqa: E402
from proxy.server import ProxyConfig  # noqa: E402

_raise_fd_limit()

IO_TIMEOUT = 10.0
CONTROL_TOKEN = "test-token"
"""The token of the control endpoints :func:`start_endpoint` starts."""

# struct linger is two ints on POSIX but two u_shorts on Windows (the same packing as proxy/server.py).
LINGER_RESET = struct.pack("HH", 1, 0) if sys.platform == "win32" else struct.pack("ii", 1, 0)


def abort_with_reset(sock: socket.socket) -> None:
    """Close ``sock`` so the peer sees RST rather than FIN (SO_LINGER with a zero timeout), on every OS."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    sock.close()


class Recorder:
    """A thread-safe subscriber that keeps every record and lets a test wait for one."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._cond = threading.Condition()

    def __call__(self, record: Record) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def of(self, kind: type) -> list:
        with self._cond:
            return [r for r in self.records if isinstance(r, kind)]

    def wait_for(self, pred: Callable[[Record], bool], timeout: float = IO_TIMEOUT) -> Record:
        with self._cond:
            found: list[Record] = []

            def check() -> bool:
                found[:] = [r for r in self.records if pred(r)]
                return bool(found)

            if not self._cond.wait_for(check, timeout):
                raise TimeoutError("no matching record arrived")
            return found[0]


class EchoServer:
    """A threaded echo server on 127.0.0.1 (a real peer for the relay).

    ``close()`` really stops it: closing a listening socket does not wake a thread blocked in ``accept()`` on
    Linux (the socket stays listening and the thread stays parked), so it wakes the thread with a connection of
    its own and waits for it to end.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._closing:
                conn.close()
                return
            self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._closing = True
        if self._thread.is_alive():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT).close()
            except OSError:
                pass
        self._thread.join(IO_TIMEOUT)
        self.sock.close()
        for c in self.conns:
            # shutdown first: close() alone does not wake the echo thread blocked in recv() on Linux
            for op in (lambda c=c: c.shutdown(socket.SHUT_RDWR), c.close):
                try:
                    op()
                except OSError:
                    pass


@pytest.fixture(autouse=True)
def _qt_garbage_on_the_main_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Qt objects are destroyed on the GUI thread only, never by a garbage collection on an engine thread.

    Python's cyclic collector runs on whichever thread happens to allocate. A window dropped in a reference
    cycle, collected on an in-process engine thread (uvloop's ``create_task``), runs ``~QWidget`` there while the
    GUI thread deletes widgets too: each holds what the other waits for (a Qt mutex against the GIL) and the run
    hangs where no timeout can fire. So during a Qt test automatic collection is off (as pyqtgraph's
    ``GarbageCollector`` does in applications), and this fixture, torn down after ``qtbot`` closed the widgets,
    collects on the main thread.
    """
    if not {"qtbot", "qapp"} & set(request.fixturenames):
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        if was_enabled:
            gc.enable()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    s = EchoServer()
    yield s
    s.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def start_proxy(recorder: Recorder) -> Iterator[Callable[..., ProxyThread]]:
    """``start_proxy(target_port, framing=FramingSpec(...), **config)`` -> a running ProxyThread."""
    started: list[ProxyThread] = []

    def start(target_port: int, framing: FramingSpec | None = None, **kw: object) -> ProxyThread:
        cfg = ProxyConfig(listen_port=0, target_port=target_port, framing=framing or FramingSpec(), **kw)  # type: ignore[arg-type]
        p = ProxyThread(cfg, (recorder,)).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def start_endpoint(recorder: Recorder) -> Iterator[Callable[..., ProxyThread]]:
    """``start_endpoint(target_port, framing=FramingSpec(...), control={...}, **config)`` -> a running ProxyThread
    with its control endpoint on a loopback port (``p.control_port``, token :data:`CONTROL_TOKEN`): the engine and
    the endpoint users run, on a thread of the test process. ``control`` holds ``ControlServer`` options
    (``queue_bytes``, ``payload_rate``, ...)."""
    started: list[ProxyThread] = []

    def start(target_port: int, framing: FramingSpec | None = None, control: dict[str, Any] | None = None,
              **kw: object) -> ProxyThread:
        cfg = ProxyConfig(listen_port=0, target_port=target_port, framing=framing or FramingSpec(), **kw)  # type: ignore[arg-type]
        p = ProxyThread(cfg, (recorder,), control_token=CONTROL_TOKEN, control_options=control).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def connect(port: int, timeout: float = IO_TIMEOUT) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(65536, n - len(buf)))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock: socket.socket) -> bytes:
    buf = bytearray()
    while chunk := sock.recv(65536):
        buf += chunk
    return bytes(buf)

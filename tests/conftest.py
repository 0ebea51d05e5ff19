"""Shared fixtures: real sockets on 127.0.0.1, an in-process engine thread (with its control endpoint when a test
talks the control protocol, as the window and scripts do), and bounded waits.

Every network helper here has a timeout, so a broken relay fails a test instead of hanging CI.
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
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
        with conn:
            try:
                conn.settimeout(60)  # inside: close() may have closed the connection before this thread ran
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

    What survives that collection is then frozen (``gc.freeze``): a full collection walks every tracked object,
    and late in a run the heap makes that 300 ms per Qt test (a fifth of the fast loop). Frozen objects are never
    collected on any thread, which is the safe side here; they were all reachable when frozen.
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
        gc.freeze()
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


# ------------------------------------------------------------------------------------------ the user's settings
# The window keeps its layout, recent targets and filter history in QSettings("sockscope", "sockscope"): on Linux
# $XDG_CONFIG_HOME/sockscope/sockscope.conf, else ~/.config/sockscope/sockscope.conf (Qt's own file dialogs use
# QtProject.conf next to it). No test may read or change the user's copy. For the whole session, QSettings in this
# process and XDG_CONFIG_HOME (inherited by every process a test starts: sockscope, sockscope run, the proxy)
# point into a temporary directory, and the session's summary says so if the real file changed anyway. (On macOS
# and Windows the native format is a plist or the registry, which neither moves: see tests/test_isolation.py.)

REAL_CONFIG_HOME = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
REAL_SETTINGS = (REAL_CONFIG_HOME / "sockscope" / "sockscope.conf", REAL_CONFIG_HOME / "QtProject.conf")


def settings_snapshot(paths: tuple[Path, ...] = REAL_SETTINGS) -> list[tuple[int, int, str] | None]:
    """(mtime, size, sha256) of each file, None where it does not exist: equal snapshots, untouched files."""
    out: list[tuple[int, int, str] | None] = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size, hashlib.sha256(path.read_bytes()).hexdigest()))
        except OSError:
            out.append(None)
    return out


REAL_SETTINGS_AT_START = settings_snapshot()

# Set now, while pytest imports this file and before it imports the test modules: some build their subprocesses'
# environment from os.environ once, at import (tests/test_tutorial.py's ENV), and the window started there writes
# its recent targets.
SESSION_CONFIG_HOME = Path(tempfile.mkdtemp(prefix="sockscope-tests-config-"))
_XDG_CONFIG_HOME_BEFORE = os.environ.get("XDG_CONFIG_HOME")
os.environ["XDG_CONFIG_HOME"] = str(SESSION_CONFIG_HOME)


@pytest.fixture(scope="session", autouse=True)
def isolated_settings() -> Iterator[Path]:
    """Every settings path the app and Qt use, pointed into one temporary directory for the whole session."""
    from PySide6.QtCore import QSettings

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(SESSION_CONFIG_HOME))
    try:
        yield SESSION_CONFIG_HOME
    finally:
        if _XDG_CONFIG_HOME_BEFORE is None:
            os.environ.pop("XDG_CONFIG_HOME", None)
        else:
            os.environ["XDG_CONFIG_HOME"] = _XDG_CONFIG_HOME_BEFORE
        shutil.rmtree(SESSION_CONFIG_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Said, not failed: sockscope itself, or another test run on this machine, may write the real file meanwhile.
    if settings_snapshot() != REAL_SETTINGS_AT_START:
        terminalreporter.write_line(
            f"conftest: the user's real settings changed during this session ({', '.join(map(str, REAL_SETTINGS))}):"
            " if no sockscope window or other test run was using them, a test escaped isolated_settings", red=True)

"""The tutorial's exercise (/work/shared/exercise.py), unmodified, as separate processes through the proxy.

This is the learner's experience end to end: their server and client are plain ``socket`` scripts in their own
processes; only the port the client dials changes. Children have timeouts and are killed in a ``finally``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.model import CloseReason, ConnectionClosed, Direction, Message
from proxy.runner import ProxyThread
from tests.conftest import IO_TIMEOUT, Recorder

EXERCISE = Path(__file__).resolve().parents[2] / "shared" / "exercise.py"
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
WELCOME = "Hello from the exercise server! 🚀"
REPLY = "Ping received! 📥"


@pytest.fixture
def exercise() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    if not EXERCISE.is_file():
        pytest.skip(f"{EXERCISE} is not there")
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, str(EXERCISE), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, encoding="utf-8", env=ENV)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=IO_TIMEOUT)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _first_line(proc: subprocess.Popen[str], timeout: float = IO_TIMEOUT) -> str:
    """The child's first stdout line, or a failure if it does not come in time."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    t.start()
    t.join(timeout)
    assert box and box[0], f"no output from {proc.args} within {timeout} s (exit {proc.poll()})"
    return box[0].rstrip("\n")


def test_server_and_client_through_the_proxy(exercise: Callable[..., subprocess.Popen[str]],
                                             start_proxy: Callable[..., ProxyThread], recorder: Recorder) -> None:
    port = _free_port()
    server = exercise("server", str(port))
    assert _first_line(server) == "[SERVER] listening"
    proxy = start_proxy(port)
    client = exercise("client", "127.0.0.1", str(proxy.port))

    client_out, client_err = client.communicate(timeout=3 * IO_TIMEOUT)
    server_out, server_err = server.communicate(timeout=3 * IO_TIMEOUT)
    assert (client.returncode, server.returncode) == (0, 0), (client_err, server_err)
    assert f"[CLIENT] Message received: {WELCOME}" in client_out.splitlines()
    assert f"[SERVER] Client says: {REPLY}" in server_out.splitlines()

    closed = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert isinstance(closed, ConnectionClosed)
    assert closed.reason is CloseReason.CLOSED, closed
    msgs = recorder.of(Message)
    assert b"".join(m.data for m in msgs if m.direction is Direction.S2C) == WELCOME.encode()
    assert b"".join(m.data for m in msgs if m.direction is Direction.C2S) == REPLY.encode()


def test_pinger_against_echo_through_the_proxy(exercise: Callable[..., subprocess.Popen[str]],
                                               start_proxy: Callable[..., ProxyThread],
                                               recorder: Recorder) -> None:
    port = _free_port()
    echo = exercise("echo", str(port))
    # The echo server prints nothing when ready: dial it until it answers (bounded; a crash ends the wait).
    deadline_tries = 200
    for _ in range(deadline_tries):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT).close()
            break
        except ConnectionRefusedError:
            try:
                echo.wait(0.05)  # waits on the child: returns at once if it died
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"the echo server exited: {echo.communicate()}")
    else:
        pytest.fail("the echo server never listened")
    proxy = start_proxy(port)
    n = 50
    pinger = exercise("pinger", "127.0.0.1", str(proxy.port), str(n))
    out, err = pinger.communicate(timeout=6 * IO_TIMEOUT)
    assert pinger.returncode == 0, err
    assert out.startswith("rtt_ms p50="), out
    closed = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert isinstance(closed, ConnectionClosed)
    expected = sum(len(f"ping {i}\n") for i in range(n))
    assert (closed.bytes_c2s, closed.bytes_s2c) == (expected, expected)

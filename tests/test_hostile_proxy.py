"""Hostile input against the proxy engine's own surface: framers (tests/hostile/framing/) and the control endpoint
(tests/hostile/control/), tested pure and through real sockets.

The promises checked here: a framer never loses, alters or withholds bytes because of their content (whatever it
is, the exact bytes reach the other side), never raises, and costs O(n) however the bytes are split; nothing an
unauthenticated control client sends costs the proxy more than a few KiB of memory, and a misbehaving one is cut
off with a one-line ``bye`` while game traffic flows on.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from proxy.control.client import ControlClient, ControlError
from proxy.control.endpoint import ControlServer
from proxy.control.wire import AUTH_MAX_FRAME
from proxy.framing import FramingSpec, make_framer
from proxy.runner import ProxyThread
from tests.conftest import IO_TIMEOUT, EchoServer, connect, recv_exact, recv_until_eof

HOSTILE = Path(__file__).parent / "hostile"
FRAMING_CASES = sorted((HOSTILE / "framing").glob("*.bin"))
SMALL_CAP = 4096
"""The --max-frame used with the corpus, so the cap's fallback paths run on small files too."""


def framing_of(path: Path) -> str:
    """``json--nested-arrays-1000.bin`` -> ``json``; ``fixed5--…`` -> ``fixed:5``."""
    name = path.name.split("--", 1)[0]
    return "fixed:" + name[5:] if name.startswith("fixed") else name


def feed(name: str, chunks: list[bytes], cap: int = SMALL_CAP) -> tuple[list[bytes], bytes, str | None, int]:
    f = make_framer(name, cap)
    frames: list[bytes] = []
    for c in chunks:
        frames.extend(f.feed(c))
    return frames, f.flush(), f.fallback, f.work  # type: ignore[attr-defined]


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 97)
        out.append(data[i:i + n])
        i += n
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FRAMING_CASES, ids=[p.name for p in FRAMING_CASES])
@pytest.mark.parametrize("how", ["whole", "byte_by_byte", "random_splits", "trailing_bytes"])
def test_framer_passes_hostile_bytes_exactly(path: Path, how: str) -> None:
    data = path.read_bytes()
    name = framing_of(path)
    tail = b""
    if how == "whole":
        chunks = [data]
    elif how == "byte_by_byte":
        chunks = [data[i:i + 1] for i in range(len(data))]
    elif how == "random_splits":
        chunks = splits(data, len(data))
    else:  # the h11 way: whatever follows the hostile part must come out too, untouched and in order
        tail = b'\n{"after": [1, 2]}\n\x00\xff trailer'
        chunks = [data + tail[:5], tail[5:]]
    frames, rest, fallback, work = feed(name, chunks)
    assert b"".join(frames) + rest == data + tail
    assert all(frames), "a framer never returns an empty frame"
    # Linear: every byte is looked at a bounded number of times however the stream is split.
    assert work <= 8 * len(data + tail) + 16 * len(chunks), (work, len(data))
    if fallback is not None:
        assert "raw" in fallback and "\n" not in fallback


JSON_FALLS_BACK = {"nested-arrays-1000", "nested-objects-1000", "unclosed-arrays-5000", "deep-then-valid",
                   "mismatched-brackets", "nul-in-string", "literal-soup"}


@pytest.mark.parametrize("path", [p for p in FRAMING_CASES if framing_of(p) == "json"],
                         ids=lambda p: p.name)
def test_json_corpus_frames_what_is_json_and_falls_back_on_the_rest(path: Path) -> None:
    data = path.read_bytes()
    frames, rest, fallback, _ = feed("json", [data], cap=1 << 20)
    stem = path.stem.split("--", 1)[1]
    if stem in JSON_FALLS_BACK:
        assert fallback is not None, stem
    else:
        assert fallback is None, fallback
        assert rest == b""
        for f in frames:
            if f.strip():
                json.loads(f)  # every frame is one whole JSON value


def test_json_nesting_cap_says_why() -> None:
    f = make_framer("json")
    out = f.feed(b"[" * 1000 + b"]" * 1000)
    assert b"".join(out) + f.flush() == b"[" * 1000 + b"]" * 1000
    assert f.fallback is not None and "nest" in f.fallback


def test_json_nesting_under_the_cap_is_one_frame() -> None:
    data = b"[" * 400 + b"]" * 400 + b"\n"
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        f = make_framer("json")
        frames = [fr for c in chunks for fr in f.feed(c)]
        assert f.fallback is None
        assert b"".join(frames) == data and frames[0].startswith(b"[" * 400)


@pytest.mark.parametrize("head", [b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x05",
                                  b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"],
                         ids=["bin32", "str32", "ext32", "array32", "map32"])
def test_msgpack_huge_declared_length_falls_back_at_once(head: bytes) -> None:
    """A length no frame under the cap can have is known from the header: nothing waits for it."""
    f = make_framer("msgpack", SMALL_CAP)
    out = f.feed(head + b"abc")
    assert f.fallback is not None and "cap" in f.fallback
    assert out == [head + b"abc"] and f.buffered == 0


def test_msgpack_nesting_past_the_unpacker_stack_says_why() -> None:
    f = make_framer("msgpack")
    data = b"\x91" * 2000 + b"\xc0"
    assert b"".join(f.feed(data)) + f.flush() == data
    assert f.fallback is not None and "nest" in f.fallback


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["json", "msgpack", "lines", "len32be"])
def test_a_big_frame_byte_by_byte_is_linear(name: str) -> None:
    """A frame arriving one byte at a time costs O(n) in total, not O(n^2)."""
    n = 200_000
    body = {"json": b'{"k": "' + b"x" * n + b'", "a": [' + b"1," * 1000 + b"2]}\n",
            "msgpack": b"\xc6" + n.to_bytes(4, "big") + b"x" * n,
            "lines": b"x" * n + b"\n",
            "len32be": n.to_bytes(4, "big") + b"x" * n}[name]
    f = make_framer(name)
    frames = []
    for i in range(len(body)):
        frames.extend(f.feed(body[i:i + 1]))
    # (json: the newline after the value came in a read of its own, so it is passed on as one)
    assert frames == ([body[:-1], b"\n"] if name == "json" else [body]) and f.fallback is None
    assert f.work <= 8 * len(body), f.work  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ through real sockets


def _through_the_proxy(start_proxy, echo: EchoServer, name: str, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """Send ``data``, then FIN (an incomplete last frame is passed on at the end of the stream), read to EOF."""
    proxy = start_proxy(echo.port, FramingSpec(name, name, SMALL_CAP))
    with connect(proxy.port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_until_eof(s)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FRAMING_CASES, ids=[p.name for p in FRAMING_CASES])
def test_hostile_stream_reaches_the_server_and_back_exactly(start_proxy, echo_server: EchoServer,  # type: ignore[no-untyped-def]
                                                            path: Path) -> None:
    data = path.read_bytes()
    assert _through_the_proxy(start_proxy, echo_server, framing_of(path), data) == data


@pytest.mark.timeout(60)
def test_json_nesting_1000_reaches_the_server(start_proxy, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """Issue 16 item 4: the framer raised RecursionError, the connection closed and 0 bytes reached the server."""
    data = b"[" * 1000 + b"]" * 1000 + b'\n{"type": "ping"}\n'
    proxy = start_proxy(echo_server.port, FramingSpec("json", "json"))
    with connect(proxy.port) as s:
        s.sendall(data)
        assert recv_exact(s, len(data)) == data


# ------------------------------------------------------------------------------------------ the control endpoint

CONTROL_CASES = sorted((HOSTILE / "control").glob("*.bin"))
TOKEN = "hostile-test-token"
U32 = struct.Struct(">I")


class Endpoint:
    """A proxy on a thread with its control endpoint, for bare-socket clients."""

    def __init__(self, proxy: ProxyThread, **kw: Any) -> None:
        self.proxy = proxy

        async def start() -> ControlServer:
            cs = ControlServer(proxy.server, token=TOKEN, **kw)
            await cs.start()
            return cs

        self.cs = asyncio.run_coroutine_threadsafe(start(), proxy.loop).result(IO_TIMEOUT)
        assert self.cs.address is not None
        self.port = self.cs.address[1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.cs.close(), self.proxy.loop).result(IO_TIMEOUT)

    def sock(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)

    def authed(self) -> socket.socket:
        s = self.sock()
        send_frame(s, {"v": 1, "type": "auth", "token": TOKEN})
        assert read_frame(s)["type"] == "hello"
        return s


def send_frame(s: socket.socket, obj: object) -> None:
    body = msgpack.packb(obj, use_bin_type=True)
    s.sendall(U32.pack(len(body)) + body)


def read_frame(s: socket.socket) -> dict[str, Any]:
    (n,) = U32.unpack(recv_exact(s, 4))
    obj = msgpack.unpackb(recv_exact(s, n), raw=False)
    assert isinstance(obj, dict), obj
    return obj


def call(s: socket.socket, cid: int, command: str, **args: Any) -> dict[str, Any]:
    """Send a command and return its reply (events read meanwhile are skipped)."""
    send_frame(s, {**args, "v": 1, "type": command, "id": cid})
    while True:
        f = read_frame(s)
        if f["type"] in ("reply", "bye") and f.get("id") in (cid, None):
            return f


def read_bye(s: socket.socket) -> str:
    """The reason of the ``bye`` the proxy sends before closing (other frames are skipped); EOF follows it."""
    while True:
        f = read_frame(s)
        if f["type"] == "bye":
            reason = f["reason"]
            assert isinstance(reason, str) and "\n" not in reason and 0 < len(reason) <= 300, reason
            assert recv_until_eof(s) == b""
            return reason


@pytest.fixture
def endpoint(start_proxy, echo_server: EchoServer) -> Iterator[Endpoint]:  # type: ignore[no-untyped-def]
    e = Endpoint(start_proxy(echo_server.port), auth_timeout=2.0)
    yield e
    e.close()


def game_round_trip(proxy: ProxyThread, payload: bytes = b"ping") -> None:
    with connect(proxy.port) as s:
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", CONTROL_CASES, ids=[p.name for p in CONTROL_CASES])
def test_hostile_control_bytes_get_a_one_line_bye(endpoint: Endpoint, path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    watcher = endpoint.authed()
    with endpoint.sock() as s:
        s.sendall(path.read_bytes())
        reason = read_bye(s)
    assert "Traceback" not in reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the proxy logged an error"
    # Nothing that client sent is held on to, and everyone else carries on.
    assert all(sub.reader.capacity <= 4 + AUTH_MAX_FRAME for sub in endpoint.cs.connections)
    game_round_trip(endpoint.proxy)
    assert call(watcher, 7, "ping")["ok"] is True
    watcher.close()


def test_an_oversized_auth_frame_is_refused_from_its_length_alone(endpoint: Endpoint) -> None:
    with endpoint.sock() as s:
        s.sendall(U32.pack(AUTH_MAX_FRAME + 1))  # the length, and nothing after it
        reason = read_bye(s)
    assert f"{AUTH_MAX_FRAME + 1}" in reason and f"{AUTH_MAX_FRAME}" in reason


@pytest.mark.slow
def test_a_client_too_slow_to_authenticate_is_cut_off(endpoint: Endpoint) -> None:
    with endpoint.sock() as s:
        s.sendall(U32.pack(30) + b"\x83")  # a plausible start, then nothing
        assert "no auth frame within" in read_bye(s)
    game_round_trip(endpoint.proxy)


def test_unauthenticated_connections_are_bounded(start_proxy, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """Idle unauthenticated connections cannot pile up: past the bound the oldest is cut off, and a real client
    still gets in."""
    e = Endpoint(start_proxy(echo_server.port), max_unauthenticated=4)
    try:
        idle = [e.sock() for _ in range(6)]
        try:
            assert "too many" in read_bye(idle[0]) and "too many" in read_bye(idle[1])
            watcher = e.authed()
            assert call(watcher, 1, "ping")["ok"] is True
            watcher.close()
        finally:
            for s in idle:
                s.close()
        game_round_trip(e.proxy)
    finally:
        e.close()


def test_authenticated_frames_have_limits_too(endpoint: Endpoint) -> None:
    s = endpoint.authed()
    # 600 levels (under msgpack's own 1,024-level stack): refused by the command nesting limit, with a reply
    reply = call(s, 1, "ping", echo=functools.reduce(lambda a, _: [a], range(600), 0))
    assert reply["ok"] is False and "nest" in reply["error"], reply
    # 2,000 levels: past msgpack's stack; a malformed frame (the client is cut off, the proxy is not hurt)
    body = b"\x84\xa1v\x01\xa4type\xa4ping\xa2id\x02\xa4echo" + b"\x91" * 2000 + b"\xc0"
    s.sendall(U32.pack(len(body)) + body)
    assert "nest" in read_bye(s)
    s.close()
    game_round_trip(endpoint.proxy)


@pytest.mark.timeout(60)
def test_an_authenticated_frame_of_a_million_empty_arrays_is_refused_cheaply(endpoint: Endpoint) -> None:
    s = endpoint.authed()
    n = 1_000_000
    body = (b"\x85\xa1v\x01\xa4type\xa6replay\xa2id\x03\xa7conn_id\x01\xa8messages\xdd" + n.to_bytes(4, "big")
            + b"\x90" * n)
    tracemalloc.start()
    try:
        s.sendall(U32.pack(len(body)) + body)
        while (reply := read_frame(s))["type"] not in ("reply", "bye"):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply["type"] == "bye" and "limit" in reply["reason"], reply
    # the frame itself is 1 MB; building a million lists would take more than 60 MB
    assert peak < 12 << 20, peak
    s.close()
    game_round_trip(endpoint.proxy)


# ------------------------------------------------------------------------------------ proxy.control.client's side


class FakeProxy:
    """A listening socket that answers a client's auth with whatever frames a test gives it."""

    def __init__(self, frames: list[bytes]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames = frames
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                read_frame(conn)  # the auth frame
                for f in self.frames:
                    conn.sendall(f)
                recv_until_eof(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(IO_TIMEOUT)


def raw_frame(body: bytes) -> bytes:
    return U32.pack(len(body)) + body


HELLO = raw_frame(msgpack.packb({"v": 1, "type": "hello", "protocol": 1}))


@pytest.mark.timeout(30)
def test_client_refuses_a_huge_first_frame_without_allocating_it() -> None:
    fake = FakeProxy([U32.pack(512 << 20) + b"\x80"])
    try:
        tracemalloc.start()
        try:
            with pytest.raises(ControlError, match="first frame"):
                ControlClient("127.0.0.1", fake.port, "t", timeout=5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, peak
    finally:
        fake.close()


@pytest.mark.timeout(30)
def test_client_refuses_an_event_of_a_million_empty_arrays() -> None:
    n = 1_000_000
    event = raw_frame(b"\x83\xa1v\x01\xa4type\xa6notice\xa1x\xdd" + n.to_bytes(4, "big") + b"\x90" * n)
    fake = FakeProxy([HELLO, event])
    try:
        c = ControlClient("127.0.0.1", fake.port, "t", timeout=5)
        try:
            assert list(c.iter_events(timeout=IO_TIMEOUT)) == []
            assert c.closed_reason is not None and "limit" in c.closed_reason, c.closed_reason
        finally:
            c.close()
    finally:
        fake.close()


# ------------------------------------------------------------------------------------------ a proxy process

HAS_PROC = Path("/proc/self/status").exists()


class ProxyProcess:
    """``python -m proxy`` as a child process (its token in the environment), with its stdout a pipe.

    The pipe is read only up to the start-up lines; after that the test decides whether to read it
    (``drain()``) or leave it full (a terminal, an IDE console or a parent that does not read).
    """

    def __init__(self, target_port: int, *extra: str, control: bool = True) -> None:
        args = [sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{target_port}",
                *extra]
        if control:
            args += ["--control", "127.0.0.1:0"]
        env = {**os.environ, "SOCKSCOPE_TOKEN": TOKEN, "PYTHONIOENCODING": "utf-8"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self.control_port = 0
        self.port = 0
        self.startup: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + IO_TIMEOUT
        while not self.port or (control and not self.control_port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the proxy did not start: {self.startup}")
            line = self.proc.stdout.readline().decode("utf-8", "replace")
            self.startup.append(line)
            if m := re.search(r"control on [\d.]+:(\d+)", line):
                self.control_port = int(m.group(1))
            if m := re.search(r"listening on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
        self._drained: list[bytes] = []
        self._drainer: threading.Thread | None = None

    def drain(self) -> None:
        """Read its stdout from now on (on a thread), so the pipe never fills."""
        assert self.proc.stdout is not None
        out = self.proc.stdout

        def run() -> None:
            while chunk := out.read1(65536):
                self._drained.append(chunk)

        self._drainer = threading.Thread(target=run, daemon=True)
        self._drainer.start()

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (peak RSS) ... in kB, from /proc/<pid>/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
        return out

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self) -> tuple[bytes, bytes]:
        """SIGTERM (a clean stop), then everything left on stdout and stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
        if self._drainer is not None:
            # The drainer owns stdout: communicate() reading it too would split the stream between two readers
            # (a line's head in one, its tail in the other, joined out of order).
            try:
                self.proc.wait(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=IO_TIMEOUT)
            self._drainer.join(IO_TIMEOUT)
            err = b""
            for pipe in (self.proc.stderr, self.proc.stdout):
                if pipe is not None and not pipe.closed:  # (stop() runs again on leaving the with block)
                    if pipe is self.proc.stderr:
                        err = pipe.read()
                    pipe.close()
            return b"".join(self._drained), err or b""
        try:
            out, err = self.proc.communicate(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=IO_TIMEOUT)
        return out or b"", err or b""

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GameLoop:
    """A game connection doing request/response round trips through the proxy on a thread, until stopped.

    Every reply must be exactly the request (numbered, so a lost or reordered byte shows); the round trip times
    are kept for the report.
    """

    def __init__(self, port: int, size: int = 64) -> None:
        self.sock = connect(port, timeout=30)
        self.size = size
        self.rtts: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                msg = f"{i:08d}".encode().ljust(self.size, b".")
                t = time.perf_counter()
                self.sock.sendall(msg)
                got = recv_exact(self.sock, len(msg))
                self.rtts.append(time.perf_counter() - t)
                if got != msg:
                    raise AssertionError(f"round trip {i}: sent {msg!r}, got {got!r}")
                i += 1
        except BaseException as e:
            self.error = e

    def stop(self) -> dict[str, float]:
        """Stop, check every round trip was exact, and return p50/p99/max in ms."""
        self._stop.set()
        self.thread.join(60)
        self.sock.close()
        if self.error is not None:
            raise self.error
        assert not self.thread.is_alive() and self.rtts
        r = sorted(self.rtts)
        return {"round_trips": len(r), "p50_ms": r[len(r) // 2] * 1e3, "p99_ms": r[int(len(r) * 0.99)] * 1e3,
                "max_ms": r[-1] * 1e3}


@pytest.mark.timeout(120)
@pytest.mark.skipif(not HAS_PROC, reason="reads the proxy's memory from /proc (Linux)")
def test_a_48_mib_unauthenticated_frame_costs_the_proxy_nothing(echo_server: EchoServer) -> None:
    """Issue 16 item 5: one unauthenticated 48 MiB frame of 50 million empty msgpack arrays grew the proxy from
    30 MB to 1.9 GB and stalled game round trips for seconds. Now its length prefix alone ends it."""
    with ProxyProcess(echo_server.port, "--quiet") as p:
        p.drain()
        game = GameLoop(p.port)
        before = p.status()
        count = 50_000_000
        attacker = socket.create_connection(("127.0.0.1", p.control_port), timeout=60)
        sent = 0
        try:
            attacker.sendall(U32.pack(5 + count) + b"\xdd" + count.to_bytes(4, "big"))
            chunk = b"\x90" * (1 << 20)
            while sent < count:
                attacker.sendall(chunk[:count - sent])
                sent += min(len(chunk), count - sent)
            recv_until_eof(attacker)  # the proxy has dealt with the frame when it closes the connection
        except OSError:
            pass  # cut off: the proxy stopped reading and closed the connection
        finally:
            attacker.close()
        stats = game.stop()
        after = p.status()
        print(f"\nattack frame: {sent} of {count} bytes accepted; proxy RSS {before['VmRSS'] // 1024} -> "
              f"{after['VmRSS'] // 1024} MB, peak {after['VmHWM'] // 1024} MB; game {stats}")
        assert after["VmHWM"] < max(before["VmHWM"], before["VmRSS"]) + 32 * 1024, (before, after)
        game_round_trip_port(p.port)


def game_round_trip_port(port: int, payload: bytes = b"still relaying") -> None:
    with connect(port) as s:
        s.sendall(payload)
        assert recv_exact(s, len(payload)) == payload


# ------------------------------------------------------------------------------ a terminal that does not read


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not HAS_PROC, reason="a subprocess proxy, measured through /proc (Linux)")
def test_a_stdout_nobody_reads_never_stops_the_relay(echo_server: EchoServer) -> None:
    """Issue 16 item 7: the printer wrote each line with a blocking write on the relay's loop; ~1,070 connection
    lines filled a pipe nobody read and every connection stopped. Now lines past a bounded buffer are dropped and
    counted, the relay never waits, and the proxy still stops at once on SIGTERM."""
    with ProxyProcess(echo_server.port, control=False) as p:
        for i in range(4000):  # 6 lines, 600 bytes each: 2.4 MB, far more than a pipe and the buffer hold
            with connect(p.port, timeout=IO_TIMEOUT) as s:
                msg = f"hello {i} ".encode().ljust(100, b"~")
                s.sendall(msg)
                assert recv_exact(s, len(msg)) == msg
        game_round_trip_port(p.port)
        # The terminal starts reading again: what was kept comes out, then how much was dropped.
        p.drain()
        deadline = time.monotonic() + IO_TIMEOUT
        while b"lines dropped" not in b"".join(p._drained):
            assert time.monotonic() < deadline, b"".join(p._drained)[-500:]
            game_round_trip_port(p.port)  # (each round trip also makes a few lines)
        t = time.monotonic()
        out, err = p.stop()
        assert p.proc.returncode == 0 and time.monotonic() - t < 5, err
    text = out.decode("utf-8", "replace")
    dropped = [int(n) for n in re.findall(r"… (\d+) lines dropped: the terminal is not reading fast enough", text)]
    assert sum(dropped) > 1000, (dropped, text[-2000:])  # (one notice per gap: the writer caught up now and then)
    assert "hello 0" in text  # the first lines were kept, whole
    lines = text.splitlines()
    odd = [lines[max(0, i - 1):i + 1] for i, line in enumerate(lines)
           if not (line.startswith(("sockscope", "…")) or re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line))]
    assert not odd, f"a line was cut or mixed with another: {odd[:3]!r}"


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(not HAS_PROC, reason="a subprocess proxy (POSIX signals)")
def test_the_proxy_stops_at_once_with_its_stdout_full(echo_server: EchoServer) -> None:
    with ProxyProcess(echo_server.port, control=False) as p:
        big = b"x" * 60_000
        with connect(p.port) as s:  # each message prints a line: fill the pipe
            for _ in range(400):
                s.sendall(big)
                recv_exact(s, len(big))
        t = time.monotonic()
        p.proc.terminate()
        p.proc.wait(IO_TIMEOUT)  # raises TimeoutExpired if the proxy is stuck in a write
        assert time.monotonic() - t < 5

"""proxy.control.client against a real control endpoint (on a thread of the test process), and the frame reader both
ends share (proxy.control.wire.FrameReader): whole, byte by byte, split anywhere, frames bigger than its buffer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import msgpack
import pytest

from proxy.codec import record_to_dict
from proxy.control.client import ControlClient, ControlError
from proxy.control.wire import MAX_FRAME, FrameReader, FrameTooLarge, pack_frame
from proxy.model import ConnectionOpened, Direction, Message, Record
from proxy.runner import ProxyThread
from tests.conftest import CONTROL_TOKEN, IO_TIMEOUT, EchoServer, connect, recv_exact, recv_until_eof

TOKEN = CONTROL_TOKEN


@pytest.fixture
def proxy(start_endpoint: Callable[..., ProxyThread], echo_server: EchoServer) -> ProxyThread:
    return start_endpoint(echo_server.port)


def test_calls_and_events(proxy: ProxyThread) -> None:
    with ControlClient("127.0.0.1", proxy.control_port, TOKEN) as c:
        assert c.hello["protocol"] == 1 and c.client_id > 0
        assert c.call("ping", echo="x")["echo"] == "x"
        s = connect(proxy.port)
        s.sendall(b"hello")
        assert recv_exact(s, 5) == b"hello"
        opened = c.wait_for(lambda e: e["type"] == "connection_opened")
        assert isinstance(opened["record"], ConnectionOpened)
        conn = opened["record"].conn_id
        ev = c.wait_for(lambda e: e["type"] == "message" and e["direction"] == "s2c")
        m = ev["record"]
        assert isinstance(m, Message) and m.data == b"hello" and m.direction is Direction.S2C and m.conn_id == conn
        c.call("inject", conn_id=conn, direction="c2s", data=b"more")
        assert recv_exact(s, 4) == b"more"
        with pytest.raises(ControlError, match="no open connection #4242"):
            c.call("close", conn_id=4242)
        with pytest.raises(ControlError, match="unknown command"):
            c.call("nonsense")
        with pytest.raises(ControlError, match="inject: data"):
            c.call("inject", conn_id=conn, direction="c2s", data="not bytes")
        s.close()


def test_commands_are_futures_settled_by_their_replies(proxy: ProxyThread) -> None:
    """Replies are matched by id, whatever order they are awaited in; asyncio code awaits them through
    ``asyncio.wrap_future``."""
    with ControlClient("127.0.0.1", proxy.control_port, TOKEN) as c:
        futures = [c.submit("ping", echo=i) for i in range(50)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        assert [f.result(IO_TIMEOUT)["echo"] for f in reversed(futures)] == list(range(49, -1, -1))

        async def main() -> tuple[int, int]:
            r1, r2 = await asyncio.gather(asyncio.wrap_future(c.submit("ping", echo=1)),
                                          asyncio.wrap_future(c.submit("ping", echo=2)))
            return r1["echo"], r2["echo"]

        assert asyncio.run(main()) == (1, 2)
        assert c.in_flight("ping") == 0


def test_records_go_to_on_records_in_order_with_the_other_events(proxy: ProxyThread) -> None:
    """With ``on_records``, records arrive decoded in lists (one per read); other events keep their place
    relative to them."""
    seen: list[object] = []
    done = threading.Event()

    def on_records(records: list[Record]) -> None:
        assert isinstance(records, list) and records
        seen.extend(records)

    def on_event(event: dict[str, object]) -> None:
        seen.append(event["type"])
        if event["type"] == "capture":
            done.set()

    with ControlClient("127.0.0.1", proxy.control_port, TOKEN, on_records=on_records, on_event=on_event) as c:
        s = connect(proxy.port)
        s.sendall(b"abc")
        assert recv_exact(s, 3) == b"abc"
        s.close()
        proxy.call(lambda: None)  # the engine has published those records
        c.call("pause_capture")
        assert done.wait(IO_TIMEOUT)
        c.call("resume_capture")
    kinds = [type(x).__name__ if not isinstance(x, str) else x for x in seen if x != "stats"]
    assert kinds.index("capture") > max(i for i, k in enumerate(kinds) if k == "Message")
    assert {"ConnectionOpened", "Message"} <= set(kinds)
    assert c.events.empty() or c.events.get_nowait() is None  # nothing went to the queue


def test_the_proxy_going_away_ends_the_events_and_fails_calls(proxy: ProxyThread) -> None:
    c = ControlClient("127.0.0.1", proxy.control_port, TOKEN)
    try:
        assert proxy.control is not None
        proxy.run_coroutine(proxy.control.close())
        bye = c.wait_for(lambda e: e["type"] == "bye")
        assert bye["reason"] == "proxy shutting down"
        assert list(c.iter_events(timeout=IO_TIMEOUT)) == []  # the stream has ended
        with pytest.raises(ControlError, match="bye"):
            c.call("ping")
    finally:
        c.close()


def test_wrong_token_and_nothing_listening(proxy: ProxyThread) -> None:
    with pytest.raises(ControlError, match="wrong token"):
        ControlClient("127.0.0.1", proxy.control_port, "nope")
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    unused = free.getsockname()[1]
    free.close()
    with pytest.raises(ControlError, match="cannot connect"):
        ControlClient("127.0.0.1", unused, TOKEN, timeout=2)


def test_call_timeout(proxy: ProxyThread) -> None:
    """A command whose reply never comes (here: the engine loop is blocked) fails with a clear error."""
    with ControlClient("127.0.0.1", proxy.control_port, TOKEN) as c:
        release = threading.Event()
        proxy.loop.call_soon_threadsafe(lambda: release.wait(5))
        try:
            with pytest.raises(ControlError, match=r"no reply within 0\.2 s"):
                c.call("ping", timeout=0.2)
        finally:
            release.set()
        assert c.call("ping")["echo"] is None


class SilentProxy:
    """Answers the auth with a hello, then never reads again: the client's socket buffers fill up."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conn: socket.socket | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.conn = conn
        head = recv_exact(conn, 4)
        recv_exact(conn, int.from_bytes(head, "big"))  # the auth frame
        conn.sendall(pack_frame({"v": 1, "type": "hello", "protocol": 1}))
        self.ready.set()

    def close(self) -> None:
        self.thread.join(IO_TIMEOUT)
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


@pytest.mark.slow  # fills a socket buffer for 2 s: the full run only
@pytest.mark.timeout(30)
def test_submit_never_blocks_on_a_proxy_that_does_not_read() -> None:
    """The window sends from its GUI thread: 32 MiB of commands to a proxy that reads nothing return at once, as
    futures; closing is bounded and fails them."""
    fake = SilentProxy()
    try:
        c = ControlClient("127.0.0.1", fake.port, "t", timeout=5)
        assert fake.ready.wait(IO_TIMEOUT)
        futures = [c.submit("inject", conn_id=1, direction="c2s", data=bytes(1 << 20)) for _ in range(32)]
        assert not any(f.done() for f in futures)
        c.close()
        assert all(isinstance(f.exception(IO_TIMEOUT), ControlError) for f in futures)
    finally:
        fake.close()


def test_a_command_too_big_for_a_frame_fails_without_being_sent(proxy: ProxyThread) -> None:
    with ControlClient("127.0.0.1", proxy.control_port, TOKEN) as c:
        fut = c.submit("inject", conn_id=1, direction="c2s", data=bytes(MAX_FRAME))
        with pytest.raises(ControlError, match="more than a frame carries"):
            fut.result(IO_TIMEOUT)
        assert c.call("ping", echo=1)["echo"] == 1


def test_a_script_that_exits_without_close_says_nothing_at_exit(proxy: ProxyThread) -> None:
    """A learner's script breaks out of iter_events and ends: no noise, no hang."""
    script = ("from proxy.control.client import ControlClient\n"
              f"c = ControlClient('127.0.0.1', {proxy.control_port}, {TOKEN!r})\n"
              "print(c.hello['type'])\n"
              "c.call('snapshot')\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello"
    assert run.stderr == "", run.stderr


# ------------------------------------------------------------------------------------------ the frame reader


def _frames(objs: list[dict[str, object]]) -> bytes:
    return b"".join(pack_frame(o) for o in objs)


def _read(reader: FrameReader, chunks: list[bytes]) -> list[object]:
    """Push ``chunks`` through ``reader`` the way a socket does (receive into its buffer, then take frames)."""
    out: list[object] = []
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            buf = reader.get_buffer()
            k = min(len(buf), len(view))
            assert k > 0
            buf[:k] = view[:k]
            reader.buffer_updated(k)
            view = view[k:]
            out += [msgpack.unpackb(body, raw=False) for body in reader.frames()]
    return out


_STREAM: list[dict[str, object]] = [
    {"v": 1, "type": "hello", "protocol": 1},
    {"v": 1, "type": "stats", "held": 0},
    {"v": 1, **record_to_dict(Message(1, 1, Direction.C2S, 0, b"\x00" * 300, 5, 6))},
    {"v": 1, "type": "stats", "held": 1},
]


@pytest.mark.parametrize("chunk", [64, 4100, 1 << 20])
@pytest.mark.parametrize("how", ["whole", "byte-by-byte", "split-everywhere"])
def test_reader_takes_frames_whole_one_byte_at_a_time_and_split(how: str, chunk: int) -> None:
    blob = _frames(_STREAM)
    if how == "whole":
        chunks = [blob]
    elif how == "byte-by-byte":
        chunks = [blob[i:i + 1] for i in range(len(blob))]
    else:
        chunks = [blob[i:i + 7] for i in range(0, len(blob), 7)]
    assert _read(FrameReader(MAX_FRAME, chunk), chunks) == _STREAM


def test_reader_keeps_trailing_bytes_for_the_next_read() -> None:
    blob = _frames(_STREAM)
    cut = len(blob) - 5  # the last frame arrives in two reads
    reader = FrameReader(MAX_FRAME, 1 << 20)
    assert _read(reader, [blob[:cut]]) == _STREAM[:3]
    assert reader.buffered > 0
    assert _read(reader, [blob[cut:]]) == _STREAM[3:]
    assert reader.buffered == 0


def test_reader_stopped_early_keeps_the_rest() -> None:
    reader = FrameReader(MAX_FRAME, 1 << 20)
    blob = _frames(_STREAM)
    reader.get_buffer()[:len(blob)] = blob
    reader.buffer_updated(len(blob))
    for _ in reader.frames():
        break  # one frame taken (a client that got a bye stops here)
    assert [msgpack.unpackb(b) for b in reader.frames()] == _STREAM[1:]


def test_reader_takes_frames_bigger_than_its_buffer_and_small_ones_after_them() -> None:
    """A 5 MiB payload (five times the buffer) arrives in 64 KiB reads, then small frames in the same read."""
    big = bytes(range(256)) * ((5 << 20) // 256)
    stream = [_STREAM[0], {**_STREAM[2], "data": big}, _STREAM[1], _STREAM[3]]
    blob = _frames(stream)
    reader = FrameReader(MAX_FRAME, 1 << 20)
    assert _read(reader, [blob[i:i + (64 << 10)] for i in range(0, len(blob), 64 << 10)]) == stream
    assert reader.capacity == 1 << 20  # the big frame's own buffer is gone


def test_reader_refuses_a_frame_over_its_limit_from_the_length_alone() -> None:
    reader = FrameReader(4096, 4100)
    reader.get_buffer()[:4] = (4097).to_bytes(4, "big")
    reader.buffer_updated(4)
    with pytest.raises(FrameTooLarge) as e:
        list(reader.frames())
    assert (e.value.size, e.value.limit) == (4097, 4096) and reader.capacity == 4100


def test_client_refuses_a_frame_that_is_not_a_map() -> None:
    body = msgpack.packb([1, 2, 3])
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            recv_exact(conn, int.from_bytes(recv_exact(conn, 4), "big"))
            conn.sendall(pack_frame({"v": 1, "type": "hello"}) + len(body).to_bytes(4, "big") + body)
            recv_until_eof(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        c = ControlClient("127.0.0.1", server.getsockname()[1], "t", timeout=5)
        assert list(c.iter_events(timeout=IO_TIMEOUT)) == []
        assert c.closed_reason is not None and "not a map" in c.closed_reason
        c.close()
    finally:
        t.join(IO_TIMEOUT)
        server.close()

"""proxy.client against a real control endpoint: async and blocking clients, decoded records, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from proxy.client import ControlClient, ControlError, SyncControlClient
from proxy.codec import record_to_dict
from proxy.control import ControlServer
from proxy.model import ConnectionOpened, Direction, Message
from proxy.runner import ProxyThread
from tests.conftest import IO_TIMEOUT, EchoServer, connect, recv_exact

TOKEN = "client-test"
_servers: list[ControlServer] = []


@pytest.fixture
def endpoint(start_proxy: Callable[..., ProxyThread], echo_server: EchoServer) -> Iterator[tuple[ProxyThread, int]]:
    proxy = start_proxy(echo_server.port)

    async def start() -> ControlServer:
        cs = ControlServer(proxy.server, token=TOKEN)
        await cs.start()
        return cs

    cs = asyncio.run_coroutine_threadsafe(start(), proxy.loop).result(IO_TIMEOUT)
    assert cs.address is not None
    _servers.append(cs)
    yield proxy, cs.address[1]
    _servers.remove(cs)
    asyncio.run_coroutine_threadsafe(cs.close(), proxy.loop).result(IO_TIMEOUT)


def test_sync_client_calls_and_events(endpoint: tuple[ProxyThread, int]) -> None:
    proxy, port = endpoint
    with SyncControlClient("127.0.0.1", port, TOKEN) as c:
        assert c.hello["protocol"] == 1
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
        s.close()


def test_sync_client_sees_the_proxy_go(endpoint: tuple[ProxyThread, int]) -> None:
    proxy, port = endpoint
    c = SyncControlClient("127.0.0.1", port, TOKEN)
    try:
        cs = _servers[-1]
        asyncio.run_coroutine_threadsafe(cs.close(), proxy.loop).result(IO_TIMEOUT)
        bye = c.wait_for(lambda e: e["type"] == "bye")
        assert bye["reason"] == "proxy shutting down"
        assert list(c.iter_events(timeout=IO_TIMEOUT)) == []  # the stream has ended
        with pytest.raises(ControlError, match="bye"):
            c.call("ping")
    finally:
        c.close()


def test_wrong_token_and_nothing_listening(endpoint: tuple[ProxyThread, int]) -> None:
    _, port = endpoint
    with pytest.raises(ControlError, match="wrong token"):
        SyncControlClient("127.0.0.1", port, "nope")
    import socket

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    unused = free.getsockname()[1]
    free.close()
    with pytest.raises(ControlError, match="cannot connect"):
        SyncControlClient("127.0.0.1", unused, TOKEN, timeout=2)


def test_async_client(endpoint: tuple[ProxyThread, int]) -> None:
    proxy, port = endpoint

    async def main() -> None:
        c = await ControlClient.connect("127.0.0.1", port, TOKEN)
        assert c.hello["type"] == "hello"
        r1, r2 = await asyncio.gather(c.call("ping", echo=1), c.call("ping", echo=2))  # replies matched by id
        assert (r1["echo"], r2["echo"]) == (1, 2)
        loop = asyncio.get_running_loop()

        def talk() -> None:
            s = connect(proxy.port)
            s.sendall(b"abc")
            recv_exact(s, 3)
            s.close()

        await loop.run_in_executor(None, talk)
        kinds = []
        async for ev in c.events():
            kinds.append(ev["type"])
            if ev["type"] == "connection_closed":
                break
        assert {"connection_opened", "message", "connection_closed"} <= set(kinds)
        with pytest.raises(ControlError, match="inject: data"):
            await c.call("inject", conn_id=1, direction="c2s", data="not bytes")
        await c.close()
        with pytest.raises(ControlError):
            await c.call("ping")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_call_timeout(endpoint: tuple[ProxyThread, int]) -> None:
    """A command whose reply never comes (here: the engine loop is blocked) fails with a clear error."""
    proxy, port = endpoint
    import threading

    with SyncControlClient("127.0.0.1", port, TOKEN) as c:
        release = threading.Event()
        proxy.loop.call_soon_threadsafe(lambda: release.wait(5))
        try:
            with pytest.raises(ControlError, match=r"no reply within 0\.2 s"):
                c.call("ping", timeout=0.2)
        finally:
            release.set()
        assert c.call("ping")["echo"] is None


def test_a_script_that_exits_without_close_says_nothing_at_exit(endpoint: tuple[ProxyThread, int]) -> None:
    """A learner's script breaks out of iter_events and ends: no asyncio 'Task was destroyed' noise."""
    import subprocess
    import sys

    _, port = endpoint
    script = ("import sys\nfrom proxy.client import SyncControlClient\n"
              f"c = SyncControlClient('127.0.0.1', {port}, {TOKEN!r})\n"
              "print(c.hello['type'])\n"
              "c.call('snapshot')\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello"
    assert "destroyed" not in run.stderr and "Traceback" not in run.stderr, run.stderr


# ------------------------------------------------------------------------------------------ the receiver


def _frames(objs: list[dict[str, object]]) -> bytes:
    import msgpack

    out = bytearray()
    for o in objs:
        body = msgpack.packb(o, use_bin_type=True)
        out += len(body).to_bytes(4, "big") + body
    return bytes(out)


def _feed(chunks: list[bytes]) -> tuple[dict[str, object], list[dict[str, object]], str | None]:
    """Push ``chunks`` through a client's receiver the way the event loop does (get_buffer, then
    buffer_updated); returns the hello, the events and the closing reason."""
    from proxy.client import _END, _Receiver

    async def run() -> tuple[dict[str, object], list[dict[str, object]], str | None]:
        client = ControlClient()
        rx = _Receiver(client)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                buf = rx.get_buffer(-1)
                k = min(len(buf), len(view))
                assert k > 0
                buf[:k] = view[:k]
                rx.buffer_updated(k)
                view = view[k:]
        hello = client._first.result() if client._first.done() else {}
        events = []
        while not client._events.empty():
            ev = client._events.get_nowait()
            if ev is not _END:
                events.append(ev)
        return hello, events, client.closed_reason

    return asyncio.run(run())


_STREAM = [
    {"v": 1, "type": "hello", "protocol": 1},
    {"v": 1, "type": "stats", "held": 0},
    {"v": 1, **record_to_dict(Message(1, 1, Direction.C2S, 0, b"\x00" * 300, 5, 6))},
    {"v": 1, "type": "stats", "held": 1},
]


@pytest.mark.parametrize("how", ["whole", "byte-by-byte", "split-everywhere"])
def test_receiver_decodes_frames_whole_one_byte_at_a_time_and_split(how: str) -> None:
    blob = _frames(_STREAM)
    if how == "whole":
        chunks = [blob]
    elif how == "byte-by-byte":
        chunks = [blob[i:i + 1] for i in range(len(blob))]
    else:
        chunks = [blob[i:i + 7] for i in range(0, len(blob), 7)]
    hello, events, reason = _feed(chunks)
    assert hello["type"] == "hello"
    assert [e["type"] for e in events] == ["stats", "message", "stats"]
    msg = events[1]["record"]
    assert isinstance(msg, Message) and msg.data == b"\x00" * 300 and msg.direction is Direction.C2S
    assert reason is None


def test_receiver_keeps_trailing_bytes_for_the_next_read() -> None:
    blob = _frames(_STREAM)
    cut = len(blob) - 5  # the last frame arrives in two reads
    _hello, events, _ = _feed([blob[:cut]])
    assert [e["type"] for e in events] == ["stats", "message"]
    _hello, events, _ = _feed([blob[:cut], blob[cut:]])
    assert [e["type"] for e in events] == ["stats", "message", "stats"]


def test_receiver_takes_frames_bigger_than_its_buffer_and_small_ones_after_them() -> None:
    """A 5 MiB payload (five times the buffer) arrives in 64 KiB reads, then small frames in the same read."""
    from proxy.client import READ_CHUNK

    big = bytes(range(256)) * ((5 * READ_CHUNK) // 256)
    stream = [_STREAM[0], {**_STREAM[2], "data": big}, _STREAM[1], _STREAM[3]]
    blob = _frames(stream)
    _hello, events, reason = _feed([blob[i:i + (64 << 10)] for i in range(0, len(blob), 64 << 10)])
    assert [e["type"] for e in events] == ["message", "stats", "stats"]
    assert events[0]["record"].data == big  # type: ignore[union-attr]
    assert reason is None


def test_receiver_refuses_a_frame_claiming_more_than_the_limit() -> None:
    from proxy.client import MAX_FRAME

    blob = _frames(_STREAM[:1]) + (MAX_FRAME + 1).to_bytes(4, "big") + b"x" * 10
    hello, events, reason = _feed([blob])
    assert hello["type"] == "hello" and events == []
    assert reason is not None and "not a sockscope control endpoint" in reason


def test_receiver_refuses_a_frame_that_is_not_a_map() -> None:
    import msgpack

    body = msgpack.packb([1, 2, 3])
    _hello, _events, reason = _feed([_frames(_STREAM[:1]) + len(body).to_bytes(4, "big") + body])
    assert reason is not None and "not a map" in reason

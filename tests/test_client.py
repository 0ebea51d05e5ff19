"""proxy.client against a real control endpoint: async and blocking clients, decoded records, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from proxy.client import ControlClient, ControlError, SyncControlClient
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

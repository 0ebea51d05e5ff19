"""Network conditions, holds, injection, faults and replay through the real proxy on 127.0.0.1 sockets.

Delays are checked from the records the engine publishes (arrival and release times) and against what the peer
really sees; they are lower bounds (never early), never timing assertions on the upper side beyond generous
bounds that only a broken scheduler would miss.
"""

from __future__ import annotations

import socket
import time

import pytest

from proxy.conditions import Conditions, DirectionConditions
from proxy.framing import FramingSpec
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    MessageState,
    MessageUpdated,
    Origin,
)
from tests.conftest import Recorder, connect, recv_exact

pytestmark = pytest.mark.timeout(60)
MS = 1_000_000
LINES = FramingSpec("lines", "lines")


def one_way(rec: Recorder, data: bytes, direction: Direction) -> int:
    m = rec.wait_for(lambda r: isinstance(r, Message) and r.data == data and r.direction is direction)
    assert isinstance(m, Message)
    if m.state is MessageState.FORWARDED:
        assert m.release_ns is not None
        return m.release_ns - m.arrival_ns
    u = rec.wait_for(lambda r: isinstance(r, MessageUpdated) and r.msg_id == m.id
                     and r.state is MessageState.FORWARDED)
    assert isinstance(u, MessageUpdated) and u.release_ns is not None
    return u.release_ns - m.arrival_ns


def test_asymmetric_latency_per_direction(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES, conditions=Conditions(DirectionConditions(latency_ms=30),
                                                                   DirectionConditions(latency_ms=80)))
    with connect(p.port) as c:
        t0 = time.monotonic()
        c.sendall(b"ping 1\n")
        assert recv_exact(c, 7) == b"ping 1\n"
        rtt = time.monotonic() - t0
    up = one_way(recorder, b"ping 1\n", Direction.C2S)
    down = one_way(recorder, b"ping 1\n", Direction.S2C)
    assert 30 * MS <= up < 45 * MS
    assert 80 * MS <= down < 95 * MS
    assert rtt >= 0.110  # the peer really waited at least the sum


def test_live_change_mid_stream(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    with connect(p.port) as c:
        c.sendall(b"fast\n")
        assert recv_exact(c, 5) == b"fast\n"
        p.call(p.server.set_conditions, Conditions(DirectionConditions(latency_ms=60)))
        c.sendall(b"slow\n")
        assert recv_exact(c, 5) == b"slow\n"
        p.call(p.server.set_conditions, Conditions())
        c.sendall(b"fast again\n")
        assert recv_exact(c, 11) == b"fast again\n"
    assert one_way(recorder, b"fast\n", Direction.C2S) < 10 * MS
    assert one_way(recorder, b"slow\n", Direction.C2S) >= 60 * MS
    assert one_way(recorder, b"fast again\n", Direction.C2S) < 10 * MS


def test_per_connection_override(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    with connect(p.port) as a, connect(p.port) as b:
        a.sendall(b"a0\n")
        b.sendall(b"b0\n")
        recv_exact(a, 3)
        recv_exact(b, 3)
        opened = recorder.of(ConnectionOpened)
        conn_a = next(o.conn_id for o in opened if o.client_addr[1] == a.getsockname()[1])
        p.call(p.server.set_conditions, Conditions(DirectionConditions(latency_ms=50)), conn_a)
        a.sendall(b"a1\n")
        b.sendall(b"b1\n")
        assert recv_exact(b, 3) == b"b1\n"
        assert recv_exact(a, 3) == b"a1\n"
    assert one_way(recorder, b"a1\n", Direction.C2S) >= 50 * MS
    assert one_way(recorder, b"b1\n", Direction.C2S) < 10 * MS


def test_freeze_and_thaw_lose_nothing(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES, conditions=Conditions(DirectionConditions(frozen=True)))
    with connect(p.port) as c:
        payload = b"".join(f"msg {i}\n".encode() for i in range(100))
        c.sendall(payload)
        recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"msg 99\n")
        c.settimeout(0.2)
        with pytest.raises(socket.timeout):
            c.recv(1)  # frozen: nothing comes back
        c.settimeout(10)
        p.call(p.server.set_conditions, Conditions())
        assert recv_exact(c, len(payload)) == payload


def test_hold_edit_drop_release_all_reach_the_peer(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    with connect(p.port) as c:
        p.call(p.server.hold_next, Direction.C2S, None, 3)
        c.sendall(b"ping 1\nping 2\nping 3\n")
        held = [recorder.wait_for(lambda r, s=s: isinstance(r, Message) and r.data == s) for s in
                (b"ping 1\n", b"ping 2\n", b"ping 3\n")]
        assert all(h.state is MessageState.HELD for h in held)  # type: ignore[union-attr]
        p.call(p.server.release, held[0].id, b"PING ONE\n")  # type: ignore[union-attr]
        assert recv_exact(c, 9) == b"PING ONE\n"
        p.call(p.server.drop, held[1].id)  # type: ignore[union-attr]
        p.call(p.server.release_all)
        assert recv_exact(c, 7) == b"ping 3\n"
        assert p.call(p.server.held) == []
    with pytest.raises(KeyError):
        p.call(p.server.release, 999999)


def test_inject_both_ways(start_proxy, recorder) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    p = start_proxy(srv.getsockname()[1], LINES)
    with connect(p.port) as c:
        s, _ = srv.accept()
        s.settimeout(10)
        opened = recorder.wait_for(lambda r: isinstance(r, ConnectionOpened))
        p.call(p.server.inject, opened.conn_id, Direction.C2S, b"to the server\n")  # type: ignore[union-attr]
        p.call(p.server.inject, opened.conn_id, Direction.S2C, b"to the client\n")  # type: ignore[union-attr]
        assert recv_exact(s, 14) == b"to the server\n"
        assert recv_exact(c, 14) == b"to the client\n"
        s.close()
    srv.close()
    injected = [m for m in recorder.of(Message) if m.origin is Origin.INJECTED]
    assert {m.direction for m in injected} == {Direction.C2S, Direction.S2C}


@pytest.mark.parametrize("reset", [False, True])
def test_close_and_reset_faults_seen_by_peers(start_proxy, recorder, reset: bool) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    p = start_proxy(srv.getsockname()[1], LINES)
    with connect(p.port) as c:
        s, _ = srv.accept()
        s.settimeout(10)
        opened = recorder.wait_for(lambda r: isinstance(r, ConnectionOpened))
        p.call(p.server.close_connection, opened.conn_id, reset)  # type: ignore[union-attr]
        for sock in (c, s):
            if reset:
                with pytest.raises(ConnectionResetError):
                    while sock.recv(1024):
                        pass
            else:
                assert sock.recv(1024) == b""
        s.close()
    srv.close()
    closed = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert closed.reason is (CloseReason.PROXY_RESET if reset else CloseReason.PROXY_CLOSED)  # type: ignore[union-attr]


def test_drop_next_through_sockets(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    with connect(p.port) as c:
        c.sendall(b"hello\n")
        recv_exact(c, 6)
        p.call(p.server.arm_fault, Direction.C2S, "drop", 1)
        c.sendall(b"lost\nkept\n")
        assert recv_exact(c, 5) == b"kept\n"


def test_session_replay_against_live_server(echo_server, start_proxy, recorder) -> None:
    import asyncio

    p = start_proxy(echo_server.port, LINES)
    with connect(p.port) as c:
        for i in range(3):
            c.sendall(f"ping {i}\n".encode())
            recv_exact(c, 7)
    first = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    for mode in ("fast", "wait-reply", "timing"):
        fut = asyncio.run_coroutine_threadsafe(p.server.replay(first.conn_id, None, mode), p.loop)  # type: ignore[union-attr]
        new_id = fut.result(10)
        closed = recorder.wait_for(lambda r, n=new_id: isinstance(r, ConnectionClosed) and r.conn_id == n)
        assert closed.reason is CloseReason.CLOSED  # type: ignore[union-attr]
        opened = [o for o in recorder.of(ConnectionOpened) if o.conn_id == new_id]
        assert opened[0].replay_of == first.conn_id  # type: ignore[union-attr]
        replies = [m.data for m in recorder.of(Message) if m.conn_id == new_id and m.direction is Direction.S2C]
        assert b"".join(replies) == b"ping 0\nping 1\nping 2\n"
        sent = [m for m in recorder.of(Message) if m.conn_id == new_id and m.direction is Direction.C2S]
        assert all(m.origin is Origin.REPLAYED for m in sent)


def test_replay_history_is_bounded(echo_server, start_proxy, recorder) -> None:
    import asyncio

    from proxy.server import HISTORY_CONN_CAP

    p = start_proxy(echo_server.port)
    blob = b"x" * (HISTORY_CONN_CAP + (1 << 20))
    with connect(p.port) as c:
        c.sendall(blob)
        assert len(recv_exact(c, len(blob))) == len(blob)
    closed = recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    assert p.call(lambda: sum(len(d) for h in p.server.history.values() for _, d in h)) == 0
    fut = asyncio.run_coroutine_threadsafe(p.server.replay(closed.conn_id, None, "fast"), p.loop)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="recorded session"):
        fut.result(10)

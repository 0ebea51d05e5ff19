"""Hold, edit, forward, drop, rules and replay of datagrams through the real engine, driven over the control
protocol: real UDP sockets on 127.0.0.1, an echo server thread, the proxy on a thread.

Every test is bounded by pytest-timeout; waiting is on records and on datagrams arriving, never on sleeps. That a
held or dropped datagram did not go out is shown by a later datagram arriving alone (loopback UDP from one socket
keeps its order, so the earlier one would have come first).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.control.client import ControlClient, ControlError
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
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from tests.test_udp_sockets import UdpEcho, Waiter, client

TOKEN = "t0ken"


@pytest.fixture
def echo() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.stop()


def start(echo: UdpEcho, w: Waiter, **kw: Any) -> ProxyThread:
    return ProxyThread(ProxyConfig(listen_port=0, target_port=echo.port, tcp=False, udp=True, **kw), (w,),
                       control_token=TOKEN).start()


def first_flow(c: socket.socket, p: ProxyThread, cc: ControlClient) -> int:
    c.sendto(b"hello", ("127.0.0.1", p.port))
    assert c.recv(100) == b"hello"
    (flow,) = cc.call("snapshot")["connections"]
    return int(flow["conn"])


def held(w: Waiter, data: bytes) -> Message:
    w.until(lambda rs: any(isinstance(r, Message) and r.data == data and r.state is MessageState.HELD for r in rs))
    return next(m for m in w.of(Message) if m.data == data and m.state is MessageState.HELD)


def update(w: Waiter, msg_id: int, state: MessageState) -> MessageUpdated:
    w.until(lambda rs: any(isinstance(r, MessageUpdated) and r.msg_id == msg_id and r.state is state for r in rs))
    return next(u for u in w.of(MessageUpdated) if u.msg_id == msg_id and u.state is state)


@pytest.mark.timeout(60)
def test_hold_next_then_forward_edit_and_drop(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo, w)
    addr = ("127.0.0.1", p.port)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            conn = first_flow(c, p, cc)
            cc.call("hold_next", conn_id=conn, direction="c2s", count=3)
            payloads = [b"\x00keep\xff", b"edit me", b"drop me"]
            for data in payloads:
                c.sendto(data, addr)
            ids = [held(w, data).id for data in payloads]
            assert cc.call("held") == ids
            assert cc.call("snapshot")["connections"][0]["held"] == ids
            # the datagrams behind held ones are not held back (UDP keeps no order)
            c.sendto(b"after", addr)
            assert c.recv(100) == b"after"
            assert echo.received == [b"hello", b"after"]
            cc.call("release", msg_id=ids[0])
            assert c.recv(100) == b"\x00keep\xff"
            cc.call("edit", msg_id=ids[1], data=b"\x01edited, byte-exact\x00" * 50)
            assert c.recv(2000) == b"\x01edited, byte-exact\x00" * 50
            cc.call("drop", msg_id=ids[2])
            update(w, ids[2], MessageState.DROPPED)
            c.sendto(b"last", addr)
            assert c.recv(100) == b"last"
            with pytest.raises(ControlError, match="not held"):
                cc.call("release", msg_id=ids[2])
        c.close()
    finally:
        p.stop()
    assert echo.received == [b"hello", b"after", b"\x00keep\xff", b"\x01edited, byte-exact\x00" * 50, b"last"]
    assert update(w, ids[1], MessageState.FORWARDED).data == b"\x01edited, byte-exact\x00" * 50


@pytest.mark.timeout(60)
def test_global_hold_next_holds_the_next_datagram_of_any_flow_and_release_all(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo, w)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            first_flow(c, p, cc)
            cc.call("hold_next", direction="s2c")
            c.sendto(b"ping", ("127.0.0.1", p.port))
            m = held(w, b"ping")
            assert m.direction is Direction.S2C and echo.received[-1] == b"ping"
            assert cc.call("snapshot")["hold_next"] == [0, 0]
            cc.call("release_all")
            assert c.recv(100) == b"ping"
        c.close()
    finally:
        p.stop()


@pytest.mark.timeout(30)
def test_a_held_datagram_is_discarded_when_its_flow_times_out(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo, w, udp_idle_timeout=0.5)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            conn = first_flow(c, p, cc)
            cc.call("hold_next", conn_id=conn, direction="c2s")
            c.sendto(b"held", ("127.0.0.1", p.port))
            m = held(w, b"held")
            w.until(lambda rs: any(isinstance(r, ConnectionClosed) for r in rs))
            (closed,) = w.of(ConnectionClosed)
            assert closed.reason is CloseReason.IDLE_TIMEOUT and closed.discarded == 1
            update(w, m.id, MessageState.DISCARDED)
            assert cc.call("held") == []
        c.close()
    finally:
        p.stop()
    assert echo.received == [b"hello"]


@pytest.mark.timeout(60)
def test_a_drop_rule_on_bytes_drops_the_matching_datagrams_only(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo, w)
    addr = ("127.0.0.1", p.port)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            first_flow(c, p, cc)
            cc.call("set_rules", rules=[{"action": "drop", "direction": "c2s", "bytes_regex": "^input:",
                                         "name": "no input"}])
            for i in range(20):
                c.sendto(b"input:%d" % i if i % 2 else b"pos:%d" % i, addr)
            for i in range(0, 20, 2):
                assert c.recv(100) == b"pos:%d" % i
            cc.call("set_rules", rules=[])
            c.sendto(b"input:after", addr)
            assert c.recv(100) == b"input:after"
        c.close()
    finally:
        p.stop()
    assert echo.received == [b"hello"] + [b"pos:%d" % i for i in range(0, 20, 2)] + [b"input:after"]
    dropped = [m for m in w.of(Message) if m.state is MessageState.DROPPED]
    assert [m.data for m in dropped] == [b"input:%d" % i for i in range(1, 20, 2)]
    assert all("no input" in m.note for m in dropped)


N = 400


def percent_run(echo: UdpEcho) -> list[bool]:
    """N "input" datagrams through a fresh proxy with --seed 11 and a 20 % drop rule: dropped or not, each."""
    w = Waiter()
    p = start(echo, w, seed=11)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            # A bytes match: its bound is work (RE2's), the same in every run. A decoded-field filter's is time (its
            # share of the relay, inspector.filters): a flood can leave a few datagrams undecided (no match) in one
            # run and not the other, which no seed can repeat (docs/udp.md says so).
            cc.call("set_rules", rules=[{"action": "drop", "direction": "c2s",
                                         "bytes_regex": '"type": "input"', "percent": 20}])
            for i in range(N):
                c.sendto(b'{"type": "input", "n": %d}' % i, ("127.0.0.1", p.port))
            w.until(lambda rs: sum(isinstance(r, Message) and r.direction is Direction.C2S for r in rs) == N)
        c.close()
    finally:
        p.stop()
    msgs = sorted((m for m in w.of(Message) if m.direction is Direction.C2S), key=lambda m: m.seq)
    return [m.state is MessageState.DROPPED for m in msgs]


@pytest.mark.timeout(60)
def test_a_percentage_rule_with_a_seed_gives_the_same_decisions_twice(echo: UdpEcho) -> None:
    a = percent_run(echo)
    b = percent_run(echo)
    assert a == b
    assert 0.1 * N < sum(a) < 0.3 * N


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["fast", "wait-reply", "timing"])
def test_replay_of_a_recorded_flow_reaches_the_server_again_from_a_new_port(echo: UdpEcho, mode: str) -> None:
    w = Waiter()
    p = start(echo, w)
    payloads = [b"hello", b"", b"\x00\xffbinary", bytes(range(256)) * 40]
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            conn = first_flow(c, p, cc)
            for data in payloads[1:]:
                c.sendto(data, ("127.0.0.1", p.port))
                assert c.recv(20000) == data
            new = cc.call("replay", conn_id=conn, mode=mode)["conn_id"]
            assert new != conn
            echo.until(2 * len(payloads))
            w.until(lambda rs: sum(isinstance(r, Message) and r.conn_id == new and r.direction is Direction.S2C
                                   for r in rs) == len(payloads))
            one = cc.call("replay", conn_id=conn, messages=[b"just this one"], mode="fast")["conn_id"]
            echo.until(2 * len(payloads) + 1)
        c.close()
    finally:
        p.stop()
    assert echo.received == payloads + payloads + [b"just this one"]
    replays = {o.conn_id: o for o in w.of(ConnectionOpened) if o.replay_of is not None}
    assert set(replays) == {new, one}
    assert all(o.replay_of == conn and o.transport == "udp" for o in replays.values())
    sent = [m for m in w.of(Message) if m.conn_id == new and m.direction is Direction.C2S]
    assert [m.data for m in sent] == payloads and all(m.origin is Origin.REPLAYED for m in sent)
    # a new source port: the echo server saw a second client (its replies are recorded, not sent to ours)
    assert [m.data for m in w.of(Message) if m.conn_id == new and m.direction is Direction.S2C] == payloads


@pytest.mark.timeout(60)
def test_replay_of_a_flow_that_ended(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo, w)
    try:
        c = client()
        with ControlClient("127.0.0.1", p.control_port, TOKEN) as cc:
            conn = first_flow(c, p, cc)
            cc.call("close", conn_id=conn)
            w.until(lambda rs: any(isinstance(r, ConnectionClosed) for r in rs))
            new = cc.call("replay", conn_id=conn, mode="fast")["conn_id"]
            echo.until(2)
            with pytest.raises(ControlError, match="transport"):
                cc.call("replay", conn_id=conn, transport="sctp")
        c.close()
    finally:
        p.stop()
    assert echo.received == [b"hello", b"hello"]
    assert next(o for o in w.of(ConnectionOpened) if o.conn_id == new).transport == "udp"

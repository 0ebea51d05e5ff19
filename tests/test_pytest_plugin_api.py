"""inspector/testing.py (what the ``sockscope_proxy`` fixture returns) and ProxyThread.go_down/come_up, used directly.

Real sockets on 127.0.0.1 against the echo server of tests/conftest.py; no pytester here (tests/test_pytest_plugin.py
runs the plugin itself).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from inspector.testing import MessageView, ProxyFactory, SockscopeProxy, _split_path, build_conditions
from proxy.conditions import PASSTHROUGH, ConditionsError
from proxy.model import Direction, MessageState
from proxy.session import open_session
from tests.conftest import EchoServer, connect, recv_exact


@pytest.fixture
def start() -> Iterator[ProxyFactory]:
    f = ProxyFactory()
    yield f
    f.close()


def line_echo(c: socket.socket, data: bytes) -> bytes:
    c.sendall(data)
    return recv_exact(c, len(data))


# ------------------------------------------------------------------------------------------------ conditions


def test_conditions_build_on_what_is_in_force_per_direction() -> None:
    c = build_conditions(latency=100, jitter="20:normal", direction="s2c")
    assert c.c2s.is_passthrough
    assert c.s2c.latency_ms == 100 and c.s2c.jitter.ms == 20 and c.s2c.jitter.distribution == "normal"
    both = build_conditions(c, loss=2, bandwidth="64KB/s")
    assert both.s2c.latency_ms == 100 and both.c2s.latency_ms == 0  # layered on c
    assert both.c2s.loss_pct == both.s2c.loss_pct == 2 and both.c2s.bandwidth_bps == 64_000
    split = build_conditions(latency="c2s=30,s2c=120", direction="c2s")
    assert (split.c2s.latency_ms, split.s2c.latency_ms) == (30, 0)  # the direction limits the text's own
    frozen = build_conditions(c, frozen=True, direction=Direction.C2S)
    assert frozen.c2s.frozen and not frozen.s2c.frozen and frozen.s2c.latency_ms == 100


def test_a_preset_replaces_its_directions_and_values_override_it() -> None:
    c = build_conditions(preset="Mobile 4G", latency=10, direction="s2c")
    assert c.c2s.is_passthrough
    assert c.s2c.latency_ms == 10 and c.s2c.jitter.ms == 20 and c.s2c.loss_pct == 4
    udp = build_conditions(preset="Mobile 4G", duplicate=5, reorder="25:3", corrupt=1, mtu="1200:truncate")
    assert udp.c2s.duplicate_fraction == pytest.approx(0.05) and udp.c2s.reorder_gap == 3
    assert udp.s2c.corrupt_pct == 1 and udp.s2c.mtu == 1200 and udp.s2c.mtu_action == "truncate"
    spiky = build_conditions(spike="every=30s,add=800ms,for=2s")
    assert len(spiky.c2s.spikes) == 1 and spiky.c2s.spikes[0].every_s == 30


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"latency": -1}, "latency=-1: "),
    ({"jitter": "20:wobbly"}, "jitter='20:wobbly': "),
    ({"bandwidth": "500kb"}, "bandwidth='500kb': .*ambiguous"),
    ({"loss": 100}, "loss=100: "),
    ({"latency": True}, "latency=True: expected a number or a string"),
    ({"direction": "sideways", "latency": 1}, "direction='sideways'"),
    ({"preset": "4G"}, "matches several presets: Mobile 4G, Chrome Fast 4G"),
])
def test_a_bad_value_is_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        build_conditions(PASSTHROUGH, **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_a_block_restores_even_after_a_change_inside_it(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, latency=5)
    assert proxy.current_conditions.c2s.latency_ms == 5  # from the start
    with proxy.freeze(direction="c2s"):
        assert proxy.current_conditions.c2s.frozen and not proxy.current_conditions.s2c.frozen
        proxy.set_conditions(PASSTHROUGH)
    assert proxy.current_conditions.c2s.latency_ms == 5 and not proxy.current_conditions.c2s.frozen
    scope = proxy.conditions(latency=50)
    proxy.close()
    scope.restore()  # after close: nothing to restore, and no error


# ------------------------------------------------------------------------------------------------ going down


@pytest.mark.timeout(30)
def test_go_down_refuses_then_come_up_listens_on_the_same_port(echo_server: EchoServer) -> None:
    from proxy.runner import ProxyThread
    from proxy.server import ProxyConfig

    p = ProxyThread(ProxyConfig(listen_port=0, target_port=echo_server.port)).start()
    try:
        port = p.port
        c = connect(port)
        assert line_echo(c, b"a") == b"a"
        p.go_down(reset=True)
        p.go_down(reset=True)  # twice: no error, still down
        assert p.is_down
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with pytest.raises(ConnectionResetError):
            c.sendall(b"b")
            c.recv(1)
        c.close()
        p.come_up()
        p.come_up()
        assert not p.is_down and p.port == port
        with connect(port) as c2:
            assert line_echo(c2, b"c") == b"c"
    finally:
        p.stop()


# ------------------------------------------------------------------------------------------------ messages


@pytest.mark.parametrize(("path", "parsed"), [
    ("json.type", ("json", ("type",))),
    ("json.players[0].name", ("json", ("players", 0, "name"))),
    ('msgpack["odd key"].x', ("msgpack", ("odd key", "x"))),
    ("json.pos.0", ("json", ("pos", 0))),
    ("pos.x", (None, ("pos", "x"))),
    ("json", ("json", ())),
])
def test_field_paths_read_as_in_filters(path: str, parsed: tuple[object, ...]) -> None:
    assert _split_path(path) == parsed


@pytest.mark.parametrize("bad", ["", ".x", "json..x", "json[x]", "json.pos[0"])
def test_a_bad_field_path_says_where(bad: str) -> None:
    with pytest.raises(KeyError, match=r"field path|cannot read the path"):
        _split_path(bad)


@pytest.mark.timeout(30)
def test_msgpack_messages_read_by_field(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, framing="len32")
    body = msgpack.packb({"type": "state", "players": [{"name": "ann", "pos": [1.5, 2]}]})
    framed = len(body).to_bytes(4, "big") + body
    with connect(proxy.port) as c:
        assert line_echo(c, framed) == framed
    msg = proxy.expect("s2c and msgpack.type == 'state'", within=5)
    assert isinstance(msg, MessageView)
    assert msg.decoder == "msgpack" and msg["msgpack.players[0].name"] == "ann" and msg["players.0.pos.1"] == 2
    assert msg.decoded == {"type": "state", "players": [{"name": "ann", "pos": [1.5, 2]}]}
    with pytest.raises(KeyError, match="decodes as msgpack, not json"):
        msg["json.type"]
    with pytest.raises(KeyError, match="not in message"):
        msg["msgpack.nope"]
    assert msg.size == len(framed) and msg.data == framed and msg.seq == 0 and msg.conn == 1
    assert "s2c 50 B forwarded" in repr(msg) and msg.origin == "live"


@pytest.mark.timeout(30)
def test_expect_waits_for_delivery_unless_told_not_to(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, framing="lines")
    with proxy.conditions(latency=300, direction="s2c"), connect(proxy.port) as c:
        c.sendall(b"slow\n")
        early = proxy.expect("s2c", within=5, settled=False)
        assert early.state == "scheduled" and early.delivered is None
        proxy.mark()  # the same message again, now waiting for it to be delivered
        assert proxy.messages[-1].id == early.id
        recv_exact(c, 5)
    # mark() skipped it: expect finds no newer s2c message
    with pytest.raises(AssertionError, match=r"no message matched 's2c' within 0 s \(0 messages since"):
        proxy.expect("s2c", within=0)
    delivered = proxy.messages.filter("s2c")[0]
    assert delivered.state == "forwarded" and delivered.delivered is not None
    assert delivered.delivered - delivered.arrived >= 0.3 and delivered.delay_ms is not None


@pytest.mark.timeout(30)
def test_a_settled_expect_returns_the_message_once_delivered(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, framing="lines")
    with proxy.conditions(latency=200, direction="s2c"), connect(proxy.port) as c:
        c.sendall(b"x\n")
        got = proxy.expect("s2c", within=5)
        assert got.record.state is MessageState.FORWARDED
        assert got.delivered is not None and got.delivered - got.arrived >= 0.2
        recv_exact(c, 2)


@pytest.mark.timeout(30)
def test_an_expect_wakes_on_the_engines_record_not_a_poll(start: ProxyFactory, echo_server: EchoServer) -> None:
    """expect() waits on a condition the engine's subscriber notifies: a message sent only once expect is waiting
    is returned (a condition that tells when someone waits on it lets the sender know)."""
    proxy = start(target=echo_server.port, framing="lines")
    waiting = threading.Event()

    class Telling(threading.Condition):
        def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait_for(predicate, timeout)

    proxy._cond = Telling()  # before any traffic: the engine's subscriber takes the same lock
    c = connect(proxy.port)

    def send_when_waited_on() -> None:
        assert waiting.wait(10)
        c.sendall(b"late\n")

    t = threading.Thread(target=send_when_waited_on)
    t.start()
    got = proxy.expect("s2c and text contains 'late'", within=10)
    t.join(10)
    assert got.text == "late\n"
    c.close()


@pytest.mark.timeout(30)
def test_past_max_messages_the_oldest_are_forgotten(start: ProxyFactory, echo_server: EchoServer,
                                                    tmp_path: Path) -> None:
    proxy = start(target=echo_server.port, framing="lines", max_messages=8)
    with connect(proxy.port) as c:
        for i in range(20):
            assert line_echo(c, b"%02d\n" % i) == b"%02d\n" % i
        proxy.expect("s2c and text contains '19'", within=5)
    msgs = proxy.messages
    assert len(msgs) <= 8 and proxy.forgotten >= 32 and msgs[-1].text == "19\n"
    assert [m.id for m in msgs] == sorted(m.id for m in msgs)
    saved = proxy.save(tmp_path / "cut")
    with open_session(saved.session) as r:
        assert sum(type(x).__name__ == "Message" for x in r) == len(msgs)
    assert "were forgotten" in proxy.report(tmp_path / "cut")


@pytest.mark.timeout(30)
def test_past_max_bytes_the_oldest_are_forgotten(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, framing="lines", max_bytes=1000)
    line = b"x" * 299 + b"\n"
    with connect(proxy.port) as c:
        for _ in range(10):
            assert line_echo(c, line) == line
    proxy.expect("s2c", within=5)
    assert sum(m.size for m in proxy.messages) <= 1000 and proxy.forgotten >= 16
    with pytest.raises(ValueError, match="at least 1"):
        start(target=echo_server.port, max_bytes=0)


@pytest.mark.timeout(30)
def test_messages_are_a_sequence(start: ProxyFactory, echo_server: EchoServer) -> None:
    proxy = start(target=echo_server.port, framing="lines")
    assert repr(proxy.messages) == "<Messages: none>" and len(proxy.messages) == 0
    with connect(proxy.port) as c:
        for word in (b'{"n": 1}\n', b'{"n": 2}\n'):
            line_echo(c, word)
    proxy.expect("s2c and json.n == 2", within=5)
    msgs = proxy.messages
    assert len(msgs[1:3]) == 2 and type(msgs[1:3]).__name__ == "Messages"
    assert msgs.filter("c2s").texts == ['{"n": 1}\n', '{"n": 2}\n']
    assert msgs.filter("s2c").decoded == [{"n": 1}, {"n": 2}]
    assert proxy.connections == [1]


# ------------------------------------------------------------------------------------------------ the factory


@pytest.mark.timeout(30)
def test_targets_and_saving_while_running(start: ProxyFactory, echo_server: EchoServer, tmp_path: Path) -> None:
    for target in (echo_server.port, f"127.0.0.1:{echo_server.port}", ("127.0.0.1", echo_server.port)):
        proxy = start(target=target)
        assert proxy.target == ("127.0.0.1", echo_server.port) and proxy.listen[0] == "127.0.0.1"
    with pytest.raises(ValueError, match="host:port"):
        start(target="localhost")
    with connect(proxy.port) as c:
        line_echo(c, b"abc")
    proxy.expect("s2c", within=5)
    saved = proxy.save(tmp_path / "sub" / "run")
    assert saved.session.name == "run.sockscope" and saved.pcapng is not None and saved.pcapng.stat().st_size > 0
    assert isinstance(proxy, SockscopeProxy) and "->" in repr(proxy)
    proxy.close()
    assert proxy.closed and "closed" in repr(proxy) and proxy.messages[0].text == "abc"

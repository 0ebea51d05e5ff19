"""Addons on real traffic: the hooks' order and what each one may do, on TCP connections and UDP flows.

An addon file is written to a temporary folder and loaded into an engine thread (``ProxyServer.load_addon``, what
``-s FILE`` and the ``load_addon`` command call); clients and echo servers are real sockets on 127.0.0.1. An addon
says what it saw through ``ctx.log``, which reaches the test as ``Notice`` records, in order: the test waits on
those records (bounded), never on sleeps.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.addonhost import register_value_decoder
from proxy.framing import FramingSpec
from proxy.model import Message, MessageState, MessageUpdated, Notice, Origin
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from tests.conftest import EchoServer, Recorder, connect, recv_exact
from tests.test_udp_sockets import UdpEcho, client

WAIT = 10.0


# ------------------------------------------------------------------------------------------ helpers (imported by the
# other addon tests)


def write_addon(folder: Path, source: str, name: str = "addon.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def load(p: ProxyThread, path: Path | str) -> list[str]:
    return p.run_coroutine(p.server.load_addon(str(path)), timeout=30)


def addon_lines(rec: Recorder, prefix: str = "") -> list[str]:
    """What addons said with ``ctx.log`` (the text after ``addon 'NAME' (file): ``), in order."""
    out = []
    for n in rec.of(Notice):
        head, sep, rest = n.text.partition("): ")
        if n.level == "info" and sep and head.startswith("addon ") and rest.startswith(prefix):
            out.append(rest)
    return out


def wait_line(rec: Recorder, text: str, timeout: float = WAIT) -> None:
    rec.wait_for(lambda r: isinstance(r, Notice) and r.text.endswith("): " + text), timeout)


def wait_notice(rec: Recorder, pred: Callable[[Notice], bool], timeout: float = WAIT) -> Notice:
    n = rec.wait_for(lambda r: isinstance(r, Notice) and pred(r), timeout)
    assert isinstance(n, Notice)
    return n


def messages(rec: Recorder) -> list[Message]:
    return rec.of(Message)


@pytest.fixture(autouse=True)
def _decoded_values() -> Iterator[None]:
    """``msg.decoded`` in-process: the entry point names this checkout's factory, which an older installed copy may
    lack, so it is given directly (the CLI test runs it through the entry point)."""
    from inspector.addon_values import make_value_decoder

    register_value_decoder(make_value_decoder())
    yield
    register_value_decoder(None)


@pytest.fixture
def lines_proxy(start_proxy: Callable[..., ProxyThread], echo_server: EchoServer) -> ProxyThread:
    return start_proxy(echo_server.port, FramingSpec("lines", "lines"))


# ------------------------------------------------------------------------------------------ TCP

OBSERVER = """
    from proxy.addons import Addon, AddonContext, Connection, Message

    class Watch(Addon):
        def connection_opened(self, ctx: AddonContext, conn: Connection) -> None:
            ctx.log(f"opened #{conn.id} {conn.transport}")

        def message(self, ctx: AddonContext, msg: Message) -> None:
            ctx.log(f"message #{msg.conn_id} {msg.direction.label} {msg.data!r} {msg.origin}")

        def connection_closed(self, ctx: AddonContext, conn: Connection) -> None:
            ctx.log(f"closed #{conn.id} {conn.reason}")

    addons = [Watch()]
"""


@pytest.mark.timeout(60)
def test_an_observer_sees_opened_messages_both_ways_and_closed_in_order(
        tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    assert load(lines_proxy, write_addon(tmp_path, OBSERVER)) == ["Watch"]
    with connect(lines_proxy.port) as c:
        c.sendall(b"one\ntwo\n")
        assert recv_exact(c, 8) == b"one\ntwo\n"  # observers change nothing
        c.shutdown(socket.SHUT_WR)
        assert c.recv(10) == b""
    wait_line(recorder, "closed #1 closed")
    assert addon_lines(recorder) == [
        "opened #1 tcp",
        "message #1 c2s b'one\\n' live",
        "message #1 c2s b'two\\n' live",
        "message #1 s2c b'one\\n' live",
        "message #1 s2c b'two\\n' live",
        "closed #1 closed",
    ]
    # observed messages are forwarded at once: never held for an observer
    assert all(m.state is MessageState.FORWARDED for m in messages(recorder))


MODIFIER = """
    from proxy.addons import Addon, AddonContext, Message

    class Edit(Addon):
        modifies = True

        def message(self, ctx: AddonContext, msg: Message) -> None:
            if msg.direction.label != "c2s":
                return
            if msg.data == b"a\\n":
                ctx.replace(b"A!\\n")
            elif msg.data == b"drop\\n":
                ctx.drop()
            elif msg.data == b"late\\n":
                ctx.delay(0.2)

    addons = [Edit()]
"""


@pytest.mark.timeout(60)
def test_a_modifier_replaces_drops_and_delays_messages_in_stream_order(
        tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    load(lines_proxy, write_addon(tmp_path, MODIFIER))
    with connect(lines_proxy.port) as c:
        c.sendall(b"a\ndrop\nlate\nb\n")
        # dropped is gone, edited is edited, and the delayed one still comes before the one behind it (TCP order)
        assert recv_exact(c, len(b"A!\nlate\nb\n")) == b"A!\nlate\nb\n"
    by_data = {m.data: m for m in messages(recorder) if m.direction == 0}
    assert all(m.state is MessageState.HELD for m in by_data.values())  # held for the addon, as a hold rule does
    recorder.wait_for(lambda r: isinstance(r, MessageUpdated) and r.msg_id == by_data[b"drop\n"].id
                      and r.state is MessageState.DROPPED)
    edits = [u.data for u in recorder.of(MessageUpdated) if u.msg_id == by_data[b"a\n"].id and u.data is not None]
    assert edits == [b"A!\n"]  # shown as edited, with its new bytes
    late = next(u for u in recorder.of(MessageUpdated) if u.msg_id == by_data[b"late\n"].id
            and u.state is MessageState.FORWARDED)
    assert late.release_ns is not None and late.release_ns - by_data[b"late\n"].arrival_ns >= 200_000_000


INJECTOR = """
    from proxy.addons import Addon, AddonContext, Message

    class Greeter(Addon):
        modifies = True

        def message(self, ctx: AddonContext, msg: Message) -> None:
            ctx.log(f"{msg.direction.label} {msg.data!r} {msg.origin}")
            if msg.data == b"hello\\n" and msg.origin == "live" and msg.direction.label == "c2s":
                ctx.inject(msg.conn_id, "s2c", b"welcome\\n")
                ctx.inject(msg.conn_id, "c2s", b"extra\\n")

    addons = [Greeter()]
"""


@pytest.mark.timeout(60)
def test_injected_messages_go_through_the_receive_path_and_the_addons_again(
        tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    load(lines_proxy, write_addon(tmp_path, INJECTOR))
    with connect(lines_proxy.port) as c:
        c.sendall(b"hello\n")
        # the welcome is injected as the hello goes on; the server echoes the hello and the injected extra, after it
        assert recv_exact(c, len(b"welcome\nhello\nextra\n")) == b"welcome\nhello\nextra\n"
    wait_line(recorder, "s2c b'extra\\n' live")
    seen = addon_lines(recorder)
    assert seen[0] == "c2s b'hello\\n' live"
    # what the addon injected came back through its own hook, marked as injected (mitmproxy's rule)
    assert "s2c b'welcome\\n' injected" in seen and "c2s b'extra\\n' injected" in seen
    injected = [m for m in messages(recorder) if m.origin is Origin.INJECTED]
    assert sorted(m.data for m in injected) == [b"extra\n", b"welcome\n"]


DECODED = """
    from proxy.addons import Addon, AddonContext, Message

    class Speed(Addon):
        modifies = True

        def message(self, ctx: AddonContext, msg: Message) -> None:
            d = msg.decoded
            assert d is not None
            ctx.log(f"{d.decoder} {d.value!r}")

    addons = [Speed()]
"""


@pytest.mark.timeout(60)
def test_hooks_get_decoded_values(tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    load(lines_proxy, write_addon(tmp_path, DECODED))
    with connect(lines_proxy.port) as c:
        c.sendall(b'{"type": "pos", "x": 1.5}\n')
        recv_exact(c, 26)
    wait_line(recorder, "json {'type': 'pos', 'x': 1.5}")


MODULE_FUNCTIONS = """
    from proxy.addons import AddonContext, Message

    modifies = True
    tick_interval = 0.05
    ticks = 0

    def message(ctx: AddonContext, msg: Message) -> None:
        ctx.replace(msg.data.replace(b"cat", b"dog"))

    def tick(ctx: AddonContext) -> None:
        global ticks
        ticks += 1
        if ticks == 3:
            ctx.log("three ticks")
"""


@pytest.mark.timeout(60)
def test_module_functions_are_an_addon_and_tick_runs_periodically(
        tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    assert load(lines_proxy, write_addon(tmp_path, MODULE_FUNCTIONS, "pets.py")) == ["pets"]
    wait_line(recorder, "three ticks")
    with connect(lines_proxy.port) as c:
        c.sendall(b"cat\n")
        assert recv_exact(c, 4) == b"dog\n"


@pytest.mark.timeout(60)
def test_two_files_modify_in_load_order(tmp_path: Path, lines_proxy: ProxyThread) -> None:
    load(lines_proxy, write_addon(tmp_path, """
        def message(ctx, msg):
            if msg.direction.label == "c2s":
                ctx.replace(msg.data.rstrip(b"\\n") + b"+first\\n")
        modifies = True
    """, "first.py"))
    load(lines_proxy, write_addon(tmp_path, """
        def message(ctx, msg):
            if msg.direction.label == "c2s":
                ctx.replace(msg.data.rstrip(b"\\n") + b"+second\\n")
        modifies = True
    """, "second.py"))
    with connect(lines_proxy.port) as c:
        c.sendall(b"x\n")
        assert recv_exact(c, len(b"x+first+second\n")) == b"x+first+second\n"


@pytest.mark.timeout(60)
def test_an_observer_cannot_change_a_message_and_is_told_why(
        tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    load(lines_proxy, write_addon(tmp_path, """
        def message(ctx, msg):
            ctx.drop()
    """, "meddler.py"))
    with connect(lines_proxy.port) as c:
        c.sendall(b"safe\n")
        assert recv_exact(c, 5) == b"safe\n"
    n = wait_notice(recorder, lambda n: n.level == "error" and "meddler.py" in n.text)
    assert "only observes" in n.text and "modifies = True" in n.text


@pytest.mark.timeout(60)
def test_unloading_stops_holding_messages(tmp_path: Path, lines_proxy: ProxyThread, recorder: Recorder) -> None:
    path = write_addon(tmp_path, MODIFIER)
    load(lines_proxy, path)
    assert lines_proxy.server.shared.intercept
    assert lines_proxy.call(lines_proxy.server.unload_addon, str(path)) == ["Edit"]
    assert not lines_proxy.server.shared.intercept and not lines_proxy.server.shared.active
    with connect(lines_proxy.port) as c:
        c.sendall(b"a\n")
        assert recv_exact(c, 2) == b"a\n"
    assert all(m.state is MessageState.FORWARDED for m in messages(recorder))


# ------------------------------------------------------------------------------------------ UDP


@pytest.fixture
def udp_echo() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.stop()


@pytest.fixture
def udp_proxy(udp_echo: UdpEcho, recorder: Recorder) -> Iterator[ProxyThread]:
    p = ProxyThread(ProxyConfig(listen_port=0, target_port=udp_echo.port, tcp=False, udp=True,
                                udp_idle_timeout=0.5), (recorder,)).start()
    yield p
    p.stop()


UDP_ADDON = """
    from proxy.addons import Addon, AddonContext, Connection, Message

    class Flow(Addon):
        modifies = True

        def connection_opened(self, ctx: AddonContext, conn: Connection) -> None:
            ctx.log(f"opened {conn.transport}")

        def message(self, ctx: AddonContext, msg: Message) -> None:
            ctx.log(f"{msg.direction.label} {msg.data!r}")
            if msg.direction.label == "c2s":
                if msg.data == b"drop":
                    ctx.drop()
                elif msg.data == b"ping":
                    ctx.replace(b"PING")
                    ctx.inject(msg.conn_id, "s2c", b"")  # an empty datagram is a real one

        def connection_closed(self, ctx: AddonContext, conn: Connection) -> None:
            ctx.log(f"closed {conn.reason}")

    addons = [Flow()]
"""


@pytest.mark.timeout(60)
def test_udp_flows_get_the_same_hooks(tmp_path: Path, udp_proxy: ProxyThread, udp_echo: UdpEcho,
                                      recorder: Recorder) -> None:
    load(udp_proxy, write_addon(tmp_path, UDP_ADDON))
    c = client()
    try:
        addr = ("127.0.0.1", udp_proxy.port)
        c.sendto(b"ping", addr)
        assert c.recv(100) == b""  # the injected empty datagram, sent as the ping went on
        assert c.recv(100) == b"PING"  # the echo of the edited datagram
        c.sendto(b"drop", addr)
        c.sendto(b"last", addr)
        assert c.recv(100) == b"last"  # the dropped one never reached the server: the next one comes alone
        wait_line(recorder, "closed idle timeout")
    finally:
        c.close()
    assert udp_echo.received == [b"PING", b"last"]
    seen = addon_lines(recorder)
    assert seen[0] == "opened udp" and seen[-1] == "closed idle timeout"
    assert "c2s b'ping'" in seen and "s2c b''" in seen and "s2c b'PING'" in seen and "c2s b'drop'" in seen


def test_no_addon_costs_the_fast_path_nothing(lines_proxy: ProxyThread, recorder: Recorder) -> None:
    """Without a modifying addon nothing is held: every message takes the relay's fast path (forwarded at once)."""
    assert not lines_proxy.server.shared.active
    with connect(lines_proxy.port) as c:
        c.sendall(b"x\n")
        recv_exact(c, 2)
    assert [m.state for m in messages(recorder)] == [MessageState.FORWARDED] * 2



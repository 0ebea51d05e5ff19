"""UDP through the real engine: real datagram sockets on 127.0.0.1, an echo server thread, the proxy on a thread.

Each test is bounded by pytest-timeout. Waiting is on records the engine publishes and on datagrams arriving
(``Waiter``), never on sleeps. Impairment counts are compared with what the pure impairer decides for the same
seed, flow id and datagrams, so the assertions are exact, not timing-dependent.
"""

from __future__ import annotations

import random
import resource
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.conditions import Conditions, DirectionConditions, GilbertElliott
from proxy.impair import DirectionImpairer
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    MessageState,
    Notice,
    Origin,
    Record,
)
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig

HOSTILE = Path(__file__).parent / "hostile" / "udp"
WAIT = 20.0

pytestmark = pytest.mark.slow  # real-socket UDP runs (1,000 flows, counts): the full run; the fast loop keeps
# the window's and the hold tests' UDP sockets


class Waiter:
    """Records from the engine thread, and a condition to wait on them."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.cond = threading.Condition()

    def __call__(self, r: Record) -> None:
        with self.cond:
            self.records.append(r)
            self.cond.notify_all()

    def until(self, pred: Callable[[list[Record]], bool], timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.records), timeout), "the engine never published that"

    def of(self, kind: type) -> list[Any]:
        with self.cond:
            return [r for r in self.records if isinstance(r, kind)]


class UdpEcho:
    """A UDP server thread that echoes every datagram (and counts what it received)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.cond = threading.Condition()
        self.echo = True
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="udp-echo")
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)  # only so stop() is noticed; nothing waits on this
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.cond:
                self.received.append(data)
                self.cond.notify_all()
            if self.echo:
                self.sock.sendto(data, addr)

    def until(self, n: int, timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.received) >= n, timeout), (len(self.received), n)

    def stop(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[UdpEcho]:
    e = UdpEcho()
    yield e
    e.stop()


def start(target: int, waiter: Waiter, **kw: Any) -> ProxyThread:
    kw.setdefault("udp", True)
    kw.setdefault("tcp", False)
    return ProxyThread(ProxyConfig(listen_port=0, target_port=target, **kw), (waiter,)).start()


def client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    return s


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_datagrams_are_byte_exact_both_ways(echo: UdpEcho, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKSCOPE_LOOP", loop)
    w = Waiter()
    p = start(echo.port, w)
    try:
        c = client()
        payloads = [b"", b"x", bytes(range(256)) * 4, random.Random(1).randbytes(65507)]
        for data in payloads:
            c.sendto(data, ("127.0.0.1", p.port))
            assert c.recv(70000) == data
        c.close()
    finally:
        p.stop()
    (opened,) = w.of(ConnectionOpened)
    assert opened.transport == "udp"
    msgs = w.of(Message)
    assert [m.data for m in msgs if m.direction is Direction.C2S] == payloads
    assert [m.data for m in msgs if m.direction is Direction.S2C] == payloads
    assert all(m.state is MessageState.FORWARDED for m in msgs)
    (closed,) = w.of(ConnectionClosed)
    assert closed.reason is CloseReason.SHUTDOWN and closed.messages_c2s == 4 == closed.messages_s2c


@pytest.mark.timeout(120)
def test_a_thousand_client_sockets_each_get_a_flow(echo: UdpEcho) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    w = Waiter()
    p = start(echo.port, w)
    clients = [client() for _ in range(1000)]
    try:
        for i, c in enumerate(clients):
            c.sendto(i.to_bytes(4, "big"), ("127.0.0.1", p.port))
        for i, c in enumerate(clients):
            assert c.recv(100) == i.to_bytes(4, "big")
        assert p.call(lambda: len(p.server.udp.core.flows)) == 1000  # type: ignore[union-attr]
    finally:
        for c in clients:
            c.close()
        p.stop()
    assert len(w.of(ConnectionOpened)) == 1000 and len({o.client_addr for o in w.of(ConnectionOpened)}) == 1000


@pytest.mark.timeout(30)
def test_an_idle_flow_ends_with_a_reason(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo.port, w, udp_idle_timeout=0.3)
    try:
        c = client()
        c.sendto(b"once", ("127.0.0.1", p.port))
        assert c.recv(10) == b"once"
        w.until(lambda rs: any(isinstance(r, ConnectionClosed) for r in rs))
        (closed,) = w.of(ConnectionClosed)
        assert closed.reason is CloseReason.IDLE_TIMEOUT and "0.3 s" in closed.detail
        assert p.call(lambda: len(p.server.udp.core.flows)) == 0  # type: ignore[union-attr]
        c.sendto(b"again", ("127.0.0.1", p.port))  # a new flow for the same address
        assert c.recv(10) == b"again"
        assert len(w.of(ConnectionOpened)) == 2
        c.close()
    finally:
        p.stop()


def expected(cond: DirectionConditions, seed: int, conn_id: int, datagrams: list[bytes]) -> list[tuple[bool, int]]:
    """What the pure impairer decides for these datagrams: (dropped, copies) each (timing-free conditions)."""
    imp = DirectionImpairer(random.Random(f"{seed}:{conn_id}:c2s"))
    out = []
    for d in datagrams:
        v, cond = imp.decide(0, d, cond)
        out.append((v.dropped, 0 if v.dropped else 1 + (v.duplicate_ns is not None)))
    return out


N = 4000
CASES = {
    "loss 10 %": DirectionConditions(loss_pct=10),
    "Gilbert-Elliott": DirectionConditions(burst_loss=GilbertElliott(3, 30, 80, 1)),
    "duplicate 5 %": DirectionConditions(duplicate_fraction=0.05),
    "corrupt 10 %": DirectionConditions(corrupt_pct=10),
    "MTU truncate": DirectionConditions(mtu=30, mtu_action="truncate"),
    "reorder 25 %": DirectionConditions(latency_ms=2, reorder_pct=25, reorder_gap=3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(CASES))
def test_impairment_statistics_over_sockets_match_the_seeded_model(echo: UdpEcho, name: str) -> None:
    cond = CASES[name]
    echo.echo = False
    w = Waiter()
    p = start(echo.port, w, conditions=Conditions(c2s=cond), seed=11)
    datagrams = [i.to_bytes(4, "big") + bytes(36 + i % 20) for i in range(N)]
    try:
        c = client()
        for i in range(0, N, 200):  # in batches, so no socket buffer overflows: each batch is seen through
            for d in datagrams[i:i + 200]:
                c.sendto(d, ("127.0.0.1", p.port))
            w.until(lambda rs, n=i + 200: sum(isinstance(r, Message) and r.origin is Origin.LIVE for r in rs) >= n)
            want = sum(k for _, k in expected(cond, 11, 1, datagrams[:i + 200]))
            echo.until(want)
        c.close()
    finally:
        p.stop()
    decisions = expected(cond, 11, w.of(ConnectionOpened)[0].conn_id, datagrams)
    msgs = [m for m in w.of(Message) if m.direction is Direction.C2S]
    live = [m for m in msgs if m.origin is Origin.LIVE]
    assert [m.state is MessageState.DROPPED for m in live] == [d for d, _ in decisions]
    assert len(echo.received) == sum(k for _, k in decisions)
    dropped = sum(d for d, _ in decisions) / N * 100
    copies = sum(k == 2 for _, k in decisions) / N * 100
    if name == "loss 10 %":
        assert abs(dropped - 10) < 1.5  # 4,000 datagrams: the 100,000-datagram check is in test_datagram_core
    elif name == "Gilbert-Elliott":
        assert abs(dropped - cond.burst_loss.mean_loss_pct) < 2  # type: ignore[union-attr]
    elif name == "duplicate 5 %":
        assert abs(copies - 5) < 1 and sum(m.origin is Origin.DUPLICATE for m in msgs) == sum(
            k == 2 for _, k in decisions)
    elif name == "corrupt 10 %":
        flipped = [m for m in live if m.flips]
        assert abs(len(flipped) / N * 100 - 10) < 1.5
        got = set(echo.received)
        for m in flipped:  # the server got the flipped bytes, and the record says which bit
            assert m.data in got
            (bit,) = m.flips
            original = bytearray(m.data)
            original[bit >> 3] ^= 1 << (bit & 7)
            assert bytes(original) == datagrams[m.seq]
    elif name == "MTU truncate":
        assert all(len(d) == 30 for d in echo.received) and all(m.note.startswith("truncated") for m in live)
    else:
        ahead = [m for m in live if m.note.startswith("sent ahead")]
        assert 0.1 < len(ahead) / N < 0.3


@pytest.mark.timeout(120)
def test_a_recorded_flow_replayed_with_the_same_seed_gets_the_same_decisions(echo: UdpEcho, tmp_path: Path) -> None:
    from proxy.recorder import Recorder
    from proxy.session import open_session

    cond = Conditions(c2s=DirectionConditions(loss_pct=8, duplicate_fraction=0.05, corrupt_pct=5,
                                              burst_loss=GilbertElliott(2, 40), reorder_pct=10, latency_ms=1))
    first = tmp_path / "first.sockscope"

    def run(datagrams: list[bytes], record: Path | None) -> list[tuple[object, ...]]:
        w = Waiter()
        p = start(echo.port, w, conditions=cond, seed=5)
        rec = p.call(lambda: Recorder(str(record), p.server)) if record is not None else None
        try:
            c = client()
            for i in range(0, len(datagrams), 100):
                for d in datagrams[i:i + 100]:
                    c.sendto(d, ("127.0.0.1", p.port))
                w.until(lambda rs, n=i + 100: sum(isinstance(r, Message) and r.origin is Origin.LIVE
                                                  and r.direction is Direction.C2S for r in rs) >= n)
            c.close()
        finally:
            p.stop()
            if rec is not None:
                rec.close()
        # a copy's note names its original by message id, and ids are shared with the replies: compare without it
        return [(m.seq, m.state, m.origin, m.note.split(" of message ")[0], m.flips, m.data) for m in w.of(Message)
                if m.direction is Direction.C2S]

    live = run([random.Random(i).randbytes(10 + i % 90) for i in range(1500)], first)
    with open_session(first) as reader:
        recorded = [(r.data, r.flips) for r in reader if isinstance(r, Message) and r.direction is Direction.C2S
                    and r.origin is Origin.LIVE]
    # the session keeps what was forwarded and, for a corrupted datagram, the bits flipped: undo them to replay the
    # client's own bytes
    assert any(flips for _, flips in recorded)
    originals = []
    for data, flips in recorded:
        b = bytearray(data)
        for bit in flips:
            b[bit >> 3] ^= 1 << (bit & 7)
        originals.append(bytes(b))
    assert len(originals) == 1500
    again = run(originals, None)
    third = run(originals, None)
    diff = [(x, y) for x, y in zip(again, third, strict=True) if x != y]
    assert again == third, diff[:3]
    assert [x[:5] for x in again] == [x[:5] for x in live]


@pytest.mark.timeout(60)
def test_a_flood_from_many_ports_past_the_flow_cap_is_counted_and_the_flows_go_on(echo: UdpEcho) -> None:
    w = Waiter()
    p = start(echo.port, w, udp_max_flows=50)
    keep = client()
    flood = [client() for _ in range(400)]
    try:
        keep.sendto(b"first", ("127.0.0.1", p.port))
        assert keep.recv(10) == b"first"
        for i in range(0, 400, 100):
            for s in flood[i:i + 100]:
                s.sendto(b"flood", ("127.0.0.1", p.port))
            # one socket, one queue: once this comes back, the proxy has read every datagram sent before it
            keep.sendto(b"still here", ("127.0.0.1", p.port))
            assert keep.recv(20) == b"still here"
        # the 49 flows that fit are answered; the rest are dropped and counted
        echo.until(50 + 4)
        assert p.call(lambda: p.server.udp.core.refused) == 351  # type: ignore[union-attr]
        notices = [n for n in w.of(Notice) if "50 flows" in n.text]
        assert len(notices) == 1
        assert len(w.of(ConnectionOpened)) == 50
    finally:
        for s in [keep, *flood]:
            s.close()
        p.stop()


@pytest.mark.timeout(60)
def test_hostile_datagrams_pass_byte_exact(echo: UdpEcho) -> None:
    files = sorted(f for f in HOSTILE.iterdir() if f.suffix == ".bin")
    assert files and (HOSTILE / "README.md").read_text().count(".bin") == len(files)
    w = Waiter()
    p = start(echo.port, w)
    try:
        c = client()
        for f in files:
            data = f.read_bytes()
            c.sendto(data, ("127.0.0.1", p.port))
            assert c.recv(70000) == data, f.name
        c.close()
    finally:
        p.stop()


@pytest.mark.timeout(60)
def test_an_upstream_that_refuses_is_one_notice_and_nothing_is_lost_once_it_is_up() -> None:
    # a port with nothing listening: the kernel answers with ICMP port unreachable
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    w = Waiter()
    p = start(port, w)
    a, b = client(), client()
    try:
        for _ in range(3):  # the first datagram goes out; the ICMP answer makes the next send or read fail
            a.sendto(b"anyone?", ("127.0.0.1", p.port))
        w.until(lambda rs: sum(isinstance(r, Message) for r in rs) == 3)  # all sent (and refused) before the echo
        w.until(lambda rs: any(isinstance(r, Notice) and "refused" in r.text for r in rs))
        refused = [n for n in w.of(Notice) if "refused" in n.text]
        assert len(refused) == 1 and "ICMP port unreachable" in refused[0].text and refused[0].conn_id == 1
        echo = UdpEcho(port)  # now the server starts: both flows are relayed, the refused one too
        try:
            for s, data in ((a, b"a after"), (b, b"b fresh")):
                s.sendto(data, ("127.0.0.1", p.port))
                assert s.recv(20) == data
        finally:
            echo.stop()
    finally:
        a.close()
        b.close()
        p.stop()


@pytest.mark.timeout(60)
def test_tcp_and_udp_on_the_same_port_at_once(echo_server: Any) -> None:
    tcp_echo = echo_server  # the threaded TCP echo server of tests/conftest.py
    udp_echo = UdpEcho(tcp_echo.port)  # the same port number, for UDP
    w = Waiter()
    p = start(tcp_echo.port, w, tcp=True, udp=True)
    try:
        t = socket.create_connection(("127.0.0.1", p.port), timeout=WAIT)
        u = client()
        t.sendall(b"over tcp")
        u.sendto(b"over udp", ("127.0.0.1", p.port))
        assert u.recv(20) == b"over udp"
        got = b""
        while len(got) < 8:
            got += t.recv(20)
        assert got == b"over tcp"
        t.close()
        u.close()
    finally:
        p.stop()
        udp_echo.stop()
    assert {o.transport for o in w.of(ConnectionOpened)} == {"tcp", "udp"}


@pytest.mark.timeout(60)
def test_control_sets_conditions_on_one_flow_and_injects_a_datagram(echo: UdpEcho) -> None:
    from proxy.control.client import ControlClient, ControlError

    w = Waiter()
    p = ProxyThread(ProxyConfig(listen_port=0, target_port=echo.port, tcp=False, udp=True), (w,),
                    control_token="t0ken").start()
    try:
        c = client()
        c.sendto(b"one", ("127.0.0.1", p.port))
        assert c.recv(10) == b"one"
        with ControlClient("127.0.0.1", p.control_port, "t0ken") as cc:
            snap = cc.call("snapshot")
            (flow,) = snap["connections"]
            assert flow["transport"] == "udp" and snap["transports"] == ["udp"]
            conn = flow["conn"]
            r = cc.call("set_conditions", conn_id=conn, conditions={"c2s": {"loss_pct": 99.9}})
            assert r["conditions"]["c2s"]["loss_pct"] == 99.9
            cc.call("inject", conn_id=conn, direction="s2c", data=b"from the window")
            assert c.recv(30) == b"from the window"
            cc.call("inject", conn_id=conn, direction="c2s", data=b"replayed", origin="replayed")
            w.until(lambda rs: any(isinstance(r, Message) and r.origin is Origin.REPLAYED for r in rs))
            with pytest.raises(ControlError, match="no open connection"):
                cc.call("inject", conn_id=conn + 100, direction="c2s", data=b"nowhere")
            cc.call("set_conditions", conn_id=conn, conditions=None)  # back to the global conditions
            cc.call("close", conn_id=conn)
            w.until(lambda rs: any(isinstance(r, ConnectionClosed) for r in rs))
        c.close()
    finally:
        p.stop()
    replayed = [m for m in w.of(Message) if m.origin is Origin.REPLAYED]
    assert replayed[0].data == b"replayed"
    assert w.of(ConnectionClosed)[0].reason is CloseReason.PROXY_CLOSED

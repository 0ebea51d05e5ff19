"""The timeline's Qt-free core: pairing (auto and by key), round-trip breakdown, statistics, throughput, and the
live check that pairing on the demo's pings sees the configured latency (real sockets, in-process engine).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import msgpack
import pytest

from inspector.store import MessageStore
from inspector.timeline.pairing import KeySpec, PairingRule
from inspector.timeline.stats import BIN_NS, Analysis, auto_type_key, rows_to_csv
from proxy.conditions import Conditions, DirectionConditions
from proxy.demo import DemoClient, DemoServer
from proxy.model import DelayReason, Direction, Message, MessageState, MessageUpdated
from tests.conftest import Recorder

MS = 1_000_000
C2S, S2C = Direction.C2S, Direction.S2C


def msg(mid: int, d: Direction, data: bytes, arrival_ms: float, release_ms: float | None = None, conn: int = 1,
        **kw: Any) -> Message:
    a = int(arrival_ms * MS)
    r = a if release_ms is None else int(release_ms * MS)
    return Message(mid, conn, d, mid, data, a, r, **kw)


def test_qt_free_modules_do_not_import_pyside6() -> None:
    code = ("import sys\nimport inspector.timeline.pairing, inspector.timeline.stats, inspector.timeline.annotations\n"
            "import inspector.timeline.series\n"
            "import inspector.timeline\nbad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_key_spec_parsing() -> None:
    k = KeySpec.parse("json.id")
    assert (k.namespace, k.path, k.pattern) == ("json", ("id",), None)
    assert KeySpec.parse("msgpack.players[0].seq").path == ("players", 0, "seq")
    r = KeySpec.parse(r"ping (\d+)")
    assert r.pattern is not None and r.extract(b"ping 42", lambda: None) == "42"  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError):
        KeySpec.parse("ping (")
    assert PairingRule.parse().auto and not PairingRule.parse("json.id").auto


def test_auto_pairs_the_latest_released_request_and_breaks_down_the_delay() -> None:
    s = MessageStore()
    lat = ((DelayReason.LATENCY, 50 * MS),)
    s.apply([
        msg(1, S2C, b"welcome", 0),
        msg(2, C2S, b"Ping received!", 1),                           # never answered: given up on
        msg(3, C2S, b"ping 1", 10, 60, delays=lat),                  # released to the server at 60
        msg(4, S2C, b"tick", 30, conn=2),                            # another connection
        msg(8, S2C, b"news", 40),                                    # before the ping reached the server
        msg(5, S2C, b"pong 1", 61, 111, delays=lat),
        msg(6, C2S, b"ping 2", 200, 250, delays=lat),
        msg(7, S2C, b"pong 2", 252, 302, delays=lat),
    ])
    s.apply([msg(9, S2C, b"unasked", 400)])  # nothing pending: not paired
    a = Analysis(s)
    a.run_to_end()
    pairs = [(s.ids[p.request_row], s.ids[p.response_row]) for p in a.pairer.pairs]
    assert pairs == [(2, 8), (3, 5), (6, 7)]
    rt = a.pairer.round_trips[1]
    assert rt.rtt_ns == 101 * MS and rt.injected_ns == 100 * MS and rt.network_ns == 1 * MS
    assert dict(rt.injected_by) == {DelayReason.LATENCY: 100 * MS}
    assert "100.0 ms added by sockscope" in rt.describe()
    row5 = s.row_of(5)
    assert row5 is not None and a.pairer.round_trip_of(s, row5) == rt


def test_pairing_by_key_and_by_pattern_across_reordered_answers() -> None:
    s = MessageStore()
    s.apply([
        msg(1, C2S, b'{"type":"req","id":1}', 0), msg(2, C2S, b'{"type":"req","id":2}', 1),
        msg(3, S2C, b'{"type":"res","id":2}', 5), msg(4, S2C, b'{"type":"res","id":1}', 9),
        msg(5, C2S, msgpack.packb({"seq": 7}), 10, conn=2), msg(6, S2C, msgpack.packb({"seq": 7}), 12, conn=2),
        msg(7, C2S, b"ping 9", 20, conn=3), msg(8, S2C, b"pong 9", 23, conn=3),
    ])
    for rule, want in ((PairingRule.parse("json.id"), [(2, 3), (1, 4)]),
                       (PairingRule.parse("msgpack.seq"), [(5, 6)]),
                       (PairingRule.parse(r"ping (\d+)", r"pong (\d+)"), [(7, 8)])):
        a = Analysis(s, rule=rule)
        a.run_to_end()
        assert [(s.ids[p.request_row], s.ids[p.response_row]) for p in a.pairer.pairs] == want, rule
    a = Analysis(s, rule=PairingRule.parse("json.id"))
    a.run_to_end()
    assert [rt.rtt_ns for rt in a.pairer.round_trips] == [4 * MS, 9 * MS]


def test_held_answer_settles_when_released() -> None:
    s = MessageStore()
    s.apply([msg(1, C2S, b"ping 1", 0), Message(2, 1, S2C, 0, b"pong 1", 5 * MS, None, state=MessageState.HELD)])
    a = Analysis(s)
    a.run_to_end()
    assert len(a.pairer.pairs) == 1 and a.pairer.round_trips == []
    s.apply([MessageUpdated(2, 1, S2C, MessageState.FORWARDED, 805 * MS, 805 * MS, None,
                            ((DelayReason.HOLD, 800 * MS),))])
    a.update()
    assert [rt.rtt_ns for rt in a.pairer.round_trips] == [805 * MS]
    assert a.pairer.round_trips[0].injected_by == ((DelayReason.HOLD, 800 * MS),)


def test_statistics_match_counts_computed_from_the_store() -> None:
    s = MessageStore()
    mid = 0
    for i in range(600):  # 60 Hz for 10 s: states down, inputs up, a ping every second, two connections
        t = i * 1000 / 60
        for conn in (1, 2):
            mid += 1
            s.apply([msg(mid, S2C, b'{"type":"state","tick":%d}' % i, t, conn=conn)])
            mid += 1
            s.apply([msg(mid, C2S, msgpack.packb({"command": "input", "k": i % 4}), t + 1, conn=conn)])
        if i % 60 == 0:
            mid += 1
            s.apply([msg(mid, C2S, b"ping %d" % i, t + 2)])
    a = Analysis(s)
    a.run_to_end()
    rows = {(r.direction, r.key): r for r in a.stats.rows()}
    direct: Counter[tuple[Direction, str]] = Counter()
    sizes: dict[tuple[Direction, str], list[int]] = {}
    from inspector.decode import default_registry

    for row in range(len(s)):
        v = default_registry().decode_message(s.message(row))
        k = (s.direction(row), auto_type_key(v, s.payload(row)))
        direct[k] += 1
        sizes.setdefault(k, []).append(s.sizes[row])
    assert {k: r.count for k, r in rows.items()} == dict(direct)
    state = rows[(S2C, "json type=state")]
    assert state.count == 1200 and state.max_size == max(sizes[(S2C, "json type=state")])
    assert state.mean_size == pytest.approx(statistics.mean(sizes[(S2C, "json type=state")]))
    assert rows[(C2S, "msgpack command=input")].count == 1200 and rows[(C2S, "text ping")].count == 10
    one = {(r.direction, r.key): r for r in a.stats.rows(conn_id=2)}
    assert one[(S2C, "json type=state")].count == 600
    assert one[(S2C, "json type=state")].rate_hz == pytest.approx(60.0, rel=0.01)
    assert one[(S2C, "json type=state")].bytes_per_s == pytest.approx(60 * one[(S2C, "json type=state")].mean_size,
                                                                      rel=0.01)
    csv_text = rows_to_csv(a.stats.rows())
    lines = csv_text.splitlines()
    assert lines[0].startswith("direction,type,count") and len(lines) == len(rows) + 1
    assert any(line.startswith("s2c,json type=state,1200,") for line in lines)
    ts, msgs, byts = a.throughput.series(S2C)
    assert sum(msgs) * BIN_NS / 1e9 == pytest.approx(1200) and ts == sorted(ts)
    assert sum(byts) * BIN_NS / 1e9 == pytest.approx(sum(sizes[(S2C, "json type=state")]))


def test_cleared_store_starts_over() -> None:
    s = MessageStore()
    s.apply([msg(1, C2S, b"ping 1", 0), msg(2, S2C, b"pong 1", 1)])
    a = Analysis(s)
    a.run_to_end()
    gen = a.generation
    s.clear()
    s.apply([msg(3, C2S, b"ping 2", 5)])
    a.run_to_end()
    assert a.generation > gen and a.pairer.pairs == [] and a.stats.rows()[0].count == 1


def _medians(a: Analysis, lo_ns: int, hi_ns: int) -> tuple[float, float, int]:
    rts = [rt for rt in a.pairer.round_trips if lo_ns <= rt.sent_ns < hi_ns]
    return (statistics.median(rt.rtt_ms for rt in rts) if rts else 0.0,
            statistics.median(rt.injected_ms for rt in rts) if rts else 0.0, len(rts))


@pytest.mark.slow
def test_demo_pings_rtt_grows_by_twice_the_one_way_latency(start_proxy: Any, recorder: Recorder) -> None:
    server = DemoServer(say=lambda _l: None).start()
    p = start_proxy(server.port)
    client = DemoClient("127.0.0.1", p.port, None, 0.02, say=lambda _l: None).start()
    try:
        recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"pong 10")
        p.call(p.server.set_conditions,
               Conditions(DirectionConditions(latency_ms=50), DirectionConditions(latency_ms=50)))
        mark = time.monotonic_ns()  # the in-process engine's clock
        n_before = len(client.rtts_ms)
        recorder.wait_for(lambda r: len(client.rtts_ms) >= n_before + 12)
    finally:
        client.stop()
        client.thread.join(5)
        server.stop()
    s = MessageStore()
    s.apply(list(recorder.records))
    a = Analysis(s)
    a.run_to_end()
    base_rtt, base_inj, n0 = _medians(a, 0, mark)
    slow_rtt, slow_inj, n1 = _medians(a, mark + 150 * MS, 1 << 62)  # skip the ping in flight at the change
    assert n0 >= 8 and n1 >= 5, (n0, n1)
    assert base_inj == pytest.approx(0, abs=1)
    assert slow_inj == pytest.approx(100, abs=5)
    assert slow_rtt - base_rtt == pytest.approx(100, abs=20)
    # what the client itself measured agrees with what the proxy's records say
    assert statistics.median(client.rtts_ms[-5:]) == pytest.approx(slow_rtt, abs=25)


def test_datagram_stats_measure_what_the_udp_impairments_did_per_direction_and_flow() -> None:
    """A seeded datagram core (the real one, without sockets) with loss, duplicates, reordering and corruption on
    client→server: its records, through the store, give counts equal to what the core decided, near the configured
    rates; server→client and a TCP connection beside it count nothing of that."""
    from proxy import commands as cmd
    from proxy.datagram import DatagramCore, FlowConditionsChanged, FlowOpened
    from proxy.model import ConnectionOpened, Ids, Origin

    core = DatagramCore(Ids(), ("127.0.0.1", 7000), Conditions(), 3)
    records: list[Any] = []

    def take(out: list[Any]) -> None:
        records.extend(c.record for c in out if isinstance(c, cmd.Publish))

    take(core.client_datagram(("127.0.0.1", 40000), b"hello", 0))
    conn = next(r.conn_id for r in records if isinstance(r, ConnectionOpened))
    take(core.handle(FlowOpened(0, conn, ("127.0.0.1", 7000))))
    cond = DirectionConditions(loss_pct=10, duplicate_fraction=0.05, reorder_pct=10, corrupt_pct=5)
    take(core.handle(FlowConditionsChanged(0, conn, Conditions(c2s=cond))))
    n = 5000
    for i in range(n):
        take(core.client_datagram(("127.0.0.1", 40000), b'{"x": %d}' % i, (i + 1) * 1_000_000))
    for i in range(50):
        take(core.server_datagram(conn, b"ack", (n + i + 2) * 1_000_000))
    records.append(ConnectionOpened(99, ("127.0.0.1", 50000), ("127.0.0.1", 5555), 0))  # TCP: not counted
    records.append(Message(900_000, 99, Direction.C2S, 0, b"tcp", 1, 1))
    s = MessageStore()
    s.apply(records)
    a = Analysis(s)
    a.run_to_end()
    c2s, s2c = a.datagrams.total[Direction.C2S], a.datagrams.total[Direction.S2C]
    live = [r for r in records if isinstance(r, Message) and r.conn_id == conn and r.direction is Direction.C2S]
    assert c2s.datagrams == n + 1  # hello too
    assert c2s.lost == sum(1 for m in live if m.state is MessageState.DROPPED and m.note.startswith("lost:"))
    assert c2s.duplicates == sum(1 for m in live if m.origin is Origin.DUPLICATE)
    assert c2s.corrupted == sum(1 for m in live if m.flips and m.origin is Origin.LIVE)
    assert c2s.reordered == sum(1 for m in live if "sent ahead" in m.note and m.origin is Origin.LIVE)
    assert abs(c2s.pct(c2s.lost) - 10) < 1.5 and c2s.duplicates > 0 and c2s.reordered > 0 and c2s.corrupted > 0
    assert (s2c.datagrams, s2c.lost, s2c.duplicates, s2c.reordered, s2c.corrupted) == (50, 0, 0, 0, 0)
    assert a.datagrams.flows[(conn, Direction.C2S)] == c2s and (99, Direction.C2S) not in a.datagrams.flows

"""The timeline on real ENet traffic: each reliable command paired with the ACK that acknowledges it (channel,
reliable sequence number, and the echo of the carrying datagram's sent time), the reliable round trip per channel,
and ENet's retransmissions after a loss, as the ladder and the detail pane show them.

pyenet hosts through the UDP relay as in tests/test_enet_sockets.py (latency and seeded loss set in the engine);
the records go through a real MessageStore and the Qt-free Analysis.
"""

from __future__ import annotations

import pytest

from inspector.store import MessageStore
from inspector.timeline.series import PlotData
from inspector.timeline.stats import Analysis
from proxy.conditions import Conditions, DirectionConditions
from proxy.model import ConnectionOpened, Direction, MessageState
from tests.test_enet_sockets import EnetRun, enet

pytestmark = pytest.mark.slow


def analysed(run: EnetRun) -> tuple[MessageStore, Analysis]:
    msgs = run.close()
    store = MessageStore()
    store.apply([*run.waiter.of(ConnectionOpened), *msgs])
    analysis = Analysis(store)
    analysis.run_to_end()
    return store, analysis


@pytest.mark.timeout(120)
def test_reliable_commands_pair_with_their_acks_per_channel() -> None:
    run = EnetRun(conditions=Conditions(c2s=DirectionConditions(latency_ms=30),
                                        s2c=DirectionConditions(latency_ms=10)))
    for i in range(6):
        run.peer.send(0, enet.Packet(f"a{i}".encode(), enet.PACKET_FLAG_RELIABLE))
        run.peer.send(2, enet.Packet(f"b{i}".encode(), enet.PACKET_FLAG_RELIABLE))
        run.client.flush()
        run.pump(lambda n=i: len(run.got["server"]) >= 2 * (n + 1))
    run.server_peer.send(1, enet.Packet(b"down", enet.PACKET_FLAG_RELIABLE))
    run.pump(lambda: run.got["client"] == [(1, b"down")])
    run.settle()
    store, analysis = analysed(run)
    pairs = [p for p in analysis.pairer.pairs if p.channel is not None]
    by_channel = {ch: [p for p in pairs if p.channel == ch] for ch in (0, 1, 2)}
    assert len(by_channel[0]) == 6 and len(by_channel[2]) == 6 and len(by_channel[1]) == 1
    for p in pairs:
        req = analysis.registry.decode_message(store.message(p.request_row), detail=False)
        ack = analysis.registry.decode_message(store.message(p.response_row), detail=False)
        assert store.direction(p.request_row) is not store.direction(p.response_row)
        seq = int(p.key.split("#")[1]) if p.key else -1
        sent = [c for c in req.values if c["channel"] == p.channel and c["seq"] == seq and c.get("reliable")]
        acks = [c for c in ack.values if c["command"] == "ack" and c["channel"] == p.channel
                and c["acked_seq"] == seq]
        assert sent and acks and acks[0]["acked_sent_time"] == sent[0]["sent_time"]
    rts = [rt for rt in analysis.pairer.round_trips if rt.pair.channel in (0, 2)]
    assert len(rts) == 12
    # what sockscope added (30 ms there, 10 ms back) is inside every reliable round trip, and said to be
    assert all(rt.rtt_ms >= 39 and 39 <= rt.injected_ms <= rt.rtt_ms for rt in rts)
    down = [rt for rt in analysis.pairer.round_trips if rt.pair.channel == 1]
    assert down and store.direction(down[0].pair.request_row) is Direction.S2C
    plot = PlotData()
    plot.update(analysis, None)
    assert {0, 1, 2} <= set(plot.channels())
    xs, ys, rows = plot.channel_series(2)
    assert all(store.direction(r) is Direction.S2C for r in rows)  # the points are the acks
    assert len(xs) == 6 and all(y >= 39 for y in ys)


@pytest.mark.timeout(120)
def test_after_a_loss_the_ladder_notes_show_enets_retransmissions() -> None:
    run = EnetRun(conditions=Conditions(c2s=DirectionConditions(loss_pct=25), s2c=DirectionConditions()), seed=3)
    left = [f"msg {i}".encode() for i in range(24)]

    def send_next() -> None:
        if left:
            run.peer.send(0, enet.Packet(left.pop(0), enet.PACKET_FLAG_RELIABLE))
            run.client.flush()

    run.pump(lambda: len(run.got["server"]) == 24, timeout=60, each=send_next)
    run.settle()
    store, analysis = analysed(run)
    pairer = analysis.pairer
    lost = [r for r in range(len(store)) if store.state(r) is MessageState.DROPPED
            and store.direction(r) is Direction.C2S]
    assert lost
    resends = [r for r, text in pairer.notes.items() if "↻ resends" in text]
    assert resends
    for r in resends:  # each resend carries a command some earlier datagram carried, and says which try it is
        assert store.direction(r) is Direction.C2S and "try)" in pairer.enet_note(r)  # type: ignore[operator]
    for r in lost:  # a lost datagram's reliable commands went again in a later one, which its note names
        note = pairer.enet_note(r)
        values = analysis.registry.decode_message(store.message(r), detail=False).values
        if any(c.get("reliable") and c["command"] != "disconnect" for c in values):  # (the flow ends after those)
            assert note is not None and "sent again in #" in note
    # the pair is with the copy that got through (its sent time is the one the ack echoes), never a lost one
    for p in pairer.pairs:
        if p.channel == 0:
            assert store.state(p.request_row) is not MessageState.DROPPED
    assert len([p for p in pairer.pairs if p.channel == 0]) == 24


@pytest.mark.timeout(60)
def test_stream_lessons_are_not_marked_on_datagrams() -> None:
    """An ENet datagram often ends like the start of a msgpack object; the next like its end: no "split" on UDP."""
    from proxy.model import Message

    store = MessageStore()
    store.apply([ConnectionOpened(1, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, transport="udp"),
                 ConnectionOpened(2, ("127.0.0.1", 3), ("127.0.0.1", 4), 0)])
    first, second = b'\x82\xa1a\x01\xa1b', b"\x02"  # a msgpack map cut in two
    store.apply([Message(1, 1, Direction.C2S, 0, first, 1, 1), Message(2, 1, Direction.C2S, 1, second, 2, 2),
                 Message(3, 2, Direction.C2S, 0, first, 3, 3), Message(4, 2, Direction.C2S, 1, second, 4, 4)])
    analysis = Analysis(store)
    analysis.run_to_end()
    assert not analysis.annotator.for_row(store, 0) and not analysis.annotator.for_row(store, 1)
    assert [a.kind.value for a in analysis.annotator.for_row(store, 2)] == ["split"]  # TCP: as before


@pytest.mark.timeout(60)
def test_an_ack_that_was_lost_pairs_with_nothing_and_the_resend_pairs_with_the_next() -> None:
    from proxy.model import Message
    from tests import enet_bytes as e

    store = MessageStore()
    store.apply([ConnectionOpened(1, ("127.0.0.1", 1), ("127.0.0.1", 2), 0, transport="udp")])
    first = e.header(0, sent_time=100) + e.reliable(0, 1, b"hello")
    resend = e.header(0, sent_time=300) + e.reliable(0, 1, b"hello")
    store.apply([
        Message(1, 1, Direction.C2S, 0, first, 1_000_000, 1_000_000),
        Message(2, 1, Direction.S2C, 0, e.header(0) + e.ack(0, 1, 100), 2_000_000, None,
                state=MessageState.DROPPED, note="lost: random loss 20 %"),
        Message(3, 1, Direction.C2S, 1, resend, 3_000_000, 3_000_000),
        Message(4, 1, Direction.S2C, 1, e.header(0) + e.ack(0, 1, 300), 4_000_000, 5_000_000),
    ])
    analysis = Analysis(store)
    analysis.run_to_end()
    (pair,) = analysis.pairer.pairs
    assert (pair.request_row, pair.response_row, pair.channel, pair.key) == (2, 3, 0, "ch0 #1")
    assert analysis.pairer.enet_note(2) == "↻ resends ch0 #1 (2nd try)"
    assert analysis.pairer.enet_note(0) == "ch0 #1 sent again in #3"
    (rt,) = analysis.pairer.round_trips
    assert rt.rtt_ns == 2_000_000

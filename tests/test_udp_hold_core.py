"""Hold, edit, forward, drop, rules and replay for datagrams, on the sans-IO datagram core (no sockets, no clock).

The core shares the engine's :class:`proxy.relay.Shared` (rules and the "hold next" counters of every connection
and flow), as the server wires it; everything else is events in, commands out.
"""

from __future__ import annotations

import pytest

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import PASSTHROUGH, Conditions, DirectionConditions
from proxy.datagram import (
    WAIT_OVERHEAD,
    DatagramCore,
    DatagramInjected,
    FlowHoldArmed,
    FlowOpened,
    HeldDropRequested,
    HeldReleaseAllRequested,
    HeldReleaseRequested,
    OpenFlow,
    SendToClient,
    SendToServer,
)
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    Ids,
    Message,
    MessageState,
    MessageUpdated,
    Origin,
)
from proxy.relay import Shared
from proxy.rules import Match, Rule

MS = 1_000_000
TARGET = ("127.0.0.1", 7000)
CLIENT = ("127.0.0.1", 40000)


def records(out: list[cmd.Command], kind: type) -> list:
    return [c.record for c in out if isinstance(c, cmd.Publish) and isinstance(c.record, kind)]


def sent(out: list[cmd.Command]) -> list[bytes]:
    return [c.data for c in out if isinstance(c, SendToServer | SendToClient)]


def opened(cond: Conditions = PASSTHROUGH, seed: int | None = 1, shared: Shared | None = None,
           **kw: object) -> tuple[DatagramCore, int, Shared]:
    shared = shared or Shared()
    core = DatagramCore(Ids(), TARGET, cond, seed, shared=shared, **kw)  # type: ignore[arg-type]
    out = core.client_datagram(CLIENT, b"hello", 0)
    (o,) = records(out, ConnectionOpened)
    core.handle(FlowOpened(0, o.conn_id, TARGET))
    return core, o.conn_id, shared


def test_hold_next_on_a_flow_holds_one_datagram_and_lets_the_next_ones_pass() -> None:
    core, conn, _ = opened()
    core.handle(FlowHoldArmed(1, conn, Direction.C2S, 1))
    out = core.client_datagram(CLIENT, b"held", 2 * MS)
    assert sent(out) == []
    (m,) = records(out, Message)
    assert m.state is MessageState.HELD and m.data == b"held" and m.release_ns is None
    assert core.held_ids() == [m.id] and core.held_ids(conn) == [m.id]
    assert core.waiting_bytes == 4 + WAIT_OVERHEAD  # counts against the wait cap
    # UDP keeps no order: the next datagrams are not held back by the held one
    out = core.client_datagram(CLIENT, b"after", 3 * MS)
    assert sent(out) == [b"after"] and records(out, Message)[0].state is MessageState.FORWARDED
    out = core.handle(HeldReleaseRequested(10 * MS, m.id))
    assert sent(out) == [b"held"]
    (u,) = records(out, MessageUpdated)
    assert u.state is MessageState.FORWARDED and u.release_ns == 10 * MS and u.data is None
    assert (DelayReason.HOLD, 8 * MS) in u.delays
    assert core.held_ids() == [] and core.waiting_bytes == 0
    assert core.flow_snapshot(conn)["held"] == []


def test_edit_sends_the_new_bytes_as_one_datagram_and_drop_sends_nothing() -> None:
    core, conn, _ = opened()
    core.handle(FlowHoldArmed(1, conn, Direction.S2C, 2))
    a = records(core.server_datagram(conn, b"one", 2), Message)[0]
    b = records(core.server_datagram(conn, b"two", 3), Message)[0]
    assert a.state is b.state is MessageState.HELD
    assert core.flow_snapshot(conn)["held"] == [a.id, b.id]
    out = core.handle(HeldReleaseRequested(4, a.id, b"\x00edited\xff" * 3))
    assert [(c.addr, c.data) for c in out if isinstance(c, SendToClient)] == [(CLIENT, b"\x00edited\xff" * 3)]
    (u,) = records(out, MessageUpdated)
    assert u.data == b"\x00edited\xff" * 3 and u.state is MessageState.FORWARDED
    out = core.handle(HeldDropRequested(5, b.id))
    assert sent(out) == [] and records(out, MessageUpdated)[0].state is MessageState.DROPPED
    assert core.waiting_bytes == 0
    with pytest.raises(KeyError, match="not held"):
        core.handle(HeldDropRequested(6, b.id))
    with pytest.raises(ValueError, match="65,507"):
        core.handle(FlowHoldArmed(7, conn, Direction.S2C, 1))
        c = records(core.server_datagram(conn, b"three", 8), Message)[0]
        core.handle(HeldReleaseRequested(9, c.id, bytes(65508)))


def test_global_hold_next_is_shared_with_tcp_and_release_all_forwards_every_held_datagram() -> None:
    core, _, shared = opened()
    shared.hold_next[Direction.C2S] += 2
    shared.update()
    core.sync_shared()
    ids = [records(core.client_datagram(CLIENT, bytes([i]), i), Message)[0].id for i in range(3)]
    assert shared.hold_next == [0, 0] and not shared.active
    assert core.held_ids() == ids[:2]
    out = core.handle(HeldReleaseAllRequested(10, None))
    assert sent(out) == [b"\x00", b"\x01"]
    # back on the fast path: one send, one record
    out = core.client_datagram(CLIENT, b"fast", 11)
    assert len(out) == 2 and sent(out) == [b"fast"]


def test_a_held_datagram_is_discarded_when_its_flow_times_out() -> None:
    core, conn, _ = opened(idle_timeout_s=1.0)
    core.handle(FlowHoldArmed(1, conn, Direction.C2S, 1))
    m = records(core.client_datagram(CLIENT, b"held", 2), Message)[0]
    out = core.handle(ev.WakeupFired(2 * 10**9))
    (closed,) = records(out, ConnectionClosed)
    assert closed.reason is CloseReason.IDLE_TIMEOUT and closed.discarded == 1
    (u,) = records(out, MessageUpdated)
    assert (u.msg_id, u.state) == (m.id, MessageState.DISCARDED)
    assert core.held_ids() == [] and core.waiting_bytes == 0


def test_a_held_datagram_released_early_still_leaves_at_its_release_time() -> None:
    core, conn, _ = opened(Conditions(c2s=DirectionConditions(latency_ms=50)))
    core.handle(FlowHoldArmed(1, conn, Direction.C2S, 1))
    m = records(core.client_datagram(CLIENT, b"x", 0), Message)[0]
    out = core.handle(HeldReleaseRequested(10 * MS, m.id))
    assert sent(out) == []
    (u,) = records(out, MessageUpdated)
    assert u.state is MessageState.SCHEDULED and u.release_ns == 50 * MS
    assert sent(core.handle(ev.WakeupFired(50 * MS))) == [b"hello", b"x"]  # b"hello" had the latency too


def test_held_datagrams_count_against_the_wait_cap() -> None:
    core, conn, _ = opened(wait_cap=3 * (100 + WAIT_OVERHEAD))
    core.handle(FlowHoldArmed(1, conn, Direction.C2S, 5))
    states = [records(core.client_datagram(CLIENT, bytes(100), i), Message)[0].state for i in range(5)]
    assert states == [MessageState.HELD] * 3 + [MessageState.DROPPED] * 2


def rule(action: str, **kw: object) -> Rule:
    extra = {k: kw.pop(k) for k in ("delay_ms", "percent", "name") if k in kw}
    return Rule(Match(**kw), action, **extra)  # type: ignore[arg-type]


def with_rules(*rules: Rule, seed: int | None = 1) -> tuple[DatagramCore, int]:
    shared = Shared()
    core, conn, _ = opened(seed=seed, shared=shared)
    shared.rules = rules
    shared.update()
    core.sync_shared()
    return core, conn


def test_a_drop_rule_on_bytes_drops_matching_datagrams_only() -> None:
    core, conn = with_rules(rule("drop", bytes_regex=rb"^input", name="no input"))
    out = core.client_datagram(CLIENT, b"input:1", 1)
    assert sent(out) == []
    (m,) = records(out, Message)
    assert m.state is MessageState.DROPPED and "no input" in m.note
    assert sent(core.client_datagram(CLIENT, b"pos:1", 2)) == [b"pos:1"]
    assert sent(core.server_datagram(conn, b"input:echo", 3)) == []


def test_rule_hold_delay_duplicate_and_close_on_datagrams() -> None:
    core, conn = with_rules(rule("hold", bytes_regex=b"H"), rule("delay", bytes_regex=b"D", delay_ms=20),
                            rule("duplicate", bytes_regex=b"2"), rule("close", bytes_regex=b"bye"))
    assert records(core.client_datagram(CLIENT, b"H", 1), Message)[0].state is MessageState.HELD
    out = core.client_datagram(CLIENT, b"D", 2)
    assert sent(out) == [] and records(out, Message)[0].release_ns == 2 + 20 * MS
    out = core.client_datagram(CLIENT, b"2", 3)
    ms = records(out, Message)
    assert sent(out) == [b"2", b"2"] and [m.origin for m in ms] == [Origin.LIVE, Origin.DUPLICATE]
    out = core.client_datagram(CLIENT, b"bye", 4)
    (closed,) = records(out, ConnectionClosed)
    assert closed.reason is CloseReason.PROXY_CLOSED and "rule" in closed.detail
    assert closed.discarded == 2  # the held one and the delayed one
    assert conn not in core.flows


def test_a_percentage_rule_is_seeded_and_reproducible() -> None:
    def decisions(seed: int) -> list[bool]:
        core, _ = with_rules(rule("drop", bytes_regex=b"input", percent=20), seed=seed)
        out: list[bool] = []
        for i in range(2000):
            (m,) = records(core.client_datagram(CLIENT, b"input" if i % 2 else b"pos", i), Message)
            if i % 2:
                out.append(m.state is MessageState.DROPPED)
            else:
                assert m.state is MessageState.FORWARDED
        return out

    a, b = decisions(7), decisions(7)
    assert a == b and 150 < sum(a) < 250  # about 20 % of 1000
    assert decisions(8) != a


def test_a_rule_on_a_decoded_field_applies_to_datagrams() -> None:
    core, _ = with_rules(Rule.from_dict({"action": "drop", "filter": "json.type == 'input'"}))
    assert sent(core.client_datagram(CLIENT, b'{"type": "input", "x": 1}', 1)) == []
    assert sent(core.client_datagram(CLIENT, b'{"type": "pos", "x": 1}', 2)) == [b'{"type": "pos", "x": 1}']


def test_a_rule_that_cannot_decide_is_no_match_with_one_warning_per_flow() -> None:
    core, _ = with_rules(rule("drop", bytes_regex=b"(a|b)*c" * 40))
    from proxy.model import Notice

    out = core.client_datagram(CLIENT, bytes(60000), 1)
    assert sent(out) == [bytes(60000)]
    (n,) = records(out, Notice)
    assert "did not apply" in n.text
    assert records(core.client_datagram(CLIENT, bytes(60000), 2), Notice) == []


def test_no_rules_no_holds_is_one_send_and_one_record_per_datagram() -> None:
    core, conn, shared = opened()
    shared.rules = (rule("drop", bytes_regex=b"x"),)
    shared.update()
    core.sync_shared()
    shared.rules = ()
    shared.update()
    core.sync_shared()
    assert core.flows[conn].lanes[0].fast and core.flows[conn].lanes[1].fast
    out = core.client_datagram(CLIENT, b"x", 1)
    assert len(out) == 2 and sent(out) == [b"x"]


def test_a_replay_flow_is_new_and_its_datagrams_are_marked_replayed() -> None:
    core, conn, _ = opened()
    new, out = core.open_replay(conn, 5)
    (o,) = records(out, ConnectionOpened)
    assert o.conn_id == new != conn and o.replay_of == conn and o.transport == "udp"
    assert [c.flow for c in out if isinstance(c, OpenFlow)] == [new]
    core.handle(FlowOpened(6, new, TARGET))
    out = core.handle(DatagramInjected(7, new, Direction.C2S, b"again", Origin.REPLAYED))
    assert [(c.flow, c.data) for c in out if isinstance(c, SendToServer)] == [(new, b"again")]
    assert records(out, Message)[0].origin is Origin.REPLAYED
    # replies to a replay flow have no client to go to; they are still recorded
    out = core.server_datagram(new, b"reply", 8)
    assert records(out, Message)[0].data == b"reply"
    assert core.was_flow(conn) and core.was_flow(new) and not core.was_flow(10**6)


@pytest.mark.timeout(30)
def test_thousands_of_flows_with_held_datagrams_end_in_linear_work() -> None:
    """Each flow's end discards its own held datagrams without scanning everyone's (2,000 flows x 50 held)."""
    shared = Shared()
    core = DatagramCore(Ids(), TARGET, PASSTHROUGH, 1, idle_timeout_s=1.0, shared=shared)
    shared.hold_next[Direction.C2S] = 2000 * 50
    shared.update()
    core.sync_shared()
    for port in range(2000):
        addr = ("127.0.0.1", 10000 + port)
        for c in core.client_datagram(addr, b"first", 0):
            if isinstance(c, OpenFlow):
                core.handle(FlowOpened(0, c.flow, TARGET))
        for i in range(49):
            core.client_datagram(addr, bytes([i]), 1)
    assert len(core.held) == 100_000
    out = core.handle(ev.WakeupFired(2 * 10**9))
    assert len(records(out, ConnectionClosed)) == 2000
    assert sum(u.state is MessageState.DISCARDED for u in records(out, MessageUpdated)) == 100_000
    assert core.held == {} and core.waiting_bytes == 0

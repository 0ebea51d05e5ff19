"""Playbook tests of the relay core with network conditions, holds, faults and rules (no sockets, no clock)."""

from __future__ import annotations

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import Conditions, DirectionConditions, Jitter, Spike
from proxy.framing import FramingSpec
from proxy.model import (
    ConnectionClosed,
    DelayReason,
    Direction,
    Ids,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Side,
)
from proxy.relay import Relay, Shared
from proxy.rules import Match, Rule

C, S = Side.CLIENT, Side.SERVER
MS = 1_000_000


def opened(conditions: Conditions | None = None, framing: FramingSpec | None = None,
           shared: Shared | None = None) -> Relay:
    r = Relay(1, ("127.0.0.1", 50000), ("127.0.0.1", 5555), framing or FramingSpec("lines", "lines"), Ids(),
              conditions=conditions or Conditions(), shared=shared, seed=1)
    r.handle(ev.ClientAccepted(0))
    r.handle(ev.UpstreamOpened(0, ("127.0.0.1", 5555)))
    return r


def sends(out: list[cmd.Command]) -> list[cmd.SendData]:
    return [c for c in out if isinstance(c, cmd.SendData)]


def recs(out: list[cmd.Command], kind: type) -> list:
    return [c.record for c in out if isinstance(c, cmd.Publish) and isinstance(c.record, kind)]


def lat(c2s: float = 0, s2c: float = 0, **kw: object) -> Conditions:
    return Conditions(DirectionConditions(latency_ms=c2s, **kw), DirectionConditions(latency_ms=s2c))  # type: ignore[arg-type]


def test_latency_delays_until_wakeup_never_early() -> None:
    r = opened(lat(c2s=50))
    out = r.handle(ev.DataReceived(10 * MS, C, b"ping 1\n"))
    assert sends(out) == []
    (m,) = recs(out, Message)
    assert m.state is MessageState.SCHEDULED and m.release_ns == 60 * MS
    assert m.delays == ((DelayReason.LATENCY, 50 * MS),)
    assert out[-1] == cmd.RequestWakeup(60 * MS)
    assert sends(r.handle(ev.WakeupFired(60 * MS - 1))) == []
    out = r.handle(ev.WakeupFired(60 * MS))
    assert sends(out) == [cmd.SendData(S, b"ping 1\n")]
    (u,) = recs(out, MessageUpdated)
    assert u.state is MessageState.FORWARDED and u.release_ns == 60 * MS
    # the other direction is not delayed
    assert sends(r.handle(ev.DataReceived(61 * MS, S, b"pong 1\n"))) == [cmd.SendData(C, b"pong 1\n")]


def test_jitter_clumps_but_never_reorders() -> None:
    r = opened(Conditions(DirectionConditions(latency_ms=20, jitter=Jitter(30, "uniform"))))
    got: list[bytes] = []
    last_release = 0
    events: list[ev.Event] = [ev.DataReceived(i * MS, C, f"m{i}\n".encode()) for i in range(200)]
    events += [ev.WakeupFired(t) for t in range(200 * MS, 400 * MS, MS // 2)]
    for e in events:
        out = r.handle(e)
        for u in recs(out, MessageUpdated):
            assert u.release_ns >= last_release
            last_release = u.release_ns
        got += [s.data for s in sends(out)]
    assert got == [f"m{i}\n".encode() for i in range(200)]


def test_live_change_keeps_scheduled_times() -> None:
    r = opened(lat(c2s=100))
    r.handle(ev.DataReceived(0, C, b"a\n"))
    r.handle(ev.ConditionsChanged(1 * MS, lat(c2s=0)))
    out = r.handle(ev.DataReceived(2 * MS, C, b"b\n"))
    # b has no latency of its own now but must wait behind a (TCP order)
    assert sends(out) == []
    out = r.handle(ev.WakeupFired(100 * MS))
    assert sends(out) == [cmd.SendData(S, b"a\n"), cmd.SendData(S, b"b\n")]


def test_freeze_holds_then_thaw_releases_everything_in_order() -> None:
    frozen = Conditions(DirectionConditions(frozen=True))
    r = opened(frozen)
    for i in range(3):
        assert sends(r.handle(ev.DataReceived(i * MS, C, f"{i}\n".encode()))) == []
    out = r.handle(ev.ConditionsChanged(500 * MS, Conditions()))
    assert sends(out) == [cmd.SendData(S, b"0\n"), cmd.SendData(S, b"1\n"), cmd.SendData(S, b"2\n")]
    ups = recs(out, MessageUpdated)
    assert all(dict(u.delays).get(DelayReason.FREEZE, 0) > 0 for u in ups)


def test_spike_now_delays_what_is_waiting() -> None:
    r = opened(lat(c2s=10))
    r.handle(ev.DataReceived(0, C, b"a\n"))
    r.handle(ev.SpikeStarted(1 * MS, Direction.C2S, Spike(add_ms=100, for_s=1, start_ns=1 * MS)))
    assert sends(r.handle(ev.WakeupFired(10 * MS))) == []
    out = r.handle(ev.WakeupFired(110 * MS))
    assert sends(out) == [cmd.SendData(S, b"a\n")]
    assert (DelayReason.SPIKE, 100 * MS) in recs(out, MessageUpdated)[0].delays


def test_hold_blocks_direction_then_edit_and_release() -> None:
    r = opened()
    r.handle(ev.HoldArmed(0, Direction.C2S))
    out = r.handle(ev.DataReceived(1 * MS, C, b"ping 1\n"))
    (held,) = recs(out, Message)
    assert held.state is MessageState.HELD and sends(out) == []
    # a later message waits behind the held one
    assert sends(r.handle(ev.DataReceived(2 * MS, C, b"ping 2\n"))) == []
    assert r.held() == [held.id]
    out = r.handle(ev.ReleaseRequested(9 * MS, held.id, b"PING 1 (edited)\n"))
    assert sends(out) == [cmd.SendData(S, b"PING 1 (edited)\n"), cmd.SendData(S, b"ping 2\n")]
    first = recs(out, MessageUpdated)[0]
    assert first.data == b"PING 1 (edited)\n" and (DelayReason.HOLD, 8 * MS) in first.delays


def test_drop_held_message_and_release_all() -> None:
    r = opened()
    r.handle(ev.HoldArmed(0, Direction.S2C, count=3))
    ids = [recs(r.handle(ev.DataReceived(i, S, f"{i}\n".encode())), Message)[0].id for i in range(3)]
    out = r.handle(ev.DropRequested(5, ids[0]))
    assert recs(out, MessageUpdated)[0].state is MessageState.DROPPED
    out = r.handle(ev.ReleaseAllRequested(6))
    assert sends(out) == [cmd.SendData(C, b"1\n"), cmd.SendData(C, b"2\n")]


def test_shared_hold_next_applies_to_any_connection_once() -> None:
    shared = Shared()
    shared.hold_next[Direction.C2S] = 1
    shared.update()
    a, b = opened(shared=shared), opened(shared=shared)
    assert recs(a.handle(ev.DataReceived(1, C, b"x\n")), Message)[0].state is MessageState.HELD
    assert sends(b.handle(ev.DataReceived(2, C, b"y\n"))) == [cmd.SendData(S, b"y\n")]


def test_drop_and_duplicate_next() -> None:
    r = opened()
    r.handle(ev.FaultArmed(0, Direction.C2S, "drop"))
    out = r.handle(ev.DataReceived(1, C, b"a\nb\n"))
    assert sends(out) == [cmd.SendData(S, b"b\n")]
    assert recs(out, Message)[0].state is MessageState.DROPPED
    r.handle(ev.FaultArmed(2, Direction.C2S, "duplicate"))
    out = r.handle(ev.DataReceived(3, C, b"c\n"))
    assert sends(out) == [cmd.SendData(S, b"c\n"), cmd.SendData(S, b"c\n")]
    assert [m.origin for m in recs(out, Message)] == [Origin.LIVE, Origin.DUPLICATE]


def test_fault_under_raw_framing_warns() -> None:
    r = opened(framing=FramingSpec())
    r.handle(ev.FaultArmed(0, Direction.C2S, "drop"))
    out = r.handle(ev.DataReceived(1, C, b"abc"))
    assert any("framing may break" in n.text for n in recs(out, Notice))


def test_rules_in_order_first_match_decides() -> None:
    shared = Shared()
    shared.rules = (
        Rule(Match(direction=Direction.C2S, bytes_regex=rb"^secret"), "drop", name="no secrets"),
        Rule(Match(bytes_regex=rb"ping"), "delay", delay_ms=40),
        Rule(Match(min_size=100), "reset"),
    )
    shared.update()
    r = opened(shared=shared)
    assert sends(r.handle(ev.DataReceived(0, C, b"secret ping\n"))) == []
    out = r.handle(ev.DataReceived(1 * MS, C, b"ping\n"))
    (m,) = recs(out, Message)
    assert m.release_ns == 41 * MS and (DelayReason.RULE, 40 * MS) in m.delays
    out = r.handle(ev.DataReceived(2 * MS, S, b"x" * 200 + b"\n"))
    assert cmd.CloseConnection(reset=True) in out
    assert "matched" in recs(out, ConnectionClosed)[0].detail


def test_a_duplicate_rule_sends_each_match_twice_and_never_matches_its_own_copy() -> None:
    """The copy goes through the same path as the message (conditions, holds); it must not meet the rule again, or
    one message would make copies of copies until the stack ran out."""
    shared = Shared()
    shared.rules = (Rule(Match(bytes_regex=rb"pos"), "duplicate", name="twice"),)
    shared.update()
    r = opened(shared=shared)
    out = r.handle(ev.DataReceived(0, C, b"pos 1\nchat\n"))
    assert sends(out) == [cmd.SendData(S, b"pos 1\n"), cmd.SendData(S, b"pos 1\n"), cmd.SendData(S, b"chat\n")]
    assert [m.origin for m in recs(out, Message)] == [Origin.LIVE, Origin.DUPLICATE, Origin.LIVE]


def test_a_percent_rule_decides_the_same_with_the_same_seed() -> None:
    """``percent`` draws from the direction's seeded generator, so ``--seed`` repeats which messages a rule took."""

    def decisions(seed: int) -> list[MessageState]:
        shared = Shared()
        shared.rules = (Rule(Match(bytes_regex=rb"pos"), "drop", name="some", percent=30),)
        shared.update()
        r = Relay(1, ("127.0.0.1", 50000), ("127.0.0.1", 5555), FramingSpec("lines", "lines"), Ids(),
                  conditions=Conditions(), shared=shared, seed=seed)
        r.handle(ev.ClientAccepted(0))
        r.handle(ev.UpstreamOpened(0, ("127.0.0.1", 5555)))
        out = r.handle(ev.DataReceived(1, C, b"".join(b"pos %d\n" % i for i in range(200))))
        return [m.state for m in recs(out, Message)]

    first = decisions(7)
    assert first == decisions(7) and first != decisions(8)
    assert 30 < first.count(MessageState.DROPPED) < 90  # about 30 % of 200


def test_close_while_held_says_what_was_lost() -> None:
    r = opened()
    r.handle(ev.HoldArmed(0, Direction.C2S))
    r.handle(ev.DataReceived(1, C, b"held\n"))
    out = r.handle(ev.ConnectionLost(2, S, True, "reset"))
    assert recs(out, MessageUpdated)[0].state is MessageState.DISCARDED
    assert recs(out, ConnectionClosed)[0].discarded == 1


def test_eof_waits_for_delayed_messages_before_half_close() -> None:
    r = opened(lat(c2s=30))
    r.handle(ev.DataReceived(0, C, b"last words\n"))
    out = r.handle(ev.EofReceived(1, C))
    assert not any(isinstance(c, cmd.HalfClose) for c in out)
    out = r.handle(ev.WakeupFired(30 * MS))
    assert [type(c) for c in out if not isinstance(c, cmd.Publish)] == [cmd.SendData, cmd.HalfClose]


def test_bandwidth_spaces_messages() -> None:
    r = opened(Conditions(DirectionConditions(bandwidth_bps=1000)))  # 1,000 bytes/s
    out = r.handle(ev.DataReceived(0, C, b"x" * 99 + b"\n"))
    (m,) = recs(out, Message)
    assert m.release_ns == 100 * MS  # 100 bytes at 1,000 B/s
    (m2,) = recs(r.handle(ev.DataReceived(0, C, b"y" * 99 + b"\n")), Message)
    assert m2.release_ns == 200 * MS


def test_same_seed_same_schedule() -> None:
    cond = Conditions(DirectionConditions(latency_ms=10, jitter=Jitter(20, "normal")))

    def run() -> list[int]:
        r = opened(cond)
        return [recs(r.handle(ev.DataReceived(i * MS, C, b"m\n")), Message)[0].release_ns for i in range(50)]

    assert run() == run()


def test_injected_messages_obey_conditions() -> None:
    r = opened(lat(s2c=25))
    out = r.handle(ev.DataInjected(0, Direction.S2C, b"hello from sockscope\n"))
    (m,) = recs(out, Message)
    assert m.origin is Origin.INJECTED and m.release_ns == 25 * MS


def test_an_undecided_match_shifts_no_later_share_decision() -> None:
    """One draw per message while a rule takes a share: a message whose match could not be decided (a filter out of
    its decoding time) changes only its own outcome, never the draws of the messages after it."""
    import random

    from proxy.rules import first_match

    class Flaky:
        """A predicate that cannot decide message 3 (as a filter out of credit raises RuleUndecided)."""

        def matches(self, m: Message) -> bool:
            if m.id == 3:
                raise RuntimeError("undecided")
            return True

    def decisions(flaky: bool) -> list[bool]:
        rule = Rule(Flaky() if flaky else Match(), "drop", percent=50)  # type: ignore[arg-type]
        rng = random.Random(5)
        return [first_match((rule,), Message(i, 1, Direction.C2S, i, b"x", 0, 0), None, rng) is not None
                for i in range(40)]

    steady, flaky = decisions(False), decisions(True)
    assert flaky[3] is False and flaky[:3] == steady[:3] and flaky[4:] == steady[4:]

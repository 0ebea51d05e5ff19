"""Hypothesis state-machine test of the relay core: any sequence of events keeps its invariants.

Random reads on both sides, half-closes, holds, edits, drops, injected messages, changing conditions (latency,
jitter, freeze) and wake-ups at random times. Invariants after every step:
- what was written to each side is exactly the released messages of that direction, in stream order
  (what the records say went out, with edits, without drops);
- nothing is written to a side after its FIN was passed on, and a connection is closed at most once;
- records never claim a release before the arrival.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import Conditions, DirectionConditions, Jitter
from proxy.framing import FramingSpec
from proxy.model import Direction, Ids, Message, MessageState, MessageUpdated, Side
from proxy.relay import Relay

MS = 1_000_000


class RelayMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.relay = Relay(1, ("c", 1), ("s", 2), FramingSpec("lines", "raw"), Ids(), seed=7)
        self.now = 0
        self.sent: dict[Side, bytearray] = {Side.CLIENT: bytearray(), Side.SERVER: bytearray()}
        self.fin_sent: set[Side] = set()
        self.closes = 0
        self.messages: dict[int, Message] = {}
        self.final: dict[int, tuple[MessageState, bytes]] = {}  # msg id -> last state and bytes
        self.order: dict[Direction, list[int]] = {Direction.C2S: [], Direction.S2C: []}
        self.eof: set[Side] = set()
        self.run(ev.ClientAccepted(0))
        self.run(ev.UpstreamOpened(0, ("s", 2)))

    def run(self, e: ev.Event) -> None:
        for c in self.relay.handle(e):
            if isinstance(c, cmd.SendData):
                assert c.side not in self.fin_sent, "data written after FIN"
                self.sent[c.side] += c.data
            elif isinstance(c, cmd.HalfClose):
                self.fin_sent.add(c.side)
            elif isinstance(c, cmd.CloseConnection):
                self.closes += 1
                assert self.closes == 1, "closed twice"
            elif isinstance(c, cmd.Publish):
                r = c.record
                if isinstance(r, Message):
                    self.messages[r.id] = r
                    self.order[r.direction].append(r.id)
                    self.final[r.id] = (r.state, r.data)
                    if r.release_ns is not None:
                        assert r.release_ns >= r.arrival_ns
                elif isinstance(r, MessageUpdated):
                    state, data = self.final[r.msg_id]
                    assert state not in (MessageState.DROPPED, MessageState.DISCARDED, MessageState.FORWARDED), \
                        f"message {r.msg_id} changed after it was {state.value}"
                    self.final[r.msg_id] = (r.state, r.data if r.data is not None else data)
                    if r.release_ns is not None:
                        assert r.release_ns >= self.messages[r.msg_id].arrival_ns

    def tick(self, dt_ms: int) -> None:
        self.now += dt_ms * MS

    @rule(side=st.sampled_from(Side), data=st.binary(min_size=1, max_size=40), dt=st.integers(0, 30))
    def receive(self, side: Side, data: bytes, dt: int) -> None:
        if side in self.eof:
            return
        self.tick(dt)
        self.run(ev.DataReceived(self.now, side, data))

    @rule(side=st.sampled_from(Side), dt=st.integers(0, 30))
    def fin(self, side: Side, dt: int) -> None:
        self.tick(dt)
        self.eof.add(side)
        self.run(ev.EofReceived(self.now, side))

    @rule(direction=st.sampled_from(Direction), data=st.binary(min_size=1, max_size=20))
    def inject(self, direction: Direction, data: bytes) -> None:
        self.run(ev.DataInjected(self.now, direction, data))

    @rule(direction=st.sampled_from(Direction), count=st.integers(1, 3))
    def hold(self, direction: Direction, count: int) -> None:
        self.run(ev.HoldArmed(self.now, direction, count))

    @precondition(lambda self: bool(self.relay.held()))
    @rule(pick=st.integers(0, 100), edit=st.one_of(st.none(), st.binary(min_size=1, max_size=10)),
          drop=st.booleans())
    def decide(self, pick: int, edit: bytes | None, drop: bool) -> None:
        held = self.relay.held()
        msg_id = held[pick % len(held)]
        if drop:
            self.run(ev.DropRequested(self.now, msg_id))
        else:
            self.run(ev.ReleaseRequested(self.now, msg_id, edit))

    @rule(c2s=st.integers(0, 50), s2c=st.integers(0, 50), jitter=st.integers(0, 20), frozen=st.booleans())
    def conditions(self, c2s: int, s2c: int, jitter: int, frozen: bool) -> None:
        self.run(ev.ConditionsChanged(self.now, Conditions(
            DirectionConditions(latency_ms=c2s, jitter=Jitter(jitter), frozen=frozen),
            DirectionConditions(latency_ms=s2c))))

    @rule(direction=st.sampled_from(Direction), kind=st.sampled_from(["drop", "duplicate"]))
    def fault(self, direction: Direction, kind: str) -> None:
        self.run(ev.FaultArmed(self.now, direction, kind))

    @rule(dt=st.integers(0, 120))
    def wake(self, dt: int) -> None:
        self.tick(dt)
        self.run(ev.WakeupFired(self.now))
        # after a wake-up nothing that is due is left waiting unless the user or a freeze holds it
        if not self.relay.closed:
            for lane in self.relay.lanes:
                if lane.queue and not lane.cond.frozen and not lane.queue[0].held:
                    assert lane.queue[0].release_ns > self.now, "a due message was not released"

    @invariant()
    def written_bytes_are_the_released_messages_in_order(self) -> None:
        for d in Direction:
            out = b"".join(self.final[i][1] for i in self.order[d] if self.final[i][0] is MessageState.FORWARDED)
            assert bytes(self.sent[d.destination]) == out

    def teardown(self) -> None:
        """Liveness: once nothing holds them back, every message is delivered or was deliberately dropped."""
        if self.relay.closed:
            return
        self.run(ev.ConditionsChanged(self.now, Conditions()))
        self.run(ev.ReleaseAllRequested(self.now))
        self.tick(10_000)
        self.run(ev.WakeupFired(self.now))
        # a partial line that waited past the stall bound became a message of its own, which a hold may catch
        self.run(ev.ReleaseAllRequested(self.now))
        self.run(ev.WakeupFired(self.now))
        for msg_id, (state, _) in self.final.items():
            assert state in (MessageState.FORWARDED, MessageState.DROPPED), (msg_id, state)
        self.written_bytes_are_the_released_messages_in_order()


TestRelayMachine = RelayMachine.TestCase
TestRelayMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)

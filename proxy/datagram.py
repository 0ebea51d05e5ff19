"""The datagram core: a sans-IO state machine for every UDP flow of one listening socket.

Role: ``DatagramCore.handle(event) -> list[Command]``, in the style of :mod:`proxy.relay`. A *flow* is the
datagrams of one client address (host, port) and is published as a connection (``ConnectionOpened`` with
``transport="udp"`` ... ``ConnectionClosed``); each datagram is one message, byte for byte (no framing). The
shell opens one connected upstream socket per flow (``OpenFlow``) so the server's replies can be told apart, and
sends what the core asks (``SendToServer``, ``SendToClient``). Impairments per direction come from
:mod:`proxy.impair`; delayed datagrams wait in one heap for the whole socket, so one timer
(``RequestWakeup``) serves every flow. A flow with no datagram either way for the idle timeout is closed
(``CloseReason.IDLE_TIMEOUT``). Flows are capped: datagrams from new addresses past ``max_flows`` are dropped and
counted (:attr:`DatagramCore.refused`), with one ``Notice`` each time the cap is reached. Bytes waiting in the
core are capped too (``WAIT_CAP``): past it a datagram is dropped with a note, so a flood cannot grow memory.

Hold, edit, forward, drop and rules work on datagrams as on TCP messages. The core reads the engine's
:class:`proxy.relay.Shared` (the rules and the "hold next" counters every connection and flow take from); the
server calls :meth:`DatagramCore.sync_shared` after changing them, so a datagram pays for rules and holds only
while some are set (the fast path stays one send and one record). A held datagram (state ``HELD``) waits outside
the release heap: the datagrams after it are not held back (UDP keeps no order), it counts against ``WAIT_CAP``,
it does not keep its flow from the idle timeout, and it is discarded when its flow ends. A replay
(:meth:`DatagramCore.open_replay`) is a new flow with its own upstream socket and ``replay_of`` set.
No sockets, no clock, no logging: time arrives in events.

Must not import: Qt, ``inspector``, asyncio, sockets, ``time``.
Thread: engine loop thread; the core is owned by the UDP shell (:mod:`proxy.udpserver`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import PASSTHROUGH, Conditions, DirectionConditions, Spike
from proxy.impair import DirectionImpairer
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
    Notice,
    Origin,
    UpstreamConnected,
    frozen,
)
from proxy.relay import Shared
from proxy.rules import Rule, failure_text, first_match, unreported_failures

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_FLOWS",
    "MAX_DATAGRAM",
    "WAIT_CAP",
    "ClientDatagram",
    "CloseFlow",
    "DatagramCore",
    "DatagramInjected",
    "DefaultConditionsChanged",
    "FlowCloseRequested",
    "FlowConditionsChanged",
    "FlowFailed",
    "FlowFaultArmed",
    "FlowHoldArmed",
    "FlowOpened",
    "FlowRefused",
    "FlowSpikeStarted",
    "HeldDropRequested",
    "HeldReleaseAllRequested",
    "HeldReleaseRequested",
    "OpenFlow",
    "SendToClient",
    "SendToServer",
    "ServerDatagram",
]

DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_FLOWS: Final = 4096
MAX_DATAGRAM: Final = 65535
"""The largest UDP payload a socket can hand over (65,507 over IPv4, 65,527 over IPv6)."""
WAIT_CAP: Final = 32 << 20
"""Bytes of datagrams waiting in the core (delayed, frozen, or for a flow's socket) over all flows."""
WAIT_OVERHEAD: Final = 160
"""What one waiting datagram costs besides its bytes (its heap entry and record), counted against ``WAIT_CAP`` so
that a flood of empty datagrams is bounded too (and with it the work of scanning what waits)."""
OPENING_CAP: Final = 64
"""Client datagrams kept per flow while its upstream socket opens."""
MAX_PAYLOAD: Final = 65507
"""The most an edited datagram may hold: the largest UDP payload over IPv4 (a larger one could not be sent)."""
ENDED_CAP: Final = 65536
"""Ended flows remembered as having been UDP flows (for ``replay``), the oldest forgotten first."""
"""Client datagrams kept per flow while its upstream socket opens."""

# ------------------------------------------------------------------------------------------ events and commands


@frozen
class ClientDatagram(ev.Event):
    """A datagram from a client address reached the listening socket."""

    addr: tuple[str, int]
    data: bytes


@frozen
class ServerDatagram(ev.Event):
    """A datagram from the server reached flow ``flow``'s upstream socket."""

    flow: int
    data: bytes


@frozen
class FlowOpened(ev.Event):
    """The shell opened flow ``flow``'s upstream socket (``OpenFlow``)."""

    flow: int
    server_addr: tuple[str, int]


@frozen
class FlowFailed(ev.Event):
    """The shell could not open flow ``flow``'s upstream socket (no file descriptor left, no route, ...)."""

    flow: int
    detail: str


@frozen
class FlowRefused(ev.Event):
    """The server's host answered a datagram of ``flow`` with ICMP port unreachable (nothing listens there)."""

    flow: int
    detail: str


@frozen
class DatagramInjected(ev.Event):
    """A datagram to send into flow ``flow`` in ``direction``; it enters the receive path like a live one."""

    flow: int
    direction: Direction
    data: bytes
    origin: Origin = Origin.INJECTED


@frozen
class DefaultConditionsChanged(ev.Event):
    """The conditions flows opened from now on start with."""

    conditions: Conditions


@frozen
class FlowConditionsChanged(ev.Event):
    """New conditions for flow ``flow``; datagrams already scheduled keep their release time."""

    flow: int
    conditions: Conditions


@frozen
class FlowSpikeStarted(ev.Event):
    """A one-shot lag spike in ``direction`` of ``flow`` starting now (it also delays what is waiting)."""

    flow: int
    direction: Direction
    spike: Spike


@frozen
class FlowFaultArmed(ev.Event):
    """Drop or duplicate the next ``count`` datagrams of ``flow`` in ``direction``."""

    flow: int
    direction: Direction
    kind: str
    count: int = 1


@frozen
class FlowHoldArmed(ev.Event):
    """Hold the next ``count`` datagrams of ``flow`` in ``direction`` for the user."""

    flow: int
    direction: Direction
    count: int = 1


@frozen
class HeldReleaseRequested(ev.Event):
    """Forward held datagram ``msg_id``, as it is or (``data``) as one datagram of these bytes."""

    msg_id: int
    data: bytes | None = None


@frozen
class HeldDropRequested(ev.Event):
    """Never send held datagram ``msg_id``."""

    msg_id: int


@frozen
class HeldReleaseAllRequested(ev.Event):
    """Forward every held datagram (of ``flow``, or of every flow when None)."""

    flow: int | None = None


@frozen
class FlowCloseRequested(ev.Event):
    """The user asked to end flow ``flow`` (UDP has no FIN: its socket is closed and the flow forgotten)."""

    flow: int
    detail: str = ""


@frozen
class OpenFlow(cmd.Command):
    """Open a socket connected to the target for ``flow``; answer with ``FlowOpened`` or ``FlowFailed``, at once
    (from inside the command: the core puts OpenFlow last in its list) or later."""

    flow: int


@frozen
class SendToServer(cmd.Command):
    flow: int
    data: bytes


@frozen
class SendToClient(cmd.Command):
    """Send from the listening socket to ``addr`` (the flow's client)."""

    addr: tuple[str, int]
    data: bytes


@frozen
class CloseFlow(cmd.Command):
    """Close ``flow``'s upstream socket."""

    flow: int


# ------------------------------------------------------------------------------------------ state

_OPENING, _OPEN, _CLOSED = 0, 1, 2
_FORWARDED, _SCHEDULED, _DROPPED, _DISCARDED, _HELD = (
    MessageState.FORWARDED, MessageState.SCHEDULED, MessageState.DROPPED, MessageState.DISCARDED, MessageState.HELD)
_LIVE, _DUPLICATE = Origin.LIVE, Origin.DUPLICATE
_C2S, _S2C = Direction.C2S, Direction.S2C


@dataclass(slots=True)
class _Lane:
    direction: Direction
    cond: DirectionConditions
    impairer: DirectionImpairer
    fast: bool = True
    seq: int = 0
    bytes_out: int = 0
    messages_out: int = 0
    waiting: int = 0  # datagrams of this lane in the core's heap or frozen list (held ones are not counted)
    frozen_list: list[_Waiting] = field(default_factory=list)
    hold_next: int = 0  # datagrams still to hold, armed on this flow
    rule_rng: random.Random | None = None  # draws of rules below 100 %, made when first needed


@dataclass(slots=True)
class _Flow:
    conn_id: int
    addr: tuple[str, int]
    lanes: tuple[_Lane, _Lane]
    last_ns: int
    replay_of: int | None = None
    phase: int = _OPENING
    opening: list[tuple[int, bytes]] = field(default_factory=list)  # client datagrams (arrival, data) meanwhile
    refused: int = 0  # ICMP port unreachable answers
    rules_warned: list[Rule] = field(default_factory=list)  # rules whose failed match was reported on this flow
    held: dict[int, None] = field(default_factory=dict)  # ids of this flow's held datagrams, in order


@dataclass(slots=True, order=True)
class _Waiting:
    release_ns: int
    order: int  # ties leave in arrival order
    conn_id: int = field(compare=False)
    direction: Direction = field(compare=False)
    msg_id: int = field(compare=False)
    data: bytes = field(compare=False)
    delays: tuple[tuple[DelayReason, int], ...] = field(compare=False)


@dataclass(slots=True)
class _Held:
    """A datagram held for the user: impaired already (its bytes, its release time), waiting for a decision."""

    conn_id: int
    direction: Direction
    data: bytes
    release_ns: int
    delays: tuple[tuple[DelayReason, int], ...]
    note: str
    flips: tuple[int, ...]
    copies: tuple[int, ...]  # extra delay of each copy to send after it (duplicate impairment, duplicate rule)


_UNSEEDED = random.Random()


class DatagramCore:
    """Every UDP flow of one listening socket. Feed it events; execute the commands it returns, in order."""

    def __init__(self, ids: Ids, target_addr: tuple[str, int], conditions: Conditions = PASSTHROUGH,
                 seed: int | str | None = None, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_flows: int = DEFAULT_MAX_FLOWS, wait_cap: int = WAIT_CAP, shared: Shared | None = None) -> None:
        if idle_timeout_s <= 0:
            raise ValueError(f"idle timeout must be above 0 s, got {idle_timeout_s!r}")
        if max_flows < 1:
            raise ValueError(f"the flow limit must be at least 1, got {max_flows!r}")
        self.ids = ids
        self.target_addr = target_addr
        self.default = conditions
        self.seed = seed
        self.idle_ns = round(idle_timeout_s * 1e9)
        self.idle_timeout_s = idle_timeout_s
        self.max_flows = max_flows
        self.wait_cap = wait_cap
        self.flows: dict[int, _Flow] = {}
        self.by_addr: dict[tuple[str, int], _Flow] = {}
        self.refused = 0
        """Datagrams from new client addresses dropped because ``max_flows`` flows were open."""
        self.overflowed = 0
        """Datagrams dropped because ``wait_cap`` bytes were already waiting."""
        self.waiting_bytes = 0
        """Bytes waiting (delayed or frozen), each datagram counted with ``WAIT_OVERHEAD`` more."""
        self._cap_warned = False
        self._wait_warned = False
        self._heap: list[_Waiting] = []
        self._order = 0
        self._idle: list[tuple[int, int]] = []  # (deadline ns, conn id), checked lazily
        self._wakeup_at: int | None = None
        self.shared = shared or Shared()
        """Rules and global "hold next" counters, shared with the TCP relays."""
        self._engaged = self.shared.active  # rules or holds set: datagrams leave the fast path
        self.held: dict[int, _Held] = {}
        """Held datagrams by message id, in the order they were held."""
        self._ended: dict[int, None] = {}  # the last ENDED_CAP flows that ended (for was_flow)
        self._dispatch: dict[type[ev.Event], Callable[[ev.Event, list[cmd.Command]], None]] = {
            ClientDatagram: self._on_client,  # type: ignore[dict-item]
            ServerDatagram: self._on_server,  # type: ignore[dict-item]
            FlowOpened: self._on_opened,  # type: ignore[dict-item]
            FlowFailed: self._on_failed,  # type: ignore[dict-item]
            FlowRefused: self._on_refused,  # type: ignore[dict-item]
            DatagramInjected: self._on_injected,  # type: ignore[dict-item]
            DefaultConditionsChanged: self._on_default,  # type: ignore[dict-item]
            FlowConditionsChanged: self._on_conditions,  # type: ignore[dict-item]
            FlowSpikeStarted: self._on_spike,  # type: ignore[dict-item]
            FlowFaultArmed: self._on_fault,  # type: ignore[dict-item]
            FlowCloseRequested: self._on_close_requested,  # type: ignore[dict-item]
            FlowHoldArmed: self._on_hold_armed,  # type: ignore[dict-item]
            HeldReleaseRequested: self._on_release,  # type: ignore[dict-item]
            HeldDropRequested: self._on_drop,  # type: ignore[dict-item]
            HeldReleaseAllRequested: self._on_release_all,  # type: ignore[dict-item]
            ev.WakeupFired: self._on_wakeup,  # type: ignore[dict-item]
            ev.ShutdownRequested: self._on_shutdown,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------------------------------ public

    def handle(self, event: ev.Event) -> list[cmd.Command]:
        out: list[cmd.Command] = []
        self._dispatch[type(event)](event, out)
        return out

    def client_datagram(self, addr: tuple[str, int], data: bytes, now: int) -> list[cmd.Command]:
        """``handle(ClientDatagram(now, addr, data))`` without building the event: the shell's entry per datagram."""
        out: list[cmd.Command] = []
        flow = self.by_addr.get(addr)
        if flow is None:
            flow = self._new_flow(addr, now, out)
            if flow is None:
                return out
        flow.last_ns = now
        if flow.phase == _OPEN:
            self._admit(flow, flow.lanes[0], data, now, _LIVE, out)
        else:
            self._keep_opening(flow, data, now, out)
        return out

    def server_datagram(self, conn_id: int, data: bytes, now: int) -> list[cmd.Command]:
        out: list[cmd.Command] = []
        flow = self.flows.get(conn_id)
        if flow is not None and flow.phase == _OPEN:
            flow.last_ns = now
            self._admit(flow, flow.lanes[1], data, now, _LIVE, out)
        return out

    def conditions_of(self, conn_id: int) -> Conditions:
        f = self._flow(conn_id)
        return Conditions(f.lanes[0].cond, f.lanes[1].cond)

    def flow_snapshot(self, conn_id: int) -> dict[str, object]:
        f = self._flow(conn_id)
        c2s, s2c = f.lanes
        return {"conn": f.conn_id, "client": list(f.addr), "target": list(self.target_addr), "transport": "udp",
                "phase": ("opening", "relaying", "closed")[f.phase], "replay_of": f.replay_of,
                "conditions": self.conditions_of(conn_id).to_dict(), "held": self.held_ids(conn_id),
                "bytes_c2s": c2s.bytes_out, "bytes_s2c": s2c.bytes_out,
                "messages_c2s": c2s.messages_out, "messages_s2c": s2c.messages_out,
                "framing_c2s": "datagram", "framing_s2c": "datagram", "idle_timeout_s": self.idle_timeout_s,
                "refused": f.refused}

    def held_ids(self, conn_id: int | None = None) -> list[int]:
        """Ids of the held datagrams (of one flow), in the order they were held."""
        return list(self.held if conn_id is None else self._flow(conn_id).held)

    def sync_shared(self) -> None:
        """Call after changing the shared rules or "hold next" counters: datagrams leave the fast path while any
        are set, and take it again when none are."""
        engaged = self.shared.active
        if engaged == self._engaged:
            return
        self._engaged = engaged
        for flow in self.flows.values():
            for lane in flow.lanes:
                self._refresh(lane)

    def was_flow(self, conn_id: int) -> bool:
        """Whether ``conn_id`` is or was a UDP flow (of the last ``ENDED_CAP`` that ended)."""
        return conn_id in self.flows or conn_id in self._ended

    def open_replay(self, replay_of: int, now: int) -> tuple[int, list[cmd.Command]]:
        """A new flow for replaying ``replay_of``'s client side: its own upstream socket (a new source port), no
        client (replies are recorded, not sent on). Feed it with ``DatagramInjected(origin=REPLAYED)``."""
        out: list[cmd.Command] = []
        flow = self._open_flow(("replay", 0), now, out, replay_of)
        return flow.conn_id, out

    def _flow(self, conn_id: int) -> _Flow:
        try:
            return self.flows[conn_id]
        except KeyError:
            raise KeyError(f"no open UDP flow #{conn_id}") from None

    # ------------------------------------------------------------------------------------------ flows

    def _new_flow(self, addr: tuple[str, int], now: int, out: list[cmd.Command]) -> _Flow | None:
        if len(self.flows) >= self.max_flows:
            self.refused += 1
            if not self._cap_warned:
                self._cap_warned = True
                out.append(cmd.Publish(Notice(
                    "warning", f"UDP: {self.max_flows} flows are open, the limit: datagrams from new client "
                    f"addresses (first {addr[0]}:{addr[1]}) are dropped and counted until a flow ends "
                    "(--udp-max-flows; a flow ends after the idle timeout)", now)))
            return None
        return self._open_flow(addr, now, out)

    def _open_flow(self, addr: tuple[str, int], now: int, out: list[cmd.Command],
                   replay_of: int | None = None) -> _Flow:
        conn_id = self.ids.conn()
        seed = self.seed
        lanes = tuple(
            _Lane(d, self.default.for_direction(d),
                  DirectionImpairer(random.Random(f"{seed}:{conn_id}:{d.label}") if seed is not None else _UNSEEDED))
            for d in (_C2S, _S2C))
        flow = _Flow(conn_id, addr, lanes, now, replay_of)  # type: ignore[arg-type]
        for lane in lanes:
            self._refresh(lane)
        self.flows[conn_id] = flow
        if replay_of is None:
            self.by_addr[addr] = flow
        heapq.heappush(self._idle, (now + self.idle_ns, conn_id))
        out.append(cmd.Publish(ConnectionOpened(conn_id, addr, self.target_addr, now, replay_of, "udp")))
        self._next_wakeup(out)
        # Last: the shell may answer OpenFlow at once (FlowOpened, handled while it runs this list), and whatever
        # that answer asks (a wake-up) must not be overridden by a command that came before it here.
        out.append(OpenFlow(conn_id))
        return flow

    def _keep_opening(self, flow: _Flow, data: bytes, now: int, out: list[cmd.Command]) -> None:
        if len(flow.opening) < OPENING_CAP:
            flow.opening.append((now, data))
            return
        lane = flow.lanes[0]
        seq = lane.seq
        lane.seq = seq + 1
        out.append(cmd.Publish(Message(self.ids.msg(), flow.conn_id, _C2S, seq, data, now, None, _LIVE, _DROPPED,
                                       note=f"dropped: {OPENING_CAP} datagrams already wait for this flow's "
                                            "socket to open")))

    def _on_opened(self, e: FlowOpened, out: list[cmd.Command]) -> None:
        flow = self.flows.get(e.flow)
        if flow is None or flow.phase != _OPENING:
            return
        flow.phase = _OPEN
        out.append(cmd.Publish(UpstreamConnected(flow.conn_id, e.server_addr, e.now)))
        pending, flow.opening = flow.opening, []
        for arrival, data in pending:
            self._admit(flow, flow.lanes[0], data, arrival, _LIVE, out)
        self._next_wakeup(out)

    def _on_failed(self, e: FlowFailed, out: list[cmd.Command]) -> None:
        flow = self.flows.get(e.flow)
        if flow is None or flow.phase == _CLOSED:
            return
        host, port = self.target_addr
        out.append(cmd.Publish(Notice("error", f"flow #{flow.conn_id}: cannot open a UDP socket to the server at "
                                               f"{host}:{port} ({e.detail})", e.now, flow.conn_id)))
        for arrival, data in flow.opening:
            lane = flow.lanes[0]
            seq = lane.seq
            lane.seq = seq + 1
            out.append(cmd.Publish(Message(self.ids.msg(), flow.conn_id, _C2S, seq, data, arrival, None, _LIVE,
                                           _DROPPED, note="dropped: the flow's socket could not be opened")))
        flow.opening = []
        self._close(flow, CloseReason.UPSTREAM_ERROR, e.detail, e.now, out, notify_shell=False)

    def _on_refused(self, e: FlowRefused, out: list[cmd.Command]) -> None:
        flow = self.flows.get(e.flow)
        if flow is None or flow.phase == _CLOSED:
            return
        flow.refused += 1
        if flow.refused == 1:  # once per flow: a client that keeps sending must not flood the window
            host, port = self.target_addr
            out.append(cmd.Publish(Notice(
                "error", f"flow #{flow.conn_id}: the server at {host}:{port} refused a datagram (ICMP port "
                f"unreachable: is your server running, on UDP?); sockscope keeps the flow and goes on sending "
                f"({e.detail}; not repeated for this flow)", e.now, flow.conn_id)))

    def _on_close_requested(self, e: FlowCloseRequested, out: list[cmd.Command]) -> None:
        flow = self._flow(e.flow)
        self._close(flow, CloseReason.PROXY_CLOSED, e.detail or "closed by the user", e.now, out)

    def _close(self, flow: _Flow, reason: CloseReason, detail: str, now: int, out: list[cmd.Command],
               notify_shell: bool = True) -> None:
        discarded = 0
        if any(lane.waiting for lane in flow.lanes):
            keep: list[_Waiting] = []
            for w in self._heap:
                if w.conn_id == flow.conn_id:
                    discarded += 1
                    self.waiting_bytes -= len(w.data) + WAIT_OVERHEAD
                    out.append(cmd.Publish(MessageUpdated(w.msg_id, w.conn_id, w.direction, _DISCARDED, now)))
                else:
                    keep.append(w)
            heapq.heapify(keep)
            self._heap = keep
            for lane in flow.lanes:
                for w in lane.frozen_list:
                    discarded += 1
                    self.waiting_bytes -= len(w.data) + WAIT_OVERHEAD
                    out.append(cmd.Publish(MessageUpdated(w.msg_id, w.conn_id, w.direction, _DISCARDED, now)))
                lane.frozen_list.clear()
                lane.waiting = 0
        if flow.held:  # only this flow's: thousands of flows ending must not each scan every held datagram
            for msg_id in flow.held:
                h = self.held.pop(msg_id)
                discarded += 1
                self.waiting_bytes -= len(h.data) + WAIT_OVERHEAD
                out.append(cmd.Publish(MessageUpdated(msg_id, h.conn_id, h.direction, _DISCARDED, now)))
        flow.phase = _CLOSED
        del self.flows[flow.conn_id]
        self._ended[flow.conn_id] = None
        if len(self._ended) > ENDED_CAP:
            del self._ended[next(iter(self._ended))]
        if self.by_addr.get(flow.addr) is flow:
            del self.by_addr[flow.addr]
        if len(self.flows) < self.max_flows:
            self._cap_warned = False
        if notify_shell:
            out.append(CloseFlow(flow.conn_id))
        c2s, s2c = flow.lanes
        out.append(cmd.Publish(ConnectionClosed(flow.conn_id, reason, detail, now, c2s.bytes_out, s2c.bytes_out,
                                                c2s.messages_out, s2c.messages_out, discarded)))

    # ------------------------------------------------------------------------------------------ datagrams

    def _refresh(self, lane: _Lane) -> None:
        lane.fast = lane.cond.is_passthrough and not lane.hold_next and not self._engaged

    def _admit(self, flow: _Flow, lane: _Lane, data: bytes, now: int, origin: Origin,
               out: list[cmd.Command]) -> None:
        seq = lane.seq
        lane.seq = seq + 1
        ids = self.ids
        msg_id = ids.next_msg
        ids.next_msg = msg_id + 1
        if lane.fast and not lane.waiting:
            # Nothing shapes this direction: one send, one record (the send first, as on TCP).
            out.append(SendToServer(flow.conn_id, data) if lane.direction is _C2S else SendToClient(flow.addr, data))
            out.append(cmd.Publish(Message(msg_id, flow.conn_id, lane.direction, seq, data, now, now, origin)))
            lane.bytes_out += len(data)
            lane.messages_out += 1
            return
        d = lane.direction
        rule: Rule | None = None
        if self._engaged:
            shared = self.shared
            if not shared.active:  # the TCP side took the last hold meanwhile
                self.sync_shared()
            elif shared.rules and origin is not _DUPLICATE:  # a copy is not matched again (it would copy itself)
                rule = self._match(flow, lane, msg_id, seq, data, now, origin, out)
                if rule is not None:
                    label = rule.name or rule.action
                    if rule.action == "drop":
                        out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, None, origin,
                                                       _DROPPED, note=f"dropped by rule {label!r}")))
                        return
                    if rule.action in ("close", "reset"):
                        out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, None, origin,
                                                       _DISCARDED, note=f"the flow ended: rule {label!r}")))
                        self._close(flow, CloseReason.PROXY_RESET if rule.action == "reset"
                                    else CloseReason.PROXY_CLOSED, f"rule {label!r} matched message {msg_id}",
                                    now, out)
                        return
        verdict, lane.cond = lane.impairer.decide(now, data, lane.cond)
        self._refresh(lane)
        if verdict.dropped:
            out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, None, origin, _DROPPED,
                                           note=verdict.note)))
            return
        data = verdict.data
        release, delays = verdict.release_ns, verdict.delays
        copies: tuple[int, ...] = ()
        if verdict.duplicate_ns is not None:
            copies = (verdict.duplicate_ns - release,)
        if rule is not None:
            if rule.action == "delay" and rule.delay_ms > 0:
                extra = round(rule.delay_ms * 1e6)
                release += extra
                delays = (*delays, (DelayReason.RULE, extra))
            elif rule.action == "duplicate":
                copies = (*copies, 0)
        held = rule is not None and rule.action == "hold"
        if held or ((lane.hold_next or self._engaged) and self._take_hold(lane)):
            self._hold(flow, lane, msg_id, seq, data, now, release, origin, delays, verdict.note, verdict.flips,
                       copies, out)
            return
        if self.shared.intercept and origin is not _DUPLICATE:  # held for the addons (proxy.addonhost)
            self._hold(flow, lane, msg_id, seq, data, now, release, origin, delays, verdict.note, verdict.flips,
                       copies, out, intercept=True)
            return
        self._place(flow, lane, msg_id, seq, data, now, release, origin, delays, verdict.note, verdict.flips, out)
        self._copies(flow, lane, msg_id, data, now, release, delays, verdict.flips, copies, out)
        self._next_wakeup(out)

    def _copies(self, flow: _Flow, lane: _Lane, msg_id: int, data: bytes, now: int, release: int,
                delays: tuple[tuple[DelayReason, int], ...], flips: tuple[int, ...], copies: tuple[int, ...],
                out: list[cmd.Command]) -> None:
        for extra in copies:
            dup_seq = lane.seq
            lane.seq = dup_seq + 1
            dup_delays = (*delays, (DelayReason.RULE, extra)) if extra > 0 else delays
            self._place(flow, lane, self.ids.msg(), dup_seq, data, now, release + extra, _DUPLICATE, dup_delays,
                        f"duplicate of message {msg_id}", flips, out)

    def _take_hold(self, lane: _Lane) -> bool:
        """Use one armed "hold next" (this flow's first, then the engine-wide one), if any."""
        if lane.hold_next:
            lane.hold_next -= 1
            self._refresh(lane)
            return True
        shared = self.shared
        if shared.hold_next[lane.direction] > 0:
            shared.hold_next[lane.direction] -= 1
            shared.update()
            self.sync_shared()
            return True
        return False

    def _match(self, flow: _Flow, lane: _Lane, msg_id: int, seq: int, data: bytes, now: int, origin: Origin,
               out: list[cmd.Command]) -> Rule | None:
        """The rule that decides this datagram. Matching is bounded as on TCP (RE2 within its work budget, decoded
        fields within the filter's budget); a rule that cannot decide is no match, reported once per flow."""
        rules = self.shared.rules
        rng = lane.rule_rng
        if rng is None and any(r.percent < 100 for r in rules):
            rng = lane.rule_rng = (random.Random(f"{self.seed}:{flow.conn_id}:{lane.direction.label}:rules")
                                   if self.seed is not None else _UNSEEDED)
        failures: list[tuple[Rule, Exception]] = []
        rule = first_match(rules, Message(msg_id, flow.conn_id, lane.direction, seq, data, now, None, origin,
                                          _SCHEDULED), lambda r, e: failures.append((r, e)), rng)
        for label, exc in unreported_failures(rules, flow.rules_warned, failures) if failures else ():
            out.append(cmd.Publish(Notice(
                "warning", f"flow #{flow.conn_id} {lane.direction.label}: rule {label!r} did not apply to datagram "
                f"{msg_id}: {failure_text(exc)} (not reported again on this flow)", now, flow.conn_id,
                lane.direction)))
        return rule

    def _hold(self, flow: _Flow, lane: _Lane, msg_id: int, seq: int, data: bytes, now: int, release: int,
              origin: Origin, delays: tuple[tuple[DelayReason, int], ...], note: str, flips: tuple[int, ...],
              copies: tuple[int, ...], out: list[cmd.Command], intercept: bool = False) -> None:
        d = lane.direction
        if self.waiting_bytes + len(data) + WAIT_OVERHEAD > self.wait_cap:
            self.overflowed += 1
            out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, None, origin, _DROPPED, delays,
                                           f"dropped instead of held: the proxy already holds "
                                           f"{self.wait_cap >> 20} MiB of delayed or held datagrams", flips)))
            return
        self.waiting_bytes += len(data) + WAIT_OVERHEAD
        self.held[msg_id] = _Held(flow.conn_id, d, data, release, delays, note, flips, copies)
        flow.held[msg_id] = None
        record = Message(msg_id, flow.conn_id, d, seq, data, now, None, origin, _HELD, delays, note, flips)
        out.append(cmd.Publish(record))
        if intercept:
            out.append(cmd.Intercept(record))

    def _place(self, flow: _Flow, lane: _Lane, msg_id: int, seq: int, data: bytes, now: int, release: int,
               origin: Origin, delays: tuple[tuple[DelayReason, int], ...], note: str, flips: tuple[int, ...],
               out: list[cmd.Command]) -> None:
        """A datagram that passed: forward it now, or keep it until ``release`` (or the thaw)."""
        d = lane.direction
        if release <= now and not lane.cond.frozen and flow.phase == _OPEN:
            self._send(flow, lane, data, out)
            out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, now, origin, _FORWARDED, delays,
                                           note, flips)))
            return
        if self.waiting_bytes + len(data) + WAIT_OVERHEAD > self.wait_cap:
            self.overflowed += 1
            if not self._wait_warned:
                self._wait_warned = True
                out.append(cmd.Publish(Notice(
                    "warning", f"UDP: {self.wait_cap >> 20} MiB of delayed datagrams are waiting in the proxy: "
                    "new ones are dropped (and counted) until some leave", now, flow.conn_id, d)))
            out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, None, origin, _DROPPED, delays,
                                           f"dropped: the proxy already holds {self.wait_cap >> 20} MiB of delayed "
                                           "datagrams", flips)))
            return
        out.append(cmd.Publish(Message(msg_id, flow.conn_id, d, seq, data, now, release, origin, _SCHEDULED, delays,
                                       note, flips)))
        self._order += 1
        w = _Waiting(release, self._order, flow.conn_id, d, msg_id, data, delays)
        self.waiting_bytes += len(data) + WAIT_OVERHEAD
        lane.waiting += 1
        if lane.cond.frozen:
            lane.frozen_list.append(w)
        else:
            heapq.heappush(self._heap, w)

    def _send(self, flow: _Flow, lane: _Lane, data: bytes, out: list[cmd.Command]) -> None:
        out.append(SendToServer(flow.conn_id, data) if lane.direction is _C2S else SendToClient(flow.addr, data))
        lane.bytes_out += len(data)
        lane.messages_out += 1

    def _on_server(self, e: ServerDatagram, out: list[cmd.Command]) -> None:
        out.extend(self.server_datagram(e.flow, e.data, e.now))

    def _on_client(self, e: ClientDatagram, out: list[cmd.Command]) -> None:
        out.extend(self.client_datagram(e.addr, e.data, e.now))

    def _on_injected(self, e: DatagramInjected, out: list[cmd.Command]) -> None:
        flow = self._flow(e.flow)
        if flow.phase != _OPEN:
            raise KeyError(f"UDP flow #{e.flow} is not open yet")
        self._admit(flow, flow.lanes[e.direction], e.data, e.now, e.origin, out)

    # ------------------------------------------------------------------------------------------ holds

    def _on_hold_armed(self, e: FlowHoldArmed, out: list[cmd.Command]) -> None:
        if e.count < 1:
            raise ValueError("count must be at least 1")
        lane = self._flow(e.flow).lanes[e.direction]
        lane.hold_next += e.count
        self._refresh(lane)

    def _take_held(self, msg_id: int) -> _Held:
        h = self.held.get(msg_id)
        if h is None:
            raise KeyError(f"datagram {msg_id} is not held (already forwarded, dropped, or its flow ended)")
        return h

    def _on_release(self, e: HeldReleaseRequested, out: list[cmd.Command]) -> None:
        h = self._take_held(e.msg_id)
        if e.data is not None and len(e.data) > MAX_PAYLOAD:
            raise ValueError(f"an edited datagram holds at most {MAX_PAYLOAD:,} bytes (the largest UDP payload), "
                             f"got {len(e.data):,}")
        del self.held[e.msg_id]
        self.waiting_bytes -= len(h.data) + WAIT_OVERHEAD
        flow = self.flows[h.conn_id]
        del flow.held[e.msg_id]
        lane = flow.lanes[h.direction]
        data = h.data if e.data is None else bytes(e.data)
        now = e.now
        release, delays = h.release_ns, h.delays
        if now > release:
            delays = (*delays, (DelayReason.HOLD, now - release))
            release = now
        if release <= now and not lane.cond.frozen:
            self._send(flow, lane, data, out)
            out.append(cmd.Publish(MessageUpdated(e.msg_id, h.conn_id, h.direction, _FORWARDED, now, now, e.data,
                                                  delays)))
        else:
            out.append(cmd.Publish(MessageUpdated(e.msg_id, h.conn_id, h.direction, _SCHEDULED, now, release,
                                                  e.data, delays)))
            self._order += 1
            w = _Waiting(release, self._order, h.conn_id, h.direction, e.msg_id, data, delays)
            self.waiting_bytes += len(data) + WAIT_OVERHEAD  # admitted when it was held: kept over the cap
            lane.waiting += 1
            if lane.cond.frozen:
                lane.frozen_list.append(w)
            else:
                heapq.heappush(self._heap, w)
        self._copies(flow, lane, e.msg_id, data, now, release, delays, h.flips, h.copies, out)
        self._next_wakeup(out)

    def _on_drop(self, e: HeldDropRequested, out: list[cmd.Command]) -> None:
        h = self._take_held(e.msg_id)
        del self.held[e.msg_id]
        del self.flows[h.conn_id].held[e.msg_id]
        self.waiting_bytes -= len(h.data) + WAIT_OVERHEAD
        out.append(cmd.Publish(MessageUpdated(e.msg_id, h.conn_id, h.direction, _DROPPED, e.now)))

    def _on_release_all(self, e: HeldReleaseAllRequested, out: list[cmd.Command]) -> None:
        for msg_id in self.held_ids(e.flow):
            self._on_release(HeldReleaseRequested(e.now, msg_id), out)

    # ------------------------------------------------------------------------------------------ time

    def _on_wakeup(self, e: ev.WakeupFired, out: list[cmd.Command]) -> None:
        self._wakeup_at = None
        now = e.now
        heap = self._heap
        flows = self.flows
        while heap and heap[0].release_ns <= now:
            w = heapq.heappop(heap)
            flow = flows.get(w.conn_id)
            if flow is None:
                continue
            lane = flow.lanes[w.direction]
            if lane.cond.frozen:
                lane.frozen_list.append(w)
                continue
            self._release(flow, lane, w, now, out)
        idle = self._idle
        while idle and idle[0][0] <= now:
            _, conn_id = heapq.heappop(idle)
            flow = flows.get(conn_id)
            if flow is None:
                continue
            due = flow.last_ns + self.idle_ns
            if due > now or flow.lanes[0].waiting or flow.lanes[1].waiting or flow.phase == _OPENING:
                heapq.heappush(idle, (max(due, now + 1_000_000), conn_id))
                continue
            self._close(flow, CloseReason.IDLE_TIMEOUT, f"no datagram either way for {self.idle_timeout_s:g} s",
                        now, out)
        self._next_wakeup(out)

    def _release(self, flow: _Flow, lane: _Lane, w: _Waiting, now: int, out: list[cmd.Command]) -> None:
        lane.waiting -= 1
        self.waiting_bytes -= len(w.data) + WAIT_OVERHEAD
        if self.waiting_bytes < self.wait_cap // 2:
            self._wait_warned = False
        self._send(flow, lane, w.data, out)
        # The split stays the one asked for: a timer that fires a little late is the shell's lateness, and the
        # record's release time says when it really left.
        out.append(cmd.Publish(MessageUpdated(w.msg_id, w.conn_id, w.direction, _FORWARDED, now, now, None,
                                              w.delays)))

    def _next_wakeup(self, out: list[cmd.Command]) -> None:
        nxt = self._heap[0].release_ns if self._heap else None
        if self._idle and (nxt is None or self._idle[0][0] < nxt):
            nxt = self._idle[0][0]
        if nxt is not None and nxt != self._wakeup_at:
            self._wakeup_at = nxt
            out.append(cmd.RequestWakeup(nxt))

    # ------------------------------------------------------------------------------------------ conditions

    def _on_default(self, e: DefaultConditionsChanged, out: list[cmd.Command]) -> None:
        self.default = e.conditions

    def _on_conditions(self, e: FlowConditionsChanged, out: list[cmd.Command]) -> None:
        flow = self._flow(e.flow)
        for lane in flow.lanes:
            new = e.conditions.for_direction(lane.direction)
            was_frozen = lane.cond.frozen
            lane.cond = new
            self._refresh(lane)
            if was_frozen and not new.frozen:
                self._thaw(lane, e.now)
        self._wakeup_at = None
        self._on_wakeup(ev.WakeupFired(e.now), out)

    def _thaw(self, lane: _Lane, now: int) -> None:
        """Datagrams kept by a freeze leave in their order, none before now."""
        for w in lane.frozen_list:
            if w.release_ns < now:
                w.delays = (*w.delays, (DelayReason.FREEZE, now - w.release_ns))
                w.release_ns = now
            heapq.heappush(self._heap, w)
        lane.frozen_list.clear()

    def _on_spike(self, e: FlowSpikeStarted, out: list[cmd.Command]) -> None:
        flow = self._flow(e.flow)
        lane = flow.lanes[e.direction]
        lane.cond = replace(lane.cond, spikes=(*lane.cond.spikes, e.spike))
        add = e.spike.extra_ns(e.now)
        if add > 0 and lane.waiting:
            for w in self._heap:
                if w.conn_id == flow.conn_id and w.direction is lane.direction:
                    w.release_ns += add
                    w.delays = (*w.delays, (DelayReason.SPIKE, add))
            heapq.heapify(self._heap)
        self._refresh(lane)
        self._wakeup_at = None
        self._next_wakeup(out)

    def _on_fault(self, e: FlowFaultArmed, out: list[cmd.Command]) -> None:
        lane = self._flow(e.flow).lanes[e.direction]
        lane.cond = lane.cond.with_fault(e.kind, e.count)
        self._refresh(lane)

    def _on_shutdown(self, e: ev.ShutdownRequested, out: list[cmd.Command]) -> None:
        """What waits goes out now (its delay no longer matters), then every flow ends."""
        for flow in list(self.flows.values()):
            for lane in flow.lanes:
                lane.cond = replace(lane.cond, frozen=False)
                self._thaw(lane, e.now)
        heap, self._heap = self._heap, []
        for w in sorted(heap):
            owner = self.flows.get(w.conn_id)
            if owner is not None and owner.phase == _OPEN:
                self._release(owner, owner.lanes[w.direction], w, e.now, out)
        for flow in list(self.flows.values()):
            for lane in flow.lanes:
                lane.waiting = 0
            self._close(flow, CloseReason.SHUTDOWN, "the proxy is shutting down", e.now, out)
        self.waiting_bytes = 0

"""The relay core: one sans-IO state machine per client/server pair.

Role: ``Relay.handle(event) -> list[Command]``. It frames each direction, gives every message a record,
decides when each message is released (fast path: at once), keeps each direction in TCP order, sequences
half-close after what is pending has been sent, and passes a reset on as a reset. Injected bytes enter
through the same path as received bytes. No sockets, no clock, no logging: time arrives in events, and
everything the outside world should see leaves as ``Publish`` commands.

Framing never stalls a game. With ``auto`` a direction is inferred (``proxy.inference``): each read is passed on
as it comes until the inference decides, then the decided framer takes over (a ``FramingInferred`` record says
what and why). Whatever the framing, bytes held for the rest of a frame wait at most ``STALL_NS`` (250 ms; the
clock arrives in ``WakeupFired`` events): then they are forwarded as they are, the user is warned once per
direction (``Notice``), and the direction infers again (``auto``) or, for an explicit framing, passes each read
on raw until one fits the framing exactly again (``ResyncFramer``). Bytes that contradict the framing (the
framer gives up) are handled the same way. After ``LOSS_LIMIT`` such losses a direction stays raw. Time spent
with reading paused by the shell (``ReadingPaused``: backpressure, a connect) does not count.

A ``websocket`` lane's framer (``proxy.websocket``) also hears what becomes of each frame: every write goes
through it (so such a lane never takes the fast path), and drops and edits are told to it, so that a compressed
direction stays readable for the receiver (the rest of it goes uncompressed once a compressed message was dropped,
edited or duplicated). Every other framing is untouched.

Must not import: Qt, ``inspector``, asyncio, sockets, ``time``.
Thread: engine loop thread; a relay is owned by one connection handler.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import PASSTHROUGH, Conditions, DirectionConditions
from proxy.framing import Framer, FramingSpec, RawFramer, ResyncFramer, make_framer
from proxy.inference import INFER_BYTES, AutoFramer, FramingMemory
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    FramingInferred,
    HalfClosed,
    Ids,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Side,
)
from proxy.model import UpstreamConnected as UpstreamConnectedRecord
from proxy.rules import Rule, failure_text, first_match, unreported_failures
from proxy.scheduler import DirectionScheduler, Scheduled
from proxy.websocket import WebSocketFramer

STALL_NS = 250_000_000
"""The longest a byte may wait in a framer for the rest of its frame (while its side is being read)."""
STALL_CONFIRM_NS = 1_000_000
"""After the bound, one more look: the stall is declared at a second wake-up this much later, so the sockets are
polled in between (uvloop runs due timers before it reads, and a busy loop may not have read bytes that came)."""
LOSS_LIMIT = 3
"""Stalls or contradictions in one direction after which it stays raw for the rest of the connection."""


class Phase(enum.Enum):
    CONNECTING = "connecting"  # client accepted, upstream not yet open
    RELAYING = "relaying"
    CLOSED = "closed"


# Members bound once: reaching one through its enum class costs ten times a global (enum's metaclass hook), and
# the fast path below runs for every message.
_RELAYING, _CLOSED, _LIVE = Phase.RELAYING, Phase.CLOSED, Origin.LIVE


@dataclass(slots=True)
class _Pending:
    msg_id: int
    seq: int
    data: bytes
    arrival_ns: int
    release_ns: int
    origin: Origin
    delays: tuple[tuple[DelayReason, int], ...]
    held: bool = False


class Shared:
    """Engine-wide state every relay reads: rules, global "hold next" counters, and what framing inference found
    per target (single-threaded)."""

    __slots__ = ("active", "framings", "hold_next", "intercept", "rules")

    def __init__(self) -> None:
        self.rules: tuple[Rule, ...] = ()
        self.hold_next = [0, 0]  # per Direction
        self.intercept = False
        """Addons that modify messages are loaded: every message not held for the user is held for them
        (``Intercept``). Set by ``proxy.addonhost`` only; False costs the fast path nothing (it is in ``active``)."""
        self.active = False
        self.framings = FramingMemory()

    def update(self) -> None:
        """Recompute the flag the fast path checks, after changing rules, counters or ``intercept``."""
        self.active = bool(self.rules) or any(self.hold_next) or self.intercept


@dataclass(slots=True)
class _Lane:
    """One direction of the connection: its framer, conditions, ordered queue, and half-close state."""

    direction: Direction
    framer: Framer
    scheduler: DirectionScheduler
    cond: DirectionConditions
    queue: deque[_Pending] = field(default_factory=deque)
    fast: bool = True  # no conditions, faults or holds armed on this lane: forward at once
    hold_next: int = 0
    warned_raw_fault: bool = False
    seq: int = 0
    source_eof: bool = False  # the source side sent FIN
    eof_sent: bool = False  # we passed the FIN on to the destination
    queued_bytes: int = 0
    bytes_out: int = 0
    messages_out: int = 0
    warned: bool = False  # the framing warning (a stall or a contradiction) was given on this lane
    framing: str = "raw"
    """The framing in force: the explicit one, the one inferred, or ``auto`` while inference watches."""
    auto: bool = False  # this direction's framing is ``auto``: a lost framing is inferred again
    watch: bool = False  # the framer may hold bytes, or is inferring or resyncing: look after reads
    special: bool = False  # inferring (AutoFramer) or resyncing (ResyncFramer): look after every read
    received: int = 0  # live bytes received in this direction: the stream offset
    since_seq: int = 0  # the first message of the current inference
    stall_at: int | None = None  # when the oldest byte waiting in the framer has waited STALL_NS
    stall_confirm: bool = False  # stall_at is the second look (STALL_CONFIRM_NS after the bound)
    paused: bool = False  # the shell is not reading this direction's source
    losses: int = 0  # framings lost on this lane (stalls, contradictions)
    destination: Side = Side.SERVER  # direction.destination, kept here for the fast path
    wire: WebSocketFramer | None = None
    """The lane's framer when it is ``websocket``: told what becomes of each frame, it keeps a compressed direction
    right when a message is dropped, edited or duplicated (``proxy.websocket``). Such a lane is never fast."""

    def __post_init__(self) -> None:
        self.destination = self.direction.destination


def _segment(frames: list[bytes], bandwidth_bps: float) -> list[bytes]:
    """Split raw reads into the pieces a slow link would deliver (about 10 ms of link time each, at least one
    1460-byte segment): under ``raw`` framing a read has no meaning of its own, and a 1 MiB read released whole
    after 4 s at 64 KB/s would make the rate a staircase instead of a slope."""
    size = max(1460, min(65536, int(bandwidth_bps / 100)))
    out: list[bytes] = []
    for f in frames:
        if len(f) <= size:
            out.append(f)
        else:
            out.extend(f[i : i + size] for i in range(0, len(f), size))
    return out


_UNSEEDED = random.Random()
"""The randomness (jitter, loss, duplication) of connections when no ``--seed`` asks for reproducible runs."""


class Relay:
    """State machine for one relayed connection. Feed it events; execute the commands it returns, in order."""

    def __init__(
        self,
        conn_id: int,
        client_addr: tuple[str, int],
        target_addr: tuple[str, int],
        framing: FramingSpec,
        ids: Ids,
        replay_of: int | None = None,
        conditions: Conditions = PASSTHROUGH,
        shared: Shared | None = None,
        seed: int | str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.client_addr = client_addr
        self.target_addr = target_addr
        self.ids = ids
        self.replay_of = replay_of
        self.phase = Phase.CONNECTING
        self.shared = shared or Shared()
        self.max_frame = framing.max_frame
        # Seeded per connection and direction, so a run with --seed can be reproduced exactly.
        # Unseeded, every lane shares one generator: seeding one from the OS costs 11 µs, twice per connection.
        self.lanes = tuple(
            _Lane(d, RawFramer(), DirectionScheduler(random.Random(f"{seed}:{conn_id}:{d.label}")
                                                     if seed is not None else _UNSEEDED),
                  conditions.for_direction(d))
            for d in (Direction.C2S, Direction.S2C))
        for lane in self.lanes:
            name = framing.for_direction(lane.direction)
            if name == "auto":
                lane.auto = True
                hint = self.shared.framings.hint(target_addr, lane.direction)
                self._set_framer(lane, AutoFramer(self.max_frame, hint), "auto")
            else:
                self._set_framer(lane, framing.make(lane.direction), name)
            self._refresh_fast(lane)
        self._wakeup_at: int | None = None
        self._rule_failures: list[tuple[Rule, Exception]] = []
        """Rules whose match raised on the message being admitted (filled by first_match)."""
        self._rules_warned: list[Rule] = []
        """Rules already reported as failing on this connection (by identity): one warning each, never a flood."""
        self._dispatch: dict[type[ev.Event], Callable[[ev.Event, list[cmd.Command]], None]] = {
            ev.ClientAccepted: self._on_accepted,  # type: ignore[dict-item]
            ev.UpstreamOpened: self._on_upstream_opened,  # type: ignore[dict-item]
            ev.UpstreamFailed: self._on_upstream_failed,  # type: ignore[dict-item]
            ev.DataReceived: self._on_data,  # type: ignore[dict-item]
            ev.EofReceived: self._on_eof,  # type: ignore[dict-item]
            ev.ConnectionLost: self._on_lost,  # type: ignore[dict-item]
            ev.WakeupFired: self._on_wakeup,  # type: ignore[dict-item]
            ev.DataInjected: self._on_injected,  # type: ignore[dict-item]
            ev.CloseRequested: self._on_close_requested,  # type: ignore[dict-item]
            ev.ShutdownRequested: self._on_shutdown,  # type: ignore[dict-item]
            ev.ConditionsChanged: self._on_conditions,  # type: ignore[dict-item]
            ev.SpikeStarted: self._on_spike,  # type: ignore[dict-item]
            ev.FaultArmed: self._on_fault_armed,  # type: ignore[dict-item]
            ev.HoldArmed: self._on_hold_armed,  # type: ignore[dict-item]
            ev.ReleaseRequested: self._on_release,  # type: ignore[dict-item]
            ev.DropRequested: self._on_drop,  # type: ignore[dict-item]
            ev.ReleaseAllRequested: self._on_release_all,  # type: ignore[dict-item]
            ev.ReadingPaused: self._on_reading_paused,  # type: ignore[dict-item]
            ev.FramingRequested: self._on_framing_requested,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------------------------------ public

    def handle(self, event: ev.Event) -> list[cmd.Command]:
        out: list[cmd.Command] = []
        if self.phase is _CLOSED:
            return out
        self._dispatch[type(event)](event, out)
        return out

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def conditions(self) -> Conditions:
        return Conditions(self.lanes[0].cond, self.lanes[1].cond)

    def held(self) -> list[int]:
        """Ids of the messages held for the user, in stream order per direction."""
        return [p.msg_id for lane in self.lanes for p in lane.queue if p.held]

    def pending(self, direction: Direction) -> int:
        """Bytes waiting in the proxy for ``direction`` (queued messages plus an incomplete frame)."""
        lane = self.lanes[direction]
        return lane.queued_bytes + lane.framer.buffered

    # ------------------------------------------------------------------------------------------ events

    def _on_accepted(self, e: ev.ClientAccepted, out: list[cmd.Command]) -> None:
        out.append(cmd.Publish(ConnectionOpened(self.conn_id, self.client_addr, self.target_addr, e.now,
                                                self.replay_of)))
        out.append(cmd.OpenUpstream())

    def _on_upstream_opened(self, e: ev.UpstreamOpened, out: list[cmd.Command]) -> None:
        if self.phase is not Phase.CONNECTING:
            return
        self.phase = Phase.RELAYING
        out.append(cmd.Publish(UpstreamConnectedRecord(self.conn_id, e.server_addr, e.now)))
        self._release_due(self.lanes[Direction.C2S], e.now, out)
        self._after_release(e.now, out)

    def _on_upstream_failed(self, e: ev.UpstreamFailed, out: list[cmd.Command]) -> None:
        if e.timed_out:
            reason = CloseReason.UPSTREAM_TIMEOUT
        elif e.refused:
            reason = CloseReason.UPSTREAM_REFUSED
        else:
            reason = CloseReason.UPSTREAM_ERROR
        host, port = self.target_addr
        text = f"connection #{self.conn_id}: cannot reach the server at {host}:{port} ({e.detail})"
        out.append(cmd.Publish(Notice("error", text, e.now, self.conn_id)))
        # The client sees a reset, as close as a proxy can get to the "connection refused" it would have seen.
        self._finish(reason, e.detail, e.now, out, reset=True)

    def receive_data(self, side: Side, data: bytes, now: int) -> list[cmd.Command]:
        """``handle(DataReceived(now, side, data))`` without building the event: the shell's entry for every read
        (as h11's ``receive_data``), the one call per message that no other event has."""
        out: list[cmd.Command] = []
        if self.phase is not _CLOSED:
            self._receive(self.lanes[side], data, now, out)  # Side.CLIENT feeds the c2s lane: both are 0
        return out

    def _on_data(self, e: ev.DataReceived, out: list[cmd.Command]) -> None:
        self._receive(self.lanes[e.side], e.data, e.now, out)

    def _receive(self, lane: _Lane, data: bytes, now: int, out: list[cmd.Command]) -> None:
        if lane.source_eof:
            return  # bytes after FIN cannot happen on TCP; ignore defensively
        framer = lane.framer
        lane.received += len(data)
        frames = framer.feed(data)
        # Raw lanes never look further; a decided framer only checks it holds nothing and gave nothing up.
        if lane.watch and (lane.special or lane.stall_at is not None or framer.buffered
                           or framer.fallback is not None):
            self._after_framing(lane, framer, frames, now, out)
            return
        bandwidth = lane.cond.bandwidth_bps
        if bandwidth and framer.name == "raw":
            frames = _segment(frames, bandwidth)
        for frame in frames:
            self._admit(lane, frame, now, _LIVE, out)
        c2s, s2c = self.lanes
        if frames and (c2s.queue or s2c.queue or c2s.source_eof or s2c.source_eof):  # else nothing to release
            self._after_release(now, out)

    def _on_injected(self, e: ev.DataInjected, out: list[cmd.Command]) -> None:
        lane = self.lanes[e.direction]
        if lane.source_eof or not e.data:
            return
        # Injected bytes are one whole message: they skip the lane's framer, so a live frame half-received in it is
        # neither split nor joined with them (it has not been forwarded yet, so nothing interleaves on the wire).
        # Everything after framing (rules, conditions, holds, records) is the receive path's.
        self._admit(lane, e.data, e.now, e.origin, out)
        self._after_release(e.now, out)

    def _on_eof(self, e: ev.EofReceived, out: list[cmd.Command]) -> None:
        lane = self.lanes[Direction.from_side(e.side)]
        if lane.source_eof:
            return
        rest = lane.framer.flush()
        lane.stall_at = None
        lane.stall_confirm = False
        if rest:
            out.append(cmd.Publish(Notice(
                "warning",
                f"connection #{self.conn_id} {lane.direction.label}: stream ended inside a "
                f"{lane.framer.name} frame; the last {len(rest)} bytes are passed on as they are",
                e.now, self.conn_id, lane.direction)))
            self._admit(lane, rest, e.now, Origin.LIVE, out)
        lane.source_eof = True
        self._after_release(e.now, out)

    def _on_lost(self, e: ev.ConnectionLost, out: list[cmd.Command]) -> None:
        if e.side is Side.CLIENT:
            reason = CloseReason.CLIENT_RESET if e.reset else CloseReason.ERROR
        else:
            reason = CloseReason.SERVER_RESET if e.reset else CloseReason.ERROR
        self._finish(reason, e.detail, e.now, out, reset=True)

    def _on_wakeup(self, e: ev.WakeupFired, out: list[cmd.Command]) -> None:
        self._wakeup_at = None
        for lane in self.lanes:
            if lane.stall_at is not None and lane.stall_at <= e.now:
                if lane.stall_confirm:
                    self._stall(lane, e.now, out)
                else:
                    lane.stall_confirm = True  # look once more after the sockets were read (_next_wakeup asks)
                    lane.stall_at = e.now + STALL_CONFIRM_NS
        self._after_release(e.now, out)
        self._next_wakeup(out)

    def _on_close_requested(self, e: ev.CloseRequested, out: list[cmd.Command]) -> None:
        reason = CloseReason.PROXY_RESET if e.reset else CloseReason.PROXY_CLOSED
        self._finish(reason, e.detail, e.now, out, reset=e.reset)

    def _on_shutdown(self, e: ev.ShutdownRequested, out: list[cmd.Command]) -> None:
        # Pending messages go out now (their delay no longer matters), then both sides get a clean close.
        if self.phase is Phase.RELAYING:
            for lane in self.lanes:
                lane.cond = replace(lane.cond, frozen=False)
                lane.stall_at = None
                lane.stall_confirm = False
                rest = lane.framer.flush()
                if rest:
                    self._admit(lane, rest, e.now, Origin.LIVE, out)
                for p in lane.queue:
                    p.release_ns = min(p.release_ns, e.now)
                self._release_due(lane, e.now, out)
        self._finish(CloseReason.SHUTDOWN, "the proxy is shutting down", e.now, out, reset=False)

    # ------------------------------------------------------------------------------------------ framing

    def _set_framer(self, lane: _Lane, framer: Framer, framing: str) -> None:
        lane.framer = framer
        lane.framing = framing
        lane.special = type(framer) is AutoFramer or type(framer) is ResyncFramer
        lane.watch = lane.special or framer.can_hold
        lane.wire = framer if type(framer) is WebSocketFramer else None
        self._refresh_fast(lane)

    def _after_framing(self, lane: _Lane, framer: Framer, frames: list[bytes], now: int,
                       out: list[cmd.Command]) -> None:
        """The read's frames, on a lane that is inferring, resyncing, holding bytes or whose framer gave up."""
        lost = framer.fallback  # the bytes contradict the framing: the framer passed them on raw and gave up
        if lost is not None:
            self._warn_framing(lane, lost, now, out)
        bandwidth = lane.cond.bandwidth_bps
        if bandwidth and (framer.name == "raw" or framer.name == "auto"):
            frames = _segment(frames, bandwidth)
        for frame in frames:
            self._admit(lane, frame, now, Origin.LIVE, out)
        if lost is not None:
            self._framing_lost(lane, now, out, "contradiction", lost)
        elif type(framer) is AutoFramer:
            if framer.decision is not None and framer.inner is not None:
                self._inferred(lane, framer, now, out)
            elif framer.inference is not None:
                evidence = framer.inference.best_evidence()
                if evidence is not None:
                    self.shared.framings.observe(self.target_addr, lane.direction, self.conn_id, *evidence)
        elif type(framer) is ResyncFramer and framer.inner is not None:
            target = framer.target
            self._set_framer(lane, framer.inner, target)
            self._publish_framing(lane, target, f"a read fits {target} exactly again: framed with it from the "
                                  "next message on", now, "resync", out)
        self._check_stall(lane, bool(frames), now)
        if frames:
            self._after_release(now, out)
        if lane.stall_at is not None:
            self._want_wakeup(lane.stall_at, out)

    def _inferred(self, lane: _Lane, auto: AutoFramer, now: int, out: list[cmd.Command]) -> None:
        d = auto.decision
        assert d is not None and auto.inner is not None
        self._set_framer(lane, auto.inner, d.framing)
        self.shared.framings.confirm(self.target_addr, lane.direction, d.framing)
        self._publish_framing(lane, d.framing, d.reason, now, "remembered" if d.remembered else "inferred", out,
                              messages=d.messages)

    def _publish_framing(self, lane: _Lane, framing: str, reason: str, now: int, cause: str,
                         out: list[cmd.Command], messages: int = 0) -> None:
        out.append(cmd.Publish(FramingInferred(self.conn_id, lane.direction, framing, reason, lane.seq,
                                               lane.received, now, lane.since_seq, messages, cause)))

    def _next_step(self, lane: _Lane) -> str:
        """What happens to a direction whose framing is lost now (the same words in the notice and the record)."""
        if lane.losses + 1 >= LOSS_LIMIT:
            return f"after {LOSS_LIMIT} framings that did not hold, this direction is passed on raw from now on"
        if lane.auto:
            return "sockscope infers the framing again from the next read"
        return f"this direction is passed on raw until a read fits {lane.framing} exactly again"

    def _warn_framing(self, lane: _Lane, what: str, now: int, out: list[cmd.Command]) -> None:
        """Once per direction of a connection: its framing did not hold (a stall or a contradiction)."""
        if lane.warned:
            return
        lane.warned = True
        out.append(cmd.Publish(Notice(
            "warning", f"connection #{self.conn_id} {lane.direction.label}: {what}; {self._next_step(lane)} "
            "(not repeated on this connection)", now, self.conn_id, lane.direction)))

    def _framing_lost(self, lane: _Lane, now: int, out: list[cmd.Command], cause: str, what: str,
                      rest: int = 0) -> None:
        """Everything received so far has been forwarded; the lane goes on inferring, resyncing, or raw. ``rest``:
        bytes still to come of the frame that stalled, when its framing knew: they go on first, as they come, so
        that a frame that was only slow does not shift the framing after it."""
        step = self._next_step(lane)
        lane.losses += 1
        failed = lane.framing
        if lane.auto:
            self.shared.framings.forget(self.target_addr, lane.direction, failed)
        if lane.losses >= LOSS_LIMIT:
            self._set_framer(lane, RawFramer(), "raw")
            cause = "limit"
        elif lane.auto:
            # a declared rest larger than inference's window is more likely a wrong length than a slow frame
            self._set_framer(lane, AutoFramer(self.max_frame, skip=rest if rest <= INFER_BYTES else 0), "auto")
        else:
            self._set_framer(lane, ResyncFramer(failed, self.max_frame, rest), "raw")
        lane.stall_at = None
        lane.stall_confirm = False
        lane.since_seq = lane.seq
        self._publish_framing(lane, lane.framing, f"{what}; {step}", now, cause, out)

    def _check_stall(self, lane: _Lane, progressed: bool, now: int) -> None:
        """Arm (or keep, or clear) the stall bound for the bytes waiting in the lane's framer. ``progressed``: the
        framer emitted frames, so what it still holds arrived with this read."""
        if not lane.framer.buffered:
            lane.stall_at = None
            lane.stall_confirm = False
        elif not lane.paused and (lane.stall_at is None or progressed):
            lane.stall_at = now + STALL_NS
            lane.stall_confirm = False

    def _want_wakeup(self, at: int, out: list[cmd.Command]) -> None:
        """Be woken at ``at`` unless an earlier wake-up is already asked for (whose handling asks again)."""
        if self._wakeup_at is None or at < self._wakeup_at:
            self._wakeup_at = at
            out.append(cmd.RequestWakeup(at))

    def _stall(self, lane: _Lane, now: int, out: list[cmd.Command]) -> None:
        """The oldest waiting byte has waited ``STALL_NS``: forward what waits as it is; the framing is lost."""
        lane.stall_at = None
        lane.stall_confirm = False
        if self.phase is not Phase.RELAYING or lane.paused:
            self._check_stall(lane, True, now)  # not the framing's fault: the wait starts again
            return
        rest = lane.framer.remaining()
        waiting = lane.framer.flush()
        if not waiting:
            return
        what = (f"{len(waiting)} bytes waited {STALL_NS // 1_000_000} ms for the rest of a {lane.framing} frame, "
                "so they were forwarded as they are")
        self._warn_framing(lane, what, now, out)
        self._admit(lane, waiting, now, Origin.LIVE, out)
        self._framing_lost(lane, now, out, "stall", what, rest or 0)

    def _on_reading_paused(self, e: ev.ReadingPaused, out: list[cmd.Command]) -> None:
        lane = self.lanes[Direction.from_side(e.side)]
        lane.paused = e.paused
        if e.paused:
            lane.stall_at = None
            lane.stall_confirm = False
        else:
            self._check_stall(lane, True, e.now)
            if lane.stall_at is not None:
                self._want_wakeup(lane.stall_at, out)

    def _on_framing_requested(self, e: ev.FramingRequested, out: list[cmd.Command]) -> None:
        """The user's framing for a live direction, from the next read on (``auto``: infer again, no hint)."""
        lane = self.lanes[e.direction]
        if lane.source_eof:
            return
        rest = lane.framer.flush()
        if rest:
            self._admit(lane, rest, e.now, Origin.LIVE, out)
        name = e.framing
        lane.auto = name == "auto"
        lane.losses = 0
        lane.stall_at = None
        lane.stall_confirm = False
        lane.since_seq = lane.seq
        if lane.auto:
            self._set_framer(lane, AutoFramer(self.max_frame), "auto")
        else:
            self._set_framer(lane, make_framer(name, self.max_frame), name)
            self.shared.framings.confirm(self.target_addr, lane.direction, name)  # a hint for later connections
        self._publish_framing(lane, name, "chosen by the user, from the next read on", e.now, "user", out)
        self._after_release(e.now, out)

    def _next_wakeup(self, out: list[cmd.Command]) -> None:
        """Ask for the earliest wake-up anything waits for: a queued release or a stall bound."""
        nxt = min((lane.queue[0].release_ns for lane in self.lanes
                   if lane.queue and not lane.queue[0].held and not lane.cond.frozen), default=None)
        for lane in self.lanes:
            if lane.stall_at is not None and (nxt is None or lane.stall_at < nxt):
                nxt = lane.stall_at
        if nxt is not None and nxt != self._wakeup_at:
            self._wakeup_at = nxt
            out.append(cmd.RequestWakeup(nxt))

    # ------------------------------------------------------------------------------------------ internals

    def _refresh_fast(self, lane: _Lane) -> None:
        lane.fast = lane.cond.is_passthrough and lane.hold_next == 0 and lane.wire is None

    def _admit(self, lane: _Lane, data: bytes, now: int, origin: Origin, out: list[cmd.Command]) -> None:
        """A framed message enters its lane: record it, then forward it at once or queue it."""
        seq = lane.seq
        lane.seq = seq + 1
        ids = self.ids
        msg_id = ids.next_msg  # Ids.msg(), inlined: this runs for every message
        ids.next_msg = msg_id + 1
        if (lane.fast and not self.shared.active and not lane.queue and self.phase is _RELAYING
                and lane.scheduler.is_idle(now)):
            # Fast path: nothing ahead of it, nothing shaping this lane: one write, one record. The write goes
            # first: the game's bytes must not wait while subscribers (a recording, a window) take the record.
            out.append(cmd.SendData(lane.destination, data))
            out.append(cmd.Publish(Message(msg_id, self.conn_id, lane.direction, seq, data, now, now, origin)))
            lane.bytes_out += len(data)
            lane.messages_out += 1
            return
        self._admit_shaped(lane, msg_id, seq, data, now, origin, out)

    def _admit_shaped(self, lane: _Lane, msg_id: int, seq: int, data: bytes, now: int, origin: Origin,
                      out: list[cmd.Command]) -> None:
        d = lane.direction
        rule: Rule | None = None
        if self.shared.rules and origin is not Origin.DUPLICATE:  # a copy never meets the rule that made it
            rule = first_match(self.shared.rules,
                               Message(msg_id, self.conn_id, d, seq, data, now, None, origin, MessageState.SCHEDULED),
                               self._rule_failures_append, lane.scheduler.rng)
            if self._rule_failures:
                self._warn_rule_failures(lane, msg_id, now, out)
        fault: str | None = None
        if rule is not None and rule.action in ("drop", "duplicate"):
            fault = rule.action
        elif rule is None and origin is not Origin.DUPLICATE:
            fault, lane.cond = lane.scheduler.decide_fault(lane.cond)
            if fault is not None:
                self._refresh_fast(lane)
        if fault is not None:
            self._warn_raw_fault(lane, fault, now, out)
        if fault == "drop":
            out.append(cmd.Publish(Message(msg_id, self.conn_id, d, seq, data, now, None, origin,
                                           MessageState.DROPPED)))
            if lane.wire is not None:
                lane.wire.dropped(data)
                self._wire_notes(lane, lane.wire, now, out)
            return
        if rule is not None and rule.action in ("close", "reset"):
            out.append(cmd.Publish(Message(msg_id, self.conn_id, d, seq, data, now, None, origin,
                                           MessageState.DISCARDED)))
            label = rule.name or rule.action
            self._finish(CloseReason.PROXY_RESET if rule.action == "reset" else CloseReason.PROXY_CLOSED,
                         f"rule {label!r} matched message {msg_id}", now, out, reset=rule.action == "reset")
            return
        sched = lane.scheduler.schedule(now, len(data), lane.cond)
        release_ns, delays = sched.release_ns, sched.delays
        if rule is not None and rule.action == "delay" and rule.delay_ms > 0:
            extra = round(rule.delay_ms * 1e6)
            release_ns += extra
            delays = (*delays, (DelayReason.RULE, extra))
        held = intercept = False
        if rule is not None and rule.action == "hold":
            held = True
        elif lane.hold_next > 0:
            lane.hold_next -= 1
            self._refresh_fast(lane)
            held = True
        elif self.shared.hold_next[d] > 0:
            self.shared.hold_next[d] -= 1
            self.shared.update()
            held = True
        elif self.shared.intercept and origin is not Origin.DUPLICATE:
            # held for the addons (proxy.addonhost): their decision releases, edits or drops it, within a bound
            held = intercept = True
        state = MessageState.HELD if held else MessageState.SCHEDULED
        if (not held and not lane.queue and not lane.cond.frozen and release_ns <= now
                and self.phase is Phase.RELAYING):
            self._write(lane, data, out, now)  # before the record, as on the fast path
            out.append(cmd.Publish(Message(msg_id, self.conn_id, d, seq, data, now, now, origin,
                                           MessageState.FORWARDED, delays)))
        else:
            record = Message(msg_id, self.conn_id, d, seq, data, now, None if held else release_ns, origin, state,
                             delays)
            out.append(cmd.Publish(record))
            if intercept:
                out.append(cmd.Intercept(record))
            lane.queue.append(_Pending(msg_id, seq, data, now, release_ns, origin, delays, held))
            lane.queued_bytes += len(data)
        if fault == "duplicate":
            dup_seq = lane.seq
            lane.seq = dup_seq + 1
            self._admit_shaped(lane, self.ids.msg(), dup_seq, data, now, Origin.DUPLICATE, out)

    def _rule_failures_append(self, rule: Rule, exc: Exception) -> None:
        self._rule_failures.append((rule, exc))

    def _warn_rule_failures(self, lane: _Lane, msg_id: int, now: int, out: list[cmd.Command]) -> None:
        """A rule whose match raised did not match (first_match went on); say why, once per rule and connection."""
        for label, exc in unreported_failures(self.shared.rules, self._rules_warned, self._rule_failures):
            out.append(cmd.Publish(Notice(
                "warning",
                f"connection #{self.conn_id} {lane.direction.label}: rule {label!r} did not apply to message "
                f"{msg_id}: {failure_text(exc)} (not reported again on this connection)",
                now, self.conn_id, lane.direction)))
        self._rule_failures.clear()

    def _warn_raw_fault(self, lane: _Lane, fault: str, now: int, out: list[cmd.Command]) -> None:
        if (lane.framer.name != "raw" and lane.framer.name != "auto") or lane.warned_raw_fault:
            return
        lane.warned_raw_fault = True
        out.append(cmd.Publish(Notice(
            "warning",
            f"connection #{self.conn_id} {lane.direction.label}: {fault} under raw framing works on whole reads, "
            "which are not your program's messages; the stream's own framing may break (choose a --framing)",
            now, self.conn_id, lane.direction)))

    def _write(self, lane: _Lane, data: bytes, out: list[cmd.Command], now: int) -> None:
        wire = lane.wire
        if wire is not None:
            data = wire.outgoing(data)
            if wire.notes:
                self._wire_notes(lane, wire, now, out)
        out.append(cmd.SendData(lane.direction.destination, data))
        lane.bytes_out += len(data)
        lane.messages_out += 1

    def _wire_notes(self, lane: _Lane, wire: WebSocketFramer, now: int, out: list[cmd.Command]) -> None:
        for note in wire.take_notes():
            out.append(cmd.Publish(Notice("warning", f"connection #{self.conn_id} {lane.direction.label}: {note}",
                                          now, self.conn_id, lane.direction)))

    def _release_due(self, lane: _Lane, now: int, out: list[cmd.Command]) -> None:
        if self.phase is not Phase.RELAYING or lane.cond.frozen:
            return
        q = lane.queue
        while q and not q[0].held and q[0].release_ns <= now:
            p = q.popleft()
            lane.queued_bytes -= len(p.data)
            delays = p.delays
            if now > p.release_ns:  # late: it waited behind something (a connect, a hold, a freeze)
                delays = (*delays, (DelayReason.QUEUE, now - p.release_ns))
            self._write(lane, p.data, out, now)  # before the record, as on the fast path
            out.append(cmd.Publish(MessageUpdated(p.msg_id, self.conn_id, lane.direction,
                                                  MessageState.FORWARDED, now, now, None, delays)))

    def _after_release(self, now: int, out: list[cmd.Command]) -> None:
        """Release what is due, pass on FINs whose lanes have drained, and ask for the next wake-up."""
        if self.phase is not _RELAYING:
            return
        c2s, s2c = self.lanes
        if not (c2s.queue or s2c.queue or c2s.source_eof or s2c.source_eof):
            return  # the fast path's case: nothing waiting, nothing to close
        for lane in self.lanes:
            self._release_due(lane, now, out)
            if lane.source_eof and not lane.eof_sent and not lane.queue:
                lane.eof_sent = True
                out.append(cmd.HalfClose(lane.direction.destination))
                out.append(cmd.Publish(HalfClosed(self.conn_id, lane.direction.source, now)))
        if self.lanes[0].eof_sent and self.lanes[1].eof_sent:
            self._finish(CloseReason.CLOSED, "both sides closed", now, out, reset=False)
            return
        self._next_wakeup(out)

    # ------------------------------------------------------------------------------------ shaping events

    def _on_conditions(self, e: ev.ConditionsChanged, out: list[cmd.Command]) -> None:
        for lane in self.lanes:
            new = e.conditions.for_direction(lane.direction)
            was_frozen = lane.cond.frozen
            lane.cond = new
            if was_frozen and not new.frozen and lane.queue:
                self._thaw(lane, e.now)
            self._refresh_fast(lane)
        self._wakeup_at = None  # timing may have changed: ask again
        self._after_release(e.now, out)

    def _thaw(self, lane: _Lane, now: int) -> None:
        waiting = [p for p in lane.queue if not p.held]
        thawed = lane.scheduler.thaw(now, [Scheduled(p.release_ns, p.delays) for p in waiting])
        for p, s in zip(waiting, thawed, strict=True):
            p.release_ns, p.delays = s.release_ns, s.delays

    def _on_spike(self, e: ev.SpikeStarted, out: list[cmd.Command]) -> None:
        lane = self.lanes[e.direction]
        lane.cond = replace(lane.cond, spikes=(*lane.cond.spikes, e.spike))
        add = e.spike.extra_ns(e.now)
        if add > 0:
            for p in lane.queue:  # what has not been released yet waits too
                p.release_ns += add
                p.delays = (*p.delays, (DelayReason.SPIKE, add))
        self._refresh_fast(lane)
        self._wakeup_at = None
        self._after_release(e.now, out)

    def _on_fault_armed(self, e: ev.FaultArmed, out: list[cmd.Command]) -> None:
        lane = self.lanes[e.direction]
        lane.cond = lane.cond.with_fault(e.kind, e.count)
        self._refresh_fast(lane)

    def _on_hold_armed(self, e: ev.HoldArmed, out: list[cmd.Command]) -> None:
        lane = self.lanes[e.direction]
        lane.hold_next += e.count
        self._refresh_fast(lane)

    def _find(self, msg_id: int) -> tuple[_Lane, _Pending]:
        for lane in self.lanes:
            for p in lane.queue:
                if p.msg_id == msg_id:
                    return lane, p
        raise KeyError(f"message {msg_id} is not waiting in connection #{self.conn_id}")

    def _on_release(self, e: ev.ReleaseRequested, out: list[cmd.Command]) -> None:
        lane, p = self._find(e.msg_id)
        if not p.held and e.data is None:
            return
        p.held = False
        if e.data is not None:
            if lane.wire is not None:
                lane.wire.replaced(p.data, e.data)
                self._wire_notes(lane, lane.wire, e.now, out)
            lane.queued_bytes += len(e.data) - len(p.data)
            p.data = e.data
            p.origin = Origin.EDITED
        if e.now > p.release_ns:
            p.delays = (*p.delays, (DelayReason.HOLD, e.now - p.release_ns))
            p.release_ns = e.now
        out.append(cmd.Publish(MessageUpdated(p.msg_id, self.conn_id, lane.direction, MessageState.SCHEDULED,
                                              e.now, p.release_ns, e.data, p.delays)))
        self._wakeup_at = None
        self._after_release(e.now, out)

    def _on_drop(self, e: ev.DropRequested, out: list[cmd.Command]) -> None:
        lane, p = self._find(e.msg_id)
        lane.queue.remove(p)
        lane.queued_bytes -= len(p.data)
        if lane.wire is not None:
            lane.wire.dropped(p.data)
            self._wire_notes(lane, lane.wire, e.now, out)
        out.append(cmd.Publish(MessageUpdated(p.msg_id, self.conn_id, lane.direction, MessageState.DROPPED, e.now)))
        self._wakeup_at = None
        self._after_release(e.now, out)

    def _on_release_all(self, e: ev.ReleaseAllRequested, out: list[cmd.Command]) -> None:
        for msg_id in self.held():
            self._on_release(ev.ReleaseRequested(e.now, msg_id), out)

    def _finish(self, reason: CloseReason, detail: str, now: int, out: list[cmd.Command], *, reset: bool) -> None:
        discarded = 0
        for lane in self.lanes:
            for p in lane.queue:
                discarded += 1
                out.append(cmd.Publish(MessageUpdated(p.msg_id, self.conn_id, lane.direction,
                                                      MessageState.DISCARDED, now)))
            lane.queue.clear()
            lane.queued_bytes = 0
        self.phase = Phase.CLOSED
        out.append(cmd.CloseConnection(reset=reset))
        c2s, s2c = self.lanes
        out.append(cmd.Publish(ConnectionClosed(self.conn_id, reason, detail, now, c2s.bytes_out, s2c.bytes_out,
                                                c2s.messages_out, s2c.messages_out, discarded)))

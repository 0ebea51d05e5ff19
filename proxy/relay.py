"""The relay core: one sans-IO state machine per client/server pair.

Role: ``Relay.handle(event) -> list[Command]``. It frames each direction, gives every message a record,
decides when each message is released (fast path: at once), keeps each direction in TCP order, sequences
half-close after what is pending has been sent, and passes a reset on as a reset. Injected bytes enter
through the same path as received bytes. No sockets, no clock, no logging: time arrives in events, and
everything the outside world should see leaves as ``Publish`` commands.

Must not import: Qt, ``inspector``, asyncio, sockets, ``time``.
Thread: engine loop thread; a relay is owned by one connection handler.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy import commands as cmd
from proxy import events as ev
from proxy.framing import Framer, FramingSpec
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
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


class Phase(enum.Enum):
    CONNECTING = "connecting"  # client accepted, upstream not yet open
    RELAYING = "relaying"
    CLOSED = "closed"


@dataclass(slots=True)
class _Pending:
    msg_id: int
    seq: int
    data: bytes
    arrival_ns: int
    release_ns: int
    origin: Origin
    delays: tuple[tuple[DelayReason, int], ...]


@dataclass(slots=True)
class _Lane:
    """One direction of the connection: its framer, its ordered queue, and its half-close state."""

    direction: Direction
    framer: Framer
    queue: deque[_Pending] = field(default_factory=deque)
    seq: int = 0
    source_eof: bool = False  # the source side sent FIN
    eof_sent: bool = False  # we passed the FIN on to the destination
    queued_bytes: int = 0
    bytes_out: int = 0
    messages_out: int = 0
    warned: bool = False


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
    ) -> None:
        self.conn_id = conn_id
        self.client_addr = client_addr
        self.target_addr = target_addr
        self.ids = ids
        self.replay_of = replay_of
        self.phase = Phase.CONNECTING
        self.lanes = (
            _Lane(Direction.C2S, framing.make(Direction.C2S)),
            _Lane(Direction.S2C, framing.make(Direction.S2C)),
        )
        self._wakeup_at: int | None = None
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
        }

    # ------------------------------------------------------------------------------------------ public

    def handle(self, event: ev.Event) -> list[cmd.Command]:
        out: list[cmd.Command] = []
        if self.phase is Phase.CLOSED:
            return out
        self._dispatch[type(event)](event, out)
        return out

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

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

    def _on_data(self, e: ev.DataReceived, out: list[cmd.Command]) -> None:
        lane = self.lanes[Direction.from_side(e.side)]
        if lane.source_eof:
            return  # bytes after FIN cannot happen on TCP; ignore defensively
        frames = lane.framer.feed(e.data)
        if lane.framer.fallback is not None and not lane.warned:
            self._warn_fallback(lane, e.now, out)
        for frame in frames:
            self._admit(lane, frame, e.now, Origin.LIVE, out)
        if frames:
            self._after_release(e.now, out)

    def _on_injected(self, e: ev.DataInjected, out: list[cmd.Command]) -> None:
        lane = self.lanes[e.direction]
        if lane.source_eof or not e.data:
            return
        # Injected bytes pass through a framer of their own kind so a half-received live frame in the lane's
        # framer is not corrupted by them; the caller gives whole messages.
        self._admit(lane, e.data, e.now, e.origin, out)
        self._after_release(e.now, out)

    def _on_eof(self, e: ev.EofReceived, out: list[cmd.Command]) -> None:
        lane = self.lanes[Direction.from_side(e.side)]
        if lane.source_eof:
            return
        rest = lane.framer.flush()
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
        self._after_release(e.now, out)

    def _on_close_requested(self, e: ev.CloseRequested, out: list[cmd.Command]) -> None:
        reason = CloseReason.PROXY_RESET if e.reset else CloseReason.PROXY_CLOSED
        self._finish(reason, e.detail, e.now, out, reset=e.reset)

    def _on_shutdown(self, e: ev.ShutdownRequested, out: list[cmd.Command]) -> None:
        # Pending messages go out now (their delay no longer matters), then both sides get a clean close.
        if self.phase is Phase.RELAYING:
            for lane in self.lanes:
                rest = lane.framer.flush()
                if rest:
                    self._admit(lane, rest, e.now, Origin.LIVE, out)
                for p in lane.queue:
                    p.release_ns = min(p.release_ns, e.now)
                self._release_due(lane, e.now, out)
        self._finish(CloseReason.SHUTDOWN, "the proxy is shutting down", e.now, out, reset=False)

    # ------------------------------------------------------------------------------------------ internals

    def _warn_fallback(self, lane: _Lane, now: int, out: list[cmd.Command]) -> None:
        lane.warned = True
        out.append(cmd.Publish(Notice(
            "warning", f"connection #{self.conn_id} {lane.direction.label}: {lane.framer.fallback}",
            now, self.conn_id, lane.direction)))

    def _admit(self, lane: _Lane, data: bytes, now: int, origin: Origin, out: list[cmd.Command]) -> None:
        """A framed message enters its lane: record it, then forward it at once or queue it."""
        seq = lane.seq
        lane.seq = seq + 1
        msg_id = self.ids.msg()
        release_ns = now  # network conditions (scheduler) plug in here
        delays: tuple[tuple[DelayReason, int], ...] = ()
        if not lane.queue and self.phase is Phase.RELAYING and release_ns <= now:
            # Fast path: nothing ahead of it and no delay: one record, one write.
            out.append(cmd.Publish(Message(msg_id, self.conn_id, lane.direction, seq, data, now, now, origin,
                                           MessageState.FORWARDED, delays)))
            out.append(cmd.SendData(lane.direction.destination, data))
            lane.bytes_out += len(data)
            lane.messages_out += 1
            return
        out.append(cmd.Publish(Message(msg_id, self.conn_id, lane.direction, seq, data, now, release_ns, origin,
                                       MessageState.SCHEDULED, delays)))
        lane.queue.append(_Pending(msg_id, seq, data, now, release_ns, origin, delays))
        lane.queued_bytes += len(data)

    def _release_due(self, lane: _Lane, now: int, out: list[cmd.Command]) -> None:
        if self.phase is not Phase.RELAYING:
            return
        q = lane.queue
        while q and q[0].release_ns <= now:
            p = q.popleft()
            lane.queued_bytes -= len(p.data)
            delays = p.delays
            if now > p.release_ns:  # late: it waited behind something (a connect, a hold, a freeze)
                delays = (*delays, (DelayReason.QUEUE, now - p.release_ns))
            out.append(cmd.Publish(MessageUpdated(p.msg_id, self.conn_id, lane.direction,
                                                  MessageState.FORWARDED, now, now, None, delays)))
            out.append(cmd.SendData(lane.direction.destination, p.data))
            lane.bytes_out += len(p.data)
            lane.messages_out += 1

    def _after_release(self, now: int, out: list[cmd.Command]) -> None:
        """Release what is due, pass on FINs whose lanes have drained, and ask for the next wake-up."""
        if self.phase is Phase.CONNECTING:
            return
        for lane in self.lanes:
            self._release_due(lane, now, out)
            if lane.source_eof and not lane.eof_sent and not lane.queue:
                lane.eof_sent = True
                out.append(cmd.HalfClose(lane.direction.destination))
                out.append(cmd.Publish(HalfClosed(self.conn_id, lane.direction.source, now)))
        if self.lanes[0].eof_sent and self.lanes[1].eof_sent:
            self._finish(CloseReason.CLOSED, "both sides closed", now, out, reset=False)
            return
        nxt = min((lane.queue[0].release_ns for lane in self.lanes if lane.queue), default=None)
        if nxt is not None and nxt != self._wakeup_at:
            self._wakeup_at = nxt
            out.append(cmd.RequestWakeup(nxt))

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

"""The control endpoint: a TCP server inside the proxy process for windows, scripts and tests (docs/protocol.md).

Role: a client authenticates with a token, then receives every record as an event (plus ``hello``, ``stats``
every second, ``dropped``, and the announcements of :mod:`proxy.control.commands`) and sends commands, each
answered with a ``reply``. Frames are :mod:`proxy.control.wire`'s; commands are
:data:`proxy.control.commands.COMMANDS`, the only way a client's ``type`` reaches code.

Never waiting on a subscriber: records reach this module on the engine thread (``ProxyServer.subscribe``).
Each record is encoded once and appended to every subscriber's own queue; queues are written to the socket
at most once per loop iteration, and only while the transport is writable (``pause_writing`` /
``resume_writing``). Nothing here awaits ``drain()``. A queue is bounded by bytes and by count: past half its
bytes, large payloads are truncated (``"truncated": true``, ``"size"`` kept); past the bound, events are
dropped and counted; when the subscriber catches up it gets ``{"type": "dropped", "count": N, ...}``.
A payload too big for one frame (:data:`~proxy.control.wire.MAX_FRAME`) always arrives truncated.
A misbehaving client (wrong token, garbage, a 4 GB frame) gets a ``bye`` with the reason and is
disconnected; relaying never notices.
Must not import: Qt, ``inspector``, ``proxy.cli`` (the command line starts this endpoint, not the reverse).
Thread: the engine's event-loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack

from proxy.codec import framing_to_dict, record_to_dict, shown, truncated_dict
from proxy.control.commands import COMMANDS, exception_text
from proxy.control.wire import (
    AUTH_MAX_FRAME,
    COMMAND_MAX_DEPTH,
    MAX_FRAME,
    PROTOCOL_VERSION,
    FrameLimitError,
    FrameReader,
    FrameTooLarge,
    decode_auth,
    nesting_exceeds,
    new_token,
    pack_frame,
    pack_framed,
    unpack_frame,
)
from proxy.framing import MSGPACK_MAX_DEPTH
from proxy.model import Direction, Message, MessageState, MessageUpdated, Record
from proxy.printer import say
from proxy.server import ProxyError, ProxyServer, is_loopback
from proxy.session import sockscope_version
from proxy.tasks import spawn

__all__ = ["DEFAULT_PAYLOAD_RATE", "ControlServer"]

DEFAULT_QUEUE_BYTES: Final = 16 << 20
DEFAULT_QUEUE_EVENTS: Final = 100_000
TRUNCATE_KEEP: Final = 256
"""Bytes of payload kept in an event once a subscriber's queue is past half full: enough for a summary."""
EVENT_PAYLOAD_MAX: Final = MAX_FRAME - (64 << 10)
"""The largest payload an event carries whole: with the event's other fields it stays within one frame."""
DEFAULT_PAYLOAD_RATE: Final = 8 << 20
"""Payload bytes per second each subscriber gets in full (``--control-payload-rate``); see ``ControlServer``."""
PAYLOAD_BURST: Final = 8 << 20
"""Payload bytes a subscriber gets in full at once before the rate applies."""
AUTH_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send its whole auth frame."""
MAX_UNAUTHENTICATED: Final = 64
"""Connections allowed to wait for their auth frame at once; a newer one cuts off the one that waited longest,
so idle connections cannot pile up (a real client authenticates within milliseconds)."""
READ_CHUNK: Final = 4 + AUTH_MAX_FRAME
"""A connection's receive buffer: a whole auth frame, so an unauthenticated client costs this much at most.
Commands are small; a bigger one (an inject) is received into a buffer of its own size."""
CLOSE_GRACE: Final = 1.0
"""Seconds ``ControlServer.close`` lets clients take their ``bye`` before aborting their connections."""
STATS_INTERVAL: Final = 1.0
WRITE_HIGH_WATER: Final = 256 << 10
WRITE_LOW_WATER: Final = 64 << 10
FLUSH_CHUNK: Final = 256 << 10
"""Bytes handed to the transport per write: the transport's buffer stays near its high-water mark instead of
swallowing a whole queue at once."""
BULK_EVENT: Final = 64 << 10
EVENT_DELAY: Final = 0.002
"""Seconds the event of a message of ``BULK_EVENT`` bytes or more may wait to share one write with the next ones.
Every other event is written in the loop iteration that made it (with whatever else that iteration made).
Measured on 2 cores: during a bulk transfer, one write per event woke the subscriber's process thousands of times a
second on the cores the relay needs (throughput with a subscriber and recording 0.76x/0.87x of none, 0.85x/0.91x
batched); but holding small messages' events back slowed the round trip of game traffic by 20-40 us, where
sending them at once adds 17 us. A window cannot show a bulk transfer message by message anyway."""
FORCED_SLACK: Final = 4 << 20
"""Replies and protocol events are never dropped; a client that piles up this much of them past its queue
bound without reading is disconnected."""


_HELD = MessageState.HELD  # bound once: through its class an enum member costs ten times a global


# ------------------------------------------------------------------------------------------ one subscriber

class _Subscriber(asyncio.BufferedProtocol):
    """One control connection: reads its frames (bytes arrive straight in its :class:`FrameReader`), and owns its
    bounded outgoing queue."""

    def __init__(self, control: ControlServer) -> None:
        self.control = control
        self.loop = control.loop
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.peer = "?"
        self.authed = False
        self.closing = False
        self.client_id = 0
        """Set when it authenticates: announcements say which client caused them (``"by"``)."""
        self.reader = FrameReader(AUTH_MAX_FRAME, READ_CHUNK)
        self._auth_timer: asyncio.TimerHandle | None = None
        # Outgoing queue: frames not yet handed to the transport, each as the pieces ``pack_framed`` made.
        self.out: collections.deque[tuple[bytes, ...]] = collections.deque()
        self.out_bytes = 0
        self.paused = False
        self.scheduled = False
        self.max_bytes = control.queue_bytes
        self.soft_bytes = control.queue_bytes // 2
        self.rate = control.payload_rate
        self.burst = control.payload_burst
        self.tokens = float(self.burst)
        self.tokens_at = time.monotonic()
        self.max_events = control.queue_events
        self.dropped_total = 0
        self.truncated_total = 0
        self._dropped_unreported = 0
        self._truncated_unreported = 0
        self._report_due = False  # a drop or a truncation from falling behind waits to be reported

    # ---------------------------------------------------------------------------- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = t
        peer = t.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        t.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.control.connections.add(self)
        self._auth_timer = self.loop.call_later(self.control.auth_timeout, self._auth_timeout)
        self.control._waiting_for_auth(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        if not self.lost.done():
            self.lost.set_result(None)
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.out.clear()
        self.out_bytes = 0
        self.control._detach(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        reader = self.reader
        reader.buffer_updated(nbytes)
        try:
            for body in reader.frames():
                if not self.authed:
                    self._authenticate(body)
                else:
                    self._command(body)
                if self.closing:
                    return
        except FrameTooLarge as e:
            if self.authed:
                self.fail(f"frame of {e.size} bytes is larger than the limit of {e.limit} bytes")
            else:  # decided from the length alone: nothing of this frame is buffered or decoded
                self.fail(f"not a sockscope control client: the first frame claims {e.size} bytes, and an auth "
                          f"frame is at most {e.limit}; send {{'v': 1, 'type': 'auth', 'token': ...}} first")

    def eof_received(self) -> bool:
        return False

    # ---------------------------------------------------------------------------- incoming frames

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if not self.authed:
            self.fail(f"no auth frame within {self.control.auth_timeout:g} s")

    def _authenticate(self, body: memoryview) -> None:
        """The first frame: a small flat map, checked before anything else a client sends is looked at."""
        try:
            obj = decode_auth(body)
        except ValueError as e:
            self.fail(f"malformed frame: {e}")
            return
        v = obj.get("v")
        if v != PROTOCOL_VERSION:
            self.fail(f"unsupported protocol version {shown(v)}: this proxy speaks v{PROTOCOL_VERSION}")
            return
        t = obj.get("type")
        if t != "auth":
            self.fail(f"the first frame must be {{'v': 1, 'type': 'auth', 'token': ...}}, got type {shown(t)}")
            return
        token = obj.get("token")
        if not isinstance(token, str) or not secrets.compare_digest(token.encode(), self.control.token.encode()):
            self.fail("wrong token")
            return
        self.authed = True
        self.reader.limit = MAX_FRAME
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.control._authenticated(self)
        self.control._attach(self)

    def _command(self, body: memoryview) -> None:
        try:
            obj = unpack_frame(body)
        except FrameLimitError as e:
            self.fail(f"frame refused: {e}")
            return
        except msgpack.StackError:
            self.fail(f"malformed frame: nesting deeper than {MSGPACK_MAX_DEPTH} levels")
            return
        except Exception as e:
            self.fail(f"malformed frame: not a msgpack value ({type(e).__name__})")
            return
        if not isinstance(obj, dict):
            self.fail(f"malformed frame: expected a map, got {type(obj).__name__}")
            return
        v = obj.get("v")
        if v != PROTOCOL_VERSION:
            self.fail(f"unsupported protocol version {shown(v)}: this proxy speaks v{PROTOCOL_VERSION}")
            return
        t = obj.get("type")
        if t == "bye":
            self.close("client said bye")
            return
        if not isinstance(t, str):
            self.send_forced({"v": 1, "type": "error", "error": f"frame without a string 'type': {shown(t)}"})
            return
        cid = obj.get("id")
        if cid is None:
            self.send_forced({"v": 1, "type": "error", "error": f"command {shown(t)} has no 'id'; replies need one"})
            return
        if isinstance(cid, dict | list | tuple):
            self.send_forced({"v": 1, "type": "error", "error": f"command {shown(t)}: 'id' must be a number or a "
                                                                "string"})
            return
        if nesting_exceeds(obj, COMMAND_MAX_DEPTH):
            self.control._reply_error(self, cid, f"{shown(t)}: refused: nesting deeper than {COMMAND_MAX_DEPTH} "
                                                 "levels")
            return
        self.control._execute(self, cid, t, obj)

    # ---------------------------------------------------------------------------- outgoing frames

    def push(self, frame: tuple[bytes, ...], later: bool = False) -> None:
        """Queue an event frame (the caller already applied the queue bounds). It is written in this loop
        iteration, or with ``later`` within ``EVENT_DELAY`` (sooner if something else must go, or the queue holds
        ``FLUSH_CHUNK`` bytes)."""
        self.out.append(frame)
        self.out_bytes += sum(map(len, frame))
        if not later or self.out_bytes >= FLUSH_CHUNK:
            self.control._schedule_flush(self, True)
        elif not self.scheduled:
            self.control._schedule_flush(self, False)

    def send_forced(self, obj: dict[str, Any]) -> None:
        """Queue a frame that is never dropped (hello, reply, stats, dropped, error)."""
        if self.closing:
            return
        if self.out_bytes > self.max_bytes + FORCED_SLACK:
            self.fail("too far behind: replies are not being read")
            return
        self.push((pack_frame(obj),))

    def take_payload(self, n: int, now: float) -> bool:
        """Whether ``n`` more payload bytes fit this subscriber's rate budget (a token bucket); takes them."""
        if not self.rate:
            return True
        tokens = self.tokens + (now - self.tokens_at) * self.rate
        self.tokens_at = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < n:
            self.tokens = tokens
            return False
        self.tokens = tokens - n
        return True

    def note_dropped(self) -> None:
        self.dropped_total += 1
        self._dropped_unreported += 1

    def note_truncated(self, report: bool = True) -> None:
        """Count a truncated event. Only one cut because this subscriber fell behind asks for a ``dropped``
        report; one cut by the payload budget (every bulk message, at bulk rates) is reported with the next
        report or in ``stats``: a report per batch of events would double the writes and the client's wake-ups."""
        self.truncated_total += 1
        self._truncated_unreported += 1
        if report:
            self._report_due = True

    def flush(self) -> None:
        """Hand queued frames to the transport while it is writable, in chunks of about ``FLUSH_CHUNK``."""
        self.scheduled = False
        t = self.transport
        if t is None or self.closing:
            return
        out = self.out
        while out and not self.paused:
            parts: list[bytes] = []
            size = 0
            while out and size < FLUSH_CHUNK:
                f = out.popleft()
                parts += f
                size += sum(map(len, f))
            self.out_bytes -= size
            # writelines: uvloop sends the frames with one writev, no joined copy of large payloads.
            t.writelines(parts)
        if not out and not self.paused and (self._dropped_unreported or self._report_due):
            # Caught up: say what was missed since the last report, before anything newer.
            t.write(pack_frame({"v": 1, "type": "dropped", "count": self._dropped_unreported,
                                "truncated": self._truncated_unreported, "total_dropped": self.dropped_total,
                                "total_truncated": self.truncated_total}))
            self._dropped_unreported = self._truncated_unreported = 0
            self._report_due = False

    def fail(self, reason: str) -> None:
        """Say why in a ``bye`` and disconnect this client (only this one)."""
        self.close(reason, error=True)

    def close(self, reason: str, error: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        self.out.clear()
        self.out_bytes = 0
        t = self.transport
        if t is not None:
            frame: dict[str, Any] = {"v": 1, "type": "bye", "reason": reason}
            if error:
                frame["error"] = True
            t.write(pack_frame(frame))
            t.close()  # sends what is buffered (the bye), then FIN
        self.control._detach(self)


# ------------------------------------------------------------------------------------------ the endpoint


class ControlServer:
    """The control endpoint of one ``ProxyServer``. Create on the engine loop, ``await start()``, ``await close()``.

    ``host`` must be a loopback address unless ``allow_remote`` (the token is a password, not encryption).
    ``token`` defaults to a fresh :func:`new_token`. ``queue_bytes``/``queue_events`` bound
    each subscriber's backlog. ``payload_rate`` (bytes/s, 0 for no limit) is how many payload bytes of live
    messages each subscriber gets in full, after a burst of ``payload_burst`` bytes; past it, big payloads
    arrive truncated (size kept, counted like queue truncation). A window cannot show a 2 GB/s bulk transfer
    byte by byte, and a subscriber reading every byte of one takes the CPU the relay needs (measured with
    recording on, 2 cores: at 32 MiB/s the payloads cost the relay 5-10 % of its bulk throughput); a window keeps
    1 GiB of payloads, which 32 MiB/s of one bulk transfer would turn over in half a minute, evicting the game's
    own earlier messages. Game traffic stays far below the default 8 MiB/s (after an 8 MiB burst: a level or an
    asset sent at once arrives whole). Held messages always carry their whole payload (they are there to be
    edited), and ``--record`` keeps everything.
    """

    def __init__(self, server: ProxyServer, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 allow_remote: bool = False, queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 queue_events: int = DEFAULT_QUEUE_EVENTS, payload_rate: int = DEFAULT_PAYLOAD_RATE,
                 payload_burst: int = PAYLOAD_BURST, auth_timeout: float = AUTH_TIMEOUT,
                 max_unauthenticated: int = MAX_UNAUTHENTICATED) -> None:
        if not is_loopback(host) and not allow_remote:
            raise ValueError(f"--control {host}: {host} is reachable from the network; anyone who can reach it "
                             "and has the token controls the proxy. Use a loopback address (and an SSH tunnel, "
                             "see docs/remote.md) or add --allow-remote")
        if token is not None and not token:
            raise ValueError("the control token must not be empty")
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.host = host
        self.port = port
        self.token: str = token or new_token()
        self.queue_bytes = queue_bytes
        self.queue_events = queue_events
        if payload_rate < 0:
            raise ValueError("--control-payload-rate must not be negative")
        self.payload_rate = payload_rate
        self.payload_burst = payload_burst
        self.auth_timeout = auth_timeout
        self.max_unauthenticated = max(1, max_unauthenticated)
        self._unauthenticated: dict[_Subscriber, None] = {}  # oldest first
        self.address: tuple[str, int] | None = None
        self.connections: set[_Subscriber] = set()
        """Every open control connection, authenticated or not."""
        self.subscribers: list[_Subscriber] = []
        self.attached = asyncio.Event()
        """Set once a first subscriber has authenticated (``--demo`` waits for it, so the window sees the start)."""
        """Authenticated connections: they receive events."""
        self._server: asyncio.Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._dirty: list[_Subscriber] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_soon = False  # the pending flush is a call_soon, not an EVENT_DELAY timer
        self._stats_timer: asyncio.TimerHandle | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        # Counters for stats, updated per record (cheap integer adds on the engine thread).
        self._msgs = [0, 0]
        self._bytes = [0, 0]
        self._last_msgs = [0, 0]
        self._last_bytes = [0, 0]
        self._last_stats_ns = time.monotonic_ns()
        self._held: set[int] = set()
        self._client_ids = 0

    async def start(self) -> tuple[str, int]:
        try:
            # reuse_address left to asyncio: SO_REUSEADDR on POSIX only (on Windows it lets a port be stolen)
            self._server = await self.loop.create_server(lambda: _Subscriber(self), self.host, self.port)
        except OSError as e:
            raise ProxyError(f"--control {self.host}:{self.port}: cannot listen: {e.strerror or e}") from None
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (str(host), int(port))
        self._unsubscribe = self.server.subscribe(self._on_record)
        self._stats_timer = self.loop.call_later(STATS_INTERVAL, self._stats_tick)
        return self.address

    async def close(self, reason: str = "proxy shutting down") -> None:
        """Say bye to every client, stop listening, stop receiving records."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._stats_timer is not None:
            self._stats_timer.cancel()
            self._stats_timer = None
        subs = list(self.connections)
        for s in subs:
            s.flush()  # what was already queued goes out before the bye
            s.close(reason)
        # A client that does not read would keep its transport flushing for ever: give the bye a moment.
        waiting = [s.lost for s in subs if not s.lost.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=CLOSE_GRACE)
        for s in subs:
            if not s.lost.done() and s.transport is not None:
                s.transport.abort()
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass
            self._server = None

    # ---------------------------------------------------------------------------- subscribers

    def _attach(self, sub: _Subscriber) -> None:
        self._client_ids += 1
        sub.client_id = self._client_ids
        sub.send_forced(self.hello(sub.client_id))
        self.subscribers.append(sub)
        self.attached.set()

    def _waiting_for_auth(self, sub: _Subscriber) -> None:
        self._unauthenticated[sub] = None
        if len(self._unauthenticated) > self.max_unauthenticated:
            oldest = next(iter(self._unauthenticated))
            oldest.fail(f"too many control connections waiting to authenticate (more than "
                        f"{self.max_unauthenticated}); this one waited longest")

    def _authenticated(self, sub: _Subscriber) -> None:
        self._unauthenticated.pop(sub, None)

    def _detach(self, sub: _Subscriber) -> None:
        self._unauthenticated.pop(sub, None)
        self.connections.discard(sub)
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def _schedule_flush(self, sub: _Subscriber, soon: bool) -> None:
        # One flush for all subscribers, at the end of this loop iteration, or EVENT_DELAY after the first bulk
        # event queued: a burst of records becomes one write each.
        if not sub.scheduled:
            sub.scheduled = True
            self._dirty.append(sub)
        h = self._flush_handle
        if h is None or (soon and not self._flush_soon):
            if h is not None:
                h.cancel()  # a timer: this frame brings the flush forward
            self._flush_soon = soon
            self._flush_handle = (self.loop.call_soon(self._flush_all) if soon
                                  else self.loop.call_later(EVENT_DELAY, self._flush_all))

    def _flush_all(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s.flush()

    def broadcast(self, obj: dict[str, Any]) -> None:
        """Send a protocol event (never dropped) to every subscriber: announcements that state changed."""
        if not self.subscribers:
            return
        frame = (pack_frame(obj),)
        for s in list(self.subscribers):
            if s.out_bytes > s.max_bytes + FORCED_SLACK:
                s.fail("too far behind: replies are not being read")
            else:
                s.push(frame)

    # ---------------------------------------------------------------------------- the hot path

    def _frame_of(self, d: dict[str, Any]) -> tuple[bytes, ...]:
        d["v"] = PROTOCOL_VERSION
        return pack_framed(self._packer, d)

    def _on_record(self, r: Record) -> None:
        """Called by the engine for every record: count it, then queue it for each subscriber."""
        t = type(r)
        data: bytes | None = None
        budgeted = False  # a live message: its payload counts against each subscriber's rate budget
        if t is Message:
            m: Message = r  # type: ignore[assignment]
            data = m.data
            self._msgs[m.direction] += 1
            self._bytes[m.direction] += len(data)
            if m.state is _HELD:
                self._held.add(m.id)
            else:
                budgeted = len(data) > TRUNCATE_KEEP
        elif t is MessageUpdated:
            u: MessageUpdated = r  # type: ignore[assignment]
            data = u.data
            if u.state is not _HELD:
                self._held.discard(u.msg_id)
        subs = self.subscribers
        if not subs:
            return
        # Encoded at most once per form (full, truncated) however many subscribers there are; a form nobody
        # needs is never built, so a subscriber far behind costs only a counter.
        full: tuple[bytes, ...] | None = None
        trunc: tuple[bytes, ...] | None = None
        size = 200 + (len(data) if data is not None else 0)  # frame size estimate, before encoding
        now = time.monotonic() if budgeted else 0.0
        later = data is not None and len(data) >= BULK_EVENT
        too_big = data is not None and len(data) > EVENT_PAYLOAD_MAX  # whole, it would not fit in a frame
        for s in subs:
            if s.closing:
                continue
            queued = s.out_bytes
            if len(s.out) >= s.max_events:
                s.note_dropped()
                continue
            behind = queued >= s.soft_bytes or queued + size > s.max_bytes
            if data is not None and len(data) > TRUNCATE_KEEP and (
                    behind or too_big or (budgeted and not s.take_payload(len(data), now))):
                if queued + TRUNCATE_KEEP + 200 > s.max_bytes:
                    s.note_dropped()
                    continue
                if trunc is None:
                    trunc = self._frame_of(truncated_dict(r, TRUNCATE_KEEP))  # type: ignore[arg-type]
                s.note_truncated(report=behind)
                s.push(trunc, later)
                continue
            if queued + size > s.max_bytes:
                s.note_dropped()
                continue
            if full is None:
                full = self._frame_of(record_to_dict(r))
            s.push(full, later)

    # ---------------------------------------------------------------------------- hello and stats

    def hello(self, client_id: int = 0) -> dict[str, Any]:
        """What a client learns first: where the proxy listens and relays to, its clock, what is in force, and
        this client's id (announcements of its own commands carry it in ``"by"``)."""
        srv = self.server
        cfg = srv.config
        hello: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "client_id": client_id,
            "sockscope_version": sockscope_version(),
            "settings": {
                "listen": list(srv.listen_addr) if srv.listen_addr else None,
                "target": [cfg.target_host, cfg.target_port],
                "framing": framing_to_dict(srv.framing),
                "transports": [t for t, on in (("tcp", cfg.tcp), ("udp", cfg.udp)) if on],
                "udp": {"idle_timeout_s": cfg.udp_idle_timeout, "max_flows": cfg.udp_max_flows} if cfg.udp else None,
            },
            "clock": {"mono_ns": srv.clock.mono_ns, "wall_ns": srv.clock.wall_ns},
            "connections": sorted([*srv.handlers, *(srv.udp.core.flows if srv.udp is not None else ())]),
            "conditions": srv.conditions_for(None).to_dict(),
            "rules": [r.to_dict() for r in srv.shared.rules],
            "capturing": srv.capturing,
            "presets": _presets(),
            "limits": {"max_frame": MAX_FRAME, "queue_bytes": self.queue_bytes, "queue_events": self.queue_events,
                       "payload_rate": self.payload_rate},
        }
        return hello

    def _stats_tick(self) -> None:
        self._stats_timer = self.loop.call_later(STATS_INTERVAL, self._stats_tick)
        now = time.monotonic_ns()
        dt = max(1e-9, (now - self._last_stats_ns) / 1e9)
        self._last_stats_ns = now
        per_dir = {}
        for d in Direction:
            per_dir[d.label] = {
                "msgs_per_s": (self._msgs[d] - self._last_msgs[d]) / dt,
                "bytes_per_s": (self._bytes[d] - self._last_bytes[d]) / dt,
                "messages": self._msgs[d],
                "bytes": self._bytes[d],
            }
        self._last_msgs = list(self._msgs)
        self._last_bytes = list(self._bytes)
        if not self.subscribers:
            return
        base = {"v": PROTOCOL_VERSION, "type": "stats", "time_ns": now, "interval_s": dt, **per_dir,
                "held": len(self._held), "connections": len(self.server.handlers)
                + (len(self.server.udp.core.flows) if self.server.udp is not None else 0)}
        for s in list(self.subscribers):
            if s.paused:
                continue  # behind anyway: a stale stats frame would only add to its backlog
            s.send_forced({**base, "queue": {"events": len(s.out), "bytes": s.out_bytes},
                           "events_dropped": s.dropped_total, "events_truncated": s.truncated_total})

    # ---------------------------------------------------------------------------- commands

    def _execute(self, sub: _Subscriber, cid: object, name: str, args: dict[str, Any]) -> None:
        command = COMMANDS.get(name)
        if command is None:
            self._reply_error(sub, cid, f"unknown command {shown(name)}; known: {', '.join(sorted(COMMANDS))}")
            return
        try:
            result = command.run(self.server, args)
        except Exception as e:
            self._reply_error(sub, cid, _error_text(name, e))
            return
        if inspect.isawaitable(result):
            spawn(self._reply_later(sub, cid, name, result), name=f"control-{name}-{cid}")
            return
        self._reply(sub, cid, result)
        if command.announce is not None:
            try:
                event = command.announce(self.server, args, result)
            except Exception as e:  # a bug here must not cost the client its reply or the proxy its loop
                say(f"sockscope: control: announcing {name} failed: {e!r}", err=True)
            else:
                self.broadcast({"v": PROTOCOL_VERSION, **event, "by": sub.client_id})

    async def _reply_later(self, sub: _Subscriber, cid: object, name: str, aw: Awaitable[Any]) -> None:
        try:
            result = await aw
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._reply_error(sub, cid, _error_text(name, e))
            return
        self._reply(sub, cid, result)

    def _reply(self, sub: _Subscriber, cid: object, result: object) -> None:
        reply = {"v": PROTOCOL_VERSION, "type": "reply", "id": cid, "ok": True, "result": result}
        try:
            size = len(pack_frame(reply)) - 4
        except (TypeError, ValueError, OverflowError) as e:
            self._reply_error(sub, cid, f"the result could not be encoded: {e}")
            return
        if size > MAX_FRAME:
            self._reply_error(sub, cid, f"the result ({size} bytes) is larger than a frame ({MAX_FRAME} bytes)")
            return
        sub.send_forced(reply)

    def _reply_error(self, sub: _Subscriber, cid: object, error: str) -> None:
        sub.send_forced({"v": PROTOCOL_VERSION, "type": "reply", "id": cid, "ok": False, "error": error})


def _presets() -> list[dict[str, Any]]:
    from proxy.presets import PRESETS

    return [{"name": p.name, "description": p.description, "family": p.family, "source": p.source,
             "source_date": p.source_date, "source_values": p.source_values, "conditions": p.conditions.to_dict(),
             "loss_pct": p.loss_pct, "notes": p.notes, "aliases": list(p.aliases)} for p in PRESETS.values()]


def _error_text(name: str, e: BaseException) -> str:
    if isinstance(e, KeyError | ValueError | TypeError | LookupError):
        return f"{name}: {exception_text(e)}"
    # Anything else is a bug in the engine or here: keep the proxy alive, show the trace on stderr.
    say(f"sockscope: control command {shown(name)} failed:", err=True)
    for line in "".join(traceback.format_exception(e)).splitlines():
        say(line, err=True)
    return f"{name}: internal error: {type(e).__name__}: {e}"

"""The control endpoint: the proxy's msgpack protocol for windows, scripts and tests (docs/protocol.md).

Role: a TCP server inside the proxy process. A client authenticates with a token, then receives every record
as an event (plus ``hello``, ``stats`` every second, ``dropped``) and sends commands (set conditions, hold,
release, inject, replay, ...) that are answered with a ``reply``. Frames are a u32 big-endian length followed
by a msgpack map; every map has ``"v": 1`` and a ``"type"``.

Never waiting on a subscriber: records reach this module on the engine thread (``ProxyServer.subscribe``).
Each record is encoded once and appended to every subscriber's own queue; queues are written to the socket
at most once per loop iteration, and only while the transport is writable (``pause_writing`` /
``resume_writing``). Nothing here awaits ``drain()``. A queue is bounded by bytes and by count: past half its
bytes, large payloads are truncated (``"truncated": true``, ``"size"`` kept); past the bound, events are
dropped and counted; when the subscriber catches up it gets ``{"type": "dropped", "count": N, ...}``.
A misbehaving client (wrong token, garbage, a 4 GB frame) gets a ``bye`` with the reason and is
disconnected; relaying never notices.

Engine commands are dispatched through an explicit table (``_COMMANDS``); each handler names the
``ProxyServer`` method it needs as a literal, so a client can never reach an arbitrary attribute. A method
the engine does not have yet is answered with "not supported by this proxy yet".

Also here: ``add_arguments``/``start_from_args``/``stop`` for ``proxy.cli`` (``--control``, ``--token-file``,
``--record``, ``--parent-watch``) and ``watch_stdin`` (no orphan proxies).
Must not import: Qt, ``inspector``.
Thread: the engine's event-loop thread, except ``watch_stdin``'s reader thread (which only calls
``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import enum
import inspect
import reprlib
import secrets
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack

from proxy.codec import (
    FrameLimitError,
    direction_from_wire,
    framing_to_dict,
    nesting_exceeds,
    pack_framed,
    record_to_dict,
    truncated_dict,
    unpack_frame,
)
from proxy.framing import MSGPACK_MAX_DEPTH
from proxy.model import Direction, Message, MessageState, MessageUpdated, Record
from proxy.printer import say
from proxy.server import ProxyError, ProxyServer, is_loopback
from proxy.session import sockscope_version
from proxy.tasks import spawn

__all__ = [
    "AUTH_MAX_FRAME",
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "ControlServer",
    "add_arguments",
    "pack_frame",
    "start_from_args",
    "stop",
    "watch_stdin",
]

PROTOCOL_VERSION: Final = 1
MAX_FRAME: Final = 64 << 20
"""Largest frame accepted from a client (an inject or edit carries at most this much data)."""
DEFAULT_QUEUE_BYTES: Final = 16 << 20
DEFAULT_QUEUE_EVENTS: Final = 100_000
TRUNCATE_KEEP: Final = 256
"""Bytes of payload kept in an event once a subscriber's queue is past half full: enough for a summary."""
DEFAULT_PAYLOAD_RATE: Final = 8 << 20
"""Payload bytes per second each subscriber gets in full (``--control-payload-rate``); see ``ControlServer``."""
PAYLOAD_BURST: Final = 8 << 20
"""Payload bytes a subscriber gets in full at once before the rate applies."""
AUTH_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send its whole auth frame."""
AUTH_MAX_FRAME: Final = 4096
"""Largest first (auth) frame: checked from its length prefix, before a byte of it is buffered or decoded. Until
a client has authenticated it costs the proxy at most this much memory, and its frame is decoded as a flat map
of at most ``AUTH_MAX_KEYS`` scalars (``_decode_auth``)."""
AUTH_MAX_KEYS: Final = 16
MAX_UNAUTHENTICATED: Final = 64
"""Connections allowed to wait for their auth frame at once; a newer one cuts off the one that waited longest,
so idle connections cannot pile up (a real client authenticates within milliseconds)."""
COMMAND_MAX_DEPTH: Final = 32
"""Containers nested deeper than this in a command are refused with an error reply (the deepest real command,
``set_conditions``, nests 4): handlers and error messages never meet a structure deep enough to hurt."""
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
REPLAY_MODES: Final = ("timing", "fast", "wait-reply")

_U32: Final = struct.Struct(">I")


class CommandError(ValueError):
    """A command's arguments are wrong; the message is sent back as the reply's ``error``."""


def _wire_default(o: object) -> object:
    """msgpack fallback for command results (``snapshot`` may contain engine values)."""
    to_dict = getattr(o, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(o, Direction):
        return o.label
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, set | frozenset):
        return list(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        try:
            return record_to_dict(o)  # type: ignore[arg-type]
        except ValueError:
            return dataclasses.asdict(o)
    raise TypeError(f"cannot encode {type(o).__name__}")


def pack_frame(obj: dict[str, Any]) -> bytes:
    """One protocol frame: u32 big-endian length, then the msgpack map (bytes as ``bin``)."""
    body: bytes = msgpack.packb(obj, use_bin_type=True, default=_wire_default)
    return _U32.pack(len(body)) + body


# ------------------------------------------------------------------------------------------ one subscriber


class _Subscriber(asyncio.Protocol):
    """One control connection: parses its commands and owns its bounded outgoing queue."""

    def __init__(self, control: ControlServer) -> None:
        self.control = control
        self.loop = control.loop
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.peer = "?"
        self.authed = False
        self.closing = False
        self._inbuf = bytearray()
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

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self._inbuf
        buf += data
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 4:
            (n,) = _U32.unpack_from(buf, pos)
            if not self.authed and n > AUTH_MAX_FRAME:
                # Decided from the length alone: nothing of this frame is buffered or decoded.
                self.fail(f"not a sockscope control client: the first frame claims {n} bytes, and an auth frame is "
                          f"at most {AUTH_MAX_FRAME}; send {{'v': 1, 'type': 'auth', 'token': ...}} first")
                return
            if n > MAX_FRAME:
                self.fail(f"frame of {n} bytes is larger than the limit of {MAX_FRAME} bytes")
                return
            end = pos + 4 + n
            if end > n_buf:
                break
            body = bytes(buf[pos + 4:end])
            pos = end
            if not self.authed:
                self._authenticate(body)
                if self.closing:
                    return
                continue
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
            self._handle(obj)
            if self.closing:
                return
        if pos:
            del buf[:pos]

    # ---------------------------------------------------------------------------- incoming frames

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if not self.authed:
            self.fail(f"no auth frame within {self.control.auth_timeout:g} s")

    def _authenticate(self, body: bytes) -> None:
        """The first frame: a small flat map, checked before anything else a client sends is looked at."""
        try:
            obj = _decode_auth(body)
        except ValueError as e:
            self.fail(f"malformed frame: {e}")
            return
        v = obj.get("v")
        if v != PROTOCOL_VERSION:
            self.fail(f"unsupported protocol version {_shown(v)}: this proxy speaks v{PROTOCOL_VERSION}")
            return
        t = obj.get("type")
        if t != "auth":
            self.fail(f"the first frame must be {{'v': 1, 'type': 'auth', 'token': ...}}, got type {_shown(t)}")
            return
        token = obj.get("token")
        if not isinstance(token, str) or not secrets.compare_digest(token.encode(), self.control.token.encode()):
            self.fail("wrong token")
            return
        self.authed = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.control._authenticated(self)
        self.control._attach(self)

    def _handle(self, obj: object) -> None:
        if not isinstance(obj, dict):
            self.fail(f"malformed frame: expected a map, got {type(obj).__name__}")
            return
        v = obj.get("v")
        if v != PROTOCOL_VERSION:
            self.fail(f"unsupported protocol version {_shown(v)}: this proxy speaks v{PROTOCOL_VERSION}")
            return
        t = obj.get("type")
        if t == "bye":
            self.close("client said bye")
            return
        if not isinstance(t, str):
            self.send_forced({"v": 1, "type": "error", "error": f"frame without a string 'type': {_shown(t)}"})
            return
        cid = obj.get("id")
        if cid is None:
            self.send_forced({"v": 1, "type": "error", "error": f"command {_shown(t)} has no 'id'; replies need one"})
            return
        if isinstance(cid, dict | list | tuple):
            self.send_forced({"v": 1, "type": "error", "error": f"command {_shown(t)}: 'id' must be a number or a "
                                                                "string"})
            return
        if nesting_exceeds(obj, COMMAND_MAX_DEPTH):
            self.control._reply_error(self, cid, f"{_shown(t)}: refused: nesting deeper than {COMMAND_MAX_DEPTH} "
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


def _shown(value: object, limit: int = 60) -> str:
    """``repr`` for an error message, bounded in length and depth whatever a client sent (a plain ``repr`` of a
    1,000-level list raises RecursionError; of a 3,000-character string, makes a 3,000-character line)."""
    return _REPR.repr(value)[:limit]


def _make_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 2, 40, 40, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 4
    return r


_REPR: Final = _make_repr()


def _decode_auth(body: bytes) -> dict[str, Any]:
    """The auth frame as a dict of at most ``AUTH_MAX_KEYS`` string keys to scalars (or empty containers).

    Read header by header with nested containers refused outright (``max_array_len=0``), so an unauthenticated
    client's frame costs a few dozen small objects at most, whatever it holds. ``ValueError`` says what is wrong.
    """
    limit = max(1, len(body))
    up = msgpack.Unpacker(raw=False, max_buffer_size=limit, max_array_len=0, max_map_len=0, max_str_len=limit,
                          max_bin_len=limit, max_ext_len=limit)
    up.feed(body)
    try:
        n = up.read_map_header()
        if n > AUTH_MAX_KEYS:
            raise ValueError(f"the auth frame has {n} keys (at most {AUTH_MAX_KEYS})")
        obj: dict[str, Any] = {}
        for _ in range(n):
            key, value = up.unpack(), up.unpack()
            if not isinstance(key, str):
                raise ValueError(f"the auth frame has a {type(key).__name__} key; keys are strings")
            obj[key] = value
    except msgpack.OutOfData:
        raise ValueError("the frame ends inside a msgpack value") from None
    except ValueError as e:
        text = str(e)
        if "Unexpected type header" in text:
            raise ValueError(f"expected a map (the auth frame), got {_msgpack_kind(body)}") from None
        if "exceeds max_array_len" in text or "exceeds max_map_len" in text:
            raise ValueError("the auth frame must be a flat map of scalars") from None
        raise ValueError(text[:100]) from None
    except Exception as e:  # msgpack's FormatError and friends: never let a client's bytes raise out of here
        raise ValueError(f"not a msgpack value ({type(e).__name__})") from None
    if up.tell() != len(body):
        raise ValueError(f"{len(body) - up.tell()} bytes after the auth map inside its frame")
    return obj


def _msgpack_kind(body: bytes) -> str:
    b = body[0] if body else -1
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        return "an array"
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
        return "a string"
    if b in (0xC4, 0xC5, 0xC6):
        return "bytes"
    if 0xD4 <= b <= 0xD8 or b in (0xC7, 0xC8, 0xC9):
        return "an ext value"
    return "a scalar" if b >= 0 else "nothing"


def new_token() -> str:
    """A random token (128 bits, URL-safe) that never starts with ``-`` (a token pasted into a shell, say
    ``SOCKSCOPE_TOKEN=-abc``, is easier to get right without one)."""
    while True:
        token = secrets.token_urlsafe(16)
        if not token.startswith("-"):
            return token


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
        sub.send_forced(self.hello())
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
        """Send a protocol event (never dropped) to every subscriber."""
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
            if m.state is MessageState.HELD:
                self._held.add(m.id)
            else:
                budgeted = len(data) > TRUNCATE_KEEP
        elif t is MessageUpdated:
            u: MessageUpdated = r  # type: ignore[assignment]
            data = u.data
            if u.state is not MessageState.HELD:
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
        for s in subs:
            if s.closing:
                continue
            queued = s.out_bytes
            if len(s.out) >= s.max_events:
                s.note_dropped()
                continue
            behind = queued >= s.soft_bytes or queued + size > s.max_bytes
            if data is not None and len(data) > TRUNCATE_KEEP and (
                    behind or (budgeted and not s.take_payload(len(data), now))):
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

    def hello(self) -> dict[str, Any]:
        srv = self.server
        cfg = srv.config
        hello: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "sockscope_version": sockscope_version(),
            "settings": {
                "listen": list(srv.listen_addr) if srv.listen_addr else None,
                "target": [cfg.target_host, cfg.target_port],
                "framing": framing_to_dict(srv.framing),
            },
            "clock": {"mono_ns": srv.clock.mono_ns, "wall_ns": srv.clock.wall_ns},
            "connections": sorted(srv.handlers),
            "conditions": None,
            "presets": [],
            "limits": {"max_frame": MAX_FRAME, "queue_bytes": self.queue_bytes, "queue_events": self.queue_events,
                       "payload_rate": self.payload_rate},
        }
        conditions_for = getattr(srv, "conditions_for", None)
        if conditions_for is not None:
            try:
                hello["conditions"] = conditions_for(None).to_dict()
            except Exception as e:  # hello must go out even if the engine's half-built feature misbehaves
                say(f"sockscope: control: conditions_for failed: {e!r}", err=True)
        hello["presets"] = _presets()
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
                "held": len(self._held), "connections": len(self.server.handlers)}
        for s in list(self.subscribers):
            if s.paused:
                continue  # behind anyway: a stale stats frame would only add to its backlog
            s.send_forced({**base, "queue": {"events": len(s.out), "bytes": s.out_bytes},
                           "events_dropped": s.dropped_total, "events_truncated": s.truncated_total})

    # ---------------------------------------------------------------------------- commands

    def _execute(self, sub: _Subscriber, cid: object, name: str, args: dict[str, Any]) -> None:
        handler = _COMMANDS.get(name)
        if handler is None:
            self._reply_error(sub, cid, f"unknown command {_shown(name)}; known: {', '.join(sorted(_COMMANDS))}")
            return
        try:
            result = handler(self, args)
        except Exception as e:
            self._reply_error(sub, cid, _error_text(name, e))
            return
        if inspect.isawaitable(result):
            spawn(self._reply_later(sub, cid, name, result), name=f"control-{name}-{cid}")
        else:
            self._reply(sub, cid, result)

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
        try:
            sub.send_forced({"v": PROTOCOL_VERSION, "type": "reply", "id": cid, "ok": True, "result": result})
        except (TypeError, ValueError, OverflowError) as e:
            self._reply_error(sub, cid, f"the result could not be encoded: {e}")

    def _reply_error(self, sub: _Subscriber, cid: object, error: str) -> None:
        sub.send_forced({"v": PROTOCOL_VERSION, "type": "reply", "id": cid, "ok": False, "error": error})

    def _engine(self, method: str) -> Callable[..., Any]:
        """The engine's ``method`` (a literal chosen by a handler, never a client's string)."""
        fn = getattr(self.server, method, None)
        if fn is None:
            raise CommandError("not supported by this proxy yet")
        return fn  # type: ignore[no-any-return]

    def _cmd_ping(self, a: dict[str, Any]) -> object:
        return {"mono_ns": time.monotonic_ns(), "wall_ns": time.time_ns(), "echo": a.get("echo")}

    def _cmd_set_conditions(self, a: dict[str, Any]) -> object:
        set_conditions = self._engine("set_conditions")
        conn_id = _opt_int(a, "conn_id")
        preset = a.get("preset")
        conditions: Any  # proxy.conditions.Conditions | None, imported lazily
        if preset is not None:
            if not isinstance(preset, str):
                raise CommandError(f"preset: expected a name, got {_shown(preset)}")
            from proxy.presets import find_preset

            conditions = find_preset(preset).conditions
        else:
            from proxy.conditions import Conditions

            if "conditions" not in a:
                raise CommandError("needs 'conditions' (a map with c2s/s2c) or 'preset' (a name)")
            raw = a["conditions"]
            if raw is None and conn_id is None:
                raise CommandError("conditions: nil only clears a connection's override (give conn_id)")
            conditions = None if raw is None else Conditions.from_dict(raw)
        set_conditions(conditions, conn_id)
        conditions_for = getattr(self.server, "conditions_for", None)
        now = conditions_for(conn_id) if conditions_for is not None else conditions
        result = {"conn_id": conn_id, "conditions": None if now is None else now.to_dict()}
        self.broadcast({"v": PROTOCOL_VERSION, "type": "conditions_changed", **result})
        return result

    def _cmd_set_rules(self, a: dict[str, Any]) -> object:
        set_rules = self._engine("set_rules")
        raw = a.get("rules")
        if not isinstance(raw, list):
            raise CommandError(f"rules: expected a list of rule maps, got {type(raw).__name__}")
        try:
            from proxy import rules as rules_mod
        except ImportError:
            raise CommandError("not supported by this proxy yet") from None
        from_dict = getattr(getattr(rules_mod, "Rule", None), "from_dict", None)
        if from_dict is None:
            raise CommandError("not supported by this proxy yet (proxy.rules.Rule.from_dict is missing)")
        parsed = []
        for i, r in enumerate(raw):
            try:
                parsed.append(from_dict(r))
            except (KeyError, TypeError, ValueError) as e:
                raise CommandError(f"rules[{i}]: {_exc_text(e)}") from None
        set_rules(parsed)
        return {"rules": len(parsed)}

    def _cmd_hold_next(self, a: dict[str, Any]) -> object:
        hold_next = self._engine("hold_next")
        count = _opt_int(a, "count")
        if count is None:
            count = 1
        if count < 1:
            raise CommandError(f"count: must be at least 1, got {count}")
        hold_next(_direction(a), _opt_int(a, "conn_id"), count)
        return None

    def _cmd_release(self, a: dict[str, Any]) -> object:
        return self._engine("release")(_int(a, "msg_id"))

    def _cmd_edit(self, a: dict[str, Any]) -> object:
        return self._engine("release")(_int(a, "msg_id"), _bytes(a, "data"))

    def _cmd_drop(self, a: dict[str, Any]) -> object:
        return self._engine("drop")(_int(a, "msg_id"))

    def _cmd_release_all(self, a: dict[str, Any]) -> object:
        return self._engine("release_all")(_opt_int(a, "conn_id"))

    def _cmd_inject(self, a: dict[str, Any]) -> object:
        self._engine("inject")(_int(a, "conn_id"), _direction(a), _bytes(a, "data"))
        return None

    def _cmd_replay(self, a: dict[str, Any]) -> object:
        replay = self._engine("replay")
        conn_id = _int(a, "conn_id")
        mode = a.get("mode", "timing")
        if mode not in REPLAY_MODES:
            raise CommandError(f"mode: expected one of {', '.join(REPLAY_MODES)}, got {_shown(mode)}")
        messages = a.get("messages")
        if messages is not None and (not isinstance(messages, list)
                                     or not all(isinstance(m, bytes) for m in messages)):
            raise CommandError("messages: expected a list of bytes (or nil for the recorded client side)")
        result = replay(conn_id, messages, mode)
        if inspect.isawaitable(result):
            return _conn_result(result)
        return {"conn_id": result}

    def _close(self, a: dict[str, Any], reset: bool) -> object:
        close_connection = self._engine("close_connection")
        after_s = _opt_number(a, "after_s")
        if after_s is None:
            close_connection(_int(a, "conn_id"), reset)
        else:
            if after_s < 0:
                raise CommandError(f"after_s: must be >= 0, got {after_s}")
            close_connection(_int(a, "conn_id"), reset, after_s=after_s)
        return None

    def _cmd_close(self, a: dict[str, Any]) -> object:
        return self._close(a, False)

    def _cmd_reset(self, a: dict[str, Any]) -> object:
        return self._close(a, True)

    def _cmd_cancel_hold_next(self, a: dict[str, Any]) -> object:
        return self._engine("cancel_hold_next")()

    def _cmd_held(self, a: dict[str, Any]) -> object:
        return self._engine("held")()

    def _cmd_spike(self, a: dict[str, Any]) -> object:
        spike_now = self._engine("spike_now")
        direction = None if a.get("direction") is None else _direction(a)
        add_ms, for_s = _number(a, "add_ms"), _number(a, "for_s")
        if add_ms < 0 or for_s <= 0:
            raise CommandError("add_ms must be >= 0 and for_s > 0")
        spike_now(direction, add_ms, for_s, _opt_int(a, "conn_id"))
        return None

    def _cmd_fault(self, a: dict[str, Any]) -> object:
        arm_fault = self._engine("arm_fault")
        kind = a.get("kind")
        if kind not in ("drop", "duplicate"):
            raise CommandError(f"kind: expected 'drop' or 'duplicate', got {_shown(kind)}")
        count = _opt_int(a, "count")
        arm_fault(_direction(a), kind, 1 if count is None else count, _opt_int(a, "conn_id"))
        return None

    def _cmd_set_framing(self, a: dict[str, Any]) -> object:
        set_framing = self._engine("set_framing")
        from proxy.framing import parse_framing

        text = a.get("framing")
        if not isinstance(text, str):
            raise CommandError(f"framing: expected text such as 'lines' or 'c2s=len16,s2c=raw', got {_shown(text)}")
        max_frame = _opt_int(a, "max_frame") or self.server.framing.max_frame
        spec = parse_framing(text, max_frame)
        set_framing(spec)
        result = framing_to_dict(spec)
        self.broadcast({"v": PROTOCOL_VERSION, "type": "framing_changed", "framing": result})
        return result

    def _cmd_pause_capture(self, a: dict[str, Any]) -> object:
        self._engine("pause_capture")()
        self.broadcast({"v": PROTOCOL_VERSION, "type": "capture", "paused": True})
        return None

    def _cmd_resume_capture(self, a: dict[str, Any]) -> object:
        self._engine("resume_capture")()
        self.broadcast({"v": PROTOCOL_VERSION, "type": "capture", "paused": False})
        return None

    def _cmd_snapshot(self, a: dict[str, Any]) -> object:
        return self._engine("snapshot")()


_COMMANDS: Final[dict[str, Callable[[ControlServer, dict[str, Any]], object]]] = {
    "ping": ControlServer._cmd_ping,
    "set_conditions": ControlServer._cmd_set_conditions,
    "set_rules": ControlServer._cmd_set_rules,
    "hold_next": ControlServer._cmd_hold_next,
    "release": ControlServer._cmd_release,
    "edit": ControlServer._cmd_edit,
    "drop": ControlServer._cmd_drop,
    "release_all": ControlServer._cmd_release_all,
    "inject": ControlServer._cmd_inject,
    "replay": ControlServer._cmd_replay,
    "close": ControlServer._cmd_close,
    "reset": ControlServer._cmd_reset,
    "set_framing": ControlServer._cmd_set_framing,
    "pause_capture": ControlServer._cmd_pause_capture,
    "resume_capture": ControlServer._cmd_resume_capture,
    "snapshot": ControlServer._cmd_snapshot,
    "cancel_hold_next": ControlServer._cmd_cancel_hold_next,
    "held": ControlServer._cmd_held,
    "spike": ControlServer._cmd_spike,
    "fault": ControlServer._cmd_fault,
}
"""Command name -> handler. The only way a client's ``type`` reaches code."""


async def _conn_result(aw: Awaitable[Any]) -> dict[str, Any]:
    return {"conn_id": await aw}


def _presets() -> list[dict[str, Any]]:
    try:
        from proxy.presets import PRESETS
    except ImportError:
        return []
    out = []
    for p in PRESETS.values():
        out.append({"name": p.name, "description": p.description, "family": p.family, "source": p.source,
                    "source_date": p.source_date, "source_values": p.source_values,
                    "conditions": p.conditions.to_dict(), "loss_pct": p.loss_pct, "notes": p.notes,
                    "aliases": list(p.aliases)})
    return out


# ---------------------------------------------------------------------------------------- argument checks


def _exc_text(e: BaseException) -> str:
    # KeyError's str() adds quotes around its message: show the engine's text as written.
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e) or type(e).__name__


def _error_text(name: str, e: BaseException) -> str:
    if isinstance(e, KeyError | ValueError | TypeError | LookupError):
        return f"{name}: {_exc_text(e)}"
    # Anything else is a bug in the engine or here: keep the proxy alive, show the trace on stderr.
    say(f"sockscope: control command {_shown(name)} failed:", err=True)
    for line in "".join(traceback.format_exception(e)).splitlines():
        say(line, err=True)
    return f"{name}: internal error: {type(e).__name__}: {e}"


def _int(a: dict[str, Any], key: str) -> int:
    v = a.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CommandError(f"{key}: expected an integer, got {_shown(v)}")
    return v


def _opt_int(a: dict[str, Any], key: str) -> int | None:
    return None if a.get(key) is None else _int(a, key)


def _number(a: dict[str, Any], key: str) -> float:
    v = a.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        raise CommandError(f"{key}: expected a number, got {_shown(v)}")
    return float(v)


def _opt_number(a: dict[str, Any], key: str) -> float | None:
    return None if a.get(key) is None else _number(a, key)


def _bytes(a: dict[str, Any], key: str) -> bytes:
    v = a.get(key)
    if not isinstance(v, bytes):
        raise CommandError(f"{key}: expected bytes (msgpack bin), got {type(v).__name__}")
    return v


def _direction(a: dict[str, Any]) -> Direction:
    return direction_from_wire(a.get("direction"))


# -------------------------------------------------------------------------------- command line and lifecycle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--control``, ``--token-file``, ``--record``, ``--parent-watch`` (and ``--allow-remote`` if missing)."""
    parser.add_argument("--control", default=None, metavar="HOST:PORT",
                        help="open the control endpoint (for the window or scripts) on HOST:PORT; port 0 picks a "
                             "free one; loopback only unless --allow-remote")
    from proxy.cli import add_token_arguments  # lazy: cli imports this module

    add_token_arguments(parser, "clients must send (else a random one, printed at start)")
    parser.add_argument("--record", default=None, metavar="FILE",
                        help="append every message and connection event to a session file")
    parser.add_argument("--control-payload-rate", default=None, metavar="RATE",
                        help="payload bytes per second each control subscriber gets in full, e.g. 8MiB/s (the "
                             "default), 0 for no limit; past it big payloads arrive truncated, size kept (held "
                             "messages and --record always keep everything)")
    parser.add_argument("--wait-attach", nargs="?", type=float, const=0.0, default=None, metavar="S",
                        help="with --control: accept game connections only once a control client (the window, a "
                             "script) has attached, so it sees them from their first byte; waiting clients are "
                             "held in the listen queue, nothing is lost. S bounds the wait in seconds (default: "
                             "no bound, as with 0)")
    parser.add_argument("--parent-watch", action="store_true",
                        help="exit when standard input reaches end of file (a parent process that holds the pipe "
                             "went away)")
    if not any("--allow-remote" in a.option_strings for a in parser._actions):
        parser.add_argument("--allow-remote", action="store_true",
                            help="allow listening on a non-loopback address (reachable from the network)")


def _default_stop() -> None:
    # Goes through the CLI's own SIGINT handling (a clean shutdown); works on Windows too.
    signal.raise_signal(signal.SIGINT)


async def start_from_args(server: ProxyServer, args: argparse.Namespace,
                          on_parent_gone: Callable[[], None] | None = None) -> list[object]:
    """Start what the flags of :func:`add_arguments` ask for; returns the objects to pass to :func:`stop`.

    Call after ``await server.start()``. Prints ``sockscope: control on HOST:PORT token TOKEN`` (one line) when
    ``--control`` is given, or ``... (token from $SOCKSCOPE_TOKEN)`` / ``(token from --token-file)`` when the user
    chose the token. ``on_parent_gone`` runs on the loop when ``--parent-watch`` sees
    EOF (default: raise SIGINT, which the CLI turns into a clean stop). Errors are ``ProxyError``.
    """
    started: list[object] = []
    loop = asyncio.get_running_loop()
    try:
        record = getattr(args, "record", None)
        if record:
            from proxy.recorder import Recorder

            try:
                started.append(Recorder(record, server))
            except OSError as e:
                raise ProxyError(f"--record {record}: cannot create the file: {e.strerror or e}") from None
        control = getattr(args, "control", None)
        wait_attach = getattr(args, "wait_attach", None)
        if wait_attach is not None and (not control or wait_attach < 0):
            raise ProxyError("--wait-attach needs --control (something must be able to attach), and a wait of "
                             "0 or more seconds")
        if control:
            from proxy.cli import UsageError, parse_hostport, token_from_args  # lazy: cli imports this module

            try:
                host, port = parse_hostport(control, "--control")
                token, source = token_from_args(args)
            except UsageError as e:
                raise ProxyError(str(e)) from None
            try:
                rate_text = getattr(args, "control_payload_rate", None)
                rate = DEFAULT_PAYLOAD_RATE if rate_text is None else _parse_rate(rate_text)
                cs = ControlServer(server, host, port, token=token, payload_rate=rate,
                                   allow_remote=bool(getattr(args, "allow_remote", False)))
            except ValueError as e:
                raise ProxyError(str(e)) from None
            chost, cport = await cs.start()
            started.append(cs)
            shown = f"[{chost}]" if ":" in chost else chost
            # A generated token is shown here, on the terminal (never on a command line); one the user gave is not.
            say(f"sockscope: control on {shown}:{cport} " + (f"(token from {source})" if token else
                                                             f"token {cs.token}"))
        if getattr(args, "parent_watch", False):
            started.append(watch_stdin(loop, on_parent_gone or _default_stop))
    except BaseException:
        await stop(started)
        raise
    return started


async def stop(started: list[object]) -> None:
    """Close what :func:`start_from_args` started, newest first. Call after ``server.shutdown()`` so the
    recording and the subscribers see the last records."""
    from proxy.recorder import Recorder

    for obj in reversed(started):
        if isinstance(obj, ControlServer):
            await obj.close()
        elif isinstance(obj, Recorder):
            obj.close()
    started.clear()


def watch_stdin(loop: asyncio.AbstractEventLoop, stop_callback: Callable[[], None]) -> threading.Thread:
    """Call ``stop_callback`` on ``loop`` when standard input reaches EOF (the parent closed its pipe or died).

    A blocking read on a daemon thread: works with pipes on Windows, macOS and Linux, where ``add_reader`` on
    stdin would not. Whatever arrives on stdin is read and ignored.
    """

    def run() -> None:
        stream: Any = sys.stdin.buffer if sys.stdin is not None else None
        if stream is None:
            say("sockscope: --parent-watch: there is no standard input to watch", err=True)
            return
        try:
            while stream.read1(65536):
                pass
        except (OSError, ValueError):
            pass  # a closed or broken stdin means the parent is gone as surely as EOF
        try:
            loop.call_soon_threadsafe(stop_callback)
        except RuntimeError:
            pass  # the loop already closed: the process is stopping anyway

    t = threading.Thread(target=run, name="sockscope-parent-watch", daemon=True)
    t.start()
    return t


def _parse_rate(text: str) -> int:
    """``--control-payload-rate``: ``32MB/s``, ``1GiB/s``, ``0`` or ``unlimited`` (no limit); ValueError if bad."""
    from proxy.conditions import parse_bandwidth

    if text.strip() == "0":
        return 0
    bad = ValueError(f"--control-payload-rate: cannot read {text!r}; e.g. 8MiB/s, 1MB/s, 500kbit, "
                     "or 0 for no limit (one rate: it applies to each subscriber, both directions)")
    try:
        rates = set(parse_bandwidth(text).values())
    except ValueError:
        raise bad from None
    if len(rates) != 1:
        raise bad
    rate = rates.pop()
    return 0 if rate is None else max(1, int(rate))

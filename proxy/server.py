"""The asyncio shell: listens, accepts, connects upstream, and runs each relay core's commands on real sockets.

Role: the only code in the engine that does network I/O. Each accepted client gets a ``ConnectionHandler``
that turns socket callbacks into events for its ``Relay`` and executes the commands that come back, in order.
It uses asyncio Protocols (not streams) because every microsecond per message counts on a 2-core machine.

Backpressure: a direction's source stops being read while its destination's write buffer is above
``WRITE_HIGH_WATER`` or while the relay holds more than ``QUEUE_CAP`` bytes for that direction (messages
delayed by conditions or held). Memory per stalled direction therefore stays under ``STALL_CAP`` (documented
in docs/architecture.md): write buffer + one read + queue cap, plus at most one incomplete frame (``--max-frame``).

Must not import: Qt, ``inspector``.
Thread: everything here runs on the engine's event-loop thread; other threads reach it only through
``loop.call_soon_threadsafe`` (see ``proxy.runner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, cast

from proxy import commands as cmd
from proxy import events as ev
from proxy.conditions import PASSTHROUGH, Conditions, Spike
from proxy.framing import FramingSpec, make_framer, normalise_name
from proxy.loop import Alarm
from proxy.model import (
    Clock,
    Direction,
    Ids,
    Message,
    MessageUpdated,
    Notice,
    Origin,
    Record,
    Side,
)
from proxy.printer import say
from proxy.relay import Phase, Relay, Shared
from proxy.rules import Rule
from proxy.tasks import spawn

if TYPE_CHECKING:
    from proxy.addonhost import AddonHost
    from proxy.udpserver import UdpShell

WRITE_HIGH_WATER = 1 << 20
WRITE_LOW_WATER = 256 << 10
QUEUE_CAP = 2 << 20
READ_SIZE = 1 << 20  # the most one read takes (the server's read buffer); part of the memory bound
STALL_CAP = 4 << 20  # WRITE_HIGH_WATER + READ_SIZE + QUEUE_CAP: the documented bound

HISTORY_CAP = 64 << 20  # client-to-server bytes kept for session replay, over all connections
HISTORY_CONN_CAP = 8 << 20  # ... and per connection: a bulk transfer is not a session worth replaying from memory
REPLAY_MODES = ("timing", "fast", "wait-reply")

Subscriber = Callable[[Record], None]

_now = time.monotonic_ns
# struct linger is two ints on POSIX but two u_shorts on Windows; a wrong size is refused and no RST would go out.
# Enum members used for every read or message, bound once: through their class they cost ten times a global.
_CONNECTING, _C2S, _DUPLICATE = Phase.CONNECTING, Direction.C2S, Origin.DUPLICATE
_LINGER_RESET = struct.pack("HH", 1, 0) if sys.platform == "win32" else struct.pack("ii", 1, 0)


class ProxyError(Exception):
    """The proxy cannot start (port in use, bad address, ...): a message for the user, no traceback."""


@dataclass(slots=True)
class ProxyConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 5556
    target_host: str = "127.0.0.1"
    target_port: int = 5555
    framing: FramingSpec = field(default_factory=FramingSpec)
    connect_timeout: float = 5.0
    conditions: Conditions = PASSTHROUGH
    seed: int | None = None
    first_ids: tuple[int, int] = (1, 1)
    """The first connection and message numbers: a window that starts its proxy again continues its numbering,
    so one table never holds two different #1."""
    tcp: bool = True
    """Relay TCP connections on the listen address."""
    udp: bool = False
    """Relay UDP datagrams on the same address and port number (a flow per client address, docs/udp.md)."""
    udp_idle_timeout: float = 60.0
    """Seconds without a datagram either way after which a UDP flow ends."""
    udp_max_flows: int = 4096
    """UDP flows open at once; datagrams from further client addresses are dropped and counted."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    import ipaddress

    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort_with_reset(transport: asyncio.BaseTransport) -> None:
    """Close so the peer sees RST, not FIN: SO_LINGER with a zero timeout, then abort."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    cast(asyncio.Transport, transport).abort()


def _is_reset(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


class ReadSink(Protocol):
    """Something that offers memory for the relay's next read and wants to know what landed there (the
    recorder: the read lands where its session record will be). Called on the engine thread only, always as
    ``read_buffer`` then, if bytes came, ``read_landed`` right before the relay handles them."""

    def read_buffer(self) -> memoryview | None:
        """Where the next read may land, or None for the server's own buffer."""
        ...

    def read_landed(self, data: bytes) -> None:
        """The last buffer offered now holds ``data`` (a copy the relay goes on with)."""
        ...


class _SideProtocol(asyncio.BufferedProtocol):
    """Socket callbacks of one side, forwarded to the connection handler.

    Reads land in the server's one read buffer (``READ_SIZE``) and are copied out at once: bigger reads than the
    loops' own 256 KiB mean fewer messages, so less per-message work for a bulk transfer. While a recording offers
    its staging memory (:class:`ReadSink`), a read lands there instead, where its session record will be, and the
    recording keeps it without a copy of its own."""

    __slots__ = ("handler", "side", "staged")

    def __init__(self, handler: ConnectionHandler, side: Side) -> None:
        self.handler = handler
        self.side = side
        self.staged: memoryview | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check here.
        transport = cast(asyncio.Transport, transport)
        _set_nodelay(transport)
        transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.handler.transport_made(self.side, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        server = self.handler.server
        sink = server.read_sink
        if sink is not None:
            self.staged = sink.read_buffer()
            if self.staged is not None:
                return self.staged
        return server.read_view

    def buffer_updated(self, nbytes: int) -> None:
        staged = self.staged
        if staged is None:
            self.data_received(bytes(self.handler.server.read_view[:nbytes]))
            return
        self.staged = None
        data = bytes(staged[:nbytes])
        sink = self.handler.server.read_sink
        if sink is not None:
            sink.read_landed(data)  # before the relay publishes the message this read becomes
        self.data_received(data)

    def data_received(self, data: bytes) -> None:
        h = self.handler
        if h.relay.phase is _CONNECTING:  # only the client can be read then, and only on uvloop
            h.hold_early_read(data)
            return
        step = h.relay.lanes[self.side].framer.slice_bytes
        if step and (len(data) > step or h.slicing(self.side)):
            h.feed_in_slices(self.side, data, step)
            return
        dispatch = h.dispatch  # ConnectionHandler.run, inlined: this runs for every read
        for c in h.relay.receive_data(self.side, data, _now()):
            dispatch[type(c)](c)
        if h.relay.lanes[self.side].queued_bytes:  # zero on the fast path: no cost there
            h.update_reading(self.side)

    def eof_received(self) -> bool:
        self.handler.eof(self.side)
        return True  # keep the transport open: the other direction may still be flowing (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.lost(self.side, exc)

    def pause_writing(self) -> None:
        self.handler.dest_paused[self.side] = True
        self.handler.update_reading(self.side.other)

    def resume_writing(self) -> None:
        self.handler.dest_paused[self.side] = False
        self.handler.update_reading(self.side.other)


class ConnectionHandler:
    """Owns the two transports of one relayed connection and executes its relay's commands."""

    def __init__(self, server: ProxyServer, relay: Relay) -> None:
        self.server = server
        self.relay = relay
        self.loop = server.loop
        self.transports: list[asyncio.Transport | None] = [None, None]
        self.dest_paused = [False, False]  # indexed by the side being written to
        self.reading_paused = [False, False]  # indexed by the side being read from
        self._told_paused = [False, False]  # what the relay was last told (ReadingPaused), per side read from
        self._slices: list[tuple[bytes, int, int] | None] = [None, None]
        """Per side being read from: a read still being framed a slice per loop iteration (data, offset, step)."""
        self.open_sides = 0
        self._alarm = Alarm(self.loop, self._woken)
        self._closing = False
        self._close_reset = False
        self._connect_task: asyncio.Task[None] | None = None
        self._early: bytes | None = None
        """A client read that landed before the upstream opened (uvloop), handed to the relay when it opens."""
        self.reply_seen: asyncio.Event | None = None  # set by s2c messages while a replay waits for replies
        self.upstream_settled = asyncio.Event()  # the upstream connect succeeded or failed
        self.done = self.loop.create_future()
        self.dispatch: dict[type[cmd.Command], Callable[[cmd.Command], None]] = {
            cmd.Publish: self._publish,  # type: ignore[dict-item]
            cmd.SendData: self._send,  # type: ignore[dict-item]
            cmd.HalfClose: self._half_close,  # type: ignore[dict-item]
            cmd.CloseConnection: self._close,  # type: ignore[dict-item]
            cmd.ResetSide: self._reset_side,  # type: ignore[dict-item]
            cmd.RequestWakeup: self._wakeup,  # type: ignore[dict-item]
            cmd.OpenUpstream: self._open_upstream,  # type: ignore[dict-item]
            cmd.Intercept: self._intercept,  # type: ignore[dict-item]
        }

    # -------------------------------------------------------------------------------- callbacks in

    def transport_made(self, side: Side, transport: asyncio.Transport) -> None:
        self.transports[side] = transport
        self.open_sides += 1
        if self.relay.closed:  # closed while the upstream was connecting: close it the same way
            if self._close_reset:
                _abort_with_reset(transport)
            else:
                transport.close()
        elif side is Side.SERVER:
            # Opened here, not after create_connection() returns: the server may send before that, and its
            # bytes must find the relay already relaying.
            cfg = self.server.config
            peer = transport.get_extra_info("peername") or (cfg.target_host, cfg.target_port)
            self.run(self.relay.handle(ev.UpstreamOpened(_now(), (str(peer[0]), int(peer[1])))))
            early, self._early = self._early, None
            client = self.transports[Side.CLIENT]
            if early is not None and client is not None and not self.relay.closed:
                cast(_SideProtocol, client.get_protocol()).data_received(early)
            self.update_reading(Side.CLIENT)

    def hold_early_read(self, data: bytes) -> None:
        """Keep a client read that landed while the upstream connects, and pause the client.

        The client is not read while the upstream connects (a slow connect must not buffer without bound, and what
        waits in the kernel meanwhile is not delayed by sockscope). asyncio honours a pause made in
        ``connection_made``; uvloop starts reading right after ``connection_made`` returns (basetransport.pyx,
        ``_call_connection_made``), in the same loop pass, and polls before any callback scheduled from there can
        run (libuv runs the idle phase, where ``call_soon`` callbacks run, before its poll), so no loop callback can
        pause ahead of its first read. That one read is set aside here instead, reading is paused at once (libuv
        reads no more in that pass), and the relay gets the bytes when the upstream opens, as if the kernel had kept
        them: nothing is queued or published with the connect time as a delay. At most one read (``READ_SIZE``)."""
        self._early = data if self._early is None else self._early + data
        self.update_reading(Side.CLIENT)

    def feed_in_slices(self, side: Side, data: bytes, step: int) -> None:
        """Frame ``data`` a slice per loop iteration, reading from ``side`` paused meanwhile: a framer that scans
        in Python (JSON) could otherwise hold every other connection for the whole read."""
        pending = self._slices[side]
        if pending is not None:  # a read that came before the pause took effect: after what is left, in order
            self._slices[side] = (pending[0][pending[1]:] + data, 0, step)
            return
        self._slices[side] = (data, 0, step)
        self.update_reading(side)
        self._next_slice(side)

    def slicing(self, side: Side) -> bool:
        return self._slices[side] is not None

    def _next_slice(self, side: Side) -> None:
        pending = self._slices[side]
        if pending is None:  # finished early by eof() or lost()
            return
        data, offset, step = pending
        end = offset + step
        if end < len(data):
            self._slices[side] = (data, end, step)
            self.loop.call_soon(self._next_slice, side)
        else:
            self._slices[side] = None
        self.run(self.relay.receive_data(side, data[offset:end], _now()))
        if self._slices[side] is None:
            self.update_reading(side)

    def _finish_slices(self, side: Side) -> None:
        """What is left of a sliced read goes in at once, before the side's EOF or loss (stream order)."""
        pending = self._slices[side]
        if pending is not None:
            data, offset, _ = pending
            self._slices[side] = None
            self.run(self.relay.receive_data(side, data[offset:], _now()))

    def eof(self, side: Side) -> None:
        self._finish_slices(side)
        self.run(self.relay.handle(ev.EofReceived(_now(), side)))

    def lost(self, side: Side, exc: Exception | None) -> None:
        self._finish_slices(side)
        self.transports[side] = None
        self.open_sides -= 1
        if exc is not None and not self.relay.closed:
            self.run(self.relay.handle(ev.ConnectionLost(_now(), side, _is_reset(exc), str(exc) or type(exc).__name__)))
        elif not self.relay.closed and not self._closing:
            # Closed without an error and without our asking: treat as an EOF followed by the end.
            self.run(self.relay.handle(ev.EofReceived(_now(), side)))
            if not self.relay.closed:
                self.run(self.relay.handle(ev.ConnectionLost(_now(), side, False, "socket closed")))
        self._maybe_done()

    def run(self, commands: list[cmd.Command]) -> None:
        dispatch = self.dispatch
        for c in commands:
            dispatch[type(c)](c)

    def update_reading(self, source: Side) -> None:
        """Pause or resume reading ``source`` from the backpressure state of its direction."""
        t = self.transports[source]
        if t is None:
            return
        lane = self.relay.lanes[Direction.from_side(source)]
        stalled = (self.dest_paused[source.other] or lane.queued_bytes > QUEUE_CAP
                   or self.relay.phase is Phase.CONNECTING or self._slices[source] is not None)
        # Ask the transport, not a cached flag: uvloop starts reading after connection_made returns, undoing a
        # pause made inside it.
        reading = t.is_reading()
        if stalled and reading:
            self.reading_paused[source] = True
            t.pause_reading()
        elif not stalled and not reading and lane.queued_bytes <= QUEUE_CAP // 2:
            self.reading_paused[source] = False
            t.resume_reading()
        if lane.watch:
            # Bytes waiting in the framer while the side is not read are not late because of the framing. The
            # transport is asked, not the branch taken: uvloop may have resumed reading by itself.
            paused = not t.is_reading()
            if paused != self._told_paused[source]:
                self._told_paused[source] = paused
                self.run(self.relay.handle(ev.ReadingPaused(_now(), source, paused)))

    # -------------------------------------------------------------------------------- commands out

    def _publish(self, c: cmd.Publish) -> None:
        r = c.record
        if self.reply_seen is not None and type(r) is Message and r.direction is Direction.S2C:
            self.reply_seen.set()
        self.server.publish(r)

    def _intercept(self, c: cmd.Intercept) -> None:
        self.server.intercept(c.record)

    def _send(self, c: cmd.SendData) -> None:
        t = self.transports[c.side]
        if t is not None:
            t.write(c.data)

    def _half_close(self, c: cmd.HalfClose) -> None:
        t = self.transports[c.side]
        if t is not None and t.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                t.write_eof()

    def _close(self, c: cmd.CloseConnection) -> None:
        self._closing = True
        self._close_reset = c.reset
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()  # nothing left to connect for; shutdown must not leave it pending
        self._alarm.cancel()
        for t in self.transports:
            if t is None:
                continue
            if c.reset:
                _abort_with_reset(t)
            else:
                t.close()  # flushes what is buffered, then closes
        self._maybe_done()

    def _reset_side(self, c: cmd.ResetSide) -> None:
        t = self.transports[c.side]
        if t is not None:
            _abort_with_reset(t)

    def _wakeup(self, c: cmd.RequestWakeup) -> None:
        self._alarm.set(c.at)

    def _woken(self, now: int) -> None:
        self.run(self.relay.handle(ev.WakeupFired(now)))
        for side in (Side.CLIENT, Side.SERVER):
            self.update_reading(side)

    def _open_upstream(self, c: cmd.OpenUpstream) -> None:
        # The client is not read while the upstream connects, so a slow connect cannot buffer without bound. The
        # second look, on the next loop pass, catches uvloop, which starts reading after connection_made returns
        # (a read that lands before it is kept by hold_early_read).
        self.update_reading(Side.CLIENT)
        self.loop.call_soon(self.update_reading, Side.CLIENT)
        self._connect_task = spawn(self._connect(), name=f"upstream-{self.relay.conn_id}")

    async def _connect(self) -> None:
        try:
            await self._try_connect()
        finally:
            self.upstream_settled.set()

    async def _try_connect(self) -> None:
        cfg = self.server.config
        try:
            transport, _ = await asyncio.wait_for(
                self.loop.create_connection(lambda: _SideProtocol(self, Side.SERVER),
                                            cfg.target_host, cfg.target_port),
                cfg.connect_timeout)
        except TimeoutError:
            self.run(self.relay.handle(ev.UpstreamFailed(_now(), True, False,
                                                         f"no answer within {cfg.connect_timeout:g} s")))
            return
        except OSError as e:
            refused = isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED
            self.run(self.relay.handle(ev.UpstreamFailed(_now(), False, refused, e.strerror or str(e))))
            return
        del transport  # transport_made has already started relaying (or closed it, if the relay ended)

    def _maybe_done(self) -> None:
        if self.relay.closed and self.open_sides <= 0 and not self.done.done():
            self._alarm.cancel()
            self.done.set_result(None)
            self.server.forget(self)


class ProxyServer:
    """Listens for clients and relays each to the target. Create, ``await start()``, ``await shutdown()``."""

    def __init__(self, config: ProxyConfig, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.loop = loop or asyncio.get_event_loop()
        self.clock = Clock.now()
        self.ids = Ids(*config.first_ids)
        self.framing = config.framing
        self.handlers: dict[int, ConnectionHandler] = {}
        self.read_view = memoryview(bytearray(READ_SIZE))
        self.read_sink: ReadSink | None = None
        """Offers the memory reads land in instead of ``read_view`` (set by a recording)."""
        """Where every read of this server's loop lands before it is copied into a message (see _SideProtocol)."""
        self.shared = Shared()
        self.global_conditions = _without_one_shots(config.conditions)
        self.overrides: dict[int, Conditions] = {}
        self.capturing = True
        self.history: dict[int, list[tuple[int, bytes]]] = {}  # conn id -> c2s (arrival ns, bytes), for replay
        self._history_bytes = 0
        self._history_conn_bytes: dict[int, int] = {}
        self.history_truncated: set[int] = set()  # connections too big to keep in memory for replay
        self._subscribers: list[Subscriber] = []
        self._message_subscribers: list[Subscriber] = []
        self._server: asyncio.Server | None = None
        self.listen_addr: tuple[str, int] | None = None
        self.udp: UdpShell | None = None
        """The UDP side (``--udp``): its datagram core holds the flows, which share ids, conditions and
        subscribers with the TCP connections."""
        self.stopped_listening = False
        """Between :meth:`stop_listening` and :meth:`listen_again` (the pytest plugin's ``proxy.down()``)."""
        self.refusing = False
        """An outage (``proxy.scenario``, the ``refuse_connections`` command): each new TCP connection is reset as
        soon as it is accepted, so the client sees its connection fail; open ones are left alone."""
        self.refused = 0
        """TCP connections reset on arrival while :attr:`refusing`."""
        self.addons: AddonHost | None = None
        """The addon files loaded (``-s FILE``, ``load_addon``): made on the first load (proxy.addonhost)."""
        self.addons_over_control = True
        """Whether control clients may load addons (the command line turns it off for a remote control endpoint:
        loading a file runs its code in this process)."""

    # ------------------------------------------------------------------------------ subscribers

    def subscribe(self, callback: Subscriber, *, messages: bool = True) -> Callable[[], None]:
        """Call ``callback(record)`` on the loop thread for every published record; returns an unsubscribe.

        ``messages=False`` leaves out ``Message`` and ``MessageUpdated`` (a quiet printer needs only connection
        events), which keeps the per-message path short.
        """
        self._subscribers.append(callback)
        if messages:
            self._message_subscribers.append(callback)

        def unsubscribe() -> None:
            for subs in (self._subscribers, self._message_subscribers):
                with contextlib.suppress(ValueError):
                    subs.remove(callback)

        return unsubscribe

    def publish(self, record: Record) -> None:
        kind = type(record)
        if kind is Message:
            if record.direction is _C2S:  # type: ignore[union-attr]  # only c2s is kept: no call for s2c
                self._remember(record)  # type: ignore[arg-type]
            if not self.capturing:
                return
            subscribers = self._message_subscribers
        elif kind is MessageUpdated:
            if not self.capturing:
                return
            subscribers = self._message_subscribers
        else:
            subscribers = self._subscribers
        for s in subscribers:
            try:
                s(record)
            except Exception as e:  # a broken subscriber must never break relaying
                say(f"sockscope: subscriber {s!r} failed: {e!r}", err=True)

    def notice(self, level: str, text: str) -> None:
        self.publish(Notice(level, text, _now()))

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, *, accept: bool = True) -> tuple[str, int]:
        """Listen; with ``accept`` False the port listens (and is returned) but connections wait in the kernel's
        accept queue, their bytes in their socket buffers, until :meth:`start_accepting` (datagrams likewise wait
        in the UDP socket's buffer).

        With ``config.udp`` a UDP socket is bound to the same host and port number (with port 0, to the port
        TCP got); with ``config.tcp`` False only UDP listens."""
        cfg = self.config
        if not cfg.tcp and not cfg.udp:
            raise ProxyError("nothing to relay: ask for TCP, UDP or both")
        if cfg.tcp:
            await self._start_tcp(accept)
        if cfg.udp:
            await self._start_udp(accept)
        assert self.listen_addr is not None
        return self.listen_addr

    async def _start_udp(self, accept: bool) -> None:
        from proxy.datagram import DatagramCore
        from proxy.udpserver import UdpShell

        cfg = self.config
        port = self.listen_addr[1] if self.listen_addr is not None else cfg.listen_port
        try:
            core = DatagramCore(self.ids, (cfg.target_host, cfg.target_port), self.global_conditions, cfg.seed,
                                cfg.udp_idle_timeout, cfg.udp_max_flows, shared=self.shared)
        except ValueError as e:
            raise ProxyError(str(e)) from None
        shell = UdpShell(self, core)
        try:
            addr = shell.bind(cfg.listen_host, port)
        except OSError as e:
            if self._server is not None:
                self._server.close()
            if e.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise ProxyError(f"UDP port {port} on {cfg.listen_host} is already in use; pick another with "
                                 f"--listen {cfg.listen_host}:PORT") from None
            raise ProxyError(f"cannot listen for UDP on {cfg.listen_host}:{port} (or reach the target "
                             f"{cfg.target_host}:{cfg.target_port}): {e.strerror or e}") from None
        self.udp = shell
        if self.listen_addr is None:
            self.listen_addr = addr
        if accept:
            await shell.serve()

    async def _start_tcp(self, accept: bool) -> None:
        cfg = self.config
        try:
            if accept:
                self._server = await self.loop.create_server(
                    # reuse_address left to asyncio: SO_REUSEADDR on POSIX only (on Windows it lets a port be
                    # stolen)
                    self._accept, cfg.listen_host, cfg.listen_port, backlog=1024)
            else:
                # A server that does not serve yet has not called listen() either: connecting would be refused.
                # socket.create_server listens at once (and sets SO_REUSEADDR on POSIX only, like asyncio).
                sock = socket.create_server((cfg.listen_host, cfg.listen_port), backlog=1024)
                sock.setblocking(False)
                self._server = await self.loop.create_server(self._accept, sock=sock, backlog=1024,
                                                             start_serving=False)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise ProxyError(f"port {cfg.listen_port} on {cfg.listen_host} is already in use; "
                                 f"pick another with --listen {cfg.listen_host}:PORT") from None
            raise ProxyError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: {e.strerror or e}") from None
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.listen_addr = (str(host), int(port))

    async def stop_listening(self, reset: bool = True) -> None:
        """Take the proxy off its port, as if the server had gone away: the listening sockets close, so a client's
        TCP connect is refused (and a connected UDP client sees "port unreachable"); with ``reset`` every open TCP
        connection is reset (RST to both sides). UDP flows always end (there is no one to relay to). The port
        number is kept: :meth:`listen_again` listens on it again. (A scenario's outage, :attr:`refusing`, keeps the
        port and resets each new connection instead: it must work for a client of the control protocol, which
        cannot re-bind the port for the proxy.)"""
        if self.stopped_listening:
            return
        self.stopped_listening = True
        # Only the listening socket closes (asyncio's Server.close leaves accepted connections alone); its accept
        # queue is reset by the kernel, as a dead server's would be.
        if self._server is not None:
            self._server.close()
        if self.udp is not None:
            for cid in list(self.udp.core.flows):
                self.close_connection(cid, detail="the proxy is down")
            self.udp.close_listener()
        if reset:
            for cid in list(self.handlers):
                self.close_connection(cid, reset=True, detail="the proxy is down")
        await asyncio.sleep(0)  # let the transports' close callbacks run

    async def listen_again(self) -> None:
        """Listen again on the port :meth:`stop_listening` left (``ProxyError`` if another program took it
        meanwhile)."""
        if not self.stopped_listening:
            return
        assert self.listen_addr is not None
        host, port = self.listen_addr
        try:
            if self.config.tcp:
                # SO_REUSEADDR (asyncio's default on POSIX) lets the port be bound again despite TIME_WAIT.
                self._server = await self.loop.create_server(self._accept, host, port, backlog=1024)
            if self.udp is not None:
                self.udp.bind(host, port)
                await self.udp.serve()
        except OSError as e:
            raise ProxyError(f"cannot listen on {host}:{port} again: {e.strerror or e} (another program took the "
                             "port while the proxy was down)") from None
        self.stopped_listening = False

    async def start_accepting(self) -> None:
        """Accept the connections waiting since ``start(accept=False)``, and every later one."""
        if self._server is not None and not self._server.is_serving():
            await self._server.start_serving()
        if self.udp is not None:
            await self.udp.serve()

    async def probe_target(self) -> str | None:
        """A warning text if nothing listens on a local target yet (the proxy keeps listening regardless).

        It never connects: a connection would use up the one ``accept()`` of a server that serves a single client,
        which is exactly what the tutorial's server does. For a target on this machine, a port that can be bound
        has no listener; a remote target is not checked (each client's connection reports its own failure).
        """
        cfg = self.config
        if not is_loopback(cfg.target_host):
            return None
        try:
            infos = socket.getaddrinfo(cfg.target_host, cfg.target_port, type=socket.SOCK_STREAM)
        except OSError:
            return None
        for family, kind, proto, _, addr in infos:
            with socket.socket(family, kind, proto) as s:
                try:
                    s.bind(addr)  # no SO_REUSEADDR: fails while anything holds the port
                except OSError:
                    return None
        return (f"nothing is listening on {cfg.target_host}:{cfg.target_port} yet (is your server running?); "
                "sockscope keeps listening and tries the server again for each client")

    def _new_handler(self, client_addr: tuple[str, int], replay_of: int | None = None) -> ConnectionHandler:
        conn_id = self.ids.conn()
        relay = Relay(conn_id, client_addr, (self.config.target_host, self.config.target_port), self.framing,
                      self.ids, replay_of, self.global_conditions, self.shared, self.config.seed)
        handler = ConnectionHandler(self, relay)
        self.handlers[conn_id] = handler
        return handler

    def _accept(self) -> asyncio.BaseProtocol:
        if self.refusing:
            self.refused += 1
            return _RefusedProtocol()
        return _AcceptedProtocol(self._new_handler(("?", 0)))

    def forget(self, handler: ConnectionHandler) -> None:
        self.handlers.pop(handler.relay.conn_id, None)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop listening, flush what is pending on every connection, close them cleanly."""
        if self._server is not None:
            self._server.close()
        if self.addons is not None:
            self.addons.close()  # messages held for addons go on as they are, with what is pending
        now = _now()
        handlers = list(self.handlers.values())
        for h in handlers:
            h.run(h.relay.handle(ev.ShutdownRequested(now)))
        if handlers:
            await asyncio.wait([h.done for h in handlers], timeout=grace)
            tasks = [h._connect_task for h in handlers if h._connect_task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            for h in handlers:
                if not h.done.done():
                    for t in h.transports:
                        if t is not None:
                            t.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self.udp is not None:
            await self.udp.shutdown()

    # ------------------------------------------------------------------------------ commands from users

    # All of these run on the engine thread and raise KeyError/ValueError with a message for the user.

    def _send_event(self, h: ConnectionHandler, event: ev.Event) -> None:
        h.run(h.relay.handle(event))
        for side in (Side.CLIENT, Side.SERVER):
            h.update_reading(side)

    def _targets(self, conn_id: int | None, *, udp_ok: bool = False) -> list[ConnectionHandler]:
        """The TCP connections a command applies to: all, or one (none when ``conn_id`` is a UDP flow and the
        caller handles flows itself)."""
        if conn_id is None:
            return list(self.handlers.values())
        if udp_ok and self._flow(conn_id):
            return []
        return [self._handler(conn_id)]

    def _flow(self, conn_id: int | None) -> bool:
        """Whether ``conn_id`` is an open UDP flow (TCP connections and flows share one numbering)."""
        return conn_id is not None and self.udp is not None and conn_id in self.udp.core.flows

    def _udp_event(self, event: ev.Event) -> None:
        assert self.udp is not None
        self.udp.run(self.udp.core.handle(event))

    def inject(self, conn_id: int, direction: Direction, data: bytes, origin: Origin = Origin.INJECTED) -> None:
        if self._flow(conn_id):
            from proxy.datagram import DatagramInjected

            self._udp_event(DatagramInjected(_now(), conn_id, direction, bytes(data), origin))
            return
        self._send_event(self._handler(conn_id), ev.DataInjected(_now(), direction, bytes(data), origin))

    # ------------------------------------------------------------------------------ addons (proxy.addonhost)

    async def load_addon(self, path: str) -> list[str]:
        """Load the addon file ``path`` (again, if it is loaded: its new version replaces the old); returns the
        names of its addons. ``AddonLoadError`` (a ``ValueError``) says what is wrong, with the file's line."""
        if self.addons is None:
            from proxy.addonhost import AddonHost

            self.addons = AddonHost(self)
        return await self.addons.load(path)

    def unload_addon(self, path: str) -> list[str]:
        if self.addons is None:
            raise ValueError("no addon is loaded")
        return self.addons.unload(path)

    def set_intercept(self, on: bool) -> None:
        """Hold every message not held for the user for the addons (``cmd.Intercept``), or stop doing so."""
        if self.shared.intercept == on:
            return
        self.shared.intercept = on
        self.shared.update()
        if self.udp is not None:
            self.udp.core.sync_shared()

    def intercept(self, record: Message) -> None:
        """A message the relay or the datagram core held for the addons (``cmd.Intercept``)."""
        if self.addons is not None:
            self.addons.intercept(record)
        else:  # no host, no intercept flag: cannot happen, but a message must never stay held for nobody
            self.loop.call_soon(self.settle, record)

    def settle(self, record: Message, data: bytes | None = None, drop: bool = False) -> bool:
        """What the addons decided for a message held for them: release it (as it is, or as ``data``) or drop it.
        False, and nothing done, when it is no longer held (the user released it, its connection ended)."""
        if self.udp is not None and record.id in self.udp.core.held:
            from proxy.datagram import HeldDropRequested, HeldReleaseRequested

            self._udp_event(HeldDropRequested(_now(), record.id) if drop else
                            HeldReleaseRequested(_now(), record.id, data))
            return True
        h = self.handlers.get(record.conn_id)
        if h is None or not any(p.msg_id == record.id and p.held for lane in h.relay.lanes for p in lane.queue):
            return False
        self._send_event(h, ev.DropRequested(_now(), record.id) if drop else
                         ev.ReleaseRequested(_now(), record.id, data))
        return True

    def close_connection(self, conn_id: int, reset: bool = False, detail: str = "", after_s: float = 0.0) -> None:
        text = detail or (("reset" if reset else "closed") + " by the user")
        if after_s > 0:
            text += f" after {after_s:g} s"
        if self._flow(conn_id):
            from proxy.datagram import FlowCloseRequested

            def close_flow() -> None:
                if self._flow(conn_id):
                    self._udp_event(FlowCloseRequested(_now(), conn_id, text))

            if after_s > 0:
                self.loop.call_later(after_s, close_flow)
            else:
                close_flow()
            return
        h = self._handler(conn_id)

        def close() -> None:
            if not h.relay.closed:
                self._send_event(h, ev.CloseRequested(_now(), reset, text))

        if after_s > 0:
            self.loop.call_later(after_s, close)
        else:
            close()

    def conditions_for(self, conn_id: int | None = None) -> Conditions:
        if conn_id is None:
            return self.global_conditions
        if self._flow(conn_id):
            assert self.udp is not None
            return self.udp.core.conditions_of(conn_id)
        return self._handler(conn_id).relay.conditions

    def set_conditions(self, conditions: Conditions | None, conn_id: int | None = None) -> None:
        """Replace the global default (``conn_id`` None) or one connection's override; None clears an override.

        One-shot counters in ``conditions`` (drop_next, duplicate_next) are armed once, not stored.
        """
        now = _now()
        flows: list[int] = []
        if conn_id is None:
            if conditions is None:
                raise ValueError("global conditions cannot be cleared; set passthrough conditions instead")
            self.global_conditions = _without_one_shots(conditions)
            targets = [h for cid, h in self.handlers.items() if cid not in self.overrides]
            if self.udp is not None:
                from proxy.datagram import DefaultConditionsChanged

                self._udp_event(DefaultConditionsChanged(now, self.global_conditions))
                flows = [cid for cid in self.udp.core.flows if cid not in self.overrides]
        else:
            if not self._flow(conn_id):
                targets = [self._handler(conn_id)]
            else:
                targets, flows = [], [conn_id]
            if conditions is None:
                self.overrides.pop(conn_id, None)
            else:
                self.overrides[conn_id] = _without_one_shots(conditions)
        for h in targets:
            effective = self.overrides.get(h.relay.conn_id, self.global_conditions)
            self._send_event(h, ev.ConditionsChanged(now, effective))
        if flows:
            from proxy.datagram import FlowConditionsChanged

            for cid in flows:
                self._udp_event(FlowConditionsChanged(now, cid, self.overrides.get(cid, self.global_conditions)))
        if conditions is not None:
            for d in Direction:
                dc = conditions.for_direction(d)
                for kind, count in (("drop", dc.drop_next), ("duplicate", dc.duplicate_next)):
                    if count:
                        self.arm_fault(d, kind, count, conn_id)

    def spike_now(self, direction: Direction | None, add_ms: float, for_s: float,
                  conn_id: int | None = None) -> None:
        """A one-shot lag spike starting now; it also delays what is waiting and not yet released."""
        now = _now()
        spike = Spike(add_ms=add_ms, for_s=for_s, start_ns=now)
        directions = list(Direction) if direction is None else [direction]
        if self.udp is not None and (conn_id is None or self._flow(conn_id)):
            from proxy.datagram import FlowSpikeStarted

            for cid in list(self.udp.core.flows) if conn_id is None else [conn_id]:
                for d in directions:
                    self._udp_event(FlowSpikeStarted(now, cid, d, spike))
        for h in self._targets(conn_id, udp_ok=True):
            for d in directions:
                self._send_event(h, ev.SpikeStarted(now, d, spike))
        if conn_id is None:
            for d in directions:
                dc = self.global_conditions.for_direction(d)
                self.global_conditions = self.global_conditions.replace_direction(
                    d, replace(dc, spikes=(*dc.spikes, spike)))

    def arm_fault(self, direction: Direction, kind: str, count: int = 1, conn_id: int | None = None) -> None:
        if kind not in ("drop", "duplicate") or count < 1:
            raise ValueError("fault must be drop or duplicate with a count of at least 1")
        if self.udp is not None and (conn_id is None or self._flow(conn_id)):
            from proxy.datagram import FlowFaultArmed

            for cid in list(self.udp.core.flows) if conn_id is None else [conn_id]:
                self._udp_event(FlowFaultArmed(_now(), cid, direction, kind, count))
        for h in self._targets(conn_id, udp_ok=True):
            self._send_event(h, ev.FaultArmed(_now(), direction, kind, count))

    def hold_next(self, direction: Direction, conn_id: int | None = None, count: int = 1) -> None:
        """Hold the next ``count`` messages in ``direction`` (on any connection when ``conn_id`` is None)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if self._flow(conn_id):
            from proxy.datagram import FlowHoldArmed

            self._udp_event(FlowHoldArmed(_now(), conn_id, direction, count))  # type: ignore[arg-type]
            return
        if conn_id is None:
            self.shared.hold_next[direction] += count
            self.shared.update()
            if self.udp is not None:
                self.udp.core.sync_shared()
        else:
            self._send_event(self._handler(conn_id), ev.HoldArmed(_now(), direction, count))

    def cancel_hold_next(self) -> None:
        self.shared.hold_next = [0, 0]
        self.shared.update()
        if self.udp is not None:
            self.udp.core.sync_shared()

    def _udp_held(self, msg_id: int) -> bool:
        return self.udp is not None and msg_id in self.udp.core.held

    def _holder(self, msg_id: int) -> ConnectionHandler:
        for h in self.handlers.values():
            if any(p.msg_id == msg_id for lane in h.relay.lanes for p in lane.queue):
                return h
        raise KeyError(f"message {msg_id} is not held or waiting (already forwarded, dropped, or closed)")

    def release(self, msg_id: int, data: bytes | None = None) -> None:
        """Forward a held message, as it is or with edited bytes (a datagram: one datagram of exactly these)."""
        if self._udp_held(msg_id):
            from proxy.datagram import HeldReleaseRequested

            self._udp_event(HeldReleaseRequested(_now(), msg_id, None if data is None else bytes(data)))
            return
        self._send_event(self._holder(msg_id), ev.ReleaseRequested(_now(), msg_id,
                                                                   None if data is None else bytes(data)))

    def drop(self, msg_id: int) -> None:
        if self._udp_held(msg_id):
            from proxy.datagram import HeldDropRequested

            self._udp_event(HeldDropRequested(_now(), msg_id))
            return
        self._send_event(self._holder(msg_id), ev.DropRequested(_now(), msg_id))

    def release_all(self, conn_id: int | None = None) -> None:
        if self.udp is not None and (conn_id is None or self._flow(conn_id)) and self.udp.core.held:
            from proxy.datagram import HeldReleaseAllRequested

            self._udp_event(HeldReleaseAllRequested(_now(), conn_id))
        for h in self._targets(conn_id, udp_ok=True):
            self._send_event(h, ev.ReleaseAllRequested(_now()))

    def held(self) -> list[int]:
        tcp = [m for h in self.handlers.values() for m in h.relay.held()]
        return tcp + self.udp.core.held_ids() if self.udp is not None else tcp

    def set_rules(self, rules: list[Rule]) -> None:
        self.shared.rules = tuple(rules)
        self.shared.update()
        if self.udp is not None:
            self.udp.core.sync_shared()

    def set_framing(self, framing: FramingSpec) -> None:
        """Framing for connections accepted from now on (``set_connection_framing`` changes a live one)."""
        self.framing = framing

    def set_connection_framing(self, conn_id: int, framing: str, direction: Direction | None = None) -> None:
        """The user's framing for a live connection (both directions, or one), from each direction's next read on;
        ``auto`` infers again. A bad name raises ``FramingError`` (a ValueError) with a message for the user."""
        name = normalise_name(framing)
        make_framer(name, self.framing.max_frame)
        h = self._handler(conn_id)
        for d in (Direction.C2S, Direction.S2C) if direction is None else (direction,):
            self._send_event(h, ev.FramingRequested(_now(), d, name))

    def pause_capture(self) -> None:
        self.capturing = False

    def resume_capture(self) -> None:
        self.capturing = True

    def snapshot(self) -> dict[str, object]:
        """Current state, for a subscriber that attaches late."""
        conns = []
        for cid, h in self.handlers.items():
            r = h.relay
            conns.append({
                "conn": cid, "client": list(r.client_addr), "target": list(r.target_addr), "transport": "tcp",
                "phase": r.phase.value,
                "replay_of": r.replay_of, "override": cid in self.overrides,
                "conditions": r.conditions.to_dict(), "held": r.held(),
                "bytes_c2s": r.lanes[0].bytes_out, "bytes_s2c": r.lanes[1].bytes_out,
                "messages_c2s": r.lanes[0].messages_out, "messages_s2c": r.lanes[1].messages_out,
                # the framing in force per direction (inferred with auto; "auto" while inference watches)
                "framing_c2s": r.lanes[0].framing, "framing_s2c": r.lanes[1].framing,
            })
        udp: dict[str, object] | None = None
        if self.udp is not None:
            core = self.udp.core
            conns.extend({**core.flow_snapshot(cid), "override": cid in self.overrides} for cid in core.flows)
            udp = {"flows": len(core.flows), "max_flows": core.max_flows, "idle_timeout_s": core.idle_timeout_s,
                   "refused": core.refused, "overflowed": core.overflowed, "send_dropped": self.udp.send_dropped}
        return {
            "listen": list(self.listen_addr) if self.listen_addr else None,
            "target": [self.config.target_host, self.config.target_port],
            "transports": [t for t, on in (("tcp", self.config.tcp), ("udp", self.config.udp)) if on],
            "udp": udp,
            "framing": str(self.framing), "conditions": self.global_conditions.to_dict(),
            "rules": [r.to_dict() for r in self.shared.rules], "hold_next": list(self.shared.hold_next),
            "capturing": self.capturing, "connections": conns,
        }

    # ------------------------------------------------------------------------------ session replay

    def _remember(self, m: Message) -> None:
        """Keep a c2s message for session replay (``publish`` calls this for c2s messages only)."""
        if m.origin is _DUPLICATE:
            return
        hist = self.history.get(m.conn_id)
        if hist is None:
            if m.conn_id in self.history_truncated:
                return
            hist = self.history[m.conn_id] = []
            self._history_conn_bytes[m.conn_id] = 0
        n = len(m.data)
        if self._history_conn_bytes[m.conn_id] + n > HISTORY_CONN_CAP:
            # Past the cap the recording of this connection stops; replay from a session file still works.
            self.history_truncated.add(m.conn_id)
            self._history_bytes -= self._history_conn_bytes.pop(m.conn_id)
            del self.history[m.conn_id]
            return
        hist.append((m.arrival_ns, m.data))
        self._history_conn_bytes[m.conn_id] += n
        self._history_bytes += n
        while self._history_bytes > HISTORY_CAP and len(self.history) > 1:
            oldest = next(iter(self.history))
            del self.history[oldest]
            self._history_bytes -= self._history_conn_bytes.pop(oldest)

    async def replay(self, conn_id: int, messages: list[bytes] | None = None, mode: str = "timing",
                     reply_timeout: float = 5.0, transport: str | None = None) -> int:
        """Replay a connection's client side on a fresh upstream connection; returns the new connection's id.

        ``mode``: ``timing`` keeps the original gaps, ``fast`` sends back to back, ``wait-reply`` waits for a
        server message (or ``reply_timeout``) after each one. ``messages`` replaces the recorded ones (for
        sessions loaded from a file). A UDP flow (``transport`` "udp", or a flow this proxy relayed) is replayed
        as a new flow from a new source port, each message one datagram.
        """
        if mode not in REPLAY_MODES:
            raise ValueError(f"unknown replay mode {mode!r}; expected one of {', '.join(REPLAY_MODES)}")
        if transport not in (None, "tcp", "udp"):
            raise ValueError(f"unknown transport {transport!r}; expected tcp or udp")
        udp = transport == "udp" or (transport is None and self.udp is not None and self.udp.core.was_flow(conn_id))
        if udp and self.udp is None:
            raise ValueError("this proxy does not relay UDP (start it with --udp to replay a UDP flow)")
        if messages is not None:
            items = [(0, bytes(m)) for m in messages]
        else:
            if conn_id in self.history_truncated:
                raise ValueError(f"connection #{conn_id} sent more than {HISTORY_CONN_CAP >> 20} MiB, more than "
                                 "sockscope keeps in memory for replay; replay it from a recorded session instead")
            if conn_id not in self.history:
                raise KeyError(f"nothing recorded from the client of connection #{conn_id} to replay")
            items = list(self.history[conn_id])
        if udp:
            return self._replay_flow(conn_id, items, mode, reply_timeout)
        h = self._new_handler(("replay", 0), replay_of=conn_id)
        h.reply_seen = asyncio.Event()
        spawn(self._drive_replay(h, items, mode, reply_timeout), name=f"replay-{h.relay.conn_id}")
        return h.relay.conn_id

    async def _drive_replay(self, h: ConnectionHandler, items: list[tuple[int, bytes]], mode: str,
                            reply_timeout: float) -> None:
        h.run(h.relay.handle(ev.ClientAccepted(_now())))
        await h.upstream_settled.wait()
        start = _now()
        first = items[0][0] if items else 0
        for arrival, data in items:
            if h.relay.closed:
                return
            if mode == "timing" and arrival:
                wait = (start + (arrival - first) - _now()) / 1e9
                if wait > 0:
                    await asyncio.sleep(wait)
            assert h.reply_seen is not None
            h.reply_seen.clear()
            self._send_event(h, ev.DataInjected(_now(), Direction.C2S, data, Origin.REPLAYED))
            if mode == "wait-reply":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(h.reply_seen.wait(), reply_timeout)
        if not h.relay.closed:
            self._send_event(h, ev.EofReceived(_now(), Side.CLIENT))

    def _replay_flow(self, conn_id: int, items: list[tuple[int, bytes]], mode: str, reply_timeout: float) -> int:
        shell = self.udp
        assert shell is not None
        new, out = shell.core.open_replay(conn_id, _now())
        seen = shell.reply_seen[new] = asyncio.Event()
        shell.run(out)  # opens its socket at once (or ends the flow with an error notice)
        spawn(self._drive_flow_replay(new, items, mode, reply_timeout, seen), name=f"replay-{new}")
        return new

    async def _drive_flow_replay(self, new: int, items: list[tuple[int, bytes]], mode: str, reply_timeout: float,
                                 seen: asyncio.Event) -> None:
        """Send the datagrams into replay flow ``new``; it ends by the idle timeout, so late replies are seen."""
        from proxy.datagram import DatagramInjected

        shell = self.udp
        assert shell is not None
        try:
            start = _now()
            first = items[0][0] if items else 0
            for arrival, data in items:
                if new not in shell.core.flows:
                    return
                if mode == "timing" and arrival:
                    wait = (start + (arrival - first) - _now()) / 1e9
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if new not in shell.core.flows:
                        return
                seen.clear()
                self._udp_event(DatagramInjected(_now(), new, Direction.C2S, data, Origin.REPLAYED))
                if mode == "wait-reply":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(seen.wait(), reply_timeout)
        finally:
            shell.reply_seen.pop(new, None)

    def _handler(self, conn_id: int) -> ConnectionHandler:
        try:
            return self.handlers[conn_id]
        except KeyError:
            raise KeyError(f"no open connection #{conn_id}") from None


def _without_one_shots(c: Conditions) -> Conditions:
    return Conditions(replace(c.c2s, drop_next=0, duplicate_next=0), replace(c.s2c, drop_next=0, duplicate_next=0))


class _RefusedProtocol(asyncio.Protocol):
    """A client accepted during an outage: reset at once (a listening port cannot refuse one connection and
    accept the next, so the client's connect succeeds and its first read or write fails with a reset)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _abort_with_reset(transport)


class _AcceptedProtocol(_SideProtocol):
    """The client side: on accept it fills in the peer address and starts the relay."""

    __slots__ = ()

    def __init__(self, handler: ConnectionHandler) -> None:
        super().__init__(handler, Side.CLIENT)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.handler.relay.client_addr = (str(peer[0]), int(peer[1]))
        super().connection_made(transport)
        h = self.handler
        h.run(h.relay.handle(ev.ClientAccepted(_now())))

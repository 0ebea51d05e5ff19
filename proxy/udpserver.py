"""The UDP shell: one listening datagram socket, one connected upstream socket per flow, one timer.

Role: turns socket callbacks into events for the :class:`proxy.datagram.DatagramCore` and executes the commands
that come back, in order, exactly as :mod:`proxy.server` does for a TCP connection's relay. Records go to
:meth:`proxy.server.ProxyServer.publish`, so the printer, the control endpoint (the window) and ``--record`` see
datagrams as they see TCP messages. The core opens a flow per client address; this shell gives it a socket
connected to the target (so the server's replies and its ICMP errors are told apart per flow), created
synchronously (a UDP connect sends nothing) and read through an asyncio datagram endpoint once that is ready.

Nothing here waits on a peer: a datagram that cannot be written at once is buffered by the transport only up to
``SEND_BUFFER_CAP`` bytes per socket; past it, datagrams are dropped and counted (UDP may lose them; the proxy's
memory must stay bounded). Release times use the TCP shell's timer (``proxy.loop.Alarm``): a loop timer set a
little before the due time, then a poll of the loop until the moment comes.
Must not import: Qt, ``inspector``.
Thread: the engine's event-loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from proxy import commands as cmd
from proxy import events as ev
from proxy.datagram import (
    CloseFlow,
    DatagramCore,
    FlowFailed,
    FlowOpened,
    FlowRefused,
    OpenFlow,
    SendToClient,
    SendToServer,
)
from proxy.loop import Alarm
from proxy.model import Notice
from proxy.tasks import spawn

if TYPE_CHECKING:
    from proxy.model import Message, Record


class _Config(Protocol):
    @property
    def target_host(self) -> str: ...

    @property
    def target_port(self) -> int: ...


class Engine(Protocol):
    """What the shell needs of :class:`proxy.server.ProxyServer` (which owns it; named here, not imported, so the
    two modules do not import each other)."""

    @property
    def config(self) -> _Config: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def publish(self, record: Record) -> None: ...

    def intercept(self, record: Message) -> None: ...

__all__ = ["SEND_BUFFER_CAP", "UdpShell"]

SEND_BUFFER_CAP = 1 << 20
"""Bytes a datagram socket's transport may buffer when the kernel's buffer is full; past it, drop and count."""
RECV_BUFFER = 4 << 20
"""SO_RCVBUF asked for the listening socket: a burst of small datagrams must not overflow the kernel's default
(~208 KiB on Linux) while the loop is busy; the kernel may grant less."""

_now = time.monotonic_ns


def _is_refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and exc.errno in (
        errno.ECONNREFUSED, getattr(errno, "WSAECONNRESET", -1), errno.ECONNRESET))


class _ListenProtocol(asyncio.DatagramProtocol):
    __slots__ = ("shell",)

    def __init__(self, shell: UdpShell) -> None:
        self.shell = shell

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        shell = self.shell
        run = shell.dispatch
        for c in shell.core.client_datagram((addr[0], addr[1]), data, _now()):
            run[type(c)](c)

    def error_received(self, exc: Exception) -> None:
        # An unconnected socket sees no ICMP errors on Linux; Windows reports a client's "port unreachable" here
        # (WSAECONNRESET). Neither means the listening socket is broken: keep reading.
        self.shell.listen_errors += 1


class _UpstreamProtocol(asyncio.DatagramProtocol):
    __slots__ = ("flow", "shell")

    def __init__(self, shell: UdpShell, flow: int) -> None:
        self.shell = shell
        self.flow = flow

    def datagram_received(self, data: bytes, addr: object) -> None:
        shell = self.shell
        run = shell.dispatch
        for c in shell.core.server_datagram(self.flow, data, _now()):
            run[type(c)](c)

    def error_received(self, exc: Exception) -> None:
        self.shell.upstream_error(self.flow, exc)


class _ReplayUpstreamProtocol(_UpstreamProtocol):
    """A replay flow's socket: a reply also wakes the replay waiting for one (``wait-reply``)."""

    __slots__ = ()

    def datagram_received(self, data: bytes, addr: object) -> None:
        seen = self.shell.reply_seen.get(self.flow)
        if seen is not None:
            seen.set()
        super().datagram_received(data, addr)


class _Transport(Protocol):
    """What the shell uses of a datagram transport: asyncio's, the proactor's and uvloop's all have these (their
    flow-control mixins), though ``asyncio.DatagramTransport`` does not declare the buffer ones."""

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...

    def close(self) -> None: ...


class _FlowSocket:
    __slots__ = ("refused", "sock", "task", "transport")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.transport: _Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.refused = False
        """The server refused (ICMP port unreachable) at least once: a send first clears what is pending."""


class UdpShell:
    """The UDP side of a :class:`proxy.server.ProxyServer`: ``bind(host, port)``, ``await serve()``, ``await
    shutdown()``."""

    def __init__(self, server: Engine, core: DatagramCore) -> None:
        self.server = server
        self.core = core
        self.loop = server.loop
        self.listen: _Transport | None = None
        self.listen_addr: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        self._target: tuple[int, tuple[str, int]] | None = None  # family, sockaddr: resolved once at start
        self.flows: dict[int, _FlowSocket] = {}
        self.send_dropped = 0
        """Datagrams not sent because a socket's buffer was past ``SEND_BUFFER_CAP`` (or the kernel refused)."""
        self.listen_errors = 0
        self._alarm = Alarm(self.loop, self._woken)
        self._send_warned = False
        self._errors_told: set[int] = set()
        self.reply_seen: dict[int, asyncio.Event] = {}
        """Replay flows whose driver waits for replies (set by the server's replay)."""
        self.dispatch: dict[type[cmd.Command], Callable[[cmd.Command], None]] = {
            cmd.Publish: self._publish,  # type: ignore[dict-item]
            SendToServer: self._to_server,  # type: ignore[dict-item]
            SendToClient: self._to_client,  # type: ignore[dict-item]
            OpenFlow: self._open_flow,  # type: ignore[dict-item]
            CloseFlow: self._close_flow,  # type: ignore[dict-item]
            cmd.RequestWakeup: self._wakeup,  # type: ignore[dict-item]
            cmd.Intercept: self._intercept,  # type: ignore[dict-item]
        }

    # ------------------------------------------------------------------------------------------ lifecycle

    def bind(self, host: str, port: int) -> tuple[str, int]:
        """Bind the listening socket (datagrams then wait in the kernel until :meth:`serve`). ``OSError`` if the
        port is taken for UDP."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
            sock.bind(addr)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        h, p = sock.getsockname()[:2]
        self.listen_addr = (str(h), int(p))
        cfg = self.server.config
        tinfos = socket.getaddrinfo(cfg.target_host, cfg.target_port, type=socket.SOCK_DGRAM)
        # the target's family as resolved first; a flow's socket is connected to exactly that address
        self._target = (tinfos[0][0], cast(tuple[str, int], tinfos[0][4]))
        return self.listen_addr

    async def serve(self) -> None:
        """Start reading the socket :meth:`bind` bound."""
        if self.listen is not None or self._sock is None:
            return
        transport, _ = await self.loop.create_datagram_endpoint(lambda: _ListenProtocol(self), sock=self._sock)
        self.listen = cast(_Transport, transport)
        self.listen.set_write_buffer_limits(SEND_BUFFER_CAP)

    async def shutdown(self) -> None:
        """Send what waits, end every flow (published), close every socket."""
        self.run(self.core.handle(ev.ShutdownRequested(_now())))
        self._alarm.cancel()
        for fs in list(self.flows.values()):
            self._drop_socket(fs)
        self.flows.clear()
        self.close_listener()
        await asyncio.sleep(0)  # let the transports' close callbacks run

    def close_listener(self) -> None:
        """Close the listening socket (served or only bound); :meth:`bind` and :meth:`serve` make a new one."""
        if self.listen is not None:
            self.listen.close()
            self.listen = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None

    def run(self, commands: list[cmd.Command]) -> None:
        dispatch = self.dispatch
        for c in commands:
            dispatch[type(c)](c)

    # ------------------------------------------------------------------------------------------ commands

    def _publish(self, c: cmd.Publish) -> None:
        self.server.publish(c.record)

    def _intercept(self, c: cmd.Intercept) -> None:
        self.server.intercept(c.record)

    def _to_client(self, c: SendToClient) -> None:
        t = self.listen
        if t is None or c.addr[0] == "replay":
            return
        if not c.data:
            self._send_empty(self._sock, c.addr, None)
            return
        if t.get_write_buffer_size() > SEND_BUFFER_CAP:
            self._dropped_send()
            return
        t.sendto(c.data, c.addr)

    def _to_server(self, c: SendToServer) -> None:
        fs = self.flows.get(c.flow)
        if fs is None:
            return
        t = fs.transport
        if fs.refused:
            # A connected UDP socket keeps the last ICMP "port unreachable" as a pending error, and the next send
            # fails with it instead of going out: read (and so clear) it first, or the first datagram after the
            # server starts would be lost.
            with contextlib.suppress(OSError):
                fs.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if not c.data:
            self._send_empty(fs.sock, None, c.flow)
            return
        if t is not None:
            if t.get_write_buffer_size() > SEND_BUFFER_CAP:
                self._dropped_send()
                return
            t.sendto(c.data)
            return
        try:  # the endpoint is not ready yet (the first datagrams of a flow): the socket is connected already
            fs.sock.send(c.data)
        except BlockingIOError:
            self._dropped_send()
        except OSError as e:
            self.upstream_error(c.flow, e)

    def _send_empty(self, sock: socket.socket | None, addr: tuple[str, int] | None, flow: int | None) -> None:
        """A zero-length datagram is a real message (a keep-alive, a "ping" with no body), but asyncio's datagram
        transports silently skip empty data, so it goes straight to the socket (the transport reads the same
        socket; it holds it, it does not duplicate it)."""
        if sock is None:
            return
        try:
            if addr is None:
                sock.send(b"")
            else:
                sock.sendto(b"", addr)
        except BlockingIOError:
            self._dropped_send()
        except OSError as e:
            if flow is not None:
                self.upstream_error(flow, e)

    def _dropped_send(self) -> None:
        self.send_dropped += 1
        if not self._send_warned:
            self._send_warned = True
            self.server.publish(Notice("warning", "UDP: a socket's send buffer is full: datagrams the proxy cannot "
                                                  "send at once are dropped and counted (not repeated)", _now()))

    def _open_flow(self, c: OpenFlow) -> None:
        assert self._target is not None
        family, addr = self._target
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            self.run(self.core.handle(FlowFailed(_now(), c.flow, e.strerror or str(e))))
            return
        try:
            sock.setblocking(False)
            sock.connect(addr)
        except OSError as e:
            sock.close()
            self.run(self.core.handle(FlowFailed(_now(), c.flow, e.strerror or str(e))))
            return
        fs = _FlowSocket(sock)
        self.flows[c.flow] = fs
        fs.task = spawn(self._endpoint(c.flow, fs), name=f"udp-flow-{c.flow}")
        self.run(self.core.handle(FlowOpened(_now(), c.flow, (str(addr[0]), int(addr[1])))))

    async def _endpoint(self, flow: int, fs: _FlowSocket) -> None:
        try:
            kind = _ReplayUpstreamProtocol if flow in self.reply_seen else _UpstreamProtocol
            transport, _ = await self.loop.create_datagram_endpoint(lambda: kind(self, flow), sock=fs.sock)
        except OSError as e:
            self.upstream_error(flow, e)
            return
        if self.flows.get(flow) is not fs:  # closed meanwhile
            transport.close()
            return
        fs.transport = cast(_Transport, transport)
        fs.transport.set_write_buffer_limits(SEND_BUFFER_CAP)

    def _close_flow(self, c: CloseFlow) -> None:
        fs = self.flows.pop(c.flow, None)
        if fs is not None:
            self._drop_socket(fs)
        self._errors_told.discard(c.flow)

    def _drop_socket(self, fs: _FlowSocket) -> None:
        if fs.transport is not None:
            fs.transport.close()
        else:
            if fs.task is not None and not fs.task.done():
                fs.task.cancel()
            fs.sock.close()

    def upstream_error(self, flow: int, exc: BaseException) -> None:
        """An error on a flow's socket: ICMP port unreachable becomes ``FlowRefused`` (one notice per flow); any
        other error is told once per flow. The flow goes on either way."""
        if _is_refused(exc):
            fs = self.flows.get(flow)
            if fs is not None:
                fs.refused = True
            self.run(self.core.handle(FlowRefused(_now(), flow, str(exc) or type(exc).__name__)))
            return
        if flow in self._errors_told:
            return
        self._errors_told.add(flow)
        self.server.publish(Notice("warning", f"flow #{flow}: the UDP socket to the server reported "
                                              f"{exc} (not repeated for this flow)", _now(), flow))

    # ------------------------------------------------------------------------------------------ time

    def _wakeup(self, c: cmd.RequestWakeup) -> None:
        self._alarm.set(c.at)

    def _woken(self, now: int) -> None:
        self.run(self.core.handle(ev.WakeupFired(now)))

"""The window's link to a proxy engine: the control protocol, commands out, records in, batched onto the GUI thread.

Role: everything the window knows about *where* the engine runs. The window always speaks the control protocol
(docs/protocol.md) through :class:`AttachLink`, whatever the proxy is:

- :class:`ChildProcessLink`: starts ``python -m proxy --control 127.0.0.1:0`` (its token in the child's
  environment, never on its command line) and attaches to it; the child exits by itself when this process goes
  away (``--parent-watch``).
- :class:`AttachLink`: a proxy someone else started (``sockscope --attach``).
- :class:`ThreadLink`: the engine and its control endpoint on a thread of this process
  (``proxy.runner.ProxyThread``), attached over loopback exactly like a child: ``sockscope --in-process``, tests.

:func:`make_link` picks one; the window never checks which. A link has a thread-safe :class:`RecordQueue` and
:meth:`Link.command`, which sends a command by its wire name (``proxy.control.commands``) and returns a
``concurrent.futures.Future``. The client's one reader thread (``proxy.control.client.ControlClient``) puts each
read's records straight into the queue, settles the futures, and passes on the proxy's announcements of changes
made by *other* clients (:attr:`Link.on_announce`).

The Qt half lives in :mod:`inspector.ui.pump`: the ``QTimer`` that drains the queue onto the GUI thread in
batches, and the Qt signals that carry announcements.

Must not import: Qt, ``inspector.ui``; the engine (``proxy.runner``, ``proxy.server``) only inside
:class:`ThreadLink`, and the control client and wire format, ``subprocess`` and ``concurrent.futures`` only when
a link starts (start-up time: the window imports this module before its first frame).
Thread: links are created and commanded on the GUI thread (started on a worker thread); the queue is filled and
announcements are made on the client's reader thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from proxy.model import Clock, Message, Notice, Record
from proxy.options import TOKEN_ENV

if TYPE_CHECKING:
    import concurrent.futures
    import subprocess

    from proxy.control.client import ControlClient

__all__ = [
    "AttachLink",
    "ChildProcessLink",
    "Link",
    "LinkError",
    "LinkOptions",
    "RecordQueue",
    "ThreadLink",
    "make_link",
    "nothing_listens",
]

def _new_token() -> str:
    from proxy.control.wire import new_token

    return new_token()


QUEUE_BOUND: Final = 200_000
"""Messages waiting for the GUI thread; past it new *messages* are counted as lost (never updates or
connection events, which the store needs to stay consistent)."""

ANNOUNCED_BY: Final[Mapping[str, tuple[str, ...]]] = {
    "conditions_changed": ("set_conditions",),
    "rules_changed": ("set_rules",),
    "hold_changed": ("hold_next", "cancel_hold_next"),
    "framing_changed": ("set_framing",),
    "capture": ("pause_capture", "resume_capture"),
}
"""Announcement -> the commands that cause it. Another client's announcement is passed on unless one of this
window's own such commands is still unanswered: the proxy runs commands in order, so that one comes later and wins."""

class LinkError(Exception):
    """The engine cannot be started or reached. The text is for the user (no traceback)."""


class RecordQueue:
    """A bounded, thread-safe hand-off of records from the reader thread to the GUI thread (swap-on-drain).

    Records that came over the control protocol keep their frame as received (:meth:`put_frames`), so the
    window's spool writes those bytes as they are instead of encoding every record again on the GUI thread."""

    def __init__(self, bound: int = QUEUE_BOUND) -> None:
        self.bound = bound
        self._items: list[Record] = []
        self._frames: list[bytes | None] = []
        """Aligned with ``_items``: each record's frame, or None for a record made on this side."""
        self._lock = threading.Lock()
        self.lost = 0
        """Messages dropped because the GUI thread fell behind (plus what the engine reported lost)."""

    def put(self, record: Record) -> None:
        with self._lock:
            if len(self._items) >= self.bound and type(record) is Message:
                self.lost += 1
                return
            self._items.append(record)
            self._frames.append(None)

    def put_many(self, records: Sequence[Record]) -> None:
        """A read's records at once: one lock, and one ``extend`` while there is room."""
        self.put_frames(records, None)

    def put_frames(self, records: Sequence[Record], frames: Sequence[bytes] | None) -> None:
        """A read's records with their frames as received (the client's reader thread), or None for no frames."""
        with self._lock:
            items, kept = self._items, self._frames
            if len(items) + len(records) <= self.bound:
                items.extend(records)
                kept.extend(frames if frames is not None else [None] * len(records))
                return
            for i, r in enumerate(records):
                if len(items) >= self.bound and type(r) is Message:
                    self.lost += 1
                else:
                    items.append(r)
                    kept.append(frames[i] if frames is not None else None)

    def add_lost(self, n: int) -> None:
        with self._lock:
            self.lost += n

    def drain(self) -> list[Record]:
        """Everything queued so far, in order (GUI thread)."""
        return self.drain_frames()[0]

    def drain_frames(self) -> tuple[list[Record], list[bytes | None]]:
        """Everything queued so far, in order, with each record's frame or None (GUI thread)."""
        with self._lock:
            items, self._items = self._items, []
            frames, self._frames = self._frames, []
        return items, frames

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class LinkOptions:
    """What the user asked for on the command line or the start page."""

    listen: tuple[str, int] = ("127.0.0.1", 5556)
    target: tuple[str, int] = ("127.0.0.1", 5555)
    framing: str = "auto"
    conditions: dict[str, Any] | None = None
    """``proxy.conditions.Conditions.to_dict()`` form, applied as the global default at start."""
    demo: bool = False
    demo_interval: float = 1.0
    extra_args: list[str] = field(default_factory=list)
    """More ``python -m proxy`` flags (conditions flags from the command line), for the child process."""
    first_ids: tuple[int, int] = (1, 1)
    """Where the proxy's connection and message numbering starts: a window starting its proxy again goes on
    from the numbers it has already shown."""
    tcp: bool = True
    """Relay TCP connections (``--udp-only`` turns it off)."""
    udp: bool = False
    """Relay UDP datagrams on the same port number (``--udp``, ``--udp-only``; docs/udp.md); the demo is then the
    UDP game loop (``proxy.demo.UdpDemoServer``) instead of the TCP tutorial."""
    udp_idle_timeout: float = 60.0
    udp_max_flows: int = 4096


class Link:
    """What the window uses of a link. :class:`AttachLink` implements it over the control protocol."""

    kind: str = "link"

    def __init__(self) -> None:
        self.events = RecordQueue()
        self.listen_addr: tuple[str, int] | None = None
        self.target_addr: tuple[str, int] | None = None
        self.clock: Clock | None = None
        """Anchors the engine's monotonic times to wall-clock time, when known."""
        self.conditions: dict[str, Any] | None = None
        """The global conditions in force when the link started (``Conditions.to_dict`` form), when known."""
        self.rules: list[dict[str, Any]] = []
        """The rules in force when the link started (``Rule.to_dict`` form)."""
        self.transports: tuple[str, ...] = ("tcp",)
        """What the proxy relays (``tcp``, ``udp``), from its hello."""
        self.udp_idle_timeout_s: float | None = None
        """Seconds without a datagram after which the proxy ends a UDP flow, when it relays UDP (from its hello)."""
        self.framing: tuple[str, str] | None = None
        """The proxy's framing for new connections (c2s, s2c), when known: from its hello, then from every change
        (this window's ``set_framing`` and other clients' announcements). Written on the reader thread; a tuple
        is replaced whole, so the GUI thread reads either the old one or the new one."""
        self.death: str | None = None
        """Why the engine went away, once it has (shown by the window)."""
        self.on_announce: Callable[[dict[str, Any]], None] | None = None
        """Called on the reader thread with each change another client of the proxy made (``LinkEvents``)."""

    def start(self) -> None:
        """Start or connect; raises :class:`LinkError` with a message for the user."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self.death is None

    def command(self, name: str, **args: Any) -> concurrent.futures.Future[Any]:
        """Send command ``name`` (a wire name of docs/protocol.md, with its arguments); the future holds the
        reply's result or a readable exception."""
        import concurrent.futures

        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        fut.set_exception(LinkError("the proxy is not running"))
        return fut

    @property
    def description(self) -> str:
        if self.listen_addr is None or self.target_addr is None:
            return "not started"
        return f"{_fmt(self.listen_addr)} → {_fmt(self.target_addr)}"


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quiet(_line: str) -> None:
    pass


# -------------------------------------------------------------------------------------------------- control protocol


class AttachLink(Link):
    """A proxy reached over the control protocol: one :class:`~proxy.control.client.ControlClient`, whose reader
    thread fills :attr:`events` and settles the futures :meth:`command` returns."""

    kind = "control"

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__()
        self.host, self.port, self.token = host, port, token
        self._client: ControlClient | None = None
        self._closing = False
        self.stats: dict[str, Any] | None = None
        """The proxy's latest ``stats`` event."""

    def start(self) -> None:
        from proxy.control.client import ControlClient, ControlError

        try:
            self._client = ControlClient(self.host, self.port, self.token, on_record_frames=self.events.put_frames,
                                         on_event=self._on_event)
        except ControlError as e:
            raise LinkError(f"cannot attach to {self.host}:{self.port}: {e}") from None
        self._read_hello(self._client.hello)

    def _read_hello(self, hello: Mapping[str, Any]) -> None:
        settings = hello.get("settings")
        if isinstance(settings, Mapping):
            hello = {**hello, **settings}
        listen, target = hello.get("listen"), hello.get("target")
        if isinstance(listen, list | tuple) and len(listen) == 2:
            self.listen_addr = (str(listen[0]), int(listen[1]))
        if isinstance(target, list | tuple) and len(target) == 2:
            self.target_addr = (str(target[0]), int(target[1]))
        clock = hello.get("clock")
        if isinstance(clock, Mapping) and "mono_ns" in clock and "wall_ns" in clock:
            self.clock = Clock(int(clock["mono_ns"]), int(clock["wall_ns"]))
        conditions = hello.get("conditions")
        if isinstance(conditions, Mapping):
            self.conditions = dict(conditions)
        transports = hello.get("transports")
        if isinstance(transports, list | tuple) and all(isinstance(t, str) for t in transports):
            self.transports = tuple(transports)
        udp = hello.get("udp")
        if isinstance(udp, Mapping) and isinstance(udp.get("idle_timeout_s"), int | float):
            self.udp_idle_timeout_s = float(udp["idle_timeout_s"])
        rules = hello.get("rules")
        if isinstance(rules, list):
            self.rules = [dict(r) for r in rules if isinstance(r, Mapping)]
        self._note_framing(hello.get("framing"))

    def _note_framing(self, framing: Any) -> None:
        """Remember the framing for new connections from a ``framing_to_dict`` map (hello, reply, announcement)."""
        if isinstance(framing, Mapping) and isinstance(framing.get("c2s"), str) and isinstance(framing.get("s2c"), str):
            self.framing = (framing["c2s"], framing["s2c"])

    def _on_event(self, event: dict[str, Any]) -> None:
        """Every event that is not a record or a reply, on the client's reader thread, in the proxy's order."""
        kind = event.get("type")
        client = self._client
        if kind == "dropped":
            self.events.add_lost(int(event.get("count", 1)))
        elif kind == "stats":
            self.stats = event
        elif kind == "bye":
            if not self._closing:
                reason = str(event.get("reason") or "")
                self.death = "the proxy was shut down" + (
                    "" if not reason or reason == "proxy shutting down" else f" ({reason})")
        elif isinstance(kind, str) and kind in ANNOUNCED_BY and client is not None:
            if kind == "framing_changed":
                self._note_framing(event.get("framing"))  # whoever changed it: new connections start with it
            if event.get("by") == client.client_id:
                return  # this window's own change: it already shows it
            if any(client.in_flight(c) for c in ANNOUNCED_BY[kind]):
                return  # this window's own change of the same thing is on its way and will win
            listener = self.on_announce
            if listener is not None:
                listener(event)

    def command(self, name: str, **args: Any) -> concurrent.futures.Future[Any]:
        client = self._client
        if client is None or not self.alive:
            return super().command(name, **args)
        fut = client.submit(name, **args)
        if name == "set_framing":
            fut.add_done_callback(lambda f: None if f.exception() is not None else self._note_framing(f.result()))
        return fut

    @property
    def alive(self) -> bool:
        client = self._client
        if self.death is None and client is not None and client.closed_reason is not None and not self._closing:
            reason = client.closed_reason
            self.death = ("the proxy was shut down" if reason.startswith("the proxy said bye") else
                          f"the window lost its connection to the proxy ({reason})")
        return self.death is None

    def stop(self) -> None:
        self._closing = True
        if self._client is not None:
            self._client.close()
        if self.death is None:
            self.death = "stopped"


class ChildProcessLink(AttachLink):
    """Starts ``python -m proxy --control 127.0.0.1:0`` as a child and attaches to it.

    The token goes to the child in its environment (``SOCKSCOPE_TOKEN``), which only this user can read; on its
    command line every user of the machine would see it (``ps``)."""

    kind = "child process"
    READY_PREFIX: Final = "sockscope: control on "

    def __init__(self, options: LinkOptions) -> None:
        super().__init__("127.0.0.1", 0, _new_token())
        self.options = options
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    def argv(self) -> list[str]:
        o = self.options
        args = [sys.executable, "-m", "proxy", "--control", "127.0.0.1:0", "--quiet", "--framing", o.framing,
                "--parent-watch"]
        if o.demo:
            args += ["--demo", "--demo-interval", str(o.demo_interval)]
        else:
            args += ["--listen", _fmt(o.listen), "--target", _fmt(o.target)]
        if o.udp:
            args += ["--udp" if o.tcp else "--udp-only", "--udp-idle-timeout", str(o.udp_idle_timeout),
                     "--udp-max-flows", str(o.udp_max_flows)]
        if o.conditions:  # in force from the first byte (the demo's welcome comes right after the window attaches)
            args += ["--conditions-json", json.dumps(o.conditions)]
        if o.first_ids != (1, 1):
            args += ["--first-ids", f"{o.first_ids[0]},{o.first_ids[1]}"]
        return args + o.extra_args

    def start(self) -> None:
        import concurrent.futures
        import subprocess

        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")  # we read it as utf-8
        env[TOKEN_ENV] = self.token
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env,
                                         creationflags=flags)
        except OSError as e:
            raise LinkError(f"cannot start the proxy: {e}") from None
        ready: concurrent.futures.Future[tuple[str, int]] = concurrent.futures.Future()
        threading.Thread(target=self._read_stdout, args=(ready,), name="sockscope-child-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="sockscope-child-stderr", daemon=True).start()
        try:
            self.host, self.port = ready.result(15.0)
        except concurrent.futures.TimeoutError:
            self._terminate()
            raise LinkError("the proxy did not start within 15 s") from None
        except LinkError:
            self._terminate()
            raise
        try:
            super().start()
        except LinkError:
            self._terminate()
            raise
        if self.listen_addr is None:
            self.listen_addr = self._listen_from_stdout
        threading.Thread(target=self._watch, name="sockscope-child-watch", daemon=True).start()

    _listen_from_stdout: tuple[str, int] | None = None

    def _read_stdout(self, ready: concurrent.futures.Future[tuple[str, int]]) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith(self.READY_PREFIX) and not ready.done():
                addr = line[len(self.READY_PREFIX):].split()[0]
                host, _, port = addr.rpartition(":")
                ready.set_result((host.strip("[]"), int(port)))
            elif line.startswith(("sockscope: listening on ", "sockscope: UDP on ")):
                rest = line.split(" on ", 1)[1].split()
                host, _, port = rest[0].rpartition(":")
                with contextlib.suppress(ValueError):
                    self._listen_from_stdout = (host.strip("[]"), int(port))
                    if self.listen_addr is None and ready.done():
                        self.listen_addr = self._listen_from_stdout
                if len(rest) >= 3 and self.target_addr is None:
                    th, _, tp = rest[2].rpartition(":")
                    with contextlib.suppress(ValueError):
                        self.target_addr = (th.strip("[]"), int(tp))
        self.proc.stdout.close()
        if not ready.done():
            self.proc.wait()
            err = " ".join(self._stderr[-3:]).strip() or f"exit status {self.proc.returncode}"
            ready.set_exception(LinkError(f"the proxy did not start: {err}"))

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.strip().removeprefix("sockscope-proxy: error: "))
            del self._stderr[:-20]
        self.proc.stderr.close()

    def _watch(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the child is gone: nothing more will be written to it
        if not self._closing and self.death is None:
            err = self._stderr[-1] if self._stderr else ""
            self.death = (f"the proxy's process ended unexpectedly (exit status {code})"
                          + (f"; its last words: {err}" if err else ""))

    def _terminate(self) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # --parent-watch: the child sees EOF and stops cleanly
        try:
            self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        super().stop()
        self._terminate()


class ThreadLink(AttachLink):
    """The engine and its control endpoint on a thread of this process, attached over loopback like a child."""

    kind = "in-process"

    def __init__(self, options: LinkOptions) -> None:
        super().__init__("127.0.0.1", 0, _new_token())
        self.options = options
        self.engine: Any = None  # proxy.runner.ProxyThread, imported lazily (start-up time)
        self._demo_server: Any = None
        self._demo_client: Any = None
        self._udp_server: Any = None
        self._udp_client: Any = None

    def start(self) -> None:
        from proxy.demo import DemoClient, DemoServer, UdpDemoClient, UdpDemoServer
        from proxy.framing import FramingError, parse_framing
        from proxy.runner import ProxyThread
        from proxy.server import ProxyConfig, ProxyError

        o = self.options
        try:
            framing = parse_framing(o.framing)
        except FramingError as e:
            raise LinkError(f"framing: {e}") from None
        listen, target = o.listen, o.target
        if o.demo:
            if o.udp:
                self._udp_server = UdpDemoServer(say=_quiet).start()
            else:
                self._demo_server = DemoServer(say=_quiet).start()
            target = ("127.0.0.1", (self._demo_server or self._udp_server).port)
            listen = (listen[0], 0)
        from proxy.conditions import PASSTHROUGH, Conditions, ConditionsError

        try:
            conditions = Conditions.from_dict(o.conditions) if o.conditions else PASSTHROUGH
        except ConditionsError as e:
            raise LinkError(f"the conditions: {e}") from None
        engine = ProxyThread(ProxyConfig(listen[0], listen[1], target[0], target[1], framing,
                                         conditions=conditions, first_ids=o.first_ids, tcp=o.tcp, udp=o.udp,
                                         udp_idle_timeout=o.udp_idle_timeout, udp_max_flows=o.udp_max_flows),
                             control_token=self.token)
        try:
            engine.start()
        except ProxyError as e:
            self._stop_demo()
            raise LinkError(str(e)) from None
        except Exception as e:
            self._stop_demo()
            raise LinkError(f"the proxy could not start: {e}") from None
        self.engine = engine
        self.port = engine.control_port
        try:
            super().start()
        except LinkError:
            self.kill()
            raise
        if o.demo:
            assert self.listen_addr is not None
            if self._demo_server is not None:
                self._demo_client = DemoClient("127.0.0.1", self.listen_addr[1], None, o.demo_interval,
                                               say=_quiet).start()
            if self._udp_server is not None:
                self._udp_client = UdpDemoClient("127.0.0.1", self.listen_addr[1], None, o.demo_interval,
                                                 say=_quiet).start()

    def kill(self) -> None:
        """Stop the engine without telling the window first: it learns over the protocol, as from a child that
        went away (tests: the window must notice and survive)."""
        if self.engine is not None:
            with contextlib.suppress(Exception):
                self.engine.stop(timeout=3.0)
        self._stop_demo()

    def _stop_demo(self) -> None:
        for name in ("_demo_client", "_udp_client", "_demo_server", "_udp_server"):
            peer = getattr(self, name)
            if peer is not None:
                peer.stop()
                setattr(self, name, None)

    def stop(self) -> None:
        for peer in (self._demo_client, self._udp_client):
            if peer is not None:
                peer.stop()
        super().stop()
        self.kill()


def make_link(options: LinkOptions) -> Link:
    """The link for a window that runs its own proxy: a child process, or with ``SOCKSCOPE_IN_PROCESS=1``
    (``sockscope --in-process``) an engine thread of this process."""
    if os.environ.get("SOCKSCOPE_IN_PROCESS") == "1":
        return ThreadLink(options)
    return ChildProcessLink(options)


def nothing_listens(addr: tuple[str, int]) -> bool:
    """Whether nothing listens on ``addr``, a server address on this machine (False when it cannot tell).

    It never connects: a connection would use up the one ``accept()`` of a server that serves a single client,
    as the tutorial's does (``proxy.server.ProxyServer.probe_target`` checks the same way). A port that can be bound
    has no listener. A remote server is not checked.
    """
    import ipaddress
    import socket

    host, port = addr
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                return False
        except ValueError:
            return False  # a name: not looked up here (that could wait on DNS)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            try:
                s.bind(sockaddr)  # no SO_REUSEADDR: fails while anything holds the port
            except OSError:
                return False
    return True


def notice_text(n: Notice) -> str:
    return f"{n.level}: {n.text}" + (f" (#{n.conn_id})" if n.conn_id is not None else "")

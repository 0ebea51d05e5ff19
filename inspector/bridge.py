"""The window's link to a proxy engine: commands out, records in, batched onto the GUI thread.

Role: everything the window knows about *where* the engine runs. A :class:`Link` has a thread-safe
:class:`RecordQueue` that the engine side fills and a :meth:`Link.command` that returns a
``concurrent.futures.Future``. Three links share that interface:

- :class:`InProcessLink`: the engine on a background thread of this process (``proxy.runner.ProxyThread``),
  subscribed directly. Used by tests, and by ``sockscope`` while the control protocol is not available.
- :class:`ChildProcessLink`: starts ``python -m proxy --control 127.0.0.1:0`` (its token in the child's
  environment, never on its command line) and talks to it over the control protocol (``proxy.client``); the
  child exits by itself when this process goes away.
- :class:`AttachLink`: the control protocol to a proxy someone else started (``sockscope --attach``).

:func:`make_link` picks one; the window never checks which. Switching the whole window to the control
protocol is the one line in :func:`make_link`.

The Qt half is :class:`RecordPump` at the bottom: a ``QTimer`` on the GUI thread that drains the queue at most
~30 times a second and applies each batch to the :class:`~inspector.store.MessageStore` in one go.

Must not import: ``inspector.ui``; Qt only in the Qt half (``QtCore``, never widgets).
Thread: links are created and commanded on the GUI thread; the queue is filled on the engine's thread (in
process) or a reader thread (control protocol); :class:`RecordPump` lives on the GUI thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from PySide6.QtCore import QObject, QTimer, Signal

from inspector.store import ApplyResult, MessageStore
from proxy.cli import TOKEN_ENV
from proxy.control.wire import new_token
from proxy.model import Clock, Message, Notice, Record

__all__ = [
    "COMMANDS",
    "AttachLink",
    "ChildProcessLink",
    "InProcessLink",
    "Link",
    "LinkError",
    "LinkOptions",
    "RecordPump",
    "RecordQueue",
    "make_link",
]

COMMANDS: Final = (
    "set_conditions", "hold_next", "release", "drop", "release_all", "inject", "close_connection", "replay",
    "set_framing", "pause_capture", "spike_now", "set_rules",
)
"""Commands the window may send, with the engine's argument names (``ProxyServer`` methods):

``set_conditions(conditions: dict, conn_id=None)``, ``hold_next(direction, conn_id=None, count=1)``,
``release(msg_id, data=None)``, ``drop(msg_id)``, ``release_all(conn_id=None)``,
``inject(conn_id, direction, data)``, ``close_connection(conn_id, reset)``,
``replay(conn_id, messages=None, mode="fast")``, ``set_framing(framing: str)``, ``pause_capture(paused)``,
``spike_now(direction | None, add_ms, for_s, conn_id=None)``. A link reports which it supports."""

_ENGINE_METHOD: Final = {"pause_capture": "resume_capture"}
"""Commands whose engine method differs (``pause_capture`` needs both ``pause_capture`` and this)."""

QUEUE_BOUND: Final = 200_000
"""Messages waiting for the GUI thread; past it new *messages* are counted as lost (never updates or
connection events, which the store needs to stay consistent)."""

PUMP_INTERVAL_MS: Final = 33
"""How often the GUI thread drains the queue: at most ~30 batches a second."""

_now = time.monotonic_ns


class LinkError(Exception):
    """The engine cannot be started or reached. The text is for the user (no traceback)."""


class RecordQueue:
    """A bounded, thread-safe hand-off of records from the engine side to the GUI thread (swap-on-drain)."""

    def __init__(self, bound: int = QUEUE_BOUND) -> None:
        self.bound = bound
        self._items: list[Record] = []
        self._lock = threading.Lock()
        self.lost = 0
        """Messages dropped because the GUI thread fell behind (plus what the engine reported lost)."""

    def put(self, record: Record) -> None:
        """Called on the engine thread for each record: must be quick."""
        with self._lock:
            if len(self._items) >= self.bound and type(record) is Message:
                self.lost += 1
                return
            self._items.append(record)

    def put_many(self, records: Sequence[Record]) -> None:
        with self._lock:
            for r in records:
                if len(self._items) >= self.bound and type(r) is Message:
                    self.lost += 1
                else:
                    self._items.append(r)

    def add_lost(self, n: int) -> None:
        with self._lock:
            self.lost += n

    def drain(self) -> list[Record]:
        """Everything queued so far, in order (GUI thread)."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class LinkOptions:
    """What the user asked for on the command line or the start page."""

    listen: tuple[str, int] = ("127.0.0.1", 5556)
    target: tuple[str, int] = ("127.0.0.1", 5555)
    framing: str = "raw"
    conditions: dict[str, Any] | None = None
    """``proxy.conditions.Conditions.to_dict()`` form, applied as the global default at start."""
    demo: bool = False
    demo_interval: float = 1.0
    extra_args: list[str] = field(default_factory=list)
    """More ``python -m proxy`` flags (conditions flags from the command line), for the child process."""


class Link:
    """The interface every link implements. Subclasses fill ``events`` and implement ``_command``."""

    kind: str = "link"

    def __init__(self) -> None:
        self.events = RecordQueue()
        self.listen_addr: tuple[str, int] | None = None
        self.target_addr: tuple[str, int] | None = None
        self.clock: Clock | None = None
        """Anchors the engine's monotonic times to wall-clock time, when known."""
        self.death: str | None = None
        """Why the engine went away, once it has (shown by the window)."""
        self.supported: frozenset[str] = frozenset()

    def start(self) -> None:
        """Start or connect; raises :class:`LinkError` with a message for the user."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self.death is None

    def supports(self, command: str) -> bool:
        return command in self.supported

    def command(self, name: str, **args: Any) -> concurrent.futures.Future[Any]:
        """Send ``name(**args)`` to the engine; the future holds its result or a readable exception."""
        if name not in self.supported:
            fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
            fut.set_exception(NotImplementedError(f"this proxy cannot {name.replace('_', ' ')} yet"))
            return fut
        return self._command(name, args)

    def _command(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        raise NotImplementedError

    @property
    def description(self) -> str:
        if self.listen_addr is None or self.target_addr is None:
            return "not started"
        return f"{_fmt(self.listen_addr)} → {_fmt(self.target_addr)}"


def _fmt(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -------------------------------------------------------------------------------------------------- in process


class InProcessLink(Link):
    """The engine on a background thread of this process, subscribed directly (no serialisation)."""

    kind = "in-process"

    def __init__(self, options: LinkOptions) -> None:
        super().__init__()
        self.options = options
        self._thread: Any = None  # proxy.runner.ProxyThread, imported lazily (start-up time)
        self._demo_server: Any = None
        self._demo_client: Any = None

    def start(self) -> None:
        from proxy.demo import DemoClient, DemoServer
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
            self._demo_server = DemoServer(say=_quiet).start()
            target = ("127.0.0.1", self._demo_server.port)
            listen = (listen[0], 0)
        config = ProxyConfig(listen[0], listen[1], target[0], target[1], framing)
        self._thread = ProxyThread(config, (self.events.put,))
        try:
            self._thread.start()
        except ProxyError as e:
            self._stop_demo()
            raise LinkError(str(e)) from None
        except Exception as e:
            self._stop_demo()
            raise LinkError(f"the proxy could not start: {e}") from None
        server = self._thread.server
        self.clock = server.clock
        self.listen_addr = server.listen_addr
        self.target_addr = target
        self.supported = frozenset(c for c in COMMANDS if callable(getattr(server, c, None))
                                   and callable(getattr(server, _ENGINE_METHOD.get(c, c), None)))
        if o.conditions and "set_conditions" in self.supported:
            self.command("set_conditions", conditions=o.conditions)
        if o.demo:
            assert self.listen_addr is not None
            self._demo_client = DemoClient("127.0.0.1", self.listen_addr[1], None, o.demo_interval,
                                           say=_quiet).start()

    def _command(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        thread = self._thread
        if thread is None or not self.alive:
            fut.set_exception(LinkError("the proxy is not running"))
            return fut
        server = thread.server
        loop = thread.loop
        try:
            method, args = _engine_call(name, args)
        except Exception as e:  # a bad value from the UI: report it like an engine refusal
            fut.set_exception(e)
            return fut

        def run() -> None:
            try:
                result = getattr(server, method)(**args)
            except BaseException as e:
                fut.set_exception(e)
                return
            if inspect.isawaitable(result):  # e.g. replay: finishes later on the loop
                task = asyncio.ensure_future(result, loop=loop)
                task.add_done_callback(lambda t: fut.set_exception(t.exception()) if t.exception() is not None
                                       else fut.set_result(t.result()))
            else:
                fut.set_result(result)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed
            fut.set_exception(LinkError("the proxy is not running"))
        return fut

    @property
    def alive(self) -> bool:
        if self.death is None and self._thread is not None and not self._thread._thread.is_alive():
            self.death = "the proxy engine stopped"
        return self.death is None

    def kill(self) -> None:
        """Stop the engine without telling the window (tests: the window must notice and survive)."""
        if self._thread is not None:
            with contextlib.suppress(Exception):
                self._thread.stop(timeout=3.0)
        self._stop_demo()

    def _stop_demo(self) -> None:
        if self._demo_client is not None:
            self._demo_client.stop()
            self._demo_client = None
        if self._demo_server is not None:
            self._demo_server.stop()
            self._demo_server = None

    def stop(self) -> None:
        if self._demo_client is not None:
            self._demo_client.stop()
        if self._thread is not None:
            with contextlib.suppress(Exception):
                self._thread.stop(timeout=3.0)
        self._stop_demo()
        if self.death is None:
            self.death = "stopped"


def _engine_call(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``ProxyServer`` method and arguments for a window command (in-process: real value types)."""
    args = dict(args)
    if "direction" in args and isinstance(args["direction"], str):
        from proxy.model import Direction

        args["direction"] = Direction.parse(args["direction"])
    if name == "set_conditions" and isinstance(args.get("conditions"), Mapping):
        from proxy.conditions import Conditions

        args["conditions"] = Conditions.from_dict(args["conditions"])
    elif name == "set_framing" and isinstance(args.get("framing"), str):
        from proxy.framing import parse_framing

        args["framing"] = parse_framing(args["framing"])
    elif name == "set_rules":
        from proxy.rules import Rule

        args["rules"] = [Rule.from_dict(r) for r in args.get("rules", [])]
    elif name == "pause_capture":
        return ("pause_capture" if args.pop("paused", True) else "resume_capture"), {}
    elif name == "replay":
        args.setdefault("messages", None)
        args.setdefault("mode", "fast")
    return name, args


def _wire_call(name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The control protocol's command and arguments for a window command (docs/protocol.md)."""
    args = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in args.items()}
    if hasattr(args.get("direction"), "label"):
        args["direction"] = args["direction"].label
    if name == "release" and args.get("data") is not None:
        return "edit", args
    if name == "release":
        args.pop("data", None)
    elif name == "close_connection":
        return ("reset" if args.pop("reset", False) else "close"), args
    elif name == "pause_capture":
        return ("pause_capture" if args.pop("paused", True) else "resume_capture"), {}
    elif name == "spike_now":
        return "spike", args
    return name, args


def _quiet(_line: str) -> None:
    pass


# -------------------------------------------------------------------------------------------------- control protocol


def control_client_available() -> bool:
    """True once ``proxy.client`` (the control protocol's client) exists in this installation."""
    try:
        importlib.import_module("proxy.control.client")
    except ImportError:
        return False
    return True


class AttachLink(Link):
    """A proxy reached over the control protocol (``proxy.client.SyncControlClient``)."""

    kind = "control"

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__()
        self.host, self.port, self.token = host, port, token
        self._client: Any = None
        self._reader: threading.Thread | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sockscope-command")
        self._closing = False

    def start(self) -> None:
        try:
            client_mod = importlib.import_module("proxy.control.client")
        except ImportError:
            raise LinkError("this sockscope has no control protocol client (proxy.client) yet") from None
        try:
            self._client = client_mod.ControlClient(self.host, self.port, self.token)
        except Exception as e:
            raise LinkError(f"cannot attach to {self.host}:{self.port}: {e}") from None
        hello = getattr(self._client, "hello", None) or {}
        self._read_hello(hello if isinstance(hello, Mapping) else {})
        self.supported = frozenset(COMMANDS)  # the proxy answers "not supported yet" for what it lacks
        self._reader = threading.Thread(target=self._read_events, name="sockscope-control-reader", daemon=True)
        self._reader.start()

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
            self.initial_conditions = dict(conditions)

    initial_conditions: dict[str, Any] | None = None

    def _read_events(self) -> None:
        client = self._client
        try:
            for event in client.iter_events():
                self._on_event(event)
        except Exception as e:
            if not self._closing:
                self.death = f"lost the connection to the proxy: {e}"
            return
        if not self._closing:
            reason = getattr(client, "closed_reason", None)
            self.death = reason or "the proxy closed the control connection"

    def _on_event(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            self.events.put(event)
            return
        record = event.get("record")
        if record is not None:
            if type(record) is Message and event.get("truncated"):
                self.truncated += 1
            self.events.put(record)
            return
        kind = event.get("type")
        if kind == "dropped":
            self.events.add_lost(int(event.get("count", 1)))
        elif kind == "stats":
            self.stats = dict(event)
        elif kind == "hello":
            self._read_hello(event)
        elif kind == "conditions_changed" and event.get("conn_id") is None:
            # Someone (another window, a script) changed the global conditions: the window shows what is in force.
            conditions = event.get("conditions")
            if isinstance(conditions, Mapping):
                self.remote_conditions = dict(conditions)
                self.remote_conditions_seq += 1
        elif kind == "bye" and not self._closing:
            self.death = f"the proxy said goodbye: {event.get('reason', '')}".rstrip(": ")

    truncated = 0
    """Messages whose payload the proxy cut short because this window fell behind."""
    remote_conditions: dict[str, Any] | None = None
    remote_conditions_seq = 0
    """Bumped (on the reader thread) each time the proxy announces new global conditions."""
    stats: dict[str, Any] | None = None

    def _command(self, name: str, args: dict[str, Any]) -> concurrent.futures.Future[Any]:
        wire, wargs = _wire_call(name, args)
        return self._pool.submit(self._client.call, wire, **wargs)

    def stop(self) -> None:
        self._closing = True
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.death is None:
            self.death = "stopped"


class ChildProcessLink(AttachLink):
    """Starts ``python -m proxy --control 127.0.0.1:0`` as a child and attaches to it.

    The token goes to the child in its environment (``SOCKSCOPE_TOKEN``), which only this user can read; on its
    command line every user of the machine would see it (``ps``)."""

    kind = "child process"
    READY_PREFIX: Final = "sockscope: control on "

    def __init__(self, options: LinkOptions) -> None:
        super().__init__("127.0.0.1", 0, new_token())
        self.options = options
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    def argv(self) -> list[str]:
        o = self.options
        args = [sys.executable, "-m", "proxy", "--control", "127.0.0.1:0", "--quiet", "--framing", o.framing]
        if proxy_supports_flag("--parent-watch"):
            args.append("--parent-watch")
        if o.demo:
            args += ["--demo", "--demo-interval", str(o.demo_interval)]
        else:
            args += ["--listen", _fmt(o.listen), "--target", _fmt(o.target)]
        return args + o.extra_args

    def start(self) -> None:
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
        super().start()
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
            elif line.startswith("sockscope: listening on "):
                rest = line[len("sockscope: listening on "):].split()
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
            self.death = f"the proxy process exited (status {code}){': ' + err if err else ''}"

    def _terminate(self) -> None:
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


_flag_cache: dict[str, bool] = {}


def proxy_supports_flag(flag: str) -> bool:
    """Whether ``python -m proxy`` knows ``flag`` (read from its argument parser, not by running it)."""
    if flag not in _flag_cache:
        try:
            from proxy.cli import build_parser

            _flag_cache[flag] = any(flag in a.option_strings for a in build_parser()._actions)
        except Exception:
            _flag_cache[flag] = False
    return _flag_cache[flag]


def make_link(options: LinkOptions, *, prefer_child: bool | None = None) -> Link:
    """The link for a window that runs its own proxy: a child process once the control protocol exists."""
    if prefer_child is None:
        prefer_child = (os.environ.get("SOCKSCOPE_IN_PROCESS") != "1" and control_client_available()
                        and proxy_supports_flag("--control"))
    return ChildProcessLink(options) if prefer_child else InProcessLink(options)


# -------------------------------------------------------------------------------------------------- Qt half


class RecordPump(QObject):
    """Drains a link's queue into the store on the GUI thread, at most ~30 times a second.

    ``applied`` carries each batch's :class:`ApplyResult` (one per tick that had records); ``link_died``
    fires once with the reason when the engine goes away.
    """

    applied = Signal(object)
    link_died = Signal(str)

    def __init__(self, store: MessageStore, link: Link | None = None, parent: QObject | None = None,
                 interval_ms: int = PUMP_INTERVAL_MS) -> None:
        super().__init__(parent)
        self.store = store
        self.link = link
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.pump)
        self._died_reported = False
        self.last_batch_size = 0
        self.on_batch: list[Callable[[list[Record]], None]] = []
        """Extra consumers of every raw batch (the timeline), called before ``applied`` is emitted."""

    def set_link(self, link: Link | None) -> None:
        self.link = link
        self._died_reported = False
        if link is not None:
            self._timer.start()

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def pump(self) -> ApplyResult | None:
        link = self.link
        if link is None:
            return None
        records = link.events.drain()
        result = None
        if records:
            self.last_batch_size = len(records)
            for consumer in self.on_batch:
                consumer(records)
            result = self.store.apply(records)
            self.applied.emit(result)
        if not self._died_reported and not link.alive:
            self._died_reported = True
            self.link_died.emit(link.death or "the proxy stopped")
        return result


def notice_text(n: Notice) -> str:
    return f"{n.level}: {n.text}" + (f" (#{n.conn_id})" if n.conn_id is not None else "")

"""The engine side of addons: loads addon files, runs their hooks off the relay's thread, applies what they decide.

Role: :class:`AddonHost` belongs to a :class:`proxy.server.ProxyServer` (made on the first ``-s FILE`` or
``load_addon``). Each loaded file gets a worker thread of its own, which imports the file and runs every hook of
its addons, one call at a time, in the order the engine saw things happen; a file that hangs stops nobody else.
The public types the hooks see are :mod:`proxy.addons`'.

- **Observers** (the default): the host subscribes to the engine's records. ``connection_opened``,
  ``connection_closed`` and ``message`` calls are queued to the worker after the bytes went on; the relay never
  waits. Message calls are handed on once the traffic pauses (:data:`SETTLE_NS`, at the latest
  :data:`SETTLE_MAX_NS`), as the printer makes its deferred lines: hooks then share the interpreter with the relay
  between a game's exchanges, not between a message and its answer. A worker's queue is bounded
  (:data:`OBSERVE_QUEUE`): past it, calls are skipped and counted, and the user is told once.
- **Modifiers** (``modifies = True``): while one is loaded, ``Shared.intercept`` is set and the relay and the
  datagram core hold every message not held for the user (as a hold rule holds it) and hand it here
  (``cmd.Intercept``). The message goes through each modifier's ``message`` hook in load order; the host then
  releases it (as it is, edited, or later) or drops it through the engine's hold path (``ProxyServer.settle``). A
  hook gets ``timeout`` seconds; after that the message goes on as it was, the addon is reported and its hook
  interrupted. While a worker is stuck in a call that cannot be interrupted (a sleep in C), its modifiers are
  skipped: messages are not held for it.
- **Failures**: an exception in a hook changes nothing (the message goes on unchanged) and is reported as an
  ``error`` :class:`~proxy.model.Notice` (the terminal's printer and the window's log show it) with its traceback,
  for the first :data:`REPORT_LIMIT` failures of an addon; after :data:`FAILURE_LIMIT` failed calls in a row the
  addon is disabled, with a notice saying so. Saving the file loads it again (enabled).
- **Hung hooks**: a hook past its time (``timeout`` for a modifier's ``message``, :data:`OBSERVE_TIMEOUT` for the
  rest) is interrupted with :class:`~proxy.addons.AddonInterrupted` raised in its thread
  (``PyThreadState_SetAsyncExc``): an endless Python loop stops at its next bytecode. A call blocked in C cannot be
  interrupted; it is reported, and its worker is skipped until it returns. Loading a file is bounded the same way
  (:data:`LOAD_TIMEOUT`). A hook that spins inside one C call (a regex that backtracks for minutes) holds the
  interpreter: addons run in the proxy's process, so that one cannot be bounded (docs/addons.md says so).
- **Reload**: the engine's timer stats each file every :data:`RELOAD_POLL` seconds (mtime, size, inode); a
  change loads the new version on a new worker and swaps it in once it imported; a version that fails to import is
  reported with its line and the old one keeps running.
- **Decoded values**: :attr:`proxy.addons.Message.decoded` decodes on the hook's thread through a factory of the
  ``sockscope.value_decoders`` entry-point group (the inspector registers one; ``proxy`` never imports it), or one
  given to :func:`register_value_decoder`.

All of the host's state is touched on the engine's loop thread only; workers hand results back with
``loop.call_soon_threadsafe``. Nothing here runs when no addon is loaded (the fast path does not know addons).

Must not import: Qt, ``inspector``, ``proxy.server`` (the server imports this module when it first loads an addon).
Thread: the engine's event-loop thread, plus one worker thread per loaded file (hooks and imports only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import queue
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

from proxy.addons import (
    HOLD_TIMEOUT,
    MAX_DELAY,
    MAX_HOLD_TIMEOUT,
    MAX_INJECTS,
    MIN_TICK_INTERVAL,
    TICK_INTERVAL,
    Addon,
    AddonContext,
    AddonInterrupted,
    Connection,
    Decoded,
    ValueDecoder,
)
from proxy.addons import Message as AddonMessage
from proxy.loop import Alarm
from proxy.model import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    Notice,
    Origin,
    Record,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "FAILURE_LIMIT",
    "LOAD_TIMEOUT",
    "OBSERVE_QUEUE",
    "OBSERVE_TIMEOUT",
    "RELOAD_POLL",
    "REPORT_LIMIT",
    "VALUE_DECODER_GROUP",
    "AddonHost",
    "AddonLoadError",
    "register_value_decoder",
]

FAILURE_LIMIT: Final = 5
"""Failed calls in a row (exceptions, timeouts) after which an addon is disabled until its file changes."""
REPORT_LIMIT: Final = 3
"""Failures of one addon reported with their traceback; later ones are counted (and end in the disable notice)."""
OBSERVE_TIMEOUT: Final = 5.0
"""Seconds any hook other than a modifier's ``message`` may run before it is reported and interrupted."""
STUCK_GRACE: Final = 0.5
"""Seconds an interrupted call may take to end before its worker counts as stuck (its modifiers are skipped)."""
STUCK_DISABLE: Final = 3.0
"""Seconds past its time after which an addon whose call still runs (interrupted or not) is disabled."""
LOAD_TIMEOUT: Final = 10.0
"""Seconds importing an addon file may take."""
SETTLE_NS: Final = 2_000_000
"""Watchers get their message calls once no message has come for this long (as the printer's deferred lines)..."""
SETTLE_MAX_NS: Final = 50_000_000
"""... or at the latest this long after the first of them (traffic that never pauses)."""
OBSERVE_QUEUE: Final = 10_000
"""Calls waiting for one file's worker, past which observer calls are skipped (and counted)."""
RELOAD_POLL: Final = 1.0
"""Seconds between two looks at each addon file's modification time."""
WATCH_INTERVAL: Final = 0.1
"""Seconds between two looks at the workers (a hook past its time)."""
TRACEBACK_MAX: Final = 4000
"""Characters of a traceback a notice carries (its end: the frames nearest the error)."""
HOOKS: Final = ("message", "connection_opened", "connection_closed", "tick")
VALUE_DECODER_GROUP: Final = "sockscope.value_decoders"
"""Entry-point group of factories ``() -> (data, direction, conn_id, deadline_ns) -> Decoded | None``."""


class AddonLoadError(ValueError):
    """An addon file cannot be loaded; the message says why, with the file's line where there is one."""


class _LoadFailed(Exception):
    """Carries how importing a file failed from its worker to the loader. (Not the addon's exception itself:
    asyncio treats a ``SystemExit`` or ``KeyboardInterrupt`` in a future as its own.)"""

    def __init__(self, outcome: _Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


class Engine(Protocol):
    """What the host needs of :class:`proxy.server.ProxyServer` (named here, not imported: the server imports
    this module)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def publish(self, record: Record) -> None: ...

    def subscribe(self, callback: Callable[[Record], None], *, messages: bool = True) -> Callable[[], None]: ...

    def inject(self, conn_id: int, direction: Direction, data: bytes, origin: Origin = ...) -> None: ...

    def settle(self, record: Message, data: bytes | None = None, drop: bool = False) -> bool: ...

    def set_intercept(self, on: bool) -> None: ...

    def snapshot(self) -> dict[str, object]: ...


# ------------------------------------------------------------------------------------------ decoded values

_decoder_lock = threading.Lock()
_decoder: ValueDecoder | None = None
_decoder_loaded = False


def register_value_decoder(decoder: ValueDecoder | None) -> None:
    """Use ``decoder`` for :attr:`proxy.addons.Message.decoded` (instead of the entry point's; None: none)."""
    global _decoder, _decoder_loaded
    with _decoder_lock:
        _decoder = decoder
        _decoder_loaded = True


def _load_value_decoder(entry_points: list[EntryPoint] | None = None) -> ValueDecoder | None:
    from importlib.metadata import entry_points as installed

    for ep in entry_points if entry_points is not None else installed(group=VALUE_DECODER_GROUP):
        try:
            decoder = ep.load()()
            if callable(decoder):
                return decoder  # type: ignore[no-any-return]
        except Exception:  # plugin code is arbitrary: without decoded values, addons still get the bytes
            continue
    return None


def _decode_value(data: bytes, direction: Direction, conn_id: int, deadline_ns: int) -> Decoded | None:
    """Decoded values for an addon, made on its worker thread (the decoders are imported on first use)."""
    global _decoder, _decoder_loaded
    with _decoder_lock:
        if not _decoder_loaded:
            _decoder_loaded = True
            try:
                _decoder = _load_value_decoder()
            except Exception:
                _decoder = None
        decoder = _decoder
    return None if decoder is None else decoder(data, direction, conn_id, deadline_ns)


# ------------------------------------------------------------------------------------------ loading a file


@dataclass(slots=True)
class _Spec:
    """One addon of a file, as loaded: its hooks and settings."""

    name: str
    message: Callable[..., object] | None
    connection_opened: Callable[..., object] | None
    connection_closed: Callable[..., object] | None
    tick: Callable[..., object] | None
    modifies: bool
    timeout: float
    tick_interval: float

    def hook_names(self) -> list[str]:
        return [h for h in HOOKS if getattr(self, h) is not None]


def _load_file(path: str, module_name: str) -> tuple[types.ModuleType, list[_Spec]]:
    """Import ``path`` as module ``module_name`` and find its addons. Runs on the file's worker thread.

    The source is compiled here rather than through ``importlib``'s file loader: that one trusts a cached
    ``__pycache__`` file whose recorded mtime (in whole seconds) and size match, so a quick second save of the same
    size would load the old code; and a user's folder gets no ``__pycache__`` from sockscope.
    """
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module  # dataclasses and typing look their module up while the file runs
    folder = os.path.dirname(path)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # an addon may import a helper module next to it (as mitmproxy scripts may)
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
    return module, _find_addons(module, os.path.basename(path))


def _find_addons(module: types.ModuleType, filename: str) -> list[_Spec]:
    listed = getattr(module, "addons", None)
    if listed is None:
        spec = _spec(module, os.path.splitext(filename)[0], f"{filename}: ")
        if not spec.hook_names():
            raise AddonLoadError(
                f"{filename} defines no addon: give it a list `addons = [MyAddon()]`, or module-level functions "
                f"named {', '.join(HOOKS)}")
        return [spec]
    if not isinstance(listed, list | tuple):
        raise AddonLoadError(f"{filename}: `addons` must be a list of addon objects, got {type(listed).__name__}")
    specs = []
    for i, obj in enumerate(listed):
        where = f"{filename}: addons[{i}] ({type(obj).__name__}): "
        if isinstance(obj, type):
            raise AddonLoadError(f"{where}is a class; list an instance of it: addons = [{obj.__name__}()]")
        spec = _spec(obj, type(obj).__name__, where)
        if not spec.hook_names():
            raise AddonLoadError(f"{where}has none of the hooks {', '.join(HOOKS)}")
        specs.append(spec)
    names = [s.name for s in specs]
    for s in specs:
        if names.count(s.name) > 1:
            s.name = f"{s.name}#{names.index(s.name, 0)}"
    return specs


_TWO_ARGS = {"message": "(ctx, msg)", "connection_opened": "(ctx, conn)", "connection_closed": "(ctx, conn)",
             "tick": "(ctx)"}


def _spec(obj: object, default_name: str, where: str) -> _Spec:
    hooks: dict[str, Callable[..., object] | None] = {}
    for hook in HOOKS:
        fn = getattr(obj, hook, None)
        if fn is None:
            hooks[hook] = None
            continue
        if isinstance(obj, Addon) and getattr(type(obj), hook, None) is getattr(Addon, hook):
            hooks[hook] = None  # the base class's empty hook: never called
            continue
        if not callable(fn):
            raise AddonLoadError(f"{where}{hook} must be a function {hook}{_TWO_ARGS[hook]}, got "
                                 f"{type(fn).__name__}")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            try:
                sig.bind(*((None,) if hook == "tick" else (None, None)))
            except TypeError:
                raise AddonLoadError(f"{where}{hook} must take {_TWO_ARGS[hook]}, its signature is "
                                     f"{hook}{sig}") from None
        hooks[hook] = fn
    modifies = getattr(obj, "modifies", False)
    if not isinstance(modifies, bool):
        raise AddonLoadError(f"{where}modifies must be True or False, got {modifies!r:.60}")
    timeout = _number(getattr(obj, "timeout", HOLD_TIMEOUT), "timeout", where)
    if not 0 < timeout <= MAX_HOLD_TIMEOUT:
        raise AddonLoadError(f"{where}timeout must be above 0 and at most {MAX_HOLD_TIMEOUT:g} seconds (a held "
                             f"message blocks its direction), got {timeout:g}")
    interval = _number(getattr(obj, "tick_interval", TICK_INTERVAL), "tick_interval", where)
    if interval < MIN_TICK_INTERVAL:
        raise AddonLoadError(f"{where}tick_interval must be at least {MIN_TICK_INTERVAL:g} seconds, got {interval:g}")
    name = getattr(obj, "name", None)
    if name is None or isinstance(obj, types.ModuleType):
        name = default_name
    if not isinstance(name, str) or not name.strip():
        raise AddonLoadError(f"{where}name must be text, got {name!r:.60}")
    return _Spec(str.__str__(name).strip()[:80], hooks["message"], hooks["connection_opened"],
                 hooks["connection_closed"], hooks["tick"], modifies, timeout, interval)


def _number(value: object, what: str, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise AddonLoadError(f"{where}{what} must be a number of seconds, got {value!r:.60}")
    return float(value)


def _error_line(e: BaseException, path: str) -> int | None:
    """The line of ``path`` an exception came from (a syntax error's own line, else the deepest frame there)."""
    if isinstance(e, SyntaxError) and e.filename == path and e.lineno:
        return e.lineno
    line = None
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _shown(value: object) -> str:
    """What a hook returned, for a warning: its type, not its ``repr`` (addon code, which may raise or loop)."""
    kind = type(value)
    return f"a {kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else f"a {kind.__name__}"


def _describe(e: BaseException) -> str:
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg}"
    text = str(e)
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _traceback(e: BaseException) -> str:
    """The traceback of an exception from addon code, without the host's own frame that called it."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb)).rstrip()
    if len(text) > TRACEBACK_MAX:
        text = "…" + text[-(TRACEBACK_MAX - 1):]
    return text


def _stack_of(thread: threading.Thread, path: str) -> tuple[int | None, str]:
    """Where ``thread`` is now: the deepest line of ``path`` on its stack, and the stack's last frames."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return None, ""
    stack = traceback.extract_stack(frame)
    line = next((f.lineno for f in reversed(stack) if f.filename == path), None)
    return line, "".join(traceback.format_list(stack[-4:])).rstrip()


def _interrupt(thread: threading.Thread) -> bool:
    """Raise :class:`AddonInterrupted` in ``thread`` at its next bytecode (CPython's ``PyThreadState_SetAsyncExc``,
    the only way to stop a Python loop in another thread); False where the interpreter has no such call."""
    try:
        import ctypes

        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (ImportError, AttributeError):
        return False
    if thread.ident is None:
        return False
    return bool(set_async_exc(ctypes.c_ulong(thread.ident), ctypes.py_object(AddonInterrupted)) == 1)


# ------------------------------------------------------------------------------------------ the worker thread


@dataclass(slots=True)
class _Outcome:
    """How a call ended, in plain values: whatever an addon returned or raised is described on its worker thread
    (its ``__str__`` or ``__repr__`` is addon code, which may raise or loop), never on the engine's."""

    ok: bool
    result: object = None
    """A load's (module, addons); for a hook, None (what it returned is ``returned``)."""
    returned: str | None = None
    """What a hook returned instead of None, described by its type."""
    error: str = ""
    """``"ZeroDivisionError: division by zero"``."""
    line: int | None = None
    """The line of the addon's file the exception came from."""
    trace: str = ""
    """Its traceback, without the host's own frames, cut to :data:`TRACEBACK_MAX`."""
    interrupted: bool = False
    """It was :class:`AddonInterrupted` (the call ran past its time)."""
    load_error: str | None = None
    """A load's :class:`AddonLoadError` message (the file has no addon, a hook has the wrong signature...)."""
    decision: _Decision | None = None
    """What the hook asked for through its context."""


@dataclass(slots=True)
class _Decision:
    """What a hook asked for through its :class:`AddonContext`, as plain values checked on the worker thread (an
    addon could have put anything in its context's attributes)."""

    data: bytes | None = None
    drop: bool = False
    delay: float = 0.0
    injects: list[tuple[int, Direction, bytes]] = field(default_factory=list)


def _nothing_to_do(job: _Job, o: _Outcome) -> bool:
    """A call whose outcome changes nothing on the engine's thread (read on the worker: ``in_row`` may be a moment
    old, which only delays resetting the count of failures in a row to the next call that reports)."""
    d = o.decision
    return (o.ok and job.hook == "message" and job.held is None and o.returned is None and not job.reported
            and (d is None or not d.injects) and job.slot is not None and job.slot.in_row == 0)


def _take_decision(ctx: AddonContext) -> _Decision:
    d = _Decision()
    try:
        data = ctx._data
        d.data = data if type(data) is bytes else None
        d.drop = ctx._drop is True
        delay = ctx._delay
        d.delay = delay if type(delay) is float and 0 <= delay <= MAX_DELAY else 0.0
        d.injects = [(c, r, b) for c, r, b in list(ctx._injects)[:MAX_INJECTS]
                     if type(c) is int and type(r) is Direction and type(b) is bytes]
    except BaseException:  # the addon replaced the context's lists with something else: it decided nothing
        return _Decision()
    return d


def _failure(e: BaseException, path: str) -> _Outcome:
    """Describe what a call raised (on its worker thread)."""
    if isinstance(e, AddonLoadError):
        return _Outcome(False, error="AddonLoadError", load_error=str(e))
    interrupted = isinstance(e, AddonInterrupted)
    try:
        return _Outcome(False, error=_describe(e), line=_error_line(e, path), trace=_traceback(e),
                        interrupted=interrupted)
    except BaseException:  # its __str__ raised: say what we can without it
        return _Outcome(False, error=f"{type(e).__name__} (its message could not be shown)",
                        line=_error_line(e, path), interrupted=interrupted)


def _returned(value: object) -> str | None:
    if value is None:
        return None
    try:
        return _shown(value)
    except BaseException:
        return "a value"


@dataclass(eq=False, slots=True)
class _Job:
    """One call for a worker: a hook, or loading the file."""

    slot: _Slot | None
    hook: str  # "message", ..., or "load"
    call: Callable[[], object]
    limit: float  # seconds before it is reported and interrupted
    ctx: AddonContext | None = None
    held: _Held | None = None
    record: Message | None = None
    interrupted: bool = False
    timed_out: bool = False
    reported: bool = False  # its time ran out and that was reported
    interrupts: int = 0  # interrupts sent again while it kept running
    interrupted_at: float = 0.0  # time.monotonic() of the first interrupt
    future: asyncio.Future[Any] | None = None  # a load's


class _Worker:
    """A thread that runs one file's calls one at a time, in the order they were queued."""

    def __init__(self, host: AddonHost, label: str, path: str) -> None:
        self.host = host
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()  # C get(): an interrupt cannot corrupt it
        self.submitted = 0  # written by the engine thread only
        self.taken = 0  # written by the worker only
        self.current: _Job | None = None
        self.started_ns = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name=f"sockscope-addon {label}", daemon=True)
        self.thread.start()

    @property
    def pending(self) -> int:
        return self.submitted - self.taken

    @property
    def stuck(self) -> bool:
        """A call ran out of time and still runs :data:`STUCK_GRACE` after it was interrupted (blocked where an
        interrupt cannot reach it, or catching it). Within the grace, calls queue behind it: an interrupted Python
        loop ends within microseconds."""
        job = self.current
        return job is not None and job.interrupted and time.monotonic() - job.interrupted_at > STUCK_GRACE

    def submit(self, job: _Job, *, bounded: bool) -> bool:
        if self.stopped or (bounded and self.pending >= OBSERVE_QUEUE):
            return False
        self.submitted += 1
        self._jobs.put(job)
        return True

    def stop(self) -> None:
        self.stopped = True
        self._jobs.put(None)

    def _run(self) -> None:
        loop = self.host.loop
        while True:
            try:
                job = self._jobs.get()
                self.taken += 1
                if job is None:
                    return
                if job.timed_out:  # a held message's call whose time ran out while it waited in line: moot
                    continue
                self.started_ns = time.monotonic_ns()
                self.current = job
                try:
                    result = job.call()
                    outcome = (_Outcome(True, result) if job.hook == "load" else
                               _Outcome(True, returned=_returned(result)))
                except BaseException as e:  # SystemExit or KeyboardInterrupt raised by an addon end a call, not us
                    outcome = _failure(e, self.path)
                finally:
                    if job.ctx is not None:
                        job.ctx._closed = True
                if job.ctx is not None:
                    outcome.decision = _take_decision(job.ctx)
                self.current = None
                if _nothing_to_do(job, outcome):
                    continue  # a watcher's message call that went well: the engine's thread need not hear of it
                try:
                    loop.call_soon_threadsafe(self.host._done, self, job, outcome)
                except RuntimeError:  # the engine's loop is closed: the proxy is gone
                    return
            except AddonInterrupted:
                continue  # an interrupt that landed just after its call returned: nothing to stop any more


# ------------------------------------------------------------------------------------------ engine-side state


@dataclass(eq=False, slots=True)
class _Slot:
    """One addon of a loaded file version, with its run-time record."""

    spec: _Spec
    file: _File
    enabled: bool = True
    in_row: int = 0
    failures: int = 0
    reported: int = 0
    said: set[str] = field(default_factory=set)  # one-time warnings given
    skipped: int = 0
    tick_handle: asyncio.TimerHandle | None = None
    tick_busy: bool = False

    @property
    def label(self) -> str:
        return f"addon {self.spec.name!r} ({os.path.basename(self.file.path)})"

    def switch_off(self) -> None:
        """No more calls: disabled, its tick cancelled (on the loop thread)."""
        self.enabled = False
        if self.tick_handle is not None:
            self.tick_handle.cancel()
            self.tick_handle = None


@dataclass(eq=False, slots=True)
class _File:
    path: str
    version: int
    worker: _Worker
    signature: tuple[int, int, int] | None
    slots: list[_Slot] = field(default_factory=list)
    module_name: str = ""


@dataclass(eq=False, slots=True)
class _Held:
    """A message held for the modifiers, on its way through their hooks."""

    record: Message
    chain: list[_Slot]
    data: bytes
    changed: bool = False
    drop: bool = False
    delay: float = 0.0
    injects: list[tuple[_Slot, int, Direction, bytes]] = field(default_factory=list)
    job: _Job | None = None
    timer: asyncio.TimerHandle | None = None
    alarm: Alarm | None = None  # releases it after its delay
    settled: bool = False


def _resolve(path: object) -> str:
    """The absolute path of an addon file; :class:`AddonLoadError` when there is no such file."""
    if not isinstance(path, str) or not path:
        raise AddonLoadError("give the path of a Python file")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise AddonLoadError(f"{path}: no such file")
    return path


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AddonHost:
    """The loaded addon files of one engine (see the module's docstring)."""

    def __init__(self, engine: Engine, *, reload_poll: float = RELOAD_POLL, observe_timeout: float = OBSERVE_TIMEOUT,
                 load_timeout: float = LOAD_TIMEOUT) -> None:
        self.engine = engine
        self.loop = engine.loop
        self.reload_poll = reload_poll
        self.observe_timeout = observe_timeout
        self.load_timeout = load_timeout
        self.files: dict[str, _File] = {}
        """Loaded files by absolute path (the version running)."""
        self._loading: dict[str, _File] = {}  # versions being imported (a reload), by path
        self._versions = 0
        self._conns: dict[int, Connection] = {}
        self._held: dict[int, _Held] = {}  # by message id
        self._delayed: dict[int, _Held] = {}  # decided, waiting for their delay (by message id)
        self._watchers: list[_Slot] = []  # enabled addons with a message hook that do not modify
        self._backlog: list[Message] = []  # messages for the watchers, handed on when the traffic pauses
        self._first_ns = self._last_ns = 0
        self._settle: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._subscribed_messages = False
        self._watch: asyncio.TimerHandle | None = None
        self._next_poll = 0.0
        self._closed = False
        self._conns_ready = False

    # -------------------------------------------------------------------------------- loading

    @property
    def slots(self) -> list[_Slot]:
        return [s for f in self.files.values() for s in f.slots]

    async def load(self, path: str) -> list[str]:
        """Load (or load again) the addon file ``path``; returns its addons' names. :class:`AddonLoadError` says
        what is wrong (the running version of a file loaded before then keeps running)."""
        if self._closed:
            raise AddonLoadError("the proxy is shutting down")
        path = _resolve(path)
        signature = _signature(path)
        new = await self._import(path, signature)
        old = self.files.get(path)
        self._swap(path, old, new)
        names = [s.spec.name for s in new.slots]
        verb = "loaded again" if old is not None else "loaded"
        for s in new.slots:
            how = "holds messages to change them" if s.spec.modifies else "observes"
            self._notice("info", f"{s.label} {verb}: {how}; hooks {', '.join(s.spec.hook_names())}")
        return names

    async def _import(self, path: str, signature: tuple[int, int, int] | None) -> _File:
        self._versions += 1
        version = self._versions
        label = os.path.basename(path)
        stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(label)[0])
        module_name = f"sockscope_addon_{stem}_{version}"
        file = _File(path, version, _Worker(self, f"{label} v{version}", path), signature, module_name=module_name)
        self._loading[path] = file
        future: asyncio.Future[Any] = self.loop.create_future()
        limit = self.load_timeout
        job = _Job(None, "load", lambda: _load_file(path, module_name), limit, future=future)
        file.worker.submit(job, bounded=False)
        self._ensure_watch()
        try:
            try:
                _module, specs = await asyncio.wait_for(future, limit + 1.0)
            except TimeoutError:
                raise AddonLoadError(f"{label}: importing it did not finish within {limit:g} s (it is "
                                     "blocked, or loops at import)") from None
            except _LoadFailed as failed:
                o = failed.outcome
                if o.load_error is not None:
                    raise AddonLoadError(o.load_error) from None
                if o.interrupted:
                    raise AddonLoadError(f"{label}: importing it did not finish within {limit:g} s (an "
                                         "endless loop at import?); it was stopped") from None
                at = f" at line {o.line}" if o.line is not None else ""
                raise AddonLoadError(f"{label}: {o.error}{at}" + (f"\n{o.trace}" if o.trace else "")) from None
        except BaseException:
            file.worker.stop()
            sys.modules.pop(module_name, None)
            if self._loading.get(path) is file:
                del self._loading[path]
            raise
        if self._loading.get(path) is file:
            del self._loading[path]
        file.slots = [_Slot(spec, file) for spec in specs]
        return file

    def _swap(self, path: str, old: _File | None, new: _File) -> None:
        if old is not None:
            self._retire(old)
        self.files[path] = new
        self._seed_connections()
        for s in new.slots:
            if s.spec.tick is not None:
                self._schedule_tick(s)
        self._refresh()

    def _retire(self, file: _File) -> None:
        for s in file.slots:
            s.switch_off()
        file.worker.stop()  # after the calls already queued (their results still apply)
        old_module = sys.modules.get(file.module_name)
        if old_module is not None:
            del sys.modules[file.module_name]

    def unload(self, path: str) -> list[str]:
        """Stop the addons of file ``path`` (messages held for them go on as they are); returns their names."""
        path = os.path.abspath(os.path.expanduser(path))
        file = self.files.pop(path, None)
        if file is None:
            raise AddonLoadError(f"{path}: no addon file of that name is loaded")
        self._retire(file)
        self._refresh()
        self._notice("info", f"addon file {os.path.basename(path)} unloaded")
        return [s.spec.name for s in file.slots]

    def loaded(self) -> list[dict[str, object]]:
        """What is loaded, for ``snapshot`` and the ``load_addon`` reply."""
        return [{"name": s.spec.name, "file": s.file.path, "modifies": s.spec.modifies, "enabled": s.enabled,
                 "hooks": s.spec.hook_names(), "failures": s.failures} for s in self.slots]

    def close(self) -> None:
        """The engine stops: held messages go on as they are, timers stop, workers end after their current call."""
        self._closed = True
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        self._backlog.clear()
        for held in list(self._held.values()):
            self._settle_now(held, original=True)
        for held in list(self._delayed.values()):  # their delay no longer matters (as for conditions' delays)
            if held.alarm is not None:
                held.alarm.cancel()
            self._release_late(held)
        for f in [*self.files.values(), *self._loading.values()]:
            self._retire(f)
        self.files.clear()
        self._refresh()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # -------------------------------------------------------------------------------- what listens

    def _refresh(self) -> None:
        """Subscribe to what the enabled addons need, and tell the engine whether to hold messages for them."""
        slots = [s for s in self.slots if s.enabled]
        self._watchers = [s for s in slots if s.spec.message is not None and not s.spec.modifies]
        want_messages = bool(self._watchers)
        want_any = bool(slots)
        if self._unsubscribe is not None and (not want_any or want_messages != self._subscribed_messages):
            self._unsubscribe()
            self._unsubscribe = None
        if want_any and self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self._on_record, messages=want_messages)
            self._subscribed_messages = want_messages
        self.engine.set_intercept(any(s.spec.modifies and s.spec.message is not None for s in slots))
        if not want_any:
            for held in list(self._held.values()):
                if held.job is None:
                    self._settle_now(held, original=True)

    def _seed_connections(self) -> None:
        """The connections open before the first addon loaded (later ones arrive as records)."""
        if self._conns_ready:
            return
        self._conns_ready = True
        conns = self.engine.snapshot().get("connections")
        for c in conns if isinstance(conns, list) else ():
            with contextlib.suppress(Exception):
                cid = int(c["conn"])
                self._conns[cid] = Connection(cid, str(c.get("transport", "tcp")), tuple(c["client"]),  # type: ignore[arg-type]
                                              tuple(c["target"]), c.get("replay_of"))  # type: ignore[arg-type]

    def _conn(self, conn_id: int) -> Connection:
        conn = self._conns.get(conn_id)
        return conn if conn is not None else Connection(conn_id, "tcp", ("?", 0), ("?", 0))

    def _on_record(self, r: Record) -> None:
        """Every record the engine publishes while an addon is loaded (engine thread)."""
        kind = type(r)
        if kind is Message:
            if self._watchers:  # one append here; the calls are made when the traffic pauses (see _settled)
                assert isinstance(r, Message)
                backlog = self._backlog
                backlog.append(r)
                self._last_ns = r.arrival_ns
                if len(backlog) == 1:
                    self._first_ns = r.arrival_ns
                    self._settle = self.loop.call_later(SETTLE_NS / 1e9, self._settled)
                elif len(backlog) >= OBSERVE_QUEUE:
                    self._flush()
            return
        if kind is not ConnectionOpened and kind is not ConnectionClosed:
            return
        self._flush()  # a connection's messages go to its watchers before its end (and after its start)
        if kind is ConnectionOpened:
            assert isinstance(r, ConnectionOpened)
            conn = Connection(r.conn_id, r.transport, r.client_addr, r.target_addr, r.replay_of)
            self._conns[r.conn_id] = conn
            for s in self.slots:
                if s.enabled and s.spec.connection_opened is not None:
                    self._observe(s, "connection_opened", s.spec.connection_opened, conn)
        elif kind is ConnectionClosed:
            assert isinstance(r, ConnectionClosed)
            conn = replace(self._conn(r.conn_id), reason=r.reason.value)
            self._conns.pop(r.conn_id, None)
            for s in self.slots:
                if s.enabled and s.spec.connection_closed is not None:
                    self._observe(s, "connection_closed", s.spec.connection_closed, conn)

    def _settled(self) -> None:
        """The watchers' message calls are handed to their threads once the traffic pauses for :data:`SETTLE_NS`
        (or :data:`SETTLE_MAX_NS` after the first of them): their hooks then run between a game's exchanges, not
        between a message and its answer, where they would compete with the relay for the interpreter."""
        self._settle = None
        now = time.monotonic_ns()
        if self._backlog and now - self._last_ns < SETTLE_NS and now - self._first_ns < SETTLE_MAX_NS:
            self._settle = self.loop.call_later((self._last_ns + SETTLE_NS - now) / 1e9, self._settled)
            return
        self._flush()

    def _flush(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None
        backlog, self._backlog = self._backlog, []
        for r in backlog:
            for s in self._watchers:
                if s.enabled:
                    self._observe(s, "message", s.spec.message, self._message_of(r, r.data), r)  # type: ignore[arg-type]

    def _message_of(self, r: Message, data: bytes) -> AddonMessage:
        return AddonMessage(r.id, self._conn(r.conn_id), r.direction, data, r.seq, r.origin.value,
                            r.arrival_ns / 1e9, _decode_value)

    def _context(self, s: _Slot, role: str, conn_id: int | None = None) -> AddonContext:
        # made for every call: nothing here may cost more than a few object creations (the relay's thread)
        return AddonContext(s.spec.name, role, self._conns, functools.partial(self._post_inject, s),
                            functools.partial(self._post_log, s, conn_id))

    def _post_log(self, s: _Slot, conn_id: int | None, text: str) -> None:
        """``ctx.log`` (the addon's thread): shown at once, even from a hook that never returns."""
        with contextlib.suppress(RuntimeError):  # the engine's loop is closed: the proxy is gone
            self.loop.call_soon_threadsafe(self._notice, "info", f"{s.label}: {text}", conn_id)

    def _post_inject(self, s: _Slot, conn_id: int, direction: Direction, data: bytes) -> None:
        """``ctx.inject`` after its hook returned (from a thread of the addon's own)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._inject, s, conn_id, direction, data)

    def _observe(self, s: _Slot, hook: str, fn: Callable[..., object], arg: object,
                 record: Message | None = None) -> None:
        conn_id = record.conn_id if record is not None else arg.id if isinstance(arg, Connection) else None
        ctx = self._context(s, "observe" if hook == "message" else f"{hook}()", conn_id)
        job = _Job(s, hook, functools.partial(fn, ctx, arg), self.observe_timeout, ctx, record=record)
        if not s.file.worker.submit(job, bounded=True):
            s.skipped += 1
            if "queue" not in s.said:
                s.said.add("queue")
                why = ("is stuck in a call" if s.file.worker.stuck else
                       f"has {OBSERVE_QUEUE:,} calls waiting")
                self._notice("warning", f"{s.label} {why}: further calls are skipped until it catches up "
                                        "(not repeated)")

    # -------------------------------------------------------------------------------- ticks

    def _schedule_tick(self, s: _Slot) -> None:
        s.tick_handle = self.loop.call_later(s.spec.tick_interval, self._tick, s)

    def _tick(self, s: _Slot) -> None:
        s.tick_handle = None
        if not s.enabled or s.spec.tick is None:
            return
        if not s.tick_busy:  # a tick that has not returned yet is not queued again behind itself
            ctx = self._context(s, "tick()")
            job = _Job(s, "tick", functools.partial(s.spec.tick, ctx), self.observe_timeout, ctx)
            if s.file.worker.submit(job, bounded=True):
                s.tick_busy = True
        self._schedule_tick(s)

    # -------------------------------------------------------------------------------- holding messages

    def intercept(self, record: Message) -> None:
        """A message the engine just held for the modifiers (from a shell's command loop: decisions are applied on a
        later loop turn, never inside it)."""
        chain = [s for s in self.slots if s.enabled and s.spec.modifies and s.spec.message is not None]
        held = _Held(record, chain, record.data)
        self._held[record.id] = held
        self.loop.call_soon(self._next, held)

    def _next(self, held: _Held) -> None:
        """Hand the message to the next modifier in line, or settle it when none is left."""
        held.job = None
        while held.chain and not held.drop:
            s = held.chain.pop(0)
            if not s.enabled or s.spec.message is None:
                continue
            worker = s.file.worker
            if worker.stuck:
                s.skipped += 1
                if "stuck" not in s.said:
                    s.said.add("stuck")
                    self._notice("warning", f"{s.label} is still stuck in a call that cannot be interrupted: "
                                            "messages are not held for it meanwhile (not repeated)")
                continue
            ctx = self._context(s, "modify", held.record.conn_id)
            msg = self._message_of(held.record, held.data)
            job = _Job(s, "message", functools.partial(s.spec.message, ctx, msg), s.spec.timeout, ctx, held=held,
                       record=held.record)
            if not worker.submit(job, bounded=False):
                continue
            held.job = job
            held.timer = self.loop.call_later(s.spec.timeout, self._hold_timed_out, held, job)
            return
        self._settle_now(held)

    def _hold_timed_out(self, held: _Held, job: _Job) -> None:
        held.timer = None
        if held.job is not job or held.settled:
            return
        job.timed_out = True
        self._overdue(job)
        self._next(held)  # the message goes on with what it was before this addon

    def _settle_now(self, held: _Held, *, original: bool = False) -> None:
        if held.settled:
            return
        held.settled = True
        self._held.pop(held.record.id, None)
        if held.timer is not None:
            held.timer.cancel()
            held.timer = None
        if original:
            self.engine.settle(held.record)
            return
        if held.delay > 0 and not held.drop:
            # an Alarm, not call_later: loop timers may fire a millisecond early, and "later" must mean later
            held.alarm = Alarm(self.loop, lambda _now: self._release_late(held))
            held.alarm.set(time.monotonic_ns() + round(held.delay * 1e9))
            self._delayed[held.record.id] = held
            return
        self.engine.settle(held.record, held.data if held.changed else None, held.drop)
        self._flush_injects(held)

    def _release_late(self, held: _Held) -> None:
        held.alarm = None
        self._delayed.pop(held.record.id, None)
        self.engine.settle(held.record, held.data if held.changed else None)
        self._flush_injects(held)

    def _flush_injects(self, held: _Held) -> None:
        for s, conn_id, direction, data in held.injects:
            self._inject(s, conn_id, direction, data)
        held.injects.clear()

    def _inject(self, s: _Slot, conn_id: int, direction: Direction, data: bytes) -> None:
        try:
            self.engine.inject(conn_id, direction, data, Origin.INJECTED)
        except (KeyError, ValueError) as e:
            text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            if "inject" not in s.said:
                s.said.add("inject")
                self._notice("warning", f"{s.label}: its injection into #{conn_id} {direction.label} was not sent: "
                                        f"{text} (not repeated)", conn_id)

    # -------------------------------------------------------------------------------- results

    def _done(self, worker: _Worker, job: _Job, outcome: _Outcome) -> None:
        """A call returned (or raised) on ``worker``; engine thread."""
        if job.hook == "load":
            assert job.future is not None
            if not job.future.done():
                if outcome.ok:
                    job.future.set_result(outcome.result)
                else:
                    job.future.set_exception(_LoadFailed(outcome))
            return
        s = job.slot
        assert s is not None
        if job.hook == "tick":
            s.tick_busy = False
        held = job.held
        if not outcome.ok:  # a call that failed changes nothing (and injects nothing)
            if not job.reported:  # else its time ran out: that was reported then
                self._failed(s, job, outcome)
            if held is not None and held.job is job:
                self._cancel_timer(held)
                self._next(held)
            return
        if job.reported:
            if "late" not in s.said:
                s.said.add("late")
                self._notice("warning", f"{s.label}: its {job.hook}() returned after its time had run out; what it "
                                        "decided then was ignored (not repeated)")
            return
        s.in_row = 0
        d = outcome.decision or _Decision()
        if outcome.returned is not None and "returned" not in s.said:
            s.said.add("returned")
            self._notice("warning", f"{s.label}: {job.hook}() returned {outcome.returned}; hooks return None "
                                    "(to change a message use ctx.replace(data)); the value was ignored (not "
                                    "repeated)")
        if held is not None:
            if held.job is not job or held.settled:
                return
            self._cancel_timer(held)
            if d.data is not None:
                held.data = d.data
                held.changed = held.data != held.record.data
            held.drop = held.drop or d.drop
            held.delay = min(MAX_DELAY, held.delay + d.delay)
            held.injects.extend((s, c, r, b) for c, r, b in d.injects)
            self._next(held)
            return
        for conn_id, direction, data in d.injects:
            self._inject(s, conn_id, direction, data)

    def _cancel_timer(self, held: _Held) -> None:
        if held.timer is not None:
            held.timer.cancel()
            held.timer = None

    def _failed(self, s: _Slot, job: _Job, o: _Outcome) -> None:
        s.failures += 1
        s.in_row += 1
        what = self._what(job)
        if s.reported < REPORT_LIMIT:
            s.reported += 1
            at = f" at line {o.line}" if o.line is not None else ""
            more = (" Further failures of this addon are counted, not shown." if s.reported == REPORT_LIMIT
                    else "")
            self._notice("error", f"{s.label}: {job.hook}() raised {o.error}{at}; {what}.{more}"
                                  + (f"\n{o.trace}" if o.trace else ""),
                         job.record.conn_id if job.record is not None else None)
        self._check_disable(s)

    def _what(self, job: _Job) -> str:
        r = job.record
        if r is None:
            return "nothing was changed"
        where = f"message {r.id} (#{r.conn_id} {r.direction.label})"
        return f"{where} went on unchanged" if job.held is not None else f"{where} was not affected"

    def _check_disable(self, s: _Slot) -> None:
        if s.in_row < FAILURE_LIMIT or not s.enabled:
            return
        s.switch_off()
        self._notice("error", f"{s.label} is disabled: {s.in_row} calls in a row failed ({s.failures} in all). "
                              f"Messages go on without it. Fix {s.file.path} and save it: it is loaded again.")
        self._refresh()

    def _overdue(self, job: _Job) -> None:
        """A call ran past its time: report where it is, and interrupt it (once)."""
        if job.reported:
            return
        job.reported = True
        s = job.slot
        assert s is not None
        worker = s.file.worker
        running = worker.current is job
        line, stack = _stack_of(worker.thread, s.file.path) if running else (None, "")
        at = f" (it was at line {line})" if line is not None else ""
        interrupted = running and _interrupt(worker.thread)
        job.interrupted = running
        job.interrupted_at = time.monotonic()
        s.failures += 1
        s.in_row += 1
        if not running:
            stopped = "it never started: an earlier call of this file was still running"
        elif interrupted:
            stopped = "it was interrupted"
        else:
            stopped = ("it cannot be interrupted where it waits; calls to this file's addons are skipped until it "
                       "returns")
        text = (f"{s.label}: {job.hook}() did not return within {job.limit:g} s{at}; {self._what(job)}, and "
                f"{stopped}")
        if s.reported < REPORT_LIMIT:
            s.reported += 1
            self._notice("error", text + (f"\n{stack}" if stack else ""),
                         job.record.conn_id if job.record is not None else None)
        self._check_disable(s)

    def _still_running(self, f: _File, job: _Job, late_ns: float) -> None:
        """A call interrupted at its time is still running: interrupt it again now and then (a hook that catches
        ``BaseException`` in its loop swallows one); past :data:`STUCK_DISABLE` its addon is disabled."""
        if job.interrupted and late_ns // 1e9 > job.interrupts:
            job.interrupts += 1
            _interrupt(f.worker.thread)
        s = job.slot
        if s is None or not s.enabled or late_ns < STUCK_DISABLE * 1e9:
            return
        s.switch_off()
        self._notice("error", f"{s.label} is disabled: its {job.hook}() has not returned {job.limit + STUCK_DISABLE:g} "
                              "s after it was called, even when interrupted (it may catch BaseException, or wait in "
                              "C). Its thread may still be busy; fix the file and save it, or restart the proxy.")
        self._refresh()

    # -------------------------------------------------------------------------------- the watch timer

    def _ensure_watch(self) -> None:
        if self._watch is None and not self._closed:
            self._next_poll = time.monotonic() + self.reload_poll
            self._watch = self.loop.call_later(WATCH_INTERVAL, self._on_watch)

    def _on_watch(self) -> None:
        self._watch = None
        if self._closed:
            return
        now_ns = time.monotonic_ns()
        for f in [*self.files.values(), *self._loading.values()]:
            job = f.worker.current
            if job is None:
                continue
            late_ns = now_ns - f.worker.started_ns - job.limit * 1e9
            if job.reported:
                self._still_running(f, job, late_ns)
            elif late_ns > 0 and job.held is None:  # a held message has its own timer
                if job.hook == "load":
                    job.reported = True
                    job.interrupted = True
                    _interrupt(f.worker.thread)
                else:
                    self._overdue(job)
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.reload_poll
            for path, f in list(self.files.items()):
                sig = _signature(path)
                if sig is not None and sig != f.signature and path not in self._loading:
                    f.signature = sig  # one attempt per change: a broken save is reported once
                    from proxy.tasks import spawn

                    spawn(self._reload(path, sig), name=f"addon-reload-{os.path.basename(path)}")
        if self.files or self._loading:
            self._watch = self.loop.call_later(WATCH_INTERVAL, self._on_watch)

    async def _reload(self, path: str, signature: tuple[int, int, int]) -> None:
        label = os.path.basename(path)
        try:
            new = await self._import(path, signature)
        except AddonLoadError as e:
            head, _, tb = str(e).partition("\n")
            self._notice("error", f"addon file {label} changed but cannot be loaded: {head.removeprefix(label + ': ')}"
                                  f"; the previous version keeps running" + (f"\n{tb}" if tb else ""))
            return
        old = self.files.get(path)
        if old is None or self._closed:  # unloaded meanwhile
            self._retire(new)
            return
        self._swap(path, old, new)
        self._notice("info", f"addon file {label} changed: loaded again "
                             f"({', '.join(s.spec.name for s in new.slots)})")

    # -------------------------------------------------------------------------------- notices

    def _notice(self, level: str, text: str, conn_id: int | None = None) -> None:
        self.engine.publish(Notice(level, text, time.monotonic_ns(), conn_id))


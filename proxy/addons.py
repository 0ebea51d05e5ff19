"""Addons: a Python file of typed hooks that sees, changes, drops, delays or injects messages.

Role: the public API an addon author imports (docs/addons.md). ``sockscope-proxy -s FILE`` (or the window's
"Load addon…") loads a file that defines ``addons = [SomeAddon()]`` (instances of :class:`Addon` subclasses, or of
any class with the same methods) or, without ``addons``, module-level functions with the hooks' names. The hooks:

- ``message(ctx, msg)``: a message was received (TCP: one framed message; UDP: one datagram), either direction;
- ``connection_opened(ctx, conn)`` / ``connection_closed(ctx, conn)``: a connection (or UDP flow) began / ended;
- ``tick(ctx)``: every ``tick_interval`` seconds (default :data:`TICK_INTERVAL`).

Hooks never run on the relay's thread: each loaded file has a worker thread of its own. An addon *observes* by
default: its ``message`` hook is fed after the bytes went on, and it cannot change them. An addon that sets
``modifies = True`` gets each message *held* (as a hold rule holds it): its ``message`` hook decides with
:meth:`AddonContext.replace`, :meth:`AddonContext.drop` or :meth:`AddonContext.delay` (nothing: forwarded as it
is), within ``timeout`` seconds (default :data:`HOLD_TIMEOUT`); after that the original is forwarded and the addon
is reported. Every hook may :meth:`AddonContext.inject` bytes into a connection: they enter the same receive path
as live bytes (framing, conditions, rules, recording, and the addons' own ``message`` hooks, with
``msg.origin == "injected"``). An exception in a hook is reported with its traceback and changes nothing: the
message goes on unchanged; an addon that keeps failing is disabled (see proxy/addonhost.py for the engine side).

This module holds values and the context only: it is what an addon file imports (``from proxy.addons import
Addon, AddonContext, Message``), and it is checked by mypy like the rest (``py.typed``).

Must not import: Qt, ``inspector``, asyncio, ``proxy.server``.
Thread: values are made on the engine's thread and read on an addon's worker thread (they are immutable);
an :class:`AddonContext` is used by the hook it was given to, on that worker thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from proxy.model import Direction

__all__ = [
    "HOLD_TIMEOUT",
    "MAX_HOLD_TIMEOUT",
    "MIN_TICK_INTERVAL",
    "TICK_INTERVAL",
    "Addon",
    "AddonContext",
    "AddonInterrupted",
    "Connection",
    "ConnectionHook",
    "Decoded",
    "Direction",
    "Message",
    "MessageHook",
    "TickHook",
]

HOLD_TIMEOUT: Final = 0.5
"""Seconds a ``modifies = True`` addon's ``message`` hook may take before the original is forwarded."""
MAX_HOLD_TIMEOUT: Final = 10.0
"""The longest ``timeout`` an addon may ask for: a held message blocks its direction (TCP order) meanwhile."""
TICK_INTERVAL: Final = 0.1
"""Seconds between two ``tick`` calls unless the addon sets ``tick_interval``."""
MIN_TICK_INTERVAL: Final = 0.01
"""The shortest ``tick_interval`` (a faster tick would only keep the interpreter from relaying)."""
MAX_DELAY: Final = 60.0
"""The longest :meth:`AddonContext.delay` of one message, in seconds."""
MAX_INJECT: Final = 16 << 20
"""The most bytes one :meth:`AddonContext.inject` may carry (the default frame cap)."""
MAX_LOG: Final = 2000
"""Characters of one :meth:`AddonContext.log` line kept (the rest is cut, with an ellipsis)."""
MAX_LOGS: Final = 100
"""Lines one hook call may log; more are counted in one last line."""
MAX_INJECTS: Final = 1000
"""Injections one hook call may make (a loop that injects for ever must not flood a connection or the memory)."""


class AddonInterrupted(BaseException):
    """Raised inside a hook that ran past its time (an endless loop): the hook is stopped and reported.

    A ``BaseException``, like ``KeyboardInterrupt``, so that an addon's ``except Exception:`` does not swallow it.
    """


@dataclass(frozen=True, slots=True)
class Connection:
    """A TCP connection or a UDP flow (the datagrams of one client address), as a hook sees it."""

    id: int
    """The number the window and the terminal show (``#3``); TCP connections and UDP flows share one numbering."""
    transport: str
    """``"tcp"`` or ``"udp"``."""
    client: tuple[str, int]
    """The client's address (host, port)."""
    server: tuple[str, int]
    """The server (target) address the proxy relays to."""
    replay_of: int | None = None
    """For a session replay: the id of the connection being replayed."""
    reason: str | None = None
    """How it ended, in ``connection_closed`` only: ``"closed"``, ``"client reset"``, ``"idle timeout"`` ..."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """What sockscope's decoders make of a message (the inspector's, through the ``sockscope.value_decoders``
    entry point): the decoder's name and the decoded top-level values (one per JSON value, msgpack object, struct
    record...). Values are plain Python data (dicts, lists, str, numbers); a pickle is read safely, never run."""

    decoder: str
    """``"json"``, ``"msgpack"``, ``"pickle"``, ``"text"``, ``"hex"``, ..."""
    values: tuple[object, ...] = ()
    error: str | None = None
    """Why the bytes could not be decoded (or the decode gave up at its deadline); ``values`` is then empty."""

    @property
    def value(self) -> object | None:
        """The first decoded value (a message usually holds one), or None."""
        return self.values[0] if self.values else None


ValueDecoder = Callable[[bytes, Direction, int, int], "Decoded | None"]
"""``(data, direction, conn_id, deadline_ns) -> Decoded | None``: how :attr:`Message.decoded` is computed (the
engine sets it; None when no decoder is installed)."""

DECODE_DEADLINE_NS: Final = 50_000_000
"""How long :attr:`Message.decoded` may decode (on the addon's thread) before it gives up."""


class Message:
    """One message as a hook sees it: a TCP message (framed with ``--framing``) or a UDP datagram.

    ``data`` holds the bytes as received (for an observer, also as forwarded unless another addon or the user
    changed them). ``decoded`` decodes them on first use, on the addon's own thread, with a deadline.
    """

    __slots__ = ("_decode", "_decoded", "arrival", "conn", "data", "direction", "id", "origin", "seq")

    id: int
    """The message's number (the window's ``#`` column)."""
    conn: Connection
    direction: Direction
    """``Direction.C2S`` (client to server) or ``Direction.S2C``; ``direction.label`` is ``"c2s"``/``"s2c"``."""
    data: bytes
    seq: int
    """Per connection and direction, from 0, in stream order."""
    origin: str
    """``"live"``, ``"injected"`` (by an addon, the window or a script), ``"replayed"`` or ``"duplicate"``."""
    arrival: float
    """When it arrived, in seconds of ``time.monotonic()``."""

    def __init__(self, id: int, conn: Connection, direction: Direction, data: bytes, seq: int = 0,
                 origin: str = "live", arrival: float = 0.0, decode: ValueDecoder | None = None) -> None:
        self.id = id
        self.conn = conn
        self.direction = direction
        self.data = data
        self.seq = seq
        self.origin = origin
        self.arrival = arrival
        self._decode = decode
        self._decoded: Decoded | bool | None = False  # False: not decoded yet

    @property
    def conn_id(self) -> int:
        return self.conn.id

    @property
    def decoded(self) -> Decoded | None:
        """The decoders' view of ``data`` (computed once, here, on the addon's thread, within
        :data:`DECODE_DEADLINE_NS`); None when sockscope's decoders are not installed."""
        if self._decoded is False:
            decode = self._decode
            result: Decoded | None = None
            if decode is not None:
                try:
                    result = decode(self.data, self.direction, self.conn.id,
                                    time.monotonic_ns() + DECODE_DEADLINE_NS)
                except Exception as e:  # a decoder's bug is shown data, not the addon's exception
                    result = Decoded("error", (), f"{type(e).__name__}: {e}")
            self._decoded = result
        return self._decoded  # type: ignore[return-value]  # never False past the branch above

    def __repr__(self) -> str:
        head = self.data[:40]
        more = "…" if len(self.data) > 40 else ""
        return (f"Message(id={self.id}, conn={self.conn.id}, {self.direction.label}, {len(self.data)} B, "
                f"origin={self.origin!r}, data={head!r}{more})")


class AddonContext:
    """What a hook may do, given to every hook call as ``ctx``.

    In a ``message`` hook of an addon with ``modifies = True``: :meth:`replace`, :meth:`drop` and :meth:`delay`
    decide what happens to this message (they may be combined: replace, then delay). Everywhere: :meth:`inject`
    sends new bytes into a connection in either direction, and :meth:`log` writes a line to the terminal and the
    window's log. Injections made while the hook runs are sent after its message is released, in call order.
    """

    __slots__ = ("_closed", "_connections", "_copy", "_data", "_delay", "_drop", "_injects", "_log_sink", "_logged",
                 "_logs", "_name", "_post", "_role")

    def __init__(self, name: str, role: str, connections: Mapping[int, Connection],
                 late_inject: Callable[[int, Direction, bytes], None] | None = None,
                 log_sink: Callable[[str], None] | None = None) -> None:
        self._name = name
        self._role = role  # "modify" (a held message), "observe" (a message already forwarded), or the hook's name
        self._connections = connections  # the engine's own table: copied on first use, on the addon's thread
        self._copy: dict[int, Connection] | None = None
        self._post = late_inject  # an injection after the hook returned (from a thread of the addon's own)
        self._closed = False
        self._drop = False
        self._delay = 0.0
        self._data: bytes | None = None
        self._injects: list[tuple[int, Direction, bytes]] = []
        self._logs: list[str] = []
        self._log_sink = log_sink  # shows a line at once (thread-safe), even from a hook that never returns
        self._logged = 0

    # -- for every hook

    @property
    def name(self) -> str:
        """The addon's name, as reports show it."""
        return self._name

    @property
    def connections(self) -> Mapping[int, Connection]:
        """The connections and UDP flows open now, by id (a copy, made on first use in this call)."""
        if self._copy is None:
            self._copy = dict(self._connections)  # one C call: atomic while the engine's thread adds and removes
        return self._copy

    @staticmethod
    def now() -> float:
        """``time.monotonic()``: the clock of :attr:`Message.arrival`."""
        return time.monotonic()

    def inject(self, conn_id: int, direction: Direction | str, data: bytes) -> None:
        """Send ``data`` into connection ``conn_id`` in ``direction`` (``"c2s"``: to the server, ``"s2c"``: to
        the client; on UDP, one datagram). It enters the receive path as live bytes do."""
        if not isinstance(conn_id, int) or isinstance(conn_id, bool):
            raise TypeError(f"inject: conn_id must be a connection number, got {type(conn_id).__name__}")
        conn_id = int.__index__(conn_id)  # a plain int: a subclass's methods must not run on the engine's thread
        if isinstance(direction, str):
            direction = Direction.parse(direction)
        elif not isinstance(direction, Direction):
            raise TypeError(f"inject: direction must be 'c2s', 's2c' or a Direction, got {type(direction).__name__}")
        data = _as_bytes(data, "inject")
        if len(data) > MAX_INJECT:
            raise ValueError(f"inject: {len(data):,} bytes is more than one injection may carry ({MAX_INJECT:,})")
        if self._closed:
            if self._post is None:
                raise RuntimeError("inject: this context's hook has returned")
            self._post(conn_id, direction, data)
            return
        if len(self._injects) >= MAX_INJECTS:
            raise ValueError(f"inject: at most {MAX_INJECTS} injections per hook call")
        self._injects.append((conn_id, direction, data))

    def log(self, text: str) -> None:
        """One line (``info``) on the terminal and in the window's log, prefixed with the addon's name."""
        text = str.__str__(str(text))  # a plain str: a subclass's methods must not run on the engine's thread
        if len(text) > MAX_LOG:
            text = text[: MAX_LOG - 1] + "…"
        self._logged += 1
        if self._logged > MAX_LOGS + 1:
            return
        if self._logged == MAX_LOGS + 1:
            text = f"… more lines than the {MAX_LOGS} one call may log were left out"
        if self._log_sink is not None:
            self._log_sink(text)
        else:
            self._logs.append(text)

    # -- in the message hook of an addon with modifies = True

    def replace(self, data: bytes) -> None:
        """Forward ``data`` instead of the message's bytes (the window shows it as edited)."""
        self._decision("replace")
        self._data = _as_bytes(data, "replace")

    def drop(self) -> None:
        """Do not forward this message (the window shows it dropped)."""
        self._decision("drop")
        self._drop = True

    def delay(self, seconds: float) -> None:
        """Forward this message ``seconds`` later (on TCP its direction waits meanwhile: order is kept). Several
        calls add up, to at most :data:`MAX_DELAY` seconds."""
        self._decision("delay")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
            raise TypeError(f"delay: seconds must be a finite number, got {seconds!r:.60}")
        if seconds < 0:
            raise ValueError(f"delay: seconds must be >= 0, got {seconds!r}")
        self._delay = min(MAX_DELAY, self._delay + float(seconds))

    def _decision(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"{what}: the message hook has returned (decide before returning)")
        if self._role == "observe":
            raise RuntimeError(f"{what}: addon {self._name!r} only observes (its messages are forwarded before it "
                               "sees them); set modifies = True on it to hold, change, drop or delay messages")
        if self._role != "modify":
            raise RuntimeError(f"{what}: only a message hook can {what} its message (this is {self._role})")


def _as_bytes(data: object, what: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)  # a subclass's own methods (its == or len) must not reach the engine
    raise TypeError(f"{what}: expected bytes, got {type(data).__name__} (encode text first, e.g. "
                    "text.encode('utf-8'))")


MessageHook = Callable[[AddonContext, Message], None]
"""``message(ctx, msg)``: a message was received."""
ConnectionHook = Callable[[AddonContext, Connection], None]
"""``connection_opened(ctx, conn)`` / ``connection_closed(ctx, conn)``."""
TickHook = Callable[[AddonContext], None]
"""``tick(ctx)``: called every ``tick_interval`` seconds."""


class Addon:
    """Base class of an addon (optional: any object with the same attributes works). Override the hooks you need;
    the ones left as they are here are not called at all.

    ``modifies``: hold each message until ``message`` has decided (see :class:`AddonContext`); ``timeout``: how
    long it may take (at most :data:`MAX_HOLD_TIMEOUT`); ``tick_interval``: seconds between ``tick`` calls;
    ``name``: how reports name it (default: the class's name).
    """

    modifies: ClassVar[bool] = False
    timeout: ClassVar[float] = HOLD_TIMEOUT
    tick_interval: ClassVar[float] = TICK_INTERVAL
    name: ClassVar[str | None] = None

    def message(self, ctx: AddonContext, msg: Message) -> None:
        """A message was received (an addon with ``modifies = True`` decides its fate here)."""

    def connection_opened(self, ctx: AddonContext, conn: Connection) -> None:
        """A client connected (TCP) or a new client address sent its first datagram (UDP)."""

    def connection_closed(self, ctx: AddonContext, conn: Connection) -> None:
        """A connection ended (``conn.reason`` says how), or a UDP flow timed out."""

    def tick(self, ctx: AddonContext) -> None:
        """Called every ``tick_interval`` seconds while the addon is loaded."""

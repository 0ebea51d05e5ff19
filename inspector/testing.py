"""sockscope in a test suite: an in-process proxy with scoped network conditions and assertions on decoded messages.

Role: the implementation behind the pytest plugin's ``sockscope_proxy`` fixture (:mod:`inspector.pytest_plugin`),
usable without pytest too::

    with ProxyFactory() as start:
        proxy = start(target=("127.0.0.1", 5555))
        with proxy.conditions(latency=100, direction="s2c"):
            ...                                   # your client talks to proxy.listen
        reply = proxy.expect('s2c and json.type == "pong"', within=0.3)

:class:`SockscopeProxy` runs the engine on a background thread (:class:`proxy.runner.ProxyThread`) and keeps what
it publishes: the engine's subscriber only appends records under a lock and wakes waiters; decoding and filters run
on the test's thread, when :meth:`SockscopeProxy.expect` or :attr:`SockscopeProxy.messages` asks (DESIGN.md 4:
nothing a peer sends can slow the relay). :class:`MessageView` is a message as a test reads it: its bytes, text,
state, timing and decoded values (``msg["json.type"]``).

Must not import: Qt, ``inspector.ui``, pytest (the plugin module does). The engine's modules (``proxy.runner``,
``proxy.server``) and the exporters load on first use, so importing this module stays cheap.
Thread: the test's thread. The only code that runs on the engine's thread is :meth:`SockscopeProxy._on_record`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, overload

from proxy.conditions import PASSTHROUGH, Conditions, ConditionsError, set_from_text
from proxy.model import (
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Message,
    MessageState,
    MessageUpdated,
    Record,
)

if TYPE_CHECKING:
    from inspector.decode import View
    from inspector.filters import Filter
    from inspector.lab import LabReport
    from proxy.runner import ProxyThread

__all__ = [
    "DEFAULT_WITHIN",
    "MAX_BYTES",
    "MAX_MESSAGES",
    "MessageView",
    "Messages",
    "ProxyFactory",
    "SavedSession",
    "SockscopeProxy",
    "build_conditions",
]

DEFAULT_WITHIN: Final = 2.0
"""Seconds :meth:`SockscopeProxy.expect` waits when ``within`` is not given."""
MAX_MESSAGES: Final = 100_000
"""Messages a proxy keeps by default; past it the oldest are forgotten (counted, and said in a failure report)."""
MAX_BYTES: Final = 256 << 20
"""Payload bytes a proxy keeps by default (a test that streams big messages); past it the oldest are forgotten."""
SHOWN_ON_FAILURE: Final = 10
"""How many of the last messages an ``expect`` failure and a failure report list."""

_FINAL_STATES: Final = frozenset({MessageState.FORWARDED, MessageState.DROPPED, MessageState.DISCARDED})
"""States a message never leaves (a held one may still be released, edited or dropped)."""
_NAMESPACES: Final = ("json", "msgpack", "pickle", "struct", "hex", "text")
_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_-]*|-?[0-9]+)|\[\s*(-?[0-9]+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\]""")
_HEAD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MISSING: Final = object()


# ------------------------------------------------------------------------------------------------ conditions


def _directions(direction: str | Direction | None) -> tuple[Direction, ...]:
    if direction is None or (isinstance(direction, str) and direction.strip().lower() in ("both", "")):
        return (Direction.C2S, Direction.S2C)
    if isinstance(direction, Direction):
        return (direction,)
    try:
        return (Direction.parse(direction),)
    except ValueError:
        raise ConditionsError(f"direction={direction!r}: expected 'c2s', 's2c' or 'both'") from None


def build_conditions(base: Conditions = PASSTHROUGH, *, direction: str | Direction | None = None,
                     preset: str | None = None, latency: float | str | None = None,
                     jitter: float | str | None = None, bandwidth: float | str | None = None,
                     loss: float | str | None = None, duplicate: float | str | None = None,
                     reorder: float | str | None = None, corrupt: float | str | None = None,
                     mtu: int | str | None = None, spike: str | None = None,
                     frozen: bool | None = None) -> Conditions:
    """``base`` with the given values set on ``direction`` (``"c2s"``, ``"s2c"`` or both, the default).

    A ``preset`` (a name from ``sockscope-proxy --list-presets``, e.g. ``"Mobile 4G"``) replaces those directions
    first; each other value then overrides it. Numbers are milliseconds (``latency``, ``jitter``: one way), bytes
    per second (``bandwidth``) and percentages (``loss``, ``duplicate``, ``reorder``, ``corrupt``); a string takes
    the command line's syntax (``jitter="20:normal"``, ``bandwidth="64KB/s"``, ``loss="gemodel:1:30"``,
    ``latency="c2s=30,s2c=120"``, ``spike="every=30s,add=800ms,for=2s"``). A bad value raises
    :class:`~proxy.conditions.ConditionsError` (a ``ValueError``) naming it.
    """
    dirs = _directions(direction)
    per = {d: base.for_direction(d) for d in Direction}
    if preset is not None:
        from proxy.presets import find_preset

        chosen = find_preset(preset).conditions
        for d in dirs:
            per[d] = chosen.for_direction(d)

    def apply(name: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConditionsError(f"{name}={value!r}: expected a number or a string")
        try:
            set_from_text(per, name, value if isinstance(value, str) else repr(value), directions=dirs,
                          now_ns=time.monotonic_ns())
        except ConditionsError as e:
            raise ConditionsError(f"{name}={value!r}: {str(e).removeprefix(f'--{name}: ')}") from None

    for name, value in (("latency", latency), ("jitter", jitter), ("bandwidth", bandwidth), ("loss", loss),
                        ("duplicate", duplicate), ("reorder", reorder), ("corrupt", corrupt), ("mtu", mtu),
                        ("spike", spike)):
        apply(name, value)
    if frozen is not None:
        for d in dirs:
            per[d] = replace(per[d], frozen=bool(frozen))
    return Conditions(c2s=per[Direction.C2S], s2c=per[Direction.S2C])


class _Restore:
    """What ``proxy.conditions(...)``, ``proxy.freeze()`` and ``proxy.down()`` return: the change is made at
    once; used as a ``with`` block, it is undone when the block ends (even when the block raises)."""

    __slots__ = ("_undo", "_undone")

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo = undo
        self._undone = False

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Undo the change now (once; a second call does nothing)."""
        if not self._undone:
            self._undone = True
            self._undo()


# ------------------------------------------------------------------------------------------------ messages


def _split_path(path: str) -> tuple[str | None, tuple[str | int, ...]]:
    """``"json.pos.x"`` -> ``("json", ("pos", "x"))``; ``"players[0].name"`` -> ``(None, ("players", 0, "name"))``.

    The first name is a decoder's namespace when it is one (``json``, ``msgpack``, ...), else the first key."""
    text = path.strip()
    m = _HEAD.match(text)
    if m is None:
        raise KeyError(f"{path!r}: a field path starts with a name, e.g. 'json.type' or 'pos.x'")
    head, i = m.group(0), m.end()
    steps: list[str | int] = []
    while i < len(text):
        s = _STEP.match(text, i)
        if s is None:
            raise KeyError(f"{path!r}: cannot read the path from column {i + 1} ({text[i:i + 10]!r}); "
                           "write it as in a filter: json.pos.x, json.players[0].name, json[\"odd key\"]")
        name, index = s.group(1), s.group(2)
        if name is not None:
            steps.append(int(name) if name.lstrip("-").isdigit() else name)
        elif index[0] in "\"'":
            steps.append(index[1:-1].encode("utf-8").decode("unicode_escape") if "\\" in index else index[1:-1])
        else:
            steps.append(int(index))
        i = s.end()
    if head.lower() in _NAMESPACES:
        return head.lower(), tuple(steps)
    return None, (head, *steps)


class MessageView:
    """One message the proxy relayed, as a test reads it (what ``expect`` returns and ``messages`` holds).

    - ``id``, ``conn`` (connection or UDP flow number), ``direction`` (``"c2s"``/``"s2c"``), ``seq`` (per
      connection and direction, from 0);
    - ``data`` (the bytes as forwarded), ``text`` (UTF-8, undecodable bytes replaced), ``size``;
    - ``state`` (``"forwarded"``, ``"scheduled"``, ``"held"``, ``"dropped"``, ``"discarded"``), ``origin``
      (``"live"``, ``"injected"``, ...);
    - ``arrived`` and ``delivered``: when the proxy read it and wrote it on, in ``time.monotonic()`` seconds
      (``delivered`` is None until it is written); ``delay_ms``: the delay the conditions added;
    - ``decoder`` (``"json"``, ``"msgpack"``, ``"pickle"``, ``"text"``, ...), ``summary`` (the window's one-line
      summary), ``values`` (every decoded top-level value), ``decoded`` (the first one, or None);
    - ``msg["json.pos.x"]`` / ``msg.get("json.pos.x")``: a decoded field, written as in a filter (the namespace is
      optional: ``msg["pos.x"]``). ``msg["json.type"]`` on a message decoded as msgpack raises ``KeyError`` saying
      so, rather than guessing.

    ``record`` is the engine's own :class:`proxy.model.Message` (its latest state). Decoding happens on first use
    of a decoded attribute, on the caller's thread, once.
    """

    __slots__ = ("_view", "_viewer", "record")

    def __init__(self, record: Message, viewer: Callable[[Message], View]) -> None:
        self.record = record
        self._viewer = viewer
        self._view: View | None = None

    # -- the record --

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def conn(self) -> int:
        return self.record.conn_id

    @property
    def direction(self) -> str:
        return self.record.direction.label

    @property
    def seq(self) -> int:
        return self.record.seq

    @property
    def data(self) -> bytes:
        return self.record.data

    @property
    def size(self) -> int:
        return len(self.record.data)

    @property
    def text(self) -> str:
        return self.record.data.decode("utf-8", "replace")

    @property
    def state(self) -> str:
        return str(self.record.state)

    @property
    def origin(self) -> str:
        return str(self.record.origin)

    @property
    def arrived(self) -> float:
        return self.record.arrival_ns / 1e9

    @property
    def delivered(self) -> float | None:
        r = self.record
        if r.state is not MessageState.FORWARDED or r.release_ns is None:
            return None
        return r.release_ns / 1e9

    @property
    def delay_ms(self) -> float | None:
        d = self.record.added_delay_ns
        return None if d is None else d / 1e6

    # -- decoded --

    @property
    def view(self) -> View:
        """The decoder's whole view (:class:`inspector.decode.View`)."""
        if self._view is None:
            self._view = self._viewer(self.record)
        return self._view

    @property
    def decoder(self) -> str:
        return self.view.decoder

    @property
    def summary(self) -> str:
        return self.view.summary

    @property
    def values(self) -> tuple[object, ...]:
        v = self.view
        return () if v.error is not None else v.values

    @property
    def decoded(self) -> object:
        values = self.values
        return values[0] if values else None

    def get(self, path: str, default: object = None) -> object:
        """The decoded field at ``path`` (``"json.pos.x"``), or ``default`` when it is not there."""
        found = self._lookup(path)
        return default if found is _MISSING else found

    def __getitem__(self, path: str) -> object:
        found = self._lookup(path)
        if found is _MISSING:
            namespace, _ = _split_path(path)
            v = self.view
            if namespace is not None and namespace != v.decoder:
                raise KeyError(f"{path!r}: message #{self.id} decodes as {v.decoder}, not {namespace} "
                               f"({_clip(v.summary)})")
            raise KeyError(f"{path!r}: not in message #{self.id} ({v.decoder}: {_clip(v.summary)})")
        return found

    def _lookup(self, path: str) -> object:
        from inspector.fields import MISSING, resolve

        namespace, steps = _split_path(path)
        v = self.view
        if v.error is not None or (namespace is not None and namespace != v.decoder):
            return _MISSING
        for root in v.values:
            found = resolve(root, steps) if steps else root
            if found is not MISSING:
                return found
        return _MISSING

    # -- showing --

    def line(self) -> str:
        """One line for reports: ``#12 conn 1 s2c 17 B forwarded +100 ms  "Hello from ..."``."""
        r = self.record
        delay = "" if r.release_ns is None else f" +{(r.release_ns - r.arrival_ns) / 1e6:.0f} ms"
        origin = "" if self.origin == "live" else f" {self.origin}"
        try:
            summary = self.summary
        except Exception as e:  # a report must still come out
            summary = f"(not decoded: {e!r})"
        return (f"#{r.id} conn {r.conn_id} {r.direction.label} {len(r.data)} B {self.state}{origin}{delay}  "
                f"{_clip(summary, 100)}")

    def __repr__(self) -> str:
        return f"<MessageView {self.line()}>"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _shown(path: Path) -> str:
    """A path as a report shows it: relative to the working directory when it is under it (shorter, and what CI
    uploads), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _clip(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Messages(Sequence[MessageView]):
    """Messages in the order the proxy read them (a snapshot: it does not grow). ``filter(text)`` keeps those a
    filter matches (the window's filter language: ``"s2c and json.type == 'pos'"``, docs/filters.md)."""

    __slots__ = ("_items", "_viewer")

    def __init__(self, items: Sequence[MessageView], viewer: Callable[[Message], View]) -> None:
        self._items = tuple(items)
        self._viewer = viewer

    def filter(self, text: str) -> Messages:
        """The messages ``text`` matches; a bad filter raises :class:`inspector.filters.FilterError` with its
        column."""
        from inspector.filters import parse_filter

        flt = parse_filter(text)
        viewer = self._viewer
        return Messages([m for m in self._items if flt.matches(m.record, viewer)], viewer)

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self._items]

    @property
    def decoded(self) -> list[object]:
        return [m.decoded for m in self._items]

    @overload
    def __getitem__(self, i: int) -> MessageView: ...

    @overload
    def __getitem__(self, i: slice) -> Messages: ...

    def __getitem__(self, i: int | slice) -> MessageView | Messages:
        if isinstance(i, slice):
            return Messages(self._items[i], self._viewer)
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[MessageView]:
        return iter(self._items)

    def __repr__(self) -> str:
        if not self._items:
            return "<Messages: none>"
        lines = "\n  ".join(m.line() for m in self._items[:20])
        more = f"\n  ... and {len(self._items) - 20} more" if len(self._items) > 20 else ""
        return f"<Messages: {len(self._items)}\n  {lines}{more}>"


# ------------------------------------------------------------------------------------------------ the proxy


class SavedSession:
    """Where a proxy's capture was written: ``session`` (open it with ``sockscope FILE``) and ``pcapng`` (None if
    the export failed; ``pcapng_error`` says why)."""

    __slots__ = ("pcapng", "pcapng_error", "session")

    def __init__(self, session: Path, pcapng: Path | None, pcapng_error: str | None) -> None:
        self.session = session
        self.pcapng = pcapng
        self.pcapng_error = pcapng_error

    def __repr__(self) -> str:
        return f"SavedSession(session={str(self.session)!r}, pcapng={str(self.pcapng) if self.pcapng else None!r})"


class SockscopeProxy:
    """A running in-process proxy between a test's client and a server: make one with :class:`ProxyFactory` (or
    the ``sockscope_proxy`` fixture). See docs/testing.md for a tour."""

    def __init__(self, thread: ProxyThread, target: tuple[str, int], *, max_messages: int = MAX_MESSAGES,
                 max_bytes: int = MAX_BYTES, name: str = "") -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("max_messages and max_bytes must be at least 1")
        self._thread = thread
        self.target = target
        self.name = name
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.forgotten = 0
        """Messages forgotten because more than ``max_messages`` (or ``max_bytes`` of payload) arrived."""
        self.start_seconds = 0.0
        """How long starting took (the engine thread listening), in seconds."""
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._msgs: dict[int, Message] = {}
        self._order: list[int] = []
        self._trimmed = 0  # messages forgotten from the front of _order: positions are _trimmed + index
        self._bytes = 0  # payload bytes of the messages kept
        self._version = 0
        self._cursor = 0  # the absolute position expect() starts from
        self._views: dict[int, tuple[bytes, View]] = {}
        self._views_lock = threading.Lock()
        self._closed = False
        self._runs: list[Any] = []  # scenario runs, stopped on close
        self.saved: SavedSession | None = None
        """Set once the capture is saved (on a failure, or by :meth:`save`)."""

    # ---------------------------------------------------------------------------------------- the engine side

    def _on_record(self, record: Record) -> None:
        """The engine thread's subscriber: keep the record, wake waiters. Nothing else runs on that thread."""
        with self._cond:
            self._records.append(record)
            kind = type(record)
            if kind is Message:
                m: Message = record  # type: ignore[assignment]
                self._msgs[m.id] = m
                self._order.append(m.id)
                self._bytes += len(m.data)
                if len(self._order) > self.max_messages or self._bytes > self.max_bytes:
                    self._forget()
            elif kind is MessageUpdated:
                u: MessageUpdated = record  # type: ignore[assignment]
                old = self._msgs.get(u.msg_id)
                if old is not None:
                    if u.data is not None:
                        self._bytes += len(u.data) - len(old.data)
                    self._msgs[u.msg_id] = replace(
                        old, state=u.state, release_ns=u.release_ns if u.release_ns is not None else old.release_ns,
                        data=u.data if u.data is not None else old.data, delays=u.delays or old.delays)
            self._version += 1
            self._cond.notify_all()

    def _forget(self) -> None:
        """Drop the oldest messages down to three quarters of both bounds (amortised: the lists are rebuilt once per
        quarter of the bounds, not shifted per message)."""
        keep_count, keep_bytes = self.max_messages * 3 // 4, self.max_bytes * 3 // 4
        n = 0
        order = self._order
        while n < len(order) - 1 and (len(order) - n > keep_count or self._bytes > keep_bytes):
            self._bytes -= len(self._msgs.pop(order[n]).data)
            n += 1
        del order[:n]
        self._trimmed += n
        self.forgotten += n
        keep = set(self._msgs)
        # Records of forgotten messages go too; connection records stay (a saved session still shows them).
        self._records = [r for r in self._records
                         if not (type(r) is Message and r.id not in keep)  # type: ignore[union-attr]
                         and not (type(r) is MessageUpdated and r.msg_id not in keep)]  # type: ignore[union-attr]

    # ---------------------------------------------------------------------------------------- addresses

    @property
    def listen(self) -> tuple[str, int]:
        """Where the client connects (``socket.create_connection(proxy.listen)``)."""
        addr = self._thread.server.listen_addr
        assert addr is not None
        return addr

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]

    @property
    def engine(self) -> ProxyThread:
        """The engine thread (:class:`proxy.runner.ProxyThread`), for what this class does not wrap."""
        return self._thread

    # ---------------------------------------------------------------------------------------- conditions

    @property
    def current_conditions(self) -> Conditions:
        """The conditions in force for every connection (the global default)."""
        t = self._thread
        return t.call(lambda: t.server.global_conditions)

    def set_conditions(self, conditions: Conditions) -> None:
        """Put ``conditions`` in force on every connection, open or new (until changed again)."""
        t = self._thread
        t.call(t.server.set_conditions, conditions)

    def conditions(self, *, direction: str | Direction | None = None, preset: str | None = None,
                   latency: float | str | None = None, jitter: float | str | None = None,
                   bandwidth: float | str | None = None, loss: float | str | None = None,
                   duplicate: float | str | None = None, reorder: float | str | None = None,
                   corrupt: float | str | None = None, mtu: int | str | None = None, spike: str | None = None,
                   frozen: bool | None = None) -> _Restore:
        """Change the network conditions now, on open connections and new ones; as a ``with`` block, the
        conditions from before come back when it ends::

            with proxy.conditions(latency=100, jitter=20, direction="s2c"):
                ...

        Values are added to those in force (so blocks nest), in the units of :func:`build_conditions`: one-way
        milliseconds, bytes per second, percentages, or the command line's strings. ``loss`` on TCP is felt as
        delay (retransmissions), on UDP datagrams are lost (docs/conditions.md, docs/udp.md).
        """
        before = self.current_conditions
        after = build_conditions(before, direction=direction, preset=preset, latency=latency, jitter=jitter,
                                 bandwidth=bandwidth, loss=loss, duplicate=duplicate, reorder=reorder,
                                 corrupt=corrupt, mtu=mtu, spike=spike, frozen=frozen)
        self.set_conditions(after)
        return _Restore(lambda: self._restore(before))

    def _restore(self, conditions: Conditions) -> None:
        if not self._closed:
            self.set_conditions(conditions)

    def freeze(self, direction: str | Direction | None = None) -> _Restore:
        """Hold every message (both directions, or one) until the block ends (or ``restore()``); then they go on,
        in order. Connections stay open: the game sees a frozen network, not a disconnect."""
        return self.conditions(direction=direction, frozen=True)

    def down(self, reset: bool = True) -> _Restore:
        """Take the proxy off its port, as if the server had gone away: new TCP connections are refused, open
        ones are reset (``reset=False`` leaves them open), UDP flows end. When the block ends (or on ``restore()``)
        it listens again on the same port."""
        self._thread.go_down(reset)
        return _Restore(self._up)

    def _up(self) -> None:
        if not self._closed:
            self._thread.come_up()

    def scenario(self, path: str | os.PathLike[str]) -> Any:
        """Play a scenario file (a timeline of conditions, docs/scenarios.md) on this proxy, from now on.

        Returns the run (``proxy.scenario.ScenarioRun``): ``with proxy.scenario("commute.toml") as run:`` stops it
        and restores the conditions when the block ends; ``run.wait(timeout)`` waits for its end. A run still going
        stops when the proxy closes. A file with mistakes raises ``proxy.scenario.ScenarioError``, one line per
        mistake with its line number.
        """
        from proxy import scenario as scenario_module

        run = scenario_module.run(self._thread, os.fspath(path))
        self._runs.append(run)
        return run

    # ---------------------------------------------------------------------------------------- messages

    def _view_of(self, msg: Message) -> View:
        """The decoded view of ``msg``, decoded once per message and payload (test thread only)."""
        with self._views_lock:
            hit = self._views.get(msg.id)
        if hit is not None and hit[0] is msg.data:
            return hit[1]
        from inspector.decode import default_registry

        view = default_registry().decode_message(msg, detail=False)
        with self._views_lock:
            if len(self._views) > self.max_messages:
                self._views.clear()
            self._views[msg.id] = (msg.data, view)
        return view

    def _snapshot(self, start: int = 0) -> tuple[list[Message], int]:
        """The messages from absolute position ``start`` on (latest state of each), and the position of the
        first of them."""
        with self._cond:
            first = max(start - self._trimmed, 0)
            return [self._msgs[mid] for mid in self._order[first:]], self._trimmed + first

    @property
    def messages(self) -> Messages:
        """Every message kept so far, in the order the proxy read them, decoded on demand."""
        msgs, _ = self._snapshot()
        return Messages([MessageView(m, self._view_of) for m in msgs], self._view_of)

    @property
    def records(self) -> list[Record]:
        """Everything the engine published (connections opened and closed, messages and their updates,
        notices), in order."""
        with self._cond:
            return list(self._records)

    def lab(self, hints: Any = None) -> LabReport:
        """The latency-compensation lab's figures (docs/lab.md) for everything captured so far: input-to-ack
        delay, inputs in flight, snapshot intervals and the interpolation delay that covers them, and the
        client's corrections. ``hints``: a hints file (TOML) or :class:`inspector.lab.hints.Hints`; None infers
        the fields from their names (seq, ack, tick, time, x/y).

        >>> assert proxy.lab().overall.corrections_px.max <= 5, proxy.lab().text()  # doctest: +SKIP
        """
        from inspector.lab import analyse

        return analyse(self.records, hints)

    @property
    def connections(self) -> list[int]:
        """Ids of the connections (and UDP flows) opened so far."""
        return [r.conn_id for r in self.records if isinstance(r, ConnectionOpened)]

    def mark(self) -> None:
        """Make later :meth:`expect` calls look only at messages the proxy reads from now on."""
        with self._cond:
            self._cursor = self._trimmed + len(self._order)

    def expect(self, filter_text: str, within: float = DEFAULT_WITHIN, *, settled: bool = True) -> MessageView:
        """The first message ``filter_text`` matches, waiting up to ``within`` seconds for it.

        ``expect`` walks forward: it looks at the messages after the one the previous ``expect`` returned (or
        after :meth:`mark`; from the first message at the start). With ``settled`` (the default) a message counts
        once the conditions are done with it: delivered, held, or dropped, never while it still waits for its
        latency, so ``within`` bounds when the peer got it. A bad filter raises
        :class:`inspector.filters.FilterError` at once. When nothing matches in time, ``AssertionError`` lists the
        last messages seen.
        """
        from inspector.filters import parse_filter

        if within < 0:
            raise ValueError(f"within={within!r}: expected seconds >= 0")
        flt = parse_filter(filter_text)
        deadline = time.monotonic() + within
        pos = self._cursor
        done: set[int] = set()  # final messages that did not match: never tested again
        while True:
            with self._cond:
                version = self._version
            msgs, first = self._snapshot(pos)
            found = self._first_match(flt, msgs, first, done, settled)
            if isinstance(found, tuple):
                at, msg = found
                self._cursor = at + 1
                return MessageView(msg, self._view_of)
            pos = found  # everything before it is final and did not match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(self._expect_failure(filter_text, within, settled))
            with self._cond:
                self._cond.wait_for(lambda v=version: self._version != v, remaining)  # type: ignore[misc]

    def _first_match(self, flt: Filter, msgs: list[Message], first: int, done: set[int],
                     settled: bool) -> tuple[int, Message] | int:
        """The (position, message) of the first match, or the position from which to look next time."""
        resume: int | None = None
        for i, m in enumerate(msgs):
            if m.id in done:
                continue
            if settled and m.state is MessageState.SCHEDULED:
                resume = first + i if resume is None else resume
                continue
            if flt.matches(m, self._view_of):
                return first + i, m
            if m.state in _FINAL_STATES:
                done.add(m.id)
            elif resume is None:
                resume = first + i
        return resume if resume is not None else first + len(msgs)

    def _expect_failure(self, filter_text: str, within: float, settled: bool) -> str:
        msgs, _ = self._snapshot(self._cursor)
        head = (f"sockscope: no message matched {filter_text!r} within {within:g} s "
                f"({len(msgs)} message{'s' * (len(msgs) != 1)} since the last expect or mark")
        waiting = sum(1 for m in msgs if m.state is MessageState.SCHEDULED)
        if settled and waiting:
            head += f"; {waiting} still scheduled, not yet delivered"
        head += ")"
        if not msgs:
            everything, _ = self._snapshot()
            tail = (f"\nthe proxy has seen {len(everything)} message(s) in all; "
                    f"{len(self.connections)} connection(s) opened")
            return head + tail
        shown = msgs[-SHOWN_ON_FAILURE:]
        lines = "\n".join("  " + MessageView(m, self._view_of).line() for m in shown)
        return f"{head}\nlast {len(shown)} seen:\n{lines}"

    # ---------------------------------------------------------------------------------------- saving

    def save(self, stem: str | os.PathLike[str]) -> SavedSession:
        """Write what the proxy saw to ``STEM.sockscope`` (a session file: ``sockscope STEM.sockscope`` opens it)
        and ``STEM.pcapng`` (for Wireshark). Safe while the proxy runs (it saves what arrived so far)."""
        from inspector.interop.session_io import SessionWriter
        from proxy.codec import framing_to_dict

        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        records = self.records
        server = self._thread.server
        session = stem.with_name(stem.name + ".sockscope")
        with SessionWriter(session, clock=server.clock, listen=server.listen_addr, target=self.target,
                           framing=framing_to_dict(server.framing)) as w:
            w.write_many(records)
        pcapng: Path | None = stem.with_name(stem.name + ".pcapng")
        error: str | None = None
        try:
            from inspector.interop.pcapng_export import export_records

            export_records(records, pcapng, clock=server.clock)  # type: ignore[arg-type]
        except Exception as e:  # the session file is the one that matters; say why the capture is missing
            error = f"{type(e).__name__}: {e}"
            pcapng = None
        self.saved = SavedSession(session, pcapng, error)
        return self.saved

    def report(self, stem: str | os.PathLike[str]) -> str:
        """Save (once) and describe the capture for a test's failure report."""
        saved = self.saved if self.saved is not None else self.save(stem)
        msgs, _ = self._snapshot()
        conns = self.connections
        closed = {r.conn_id: r for r in self.records if isinstance(r, ConnectionClosed)}
        label = f"{self.name} " if self.name else ""
        session, pcapng = _shown(saved.session), _shown(saved.pcapng) if saved.pcapng is not None else None
        lines = [f"sockscope proxy {label}{self.host}:{self.port} -> {self.target[0]}:{self.target[1]}: "
                 f"{_count(len(msgs), 'message')} on {_count(len(conns), 'connection')}",
                 f"  session: {session}",
                 f"  pcapng:  {pcapng}" if pcapng is not None else f"  pcapng:  not written: {saved.pcapng_error}",
                 f"  see it:  sockscope {session}" + ("   (or the pcapng in Wireshark)" if pcapng else "")]
        if self.forgotten:
            lines.append(f"  (the first {_count(self.forgotten, 'message')} were forgotten: more than "
                         f"{self.max_messages} messages or {self.max_bytes >> 20} MiB kept)")
        for cid in conns:
            c = closed.get(cid)
            if c is None:
                lines.append(f"  connection {cid}: still open")
            else:
                lines.append(f"  connection {cid}: {c.reason}" + (f" ({c.detail})" if c.detail else ""))
        if msgs:
            lines.append(f"  last {_count(min(len(msgs), SHOWN_ON_FAILURE), 'message')}:")
            lines.extend("    " + MessageView(m, self._view_of).line() for m in msgs[-SHOWN_ON_FAILURE:])
        return "\n".join(lines)

    # ---------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Stop the proxy: close every connection and socket, end its thread. Safe to call twice; the messages
        stay readable."""
        if self._closed:
            return
        self._closed = True
        try:
            for run in self._runs:
                run.stop(restore=False)
        finally:
            self._thread.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SockscopeProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.host}:{self.port}"
        return f"<SockscopeProxy {state} -> {self.target[0]}:{self.target[1]}>"


def _target(target: tuple[str, int] | int | str) -> tuple[str, int]:
    if isinstance(target, bool):
        raise TypeError(f"target={target!r}: expected (host, port), a port number or 'host:port'")
    if isinstance(target, int):
        return ("127.0.0.1", target)
    if isinstance(target, str):
        host, sep, digits = target.rpartition(":")
        if not sep or not digits.isdigit():
            raise ValueError(f"target={target!r}: expected 'host:port', e.g. '127.0.0.1:5555'")
        return (host.strip("[]") or "127.0.0.1", int(digits))
    name, number = target
    return (str(name), int(number))


class ProxyFactory:
    """Starts proxies and stops them all on :meth:`close` (the fixture's teardown)."""

    def __init__(self) -> None:
        self.proxies: list[SockscopeProxy] = []

    def __call__(self, target: tuple[str, int] | int | str, *, udp: bool = False, tcp: bool = True,
                 framing: str = "auto", seed: int | None = None, connect_timeout: float = 5.0,
                 listen_host: str = "127.0.0.1", max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES,
                 udp_idle_timeout: float = 60.0, preset: str | None = None, latency: float | str | None = None,
                 jitter: float | str | None = None, bandwidth: float | str | None = None,
                 loss: float | str | None = None) -> SockscopeProxy:
        """Start a proxy to ``target`` (``(host, port)``, a port on 127.0.0.1, or ``"host:port"``) on a free port
        of ``listen_host``; returns when it listens.

        ``udp=True`` relays UDP too, on the same port number (``tcp=False`` for UDP only). ``framing`` is what one
        message is (``auto``, ``raw``, ``lines``, ``len16``, ``json``, ... docs/framing.md). ``seed`` makes the
        random parts of the conditions (jitter, loss) repeat. ``preset``, ``latency``, ``jitter``, ``bandwidth``
        and ``loss`` are conditions from the start, as for :meth:`SockscopeProxy.conditions`.
        """
        from proxy.framing import parse_framing
        from proxy.runner import ProxyThread
        from proxy.server import ProxyConfig

        t0 = time.perf_counter()
        if max_messages < 1 or max_bytes < 1:  # before the engine exists: nothing to clean up
            raise ValueError("max_messages and max_bytes must be at least 1")
        host, port = _target(target)
        start = build_conditions(preset=preset, latency=latency, jitter=jitter, bandwidth=bandwidth, loss=loss)
        cfg = ProxyConfig(listen_host=listen_host, listen_port=0, target_host=host, target_port=port,
                          framing=parse_framing(framing), connect_timeout=connect_timeout, conditions=start,
                          seed=seed, tcp=tcp, udp=udp or not tcp, udp_idle_timeout=udp_idle_timeout)
        name = str(len(self.proxies) + 1)
        holder: list[SockscopeProxy] = []
        thread = ProxyThread(cfg, (lambda r: holder[0]._on_record(r),))
        proxy = SockscopeProxy(thread, (host, port), max_messages=max_messages, max_bytes=max_bytes, name=name)
        holder.append(proxy)
        thread.start()
        proxy.start_seconds = time.perf_counter() - t0
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        """Stop every proxy this factory started (each is stopped even if another fails to)."""
        errors: list[BaseException] = []
        for p in self.proxies:
            try:
                p.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> ProxyFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Rules: "when a message in direction D matches FILTER, then delay / hold / drop / duplicate / close / reset".

Role: the engine's rule slot. A rule's match is a small engine-side predicate (direction, connection, size
range, a regex on the bytes) and, optionally, any ``Callable[[Message], bool]``: the inspector's richer filter
language (decoded fields) plugs in there, either in-process or, in the proxy process, through a filter
compiler registered with :func:`register_filter_compiler` (loaded from the entry-point group
``sockscope.filter_compilers`` so this package never imports ``inspector``). A plugin that fails to load is
recorded (:func:`filter_compiler_errors`) and named by the error of a rule that needs a filter, as the decoder
registry does for decoder plugins. Rules are evaluated in order; the first that matches decides.

A rule may apply to only a share of the messages it matches (``percent``, e.g. "drop 20 %"): the draw comes from
the generator the caller passes to :func:`first_match` (the datagram core passes one seeded per flow and
direction from ``--seed``, the relay its direction's seeded one, so the decisions repeat): one draw per message
while any rule has a share, so which messages a share takes depends only on their order; a rule whose draw misses
is taken as not matching, so the rules after it are tried.

Rules run on the relay's thread, so nothing in them may stall or kill a connection: ``bytes_regex`` is RE2
(linear time, see :mod:`proxy.userregex`) and searches a message only when its size times the pattern's program
fits :data:`~proxy.userregex.RULE_REGEX_WORK`; a predicate that raises (a bug, or
:class:`~proxy.model.RuleUndecided` from a filter that would have to decode too much) means "no match", and
:func:`first_match` reports it so the relay can warn.

Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: engine loop thread; rules are immutable and may be shared by every relay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from proxy.model import Direction, Message, RuleUndecided
from proxy.userregex import RegexError, UserRegex, compile_user_regex

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint  # imported when plugins are scanned: it is slow to import

Action = Literal["delay", "hold", "drop", "duplicate", "close", "reset"]
ACTIONS: tuple[str, ...] = get_args(Action)

FilterCompiler = Callable[[str], Callable[[Message], bool]]
FILTER_COMPILER_GROUP = "sockscope.filter_compilers"
RuleFailed = Callable[["Rule", Exception], None]
"""Told about a rule whose match raised (the rule is then taken as not matching)."""


class RuleError(ValueError):
    """A rule that cannot be built from what the user gave."""


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """A filter-compiler plugin that failed to load: ``name = module:attr`` and the error, one line each."""

    plugin: str
    error: str

    def __str__(self) -> str:
        return f"the filter-compiler plugin {self.plugin!r} failed to load: {self.error}"


_compilers: list[FilterCompiler] = []
_load_errors: list[PluginLoadError] = []
_scanned = False


def register_filter_compiler(compiler: FilterCompiler) -> None:
    """Let rules carry filter expressions (``json.type == "ping"``) compiled by ``compiler``."""
    _compilers.append(compiler)


def load_filter_compilers(entry_points: Iterable[EntryPoint] | None = None) -> list[PluginLoadError]:
    """Register the compiler of every plugin of the ``sockscope.filter_compilers`` entry-point group (or of
    ``entry_points``); a plugin that fails to load is recorded, not raised (plugin code is arbitrary), and named
    by the :class:`RuleError` of a rule that needs a filter. Returns every failure recorded so far."""
    global _scanned
    _scanned = True
    if entry_points is None:
        from importlib.metadata import entry_points as installed

        try:
            entry_points = installed(group=FILTER_COMPILER_GROUP)
        except Exception as e:  # a broken installed distribution must not stop the engine
            _load_errors.append(PluginLoadError("(entry point scan)", f"{type(e).__name__}: {e}"))
            return list(_load_errors)
    for ep in entry_points:
        try:
            compiler = ep.load()
            if not callable(compiler):
                raise TypeError(f"{type(compiler).__name__} is not callable")
        except Exception as e:
            _load_errors.append(PluginLoadError(f"{ep.name} = {ep.value}", _clip(f"{type(e).__name__}: {e}", 300)))
            continue
        _compilers.append(compiler)
    return list(_load_errors)


def filter_compiler_errors() -> list[PluginLoadError]:
    """The filter-compiler plugins that failed to load (empty until a rule first needed one)."""
    return list(_load_errors)


def _compiler() -> FilterCompiler:
    """The filter compiler rules use (the one registered last); :class:`RuleError` saying why there is none."""
    if not _compilers and not _scanned:
        load_filter_compilers()
    if _compilers:
        return _compilers[-1]
    if _load_errors:
        raise RuleError("filter expressions in rules need a filter compiler, and "
                        + "; ".join(str(e) for e in _load_errors))
    raise RuleError("filter expressions in rules need the inspector installed (no filter compiler is registered)")


@dataclass(frozen=True, slots=True)
class Match:
    """The engine-side predicate: every given part must hold."""

    direction: Direction | None = None
    conn_id: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    bytes_regex: bytes | None = None
    expression: str | None = None
    """A filter-language expression, compiled by a registered filter compiler."""
    _regex: UserRegex | None = field(default=None, compare=False, repr=False)
    _predicate: Callable[[Message], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Checked here, once: a wrong type would otherwise raise on every message the rule looks at.
        if self.direction is not None and not isinstance(self.direction, Direction):
            raise RuleError(f"direction must be c2s or s2c, got {self.direction!r}")
        for name in ("conn_id", "min_size", "max_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise RuleError(f"{name} must be a whole number, got {type(v).__name__} {_clip(repr(v))}")
        if self.bytes_regex is not None:
            if not isinstance(self.bytes_regex, bytes | bytearray):
                raise RuleError(f"bytes_regex must be a string, got {type(self.bytes_regex).__name__}")
            try:
                object.__setattr__(self, "_regex", compile_user_regex(bytes(self.bytes_regex), dotall=True))
            except RegexError as e:
                raise RuleError(f"bad bytes regex {_clip(repr(self.bytes_regex))}: {e.message}") from None
        if self.expression is not None and self._predicate is None:
            if not isinstance(self.expression, str):
                raise RuleError(f"filter must be a string, got {type(self.expression).__name__}")
            compile_filter = _compiler()
            try:
                object.__setattr__(self, "_predicate", compile_filter(self.expression))
            except ValueError as e:
                raise RuleError(f"bad filter {_clip(repr(self.expression))}: {e}") from None
            except Exception as e:  # a compiler bug must not escape as something the caller does not expect
                raise RuleError(f"bad filter {_clip(repr(self.expression))}: {type(e).__name__}: {e}") from None

    @classmethod
    def with_predicate(cls, predicate: Callable[[Message], bool], **kw: Any) -> Match:
        m = cls(**kw)
        object.__setattr__(m, "_predicate", predicate)
        return m

    def matches(self, msg: Message) -> bool:
        if self.direction is not None and msg.direction is not self.direction:
            return False
        if self.conn_id is not None and msg.conn_id != self.conn_id:
            return False
        n = len(msg.data)
        if self.min_size is not None and n < self.min_size:
            return False
        if self.max_size is not None and n > self.max_size:
            return False
        rx = self._regex
        if rx is not None:
            if n > rx.max_bytes:
                raise RuleUndecided(
                    f"message {msg.id} of {_size(n)} is too long for its regex {_clip(repr(self.bytes_regex))}, "
                    f"which rules run on at most {_size(rx.max_bytes)} (RE2 program of {rx.program_size} "
                    "instructions); add max_size to the rule, or simplify the pattern")
            if not rx.search(msg.data):
                return False
        return self._predicate is None or bool(self._predicate(msg))


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match
    action: Action
    delay_ms: float = 0.0
    """For ``delay``: extra milliseconds on top of the conditions."""
    name: str = ""
    percent: float = 100.0
    """The share of matching messages the rule applies to (a draw per matching message when below 100)."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise RuleError(f"unknown rule action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if not isinstance(self.delay_ms, int | float) or not math.isfinite(self.delay_ms) or self.delay_ms < 0:
            raise RuleError(f"delay_ms must be a finite number >= 0, got {_clip(repr(self.delay_ms))}")
        if (not isinstance(self.percent, int | float) or isinstance(self.percent, bool)
                or not 0 <= self.percent <= 100):
            raise RuleError(f"percent must be a number from 0 to 100, got {_clip(repr(self.percent))}")

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        d: dict[str, Any] = {
            "name": self.name, "action": self.action, "delay_ms": self.delay_ms,
            "direction": m.direction.label if m.direction is not None else None, "conn": m.conn_id,
            "min_size": m.min_size, "max_size": m.max_size, "bytes_regex": m.bytes_regex,
            "filter": m.expression,
        }
        if self.percent < 100:  # only then: a rule without a share reads exactly as before shares existed
            d["percent"] = self.percent
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        if not isinstance(d, dict):
            raise RuleError(f"a rule must be a map, got {type(d).__name__}")
        raw_dir = d.get("direction")
        if raw_dir and not isinstance(raw_dir, str):
            raise RuleError(f"direction must be c2s or s2c, got {_clip(repr(raw_dir))}")
        try:
            direction = Direction.parse(raw_dir) if raw_dir else None
        except ValueError as e:
            raise RuleError(str(e)) from None
        regex = d.get("bytes_regex")
        if isinstance(regex, str):
            regex = regex.encode("utf-8", "surrogateescape")
        delay = d.get("delay_ms", 0.0)
        if not isinstance(delay, int | float) or isinstance(delay, bool) or delay != delay:
            raise RuleError(f"delay_ms must be a number of milliseconds, got {_clip(repr(delay))}")
        percent = d.get("percent", 100.0)
        if percent is None:
            percent = 100.0
        if not isinstance(percent, int | float) or isinstance(percent, bool) or percent != percent:
            raise RuleError(f"percent must be a number from 0 to 100, got {_clip(repr(percent))}")
        match = Match(direction, d.get("conn"), d.get("min_size"), d.get("max_size"), regex, d.get("filter"))
        return cls(match, d.get("action", ""), float(delay), str(d.get("name", "")), float(percent))


_UNSEEDED = random.Random()
"""The draws of rules below 100 % when the caller passes no generator (TCP connections, for now)."""


def first_match(rules: tuple[Rule, ...], msg: Message, failed: RuleFailed | None = None,
                rng: random.Random | None = None) -> Rule | None:
    """The first rule that matches ``msg`` (and, for a rule below 100 %, whose draw from ``rng`` hits). A rule
    whose match raises does not match: ``failed`` is told, and the rules after it are still tried."""
    # One draw per message whenever a rule takes a share, made before any match: which messages a share takes then
    # depends only on their order, not on how many earlier ones matched. A filter can be undecided for a moment (its
    # decoding budget is time, see inspector.filters), and that must not shift every later decision of a seeded run.
    draw = (rng or _UNSEEDED).random() * 100 if any(r.percent < 100 for r in rules) else 0.0
    for r in rules:
        try:
            hit = r.match.matches(msg)
        except Exception as e:  # a predicate never kills a connection; the relay warns instead
            if failed is not None:
                failed(r, e)
            continue
        if hit and (r.percent >= 100 or draw < r.percent):
            return r
    return None


def unreported_failures(rules: tuple[Rule, ...], warned: list[Rule], failures: list[tuple[Rule, Exception]]
                        ) -> list[tuple[str, Exception]]:
    """The failed matches not yet reported on this connection or flow, as (rule label, exception): each rule is
    reported once. ``warned`` is updated in place and forgets rules that were replaced since, so it stays as short
    as the rule set."""
    out: list[tuple[str, Exception]] = []
    for rule, exc in failures:
        if any(r is rule for r in warned):
            continue
        warned[:] = [r for r in warned if any(r is x for x in rules)]
        warned.append(rule)
        index = next((i for i, x in enumerate(rules) if x is rule), 0)
        out.append((rule.name or f"{rule.action} rule {index + 1}", exc))
    return out


def failure_text(e: Exception) -> str:
    """What a warning says about a rule's failed match: the reason of :class:`RuleUndecided`, else the exception."""
    text = str(e) if isinstance(e, RuleUndecided) else f"its match raised {type(e).__name__}: {e}"
    return _clip(text, 400)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1 << 20:
        return f"{n / 1024:.3g} KiB"
    return f"{n / (1 << 20):.3g} MiB"

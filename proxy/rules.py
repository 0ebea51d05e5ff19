"""Rules: "when a message in direction D matches FILTER, then delay / hold / drop / duplicate / close / reset".

Role: the engine's rule slot. A rule's match is a small engine-side predicate (direction, connection, size
range, a regex on the bytes) and, optionally, any ``Callable[[Message], bool]``: the inspector's richer filter
language (decoded fields) plugs in there, either in-process or, in the proxy process, through a filter
compiler registered with :func:`register_filter_compiler` (loaded from the entry-point group
``sockscope.filter_compilers`` so this package never imports ``inspector``). Rules are evaluated in order;
the first that matches decides.

Must not import: Qt, ``inspector``, asyncio, sockets.
Thread: engine loop thread; rules are immutable and may be shared by every relay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from proxy.model import Direction, Message

Action = Literal["delay", "hold", "drop", "duplicate", "close", "reset"]
ACTIONS: tuple[str, ...] = get_args(Action)

FilterCompiler = Callable[[str], Callable[[Message], bool]]
_compilers: list[FilterCompiler] = []


class RuleError(ValueError):
    """A rule that cannot be built from what the user gave."""


def register_filter_compiler(compiler: FilterCompiler) -> None:
    """Let rules carry filter expressions (``json.type == "ping"``) compiled by ``compiler``."""
    _compilers.append(compiler)


def _load_compilers() -> None:
    if _compilers:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group="sockscope.filter_compilers"):
        try:
            _compilers.append(ep.load())
        except Exception:  # a broken plugin only means expressions are unavailable
            continue


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
    _regex: re.Pattern[bytes] | None = field(default=None, compare=False, repr=False)
    _predicate: Callable[[Message], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.bytes_regex is not None:
            try:
                object.__setattr__(self, "_regex", re.compile(self.bytes_regex, re.DOTALL))
            except re.error as e:
                raise RuleError(f"bad bytes regex {self.bytes_regex!r}: {e}") from None
        if self.expression is not None and self._predicate is None:
            _load_compilers()
            if not _compilers:
                raise RuleError("filter expressions in rules need the inspector installed "
                                "(no filter compiler is registered)")
            try:
                object.__setattr__(self, "_predicate", _compilers[-1](self.expression))
            except ValueError as e:
                raise RuleError(f"bad filter {self.expression!r}: {e}") from None

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
        if self._regex is not None and self._regex.search(msg.data) is None:
            return False
        return self._predicate is None or bool(self._predicate(msg))


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match
    action: Action
    delay_ms: float = 0.0
    """For ``delay``: extra milliseconds on top of the conditions."""
    name: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise RuleError(f"unknown rule action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.delay_ms < 0:
            raise RuleError("delay_ms must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        m = self.match
        return {
            "name": self.name, "action": self.action, "delay_ms": self.delay_ms,
            "direction": m.direction.label if m.direction is not None else None, "conn": m.conn_id,
            "min_size": m.min_size, "max_size": m.max_size, "bytes_regex": m.bytes_regex,
            "filter": m.expression,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        if not isinstance(d, dict):
            raise RuleError(f"a rule must be a map, got {type(d).__name__}")
        try:
            direction = Direction.parse(d["direction"]) if d.get("direction") else None
        except ValueError as e:
            raise RuleError(str(e)) from None
        regex = d.get("bytes_regex")
        if isinstance(regex, str):
            regex = regex.encode("utf-8")
        match = Match(direction, d.get("conn"), d.get("min_size"), d.get("max_size"), regex, d.get("filter"))
        return cls(match, d.get("action", ""), float(d.get("delay_ms", 0.0)), str(d.get("name", "")))


def first_match(rules: tuple[Rule, ...], msg: Message) -> Rule | None:
    for r in rules:
        if r.match.matches(msg):
            return r
    return None

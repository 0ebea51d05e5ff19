"""Bounded Python-literal rendering of decoded values, for summaries, text panes and editable forms.

Role: one renderer for every decoder whose values are Python objects (msgpack, pickle, struct). Unlike
``repr`` it stops at a character budget and a depth, survives cycles and shared sub-trees (a 100-byte pickle can
describe a tree with 2**50 nodes through its memo), and renders the pickle reader's stand-in objects. Its cost
is proportional to its budget whatever the value: every node it visits writes at least one character, and a long
string or bytes value is cut before ``repr`` sees it. :func:`iter_children` gives a container's children lazily,
so a tree builder pays only for the children it shows.
Must not import: Qt, or anything from ``proxy``.
Thread: any thread; pure.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import msgpack

MAX_DEPTH = 64
_BIG_INT_BITS = 12_000  # ~3600 digits: below Python's int-to-str limit, so str() never raises


class Full(Exception):
    """Raised inside the renderer when the character budget is spent."""


class Renderable:
    """Base for stand-in objects (a pickled class instance, a global reference) that know how to render."""

    __slots__ = ()

    def render_into(self, r: Renderer, depth: int) -> None:
        raise NotImplementedError


class Renderer:
    """Accumulates text up to a budget; ``Full`` unwinds the recursion when it is spent."""

    __slots__ = ("_active", "limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self._active: set[int] = set()

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)
        if self.size > self.limit:
            raise Full

    def value(self, v: object, depth: int = 0) -> None:
        t = type(v)
        if t is str or t is bytes:
            self.atom(v)  # type: ignore[arg-type]
        elif t is int:
            self.write(int_repr(v))  # type: ignore[arg-type]
        elif t is float:
            self.write(float_repr(v))  # type: ignore[arg-type]
        elif v is None or t is bool:
            self.write(repr(v))
        elif t is tuple and depth < MAX_DEPTH:
            # no cycle check: a cycle always runs through a mutable container, which has one
            self.write("(")
            self.items(v, depth + 1)
            self.write(",)" if len(v) == 1 else ")")  # type: ignore[arg-type]
        else:
            self._other(v, depth)

    def _other(self, v: object, depth: int) -> None:
        if isinstance(v, str | bytes):
            self.atom(v)
        elif isinstance(v, bool) or v is None:
            self.write(repr(v))
        elif isinstance(v, int):
            self.write(int_repr(v))
        elif isinstance(v, float):
            self.write(float_repr(v))
        elif depth >= MAX_DEPTH:
            self.write("…")
        elif isinstance(v, msgpack.ExtType):  # a named tuple: before tuples
            self.write(f"ExtType(code={v.code}, data=")
            self.atom(v.data)
            self.write(")")
        elif isinstance(v, list | tuple | dict | set | frozenset | bytearray | Renderable):
            key = id(v)
            if key in self._active:
                self.write("<cycle>")
                return
            self._active.add(key)
            try:
                self._container(v, depth + 1)
            finally:
                self._active.discard(key)
        elif isinstance(v, msgpack.Timestamp):
            self.write(f"Timestamp(seconds={v.seconds}, nanoseconds={v.nanoseconds})")
        else:
            self.write(f"<{type(v).__name__}>")

    def atom(self, v: str | bytes) -> None:
        """``repr(v)``, of only as much of ``v`` as the budget can still show: a 1 MB string costs nothing more
        than a short one (the cut ``repr`` always overruns the budget, so ``Full`` ends the rendering)."""
        room = self.limit - self.size + 1
        self.write(repr(v[:room] if len(v) > room else v))

    def items(self, seq: Any, depth: int) -> None:
        first = True
        value, write = self.value, self.write
        for item in seq:
            if first:
                first = False
            else:
                write(", ")
            value(item, depth)

    def _container(self, v: object, depth: int) -> None:
        if isinstance(v, Renderable):
            v.render_into(self, depth)
        elif isinstance(v, list):
            self.write("[")
            self.items(v, depth)
            self.write("]")
        elif isinstance(v, tuple):
            self.write("(")
            self.items(v, depth)
            self.write(",)" if len(v) == 1 else ")")
        elif isinstance(v, dict):
            if type(v) is OrderedDict:
                self.write("OrderedDict(")
                self.dict_body(v, depth)
                self.write(")")
            else:
                self.dict_body(v, depth)
        elif isinstance(v, bytearray):
            self.write("bytearray(")
            self.atom(bytes(v[: self.limit - self.size + 1]))
            self.write(")")
        elif isinstance(v, set | frozenset):
            name = "set" if isinstance(v, set) else "frozenset"
            if not v:
                self.write(f"{name}()")
                return
            self.write("{" if name == "set" else "frozenset({")
            self.items(v, depth)
            self.write("}" if name == "set" else "})")

    def dict_body(self, d: dict[Any, Any], depth: int) -> None:
        self.write("{")
        first = True
        for k, val in d.items():
            if not first:
                self.write(", ")
            first = False
            self.value(k, depth)
            self.write(": ")
            self.value(val, depth)
        self.write("}")

    def text(self) -> str:
        return "".join(self.parts)


def int_repr(v: int) -> str:
    if v.bit_length() > _BIG_INT_BITS:
        return f"<int of {v.bit_length()} bits>"
    return repr(v)


def float_repr(v: float) -> str:
    if math.isfinite(v):
        return repr(v)
    if math.isnan(v):
        return "nan"
    return "inf" if v > 0 else "-inf"


def short_repr(v: object, limit: int) -> str:
    """A quick one-line repr of a scalar (sliced before ``repr``, so huge strings cost nothing); else render."""
    t = type(v)
    if t is str or t is bytes:
        r = repr(v[:limit])  # type: ignore[index]
        return r if len(v) <= limit else r + "…"  # type: ignore[arg-type]
    if t is int:
        return int_repr(v)  # type: ignore[arg-type]
    if t is float:
        return float_repr(v)  # type: ignore[arg-type]
    if v is None or t is bool:
        return repr(v)
    return render(v, limit)[0]


def render(value: object, limit: int) -> tuple[str, bool]:
    """``value`` as Python-literal-like text of at most about ``limit`` characters; and whether it was cut."""
    r = Renderer(limit)
    try:
        r.value(value)
    except Full:
        return r.text()[:limit] + "…", True
    return r.text(), False


NODE_REPR = 120


class TreeBudget:
    """Counts :class:`~inspector.decode._api.Field` nodes across one view so a tree stays bounded."""

    __slots__ = ("left", "truncated")

    def __init__(self, nodes: int) -> None:
        self.left = nodes
        self.truncated = False

    def take(self) -> bool:
        if self.left <= 0:
            self.truncated = True
            return False
        self.left -= 1
        return True


def iter_children(v: object) -> tuple[Iterator[tuple[str, object]], int] | None:
    """Named children of a container value, lazily, and how many there are; None for a leaf. Names of non-string
    dict keys are rendered only for the children taken from the iterator."""
    if isinstance(v, Renderable):
        kids = getattr(v, "iter_children", None)
        return kids() if callable(kids) else None  # type: ignore[no-any-return]
    if isinstance(v, dict):
        return ((k if isinstance(k, str) else render(k, NODE_REPR)[0], val) for k, val in v.items()), len(v)
    if isinstance(v, list | tuple | set | frozenset):
        return ((f"[{i}]", item) for i, item in enumerate(v)), len(v)
    return None


def children_of(v: object) -> list[tuple[str, object]] | None:
    """Every named child of a container value, or None for a leaf (for small values; see :func:`iter_children`)."""
    kids = iter_children(v)
    return None if kids is None else list(kids[0])

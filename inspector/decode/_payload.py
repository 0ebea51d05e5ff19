"""Decoding a payload inside a decoded message (an ENet send's data, a Godot RAW packet) with the usual decoders.

Role: :func:`decode_payload` hands a payload to the registry the outer decoder belongs to, and keeps nesting
bounded: the registry holds the outer decoders too (an ENet payload could read as ENet again), so a thread-local
depth stops at :data:`MAX_NESTING` and the outer decoders say "not me" while nested (:func:`nesting`). It also
remembers each lane's sure winner, so a lane of one kind of message skips ranking every decoder (see the function),
and makes a payload's context once per outer context (:func:`nested_context`). :func:`summary_view` makes the
summary-only views of the summary path (every datagram's and payload's) at half the dataclass's cost.
Must not import: Qt, ``proxy``, the decoder package's ``__init__`` (its builtins import the decoders that import
this).
Thread: any thread; the depth is per thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, Protocol

from ._api import DecodeContext, View, set_deadline

if TYPE_CHECKING:
    from ._registry import DecoderRegistry

_local = threading.local()


def nesting() -> int:
    return getattr(_local, "depth", 0)  # type: ignore[no-any-return]


class _Nested:
    __slots__ = ()

    def __enter__(self) -> None:
        _local.depth = getattr(_local, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _local.depth -= 1


NESTED = _Nested()
MAX_NESTING: Final = 2
"""Decoders that decode a payload with the registry (ENet, Godot's RAW, a relay) nest at most this deep."""


_NESTED_CONTEXTS: dict[int, tuple[DecodeContext, DecodeContext]] = {}
"""id(outer context) -> (outer, its payloads' context): the registry keeps one context per connection, direction
and detail, so a payload's context is made once, not per payload (the outer is held, so its id is not reused)."""
_MAX_NESTED_CONTEXTS: Final = 256


def nested_context(ctx: DecodeContext) -> DecodeContext:
    """The context a payload inside a message of ``ctx`` is decoded with: the same direction, connection, struct
    layout, JSON delimiter, detail and deadline; no "decode as" and no framing (those are the outer message's)."""
    hit = _NESTED_CONTEXTS.get(id(ctx))
    if hit is not None and hit[0] is ctx:
        inner = hit[1]
        if inner.deadline_ns != ctx.deadline_ns:
            # The outer's deadline was set in place (the table does so per row: see _api.set_deadline), so the
            # outer is one thread's own, and so is this context made from it: set in place too.
            set_deadline(inner, ctx.deadline_ns)
        return inner
    inner = DecodeContext(ctx.direction, ctx.conn_id, ctx.struct_format, ctx.json_delimiter, None, ctx.detail,
                          ctx.deadline_ns, None)
    if len(_NESTED_CONTEXTS) >= _MAX_NESTED_CONTEXTS:
        _NESTED_CONTEXTS.clear()  # contexts with deadlines are made per message: they come and go
    _NESTED_CONTEXTS[id(ctx)] = (ctx, inner)
    return inner


_VIEW_FIELDS: Final = ("decoder", "summary", "fields", "text", "warnings", "error", "can_encode", "truncated",
                        "editable", "values")


class _ViewMaker(Protocol):
    def __call__(self, decoder: str, summary: str, values: tuple[object, ...], warnings: tuple[str, ...] = (),
                 truncated: bool = False) -> View: ...


def _view_maker() -> _ViewMaker:
    """``summary_view``: a summary-only :class:`View` (no fields, text, error or editable form) made by setting its
    slots directly: half the cost of the frozen dataclass's ``__init__`` (a million of them per 20,000 datagrams
    a second would be a tenth of the time). The same object in every respect (its fields are checked here: if
    ``View`` ever changes, the plain constructor is used)."""
    import dataclasses

    def plain(decoder: str, summary: str, values: tuple[object, ...], warnings: tuple[str, ...] = (),
              truncated: bool = False) -> View:
        return View(decoder=decoder, summary=summary, warnings=warnings, truncated=truncated, values=values)

    slots = getattr(View, "__slots__", ())
    if tuple(f.name for f in dataclasses.fields(View)) != _VIEW_FIELDS or tuple(slots) != _VIEW_FIELDS \
            or hasattr(View, "__post_init__"):  # a check the constructor would run: keep it
        return plain
    d, s, f, t, w, e, c, tr, ed, v = (getattr(View, n).__set__ for n in _VIEW_FIELDS)
    new = object.__new__

    def fast(decoder: str, summary: str, values: tuple[object, ...], warnings: tuple[str, ...] = (),
             truncated: bool = False) -> View:
        view = new(View)
        d(view, decoder)
        s(view, summary)
        f(view, ())
        t(view, "")
        w(view, warnings)
        e(view, None)
        c(view, False)
        tr(view, truncated)
        ed(view, None)
        v(view, values)
        return view

    return fast


summary_view = _view_maker()
"""``summary_view(decoder, summary, values, warnings=(), truncated=False)``: ``View(decoder=..., summary=...,
warnings=..., truncated=..., values=...)``, made faster (see :func:`_view_maker`)."""


LaneKey = tuple[int | None, int | None, int, str | None]
"""(connection, direction, channel, struct layout): the messages of one ENet channel, usually all of one format."""
MEMO_MAX: Final = 4096


def decode_payload(registry: DecoderRegistry | None, payload: bytes, ctx: DecodeContext, prefer: str | None = None,
                   memo: dict[LaneKey, tuple[str, float]] | None = None, lane: LaneKey | None = None
                   ) -> View | None:
    """``payload`` decoded by the usual decoders (``prefer`` first if it decodes), or None when nested too deep.

    ``memo`` and ``lane``: the decoder that surely won the last payload of this lane, and its confidence. When that
    decoder is exactly as confident of this payload, it is the one "auto" would pick again (see below why), so it
    decodes without asking the others: that ranking is most of the cost of a small payload. A payload of another kind
    goes through "auto" as usual."""
    depth = getattr(_local, "depth", 0)
    if depth >= MAX_NESTING:
        return None
    if registry is None:  # a decoder made outside a registry: its payloads stay bytes
        return None
    inner = nested_context(ctx)
    _local.depth = depth + 1  # (NESTED's work, without its two method calls: this runs for every payload)
    try:
        if prefer is not None:
            view = registry.decode_with(prefer, payload, inner)  # (an error view if it is not registered)
            if view.error is None:
                return view
        hit = memo.get(lane) if memo is not None and lane is not None else None
        if hit is not None:
            decoder = registry.get(hit[0])
            try:
                same = decoder is not None and decoder.confidence(payload, inner) == hit[1]
            except Exception:  # a plugin's bug: as auto would, take it as "cannot"
                same = False
            if same and decoder is not None:
                view = registry._decode_by(decoder, payload, inner)  # (decode_with, its lookup done above)
                if view.error is None:
                    return view
        view = registry.auto(payload, inner)
        if memo is not None and lane is not None and view.error is None:
            ranked = registry.confidences(payload, inner)
            # Only a plain, sure win is remembered (not a fallback after the first failed, nor a body behind a prefix,
            # nor text, which is as sure of any ASCII): at 0.8 and above the built-ins' kinds do not overlap (JSON's
            # first byte, msgpack's maps, a pickle's PROTO, Godot's commands), so no other would be surer. A user's
            # struct layout is surer of any message of its size: lanes with one always rank.
            if ranked and ranked[0][0] == view.decoder and ranked[0][1] >= 0.8 and inner.struct_format is None:
                if len(memo) >= MEMO_MAX:
                    memo.clear()
                memo[lane] = ranked[0]
        return view
    finally:
        _local.depth = depth

"""msgpack decoder: several objects per message, ext types (timestamps included), bin vs str, any map keys.

Role: shows ``msgpack.packb(...)`` messages. The editable form is one Python-literal value per object
(``{'cmd': 'move', 'raw': b'\\x01'}``, ``ExtType(code=5, data=b'..')``, ``Timestamp(seconds=.., nanoseconds=..)``);
``str`` packs as msgpack str and ``bytes`` as bin, so an unchanged view re-encodes to the same bytes when the
sender used msgpack-python's defaults.
The work is bounded by the message's size: lengths and nesting are capped by the unpacker (no declared length can
exceed the bytes there are), map keys whose hash a sender can choose (arrays read as tuples, timestamps) are
hashed within a budget (:class:`~inspector.decode._keys.KeyGuard`), and summaries and text are rendered within a
character budget. ``DecodeContext.deadline_ns`` is checked between objects.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic_ns
from typing import Any

import msgpack

from ._api import (
    MAX_DUMP,
    MAX_NODES,
    MAX_PARSE,
    DecodeContext,
    EncodeError,
    Field,
    View,
    clip,
    error_view,
    gave_up_view,
)
from ._keys import KeyGuard
from ._literal import parse_literals
from ._render import TreeBudget, render
from ._tree import value_field

NAME = "msgpack"
MAX_VALUES = 10_000
_CTORS = {"ExtType": msgpack.ExtType, "Ext": msgpack.ExtType, "Timestamp": msgpack.Timestamp}
_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError)


def _confidence_of_first(b: int, n: int) -> float:
    if 0x81 <= b <= 0x8F or b in (0xDE, 0xDF):
        return 0.85
    if 0x91 <= b <= 0x9F or b in (0xDC, 0xDD):
        return 0.75
    if b in (0x80, 0x90):
        return 0.85 if n == 1 else 0.3
    if 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8:
        return 0.5
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        return 0.4
    if 0xCA <= b <= 0xD3:
        return 0.1
    return 0.0


class _GaveUp(Exception):
    pass


def _guarded_maps(guard: KeyGuard, deadline_ns: int | None) -> Callable[[list[tuple[Any, Any]]], dict[Any, Any]]:
    """An ``object_pairs_hook`` that builds each map through ``guard``, and stops at the deadline: admitting a key
    costs microseconds in Python, all inside one call of the C unpacker."""
    admitted = 0

    def pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        nonlocal admitted
        out: dict[Any, Any] = {}
        admit = guard.admit
        for k, v in pairs:
            out[admit(out, k)] = v
            admitted += 1
            if not admitted & 127 and deadline_ns is not None and monotonic_ns() > deadline_ns:
                raise _GaveUp(f"the deadline passed after {admitted} map keys")
        return out

    return pairs_hook


def _may_hold_timestamp(chunk: bytes) -> bool:
    """Whether an ext of type -1 (a timestamp) may be in ``chunk``: fixext 4/8, or an ext 8/16/32 header."""
    return 0xC7 in chunk or 0xC8 in chunk or 0xC9 in chunk or b"\xd6\xff" in chunk or b"\xd7\xff" in chunk


def _unpack(chunk: bytes, use_list: bool,
            deadline_ns: int | None = None) -> tuple[list[object], list[int], KeyGuard | None]:
    """The objects, where each ends, and the guard that admitted map keys (None: the C unpacker's dicts)."""
    # Map keys a sender can make costly to hash (tuples, when arrays are keys; timestamps, whose ext type is
    # 0xff) are admitted one by one; the usual message has neither and keeps the C unpacker's own dicts.
    # The usual message is also one whole object: unpackb is five times cheaper than a streaming Unpacker.
    # Anything else (several objects, a cut one, a bad byte) takes the Unpacker, which says exactly what.
    # Lengths are bounded by the message's size (unpackb's default), nesting by the unpacker's stack.
    guard: KeyGuard | None = None
    hooks: dict[str, Any] = {}
    if use_list and (0xFF not in chunk or not _may_hold_timestamp(chunk)):  # an int: 10x faster than b"\xff"
        try:
            return [msgpack.unpackb(chunk, raw=False, strict_map_key=False,
                                    unicode_errors="surrogateescape")], [len(chunk)], None
        except Exception:  # msgpack raises ExtraData, ValueError, TypeError, FormatError, StackError ...
            pass
    else:
        guard = KeyGuard(16 * len(chunk) + 4096)
        hooks["object_pairs_hook"] = _guarded_maps(guard, deadline_ns)
        if use_list:
            try:
                return [msgpack.unpackb(chunk, raw=False, strict_map_key=False,
                                        unicode_errors="surrogateescape", **hooks)], [len(chunk)], guard
            except _GaveUp:
                raise
            except Exception:
                pass
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=use_list,
        strict_map_key=False,
        unicode_errors="surrogateescape",
        max_buffer_size=max(len(chunk), 1),
        **hooks,
    )
    unpacker.feed(chunk)
    values: list[object] = []
    ends: list[int] = []
    for obj in unpacker:
        values.append(obj)
        ends.append(unpacker.tell())
        if len(values) >= MAX_VALUES:
            break
        if not len(values) & 255 and deadline_ns is not None and monotonic_ns() > deadline_ns:
            raise _GaveUp(f"the deadline passed after {len(values)} objects (byte {ends[-1]} of {len(chunk)})")
    return values, ends, guard


class MsgpackDecoder:
    """msgpack; ``editable`` holds one Python-literal value per packed object, one per line."""

    name = NAME

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        return _confidence_of_first(data[0], len(data)) if data else 0.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        chunk = data[:MAX_PARSE]
        truncated = len(data) > MAX_PARSE
        warnings: list[str] = []
        try:
            try:
                values, ends, guard = _unpack(chunk, True, ctx.deadline_ns)
            except TypeError:  # an array used as a map key: only tuples are hashable
                values, ends, guard = _unpack(chunk, False, ctx.deadline_ns)
                warnings.append("a map has array keys: arrays are shown as tuples")
        except _UNPACK_ERRORS as exc:
            return error_view(NAME, data, f"not msgpack: {exc}", detail=ctx.detail)
        except _GaveUp as exc:
            return gave_up_view(NAME, data, str(exc), detail=ctx.detail)
        except RecursionError:
            return error_view(NAME, data, "not msgpack: nested too deeply", detail=ctx.detail)
        if not values:
            return error_view(NAME, data, "no complete msgpack object", detail=ctx.detail)
        consumed = ends[-1]
        if consumed < len(chunk):
            if len(values) >= MAX_VALUES:
                warnings.append(f"only the first {MAX_VALUES} objects are shown")
                truncated = True
            else:
                warnings.append(
                    f"{len(chunk) - consumed} bytes at the end are an incomplete object (continues in next message?)"
                )
        if truncated and len(data) > MAX_PARSE:
            warnings.append(f"only the first {MAX_PARSE} of {len(data)} bytes were parsed")
        kept = guard.kept if guard is not None else 0
        if kept:
            warnings.append(f"{kept} map key(s) kept by identity: hashing them would cost too much "
                            "(colliding values); equal ones are not merged")
            truncated = True  # not re-encodable as shown
        # exact Python literals: the editable form, and the summary of a small message
        exact_text = _exact_repr(values) if not kept and (ctx.detail or len(chunk) <= _SMALL) else None
        summary = _summary(values, len(chunk), exact_text)
        if not ctx.detail:
            return View(decoder=NAME, summary=summary, warnings=tuple(warnings), truncated=truncated,
                        values=tuple(values))

        budget = TreeBudget(MAX_NODES)
        fields: list[Field] = []
        start = 0
        for i, (v, end) in enumerate(zip(values, ends, strict=True)):
            node = value_field("value" if len(values) == 1 else f"object {i}", v, budget, start, end)
            if node is None:
                break
            fields.append(node)
            start = end

        editable = exact_text
        exact = editable is not None and not truncated and consumed == len(chunk)
        if exact and self._repack(values) != chunk:
            warnings.append(
                "re-encoding gives different bytes: the sender packed some values differently "
                "from msgpack-python's defaults (e.g. float32, non-minimal ints)"
            )
        text = editable if editable is not None else _rendered(values)
        return View(
            decoder=NAME,
            summary=summary,
            fields=tuple(fields),
            text=text,
            warnings=tuple(warnings),
            can_encode=exact,
            truncated=truncated or budget.truncated,
            editable=editable if exact else None,
            values=tuple(values),
        )

    @staticmethod
    def _repack(values: list[object]) -> bytes | None:
        packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        try:
            return b"".join(packer.pack(v) for v in values)
        except (TypeError, ValueError, OverflowError):
            return None

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        values = parse_literals(edited, _CTORS)
        packed = self._repack_checked(values)
        return packed

    @staticmethod
    def _repack_checked(values: list[object]) -> bytes:
        packer = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
        out = []
        for i, v in enumerate(values):
            try:
                out.append(packer.pack(v))
            except (TypeError, ValueError, OverflowError) as exc:
                raise EncodeError(f"value {i + 1} cannot be packed: {exc}") from None
        return b"".join(out)


def _rendered(values: list[object]) -> str:
    """The values one per line, rendered within :data:`MAX_DUMP` characters in all."""
    lines: list[str] = []
    left = MAX_DUMP
    for v in values:
        if left <= 0:
            lines.append(f"… {len(values) - len(lines)} more objects")
            break
        text = render(v, left)[0]
        lines.append(text)
        left -= len(text) + 1
    return "\n".join(lines)


_SUMMARY_RENDER = 220


_SMALL = 4096
"""Messages up to this size get their summary from ``repr`` (C, and bounded by their size: msgpack has no
shared parts); bigger ones from the renderer, which stops at the summary's length."""


def _summary(values: list[object], size: int, exact: str | None) -> str:
    """The values side by side, within a budget (never a ``repr`` of a big message), the same in every view:
    ``exact`` (their ``_exact_repr``) for a small message, else rendered."""
    if size <= _SMALL and exact is not None:
        head = exact[:400].replace("\n", " ")
        return clip(f"[{len(values)} objects] {head}" if len(values) > 1 else head)
    parts: list[str] = []
    left = _SUMMARY_RENDER
    for v in values:
        text = render(v, left)[0]
        parts.append(text)
        left -= len(text) + 1
        if left <= 0:
            break
    head = " ".join(parts)
    return clip(f"[{len(values)} objects] {head}" if len(values) > 1 else head)


def _exact_repr(values: list[object]) -> str | None:
    """Every value as an exact Python literal, one per line; None when ``repr`` cannot do it."""
    try:
        return "\n".join(map(repr, values))
    except (RecursionError, ValueError):  # very deep nesting; a huge int
        return None

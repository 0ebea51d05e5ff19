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

import itertools
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
from ._payload import summary_view
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


# -- confidence: does the whole message read as msgpack a program would send? ---------------------------------
#
# Almost any bytes parse as msgpack: every byte below 0x80 or from 0xe0 is a whole one-byte integer, 0xc0 is nil,
# 0x80-0x9f open small maps and arrays. A binary record (``struct.pack("<Hff", ...)``) whose first byte falls in the
# fixmap range reads as a map, then dozens of one-byte "objects". So the first byte only says how much the message
# may be worth; the message must then parse from its first byte to its last, every top-level object after the
# first must be a container, string or bin (a stream of scalars is what random bytes are), and what it holds must
# add up to evidence that only a sender of msgpack produces: printable strings (map keys most of all), maps keyed
# by strings, plausible floats and timestamps. Small integers, nil, booleans, bin and ext payloads are what random
# bytes read as, so they count for nothing; a string with control characters, or a float no program sends (1e-300,
# NaN), counts against. A message of small integers only (``[1, -1]``) is therefore shown as bytes, unless the
# framing says it is msgpack (``DecodeContext.framing == "msgpack"``: the stream's framer cut it at an object's end).

EVIDENCE_NEEDED = 3.0
"""Evidence (see :func:`evidence`) above which a message that parses as msgpack is taken for msgpack: a whole
message parsed exactly is worth 2, so a printable key, a string of a few characters or two floats are needed."""
_WHOLE = 2.0
_CUT_TAIL = 1.5
_STR_CAP = 4.0
_BAD = -3.0
_WALK_NODES = 512
_AMPLE = 8.0
_PROBE_STREAM = 64
"""Top-level objects of a stream looked at: past them the stream's first objects are the evidence."""
_PAIRS = 64
"""Pairs of one map looked at: its first keys are the evidence (a map of 20,000 pairs costs no more)."""
_CONTAINERS = (list, tuple, dict)
_SCALARS = frozenset({int, float, bool, type(None)})
_EPOCH_2000, _EPOCH_2100 = 946_684_800, 4_102_444_800


def _string_evidence(s: str) -> float:
    if s.isprintable() or s.replace("\n", "").replace("\r", "").replace("\t", "").isprintable():
        return 0.5 + min(float(len(s)), _STR_CAP)
    return _BAD


def _float_evidence(x: float) -> float:
    if x == 0.0:
        return 0.0
    a = abs(x)
    return 1.0 if 1e-9 <= a <= 1e18 else _BAD  # also NaN and inf: no comparison holds


def _walk(values: list[object]) -> float:
    """Evidence from parsed values (maps as tuples of pairs: see :func:`evidence`), looking at most at
    :data:`_WALK_NODES` of them, and stopping once it is :data:`_AMPLE` (what random bytes never reach: the usual
    message is known by its first keys, for a microsecond)."""
    ev = 0.0
    stack = list(values)
    stack.reverse()  # the first object first: its first keys decide most messages
    nodes = 0
    while stack and nodes < _WALK_NODES:
        v = stack.pop()
        nodes += 1
        t = type(v)
        if t is str:
            if v:
                ev += _string_evidence(v)  # type: ignore[arg-type]
        elif t is tuple or t is dict:  # a map: its (key, value) pairs (the first few: see _PAIRS)
            keyed = True
            pairs = v.items() if t is dict else v  # type: ignore[attr-defined]
            for k, x in itertools.islice(pairs, _PAIRS):  # type: ignore[arg-type]
                if type(k) is str and k:
                    ev += _string_evidence(k)
                    if ev >= _AMPLE:
                        return ev
                else:
                    keyed = False
                    if type(k) is list or type(k) is tuple:
                        stack.append(k)
                stack.append(x)
            if keyed and v:
                ev += 1.0
        elif t is list:
            stack.extend(reversed(v[:_WALK_NODES]))  # type: ignore[index]  # (the first item on top)
        elif t is float:
            ev += _float_evidence(v)  # type: ignore[arg-type]
        elif t is msgpack.Timestamp:
            ev += 1.0 if _EPOCH_2000 <= v.seconds <= _EPOCH_2100 else _BAD  # type: ignore[attr-defined]
        # int, bool, None, bytes, ExtType: what random bytes read as; no evidence either way
        if ev >= _AMPLE:
            break
    return ev


def evidence(data: bytes) -> float | None:
    return _evidence(data)[0]


_NOTHING: Any = object()


def _evidence(data: bytes) -> tuple[float | None, Any]:
    """How much ``data`` looks like msgpack a program sent (see the comment above); None when it does not parse
    as msgpack from its first byte (a byte no msgpack has, a string that is not UTF-8, nothing complete).

    Parsed by the C unpacker into the dicts it builds itself when no map key can be costly to hash (the decoder's
    own rule: no timestamp may be in the message), else, and when an array is a key, with maps as tuples of pairs
    (no key is hashed: colliding keys cost nothing here); at most :data:`~inspector.decode._api.MAX_PARSE` bytes
    (a longer message is judged by the objects complete in its first 64 KiB). Only the first :data:`_PAIRS` pairs
    of a map and :data:`_WALK_NODES` values in all are looked at.

    (Here with, as its second item, the whole message's one object when it was read exactly as the decoder reads
    it, else :data:`_NOTHING`: see :meth:`MsgpackDecoder.confidence`.)"""
    if len(data) <= MAX_PARSE:
        hook: dict[str, Any] = {"object_pairs_hook": tuple} if _may_hold_timestamp(data) else {}
        try:
            try:
                obj = msgpack.unpackb(data, raw=False, strict_map_key=False, **hook)
                # without a hook, what the decoder's _unpack reads (strict UTF-8 read the same as surrogateescape)
                return _WHOLE + _walk([obj]), obj if not hook else _NOTHING
            except TypeError:  # an array as a map key (unhashable as a list): as tuples of pairs
                if hook:
                    raise
                hook = {"object_pairs_hook": tuple}
                return _WHOLE + _walk([msgpack.unpackb(data, raw=False, strict_map_key=False, **hook)]), _NOTHING
        except msgpack.ExtraData as e:  # several objects: a stream, read below, if it may be one
            if type(e.unpacked) not in _CONTAINERS or _confidence_of_first(e.extra[0], 2) < 0.3:
                return None, _NOTHING  # see the stream's rules below: most binary records end here, cheaply
        except Exception:  # the first object is cut short, or has a bad byte, bad UTF-8, too deep a nesting
            return None, _NOTHING
        chunk = data
    else:
        chunk = data[: 64 << 10]
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, object_pairs_hook=tuple,
                                max_buffer_size=max(len(chunk), 1))
    unpacker.feed(chunk)
    values: list[object] = []
    end = 0
    try:
        for obj in unpacker:
            if values and (type(obj) in _SCALARS or type(values[0]) not in _CONTAINERS):
                # A stream that goes on with scalars, or does not start with a map or an array: random bytes read
                # as that, programs send a map or an array per message.
                return None, _NOTHING
            values.append(obj)
            end = unpacker.tell()  # after the loop, tell() counts the bytes of a cut object too
            if len(values) >= _PROBE_STREAM:
                return _CUT_TAIL + _walk(values), _NOTHING
    except Exception:
        return None, _NOTHING
    if not values:
        return None, _NOTHING
    if end == len(data):
        return _WHOLE + _walk(values), _NOTHING
    if _confidence_of_first(data[end], 2) < 0.3 or type(values[0]) not in _CONTAINERS:
        return None, _NOTHING  # cut short: only if a map or array came first, and what is left could start an object
    return _CUT_TAIL + _walk(values), _NOTHING


class MsgpackDecoder:
    """msgpack; ``editable`` holds one Python-literal value per packed object, one per line."""

    name = NAME

    def __init__(self) -> None:
        self._memo: tuple[bytes, Any] | None = None
        """The one object of the message the last confidence check read, for its decode (taken once: each view's
        values are its own). A tuple replaced whole: safe across threads."""

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if not data:
            return 0.0
        if ctx.framing == "msgpack":
            return 0.9  # the stream's framer cut this message at the end of a msgpack object
        first = _confidence_of_first(data[0], len(data))
        if first == 0.0 or (first == 0.3 and _confidence_of_first(data[1], 2) < 0.3):
            return 0.0  # an empty map or array, then a scalar: a pickle (0x80 0x04) or a record, not a stream
        ev, obj = _evidence(data)
        if ev is None or ev <= EVIDENCE_NEEDED:
            return 0.0
        if obj is not _NOTHING:
            self._memo = (data, obj)  # the registry decodes the same bytes next: that object, unread again
        return first

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        chunk = data[:MAX_PARSE]
        truncated = len(data) > MAX_PARSE
        warnings: list[str] = []
        memo = self._memo
        if memo is not None and memo[0] is data:
            self._memo = None
            values: list[object] = [memo[1]]
            ends = [len(data)]
            guard = None
        else:
            try:
                values, ends, guard = self._read(chunk, warnings, ctx.deadline_ns)
            except _UNPACK_ERRORS as exc:
                return error_view(NAME, data, f"not msgpack: {exc}", detail=ctx.detail)
            except _GaveUp as exc:
                return gave_up_view(NAME, data, str(exc), detail=ctx.detail)
            except RecursionError:
                return error_view(NAME, data, "not msgpack: nested too deeply", detail=ctx.detail)
        return self._view(data, chunk, values, ends, guard, truncated, warnings, ctx)

    @staticmethod
    def _read(chunk: bytes, warnings: list[str],
              deadline_ns: int | None) -> tuple[list[object], list[int], KeyGuard | None]:
        try:
            return _unpack(chunk, True, deadline_ns)
        except TypeError:  # an array used as a map key: only tuples are hashable
            values, ends, guard = _unpack(chunk, False, deadline_ns)
            warnings.append("a map has array keys: arrays are shown as tuples")
            return values, ends, guard

    def _view(self, data: bytes, chunk: bytes, values: list[object], ends: list[int], guard: KeyGuard | None,
              truncated: bool, warnings: list[str], ctx: DecodeContext) -> View:
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
            return summary_view(NAME, summary, tuple(values), tuple(warnings), truncated)

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

"""msgpack decoder: several objects per message, ext types (timestamps included), bin vs str, any map keys.

Role: shows ``msgpack.packb(...)`` messages. The editable form is one Python-literal value per object
(``{'cmd': 'move', 'raw': b'\\x01'}``, ``ExtType(code=5, data=b'..')``, ``Timestamp(seconds=.., nanoseconds=..)``);
``str`` packs as msgpack str and ``bytes`` as bin, so an unchanged view re-encodes to the same bytes when the
sender used msgpack-python's defaults.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import msgpack

from ._api import MAX_NODES, MAX_PARSE, DecodeContext, EncodeError, Field, View, clip, error_view
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


def _unpack(chunk: bytes, use_list: bool) -> tuple[list[object], list[int]]:
    if use_list:
        # The usual message is one whole object: unpackb is five times cheaper than a streaming Unpacker.
        # Anything else (several objects, a cut one, a bad byte) takes the Unpacker, which says exactly what.
        try:
            return [msgpack.unpackb(chunk, raw=False, strict_map_key=False,
                                    unicode_errors="surrogateescape")], [len(chunk)]
        except Exception:  # msgpack raises ExtraData, ValueError, TypeError, FormatError, StackError ...
            pass
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=use_list,
        strict_map_key=False,
        unicode_errors="surrogateescape",
        max_buffer_size=max(len(chunk), 1),
    )
    unpacker.feed(chunk)
    values: list[object] = []
    ends: list[int] = []
    for obj in unpacker:
        values.append(obj)
        ends.append(unpacker.tell())
        if len(values) >= MAX_VALUES:
            break
    return values, ends


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
                values, ends = _unpack(chunk, use_list=True)
            except TypeError:  # an array used as a map key: only tuples are hashable
                values, ends = _unpack(chunk, use_list=False)
                warnings.append("a map has array keys: arrays are shown as tuples")
        except _UNPACK_ERRORS as exc:
            return error_view(NAME, data, f"not msgpack: {exc}")
        if not values:
            return error_view(NAME, data, "no complete msgpack object")
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
        if not ctx.detail:
            return View(decoder=NAME, summary=_summary(values, _exact_repr(values)), warnings=tuple(warnings),
                        truncated=truncated, values=tuple(values))

        budget = TreeBudget(MAX_NODES)
        fields: list[Field] = []
        start = 0
        for i, (v, end) in enumerate(zip(values, ends, strict=True)):
            node = value_field("value" if len(values) == 1 else f"object {i}", v, budget, start, end)
            if node is None:
                break
            fields.append(node)
            start = end

        editable = _exact_repr(values)
        exact = editable is not None and not truncated and consumed == len(chunk)
        if exact and self._repack(values) != chunk:
            warnings.append(
                "re-encoding gives different bytes: the sender packed some values differently "
                "from msgpack-python's defaults (e.g. float32, non-minimal ints)"
            )
        text = _text(values, editable)
        return View(
            decoder=NAME,
            summary=_summary(values, editable),
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


def _text(values: list[object], exact: str | None) -> str:
    return exact if exact is not None else "\n".join(render(v, 1 << 20)[0] for v in values[:100])


def _summary(values: list[object], exact: str | None) -> str:
    head = _text(values, exact)[:400].replace("\n", " ")
    return clip(f"[{len(values)} objects] {head}" if len(values) > 1 else head)


def _exact_repr(values: list[object]) -> str | None:
    """Every value as an exact Python literal, one per line; None when ``repr`` cannot do it."""
    try:
        return "\n".join(map(repr, values))
    except (RecursionError, ValueError):  # very deep nesting; a huge int
        return None

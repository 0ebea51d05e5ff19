"""Struct decoder: fixed-size binary records described by a user format with field names.

Role: shows ``struct.pack("<Hff12sB", ...)`` messages field by field, with the byte range of each field so the
hex view can highlight it. The layout comes from the decode context as ``FORMAT name1 name2 ...``, e.g.
``<Hff12sB player_id x y name state``. A message may hold several records back to back.
The work is bounded by the message's size and a budget, whatever the layout: a layout has at most
:data:`MAX_FIELDS` fields and is parsed in linear time (once per spec, errors included); a decode visits at most
:data:`MAX_WORK` values, so a message of many records, or of one record with very many values, shows a prefix.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from ._api import MAX_DUMP, MAX_NODES, DecodeContext, EncodeError, Field, View, clip, error_view
from ._literal import parse_literal
from ._render import float_repr, render

NAME = "struct"
MAX_RECORDS = 10_000
MAX_FIELDS = 4096
"""Most items (fields and pads) in a layout."""
MAX_SPEC = 64 << 10
"""Longest layout text, in characters."""
MAX_WORK = 50_000
"""Most values one decode looks at (records times values per record); the rest of the message is not shown."""
_SHOWN_IN_LIST = 32
"""Values of a list field written in its one-line display; the tree has a node for each, within the node cap."""
_NAN = float("nan")
_ITEM = re.compile(r"\s*(\d*)([xcbB?hHiIlLqQnNefdspP])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SEPARATOR = "---"


@dataclass(frozen=True, slots=True)
class StructItem:
    """One named field of a record: a scalar, a string (``12s``), or a list (``3f``)."""

    name: str
    code: str
    count: int
    offset: int
    size: int

    @property
    def is_list(self) -> bool:
        return self.code not in "sp" and self.count > 1

    @property
    def n_values(self) -> int:
        return 1 if self.code in "sp" else self.count


@dataclass(frozen=True, slots=True)
class StructLayout:
    spec: str
    fmt: str
    size: int
    items: tuple[StructItem, ...]
    n_values: int = 0
    """Values one record unpacks to."""


@lru_cache(maxsize=128)
def parse_layout(spec: str) -> StructLayout:
    """Parse ``FORMAT name1 name2 ...``; raises ValueError with a readable message."""
    known = _BAD_LAYOUTS.get(spec)  # lru_cache keeps no exceptions: a bad layout is parsed once, not per message
    if known is not None:
        raise ValueError(known)
    try:
        return _parse(spec)
    except ValueError as exc:
        if len(_BAD_LAYOUTS) >= 128:
            _BAD_LAYOUTS.clear()
        _BAD_LAYOUTS[spec] = str(exc)
        raise


_BAD_LAYOUTS: dict[str, str] = {}


def _parse(spec: str) -> StructLayout:
    if len(spec) > MAX_SPEC:
        raise ValueError(f"struct layout of {len(spec)} characters: at most {MAX_SPEC}")
    tokens = spec.replace(",", " ").split()
    if not tokens:
        raise ValueError("empty struct format")
    fmt, names = tokens[0], tokens[1:]
    prefix = fmt[0] if fmt[0] in "@=<>!" else ""
    body = fmt[len(prefix) :]
    pos = 0
    raw_items: list[tuple[str, int, str]] = []  # (token, count, code)
    while pos < len(body):
        m = _ITEM.match(body, pos)
        if not m:
            raise ValueError(f"unknown struct code {body[pos]!r} in {fmt[:60]!r}")
        if len(raw_items) >= MAX_FIELDS:
            raise ValueError(f"struct layout with more than {MAX_FIELDS} fields")
        digits, code = m.group(1), m.group(2)
        if len(digits) > 12:
            raise ValueError(f"repeat count {digits[:20]}… in {fmt[:60]!r} is too large")
        count = int(digits) if digits else 1
        if count == 0 and code not in "spx":
            raise ValueError(f"'0{code}' in {fmt[:60]!r} holds no value: leave it out")
        raw_items.append((digits + code, count, code))
        pos = m.end()
    try:
        size = struct.calcsize(fmt)
    except struct.error as exc:
        raise ValueError(f"bad struct format {fmt[:60]!r}: {exc}") from None
    valued = [it for it in raw_items if it[2] != "x"]
    if len(names) > len(valued):
        raise ValueError(f"{len(names)} names for {len(valued)} fields in {fmt[:60]!r}")
    seen: set[str] = set()
    for n in names:
        if not _NAME.match(n):
            raise ValueError(f"field name {n!r} is not an identifier")
        if n in seen:
            raise ValueError(f"field name {n!r} appears twice")
        seen.add(n)
    items: list[StructItem] = []
    native = prefix in ("", "@")
    end = 0
    for token, count, code in raw_items:
        own = struct.calcsize(prefix + token)
        # where this item ends: after ``end`` bytes, aligned as struct aligns it (native layouts only); one
        # small calcsize per item, not one of the whole prefix (quadratic in the number of fields)
        end = struct.calcsize(f"{prefix}{end}x{token}") if native else end + own
        if code == "x":
            continue
        i = len(items)
        name = names[i] if i < len(names) else f"field{i}"
        while name in seen and i >= len(names):
            name += "_"
        items.append(StructItem(name, code, count, end - own, own))
    return StructLayout(spec, fmt, size, tuple(items), sum(item.n_values for item in items))


def _show(code: str, v: object) -> str:
    """A readable value: floats of 4 or 2 bytes rounded as they were meant, NUL-trimmed text as a string."""
    if isinstance(v, float):
        return f"{v:.7g}" if code == "f" else f"{v:.4g}" if code == "e" else float_repr(v)
    if isinstance(v, bytes) and code == "s":
        try:
            text = v.decode("utf-8")
        except UnicodeDecodeError:
            return repr(v)
        return repr(text) if text.isprintable() else repr(v)
    return repr(v)


def _record(layout: StructLayout, flat: tuple[object, ...]) -> dict[str, object]:
    """One record's values by field name, as the detailed decode builds them."""
    record: dict[str, object] = {}
    i = 0
    for item in layout.items:
        if item.is_list:
            value: object = list(flat[i : i + item.count])
        else:
            value = flat[i]
            if item.code == "s" and isinstance(value, bytes):
                value = value.rstrip(b"\0")
        i += item.n_values
        record[item.name] = value
    return record


class StructDecoder:
    """Fixed-size records; ``editable`` is ``name = value`` lines, records separated by ``---``."""

    name = NAME

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if not ctx.struct_format or not data:
            return 0.0
        try:
            size = parse_layout(ctx.struct_format).size
        except ValueError:
            return 0.0
        if size == 0 or len(data) % size:
            return 0.0
        # The user configured this layout for the connection: a size match is strong evidence.
        return 0.97 if len(data) == size else 0.93

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        if not ctx.struct_format:
            return error_view(NAME, data, "no struct format configured for this connection", detail=ctx.detail)
        try:
            layout = parse_layout(ctx.struct_format)
        except ValueError as exc:
            return error_view(NAME, data, str(exc), detail=ctx.detail)
        size = layout.size
        if size == 0 or not data or len(data) % size:
            return error_view(NAME, data, f"{len(data)} bytes is not a whole number of {size}-byte records",
                              detail=ctx.detail)
        total = len(data) // size
        per_record = max(1, layout.n_values)
        # records looked at: the work (values visited) stays within MAX_WORK whatever the layout
        n = min(total, MAX_RECORDS, max(1, MAX_WORK // per_record))
        big = per_record > MAX_WORK  # one record holds more values than a decode looks at: shown cut
        truncated = n < total or big
        unpacker = struct.Struct(layout.fmt)
        exact = not big
        records: list[dict[str, object]] = []
        fields: list[Field] = []
        lines: list[str] = [f"# {layout.spec.strip()}  ({size} bytes per record)"]
        nodes = 0
        text_left = 4 * MAX_DUMP  # the text (and editable form) stops here; the view is then cut
        first = ""
        detail = ctx.detail
        for r in range(n):
            base = r * size
            flat = unpacker.unpack_from(data, base)
            if not detail and r:
                records.append(_record(layout, flat))
                continue
            if exact and detail:
                # what encoding the shown values would give: pad bytes as zeros, every NaN as the plain NaN
                canon = [_NAN if isinstance(v, float) and v != v else v for v in flat]
                exact = unpacker.pack(*canon) == data[base : base + size]
            record: dict[str, object] = {}
            kids: list[Field] = []
            shown: list[str] = []
            i = 0
            if r and text_left > 0:
                lines.append(_SEPARATOR)
            for item in layout.items:
                start = base + item.offset
                sub: tuple[Field, ...] = ()
                if item.is_list:
                    values = flat[i : i + item.count]
                    value: object = list(values)
                    each = item.size // item.count
                    room = MAX_NODES - nodes - 1 if detail else 0
                    if room > 0:
                        sub = tuple(
                            Field(f"[{k}]", _show(item.code, v), start + k * each, start + (k + 1) * each)
                            for k, v in enumerate(values[:room])
                        )
                    display = "[" + ", ".join(_show(item.code, v) for v in values[:_SHOWN_IN_LIST]) + (
                        ", …]" if item.count > _SHOWN_IN_LIST else "]")
                else:
                    value = flat[i]
                    if item.code == "s" and isinstance(value, bytes):
                        value = value.rstrip(b"\0")  # struct.pack pads it back
                    display = _show(item.code, value)
                i += item.n_values
                record[item.name] = value
                shown.append(f"{item.name}={display}")
                if detail and text_left > 0:
                    line = f"{item.name} = {render(value, 4096)[0] if big else repr(value)}"
                    lines.append(line)
                    text_left -= len(line) + 1
                if nodes < MAX_NODES:
                    kids.append(Field(item.name, display, start, start + item.size, sub))
                    nodes += 1 + len(sub)
            records.append(record)
            if total == 1:
                fields = kids
            elif nodes < MAX_NODES:
                fields.append(Field(f"record {r}", clip(" ".join(shown), 120), base, base + size, tuple(kids)))
                nodes += 1
            if r == 0:
                first = " ".join(shown)
        if text_left <= 0:
            lines.append("…")
        truncated = truncated or nodes >= MAX_NODES or text_left <= 0
        summary = first if total == 1 else f"[{total} records] {first}"
        warnings = [f"only the first {n} records are shown"] if n < total or n >= MAX_RECORDS else []
        if big:
            warnings.append(f"a record holds {per_record} values: only part of each list is shown")
        if not detail:
            return View(decoder=NAME, summary=clip(summary), warnings=tuple(warnings), truncated=truncated,
                        values=tuple(records))
        text = "\n".join(lines)
        # Pad bytes and NaN payloads do not survive decode -> encode: only offer editing when forwarding the
        # unedited view would give back these very bytes.
        editable = not truncated and exact
        if not truncated and not exact:
            warnings.append("re-encoding would change these bytes (non-zero padding or a NaN payload): "
                            "edit as hex instead")
        return View(
            decoder=NAME,
            summary=clip(summary),
            fields=tuple(fields),
            text=text,
            warnings=tuple(warnings),
            can_encode=editable,
            truncated=truncated,
            editable=text if editable else None,
            values=tuple(records),
        )

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        if not ctx.struct_format:
            raise EncodeError("no struct format configured for this connection")
        try:
            layout = parse_layout(ctx.struct_format)
        except ValueError as exc:
            raise EncodeError(str(exc)) from None
        packer = struct.Struct(layout.fmt)
        by_name = {item.name: item for item in layout.items}
        out = bytearray()
        chunks = re.split(rf"^\s*{_SEPARATOR}\s*$", edited, flags=re.MULTILINE)
        for r, chunk in enumerate(chunks):
            values: dict[str, object] = {}
            for lineno, line in enumerate(chunk.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, eq, rhs = line.partition("=")
                name = name.strip()
                if not eq or name not in by_name:
                    raise EncodeError(
                        f"record {r}, line {lineno}: expected 'name = value' with a field of "
                        f"{layout.fmt} ({', '.join(by_name)})"
                    )
                values[name] = parse_literal(rhs.strip(), {})
            if not values and r == len(chunks) - 1 and r:
                continue  # a trailing separator
            flat: list[object] = []
            for item in layout.items:
                if item.name not in values:
                    raise EncodeError(f"record {r}: no value for {item.name}")
                v = values[item.name]
                if item.code in "sp" and isinstance(v, str):
                    v = v.encode("utf-8")
                if item.is_list:
                    if not isinstance(v, list | tuple) or len(v) != item.count:
                        raise EncodeError(f"record {r}: {item.name} needs a list of {item.count} values")
                    flat.extend(v)
                else:
                    flat.append(v)
            try:
                out += packer.pack(*flat)
            except struct.error as exc:
                raise EncodeError(f"record {r}: {exc}") from None
        if not out:
            raise EncodeError("no record to encode")
        return bytes(out)

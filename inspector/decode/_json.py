"""JSON decoder: one value, several concatenated values, NDJSON, a user-given delimiter, a length prefix.

Role: shows ``json.dumps(...).encode()`` messages as a tree. The editable form is the JSON text itself, so
encoding an unchanged view gives back the very same bytes; a 2- or 4-byte length prefix (``struct.pack("!I",
len(body)) + body``) is detected, shown as a field, and recomputed on encode.
The work is bounded by the message's size: parsing is the C scanner's (nesting deeper than it allows, or a number
too long to convert, is a clear error, not an exception), runs of delimiters are skipped in C, the pretty text is
written piece by piece up to its cap, and ``DecodeContext.deadline_ns`` is checked between values. A caller that
has read the text already (a WebSocket text message) passes it: ``decode_text``, and ``summary_of_text`` for the
usual one-value message's summary without its view.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from functools import lru_cache
from time import monotonic_ns

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
from ._payload import summary_view
from ._render import TreeBudget
from ._tree import value_field

NAME = "json"
MAX_VALUES = 10_000
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_PREFIXES = ((">I", 4), ("<I", 4), (">H", 2), ("<H", 2))
_PREFIX_HEADER = "# length-prefix "
_STARTS = frozenset(b'{["')
_PRETTY = json.JSONEncoder(indent=2, ensure_ascii=False)
CHECK_EVERY = 256
"""Values (or delimited pieces) between two looks at the deadline."""


class _GaveUp(Exception):
    pass


def _unreadable(exc: Exception, pos: int) -> ValueError:
    """A clear error for the scanner's failures that are not JSON syntax errors."""
    if isinstance(exc, RecursionError):
        return ValueError(f"nested too deeply for the JSON reader (it stops near {sys.getrecursionlimit()} "
                          f"levels), at character {pos}")
    # a number longer than Python converts (sys.get_int_max_str_digits())
    return ValueError(f"a value at character {pos} cannot be read: {exc}")


@lru_cache(maxsize=16)
def _blanks(delim: str) -> re.Pattern[str]:
    """Runs of delimiters and whitespace: skipped in one step, however many there are."""
    return re.compile(rf"(?:{re.escape(delim)}|\s)*")


def _pretty(values: tuple[object, ...], limit: int) -> tuple[str, bool]:
    """Indented JSON of ``values``, written piece by piece and cut at ``limit`` characters (indentation makes deep
    nesting quadratic: 500 levels, 500 times, would be 250 MB); and whether it was cut."""
    parts: list[str] = []
    size = 0
    try:
        for i, v in enumerate(values):
            if i:
                parts.append("\n")
            for piece in _PRETTY.iterencode(v):
                parts.append(piece)
                size += len(piece)
                if size > limit:
                    return "".join(parts)[:limit] + "\n…", True
    except (RecursionError, ValueError):
        return "".join(parts)[:limit] + "\n… (nested too deeply to indent)", True
    return "".join(parts), False


def length_prefix(data: bytes) -> tuple[str, int] | None:
    """The struct format and size of a length prefix equal to the rest of ``data``, if it has one."""
    # (_PREFIXES's order, each pair of formats looked at only when the byte after its prefix may start a value)
    n = len(data)
    if n > 4 and data[4] in _STARTS:
        if struct.unpack_from(">I", data)[0] == n - 4:
            return ">I", 4
        if struct.unpack_from("<I", data)[0] == n - 4:
            return "<I", 4
    if n > 2 and data[2] in _STARTS:
        if struct.unpack_from(">H", data)[0] == n - 2:
            return ">H", 2
        if struct.unpack_from("<H", data)[0] == n - 2:
            return "<H", 2
    return None


class JsonDecoder:
    """JSON; ``editable`` is the JSON text (preceded by ``# length-prefix >I`` when the message had one)."""

    name = NAME

    def __init__(self) -> None:
        self._prefix: tuple[bytes, tuple[str, int] | None] | None = None
        """The bytes the last confidence check looked at and their length prefix (the registry decodes the same
        bytes next). A tuple replaced whole: safe across threads."""

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        pfx = length_prefix(data)
        self._prefix = (data, pfx)
        head = data[pfx[1] if pfx else 0 :][:64].lstrip()
        if not head:
            return 0.0
        first = head[0]
        if first in b"{[":
            return 0.9
        if first == 0x22:
            return 0.6 if data.rstrip().endswith(b'"') else 0.1
        return 0.3 if first in b"-0123456789tfn" else 0.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        memo = self._prefix
        pfx = memo[1] if memo is not None and memo[0] is data else length_prefix(data)
        off = pfx[1] if pfx else 0
        body = data[off : off + MAX_PARSE]
        truncated = len(data) - off > MAX_PARSE
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not (truncated and exc.start >= len(body) - 3):
                return error_view(NAME, data, f"not UTF-8 at byte {off + exc.start}", detail=ctx.detail)
            text = body[: exc.start].decode("utf-8")
        return self._decode_text(data, text, pfx, off, truncated, ctx)

    def decode_text(self, data: bytes, text: str, ctx: DecodeContext) -> View:
        """``decode(data, ctx)`` for ``data`` whose UTF-8 reading is ``text`` (a WebSocket text message, read
        once to check it is UTF-8): the same view, without decoding the bytes a second time."""
        if len(data) > MAX_PARSE or length_prefix(data) is not None:
            return self.decode(data, ctx)
        return self._decode_text(data, text, None, 0, False, ctx)

    def summary_of_text(self, data: bytes, text: str, ctx: DecodeContext) -> tuple[str, object] | bool | None:
        """For the usual message, one JSON object or array from its first character to its last (no delimiter, no
        length prefix, at most ``MAX_PARSE`` bytes), whose UTF-8 reading is ``text``: the summary and the value of
        ``decode(data, ctx)`` with ``ctx.detail`` False, a view that would be ``summary_view(NAME, summary,
        (value,))``; False when its first value does not read (``decode`` gives an error view: its first turn
        fails), None for anything else (decode it). The view's own work, without making the view."""
        if ctx.json_delimiter or len(data) > MAX_PARSE or not text or text[0] not in "{[" \
                or length_prefix(data) is not None:
            return None
        try:
            value, end = _DECODER.raw_decode(text, 0)
        except (ValueError, RecursionError):  # (decode says why)
            return False
        if end != len(text):
            return None
        return clip(" ".join(text[:400].split())), value

    def _decode_text(self, data: bytes, text: str, pfx: tuple[str, int] | None, off: int, truncated: bool,
                     ctx: DecodeContext) -> View:
        warnings: list[str] = []
        try:
            spans = self._split(text, ctx.json_delimiter, truncated, warnings, ctx.deadline_ns)
        except ValueError as exc:
            return error_view(NAME, data, str(exc), detail=ctx.detail)
        except _GaveUp as exc:
            return gave_up_view(NAME, data, str(exc), detail=ctx.detail)
        if truncated:
            warnings.append(f"only the first {MAX_PARSE} of {len(data) - off} bytes were parsed")
        values = (spans[0][0],) if len(spans) == 1 else tuple(v for v, _, _ in spans)
        head = text[:400]
        if ctx.json_delimiter:  # a terminator (b"EOT\0") says nothing in a one-line summary
            head = head.replace(ctx.json_delimiter.decode("utf-8", "replace"), " ")
        summary = " ".join(head.split())  # runs of whitespace as one space (str.split's whitespace is \s's)
        if len(spans) > 1:
            summary = f"[{len(spans)} values] {summary}"
        if pfx:
            summary = f"[len {len(data) - off}] {summary}"
        if not ctx.detail:
            return summary_view(NAME, clip(summary), values, tuple(warnings), truncated)
        byte_pos = _byte_offsets(text, [p for _, s, e in spans for p in (s, e)])
        budget = TreeBudget(MAX_NODES)
        fields: list[Field] = []
        if pfx:
            fields.append(Field("length prefix", f"{len(data) - off} ({pfx[0]})", 0, off))
        for i, (v, _, _) in enumerate(spans):
            node = value_field(
                "value" if len(spans) == 1 else f"value {i}",
                v,
                budget,
                off + byte_pos[2 * i],
                off + byte_pos[2 * i + 1],
            )
            if node is None:
                break
            fields.append(node)
        can_encode = not truncated and not warnings
        pretty, cut = _pretty(values, 4 * MAX_DUMP)
        truncated = truncated or cut
        editable = (f"{_PREFIX_HEADER}{pfx[0]}\n" if pfx else "") + text
        return View(
            decoder=NAME,
            summary=clip(summary),
            fields=tuple(fields),
            text=pretty,
            warnings=tuple(warnings),
            can_encode=can_encode,
            truncated=truncated or budget.truncated,
            editable=editable if can_encode else None,
            values=values,
        )

    def _split(
        self, text: str, delimiter: bytes | None, truncated: bool, warnings: list[str],
        deadline_ns: int | None = None,
    ) -> list[tuple[object, int, int]]:
        """(value, start, end) for each JSON value in ``text``; raises ValueError when it is not JSON."""
        if delimiter:
            return self._split_delimited(text, delimiter.decode("utf-8", "replace"), truncated, warnings,
                                         deadline_ns)
        out: list[tuple[object, int, int]] = []
        n = len(text)
        pos = 0
        if text and text[0] in "{[":  # the usual message: one object, no blank around it: one call, no matching
            try:  # (the loop's first turn, as it would go)
                value, end = _DECODER.raw_decode(text, 0)
            except json.JSONDecodeError as exc:
                if truncated:
                    raise ValueError(f"a JSON value larger than {MAX_PARSE} bytes is not parsed") from None
                raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
            except (RecursionError, ValueError) as exc:
                raise _unreadable(exc, 0) from None
            out.append((value, 0, end))
            if end == n:
                return out
            pos = end
        while True:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            if len(out) >= MAX_VALUES:
                warnings.append(f"only the first {MAX_VALUES} values are shown")
                break
            if len(out) % CHECK_EVERY == CHECK_EVERY - 1 and deadline_ns is not None and monotonic_ns() > deadline_ns:
                raise _GaveUp(f"the deadline passed after {len(out)} values (character {pos} of {n})")
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if out and (truncated or _incomplete(exc, n)):
                    warnings.append(f"incomplete JSON value at character {pos} (continues in next message?)")
                    break
                if truncated and not out:
                    raise ValueError(f"a JSON value larger than {MAX_PARSE} bytes is not parsed") from None
                raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
            except (RecursionError, ValueError) as exc:
                raise _unreadable(exc, pos) from None
            out.append((value, pos, end))
            pos = end
        if not out:
            raise ValueError("no JSON value")
        return out

    def _split_delimited(
        self, text: str, delim: str, truncated: bool, warnings: list[str], deadline_ns: int | None = None
    ) -> list[tuple[object, int, int]]:
        out: list[tuple[object, int, int]] = []
        skip = _blanks(delim)
        n = len(text)
        pos = 0
        while True:
            pos = skip.match(text, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            end = text.find(delim, pos)
            last = end < 0
            if last:
                end = n
            if len(out) >= MAX_VALUES:
                warnings.append(f"only the first {MAX_VALUES} values are shown")
                break
            if len(out) % CHECK_EVERY == CHECK_EVERY - 1 and deadline_ns is not None and monotonic_ns() > deadline_ns:
                raise _GaveUp(f"the deadline passed after {len(out)} values (character {pos} of {n})")
            piece = text[pos:end]
            try:
                value, stop = _DECODER.raw_decode(piece, 0)
                if piece[stop:].strip():
                    raise json.JSONDecodeError("Extra data", piece, stop)
            except json.JSONDecodeError as exc:
                if out and last:
                    warnings.append(f"incomplete JSON value at character {pos} (continues in next message?)")
                    break
                raise ValueError(f"value {len(out)}: {exc.msg} at column {exc.colno}") from None
            except (RecursionError, ValueError) as exc:
                raise _unreadable(exc, pos) from None
            out.append((value, pos, end))
            pos = end + len(delim)
        if not out:
            raise ValueError("no JSON value")
        return out

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        fmt = None
        if edited.startswith(_PREFIX_HEADER):
            header, _, edited = edited.partition("\n")
            fmt = header[len(_PREFIX_HEADER) :].strip()
            if fmt not in dict(_PREFIXES):
                raise EncodeError(f"unknown length prefix {fmt!r}: use one of >I <I >H <H")
        warnings: list[str] = []
        try:
            self._split(edited, ctx.json_delimiter, False, warnings)
        except ValueError as exc:
            raise EncodeError(f"not valid JSON: {exc}") from None
        if warnings:
            raise EncodeError(f"not valid JSON: {warnings[0]}")
        body = edited.encode("utf-8", "surrogatepass")
        if fmt is None:
            return body
        try:
            return struct.pack(fmt, len(body)) + body
        except struct.error:
            raise EncodeError(f"body of {len(body)} bytes does not fit a {fmt} length prefix") from None


def _incomplete(exc: json.JSONDecodeError, n: int) -> bool:
    return exc.pos >= n - 1 or exc.msg.startswith("Unterminated string")


def _byte_offsets(text: str, char_positions: list[int]) -> list[int]:
    """UTF-8 byte offsets of increasing character positions in ``text``."""
    if text.isascii():
        return char_positions
    out = []
    prev_char = prev_byte = 0
    for p in char_positions:
        prev_byte += len(text[prev_char:p].encode("utf-8", "surrogatepass"))
        prev_char = p
        out.append(prev_byte)
    return out

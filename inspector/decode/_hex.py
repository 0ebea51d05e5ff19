"""Hex decoder: the classic 16-bytes-a-line dump with an ASCII column. Always available, lowest confidence.

Role: the view of last resort, and an editor for any bytes: ``encode`` reads the dump back (offset and ASCII
columns are ignored) or plain hex digits.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import re

from ._api import MAX_DUMP, DecodeContext, EncodeError, Field, View, hex_dump

NAME = "hex"
_SUMMARY_BYTES = 24
_OFFSET = re.compile(r"[0-9a-fA-F]{4,16}:?\Z")


class HexDecoder:
    """Bytes as hex; ``editable`` is the dump itself."""

    name = NAME

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        return 0.01

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        truncated = len(data) > MAX_DUMP
        head = data[:_SUMMARY_BYTES].hex(" ")
        more = " …" if len(data) > _SUMMARY_BYTES else ""
        summary = f"{head}{more} ({len(data)} bytes)"
        if not ctx.detail:
            return View(decoder=NAME, summary=summary, truncated=truncated, values=(data,))
        dump = hex_dump(data)
        return View(
            decoder=NAME,
            summary=summary,
            fields=(Field("bytes", f"{len(data)} bytes", 0, len(data)),),
            text=dump,
            can_encode=not truncated,
            truncated=truncated,
            editable=None if truncated else dump,
            values=(data,),
        )

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        out = bytearray()
        for lineno, line in enumerate(edited.splitlines(), 1):
            if "|" in line:  # a dump line: offset, hex bytes, |ascii|
                line = line[: line.index("|")]
                parts = line.split()
                if parts and _OFFSET.match(parts[0]) and len(parts[0]) >= 4 and len(parts) > 1:
                    parts = parts[1:]
                digits = "".join(parts)
            else:
                digits = "".join(line.split())
            if digits.lower().startswith("0x"):
                digits = digits[2:]
            try:
                out += bytes.fromhex(digits)
            except ValueError:
                raise EncodeError(f"line {lineno}: not hex digits: {digits[:40]!r}") from None
        return bytes(out)

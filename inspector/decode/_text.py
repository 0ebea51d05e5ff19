"""Text decoder: UTF-8 with visible escapes for control characters and invalid bytes.

Role: the everyday view of ``sock.send("Ping received! 📥".encode())``. A multibyte character cut in two by TCP
(its first bytes end one message, the rest start the next) is shown as such, with a note, not as an error.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import re

from ._api import MAX_DUMP, MAX_NODES, DecodeContext, EncodeError, Field, View, clip

NAME = "text"
SPLIT_TAIL = "incomplete UTF-8 sequence, continues in next message"
SPLIT_HEAD = "continuation of a UTF-8 sequence from the previous message"

_CONTROLS = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PROBE = 4096
SHORT = 32
"""Messages shorter than this are text only if every byte is (a cut character at either end and one control byte
at the very end, a terminator, aside): 1 byte of noise in 10 is a binary record, not text with a typo."""
SUMMARY_PROBE = 400
_INVALID = re.compile("[\udc80-\udcff]")


_TERMINATORS = frozenset(b"\x00\x03\x04")


def _one_script(body: bytes) -> bool:
    """Whether the letters of a short UTF-8 ``body`` (valid or not: invalid is counted as noise elsewhere) come from
    one alphabet: ASCII with Latin letters (``Zoë``), or one other script (``привет``, ``日本語``); emoji and symbols
    go with any. A few random bytes that happen to be valid UTF-8 mix ASCII letters with a Greek or Armenian one."""
    if body.isascii():
        return True
    text = body.decode("utf-8", "replace")
    ascii_letters = any(c.isalpha() for c in text if c < "\x80")
    blocks = set()
    for c in text:
        o = ord(c)
        if o < 0x80 or o >= 0x2000 or not c.isalpha():
            continue  # ASCII, symbols, CJK, emoji
        block = 0 if o < 0x250 else o >> 7  # Latin-1 and Latin Extended letters go with ASCII
        if ascii_letters and block:
            return False
        blocks.add(block)
    return len(blocks) <= 1


def _escape_table(keep_newlines: bool) -> dict[int, str]:
    table: dict[int, str] = {0x5C: "\\\\"}
    for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        table[c] = f"\\x{c:02x}" if c < 0x100 and c not in range(0x80, 0xA0) else f"\\u{c:04x}"
    table[0x0D] = "\\r"
    if keep_newlines:
        del table[0x0A], table[0x09]
    else:
        table[0x0A] = "\\n"
        table[0x09] = "\\t"
    for b in range(0x80, 0x100):  # surrogateescape'd invalid bytes
        table[0xDC00 + b] = f"\\x{b:02x}"
    return table


_EDIT_TABLE = _escape_table(keep_newlines=True)
_LINE_TABLE = _escape_table(keep_newlines=False)
_UNESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|r|n|t)")


def _split_edges(data: bytes) -> tuple[int, int]:
    """Bytes of a character cut at the start (continuation bytes) and at the end (an unfinished lead)."""
    head = 0
    while head < min(3, len(data)) and 0x80 <= data[head] <= 0xBF:
        head += 1
    if head == len(data):
        return head, 0
    tail = 0
    for back in range(1, min(4, len(data) - head) + 1):
        b = data[-back]
        if 0x80 <= b <= 0xBF:
            continue
        need = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        if need > back:
            tail = back
        break
    return head, tail


def escape(text: str, *, one_line: bool) -> str:
    return text.translate(_LINE_TABLE if one_line else _EDIT_TABLE)


def _hexes(b: bytes) -> str:
    return "".join(f"\\x{x:02x}" for x in b)


class TextDecoder:
    """UTF-8 text; ``editable`` is the text with ``\\\\``, ``\\xNN``, ``\\r`` and ``\\uNNNN`` escapes."""

    name = NAME

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if not data:
            return 0.5
        probe = data[:_PROBE]
        if probe.isascii() and _CONTROLS.search(probe) is None:
            return 0.5  # the usual case, without the cut-character and noise accounting below
        # Control bytes are all below 0x80, so the cut-character edges below never hold one: counted on the
        # probe, they are the body's. Binary data (a pickle, a struct) is mostly controls: no need to go on.
        controls = len(_CONTROLS.findall(probe))
        if controls * 4 >= len(probe):
            return 0.0
        if len(data) <= _PROBE and probe[-1] in _TERMINATORS:
            controls -= 1  # a terminator (b"\0" of a C string, b"EOT\0", b"\x04") is not noise
        head, tail = _split_edges(probe) if len(data) <= _PROBE else (_split_edges(probe)[0], 0)
        body = probe[head : len(probe) - tail]
        bad = 0
        if len(data) <= _PROBE:  # the whole message: count bad sequences without raising and catching
            bad = body.decode("utf-8", "replace").count("\ufffd")
            if bad and b"\xef\xbf\xbd" in body:
                try:  # U+FFFD written by the sender is text, not a bad sequence
                    body.decode("utf-8")
                    bad = 0
                except UnicodeDecodeError:
                    pass
        else:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.start < len(body) - 3:  # else: the probe cut a character
                    bad = body.decode("utf-8", "replace").count("\ufffd")
        noise = bad + controls
        words = not controls and bad == 1 and body.count(b" ") >= 2  # "this is text \xff ok": a typo in words
        if len(data) < SHORT and ((noise and not words) or ((head or tail) and body) or not _one_script(body)):
            # A short message with a byte that is not text, or with text and a character cut at an edge, or that
            # mixes ASCII letters with one Armenian letter, is a binary record (whose floats read as "?B@C" and ints
            # as stray letters). TCP cuts characters in long text; a short piece that is only the cut character's
            # remaining bytes is still shown as text, with its note.
            return 0.0
        if not noise:
            return 0.5
        if noise * 20 <= len(body):
            return 0.5 if not bad else 0.2
        return 0.05 if noise * 8 < len(body) else 0.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        shown = data[:MAX_DUMP]
        truncated = len(data) > MAX_DUMP
        head, tail = _split_edges(shown)
        if truncated:
            tail = 0
        body = shown[head : len(shown) - tail]
        decoded = body.decode("utf-8", "surrogateescape")
        warnings: list[str] = []
        bad = 0 if decoded.isascii() else len(_INVALID.findall(decoded))
        if bad:
            warnings.append(f"{bad} byte{'s' if bad > 1 else ''} not valid UTF-8, shown as \\xNN")
        pre = post = ""
        if head:
            pre = _hexes(shown[:head])
            warnings.append(f"starts with {pre}: {SPLIT_HEAD}")
        if tail:
            post = _hexes(shown[len(shown) - tail :])
            warnings.append(f"ends with {post}: {SPLIT_TAIL}")
        if truncated:
            warnings.append(f"showing the first {MAX_DUMP} of {len(data)} bytes")
        line = escape(decoded[:SUMMARY_PROBE], one_line=True)
        summary = clip(
            (pre + "…" if pre else "") + f'"{line}"' + ("…" + post if post else ""),
        )
        if not ctx.detail:
            return View(decoder=NAME, summary=summary, warnings=tuple(warnings), truncated=truncated,
                        values=(decoded,))
        editable = pre + escape(decoded, one_line=False) + post
        text = (pre + "…" if pre else "") + escape(decoded, one_line=False) + ("…" + post if post else "")
        fields = self._line_fields(shown)
        return View(
            decoder=NAME,
            summary=summary,
            fields=fields,
            text=text,
            warnings=tuple(warnings),
            can_encode=not truncated,
            truncated=truncated,
            editable=None if truncated else editable,
            values=(decoded,),
        )

    def _line_fields(self, data: bytes) -> tuple[Field, ...]:
        if b"\n" not in data[:-1]:
            return ()
        out: list[Field] = []
        start = 0
        for i, line in enumerate(data.split(b"\n")):
            end = start + len(line)
            if len(out) >= MAX_NODES:
                break
            if line or end < len(data):
                text = escape(line.decode("utf-8", "surrogateescape"), one_line=True)
                out.append(Field(f"line {i + 1}", clip(f'"{text}"'), start, end))
            start = end + 1
        return tuple(out)

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        out = bytearray()
        pos = 0
        for m in _UNESCAPE.finditer(edited):
            out += _utf8(edited[pos : m.start()])
            esc = m.group(1)
            if esc == "\\":
                out += b"\\"
            elif esc[0] == "x":
                out.append(int(esc[1:], 16))
            elif esc[0] == "u":
                out += _utf8(chr(int(esc[1:], 16)))
            else:
                out += {"r": b"\r", "n": b"\n", "t": b"\t"}[esc]
            pos = m.end()
        out += _utf8(edited[pos:])
        return bytes(out)


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"character {exc.object[exc.start]!r} cannot be encoded as UTF-8") from None

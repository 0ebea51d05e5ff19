"""The decoder contract: :class:`View`, :class:`Field`, :class:`DecodeContext` and the :class:`Decoder` protocol.

Role: the vocabulary shared by the registry, the built-in decoders, third-party plugins, filters and the window.
A decoder turns captured bytes into a :class:`View` (a one-line summary, a field tree with byte ranges, a text
rendering) and, where it can, turns an edited text back into bytes.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from proxy.model import Direction

SUMMARY_MAX = 200
"""Longest summary a decoder should produce; the table shows one line per message."""

MAX_PARSE = 1 << 20
"""Deep decoders (JSON, msgpack, pickle) look at no more than this many bytes of one message."""

MAX_NODES = 2000
"""Most :class:`Field` nodes one view holds; a bigger tree is cut and the view marked ``truncated``."""

MAX_DUMP = 64 << 10
"""Most bytes rendered as a hex dump or as text in one view."""


class EncodeError(ValueError):
    """An edited representation cannot be turned back into bytes; the message says why."""


@dataclass(frozen=True, slots=True)
class Field:
    """One node of a decoded tree."""

    name: str
    value_repr: str
    start: int | None = None
    """First byte of this field in the message, when the decoder knows it."""
    end: int | None = None
    """One past the last byte of this field, when the decoder knows it."""
    children: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class View:
    """What a decoder makes of one message."""

    decoder: str
    summary: str
    """One line for the message table, at most about :data:`SUMMARY_MAX` characters."""
    fields: tuple[Field, ...] = ()
    text: str = ""
    """Full text rendering for the detail pane."""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    """Set when the decoder could not decode the bytes; ``text`` then holds a hex dump."""
    can_encode: bool = False
    truncated: bool = False
    """The decoder stopped at one of its caps; what is shown is a prefix."""
    editable: str | None = None
    """The decoder's own editable form (the input ``encode`` expects); set whenever ``can_encode`` is."""
    values: tuple[object, ...] = field(default=(), compare=False)
    """Decoded top-level values (one per JSON value, msgpack object, struct record ...) for filters."""


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What a decoder may know about a message besides its bytes."""

    direction: Direction | None = None
    conn_id: int | None = None
    struct_format: str | None = None
    """A struct layout with field names, e.g. ``"<Hff12sB player_id x y name state"``."""
    json_delimiter: bytes | None = None
    """Bytes that separate JSON values inside one message (``b"\\n"`` for NDJSON is detected anyway)."""
    decode_as: str | None = None
    """A decoder name chosen by the user for this connection/direction; None means auto."""
    detail: bool = True
    """False when the caller reads only ``decoder``, ``summary``, ``values`` and ``error`` (the table's summary
    column, filters, the timeline, JSON-lines export). A decoder may then skip the field tree, the text rendering
    and the editable form, which cost most of a decode; it must give the same ``decoder``, ``summary``,
    ``values`` and ``error`` as with detail. Such a view has ``can_encode`` False: it is never edited."""
    deadline_ns: int | None = None
    """A ``time.monotonic_ns()`` value past which the decode stops and returns :func:`gave_up_view`. Set by
    callers on threads that must not wait (rules on the relay's thread, the window's GUI thread); decoders that
    loop in Python check :func:`past_deadline` every few hundred steps (the built-ins every 256 opcodes, objects
    or values, so a small message is decoded whatever the deadline, and a big one stops within about a
    millisecond of it; a single C call, at most one 1 MiB parse, is not interrupted). None: only the decoder's
    own work budgets, which keep every built-in decode proportional to its input's size anyway."""
    framing: str | None = None
    """The framing that cut this message out of its direction's stream, named as for ``--framing`` (``lines``,
    ``delim:EOT\\x00``, ``len16be``, ``header16json``, ``msgpack``, ``fixed:12``, ``raw``); None when unknown.
    Decoders may take it as evidence (a ``msgpack`` stream's messages are whole msgpack objects), and a ``delim:``
    terminator separates JSON values when ``json_delimiter`` is not set (see :func:`framing_delimiter`). Set by
    :meth:`DecoderRegistry.set_framing` (for a caller that follows ``FramingInferred`` records: the window's store
    does not yet) and by the terminal's summariser (``inspector.summary``)."""


EMPTY_CONTEXT = DecodeContext()
SUMMARY_CONTEXT = DecodeContext(detail=False)


def with_deadline(ctx: DecodeContext, deadline_ns: int | None) -> DecodeContext:
    """``ctx`` with ``deadline_ns``; twice as cheap as ``dataclasses.replace`` (callers do this per message)."""
    return DecodeContext(ctx.direction, ctx.conn_id, ctx.struct_format, ctx.json_delimiter, ctx.decode_as,
                         ctx.detail, deadline_ns, ctx.framing)


def set_deadline(ctx: DecodeContext, deadline_ns: int | None) -> None:
    """Change the deadline of a context in place, for a loop that decodes many messages on one thread (the
    table's summary column). Only on a context the caller made itself with :func:`with_deadline` and shares with
    no other thread: everywhere else a :class:`DecodeContext` is immutable."""
    object.__setattr__(ctx, "deadline_ns", deadline_ns)


def past_deadline(ctx: DecodeContext) -> bool:
    """Whether ``ctx`` has a deadline and it has passed."""
    return ctx.deadline_ns is not None and time.monotonic_ns() > ctx.deadline_ns


_ESCAPES = {"n": 10, "r": 13, "t": 9, "0": 0, "\\": 92}
_HEX = frozenset("0123456789abcdefABCDEF")


def framing_delimiter(framing: str | None) -> bytes | None:
    """The terminator of a ``delim:`` framing name (``delim:EOT\\x00`` -> ``b"EOT\\x00"``), as the proxy writes
    it (``proxy.framing.delimiter_name``: ``\\xNN``, ``\\n``, ``\\r``, ``\\t``, ``\\0``, ``\\\\``); None for any
    other framing, and for a name that is not written that way (it came from a peer: never raises)."""
    if not framing or not framing.startswith("delim:") or len(framing) > 200:
        return None
    text, out, i = framing[6:], bytearray(), 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            if ord(c) > 0x7E or ord(c) < 0x20:
                return None
            out.append(ord(c))
            i += 1
        elif text[i + 1 : i + 2] == "x":
            digits = text[i + 2 : i + 4]
            if len(digits) != 2 or not all(d in _HEX for d in digits):
                return None
            out.append(int(digits, 16))
            i += 4
        elif text[i + 1 : i + 2] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            return None
    return bytes(out) or None


GAVE_UP = "gave up: "
"""How the error of a view starts when a decoder stopped at its deadline or its work budget."""


@runtime_checkable
class Decoder(Protocol):
    """A decoder plugin. ``encode`` is optional (see :class:`Encoder`)."""

    @property
    def name(self) -> str: ...

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        """How likely ``data`` is this decoder's format: 0 means it cannot decode it, 1 is certain.

        Called for every message on "auto", so it must be cheap: look at a prefix, never parse megabytes.
        """
        ...

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        """Never raises: a failure is a :class:`View` with ``error`` set (see :func:`error_view`)."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """A decoder that can also turn its editable form back into bytes."""

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        """Raises :class:`EncodeError` with a readable message when ``edited`` is not valid."""
        ...


def clip(text: str, limit: int = SUMMARY_MAX) -> str:
    """``text`` on one line and at most ``limit`` characters, with an ellipsis when cut."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if "\n" in text or "\r" in text:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        if len(text) > limit:
            text = text[: limit - 1] + "…"
    return text


def hex_dump(data: bytes, limit: int = MAX_DUMP) -> str:
    """Classic 16-bytes-a-line hex dump with an ASCII column; at most ``limit`` bytes."""
    lines = []
    for off in range(0, min(len(data), limit), 16):
        chunk = data[off : off + 16]
        left = chunk[:8].hex(" ")
        right = chunk[8:].hex(" ")
        hexpart = f"{left}  {right}" if right else left
        lines.append(f"{off:08x}  {hexpart:<48}  |{chunk.translate(_ASCII_TABLE).decode('ascii')}|")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes not shown")
    return "\n".join(lines)


_ASCII_TABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def error_view(decoder: str, data: bytes, error: str, *, warnings: tuple[str, ...] = (),
               detail: bool = True) -> View:
    """The view of a failed decode: the error, and the bytes as a hex dump so nothing is hidden. ``detail`` False
    (the caller reads no text, see :attr:`DecodeContext.detail`) leaves the dump out: 64 KiB of it take 10 ms."""
    return View(
        decoder=decoder,
        summary=clip(f"⚠ {decoder}: {error}"),
        text=f"{decoder} could not decode {len(data)} bytes: {error}\n\n{hex_dump(data)}" if detail else "",
        warnings=warnings,
        error=error,
        truncated=len(data) > MAX_DUMP,
    )


def gave_up_view(decoder: str, data: bytes, why: str, *, detail: bool = True) -> View:
    """The view of a decode stopped at its deadline or work budget: ``error`` starts with :data:`GAVE_UP`.
    Cheap with ``detail`` False (no hex dump), as a caller with a deadline needs it to be."""
    return error_view(decoder, data, GAVE_UP + why, detail=detail)


def gave_up(view: View) -> bool:
    """Whether ``view`` is a decode that stopped at its deadline or work budget (not a decoding error)."""
    return view.error is not None and view.error.startswith(GAVE_UP)


def gave_up_summary(view: View, data: bytes, budget_ns: int | None = None) -> str:
    """The one line that stands for a decode that gave up, in the table, the detail pane, ``dump`` and exports:
    ``⚠ gave up decoding after 20 ms (pickle): <why> · 80 04 95 …`` (the first bytes in hex)."""
    why = (view.error or "").removeprefix(GAVE_UP)
    after = f" after {budget_ns / 1e6:g} ms" if budget_ns is not None else ""
    head = data[:16].hex(" ") + (" …" if len(data) > 16 else "")
    return clip(f"⚠ gave up decoding{after} ({view.decoder}): {why} · {head}", 2 * SUMMARY_MAX)

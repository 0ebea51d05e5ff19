"""The decoder registry: built-ins and plugins by name, "auto" by confidence, "decode as" per connection.

Role: the one entry point the store, the window, filters and the dump tool use to decode. It guarantees that
decoding never raises (a failing decoder yields an error view with a hex dump), loads third-party decoders from
the ``sockscope.decoders`` entry-point group (a broken plugin is recorded in :attr:`DecoderRegistry.load_errors`
and skipped), and keeps the user's per-connection/direction choices: decoder, struct layout, JSON delimiter.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: decoding from any thread; register and the ``set_*`` calls from one thread (the window's), which is
safe because each is a single dict assignment read atomically by decoders.
"""

from __future__ import annotations

import importlib.metadata
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from proxy.model import Direction, Message

from ._api import (
    EMPTY_CONTEXT,
    GAVE_UP,
    DecodeContext,
    Decoder,
    EncodeError,
    Field,
    View,
    clip,
    error_view,
    framing_delimiter,
    gave_up,
    gave_up_view,
    past_deadline,
    with_deadline,
)

ENTRY_POINT_GROUP = "sockscope.decoders"
AUTO = "auto"

T = TypeVar("T")
Scope = tuple[int | None, Direction | None]


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """A decoder plugin that could not be used, and why."""

    entry_point: str
    error: str

    def __str__(self) -> str:
        return f"{self.entry_point}: {self.error}"


class _Scoped(Mapping[Scope, T]):
    """A setting for (connection, direction), for a connection, for a direction, or for everything."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._by: dict[Scope, T] = {}
        self._on_change = on_change

    def set(self, value: T | None, conn_id: int | None, direction: Direction | None) -> None:
        if value is None:
            self._by.pop((conn_id, direction), None)
        else:
            self._by[(conn_id, direction)] = value
        if self._on_change is not None:
            self._on_change()  # after the change: see DecoderRegistry.context_for

    def lookup(self, conn_id: int | None, direction: Direction | None) -> T | None:
        by = self._by
        if not by:
            return None
        for key in ((conn_id, direction), (conn_id, None), (None, direction), (None, None)):
            if key in by:
                return by[key]
        return None

    def __getitem__(self, key: Scope) -> T:
        return self._by[key]

    def __iter__(self) -> Iterator[Scope]:
        return iter(self._by)

    def __len__(self) -> int:
        return len(self._by)


class DecoderRegistry(Mapping[str, Decoder]):
    """Decoders by lower-case name, in registration order (which breaks confidence ties)."""

    def __init__(self, decoders: Iterable[Decoder] = ()) -> None:
        self._decoders: dict[str, Decoder] = {}
        self._scorers: list[tuple[str, Decoder, Callable[[bytes, DecodeContext], float]]] = []
        """(name, decoder, its bound ``confidence``) in registration order: what ``auto`` asks per message."""
        self.load_errors: list[PluginLoadError] = []
        self._framing_owners: dict[str, Decoder] = {}
        """Framings whose every message one decoder reads (a decoder's optional ``framings`` attribute)."""
        self._generation = 0
        self._sure: dict[tuple[int, Direction], tuple[float, str, Decoder]] = {}
        """(connection, direction) -> the decoder that last won surely there (see :meth:`_sure_for`)."""
        self._contexts: dict[tuple[int | None, Direction | None, bool], tuple[int, DecodeContext]] = {}
        self.decode_as: _Scoped[str] = _Scoped(self._settings_changed)
        self.struct_formats: _Scoped[str] = _Scoped(self._settings_changed)
        self.json_delimiters: _Scoped[bytes] = _Scoped(self._settings_changed)
        self.framings: _Scoped[str] = _Scoped(self._settings_changed)
        for d in decoders:
            self.register(d)

    # -- Mapping ------------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Decoder:
        return self._decoders[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoders)

    def __len__(self) -> int:
        return len(self._decoders)

    # -- registration -------------------------------------------------------------------------------------

    def register(self, decoder: Decoder, *, replace: bool = False) -> None:
        name = getattr(decoder, "name", None)
        if not isinstance(name, str) or not name or name.lower() == AUTO:
            raise ValueError(f"a decoder needs a name other than {AUTO!r}, got {name!r}")
        if not callable(getattr(decoder, "confidence", None)) or not callable(getattr(decoder, "decode", None)):
            raise TypeError(f"decoder {name!r} needs confidence(data, ctx) and decode(data, ctx) methods")
        key = name.lower()
        if key in self._decoders and not replace:
            raise ValueError(f"a decoder named {name!r} is already registered")
        self._decoders[key] = decoder
        self._sure.clear()
        if getattr(decoder, "registry", False) is None:  # decodes payloads (ENet, Godot): with this registry
            decoder.registry = self  # type: ignore[attr-defined]
        self._scorers = [(n, d, d.confidence) for n, d in self._decoders.items()]
        for framing in getattr(decoder, "framings", ()):
            self._framing_owners[framing] = decoder
        bind = getattr(decoder, "bind_registry", None)
        if callable(bind):  # a decoder of containers (websocket) decodes its payloads with this registry's others
            bind(self)

    def load_entry_points(self, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None) -> None:
        """Register every decoder of the ``sockscope.decoders`` group; record and skip the broken ones.

        An entry point may name a decoder instance, or a class or factory called with no arguments.
        """
        if entry_points is None:
            try:
                entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            except Exception as exc:  # a broken installed distribution must not stop the window
                self.load_errors.append(PluginLoadError("(entry point scan)", f"{type(exc).__name__}: {exc}"))
                return
        for ep in entry_points:
            label = f"{ep.name} = {ep.value}"
            try:
                obj = ep.load()
                decoder = obj() if isinstance(obj, type) or not hasattr(obj, "decode") else obj
                self.register(decoder)
            except Exception as exc:  # plugin code is arbitrary: any failure is reported, not raised
                self.load_errors.append(PluginLoadError(label, f"{type(exc).__name__}: {exc}"))

    # -- settings per connection/direction -----------------------------------------------------------------

    def set_decode_as(self, name: str | None, conn_id: int | None = None, direction: Direction | None = None) -> None:
        """Use decoder ``name`` (None or "auto" for automatic) for a connection, a direction, or both."""
        if name is not None and name.lower() == AUTO:
            name = None
        if name is not None and name.lower() not in self._decoders:
            raise KeyError(f"no decoder named {name!r}")
        self.decode_as.set(name.lower() if name else None, conn_id, direction)

    def set_struct_format(
        self, spec: str | None, conn_id: int | None = None, direction: Direction | None = None
    ) -> None:
        self.struct_formats.set(spec or None, conn_id, direction)

    def set_json_delimiter(
        self, delimiter: bytes | None, conn_id: int | None = None, direction: Direction | None = None
    ) -> None:
        self.json_delimiters.set(delimiter or None, conn_id, direction)

    def set_framing(self, framing: str | None, conn_id: int | None = None, direction: Direction | None = None) -> None:
        """The framing that cuts this connection's (or direction's) messages, named as a ``FramingInferred`` record
        names it (``msgpack``, ``delim:EOT\\x00``, ``fixed:12``): evidence for the decoders, and a ``delim:``
        terminator separates JSON values (see :attr:`DecodeContext.framing`). ``auto``, ``raw`` or None: unknown."""
        self.framings.set(None if framing in (None, "", "auto", "raw") else framing, conn_id, direction)

    def clear_settings(self) -> None:
        """Forget every per-connection and per-direction setting (decode as, struct layouts, JSON delimiters,
        framings): connection numbers start again in a new window or session, and #1 there is another connection."""
        for scoped in (self.decode_as, self.struct_formats, self.json_delimiters, self.framings):
            scoped._by.clear()
        for d in self._decoders.values():
            clear = getattr(d, "clear_settings", None)
            if callable(clear):  # a decoder that follows streams per connection (websocket) forgets them too
                clear()
        self._settings_changed()
        for d in self._decoders.values():  # what a decoder learnt of connections (ENet's flows)
            forget = getattr(d, "forget_connections", None)
            if callable(forget):
                forget()

    def _settings_changed(self) -> None:
        self._generation += 1
        self._sure.clear()

    def context_for(self, conn_id: int | None, direction: Direction | None, *, detail: bool = True) -> DecodeContext:
        """The user's settings for a connection and direction; ``detail`` False asks for a summary-only view."""
        # Cached: building the frozen context costs as much as decoding a small message. An entry is stamped
        # with the generation read *before* the settings, and a change bumps it *after* assigning, so a context
        # built from settings that changed meanwhile is never reused (decoding runs on several threads).
        key = (conn_id, direction, detail)
        gen = self._generation
        hit = self._contexts.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1]
        framing = self.framings.lookup(conn_id, direction)
        ctx = DecodeContext(
            direction=direction,
            conn_id=conn_id,
            struct_format=self.struct_formats.lookup(conn_id, direction),
            json_delimiter=self.json_delimiters.lookup(conn_id, direction) or framing_delimiter(framing),
            decode_as=self.decode_as.lookup(conn_id, direction),
            detail=detail,
            framing=framing,
        )
        if len(self._contexts) >= _MAX_CONTEXTS:
            self._contexts.clear()  # a long capture's closed connections
        self._contexts[key] = (gen, ctx)
        return ctx

    # -- decoding -----------------------------------------------------------------------------------------

    def confidences(self, data: bytes, ctx: DecodeContext = EMPTY_CONTEXT) -> list[tuple[str, float]]:
        """Every decoder's confidence, best first (ties in registration order)."""
        return [(name, c) for c, name, _ in self._ranked(data, ctx)]

    def _ranked(self, data: bytes, ctx: DecodeContext) -> list[tuple[float, str, Decoder]]:
        """(confidence, name, decoder) of every decoder that can try, best first, ties in registration order."""
        scored = []
        for name, d, confidence in self._scorers:
            try:
                c = confidence(data, ctx)
                if type(c) is not float:
                    c = float(c)
            except Exception:  # a decoder bug means "can't", never a crash
                continue
            if c > 0.0:
                scored.append((c, name, d))
        if len(scored) > 1:
            scored.sort(key=_by_confidence, reverse=True)  # stable: equal confidences keep registration order
        return scored

    def decode(self, data: bytes, ctx: DecodeContext = EMPTY_CONTEXT, decoder: str | None = None) -> View:
        """Decode with ``decoder``, else the context's "decode as" choice, else auto. Never raises."""
        name = decoder or ctx.decode_as
        if name and name.lower() != AUTO:
            return self.decode_with(name, data, ctx)
        if ctx.framing is not None and ctx.framing in self._framing_owners:
            # a framing that is a protocol (websocket): its decoder reads every message, payloads included
            return self._decode_by(self._framing_owners[ctx.framing], data, ctx)
        return self.auto(data, ctx)

    def decode_message(self, msg: Message, decoder: str | None = None, *, detail: bool = True,
                       deadline_ns: int | None = None) -> View:
        """``msg`` decoded with its connection's settings; ``detail`` False: see :attr:`DecodeContext.detail`;
        ``deadline_ns``: see :attr:`DecodeContext.deadline_ns`."""
        ctx = self.context_for(msg.conn_id, msg.direction, detail=detail)
        if deadline_ns is not None:
            ctx = with_deadline(ctx, deadline_ns)
        return self.decode(msg.data, ctx, decoder)

    def auto(self, data: bytes, ctx: DecodeContext = EMPTY_CONTEXT) -> View:
        """The most confident decoder's view; when it fails, the next one's (the hex view never fails).

        A message that is a length prefix plus a body (``--framing len16``/``len32``, the usual way games frame
        msgpack or pickle) is decoded as its body when the whole message reads only as text or hex.
        """
        key = self._sure_key(ctx)
        if key is not None:
            sure = self._sure_for(key, data, ctx)
            if sure is not None:
                return sure
        ranked = self._ranked(data, ctx)
        view = self._auto(data, ctx, ranked)
        if key is not None and ranked and view.error is None and view.decoder == ranked[0][1] \
                and ranked[0][0] >= _SURE and view.decoder not in _UNSTRUCTURED:
            if len(self._sure) >= _MAX_CONTEXTS:
                self._sure.clear()
            self._sure[key] = ranked[0]
        if view.decoder in _UNSTRUCTURED and len(data) > 2:
            wrapped = self._prefixed(data, ctx) or self._headed(data, ctx)
            if wrapped is not None:
                return wrapped
        return view

    @staticmethod
    def _sure_key(ctx: DecodeContext) -> tuple[int, Direction] | None:
        """Where a sure winner is remembered (see :meth:`_sure_for`): a connection's direction, unless a struct
        layout or a known framing makes confidences follow the message's size or the framing, not its kind."""
        conn, d = ctx.conn_id, ctx.direction
        if conn is None or d is None or ctx.struct_format is not None or ctx.framing is not None:
            return None
        return (conn, d)

    def _sure_for(self, key: tuple[int, Direction], data: bytes, ctx: DecodeContext) -> View | None:
        """The view "auto" gives, without ranking every decoder, when a connection's messages are of one kind.

        A connection (direction) whose last message a decoder won surely (at :data:`_SURE` or more: JSON's
        ``{``, a pickle with PROTO and STOP, ENet's commands) is remembered with that confidence (by :meth:`auto`);
        a message of which that decoder is exactly as sure is the same kind, of which the others were less sure (the
        built-ins' sure values differ), so it decodes it directly: ranking is most of the cost of a small message,
        and ENet's datagrams have one ranking each and one per payload. A view that gave up is returned as ranking
        would have (its decoder would have ranked first); anything else ranks as usual."""
        hit = self._sure.get(key)
        if hit is None:
            return None
        conf, _name, decoder = hit
        try:
            same = decoder.confidence(data, ctx) == conf
        except Exception:
            same = False
        if same:
            view = self._decode_by(decoder, data, ctx)
            if view.error is None or gave_up(view):
                return view
        self._sure.pop(key, None)
        return None

    def _headed(self, data: bytes, ctx: DecodeContext) -> View | None:
        """A header and a body (``--framing header16json``, the Real Python socket tutorial's format): a 2-byte
        big-endian header length, a JSON header map whose ``content-length`` is the rest of the message, then the
        body, decoded on its own (its values are the view's, so filters see the body)."""
        if len(data) < 4 or data[2] != 0x7B:
            return None
        n = (data[0] << 8) | data[1]
        if n > _MAX_HEADER or 2 + n > len(data):
            return None
        try:
            header = json.loads(data[2 : 2 + n])
        except (ValueError, RecursionError):
            return None
        if not isinstance(header, dict) or header.get("content-length") != len(data) - 2 - n:
            return None
        body = data[2 + n :]
        inner = self._auto(body, ctx) if body else None
        if inner is not None and gave_up(inner):
            return None
        kind = header.get("content-type")
        about = f"{kind}, " if isinstance(kind, str) and len(kind) <= 40 else ""
        summary = f"[{about}{len(body)} B] " + (inner.summary if inner is not None else "")
        if not ctx.detail:
            return View(decoder=inner.decoder if inner is not None else "json", summary=clip(summary.rstrip()),
                        values=inner.values if inner is not None else ())
        shown = data[2 : 2 + n].decode("utf-8", "replace")  # the sender's own text: nothing to render
        head = (Field("header length", str(n), 0, 2),
                Field("header", clip(shown, 120), 2, 2 + n,
                      tuple(Field(k[:80], clip(repr(v) if v is None or isinstance(v, str | int | float) else
                                               type(v).__name__, 120), 2, 2 + n)
                            for k, v in list(header.items())[:64])))
        body_fields = () if inner is None else tuple(_shift(f, 2 + n) for f in inner.fields)
        return View(
            decoder=inner.decoder if inner is not None else "json",
            summary=clip(summary.rstrip()),
            fields=(*head, Field("body", f"{len(body)} bytes", 2 + n, len(data), body_fields)),
            text=f"header: {shown[:4096]}\n\n" + (inner.text if inner is not None else ""),
            warnings=() if inner is None else inner.warnings,
            truncated=inner is not None and inner.truncated,
            values=inner.values if inner is not None else (),
        )

    def _prefixed(self, data: bytes, ctx: DecodeContext) -> View | None:
        for fmt, size in _LENGTH_PREFIXES:
            if len(data) <= size or struct.unpack_from(fmt, data)[0] != len(data) - size:
                continue
            body = data[size:]
            inner = self._auto(body, ctx)
            if gave_up(inner):  # the body is this decoder's, but too costly: say so rather than show hex
                why = (inner.error or "")[len(GAVE_UP):]
                return gave_up_view(inner.decoder, data, f"{why} (in the body after a {size}-byte length prefix)",
                                    detail=ctx.detail)
            if inner.error is not None or inner.decoder in _UNSTRUCTURED:
                continue
            prefix = Field("length prefix", f"{len(body)} ({fmt})", 0, size)
            return replace(
                inner,
                summary=f"[len {len(body)}] {inner.summary}",
                fields=(prefix, *(_shift(f, size) for f in inner.fields)),
                editable=None if inner.editable is None else f"{_PREFIX_HEADER}{fmt}\n{inner.editable}",
            )
        return None

    def _auto(self, data: bytes, ctx: DecodeContext,
              ranked: list[tuple[float, str, Decoder]] | None = None) -> View:
        first_error: View | None = None
        for _, _, decoder in self._ranked(data, ctx) if ranked is None else ranked:
            view = self._decode_by(decoder, data, ctx)
            if view.error is None or gave_up(view):
                return view  # past the deadline, trying the next decoder would only overrun it further
            if past_deadline(ctx):  # a decoder that failed (not gave up) late: the same goes for the next
                return gave_up_view(view.decoder, data, f"the deadline passed (the {view.decoder} decoder "
                                    f"failed: {view.error})", detail=ctx.detail)
            first_error = first_error or view
        return first_error or error_view("auto", data, "no decoder is registered", detail=ctx.detail)

    def decode_with(self, name: str, data: bytes, ctx: DecodeContext = EMPTY_CONTEXT) -> View:
        decoder = self._decoders.get(name.lower())
        if decoder is None:
            return error_view(name, data, f"no decoder named {name!r}", detail=ctx.detail)
        return self._decode_by(decoder, data, ctx)

    @staticmethod
    def _decode_by(decoder: Decoder, data: bytes, ctx: DecodeContext) -> View:
        try:
            view = decoder.decode(data, ctx)
        except Exception as exc:  # plugins and bugs: shown as an error view, never raised into the UI
            return error_view(decoder.name, data, f"decoder failed: {type(exc).__name__}: {exc}", detail=ctx.detail)
        if not isinstance(view, View):
            return error_view(decoder.name, data, f"decoder returned {type(view).__name__}, not a View",
                              detail=ctx.detail)
        return view

    def encode(self, name: str, edited: str, ctx: DecodeContext = EMPTY_CONTEXT) -> bytes:
        """Bytes for an edited view; raises :class:`EncodeError` (only) when that is not possible."""
        decoder = self._decoders.get(name.lower())
        if decoder is None:
            raise EncodeError(f"no decoder named {name!r}")
        encode = getattr(decoder, "encode", None)
        if encode is None:
            raise EncodeError(f"the {decoder.name} decoder cannot encode")
        prefix_fmt: str | None = None
        if decoder.name != "json" and edited.startswith(_PREFIX_HEADER):
            # a body behind a length prefix (see auto): encode the body, then put a fresh prefix in front
            header, _, edited = edited.partition("\n")
            prefix_fmt = header[len(_PREFIX_HEADER):].strip()
            if prefix_fmt not in dict(_LENGTH_PREFIXES):
                raise EncodeError(f"unknown length prefix {prefix_fmt!r}: use one of >I <I >H <H")
        try:
            out = encode(edited, ctx)
        except EncodeError:
            raise
        except Exception as exc:  # a decoder bug is still reported as "cannot encode"
            raise EncodeError(f"{decoder.name} encoder failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, bytes | bytearray):
            raise EncodeError(f"{decoder.name} encoder returned {type(out).__name__}, not bytes")
        if prefix_fmt is not None:
            try:
                return struct.pack(prefix_fmt, len(out)) + bytes(out)
            except struct.error:
                raise EncodeError(f"a body of {len(out)} bytes does not fit a {prefix_fmt} length prefix") from None
        return bytes(out)


_MAX_CONTEXTS = 4096


def _by_confidence(entry: tuple[float, str, Decoder]) -> float:
    return entry[0]


_UNSTRUCTURED = frozenset({"text", "hex"})
_SURE = 0.9
"""A confidence at which the built-ins' kinds of message do not overlap (see DecoderRegistry._sure_for)."""
_MAX_HEADER = 64 << 10
"""Longest JSON header of a header-and-body message looked at."""
_LENGTH_PREFIXES: tuple[tuple[str, int], ...] = ((">I", 4), ("<I", 4), (">H", 2), ("<H", 2))
_PREFIX_HEADER = "# length-prefix "


def _shift(f: Field, by: int) -> Field:
    """A field tree moved ``by`` bytes to the right (its bytes sit behind a length prefix)."""
    return replace(
        f,
        start=None if f.start is None else f.start + by,
        end=None if f.end is None else f.end + by,
        children=tuple(_shift(c, by) for c in f.children),
    )

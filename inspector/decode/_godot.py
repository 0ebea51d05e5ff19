"""Godot 4's high-level multiplayer (SceneMultiplayer) on top of ENet: remote calls, node paths, spawns, syncs.

Role: decodes the bytes of one application packet as Godot's ``SceneMultiplayer`` writes them
(modules/multiplayer/scene_multiplayer.cpp, scene_rpc_interface.cpp, scene_cache_interface.cpp,
scene_replication_interface.cpp): the first byte's low 3 bits are the command (REMOTE_CALL, SIMPLIFY_PATH,
CONFIRM_PATH, RAW, SPAWN, DESPAWN, SYNC, SYS), its high bits flags of that command (a remote call's node and
method id widths and its "bytes only or no arguments" bit, a sync's delta bit). Arguments, spawn and sync states
are Godot Variants in the multiplayer's compressed form (a bool or an int in 1 to 9 bytes, everything else in
Godot's binary serialization: core/io/marshalls.cpp), read here by :func:`read_variants` into plain Python values
(math types as :class:`GodotValue`, a dict that renders as ``Vector2(1.0, 2.0)``). A RAW packet's bytes
(``send_bytes``) are the game's own: the ENet decoder hands them on to the usual decoders.
Nothing here trusts a length: every count is checked against the bytes left before anything is made, nesting stops
at :data:`MAX_DEPTH`, values at :data:`MAX_VALUES`, so the work is proportional to the packet's size.
The summary path (the table's, every packet) has shortcuts for a game's usual packets and values: a flat reader, a
flat renderer and a one-go summary of remote calls and syncs (see "the usual values, fast" below); each gives exactly
what the general code gives, or nothing, and then the general code decides.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``; nor ``_enet`` (which imports this).
Thread: any thread; pure.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from proxy.model import Direction

from ._api import MAX_NODES, DecodeContext, Field, View, clip, error_view, hex_dump
from ._payload import decode_payload, nesting, summary_view
from ._render import NODE_REPR, Renderable, Renderer, TreeBudget, render
from ._tree import value_field

if TYPE_CHECKING:
    from ._registry import DecoderRegistry

NAME = "godot"
MAX_DEPTH = 64
"""Nesting of arrays and dictionaries read (Godot itself stops at 1024)."""
MAX_VALUES = 20_000
"""Variants read from one packet; past it the packet is shown as cut."""
_MAX_SYNC_NODES = MAX_VALUES // 4

COMMANDS = ("remote_call", "simplify_path", "confirm_path", "raw", "spawn", "despawn", "sync", "sys")
SYS_COMMANDS = ("auth", "add_peer", "del_peer", "relay")
TRANSFER_MODES = ("unreliable", "unreliable_ordered", "reliable")

# Godot 4's Variant::Type, in order (core/variant/variant.h).
TYPES = ("Nil", "bool", "int", "float", "String", "Vector2", "Vector2i", "Rect2", "Rect2i", "Vector3", "Vector3i",
         "Transform2D", "Vector4", "Vector4i", "Plane", "Quaternion", "AABB", "Basis", "Transform3D", "Projection",
         "Color", "StringName", "NodePath", "RID", "Object", "Callable", "Signal", "Dictionary", "Array",
         "PackedByteArray", "PackedInt32Array", "PackedInt64Array", "PackedFloat32Array", "PackedFloat64Array",
         "PackedStringArray", "PackedVector2Array", "PackedVector3Array", "PackedColorArray", "PackedVector4Array")
_FLAG_64 = 1 << 16
# Math types: (real numbers in them, names of their parts).
_REALS: dict[int, tuple[int, tuple[str, ...]]] = {
    5: (2, ("x", "y")), 7: (4, ("x", "y", "w", "h")), 9: (3, ("x", "y", "z")), 11: (6, ("x", "y", "origin")),
    12: (4, ("x", "y", "z", "w")), 14: (4, ("x", "y", "z", "d")), 15: (4, ("x", "y", "z", "w")),
    16: (6, ("x", "y", "z", "w", "h", "d")), 17: (9, ("rows",)), 18: (12, ("basis", "origin")),
    19: (16, ("columns",)),
}
_INTS: dict[int, tuple[str, ...]] = {6: ("x", "y"), 8: ("x", "y", "w", "h"), 10: ("x", "y", "z"),
                                      13: ("x", "y", "z", "w")}
_PACKED_WIDTH = {30: ("<i", 4), 31: ("<q", 8), 32: ("<f", 4), 33: ("<d", 8)}
PATHS: Callable[[int | None, Direction | None], dict[int, str] | None] | None = None
"""The node paths a flow's sender announced, by cache id (set by the ENet decoder, which follows the flows)."""
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_U32X2 = struct.Struct("<II")
_U16LE = struct.Struct("<H")


class GodotValue(dict, Renderable):  # type: ignore[type-arg]
    """A Godot math or engine value (``Vector2``, ``Color``, ``NodePath``'s parts ...): a dict of its parts, so
    filters reach them (``godot.args.0.x``), that renders as Godot writes it (``Vector2(1.0, 2.0)``)."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str, parts: dict[str, Any]) -> None:
        super().__init__(parts)
        self.type_name = type_name

    def render_into(self, r: Renderer, depth: int) -> None:
        parts = list(self.values())
        if all(type(v) is float or type(v) is int for v in parts):  # a vector or colour: one write, not one a part
            r.write(f"{self.type_name}({', '.join(map(repr, parts))})")
            return
        r.write(self.type_name + "(")
        first = True
        for v in self.values():
            if not first:
                r.write(", ")
            first = False
            r.value(v, depth)
        r.write(")")

    def iter_children(self) -> tuple[Any, int]:
        if all(type(v) is float or type(v) is int for v in self.values()):
            return iter(()), 0  # a vector or colour is one node: Vector2(1.0, 2.0) says it all
        return iter(self.items()), len(self)

    def __repr__(self) -> str:
        if len(self) == 2:  # a Vector2 (see _flat)
            a, b = self.values()
            if type(a) is float and type(b) is float:
                text = f"{self.type_name}({a!r}, {b!r})"
                if len(text) <= 200:  # (an Object's class name may be longer: then cut, as render cuts it)
                    return text
        return render_value(self, 200)[0]


# -- the usual values, fast -------------------------------------------------------------------------------------
#
# A game's packets carry a few ints, bools, floats, short strings and vectors, in small arrays and dictionaries.
# :func:`read_variants` and :func:`render_value` first try a flat reading and a flat rendering of exactly those
# (locals, one struct per type, no method per value); anything else (another type, a typed container, a packet
# over :data:`_FLAT_BYTES`, nesting past :data:`_FLAT_DEPTH`, a text over its budget, any error) is left to the
# general :class:`_Reader` and :class:`~inspector.decode._render.Renderer`, which start again from the beginning:
# what they give (values, text, errors) is what is shown, so the flat versions must give exactly that or nothing.

_FLAT_DEPTH = 16
"""Nesting the flat reader and renderer follow (well below MAX_DEPTH: past it the general ones decide)."""
_FLAT_BYTES = 4096
"""Packets the flat reader reads: at most 4096 values and 1024 reals, far below MAX_VALUES."""
_I64 = 1 << 63


def render_value(value: Any, limit: int) -> tuple[str, bool]:
    """:func:`~inspector.decode._render.render` (same text, same cut), flat for the usual small values."""
    text = _flat(value, limit, 0)
    if text is not None and len(text) <= limit:  # (a scalar's text is not measured inside _flat)
        return text, False
    return render(value, limit)


def _flat(v: Any, room: int, depth: int) -> str | None:
    """``v`` rendered as the Renderer renders it when that takes at most ``room`` characters (a container's text
    is measured here, a scalar's by the caller); None when it may take more, or ``v`` holds anything but ints,
    floats, bools, None, str, bytes, lists, tuples, plain dicts and GodotValues (the Renderer decides those).
    Work is bounded by ``room``: every value adds a character."""
    t = type(v)
    if t is float or v is None or t is bool:
        return repr(v)  # float_repr is repr: 'nan', 'inf', '-inf' (and a float's repr is short)
    if t is int:
        return repr(v) if -_I64 <= v < _I64 else None  # int_repr's own cases (a huge int): the Renderer's
    if t is str or t is bytes:
        return repr(v) if len(v) <= room else None
    if depth >= _FLAT_DEPTH:
        return None
    depth += 1
    s: str
    parts: list[str] = []
    left = room - 2
    if t is GodotValue:
        vals = list(v.values())
        if len(vals) == 2:  # Vector2: one format, not a loop and a join (the usual argument and state)
            a, b = vals
            if type(a) is float and type(b) is float:
                s = f"{v.type_name}({a!r}, {b!r})"
                return s if len(s) <= room else None
        if len(vals) > room:  # (an Object's properties) each takes a character at least
            return None
        for x in vals:  # GodotValue.render_into's two forms: numbers only, or any values
            tx = type(x)
            if tx is not float and (tx is not int or not -_I64 <= x < _I64):
                break
        else:
            s = v.type_name + "(" + ", ".join(map(repr, vals)) + ")"
            return s if len(s) <= room else None
        left -= len(v.type_name)
    elif t is dict:
        for k, x in v.items():
            k_s = repr(k) if type(k) is str and len(k) <= left else _flat(k, left, depth)
            if k_s is None:
                return None
            tx = type(x)
            x_s = repr(x) if tx is float or tx is bool or x is None else _flat(x, left - len(k_s) - 2, depth)
            if x_s is None:
                return None
            parts.append(k_s + ": " + x_s)
            left -= len(k_s) + len(x_s) + 4
            if left < -2:
                return None
        s = "{" + ", ".join(parts) + "}"
        return s if len(s) <= room else None
    elif t is list or t is tuple:
        vals = v
    else:
        return None
    for x in vals:
        tx = type(x)
        if tx is float or tx is bool or x is None or (tx is int and -_I64 <= x < _I64):
            x_s = repr(x)
        elif tx is GodotValue and len(x) == 2 and depth < _FLAT_DEPTH:  # a Vector2, as _flat renders it
            a, b = x.values()
            if type(a) is float and type(b) is float:
                x_s = f"{x.type_name}({a!r}, {b!r})"
            else:
                x_s = _flat(x, left, depth)
        else:
            x_s = _flat(x, left, depth)
        if x_s is None:
            return None
        parts.append(x_s)
        left -= len(x_s) + 2
        if left < -2:
            return None
    if t is list:
        s = "[" + ", ".join(parts) + "]"
    elif t is tuple:
        s = "(" + ", ".join(parts) + (",)" if len(parts) == 1 else ")")
    else:
        s = v.type_name + "(" + ", ".join(parts) + ")"
    return s if len(s) <= room else None


class BadPacket(ValueError):
    """The bytes are not what Godot writes; the message says where and why."""


class _Reader:
    """Reads Godot's binary Variant serialization from ``data[pos:end]``; every read is checked."""

    __slots__ = ("data", "end", "pos", "values")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end
        self.values = 0

    def need(self, n: int, what: str) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise BadPacket(f"{what} needs {n} bytes at byte {p}, {self.end - p} left")
        self.pos = p + n
        return p

    def u32(self, what: str) -> int:
        return int(_U32.unpack_from(self.data, self.need(4, what))[0])

    def string(self, what: str) -> str:
        n = self.u32(what + " length")
        if n > self.end - self.pos:
            raise BadPacket(f"{what} of {n} bytes at byte {self.pos}, {self.end - self.pos} left")
        p = self.need(n + (-n % 4), what)  # padded to 4 bytes, as Godot requires
        try:
            return self.data[p : p + n].decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadPacket(f"{what} at byte {p} is not UTF-8 ({e.reason})") from None

    def reals(self, n: int, wide: bool, what: str) -> tuple[float, ...]:
        fmt = f"<{n}d" if wide else f"<{n}f"
        return struct.unpack_from(fmt, self.data, self.need(n * (8 if wide else 4), what))

    def count(self, what: str) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise BadPacket(f"more than {MAX_VALUES} values")

    # -- the multiplayer's compressed form (MultiplayerAPI::decode_and_decompress_variant) -----------------

    def compressed(self, depth: int = 0) -> Any:
        self.count("value")
        p = self.need(1, "a value's type")
        meta = self.data[p]
        kind = meta & 0x3F
        if kind == 1:  # bool: the value is the top bit
            return bool(meta & 0x80)
        if kind == 2:  # int in 1, 2, 4 or 8 bytes
            width = 1 << (meta >> 6)
            q = self.need(width, "an int")
            return int.from_bytes(self.data[q : q + width], "little", signed=True)
        self.pos = p
        return self.variant(depth)

    # -- Godot's binary serialization (marshalls.cpp decode_variant) ------------------------------------

    def variant(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise BadPacket(f"nested deeper than {MAX_DEPTH}")
        header = self.u32("a value's header")
        kind = header & 0xFF
        wide = bool(header & _FLAG_64)
        if kind >= len(TYPES):
            raise BadPacket(f"unknown value type {kind} at byte {self.pos - 4}")
        if kind == 0:
            return None
        if kind == 1:
            return bool(self.u32("a bool"))
        if kind == 2:
            if wide:
                q = self.need(8, "an int")
                return int.from_bytes(self.data[q : q + 8], "little", signed=True)
            return int(_I32.unpack_from(self.data, self.need(4, "an int"))[0])
        if kind == 3:
            return self.reals(1, wide, "a float")[0]
        if kind in (4, 21):
            return self.string(TYPES[kind])
        if kind in _REALS:
            return self._math(kind, wide)
        if kind in _INTS:
            names = _INTS[kind]
            vals = struct.unpack_from(f"<{len(names)}i", self.data, self.need(4 * len(names), TYPES[kind]))
            return GodotValue(TYPES[kind], dict(zip(names, vals, strict=True)))
        if kind == 20:
            r, g, b, a = self.reals(4, False, "a Color")
            return GodotValue("Color", {"r": r, "g": g, "b": b, "a": a})
        if kind == 22:
            return self._node_path()
        if kind == 23:
            return GodotValue("RID", {"id": _U64.unpack_from(self.data, self.need(8, "a RID"))[0]})
        if kind == 24:
            return self._object(header, depth)
        if kind == 25:
            return GodotValue("Callable", {})
        if kind == 26:
            name = self.string("a Signal's name")
            oid = _U64.unpack_from(self.data, self.need(8, "a Signal's object"))[0]
            return GodotValue("Signal", {"name": name, "object_id": oid})
        if kind == 27:
            return self._dictionary(header, depth)
        if kind == 28:
            self._container_type((header >> 16) & 3)
            n = self.u32("an Array's size") & 0x7FFFFFFF
            if n > (self.end - self.pos) // 4:
                raise BadPacket(f"an Array of {n} values in {self.end - self.pos} bytes")
            return [self.variant(depth + 1) for _ in range(n)]
        return self._packed(kind, wide)

    def _math(self, kind: int, wide: bool) -> GodotValue:
        n, names = _REALS[kind]
        v = self.reals(n, wide, TYPES[kind])
        self.values += n
        name = TYPES[kind]
        if kind == 11:  # Transform2D: three columns of two
            return GodotValue(name, {"x": _vec(v[0:2]), "y": _vec(v[2:4]), "origin": _vec(v[4:6])})
        if kind == 17:
            return GodotValue(name, {"x": _vec(v[0:3]), "y": _vec(v[3:6]), "z": _vec(v[6:9])})
        if kind == 18:
            return GodotValue(name, {"basis": GodotValue("Basis", {"x": _vec(v[0:3]), "y": _vec(v[3:6]),
                                                                   "z": _vec(v[6:9])}), "origin": _vec(v[9:12])})
        if kind == 19:
            return GodotValue(name, {"x": _vec(v[0:4]), "y": _vec(v[4:8]), "z": _vec(v[8:12]), "w": _vec(v[12:16])})
        if kind == 7:
            return GodotValue(name, {"position": _vec(v[0:2]), "size": _vec(v[2:4])})
        if kind == 16:
            return GodotValue(name, {"position": _vec(v[0:3]), "size": _vec(v[3:6])})
        if kind == 14:
            return GodotValue(name, {"normal": _vec(v[0:3]), "d": v[3]})
        return GodotValue(name, dict(zip(names, v, strict=True)))

    def _node_path(self) -> str:
        head = self.u32("a NodePath")
        if not head & 0x80000000:
            raise BadPacket("a NodePath in the old format")
        names = head & 0x7FFFFFFF
        subs = self.u32("a NodePath's subname count")
        flags = self.u32("a NodePath's flags")
        if flags & 2:
            subs += 1
        if names + subs > (self.end - self.pos) // 4:
            raise BadPacket(f"a NodePath of {names + subs} parts in {self.end - self.pos} bytes")
        parts = [self.string("a NodePath's name") for _ in range(names)]
        subnames = [self.string("a NodePath's subname") for _ in range(subs)]
        path = ("/" if flags & 1 else "") + "/".join(parts)
        return path + "".join(":" + s for s in subnames)

    def _object(self, header: int, depth: int) -> GodotValue | None:
        if header & _FLAG_64:  # an object as its instance id
            oid = _U64.unpack_from(self.data, self.need(8, "an object id"))[0]
            return None if oid == 0 else GodotValue("Object", {"id": oid})
        cls = self.string("an Object's class")
        if not cls:
            return None
        n = self.u32("an Object's property count")
        if n > (self.end - self.pos) // 8:
            raise BadPacket(f"an Object with {n} properties in {self.end - self.pos} bytes")
        props: dict[str, Any] = {}
        for _ in range(n):
            key = self.string("a property name")
            props[key] = self.variant(depth + 1)
        return GodotValue(cls, props)  # shown, never made: no class is looked up or instantiated

    def _container_type(self, kind: int) -> None:
        if kind == 1:
            self.u32("a typed container's type")
        elif kind in (2, 3):
            self.string("a typed container's class or script")

    def _dictionary(self, header: int, depth: int) -> dict[Any, Any]:
        self._container_type((header >> 16) & 3)
        self._container_type((header >> 18) & 3)
        n = self.u32("a Dictionary's size") & 0x7FFFFFFF
        if n > (self.end - self.pos) // 8:
            raise BadPacket(f"a Dictionary of {n} entries in {self.end - self.pos} bytes")
        out: dict[Any, Any] = {}
        for _ in range(n):
            k = self.variant(depth + 1)
            v = self.variant(depth + 1)
            try:
                out[k] = v
            except TypeError:  # an Array or Dictionary as a key: shown by its text
                out[render(k, NODE_REPR)[0]] = v
        return out

    def _packed(self, kind: int, wide: bool) -> Any:
        n = self.u32(TYPES[kind] + "'s size")
        if kind == 29:
            if n > self.end - self.pos:
                raise BadPacket(f"a PackedByteArray of {n} bytes, {self.end - self.pos} left")
            p = self.need(min(n + (-n % 4), self.end - self.pos), "a PackedByteArray")
            return self.data[p : p + n]
        if kind == 34:
            if n > (self.end - self.pos) // 4:
                raise BadPacket(f"a PackedStringArray of {n} strings in {self.end - self.pos} bytes")
            return [self.string("a string") for _ in range(n)]
        if kind in _PACKED_WIDTH:
            fmt, width = _PACKED_WIDTH[kind]
        else:  # vectors and colours
            parts = {35: 2, 36: 3, 37: 4, 38: 4}[kind]
            width = parts * (8 if wide and kind != 37 else 4)
            fmt = ""
        if n > (self.end - self.pos) // width:
            raise BadPacket(f"a {TYPES[kind]} of {n} items in {self.end - self.pos} bytes")
        self.values += n
        if self.values > MAX_VALUES:
            raise BadPacket(f"more than {MAX_VALUES} values")
        p = self.need(n * width, TYPES[kind])
        if fmt:
            return list(struct.unpack_from(f"<{n}{fmt[1]}", self.data, p))
        real = "d" if width // parts == 8 else "f"
        flat = struct.unpack_from(f"<{n * parts}{real}", self.data, p)
        name = {35: "Vector2", 36: "Vector3", 37: "Color", 38: "Vector4"}[kind]
        keys = ("r", "g", "b", "a") if kind == 37 else ("x", "y", "z", "w")[:parts]
        return [GodotValue(name, dict(zip(keys, flat[i : i + parts], strict=True))) for i in range(0, len(flat), parts)]


def _vec(v: tuple[float, ...]) -> GodotValue:
    return GodotValue(("Vector2", "Vector3", "Vector4")[len(v) - 2], dict(zip(("x", "y", "z", "w"), v, strict=False)))


def read_variants(data: bytes, pos: int = 0, end: int | None = None, count: int | None = None) -> list[Any]:
    """The compressed Variants in ``data[pos:end]`` (all of them, or ``count``); :class:`BadPacket` when they do
    not fit exactly."""
    return _read(data, pos, len(data) if end is None else end, count)[0]


def _read(data: bytes, pos: int, end: int, count: int | None) -> tuple[list[Any], bool]:
    """:func:`read_variants`' values, and whether the flat reader read them (then they are all of its kinds, and
    ``repr`` renders them as the Renderer does: see :func:`_plain_text`)."""
    if end - pos <= _FLAT_BYTES:
        flat = _flat_variants(data, pos, end, count)
        if flat is not None:
            return flat, True
    r = _Reader(data, pos, end)
    out: list[Any] = []
    while r.pos < r.end and (count is None or len(out) < count):
        out.append(r.compressed())
    if count is not None and len(out) < count:
        raise BadPacket(f"{len(out)} of {count} values before the end")
    if r.pos != r.end:
        raise BadPacket(f"{r.end - r.pos} bytes left after {len(out)} values")
    return out, False


def _plain_text(values: list[Any], limit: int) -> tuple[str, bool]:
    """:func:`render_value` of values the flat reader read: for them (None, bools, 64-bit ints, floats, strings,
    vectors and colours as GodotValues, lists, dicts keyed by those scalars, at most 16 deep, from at most
    :data:`_FLAT_BYTES` bytes) ``repr`` writes what the Renderer writes (a GodotValue's ``repr`` is its rendering,
    and a vector's is short), in C and in time proportional to those bytes; longer than ``limit``, the Renderer
    cuts it."""
    text = repr(values)
    if len(text) <= limit:
        return text, False
    return render(values, limit)


_FLAT_HEADERS: Final = frozenset({0, 1, 2, 2 | _FLAG_64, 3, 3 | _FLAG_64, 4, 5, 5 | _FLAG_64, 6, 9, 9 | _FLAG_64, 10,
                                   20, 21, 27, 28})
"""Value headers the flat reader reads: the usual types, untyped containers (anything else: the general reader)."""
_new_value = GodotValue.__new__
_S_I32 = struct.Struct("<i")
_S_F32 = struct.Struct("<f")
_S_F64 = struct.Struct("<d")
_S_2F = struct.Struct("<2f")
_S_2D = struct.Struct("<2d")
_S_3F = struct.Struct("<3f")
_S_3D = struct.Struct("<3d")
_S_2I = struct.Struct("<2i")
_S_3I = struct.Struct("<3i")
_S_4F = struct.Struct("<4f")


def _flat_variants(data: bytes, pos: int, end: int, count: int | None) -> list[Any] | None:
    """:func:`read_variants`' values when they are all of the usual kinds (see :func:`_flat_variant`) and fit
    exactly; None for anything else, errors included (the general reader then says what)."""
    out: list[Any] = []
    append = out.append
    while pos < end and (count is None or len(out) < count):
        meta = data[pos]
        kind = meta & 0x3F
        if kind == 1:  # bool: the value is the top bit
            append(meta >= 0x80)
            pos += 1
        elif kind == 2:  # int in 1, 2, 4 or 8 bytes
            q = pos + 1
            pos = q + (1 << (meta >> 6))
            if pos > end:
                return None
            append(int.from_bytes(data[q:pos], "little", signed=True))
        elif meta == 5 and pos + 12 <= end and data[pos + 1 : pos + 4] == b"\0\0\0":  # a Vector2 (the usual)
            x, y = _S_2F.unpack_from(data, pos + 4)
            v = _new_value(GodotValue)  # as _flat_variant makes it
            v["x"] = x
            v["y"] = y
            v.type_name = "Vector2"
            append(v)
            pos += 12
        else:
            got = _flat_variant(data, pos, end, 0)
            if got is None:
                return None
            append(got[0])
            pos = got[1]
    if pos != end or (count is not None and len(out) < count):
        return None
    return out


def _flat_item(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int] | None:
    """:func:`_flat_variant` for an item of an array or dictionary: a short string, a bool or a 32-bit int (the
    usual keys and values) read here, anything else there."""
    if pos + 8 <= end:
        header, word = _U32X2.unpack_from(data, pos)
        if header == 4:  # a String of ``word`` bytes, padded to 4
            q = pos + 8
            stop = q + word + (-word % 4)
            if stop <= end:
                try:
                    return data[q : q + word].decode("utf-8"), stop
                except UnicodeDecodeError:
                    return None
            return None
        if header == 1:
            return word != 0, pos + 8
        if header == 2:
            return (word - (1 << 32) if word >= 1 << 31 else word), pos + 8
    return _flat_variant(data, pos, end, depth)


def _flat_variant(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int] | None:
    """One value of Godot's binary serialization at ``pos`` and the position after it, as :meth:`_Reader.variant`
    reads it, when its header is one of :data:`_FLAT_HEADERS` and it fits; else None."""
    if depth > _FLAT_DEPTH or pos + 4 > end:
        return None
    header = _U32.unpack_from(data, pos)[0]
    if header not in _FLAT_HEADERS:
        return None
    p = pos + 4
    if header == 0:
        return None, p
    if header == 2:
        if p + 4 > end:
            return None
        return _S_I32.unpack_from(data, p)[0], p + 4
    if header == 5:
        if p + 8 > end:
            return None
        x, y = _S_2F.unpack_from(data, p)
        v = _new_value(GodotValue)  # GodotValue("Vector2", {"x": x, "y": y}), without its two __init__ calls
        v["x"] = x
        v["y"] = y
        v.type_name = "Vector2"
        return v, p + 8
    if header == 3:
        if p + 4 > end:
            return None
        return _S_F32.unpack_from(data, p)[0], p + 4
    if header == 4 or header == 21:
        if p + 4 > end:
            return None
        n = _U32.unpack_from(data, p)[0]
        q = p + 4
        stop = q + n + (-n % 4)
        if stop > end:
            return None
        try:
            return data[q : q + n].decode("utf-8"), stop
        except UnicodeDecodeError:
            return None
    if header == 1:
        if p + 4 > end:
            return None
        return _U32.unpack_from(data, p)[0] != 0, p + 4
    if header == 28 or header == 27:
        if p + 4 > end:
            return None
        n = _U32.unpack_from(data, p)[0] & 0x7FFFFFFF
        p += 4
        if header == 28:
            if n > (end - p) // 4:
                return None
            items: list[Any] = []
            for _ in range(n):
                got = _flat_item(data, p, end, depth + 1)
                if got is None:
                    return None
                items.append(got[0])
                p = got[1]
            return items, p
        if n > (end - p) // 8:
            return None
        out: dict[Any, Any] = {}
        for _ in range(n):
            got = _flat_item(data, p, end, depth + 1)
            if got is None:
                return None
            k = got[0]
            tk = type(k)
            if tk is list or tk is dict or tk is GodotValue:  # unhashable: the general reader shows it as text
                return None
            got = _flat_item(data, got[1], end, depth + 1)
            if got is None:
                return None
            out[k] = got[0]
            p = got[1]
        return out, p
    if header == 9:
        if p + 12 > end:
            return None
        x, y, z = _S_3F.unpack_from(data, p)
        return GodotValue("Vector3", {"x": x, "y": y, "z": z}), p + 12
    if header == 2 | _FLAG_64:
        if p + 8 > end:
            return None
        return int.from_bytes(data[p : p + 8], "little", signed=True), p + 8
    if header == 3 | _FLAG_64:
        if p + 8 > end:
            return None
        return _S_F64.unpack_from(data, p)[0], p + 8
    if header == 5 | _FLAG_64:
        if p + 16 > end:
            return None
        x, y = _S_2D.unpack_from(data, p)
        return GodotValue("Vector2", {"x": x, "y": y}), p + 16
    if header == 9 | _FLAG_64:
        if p + 24 > end:
            return None
        x, y, z = _S_3D.unpack_from(data, p)
        return GodotValue("Vector3", {"x": x, "y": y, "z": z}), p + 24
    if header == 6:
        if p + 8 > end:
            return None
        x, y = _S_2I.unpack_from(data, p)
        return GodotValue("Vector2i", {"x": x, "y": y}), p + 8
    if header == 10:
        if p + 12 > end:
            return None
        x, y, z = _S_3I.unpack_from(data, p)
        return GodotValue("Vector3i", {"x": x, "y": y, "z": z}), p + 12
    # 20: Color (always single precision)
    if p + 16 > end:
        return None
    r, g, b, a = _S_4F.unpack_from(data, p)
    return GodotValue("Color", {"r": r, "g": g, "b": b, "a": a}), p + 16


def read_variant(data: bytes) -> Any:
    """One value in Godot's plain binary serialization (``var_to_bytes``); :class:`BadPacket` if it is not one."""
    r = _Reader(data, 0, len(data))
    v = r.variant()
    if r.pos != r.end:
        raise BadPacket(f"{r.end - r.pos} bytes after the value")
    return v


# ------------------------------------------------------------------------------------------------------------
# SceneMultiplayer packets


class Packet:
    """One SceneMultiplayer packet as read: its command, a summary, parts with byte ranges, and a plain value."""

    __slots__ = ("_parts", "_summary", "command", "raw", "value")

    def __init__(self, command: str, summary: str | Callable[[], str], value: dict[str, Any],
                 parts: list[tuple[str, Any, int, int]] | Callable[[], list[tuple[str, Any, int, int]]],
                 raw: tuple[int, int] | None = None) -> None:
        self.command = command
        self._summary = summary
        """The one-line text, or how to make it: rendering arguments costs more than reading them, and a
        confidence check reads packets it never shows."""
        self.value = value
        self._parts = parts
        """(name, value, start, end) in the packet, for the field tree; or how to make them (only a view with
        detail has a tree)."""
        self.raw = raw
        """For RAW and relayed RAW packets: where the game's own bytes are (start, end)."""

    @property
    def summary(self) -> str:
        s = self._summary
        if not isinstance(s, str):
            s = self._summary = s()
        return s

    @property
    def parts(self) -> list[tuple[str, Any, int, int]]:
        """(name, value, start, end) in the packet, for the field tree."""
        pt = self._parts
        if not isinstance(pt, list):
            pt = self._parts = pt()
        return pt


def _cstring(data: bytes, pos: int, what: str) -> tuple[str, int]:
    """A NUL-terminated UTF-8 string at ``pos``; its text and the position after the NUL."""
    nul = data.find(b"\0", pos)
    if nul < 0:
        raise BadPacket(f"{what} at byte {pos} has no terminating NUL")
    try:
        return data[pos:nul].decode("utf-8"), nul + 1
    except UnicodeDecodeError as e:
        raise BadPacket(f"{what} at byte {pos} is not UTF-8 ({e.reason})") from None


def parse_packet(data: bytes, pos: int = 0, depth: int = 0) -> Packet:
    """Read one SceneMultiplayer packet from ``data[pos:]``; :class:`BadPacket` when it is not one (strictly: the
    bytes Godot writes, so that other payloads are not taken for Godot's)."""
    if pos >= len(data):
        raise BadPacket("empty packet")
    first = data[pos]
    cmd = first & 7
    flags = first >> 3
    end = len(data)
    u32 = _U32.unpack_from
    if cmd == 0:
        return _remote_call(data, pos, first)
    if flags and cmd != 6:
        raise BadPacket(f"command byte 0x{first:02x}: {COMMANDS[cmd]} has no flags")
    if cmd == 1:  # SIMPLIFY_PATH: md5 of the RPC names (32 hex + NUL), cache id, path
        if end - pos < 38:
            raise BadPacket("simplify_path shorter than 38 bytes")
        md5 = data[pos + 1 : pos + 33]
        if data[pos + 33] != 0 or not all(c in b"0123456789abcdef" for c in md5):
            raise BadPacket("simplify_path without its 32-digit RPC checksum")
        cache_id = u32(data, pos + 34)[0]
        path, after = _cstring(data, pos + 38, "the node path")
        _no_tail(after, end)
        return Packet("simplify_path", f'simplify_path "{path}" → id {cache_id}',
                      {"command": "simplify_path", "path": path, "id": cache_id, "rpc_md5": md5.decode()},
                      [("rpc checksum (md5)", md5.decode(), pos + 1, pos + 34),
                       ("cache id", cache_id, pos + 34, pos + 38), ("path", path, pos + 38, end)])
    if cmd == 2:  # CONFIRM_PATH: valid checksum byte, path
        if end - pos < 3 or data[pos + 1] > 1:
            raise BadPacket("confirm_path needs a 0/1 byte and a path")
        ok = bool(data[pos + 1])
        path, after = _cstring(data, pos + 2, "the node path")
        _no_tail(after, end)
        return Packet("confirm_path", f'confirm_path "{path}"' + ("" if ok else " (RPC checksum differs!)"),
                      {"command": "confirm_path", "path": path, "valid": ok},
                      [("rpc checksum matches", ok, pos + 1, pos + 2), ("path", path, pos + 2, end)])
    if cmd == 3:
        n = end - pos - 1
        return Packet("raw", f"raw {n} B", {"command": "raw", "size": n},
                      [("bytes", f"{n} bytes", pos + 1, end)], raw=(pos + 1, end))
    if cmd == 4:
        return _spawn(data, pos)
    if cmd == 5:
        if end - pos != 5:
            raise BadPacket("despawn is 5 bytes")
        nid = u32(data, pos + 1)[0]
        return Packet("despawn", f"despawn net id {nid}", {"command": "despawn", "net_id": nid},
                      [("net id", nid, pos + 1, end)])
    if cmd == 6:
        return _sync(data, pos, first)
    return _sys(data, pos, depth)


def _no_tail(after: int, end: int) -> None:
    if after != end:
        raise BadPacket(f"{end - after} bytes after the path")


_NODE_WIDTH = (1, 2, 4)


def _remote_call(data: bytes, pos: int, first: int) -> Packet:
    node_comp = (first >> 4) & 3
    name_comp = (first >> 6) & 1
    byte_only = bool(first & 0x80)
    if node_comp == 3 or first & 0x08:
        raise BadPacket(f"command byte 0x{first:02x} is no remote call")
    nw = _NODE_WIDTH[node_comp]
    mw = 2 if name_comp else 1
    end = len(data)
    off = pos + 1
    if off + nw + mw > end:
        raise BadPacket("remote call shorter than its node and method ids")
    node = data[off] if nw == 1 else int.from_bytes(data[off : off + nw], "little")
    method = data[off + nw] if mw == 1 else int.from_bytes(data[off + nw : off + nw + mw], "little")
    parts: list[tuple[str, Any, int, int]] = [("node id", node, off, off + nw),
                                               ("method id", method, off + nw, off + nw + mw)]
    off += nw + mw
    path = None
    args_end = end
    if nw == 4 and node & 0x80000000:  # the node's path follows the arguments (the peer has not cached it yet)
        at = pos + (node & 0x7FFFFFFF)
        if not off <= at < end:
            raise BadPacket(f"remote call's path offset {at - pos} outside the packet")
        path, after = _cstring(data, at, "the node path")
        args_end = at
        if after != end:
            raise BadPacket("bytes after the remote call's path")
        parts[0] = ("node path", path, args_end, end)
    value: dict[str, Any] = {"command": "remote_call", "node": path if path is not None else node, "method": method}
    if byte_only:
        blob = data[off:args_end]
        value["args"] = [blob] if blob else []
        parts.append(("argument (bytes)" if blob else "no arguments", f"{len(blob)} bytes", off, args_end))
        shown = f"({len(blob)} B)" if blob else "()"
    else:
        if off >= args_end:
            raise BadPacket("remote call without its argument count")
        argc = data[off]
        args, plain = _read(data, off + 1, args_end, argc)
        value["args"] = args
        parts.append(("argument count", argc, off, off + 1))
        parts.append(("arguments", args, off + 1, args_end))

        def call() -> str:
            text, cut = _plain_text(args, 120) if plain else render_value(args, 120)
            target = f'"{path}"' if path is not None else f"node {node}"
            return f"rpc {target} method {method}({text[1:] if cut else text[1:-1]})"

        return Packet("remote_call", call, value, parts)
    target = f'"{path}"' if path is not None else f"node {node}"
    return Packet("remote_call", f"rpc {target} method {method}{shown}", value, parts)


def _spawn(data: bytes, pos: int) -> Packet:
    end = len(data)
    if end - pos < 18:
        raise BadPacket("spawn shorter than 18 bytes")
    scene = data[pos + 1]
    spawner, nid, nsync, nlen = struct.unpack_from("<IIII", data, pos + 2)
    off = pos + 18
    if nsync > (end - off) // 4 or nlen < 1 or off + 4 * nsync + nlen > end:
        raise BadPacket("spawn's synchronizers and name do not fit")
    syncs = list(struct.unpack_from(f"<{nsync}I", data, off))
    off += 4 * nsync
    raw_name = data[off : off + nlen]
    try:
        name = raw_name.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        raise BadPacket("spawn's node name is not UTF-8") from None
    off += nlen
    value: dict[str, Any] = {"command": "spawn", "name": name, "scene": None if scene == 0xFF else scene,
                             "spawner": spawner, "net_id": nid, "synchronizers": syncs}
    parts: list[tuple[str, Any, int, int]] = [
        ("scene", "custom" if scene == 0xFF else scene, pos + 1, pos + 2), ("spawner (cache id)", spawner, pos + 2,
                                                                          pos + 6),
        ("net id", nid, pos + 6, pos + 10), ("synchronizers", syncs, pos + 18, pos + 18 + 4 * nsync),
        ("name", name, off - nlen, off)]
    if scene == 0xFF:  # a custom spawn: its argument
        if off + 4 > end:
            raise BadPacket("custom spawn without its argument size")
        size = _U32.unpack_from(data, off)[0]
        if size > end - off - 4:
            raise BadPacket("custom spawn's argument does not fit")
        arg = read_variants(data, off + 4, off + 4 + size, 1)[0]
        value["argument"] = arg
        parts.append(("argument", arg, off, off + 4 + size))
        off += 4 + size
    state = read_variants(data, off, end) if off < end else []
    value["state"] = state
    if state:
        parts.append(("spawn state", state, off, end))
    what = "custom" if scene == 0xFF else f"scene {scene}"
    return Packet("spawn", lambda: f'spawn "{name}" ({what}) net id {nid}' + (f" state {render_value(state, 80)[0]}"
                                                                             if state else ""), value, parts)


def _sync(data: bytes, pos: int, first: int) -> Packet:
    end = len(data)
    if first not in (0x06, 0x16):
        raise BadPacket(f"command byte 0x{first:02x} is no sync")
    delta = first == 0x16
    if end - pos < 11:
        raise BadPacket("sync shorter than 11 bytes")
    value: dict[str, Any] = {"command": "sync", "delta": delta}
    if delta:
        off = pos + 1
    else:
        time = _U16LE.unpack_from(data, pos + 1)[0]
        value["time"] = time
        off = pos + 3
    spans: list[int] = []  # where each node's part starts and ends: the field tree's, made only for a tree
    nodes = []
    plains = True  # every node's values read by the flat reader (see _plain_text)
    head = 16 if delta else 8
    while off + head <= end and (delta or off + 8 < end):
        if delta:
            nid = _U32.unpack_from(data, off)[0]
            indexes = _U64.unpack_from(data, off + 4)[0]
            size = _U32.unpack_from(data, off + 12)[0]
        else:
            nid, size = _U32X2.unpack_from(data, off)
        start = off + head
        if size > end - start:
            raise BadPacket(f"sync state of {size} bytes at byte {start}, {end - start} left")
        state, plain = _read(data, start, start + size, None)
        if not plain:
            plains = False
        entry: dict[str, Any] = {"net_id": nid, "values": state}
        if delta:
            entry["indexes"] = indexes
        nodes.append(entry)
        spans.append(off)
        off = start + size
        spans.append(off)
        if len(nodes) > _MAX_SYNC_NODES:
            break
    if off != end:
        raise BadPacket(f"{end - off} bytes after the sync states")
    value["nodes"] = nodes

    def parts() -> list[tuple[str, Any, int, int]]:
        out: list[tuple[str, Any, int, int]] = [] if delta else [("sync time", value["time"], pos + 1, pos + 3)]
        for i, n in enumerate(nodes):
            nid = n["net_id"]
            out.append((f"net id {nid}" + (" (path-based)" if nid & 0x80000000 else ""), n["values"], spans[2 * i],
                        spans[2 * i + 1]))
        return out

    def synced() -> str:
        shown = "; ".join([f"{n['net_id']}: {(_plain_text if plains else render_value)(n['values'], 60)[0]}"
                           for n in nodes[:3]])
        return ("delta " if delta else f"sync t={value.get('time')} ") + shown + ("; …" if len(nodes) > 3 else "")

    return Packet("sync", synced, value, parts)


def _sys(data: bytes, pos: int, depth: int) -> Packet:
    end = len(data)
    if end - pos < 2 or data[pos + 1] >= len(SYS_COMMANDS):
        raise BadPacket("sys without a known sub-command")
    sub = SYS_COMMANDS[data[pos + 1]]
    if sub == "auth":
        blob = data[pos + 2 :]
        return Packet("sys", f"sys auth {len(blob)} B" if blob else "sys auth done",
                      {"command": "sys", "sys": "auth", "data": blob},
                      [("sys command", sub, pos + 1, pos + 2), ("auth data", f"{len(blob)} bytes", pos + 2, end)])
    if end - pos < 6:
        raise BadPacket(f"sys {sub} shorter than 6 bytes")
    peer = _I32.unpack_from(data, pos + 2)[0]
    parts: list[tuple[str, Any, int, int]] = [("sys command", sub, pos + 1, pos + 2), ("peer", peer, pos + 2, pos + 6)]
    value: dict[str, Any] = {"command": "sys", "sys": sub, "peer": peer}
    if sub != "relay":
        if end - pos != 6:
            raise BadPacket(f"sys {sub} is 6 bytes")
        return Packet("sys", f"sys {sub} {peer}", value, parts)
    if end - pos < 7 or depth > 2:
        raise BadPacket("relay without a packet")
    inner = parse_packet(data, pos + 6, depth + 1)
    value["packet"] = inner.value
    parts.append(("relayed packet", inner.command, pos + 6, end))
    parts.extend((f"  {n}", v, s, e) for n, v, s, e in inner.parts)
    whom = "all" if peer == 0 else f"all but {-peer}" if peer < 0 else str(peer)
    return Packet("sys", lambda: f"relay {'to' if peer <= 0 else 'for'} {whom}: {inner.summary}", value, parts,
                  raw=inner.raw)


# ------------------------------------------------------------------------------------------------------------
# The decoder


def confidence_of(data: bytes, nested: bool = False) -> float:
    """How surely ``data`` is one SceneMultiplayer packet: it must parse exactly, and the kind of packet must say
    more than a byte or two would by chance. A RAW packet (any bytes behind 0x03), a call whose argument is bare
    bytes and a call without arguments are no evidence: the ENet decoder shows them as Godot's on a flow whose
    CONNECT was a Godot client's. A call with arguments counts only inside an ENet payload (``nested``): Godot sends
    nothing outside one (here)."""
    return _scored(data, nested)[0]


def _scored(data: bytes, nested: bool) -> tuple[float, Packet | None]:
    if not data or len(data) > 1 << 16:
        return 0.0, None
    first = data[0]
    if first & 7 != 0 and first not in (1, 2, 4, 5, 6, 7, 0x16):
        return 0.0, None
    if not nested and (first & 7 == 0 or first == 5):  # calls and despawns count inside a payload only
        return 0.0, None
    try:
        p = parse_packet(data)
    except (BadPacket, struct.error, IndexError, OverflowError, RecursionError, MemoryError):
        return 0.0, None
    if p.command == "remote_call":
        return (0.5 if nested and first & 0x80 == 0 and p.value.get("args") else 0.0), p
    if p.command == "despawn" or (p.command == "sys" and p.value.get("sys") in ("add_peer", "del_peer")):
        return (0.5 if nested else 0.0), p
    if p.command == "sys" and p.value.get("sys") == "auth":
        return 0.0, p
    return 0.8, p


class GodotDecoder:
    """SceneMultiplayer packets (what an ENet payload of a Godot 4 game holds); see the module docstring."""

    name = NAME

    def __init__(self, registry: DecoderRegistry | None = None) -> None:
        self.registry = registry
        """Where a RAW packet's bytes are decoded (default: the process's registry)."""
        self._memo: tuple[bytes, Packet] | None = None
        """The packet the last confidence check read (the registry decodes the same bytes next)."""

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        score, p = _scored(data, nesting() > 0)
        if p is not None:
            self._memo = (data, p)
        return score

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        memo = self._memo
        fresh = False
        if memo is not None and memo[0] is data:
            p = memo[1]
        else:
            if not ctx.detail:
                view = _quick_view(data, ctx)
                if view is not None:
                    return view
            fresh = True
            try:
                p = parse_packet(data)
            except (BadPacket, struct.error, IndexError, OverflowError) as e:
                return error_view(NAME, data, f"not a Godot multiplayer packet: {e}", detail=ctx.detail)
            except RecursionError:
                return error_view(NAME, data, "not a Godot multiplayer packet: nested too deeply",
                                  detail=ctx.detail)
        inner = None
        if p.raw is not None and p.raw[1] > p.raw[0]:
            inner = decode_payload(self.registry, data[p.raw[0] : p.raw[1]], ctx)
        lookup = PATHS
        # (a remote call's node is named by them, and nothing else is)
        paths = lookup(ctx.conn_id, ctx.direction) if lookup is not None and p.command == "remote_call" else None
        return packet_view(p, data, ctx.detail, inner, paths, fresh)


def _quick_view(data: bytes, ctx: DecodeContext) -> View | None:
    """The summary view of the usual packets, a remote call with its node's id and arguments or a sync of a few
    nodes, read in one go when the flat reader reads their values: what :func:`parse_packet` and
    :func:`packet_view` make of them (the same value, keys in the same order, the same summary), without the
    packet, its parts for the tree and its closures. None for anything else (the general path then reads it, and
    says what is wrong with it)."""
    n = len(data)
    if n < 3 or n > _FLAT_BYTES:
        return None
    first = data[0]
    if first == 0x06:  # SYNC (not a delta): time, then (net id, size, state) per node (see _sync)
        if n < 11:
            return None
        time = _U16LE.unpack_from(data, 1)[0]
        off = 3
        nodes: list[dict[str, Any]] = []
        shown: list[str] = []
        while off + 8 < n:
            if len(nodes) == 3:
                return None  # more: the general path (its summary says "; …")
            nid, size = _U32X2.unpack_from(data, off)
            start = off + 8
            off = start + size
            if off > n:
                return None
            vals = _flat_variants(data, start, off, None)
            if vals is None:
                return None
            nodes.append({"net_id": nid, "values": vals})
            shown.append(f"{nid}: {_plain_text(vals, 60)[0]}")
        if off != n:
            return None
        summary = f"sync t={time} " + "; ".join(shown)
        return summary_view(NAME, clip(summary), ({"command": "sync", "delta": False, "time": time,
                                                    "nodes": nodes},))
    if first & 0x8F or first & 0x30 == 0x30:  # a remote call with Variant arguments and a 1, 2 or 4-byte node id
        return None  # (not its path: see below); anything else: the general path
    nw = _NODE_WIDTH[(first >> 4) & 3]
    mw = 2 if first & 0x40 else 1
    off = 1 + nw + mw
    if off >= n:
        return None
    node = data[1] if nw == 1 else int.from_bytes(data[1 : 1 + nw], "little")
    if nw == 4 and node & 0x80000000:
        return None  # its node's path follows the arguments
    method = data[1 + nw] if mw == 1 else int.from_bytes(data[1 + nw : off], "little")
    args = _flat_variants(data, off + 1, n, data[off])
    if args is None:
        return None
    value: dict[str, Any] = {"command": "remote_call", "node": node, "method": method, "args": args}
    text, cut = _plain_text(args, 120)
    summary = f"rpc node {node} method {method}({text[1:] if cut else text[1:-1]})"
    lookup = PATHS
    paths = lookup(ctx.conn_id, ctx.direction) if lookup is not None else None
    if paths and node in paths:  # as packet_view names it
        value["path"] = paths[node]
        summary = summary.replace(f"rpc node {node} ", f"rpc {paths[node]} (node {node}) ", 1)
    return summary_view(NAME, clip(summary), (value,))


def packet_view(p: Packet, data: bytes, detail: bool, inner: View | None = None,
                paths: dict[int, str] | None = None, fresh: bool = False) -> View:
    """The view of a parsed packet; ``inner``: a RAW packet's bytes decoded by the usual decoders; ``paths``: the
    node paths the sender announced (SIMPLIFY_PATH) by cache id, which name a remote call's node; ``fresh``: the
    packet was read for this view alone (its value is then the view's, not a copy)."""
    summary = p.summary
    value = p.value if fresh else dict(p.value)
    node = value.get("node")
    if paths and p.command == "remote_call" and isinstance(node, int) and node in paths:
        value["path"] = paths[node]
        summary = summary.replace(f"rpc node {node} ", f"rpc {paths[node]} (node {node}) ", 1)
    if inner is not None:
        summary = f"{summary} · {inner.decoder} {inner.summary}"
        value["payload"] = inner.values[0] if len(inner.values) == 1 else list(inner.values)
        value["payload_decoder"] = inner.decoder
    if not detail:
        return summary_view(NAME, clip(summary), (value,))
    budget = TreeBudget(MAX_NODES)
    fields = [Field("command", f"{p.command} (0x{data[0]:02x})", 0, 1)]
    for name, v, s, e in p.parts:
        node = value_field(name, v, budget, s, e)
        if node is None:
            break
        fields.append(node)
    if inner is not None and p.raw is not None:
        fields.append(Field(f"payload ({inner.decoder})", clip(inner.summary, 120), p.raw[0], p.raw[1],
                            tuple(_shift(f, p.raw[0]) for f in inner.fields)))
    text = f"Godot SceneMultiplayer {p.command}\n{summary}\n\n" + render_value(value, 4000)[0]
    if p.raw is not None and inner is None:
        text += "\n\n" + hex_dump(data[p.raw[0] : p.raw[1]])
    return View(decoder=NAME, summary=clip(summary), fields=tuple(fields), text=text, truncated=budget.truncated,
                values=(value,))


def _shift(f: Field, by: int) -> Field:
    return Field(f.name, f.value_repr, None if f.start is None else f.start + by,
                 None if f.end is None else f.end + by, tuple(_shift(c, by) for c in f.children))

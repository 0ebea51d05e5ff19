"""Schema hints for the lab: which decoded field of which message type is the client's input sequence, the
server's acknowledgement of the last input it processed, the server's tick or time, the entity's position and the
position the client predicted.

Role: a *message type* (:class:`MessageType`) is a direction plus the value of the message's type field (``t``,
``type``, ``kind`` ... as the Statistics dock groups them; ``c2s input``), or the whole direction when a message
has no type field. Each type gets a field per role (:data:`ROLES`), from three sources, most binding first:

- **window**: picked by the user from the decoded tree of a message (``inspector.ui.lab_hints``);
- **file**: a hints file (TOML, :func:`load_hints`; every mistake is one line naming the file and line);
- **inferred**: obvious names in the first messages of a type (:func:`infer_roles`: ``seq``, ``input_seq``,
  ``ack``, ``last_input``, ``last_seq``, ``tick``, ``time``, ``x``/``y``, ``pos`` ...), shown as *inferred* so the
  user can correct them.

A role set to nothing (``ack = ""`` in the file, "(none)" in the window) switches inference off for it.
Hints for a whole direction (``[s2c]``) apply to every message type of that direction that has none of its own.
A field is a path into the decoded value (:class:`FieldRef`: ``seq``, ``pos.x``, ``players[0][1]``); a position
is one path to a ``[x, y]`` list or ``{"x": .., "y": ..}`` map, or two or three paths (``["x", "y"]``).

File format::

    type_field = "t"              # optional: the field that names a message's type (default: t, type, kind ...)
    [c2s.input]                   # client -> server messages whose type is "input"
    seq = "seq"                   # the client's input sequence number
    predicted = ["x", "y"]        # where the client predicts it is once this input is applied
    [s2c.state]
    ack = "ack"                   # the last input of this client the server has applied
    tick = "tick"
    time = "time"
    pos = ["x", "y"]              # this client's position, as the server has it after input `ack`

Must not import: Qt, ``inspector.ui``, ``inspector.bridge``.
Thread: any; a :class:`Hints` is not thread-safe (the lab's analysis owns it).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from inspector.decode import PickleObject
from inspector.fields import MISSING, resolve
from inspector.fields import Path as FieldPath
from inspector.timeline.pairing import DECODED_NAMESPACES, key_text
from inspector.timeline.stats import TYPE_FIELDS
from proxy.model import Direction

__all__ = [
    "INFER_SAMPLES",
    "ROLES",
    "ROLE_DIRECTION",
    "ROLE_TEXT",
    "FieldRef",
    "Hint",
    "Hints",
    "HintsError",
    "MessageType",
    "Source",
    "as_count",
    "as_point",
    "candidates",
    "infer_roles",
    "leaves",
    "load_hints",
    "parse_hints",
]

Role = Literal["seq", "ack", "tick", "time", "pos", "predicted"]
ROLES: Final[tuple[Role, ...]] = ("seq", "ack", "tick", "time", "pos", "predicted")
ROLE_TEXT: Final[dict[str, str]] = {
    "seq": "the client's input sequence number",
    "ack": "the server's acknowledgement: the last input of this client it has applied",
    "tick": "the server's tick number",
    "time": "the server's clock",
    "pos": "the entity's position as the server has it",
    "predicted": "the position the client predicted for itself after this input",
}
ROLE_DIRECTION: Final[dict[str, Direction]] = {
    "seq": Direction.C2S, "predicted": Direction.C2S,
    "ack": Direction.S2C, "tick": Direction.S2C, "time": Direction.S2C, "pos": Direction.S2C,
}
"""Which direction each role belongs to: inputs and predictions come from the client, the rest from the server."""
POINT_ROLES: Final = frozenset({"pos", "predicted"})
INFER_SAMPLES: Final = 5
"""Messages of a type looked at for obvious names (a field missing from the first one may be in the next)."""
MAX_PATH_STEPS: Final = 16
MAX_PATH_CHARS: Final = 1000
MAX_TYPES: Final = 512
"""Message types remembered (a peer that sends a new type name in every message cannot grow this without end);
past it, new types are grouped as their direction's "(other)"."""
MAX_COUNT: Final = (1 << 63) - 1
MAX_COORD: Final = 1e12
Source = Literal["inferred", "file", "window"]


class HintsError(ValueError):
    """A hints file is wrong: :attr:`errors` holds one line per mistake (``FILE:LINE: what``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# ------------------------------------------------------------------------------------------ field paths

_SEG_RE: Final = re.compile(r'\.?([A-Za-z_][\w-]*)|\[(-?\d{1,18})\]|\.(\d{1,18})|\["((?:[^"\\]|\\.)*)"\]')


def _short(text: str, n: int = 60) -> str:
    """``text`` quoted, cut to ``n`` characters: an error line never echoes a whole hostile value."""
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def parse_path(text: str) -> FieldPath:
    """``pos.x`` -> ``("pos", "x")``; ``players[0][1]``, ``["my key"]``; a leading decoder name (``json.seq``,
    as the filter bar writes it) is dropped. Raises ``ValueError`` with a readable reason."""
    t = text.strip()
    if not t:
        raise ValueError("empty field")
    if len(t) > MAX_PATH_CHARS:
        raise ValueError(f"field path longer than {MAX_PATH_CHARS} characters: {_short(t)}")
    steps: list[str | int] = []
    i = 0
    while i < len(t):
        m = _SEG_RE.match(t, i)
        if m is None or (i == 0 and t[0] == ".") or (i > 0 and m.group(1) is not None and t[i] != "."):
            raise ValueError(f"not a field path: {_short(t)} (write seq, pos.x, players[0][1] or [\"a key\"])")
        name, idx, num, quoted = m.groups()
        if name is not None:
            steps.append(name)
        elif quoted is not None:
            steps.append(json.loads(f'"{quoted}"'))
        else:
            steps.append(int(idx if idx is not None else num))
        i = m.end()
        if len(steps) > MAX_PATH_STEPS:
            raise ValueError(f"field path longer than {MAX_PATH_STEPS} steps: {_short(t)}")
    if len(steps) > 1 and isinstance(steps[0], str) and steps[0] in DECODED_NAMESPACES:
        steps = steps[1:]
    return tuple(steps)


def path_text(path: FieldPath) -> str:
    out = []
    for i, step in enumerate(path):
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif re.fullmatch(r"[A-Za-z_][\w-]*", step):
            out.append(step if i == 0 else f".{step}")
        else:
            out.append("[" + json.dumps(step, ensure_ascii=False) + "]")
    return "".join(out)


@dataclass(frozen=True)
class FieldRef:
    """One decoded field (a number), or a position: one path to ``[x, y]``/``{x, y}`` or two or three paths."""

    paths: tuple[FieldPath, ...]

    @classmethod
    def parse(cls, spec: str | list[str] | tuple[str, ...], *, point: bool = False) -> FieldRef:
        """``"seq"``; for a position also ``"pos"`` or ``["x", "y"]`` (``"x, y"`` too). ``ValueError`` if bad."""
        if isinstance(spec, str) and point and "," in spec:
            spec = spec.split(",")
        if isinstance(spec, list | tuple):
            if not point:
                raise ValueError("one field expected, not a list")
            if not 2 <= len(spec) <= 3 or not all(isinstance(p, str) for p in spec):
                raise ValueError("a position is one field or a list of 2 or 3 fields ([\"x\", \"y\"])")
            return cls(tuple(parse_path(p) for p in spec))
        if not isinstance(spec, str):
            raise ValueError(f"expected a field name in quotes, got {spec!r}")
        return cls((parse_path(spec),))

    @property
    def text(self) -> str:
        return ", ".join(path_text(p) for p in self.paths)

    def toml(self) -> str:
        if len(self.paths) == 1:
            return json.dumps(path_text(self.paths[0]), ensure_ascii=False)
        return "[" + ", ".join(json.dumps(path_text(p), ensure_ascii=False) for p in self.paths) + "]"

    def get(self, value: object) -> object:
        """The raw value at this field (:data:`~inspector.fields.MISSING` when absent); a position's parts as a
        tuple."""
        if len(self.paths) == 1:
            return resolve(value, self.paths[0])
        parts = tuple(resolve(value, p) for p in self.paths)
        return MISSING if any(p is MISSING for p in parts) else parts


def as_count(v: object) -> int | str:
    """A sequence number, acknowledgement or tick as a whole number >= 0, or why it is not one."""
    if isinstance(v, bool):
        return "not a number (a boolean)"
    if isinstance(v, int):
        return v if 0 <= v <= MAX_COUNT else "out of range"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "not finite"
        if v != int(v):
            return "not a whole number"
        return int(v) if 0 <= v <= MAX_COUNT else "out of range"
    return "not a number"


def as_time(v: object) -> float | str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "not a number"
    f = float(v) if not isinstance(v, int) or abs(v) < 1 << 62 else math.inf
    return f if math.isfinite(f) else "not finite or out of range"


def as_point(v: object) -> tuple[float, ...] | str:
    """A position: 2 or 3 finite numbers (from a list, a map with x/y(/z), or separate fields), or why not."""
    if isinstance(v, dict):
        parts = [resolve(v, (k,)) for k in ("x", "y", "z")]
        v = tuple(p for p in parts if p is not MISSING)
    elif isinstance(v, PickleObject):
        parts = [resolve(v, (k,)) for k in ("x", "y", "z")]
        v = tuple(p for p in parts if p is not MISSING) if parts[0] is not MISSING else tuple(v.items)
    if not isinstance(v, list | tuple) or not 2 <= len(v) <= 3:
        return "not a position (2 or 3 numbers)"
    out = []
    for p in v:
        if isinstance(p, bool) or not isinstance(p, int | float):
            return "not a number"
        if isinstance(p, int) and abs(p) > MAX_COORD:
            return "out of range"
        f = float(p)
        if not math.isfinite(f) or abs(f) > MAX_COORD:
            return "not finite or out of range"
        out.append(f)
    return tuple(out)


# ------------------------------------------------------------------------------------------ message types


@dataclass(frozen=True, order=True)
class MessageType:
    """A direction and the value of the message's type field; ``name`` None: the whole direction (or messages
    with no type field)."""

    direction: Direction
    name: str | None = None

    @property
    def text(self) -> str:
        return f"{self.direction.label} {self.name}" if self.name is not None else f"{self.direction.label} (all)"

    @property
    def toml_header(self) -> str:
        d = self.direction.label
        if self.name is None:
            return f"[{d}]"
        bare = re.fullmatch(r"[A-Za-z0-9_-]+", self.name) is not None
        return f"[{d}.{self.name if bare else json.dumps(self.name, ensure_ascii=False)}]"


@dataclass(frozen=True)
class Hint:
    field: FieldRef | None
    """None: the user said this type has no such field."""
    source: Source


def _norm(key: object) -> str:
    text = key_text(key) if not isinstance(key, str) else key
    return text.lower().replace("_", "").replace("-", "")


SEQ_NAMES: Final = frozenset({"seq", "inputseq", "sequence", "seqnum", "seqno", "inputsequence", "inputid",
                              "inputnumber", "inputno", "sequencenumber", "clientseq", "inputseqnum"})
ACK_NAMES: Final = frozenset({"ack", "acked", "ackseq", "lastinput", "lastinputseq", "lastseq", "lastprocessed",
                              "lastprocessedinput", "lastprocessedseq", "lastack", "lastacked", "inputack",
                              "processedinput", "lastinputprocessed", "lastappliedinput", "lastapplied",
                              "lastinputid", "ackinput", "ackedinput", "ackedseq"})
TICK_NAMES: Final = frozenset({"tick", "servertick", "tickno", "ticknumber", "tickcount", "frame", "serverframe",
                               "framenumber", "step"})
TIME_NAMES: Final = frozenset({"time", "servertime", "timems", "timestamp", "ts", "servertimems", "now", "clock",
                               "stime", "t_ms", "tms"})
POS_NAMES: Final = frozenset({"pos", "position", "xy", "loc", "location", "coords", "xyz"})
PRED_NAMES: Final = frozenset({"predicted", "pred", "predictedpos", "predictedposition", "prediction",
                               "predpos", "predictedxy"})


def _keys(value: object) -> list[tuple[str, object, object]]:
    """(normalised name, key as in the value, field value) of a map's or a safely read object's fields."""
    if isinstance(value, dict):
        return [(_norm(k), k, v) for k, v in list(value.items())[:256]]
    if isinstance(value, PickleObject):
        state = value.state
        dicts = [state] if isinstance(state, dict) else list(state) if isinstance(state, tuple) else []
        if value.kwargs:
            dicts.append(value.kwargs)
        out: list[tuple[str, object, object]] = []
        for d in dicts:
            if isinstance(d, dict):
                out += [(_norm(k), k, v) for k, v in list(d.items())[:256] if isinstance(k, str)]
        return out
    return []


def _key_step(k: object) -> str | None:
    if isinstance(k, bytes):
        try:
            return k.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return k if isinstance(k, str) else None


def infer_roles(direction: Direction, value: object) -> dict[str, FieldRef]:
    """The roles obvious from the top-level field names of one decoded message (only fields whose values fit:
    whole numbers for sequences, acknowledgements and ticks, numbers for time, 2 or 3 numbers for positions)."""
    keys = _keys(value)
    if not keys:
        return {}
    by_norm: dict[str, tuple[str, object]] = {}
    for norm, k, v in keys:
        step = _key_step(k)
        if step is not None and norm not in by_norm:
            by_norm[norm] = (step, v)
    out: dict[str, FieldRef] = {}

    def first(names: frozenset[str], kind: str) -> FieldRef | None:
        for norm, (step, v) in by_norm.items():
            if norm in names and not isinstance(as_count(v) if kind == "count" else as_time(v), str):
                return FieldRef(((step,),))
        return None

    def point(names: frozenset[str]) -> FieldRef | None:
        for norm, (step, v) in by_norm.items():
            if norm in names and not isinstance(as_point(v), str):
                return FieldRef(((step,),))
        return None

    def xy() -> FieldRef | None:
        x, y, z = by_norm.get("x"), by_norm.get("y"), by_norm.get("z")
        if x is None or y is None:
            return None
        parts = [x, y] + ([z] if z is not None else [])
        if isinstance(as_point(tuple(v for _, v in parts)), str):
            return None
        return FieldRef(tuple((s,) for s, _ in parts))

    if direction is Direction.C2S:
        if (f := first(SEQ_NAMES, "count")) is not None:
            out["seq"] = f
        if (f := point(PRED_NAMES) or xy() or point(POS_NAMES)) is not None:
            out["predicted"] = f
    else:
        for role, names in (("ack", ACK_NAMES), ("tick", TICK_NAMES)):
            if (f := first(names, "count")) is not None:
                out[role] = f
        if (f := first(TIME_NAMES, "time")) is not None:
            out["time"] = f
        if (f := xy() or point(POS_NAMES)) is not None:
            out["pos"] = f
    return out


MAX_WALK: Final = 400
"""Nodes of a decoded value the field picker walks (a message of 100,000 list items offers its first few)."""


def leaves(value: object, max_depth: int = 5) -> list[tuple[FieldPath, object]]:
    """(path, value) of the fields in a decoded value, breadth first, at most :data:`MAX_WALK` of them: what the
    window's field picker lists."""
    out: list[tuple[FieldPath, object]] = []
    queue: list[tuple[FieldPath, object]] = [((), value)]
    i = 0
    while i < len(queue) and len(out) < MAX_WALK:
        path, v = queue[i]
        i += 1
        if path:
            out.append((path, v))
        if len(path) >= max_depth:
            continue
        items: list[tuple[str | int, object]] = []
        if isinstance(v, dict):
            items = [(step, x) for k, x in list(v.items())[:64] if (step := _key_step(k)) is not None]
        elif isinstance(v, list | tuple):
            items = list(enumerate(v[:16]))
        elif isinstance(v, PickleObject):
            items = [(step, x) for _n, step, x in _keys(v)[:64] if isinstance(step, str)]
        queue += [((*path, step), x) for step, x in items]
    return out


def candidates(direction: Direction, value: object) -> dict[str, list[FieldRef]]:
    """Per role of ``direction``, the fields of ``value`` that could be it (numbers for sequences and times,
    2-3 numbers, ``{x, y}`` maps and sibling ``x``/``y`` fields for positions), obvious names first."""
    found = leaves(value)
    counts = [FieldRef((p,)) for p, v in found if not isinstance(as_count(v), str)]
    times = [FieldRef((p,)) for p, v in found if not isinstance(as_time(v), str)]
    points = [FieldRef((p,)) for p, v in found if isinstance(v, list | tuple | dict | PickleObject)
              and not isinstance(as_point(v), str)]
    by_parent: dict[FieldPath, dict[str, FieldPath]] = {}
    for p, v in found:
        if p and isinstance(p[-1], str) and p[-1].lower() in ("x", "y", "z") and not isinstance(as_time(v), str):
            by_parent.setdefault(p[:-1], {})[p[-1].lower()] = p
    for kids in by_parent.values():
        if "x" in kids and "y" in kids:
            points.insert(0, FieldRef(tuple(kids[k] for k in ("x", "y", "z") if k in kids)))
    inferred = infer_roles(direction, value)
    out: dict[str, list[FieldRef]] = {}
    for role in ROLES:
        if ROLE_DIRECTION[role] is not direction:
            continue
        pool = points if role in POINT_ROLES else times if role == "time" else counts
        first = inferred.get(role)
        out[role] = ([first] if first is not None else []) + [f for f in pool if f != first]
    return out


class Hints:
    """The lab's hints: given (file, window) and inferred, per message type; see the module docstring."""

    def __init__(self, *, type_fields: tuple[str, ...] | None = None, infer: bool = True) -> None:
        self.type_fields: tuple[str, ...] = type_fields or TYPE_FIELDS
        self.infer = infer
        self.given: dict[MessageType, dict[str, Hint]] = {}
        self.inferred: dict[MessageType, dict[str, FieldRef]] = {}
        self.seen: dict[MessageType, int] = {}
        """Messages looked at per type (the window lists these types)."""
        self.version = 0
        """Bumped when a given hint changes (the analysis starts over)."""
        self.inferred_version = 0
        """Bumped when inference adds a hint (the window's table redraws)."""
        self._cache: dict[MessageType, dict[str, Hint]] = {}

    # -------------------------------------------------------------------------------------- types

    def type_of(self, direction: Direction, value: object) -> MessageType:
        name: str | None = None
        if isinstance(value, dict):
            raw_keys = bool(value) and isinstance(next(iter(value)), bytes)  # msgpack read with raw keys
            for f in self.type_fields:
                v = value.get(f.encode("utf-8", "surrogatepass") if raw_keys else f)
                if v is not None and not isinstance(v, dict | list | tuple):
                    name = key_text(v)
                    break
        elif isinstance(value, PickleObject):
            name = value.class_name
        mt = MessageType(direction, name)
        if name is not None and mt not in self.seen and mt not in self.given and len(self.seen) >= MAX_TYPES:
            return MessageType(direction, "(other)")
        return mt

    # -------------------------------------------------------------------------------------- hints

    def set(self, mt: MessageType, role: str, field: FieldRef | None, source: Source = "window") -> None:
        """Give ``role`` of ``mt`` (``field`` None: it has none)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.given.setdefault(mt, {})[role] = Hint(field, source)
        self.version += 1
        self._cache.clear()

    def forget(self, mt: MessageType, role: str) -> None:
        """Back to inference for ``role`` of ``mt``."""
        roles = self.given.get(mt)
        if roles is not None and roles.pop(role, None) is not None:
            if not roles:
                del self.given[mt]
            self.version += 1
            self._cache.clear()

    def roles_for(self, mt: MessageType) -> dict[str, Hint]:
        """The hints in force for ``mt``: its own given ones, else its direction's, else inferred (a role given
        as nothing is left out)."""
        cached = self._cache.get(mt)
        if cached is not None:
            return cached
        out: dict[str, Hint] = {}
        own = self.given.get(mt, {})
        whole = self.given.get(MessageType(mt.direction), {}) if mt.name is not None else {}
        inferred = self.inferred.get(mt, {})
        for role in ROLES:
            h = own.get(role) or whole.get(role)
            if h is None and self.infer and role in inferred:
                h = Hint(inferred[role], "inferred")
            if h is not None and h.field is not None:
                out[role] = h
        self._cache[mt] = out
        return out

    def observe(self, mt: MessageType, value: object) -> None:
        """Count a message of ``mt`` and, for its first :data:`INFER_SAMPLES`, infer the roles it makes obvious."""
        n = self.seen.get(mt, 0)
        self.seen[mt] = n + 1
        if n >= INFER_SAMPLES or not self.infer:
            return
        found = infer_roles(mt.direction, value)
        have = self.inferred.setdefault(mt, {})
        added = False
        for role, f in found.items():
            if role not in have:
                have[role] = f
                added = True
        if added:
            self.inferred_version += 1
            self._cache.pop(mt, None)

    def reset_inference(self) -> None:
        """Forget what was seen and inferred (the store was cleared): given hints stay."""
        self.inferred.clear()
        self.seen.clear()
        self._cache.clear()
        self.inferred_version += 1

    def types(self) -> list[MessageType]:
        """Every type seen, in the order it was first seen (so a row keeps its place when its hints change), then
        the types given hints but not seen yet."""
        return list(self.seen) + [t for t in self.given if t not in self.seen]

    def copy(self) -> Hints:
        h = Hints(type_fields=self.type_fields, infer=self.infer)
        h.given = {mt: dict(r) for mt, r in self.given.items()}
        h.inferred = {mt: dict(r) for mt, r in self.inferred.items()}
        h.seen = dict(self.seen)
        return h

    def describe(self) -> list[tuple[MessageType, str, str, Source]]:
        """(type, role, field, source) of every hint in force, for reports."""
        out = []
        for mt in self.types():
            for role, h in self.roles_for(mt).items():
                assert h.field is not None
                out.append((mt, role, h.field.text, h.source))
        return out

    def to_toml(self, *, include_inferred: bool = True) -> str:
        """A hints file with what is in force (inferred ones too, unless told not to), readable by
        :func:`load_hints`."""
        lines = ["# sockscope lab hints: sockscope --lab-hints THIS_FILE (docs/lab.md)"]
        if self.type_fields != TYPE_FIELDS:
            lines.append("type_field = " + json.dumps(list(self.type_fields), ensure_ascii=False))
        for mt in sorted(set(self.types()), key=lambda t: (t.direction, t.name is not None, t.name or "")):
            body = []
            given = self.given.get(mt, {})
            for role in ROLES:
                h = given.get(role)
                if h is not None:
                    body.append(f"{role} = {h.field.toml() if h.field is not None else json.dumps('')}")
                elif include_inferred and self.infer and role in self.inferred.get(mt, {}):
                    body.append(f"{role} = {self.inferred[mt][role].toml()}  # inferred")
            if body:
                lines += ["", mt.toml_header, *body]
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ the file

_KEY_PART: Final = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*')
_HEADER: Final = re.compile(r"^\s*\[(?!\[)(.*)\]\s*(?:#.*)?$")


def _key_parts(text: str) -> tuple[str, ...] | None:
    parts: list[str] = []
    i = 0
    while True:
        m = _KEY_PART.match(text, i)
        if m is None or m.end() == i:
            return None
        basic, literal, bare = m.groups()
        if basic is not None:
            try:
                parts.append(json.loads(f'"{basic}"'))
            except ValueError:
                parts.append(basic)
        else:
            parts.append(literal if literal is not None else bare)
        i = m.end()
        if i >= len(text):
            return tuple(parts)
        if text[i] != ".":
            return None
        i += 1


def _locate(text: str) -> dict[tuple[str, ...], int]:
    """Line (1-based) of each table header and key in a TOML text, by full key path: good enough to point at the
    line of a mistake tomllib does not see (it checks syntax, not meaning)."""
    where: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h is not None:
            parts = _key_parts(h.group(1))
            if parts is not None:
                table = parts
                where.setdefault(table, n)
            continue
        eq = line.find("=")
        if eq > 0 and not line.lstrip().startswith("#"):
            parts = _key_parts(line[:eq])
            if parts is not None:
                where.setdefault(table + parts, n)
    return where


def parse_hints(text: str, name: str = "<hints>") -> Hints:
    """A :class:`Hints` from a hints file's text; :class:`HintsError` with one line per mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m is not None:
            raise HintsError([f"{name}:{m.group(1)}: not valid TOML: {msg[:m.start()].strip()} "
                              f"(column {m.group(2)})"]) from None
        raise HintsError([f"{name}: not valid TOML: {msg}"]) from None
    where = _locate(text)
    errors: list[str] = []

    def line_of(*key: str) -> int:
        for i in range(len(key), 0, -1):
            if key[:i] in where:
                return where[key[:i]]
        return 1

    def err(key: tuple[str, ...], what: str) -> None:
        errors.append(f"{name}:{line_of(*key)}: {what}")

    type_fields: tuple[str, ...] | None = None
    tf = data.pop("type_field", None)
    if tf is not None:
        if isinstance(tf, str) and tf.strip():
            type_fields = (tf.strip(),)
        elif isinstance(tf, list) and tf and all(isinstance(x, str) and x.strip() for x in tf):
            type_fields = tuple(x.strip() for x in tf)
        else:
            err(("type_field",), "type_field: expected a field name in quotes (\"t\") or a list of them")
    hints = Hints(type_fields=type_fields)
    for key, value in data.items():
        if key not in ("c2s", "s2c"):
            err((key,), f"unknown key {_short(key)}: expected type_field, [c2s...] or [s2c...]")
            continue
        d = Direction.C2S if key == "c2s" else Direction.S2C
        if not isinstance(value, dict):
            err((key,), f"{key}: expected a table ([{key}] or [{key}.TYPE])")
            continue
        for k, v in value.items():
            if isinstance(v, dict):
                mt = MessageType(d, k)
                for role, spec in v.items():
                    if isinstance(spec, dict):
                        err((key, k, role), f"{_where(MessageType(d, k))}: {_short(role)} is a table; message types "
                            "do not nest")
                    else:
                        _role(hints, mt, role, spec, (key, k, role), err)
            else:
                _role(hints, MessageType(d), k, v, (key, k), err)
    if errors:
        raise HintsError(errors)
    hints.version = 0
    return hints


def _where(mt: MessageType) -> str:
    """The type's table header for an error line, its name cut short."""
    if mt.name is not None and len(mt.name) > 40:
        return MessageType(mt.direction, mt.name[:39] + "…").toml_header
    return mt.toml_header


def _role(hints: Hints, mt: MessageType, role: str, spec: object, key: tuple[str, ...],
          err: object) -> None:
    assert callable(err)
    where = _where(mt)
    if role not in ROLES:
        err(key, f"{where}: unknown role {_short(role)} (expected one of {', '.join(ROLES)})")
        return
    if ROLE_DIRECTION[role] is not mt.direction:
        other = ROLE_DIRECTION[role].label
        err(key, f"{where}: {role} is {ROLE_TEXT[role]}: it belongs in [{other}...]")
        return
    if spec == "":
        hints.set(mt, role, None, "file")
        return
    if not isinstance(spec, str | list):
        err(key, f"{where}: {role}: expected a field name in quotes, got {type(spec).__name__}")
        return
    try:
        hints.set(mt, role, FieldRef.parse(spec, point=role in POINT_ROLES), "file")  # type: ignore[arg-type]
    except ValueError as e:
        err(key, f"{where}: {role}: {e}")


MAX_FILE_BYTES: Final = 1 << 20


def load_hints(path: str | Path) -> Hints:
    """Read a hints file; :class:`HintsError` (one line per mistake, ``FILE:LINE: what``) when it is wrong."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise HintsError([f"{p}: {size:,} bytes is too big for a hints file (at most {MAX_FILE_BYTES:,})"])
        raw = p.read_bytes()
    except OSError as e:
        raise HintsError([f"{p}: cannot read: {e.strerror or e}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise HintsError([f"{p}:{line}: not UTF-8 text"]) from None
    return parse_hints(text, str(p))

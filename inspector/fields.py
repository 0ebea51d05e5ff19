"""Field paths into decoded values: the one walk behind filters (``json.pos.x > 3``) and pairing keys (``json.id``).

Role: :func:`resolve` follows a path of steps (names and integers, already parsed by the filter language or by
the timeline's key parser) into a value a decoder produced: dict keys (a name also finds the same key as UTF-8
bytes, as msgpack maps often have, and an integer finds its decimal string key), list and tuple indexes (negative
ones count from the end; a quoted index ``["2"]`` works too), and a safely read pickle's attributes
(:meth:`~inspector.decode.PickleObject.attribute`, with ``class`` and ``module``) or its list items. A step that
does not exist gives :data:`MISSING`, never an exception.
Must not import: Qt, ``inspector.ui``, ``proxy`` (it walks values, nothing else).
Thread: any; pure. The cost is one lookup per step, bounded by the path's length, so rules may use it on the
relay's thread.
"""

from __future__ import annotations

from typing import Final

from inspector.decode import PickleObject

__all__ = ["MISSING", "Path", "resolve"]

Path = tuple[str | int, ...]
"""A parsed field path without its decoder namespace: ``json.pos[0].x`` is ``("pos", 0, "x")``."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()
"""What :func:`resolve` gives for a path that does not exist (distinct from a decoded ``None``)."""

_MAX_INDEX_DIGITS: Final = 18


def resolve(value: object, path: Path) -> object:
    """Follow ``path`` into ``value``; :data:`MISSING` when a step does not exist."""
    for step in path:
        if isinstance(value, dict):
            if step in value:
                value = value[step]
            elif isinstance(step, str) and (key := step.encode("utf-8", "surrogatepass")) in value:
                value = value[key]
            elif isinstance(step, int) and str(step) in value:
                value = value[str(step)]
            else:
                return MISSING
        elif isinstance(value, list | tuple):
            index = step if isinstance(step, int) else _quoted_index(step)
            if index is None or not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        elif isinstance(value, PickleObject):
            if isinstance(step, int):
                if not -len(value.items) <= step < len(value.items):
                    return MISSING
                value = value.items[step]
            else:
                found, value = value.attribute(step)
                if not found:
                    return MISSING
        else:
            return MISSING
    return value


def _quoted_index(step: str) -> int | None:
    """A list index written as a string (``["2"]``, ``["-1"]``): ASCII digits only (``int("²")`` raises) and not
    absurdly long."""
    digits = step[1:] if step.startswith("-") else step
    if 0 < len(digits) <= _MAX_INDEX_DIGITS and digits.isascii() and digits.isdigit():
        return int(step)
    return None

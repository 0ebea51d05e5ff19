"""A safe reader for the Python-literal editable forms (msgpack, pickle, struct values).

Role: turns edited text such as ``{'type': 'move', 'pos': [1, 2.5]}`` back into values. It walks the ``ast``
itself and accepts only literals plus a few named constructors the caller allows (``Ext(...)``,
``frozenset(...)``); nothing is looked up or called otherwise.
Must not import: Qt, or anything from ``proxy``.
Thread: any thread; pure.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

from ._api import EncodeError

_MAX_DEPTH = 200
_NAMES: dict[str, object] = {
    "None": None,
    "True": True,
    "False": False,
    "nan": float("nan"),
    "inf": float("inf"),
    "null": None,
    "true": True,
    "false": False,
}

Constructors = Mapping[str, Callable[..., object]]


def parse_literals(text: str, constructors: Constructors) -> list[object]:
    """Every top-level expression of ``text`` (one or more, each may span lines) as a value."""
    try:
        tree = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise EncodeError(f"not a valid value{where}: {getattr(exc, 'msg', exc)}") from None
    out: list[object] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise EncodeError(f"line {stmt.lineno}: expected a value, not a statement")
        out.append(literal_value(stmt.value, constructors))
    return out


def parse_literal(text: str, constructors: Constructors) -> object:
    """Exactly one value."""
    values = parse_literals(text, constructors)
    if len(values) != 1:
        raise EncodeError(f"expected one value, found {len(values)}")
    return values[0]


def literal_value(node: ast.expr, constructors: Constructors, depth: int = 0) -> object:
    try:
        return _eval(node, constructors, depth)
    except EncodeError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise EncodeError(f"line {getattr(node, 'lineno', '?')}: {exc}") from None


def _eval(node: ast.expr, ctors: Constructors, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise EncodeError("value nested too deeply")
    d = depth + 1
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str | bytes | int | float | bool) or node.value is None:
            return node.value
    elif isinstance(node, ast.List):
        return [_eval(e, ctors, d) for e in node.elts]
    elif isinstance(node, ast.Tuple):
        return tuple(_eval(e, ctors, d) for e in node.elts)
    elif isinstance(node, ast.Set):
        return {_eval(e, ctors, d) for e in node.elts}
    elif isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                break  # ``**x`` unpacking: reported below
            out[_eval(k, ctors, d)] = _eval(v, ctors, d)
        else:
            return out
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _eval(node.operand, ctors, d)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.Name):
        if node.id in _NAMES:
            return _NAMES[node.id]
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ctors:
        args = [_eval(a, ctors, d) for a in node.args if not isinstance(a, ast.Starred)]
        kwargs = {k.arg: _eval(k.value, ctors, d) for k in node.keywords if k.arg is not None}
        if len(args) == len(node.args) and len(kwargs) == len(node.keywords):
            return ctors[node.func.id](*args, **kwargs)
    allowed = ", ".join(sorted(ctors)) or "none"
    raise EncodeError(
        f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)[:60]!r} is not a literal value "
        f"(allowed: numbers, strings, b'bytes', lists, tuples, dicts, sets, None/True/False; calls: {allowed})"
    )

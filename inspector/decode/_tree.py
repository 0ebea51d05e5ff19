"""Builds :class:`Field` trees from decoded Python values, within a node budget.

Role: shared by the JSON, msgpack, pickle and struct decoders, so every tree is bounded the same way (a node cap,
a depth cap, cycles shown once). The work is proportional to the nodes made, whatever the value: children are
taken lazily (a list holding itself 14,000 times costs 2,000 nodes, not 2,000 times 14,000), and a node whose
value is not expanded is rendered within a small character budget.
Must not import: Qt, or anything from ``proxy``.
Thread: any thread; pure.
"""

from __future__ import annotations

from ._api import Field
from ._render import MAX_DEPTH, NODE_REPR, TreeBudget, iter_children, render, short_repr

CYCLE = "<cycle>"


def value_field(
    name: str,
    value: object,
    budget: TreeBudget,
    start: int | None = None,
    end: int | None = None,
    _depth: int = 0,
    _active: frozenset[int] = frozenset(),
) -> Field | None:
    """A node for ``value`` and its children, or None when the budget is spent."""
    if not budget.take():
        return None
    if id(value) in _active:  # a cycle back to an ancestor (shown above): before asking for its children
        return Field(name, CYCLE, start, end)
    kids = iter_children(value)
    if kids is None or not kids[1]:
        return Field(name, short_repr(value, NODE_REPR), start, end)
    if _depth >= MAX_DEPTH:
        budget.truncated = True
        return Field(name, render(value, NODE_REPR)[0], start, end)
    active = _active | {id(value)}
    children: list[Field] = []
    for child_name, child in kids[0]:
        node = value_field(child_name, child, budget, None, None, _depth + 1, active)
        if node is None:
            break
        children.append(node)
    return Field(name, _summary(value, children, kids[1]), start, end, tuple(children))


def _summary(value: object, children: list[Field], total: int) -> str:
    """A container's one-line value built from its children's, so nothing is rendered twice."""
    if isinstance(value, dict):
        inner = ", ".join(f"{c.name}: {c.value_repr}" for c in children[:12])
        opening, closing = "{", "}"
    elif isinstance(value, list | tuple | set | frozenset):
        inner = ", ".join(c.value_repr for c in children[:12])
        opening, closing = (
            ("[", "]") if isinstance(value, list) else ("(", ")") if isinstance(value, tuple) else ("{", "}")
        )
    else:
        return render(value, NODE_REPR)[0]
    if len(children) < total:
        inner += ", …"
    text = opening + inner + closing
    return text if len(text) <= NODE_REPR else text[: NODE_REPR - 1] + "…"

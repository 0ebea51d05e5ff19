"""Dict keys and set members from hostile bytes, hashed only when that costs what their bytes are worth.

Role: a Python dict or set hashes every key it takes and compares it with every key of the same hash. Both can
cost far more than the bytes that describe the key: a tuple reused 40 levels deep through a pickle's memo is 200
bytes and hashes 2**40 nodes (tuples do not cache their hash); thousands of ints, tuples or msgpack timestamps
crafted to share one hash make each insertion compare with all the others (quadratic). :class:`KeyGuard` charges
each key its hashing cost against a budget set from the input's size and counts keys of equal hash per
container; a key over either limit is stored as an :class:`IdentityKey`, hashed and compared by identity, which
renders as the key it wraps. Strings, bytes and small ints pass untouched: their hashes are cheap, cached or
unique, and (str, bytes) salted per process, so they cannot be made to collide; floats can share a hash only a
handful at a time.
Must not import: Qt, or anything from ``proxy``.
Thread: any thread; one guard belongs to one decode.
"""

from __future__ import annotations

from ._render import Renderable, Renderer

MAX_SAME_HASH = 8
"""Most keys of one container that may share a hash before the next ones are kept by identity."""
_SMALL = 1 << 60
"""Ints below this hash to themselves: distinct ones never collide (but -1 and -2)."""
_PY_HASHED_COST = 16
"""Charged for a key whose hash and equality run Python code (msgpack's Timestamp): about 16 C-level nodes."""


class IdentityKey(Renderable):
    """A key or member kept by identity, because hashing or comparing it by value would cost too much.

    Two equal keys kept this way are two entries (a real ``pickle.loads`` would merge them); the decoders say so
    in a warning. Renders as the wrapped value."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def render_into(self, r: Renderer, depth: int) -> None:
        r.value(self.value, depth)


class KeyGuard:
    """Admits keys into dicts and sets of one decode within a hashing budget (see the module docstring)."""

    __slots__ = ("_containers", "_costs", "kept", "left")

    def __init__(self, budget: int) -> None:
        self.left = budget
        """Hashing work still allowed, in nodes visited."""
        self.kept = 0
        """Keys kept by identity so far."""
        self._costs: dict[int, tuple[object, int]] = {}
        """id -> (tuple, hashing cost): each tuple is costed once; holding it keeps its id from being reused."""
        self._containers: dict[int, tuple[object, dict[int, int]]] = {}
        """id(container) -> (container, {hash: keys with that hash}) for keys whose hash a sender can choose."""

    def admit(self, container: object, key: object) -> object:
        """``key``, or an :class:`IdentityKey` for it, to store in ``container`` (a dict, a set, or any object
        standing for a container still being built). Raises TypeError for an unhashable key, as Python would."""
        t = type(key)
        if t is str or t is bytes or key is None or t is bool or t is float or (t is int and -_SMALL < key < _SMALL):  # type: ignore[operator]
            return key  # floats: a hash value is shared by a handful of floats at most
        cost = self.cost(key)
        if cost > self.left:
            self.kept += 1
            return IdentityKey(key)
        entry = self._containers.get(id(container))
        if entry is None:
            entry = self._containers[id(container)] = (container, {})
        counts = entry[1]
        h = hash(key)  # within budget: cost was checked
        same = counts.get(h, 0)
        if same >= MAX_SAME_HASH:
            self.kept += 1
            return IdentityKey(key)
        counts[h] = same + 1
        # our hash, the container's own hash, and up to ``same`` comparisons, each bounded by this key's cost
        self.left -= cost * (same + 2)
        return key

    def cost(self, key: object) -> int:
        """Nodes visited by ``hash(key)`` (at most one past the budget); TypeError for an unhashable key."""
        t = type(key)
        if t is str or t is bytes or t is float or key is None or t is bool or isinstance(key, Renderable):
            return 1
        if t is int:
            return 1 + int.bit_length(key) // 64  # type: ignore[arg-type]
        if t is frozenset:
            return 1 + len(key)  # type: ignore[arg-type]  # hashed from its members' stored hashes, then cached
        if isinstance(key, tuple):  # tuples, msgpack's ExtType
            hit = self._costs.get(id(key))
            return hit[1] if hit is not None else self._tuple_cost(key)
        if hasattr(key, "seconds") and hasattr(key, "nanoseconds") and type(key).__hash__ is not None:
            return _PY_HASHED_COST  # msgpack Timestamp: hash((seconds, nanoseconds)) in Python
        if type(key).__hash__ is None:
            raise TypeError(f"unhashable type: {t.__name__!r}")
        return _PY_HASHED_COST

    def _tuple_cost(self, root: tuple[object, ...]) -> int:
        """Cost of hashing ``root``: every element, every time it appears (no sharing). Iterative, each tuple
        costed once, so this is linear in the distinct tuples however deep or shared they are."""
        costs = self._costs
        cap = self.left + 1
        stack: list[tuple[object, ...]] = [root]
        while stack:
            node = stack[-1]
            if id(node) in costs:
                stack.pop()
                continue
            pending = [x for x in node if isinstance(x, tuple) and id(x) not in costs]
            if pending:
                stack.extend(pending)  # type: ignore[arg-type]
                continue
            stack.pop()
            total = 1
            for x in node:
                if isinstance(x, tuple):
                    total += costs[id(x)][1]
                else:
                    total += self.cost(x)
                if total > cap:
                    total = cap
                    break
            costs[id(node)] = (node, total)
        return costs[id(root)][1]

"""Safe pickle reader: simulates the pickle VM over ``pickletools.genops`` and never runs the pickle.

Role: shows what ``pickle.dumps(obj)`` sent (protocols 0 to 5). Plain values (None, bool, int, float, str,
bytes, bytearray, list, tuple, dict, set, frozenset) are rebuilt; everything the real unpickler would import or
call (GLOBAL, STACK_GLOBAL, REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, persistent ids, extension codes) becomes an
inert stand-in that names the class or callable, e.g. ``Game(game) {'score': 3}`` or
``⚠ would call os.system('touch /tmp/x')``. Nothing is imported, looked up or called: the only code that runs is
this module's. ``pickle.dumps`` is used to re-encode edited plain values; loading is banned in ``inspector/``.
The work is bounded by the input's size, whatever the pickle: at most :data:`MAX_OPS` opcodes; dict keys and set
members are hashed within a budget (:class:`~inspector.decode._keys.KeyGuard`; a memo can make a 200-byte key
hash 2**40 nodes); the exact ``repr`` (the editable form) only of values whose tree, shared parts counted each
time, is small; everything else rendered within a character budget. ``DecodeContext.deadline_ns`` is checked
every 256 opcodes.
Must not import: Qt, or anything from ``proxy`` except ``proxy.model``.
Thread: any thread; pure.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import pickletools
import re
import struct
from collections.abc import Iterator
from time import monotonic_ns
from typing import Any

from ._api import (
    MAX_DUMP,
    MAX_NODES,
    MAX_PARSE,
    DecodeContext,
    EncodeError,
    Field,
    View,
    clip,
    error_view,
    gave_up_view,
)
from ._keys import KeyGuard
from ._literal import parse_literal
from ._render import Renderable, Renderer, TreeBudget, render, short_repr
from ._tree import value_field

NAME = "pickle"
MAX_OPS = 30_000
"""Most opcodes simulated per message; each costs a few microseconds in pure Python."""
MAX_EXACT_NODES = 100_000
"""Most nodes (shared parts counted each time they appear) of a value shown with its exact ``repr``."""
MAX_DISASSEMBLY = 300
CHECK_EVERY = 256
"""Opcodes between two looks at the deadline: a few hundred microseconds at most."""
MAX_PROBE_OPS = 1000
"""Opcodes the confidence check of a protocol 0/1 pickle simulates: enough to tell a pickle from text."""
MAX_MEMO_INDEX = 1 << 63
"""The standard unpickler refuses PUT/GET indexes from here on; big ones could be made to collide in the memo."""

# Loading a pickle that names any of these runs code of the sender's choosing.
DANGEROUS_MODULES = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pty", "importlib", "runpy", "code",
        "codeop", "ctypes", "pickle", "_pickle", "marshal", "webbrowser", "commands", "popen2", "platform",
        "multiprocessing", "threading", "_thread", "signal", "asyncio", "pdb", "bdb", "timeit", "tempfile",
        "io", "_io", "operator", "functools", "types", "inspect", "gc", "ssl", "http", "urllib", "ftplib",
        "smtplib", "telnetlib", "sqlite3", "shelve", "dbm", "glob", "pathlib", "zipimport", "imp", "pkgutil",
        "site", "distutils", "setuptools", "pip", "posixpath", "ntpath", "fcntl", "resource", "select",
        "selectors", "mmap", "readline", "rlcompleter", "cProfile", "profile", "trace", "doctest", "unittest",
        "uuid", "zipfile", "tarfile", "logging", "sysconfig", "venv", "ensurepip", "linecache",
    }
)  # fmt: skip
SAFE_BUILTINS = frozenset(
    {"set", "frozenset", "bytearray", "bytes", "list", "dict", "tuple", "int", "float", "str", "bool",
     "complex", "object", "slice", "range", "NoneType", "Ellipsis", "NotImplemented"}
)  # fmt: skip
_BUILTINS = ("builtins", "__builtin__")
_COPYREG = ("copyreg", "copy_reg")
_PROTOCOL_HEADER = re.compile(r"\A#\s*pickle protocol\s+(\d+)[^\n]*(?:\n|\Z)")
_CTORS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "OrderedDict": collections.OrderedDict}
_PUSH_ARG = frozenset(
    {
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
        "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
    }
)  # fmt: skip
# pickletools' messages when the bytes end before the pickle does.
_RAN_OUT = ("exhausted before seeing STOP", "but only", "no newline found")
_PUSH_CONST: dict[str, object] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}


class PickleReadError(Exception):
    """The bytes are not a pickle the reader can follow (its message says where)."""


class _GaveUp(Exception):
    """The decode's deadline passed; the message says where the reader was."""


_NO_KEYS = KeyGuard(0)
"""Stands for the guard of a pickle the fast reader took (its keys were checked there): never admits anything."""


def key_budget(size: int) -> int:
    """Hashing work allowed for the dict keys and set members of a pickle of ``size`` bytes."""
    return 16 * size + 4096


def exact_budget(size: int) -> tuple[int, int]:
    """(nodes, characters) a pickle of ``size`` bytes may make its exact ``repr`` walk and write."""
    return min(MAX_EXACT_NODES, 2 * size + 1024), 8 * size + (64 << 10)


class PickleGlobal(Renderable):
    """A reference to ``module.name``, as GLOBAL/STACK_GLOBAL/INST name it. Never resolved."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def dangerous(self) -> bool:
        if self.module in _BUILTINS:
            return self.name not in SAFE_BUILTINS
        return self.module.partition(".")[0] in DANGEROUS_MODULES

    @property
    def display(self) -> str:
        # os.system is pickled as posix.system (nt.system on Windows): show the name people write.
        module = "os" if self.module in ("posix", "nt") else self.module
        return f"{module}.{self.name}"

    def render_into(self, r: Renderer, depth: int) -> None:
        r.write(self.display)

    def __repr__(self) -> str:
        return self.display


class PickleExtension(Renderable):
    """A class named by a code in the sender's ``copyreg`` extension registry (EXT1/EXT2/EXT4)."""

    __slots__ = ("code",)
    dangerous = True  # what the code stands for is unknowable here

    def __init__(self, code: int) -> None:
        self.code = code

    def render_into(self, r: Renderer, depth: int) -> None:
        r.write(f"<extension code {self.code}>")


class PicklePersistent(Renderable):
    """An object the sender stored out of band (PERSID/BINPERSID); only its ``persistent_load`` knows it."""

    __slots__ = ("pid",)

    def __init__(self, pid: object) -> None:
        self.pid = pid

    def render_into(self, r: Renderer, depth: int) -> None:
        r.write("persistent_id(")
        r.value(self.pid, depth)
        r.write(")")


class PickleBuffer(Renderable):
    """An out-of-band buffer (protocol 5 NEXT_BUFFER) that was not sent in the stream."""

    __slots__ = ()

    def render_into(self, r: Renderer, depth: int) -> None:
        r.write("<out-of-band buffer>")


class PickleObject(Renderable):
    """What loading would create by calling ``func``: an instance of a class, or the result of a call."""

    __slots__ = ("args", "func", "is_instance", "items", "kwargs", "setitems", "state")

    def __init__(
        self, func: object, args: tuple[Any, ...], *, is_instance: bool, kwargs: dict[Any, Any] | None = None
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_instance = is_instance
        """True for class instantiation (NEWOBJ, INST, OBJ, copyreg), False for a REDUCE call."""
        self.state: object = None
        self.items: list[Any] = []
        self.setitems: list[tuple[Any, Any]] = []

    @property
    def dangerous(self) -> bool:
        return bool(getattr(self.func, "dangerous", False))

    @property
    def class_name(self) -> str:
        f = self.func
        return f.name if isinstance(f, PickleGlobal) else "?"

    @property
    def module(self) -> str:
        f = self.func
        return f.module if isinstance(f, PickleGlobal) else "?"

    def attribute(self, name: str) -> tuple[bool, object]:
        """Look ``name`` up in the pickled state (``__dict__`` then slots), as a filter path would."""
        if name == "class":
            return True, self.class_name
        if name == "module":
            return True, self.module
        state = self.state
        dicts = [state] if isinstance(state, dict) else list(state) if isinstance(state, tuple) else []
        for d in dicts:
            if isinstance(d, dict) and name in d:
                return True, d[name]
        if self.kwargs and name in self.kwargs:
            return True, self.kwargs[name]
        return False, None

    def call_text(self, limit: int = 200) -> str:
        r = Renderer(limit)
        try:
            self._call(r, 0)
        except Exception:  # Full, or anything odd in a hostile value: the prefix is what we show
            return r.text()[:limit] + "…"
        return r.text()

    def _call(self, r: Renderer, depth: int) -> None:
        r.value(self.func, depth)
        r.write("(")
        r.items(self.args, depth)
        if self.kwargs:
            for k, v in self.kwargs.items():
                r.write(", " if self.args else "")
                r.write(f"{k}=" if isinstance(k, str) else "**")
                r.value(v, depth)
        r.write(")")

    def render_into(self, r: Renderer, depth: int) -> None:
        if self.is_instance:
            r.write(f"{self.class_name}({self.module})")
            if self.args or self.kwargs:
                r.write(" args=")
                r.value(self.args, depth)
                if self.kwargs:
                    r.write(" kwargs=")
                    r.value(self.kwargs, depth)
        else:
            self._call(r, depth)
        if isinstance(self.state, dict):
            r.write(" ")
            r.dict_body(self.state, depth)
        elif self.state is not None:
            r.write(" state=")
            r.value(self.state, depth)
        if self.items:
            r.write(" items=")
            r.value(self.items, depth)
        if self.setitems:
            r.write(" items={")
            for i, (k, v) in enumerate(self.setitems):
                r.write(", " if i else "")
                r.value(k, depth)
                r.write(": ")
                r.value(v, depth)
            r.write("}")

    def iter_children(self) -> tuple[Iterator[tuple[str, object]], int]:
        """The fields of the tree under this object, lazily (they can be many), and how many there are."""
        state = self.state
        dicts: list[dict[Any, Any]] = []
        other: list[tuple[str, object]] = []
        if self.args:
            other.append(("args", self.args))
        if self.kwargs:
            other.append(("kwargs", self.kwargs))
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slots) from __reduce_ex__
            dicts = [part for part in state if isinstance(part, dict)]
        elif isinstance(state, dict):
            dicts = [state]
        elif state is not None:
            other.append(("state", state))
        total = len(other) + sum(map(len, dicts)) + len(self.items) + len(self.setitems)

        def gen() -> Iterator[tuple[str, object]]:
            yield from other
            for d in dicts:
                for k, v in d.items():
                    yield (k if isinstance(k, str) else render(k, 60)[0]), v
            for i, v in enumerate(self.items):
                yield f"[{i}]", v
            for k, v in self.setitems:
                yield render(k, 60)[0], v

        return gen(), total


class _Simulation:
    """The pickle VM's stack, mark stack and memo, with inert stand-ins for every import and call."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.protocol: int | None = None
        self.max_op_proto = 0
        self.objects: list[PickleObject] = []
        self.persistent = 0
        self.extensions: list[int] = []
        self.modules: list[str] = []
        self._module_set: set[str] = set()
        self.shared = False
        self.ops: list[tuple[int, str, object]] = []
        self.stopped = False
        self.incomplete: str | None = None
        self.pos = 0
        self.small_tree = False
        """Set by the fast reader: the value is a tree of at most 200 plain nodes (no memo read, so nothing is
        shared and nothing cycles), which makes ``_is_plain`` true without walking it."""
        self.op_count = 0
        """Opcodes read, STOP included (set when the pickle stopped)."""
        self.keys = _NO_KEYS
        """Admits dict keys and set members (the opcode-by-opcode path makes one sized for the pickle)."""
        self.copy_left = 0
        """Items the simulation may still copy out of call arguments (``run`` sets it from the pickle's size):
        an argument shared through the memo is a reference each time, but rebuilding ``set(arg)`` copies it."""
        self.not_rebuilt = 0
        """Calls of known harmless patterns left as calls because their arguments would cost too much to copy."""
        self.deadline_ns: int | None = None

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise PickleReadError("no MARK on the stack")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def top(self) -> Any:
        if not self.stack:
            raise PickleReadError("stack is empty")
        return self.stack[-1]

    def pop(self) -> Any:
        if not self.stack:
            raise PickleReadError("stack is empty")
        return self.stack.pop()

    def run(self, data: bytes, *, fast: bool = True, listing: bool = True, deadline_ns: int | None = None,
            max_ops: int = MAX_OPS) -> tuple[object, bool]:
        """The value the pickle would return, and whether the op cap stopped the simulation.

        A pickle cut short (the rest is in the next message) gives its partial value and sets ``incomplete``.
        ``fast`` False always takes the opcode-by-opcode path (tests compare the two). ``listing`` False lets the
        fast path leave ``ops`` (the disassembly) empty; ``op_count`` and ``pos`` are kept either way.
        Raises ``_GaveUp`` when ``deadline_ns`` (a ``time.monotonic_ns()`` value) passes.
        """
        self.deadline_ns = deadline_ns
        plain = _run_plain(data, listing, deadline_ns) if fast else None
        if plain is not None:
            value, self.ops, self.protocol, self.max_op_proto, self.shared, self.pos, self.small_tree, \
                self.op_count = plain
            self.stopped = True
            return value, False
        self.keys = KeyGuard(key_budget(len(data)))
        self.copy_left = 2 * len(data) + 4096  # each argument rebuilt once: at most the pickle's size
        try:
            for count, (opcode, arg, pos) in enumerate(pickletools.genops(data)):
                if count >= max_ops:
                    return self.partial(), True
                if count & (CHECK_EVERY - 1) == CHECK_EVERY - 1 and deadline_ns is not None \
                        and monotonic_ns() > deadline_ns:
                    raise _GaveUp(f"the deadline passed after {count} opcodes (byte {pos} of {len(data)})")
                self.pos = pos if pos is not None else 0
                name = opcode.name
                if count < MAX_DISASSEMBLY:
                    self.ops.append((self.pos, name, arg))
                if opcode.proto > self.max_op_proto:
                    self.max_op_proto = opcode.proto
                if name == "STOP":
                    self.stopped = True
                    self.op_count = count + 1
                    return self.pop(), False
                self.step(name, arg)
        except ValueError as exc:
            if not any(s in str(exc) for s in _RAN_OUT):
                raise
            self.incomplete = str(exc)
            return self.partial(), False
        self.incomplete = "no STOP opcode"
        return self.partial(), False

    def partial(self) -> object:
        bottom = self.metastack[0] if self.metastack else self.stack
        return bottom[0] if bottom else None

    def pending(self) -> list[Any]:
        """Values read but not yet placed in the partial value (they wait for a SETITEMS/APPENDS)."""
        frames = [*self.metastack, self.stack]
        return [v for frame in frames for v in frame][1:]

    def step(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _PUSH_CONST:
            stack.append(_PUSH_CONST[name])
        elif name in ("BINPUT", "PUT", "LONG_BINPUT"):
            if not 0 <= arg < MAX_MEMO_INDEX:
                raise PickleReadError(f"memo index {arg} out of range")
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in ("BINGET", "GET", "LONG_BINGET"):
            if not 0 <= arg < MAX_MEMO_INDEX or arg not in self.memo:
                raise PickleReadError(f"memo key {arg} was never stored")
            value = self.memo[arg]
            if isinstance(value, list | dict | set | bytearray | PickleObject):
                self.shared = True
            stack.append(value)
        elif name == "MARK":
            self.metastack.append(stack)
            self.stack = []
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_SET":
            stack.append(set())
        elif name == "APPEND":
            value = self.pop()
            self._extend(self.top(), [value])
        elif name == "APPENDS":
            items = self.pop_mark()
            self._extend(self.top(), items)
        elif name == "LIST":
            items = self.pop_mark()  # before touching self.stack: pop_mark replaces it
            self.stack.append(items)
        elif name == "TUPLE":
            items = self.pop_mark()
            self.stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise PickleReadError(f"{name} needs {n} items on the stack")
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "DICT":
            items = self.pop_mark()
            self.stack.append(self._pairs_dict(items))
        elif name == "SETITEM":
            value = self.pop()
            key = self.pop()
            self._setitems(self.top(), [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self._setitems(self.top(), items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.top()
            if isinstance(target, set):
                target.update(self._members(target, items))
            elif isinstance(target, PickleObject):
                target.items.extend(items)
            else:
                raise PickleReadError(f"ADDITEMS to {type(target).__name__}")
        elif name == "FROZENSET":
            items = self.pop_mark()
            self.stack.append(frozenset(self._members(items, items)))
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(self.top())
        elif name == "GLOBAL":
            module, _, qualname = str(arg).partition(" ")
            stack.append(self._global(module, qualname))
        elif name == "STACK_GLOBAL":
            qualname = self.pop()
            module = self.pop()
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise PickleReadError("STACK_GLOBAL needs two strings")
            stack.append(self._global(module, qualname))
        elif name in ("EXT1", "EXT2", "EXT4"):
            self.extensions.append(int(arg))
            stack.append(PickleExtension(int(arg)))
        elif name == "PERSID":
            self.persistent += 1
            stack.append(PicklePersistent(arg))
        elif name == "BINPERSID":
            self.persistent += 1
            stack.append(PicklePersistent(self.pop()))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            if not isinstance(args, tuple):
                raise PickleReadError("REDUCE arguments are not a tuple")
            stack.append(self._reduce(func, args))
        elif name == "NEWOBJ":
            args = self.pop()
            cls = self.pop()
            stack.append(self._new(cls, self._args(args), None))
        elif name == "NEWOBJ_EX":
            kwargs = self.pop()
            args = self.pop()
            cls = self.pop()
            stack.append(self._new(cls, self._args(args), kwargs))
        elif name == "INST":
            module, _, qualname = str(arg).partition(" ")
            args = self.pop_mark()
            self.stack.append(self._new(self._global(module, qualname), tuple(args), None))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleReadError("OBJ without a class")
            self.stack.append(self._new(items[0], tuple(items[1:]), None))
        elif name == "BUILD":
            state = self.pop()
            target = self.top()
            if not isinstance(target, PickleObject):
                raise PickleReadError(f"BUILD on {type(target).__name__}")
            target.state = state
        elif name == "PROTO":
            self.protocol = int(arg)
        elif name == "NEXT_BUFFER":
            stack.append(PickleBuffer())
        elif name in ("FRAME", "READONLY_BUFFER"):
            pass
        else:
            raise PickleReadError(f"unsupported opcode {name}")

    def _extend(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, PickleObject):
            target.items.extend(items)
        else:
            raise PickleReadError(f"APPEND to {type(target).__name__}")

    def _pairs_dict(self, items: list[Any]) -> dict[Any, Any]:
        if len(items) % 2:
            raise PickleReadError("odd number of items for a dict")
        out: dict[Any, Any] = {}
        self._setitems(out, items)
        return out

    def _key(self, container: object, key: object) -> object:
        try:
            return self.keys.admit(container, key)
        except TypeError as exc:  # what loading would raise too
            raise PickleReadError(f"a dict key or set member is {exc}") from None

    def _members(self, container: object, items: list[Any]) -> list[Any]:
        key = self._key
        return [key(container, x) for x in items]

    def _setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleReadError("odd number of items for SETITEMS")
        if isinstance(target, dict):
            key = self._key
            for i in range(0, len(items), 2):
                target[key(target, items[i])] = items[i + 1]
        elif isinstance(target, PickleObject):
            target.setitems.extend(zip(items[::2], items[1::2], strict=True))
        else:
            raise PickleReadError(f"SETITEM on {type(target).__name__}")

    def _global(self, module: str, qualname: str) -> PickleGlobal:
        if self.protocol is None or self.protocol < 3:
            # The Python 2 names pickle writes below protocol 3 (``__builtin__``, ``commands``), mapped the way
            # the standard loader's find_class maps them, so the view names what loading would really use.
            if (module, qualname) in _compat_pickle.NAME_MAPPING:
                module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if module not in self._module_set:
            self._module_set.add(module)
            self.modules.append(module)
        return PickleGlobal(module, qualname)

    def _afford(self, n: int) -> bool:
        """Whether copying ``n`` more items fits the budget (then they are charged)."""
        if n > self.copy_left:
            return False
        self.copy_left -= n
        return True

    def _args(self, args: object) -> tuple[Any, ...]:
        """NEWOBJ's arguments as a tuple: a list is copied, within the budget (else it stays one argument)."""
        if isinstance(args, tuple):
            return args
        if isinstance(args, list) and self._afford(len(args)):
            return tuple(args)
        return (args,)

    def _new(self, cls: object, args: tuple[Any, ...], kwargs: object) -> PickleObject:
        obj = PickleObject(cls, args, is_instance=True, kwargs=kwargs if isinstance(kwargs, dict) else None)
        self.objects.append(obj)
        return obj

    def _reduce(self, func: object, args: tuple[Any, ...]) -> object:
        """A few harmless library patterns become plain values; every other call stays a stand-in. Rebuilding
        copies the arguments, which the memo can share thousands of times: past the copy budget, a call of a
        known pattern stays a call too."""
        if isinstance(func, PickleGlobal) and _rebuildable(func) and self._affords_rebuild(args):
            m, n = func.module, func.name
            if m in _BUILTINS:
                if n in ("set", "frozenset") and len(args) <= 1 and all(isinstance(a, list | tuple) for a in args):
                    members = list(args[0]) if args else []
                    return (set if n == "set" else frozenset)(self._members(members, members))
                if n in ("bytes", "bytearray"):
                    raw = _latin1_bytes(args)
                    if raw is not None:
                        return raw if n == "bytes" else bytearray(raw)
            elif m == "_codecs" and n == "encode":
                raw = _latin1_bytes(args)
                if raw is not None:
                    return raw
            elif m == "collections" and n == "OrderedDict":
                if not args:
                    return collections.OrderedDict()
                if (
                    len(args) == 1
                    and isinstance(args[0], list)
                    and all(isinstance(p, tuple | list) and len(p) == 2 for p in args[0])
                ):
                    od: collections.OrderedDict[Any, Any] = collections.OrderedDict()
                    for p in args[0]:
                        od[self._key(od, p[0])] = p[1]
                    return od
            elif m in _COPYREG and args:
                if n == "_reconstructor" and len(args) == 3:
                    base = args[1]
                    is_object = isinstance(base, PickleGlobal) and base.module in _BUILTINS and base.name == "object"
                    extra: tuple[Any, ...] = () if is_object and args[2] is None else args[1:]
                    return self._new(args[0], extra, None)
                if n == "__newobj__":
                    return self._new(args[0], tuple(args[1:]), None)
                if n == "__newobj_ex__" and len(args) == 3:
                    return self._new(args[0], self._args(args[1]) if isinstance(args[1], tuple | list) else (),
                                     args[2])
        obj = PickleObject(func, args, is_instance=False)
        self.objects.append(obj)
        return obj

    def _affords_rebuild(self, args: tuple[Any, ...]) -> bool:
        """Whether a call whose pattern may be rebuilt (``set(list)``, ``bytes(str, 'latin1')`` ...) may copy its
        arguments: charged as its first argument's length, or refused (counted) past the budget."""
        first = args[0] if args else None
        size = len(args) + (len(first) if isinstance(first, list | tuple | str | bytes | bytearray) else 0)
        if self._afford(size):
            return True
        self.not_rebuilt += 1
        return False


def _rebuildable(func: PickleGlobal) -> bool:
    """Whether a call of ``func`` is one of the patterns ``_reduce`` turns into a plain value or an object."""
    m, n = func.module, func.name
    return (m in _BUILTINS and n in ("set", "frozenset", "bytes", "bytearray")) or m in _COPYREG or (
        (m, n) in (("_codecs", "encode"), ("collections", "OrderedDict")))


_U4 = struct.Struct("<I")
_U8 = struct.Struct("<Q")
_FIXED_ARGS = {0x4D: struct.Struct("<H"), 0x4A: struct.Struct("<i"), 0x47: struct.Struct(">d")}
"""BININT2, BININT, BINFLOAT: fixed-size arguments, read as pickletools reads them."""
_SIZED_ARGS = {0x8C: (1, True), 0x43: (1, False), 0x58: (4, True), 0x42: (4, False)}
"""SHORT_BINUNICODE, SHORT_BINBYTES, BINUNICODE, BINBYTES: (width of the length, whether it is UTF-8 text)."""
_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}
_PROTOS = bytes(next((op.proto for op in pickletools.opcodes if op.code.encode("latin-1")[0] == c), 0)
                for c in range(256))
_SHARED = (list, dict, set, bytearray)


def _run_plain(
    data: bytes, listing: bool = True, deadline_ns: int | None = None
) -> tuple[object, list[tuple[int, str, object]], int, int, bool, int, bool, int] | None:
    """The simulation of a complete protocol 2-5 pickle of plain values (dicts, lists, tuples, sets, strings,
    bytes, numbers: what games send), in one tight loop; None for anything else, which ``_Simulation`` then
    reads opcode by opcode through pickletools (globals, calls, old protocols, cut or broken pickles). Gives
    what that path would give: (value, ops, protocol, max_op_proto, shared, pos of STOP), and whether the value
    is a small tree (see ``_Simulation.small_tree``), and the opcode count; a test compares them. ``listing``
    False leaves the ops list empty (summaries do not show the disassembly). Only keys and set members whose hash
    is cheap and cannot be made to collide (str, bytes, floats, small ints, None, bools) are stored without a look;
    others (tuples, big ints) pass the same :class:`KeyGuard` as in the full reader, and when it would keep one by
    identity the pickle goes to the full reader. Raises ``_GaveUp`` when ``deadline_ns`` passes.
    """
    n = len(data)
    if n < 3 or data[0] != 0x80:
        return None
    stack: list[Any] = []
    metastack: list[list[Any]] = []
    memo: dict[int, Any] = {}
    ops: list[tuple[int, str, object]] = []
    protocol = -1
    max_proto = 0
    shared = False
    pos = 0
    ops_seen = 0
    check_at = CHECK_EVERY - 1
    gets = 0
    guard: list[KeyGuard] = []  # made at the first key that needs one
    try:
        while pos < n:
            code = data[pos]
            proto = _PROTOS[code]
            start = pos
            pos += 1
            arg: Any = None
            if code in _SIZED_ARGS:  # [SHORT_]BINUNICODE, [SHORT_]BINBYTES: a length, then the bytes
                width, text = _SIZED_ARGS[code]
                first = pos + width
                end = first + (data[pos] if width == 1 else _U4.unpack_from(data, pos)[0])
                if end > n:
                    return None
                arg = str(data[first:end], "utf-8", "surrogatepass") if text else data[first:end]
                pos = end
                stack.append(arg)
            elif code == 0x94:  # MEMOIZE
                memo[len(memo)] = stack[-1]
            elif code == 0x4B:  # BININT1
                arg = data[pos]
                pos += 1
                stack.append(arg)
            elif code in _FIXED_ARGS:  # BININT2, BININT, BINFLOAT
                fmt = _FIXED_ARGS[code]
                arg = fmt.unpack_from(data, pos)[0]
                pos += fmt.size
                stack.append(arg)
            elif code == 0x28:  # MARK
                metastack.append(stack)
                stack = []
            elif code == 0x75 or code == 0x65 or code == 0x74 or code == 0x6C or code == 0x64 or code == 0x90 \
                    or code == 0x91:  # SETITEMS APPENDS TUPLE LIST DICT ADDITEMS FROZENSET: mark-based
                items = stack
                stack = metastack.pop()
                if code == 0x75:
                    target = stack[-1]
                    if type(target) is not dict or len(items) % 2:
                        return None
                    if _costly(guard, n, target, items[::2]):
                        return None
                    for i in range(0, len(items), 2):
                        target[items[i]] = items[i + 1]
                elif code == 0x65:
                    target = stack[-1]
                    if type(target) is not list:
                        return None
                    target.extend(items)
                elif code == 0x74:
                    stack.append(tuple(items))
                elif code == 0x6C:
                    stack.append(items)
                elif code == 0x64:
                    if len(items) % 2 or _costly(guard, n, items, items[::2]):
                        return None
                    stack.append(dict(zip(items[::2], items[1::2], strict=True)))
                elif code == 0x90:
                    target = stack[-1]
                    if type(target) is not set or _costly(guard, n, target, items):
                        return None
                    target.update(items)
                else:
                    if _costly(guard, n, items, items):
                        return None
                    stack.append(frozenset(items))
            elif code == 0x7D:  # EMPTY_DICT
                stack.append({})
            elif code == 0x5D:  # EMPTY_LIST
                stack.append([])
            elif code == 0x29:  # EMPTY_TUPLE
                stack.append(())
            elif code == 0x8F:  # EMPTY_SET
                stack.append(set())
            elif code == 0x85 or code == 0x86 or code == 0x87:  # TUPLE1-3
                k = code - 0x84
                if len(stack) < k:
                    return None
                items = stack[-k:]
                del stack[-k:]
                stack.append(tuple(items))
            elif code == 0x73:  # SETITEM
                value = stack.pop()
                key = stack.pop()
                target = stack[-1]
                if type(target) is not dict or (type(key) is not str and _costly(guard, n, target, [key])):
                    return None
                target[key] = value
            elif code == 0x61:  # APPEND
                value = stack.pop()
                target = stack[-1]
                if type(target) is not list:
                    return None
                target.append(value)
            elif code == 0x4E:  # NONE
                stack.append(None)
            elif code == 0x88:  # NEWTRUE
                stack.append(True)
            elif code == 0x89:  # NEWFALSE
                stack.append(False)
            elif code == 0x8A:  # LONG1
                end = pos + 1 + data[pos]
                if end > n:
                    return None
                arg = int.from_bytes(data[pos + 1:end], "little", signed=True)
                pos = end
                stack.append(arg)
            elif code == 0x71 or code == 0x72 or code == 0x68 or code == 0x6A:  # [LONG_]BINPUT, [LONG_]BINGET
                if code == 0x71 or code == 0x68:
                    arg = data[pos]
                    pos += 1
                else:
                    arg = _U4.unpack_from(data, pos)[0]
                    pos += 4
                if code == 0x71 or code == 0x72:
                    memo[arg] = stack[-1]
                else:
                    value = memo[arg]
                    gets += 1
                    if isinstance(value, _SHARED):
                        shared = True
                    stack.append(value)
            elif code == 0x80:  # PROTO
                arg = data[pos]
                pos += 1
                protocol = arg
            elif code == 0x95:  # FRAME
                arg = _U8.unpack_from(data, pos)[0]
                pos += 8
            elif code == 0x2E:  # STOP
                if listing and ops_seen < MAX_DISASSEMBLY:
                    ops.append((start, _NAMES[code], None))
                if proto > max_proto:
                    max_proto = proto
                if protocol < 0 or metastack or len(stack) != 1:
                    return None  # left to the full reader, which words what is odd about it
                return (stack[0], ops, protocol, max_proto, shared, start, gets == 0 and ops_seen <= 200,
                        ops_seen + 1)
            else:
                return None  # globals, calls, persistent ids, old protocols: the full reader
            if listing and ops_seen < MAX_DISASSEMBLY:
                ops.append((start, _NAMES[code], arg))
            ops_seen += 1
            if ops_seen >= check_at:
                if ops_seen >= MAX_OPS:
                    return None
                if deadline_ns is not None and monotonic_ns() > deadline_ns:
                    raise _GaveUp(f"the deadline passed after {ops_seen} opcodes (byte {pos} of {n})")
                check_at = min(MAX_OPS, check_at + CHECK_EVERY)
            if proto > max_proto:
                max_proto = proto
    except (IndexError, KeyError, TypeError, ValueError, struct.error, UnicodeDecodeError):
        return None  # cut short, or something the full reader reports properly
    return None


_SMALL_INT = 1 << 60


def _costly(guard: list[KeyGuard], size: int, container: object, items: list[Any]) -> bool:
    """Whether a key of ``items`` must be kept by identity (then the full reader takes the pickle); ``guard``
    holds the fast reader's guard once a key needed one."""
    for k in items:
        if type(k) is not str and not _cheap_key(k):
            if not guard:
                guard.append(KeyGuard(key_budget(size)))
            if guard[0].admit(container, k) is not k:
                return True
    return False


def _cheap_key(k: object) -> bool:
    """Whether hashing ``k`` is cheap and cannot collide on purpose (see ``_keys``): the fast reader's keys."""
    t = type(k)
    return t is str or t is bytes or t is float or k is None or t is bool or (t is int and -_SMALL_INT < k < _SMALL_INT)  # type: ignore[operator]


def _latin1_bytes(args: tuple[Any, ...]) -> bytes | None:
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


_PLAIN_SCALARS = frozenset({str, bytes, float, bool, type(None)})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict, set, frozenset, bytearray, collections.OrderedDict})


def _is_plain(value: object, nodes: int = MAX_EXACT_NODES, chars: int = 8 << 20,
              deadline_ns: int | None = None) -> bool:
    """Only plain values, no cycles, and small enough as a tree (not as a DAG) for ``repr``: at most ``nodes``
    nodes, shared parts counted each time they appear, holding at most ``chars`` characters of strings and
    bytes, at most 200 deep. Iterative, and never more than ``nodes`` steps (a cycle runs into the depth limit).
    Raises ``_GaveUp`` when ``deadline_ns`` passes."""
    stack: list[tuple[object, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    seen = 0
    while stack:
        v, depth = pop()
        seen += 1
        if seen > nodes or depth > 200:
            return False
        if not seen & 1023 and deadline_ns is not None and monotonic_ns() > deadline_ns:
            raise _GaveUp(f"the deadline passed after {seen} nodes of the exactness check of the value")
        t = type(v)
        if t in _PLAIN_SCALARS:
            if t is str or t is bytes:
                chars -= len(v)  # type: ignore[arg-type]
                if chars < 0:
                    return False
            continue
        if t is int:
            if v.bit_length() > 12_000:  # type: ignore[attr-defined]
                return False
            continue
        if t not in _PLAIN_CONTAINERS:
            return False
        if t is bytearray:
            chars -= len(v)  # type: ignore[arg-type]
            if chars < 0:
                return False
            continue
        depth += 1
        if t is dict or t is collections.OrderedDict:
            for k, x in v.items():  # type: ignore[attr-defined]
                push((k, depth))
                push((x, depth))
        else:
            for x in v:  # type: ignore[attr-defined]
                push((x, depth))
        if len(stack) > nodes:
            return False
    return True


def _disassembly(ops: list[tuple[int, str, object]], total_ops: bool) -> str:
    lines = ["# opcodes (as pickletools reads them)"]
    for pos, name, arg in ops:
        shown = "" if arg is None else clip(short_repr(arg, 60), 70)
        lines.append(f"{pos:6d}: {name:<16} {shown}".rstrip())
    if total_ops:
        lines.append("  …")
    return "\n".join(lines)


class PickleDecoder:
    """Python pickle, read safely; ``editable`` (plain values only) is ``# pickle protocol N`` plus a literal."""

    name = NAME

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if len(data) < 2:
            return 0.0
        if data[0] == 0x80:
            if not 2 <= data[1] <= 5:
                return 0.0
            return 0.95 if data[-1] == 0x2E else 0.5  # without STOP: the rest is in the next message?
        if data[-1] != 0x2E or not 3 <= len(data) <= 4096 or data[0] not in _PROTO01_STARTS:
            return 0.0  # b"}." and b"N." are pickles, but two bytes of a record are so as often
        sim = _Simulation()
        try:
            _, capped = sim.run(data, max_ops=MAX_PROBE_OPS, deadline_ns=ctx.deadline_ns)
        except Exception:  # not a pickle: anything genops or the simulation raises; or out of time
            return 0.0
        return 0.7 if capped or not sim.incomplete else 0.0  # a thousand valid opcodes are no accident

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        try:
            return self._decode(data, ctx)
        except _GaveUp as exc:
            return gave_up_view(NAME, data, str(exc), detail=ctx.detail)

    def _decode(self, data: bytes, ctx: DecodeContext) -> View:
        chunk = data[:MAX_PARSE]
        sim = _Simulation()
        deadline = ctx.deadline_ns
        try:
            value, capped = sim.run(chunk, listing=ctx.detail, deadline_ns=deadline)
        except _GaveUp:
            raise
        except Exception as exc:  # genops raises ValueError/EOFError; the simulation PickleReadError
            if len(data) > MAX_PARSE:
                msg = f"pickle larger than {MAX_PARSE} bytes is not read further"
            else:
                msg = f"not a pickle the reader can follow (byte {sim.pos}): {exc}"
            return error_view(NAME, data, msg, warnings=tuple(self._warnings(sim)), detail=ctx.detail)
        warnings = self._warnings(sim)
        truncated = capped or len(data) > MAX_PARSE
        if sim.incomplete and not truncated:
            if sim.protocol is None:
                return error_view(NAME, data, f"not a complete pickle: {sim.incomplete}", warnings=tuple(warnings),
                                  detail=ctx.detail)
            warnings.append(f"incomplete pickle ({sim.incomplete}): continues in next message? partial value shown")
        if capped:
            warnings.append(f"stopped after {MAX_OPS} opcodes")
        if sim.stopped and sim.op_count < MAX_DISASSEMBLY and sim.pos + 1 < len(data):
            warnings.append(f"{len(data) - sim.pos - 1} bytes after STOP are not part of the pickle")
        if sim.not_rebuilt:
            warnings.append(f"{sim.not_rebuilt} call(s) of set, bytes, OrderedDict ... shown as calls: rebuilding them "
                            "would copy their (memo-shared) arguments more than twice the pickle's size")
        if sim.keys.kept:
            warnings.append(
                f"{sim.keys.kept} dict key(s) or set member(s) kept by identity: hashing them would cost too much "
                "(shared or colliding values); equal ones are not merged as loading would"
            )
        protocol = sim.protocol if sim.protocol is not None else min(sim.max_op_proto, 1)

        exact: str | None = None
        if sim.small_tree:  # a tree of at most 200 plain nodes: repr is exact, and costs what the bytes do
            try:
                exact = repr(value)
            except (RecursionError, ValueError):
                exact = None
        dangerous = [o for o in sim.objects if o.dangerous]
        if dangerous:
            summary = f"⚠ would call {dangerous[0].call_text()}"
            if len(dangerous) > 1:
                summary += f" (+{len(dangerous) - 1} more)"
        elif sim.incomplete:
            summary = render(value, 100)[0] + " … " + render(tuple(sim.pending()), 200)[0]
        elif exact is not None:
            summary = exact[:400]
        else:
            # rendered, not repr'd (a memo can make a small pickle a huge tree), in every view alike
            summary = render(value, 220)[0]
        if not ctx.detail:
            return View(decoder=NAME, summary=clip(summary), warnings=tuple(warnings), truncated=truncated,
                        values=(value,))

        if exact is None and not (sim.small_tree or sim.objects or sim.persistent or truncated or sim.incomplete
                                  or sim.keys.kept) and _is_plain(value, *exact_budget(len(chunk)), deadline):
            try:
                exact = repr(value)
            except (RecursionError, ValueError):
                exact = None
        # rendered within a budget proportional to the pickle (a memo lets 200 bytes describe 2**40 nodes)
        shown, cut = (exact, False) if exact is not None else render(value, min(MAX_DUMP, 32 * len(chunk) + 4096))
        budget = TreeBudget(MAX_NODES)
        fields: list[Field] = []
        if sim.protocol is not None:
            fields.append(Field("protocol", str(sim.protocol), 0, 2))
        node = value_field("value", value, budget, 0, len(chunk))
        if node is not None:
            fields.append(node)
        header = f"# pickle protocol {protocol}\n"
        banner = "".join(f"# ⚠ {w}\n" for w in warnings if w.startswith("⚠"))
        text = banner + header + shown + "\n\n" + _disassembly(sim.ops, len(sim.ops) >= MAX_DISASSEMBLY)
        can_encode = exact is not None
        if can_encode and sim.shared:
            warnings.append("shared references: re-encoding keeps the values but may not give identical bytes")
        return View(
            decoder=NAME,
            summary=clip(summary),
            fields=tuple(fields),
            text=text,
            warnings=tuple(warnings),
            can_encode=can_encode,
            truncated=truncated or budget.truncated or cut,
            editable=header + exact if exact is not None else None,
            values=(value,),
        )

    @staticmethod
    def _warnings(sim: _Simulation) -> list[str]:
        out: list[str] = []
        seen: set[str] = set()
        classes: dict[str, None] = {}
        calls = 0
        for obj in sim.objects:
            if obj.is_instance and not obj.dangerous:
                if len(classes) <= 10:
                    classes[f"{obj.module}.{obj.class_name}"] = None
                continue
            calls += 1
            if calls > 50 or len(seen) > 20:  # rendering each call costs; thousands add nothing to read
                continue
            call = obj.call_text(120)
            if call in seen:
                continue
            seen.add(call)
            if obj.dangerous:
                out.append(
                    f"⚠ loading this with pickle.loads would call {call}: the sender chooses what runs. "
                    "Nothing was run here."
                )
            else:
                out.append(f"loading would call {call} (shown, not called)")
        if classes:
            names = list(classes)
            shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
            out.append(f"objects of classes shown by name from their pickled state (nothing imported): {shown}")
        if sim.modules:
            mods = ", ".join(sim.modules[:10]) + (" …" if len(sim.modules) > 10 else "")
            out.append(f"loading would import: {mods}")
        if sim.persistent:
            out.append(
                f"{sim.persistent} persistent id(s): only the sender's persistent_load knows them (not resolved)"
            )
        for code in sim.extensions[:5]:
            out.append(f"⚠ extension code {code} names a class from the sender's copyreg registry (not resolved)")
        return out

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        protocol = pickle.DEFAULT_PROTOCOL
        m = _PROTOCOL_HEADER.match(edited)
        if m:
            protocol = int(m.group(1))
            if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
                raise EncodeError(f"pickle protocol {protocol} does not exist (0 to {pickle.HIGHEST_PROTOCOL})")
            edited = edited[m.end() :]
        try:
            value = parse_literal(edited, _CTORS)
        except EncodeError as exc:
            raise EncodeError(
                "only plain values (None, bool, int, float, str, bytes, bytearray, list, tuple, dict, set, "
                "frozenset) can be re-encoded as a pickle; objects of other classes cannot be rebuilt without "
                f"importing them: {exc}"
            ) from None
        try:
            return pickle.dumps(value, protocol=protocol)
        except (pickle.PicklingError, TypeError, ValueError, RecursionError) as exc:
            raise EncodeError(f"cannot pickle this value: {exc}") from None


# First bytes of protocol 0/1 pickles as pickle.dumps writes them (MARK, containers, scalars, GLOBAL).
_PROTO01_STARTS = frozenset(b"(]})NIJKLMFGSTUVXcBCdltPi\x88\x89")

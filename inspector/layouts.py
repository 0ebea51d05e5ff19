"""Struct layouts found for the user: read from the program's own source, or guessed from fixed-size records.

Role: ``sockscope run`` scans the program's source files once at start (:func:`program_sources`, then
:func:`layouts_from_source`: ``ast`` only, the program is never imported or run) for the ``struct`` formats it
packs and unpacks, with field names where the code shows them (``pid, x, y = struct.unpack(FMT, data)``,
``struct.pack(FMT, self.pid, p.x, y)``). When a connection carries fixed-size records, :func:`layouts_for_size`
picks the layouts that fit them; without one, :func:`guess_layout` makes a clearly marked guess from the records'
bytes (integers, plausible floats, NUL-padded strings). A :class:`Layout`'s :meth:`~Layout.spec` is the struct
decoder's layout text (``inspector/decode/_struct.py``). The window builds its layout choices on this module.

Everything is bounded by the input: at most :data:`MAX_FILES` files of at most :data:`MAX_FILE_BYTES` each
(:data:`MAX_TOTAL_BYTES` in all), a syntax error or an unreadable file is skipped without a traceback, the syntax
tree is walked without recursion, and a guess looks at most :data:`GUESS_RECORDS` records of at most
:data:`GUESS_MAX_SIZE` bytes.
Must not import: Qt, ``proxy``, the program under test (nothing here imports or runs it).
Thread: any thread; pure apart from reading the files it is given. :class:`SourceScan` runs a scan on a thread of
its own.
"""

from __future__ import annotations

import ast
import math
import os
import re
import stat
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MAX_FILES = 200
"""Most source files scanned (the script first, then the files beside it and its package)."""
MAX_FILE_BYTES = 1 << 20
"""Bigger source files are skipped (generated code, data)."""
MAX_TOTAL_BYTES = 4 << 20
"""Most source bytes parsed in all: parsing holds the interpreter's lock, which the proxy's thread shares (a
megabyte takes about half a second)."""
MAX_READ_BYTES = 32 << 20
"""Most source bytes read in all (a file is parsed only if it may hold a layout: see :data:`_MAY_HOLD`)."""
MAX_DIRS = 400
"""Most directories looked into when listing a program's files (a script in a home directory)."""
MAX_DEPTH = 3
"""How deep below the program's root directory files are listed."""
MAX_FORMAT = 256
"""Longest struct format read from source, in characters."""
MAX_VALUES = 4096
"""Most values a layout may unpack to (the struct decoder's field cap)."""
MAX_LAYOUTS = 1000
"""Most distinct formats kept."""
MAX_RECORD = 1 << 24
"""Biggest record a layout read from source may describe (the proxy's default frame cap)."""
GUESS_RECORDS = 32
"""Records a guess looks at."""
GUESS_MAX_SIZE = 256
"""Bigger records get no guess (the guess's work grows with the record's size)."""

_FORMAT = re.compile(r"[@=<>!]?(?:\s*\d*[xcbB?hHiIlLqQnNefdspP])+\s*")
_ITEM = re.compile(r"(\d*)([xcbB?hHiIlLqQnNefdspP])")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAY_HOLD = re.compile(rb"struct|['\"][@=<>!]\d*[xcbB?hHiIlLqQnNefdspP]")
"""What a file must hold to be parsed: the word struct, or a string that starts like a format with a byte order
(a module of format constants). Most of a project's files hold neither, and cost a byte search, not a parse."""
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages", "venv", "env", "build",
                        "dist"})


@dataclass(frozen=True, slots=True)
class Layout:
    """A struct layout for fixed-size records, where it came from, and whether it is only a guess."""

    fmt: str
    """A struct format, e.g. ``"<Hff12sB"``."""
    names: tuple[str, ...]
    """One field name per value (``""`` when unknown)."""
    origin: str
    """Where it came from: ``"game.py:42 struct.pack"`` or ``"guessed from 14 records"``."""
    guessed: bool = False

    @property
    def size(self) -> int:
        """Bytes of one record."""
        return struct.calcsize(self.fmt)

    def spec(self) -> str:
        """The struct decoder's layout text, ``FORMAT name1 name2 ...``: repeat counts of numbers are written out
        (``3f`` -> ``fff``) so that each value has its own name; a value without a name is ``field<N>``."""
        prefix = self.fmt[:1] if self.fmt[:1] in "@=<>!" else ""
        codes: list[str] = []
        names: list[str] = []
        seen: set[str] = set()
        value = 0
        for digits, code in _ITEM.findall(self.fmt[len(prefix):]):
            n = int(digits) if digits else 1
            if code not in "sp" and n == 0:
                continue  # holds no value (the decoder refuses it)
            if code == "x":
                codes.append(f"{digits}{code}")
                continue
            if code in "sp" or n > 32:  # one field: a string, or a long list that is one field in the decoder
                codes.append(f"{digits}{code}")
                names.append(self._name(value, len(names), seen))
                value += 1 if code in "sp" else n
                continue
            for _ in range(n):
                codes.append(code)
                names.append(self._name(value, len(names), seen))
                value += 1
        return " ".join([prefix + "".join(codes), *names])

    def _name(self, value: int, field: int, seen: set[str]) -> str:
        name = self.names[value] if value < len(self.names) else ""
        if not name or not _IDENT.fullmatch(name):
            name = f"field{field}"
        while name in seen:
            name += "_"
        seen.add(name)
        return name


def value_count(fmt: str) -> int:
    """Values one record of ``fmt`` unpacks to (``<H3f12s`` -> 5)."""
    count = 0
    for digits, code in _ITEM.findall(fmt):
        if code == "x":
            continue
        count += 1 if code in "sp" else int(digits) if digits else 1
    return count


def _valid_format(fmt: str) -> str | None:
    """``fmt`` without blanks if ``struct`` takes it and it makes a record of some bytes; else None."""
    if len(fmt) > MAX_FORMAT or not _FORMAT.fullmatch(fmt):
        return None
    fmt = re.sub(r"\s+", "", fmt)
    try:
        size = struct.calcsize(fmt)
    except (struct.error, OverflowError, MemoryError):
        return None
    if not 0 < size <= MAX_RECORD or value_count(fmt) > MAX_VALUES:
        return None
    return fmt


# ------------------------------------------------------------------------------------------ which files


def program_sources(command: Sequence[str]) -> list[Path]:
    """The program's own ``.py`` files for a command such as ``python -u game.py --port 5555`` or
    ``python -m mygame.server``: the script first, then the ``.py`` files beside it and in its package's tree
    (at most :data:`MAX_DEPTH` levels down, skipping virtual environments, caches and hidden directories), at most
    :data:`MAX_FILES` files of at most :data:`MAX_FILE_BYTES` each. Empty for ``python -c CODE`` or a script that
    is not there. Never raises for a strange command or an unreadable directory."""
    script, root = _script_of(list(command))
    if script is None or root is None:
        return []
    out = [script]
    seen = {_key(script)}
    dirs = 0
    level = [root]
    for _ in range(MAX_DEPTH + 1):
        below: list[Path] = []
        for d in level:
            dirs += 1
            if dirs > MAX_DIRS or len(out) >= MAX_FILES:
                return out
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                name = e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if not name.startswith(".") and name not in _SKIP_DIRS and not name.endswith(".egg-info"):
                            below.append(Path(e.path))
                    elif name.endswith((".py", ".pyw")) and e.is_file() and e.stat().st_size <= MAX_FILE_BYTES:
                        p = Path(e.path)
                        k = _key(p)
                        if k not in seen:
                            seen.add(k)
                            out.append(p)
                            if len(out) >= MAX_FILES:
                                return out
                except OSError:
                    continue
        level = below
    return out


def _key(p: Path) -> str:
    try:
        return os.path.normcase(os.path.realpath(p))
    except (OSError, ValueError):
        return str(p)


def _script_of(command: list[str]) -> tuple[Path | None, Path | None]:
    """(the script, the directory its files are listed from) of a Python command line: the interpreter's own
    options are skipped (``-u``, ``-W arg``, ``-Xdev``); ``-m MODULE`` names a module; ``-c`` has no file."""
    if not command:
        return None, None
    args = command if command[0].lower().endswith((".py", ".pyw")) else command[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-" or a.startswith("--"):
            if a.startswith("--"):
                i += 1
                continue
            break
        letters = a[1:]
        skip = 1
        for j, ch in enumerate(letters):
            if ch == "c":
                return None, None  # the program is a string on the command line
            if ch == "m":
                module = letters[j + 1:] or (args[i + 1] if i + 1 < len(args) else "")
                return _module_file(module)
            if ch in "WX":  # their argument: the rest of this word, or the next word
                if j == len(letters) - 1:
                    skip = 2
                break
        i += skip
    if i >= len(args) or args[i] == "-":
        return None, None
    # The first word after the options; or, for a wrapper (``uv run game.py``), the first .py file named.
    for word in (args[i], *(w for w in args[i + 1 :] if w.lower().endswith((".py", ".pyw")))):
        script = Path(word)
        try:
            if script.is_file() and script.stat().st_size <= MAX_FILE_BYTES:
                return script, _package_root(script.resolve().parent)
        except (OSError, ValueError, RuntimeError):
            continue
    return None, None


def _module_file(module: str) -> tuple[Path | None, Path | None]:
    """``python -m a.b``: ``a/b.py`` or ``a/b/__main__.py`` under the working directory."""
    if not module or not all(_IDENT.fullmatch(part) for part in module.split(".")):
        return None, None
    base = Path.cwd().joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py", base / "__init__.py"):
        try:
            if candidate.is_file() and candidate.stat().st_size <= MAX_FILE_BYTES:
                return candidate, _package_root(candidate.resolve().parent)
        except (OSError, ValueError):
            continue
    return None, None


def _package_root(d: Path) -> Path:
    """The directory that holds ``d``'s top package (``d`` itself when it is no package)."""
    for _ in range(8):
        try:
            if not (d / "__init__.py").is_file() or d.parent == d:
                return d
        except OSError:
            return d
        d = d.parent
    return d


# ------------------------------------------------------------------------------------------ reading source

_FUNCS = {"pack": 1, "unpack": None, "unpack_from": None, "pack_into": 3, "calcsize": None, "iter_unpack": None,
          "Struct": None}
"""struct's functions: the index of the first packed value in their arguments (None: they pack none)."""
_METHODS = {"pack": 0, "unpack": None, "unpack_from": None, "pack_into": 2, "iter_unpack": None}
"""A ``struct.Struct`` object's methods, likewise (the format is the object's)."""
_WRAPPERS = frozenset({"int", "float", "bool", "round", "abs", "ord", "bytes", "str", "encode", "ljust", "rjust"})
"""Calls around a packed value that keep its name (``float(x)``, ``name.encode()``)."""

Expr = tuple[object, ...]
"""A format expression kept until every file is read: ``("lit", value)``, ``("ref", name, class)``,
``("add", a, b)``, ``("mul", a, b)``, ``("fmt", parts)`` (an f-string)."""


@dataclass(slots=True)
class _Use:
    expr: Expr
    names: tuple[str, ...] | None
    exact: bool  # names are all the values (else a prefix: a starred target or argument came after them)
    where: str
    file: str


@dataclass(slots=True)
class _Scan:
    consts: dict[str, list[tuple[str, str | None, Expr]]]  # name -> (file, class, expression)
    structs: dict[str, list[tuple[str, str | None, Expr]]]
    uses: list[_Use]


def layouts_from_source(paths: Iterable[Path]) -> list[Layout]:
    """The struct layouts that the Python files ``paths`` pack or unpack, one per format, in the order they
    first appear, with the field names the code shows (see the module's docstring). Read with ``ast`` only;
    files over :data:`MAX_FILE_BYTES`, past :data:`MAX_FILES` or :data:`MAX_TOTAL_BYTES`, unreadable, or with a
    syntax error are skipped silently. Never raises for any file's content."""
    scan = _Scan({}, {}, [])
    total = read = 0
    for n, path in enumerate(paths):
        if n >= MAX_FILES:
            break
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                continue  # (a FIFO named game.py would block the read forever)
            with path.open("rb") as f:
                source = f.read(MAX_FILE_BYTES + 1)
        except (OSError, ValueError):
            continue
        read += len(source)
        if read > MAX_READ_BYTES:
            break
        if len(source) > MAX_FILE_BYTES or not _MAY_HOLD.search(source) or total + len(source) > MAX_TOTAL_BYTES:
            continue
        total += len(source)
        try:
            tree = compile(source, str(path), "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        except Exception:  # SyntaxError, ValueError (a NUL), RecursionError, MemoryError: not a program we read
            continue
        _scan_tree(tree, path.name, scan)  # iterative: a deep tree costs no recursion
        del tree
    return _layouts(scan)


def _scan_tree(tree: ast.AST, file: str, scan: _Scan) -> None:
    modules = {"struct"}  # names the struct module goes by in this file
    funcs: dict[str, str] = {}  # local name -> struct function (from struct import pack as p)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "struct":
                    modules.add(a.asname or "struct")
        elif isinstance(node, ast.ImportFrom) and node.module == "struct" and not node.level:
            for a in node.names:
                if a.name in _FUNCS:
                    funcs[a.asname or a.name] = a.name
    targets: dict[int, tuple[tuple[str, ...], bool]] = {}  # id(call) -> names of the values it unpacks to
    stack: list[tuple[ast.AST, str | None, bool]] = [(tree, None, False)]  # (node, class, inside a function)
    while stack:
        node, cls, in_func = stack.pop()
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            if value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    _assignment(target, value, cls, in_func, file, scan, modules, funcs, targets)
        elif isinstance(node, ast.For | ast.AsyncFor) and isinstance(node.iter, ast.Call):
            targets[id(node.iter)] = _target_names(node.target)
        elif isinstance(node, ast.Call):
            use = _call_use(node, cls, file, modules, funcs, targets.get(id(node)))
            if use is not None:
                scan.uses.append(use)
        inner_cls = node.name if isinstance(node, ast.ClassDef) else cls
        inner_func = in_func or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        children = list(ast.iter_child_nodes(node))
        children.reverse()  # popped in source order
        stack.extend((c, inner_cls, inner_func) for c in children)


def _is_struct_call(node: ast.AST, modules: set[str], funcs: dict[str, str]) -> str | None:
    """The struct function ``node`` calls (``struct.pack``, ``pack`` imported from struct), if it is one."""
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules and f.attr in _FUNCS:
        return f.attr
    if isinstance(f, ast.Name) and f.id in funcs:
        return funcs[f.id]
    return None


def _holder(node: ast.AST, cls: str | None) -> tuple[str, str | None] | None:
    """(name, class) of what ``node`` names: ``FMT``, ``self.FMT``/``cls.FMT`` (this class), ``Packet.FMT``."""
    if isinstance(node, ast.Name):
        return node.id, None
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name):
            owner = node.value.id
            return node.attr, cls if owner in ("self", "cls") else owner
        return node.attr, None
    return None


def _expr(node: ast.AST, cls: str | None, depth: int = 0) -> Expr | None:
    """A format expression (see :data:`Expr`) for ``node``, or None when it cannot be one."""
    if depth > 6:
        return None
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bytes):
            try:
                v = v.decode("ascii")
            except UnicodeDecodeError:
                return None
        if isinstance(v, str) and len(v) <= MAX_FORMAT:
            return ("lit", v)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_VALUES:
            return ("lit", v)
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        a, b = _expr(node.left, cls, depth + 1), _expr(node.right, cls, depth + 1)
        if a is None or b is None:
            return None
        return ("add" if isinstance(node.op, ast.Add) else "mul", a, b)
    if isinstance(node, ast.JoinedStr) and len(node.values) <= 16:
        parts: list[Expr] = []
        for piece in node.values:
            inner = _expr(piece.value if isinstance(piece, ast.FormattedValue) else piece, cls, depth + 1)
            odd = isinstance(piece, ast.FormattedValue) and (piece.format_spec is not None or piece.conversion != -1)
            if inner is None or odd:
                return None
            parts.append(inner)
        return ("fmt", tuple(parts))
    held = _holder(node, cls)
    if held is not None:
        return ("ref", *held)
    return None


def _value_name(node: ast.AST) -> str:
    """The name a packed value goes by in the code: ``self.pid`` -> pid, ``float(x)`` -> x, ``p["hp"]`` -> hp."""
    for _ in range(4):
        if isinstance(node, ast.Name):
            return _clean(node.id)
        if isinstance(node, ast.Attribute):
            return _clean(node.attr)
        if isinstance(node, ast.Subscript):
            s = node.slice
            if isinstance(s, ast.Constant) and isinstance(s.value, str):
                return _clean(s.value)
            return ""
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in _WRAPPERS and len(node.args) == 1:
                node = node.args[0]
                continue
            if isinstance(f, ast.Attribute) and f.attr in _WRAPPERS:
                node = f.value
                continue
        return ""
    return ""


def _clean(name: str) -> str:
    name = name.strip("_")
    return name if _IDENT.fullmatch(name) and name not in ("self", "cls") else ""


def _target_names(target: ast.AST) -> tuple[tuple[str, ...], bool]:
    """The names of an unpacking target (``pid, x, y``), and whether they are all of them."""
    if not isinstance(target, ast.Tuple | ast.List):
        return (), False
    names: list[str] = []
    for elt in target.elts:
        if isinstance(elt, ast.Starred):
            return tuple(names), False
        names.append(_value_name(elt) if isinstance(elt, ast.Name | ast.Attribute) else "")
    return tuple(names), True


def _packed_names(args: Sequence[ast.AST]) -> tuple[tuple[str, ...], bool]:
    names: list[str] = []
    for a in args:
        if isinstance(a, ast.Starred):
            return tuple(names), False
        names.append(_value_name(a))
    return tuple(names), True


def _format_arg(call: ast.Call) -> ast.AST | None:
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    for kw in call.keywords:
        if kw.arg == "format":
            return kw.value
    return None


def _assignment(target: ast.AST, value: ast.AST, cls: str | None, in_func: bool, file: str, scan: _Scan,
                modules: set[str], funcs: dict[str, str],
                targets: dict[int, tuple[tuple[str, ...], bool]]) -> None:
    """Note what an assignment tells: a format kept in a name (``FMT = "<Hff"``), a ``struct.Struct`` kept in one
    (``STATE = struct.Struct(FMT)``), or the names a call's values are unpacked into."""
    if isinstance(target, ast.Tuple | ast.List):
        if isinstance(value, ast.Call):
            targets[id(value)] = _target_names(target)
        return
    held = _holder(target, cls)
    if held is None or (isinstance(target, ast.Attribute) and held[1] is None):
        return
    name, owner = held
    if isinstance(target, ast.Name) and not in_func:
        owner = cls  # a class attribute (FMT in the class body), or a module's name (cls is None)
    if _is_struct_call(value, modules, funcs) == "Struct":
        assert isinstance(value, ast.Call)
        arg = _format_arg(value)
        expr = None if arg is None else _expr(arg, cls)
        if expr is not None:
            scan.structs.setdefault(name, []).append((file, owner, expr))
        return
    if in_func and not isinstance(value, ast.Constant | ast.BinOp | ast.JoinedStr):
        return  # inside a function only literals count: ``fmt = other`` there is too often something else
    expr = _expr(value, cls)
    if expr is not None:
        entries = scan.consts.setdefault(name, [])
        if len(entries) < 16:
            entries.append((file, owner, expr))


def _call_use(call: ast.Call, cls: str | None, file: str, modules: set[str], funcs: dict[str, str],
              target: tuple[tuple[str, ...], bool] | None) -> _Use | None:
    """What a call to one of struct's functions, or to a method of a ``Struct`` object, tells."""
    where = f"{file}:{call.lineno}"
    func = _is_struct_call(call, modules, funcs)
    if func is not None:
        arg = _format_arg(call)
        expr = None if arg is None else _expr(arg, cls)
        if expr is None:
            return None
        first = _FUNCS[func]
        names, exact = _names(call, first, target)
        return _Use(expr, names, exact, f"{where} struct.{func}", file)
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr in _METHODS:
        if _is_struct_call(f.value, modules, funcs) == "Struct":  # struct.Struct(FMT).unpack(data)
            assert isinstance(f.value, ast.Call)
            arg = _format_arg(f.value)
            expr = None if arg is None else _expr(arg, cls)
            if expr is None:
                return None
            names, exact = _names(call, _METHODS[f.attr], target)
            return _Use(expr, names, exact, f"{where} struct.Struct(…).{f.attr}", file)
        held = _holder(f.value, cls)
        if held is None or held[0] in modules:
            return None
        names, exact = _names(call, _METHODS[f.attr], target)
        v = f.value
        shown = (v.id if isinstance(v, ast.Name) else f"{v.value.id}.{v.attr}"
                 if isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) else held[0])
        return _Use(("struct", *held), names, exact, f"{where} {shown[:40]}.{f.attr}", file)
    return None


def _names(call: ast.Call, first: int | None, target: tuple[tuple[str, ...], bool] | None
           ) -> tuple[tuple[str, ...] | None, bool]:
    if first is not None:
        names, exact = _packed_names(call.args[first:])
        return (names if any(names) else None), exact
    if target is not None and any(target[0]):
        return target
    return None, False


def _evaluate(expr: Expr, scan: _Scan, file: str, depth: int = 0) -> list[object]:
    """The values ``expr`` may have (several when a name is assigned different formats), at most a few."""
    if depth > 8:
        return []
    kind = expr[0]
    if kind == "lit":
        return [expr[1]]
    if kind == "ref" or kind == "struct":
        name, owner = expr[1], expr[2]
        assert isinstance(name, str)
        table = scan.structs if kind == "struct" else scan.consts
        entries = table.get(name, [])
        best = ([e for e in entries if e[0] == file and e[1] == owner] or [e for e in entries if e[0] == file]
                or entries)
        out: list[object] = []
        for f, _, inner in best[:4]:
            for v in _evaluate(inner, scan, f, depth + 1):
                if v not in out:
                    out.append(v)
        return out[:4]
    if kind in ("add", "mul"):
        a, b = expr[1], expr[2]
        assert isinstance(a, tuple) and isinstance(b, tuple)
        out = []
        for x in _evaluate(a, scan, file, depth + 1)[:2]:
            for y in _evaluate(b, scan, file, depth + 1)[:2]:
                v = _combine(kind, x, y)
                if v is not None and v not in out:
                    out.append(v)
        return out
    if kind == "fmt":
        texts = [""]
        parts = expr[1]
        assert isinstance(parts, tuple)
        for part in parts:
            if not isinstance(part, tuple):
                return []
            values = _evaluate(part, scan, file, depth + 1)[:2]
            texts = [t + str(v) for t in texts for v in values if isinstance(v, str | int)][:4]
            if sum(map(len, texts)) > 4 * MAX_FORMAT:
                return []
        return list(texts)
    return []


def _combine(kind: str, x: object, y: object) -> object | None:
    if kind == "add":
        if isinstance(x, str) and isinstance(y, str) and len(x) + len(y) <= MAX_FORMAT:
            return x + y
        if isinstance(x, int) and isinstance(y, int) and x + y <= MAX_VALUES:
            return x + y
        return None
    if isinstance(x, int) and isinstance(y, str):
        x, y = y, x
    if isinstance(x, str) and isinstance(y, int) and 0 <= len(x) * y <= MAX_FORMAT:
        return x * y
    if isinstance(x, int) and isinstance(y, int) and 0 <= x * y <= MAX_VALUES:
        return x * y
    return None


def _layouts(scan: _Scan) -> list[Layout]:
    """One layout per format, with the best names any use gives (the use naming the most values, its gaps
    filled from the others), in the order formats first appear."""
    found: dict[str, list[tuple[tuple[str, ...], str]]] = {}  # format -> (names, origin) per use
    for use in scan.uses:
        for v in _evaluate(use.expr, scan, use.file)[:4]:
            if not isinstance(v, str):
                continue
            fmt = _valid_format(v)
            if fmt is None:
                continue
            n = value_count(fmt)
            names: tuple[str, ...] = ("",) * n
            if use.names is not None and (len(use.names) == n if use.exact else len(use.names) <= n):
                names = (*use.names, *("",) * (n - len(use.names)))
            if fmt not in found and len(found) >= MAX_LAYOUTS:
                continue
            found.setdefault(fmt, []).append((names, use.where))
    out: list[Layout] = []
    for fmt, uses in found.items():
        best_names, origin = max(uses, key=lambda u: sum(1 for x in u[0] if x))  # first of the best
        merged = list(best_names)
        for other, _ in uses:
            for i, x in enumerate(other):
                if not merged[i] and x and x not in merged:
                    merged[i] = x
        seen: set[str] = set()
        for i, x in enumerate(merged):  # a name used twice names neither value for sure: keep the first
            if x in seen:
                merged[i] = ""
            seen.add(x)
        out.append(Layout(fmt, tuple(merged), origin, guessed=False))
    return out


def layouts_for_size(layouts: Iterable[Layout], size: int) -> list[Layout]:
    """The layouts whose record is ``size`` bytes, then those whose record divides it (several records per
    message), biggest records first; each once."""
    exact: list[Layout] = []
    divides: list[Layout] = []
    for layout in layouts:
        try:
            n = layout.size
        except (struct.error, OverflowError):
            continue
        if n <= 0 or size <= 0:
            continue
        if n == size:
            exact.append(layout)
        elif size % n == 0:
            divides.append(layout)
    divides.sort(key=lambda lay: -lay.size)
    return exact + divides


# ------------------------------------------------------------------------------------------ guessing
#
# A guess cuts the record into fields by dynamic programming over its byte offsets: each candidate field (an
# integer of 1, 2, 4 or 8 bytes, signed or not; a float of 4 or 8 bytes; a NUL-padded string) gets a score, in
# bits, of how much better it explains its bytes in every record than random bytes would, and the cut with the
# best total wins (both byte orders are tried). An integer scores the high bits its values leave unused (less
# the one bit random bytes leave unused on average); a float scores when every value is zero or of a magnitude
# a game uses (random bytes rarely are, in all records), more when its mantissa is short (1.5, 100.0); a string
# scores for its printable characters and its NUL padding. Each field costs a little, so that one 4-byte integer
# beats four bytes that say the same. So "<Hff" comes out of records of a small id and two positions.

_FIELD_COST = 1.5
_TEXT_BITS = 1.4  # log2(256/95): a printable character
_PAD_BITS = 7.9
_F32_RANGE = (2.0**-20, 2.0**24)
_F64_RANGE = (2.0**-30, 2.0**50)
_F32_BITS = 2.5  # log2(256/44): an exponent in the range
_F64_BITS = 4.7  # log2(2048/80)
_MIN_TEXT = 3
_LITTLE_BITS = 1.0


def guess_layout(records: Sequence[bytes]) -> Layout | None:
    """A guess at the layout of fixed-size records (the most common size among ``records``, the first
    :data:`GUESS_RECORDS` of them), clearly marked: ``guessed`` is True, the names are empty and the origin says
    ``guessed from N records``. None when there is nothing to guess from, the records are bigger than
    :data:`GUESS_MAX_SIZE`, or their bytes look random (no field explains them better than noise)."""
    sizes: dict[int, int] = {}
    for r in records[: GUESS_RECORDS * 4]:
        sizes[len(r)] = sizes.get(len(r), 0) + 1
    if not sizes:
        return None
    size = max(sizes, key=lambda s: (sizes[s], s))
    if not 0 < size <= GUESS_MAX_SIZE:
        return None
    rows = [bytes(r) for r in records[: GUESS_RECORDS * 4] if len(r) == size][:GUESS_RECORDS]
    best: tuple[float, str, list[str]] | None = None
    for order in "<>":
        score, codes = _segment(rows, size, order)
        if order == "<":
            score += _LITTLE_BITS * len(rows)  # what most games send; big-endian data wins by far more anyway
        if best is None or score > best[0] + 1e-9:
            best = (score, order, codes)
    assert best is not None
    score, order, codes = best
    if score < 0.25 * size * len(rows):
        return None  # about as well explained as random bytes are: no guess is better than a wrong one
    fmt = order + "".join(codes)
    return Layout(fmt, ("",) * value_count(fmt), f"guessed from {len(rows)} record{'s' * (len(rows) != 1)}",
                  guessed=True)


def _segment(rows: list[bytes], size: int, order: str) -> tuple[float, list[str]]:
    """The best cut of ``size``-byte ``rows`` into fields in byte order ``order``: (score, codes)."""
    little = order == "<"
    best: list[float] = [-math.inf] * (size + 1)
    choice: list[tuple[int, str]] = [(0, "")] * (size + 1)
    best[0] = 0.0
    strings = _string_fields(rows, size)
    for s in range(size):
        if best[s] == -math.inf:
            continue
        for width, code, score in _candidates(rows, s, size, little, strings.get(s, ())):
            total = best[s] + score - _FIELD_COST * len(rows)
            if total > best[s + width] + 1e-9:
                best[s + width] = total
                choice[s + width] = (s, code)
    codes: list[str] = []
    at = size
    while at > 0:
        start, code = choice[at]
        codes.append(code)
        at = start
    codes.reverse()
    return best[size], codes


def _candidates(rows: list[bytes], s: int, size: int, little: bool,
                strings: Iterable[tuple[int, float]]) -> list[tuple[int, str, float]]:
    out: list[tuple[int, str, float]] = []
    order: Literal["little", "big"] = "little" if little else "big"
    prefix = "<" if little else ">"
    for width, ucode in ((1, "B"), (2, "H"), (4, "I"), (8, "Q")):
        if s + width > size:
            break
        bits = 8 * width
        unsigned = signed = 0.0
        for r in rows:
            v = int.from_bytes(r[s : s + width], order)
            unsigned += bits - v.bit_length() - 1
            m = v if v < 1 << (bits - 1) else (1 << bits) - 1 - v  # the magnitude of the signed value
            signed += bits - 1 - m.bit_length() - 1
        if signed > unsigned + 1e-9:
            out.append((width, ucode.lower(), signed))
        else:
            out.append((width, ucode, unsigned))
    for width, code in ((4, "f"), (8, "d")):
        if s + width <= size:
            score = _float_score(rows, s, prefix + code, width)
            if score is not None:
                out.append((width, code, score))
    for n, score in strings:
        out.append((n, f"{n}s", score))
    return out


def _float_score(rows: list[bytes], s: int, fmt: str, width: int) -> float | None:
    lo, hi = _F32_RANGE if width == 4 else _F64_RANGE
    mantissa_bits = 23 if width == 4 else 52
    zero_bits = 8 * width - 1.5
    in_range = _F32_BITS if width == 4 else _F64_BITS
    order: Literal["little", "big"] = "little" if fmt[0] == "<" else "big"
    total = 0.0
    nonzero = False
    for r in rows:
        (x,) = struct.unpack_from(fmt, r, s)
        if x == 0.0:
            total += zero_bits
            continue
        if not lo <= abs(x) <= hi:  # also NaN and infinities
            return None
        nonzero = True
        mantissa = int.from_bytes(r[s : s + width], order) & ((1 << mantissa_bits) - 1)
        trailing = mantissa_bits if not mantissa else (mantissa & -mantissa).bit_length() - 1
        total += in_range + trailing
    if width == 8 and _two_floats(rows, s, fmt[0]):
        total -= _F32_BITS * len(rows)  # its low half is a plausible float in every row: that is two floats
    return total if nonzero else total - 1.0  # all zeros: as an integer (which scores 0.5 bits more per value)


def _two_floats(rows: list[bytes], s: int, order: str) -> bool:
    """Whether the low-order half of an 8-byte field is a non-zero float of a plausible magnitude in every row:
    a double's low mantissa bits (random, or zero) rarely are, the second of two floats always is."""
    low = s if order == "<" else s + 4
    for r in rows:
        (x,) = struct.unpack_from(order + "f", r, low)
        if not _F32_RANGE[0] <= abs(x) <= _F32_RANGE[1]:
            return False
    return True


def _string_fields(rows: list[bytes], size: int) -> dict[int, list[tuple[int, float]]]:
    """Per start offset, the NUL-padded string fields that fit every row there: (length, score). A field of n
    bytes fits a row when its bytes are printable UTF-8 text, then NULs."""
    ends: list[tuple[list[int], list[int]]] = []  # per row: (where the NUL-free run from i ends, the NUL run)
    for r in rows:
        next_nul = [size] * (size + 1)
        zeros_end = [size] * (size + 1)
        for i in range(size - 1, -1, -1):
            if r[i] == 0:
                next_nul[i] = i
                zeros_end[i] = zeros_end[i + 1]
            else:
                next_nul[i] = next_nul[i + 1]
                zeros_end[i] = i
        ends.append((next_nul, zeros_end))
    out: dict[int, list[tuple[int, float]]] = {}
    for s in range(size):
        room = size - s
        longest = total = 0
        for r, (next_nul, zeros_end) in zip(rows, ends, strict=True):
            nul = next_nul[s]
            t = nul - s
            if t:
                try:
                    if not r[s:nul].decode("utf-8").isprintable():
                        break
                except UnicodeDecodeError:
                    break
            room = min(room, zeros_end[nul] - s if nul < size else size - s)
            longest = max(longest, t)
            total += t
        else:
            if longest < _MIN_TEXT or room < longest:
                continue
            k = len(rows)
            out[s] = [(n, _TEXT_BITS * total + _PAD_BITS * (n * k - total)) for n in range(longest, room + 1)][-24:]
    return out


# ------------------------------------------------------------------------------------------ scanning once


class SourceScan:
    """The layouts of a program's source, read once on a thread of its own (``sockscope run`` starts it with the
    program, so the proxy's thread never parses anything)."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.files: list[Path] = []
        self._layouts: list[Layout] = []
        self._done = threading.Event()
        self._waited = False
        self._thread = threading.Thread(target=self._run, name="sockscope-source-scan", daemon=True)

    def start(self) -> SourceScan:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.files = program_sources(self.command)
            self._layouts = layouts_from_source(self.files)
        except Exception:  # an OS oddity: no layouts, never a traceback in the user's terminal
            self._layouts = []
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, wait: float = 0.0) -> list[Layout] | None:
        """The layouts, or None while the scan runs. Only the first call waits (up to ``wait`` seconds): a scan
        that takes longer than that is not waited for again, and its layouts come when it is done."""
        if not self._waited:
            self._waited = True
            self._done.wait(wait)
        return list(self._layouts) if self._done.is_set() else None

    def wait(self, timeout: float) -> list[Layout]:
        """The layouts, waiting up to ``timeout`` seconds for the scan; empty if it is not done by then."""
        self._done.wait(timeout)
        return list(self._layouts) if self._done.is_set() else []

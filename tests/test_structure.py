"""Folders tell the truth: where Qt may be imported, what importing a value module loads, and no import cycles.

Everything here reads the source with ``ast`` (nothing is imported into this process), except the light-import
checks, which import in a fresh interpreter and look at ``sys.modules``.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "inspector")

QT_TOP_LEVEL = ("PySide6", "pyqtgraph", "shiboken6")
QT_HOMES = ("inspector/ui/", "inspector/app.py")
"""Where Qt may be imported: the window's package and the entry point that creates the QApplication."""
QT_STILL_OUTSIDE: dict[str, str] = {}

KNOWN_LAZY_CYCLES: set[frozenset[str]] = set()


# ------------------------------------------------------------------------------------------ reading the tree


def source_files() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module of both packages."""
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


MODULES = dict(source_files())


@functools.cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, *, module_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import in ``path``; with ``module_level_only``, those that run when the
    module is imported (inside functions and ``if TYPE_CHECKING:`` blocks do not count)."""
    module = MODULES_BY_PATH[path]
    is_package = path.name == "__init__.py"

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def names(node: ast.stmt) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node)
            for alias in node.names:
                # ``from pkg import mod`` imports pkg.mod when that is a module, else a name from pkg
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno

    def walk(body: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        for node in body:
            yield from names(node)
            if module_level_only:
                if isinstance(node, ast.If):
                    if not _is_type_checking(node.test):
                        yield from walk(node.body)
                    yield from walk(node.orelse)
                elif isinstance(node, ast.Try):
                    for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                        yield from walk(block)
                elif isinstance(node, ast.With):
                    yield from walk(node.body)
            else:
                for child in ast.walk(node):
                    if child is not node and isinstance(child, ast.stmt):
                        yield from names(child)

    yield from walk(parse(path).body)


MODULES_BY_PATH = {path: name for name, path in MODULES.items()}


def owner(name: str) -> str | None:
    """The module of ours that importing ``name`` runs (the longest matching prefix), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(*, module_level_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = {o for imported, _ in imports(path, module_level_only=module_level_only)
                if (o := owner(imported)) is not None}
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & component))}" for m in sorted(component))


# ------------------------------------------------------------------------------------------ Qt's place


def test_qt_is_imported_only_under_inspector_ui_and_the_entry_point() -> None:
    offenders: set[str] = set()
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(QT_HOMES) or rel in QT_STILL_OUTSIDE:
            continue
        for imported, line in imports(path, module_level_only=False):
            if imported.split(".")[0] in QT_TOP_LEVEL:
                offenders.add(f"{rel}:{line} imports {imported.split('.')[0]}")
    assert not offenders, "Qt outside inspector/ui (move the widget there):\n" + "\n".join(sorted(offenders))


def test_the_qt_allow_list_names_only_files_that_still_need_it() -> None:
    stale = [rel for rel in QT_STILL_OUTSIDE if not (ROOT / rel).exists()
             or not any(i.split(".")[0] in QT_TOP_LEVEL
                        for i, _ in imports(ROOT / rel, module_level_only=False))]
    assert not stale, f"no longer import Qt outside inspector/ui, remove them from QT_STILL_OUTSIDE: {stale}"


def test_the_scan_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The checks above are only as good as the import reader: it must see what a module really imports."""
    path = ROOT / "inspector" / "app.py"  # imports PySide6 inside main() only
    lazy = {i for i, _ in imports(path, module_level_only=False)}
    eager = {i for i, _ in imports(path, module_level_only=True)}
    assert "PySide6.QtWidgets" in lazy and "PySide6.QtWidgets" not in eager
    decode = {i for i, _ in imports(ROOT / "inspector" / "decode" / "__init__.py", module_level_only=True)}
    assert "inspector.decode._api" in decode  # ``from ._api import ...``, resolved


# ------------------------------------------------------------------------------------------ light imports

VALUE_MODULES = ["proxy.model", "proxy.events", "proxy.commands", "proxy.framing", "proxy.conditions",
                 "proxy.presets", "proxy.relay", "proxy.scheduler", "proxy.codec", "proxy.session",
                 "proxy.filesink", "proxy.userregex", "proxy.rules", "proxy.options"]
"""The engine's values and pure logic: usable by a script, the window or a test without the asyncio shell."""
HEAVY = ("proxy.server", "proxy.runner", "proxy.control", "asyncio", "inspector", *QT_TOP_LEVEL)


@pytest.mark.parametrize("module", VALUE_MODULES)
def test_importing_a_value_module_loads_neither_the_shell_nor_qt_nor_inspector(module: str) -> None:
    code = (f"import sys; import {module}\n"
            f"heavy = {HEAVY!r}\n"
            "print(sorted(h for h in heavy if any(m == h or m.startswith(h + '.') for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         check=True).stdout.strip()
    assert out == "[]", f"import {module} loads {out}"


# ------------------------------------------------------------------------------------------ import cycles


def test_no_import_cycles_at_module_level() -> None:
    graph = import_graph(module_level_only=True)
    found = cycles(graph)
    assert not found, "import cycles (a module-level import each way):\n" + "\n".join(
        describe(c, graph) for c in found)


def test_no_import_cycles_even_through_lazy_imports() -> None:
    """A function-level import that closes a cycle hides a tangle rather than removing it: only the known ones,
    owned by the other half of this issue, are tolerated, and the list may only shrink."""
    graph = import_graph(module_level_only=False)
    new = [c for c in cycles(graph) if c not in KNOWN_LAZY_CYCLES]
    assert not new, "import cycles through function-level imports:\n" + "\n".join(describe(c, graph) for c in new)


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


# ------------------------------------------------------------------------------------------ task spawning


def test_ruff_rejects_bare_task_creation_and_points_to_spawn(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom asyncio import ensure_future\n\n\nasync def main() -> None:\n"
                   "    asyncio.create_task(main())\n    ensure_future(main())\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                          str(ROOT / "pyproject.toml"), "--select", "TID251", "--output-format", "concise",
                          str(bad)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    lines = [x for x in out.stdout.splitlines() if "TID251" in x]
    assert out.returncode == 1 and len(lines) == 2, out.stdout + out.stderr  # the call, and the import
    assert all("proxy.tasks.spawn" in x for x in lines), lines


TASKS_STILL_OUTSIDE: tuple[str, ...] = ()


def test_tasks_are_created_only_by_proxy_tasks() -> None:
    """Ruff resolves ``asyncio.create_task`` by name; a loop's own ``create_task`` is found here instead."""
    offenders = []
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("proxy/tasks.py", *TASKS_STILL_OUTSIDE):
            continue
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("create_task", "ensure_future"):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"use proxy.tasks.spawn: {offenders}"

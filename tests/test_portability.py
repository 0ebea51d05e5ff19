"""Portability guards (docs/portability.md): what keeps sockscope from being Linux-only, checked on Linux CI.

Two kinds of check:

* the source of ``proxy/`` and ``inspector/`` (read, not run) uses no POSIX-only facility without a fallback;
* the command lines survive a standard output that cannot encode "→" or emoji, which is what Windows gives a
  redirected or piped stdout (the ANSI code page, e.g. cp1252). ``PYTHONIOENCODING=cp1252`` reproduces that here.

Every child process has a timeout.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("proxy", "inspector") for p in (ROOT / pkg).rglob("*.py"))

# Modules that do not exist on Windows: importing one must be guarded by ``except ImportError``.
POSIX_ONLY_MODULES = {"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "posix", "uvloop", "readline"}


def _guarded_by_import_error(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try):
            for h in node.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if h.type is None or any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError",
                                                                               "Exception") for n in names):
                    return True
    return False


def _tree(path: Path) -> tuple[ast.Module, dict[ast.AST, ast.AST]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    return tree, parents


def test_the_sources_were_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"proxy/server.py", "proxy/cli.py", "inspector/bridge.py", "inspector/run.py"} <= names


@pytest.mark.slow
def test_posix_only_modules_are_imported_with_a_fallback() -> None:
    bad = []
    for path in SOURCES:
        tree, parents = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module.split(".")[0]]
            else:
                continue
            for m in mods:
                if m in POSIX_ONLY_MODULES and not _guarded_by_import_error(node, parents):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {m} without `except ImportError`")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_no_posix_only_calls() -> None:
    """fork, add_reader/add_writer (absent on Windows' Proactor loop), kill groups, shell strings, /tmp."""
    banned_attrs = {"fork", "forkpty", "killpg", "setsid", "getpgid", "add_reader", "add_writer", "pidfd_open"}
    bad = []
    for path in SOURCES:
        tree, _ = _tree(path)
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in banned_attrs:
                bad.append(f"{where}: .{node.attr} does not exist on Windows")
            elif isinstance(node, ast.keyword) and node.arg == "shell" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                bad.append(f"{where}: shell=True (quoting differs between cmd.exe and sh)")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/tmp"):
                bad.append(f"{where}: hard-coded /tmp (use tempfile)")
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_add_signal_handler_always_has_a_fallback() -> None:
    """Windows' event loops raise NotImplementedError from ``loop.add_signal_handler``."""
    bad = []
    for path in SOURCES:
        tree, parents = _tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "add_signal_handler":
                p: ast.AST = node
                while p in parents and not isinstance(p, ast.Try):
                    p = parents[p]
                handled = isinstance(p, ast.Try) and any(
                    h.type is not None and "NotImplementedError" in ast.unparse(h.type) for h in p.handlers)
                if not handled:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: add_signal_handler without a fallback")
    assert not bad, "\n".join(bad)


def test_so_linger_is_packed_per_platform() -> None:
    """``struct linger`` is two ints on POSIX, two u_shorts on Windows: a fixed "ii" sends no RST there."""
    from proxy import server

    assert len(server._LINGER_RESET) == (4 if sys.platform == "win32" else 8)
    for path in [*SOURCES, *sorted((ROOT / "tests").glob("*.py"))]:
        text = path.read_text(encoding="utf-8")
        if "SO_LINGER" in text and path.name not in ("test_portability.py",):
            assert 'struct.pack("ii", 1, 0))' not in text, f"{path.relative_to(ROOT)}: use the platform's packing"


# ------------------------------------------------------------------------- a stdout that cannot encode "→"

# What Windows gives a redirected stdout (`> log.txt`, a pipe, the window's child proxy): the ANSI code page.
NARROW = {**os.environ, "PYTHONIOENCODING": "cp1252", "PYTHONUNBUFFERED": "1"}
NARROW.pop("PYTHONUTF8", None)

@pytest.mark.timeout(60)
def test_the_headless_proxy_runs_with_a_narrow_stdout() -> None:
    r = subprocess.run([sys.executable, "-m", "proxy", "--demo", "--demo-pings", "1", "--demo-interval", "0.05"],
                       capture_output=True, env=NARROW, cwd=ROOT, timeout=45)
    out = r.stdout.decode("cp1252", "replace")
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert "sockscope: listening on 127.0.0.1:" in out and "ping 1" in out


@pytest.mark.timeout(60)
def test_dump_runs_with_a_narrow_stdout(tmp_path: Path) -> None:
    from inspector.interop.session_io import SessionWriter
    from proxy.model import Clock, ConnectionOpened, Direction, Message

    path = tmp_path / "s.sockscope"
    with SessionWriter(path, clock=Clock(0, 0)) as w:
        w.write(ConnectionOpened(1, ("127.0.0.1", 40000), ("127.0.0.1", 5555), 0))
        w.write(Message(1, 1, Direction.S2C, 0, "Hello from the exercise server! 🚀".encode(), 1000, 1000))
    r = subprocess.run([sys.executable, "-m", "inspector.dump", str(path)], capture_output=True, env=NARROW,
                       cwd=ROOT, timeout=45)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")[-2000:]
    assert b"Hello from the exercise server" in r.stdout

"""Tests never read or write the user's real settings (tests/conftest.py ``isolated_settings``).

The window's settings, written here in this process and in a child process as the app writes them, land in the
session's temporary directory, and the user's real settings file is byte for byte what it was when the session
started. (tests/conftest.py also checks the real file once the whole session has run.) Each check of the real file
brackets only the write it makes, so a sockscope window in use meanwhile cannot fail it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from tests.conftest import REAL_SETTINGS, settings_snapshot

ENVIRONMENT_AT_IMPORT = dict(os.environ)
"""What a test module that builds its subprocesses' environment at import time (test_tutorial's ENV) passes on."""

NATIVE_ELSEWHERE = pytest.mark.xfail(
    sys.platform in ("darwin", "win32"), strict=True,
    reason="QSettings(org, app) uses the native format, a plist on macOS and the registry on Windows, which "
           "QSettings.setPath cannot move: inspector/ui/main_window.py must open an ini file the tests can point "
           "elsewhere (e.g. from an environment variable) for these platforms to be isolated")


@NATIVE_ELSEWHERE
def test_the_windows_settings_in_this_process_are_in_the_session_directory(isolated_settings: Path) -> None:
    before = settings_snapshot()
    s = QSettings("sockscope", "sockscope")  # what MainWindow opens when a test gives it no settings
    s.setValue("isolation/probe", "in-process")
    s.sync()
    assert settings_snapshot() == before
    assert s.status() is QSettings.Status.NoError
    assert Path(s.fileName()).is_relative_to(isolated_settings), s.fileName()
    assert Path(s.fileName()).read_text(encoding="utf-8").count("in-process") == 1


@NATIVE_ELSEWHERE
def test_a_process_a_test_starts_writes_its_settings_in_the_session_directory(isolated_settings: Path) -> None:
    code = ("from PySide6.QtCore import QSettings\n"
            "s = QSettings('sockscope', 'sockscope')\n"
            "s.setValue('isolation/probe', 'child')\n"
            "s.sync()\n"
            "print(s.fileName())\n")
    for env in (None, ENVIRONMENT_AT_IMPORT):  # the environment now, and as a module saw it when imported
        before = settings_snapshot()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                             env=env)
        assert settings_snapshot() == before
        written = Path(out.stdout.strip())
        assert written.is_relative_to(isolated_settings), written
        assert "child" in written.read_text(encoding="utf-8")


def test_the_real_settings_snapshot_sees_a_change(tmp_path: Path) -> None:
    """The check is only as good as the snapshot: a rewrite with the same size is still a change."""
    f = tmp_path / "sockscope.conf"
    f.write_text("[recent]\ntargets=a\n", encoding="utf-8")
    before = settings_snapshot((f, tmp_path / "absent.conf"))
    assert before[1] is None
    f.write_text("[recent]\ntargets=b\n", encoding="utf-8")
    assert settings_snapshot((f, tmp_path / "absent.conf")) != before
    assert all(p.is_absolute() for p in REAL_SETTINGS)

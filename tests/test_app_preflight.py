"""Before Qt loads its X11 plugin, ``sockscope`` names the system libraries that plugin would miss (Qt itself
aborts the process with a message that names only one of them)."""

from __future__ import annotations

import sys

import pytest

from inspector import app


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the X11 plugin's libraries are a Linux matter")
def test_missing_x11_libraries_are_named_with_their_packages(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(app, "_XCB_LIBRARIES", {"libc6": "libc.so.6", "libxcb-nothing9": "libxcb-nothing.so.9"})
    assert app.missing_x11_libraries() == ["libxcb-nothing9"]
    assert app.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-nothing9" in err and "sockscope-proxy --demo" in err


def test_no_check_without_an_x_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(app, "_XCB_LIBRARIES", {"libxcb-nothing9": "libxcb-nothing.so.9"})
    assert app.missing_x11_libraries() == []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert app.missing_x11_libraries() == []

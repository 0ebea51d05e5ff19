"""``sockscope run --window -- python game.py`` (issue 20, item 7): the window opens on the program's traffic. It
attaches over the control protocol to the run's own proxy (a loopback endpoint with a fresh token), the program
starts once it is attached, every message shows as a row, and the window holds the struct layouts found in the
program's source. A real child game, a real proxy and a real window (offscreen), in this process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from inspector.app import main as app_main
from inspector.ui.main_window import MainWindow
from tests.test_run import free_port
from tests.test_run_layouts import STRUCT_GAME, N

BOUND = 60.0


def run_main(argv: list[str]) -> int:
    return app_main(["run", *argv])  # the window comes in through the sockscope command
"""Seconds after which the test closes the window whatever it shows (pytest-timeout is the backstop)."""


@pytest.mark.timeout(120)
def test_run_window_shows_every_message_of_the_program(qapp: Any, tmp_path: Path,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "game.py"
    script.write_text(STRUCT_GAME, encoding="utf-8")
    port = free_port()
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + BOUND

    def watch() -> None:
        """On the GUI thread, every 50 ms: close the run's window once all the program's messages are rows."""
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        for w in windows:
            seen["layouts"] = list(getattr(w, "source_layouts", []))
            seen["rows"] = w.model.rowCount()
            seen["link"] = None if w.link is None else w.link.kind
            if seen["rows"] >= 2 * N or time.monotonic() > deadline:
                w.close()
                return
        if time.monotonic() > deadline and not windows:
            return
        QTimer.singleShot(50, watch)

    QTimer.singleShot(0, watch)
    rc = run_main(["--port", str(port), "--window", "--", sys.executable, str(script), str(port), str(N)])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert out == "done\n"  # the program's own output, unchanged
    assert seen.get("link") == "control", seen  # attached over the control protocol
    assert seen.get("rows") == 2 * N, (seen, err)
    assert {x.fmt for x in seen["layouts"]} == {"<BBHff", "<HHff8sI"}
    assert "opening the window" in err and "token" not in err  # its own endpoint: no token printed


def test_run_window_watches_one_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--port", "5555", "--port", "5556", "--window", "--", sys.executable, "game.py"]) == 2
    assert "--window works with one --port only" in capsys.readouterr().err

"""The window with its proxy as a real child process (what ``sockscope demo`` runs): traffic arrives over the
control protocol, and killing the child is survived, said, and recoverable."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import ChildProcessLink, LinkOptions
from inspector.ui.main_window import MainWindow

WAIT = 20_000


@pytest.fixture
def window(qtbot: Any, tmp_path: Any) -> Iterator[MainWindow]:
    w = MainWindow(LinkOptions(demo=True, demo_interval=0.1),
                   settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   link_factory=ChildProcessLink)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.stop_link()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_demo_child_traffic_then_the_child_is_killed(qtbot: Any, window: MainWindow) -> None:
    w = window
    try:
        qtbot.waitUntil(lambda: w.link is not None and w.model.rowCount() >= 4, timeout=WAIT)
    except Exception:
        lk: Any = w.link
        raise AssertionError(
            f"no demo traffic: rows={w.model.rowCount()} link={lk!r} alive={getattr(lk, 'alive', None)} "
            f"death={getattr(lk, 'death', None)!r} exit={lk.proc.poll() if lk is not None and lk.proc else None} "
            f"stderr={getattr(lk, '_stderr', None)} banner={w.banner_text.text()!r}") from None
    link = w.link
    assert isinstance(link, ChildProcessLink) and link.proc is not None
    texts = [w.model.index(r, 5).data() for r in range(w.model.rowCount())]
    assert any("Ping received!" in str(t) for t in texts), texts
    link.proc.kill()  # the proxy process dies without a word
    qtbot.waitUntil(lambda: not w.banner.isHidden(), timeout=WAIT)
    assert "proxy" in w.banner_text.text().lower()
    rows = w.model.rowCount()
    w.filter_bar.set_text("s2c")  # the captured messages are still there and usable
    w.filter_bar.apply()
    assert 0 < w.model.rowCount() < rows
    w.restart_link()
    qtbot.waitUntil(lambda: w.link is not None and w.link is not link and w.link.alive, timeout=WAIT)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["child", "thread"])
def test_the_users_conditions_reach_a_proxy_the_window_starts(kind: str, echo_server: Any) -> None:
    """``sockscope --target ... --latency 77``: the proxy the window starts (a child, or ``--in-process``) is given
    the conditions, not only the conditions panel."""
    from inspector.bridge import ThreadLink

    options = LinkOptions(listen=("127.0.0.1", 0), target=("127.0.0.1", echo_server.port),
                          conditions={"c2s": {"latency_ms": 77}, "s2c": {"latency_ms": 5}})
    link = ChildProcessLink(options) if kind == "child" else ThreadLink(options)
    link.start()
    try:
        snapshot = link.command("snapshot").result(10)  # commands run in order: after the link's set_conditions
        assert snapshot["conditions"]["c2s"]["latency_ms"] == 77 and snapshot["conditions"]["s2c"]["latency_ms"] == 5
    finally:
        link.stop()

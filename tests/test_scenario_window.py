"""Scenarios in the window (inspector/ui/scenario_control.py), offscreen with a real engine on a thread: a loaded
scenario's planned line is in the timeline's series, its steps reach the engine (the measured round trips move and
the Conditions panel shows them), the panel's box names the step, a change by hand is said to last until the next
step, a wrong file shows its lines, and ``sockscope --scenario`` checks the file before opening a window.

Waits are ``qtbot.waitUntil``; the engine and its control endpoint run on a thread (``ThreadLink``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings

from inspector.bridge import LinkOptions, ThreadLink
from inspector.ui.main_window import MainWindow
from proxy.model import Direction

pytestmark = pytest.mark.timeout(90)
WAIT = 15_000
NS = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    made: list[MainWindow] = []
    settings = QSettings(str(tmp_path / "sockscope.ini"), QSettings.Format.IniFormat)

    def make(options: LinkOptions | None = None) -> MainWindow:
        w = MainWindow(options, settings=settings, link_factory=ThreadLink)
        qtbot.addWidget(w)
        w.resize(1360, 900)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.scenario.stop(restore=False)
        w.stop_link()


def running(w: MainWindow) -> bool:
    return w.link is not None and w.link.alive


@pytest.mark.slow
def test_a_loaded_scenario_is_drawn_on_the_timeline_and_played(qtbot: Any, make_window: Callable[..., MainWindow],
                                                               tmp_path: Path) -> None:
    f = tmp_path / "window.toml"
    f.write_text('name = "steps"\nlength = "1200ms"\n'
                 '[[step]]\nat = "0s"\nlatency = 0\nlabel = "fast"\n'
                 '[[step]]\nat = "600ms"\nlatency = 40\nlabel = "slow"\n', encoding="utf-8")
    w = make_window(LinkOptions(demo=True, demo_interval=0.02))
    w.show_timeline()
    qtbot.waitUntil(lambda: running(w) and len(w.timeline.plots.data.rtt_x) >= 3, timeout=WAIT)
    assert w.scenario.load(f)
    control = w.scenario
    assert control.player is not None and control.player.origin_ns is not None
    origin = control.player.origin_ns
    assert w.scenario.box.isVisible() and "step 1/2 'fast'" in w.scenario.status.text()
    # the plan is in the timeline's series: 0 ms added until 0.6 s, then 80 ms (40 each way)
    tl = w.timeline
    assert tl.scenario_plan == control.plan_points()
    tl.refresh(force=True)
    d = tl.plots.data
    t0 = w.store.t0_ns or 0
    step_x = (origin + 600_000_000 - t0) / NS
    assert list(zip(d.scenario_x, d.scenario_ms, strict=True)) == pytest.approx(
        [((origin - t0) / NS, 0.0), (step_x, 0.0), (step_x, 80.0), ((origin + 1_200_000_000 - t0) / NS, 80.0)])
    assert tl.plots.scenario_curve.getData()[1] is not None and len(tl.plots.scenario_curve.getData()[1]) == 4
    assert "scenario (planned)" in tl.plots.legend.text()
    # it plays: the second step reaches the panel and the engine, and the round trips measured after it carry it
    qtbot.waitUntil(lambda: control.player is not None and control.player.finished, timeout=WAIT)
    assert w.conditions.value().c2s.latency_ms == 40
    assert any("step 2/2 'slow' at 600 ms" in line for line in control.lines)
    assert "step 2/2 'slow' at 600 ms" in w.log.toPlainText()
    assert "finished" in control.status.text()

    def after_step() -> list[float]:
        tl.refresh(force=True)
        return [ms for x, ms in zip(d.rtt_x, d.rtt_ms, strict=True) if x > step_x + 0.1]

    qtbot.waitUntil(lambda: len(after_step()) >= 2, timeout=WAIT)
    assert min(after_step()) >= 80
    before = [ms for x, ms in zip(d.rtt_x, d.rtt_ms, strict=True) if (origin - t0) / NS < x < step_x - 0.1]
    assert before and sorted(before)[len(before) // 2] < 80


def test_a_scenarios_bandwidth_is_drawn_on_the_bytes_plot_as_it_takes_effect(
        qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    """Latency has the plan and the band on the RTT plot; bandwidth set by a step is a dotted line per direction on
    the bytes/s plot, gone when the direction is unlimited again."""
    f = tmp_path / "squeeze.toml"
    f.write_text('[[step]]\nat = "0s"\ns2c.bandwidth = "64KB/s"\n'
                 '[[step]]\nat = "300ms"\nbandwidth = "unlimited"\n', encoding="utf-8")
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    w.show_timeline()
    qtbot.waitUntil(lambda: running(w) and w.timeline._plots is not None, timeout=WAIT)
    plots = w.timeline.plots
    assert not any(line.isVisible() for line in plots.bandwidth_set.values())
    assert w.scenario.load(f)
    s2c, c2s = plots.bandwidth_set[Direction.S2C], plots.bandwidth_set[Direction.C2S]
    qtbot.waitUntil(lambda: s2c.isVisible(), timeout=WAIT)
    assert s2c.value() == 64_000 and not c2s.isVisible()
    qtbot.waitUntil(lambda: w.scenario.player is not None and w.scenario.player.finished, timeout=WAIT)
    qtbot.waitUntil(lambda: not s2c.isVisible(), timeout=WAIT)


def test_a_change_by_hand_lasts_until_the_next_step_and_stop_restores(
        qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    f = tmp_path / "long.toml"
    f.write_text('[[step]]\nat = "0s"\nlatency = 25\n[[step]]\nat = "10m"\nlatency = 50\n', encoding="utf-8")
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    qtbot.waitUntil(lambda: running(w), timeout=WAIT)
    before = w.conditions.value()
    assert w.scenario.load(f)
    assert w.conditions.value().c2s.latency_ms == 25
    assert w.scenario.stop_action.isEnabled() and w.scenario.hint.isVisible()
    col = w.conditions.cols[Direction.C2S]
    col.latency.spin.setValue(7)  # as if typed: the panel sends it a moment later
    qtbot.waitUntil(lambda: "changed by hand" in w.scenario.status.text(), timeout=WAIT)
    assert re.search(r"next: step 2/2 in (10 min|9 min [0-9]+ s)", w.scenario.status.text())
    assert any("they stay until the next step (10 min)" in line for line in w.scenario.lines)
    w.scenario.stop()
    assert w.conditions.value() == before
    assert not w.scenario.stop_action.isEnabled() and "stopped" in w.scenario.status.text()
    assert w.link is not None
    qtbot.waitUntil(lambda: w.link is not None and w.link.command("snapshot").result(5)["conditions"]
                    == before.to_dict(), timeout=WAIT)


def test_a_scenario_loaded_before_the_proxy_starts_plays_when_it_does(
        qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    f = tmp_path / "later.toml"
    f.write_text('[[step]]\nat = "0s"\nlatency = 15\n', encoding="utf-8")
    w = make_window(None)
    assert w.scenario.load(f)
    assert w.scenario.player is None and "starts when the proxy starts" in w.scenario.status.text()
    w.start_link(LinkOptions(demo=True, demo_interval=0.05))
    qtbot.waitUntil(lambda: w.scenario.player is not None and w.scenario.player.finished, timeout=WAIT)
    assert w.conditions.value().c2s.latency_ms == 15
    assert w.link is not None
    qtbot.waitUntil(lambda: w.link is not None and w.link.command("snapshot").result(5)["conditions"]["c2s"][
        "latency_ms"] == 15, timeout=WAIT)


def test_a_scenario_cut_short_by_the_proxy_plays_again_with_the_next_one(
        qtbot: Any, make_window: Callable[..., MainWindow], tmp_path: Path) -> None:
    f = tmp_path / "again.toml"
    f.write_text('[[step]]\nat = "0s"\nlatency = 12\n[[step]]\nat = "10m"\nlatency = 50\n', encoding="utf-8")
    w = make_window(LinkOptions(demo=True, demo_interval=0.05))
    qtbot.waitUntil(lambda: running(w), timeout=WAIT)
    assert w.scenario.load(f) and w.scenario.running
    w.stop_link()
    qtbot.waitUntil(lambda: "stopped with the proxy" in w.scenario.status.text(), timeout=WAIT)
    assert not w.scenario.running and w.scenario.stop_button.isVisible()
    w.start_link(LinkOptions(demo=True, demo_interval=0.05))
    qtbot.waitUntil(lambda: w.scenario.running and "step 1/2" in w.scenario.status.text(), timeout=WAIT)
    assert w.conditions.value().c2s.latency_ms == 12
    w.scenario.stop()
    w.stop_link()
    w.start_link(LinkOptions(demo=True, demo_interval=0.05))  # stopped by the user: it stays stopped
    qtbot.waitUntil(lambda: running(w), timeout=WAIT)
    assert not w.scenario.running and "stopped" in w.scenario.status.text()


def test_a_wrong_scenario_shows_each_problem_with_its_line(qtbot: Any, make_window: Callable[..., MainWindow],
                                                          tmp_path: Path) -> None:
    f = tmp_path / "wrong.toml"
    f.write_text('[[step]]\nat = 5\n\n[[step]]\nat = "1s"\nlatncy = 3\n', encoding="utf-8")
    w = make_window(None)
    assert not w.scenario.load(f)
    box = w.scenario.error_box
    assert box is not None and box.isVisible()
    lines = box.informativeText().splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "6"]
    assert "did you mean 'latency'?" in lines[1]
    assert f"scenario: {f}:2: at: a time needs a unit" in w.log.toPlainText()
    assert w.scenario.scenario is None and not w.scenario.box.isVisible()
    box.accept()


def test_sockscope_checks_the_scenario_before_opening_a_window(tmp_path: Path) -> None:
    f = tmp_path / "wrong.toml"
    f.write_text('[[step]]\nat = "0s"\nloss = 100\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "inspector.app", "demo", "--scenario", str(f)], capture_output=True,
                         text=True, encoding="utf-8", env=env, cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"sockscope: error: --scenario {f}:3: loss: must be below 100 % (no network at all "
                                  "is an outage: outage = \"10s\")")

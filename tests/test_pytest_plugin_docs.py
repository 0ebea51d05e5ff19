"""docs/testing.md's "Testing your game with sockscope": every example in it is run here.

The section's Python and YAML blocks are the files of docs/examples/testing/ (checked to be identical, so the page
and the files cannot drift apart); its console command is run as written; the failure report it shows is compared
with the one the plugin prints for the failing variant it describes; and the CI job's test command is run, with a
failing test added, to check that the captures land where the job uploads them from.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples" / "testing"
PLUGIN_ARGS = [] if any(ep.name == "sockscope" for ep in entry_points(group="pytest11")) else [
    "-p", "inspector.pytest_plugin"]
"""The plugin: from the installed sockscope's entry point, else named (naming it while the entry point loads it
too would register it twice)."""
QUIET_PLUGINS = ["-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:pytest-qt"]


def section() -> str:
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    start = text.index("## Testing your game with sockscope")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(kind: str) -> list[str]:
    return [b.rstrip("\n") for b in re.findall(rf"^```{kind}\n(.*?)^```$", section(), re.M | re.S)]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    e.pop("PYTEST_ADDOPTS", None)
    e.pop("PYTEST_XDIST_WORKER", None)
    return e


def test_every_code_block_is_an_example_file_and_every_file_is_shown() -> None:
    files = {p.name: p.read_text(encoding="utf-8").rstrip("\n") for p in EXAMPLES.iterdir() if p.is_file()}
    shown = blocks("python") + blocks("yaml")
    assert sorted(shown) == sorted(files.values()), "docs/testing.md and docs/examples/testing/ differ"
    every = re.findall(r"^```(\w*)$", section(), re.M)
    assert sorted(k for k in every if k) == ["console", "python", "python", "python", "text", "yaml"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_console_command_runs_the_examples_and_they_pass() -> None:
    (command,) = blocks("console")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "pytest"]
    # from the project's root, with its configuration (pytest-qt stays: the configuration names its qt_api)
    proc = subprocess.run([sys.executable, *argv[1:], *PLUGIN_ARGS, "-p", "no:cacheprovider"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr


CONNECTION_STATE = re.compile(r"^(  connection \d+): (still open|closed \(both sides closed\))$")
"""A connection's line in the report: the game's last FIN crosses the proxy's 200 ms at about the moment the test
fails, so the report may see it closed or still open (both are what the plugin prints, at that instant)."""


def _normalised(report: str) -> list[str]:
    lines = report.strip("\n").splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("sockscope proxy")):]
    lines = [re.sub(r"\+\d+ ms", "+N ms", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)) for line in lines]
    return [CONNECTION_STATE.sub(r"\1: STATE", line) for line in lines]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_failure_report_shown_is_what_the_plugin_prints(pytester: pytest.Pytester) -> None:
    for p in EXAMPLES.glob("*.py"):
        shutil.copy(p, pytester.path / p.name)
    test = pytester.path / "test_game.py"
    source = test.read_text(encoding="utf-8")
    slower = source.replace("proxy.conditions(latency=100)", "proxy.conditions(latency=200)")
    assert slower != source
    test.write_text(slower, encoding="utf-8")
    result = pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-k", "300_ms",
                                "--sockscope-dir=sockscope-captures")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    tail = out[out.index("- sockscope -"):].splitlines()
    printed = "\n".join(tail[:next(i for i, line in enumerate(tail) if line.startswith("="))])
    (shown,) = blocks("text")
    assert _normalised(printed) == _normalised(shown)
    states = [line for line in printed.splitlines() if line.startswith("  connection ")]
    assert states and all(CONNECTION_STATE.match(line) for line in states), states
    assert (pytester.path / "sockscope-captures").is_dir()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_ci_job_runs_the_tests_and_uploads_the_failed_captures(pytester: pytest.Pytester) -> None:
    (text,) = blocks("yaml")
    job = yaml.safe_load(text)
    steps = job["jobs"]["test"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    install, test_command = runs
    assert "pytest-xdist" in install and "pytest " in install
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "failure()"
    # The game and its fixture, with one test that passes and one that fails. (test_game.py runs in the test of
    # the console command: its 300 ms budget is a wall-clock one, not for two workers on a shared 2-core machine.)
    for name in ("game.py", "conftest.py"):
        shutil.copy(EXAMPLES / name, pytester.path / name)
    pytester.makepyfile(test_on_purpose='''
        import game

        def test_the_welcome(sockscope_proxy, game_server):
            proxy = sockscope_proxy(target=game_server.address)
            assert game.client(*proxy.listen) == game.WELCOME

        def test_a_welcome_in_french(sockscope_proxy, game_server):
            proxy = sockscope_proxy(target=game_server.address)
            assert game.client(*proxy.listen) == "Bonjour"
    ''')
    argv = shlex.split(test_command)
    assert argv[:3] == ["python", "-m", "pytest"] and "-n" in argv
    proc = subprocess.run([sys.executable, *argv[1:], *PLUGIN_ARGS, *QUIET_PLUGINS], cwd=pytester.path, env=env(),
                          capture_output=True, text=True, timeout=170)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and re.search(r"\b1 failed, 1 passed\b", out), out
    uploaded = pytester.path / upload["with"]["path"]
    saved = sorted(p.name for p in uploaded.iterdir())
    assert len(saved) == 2 and all("test_on_purpose.py__test_a_welcome_in_french" in n for n in saved), saved
    assert {Path(n).suffix for n in saved} == {".sockscope", ".pcapng"}

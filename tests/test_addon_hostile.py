"""Every file of tests/hostile/addons/ loaded into a real relay: a file that cannot be loaded fails with a clear
reason (and its line) while the proxy keeps relaying; a file that loads never changes, loses or stalls the game's
bytes beyond its hold timeout, and what it did wrong is reported.

Waits are on records and on bytes arriving (bounded), never on sleeps. That a hung hook is bounded is shown by the
bytes arriving at all (pytest-timeout is the backstop) and by the report saying it was interrupted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.addonhost import REPORT_LIMIT, AddonHost, AddonLoadError
from proxy.framing import FramingSpec
from proxy.model import Notice
from proxy.runner import ProxyThread
from tests.conftest import EchoServer, Recorder, connect, recv_exact
from tests.test_addon_hooks import load, wait_notice

HOSTILE = Path(__file__).resolve().parent / "hostile" / "addons"

LOAD_ERRORS = {
    "raises_at_import.py": "RuntimeError: boom at import at line 3",
    "loops_at_import.py": "did not finish within 0.5 s (an endless loop at import?); it was stopped",
    "exits_at_import.py": "SystemExit: 3 at line 5",
    "syntax_error.pysrc": "SyntaxError: expected ':' at line 3",
    "no_hooks.py": "defines no addon: give it a list `addons = [MyAddon()]`",
    "addons_not_a_list.py": "`addons` must be a list of addon objects, got int",
    "addons_lists_a_class.py": "is a class; list an instance of it: addons = [Forgot()]",
    "wrong_signature.py": "message must take (ctx, msg), its signature is message(msg)",
    "bad_settings.py": "timeout must be above 0 and at most 10 seconds",
}
"""Files that must not load, and what their error says."""


@pytest.fixture
def proxy(start_proxy: Callable[..., ProxyThread], echo_server: EchoServer) -> ProxyThread:
    p = start_proxy(echo_server.port, FramingSpec("lines", "lines"))
    # a short import bound, so the endless import is stopped within the test's time
    p.server.addons = p.call(lambda: AddonHost(p.server, load_timeout=0.5, observe_timeout=0.5))
    return p


def relays(p: ProxyThread, payload: bytes = b"still relaying\n") -> None:
    with connect(p.port) as c:
        c.sendall(payload)
        assert recv_exact(c, len(payload)) == payload


def test_every_hostile_file_is_listed_in_the_readme() -> None:
    readme = (HOSTILE / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in HOSTILE.iterdir() if p.name != "README.md")
    assert files and all(f"| {name} |" in readme for name in files)
    assert set(LOAD_ERRORS) | set(RUNTIME) == set(files)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(LOAD_ERRORS))
def test_a_file_that_cannot_load_says_why_and_the_proxy_goes_on(name: str, proxy: ProxyThread) -> None:
    with pytest.raises(AddonLoadError) as err:
        load(proxy, HOSTILE / name)
    assert LOAD_ERRORS[name] in str(err.value)
    assert "\n" not in str(err.value).split("\n", 1)[0]  # the reason is one line (a traceback may follow)
    assert not proxy.server.addons or not proxy.server.addons.files
    relays(proxy)


def _loops(p: ProxyThread, rec: Recorder) -> None:
    with connect(p.port) as c:
        c.sendall(b"spin\n")
        assert recv_exact(c, 5) == b"spin\n"  # forwarded as it was, after the timeout
        n = wait_notice(rec, lambda n: n.level == "error" and "did not return within 0.2 s" in n.text)
        assert "it was interrupted" in n.text and "(it was at line 12)" in n.text
        c.sendall(b"after\n")
        assert recv_exact(c, 6) == b"after\n"
    # the interrupted hook ended, so the next messages were held for the addon again (not skipped)
    assert not any("stuck" in n.text for n in rec.of(Notice))


def _swallows(p: ProxyThread, rec: Recorder) -> None:
    with connect(p.port) as c:
        c.sendall(b"spin\n")
        assert recv_exact(c, 5) == b"spin\n"
        c.sendall(b"meanwhile\n")
        assert recv_exact(c, 10) == b"meanwhile\n"  # not held for the stuck addon
        wait_notice(rec, lambda n: n.level == "error" and "is disabled" in n.text and "even when interrupted" in n.text,
                    timeout=20)
    assert not p.server.shared.intercept


def _sleeps(p: ProxyThread, rec: Recorder) -> None:
    with connect(p.port) as c:
        c.sendall(b"spin\n")
        assert recv_exact(c, 5) == b"spin\n"
        wait_notice(rec, lambda n: "did not return within 0.2 s" in n.text)
        stuck = "still stuck in a call that cannot be interrupted"
        for _ in range(100):  # each goes on (after its own timeout at most) until the addon counts as stuck
            c.sendall(b"meanwhile\n")
            assert recv_exact(c, 10) == b"meanwhile\n"
            if any(stuck in n.text for n in rec.of(Notice)):
                break
        wait_notice(rec, lambda n: stuck in n.text)


def _garbage(p: ProxyThread, rec: Recorder) -> None:
    relays(p, b"one\ntwo\n")
    n = wait_notice(rec, lambda n: "returned a " in n.text)
    assert "the value was ignored" in n.text


def _bad_decisions(p: ProxyThread, rec: Recorder) -> None:
    relays(p, b"0\n1\n2\n3\n4\n5\n")
    texts = [n.text for n in rec.of(Notice) if n.level == "error"]
    assert any("TypeError: replace: expected bytes, got str" in t for t in texts)
    assert any("ValueError: delay: seconds must be >= 0" in t for t in texts)


def _exits(p: ProxyThread, rec: Recorder) -> None:
    relays(p, b"a\nb\n")
    wait_notice(rec, lambda n: "raised SystemExit" in n.text)
    wait_notice(rec, lambda n: "raised KeyboardInterrupt" in n.text)
    relays(p, b"c\n")


def _deep(p: ProxyThread, rec: Recorder) -> None:
    relays(p, b"x\n")
    n = wait_notice(rec, lambda n: "RecursionError" in n.text)
    assert len(n.text) < 5000  # the traceback is cut (or its repeated frames folded), never a thousand frames


def _huge(p: ProxyThread, rec: Recorder) -> None:
    relays(p, b"x\n")
    n = wait_notice(rec, lambda n: n.text.endswith("…") and "Loud" in n.text)
    assert len(n.text) < 2100


RUNTIME: dict[str, Callable[[ProxyThread, Recorder], None]] = {
    "loops_in_hook.py": _loops,
    "swallows_interrupt.py": _swallows,
    "sleeps_in_hook.py": _sleeps,
    "returns_garbage.py": _garbage,
    "bad_decisions.py": _bad_decisions,
    "exits_in_hook.py": _exits,
    "deep_recursion.py": _deep,
    "huge_log.py": _huge,
}
"""Files that load and misbehave at run time, and how the test drives each."""


SLOW = {"swallows_interrupt.py"}  # waits the 3 s after which a hook that does not stop disables its addon


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(RUNTIME)])
def test_a_file_that_misbehaves_at_run_time_never_costs_the_game_its_bytes(
        name: str, proxy: ProxyThread, recorder: Recorder) -> None:
    load(proxy, HOSTILE / name)
    RUNTIME[name](proxy, recorder)
    relays(proxy)  # and the proxy is still relaying
    errors = [n for n in recorder.of(Notice) if n.level == "error" and "raised" in n.text]
    assert len(errors) <= REPORT_LIMIT  # reported, never flooded
    if name in SLOW:  # its hook cannot be stopped: wait for it to give up, or it spins for the GIL in later tests
        spinning = [t for t in threading.enumerate() if t.name.startswith(f"sockscope-addon {name}")]
        proxy.stop()  # the engine stops the file's worker, which ends once the hook returns
        for t in spinning:
            t.join(30)
        assert not any(t.is_alive() for t in spinning), spinning

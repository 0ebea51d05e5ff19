"""Addons from the outside: ``sockscope-proxy -s FILE`` as a process (the terminal shows what addons say and how
they fail), a file that cannot load (exit status 2, its line), and the ``load_addon``/``unload_addon`` commands of
the control protocol (what the window's "Load addon…" sends).
"""

from __future__ import annotations

import os
import signal
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from proxy.control.client import ControlClient, ControlError
from proxy.runner import ProxyThread
from tests.conftest import CONTROL_TOKEN, EchoServer, connect, recv_exact
from tests.test_addon_examples import EXAMPLES, Sink, send_all
from tests.test_addon_hooks import write_addon
from tests.test_cli import ENV, Child, run_cli

pytestmark = pytest.mark.slow  # starts the proxy as a process: in the full run, not the fast loop

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "hostile" / "addons"
GROUP = "sockscope.value_decoders"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def decoders_env(tmp: Path) -> dict[str, str]:
    """The child finds ``msg.decoded``'s decoder through the entry point this checkout's pyproject.toml declares,
    even when the installed metadata is older (as tests/summariser_env.py does for the printer's)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    paths = [str(REPO)]
    if installed != declared:
        dist = tmp / "sockscope_test_value_decoders-0.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sockscope-test-value-decoders\nVersion: 0.0\n")
        (dist / "entry_points.txt").write_text(
            f"[{GROUP}]\n" + "".join(f"{name} = {value}\n" for name, value in declared.items()))
        paths.append(str(tmp))
    old = ENV.get("PYTHONPATH")
    return {**ENV, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


@pytest.fixture
def child() -> Callable[..., Child]:
    started: list[Child] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Child:
        c = Child(*args, env=env)
        started.append(c)
        return c

    yield start  # type: ignore[misc]
    for c in started:
        c.kill()


@posix_only
@pytest.mark.timeout(60)
def test_dash_s_loads_addons_before_the_first_connection_and_the_terminal_shows_them(
        tmp_path: Path, child: Callable[..., Child]) -> None:
    sink = Sink()
    watcher = write_addon(tmp_path, """
        def connection_closed(ctx, conn):
            ctx.log(f"#{conn.id} {conn.reason}")
    """, "watcher.py")
    try:
        c = child("--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{sink.port}", "--framing", "lines",
                  "-s", str(EXAMPLES / "rename_player.py"), "--script", str(watcher), env=decoders_env(tmp_path))
        port = c.listening_port()
        assert any("addon 'RenamePlayer' (rename_player.py) loaded: holds messages to change them" in x
                   for x in c.out), c.out
        assert any("addon 'watcher' (watcher.py) loaded: observes; hooks connection_closed" in x for x in c.out)
        send_all(port, b'{"name": "Ada"}\n')
        assert sink.received() == b'{"name": "Grace"}\n'  # decoded through the entry point, in the proxy process
        c.wait_line(c.out, lambda x: x.endswith("info: addon 'RenamePlayer' (rename_player.py): #1: renamed 'Ada' "
                                                "to 'Grace'"))
        c.wait_line(c.out, lambda x: x.endswith("addon 'watcher' (watcher.py): #1 closed"))
        c.proc.send_signal(signal.SIGINT)
        assert c.finish() == 0
    finally:
        sink.close()


@posix_only
@pytest.mark.timeout(60)
def test_a_failing_hook_prints_its_traceback_and_the_proxy_goes_on(
        tmp_path: Path, child: Callable[..., Child], echo_server: EchoServer) -> None:
    broken = write_addon(tmp_path, """
        modifies = True

        def message(ctx, msg):
            return msg.data.decode("ascii")
    """, "ascii_only.py")
    c = child("--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{echo_server.port}", "--framing", "lines",
              "-s", str(broken))
    port = c.listening_port()
    with connect(port) as s:
        s.sendall("café\n".encode())
        assert recv_exact(s, 6) == "café\n".encode()  # unchanged
        c.wait_line(c.out, lambda x: "message() raised UnicodeDecodeError" in x and "at line 5" in x)
        c.wait_line(c.out, lambda x: x.startswith("Traceback (most recent call last):"))
        c.wait_line(c.out, lambda x: 'return msg.data.decode("ascii")' in x)
        s.sendall(b"plain\n")
        assert recv_exact(s, 6) == b"plain\n"
    c.proc.send_signal(signal.SIGINT)
    assert c.finish() == 0


@pytest.mark.timeout(60)
def test_a_file_that_cannot_load_stops_the_proxy_with_its_line() -> None:
    out = run_cli("--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "-s", str(HOSTILE / "raises_at_import.py"))
    assert out.returncode == 2
    first = out.stderr.splitlines()[0]
    assert first == (f"sockscope-proxy: error: -s {HOSTILE / 'raises_at_import.py'}: raises_at_import.py: "
                     "RuntimeError: boom at import at line 3")
    assert "listening on" not in out.stdout
    missing = run_cli("--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "-s", "no/such/addon.py")
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.timeout(60)
def test_load_addon_and_unload_addon_over_the_control_protocol(
        tmp_path: Path, start_endpoint: Callable[..., ProxyThread], echo_server: EchoServer) -> None:
    p = start_endpoint(echo_server.port)
    upper = write_addon(tmp_path, """
        modifies = True

        def message(ctx, msg):
            ctx.replace(msg.data.upper())
    """, "upper.py")
    with ControlClient("127.0.0.1", p.control_port, CONTROL_TOKEN) as cc:
        result = cc.call("load_addon", path=str(upper))
        assert result["addons"] == ["upper"]
        assert result["loaded"] == [{"name": "upper", "file": str(upper), "modifies": True, "enabled": True,
                                     "hooks": ["message"], "failures": 0}]
        with connect(p.port) as s:
            s.sendall(b"shout")
            assert recv_exact(s, 5) == b"SHOUT"
        with pytest.raises(ControlError) as err:
            cc.call("load_addon", path=str(HOSTILE / "syntax_error.pysrc"))
        assert "load_addon: syntax_error.pysrc: SyntaxError: expected ':' at line 3" in str(err.value)
        assert cc.call("unload_addon", path=str(upper)) == {"path": str(upper), "addons": ["upper"]}
        with connect(p.port) as s:
            s.sendall(b"quiet")
            assert recv_exact(s, 5) == b"quiet"
        # a proxy whose control endpoint takes remote clients does not run code sent its way
        p.server.addons_over_control = False
        with pytest.raises(ControlError) as err:
            cc.call("load_addon", path=str(upper))
        assert "refused" in str(err.value) and "-s FILE" in str(err.value)

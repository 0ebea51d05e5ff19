"""``sockscope run``: the start-up hook redirects only the named loopback ports of a Python child, the proxy prints
the traffic, and the program's own output and exit status are unchanged.

Each test runs real processes on 127.0.0.1 with bounded timeouts. The hook is never imported into this process
(importing it would install it here); it is exercised in child interpreters only.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.run import HOOK_DIR, REDIRECT_ENV, isolating_flag, main, resolve_python_command, split_command
from tests.conftest import IO_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 30.0

WELCOME = "Welcome to the server! 🚀"
REPLY = "Ping received! 📥"

# The tutorial's shape: server and client in one script sharing one port constant.
TUTORIAL = textwrap.dedent('''
    import socket, sys, threading

    PORT = int(sys.argv[1])
    ready = threading.Event()

    def server():
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", PORT))
        srv.listen()
        ready.set()
        conn, _ = srv.accept()
        conn.settimeout(10)
        conn.send({welcome!r}.encode("utf-8"))
        print(f"[SERVER] Client says: {{conn.recv(2048).decode('utf-8')}}", flush=True)
        conn.close()
        srv.close()

    t = threading.Thread(target=server)
    t.start()
    ready.wait(10)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(("127.0.0.1", PORT))
    print(f"[CLIENT] Message received: {{c.recv(2048).decode('utf-8')}}", flush=True)
    c.send({reply!r}.encode("utf-8"))
    t.join(10)
    c.close()
    print("[MAIN] done", flush=True)
''').format(welcome=WELCOME, reply=REPLY)

# Two servers in one process; the client talks to both and reports whom it is really connected to.
TWO_PORTS = textwrap.dedent('''
    import socket, sys

    p1, p2 = int(sys.argv[1]), int(sys.argv[2])
    servers = [socket.create_server(("127.0.0.1", p)) for p in (p1, p2)]
    result = {}
    for name, port, srv in (("first", p1, servers[0]), ("second", p2, servers[1])):
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn, _ = srv.accept()
        conn.settimeout(10)
        c.sendall(f"hello {name}".encode())
        result[name] = {"peer": c.getpeername()[1], "got": conn.recv(100).decode()}
        c.close()
        conn.close()
    print(result["first"]["got"], result["second"]["got"], flush=True)
    print("RESULT", __import__("json").dumps(result), flush=True)
''')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", REDIRECT_ENV)}
    env["PYTHONIOENCODING"] = "utf-8"  # the emoji must survive a pipe on Windows too
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, encoding="utf-8", timeout=RUN_TIMEOUT,
                          env=env or child_env(), cwd=ROOT)


def sockscope_run(*args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "inspector.run", *args])


# -------------------------------------------------------------------------------------------- end to end


def test_tutorial_script_goes_through_the_proxy_and_its_output_is_unchanged(tmp_path: Path) -> None:
    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL, encoding="utf-8")

    direct = run([sys.executable, str(script), str(free_port())])
    assert direct.returncode == 0, direct.stderr
    port = free_port()
    proxied = sockscope_run("--port", str(port), "--", sys.executable, str(script), str(port))

    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout == direct.stdout  # sockscope's own lines go to stderr
    assert direct.stdout.splitlines() == [f"[CLIENT] Message received: {WELCOME}",
                                          f"[SERVER] Client says: {REPLY}", "[MAIN] done"]
    log = proxied.stderr
    opened = [line for line in log.splitlines() if " opened " in line]
    assert len(opened) == 1 and opened[0].endswith(f"→ 127.0.0.1:{port}"), log
    assert any("s2c" in line and WELCOME in line for line in log.splitlines()), log
    assert any("c2s" in line and REPLY in line for line in log.splitlines()), log
    assert "closed" in log


def test_only_the_named_ports_are_redirected(tmp_path: Path) -> None:
    script = tmp_path / "two_ports.py"
    script.write_text(TWO_PORTS, encoding="utf-8")
    p1, p2 = free_port(), free_port()
    proxied = sockscope_run("--port", str(p1), "--", sys.executable, str(script), str(p1), str(p2))

    assert proxied.returncode == 0, proxied.stderr
    result = json.loads(proxied.stdout.splitlines()[-1].removeprefix("RESULT "))
    assert result["first"]["got"] == "hello first" and result["second"]["got"] == "hello second"
    assert result["first"]["peer"] != p1  # connected to the proxy...
    assert result["second"]["peer"] == p2  # ...but straight to the unnamed port
    log = proxied.stderr
    opened = [line for line in log.splitlines() if " opened " in line]
    assert len(opened) == 1 and opened[0].endswith(f"→ 127.0.0.1:{p1}"), log
    assert "hello first" in log and "hello second" not in log and f":{p2}" not in log


def test_record_writes_the_programs_messages_to_a_session_file(tmp_path: Path) -> None:
    from proxy.model import Message
    from proxy.session import open_session

    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL, encoding="utf-8")
    port, session = free_port(), tmp_path / "game.sockscope"
    proxied = sockscope_run("--port", str(port), "--record", str(session), "--quiet", "--", sys.executable,
                            str(script), str(port))

    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout.splitlines() == [f"[CLIENT] Message received: {WELCOME}",
                                           f"[SERVER] Client says: {REPLY}", "[MAIN] done"]
    assert f"recording to {session}" in proxied.stderr
    messages = [r for r in open_session(session) if isinstance(r, Message)]
    assert [m.data for m in messages] == [WELCOME.encode(), REPLY.encode()]


def test_control_with_wait_attach_starts_the_program_once_a_client_attached(tmp_path: Path) -> None:
    """The control endpoint's line goes to stderr (stdout is the program's); with --wait-attach the program starts
    only once a client attached, which then sees its connection from the first byte."""
    from proxy.control.client import ControlClient
    from proxy.model import ConnectionOpened, Message

    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL, encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "inspector.run", "--port", str(port), "--control", "127.0.0.1:0",
                             "--wait-attach", "--", sys.executable, str(script), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            env=child_env(SOCKSCOPE_TOKEN="t0k"), cwd=ROOT)
    err_lines: queue.Queue[str | None] = queue.Queue()

    def read_stderr() -> None:
        for x in proc.stderr or ():
            err_lines.put(x)
        err_lines.put(None)  # sockscope run ended

    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        control = waiting = None
        seen: list[str] = []
        while waiting is None:
            line = err_lines.get(timeout=RUN_TIMEOUT)
            assert line is not None, f"sockscope run exited: {seen}"
            seen.append(line)
            control = line if "control on" in line else control
            waiting = line if "waiting for a control client" in line else None
        assert control is not None and "(token from $SOCKSCOPE_TOKEN)" in control, control
        cport = int(control.split()[3].rsplit(":", 1)[1])
        assert proc.poll() is None
        with ControlClient("127.0.0.1", cport, "t0k") as sub:
            opened = sub.wait_for(lambda e: isinstance(e.get("record"), ConnectionOpened), timeout=RUN_TIMEOUT)
            first = sub.wait_for(lambda e: isinstance(e.get("record"), Message), timeout=RUN_TIMEOUT)
            assert first["record"].data == WELCOME.encode()
            assert opened["record"].conn_id == first["record"].conn_id
            out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0
        assert out.splitlines() == [f"[CLIENT] Message received: {WELCOME}", f"[SERVER] Client says: {REPLY}",
                                    "[MAIN] done"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)


def test_exit_status_is_the_childs() -> None:
    proxied = sockscope_run("--", sys.executable, "-c", "import sys; print('out'); sys.exit(3)")
    assert proxied.returncode == 3
    assert proxied.stdout == "out\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_is_passed_to_the_child_and_the_proxy_stops() -> None:
    code = "import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "inspector.run", "--", sys.executable, "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        assert lines.get(timeout=IO_TIMEOUT) == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=IO_TIMEOUT) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(IO_TIMEOUT)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def test_a_non_python_program_gets_the_port_change_route(tmp_path: Path) -> None:
    program = tmp_path / "game.sh"
    program.write_text("#!/bin/sh\necho ran\n", encoding="utf-8")
    program.chmod(0o755)
    result = sockscope_run("--port", "5555", "--", str(program))
    assert result.returncode == 2
    assert "ran" not in result.stdout
    assert "not a Python program" in result.stderr
    assert "sockscope-proxy --listen 127.0.0.1:5556 --target 127.0.0.1:5555" in result.stderr
    assert "change 5555 to 5556 in your client" in result.stderr


# -------------------------------------------------------------------------------------------- the hook alone

HOOK_PROBE = textwrap.dedent('''
    import asyncio, json, socket, sys

    port = int(sys.argv[1])
    out = {"hook_on_path": any(p.rstrip("/\\\\").endswith("_hook") for p in sys.path)}

    def peer(host, family=socket.AF_INET):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect((host, port))
            return s.getpeername()[1]

    for host in ("127.0.0.1", "localhost", "", "0.0.0.0"):
        out[repr(host)] = peer(host)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        out["create_connection"] = s.getpeername()[1]
    with socket.socket() as s:
        s.settimeout(10)
        out["connect_ex_rc"] = s.connect_ex(("127.0.0.1", port))
        out["connect_ex"] = s.getpeername()[1]

    async def via_asyncio():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        p = w.get_extra_info("peername")[1]
        w.close()
        return p

    out["asyncio"] = asyncio.run(via_asyncio())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.connect(("127.0.0.1", port))
        out["udp"] = u.getpeername()[1]
    if len(sys.argv) > 2:
        out["ipv6"] = peer("::1", socket.AF_INET6)
    print(json.dumps(out))
''')


@pytest.fixture
def listeners() -> Iterator[tuple[int, int]]:
    """Two listening sockets: ``(original, proxy stand-in)``. Connects complete in the backlog; none accepted."""
    socks = [socket.create_server(("127.0.0.1", 0), backlog=64) for _ in range(2)]
    yield socks[0].getsockname()[1], socks[1].getsockname()[1]
    for s in socks:
        s.close()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    except (OSError, AttributeError):
        return False
    return True


def probe(port: int, env_value: str | None, *extra: str) -> tuple[dict[str, object], str]:
    env = child_env(PYTHONPATH=str(HOOK_DIR))
    if env_value is not None:
        env[REDIRECT_ENV] = env_value
    result = run([sys.executable, "-c", HOOK_PROBE, str(port), *extra], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_hook_redirects_every_loopback_spelling_of_a_named_port(listeners: tuple[int, int]) -> None:
    original, proxy = listeners
    v6 = ipv6_loopback()
    out, err = probe(original, f"{original}=127.0.0.1:{proxy}", *(["v6"] if v6 else []))
    assert err == ""
    for key in ("'127.0.0.1'", "'localhost'", "''", "'0.0.0.0'", "create_connection", "connect_ex", "asyncio"):
        assert out[key] == proxy, key
    assert out["connect_ex_rc"] == 0
    assert out["udp"] == original  # only TCP is redirected
    assert out["hook_on_path"] is False  # the hook leaves sys.path as the program would have had it
    if v6:
        assert out["ipv6"] == proxy


def test_hook_with_a_host_in_the_key_matches_that_host_only(listeners: tuple[int, int]) -> None:
    original, proxy = listeners
    out, _ = probe(original, f"localhost:{original}=127.0.0.1:{proxy}")
    assert out["'localhost'"] == proxy
    assert out["'127.0.0.1'"] == original


def test_hook_leaves_other_ports_alone(listeners: tuple[int, int]) -> None:
    original, proxy = listeners
    out, err = probe(original, f"{free_port()}=127.0.0.1:{proxy}")
    assert err == ""
    assert {out[k] for k in ("'127.0.0.1'", "'localhost'", "create_connection", "asyncio")} == {original}


@pytest.mark.parametrize("template", [None, "", "banana", "{original}", "{original}=127.0.0.1",
                                      "{original}=127.0.0.1:0", "{original}=127.0.0.1:{proxy},99999=127.0.0.1:1",
                                      "{original}=127.0.0.1:{proxy},x:y=z"])
def test_hook_is_inert_with_one_warning_when_the_variable_is_missing_or_malformed(
        listeners: tuple[int, int], template: str | None) -> None:
    original, proxy = listeners
    out, err = probe(original, None if template is None else template.format(original=original, proxy=proxy))
    assert {out[k] for k in ("'127.0.0.1'", "'localhost'", "create_connection", "asyncio")} == {original}
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockscope hook:") and "not redirected" in lines[0], err


def test_hook_chains_to_the_sitecustomize_it_shadows(tmp_path: Path, listeners: tuple[int, int]) -> None:
    original, proxy = listeners
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.CHAINED = 'yes'\n", encoding="utf-8")
    env = child_env(PYTHONPATH=os.pathsep.join([str(HOOK_DIR), str(other)]),
                    **{REDIRECT_ENV: f"{original}=127.0.0.1:{proxy}"})
    code = (f"import socket, sitecustomize; s = socket.create_connection(('127.0.0.1', {original}), 10); "
            "print(CHAINED, s.getpeername()[1], sitecustomize.__file__)")
    result = run([sys.executable, "-c", code], env)
    assert result.returncode == 0, result.stderr
    chained, peer, module_file = result.stdout.split()
    assert chained == "yes" and int(peer) == proxy
    assert Path(module_file).parent == other


# -------------------------------------------------------------------------------------------- helpers, in-process


def test_python_detection(tmp_path: Path) -> None:
    assert resolve_python_command(["python", "game.py"]) == ["python", "game.py"]
    assert resolve_python_command(["python3.11", "game.py"]) is not None
    assert resolve_python_command([r"C:\Python311\pythonw.exe", "game.py"]) is not None
    assert resolve_python_command(["py", "-3", "game.py"]) is not None
    assert resolve_python_command([sys.executable, "game.py"]) is not None
    shebang = tmp_path / "tool"
    shebang.write_text("#!/usr/bin/env python3\nprint()\n", encoding="utf-8")
    assert resolve_python_command([str(shebang)]) == [str(shebang)]
    shell = tmp_path / "tool.sh"
    shell.write_text("#!/bin/sh\n", encoding="utf-8")
    assert resolve_python_command([str(shell)]) is None
    script = tmp_path / "game.py"
    script.write_text("", encoding="utf-8")
    assert resolve_python_command([str(script), "--fast"]) == [sys.executable, str(script), "--fast"]


def test_isolating_interpreter_flags_are_refused() -> None:
    assert isolating_flag(["python", "-I", "game.py"]) == "-I"
    assert isolating_flag(["python", "-BE", "game.py"]) == "-E"
    assert isolating_flag(["python", "-X", "dev", "-S", "game.py"]) == "-S"
    assert isolating_flag(["python", "-Wignore", "game.py", "-I"]) is None
    assert isolating_flag(["python", "-c", "print('-I')"]) is None
    assert isolating_flag(["python", "-u", "-m", "game", "-E"]) is None


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(Exception, match="after `--`"):
        split_command(["--port", "5555", "python", "game.py"])
    assert main(["--port", "5555", "python", "game.py"]) == 2
    assert main(["--port", "5555", "--"]) == 2
    assert main(["--port", "1", "--port", "2", "--listen-port", "7000", "--", "python"]) == 2
    assert main(["--framing", "nonsense", "--", "python"]) == 2
    assert main(["--port", "1", "--port", "2", "--record", "x.sockscope", "--", "python"]) == 2
    assert main(["--wait-attach", "--", "python"]) == 2
    assert main(["--control", "nonsense:x", "--", "python"]) == 2
    assert main(["--", sys.executable, "-I", "game.py"]) == 2
    err = capsys.readouterr().err
    assert "sockscope run: error: put the program after `--`" in err
    assert "hook cannot load" in err
    assert "--record works with one --port only" in err and "--wait-attach needs --control" in err
    assert "--control: bad port" in err


def test_hook_patches_the_windows_proactor_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows asyncio connects through ``IocpProactor.connect`` (ConnectEx), not ``socket.connect``: the hook
    swaps the address there too. Checked here with a stand-in proactor class, since only Windows has the real one."""
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("sockscope_hook_under_test",
                                                  Path(__file__).resolve().parents[1] / "inspector" / "_hook"
                                                  / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    monkeypatch.setenv("SOCKSCOPE_REDIRECT", "")  # importing must not install anything into this process
    monkeypatch.setattr(sys, "path", list(sys.path))
    seen: list[object] = []

    class IocpProactor:
        def connect(self, conn: object, address: object) -> str:
            seen.append(address)
            return "future"

    fake = types.ModuleType("asyncio.windows_events")
    fake.IocpProactor = IocpProactor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "asyncio.windows_events", fake)
    import asyncio

    monkeypatch.setattr(asyncio, "windows_events", fake, raising=False)
    spec.loader.exec_module(hook)
    hook._patch_proactor(lambda conn, address: ("127.0.0.1", 41234) if address == ("127.0.0.1", 5555) else address)
    assert IocpProactor().connect(object(), ("127.0.0.1", 5555)) == "future"
    IocpProactor().connect(object(), ("127.0.0.1", 8080))
    assert seen == [("127.0.0.1", 41234), ("127.0.0.1", 8080)]

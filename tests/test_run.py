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
from proxy.runner import ProxyThread
from tests.conftest import IO_TIMEOUT

pytestmark = pytest.mark.slow  # runs real programs under sockscope run: in the full run, not the fast loop

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


# Newline-framed messages, two per send, to each of the ports given: shows the framing and the conditions applied.
LINES_TO_PORTS = textwrap.dedent('''
    import socket, sys

    for port in map(int, sys.argv[1:]):
        srv = socket.create_server(("127.0.0.1", port))
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn, _ = srv.accept()
        conn.settimeout(10)
        c.sendall(f"one {port}\\ntwo {port}\\n".encode())
        got = b""
        while got.count(b"\\n") < 2:
            got += conn.recv(100)
        conn.sendall(b"ok\\n")
        assert c.recv(10) == b"ok\\n"
        c.close()
        conn.close()
        srv.close()
        print("played", port, flush=True)
''')


def test_framing_and_conditions_reach_the_proxy_of_every_port(tmp_path: Path) -> None:
    """Issue 20 item 7: the proxy flags apply to each proxy sockscope run starts, one per --port."""
    script = tmp_path / "lines.py"
    script.write_text(LINES_TO_PORTS, encoding="utf-8")
    p1, p2 = free_port(), free_port()
    proxied = sockscope_run("--port", str(p1), "--port", str(p2), "--framing", "lines", "--latency", "c2s=40",
                            "--", sys.executable, str(script), str(p1), str(p2))
    assert proxied.returncode == 0, proxied.stderr
    assert proxied.stdout.splitlines() == [f"played {p1}", f"played {p2}"]
    log = proxied.stderr.splitlines()
    for port in (p1, p2):
        assert any(f"connections to localhost:{port} go through" in x and x.endswith("(framing lines)") for x in log)
        mine = [x for x in log if x.startswith(f"[{port}] ")]
        c2s = [x for x in mine if " c2s " in x and " B " in x]
        assert len(c2s) == 2, mine  # two messages in one send: the framing cut them
        assert c2s[0].endswith(f'"one {port}\\n"') and c2s[1].endswith(f'"two {port}\\n"'), c2s
        assert all(" [scheduled] +40.0ms " in x for x in c2s), c2s  # the latency, c2s only
        assert [x for x in mine if " s2c " in x and " B " in x and "+" not in x.split(" B")[1]], mine
    assert any("conditions" in x and "40" in x for x in log), log


def test_auto_framing_is_the_default_and_the_terminal_says_what_it_inferred(tmp_path: Path) -> None:
    script = tmp_path / "lines.py"
    script.write_text(LINES_TO_PORTS.replace("two {port}", "two {port}\\nthree {port}").replace(
        "count(b\"\\\\n\") < 2", "count(b\"\\\\n\") < 3"), encoding="utf-8")
    port = free_port()
    proxied = sockscope_run("--port", str(port), "--", sys.executable, str(script), str(port))
    assert proxied.returncode == 0, proxied.stderr
    log = proxied.stderr.splitlines()
    assert any(x.endswith("(framing auto)") for x in log), log
    assert any(" c2s framing lines (inferred): newline-terminated lines" in x for x in log), log


def test_control_says_how_to_open_the_window_on_the_programs_traffic(tmp_path: Path) -> None:
    """`sockscope run --control` prints the command that attaches the window (the token where it comes from)."""
    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL, encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in child_env().items() if k != "SOCKSCOPE_TOKEN"}
    made = run([sys.executable, "-m", "inspector.run", "--port", str(port), "--control", "127.0.0.1:0", "--",
                sys.executable, str(script), str(port)], env)
    assert made.returncode == 0, made.stderr
    control = next(x for x in made.stderr.splitlines() if "control on" in x)
    address, token = control.split()[3], control.split()[5]
    hint = next(x for x in made.stderr.splitlines() if "sockscope --attach" in x)
    assert hint.endswith(f"SOCKSCOPE_TOKEN={token} sockscope --attach {address}") or (
        sys.platform == "win32" and hint.endswith(f'$env:SOCKSCOPE_TOKEN="{token}"; sockscope --attach {address}'))
    chosen = run([sys.executable, "-m", "inspector.run", "--port", str(port), "--control", "127.0.0.1:0", "--",
                  sys.executable, str(script), str(port)], {**env, "SOCKSCOPE_TOKEN": "s3cret"})
    assert chosen.returncode == 0, chosen.stderr
    hint = next(x for x in chosen.stderr.splitlines() if "sockscope --attach" in x)
    assert "s3cret" not in chosen.stderr and "the same SOCKSCOPE_TOKEN" in hint, hint


def _lan_address() -> str | None:
    """A non-loopback IPv4 address of this machine (no packet is sent: a UDP connect only looks up the route)."""
    for probe_host in ("10.254.254.254", "203.0.113.1", "192.0.2.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe_host, 9))
            except OSError:
                continue
            addr = str(s.getsockname()[0])
        if not addr.startswith("127.") and addr != "0.0.0.0":
            return addr
    return None


# The program's server and client use one hard-coded address, as a LAN game does.
HARD_CODED = textwrap.dedent('''
    import socket, sys

    HOST, PORT = sys.argv[1], int(sys.argv[2])
    srv = socket.create_server((socket.gethostbyname(HOST), PORT))
    c = socket.create_connection((HOST, PORT), timeout=10)
    conn, _ = srv.accept()
    conn.settimeout(10)
    c.sendall(b"hello over the LAN")
    assert conn.recv(100) == b"hello over the LAN"
    conn.sendall(b"welcome")
    assert c.recv(100) == b"welcome"
    print("peer port", c.getpeername()[1], flush=True)
    c.close(); conn.close(); srv.close()
''')


def test_any_address_captures_a_hard_coded_lan_address_and_targets_it(tmp_path: Path) -> None:
    """Issue 20 item 7: `--any-address` also captures connections to the port on an address that is not a
    loopback spelling (the program's server and client use this machine's LAN address); the proxy connects to the
    address the program asked for. Without the flag such a connection goes straight through, as before."""
    host = _lan_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to play the LAN game on")
    script = tmp_path / "lan.py"
    script.write_text(HARD_CODED, encoding="utf-8")
    port = free_port()
    plain = sockscope_run("--port", str(port), "--", sys.executable, str(script), host, str(port))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == f"peer port {port}\n" and " opened " not in plain.stderr  # not captured
    caught = sockscope_run("--port", str(port), "--any-address", "--", sys.executable, str(script), host, str(port))
    assert caught.returncode == 0, caught.stderr
    assert caught.stdout != f"peer port {port}\n"  # connected to the proxy...
    log = caught.stderr.splitlines()
    assert any(f"{host}:{port}" in x and "now targets" in x for x in log), log
    opened = [x for x in log if " opened " in x]
    assert len(opened) == 1 and opened[0].endswith(f"→ {host}:{port}"), log  # ...which connected to the address
    assert any(" c2s " in x and "hello over the LAN" in x for x in log), log
    assert any(" s2c " in x and "welcome" in x for x in log), log


def test_the_broker_points_a_port_at_one_address_and_refuses_others_and_strangers() -> None:
    """``--any-address``'s broker: the first non-loopback address asked about becomes the proxy's target; another
    address for the same port is refused (it goes straight through) with one line; a wrong token, an unknown port
    or a malformed question gets NO and changes nothing."""
    from inspector.run import PROXY_HOST, TargetBroker
    from proxy.server import ProxyConfig

    lines: list[str] = []
    proxy = ProxyThread(ProxyConfig(listen_port=0, target_port=5555)).start()
    broker = TargetBroker({5555: proxy}, lines.append).start()
    try:
        def ask(text: str) -> str:
            with socket.create_connection(broker.address, timeout=IO_TIMEOUT) as q:
                q.sendall(text.encode() + b"\n")
                return q.recv(100).decode()

        token = broker.token
        assert broker.env_value() == f"{token}@{PROXY_HOST}:{broker.address[1]}"
        assert ask(f"wrong {5555} 192.168.1.20") == "NO\n"
        assert ask(f"{token} 6666 192.168.1.20") == "NO\n"
        assert ask(f"{token} 5555 bad/host") == "NO\n"
        assert ask("") == "NO\n"
        assert proxy.server.config.target_host == "127.0.0.1" and lines == []
        assert ask(f"{token} 5555 192.168.1.20") == f"OK {PROXY_HOST} {proxy.port}\n"
        assert proxy.server.config.target_host == "192.168.1.20"
        assert ask(f"{token} 5555 192.168.1.20") == f"OK {PROXY_HOST} {proxy.port}\n"
        assert ask(f"{token} 5555 10.0.0.7") == "NO\n"
        assert ask(f"{token} 5555 10.0.0.7") == "NO\n"
        assert proxy.server.config.target_host == "192.168.1.20"
        assert len(lines) == 2 and "now targets that address" in lines[0], lines
        assert "10.0.0.7:5555 too" in lines[1] and "goes straight through" in lines[1], lines
    finally:
        broker.close()
        proxy.stop()


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


UDP_GAME = textwrap.dedent('''
    import asyncio, json, socket, sys, threading

    port = int(sys.argv[1])
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", port))  # the game's server: never redirected (bind is left alone)

    def serve():
        for _ in range(4):
            data, addr = server.recvfrom(2048)
            server.sendto(b"ack " + data, addr)

    threading.Thread(target=serve, daemon=True).start()
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:  # sendto/recvfrom, as learners write it
        c.settimeout(10)
        for i in range(2):
            c.sendto(json.dumps({"x": i, "y": 2 * i}).encode(), ("127.0.0.1", port))
            data, addr = c.recvfrom(2048)
            out.setdefault("replies", []).append([data.decode(), list(addr)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:  # connect, then send/recv
        c.settimeout(10)
        c.connect(("localhost", port))
        c.send(b"connected")
        out["connected"] = c.recv(2048).decode()

    async def via_asyncio():
        loop = asyncio.get_running_loop()
        got = loop.create_future()

        class P(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.set_result([data.decode(), list(addr)])

        transport, _ = await loop.create_datagram_endpoint(P, remote_addr=("127.0.0.1", port))
        transport.sendto(b"asyncio")
        try:
            return await asyncio.wait_for(got, 10)
        finally:
            transport.close()

    out["asyncio"] = asyncio.run(via_asyncio())
    print("RESULT " + json.dumps(out))
''')


def test_a_udp_games_datagrams_go_through_the_proxy_and_it_sees_its_server_answer(tmp_path: Path) -> None:
    """sendto/recvfrom, connect/send/recv and an asyncio datagram endpoint: each datagram is relayed (the log shows
    them as a flow's messages), and the program sees the answers come from its server's address, as without
    sockscope."""
    script = tmp_path / "udp_game.py"
    script.write_text(UDP_GAME, encoding="utf-8")
    port = free_port()
    proxied = sockscope_run("--port", str(port), "--", sys.executable, str(script), str(port))
    assert proxied.returncode == 0, proxied.stderr
    out = json.loads(proxied.stdout.splitlines()[-1].removeprefix("RESULT "))
    assert out["replies"] == [['ack {"x": 0, "y": 0}', ["127.0.0.1", port]],
                              ['ack {"x": 1, "y": 2}', ["127.0.0.1", port]]]
    assert out["connected"] == "ack connected"
    assert out["asyncio"] == ["ack asyncio", ["127.0.0.1", port]]
    log = proxied.stderr
    assert log.count("udp") >= 3 or log.count("UDP") >= 3, log  # three flows: one per client socket
    assert '{"x": 1, "y": 2}' in log and "ack connected" in log and "ack asyncio" in log, log


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


def probe(port: int, env_value: str | None, *extra: str, udp: bool = False) -> tuple[dict[str, object], str]:
    env = child_env(PYTHONPATH=str(HOOK_DIR))
    if env_value is not None:
        env[REDIRECT_ENV] = env_value
    if udp:
        env["SOCKSCOPE_REDIRECT_UDP"] = "1"
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
    assert out["udp"] == original  # UDP only with SOCKSCOPE_REDIRECT_UDP=1 (sockscope run sets it)
    assert out["hook_on_path"] is False  # the hook leaves sys.path as the program would have had it
    if v6:
        assert out["ipv6"] == proxy


def test_hook_redirects_udp_too_when_the_run_relays_it(listeners: tuple[int, int]) -> None:
    original, proxy = listeners
    out, err = probe(original, f"{original}=127.0.0.1:{proxy}", udp=True)
    assert err == ""
    assert out["udp"] == proxy and out["'127.0.0.1'"] == proxy


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


def test_hook_asks_about_other_addresses_only_with_any_address() -> None:
    """A connect to a named port on an address that is not loopback: straight through without
    ``SOCKSCOPE_ANY_ADDRESS``; with it, the hook asks once per address and follows the answer (here a stand-in
    answering from this process: OK to the proxy stand-in); an unreachable asker or a malformed value leaves the
    connect as it was, and the loopback redirection still applies."""
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = socket.create_server((lan, 0), backlog=64)  # the program's server, on the LAN address only
    stand_in = socket.create_server(("127.0.0.1", 0), backlog=64)  # the proxy
    original, proxy = server.getsockname()[1], stand_in.getsockname()[1]
    code = (f"import socket, json\n"
            f"def peer(host):\n"
            f"    with socket.create_connection((host, {original}), timeout=10) as s:\n"
            f"        return s.getpeername()[1]\n"
            f"print(json.dumps([peer({lan!r}), peer({lan!r}), peer('127.0.0.1')]))\n")  # (loopback: to the stand-in)
    asked: list[str] = []
    answerer = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = answerer.accept()
            except OSError:
                return
            with conn:
                asked.append(conn.recv(600).decode())
                conn.sendall(f"OK 127.0.0.1 {proxy}\n".encode())

    threading.Thread(target=answer, daemon=True).start()
    base = {REDIRECT_ENV: f"{original}=127.0.0.1:{proxy}", "PYTHONPATH": str(HOOK_DIR)}
    try:
        for any_value, expected, warned in (
                (None, [original, original, proxy], False),
                (f"tok@127.0.0.1:{answerer.getsockname()[1]}", [proxy, proxy, proxy], False),
                (f"tok@127.0.0.1:{free_port()}", [original, original, proxy], False),  # nobody answers
                ("no-at-sign", [original, original, proxy], True)):
            env = child_env(**base, **({} if any_value is None else {"SOCKSCOPE_ANY_ADDRESS": any_value}))
            result = run([sys.executable, "-c", code], env)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == expected, (any_value, result.stdout)
            assert bool(result.stderr) == warned, result.stderr
    finally:
        for sock in (answerer, server, stand_in):
            sock.close()
    assert asked == [f"tok {original} {lan}\n"]  # asked once for the address, never for loopback


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

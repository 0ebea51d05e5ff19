"""The pytest plugin (inspector/pytest_plugin.py) as its users meet it: small test files run with pytester.

Each test writes a test file that uses the ``sockscope_proxy`` fixture against real servers on 127.0.0.1 (an echo
server over TCP and UDP, given to the inner run by the conftest below), runs pytest on it, and checks the outcome
and the output: conditions scoped and restored, down and freeze, ``expect`` and its failure message, the failure
report's saved session and pcapng, cleanup of threads and sockets, and pytest-xdist.

The inner runs get the plugin from the installed sockscope's entry point, or with ``-p inspector.pytest_plugin``
where the installed copy predates it. Most run in this process (fast); the xdist run and
the entry-point check start processes and are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

# Imported here so the in-process inner runs reuse these modules (pytester restores sys.modules after each run
# and would otherwise drop what the inner run imported first).
import inspector.interop.pcapng_export
import inspector.interop.session_io
import inspector.testing  # noqa: F401
import proxy.runner  # noqa: F401
from inspector.decode import default_registry
from proxy.session import open_session

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> bool:
    return any(ep.name == "sockscope" for ep in entry_points(group="pytest11"))


PLUGIN_ARGS = () if _installed() else ("-p", "inspector.pytest_plugin")
"""How the runs here get the plugin: from the entry point of an installed sockscope, else named (``-p``); naming it
while the entry point loads it too would register it twice."""
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:pytest-qt")
"""Plugins the processes started here need not load (Qt's alone costs a second per worker)."""

default_registry()  # built once here, not inside the first inner run

INNER_CONFTEST = r'''
import socket
import threading

import pytest


class Echo:
    """Echoes TCP and UDP on one port of 127.0.0.1; close() joins every thread it started."""

    def __init__(self):
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.conns = []
        self.threads = [threading.Thread(target=self._accept, name="echo-accept"),
                        threading.Thread(target=self._udp, name="echo-udp")]
        for t in self.threads:
            t.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self.conns.append(conn)
            t = threading.Thread(target=self._echo, args=(conn,), name="echo-conn")
            self.threads.append(t)
            t.start()

    def _echo(self, conn):
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def _udp(self):
        while True:
            try:
                data, addr = self.udp.recvfrom(65536)
            except OSError:
                return
            if data == b"stop":
                return
            self.udp.sendto(data, addr)

    def close(self):
        for s in (self.tcp, *self.conns):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"stop", ("127.0.0.1", self.port))
        for t in list(self.threads):
            t.join(10)
        for s in (self.tcp, self.udp, *self.conns):
            s.close()


@pytest.fixture
def echo():
    e = Echo()
    yield ("127.0.0.1", e.port)
    e.close()


def connect(addr):
    c = socket.create_connection(addr, timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_line(c):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = c.recv(65536)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    return buf
'''


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", *args)


# ------------------------------------------------------------------------------------------------ conditions


@pytest.mark.timeout(60)
def test_conditions_apply_inside_the_block_and_are_restored_after(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import time
        from conftest import connect, recv_line

        def rtt(c):
            t = time.perf_counter()
            c.sendall(b"ping\\n")
            assert recv_line(c) == b"ping\\n"
            return (time.perf_counter() - t) * 1000

        def test_it(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            before = rtt(c)
            with proxy.conditions(latency=100):
                proxy.mark()
                inside = rtt(c)
                assert [m.delay_ms >= 100 for m in proxy.messages[-2:]] == [True, True]
                with proxy.conditions(latency=100, direction="s2c"):
                    nested = rtt(c)   # c2s keeps the outer block's 100 ms
                assert proxy.current_conditions.s2c.latency_ms == 100
            after = rtt(c)
            last = proxy.messages[-2:]
            assert [m.direction for m in last] == ["c2s", "s2c"]
            assert [m.delay_ms for m in last] == [0, 0]
            assert proxy.current_conditions.is_passthrough
            assert inside >= 200 and nested >= 200   # 100 ms each way: never faster
            print(f"RTT ms: before {before:.1f} inside {inside:.1f} nested {nested:.1f} after {after:.1f}")
            c.close()

        def test_restored_when_the_block_raises(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo)
            try:
                with proxy.conditions(preset="Mobile 4G", jitter="20:normal", direction="c2s"):
                    assert proxy.current_conditions.c2s.latency_ms == 80
                    assert proxy.current_conditions.c2s.jitter.distribution == "normal"
                    assert proxy.current_conditions.s2c.is_passthrough
                    raise KeyError("boom")
            except KeyError:
                pass
            assert proxy.current_conditions.is_passthrough

        def test_bad_values_say_which(sockscope_proxy, echo):
            import pytest
            proxy = sockscope_proxy(target=echo)
            with pytest.raises(ValueError, match="latency=-5"):
                proxy.conditions(latency=-5)
            with pytest.raises(ValueError, match="direction='up-ish'"):
                proxy.conditions(latency=5, direction="up-ish")
            with pytest.raises(ValueError, match="unknown preset"):
                proxy.conditions(preset="dial-up modem")
    ''')
    result = run(inner, "-s")
    result.assert_outcomes(passed=3)
    rtts = re.search(r"RTT ms: before ([\d.]+) inside ([\d.]+) nested ([\d.]+) after ([\d.]+)", result.stdout.str())
    assert rtts is not None
    print(rtts.group(0))  # measured figures, for the report


# ------------------------------------------------------------------------------------------------ down, freeze


@pytest.mark.timeout(60)
def test_down_refuses_and_resets_then_accepts_again(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import socket
        import pytest
        from conftest import connect, recv_line

        def test_down(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            port = proxy.port
            c = connect(proxy.listen)
            c.sendall(b"a\\n")
            assert recv_line(c) == b"a\\n"
            with proxy.down():
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(proxy.listen, timeout=5)
                with pytest.raises(ConnectionResetError):
                    c.sendall(b"b\\n")
                    c.recv(10)
            assert proxy.port == port
            c2 = connect(proxy.listen)
            c2.sendall(b"again\\n")
            assert recv_line(c2) == b"again\\n"
            closed = [r for r in proxy.records if type(r).__name__ == "ConnectionClosed"]
            assert [(r.conn_id, str(r.reason)) for r in closed] == [(1, "reset by proxy")]
            c.close()
            c2.close()

        def test_down_without_reset_keeps_open_connections(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            down = proxy.down(reset=False)        # not as a block: until restore()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(proxy.listen, timeout=5)
            c.sendall(b"still here\\n")
            assert recv_line(c) == b"still here\\n"
            down.restore()
            connect(proxy.listen).close()
            c.close()

        def test_freeze_holds_until_the_block_ends(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            with proxy.freeze():
                c.sendall(b"frozen\\n")
                sent = proxy.expect("c2s", within=5, settled=False)
                assert sent.state == "scheduled"    # waiting for the thaw, not delivered
                c.settimeout(0.2)
                with pytest.raises(socket.timeout):
                    c.recv(10)
                c.settimeout(10)
            assert recv_line(c) == b"frozen\\n"
            back = proxy.expect("s2c", within=5)
            assert back.text == "frozen\\n"
            assert any(reason == "freeze" for reason, _ in proxy.messages[0].record.delays)
            c.close()
    ''')
    run(inner).assert_outcomes(passed=3)


# ------------------------------------------------------------------------------------------------ expect


@pytest.mark.timeout(60)
def test_expect_returns_decoded_messages_in_order(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import json
        import pytest
        from conftest import connect, recv_line

        def test_expect(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            for i, kind in enumerate(["hello", "pos", "pos", "bye"]):
                c.sendall(json.dumps({"type": kind, "pos": {"x": i, "y": -i}}).encode() + b"\\n")
                recv_line(c)
            first = proxy.expect("s2c and json.type == 'pos'", within=2)
            assert first["json.pos.x"] == 1 and first["pos.y"] == -1
            assert first.decoder == "json" and first.decoded == {"type": "pos", "pos": {"x": 1, "y": -1}}
            assert first.direction == "s2c" and first.state == "forwarded" and first.delivered is not None
            second = proxy.expect("s2c and json.type == 'pos'", within=2)   # walks forward
            assert second["json.pos.x"] == 2 and second.id > first.id
            with pytest.raises(KeyError, match="decodes as json, not msgpack"):
                second["msgpack.type"]
            assert second.get("json.missing", "none") == "none"
            positions = proxy.messages.filter("s2c and json.type == 'pos'")
            assert [m["json.pos.x"] for m in positions] == [1, 2]
            assert len(proxy.messages.filter("c2s")) == 4
            proxy.mark()
            c.sendall(b'{"type": "late"}\\n')
            assert proxy.expect("s2c", within=2)["json.type"] == "late"
            c.close()

        def test_no_match(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            with connect(proxy.listen) as c:
                c.sendall(b'{"type": "ping", "n": 1}\\n')
                recv_line(c)
                proxy.expect("s2c and json.type == 'pong'", within=0.2)
    ''')
    result = run(inner)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "AssertionError: sockscope: no message matched \"s2c and json.type == 'pong'\" within 0.2 s" in out
    assert re.search(r'\n\s+#1 conn 1 c2s 25 B forwarded \+0 ms\s+\{"type": "ping", "n": 1\}', out), out
    assert re.search(r'\n\s+#2 conn 1 s2c 25 B forwarded \+0 ms', out), out


@pytest.mark.timeout(60)
def test_a_bad_filter_fails_at_once_with_its_column(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        def test_bad(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo)
            proxy.expect("s2c and jsn.type == 1", within=30)
    ''')
    result = run(inner, "--durations=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FilterError*unknown field 'jsn'*did you mean 'json'*"])


# ------------------------------------------------------------------------------------------------ the failure report


@pytest.mark.timeout(60)
def test_a_failing_test_reports_its_saved_session_and_pcapng(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        from conftest import connect, recv_line

        def test_fails(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            with proxy.conditions(latency=30):
                c.sendall(b"hello\\n")
                assert recv_line(c) == b"hello\\n"
            c.close()
            assert False, "the game got it wrong"

        def test_passes(sockscope_proxy, echo):
            sockscope_proxy(target=echo)
    ''')
    artifacts = inner.path / "captures"
    result = run(inner, f"--sockscope-dir={artifacts}")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "- sockscope -" in out  # the report section's title line
    session = re.search(r"session: (\S+\.sockscope)", out)
    pcapng = re.search(r"pcapng:  (\S+\.pcapng)", out)
    assert session and pcapng, out
    session_path, pcapng_path = inner.path / session.group(1), inner.path / pcapng.group(1)  # relative to cwd
    assert session_path.parent == artifacts and session_path.name == "test_inner.py__test_fails.sockscope"
    assert f"see it:  sockscope {session.group(1)}   (or the pcapng in Wireshark)" in out
    with open_session(session_path) as reader:
        kinds = [type(r).__name__ for r in reader]
    assert kinds.count("Message") == 2 and "ConnectionOpened" in kinds
    data = pcapng_path.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a" and len(data) > 200  # a pcapng section header, then packets
    line = re.search(r"#2 conn 1 s2c 6 B forwarded \+(\d+) ms\s+\"hello\\n\"", out)
    assert line and int(line.group(1)) >= 30, out  # 30 ms set; a busy machine adds a few
    assert sorted(p.suffix for p in artifacts.iterdir()) == [".pcapng", ".sockscope"]  # only the failing test


@pytest.mark.timeout(60)
def test_the_default_folder_is_in_pytests_temporary_directory(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        def test_fails(sockscope_proxy, echo):
            sockscope_proxy(target=echo)
            sockscope_proxy(target=echo)
            assert False
    ''')
    result = run(inner, f"--basetemp={inner.path / 'base'}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "- sockscope proxy 1 -" in out and "- sockscope proxy 2 -" in out
    saved = sorted(p.name for p in (inner.path / "base" / "sockscope").iterdir())
    assert saved == ["test_inner.py__test_fails-proxy1.pcapng", "test_inner.py__test_fails-proxy1.sockscope",
                     "test_inner.py__test_fails-proxy2.pcapng", "test_inner.py__test_fails-proxy2.sockscope"]


# ------------------------------------------------------------------------------------------------ UDP


@pytest.mark.timeout(60)
def test_udp_datagrams_conditions_and_down(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import socket
        import time
        import pytest

        def test_udp(sockscope_proxy, echo):
            proxy = sockscope_proxy(target=echo, udp=True, tcp=False)
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(10)
            c.connect(proxy.listen)
            c.send(b'{"type": "input", "seq": 1}')
            assert c.recv(100) == b'{"type": "input", "seq": 1}'
            with proxy.conditions(latency=50, direction="s2c"):
                t = time.perf_counter()
                c.send(b'{"type": "input", "seq": 2}')
                assert c.recv(100) == b'{"type": "input", "seq": 2}'
                assert time.perf_counter() - t >= 0.05
            back = proxy.expect("s2c and json.seq == 2", within=2)
            assert back.delay_ms >= 50 and back.decoded == {"type": "input", "seq": 2}
            with proxy.down():
                c.send(b"lost")                   # nothing listens: the kernel answers "port unreachable"
                with pytest.raises(ConnectionRefusedError):
                    c.recv(100)
            c.send(b"after")
            assert c.recv(100) == b"after"
            ended = [r for r in proxy.records if type(r).__name__ == "ConnectionClosed"]
            assert [(r.conn_id, r.detail) for r in ended] == [(1, "the proxy is down")]
            assert proxy.connections == [1, 2]
            c.close()
    ''')
    run(inner).assert_outcomes(passed=1)


# ------------------------------------------------------------------------------------------------ cleanup


@pytest.mark.timeout(90)
def test_every_thread_and_socket_is_gone_after_the_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import os
        import socket
        import threading
        from conftest import connect, recv_line

        def state():
            fds = sorted(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else []
            return sorted(t.name for t in threading.enumerate()), fds

        BASELINE = []

        def test_0_warm_up(sockscope_proxy, echo):
            sockscope_proxy(target=echo, udp=True)   # first use: imports, the decoders' registry

        def test_1_baseline():
            BASELINE.append(state())

        def test_2_use_everything(sockscope_proxy, echo):
            for udp in (False, True):
                proxy = sockscope_proxy(target=echo, framing="lines", udp=udp)
                c = connect(proxy.listen)
                with proxy.conditions(latency=20, jitter=5, loss=1):
                    c.sendall(b"x\\n")
                    recv_line(c)
                with proxy.down():
                    pass
                if udp:
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    u.settimeout(10)
                    u.sendto(b"d", proxy.listen)
                    assert u.recv(10) == b"d"
                    u.close()
                c2 = connect(proxy.listen)
                c2.sendall(b"z\\n")
                assert recv_line(c2) == b"z\\n"
                c.close()
                proxy.expect("s2c and text contains 'z'", within=2)
                proxy.freeze()          # still frozen when the test ends, with a message waiting:
                c2.sendall(b"y\\n")     # the teardown must not hang on it
                proxy.expect("c2s and text contains 'y'", within=2, settled=False)
                c2.close()
            # the runs here are in the outer suite's process: count against the threads that were there before
            before = [t for t in BASELINE[0][0] if t.startswith("sockscope")]
            threads = [t.name for t in threading.enumerate() if t.name.startswith("sockscope")]
            for name in before:
                threads.remove(name)
            assert threads == ["sockscope-engine", "sockscope-engine"]

        def test_3_same_as_baseline():
            assert state() == BASELINE[0]
    ''')
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("counts open files through /proc/self/fd (Linux)")
    run(inner, "-p", "no:randomly").assert_outcomes(passed=4)


# ------------------------------------------------------------------------------------------------ scenario files


@pytest.mark.timeout(60)
def test_proxy_scenario_plays_a_file_and_stops_with_its_block(inner: pytest.Pytester) -> None:
    """``proxy.scenario(FILE)`` plays a scenario file (docs/scenarios.md) on the fixture's proxy; the block's end
    stops it and restores the conditions; a run still going stops with the proxy."""
    body = '''
        toml = 'name = "t"\\nlength = "60s"\\n[[step]]\\nat = "0s"\\npreset = "Mobile 4G"\\n'
        (tmp_path / "t.toml").write_text(toml)
        with proxy.scenario(tmp_path / "t.toml"):
            assert proxy.current_conditions.c2s.latency_ms == 80
        assert proxy.current_conditions.is_passthrough
        proxy.scenario(tmp_path / "t.toml")  # still running when the test ends: stopped with the proxy
    '''
    inner.makepyfile(test_inner='''
        import pytest

        def test_it(sockscope_proxy, echo, tmp_path):
            proxy = sockscope_proxy(target=echo)
    ''' + textwrap.indent(textwrap.dedent(body), " " * 12))
    run(inner).assert_outcomes(passed=1)


# ------------------------------------------------------------------------------------------------ processes


def _env(extra_path: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in (extra_path, str(ROOT), env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_under_xdist_each_worker_has_its_own_proxies(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_inner='''
        import json
        import os
        import pytest
        from conftest import connect, recv_line

        @pytest.mark.parametrize("n", range(6))
        def test_it(sockscope_proxy, echo, n):
            proxy = sockscope_proxy(target=echo, framing="lines")
            c = connect(proxy.listen)
            with proxy.conditions(latency=10):
                c.sendall(b"%d\\n" % n)
                assert recv_line(c) == b"%d\\n" % n
            c.close()
            worker = os.environ.get("PYTEST_XDIST_WORKER", "none")
            with open(os.environ["PORTS_FILE"], "a") as f:
                f.write(json.dumps([worker, proxy.port]) + "\\n")

        def test_fails(sockscope_proxy, echo):
            sockscope_proxy(target=echo)
            assert False
    ''')
    ports = inner.path / "ports.jsonl"
    env = _env()
    env["PORTS_FILE"] = str(ports)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", *PLUGIN_ARGS, *QUIET_PLUGINS,
                           f"--sockscope-dir={inner.path / 'captures'}", "test_inner.py"],
                          cwd=inner.path, env=env, capture_output=True, text=True, timeout=170)
    out = proc.stdout + proc.stderr
    assert re.search(r"\b1 failed, 6 passed\b", out), out
    seen = [json.loads(line) for line in ports.read_text().splitlines()]
    assert {w for w, _ in seen} == {"gw0", "gw1"}, seen
    assert len({p for _, p in seen}) == len(seen)  # ports from the OS, never shared
    saved = re.search(r"session: (\S+\.sockscope)", out)
    assert saved is not None and (inner.path / saved.group(1)).is_file(), out
    assert re.search(r"gw[01]-test_inner\.py__test_fails\.sockscope", saved.group(1))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_entry_point_loads_the_plugin_and_no_sockscope_turns_it_off(tmp_path: Path) -> None:
    """An installed sockscope registers the plugin through ``pytest11``: a distribution with exactly the entry
    point pyproject.toml declares is put on the path, and pytest finds the fixture without any ``-p``."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert declared == {"sockscope": "inspector.pytest_plugin"}
    dist = tmp_path / "site" / "sockscope_plugin_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sockscope-plugin-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
    (tmp_path / "test_probe.py").write_text(textwrap.dedent('''
        def test_has_fixture(sockscope_proxy):
            assert callable(sockscope_proxy)
    '''))
    env = _env(str(tmp_path / "site"))
    base = [sys.executable, "-m", "pytest", "-q", *QUIET_PLUGINS, "test_probe.py"]
    on = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert "1 passed" in on.stdout, on.stdout + on.stderr
    off = subprocess.run([*base, "-p", "no:sockscope"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=100)
    assert "fixture 'sockscope_proxy' not found" in off.stdout, off.stdout + off.stderr


def test_importing_the_plugin_loads_neither_the_engine_nor_the_decoders() -> None:
    """pytest imports the plugin in every run on a machine with sockscope installed: it must stay cheap."""
    code = ("import sys, inspector.pytest_plugin; "
            "print([m for m in sys.modules if m.split('.')[0] in ('proxy', 'inspector', 'PySide6', 'asyncio')])")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['inspector', 'inspector.pytest_plugin']", out.stdout + out.stderr

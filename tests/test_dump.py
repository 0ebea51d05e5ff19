"""``python -m inspector.dump`` over a real recording: decoded lines, filters, decode-as, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from proxy.framing import FramingSpec
from proxy.model import ConnectionClosed
from proxy.recorder import Recorder
from tests.conftest import connect, recv_exact

pytestmark = pytest.mark.timeout(60)


def dump(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector.dump", *args], capture_output=True, text=True,
                          encoding="utf-8", timeout=30,
                          env={**{k: v for k, v in __import__("os").environ.items() if k != "SOCKSCOPE_TOKEN"},
                               "PYTHONIOENCODING": "utf-8"})


@pytest.fixture
def session(tmp_path: Path, echo_server, start_proxy, recorder) -> Path:
    path = tmp_path / "s.sockscope"
    p = start_proxy(echo_server.port, FramingSpec("raw", "raw"))
    rec = p.call(Recorder, path, p.server)
    with connect(p.port) as c:
        for body in (json.dumps({"type": "ping", "id": 1}).encode(), msgpack.packb({"command": "move", "x": 3}),
                     "Ping received! 📥".encode()):
            frame = body  # one send, echoed before the next: one read each way
            c.sendall(frame)
            assert recv_exact(c, len(frame)) == frame
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    p.call(rec.close)
    return path


def test_dump_prints_decoded_messages(session: Path) -> None:
    out = dump(str(session))
    assert out.returncode == 0, out.stderr
    assert "ping" in out.stdout and "move" in out.stdout and "Ping received! 📥" in out.stdout
    assert out.stdout.count("→ c2s") == 3 and out.stdout.count("← s2c") == 3


def test_dump_filter_and_errors(session: Path, tmp_path: Path) -> None:
    out = dump(str(session), "--filter", 'c2s and json.type == "ping"')
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("→ c2s") == 1 and "← s2c" not in out.stdout
    bad = dump(str(session), "--filter", "size >")
    assert bad.returncode == 2 and "^" in bad.stderr
    junk = tmp_path / "junk.sockscope"
    junk.write_bytes(b"not a session at all")
    out = dump(str(junk))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_dump_decode_as_hex(session: Path) -> None:
    out = dump(str(session), "--decode-as", "hex")
    assert out.returncode == 0 and "[hex]" in out.stdout


@pytest.mark.slow
def test_dump_follows_a_live_proxy() -> None:
    import os
    import re

    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proxy = subprocess.Popen([sys.executable, "-m", "proxy", "--demo", "--demo-interval", "0.1", "--listen",
                              "127.0.0.1:0", "--control", "127.0.0.1:0", "--quiet"],
                             stdout=subprocess.PIPE, text=True, encoding="utf-8", env=env)
    follower = None
    try:
        assert proxy.stdout is not None
        for line in proxy.stdout:
            m = re.search(r"control on ([\d.]+:\d+) token (\S+)", line)
            if m:
                break
        else:
            pytest.fail("the proxy never printed its control address")
        follower = subprocess.Popen([sys.executable, "-m", "inspector.dump", "--follow", m.group(1),
                                     "--filter", 's2c and text ~ "pong"'],
                                    stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                    env={**env, "SOCKSCOPE_TOKEN": m.group(2)})  # never on a command line
        assert follower.stdout is not None
        for line in follower.stdout:  # connection events, then the first pong; the test timeout bounds it
            if "pong" in line:
                break
        assert "← s2c" in line and "pong" in line
        assert "ping" not in line.replace("pong", "")  # the filter kept client messages out
    finally:
        for p in (follower, proxy):
            if p is not None:
                p.terminate()
                p.wait(10)
                if p.stdout:
                    p.stdout.close()


def test_dump_needs_a_source() -> None:
    assert dump().returncode == 2
    out = dump("--follow", "127.0.0.1:1")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "SOCKSCOPE_TOKEN" in out.stderr


def test_dump_refuses_a_token_on_its_command_line() -> None:
    out = dump("--follow", "127.0.0.1:1", "--token", "s3cret")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "SOCKSCOPE_TOKEN" in out.stderr and "s3cret" not in out.stderr

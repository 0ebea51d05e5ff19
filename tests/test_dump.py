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


# ---------------------------------------------------------------------------------------------------------
# hostile messages (issue 16): dump finishes, reports what it gave up on, and goes on

HOSTILE = Path(__file__).resolve().parent / "hostile" / "pickle"


@pytest.fixture
def hostile_session(tmp_path: Path, echo_server, start_proxy, recorder) -> tuple[Path, list[bytes]]:  # type: ignore[no-untyped-def]
    """A recording of pickles a game might be sent (length-prefixed, as games frame them), between two JSON
    messages: memo bombs, a self-referencing list, and a plain list of 5,000 ints."""
    import pickle
    import struct

    path = tmp_path / "hostile.sockscope"
    bodies = [json.dumps({"type": "ping"}).encode(), (HOSTILE / "memo_tuple_d40_dict_key.pickle").read_bytes(),
              (HOSTILE / "memo_tuple_d40_value.pickle").read_bytes(), (HOSTILE / "self_list_14000.pickle").read_bytes(),
              pickle.dumps(list(range(5000)), protocol=4), json.dumps({"type": "after"}).encode()]
    p = start_proxy(echo_server.port, FramingSpec("len32", "len32"))
    rec = p.call(Recorder, path, p.server)
    with connect(p.port) as c:
        for body in bodies:
            frame = struct.pack(">I", len(body)) + body
            c.sendall(frame)
            assert recv_exact(c, len(frame)) == frame
    recorder.wait_for(lambda r: isinstance(r, ConnectionClosed))
    p.call(rec.close)
    return path, bodies


def test_dump_of_memo_bombs_finishes_and_shows_every_message(hostile_session: tuple[Path, list[bytes]]) -> None:
    path, bodies = hostile_session
    out = dump(str(path))  # before: hashed a 2**40-node tuple, for ever (the 30 s timeout fails the test)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "→ c2s" in line]
    assert len(lines) == len(bodies) and "ping" in lines[0] and '"after"' in lines[-1]
    assert all("[pickle]" in line for line in lines[1:-1]), lines
    assert "gave up" not in out.stderr  # within the default budget everything decodes


def test_dump_reports_a_message_it_gave_up_on_and_goes_on(hostile_session: tuple[Path, list[bytes]]) -> None:
    path, bodies = hostile_session
    out = dump(str(path), "--decode-budget", "0")  # every deadline has passed: big messages give up
    assert out.returncode == 0, out.stderr
    gave_up = [line for line in out.stderr.splitlines() if line.startswith("dump: gave up decoding message #")]
    # the self-referencing list (14,000 opcodes) and the 5,000 ints, each way
    assert len(gave_up) == 4, out.stderr
    for line, size in zip(gave_up, [len(bodies[3]), len(bodies[3]), len(bodies[4]), len(bodies[4])], strict=True):
        assert f", {size + 4} bytes): the deadline passed after 255 opcodes" in line and "; shown in hex" in line
    c2s = [line for line in out.stdout.splitlines() if "→ c2s" in line]
    assert len(c2s) == len(bodies) and '"after"' in c2s[-1] and "ping" in c2s[0]
    prefix = len(bodies[3]).to_bytes(4, "big").hex(" ")
    assert "⚠ gave up decoding after 0 ms (pickle)" in c2s[3] and f"· {prefix} 80 04 5d" in c2s[3]
    assert "[pickle]" in c2s[1] and "gave up" not in c2s[1]  # small: decoded whatever the deadline
    bad = dump(str(path), "--decode-budget", "soon")
    assert bad.returncode == 2 and "--decode-budget" in bad.stderr

"""Scenarios played on a real engine (proxy/scenario.py's EngineRunner through ``proxy.scenario.run``), real sockets
on 127.0.0.1: latency changes at the step's time, outages refuse new connections and freeze open ones, disconnects
reset, a change by hand stops a ramp, stopping restores; the control commands a window uses for the same actions;
and ``sockscope-proxy --scenario`` as a process.

Times are checked from the engine's own records (a message's arrival and release, the moment the scenario applied
its conditions): lower bounds that hold on any machine, upper bounds only where a broken runner would miss them by
far.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from proxy import scenario as sc
from proxy.conditions import Conditions, DirectionConditions
from proxy.control.client import ControlClient
from proxy.framing import FramingSpec
from proxy.model import ConnectionClosed, ConnectionOpened, Direction, Message, MessageState, MessageUpdated, Notice
from tests.conftest import CONTROL_TOKEN, IO_TIMEOUT, Recorder, connect, recv_exact

pytestmark = pytest.mark.timeout(60)
MS = 1_000_000
NS = 1_000_000_000
LINES = FramingSpec("lines", "lines")
REPO = Path(__file__).resolve().parents[1]


def released(rec: Recorder, m: Message) -> int:
    """When ``m`` was forwarded (waiting for it if it is still delayed or frozen)."""
    if m.state is MessageState.FORWARDED and m.release_ns is not None:
        return m.release_ns
    u = rec.wait_for(lambda r: isinstance(r, MessageUpdated) and r.msg_id == m.id
                     and r.state is MessageState.FORWARDED)
    assert isinstance(u, MessageUpdated) and u.release_ns is not None
    return u.release_ns


def said(rec: Recorder, text: str) -> Notice:
    n = rec.wait_for(lambda r: isinstance(r, Notice) and text in r.text)
    assert isinstance(n, Notice)
    return n


def reset_seen(sock: socket.socket) -> bool:
    """Whether the peer reset ``sock`` (a read fails with a reset, or ends at once where an OS reports it so)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_latency_changes_at_the_steps_time(echo_server, start_proxy, recorder) -> None:
    """Pings go round while the scenario runs; those that reach the proxy after the step's conditions are applied
    are delayed by the new latency both ways, those before are not, and the client measures it."""
    p = start_proxy(echo_server.port, LINES)
    s = sc.loads('length = "1s"\n[[step]]\nat = "0s"\nlatency = 0\n'
                 '[[step]]\nat = "300ms"\nlatency = 100\nlabel = "slower"\n', "steps.toml")
    rtts: list[tuple[int, float]] = []  # (sent, round trip in s)
    with connect(p.port) as c:
        run = sc.run(p, s)
        n = 0
        while not run.finished:
            n += 1
            line = b"ping %d\n" % n
            sent = time.monotonic_ns()
            c.sendall(line)
            assert recv_exact(c, len(line)) == line
            rtts.append((sent, (time.monotonic_ns() - sent) / NS))
            run.wait(0.01)  # pacing, not synchronisation: the run ends by itself
    assert run.started_ns is not None
    applied = [t for t, c in run.applied if c.c2s.latency_ms == 100]
    assert len(applied) == 1
    step_ns = applied[0]
    assert step_ns - run.started_ns >= 300 * MS - sc.EARLY_NS  # never before the step's time
    assert step_ns - run.started_ns < 1300 * MS  # and not a second late
    assert any("step 2/2 'slower' at 300 ms" in line for line in run.lines)
    messages = [r for r in recorder.of(Message) if r.direction is Direction.C2S]
    before = [m for m in messages if m.arrival_ns < step_ns]
    after = [m for m in messages if m.arrival_ns > step_ns]
    assert before and after
    assert all(released(recorder, m) == m.arrival_ns for m in before)  # passthrough: forwarded as they came
    assert all(released(recorder, m) - m.arrival_ns >= 100 * MS for m in after)
    # what the client felt: 100 ms each way once the step applies, nothing like it before
    slow = [rtt for sent, rtt in rtts if sent > step_ns]
    fast = [rtt for sent, rtt in rtts if sent < step_ns - 50 * MS]
    assert slow and fast and min(slow) >= 0.2
    assert sorted(fast)[len(fast) // 2] < 0.1


def test_an_outage_refuses_new_connections_and_freezes_open_ones(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    s = sc.loads('[[step]]\nat = "0s"\nlatency = 0\n[[step]]\nat = "100ms"\noutage = "600ms"\n', "outage.toml")
    with connect(p.port) as c:
        c.sendall(b"before\n")
        assert recv_exact(c, 7) == b"before\n"
        run = sc.run(p, s)
        started = said(recorder, "outage for 600 ms")
        c.sendall(b"during\n")
        with connect(p.port) as late:  # the port still accepts (it must, to refuse the next one) ...
            assert reset_seen(late)  # ... and resets at once
        assert p.server.refused >= 1
        assert recv_exact(c, 7) == b"during\n"  # the open connection survives: its bytes waited
        over = said(recorder, "the outage is over")
        m = recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"during\n"
                              and r.direction is Direction.C2S)
        assert isinstance(m, Message)
        assert released(recorder, m) >= over.time_ns - sc.EARLY_NS > started.time_ns
        run.wait(IO_TIMEOUT)
    with connect(p.port) as again:  # accepted again
        again.sendall(b"after\n")
        assert recv_exact(again, 6) == b"after\n"


def test_a_disconnect_resets_every_open_connection(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    s = sc.loads('[[step]]\nat = "50ms"\ndisconnect = "reset"\nlabel = "server restart"\n', "reset.toml")
    with connect(p.port) as a, connect(p.port) as b:
        for c in (a, b):
            c.sendall(b"hi\n")
            assert recv_exact(c, 3) == b"hi\n"
        run = sc.run(p, s)
        assert run.wait(IO_TIMEOUT)
        assert reset_seen(a) and reset_seen(b)
    closed = recorder.of(ConnectionClosed)
    assert len(closed) == 2 and all("by the scenario" in r.detail for r in closed)


def test_a_change_by_hand_stops_the_ramp_until_the_next_step(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    s = sc.loads('resolution = "50ms"\n[[step]]\nat = "0s"\nramp = "400ms"\nlatency = 500\n'
                 '[[step]]\nat = "600ms"\nlatency = 7\n', "ramp.toml")
    mine = Conditions.symmetric(DirectionConditions(latency_ms=42))
    run = sc.run(p, s)
    recorder.wait_for(lambda r: isinstance(r, Notice) and "step 1/2" in r.text)
    p.call(p.server.set_conditions, mine)
    said(recorder, "changed by hand; they stay until the next step (600 ms)")
    assert p.call(lambda: p.server.global_conditions) == mine  # no ramp update took it back
    assert run.wait(IO_TIMEOUT)
    assert p.call(lambda: p.server.global_conditions).c2s.latency_ms == 7


def test_stopping_restores_the_conditions_from_before(echo_server, start_proxy, recorder) -> None:
    mine = Conditions.symmetric(DirectionConditions(latency_ms=3))
    p = start_proxy(echo_server.port, LINES, conditions=mine)
    s = sc.loads('[[step]]\nat = "0s"\nlatency = 300\n[[step]]\nat = "1m"\noutage = "1m"\n', "long.toml")
    with sc.run(p, s) as run:
        assert p.call(lambda: p.server.global_conditions).c2s.latency_ms == 300
        assert not run.finished
    assert run.finished and p.call(lambda: p.server.global_conditions) == mine
    said(recorder, "stopped; conditions restored")


def test_first_connection_is_time_zero(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    s = sc.loads('start = "first-connection"\n[[step]]\nat = "0s"\nlatency = 30\n', "first.toml")
    run = sc.run(p, s)
    said(recorder, "waiting for the first connection")
    assert run.started_ns is None and p.call(lambda: p.server.global_conditions).is_passthrough
    with connect(p.port) as c:
        assert run.wait(IO_TIMEOUT)
        opened = recorder.of(ConnectionOpened)[0]
        assert run.started_ns == opened.time_ns
        c.sendall(b"x\n")
        assert recv_exact(c, 2) == b"x\n"
    m = recorder.wait_for(lambda r: isinstance(r, Message) and r.data == b"x\n" and r.direction is Direction.C2S)
    assert isinstance(m, Message) and released(recorder, m) - m.arrival_ns >= 30 * MS


def test_a_new_scenario_replaces_the_running_one(echo_server, start_proxy, recorder) -> None:
    p = start_proxy(echo_server.port, LINES)
    first = sc.run(p, sc.loads('[[step]]\nat = "0s"\nlatency = 1\n[[step]]\nat = "1m"\nlatency = 2\n', "a.toml"))
    second = sc.run(p, sc.loads('[[step]]\nat = "0s"\nlatency = 5\n', "b.toml"))
    assert second.wait(IO_TIMEOUT)
    said(recorder, "scenario 'a': stopped")
    assert p.call(lambda: p.server.global_conditions).c2s.latency_ms == 5
    first.stop()  # already stopped: nothing happens
    assert p.call(lambda: p.server.global_conditions).c2s.latency_ms == 5


def test_the_control_commands_for_outages_and_disconnects(echo_server, start_endpoint, recorder) -> None:
    p = start_endpoint(echo_server.port, LINES)
    with ControlClient("127.0.0.1", p.control_port, CONTROL_TOKEN) as client, connect(p.port) as open_one:
        open_one.sendall(b"hi\n")
        assert recv_exact(open_one, 3) == b"hi\n"
        assert client.call("refuse_connections", on=True) == {"refused": 0}
        with connect(p.port) as refused:
            assert reset_seen(refused)
        assert client.call("refuse_connections", on=False) == {"refused": 1}
        assert client.call("disconnect_all") == {"connections": 1}
        assert reset_seen(open_one)
        with pytest.raises(Exception, match="on: expected true or false"):
            client.call("refuse_connections", on="yes")
    with connect(p.port) as fine:
        fine.sendall(b"ok\n")
        assert recv_exact(fine, 3) == b"ok\n"


# ------------------------------------------------------------------------------------------------ the command line


def _proxy(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env,
                            cwd=REPO)


@pytest.mark.slow
def test_sockscope_proxy_plays_a_scenario_and_prints_each_step(tmp_path: Path, echo_server) -> None:
    f = tmp_path / "cli.toml"
    f.write_text('name = "cli"\n[[step]]\nat = "0s"\nlatency = 10\n[[step]]\nat = "200ms"\nlabel = "down"\n'
                 'outage = "200ms"\n', encoding="utf-8")
    proc = _proxy("--target", f"127.0.0.1:{echo_server.port}", "--scenario", str(f), "--quiet")
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if "finished" in line:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert done.wait(30), lines
    finally:
        proc.terminate()
        proc.wait(IO_TIMEOUT)
        reader.join(IO_TIMEOUT)
        assert proc.stdout is not None and proc.stderr is not None
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "error" not in err, err
    steps = [line.split(" info: ", 1)[1] for line in lines if " info: scenario " in line]
    assert steps[0].startswith("scenario 'cli' (") and steps[0].endswith("2 steps over 400 ms, once: started")
    assert steps[1] == "scenario 'cli': step 1/2 at 0 s: both 10 ms"
    assert steps[2].startswith("scenario 'cli': step 2/2 'down' at 200 ms: outage for 200 ms")
    assert steps[3:] == ["scenario 'cli': the outage is over: connections are accepted again",
                         "scenario 'cli': finished; conditions stay as they are"]


def test_sockscope_proxy_refuses_a_bad_scenario_with_its_lines(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[[step]]\nat = 30\n\n[[step]]\nat = "1s"\nlatency = "fast"\n', encoding="utf-8")
    proc = _proxy("--scenario", str(f))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.splitlines() == [
        f"sockscope-proxy: error: --scenario {f}:2: at: a time needs a unit: write it as text such as \"30s\" or "
        "\"30ms\" (got 30)",
        f"sockscope-proxy: error: --scenario {f}:6: latency: cannot read 'fast' as a time; use ms, s, min or h, e.g. "
        "\"500ms\", \"1m30s\""]


@pytest.mark.slow
def test_an_outage_loses_every_udp_datagram_until_it_ends() -> None:
    from tests.test_udp_sockets import UdpEcho, Waiter, client, start

    echo, waiter = UdpEcho(), Waiter()
    p = start(echo.port, waiter)
    try:
        s = sc.loads('[[step]]\nat = "0s"\nlatency = 0\n[[step]]\nat = "50ms"\noutage = "1s"\n', "udp.toml")
        with client() as c:
            c.sendto(b"before", ("127.0.0.1", p.port))
            assert c.recvfrom(100)[0] == b"before"
            run = sc.run(p, s)
            waiter.until(lambda rs: any(isinstance(r, Notice) and "outage for 1 s" in r.text for r in rs))
            c.sendto(b"during", ("127.0.0.1", p.port))
            waiter.until(lambda rs: any(isinstance(r, Message) and r.data == b"during" for r in rs))
            assert run.wait(IO_TIMEOUT)
            c.sendto(b"after", ("127.0.0.1", p.port))
            assert c.recvfrom(100)[0] == b"after"  # "during" never came back: the first answer is "after"
        notices = [n for n in waiter.of(Notice) if n.text.startswith("scenario 'udp'")]
        begin = next(n.time_ns for n in notices if "outage for 1 s" in n.text)
        end = next(n.time_ns for n in notices if "the outage is over" in n.text)
        during = next(m for m in waiter.of(Message) if m.data == b"during")
        assert begin <= during.arrival_ns < end  # it came during the outage ...
        assert during.state is MessageState.DROPPED and "loss 100 %" in during.note  # ... and was lost
        assert b"during" not in echo.received
    finally:
        p.stop()
        echo.stop()

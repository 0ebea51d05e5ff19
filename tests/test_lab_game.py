"""The latency-compensation lab's game (docs/examples/game) played by headless bots through the proxy under
constant lag, with client-side prediction (P), server reconciliation (R) and entity interpolation (I) on and off.

What each technique does is checked from the traffic sockscope captured, with the lab's definition (the game's
protocol.py: the client's input N carries the position it shows for itself after that input; the server's state
whose ``ack`` is N carries where that input really put it): with P and R every correction is exactly 0 (the move
rule is deterministic and both sides apply the same inputs from the same start); with P but not R the
corrections grow with lag (each state pulls the player back to where the server is, without the inputs still in
flight); with P off the position a player sees trails its inputs by those same inputs. Interpolation changes only
what a client draws, so it is checked from the bot's own summary. Each run is a few seconds of real play (those
tests are marked slow); nothing sleeps to synchronise. The commands of docs/tutorial/lag-lab.md are run the way
tests/test_tutorial.py runs the tutorial's.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

from inspector.lab import Distribution, LabReport, analyse
from proxy.conditions import Conditions, DirectionConditions
from proxy.framing import FramingSpec
from proxy.model import Direction, Message
from proxy.runner import ProxyThread
from proxy.server import ProxyConfig
from tests.conftest import IO_TIMEOUT, Recorder
from tests.test_tutorial import Proc, Sandbox, _free_port, _wait_accepting, doc_commands

GAME = Path(__file__).resolve().parent.parent / "docs" / "examples" / "game"
LEN32 = FramingSpec("len32be", "len32be")
PLAY_SECONDS = 3.0
SPEED = 4  # protocol.SPEED: pixels per input

P_R_I = ["--predict", "--reconcile", "--interpolate"]
P_ONLY = ["--predict", "--no-reconcile", "--no-interpolate"]
NOTHING = ["--no-predict", "--no-reconcile", "--no-interpolate"]


# ------------------------------------------------------------------------------------------ from the traffic


def corrections(messages: list[Message]) -> dict[int, list[float]]:
    """Player id -> the correction of each acknowledged input, in px, from the captured frames alone: for input
    N, the distance between the (x, y) its input message said the client predicted and the (x, y) of the
    connection's first state with ``ack == N``."""
    predicted: dict[int, dict[int, tuple[float, float]]] = {}
    states: dict[int, list[dict[str, Any]]] = {}
    player: dict[int, int] = {}
    for m in messages:
        msg = msgpack.unpackb(m.data[4:])
        if m.direction is Direction.C2S and msg["t"] == "input":
            predicted.setdefault(m.conn_id, {})[msg["seq"]] = (msg["x"], msg["y"])
        elif m.direction is Direction.S2C and msg["t"] == "welcome":
            player[m.conn_id] = msg["id"]
        elif m.direction is Direction.S2C and msg["t"] == "state":
            states.setdefault(m.conn_id, []).append(msg)
    out: dict[int, list[float]] = {}
    for conn, mine in predicted.items():
        found: list[float] = []
        for state in states.get(conn, []):
            guess = mine.pop(state["ack"], None)  # pop: only the first state with that ack counts
            if guess is not None:
                found.append(math.dist(guess, (state["x"], state["y"])))
        out[player[conn]] = found
    return out


def test_corrections_from_frames() -> None:
    def frame(conn: int, direction: Direction, msg: dict[str, Any]) -> Message:
        data = msgpack.packb(msg)
        return Message(0, conn, direction, 0, len(data).to_bytes(4, "big") + data, 0, 0)

    s2c, c2s = Direction.S2C, Direction.C2S
    msgs = [frame(7, s2c, {"t": "welcome", "id": 2}),
            frame(7, s2c, {"t": "state", "tick": 1, "time": 0, "ack": 0, "x": 0, "y": 0, "players": []}),
            frame(7, c2s, {"t": "input", "seq": 1, "dx": 1, "dy": 0, "x": 4, "y": 0}),
            frame(7, c2s, {"t": "input", "seq": 2, "dx": 1, "dy": 0, "x": 0, "y": 0}),
            frame(7, s2c, {"t": "state", "tick": 2, "time": 33, "ack": 2, "x": 8, "y": 0, "players": []}),
            frame(7, s2c, {"t": "state", "tick": 3, "time": 67, "ack": 2, "x": 8, "y": 0, "players": []})]
    assert corrections(msgs) == {2: [8.0]}  # input 1 was never acknowledged on its own; ack 2 counted once


# ------------------------------------------------------------------------------------------ running the game


def game_env() -> dict[str, str]:
    return {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", "PYTHONIOENCODING": "utf-8",
            "PYGAME_HIDE_SUPPORT_PROMPT": "1"}


@pytest.fixture
def game_server() -> Iterator[int]:
    """The example's server on a free port; yields the port once it is listening."""
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("the example game needs pygame (pip install pygame)")
    proc = subprocess.Popen([sys.executable, str(GAME / "server.py"), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=game_env())
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading so the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        first = lines.get(timeout=IO_TIMEOUT)
        assert first.startswith("[SERVER] listening on 127.0.0.1:"), first
        yield int(first.split(":")[1].split()[0])
    finally:
        proc.kill()
        proc.wait(IO_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Run:
    summaries: list[dict[str, Any]]  # each bot's own JSON summary, in the order the flags were given
    corrections: dict[int, list[float]]  # player id -> corrections measured from the captured traffic
    lab: LabReport  # the same traffic through sockscope's lab (docs/lab.md), hints inferred from the names
    conn_of: dict[int, int]  # player id -> connection id

    def of(self, i: int) -> list[float]:
        found = self.corrections[self.summaries[i]["player"]]
        assert len(found) > 40, (i, len(found), self.summaries[i])  # enough acknowledged inputs to judge
        return found


def play(server: int, lag_ms: float, *flags: list[str]) -> Run:
    """One bot per entry of ``flags``, all at once, through a proxy adding ``lag_ms`` each way."""
    recorder = Recorder()
    lag = DirectionConditions(latency_ms=lag_ms)
    cfg = ProxyConfig(listen_port=0, target_port=server, framing=LEN32, conditions=Conditions(lag, lag))
    with ProxyThread(cfg, (recorder,)) as proxy:
        bots = [subprocess.Popen([sys.executable, str(GAME / "client.py"), "--port", str(proxy.port), "--headless",
                                  "--bot", "--duration", str(PLAY_SECONDS), *f],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=game_env())
                for f in flags]
        summaries = []
        for bot in bots:
            out, err = bot.communicate(timeout=PLAY_SECONDS + 30)
            assert bot.returncode == 0, err
            summaries.append(json.loads(out.strip().splitlines()[-1]))
    messages = [m for m in recorder.of(Message) if m.data]
    conn_of = {}
    for m in messages:
        if m.direction is Direction.S2C and (msg := msgpack.unpackb(m.data[4:]))["t"] == "welcome":
            conn_of[msg["id"]] = m.conn_id
    return Run(summaries, corrections(messages), analyse(recorder.records), conn_of)


def lab_corrections(run: Run, i: int) -> Distribution:
    """What the lab measured for bot ``i``'s connection."""
    return run.lab.connections[run.conn_of[run.summaries[i]["player"]]].corrections_px


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_prediction_with_reconciliation_never_corrects_and_without_prediction_you_trail(game_server: int) -> None:
    run = play(game_server, 100, P_R_I, NOTHING)
    full, plain = run.summaries

    # P + R: the client's guess for every input is exactly what the server then says.
    assert max(run.of(0)) == 0, run.of(0)
    assert lab_corrections(run, 0).count >= 40 and lab_corrections(run, 0).max == 0, run.lab.text()
    assert full["corrections_px"]["max"] == 0, full
    assert full["unacked_inputs"]["max"] >= 6, full  # the guesses ran ahead of the server by a round trip
    assert full["round_trip_ms"]["median"] >= 200, full  # 100 ms each way, plus waiting for the server's tick

    # No prediction: the position shown with input N is the server's before it: it trails by the inputs in flight.
    trail = run.of(1)
    assert sum(c > 0 for c in trail) >= 0.9 * len(trail), trail
    assert mean(trail) >= 3 * SPEED, trail
    assert lab_corrections(run, 1).p50 >= 3 * SPEED, run.lab.text()
    assert plain["input_to_display_ms"]["median"] >= 200, plain

    # Interpolation: the client with I on drew the other bot between the positions the server sent; the one
    # with I off drew it only where a state put it, jumping from one to the next.
    assert full["others"]["in_between_share"] >= 0.5, full
    assert plain["others"]["in_between_share"] == 0, plain
    assert full["others"]["frames"] > 60 and plain["others"]["frames"] > 60, (full, plain)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_under_the_4g_preset_no_correction_is_larger_than_5_px(game_server: int, sockscope_proxy: Any) -> None:
    """Issue 24 item 4, as a learner's own test would say it: the lab's figures through the pytest plugin."""
    proxy = sockscope_proxy(target=game_server, framing="len32", preset="Mobile 4G", seed=7)
    bots = [subprocess.Popen([sys.executable, str(GAME / "client.py"), "--port", str(proxy.port), "--headless",
                              "--bot", "--duration", str(PLAY_SECONDS), *P_R_I],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=game_env())
            for _ in range(2)]
    for bot in bots:
        _, err = bot.communicate(timeout=PLAY_SECONDS + 30)
        assert bot.returncode == 0, err
    report = proxy.lab()
    assert report.overall.corrections_px.count >= 40, report.text()
    assert report.overall.corrections_px.max <= 5, report.text()
    assert report.overall.input_ack_ms.p50 >= 200, report.text()  # Mobile 4G: 100 ms each way, plus the tick


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_prediction_without_reconciliation_corrects_more_with_more_lag(game_server: int) -> None:
    low = play(game_server, 50, P_ONLY, NOTHING)
    high = play(game_server, 150, P_ONLY, NOTHING)
    summary = {lag: (mean(r.of(0)), mean(r.of(1))) for lag, r in (("50 ms", low), ("150 ms", high))}

    # P without R: every state snaps the player back to where the server is, forgetting the inputs in flight.
    assert mean(low.of(0)) > 0, summary
    assert mean(high.of(0)) > 1.5 * mean(low.of(0)), summary
    # No prediction at all: the shown position trails by about as much, and also more with more lag.
    assert mean(high.of(1)) > 1.5 * mean(low.of(1)), summary
    # What the bot measured itself agrees with the traffic.
    assert high.summaries[0]["corrections_px"]["max"] == pytest.approx(max(high.of(0)), abs=2 * SPEED), summary


# ------------------------------------------------------------------------------------------ the chapter's commands

LAB_DOC = Path(__file__).resolve().parent.parent / "docs" / "tutorial" / "lag-lab.md"
LISTENING = r"^\[SERVER\] listening on 127\.0\.0\.1:{port} \(msgpack, 30 ticks/s\)"


@pytest.fixture
def lab_box(tmp_path: Path) -> Iterator[Sandbox]:
    """docs/tutorial.md's sandbox (tests/test_tutorial.py): free ports for 5555 and 5556, the game copied."""
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("the example game needs pygame (pip install pygame)")
    server, client = _free_port(), _free_port()
    while client == server:
        client = _free_port()
    (tmp_path / "game").mkdir()
    for f in GAME.glob("*.py"):
        (tmp_path / "game" / f.name).write_text(f.read_text(encoding="utf-8").replace("5555", str(server)),
                                                encoding="utf-8")
    box = Sandbox(server, client, tmp_path, tmp_path, tmp_path / "game", [])
    yield box
    for p in box.procs:
        p.stop()


def start_game_server(box: Sandbox) -> Proc:
    server = box.start("python docs/examples/game/server.py")
    server.expect(LISTENING.format(port=box.server), "out")
    return server


def lagged_relay(box: Sandbox, lag_ms: float) -> ProxyThread:
    """What the chapter's window provides: a proxy on 5556 in front of the server, ``lag_ms`` each way."""
    lag = DirectionConditions(latency_ms=lag_ms)
    cfg = ProxyConfig(listen_port=box.client, target_port=box.server, framing=LEN32, conditions=Conditions(lag, lag))
    return ProxyThread(cfg, ()).start()


def bot_summary(p: Proc) -> dict[str, Any]:
    assert p.finish() == 0, p.output()
    out = [line for name, line in p.seen if name == "out"]
    summary: dict[str, Any] = json.loads(out[-1])
    return summary


def lab_install(box: Sandbox, command: str) -> None:
    assert importlib.util.find_spec("pygame") is not None  # the fixture skips otherwise: this is what it installs


def lab_server(box: Sandbox, command: str) -> None:
    start_game_server(box).stop()


def lab_window(box: Sandbox, command: str) -> None:
    start_game_server(box)
    window = box.start(command)
    _wait_accepting(box.client, window)
    bot = box.start("python docs/examples/game/client.py --port 5556 --headless --bot --duration 3")
    summary = bot_summary(bot)
    assert summary["round_trip_ms"]["median"] >= 200, summary  # the window's 100 ms each way
    assert window.popen.poll() is None, "the window exited by itself"


def lab_player(moving: bool) -> Callable[[Sandbox, str], None]:
    def run(box: Sandbox, command: str) -> None:
        server = start_game_server(box)
        relay = lagged_relay(box, 100)
        try:
            client = box.start(command)
            server.expect(r"^\[SERVER\] player \d+ joined", "out")
            rtt = r"round trip \d+ ms" if moving else r"round trip -"  # nobody presses keys in a test
            client.expect(r"^\[CLIENT\] \[P\] prediction off   \[R\] reconciliation off   \[I\] interpolation off   "
                          + rtt, "out")
            client.stop()
        finally:
            relay.stop()

    return run


def lab_headless_bot(box: Sandbox, command: str) -> None:
    start_game_server(box)
    relay = lagged_relay(box, 100)
    try:
        summary = bot_summary(box.start(command))
    finally:
        relay.stop()
    assert summary["predict"] and summary["reconcile"], summary
    assert summary["corrections_px"]["count"] > 40 and summary["corrections_px"]["max"] == 0, summary
    assert summary["round_trip_ms"]["median"] >= 200, summary


LAB_COMMANDS: dict[str, Callable[[Sandbox, str], None]] = {
    "python -m pip install pygame": lab_install,
    "python docs/examples/game/server.py": lab_server,
    "sockscope --listen 127.0.0.1:5556 --target 127.0.0.1:5555 --framing len32 --latency 100": lab_window,
    "python docs/examples/game/client.py --port 5556": lab_player(moving=False),
    "python docs/examples/game/client.py --port 5556 --bot": lab_player(moving=True),
    "python docs/examples/game/client.py --port 5556 --headless --bot --duration 5 --predict --reconcile":
        lab_headless_bot,
}


def test_every_lab_chapter_command_is_tested() -> None:
    assert doc_commands(LAB_DOC.read_text(encoding="utf-8")) == list(LAB_COMMANDS)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", list(LAB_COMMANDS))
def test_lab_chapter_command(command: str, lab_box: Sandbox) -> None:
    LAB_COMMANDS[command](lab_box, command)


def test_lab_chapter_pictures_exist_and_are_all_used() -> None:
    text = LAB_DOC.read_text(encoding="utf-8")
    used = set(re.findall(r"\]\((lab-[\w-]+\.png)\)", text))
    assert used == {p.name for p in LAB_DOC.parent.glob("lab-*.png")}, used
    lab_plots = set(re.findall(r"\]\(\.\./(lab-[\w-]+\.png)\)", text))  # the Lab's own pictures (docs/lab.md)
    assert lab_plots and all((LAB_DOC.parent.parent / name).is_file() for name in lab_plots), lab_plots
    tutorial = (LAB_DOC.parent.parent / "tutorial.md").read_text(encoding="utf-8")
    readme = (GAME.parent / "README.md").read_text(encoding="utf-8")
    assert "(tutorial/lag-lab.md)" in tutorial and "(../tutorial/lag-lab.md)" in readme

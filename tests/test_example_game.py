"""The pygame example in docs/examples/game: two headless bots play through the in-process proxy, and the
client's measured input-to-display delay shows what latency and client-side prediction do.

Without prediction the delay grows by about the round trip when the proxy adds 150 ms each way; with prediction
it stays under a frame. The protocol tests need only msgpack; the game tests skip when pygame is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from proxy.conditions import Conditions, DirectionConditions
from proxy.framing import FramingSpec
from proxy.model import Direction, Message
from tests.conftest import IO_TIMEOUT, Recorder

GAME = Path(__file__).resolve().parent.parent / "docs" / "examples" / "game"
LEN32 = FramingSpec("len32be", "len32be")
PLAY_SECONDS = 2.5
WARM_UP = 0.6  # seconds of each run left out: connecting, the first states, the first frames


@pytest.fixture
def protocol() -> Iterator[Any]:
    sys.path.insert(0, str(GAME))
    try:
        import protocol as module

        yield module
    finally:
        sys.path.remove(str(GAME))
        sys.modules.pop("protocol", None)


def game_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy", PYTHONIOENCODING="utf-8",
               PYGAME_HIDE_SUPPORT_PROMPT="1")
    return env


@pytest.fixture
def pygame_installed() -> None:
    # pytest.importorskip's job, without importing pygame here: only the game's own processes need it, and its
    # import-time banner and warnings (errors under this project's filterwarnings) stay out of pytest's process.
    if importlib.util.find_spec("pygame") is None:
        pytest.skip("the example game needs pygame (pip install pygame)")


@pytest.fixture
def game_server(pygame_installed: None) -> Iterator[int]:
    """The example's server on a free port; yields the port once it is listening."""
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


def play(port: int, tmp_path: Path, name: str) -> tuple[float, float]:
    """Two bots for PLAY_SECONDS: one without prediction, one with. Returns their median delays in ms."""
    clients = {}
    for predict in (False, True):
        stats = tmp_path / f"{name}-{'predict' if predict else 'plain'}.jsonl"
        cmd = [sys.executable, str(GAME / "client.py"), "--port", str(port), "--headless", "--bot",
               "--duration", str(PLAY_SECONDS), "--stats", str(stats), "--predict" if predict else "--no-predict"]
        clients[stats] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=game_env())
    medians = []
    for stats, proc in clients.items():
        out, err = proc.communicate(timeout=PLAY_SECONDS + 20)
        assert proc.returncode == 0, err
        rows = [json.loads(line) for line in stats.read_text(encoding="utf-8").splitlines()]
        delays = [r["delay_ms"] for r in rows if r["t"] >= WARM_UP]
        assert len(delays) > 30, (stats.name, len(delays), out, err)
        medians.append(statistics.median(delays))
    return medians[0], medians[1]


@pytest.mark.slow
def test_latency_shows_without_prediction_and_prediction_hides_it(
        game_server: int, start_proxy: Any, recorder: Recorder, tmp_path: Path) -> None:
    fast = start_proxy(game_server, framing=LEN32)
    plain_0, predicted_0 = play(fast.port, tmp_path, "0ms")

    lagged = Conditions(DirectionConditions(latency_ms=150), DirectionConditions(latency_ms=150))
    slow = start_proxy(game_server, framing=LEN32, conditions=lagged)
    plain_150, predicted_150 = play(slow.port, tmp_path, "150ms")

    summary = f"plain {plain_0:.1f} -> {plain_150:.1f} ms, predicted {predicted_0:.1f} -> {predicted_150:.1f} ms"
    assert plain_150 - plain_0 >= 200, summary  # one round trip is 300 ms
    assert predicted_150 < 50, summary
    assert predicted_0 < 50, summary

    # --framing len32 shows exactly one message per frame: every record decodes as one whole message.
    messages = [r for r in recorder.of(Message) if r.data]
    kinds = {(m.direction, msgpack.unpackb(m.data[4:])["t"]) for m in messages}
    assert {(Direction.C2S, "input"), (Direction.S2C, "welcome"), (Direction.S2C, "state")} <= kinds
    assert all(int.from_bytes(m.data[:4], "big") == len(m.data) - 4 for m in messages)


@pytest.mark.parametrize("fmt", ["msgpack", "json", "pickle"])
def test_protocol_frames_survive_any_split(protocol: Any, fmt: str) -> None:
    state = {"t": "state", "tick": 7, "players": [[1, 100, 40, 12], [2, 616, 0, 3]]}
    data = protocol.encode({"t": "welcome", "id": 2}, fmt) + protocol.encode(state, fmt)
    for cut in range(len(data) + 1):
        reader = protocol.FrameReader(fmt)
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert got == [{"t": "welcome", "id": 2}, state]


def test_prediction_uses_the_servers_rule(protocol: Any) -> None:
    assert protocol.move(0, 0, -1, -1) == (0, 0)  # clamped at the arena's edge
    assert protocol.move(10, 10, 1, 0) == (10 + protocol.SPEED, 10)
    limit = protocol.WIDTH - protocol.SIZE
    assert protocol.move(limit, 0, 1, 1) == (limit, protocol.SPEED)

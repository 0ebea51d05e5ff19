"""docs/tutorial/godot.md, as a reader runs it: the Godot-shaped game (docs/tutorial/godot_game.py, on free ports)
through ``python -m proxy --udp-only``, whose terminal must show what the chapter shows: the Godot client's
connect, the level reassembled from its fragments, the node path announced and the remote calls named by it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "tutorial" / "godot_game.py"

pytestmark = pytest.mark.slow


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(90)
def test_the_chapters_game_through_the_proxy_shows_what_the_chapter_says(tmp_path: Path) -> None:
    server, listen = free_udp_port(), free_udp_port()
    script = tmp_path / "godot_game.py"
    script.write_text(SCRIPT.read_text().replace("SERVER_PORT = 7000", f"SERVER_PORT = {server}"))
    proxy = subprocess.Popen([sys.executable, "-m", "proxy", "--udp-only", "--listen", f"127.0.0.1:{listen}",
                              "--target", f"127.0.0.1:{server}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT)
    try:
        assert proxy.stdout is not None
        first = proxy.stdout.readline()  # the proxy says where it listens before anything else
        assert "UDP on" in first, first
        game = subprocess.run([sys.executable, str(script), str(listen)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
        assert game.returncode == 0, game.stderr
        assert f"connected through port {listen}" in game.stdout
        assert re.search(r"\[SERVER\] got \d+ packets", game.stdout)
    finally:
        proxy.terminate()
        out = proxy.communicate(timeout=20)[0]
    assert "enet connect: 255 channels, mtu 1400" in out and "(a Godot client, peer id 1234567)" in out
    assert re.search(r"enet ch0 reliable #\d+ 6232 B reassembled from 5 fragments: godot rpc node 1 method 2", out)
    assert 'godot simplify_path "Players/Ada" → id 1' in out
    assert "godot rpc Players/Ada (node 1) method 0(Vector2(102.0, 80.0))" in out
    assert re.search(r"enet ch1 unsequenced group \d+ 23 B: godot sync t=\d+ 7: \[Vector2\(", out)

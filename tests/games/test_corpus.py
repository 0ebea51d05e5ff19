"""Every corpus game plays through a real proxy (``python -m proxy --framing auto``, nothing else about framing)
unchanged, and inference names the right framing for each direction within its first 3 messages."""

from __future__ import annotations

import pytest

from tests.games import GAMES
from tests.games.harness import run_game

pytestmark = pytest.mark.slow  # plays each corpus game through a proxy: in the full run, not the fast loop


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", GAMES)
def test_game_plays_unchanged_and_its_framing_is_inferred(name: str) -> None:
    r = run_game(name, n=10, via="cli")
    assert r.error is None, r.error
    assert r.unchanged, "a byte changed, went missing or arrived out of order"
    assert r.records_exact, "the recorded messages are not exactly the bytes that were sent"
    assert r.framing == r.expected, r.reason
    assert all(n <= 3 for n in r.messages.values()), r.messages
    assert r.warnings == []  # nothing stalled, nothing was contradicted


def test_the_corpus_covers_the_styles_of_the_issue() -> None:
    from tests.games.harness import load

    assert len(GAMES) >= 12
    framings = {v for name in GAMES for v in load(name).EXPECT.values()}
    assert {"raw", "lines", "delim:EOT\\x00", "header16json", "len16be", "len32le", "len32be", "msgpack",
            "fixed:12", "fixed:40"} <= framings
    assert any(load(name).EXPECT["c2s"] != load(name).EXPECT["s2c"] for name in GAMES)
    assert any(getattr(load(name), "PER_CONNECTION", False) for name in GAMES)

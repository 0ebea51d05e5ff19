"""A corpus of small client/server games in the styles learners write (issue 20, item 8).

Each module is a self-contained client and server for one wire style, with a ``main`` that plays N exchanges
(``python -m tests.games.ndjson --role server --port 5555``, then ``--role client --port 5555 --n 10``). Each
declares what framing inference should find for it (``EXPECT``). Every socket the game uses goes through
``wrap`` (identity by default), so a harness can record the exact bytes each side sent and received.

``harness`` plays them through a proxy; ``tests/games/test_corpus.py`` and ``tests/bench/bench_inference.py`` use it.
"""

from __future__ import annotations

GAMES = ("raw_text", "ndjson", "json_eot", "realpython", "len16_json", "len32_json", "struct_records",
         "pickle_lockstep", "msgpack_stream", "mixed_directions", "batched", "split_sends", "per_request")

"""Decoder and filter throughput: run by hand (``python tests/bench/bench_decode.py``); prints JSON.

Not collected by pytest (the name does not start with ``test_``); timings belong here, not in assertions.
Targets: auto-decode >= 20,000 typical 50-200 byte game messages/s on one core; a message-only filter over
1,000,000 stored messages < 1 s; a decoded-field filter < 5 s; a 10 MB message's view < 100 ms.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import struct
import sys
import time
from collections.abc import Callable

import msgpack

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from inspector.decode import DecoderRegistry, View, builtin_decoders
from inspector.filters import parse_filter
from proxy.model import Direction, Message

STRUCT_FORMAT = "<Hff12sB player_id x y name state"


def game_messages(rng: random.Random) -> list[tuple[int, bytes]]:
    """(conn_id, bytes) pairs: connection 1 sends text, 2 JSON, 3 msgpack, 4 pickle, 5 struct records."""
    out: list[tuple[int, bytes]] = []
    for i in range(1000):
        name = rng.choice(["bob", "alice", "carol", "dave"])
        state = {"type": "state", "tick": i, "player": name, "pos": {"x": rng.random() * 100, "y": rng.random()},
                 "hp": rng.randint(0, 100), "items": ["sword", "shield"][: rng.randint(0, 2)]}  # fmt: skip
        out.append((1, f"Ping received! 📥 tick {i} from {name}".encode()))
        out.append((2, json.dumps(state).encode()))
        out.append((3, msgpack.packb({"command": "move", "dx": rng.randint(-5, 5), "dy": 1, "who": name})))
        out.append((4, pickle.dumps(state, protocol=4)))
        out.append((5, struct.pack("<Hff12sB", i % 65536, rng.random(), rng.random(), name.encode(), i % 5)))
    return out


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    rng = random.Random(5)
    reg = DecoderRegistry(builtin_decoders())
    reg.set_struct_format(STRUCT_FORMAT, conn_id=5)
    samples = game_messages(rng)
    sizes = [len(d) for _, d in samples]
    ctxs = {c: reg.context_for(c, Direction.C2S) for c in range(1, 6)}
    pairs = [(d, ctxs[c]) for c, d in samples]

    def decode_all() -> None:
        for data, ctx in pairs:
            reg.decode(data, ctx)

    t = timed(decode_all)
    # Summary-only views (what the table's summary column, filters, the timeline and JSON-lines export ask for).
    lite = {c: reg.context_for(c, Direction.C2S, detail=False) for c in range(1, 6)}
    lite_pairs = [(d, lite[c]) for c, d in samples]
    t_lite = timed(lambda: [reg.decode(d, ctx) for d, ctx in lite_pairs])
    per_kind = {}
    for conn, kind in enumerate(["text", "json", "msgpack", "pickle", "struct"], 1):
        sub = [(d, ctxs[c]) for c, d in samples if c == conn]
        chosen = {reg.decode(d, ctx).decoder for d, ctx in sub}
        tk = timed(lambda sub=sub: [reg.decode(d, ctx) for d, ctx in sub])  # type: ignore[misc]
        lsub = [(d, lite[c]) for c, d in samples if c == conn]
        tl = timed(lambda lsub=lsub: [reg.decode(d, ctx) for d, ctx in lsub])  # type: ignore[misc]
        per_kind[kind] = {"msgs_per_s": round(len(sub) / tk), "summary_only_msgs_per_s": round(len(sub) / tl),
                          "decoded_as": sorted(chosen)}

    # 1,000,000 stored messages; half c2s; sizes 20-300.
    n = 1_000_000
    payloads = [d for _, d in samples] + [b"x" * k for k in range(20, 300, 7)]
    msgs = [Message(i, i % 7, Direction(i & 1), i, payloads[i % len(payloads)], i, i) for i in range(n)]
    plain = parse_filter('c2s and size > 100 and bytes contains "tick"')
    pred = plain.predicate()
    t_plain = timed(lambda: [m for m in msgs if pred(m)], repeat=2)
    t_matches = timed(lambda: [m for m in msgs if plain.matches(m)], repeat=1)
    n_plain = sum(1 for m in msgs if pred(m))

    # Decoded-field filter over the same million rows, with a store-like cache of views per distinct payload
    # (a real store caches per message; the table needs the view for its summary column anyway).
    cache: dict[int, View] = {}

    def cached(m: Message) -> View:
        key = id(m.data)
        v = cache.get(key)
        if v is None:
            v = cache[key] = reg.decode_message(m)
        return v

    decoded = parse_filter('json.type == "state" and json.hp > 50 or msgpack.command == "move"')
    t_decoded = timed(lambda: decoded.select(msgs, cached), repeat=1)
    t_decoded_cold = timed(lambda: decoded.select(msgs[:20_000], reg.decode_message), repeat=1)

    big = {
        "text": ("x" * 99 + "\n").encode() * (100_000),
        "json": b'{"blob": "' + b"a" * 10_000_000 + b'"}',
        "ndjson": b'{"i": 1}\n' * 1_111_111,
        "msgpack": msgpack.packb({"blob": b"\x00" * 10_000_000}),
        "pickle": pickle.dumps(list(range(1_500_000)), protocol=4),
        "random": rng.randbytes(10_000_000),
    }
    big_ms = {k: round(timed(lambda d=d: reg.decode(d)) * 1000, 1) for k, d in big.items()}  # type: ignore[misc]
    big_views = {k: reg.decode(d).decoder for k, d in big.items()}

    print(
        json.dumps(
            {
                "auto_decode": {
                    "messages": len(pairs),
                    "size_bytes": {"min": min(sizes), "max": max(sizes), "mean": round(sum(sizes) / len(sizes))},
                    "msgs_per_s": round(len(pairs) / t),
                    "summary_only_msgs_per_s": round(len(pairs) / t_lite),
                    "target_msgs_per_s": 20_000,
                    "by_kind": per_kind,
                },
                "filter_1M_message_only": {
                    "filter": plain.text,
                    "matched": n_plain,
                    "seconds_predicate": round(t_plain, 3),
                    "seconds_matches_method": round(t_matches, 3),
                    "target_seconds": 1.0,
                },
                "filter_1M_decoded_field": {
                    "filter": decoded.text,
                    "seconds_with_view_cache": round(t_decoded, 3),
                    "seconds_per_20k_uncached": round(t_decoded_cold, 3),
                    "target_seconds": 5.0,
                },
                "ten_mb_view_ms": big_ms,
                "ten_mb_decoded_as": big_views,
                "target_ten_mb_ms": 100,
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Framing inference decides exactly as recorded: thousands of generated read sequences, and what it said of each.

The cheaper inference (candidates built only when the first read leaves them a chance, dead ones no longer visited,
the msgpack candidate driving msgpack's unpacker itself) must not change any decision. The corpus is generated
from fixed seeds: binary records of random struct layouts, random bytes, proxybench's hello and pings, text lines,
CRLF and NUL-terminated text, custom terminators, JSON values (one per read, pretty, newline-delimited), msgpack
streams, length prefixes of every width, byte order and inclusion, the Real Python header+body format, pickles,
bytes from tiny alphabets (``\\n``, ``\\0``, ``{``, quotes...), each cut into reads in several ways (one message per
read, several per read, split at random points) and some with a hint from an earlier connection. For each sequence
the recording holds what ``Inference`` answered after every read: the decision (framing, reason, messages, reads,
bytes watched, remembered) or, while still watching, ``best_evidence()`` (what the relay tells the memory).

``tests/test_inference_equivalence.json.gz`` was recorded with the inference of commit b12d869 (before the
optimisation). To record again after a deliberate change of decisions:
``python tests/test_inference_equivalence.py --record``.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgpack

from proxy.inference import INFER_BYTES, Hint, Inference

RECORDING = Path(__file__).with_suffix(".json.gz")
SEQUENCES = 4000

_WORDS = ["move", "fire", "hello", "score", "player", "x", "y", "ok", "ping", "pong", "chat", "join", "left", "é",
          "über", "日本", "42", "-7", "3.5", "true", "null", "{", "}", "[", "]", ":", ",", '"']
_TERMINATORS = [b"EOT\x00", b"<END>", b"\x04", b"||", b"\r\n\r\n", b"\x00\x00", b"END\n", b"\xff\xfe", b";;",
                b"<<", b"~~~", b".\n", b"}\n", b" !", b"\n\x00"]
_HINTS = ["raw", "lines", "delim:\\r\\n", "delim:\\x00", "delim:EOT\\x00", "delim:<END>", "delim:||", "json",
          "msgpack", "header16json", "len8", "len8-incl", "len16be", "len16le", "len16be-incl", "len32be",
          "len32le", "len32le-incl", "len64be", "len64le", "fixed:12", "fixed:20", "fixed:40", "fixed:7", "len8le",
          "bogus"]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(1, 9)))


def _obj(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice([rng.randrange(-1000, 100000), rng.random() * 100, _text(rng), True, False, None])
    if r < 0.65:
        return {rng.choice(["type", "x", "y", "name", "hp", "keys", "id", "state"]) + str(i): _obj(rng, depth + 1)
                for i in range(rng.randrange(0, 5))}
    return [_obj(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def _struct_values(rng: random.Random, layout: str) -> bytes:
    vals: list[object] = []
    for code in layout[1:]:
        if code in "fd":
            vals.append(rng.uniform(-1000, 1000) if rng.random() < 0.7 else float(rng.randrange(-5, 5)))
        elif code == "?":
            vals.append(rng.random() < 0.5)
        else:
            bits = struct.calcsize("<" + code) * 8
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)
            v = int(rng.expovariate(1 / 50)) * (1 if code.isupper() or rng.random() < 0.8 else -1)
            vals.append(max(lo, min(hi, v)))
    return struct.pack(layout, *vals)


def _payload(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return json.dumps(_obj(rng)).encode()
    if kind == 1:
        return _text(rng).encode()
    if kind == 2:
        return rng.randbytes(rng.randrange(0, 80))
    if kind == 3:
        return bytes(msgpack.packb(_obj(rng)))
    return pickle.dumps(_obj(rng), protocol=rng.randrange(2, 6))


def _prefix(width: int, order: Literal["big", "little"], inclusive: bool, payload: bytes) -> bytes:
    n = len(payload) + (width if inclusive else 0)
    return (n % (1 << (8 * width))).to_bytes(width, order) + payload


def _rp(rng: random.Random, body: bytes) -> bytes:
    header = json.dumps({"byteorder": "little", "content-type": rng.choice(["text/json", "binary/x"]),
                         "content-encoding": "utf-8", rng.choice(["content-length", "Content-Length",
                                                                  "content_length"]): len(body)}).encode()
    return struct.pack(">H", len(header)) + header + body


def _messages(rng: random.Random) -> tuple[str, list[bytes]]:
    """One wire style's messages, as the program sends them."""
    n = rng.choice([1, 2, 3, 4, 6, 12, 12, 12, 20])
    kind = rng.randrange(19)
    if kind == 0:
        layout = rng.choice("<>!=") + "".join(rng.choice("BHIhifd?bQq") for _ in range(rng.randrange(1, 9)))
        return "struct", [_struct_values(rng, layout) for _ in range(n)]
    if kind == 1:
        return "random bytes", [rng.randbytes(rng.choice([rng.randrange(1, 100), rng.randrange(1, 3000)]))
                                for _ in range(n)]
    if kind == 2:
        seed = rng.randrange(1 << 30)
        msg = bytearray(random.Random(seed).randbytes(rng.choice([64, 64, 16, 128, 1024])))
        first = rng.choice([[b"PXBN" + b"E" + bytes(3) + bytes(12)], [b"K"], []])
        out = list(first)
        for i in range(n):
            struct.pack_into("!II", msg, 0, 0x9E3779B9 * seed & 0xFFFFFFFF, i)
            out.append(bytes(msg))
        return "hello and pings", out
    if kind == 3:
        return "text lines", [_text(rng).encode() + b"\n" for _ in range(n)]
    if kind == 4:
        return "crlf", [_text(rng).encode() + b"\r\n" for _ in range(n)]
    if kind == 5:
        return "nul", [_payload(rng) + b"\x00" for _ in range(n)]
    if kind == 6:
        t = rng.choice(_TERMINATORS)
        return "terminator", [_payload(rng) + t for _ in range(n)]
    if kind == 7:
        return "ndjson", [json.dumps(_obj(rng)).encode() + b"\n" for _ in range(n)]
    if kind == 8:
        return "json stream", [json.dumps(_obj(rng)).encode() for _ in range(n)]
    if kind == 9:
        return "pretty json", [json.dumps(_obj(rng), indent=rng.choice([1, 2, 4])).encode() + b"\n"
                               for _ in range(n)]
    if kind == 10:
        return "msgpack", [msgpack.packb(_obj(rng)) for _ in range(n)]
    if kind in (11, 12, 13):
        width = rng.choice([1, 2, 2, 4, 4, 8])
        order: Literal["big", "little"] = rng.choice(["big", "little"])
        inclusive = rng.random() < 0.3
        return f"len{width * 8}", [_prefix(width, order, inclusive, _payload(rng)) for _ in range(n)]
    if kind == 14:
        out = []
        for _ in range(n):
            body = _payload(rng)
            m = _rp(rng, body)
            out += [m[:-len(body)], body] if body and rng.random() < 0.3 else [m]
        return "real python", out
    if kind == 15:
        return "pickle", [pickle.dumps(_obj(rng), protocol=rng.randrange(2, 6)) for _ in range(n)]
    if kind == 16:
        alphabet = rng.choice([b"\n\x00a{\"", b"\x00\x01", b"{}[]\" :,0123\n", b"\r\n ab", b"\x90\x80\xa0\x01\n",
                               b"\x00\x02\x00\x05abc", b"\n", b"\x00"])
        return "alphabet", [bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 300))) for _ in range(n)]
    if kind == 17:
        first, second = _messages(rng)[1], _messages(rng)[1]
        return "two styles", first[:rng.randrange(0, 4)] + second
    unit = rng.choice([b"\x00", b"\n", b"a\n", b"[", b'{"a":', b"1", b"\x92\x01\x02", b"\x00\x01x", b"\xc0",
                       b"\x00\x00"])
    return "dense", [unit * (rng.choice([4096, 40, 2]) // len(unit)) for _ in range(rng.randrange(1, 5))]


def _reads(rng: random.Random, msgs: list[bytes]) -> list[bytes]:
    """The messages as reads: one per read, several per read, or the stream cut at random points."""
    how = rng.randrange(6)
    if how <= 2 or not msgs:
        reads = list(msgs)
    elif how == 3:
        reads, i = [], 0
        while i < len(msgs):
            k = rng.randrange(1, 4)
            reads.append(b"".join(msgs[i:i + k]))
            i += k
    else:
        stream = b"".join(msgs)
        reads, i = [], 0
        while i < len(stream):
            k = rng.choice([1, 2, 3, 7, 20, 64, 200, 1000]) if how == 4 else rng.randrange(1, 2 * len(msgs[0]) + 2)
            reads.append(stream[i:i + k])
            i += k
    if rng.random() < 0.03:
        reads.insert(rng.randrange(len(reads) + 1), b"")
    if rng.random() < 0.01:
        reads.insert(rng.randrange(len(reads) + 1), rng.randbytes(INFER_BYTES // 2 + rng.randrange(2)))
    return reads[:30]


def corpus(count: int = SEQUENCES) -> Iterator[tuple[str, list[bytes], Hint | None]]:
    rng = random.Random(20261206)
    for _ in range(count):
        kind, msgs = _messages(rng)
        hint = None
        if rng.random() < 0.25:
            hint = Hint(rng.choice(_HINTS), rng.randrange(0, 4), rng.random() < 0.5)
        yield kind, _reads(rng, msgs), hint


def trace(reads: list[bytes], hint: Hint | None) -> str:
    """What inference answered after each read: its decision, or (still watching) its best evidence."""
    inf = Inference(hint)
    out = []
    for r in reads:
        d = inf.observe(r)
        if d is not None:
            out.append(f"D {d.framing}|{d.reason}|{d.messages}|{d.reads}|{d.watched}|{d.remembered}")
            break
        ev = inf.best_evidence()
        out.append("-" if ev is None else f"E {ev[0]} {ev[1]}")
    return "; ".join(out)


def test_decisions_match_the_recording() -> None:
    with gzip.open(RECORDING, "rt") as f:
        expected = json.load(f)
    assert len(expected) == SEQUENCES
    wrong = []
    for i, (kind, reads, hint) in enumerate(corpus()):
        got = trace(reads, hint)
        if got != expected[i]:
            wrong.append(f"#{i} {kind} hint={hint}:\n  expected {expected[i]}\n  got      {got}")
    assert not wrong, f"{len(wrong)} of {SEQUENCES} sequences decided differently:\n" + "\n".join(wrong[:5])


def test_the_corpus_covers_every_decision() -> None:
    """The recording is only as good as its variety: each kind of framing is decided somewhere in it."""
    with gzip.open(RECORDING, "rt") as f:
        expected = json.load(f)
    decided = {t.rsplit("; ", 1)[-1].split("|")[0] for t in expected}
    names = {d.split(" ", 1)[1].split(":")[0] for d in decided if d.startswith("D ")}
    for name in ("raw", "lines", "delim", "json", "msgpack", "fixed", "header16json", "len8", "len16be", "len16le",
                 "len32be", "len32le", "len64be", "len64le", "len32be-incl", "len16le-incl"):
        assert name in names, (name, sorted(names))
    assert any(t.endswith("|True") for t in expected) and any("E " in t for t in expected)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_inference_equivalence.py --record")
    traces = [trace(reads, hint) for _, reads, hint in corpus()]
    with gzip.open(RECORDING, "wt") as f:
        json.dump(traces, f, separators=(",", ":"))
    print(f"recorded {len(traces)} sequences in {RECORDING}")

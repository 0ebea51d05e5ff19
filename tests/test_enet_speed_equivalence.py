"""ENet and Godot datagrams decode exactly as recorded: the benchmark's traffic, and thousands of varied datagrams.

The faster summary path (a flat reader for Godot's usual Variants, a flat renderer for small values, one nested
context per outer context, the payload decoders' shared readings) must not change a byte of what is shown. The
recording holds, for every datagram, the summary view (``detail=False``: decoder, summary, error, warnings,
values) and the detail view (fields, text, editable form, as a digest) that the decoders of commit 00198c9
(before the optimisation) made of it:

- ``pyenet`` and ``godot``: 300 ticks of bench_enet's two mixes (recorded through the engine with pyenet once,
  stored here as bytes, so the test needs no network), fed to a real MessageStore in capture order;
- ``varied``: generated from fixed seeds: Godot remote calls, syncs, spawns and relays whose arguments are Variants
  of every type (nested arrays and dictionaries, 64-bit reals, NaN and infinities, unicode and empty strings,
  packed arrays, typed containers), JSON and msgpack payloads of many shapes, and copies of them with flipped,
  cut and inserted bytes (errors must read the same too), in reliable, unreliable and unsequenced sends.

To record again after a deliberate change of what is shown: ``python tests/test_enet_speed_equivalence.py
--record`` (``--traffic`` also records the two mixes again with pyenet, which needs the network).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from inspector.decode import DecoderRegistry, builtin_decoders
from inspector.decode._godot import GodotValue
from inspector.store import MessageStore
from proxy.model import ConnectionOpened, Direction, Message
from tests import enet_bytes as e

RECORDING = Path(__file__).with_suffix(".json.gz")
TICKS = 300
VARIED = 3000


# -- canonical forms: every type and every byte of a view ---------------------------------------------------------


def canon(v: Any, depth: int = 0) -> Any:
    """``v`` as JSON with its types: equal canonical forms mean the same values, rendered the same way."""
    if depth > 200:
        return ["deep"]
    t = type(v)
    if t is GodotValue:
        return ["GodotValue", v.type_name, [[canon(k, depth + 1), canon(x, depth + 1)] for k, x in v.items()]]
    if t is dict:
        return ["dict", [[canon(k, depth + 1), canon(x, depth + 1)] for k, x in v.items()]]
    if t is list or t is tuple:
        return [t.__name__, [canon(x, depth + 1) for x in v]]
    if t is bytes:
        return ["bytes", v.hex()]
    if t is float:
        return ["float", repr(v) if not math.isnan(v) else "nan", math.copysign(1.0, v) < 0]
    return [t.__name__, repr(v)]


def _fields(fields: Any) -> Any:
    return [[f.name, f.value_repr, f.start, f.end, _fields(f.children)] for f in fields]


def summary_form(view: Any) -> Any:
    return [view.decoder, view.summary, view.error, list(view.warnings), view.truncated, canon(view.values)]


def _digest(form: Any) -> str:
    return hashlib.sha256(json.dumps(form, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def detail_digest(view: Any) -> str:
    return _digest([summary_form(view), _fields(view.fields), view.text, view.can_encode, view.editable])


# -- the varied corpus ---------------------------------------------------------------------------------------------

_FLOATS = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-30, 3.4e38, 1e300, float("inf"), float("-inf"), float("nan"), 123456.75,
           2.0 ** 53, -7.25e-5]
_STRINGS = ["", "a", "hé", "日本語", "x" * 37, "with 'quotes' and \"dq\"", "back\\slash", "tab\there", "nl\nx",
            "\x00nul", "emoji 🎮", "  spaced  "]


def _f(rng: random.Random, wide: bool = False) -> float:
    x = rng.choice(_FLOATS) if rng.random() < 0.5 else rng.uniform(-1e4, 1e4)
    return x if wide or not math.isfinite(x) or abs(x) < 3e38 else -x / 1e270


def _string(rng: random.Random, kind: int = 4) -> bytes:
    raw = rng.choice(_STRINGS).encode()
    return struct.pack("<II", kind, len(raw)) + raw + b"\0" * (-len(raw) % 4)


def variant(rng: random.Random, depth: int = 0) -> bytes:
    """One Variant in Godot's binary serialization, of any type the reader knows."""
    k = rng.randrange(40 if depth < 3 else 27)
    wide = rng.random() < 0.25
    w = 1 << 16 if wide else 0
    real = "d" if wide else "f"
    if k == 0:
        return struct.pack("<I", 0)
    if k == 1:
        return struct.pack("<II", 1, rng.choice([0, 1, 2]))
    if k == 2:
        return struct.pack("<Iq", 2 | w, rng.randrange(-(1 << 63), 1 << 63)) if wide else \
            struct.pack("<Ii", 2, rng.randrange(-(1 << 31), 1 << 31))
    if k == 3:
        return struct.pack(f"<I{real}", 3 | w, _f(rng, wide))
    if k in (4, 21):
        return _string(rng, k)
    if k in (5, 7, 9, 11, 12, 14, 15, 16, 17, 18, 19):
        n = {5: 2, 7: 4, 9: 3, 11: 6, 12: 4, 14: 4, 15: 4, 16: 6, 17: 9, 18: 12, 19: 16}[k]
        return struct.pack(f"<I{n}{real}", k | w, *(_f(rng, wide) for _ in range(n)))
    if k in (6, 8, 10, 13):
        n = {6: 2, 8: 4, 10: 3, 13: 4}[k]
        return struct.pack(f"<I{n}i", k, *(rng.randrange(-(1 << 31), 1 << 31) for _ in range(n)))
    if k == 20:
        return struct.pack("<I4f", 20, *(_f(rng) for _ in range(4)))
    if k == 22:
        names, subs = rng.randrange(3), rng.randrange(2)
        return struct.pack("<IIII", 22, 0x80000000 | names, subs, rng.randrange(4)) + b"".join(
            _string(rng)[4:] for _ in range(names + subs))
    if k == 23:
        return struct.pack("<IQ", 23, rng.randrange(1 << 64))
    if k == 24:
        return struct.pack("<IQ", 24 | 1 << 16, rng.randrange(3))
    if k in (25, 26):
        return struct.pack("<I", 25) if k == 25 else _string(rng, 26) + struct.pack("<Q", rng.randrange(1 << 40))
    if k == 27:
        typed = rng.random() < 0.1
        head = 27 | (1 << 16 if typed else 0)
        n = rng.randrange(5)
        body = b"".join(variant(rng, depth + 1) + variant(rng, depth + 1) for _ in range(n))
        return struct.pack("<I", head) + (struct.pack("<I", 4) if typed else b"") + struct.pack("<I", n) + body
    if k == 28:
        typed = rng.random() < 0.1
        n = rng.randrange(6)
        body = b"".join(variant(rng, depth + 1) for _ in range(n))
        return struct.pack("<I", 28 | (1 << 16 if typed else 0)) + (struct.pack("<I", 2) if typed else b"") + \
            struct.pack("<I", n) + body
    if k == 29:
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
        return struct.pack("<II", 29, len(raw)) + raw + b"\0" * (-len(raw) % 4)
    if k in (30, 31, 32, 33):
        n = rng.randrange(5)
        fmt = {30: "i", 31: "q", 32: "f", 33: "d"}[k]
        vals = [rng.randrange(-1000, 1000) if fmt in "iq" else _f(rng, fmt == "d") for _ in range(n)]
        return struct.pack(f"<II{n}{fmt}", k, n, *vals)
    if k == 34:
        n = rng.randrange(4)
        return struct.pack("<II", 34, n) + b"".join(_string(rng)[4:] for _ in range(n))
    if k in (35, 36, 37, 38):
        parts = {35: 2, 36: 3, 37: 4, 38: 4}[k]
        n = rng.randrange(4)
        r = "d" if wide and k != 37 else "f"
        return struct.pack(f"<II{n * parts}{r}", k | (w if k != 37 else 0), n,
                           *(_f(rng, r == "d") for _ in range(n * parts)))
    return struct.pack("<I", 0)


def compressed(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.15:
        return bytes([1 | (0x80 if rng.random() < 0.5 else 0)])
    if r < 0.35:
        mode = rng.randrange(4)
        fmt = "<" + "bhiq"[mode]
        bits = 8 << mode
        return bytes([2 | mode << 6]) + struct.pack(fmt, rng.randrange(-(1 << (bits - 1)), 1 << (bits - 1)))
    if r < 0.5:  # the usual game values: small arrays and dicts of ints, bools, floats, strings, vectors
        return e.compressed(rng.choice([
            [e.Vec2((_f(rng), _f(rng))), rng.randrange(-300, 300)], {"jump": rng.random() < 0.5, "fire": False},
            ["gg", rng.randrange(1000)], rng.uniform(-10, 10), rng.choice(_STRINGS), [[1, 2], {"a": [3.5]}],
            {1: "one", 2.5: None, "k": [e.Vec2((1.0, 2.0))]}]))
    return variant(rng)


def godot_packet(rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind <= 2:
        args = [compressed(rng) for _ in range(rng.randrange(5))]
        node = rng.choice([rng.randrange(256), rng.randrange(256, 65536), rng.randrange(65536, 1 << 31)])
        method = rng.choice([rng.randrange(256), rng.randrange(256, 65536)])
        if not args:
            return e.rpc(node, method, [])
        pkt = bytearray(e.rpc(node, method, [b"x"]))  # the header, as bytes only; then the Variant arguments
        pkt[0] &= 0x7F
        head = bytes(pkt[: len(pkt) - 1])
        return head + bytes([len(args)]) + b"".join(args)
    if kind == 3:
        nodes = [(rng.choice([rng.randrange(1, 99), 0x80000000 | rng.randrange(9)]),
                  b"".join(compressed(rng) for _ in range(rng.randrange(4)))) for _ in range(rng.randrange(1, 5))]
        return b"\x06" + struct.pack("<H", rng.randrange(65536)) + b"".join(
            struct.pack("<II", n, len(s)) + s for n, s in nodes)
    if kind == 4:
        state = [rng.choice([1, 2.5, "s", [1], {"a": e.Vec2((0.5, 1.5))}]) for _ in range(rng.randrange(3))]
        return e.spawn(rng.randrange(4), rng.randrange(9), rng.randrange(99), rng.choice(["Player", "Bullet", "é"]),
                       [1, 2][: rng.randrange(3)], state)
    if kind == 5:
        return e.sys(3, rng.choice([0, -2, 5]), godot_packet(rng) if rng.random() < 0.7 else e.raw(b'{"a": 1}'))
    if kind == 6:
        return rng.choice([e.simplify_path(rng.randrange(9), "/root/Main/Player"), e.confirm_path("/root/A"),
                           e.despawn(rng.randrange(99)), e.sys(1, 4), e.raw(b'{"t": "raw", "v": [1, 2]}'),
                           e.raw(msgpack.packb({"in": "x", "n": 3}))])
    return e.sync(rng.randrange(65536), [(rng.randrange(1, 9), [e.Vec2((_f(rng), 2.0)), rng.randrange(99)])])


def plain_payload(rng: random.Random) -> bytes:
    obj: Any = {"t": rng.choice(["pos", "chat", "state"]), "tick": rng.randrange(10**6),
                "x": _f(rng) if rng.random() < 0.8 else 1.0, "name": rng.choice(_STRINGS),
                "players": [{"id": i, "x": i * 1.5} for i in range(rng.randrange(5))]}
    r = rng.random()
    if r < 0.35:
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, None, 2]))
        if rng.random() < 0.2:
            text = text + rng.choice(["\n", "\n" + json.dumps([1, 2]), "  ", "\t\n{}"])
        return text.encode()
    if r < 0.4:
        return struct.pack(">I", 7) + b'{"a": 1}'[:7]
    if r < 0.8:
        return msgpack.packb(obj if rng.random() < 0.7 else [obj, rng.randrange(9), b"\x00bin"])
    if r < 0.9:
        return msgpack.packb(obj) + msgpack.packb({"second": True})
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            b[rng.randrange(len(b))] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x1C])
    return bytes(b)


def varied_records() -> list[Any]:
    """Two flows (a Godot client's and a plain pyenet one), each opened by its CONNECT, then generated sends."""
    rng = random.Random(22)
    recs: list[Any] = [ConnectionOpened(1, ("127.0.0.1", 40001), ("127.0.0.1", 7000), 0, transport="udp"),
                       ConnectionOpened(2, ("127.0.0.1", 40002), ("127.0.0.1", 7000), 0, transport="udp")]
    seqs = {1: 0, 2: 0}

    def add(conn: int, direction: Direction, data: bytes) -> None:
        recs.append(Message(len(recs), conn, direction, seqs[conn], data, len(recs), len(recs)))
        seqs[conn] += 1

    add(1, Direction.C2S, e.header(0xFFF, sent_time=1) + e.connect(channels=255, data=1234567))
    add(2, Direction.C2S, e.header(0xFFF, sent_time=1) + e.connect(channels=4))
    for i in range(VARIED):
        conn = 1 if i % 3 else 2
        payload = godot_packet(rng) if conn == 1 else plain_payload(rng)
        if rng.random() < 0.3:
            payload = mutate(rng, payload)
        ch = rng.randrange(4)
        how = rng.randrange(3)
        if how == 0:
            dgram = e.header(1, sent_time=i & 0xFFFF) + e.reliable(ch, i & 0xFFFF or 1, payload)
        elif how == 1:
            dgram = e.header(1) + e.unreliable(ch, 5, i & 0xFFFF or 1, payload)
        else:
            dgram = e.header(1) + e.unsequenced(ch, i & 0xFFFF or 1, payload)
        if rng.random() < 0.2:
            dgram = e.header(1, sent_time=7) + e.ack(ch, 3, 9) + dgram[2:]
        if rng.random() < 0.05:
            dgram = mutate(rng, dgram)
        add(conn, rng.choice([Direction.C2S, Direction.S2C]), dgram)
    return recs


# -- decoding as the window does ---------------------------------------------------------------------------------


def decoded(records: list[Any]) -> dict[str, list[Any]]:
    """Per datagram: its summary, the digest of its summary form, of its detail view, and of its summary form
    decoded again (the second pass meets the lanes' and connections' memories)."""
    store = MessageStore()
    store.apply(records)
    msgs = [store.message(r) for r in range(len(store))]
    reg = DecoderRegistry(builtin_decoders())
    first = [reg.decode_message(m, detail=False) for m in msgs]
    details = [detail_digest(reg.decode_message(m, detail=True)) for m in msgs]
    again = [_digest(summary_form(reg.decode_message(m, detail=False))) for m in msgs]
    return {"summary": [v.summary for v in first], "form": [_digest(summary_form(v)) for v in first],
            "detail": details, "again": again}


def _to_json(records: list[Any]) -> list[Any]:
    out: list[Any] = []
    for r in records:
        if isinstance(r, ConnectionOpened):
            out.append(["open", r.conn_id, list(r.client_addr), list(r.target_addr), r.time_ns])
        else:
            out.append(["msg", r.id, r.conn_id, int(r.direction), r.seq, r.data.hex(), r.arrival_ns, r.release_ns])
    return out


def _from_json(rows: list[Any]) -> list[Any]:
    out: list[Any] = []
    for row in rows:
        if row[0] == "open":
            out.append(ConnectionOpened(row[1], tuple(row[2]), tuple(row[3]), row[4], transport="udp"))
        else:
            out.append(Message(row[1], row[2], Direction(row[3]), row[4], bytes.fromhex(row[5]), row[6], row[7]))
    return out


def _load() -> dict[str, Any]:
    with gzip.open(RECORDING, "rt", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mix", ["pyenet", "godot", "varied"])
def test_decodes_as_recorded(mix: str) -> None:
    rec = _load()
    records = _from_json(rec["traffic"][mix]) if mix != "varied" else varied_records()
    got = decoded(records)
    want = rec["views"][mix]
    assert len(got["summary"]) == len(want["summary"])
    for i, w in enumerate(want["summary"]):
        assert got["summary"][i] == w, f"{mix} datagram {i}"
    for label, key in (("summary view", "form"), ("summary view decoded again", "again"), ("detail view", "detail")):
        for i, w in enumerate(want["form" if key == "again" else key]):
            assert got[key][i] == w, f"{mix} datagram {i}: {label} differs (summary {want['summary'][i]!r})"


def test_the_recorded_mixes_are_the_benchmarks() -> None:
    """The recording exercises what the benchmark measures: Godot calls and syncs, JSON and msgpack payloads,
    a reassembled fragmented message; and the varied corpus has errors as well as values."""
    views = _load()["views"]
    pyenet, godot, varied = (views[m]["summary"] for m in ("pyenet", "godot", "varied"))
    assert sum(": json {" in s for s in pyenet) > 300 and sum(": msgpack {" in s for s in pyenet) > 200
    assert sum(": godot rpc node 3 method 1(Vector2(" in s for s in godot) > 200
    assert sum(": godot sync t=" in s for s in godot) > 200
    for summaries in (pyenet, godot):
        assert any("reassembled" in s for s in summaries)
    assert sum(": hex " in s for s in varied) > 300  # payloads that mutation made no longer Godot's, JSON or msgpack
    assert sum("Vector3(" in s for s in varied) > 20


def record(traffic: bool) -> None:
    rec: dict[str, Any] = {"traffic": {}, "views": {}}
    if traffic or not RECORDING.exists():
        sys.path.insert(0, str(Path(__file__).parent / "bench"))
        import bench_enet

        rec["traffic"]["pyenet"] = _to_json(bench_enet.record(TICKS, godot=False))
        rec["traffic"]["godot"] = _to_json(bench_enet.record(TICKS, godot=True))
    else:
        rec["traffic"] = _load()["traffic"]
    for mix in ("pyenet", "godot", "varied"):
        records = _from_json(rec["traffic"][mix]) if mix != "varied" else varied_records()
        rec["views"][mix] = decoded(records)
        del rec["views"][mix]["again"]
    with gzip.open(RECORDING, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(rec, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    if "--record" in sys.argv:
        record("--traffic" in sys.argv)

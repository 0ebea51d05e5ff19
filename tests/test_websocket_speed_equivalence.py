"""WebSocket frames decode exactly as recorded: the benchmark's traffic, generated frames and the hostile corpus.

The faster path (the stream tracker's per-message work, the decoder's summary views, the payload decoders' reuse of
what they read) must not change a byte of what is shown. The recording holds, for every message, the summary view
(``detail=False``: decoder, summary, error, warnings, values), the detail view (fields, text, editable form, as a
digest) and what the stream tracker keeps of it (:class:`StreamInfo`, as a digest), made by the code of main at
commit 58099aa (before the optimisation), plus each tracker's ``work`` count:

- ``deflate`` and ``plain``: 400 ticks of bench_websocket's session (the websockets library's sans-IO client and
  server, permessage-deflate on and off; stored here as bytes, since the client's masks are random), cut by the
  engine's framer read by read, as the benchmark's ``all`` does;
- ``varied``: generated from fixed seeds on several connections: text, binary and control frames, masked or not,
  fragmented (with control frames between fragments), compressed with context takeover and without, payloads of
  JSON (one value, several, blanks, broken), msgpack, text, non-UTF-8 text and random bytes; hostile streams
  (bad inflate data, a bomb past the cap, a continuation with nothing to continue, reserved opcodes, RSV2/3,
  unmasked client frames, bad close frames); frames cut across messages and several frames in one message; and
  mutated copies of all of them (flipped, cut and inserted bytes), on connections of their own;
- ``untracked``: the same frames on directions framed as websocket whose stream the tracker never saw, and on
  connections without a framing (the decoder then judges bytes alone);
- ``hostile``: every file of tests/hostile/websocket cut by the engine's framer.

To record again after a deliberate change of what is shown: ``python tests/test_websocket_speed_equivalence.py
--record`` (``--traffic`` also makes the bench traffic again).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from inspector.decode import DecoderRegistry, builtin_decoders
from inspector.decode._websocket import StreamTracker, WebSocketDecoder
from proxy.model import Direction, Message
from proxy.websocket import WebSocketFramer, build_frame

RECORDING = Path(__file__).with_suffix(".json.gz")
HOSTILE = Path(__file__).parent / "hostile" / "websocket"
TICKS = 400
VARIED = 2500
C2S, S2C = Direction.C2S, Direction.S2C


# -- canonical forms: every type and every byte of a view ---------------------------------------------------------


def canon(v: Any, depth: int = 0) -> Any:
    """``v`` as JSON with its types: equal canonical forms mean the same values, rendered the same way."""
    if depth > 200:
        return ["deep"]
    t = type(v)
    if t is dict:
        return ["dict", [[canon(k, depth + 1), canon(x, depth + 1)] for k, x in v.items()]]
    if t is list or t is tuple:
        return [t.__name__, [canon(x, depth + 1) for x in v]]
    if t is bytes:
        return ["bytes", v.hex()]
    if t is float:
        return ["float", repr(v) if not math.isnan(v) else "nan", math.copysign(1.0, v) < 0]
    text = repr(v)
    if " object at 0x" in text:  # (a pickle's stand-in objects: their contents, not their address)
        names = getattr(v, "__dict__", None) or {n: getattr(v, n, None) for n in getattr(t, "__slots__", ())}
        return [t.__name__, [[k, canon(x, depth + 1)] for k, x in sorted(names.items())]]
    return [t.__name__, text]


def _fields(fields: Any) -> Any:
    return [[f.name, f.value_repr, f.start, f.end, _fields(f.children)] for f in fields]


def summary_form(view: Any) -> Any:
    return [view.decoder, view.summary, view.error, list(view.warnings), view.truncated, canon(view.values)]


def _digest(form: Any) -> str:
    return hashlib.sha256(json.dumps(form, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()[:10]


def detail_digest(view: Any) -> str:
    return _digest([summary_form(view), _fields(view.fields), view.text, view.can_encode, view.editable])


def info_digest(info: Any) -> str:
    if info is None:
        return "-"
    return _digest([info.opcode, info.fragment, info.final, info.compressed, info.piece.hex(),
                    None if info.message is None else info.message.hex(), info.fragments, info.wire_bytes,
                    info.note, info.accept])


# -- the varied corpus ---------------------------------------------------------------------------------------------

_STRINGS = ["", "a", "hé", "日本語", "x" * 90, "with 'quotes' and \"dq\"", "back\\slash", "tab\there", "nl\nx",
            "\x00nul", "emoji 🎮", "  spaced  ", "\u2028sep", "\x85nel"]


def payload(rng: random.Random) -> tuple[int, bytes]:
    """(opcode, payload) of a data message: mostly what games send, some of what they should not."""
    obj: Any = {"t": rng.choice(["pos", "chat", "state"]), "tick": rng.randrange(10**6),
                "x": round(rng.uniform(-1e4, 1e4), rng.randrange(4)), "name": rng.choice(_STRINGS),
                "players": [{"id": i, "x": i * 1.5, "hp": 100 - i} for i in range(rng.randrange(5))]}
    r = rng.random()
    if r < 0.3:
        text = json.dumps(obj if rng.random() < 0.8 else [obj, 1, None], ensure_ascii=rng.random() < 0.5,
                          indent=rng.choice([None, None, None, 2]))
        if rng.random() < 0.15:
            text = rng.choice([" ", "\n", "\t "]) + text
        if rng.random() < 0.15:
            text = text + rng.choice(["\n", "\n" + json.dumps([1, 2]), "  ", "\t\n{}", "\x0b", " {"])
        return 1, text.encode()
    if r < 0.35:
        return 1, rng.choice([b"{not json", b"[1, 2", b"{}", b"[]", b'{"a": 1}{"b": 2}', b"\xef\xbb\xbf{}",
                              b"[1e400]", b'{"n": ' + b"9" * 5000 + b"}", b"[" * 3000 + b"]" * 3000])
    if r < 0.5:
        return 1, rng.choice(_STRINGS).encode() + rng.choice([b"", b" hello", b"\x01ctl", b"\r\n"])
    if r < 0.55:
        return 1, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))  # mostly not UTF-8
    if r < 0.8:
        return 2, msgpack.packb(obj if rng.random() < 0.7 else [obj, rng.randrange(9), b"\x00bin", 1.5])
    if r < 0.85:
        return 2, msgpack.packb(obj) + msgpack.packb({"second": True})
    if r < 0.9:
        return 2, json.dumps(obj).encode()
    if r < 0.93:
        return 2, b""
    return 2, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))


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
            b[rng.randrange(len(b))] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0xC1, 0x81, 0x88, 0x89])
    return bytes(b)


class _Side:
    """One direction's sender: its deflate context (taken over, or fresh per message)."""

    def __init__(self, rng: random.Random, direction: Direction, takeover: bool) -> None:
        self.rng, self.mask, self.takeover = rng, direction is C2S, takeover
        self.z = zlib.compressobj(6, zlib.DEFLATED, -15)

    def frame(self, fin: bool, opcode: int, data: bytes, rsv1: bool = False) -> bytes:
        key = bytes(self.rng.randrange(256) for _ in range(4)) if self.rng.random() < 0.97 else b"\0\0\0\0"
        return build_frame(fin, opcode, data, self.mask, rsv1, key)

    def deflate(self, data: bytes) -> bytes:
        if not self.takeover:
            self.z = zlib.compressobj(6, zlib.DEFLATED, -15)
        out = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out

    def message(self, opcode: int, data: bytes, compress: bool, pieces: int) -> list[bytes]:
        body = self.deflate(data) if compress else data
        if pieces <= 1 or len(body) < 2:
            return [self.frame(True, opcode, body, compress)]
        cuts = sorted(self.rng.sample(range(1, len(body)), min(pieces - 1, len(body) - 1)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        out = []
        for i, p in enumerate(parts):
            out.append(self.frame(i == len(parts) - 1, opcode if i == 0 else 0, p, compress and i == 0))
        return out

    def control(self) -> bytes:
        r = self.rng.random()
        if r < 0.35:
            return self.frame(True, 9, self.rng.choice([b"", b"99", b"\x00\xff\x10\x80", "hé".encode()]))
        if r < 0.7:
            return self.frame(True, 10, self.rng.choice([b"", b"1234", b"\x9f\x00"]))
        code = self.rng.choice([1000, 1001, 1005, 1006, 1011, 1016, 2999, 3000, 4000, 4999, 5000, 999, 0])
        reason = self.rng.choice([b"", b"bye", "é".encode(), b"\xff\xfe", b"x" * 60])
        return self.frame(True, 8, struct.pack("!H", code) + reason if self.rng.random() < 0.9 else b"\x03")


def hostile_frames(rng: random.Random, side: _Side) -> list[bytes]:
    """A stream's worth of trouble: bad inflate data, a bomb, orphan continuations, reserved bits and opcodes."""
    out: list[bytes] = []
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    big = bomb.compress(b"\0" * (2 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    out.append(side.frame(True, 2, big[:-4], True))  # past INFLATE_MAX: the direction's context is lost
    out.append(side.frame(True, 1, side.deflate(b'{"after": "the bomb"}'), True))
    out.append(side.frame(True, 1, b'{"plain": "still shown"}'))
    out.append(side.frame(True, 0, b"orphan"))
    out.append(side.frame(False, 1, b'{"a": '))
    out.append(side.frame(True, 1, b'{"b": 2}'))  # a new message before the last ended
    out.append(side.frame(True, 0x41 & 0x0F, b"x", True))  # RSV1 on a text frame, not deflate data
    out.append(bytes([0xB1, 0x85 if side.mask else 0x05]) + (b"\1\2\3\4" if side.mask else b"") + b"rsv23")
    out.append(side.frame(False, 9, b"frag ping"))
    out.append(side.frame(True, 9, b"p" * 126))
    for _ in range(3):
        out.append(side.frame(True, 2, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))), True))
    return out


def varied_streams() -> list[tuple[int, Direction, list[bytes]]]:
    """(connection, direction, its messages in order) of the generated corpus (see the module docstring)."""
    rng = random.Random(22)
    streams: list[tuple[int, Direction, list[bytes]]] = []
    for conn, takeover in ((1, True), (2, False)):
        for d in (C2S, S2C):
            side = _Side(rng, d, takeover)
            msgs: list[bytes] = []
            for _ in range(VARIED // 4):
                r = rng.random()
                if r < 0.08:
                    msgs.append(side.control())
                    continue
                opcode, data = payload(rng)
                frames = side.message(opcode, data, rng.random() < 0.6, rng.choice([1, 1, 1, 1, 2, 3, 5]))
                if len(frames) > 1 and rng.random() < 0.3:  # a control frame between fragments (RFC 6455 5.4)
                    frames.insert(rng.randrange(1, len(frames)), side.control())
                msgs.extend(frames)
            # the engine's reads are not always one frame each: join some, cut some across two messages
            cut: list[bytes] = []
            i = 0
            while i < len(msgs):
                r = rng.random()
                if r < 0.04 and i + 1 < len(msgs):
                    cut.append(msgs[i] + msgs[i + 1])
                    i += 2
                    continue
                if r < 0.07 and len(msgs[i]) > 2:
                    at = rng.randrange(1, len(msgs[i]))
                    cut.extend((msgs[i][:at], msgs[i][at:]))
                else:
                    cut.append(msgs[i])
                i += 1
            streams.append((conn, d, cut))
    for d in (C2S, S2C):  # hostile streams, and mutated frames, each on a connection of its own
        side = _Side(rng, d, True)
        streams.append((3, d, [side.frame(True, 1, side.deflate(b'{"before": 1}'), True), *hostile_frames(rng, side),
                               side.frame(True, 3, b"reserved opcode: the tracker stops here"),
                               side.frame(True, 1, b'{"unseen": 1}')]))
        sent = [f for _, dd, fs in streams[:4] if dd is d for f in fs]
        streams.append((4, d, [mutate(rng, f) for f in rng.sample(sent, 600)]))
        wrong = _Side(rng, S2C if d is C2S else C2S, True)  # masked as the other side would: each frame a warning
        streams.append((5, d, [f for _ in range(40) for f in wrong.message(*payload(rng), rng.random() < 0.5, 1)]))
    return streams


def bench_streams(rec: dict[str, Any], mix: str) -> list[tuple[int, Direction, list[bytes]]]:
    """The bench session's messages, cut from its reads by the engine's framer as the benchmark's ``all`` does."""
    out = []
    for d, reads in ((C2S, rec["traffic"][mix]["c2s"]), (S2C, rec["traffic"][mix]["s2c"])):
        f = WebSocketFramer()
        frames: list[bytes] = []
        for r in reads:
            frames.extend(f.feed(bytes.fromhex(r)))
        assert f.fallback is None
        out.append((1, d, frames))
    return out


def hostile_streams() -> list[tuple[int, Direction, list[bytes]]]:
    out = []
    for conn, path in enumerate(sorted(HOSTILE.glob("*.bin")), 1):
        d = C2S if path.name.startswith("c2s") else S2C
        data = path.read_bytes()
        f = WebSocketFramer()
        msgs = [m for r in (data[i:i + 1000] for i in range(0, len(data), 1000)) for m in f.feed(r)]
        rest = f.flush()
        out.append((conn, d, msgs + ([rest] if rest else [])))
    return out


# -- decoding as the window does ---------------------------------------------------------------------------------


def decoded(streams: list[tuple[int, Direction, list[bytes]]], tracked: bool = True,
            framed: bool = True) -> dict[str, Any]:
    """Per message: its summary, the digest of its summary form, of its detail view, of its summary form decoded
    again, of its summary under a deadline, and of what the tracker keeps of it; and the tracker's work."""
    reg = DecoderRegistry(builtin_decoders())
    ws = reg["websocket"]
    assert isinstance(ws, WebSocketDecoder)
    tracker = ws.tracker = StreamTracker()
    owner = object()
    msgs: list[Message] = []
    for conn, d, datas in streams:
        if framed:
            reg.set_framing("websocket", conn, d)
        feed = tracker.feeder(owner, conn, d) if tracked else None
        for i, data in enumerate(datas):
            m = Message(len(msgs), conn, d, i, data, 0, 0)
            msgs.append(m)
            if feed is not None:
                feed(m)
    first = [reg.decode_message(m, detail=False) for m in msgs]
    details = [detail_digest(reg.decode_message(m, detail=True)) for m in msgs]
    again = [_digest(summary_form(reg.decode_message(m, detail=False))) for m in msgs]
    late = [_digest(summary_form(reg.decode_message(m, detail=False, deadline_ns=1 << 62))) for m in msgs[::7]]
    infos = [info_digest(tracker.lookup(m.data, m.conn_id, m.direction)) for m in msgs]
    return {"summary": [v.summary for v in first], "form": [_digest(summary_form(v)) for v in first],
            "detail": details, "again": again, "late": late, "info": infos, "work": tracker.work}


def views(rec: dict[str, Any], mix: str) -> dict[str, Any]:
    if mix in ("deflate", "plain"):
        return decoded(bench_streams(rec, mix))
    if mix == "varied":
        return decoded(varied_streams())
    if mix == "untracked":
        streams = varied_streams()
        out = decoded(streams, tracked=False)
        alone = decoded(streams, tracked=False, framed=False)
        return {k: out[k] + alone[k] if isinstance(out[k], list) else out[k] for k in out}
    return decoded(hostile_streams())


MIXES = ["deflate", "plain", "varied", "untracked", "hostile"]


def _load() -> dict[str, Any]:
    with gzip.open(RECORDING, "rt", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mix", MIXES)
def test_decodes_as_recorded(mix: str) -> None:
    rec = _load()
    got = views(rec, mix)
    want = rec["views"][mix]
    assert len(got["summary"]) == len(want["summary"])
    for i, w in enumerate(want["summary"]):
        assert got["summary"][i] == w, f"{mix} message {i}"
    for label, key, wkey in (("summary view", "form", "form"), ("summary view decoded again", "again", "form"),
                             ("detail view", "detail", "detail"), ("what the tracker keeps", "info", "info")):
        for i, w in enumerate(want[wkey]):
            assert got[key][i] == w, f"{mix} message {i}: {label} differs (summary {want['summary'][i]!r})"
    assert got["late"] == want["late"]
    assert got["work"] == want["work"]


def test_the_recording_covers_what_matters() -> None:
    """The recording exercises what the benchmark measures and what hostile streams do."""
    v = _load()["views"]
    deflate, plain, varied, untracked = (v[m]["summary"] for m in ("deflate", "plain", "varied", "untracked"))
    assert sum(s.startswith("text (deflate ") for s in deflate) > 500
    assert sum(s.startswith("binary (deflate ") and " msgpack {" in s for s in deflate) > 150
    assert sum(s.startswith("text {") for s in plain) > 500
    assert sum(s.startswith("binary msgpack {") for s in plain) > 150
    assert any(s.startswith("ping ") for s in deflate) and any(s.startswith("pong ") for s in plain)
    for words in ("-frame message)", "fragment 1, continues", "(deflate ", "binary msgpack", "binary (deflate",
                  "close 1000", "ping ", "binary hex", "text (empty)", "binary (empty)"):
        assert any(words in s for s in varied), words
    assert sum(" hex " in s for s in varied) > 100
    assert any("does not inflate alone" in str(x) for x in untracked) or any("(deflate" in s for s in untracked)


def record(traffic: bool) -> None:
    rec: dict[str, Any] = {"traffic": {}, "views": {}}
    if traffic or not RECORDING.exists():
        sys.path.insert(0, str(Path(__file__).parent / "bench"))
        import bench_websocket

        for mix, deflate in (("deflate", True), ("plain", False)):
            c2s, s2c = bench_websocket.session(deflate, TICKS)
            rec["traffic"][mix] = {"c2s": [b.hex() for b in c2s], "s2c": [b.hex() for b in s2c]}
    else:
        rec["traffic"] = _load()["traffic"]
    for mix in MIXES:
        rec["views"][mix] = got = views(rec, mix)
        del got["again"]
    with gzip.open(RECORDING, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(rec, f, ensure_ascii=False, separators=(",", ":"))


if __name__ == "__main__":
    if "--record" in sys.argv:
        record("--traffic" in sys.argv)

"""Framing inference (proxy.inference) and the stall bound, from pure reads to real sockets through a real proxy.

Pure: a table of wire styles (each read one send, as a lock-step game's reads are), hypothesis properties (any
reads end in a decision within the bounds, and a decided framing frames the watched bytes exactly), game-like
binary records never taken for msgpack or text, the per-target memory. Sockets: a wrong explicit framing
(``lines`` on a length-prefixed game, ``len16`` on the Real Python format) and a wrong inference each cost one
stall per direction at most, and every game finishes with its bytes unchanged.
"""

from __future__ import annotations

import json
import pickle
import random
import socket
import struct
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.framing import frames_exactly, make_framer
from proxy.inference import INFER_BYTES, INFER_READS, AutoFramer, FramingMemory, Hint, Inference, describe
from proxy.model import Direction, FramingInferred, Message, Notice
from tests.conftest import IO_TIMEOUT, Recorder, connect, recv_exact
from tests.games.harness import run_game

# ------------------------------------------------------------------------------------------------ pure


def js(obj: object) -> bytes:
    return json.dumps(obj).encode()


def rp(body: bytes) -> bytes:
    header = js({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8",
                 "content-length": len(body)})
    return struct.pack(">H", len(header)) + header + body


MSGS = [{"type": "move", "x": i, "y": i * 2, "name": f"p{i}", "keys": ["w"] * (i % 3)} for i in range(12)]


def split_each(reads: list[bytes], parts: int) -> list[bytes]:
    """Each read cut into ``parts`` pieces (the last takes the rest)."""
    out = []
    for r in reads:
        step = max(1, len(r) // parts)
        out += [r[i * step:(i + 1) * step] for i in range(parts - 1)] + [r[(parts - 1) * step:]]
    return out


STYLES: dict[str, tuple[list[bytes], str, int]] = {
    # name: (reads, expected framing, most reads it may take)
    "raw text": ([f"hello from player {i}, how are you".encode() for i in range(12)], "raw", 3),
    "identical text": ([b"ping"] * 12, "raw", 3),
    "text sharing an ending": ([f"score: {i * 7} points!".encode() for i in range(12)], "raw", 3),
    "ndjson": ([js(m) + b"\n" for m in MSGS], "lines", 2),
    "crlf text": ([f"MOVE {i} {i + 1}\r\n".encode() for i in range(12)], "delim:\\r\\n", 2),
    "nul-terminated json": ([js(m) + b"\x00" for m in MSGS], "delim:\\x00", 2),
    "json + EOT\\0": ([js(m) + b"EOT\x00" for m in MSGS], "delim:EOT\\x00", 2),
    "json + <END>": ([js(m) + b"<END>" for m in MSGS], "delim:<END>", 2),
    "pickle + <END>": ([pickle.dumps(m) + b"<END>" for m in MSGS], "delim:<END>", 2),
    "json + \\x04": ([js(m) + b"\x04" for m in MSGS], "delim:\\x04", 2),
    "len8": ([struct.pack("B", len(js(m))) + js(m) for m in MSGS], "len8", 2),
    "len16be": ([struct.pack("!H", len(js(m))) + js(m) for m in MSGS], "len16be", 2),
    "len16le": ([struct.pack("<H", len(js(m))) + js(m) for m in MSGS], "len16le", 2),
    "len32be": ([struct.pack("!I", len(js(m))) + js(m) for m in MSGS], "len32be", 2),
    "len32le": ([struct.pack("<I", len(js(m))) + js(m) for m in MSGS], "len32le", 2),
    "len64be": ([struct.pack("!Q", len(js(m))) + js(m) for m in MSGS], "len64be", 2),
    "len32be counting itself": ([struct.pack("!I", len(js(m)) + 4) + js(m) for m in MSGS], "len32be-incl", 2),
    "len16be, prefix and payload sent apart": (split_each([struct.pack("!H", len(js(m))) + js(m) for m in MSGS], 2),
                                               "len16be", 4),
    "real python": ([rp(js({"action": "search", "value": f"v{i}"})) for i in range(12)], "header16json", 1),
    "real python, header and body sent apart": (
        [p for i in range(12) for p in (rp(js({"value": i}))[:-len(js({"value": i}))], js({"value": i}))],
        "header16json", 2),
    "json stream": ([js(m) for m in MSGS], "json", 2),
    "pretty json": ([json.dumps(m, indent=2).encode() + b"\n" for m in MSGS], "json", 2),
    "msgpack stream": ([msgpack.packb(m) for m in MSGS], "msgpack", 2),
    "struct 12": ([struct.pack("<BBHff", 1, i % 4, i, 0.25 * i, -1.5) for i in range(12)], "fixed:12", 3),
    "struct 40": ([struct.pack("<HHffff16sI", i, 100 - i, i * 1.5, 2.0, 0.5, 3.0, b"hero", i) for i in range(12)],
                  "fixed:40", 3),
    "pickle": ([pickle.dumps({"x": i, "y": [1, 2, i], "name": "bob" * (i % 3)}) for i in range(12)], "raw", 3),
    "pickle of one size": ([pickle.dumps({"x": i, "y": i}) for i in range(12)], "raw", 3),
    "three lines per read": ([b"a\nbb\nccc\n", b"dd\n", b"e\nf\n"], "lines", 1),
    "three len16 per read": ([b"".join(struct.pack("!H", len(js(m))) + js(m) for m in MSGS[i:i + 3])
                              for i in range(0, 12, 3)], "len16be", 2),
    "lines split in three": (split_each([js(m) + b"\n" for m in MSGS], 3), "lines", 6),
    "msgpack small ints": ([msgpack.packb(i) for i in range(12)], "raw", 3),
    "random binary": ([random.Random(i).randbytes(5 + i * 13) for i in range(12)], "raw", 3),
}


def infer(reads: list[bytes], hint: Hint | None = None) -> tuple[int, str, str]:
    inf = Inference(hint)
    for i, r in enumerate(reads):
        d = inf.observe(r)
        if d is not None:
            return i + 1, d.framing, d.reason
    return len(reads) + 1, "", ""


@pytest.mark.parametrize("style", sorted(STYLES))
def test_each_style_is_inferred(style: str) -> None:
    reads, expected, most = STYLES[style]
    n, framing, reason = infer(reads)
    assert framing == expected, reason
    assert n <= most, f"took {n} reads: {reason}"
    assert reason.startswith(describe(framing).split(" (")[0]) or framing == "raw", reason


@pytest.mark.parametrize("style", sorted(s for s in STYLES if STYLES[s][1] != "raw"))
def test_the_decided_framing_frames_what_was_watched_and_what_follows(style: str) -> None:
    """Decisions fall on a message boundary: the watched reads are whole messages, and so is the rest."""
    reads = STYLES[style][0]
    inf = Inference()
    for i, r in enumerate(reads):
        d = inf.observe(r)
        if d is not None:
            watched = b"".join(reads[:i + 1])
            assert d.watched == len(watched) and d.reads == i + 1
            assert frames_exactly(d.framing, watched) >= d.messages > 0
            rest = b"".join(reads[i + 1:])
            assert not rest or frames_exactly(d.framing, rest) > 0
            return
    raise AssertionError("no decision")


def test_raw_text_is_decided_raw_after_three_reads_with_a_reason() -> None:
    n, framing, reason = infer([b"hello", b"world", b"again"])
    assert (n, framing) == (3, "raw")
    assert reason == "no framing fits the first 3 reads: each read is a message (raw)"


def test_reason_counts_the_evidence() -> None:
    reads = [struct.pack("!H", len(js(m))) + js(m) for m in MSGS[:3]]
    inf = Inference()
    d = inf.observe(b"".join(reads))
    assert d is not None and d.reason == "2-byte big-endian length prefix: 3 of 3 messages fit (1 read)"


@settings(max_examples=200, deadline=2000)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=40))
def test_any_reads_end_in_a_decision_within_the_bounds(reads: list[bytes]) -> None:
    inf = Inference()
    seen = 0
    for i, r in enumerate(reads):
        seen += len(r)
        d = inf.observe(r)
        if d is not None:
            assert d.reads == i + 1 <= INFER_READS
            if d.framing != "raw":
                assert frames_exactly(d.framing, b"".join(reads[:i + 1])) > 0
            return
        assert len(inf.window) <= INFER_BYTES
    assert len(reads) < INFER_READS and seen <= INFER_BYTES


def test_a_huge_first_read_is_raw_and_nothing_is_kept() -> None:
    inf = Inference()
    d = inf.observe(b"\x00\x00\x00\x10" + b"x" * (INFER_BYTES + 10))
    assert d is not None and d.framing == "raw" and "64 KiB" in d.reason
    assert len(inf.window) == 0


def test_game_like_binary_records_are_fixed_records_never_msgpack_or_text() -> None:
    """Structs of random layouts and values, one record per read: what the issue saw decode as msgpack nonsense."""
    rng = random.Random(20)
    outcomes: dict[str, int] = {}
    for _ in range(300):
        layout = "<" + "".join(rng.choice("BHIhifd?") for _ in range(rng.randrange(2, 9)))
        size = struct.calcsize(layout)

        def value(code: str) -> object:
            if code in "fd":
                return rng.uniform(-1000, 1000) if rng.random() < 0.7 else float(rng.randrange(-5, 5))
            if code == "?":
                return rng.random() < 0.5
            bits = struct.calcsize(code) * 8
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)
            return max(lo, min(hi, int(rng.expovariate(1 / 50)) * (1 if code.isupper() or rng.random() < 0.8 else -1)))

        reads = [struct.pack(layout, *(value(c) for c in layout[1:])) for _ in range(12)]
        _, framing, _ = infer(reads)
        kind = "fixed" if framing == f"fixed:{size}" else framing
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes.get("fixed", 0) >= 285, outcomes
    assert not {"msgpack", "json", "lines"} & set(outcomes), outcomes


def test_auto_framer_never_holds_a_byte_while_inferring() -> None:
    f = AutoFramer()
    reads = [js(m) + b"\n" for m in MSGS[:4]]
    assert f.feed(reads[0][:5]) == [reads[0][:5]] and f.buffered == 0  # half a line goes on at once
    assert f.feed(reads[0][5:]) == [reads[0][5:]] and f.decision is None
    assert f.feed(reads[1]) == [reads[1]] and f.decision is not None and f.decision.framing == "lines"
    assert f.feed(reads[2] + reads[3][:3]) == [reads[2]] and f.buffered == 3  # now framed
    assert f.flush() == reads[3][:3]


def test_a_confirmed_hint_decides_on_the_first_message_and_is_still_checked() -> None:
    line = js(MSGS[0]) + b"\n"
    inf = Inference(Hint("lines", 0, True))
    d = inf.observe(line)
    assert d is not None and d.framing == "lines" and d.remembered and d.reason.startswith("as on earlier")
    # a hint the bytes do not fit is ignored
    n, framing, _ = infer([struct.pack("!H", 20) + b"x" * 20] * 3, Hint("lines", 0, True))
    assert (n, framing) == (2, "len16be")
    # hints for framings inference does not scan for by itself work too
    inf = Inference(Hint("fixed:7", 0, True))
    assert inf.observe(b"abcdefg") is None  # a record size needs two reads (see the next test)
    d = inf.observe(b"hijklmn")
    assert d is not None and d.framing == "fixed:7"
    d = Inference(Hint("delim:||", 0, True)).observe(b"a b||")
    assert d is not None and d.framing == "delim:||"


def test_a_remembered_record_size_needs_two_reads_and_a_hello_of_that_size_holds_nothing() -> None:
    """A record size is weak evidence: any read of 20 bytes "fits" fixed:20. A connection that starts with a 20-byte
    hello then sends 64-byte messages (proxybench's concurrent workload after a connection of 20-byte records) may
    not be framed fixed:20 on the strength of the hello: its second read would wait 250 ms for a record's rest."""
    hello = b"PBv1" + bytes(range(16))
    msgs = [bytes([i]) * 64 for i in range(6)]
    f = AutoFramer(hint=Hint("fixed:20", 0, True))
    for read in [hello, *msgs]:
        assert f.feed(read) == [read] and f.buffered == 0  # every read goes on whole, at once
    assert f.decision is None or f.decision.framing != "fixed:20"
    # records of the remembered size still decide on the second read
    f = AutoFramer(hint=Hint("fixed:20", 0, True))
    assert f.feed(hello) == [hello] and f.decision is None
    assert f.feed(hello[::-1]) == [hello[::-1]] and f.decision is not None and f.decision.framing == "fixed:20"


def test_random_binary_pings_on_hundreds_of_connections_are_never_framed_or_held() -> None:
    """proxybench's concurrent workload, as inference sees it: 400 directions, each a 20-byte hello then 64-byte
    pings of random bytes (a per-connection pattern with a counter in front), one read each. Coincidences happen at
    this scale (a 1-byte "length" that ends where a read does): none may become a framing that holds bytes."""
    mem = FramingMemory()
    target = ("127.0.0.1", 9)
    held = framed = slow = 0
    for j in range(-2, 400):  # -2, -1: the harness's probe, a hello and its answer only
        direction = Direction.C2S if j % 2 else Direction.S2C
        f = AutoFramer(hint=mem.hint(target, direction))
        msg = bytearray(random.Random(j).randbytes(64))
        reads = [b"PXBN" + b"E" + bytes(3) + bytes(12)] if direction is Direction.C2S else [b"K"]
        for i in range(12 if j >= 0 else 0):
            struct.pack_into("!II", msg, 0, 0x9E3779B9 * (j // 2 + 1) & 0xFFFFFFFF, i)
            reads.append(bytes(msg))
        for read in reads:
            watching = f.inference is not None
            out = f.feed(read)
            if watching and f.decision is not None:  # what the relay does (Relay._after_framing)
                mem.confirm(target, direction, f.decision.framing)
            elif f.inference is not None and (evidence := f.inference.best_evidence()) is not None:
                mem.observe(target, direction, j, *evidence)
            held += f.buffered > 0 or b"".join(out) != read
        framed += f.decision is not None and f.decision.framing != "raw"
        slow += j >= 0 and (f.decision is None or f.decision.reads > 3)  # inferring costs more than framing
    assert (held, framed, slow) == (0, 0, 0)


def test_a_one_byte_length_needs_frames_that_end_where_reads_do_twice() -> None:
    """Two reads of binary noise whose first byte happens to "declare" the rest: one coincidence is not a framing.
    A real 1-byte-length game is still found on its next read."""
    rng = random.Random(7)
    body = rng.randbytes(70)
    reads = [bytes([3]) + b"\x91\xfe\x07" + bytes([69]) + body[:30], body[30:69]]
    inf = Inference()
    assert all(inf.observe(r) is None for r in reads) or inf.reads < 2
    assert not any(c.fits(inf.reads) for c in inf._cands if c.name == "len8")
    game = [bytes([len(p)]) + p for p in (b"hello there", b"move 3 4", b"fire!")]
    n, framing, _ = infer(game)
    assert framing == "len8" and n <= 3


def test_a_direction_still_inferring_holds_a_few_kib() -> None:
    """2,000 connections that each sent one line are 4,000 directions still inferring: at 47 KiB each (a msgpack
    unpacker allocated for text, with a 1 MiB first buffer) the proxy passed 200 MB. Text costs no unpacker."""
    import tracemalloc

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        framers = [AutoFramer() for _ in range(200)]
        for f in framers:
            f.feed(b"hello\n")
        per = (tracemalloc.get_traced_memory()[0] - base) / len(framers)
    finally:
        tracemalloc.stop()
    assert per < 8 << 10, f"{per:.0f} bytes per inferring direction"


def test_memory_keeps_evidence_of_short_connections_then_the_decision() -> None:
    mem = FramingMemory()
    target = ("127.0.0.1", 5555)
    assert mem.hint(target, Direction.C2S) is None
    mem.observe(target, Direction.C2S, 1, "lines", 1)
    mem.observe(target, Direction.C2S, 1, "lines", 1)  # the same connection again: not counted twice
    assert mem.hint(target, Direction.C2S) == Hint("lines", 1, False)
    mem.observe(target, Direction.C2S, 2, "lines", 1)
    assert mem.hint(target, Direction.C2S) == Hint("lines", 2, False)
    mem.observe(target, Direction.C2S, 3, "json", 1)  # weaker evidence for something else: kept out
    assert mem.hint(target, Direction.C2S) == Hint("lines", 2, False)
    # one message of a connection per request plus the hint is enough
    inf = Inference(mem.hint(target, Direction.C2S))
    d = inf.observe(js(MSGS[0]) + b"\n")
    assert d is not None and d.framing == "lines" and d.remembered
    mem.confirm(target, Direction.C2S, "lines")
    assert mem.hint(target, Direction.C2S) == Hint("lines", 0, True)
    assert mem.hint(target, Direction.S2C) is None
    mem.forget(target, Direction.C2S, "json")
    assert mem.hint(target, Direction.C2S) is not None
    mem.forget(target, Direction.C2S, "lines")
    assert mem.hint(target, Direction.C2S) is None
    for port in range(FramingMemory.MAX_ENTRIES + 50):
        mem.confirm(("h", port), Direction.C2S, "lines")
    assert len(mem._confirmed) == FramingMemory.MAX_ENTRIES


def test_inference_work_is_bounded_by_what_it_watches() -> None:
    """The window holds at most INFER_BYTES; a stream of tiny reads is decided within INFER_READS."""
    inf = Inference()
    decided = None
    for i in range(INFER_READS + 5):
        decided = inf.observe(bytes([0x90 + i % 7]) * 3)
        if decided is not None:
            break
    assert decided is not None and decided.reads <= INFER_READS


# ------------------------------------------------------------------------------------------------ sockets


def _notices(r: object, needle: str) -> list[str]:
    return [w for w in r.warnings if needle in w]  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_lines_on_a_length_prefixed_game_stalls_once_per_direction_then_flows() -> None:
    """The issue's example: ``--framing lines`` held every message of a len16 game until it closed."""
    r = run_game("len16_json", n=10, via="cli", framing="lines")
    assert r.error is None and r.unchanged and r.records_exact
    stalls = [c for c in r.changes if c[2] == "stall"]
    assert sorted(stalls) == [("c2s", "raw", "stall"), ("s2c", "raw", "stall")]  # one 250 ms wait each way
    assert len(_notices(r, "so they were forwarded as they are")) == 2
    assert all("until a read fits lines exactly again" in w for w in r.warnings)


@pytest.mark.timeout(60)
def test_len16_on_the_real_python_format_stalls_once_per_direction_then_flows() -> None:
    """The issue's other example: len16 read body bytes as a 31,522-byte length and held the game for 15 s."""
    r = run_game("realpython", n=10, via="cli", framing="len16")
    assert r.error is None and r.unchanged and r.records_exact
    assert sorted(c for c in r.changes if c[2] == "stall") == [("c2s", "raw", "stall"), ("s2c", "raw", "stall")]
    assert len(_notices(r, "for the rest of a len16be frame, so they were forwarded as they are")) == 2
    assert not [c for c in r.changes if c[2] == "resync"]  # its reads never fit len16be: raw, never held again


@pytest.mark.timeout(60)
def test_the_named_framings_frame_their_games() -> None:
    for name, framing in (("realpython", "header16json"), ("json_eot", "delim:EOT\\x00"),
                          ("mixed_directions", "c2s=lines,s2c=len16")):
        r = run_game(name, n=6, via="thread", framing=framing)
        assert r.error is None and r.unchanged and r.records_exact and r.warnings == [], (name, r.warnings)
        assert r.changes == []


def _chat_then_binary_server(listener: socket.socket, done: threading.Event, errors: list[BaseException]) -> None:
    try:
        conn, _ = listener.accept()
        with conn:
            f = conn.makefile("rb")
            for _ in range(3):
                conn.sendall(b"ok " + f.readline())
            for i in range(4):
                (n,) = struct.unpack("!H", recv_exact(conn, 2))
                body = recv_exact(conn, n)
                conn.sendall(struct.pack("!H", n) + body.upper() + b"" * i)
    except BaseException as e:
        errors.append(e)
    finally:
        listener.close()
        done.set()


@pytest.mark.timeout(60)
def test_a_wrong_inference_stalls_once_then_is_inferred_again(start_proxy: object, recorder: Recorder) -> None:
    """A program that chats in lines, then switches to length-prefixed binary: the first inference (lines) holds
    the first binary message; 250 ms later it goes on as it is and inference starts again, and finds len16be."""
    from proxy.framing import parse_framing

    listener = socket.create_server(("127.0.0.1", 0))
    done, errors = threading.Event(), []  # type: ignore[var-annotated]
    threading.Thread(target=_chat_then_binary_server, args=(listener, done, errors), daemon=True).start()
    proxy = start_proxy(listener.getsockname()[1], parse_framing("auto"))  # type: ignore[operator]
    with connect(proxy.port) as c:
        f = c.makefile("rb")
        for i in range(3):
            c.sendall(f"hello {i}\n".encode())
            assert f.readline() == f"ok hello {i}\n".encode()
        for i in range(4):
            body = f"binary message {i}".encode()
            c.sendall(struct.pack("!H", len(body)) + body)
            assert f.read(2 + len(body)) == struct.pack("!H", len(body)) + body.upper()
    assert done.wait(IO_TIMEOUT) and not errors
    recorder.wait_for(lambda r: isinstance(r, FramingInferred) and r.direction is Direction.C2S
                      and r.framing == "len16be")
    c2s = [(r.framing, r.cause) for r in recorder.of(FramingInferred) if r.direction is Direction.C2S]
    assert c2s == [("lines", "inferred"), ("auto", "stall"), ("len16be", "inferred")]
    warned = [n for n in recorder.of(Notice) if n.direction is Direction.C2S]
    assert len(warned) == 1 and "sockscope infers the framing again" in warned[0].text


def test_make_framer_auto_is_an_auto_framer() -> None:
    assert isinstance(make_framer("auto"), AutoFramer)


@pytest.mark.parametrize("unit", [b"\x00", b"\n", b"a\n", b"[", b'{"a":', b"1", b"\x92\x01\x02", b"\x00\x01x", b"\xc0"])
def test_dense_hostile_reads_stop_every_candidate_early(unit: bytes) -> None:
    """Reads made of one tiny unit would give thousands of one-byte messages: each candidate stops scanning once
    it cannot fit (a deterministic bound on the Python steps spent; the raw decision follows after 3 reads)."""
    from proxy.inference import _STREAM_SLICE, MAX_FRAMES

    inf = Inference()
    d = None
    for _ in range(3):
        d = inf.observe(unit * (4096 // len(unit)))
    assert d is not None and d.framing == "raw"
    assert all(c.frames <= MAX_FRAMES + _STREAM_SLICE for c in inf._cands)
    assert sum(c.alive for c in inf._cands) <= 16


def test_a_hello_of_another_size_is_not_a_tiny_record_size() -> None:
    """A 20-byte hello then 64-byte messages: their gcd (4) is no message's size, so no fixed:4 nonsense."""
    rng = random.Random(6)
    _, framing, _ = infer([rng.randbytes(20)] + [rng.randbytes(64) for _ in range(6)])
    assert framing == "raw"
    _, framing, _ = infer([struct.pack("<iff", 1, 2.5, 3.5) * 3, struct.pack("<iff", 2, 0.5, 1.5)] * 2)
    assert framing == "fixed:12"  # several records in a read, then one: the size shows


def test_equal_bulk_reads_are_not_fixed_records() -> None:
    """A bulk transfer read a buffer at a time has reads of one size; records are small (FIXED_MAX)."""
    rng = random.Random(5)
    _, framing, _ = infer([rng.randbytes(4096) for _ in range(5)])
    assert framing == "raw"


@pytest.mark.timeout(30)
def test_a_live_connection_takes_the_users_framing(start_proxy: object, recorder: Recorder,
                                                   echo_server: object) -> None:
    from proxy.framing import FramingError, parse_framing

    proxy = start_proxy(echo_server.port, parse_framing("raw"))  # type: ignore[attr-defined,operator]
    with connect(proxy.port) as c:
        c.sendall(b"one\n")
        assert recv_exact(c, 4) == b"one\n"
        conn = recorder.wait_for(lambda r: isinstance(r, FramingInferred) or getattr(r, "conn_id", 0) > 0).conn_id
        with pytest.raises(FramingError):
            proxy.call(proxy.server.set_connection_framing, conn, "bogus")
        proxy.call(proxy.server.set_connection_framing, conn, "lines", Direction.C2S)
        recorder.wait_for(lambda r: isinstance(r, FramingInferred) and r.cause == "user")
        c.sendall(b"two\nthr")
        c.sendall(b"ee\n")
        assert recv_exact(c, 10) == b"two\nthree\n"
    recorder.wait_for(lambda r: type(r).__name__ == "ConnectionClosed")
    c2s = [m.data for m in recorder.of(Message) if m.direction is Direction.C2S]
    assert c2s[-2:] == [b"two\n", b"three\n"]

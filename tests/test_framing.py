"""Framers tested whole, one byte at a time, with trailing bytes, and by hypothesis round-trips.

The invariant for every framer: the concatenation of every frame returned plus ``flush()`` equals the input,
however the input is split. Framing never changes bytes.
"""

from __future__ import annotations

import json
import random
import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.framing import (
    RESYNC_CHECK_MAX,
    FramingError,
    FramingSpec,
    ResyncFramer,
    delimiter_name,
    frames_exactly,
    header_body_length,
    make_framer,
    normalise_name,
    parse_delimiter,
    parse_framing,
)
from proxy.model import Direction

ALL = ["raw", "lines", "len16be", "len16le", "len32be", "len32le", "fixed:5", "msgpack", "json", "auto", "len8",
       "len64be", "len16le-incl", "len32be-incl", "delim:EOT\\x00", "delim:\\r\\n", "header16json"]


def feed_all(name: str, chunks: list[bytes], max_frame: int = 1 << 20) -> tuple[list[bytes], bytes, str | None]:
    f = make_framer(name, max_frame)
    frames: list[bytes] = []
    for c in chunks:
        frames.extend(f.feed(c))
    return frames, f.flush(), f.fallback


def one_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def lp(payload: bytes, fmt: str, incl: bool = False) -> bytes:
    return struct.pack(fmt, len(payload) + (struct.calcsize(fmt) if incl else 0)) + payload


def rp(body: bytes, **extra: object) -> bytes:
    """A message in the Real Python socket tutorial's format: >H header length, JSON header, body."""
    header = json.dumps({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8",
                         "content-length": len(body), **extra}).encode()
    return struct.pack(">H", len(header)) + header + body


SAMPLES: dict[str, list[bytes]] = {
    "lines": [b"hello\n", b"\n", b"Ping received! \xf0\x9f\x93\xa5\n", b"x" * 300 + b"\n"],
    "len16be": [lp(b"abc", "!H"), lp(b"", "!H"), lp(b"\x00" * 1000, "!H")],
    "len16le": [lp(b"abc", "<H"), lp(b"z" * 513, "<H")],
    "len32be": [lp(b'{"type":"ping"}', "!I"), lp(b"", "!I"), lp(b"y" * 70000, "!I")],
    "len32le": [lp(b"\x01\x02", "<I"), lp(b"q" * 9, "<I")],
    "fixed:5": [b"abcde", b"\x00\x00\x00\x00\x00", b"12345"],
    "msgpack": [msgpack.packb({"x": 1.5, "y": -2, "name": "p1"}), msgpack.packb([1, 2, 3]), msgpack.packb(None),
                msgpack.packb(b"\x00" * 40000), msgpack.packb({1: "a", 2: [b"b", {"c": True}]}),
                msgpack.packb(msgpack.ExtType(5, b"abc"))],
    "json": [b'{"type": "ping", "id": 1}\n', b'[1, "a]", {"b": "}"}]', b'"str\\"ing"', b"12.5 ", b"true ",
             b"null\n", b'{"nested": {"a": [[], {}]}}\r\n'],
    "len8": [lp(b"abc", "!B"), lp(b"", "!B"), lp(b"\xff" * 255, "!B")],
    "len64le": [lp(b"hello", "<Q"), lp(b"", "<Q"), lp(b"z" * 70000, "<Q")],
    "len16be-incl": [lp(b"abc", "!H", True), lp(b"", "!H", True), lp(b"q" * 600, "!H", True)],
    "len32le-incl": [lp(b"{}", "<I", True), lp(b"w" * 5000, "<I", True)],
    "delim:EOT\\x00": [b'{"a": 1}EOT\x00', b"EOT\x00", b"E\x00OT EO\x00EOT\x00", b"x" * 300 + b"EOT\x00"],
    "delim:\\r\\n": [b"HELLO\r\n", b"\r\n", b"a\rb\nc\r\n"],
    "delim:<END>": [b"\x80\x04\x95.<END>", b"<EN<END>"],
    "header16json": [rp(b'{"action": "search", "value": "morpheus"}'), rp(b""), rp(b"\x00\x01binary" * 500),
                     rp(b"x", **{"content-length": 1, "nested": {"a": [1, 2]}})],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("split", ["whole", "one_byte"])
def test_valid_stream_frames_exactly(name: str, split: str) -> None:
    frames_in = SAMPLES[name]
    data = b"".join(frames_in)
    chunks = [data] if split == "whole" else one_byte(data)
    frames, rest, fallback = feed_all(name, chunks)
    assert fallback is None
    assert rest == b""
    if name == "json":
        # whitespace after a value belongs to it; a split stream may pass trailing whitespace separately
        assert b"".join(frames) == data
        values = [json.loads(f) for f in frames if f.strip()]
        assert values == [json.loads(f) for f in frames_in]
    else:
        assert frames == frames_in


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_trailing_partial_frame_is_held_then_flushed(name: str) -> None:
    frames_in = SAMPLES[name]
    data = b"".join(frames_in)
    tail = {"lines": b"no newline", "json": b'{"open": [1, 2', "msgpack": msgpack.packb("abcdef")[:-2],
            "fixed:5": b"abc", "delim:EOT\\x00": b"EOT"}.get(
                name, frames_in[0][:-1] if len(frames_in[0]) > 1 else b"\x00")
    frames, rest, fallback = feed_all(name, [data + tail])
    assert fallback is None
    assert b"".join(frames) == data
    assert rest == tail


def test_raw_each_read_is_a_message() -> None:
    frames, rest, _ = feed_all("raw", [b"ab", b"", b"cde"])
    assert frames == [b"ab", b"cde"]
    assert rest == b""


def test_lines_scan_is_linear_state() -> None:
    f = make_framer("lines")
    assert f.feed(b"abc") == []
    assert f.feed(b"def") == []
    assert f.buffered == 6
    assert f.feed(b"\nxy\n") == [b"abcdef\n", b"xy\n"]


def test_json_whitespace_alone_is_not_held_back() -> None:
    f = make_framer("json")
    assert f.feed(b'{"a":1}') == [b'{"a":1}']
    assert f.feed(b"\n") == [b"\n"]  # a peer waiting for the newline must get it now


def test_json_number_needs_a_terminator() -> None:
    f = make_framer("json")
    assert f.feed(b"12") == []
    assert f.feed(b"3 ") == [b"123 "]


@pytest.mark.parametrize("name,garbage", [("json", b"hello world"), ("json", b'{"a": nope}'),
                                          ("msgpack", b"\xc1\x00\x01")])
def test_invalid_stream_falls_back_to_raw_losing_nothing(name: str, garbage: bytes) -> None:
    good = SAMPLES[name][0]
    frames, rest, fallback = feed_all(name, [good, garbage, b"more"])
    assert fallback is not None and "raw" in fallback
    assert b"".join(frames) + rest == good + garbage + b"more"
    assert frames[0] == good


@pytest.mark.parametrize("name", ["len16be", "len32be", "lines", "msgpack", "json"])
def test_frame_over_cap_falls_back_without_buffering_it(name: str) -> None:
    cap = 64
    if name == "len16be":
        data = lp(b"x" * 100, "!H")
    elif name == "len32be":
        data = lp(b"x" * 100, "!I")
    elif name == "msgpack":
        data = msgpack.packb(b"x" * 100)
    elif name == "json":
        data = json.dumps("x" * 100).encode()
    else:
        data = b"x" * 100 + b"\n"
    f = make_framer(name, cap)
    out = []
    for c in one_byte(data):
        out.extend(f.feed(c))
    assert f.fallback is not None and "cap" in f.fallback
    assert b"".join(out) + f.flush() == data
    # the length-prefixed framers know at once: they never buffer beyond the header
    if name.startswith("len"):
        assert f.buffered == 0


def test_len32_fake_4gb_header_falls_back_immediately() -> None:
    f = make_framer("len32be")
    out = f.feed(b"\xff\xff\xff\xffabc")
    assert f.fallback is not None
    assert out == [b"\xff\xff\xff\xffabc"]


@given(st.sampled_from(ALL), st.binary(max_size=3000), st.lists(st.integers(1, 300), max_size=40))
def test_any_bytes_any_split_round_trip(name: str, data: bytes, cuts: list[int]) -> None:
    chunks, i = [], 0
    for c in cuts:
        chunks.append(data[i : i + c])
        i += c
    chunks.append(data[i:])
    frames, rest, _ = feed_all(name, chunks, max_frame=1024)
    assert b"".join(frames) + rest == data
    assert all(frames)


@given(st.lists(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text(max_size=20)
                             | st.binary(max_size=20),
                             lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids,
                                                                                       max_size=4),
                             max_leaves=10), max_size=8),
       st.integers(1, 50))
def test_msgpack_objects_are_framed_one_each(objs: list[object], step: int) -> None:
    packed = [msgpack.packb(o) for o in objs]
    data = b"".join(packed)
    frames, rest, fallback = feed_all("msgpack", [data[i : i + step] for i in range(0, len(data), step)])
    assert fallback is None and rest == b""
    assert frames == packed


@given(st.lists(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                             | st.floats(allow_nan=False, allow_infinity=False),
                             lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids,
                                                                                       max_size=4),
                             max_leaves=10), max_size=8),
       st.integers(1, 50))
def test_ndjson_values_are_framed_one_each(objs: list[object], step: int) -> None:
    data = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    frames, rest, fallback = feed_all("json", [data[i : i + step] for i in range(0, len(data), step)])
    assert fallback is None and rest == b""
    assert b"".join(frames) == data
    assert [json.loads(f) for f in frames if f.strip()] == objs


def test_random_bulk_bytes_are_exact_for_every_framing() -> None:
    rng = random.Random(7)
    data = rng.randbytes(1 << 20)
    for name in ALL:
        pos, chunks = 0, []
        while pos < len(data):
            n = rng.randint(1, 70000)
            chunks.append(data[pos : pos + n])
            pos += n
        frames, rest, _ = feed_all(name, chunks, max_frame=1 << 16)
        assert b"".join(frames) + rest == data, name


def test_parse_framing() -> None:
    assert parse_framing("len32") == FramingSpec("len32be", "len32be")
    spec = parse_framing("c2s=fixed:12,s2c=fixed:40")
    assert spec.for_direction(Direction.C2S) == "fixed:12"
    assert spec.for_direction(Direction.S2C) == "fixed:40"
    assert parse_framing("s2c=lines") == FramingSpec("raw", "lines")
    assert str(spec) == "c2s=fixed:12,s2c=fixed:40"
    for bad in ["", "bogus", "fixed:0", "fixed:x", "up=lines", "c2s=lines,s2c", "len24"]:
        with pytest.raises(FramingError):
            parse_framing(bad)


_JSON_PIECES = ['{', '}', '[', ']', ',', ':', ' ', '\n', '"a"', '"\\"', '"\\u00e9"', '"\\x"', '1', '-0', '01', '1.5e3',
                '.5', 'true', 'tru', 'null', 'NaN', '-Infinity', '"', '\\', '\t', '""', '[]', '{}', '"k":', '[[', ']]',
                '[0]', '{"b":[0]}', '[{', '}]', '{"a":', '[[1,2],', '{"x":1,"y":2}', '[[[0]]]', '-12.5E+10', '1e']


@given(st.lists(st.sampled_from(_JSON_PIECES), min_size=1, max_size=30), st.integers(1, 7))
def test_json_framer_agrees_with_json_loads(pieces: list[str], step: int) -> None:
    """The iterative scanner accepts a value exactly when Python's json does (whole or split anyhow)."""
    data = "".join(pieces).strip().encode() + b"\n"
    try:
        json.loads(data)
        valid = True
    except ValueError:
        valid = False
    for chunks in ([data], [data[i:i + step] for i in range(0, len(data), step)]):
        frames, rest, fallback = feed_all("json", chunks)
        assert b"".join(frames) + rest == data
        one_value = fallback is None and rest == b"" and len([f for f in frames if f.strip()]) == 1
        assert one_value == valid, (data, frames, fallback)


@pytest.mark.parametrize("data", [b"00000000" + b"." * 56, b"1.x", b"-a", b"truth", b"[1, 2, 01"])
def test_json_bytes_that_cannot_become_json_are_not_held_back(data: bytes) -> None:
    """A top-level number waits for its terminator, but bytes that can never begin a JSON value fall back at once:
    a peer waiting for an answer to a non-JSON message would otherwise wait for ever."""
    f = make_framer("json")
    assert b"".join(f.feed(data)) == data and f.buffered == 0
    assert f.fallback is not None and "not JSON" in f.fallback
    one = make_framer("json")  # the same, one byte at a time
    assert b"".join(fr for i in range(len(data)) for fr in one.feed(data[i:i + 1])) == data
    assert one.fallback is not None


def test_json_a_number_cut_by_a_read_still_waits() -> None:
    f = make_framer("json")
    assert f.feed(b"-12.5e") == [] and f.fallback is None
    assert f.feed(b"+3\n") == [b"-12.5e+3\n"]


# ------------------------------------------------------------------------------------------------ issue 20 names


def test_parse_framing_new_names_and_escapes() -> None:
    assert parse_framing("auto") == FramingSpec("auto", "auto")
    assert parse_framing("c2s=auto,s2c=raw") == FramingSpec("auto", "raw")
    assert parse_framing("delim:EOT\\x00") == FramingSpec("delim:EOT\\x00", "delim:EOT\\x00")
    assert parse_framing("c2s=delim:<END>,s2c=header16json") == FramingSpec("delim:<END>", "header16json")
    assert parse_framing("DELIM:\\n").c2s == "lines"
    assert parse_framing("delim:\\r\\n").c2s == "delim:\\r\\n"
    assert parse_framing("delim:a\\x2cb").c2s == "delim:a\\x2cb"  # a comma is written escaped
    assert parse_framing("delim:==").c2s == "delim:\\x3d\\x3d"
    assert parse_framing("len8").c2s == "len8"
    assert parse_framing("LEN64").c2s == "len64be"
    assert parse_framing("len16le-incl").c2s == "len16le-incl"
    assert parse_framing("len32-incl").c2s == "len32be-incl"
    for bad in ["delim:", "delim:\\", "delim:\\xZZ", "delim:\\q", "delim:\\777", "len8le", "len16xe",
                "delim:" + "x" * 65, "c2s=delim:", "header16", "auto=1"]:
        with pytest.raises(FramingError):
            parse_framing(bad)


@pytest.mark.parametrize("text,expected", [
    ("EOT\\x00", b"EOT\x00"), ("\\r\\n", b"\r\n"), ("\\0", b"\x00"), ("\\000", b"\x00"), ("<END>", b"<END>"),
    ("\\\\", b"\\"), ("\\t|\\v\\f\\a\\b", b"\t|\v\f\a\b"), ("é", "é".encode()), ("\\x7F\\101", b"\x7fA"),
])
def test_delimiter_escapes_like_python_bytes(text: str, expected: bytes) -> None:
    assert parse_delimiter(text) == expected
    # the canonical name parses back to the same bytes
    name = delimiter_name(expected)
    assert make_framer(name).feed(b"x" + expected) == [b"x" + expected]  # type: ignore[attr-defined]
    assert normalise_name(name) == name


def test_terminator_split_across_reads_at_every_point() -> None:
    data = b'{"a": 1}EOT\x00{"b": 2}EOT\x00'
    for cut in range(1, len(data)):
        frames, rest, fallback = feed_all("delim:EOT\\x00", [data[:cut], data[cut:]])
        assert frames == [b'{"a": 1}EOT\x00', b'{"b": 2}EOT\x00'] and rest == b"" and fallback is None


def test_delimiter_scan_is_linear() -> None:
    f = make_framer("delim:EOT\x00")
    data = b"EOT" * 20000
    for i in range(0, len(data), 1):
        f.feed(data[i:i + 1])
    assert f.work <= 6 * len(data)  # type: ignore[attr-defined]  # linear: the last 3 bytes looked at again


def test_header_body_length_spellings_and_refusals() -> None:
    for key in ("content-length", "content_length", "Content-Length", "body_length", "length"):
        assert header_body_length(json.dumps({key: 12}).encode()) == 12
    for bad in [b"[1]", b"{}", b'{"content-length": -1}', b'{"content-length": "12"}', b'{"length": true}',
                b"{not json", b"", b"[" * 100000]:
        with pytest.raises(ValueError):
            header_body_length(bad)


@pytest.mark.parametrize("garbage", [b"\x00\x05hello", b"\x00\x00", b"\x00\x0e" + b'{"type": "x"}!',
                                     b"\x00\x02[]", b"\x7b\x22" + b"x" * 100])
def test_header16json_contradicted_falls_back_losing_nothing(garbage: bytes) -> None:
    good = SAMPLES["header16json"][0]
    frames, rest, fallback = feed_all("header16json", [good + garbage, b"more"])
    assert fallback is not None and "raw" in fallback
    assert frames[0] == good and b"".join(frames) + rest == good + garbage + b"more"


def test_len_incl_smaller_than_prefix_falls_back() -> None:
    frames, rest, fallback = feed_all("len16be-incl", [b"\x00\x01abc"])
    assert fallback is not None and b"".join(frames) + rest == b"\x00\x01abc"


def test_frames_exactly() -> None:
    assert frames_exactly("lines", b"a\nb\n") == 2
    assert frames_exactly("lines", b"a\nb") == 0
    assert frames_exactly("len16be", lp(b"abc", "!H") * 3) == 3
    assert frames_exactly("json", b"not json") == 0
    assert frames_exactly("header16json", SAMPLES["header16json"][0]) == 1


def test_resync_framer_passes_reads_raw_until_one_fits_then_frames() -> None:
    f = ResyncFramer("len16be")
    assert f.name == "raw" and not f.can_hold
    # mid-frame garbage: each read goes on as it is, never held
    assert f.feed(b"\x7b\x22abc") == [b"\x7b\x22abc"] and f.inner is None and f.buffered == 0
    # a read that is whole len16be frames: from the next read on, frames again
    whole = lp(b"hello", "!H") + lp(b"x", "!H")
    assert f.feed(whole) == [whole] and f.inner is not None
    assert f.feed(lp(b"a", "!H") + b"\x00") == [lp(b"a", "!H")] and f.buffered == 1
    assert f.flush() == b"\x00"
    # a read too big to check is passed on and not tried
    g = ResyncFramer("lines")
    big = b"x" * RESYNC_CHECK_MAX + b"\n"
    assert g.feed(big) == [big] and g.inner is None


def test_remaining_is_known_for_declared_sizes_only() -> None:
    f = make_framer("len16be")
    f.feed(b"\x00")
    assert f.remaining() is None  # the length itself is not here yet
    f.feed(b"\x05ab")
    assert f.remaining() == 3
    g = make_framer("fixed:7")
    assert g.remaining() is None
    g.feed(b"abc")
    assert g.remaining() == 4
    h = make_framer("header16json")
    msg = SAMPLES["header16json"][0]
    h.feed(msg[:-4])
    assert h.remaining() == 4
    for name in ("lines", "json", "msgpack", "raw", "delim:<END>"):
        k = make_framer(name)
        k.feed(b"\x92\x01")
        assert k.remaining() is None


def test_resync_framer_skips_the_rest_of_the_stalled_frame_first() -> None:
    f = ResyncFramer("fixed:4", skip=3)
    assert f.feed(b"ab") == [b"ab"] and f.skip == 1
    assert f.feed(b"cWXYZ") == [b"c", b"WXYZ"] and f.inner is not None
    assert f.feed(b"1234") == [b"1234"]


def test_the_json_run_patterns_compile_with_the_engine_not_with_every_import_of_framing() -> None:
    """They take ~10 ms to compile: the window (which only parses framing names at start) must not pay it, and a
    relay must never pay it on its thread (the engine compiles them when it imports ``proxy.inference``)."""
    import subprocess
    import sys

    code = ("import proxy.framing as f, proxy.options\nassert not f._runs_compiled, 'compiled at import'\n"
            "import proxy.inference\nassert f._runs_compiled, 'not compiled by the engine'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

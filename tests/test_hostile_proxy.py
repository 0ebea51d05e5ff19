"""Hostile input against the proxy engine's own surface: framers (tests/hostile/framing/) and the control endpoint
(tests/hostile/control/), tested pure and through real sockets.

The promises checked here: a framer never loses, alters or withholds bytes because of their content (whatever it
is, the exact bytes reach the other side), never raises, and costs O(n) however the bytes are split; nothing an
unauthenticated control client sends costs the proxy more than a few KiB of memory, and a misbehaving one is cut
off with a one-line ``bye`` while game traffic flows on.
"""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest

from proxy.framing import FramingSpec, make_framer
from tests.conftest import EchoServer, connect, recv_exact, recv_until_eof

HOSTILE = Path(__file__).parent / "hostile"
FRAMING_CASES = sorted((HOSTILE / "framing").glob("*.bin"))
SMALL_CAP = 4096
"""The --max-frame used with the corpus, so the cap's fallback paths run on small files too."""


def framing_of(path: Path) -> str:
    """``json--nested-arrays-1000.bin`` -> ``json``; ``fixed5--…`` -> ``fixed:5``."""
    name = path.name.split("--", 1)[0]
    return "fixed:" + name[5:] if name.startswith("fixed") else name


def feed(name: str, chunks: list[bytes], cap: int = SMALL_CAP) -> tuple[list[bytes], bytes, str | None, int]:
    f = make_framer(name, cap)
    frames: list[bytes] = []
    for c in chunks:
        frames.extend(f.feed(c))
    return frames, f.flush(), f.fallback, f.work  # type: ignore[attr-defined]


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 97)
        out.append(data[i:i + n])
        i += n
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FRAMING_CASES, ids=[p.name for p in FRAMING_CASES])
@pytest.mark.parametrize("how", ["whole", "byte_by_byte", "random_splits", "trailing_bytes"])
def test_framer_passes_hostile_bytes_exactly(path: Path, how: str) -> None:
    data = path.read_bytes()
    name = framing_of(path)
    tail = b""
    if how == "whole":
        chunks = [data]
    elif how == "byte_by_byte":
        chunks = [data[i:i + 1] for i in range(len(data))]
    elif how == "random_splits":
        chunks = splits(data, len(data))
    else:  # the h11 way: whatever follows the hostile part must come out too, untouched and in order
        tail = b'\n{"after": [1, 2]}\n\x00\xff trailer'
        chunks = [data + tail[:5], tail[5:]]
    frames, rest, fallback, work = feed(name, chunks)
    assert b"".join(frames) + rest == data + tail
    assert all(frames), "a framer never returns an empty frame"
    # Linear: every byte is looked at a bounded number of times however the stream is split.
    assert work <= 8 * len(data + tail) + 16 * len(chunks), (work, len(data))
    if fallback is not None:
        assert "raw" in fallback and "\n" not in fallback


JSON_FALLS_BACK = {"nested-arrays-1000", "nested-objects-1000", "unclosed-arrays-5000", "deep-then-valid",
                   "mismatched-brackets", "nul-in-string", "literal-soup"}


@pytest.mark.parametrize("path", [p for p in FRAMING_CASES if framing_of(p) == "json"],
                         ids=lambda p: p.name)
def test_json_corpus_frames_what_is_json_and_falls_back_on_the_rest(path: Path) -> None:
    data = path.read_bytes()
    frames, rest, fallback, _ = feed("json", [data], cap=1 << 20)
    stem = path.stem.split("--", 1)[1]
    if stem in JSON_FALLS_BACK:
        assert fallback is not None, stem
    else:
        assert fallback is None, fallback
        assert rest == b""
        for f in frames:
            if f.strip():
                json.loads(f)  # every frame is one whole JSON value


def test_json_nesting_cap_says_why() -> None:
    f = make_framer("json")
    out = f.feed(b"[" * 1000 + b"]" * 1000)
    assert b"".join(out) + f.flush() == b"[" * 1000 + b"]" * 1000
    assert f.fallback is not None and "nest" in f.fallback


def test_json_nesting_under_the_cap_is_one_frame() -> None:
    data = b"[" * 400 + b"]" * 400 + b"\n"
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        f = make_framer("json")
        frames = [fr for c in chunks for fr in f.feed(c)]
        assert f.fallback is None
        assert b"".join(frames) == data and frames[0].startswith(b"[" * 400)


@pytest.mark.parametrize("head", [b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x05",
                                  b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"],
                         ids=["bin32", "str32", "ext32", "array32", "map32"])
def test_msgpack_huge_declared_length_falls_back_at_once(head: bytes) -> None:
    """A length no frame under the cap can have is known from the header: nothing waits for it."""
    f = make_framer("msgpack", SMALL_CAP)
    out = f.feed(head + b"abc")
    assert f.fallback is not None and "cap" in f.fallback
    assert out == [head + b"abc"] and f.buffered == 0


def test_msgpack_nesting_past_the_unpacker_stack_says_why() -> None:
    f = make_framer("msgpack")
    data = b"\x91" * 2000 + b"\xc0"
    assert b"".join(f.feed(data)) + f.flush() == data
    assert f.fallback is not None and "nest" in f.fallback


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["json", "msgpack", "lines", "len32be"])
def test_a_big_frame_byte_by_byte_is_linear(name: str) -> None:
    """A frame arriving one byte at a time costs O(n) in total, not O(n^2)."""
    n = 200_000
    body = {"json": b'{"k": "' + b"x" * n + b'", "a": [' + b"1," * 1000 + b"2]}\n",
            "msgpack": b"\xc6" + n.to_bytes(4, "big") + b"x" * n,
            "lines": b"x" * n + b"\n",
            "len32be": n.to_bytes(4, "big") + b"x" * n}[name]
    f = make_framer(name)
    frames = []
    for i in range(len(body)):
        frames.extend(f.feed(body[i:i + 1]))
    # (json: the newline after the value came in a read of its own, so it is passed on as one)
    assert frames == ([body[:-1], b"\n"] if name == "json" else [body]) and f.fallback is None
    assert f.work <= 8 * len(body), f.work  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ through real sockets


def _through_the_proxy(start_proxy, echo: EchoServer, name: str, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """Send ``data``, then FIN (an incomplete last frame is passed on at the end of the stream), read to EOF."""
    proxy = start_proxy(echo.port, FramingSpec(name, name, SMALL_CAP))
    with connect(proxy.port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_until_eof(s)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FRAMING_CASES, ids=[p.name for p in FRAMING_CASES])
def test_hostile_stream_reaches_the_server_and_back_exactly(start_proxy, echo_server: EchoServer,  # type: ignore[no-untyped-def]
                                                            path: Path) -> None:
    data = path.read_bytes()
    assert _through_the_proxy(start_proxy, echo_server, framing_of(path), data) == data


@pytest.mark.timeout(60)
def test_json_nesting_1000_reaches_the_server(start_proxy, echo_server: EchoServer) -> None:  # type: ignore[no-untyped-def]
    """Issue 16 item 4: the framer raised RecursionError, the connection closed and 0 bytes reached the server."""
    data = b"[" * 1000 + b"]" * 1000 + b'\n{"type": "ping"}\n'
    proxy = start_proxy(echo_server.port, FramingSpec("json", "json"))
    with connect(proxy.port) as s:
        s.sendall(data)
        assert recv_exact(s, len(data)) == data

"""Hostile ENet datagrams and Godot packets (tests/hostile/enet/, one line each in its README.md) and generated
floods: decoding never raises and stays bounded (fields, text, nesting, values), the flow book keeps its caps, and a
rule's filter on the relay's thread decides within its budget. Bounds are checked by deterministic measures (counts,
sizes, caps); pytest-timeout is the backstop for time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inspector.decode import MAX_NODES, SUMMARY_MAX, DecodeContext, DecoderRegistry, Field, builtin_decoders
from inspector.decode._enet import FlowBook, parse
from inspector.filters import EngineViews, parse_filter
from proxy.model import Direction, Message, RuleUndecided
from tests import enet_bytes as e

HOSTILE = Path(__file__).parent / "hostile" / "enet"
FILES = sorted(p for p in HOSTILE.iterdir() if p.suffix == ".bin")
REG = DecoderRegistry(builtin_decoders())


def count(fields: tuple[Field, ...]) -> int:
    return sum(1 + count(f.children) for f in fields)


def depth(v: Any, d: int = 0) -> int:
    if isinstance(v, dict):
        return max([d, *(depth(x, d + 1) for x in v.values())])
    if isinstance(v, list | tuple):
        return max([d, *(depth(x, d + 1) for x in v)])
    return d


def test_every_file_is_listed_in_the_readme() -> None:
    readme = (HOSTILE / "README.md").read_text()
    assert FILES and all(f"| {p.name} |" in readme for p in FILES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_hostile_datagram_decodes_bounded(path: Path) -> None:
    data = path.read_bytes()
    for decode_as in (None, "enet", "godot"):
        for detail in (True, False):
            view = REG.decode(data, DecodeContext(direction=Direction.C2S, conn_id=1, decode_as=decode_as,
                                                  detail=detail))
            assert len(view.summary) <= SUMMARY_MAX
            assert count(view.fields) <= MAX_NODES + 1
            assert len(view.text) <= 8 * 65536 + 4000
            assert len(view.values) <= 256 and depth(view.values) < 200
    book = FlowBook()
    book.observe(Message(1, 1, Direction.C2S, 0, data, 0, 0))
    assert book.partial_bytes <= len(data) and not book.done


def test_what_each_hostile_file_becomes() -> None:
    def enet(name: str) -> Any:
        return REG.decode((HOSTILE / name).read_bytes(), DecodeContext(decode_as="enet"))

    v = enet("pings-16k-in-64k.bin")
    assert len(v.values) == 256 and v.truncated and any("only the first 256 commands" in w for w in v.warnings)
    assert "carries 65535 bytes, 10 left" in enet("send-claims-65535-bytes.bin").error  # type: ignore[operator]
    nested = enet("enet-in-enet-nested.bin").values[0]
    assert depth(nested) <= 8  # payloads are decoded two levels deep, then left as bytes
    bomb = enet("zlib-bomb-compressed.bin")
    assert bomb.summary.startswith("compressed datagram") and "4096-byte MTU" in bomb.summary
    assert enet("zlib-truncated-compressed.bin").summary.startswith("compressed datagram")
    assert "checksum WRONG" in enet("checksum-wrong.bin").text
    assert any("impossible MTU" in w for w in enet("connect-impossible-values.bin").warnings)
    godot = REG.decode((HOSTILE / "godot-arrays-nested-5000.bin").read_bytes(),
                       DecodeContext(decode_as="enet")).values[0]
    assert godot["payload_decoder"] != "godot"  # Godot's reader stopped at its depth: the payload is another's
    claims = enet("godot-array-claims-2g.bin").values[0]
    assert claims["payload_decoder"] != "godot"
    keys = enet("godot-dict-array-keys.bin").values[0]["payload"]
    assert keys["args"][0] == {"[0]": 0, "[1]": 1, "[2]": 2}
    relay = enet("godot-relay-nested-200.bin").values[0]
    assert relay["payload_decoder"] != "godot"  # a relay relays one packet; 200 deep is not Godot's


@pytest.mark.timeout(60)
def test_a_fragment_flood_keeps_the_book_within_its_caps() -> None:
    book = FlowBook(max_partial=32, max_partial_total=4096, max_partial_bytes=8 << 20)
    n = 0
    for flow in range(300):  # 300 flows x 60 messages, each only ever sending its first fragment
        for k in range(60):
            d = e.header(0, sent_time=1) + e.fragment(k % 4, 1 + 3 * k, 1 + 3 * k, 3, 0, 32 << 20, 0, b"f" * 200)
            book.observe(Message(n, flow, Direction.C2S, k, d, 0, 0))
            n += 1
    assert len(book.partial) <= 4096 and book.partial_bytes <= 8 << 20 and book.dropped >= 300 * 60 - 4096
    assert all(len(lane) <= 32 for lane in book._lanes.values())
    # fragments that do not cover their message (2 of 200 bytes claiming 32 MiB) are never allocated nor joined
    for i in range(200):
        for number in (0, 1):
            d = e.header(0, sent_time=1) + e.fragment(0, 7 + number, 7, 2, number, 32 << 20, number * 10, b"x" * 10)
            book.observe(Message(n, 10_000 + i, Direction.C2S, number, d, 0, 0))
            n += 1
    assert book.done_bytes == 0 and not book.done


@pytest.mark.timeout(60)
def test_a_rule_filter_on_hostile_datagrams_decides_within_its_budget() -> None:
    """As on the relay's thread: every file through one EngineViews (its time share and per-message budget)."""
    views = EngineViews(DecoderRegistry(builtin_decoders()))
    pred = parse_filter("enet.channel == 1 and enet.reliable == false").to_engine_predicate(views)
    undecided = 0
    for i, path in enumerate(FILES * 3):
        msg = Message(i, 1, Direction.C2S, i, path.read_bytes(), 0, 0)
        try:
            pred(msg)
        except RuleUndecided:
            undecided += 1
    assert undecided < len(FILES) * 3  # most decide; a file past its budget is "undecided", never a hang or crash


def test_parsing_is_bounded_by_commands_read() -> None:
    p = parse((HOSTILE / "pings-16k-in-64k.bin").read_bytes())
    assert len(p.commands) == 256 and p.more == 65504 - 4 - 256 * 4


def test_past_its_deadline_a_datagram_still_gives_every_commands_fields() -> None:
    import time as _time

    data = e.header(0, sent_time=1) + b"".join(e.reliable(i % 4, i + 1, b'{"i": %d}' % i) for i in range(30))
    ctx = DecodeContext(direction=Direction.C2S, conn_id=5, decode_as="enet", detail=False,
                        deadline_ns=_time.monotonic_ns() - 1)
    view = REG.decode(data, ctx)
    assert len(view.values) == 30 and all("payload" not in v for v in view.values)
    assert [v["channel"] for v in view.values] == [i % 4 for i in range(30)]
    assert any("past the decoding deadline" in w for w in view.warnings)


# A datagram pyenet 1.3.17 compressed with its range coder (a 1396-byte fragment of 8 x "abcdefgh" ... in 45 bytes).
RANGE_CODED = bytes.fromhex("c0005f158878849c56becf64e492f5c9530f5262edf8b18d3f811570e2bbaef1f9eedab6a90d91585ad3"
                            "39ca1204057b70")


def test_the_range_coder_decodes_pyenets_bytes_and_is_bounded() -> None:
    import os
    import random

    from inspector.decode import _rangecoder

    out = _rangecoder.decompress(RANGE_CODED[4:], 4092)
    assert len(out) == 1396 and out[24:40] == b"abcdefghabcdefgh"
    view = REG.decode(RANGE_CODED, DecodeContext(decode_as="enet"))
    assert view.summary.startswith("[range-coded] ch0 reliable #4 fragment 1/") and view.values[0]["fragment"]
    with pytest.raises(_rangecoder.Corrupt, match="steps"):  # the work budget
        _rangecoder.decompress(RANGE_CODED[4:], 4092, work=500)
    with pytest.raises(_rangecoder.Corrupt, match="bytes"):  # the output limit
        _rangecoder.decompress(RANGE_CODED[4:], 1000)
    rng = random.Random(7)
    for _ in range(300):  # noise: a clean failure or some bytes, never an exception, never past the limit
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        try:
            assert len(_rangecoder.decompress(noise, 4092)) <= 4092
        except _rangecoder.Corrupt:
            pass
    for _ in range(50):  # compressed-looking datagrams of an unknown flow: bounded, and never taken for ENet
        d = b"\xc0\x00" + os.urandom(rng.randrange(8, 1400))
        view = REG.decode(d, DecodeContext(direction=Direction.C2S, conn_id=77))
        assert view.decoder != "enet" or view.summary.startswith("[range-coded]")

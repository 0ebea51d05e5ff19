"""The flat reader and renderer of Godot's usual values give exactly what the general ones give, or nothing.

``read_variants`` first tries a flat reading of the usual Variants (``_flat_variants``), ``render_value`` a flat
rendering of small plain values (``_flat``); when they cannot, the general :class:`_Reader` and
:class:`~inspector.decode._render.Renderer` decide. These properties compare them with the general ones on
generated values and bytes (well-formed, mutated, random): same values of the same types, same text, same cut,
same error.
"""

from __future__ import annotations

import random
import struct
from collections import OrderedDict
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.decode import _godot
from inspector.decode._godot import BadPacket, GodotValue, read_variants, render_value
from inspector.decode._render import render
from tests.test_enet_speed_equivalence import canon, compressed, mutate, variant


def general_variants(data: bytes, pos: int = 0, end: int | None = None, count: int | None = None) -> list[Any]:
    """read_variants as it was before the flat reader: the general reader only."""
    r = _godot._Reader(data, pos, len(data) if end is None else end)
    out: list[Any] = []
    while r.pos < r.end and (count is None or len(out) < count):
        out.append(r.compressed())
    if count is not None and len(out) < count:
        raise BadPacket(f"{len(out)} of {count} values before the end")
    if r.pos != r.end:
        raise BadPacket(f"{r.end - r.pos} bytes left after {len(out)} values")
    return out


def outcome(read: Any, data: bytes, count: int | None) -> Any:
    try:
        return canon(read(data, 0, None, count))
    except BadPacket as e:
        return ["BadPacket", str(e)]


def _same(data: bytes, count: int | None = None) -> None:
    assert outcome(read_variants, data, count) == outcome(general_variants, data, count), data.hex()


@pytest.mark.timeout(120)
def test_generated_and_mutated_variants_read_as_the_general_reader_reads_them() -> None:
    rng = random.Random(2222)
    flat_hits = 0
    for i in range(6000):
        data = b"".join(compressed(rng) if rng.random() < 0.7 else variant(rng) for _ in range(rng.randrange(1, 5)))
        if i % 3 == 0:
            data = mutate(rng, data)
        count = rng.choice([None, None, 1, 2, 5])
        _same(data, count)
        flat_hits += _godot._flat_variants(data, 0, len(data), count) is not None
    assert flat_hits > 500  # the flat reader does read the usual values (not just give up)


@given(st.binary(max_size=80), st.sampled_from([None, 1, 3]))
@settings(max_examples=600, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_read_as_the_general_reader_reads_them(data: bytes, count: int | None) -> None:
    _same(data, count)


@given(st.lists(st.sampled_from([b"\x01", b"\x81", b"\x02\x05", b"\x42\xff\x7f", b"\x82\x01\x00\x00\x80",
                                  b"\xc2" + b"\xff" * 8, struct.pack("<Iff", 5, 1.5, -2.0),
                                  struct.pack("<II", 28, 2), struct.pack("<II", 27, 1), struct.pack("<I", 0),
                                  struct.pack("<IIi", 28, 1, 2)[:-4], struct.pack("<II", 4, 3) + b"abc\0",
                                  struct.pack("<II", 4, 2) + b"\xff\xfe\0\0", struct.pack("<Id", 3 | 1 << 16, 0.1),
                                  struct.pack("<I", 28 | 1 << 16), struct.pack("<I3i", 10, 1, 2, 3),
                                  struct.pack("<I", 2), b"\x00"]), max_size=12))
@settings(max_examples=600, deadline=2000)
def test_pieces_of_variants_read_as_the_general_reader_reads_them(pieces: list[bytes]) -> None:
    _same(b"".join(pieces))
    _same(b"".join(pieces), 2)


def test_a_big_or_deep_packet_is_the_general_readers() -> None:
    deep = struct.pack("<II", 28, 1) * 40 + struct.pack("<I", 0)
    assert _godot._flat_variants(deep, 0, len(deep), None) is None
    _same(deep)
    deeper = struct.pack("<II", 28, 1) * 70 + struct.pack("<I", 0)  # past MAX_DEPTH: the general reader's error
    assert outcome(read_variants, deeper, None)[0] == "BadPacket"
    _same(deeper)
    many = b"\x81" * 30_000  # past MAX_VALUES: counted by the general reader only
    assert outcome(read_variants, many, None) == ["BadPacket", f"more than {_godot.MAX_VALUES} values"]


# -- rendering -----------------------------------------------------------------------------------------------------

_BIG = (1 << 40000, -(1 << 13000), "x" * 500, b"y" * 300)  # (built by index: hypothesis cannot repr a huge int)
_scalars = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70), st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(), st.text(max_size=30),
    st.binary(max_size=20), st.integers(0, 3).map(_BIG.__getitem__))
_keys = st.one_of(st.integers(min_value=-1000, max_value=1000), st.text(max_size=10), st.booleans(), st.none(),
                  st.floats(allow_nan=False))


def _godot_value(children: st.SearchStrategy[Any]) -> st.SearchStrategy[GodotValue]:
    small = children.filter(lambda v: type(v) is not int or v.bit_length() <= 64)  # Godot's ints are 64-bit
    numbers = st.lists(st.one_of(st.floats(), st.integers(min_value=-(1 << 65), max_value=1 << 65)), max_size=4)
    return st.one_of(
        st.builds(lambda name, v: GodotValue(name, dict(zip("xyzw", v, strict=False))),
                  st.sampled_from(["Vector2", "Color", "Vector3i", "Callable"]), numbers),
        st.builds(lambda v: GodotValue("Transform2D", {"x": v, "origin": 1.5}), small),
        st.builds(lambda d: GodotValue("Node2D", d), st.dictionaries(st.text(max_size=5), small, max_size=4)))


_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.lists(children, max_size=3).map(tuple),
        st.dictionaries(_keys, children, max_size=5), _godot_value(children),
        st.dictionaries(st.text(max_size=4), children, max_size=3).map(OrderedDict),
        st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=5)),
        st.lists(children, max_size=3).map(lambda v: [v, {"k": v}])),
    max_leaves=40)


@given(_values, st.integers(min_value=0, max_value=300))
@settings(max_examples=800, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
def test_values_render_as_the_renderer_renders_them(value: Any, limit: int) -> None:
    assert render_value(value, limit) == render(value, limit)


def test_shared_cyclic_and_deep_values_render_as_the_renderer_renders_them() -> None:
    shared = [GodotValue("Vector2", {"x": 1.0, "y": 2.0})] * 3
    cyclic: list[Any] = [1, "a"]
    cyclic.append(cyclic)
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    node = GodotValue("Node", {"children": cyclic})
    for v in (shared, [shared, shared], cyclic, {"c": cyclic}, deep, node, GodotValue("Object", {})):
        for limit in (0, 5, 60, 120, 4000):
            assert render_value(v, limit) == render(v, limit)
    assert _godot._flat(shared, 200, 0) == "[Vector2(1.0, 2.0), Vector2(1.0, 2.0), Vector2(1.0, 2.0)]"
    assert _godot._flat(cyclic, 4000, 0) is None  # the Renderer's <cycle>


def test_summaries_of_the_usual_calls_render_flat() -> None:
    """The flat renderer does the work for a game's usual arguments (not just give up)."""
    args = [GodotValue("Vector2", {"x": 0.5, "y": -3.25}), 17, {"jump": True, "fire": False}, "gg", None]
    text = _godot._flat(args, 120, 0)
    assert text == "[Vector2(0.5, -3.25), 17, {'jump': True, 'fire': False}, 'gg', None]"
    assert (text, False) == render(args, 120)


@pytest.mark.timeout(120)
def test_what_the_flat_reader_reads_reprs_as_the_renderer_renders_it() -> None:
    """A summary of values the flat reader read is their ``repr`` (see _godot._plain_text): the same text."""
    rng = random.Random(2626)
    checked = 0
    for _ in range(4000):
        data = b"".join(compressed(rng) for _ in range(rng.randrange(1, 5)))
        values = _godot._flat_variants(data, 0, len(data), None)
        if values is None:
            continue
        checked += 1
        for limit in (0, 10, 60, 120, 4000):
            assert _godot._plain_text(values, limit) == render(values, limit), data.hex()
        for v in values:
            if isinstance(v, GodotValue):
                assert repr(v) == render(v, 200)[0]
    assert checked > 1000


@given(st.floats(width=32), st.floats(width=32), st.sampled_from(["Vector2", "Vector2i", "Size"]))
@settings(max_examples=300, deadline=2000)
def test_a_vectors_repr_is_its_rendering(x: float, y: float, name: str) -> None:
    v = GodotValue(name, {"x": x, "y": y})
    assert repr(v) == render(v, 200)[0]
    assert repr([v, {"k": v}]) == render([v, {"k": v}], 4000)[0]


# -- the usual packets' summaries in one go ---------------------------------------------------------------------


def _general_summary(data: bytes, paths: dict[int, str] | None) -> Any:
    try:
        p = _godot.parse_packet(data)
    except (BadPacket, struct.error, IndexError, OverflowError) as e:
        return ["error", str(e)]
    v = _godot.packet_view(p, data, False, None, paths if p.command == "remote_call" else None)
    return [v.decoder, v.summary, v.error, list(v.warnings), v.truncated, canon(v.values)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("named", [False, True])
def test_the_usual_packets_summarise_as_the_general_path_does(named: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """_quick_view (a remote call's or a sync's summary view read in one go) gives exactly what parse_packet and
    packet_view give, node paths included, or nothing; on generated, mutated and edge-case packets."""
    from inspector.decode._api import DecodeContext
    from tests import enet_bytes as e
    from tests.test_enet_speed_equivalence import godot_packet

    paths = {3: "/root/Main/Player", 70000: "/root/World", 0x7FFFFFF0: "/root/Far"} if named else None
    monkeypatch.setattr(_godot, "PATHS", lambda conn, d: paths)
    ctx = DecodeContext(detail=False)
    rng = random.Random(606)
    quick = 0
    packets: list[bytes] = []
    for _ in range(3000):
        packets.append(godot_packet(rng))
    for n in range(6):  # syncs of 0 to 5 nodes (the quick path takes up to 3)
        packets.append(e.sync(n, [(i + 1, [e.Vec2((1.5, float(i))), i]) for i in range(n)]))
    for node in (3, 300, 70000, 0x7FFFFFF0):
        for method in (1, 700):
            packets.append(e.rpc(node, method, [e.Vec2((0.5, 2.0)), 7, {"a": True}, "s" * 200]))
            packets.append(e.rpc(node, method, [1]))
    packets.append(e.rpc(3, 1, [1], path="/root/Main/Player"))
    for data in list(packets):
        for _ in range(3):
            packets.append(mutate(rng, data))
    for data in packets:
        view = _godot._quick_view(data, ctx)
        if view is None:
            continue
        quick += 1
        got = [view.decoder, view.summary, view.error, list(view.warnings), view.truncated, canon(view.values)]
        assert got == _general_summary(data, paths), data.hex()
    assert quick > 800


def test_a_long_named_pair_of_floats_is_cut_as_the_renderer_cuts_it() -> None:
    """An Object with two float properties renders like a vector; a hostile class name of 300 characters is cut."""
    v = GodotValue("C" * 300, {"a": 1.5, "b": 2.5})
    assert repr(v) == render(v, 200)[0] and repr(v).endswith("…")
    for limit in (10, 120, 400):
        assert render_value([v, 1], limit) == render([v, 1], limit)

"""Hypothesis fuzzing of every decoder: no exception escapes, work stays bounded, round trips hold; and, with a
per-input time budget, hostile bytes (random, mutated pickles, memo reuse, deep nesting, colliding keys) cost the
pickle reader and the msgpack and JSON decoders time proportional to their size."""

from __future__ import annotations

import json
import math
import pickle
import struct
from dataclasses import replace

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inspector.decode import (
    MAX_DUMP,
    MAX_NODES,
    SUMMARY_MAX,
    DecodeContext,
    DecoderRegistry,
    EncodeError,
    Field,
    View,
    builtin_decoders,
)
from inspector.decode._pickle import _is_plain, _run_plain, _Simulation
from inspector.decode._render import render
from proxy.model import Direction
from tests.hostile_decoders_corpus import colliding_pairs, colliding_timestamps

REG = DecoderRegistry(builtin_decoders())
CONTEXTS = st.sampled_from(
    [
        DecodeContext(),
        DecodeContext(struct_format="<Hff12sB player_id x y name state"),
        DecodeContext(struct_format=">I len"),
        DecodeContext(struct_format="<3f2x5s"),
        DecodeContext(json_delimiter=b"\n"),
        DecodeContext(json_delimiter=b"\x00|"),
    ]
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXACT = ("text", "hex", "json", "struct")
"""Decoders whose editable form is lossless for any input they accept."""


def _nodes(fields: tuple[Field, ...]) -> int:
    return sum(1 + _nodes(f.children) for f in fields)


def _check(view: View, data: bytes, ctx: DecodeContext) -> None:
    assert isinstance(view, View)
    assert len(view.summary) <= SUMMARY_MAX
    assert _nodes(view.fields) <= MAX_NODES + 1
    assert view.can_encode == (view.editable is not None)
    if view.can_encode and view.decoder in EXACT:
        assert REG.encode(view.decoder, view.editable or "", ctx) == data


# Bytes that look a little like each format, so fuzzing reaches past the first byte.
PREFIXES = st.sampled_from([b"", b"\x80\x04", b"\x80\x02", b"(", b"{", b"[", b"\x82", b"\x93", b"\xc7", b"c", b"\xf0"])


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=600), ctx=CONTEXTS)
def test_every_decoder_survives_random_bytes(prefix: bytes, body: bytes, ctx: DecodeContext) -> None:
    data = prefix + body
    for decoder in REG.values():
        direct = decoder.decode(data, ctx)  # built-ins never raise, even without the registry's guard
        _check(direct, data, ctx)
        decoder.confidence(data, ctx)
    _check(REG.decode(data, ctx), data, ctx)


def _agree(data: bytes, ctx: DecodeContext) -> None:
    lite_ctx = replace(ctx, detail=False)
    for name in REG:
        full, lite = REG.decode_with(name, data, ctx), REG.decode_with(name, data, lite_ctx)
        assert (lite.decoder, lite.summary, lite.error) == (full.decoder, full.summary, full.error), name
        assert _same(lite.values, full.values), name
        assert not lite.can_encode and lite.editable is None
    full, lite = REG.decode(data, ctx), REG.decode(data, lite_ctx)
    assert (lite.decoder, lite.summary, lite.error) == (full.decoder, full.summary, full.error)
    assert _same(lite.values, full.values)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Equal renderings: NaN equals itself, and the pickle reader's objects compare by what they hold."""
    return [render(v, 1 << 16)[0] for v in a] == [render(v, 1 << 16)[0] for v in b]


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=600), ctx=CONTEXTS)
def test_summary_only_views_agree_with_full_views(prefix: bytes, body: bytes, ctx: DecodeContext) -> None:
    _agree(prefix + body, ctx)


@pytest.mark.parametrize("data", [
    b'{"type": "pos", "x": 3, "y": 7}', b'{"a": 1}\n{"b": 2}\n', b"\x00\x00\x00\x08{\"a\": 1}",
    msgpack.packb({"cmd": "move", "raw": b"\x01"}) * 2, pickle.dumps({"x": 1.5, "name": "p1"}, protocol=4),
    b"cos\nsystem\n(S'echo hi'\ntR.", struct.pack("<Hff12sB", 1, 2.5, 3.5, b"bob", 2) * 3,
    "Ping received! 📥".encode(), "📥".encode()[:2], b"\x00\x01\x02\xff" * 30, b"", b"[1, 2",
])
def test_summary_only_views_agree_on_every_decoder(data: bytes) -> None:
    _agree(data, DecodeContext(struct_format="<Hff12sB player_id x y name state"))
    _agree(data, DecodeContext())


def test_summary_only_context_follows_decode_as_changes() -> None:
    reg = DecoderRegistry(builtin_decoders())
    before = reg.context_for(1, Direction.C2S, detail=False)
    assert before.decode_as is None and not before.detail
    assert reg.context_for(1, Direction.C2S, detail=False) is before  # cached
    reg.set_decode_as("hex", 1, Direction.C2S)
    assert reg.context_for(1, Direction.C2S, detail=False).decode_as == "hex"
    assert reg.context_for(1, Direction.C2S).decode_as == "hex" and reg.context_for(1, Direction.C2S).detail
    reg.set_struct_format("<I n", None, Direction.C2S)
    assert reg.context_for(1, Direction.C2S, detail=False).struct_format == "<I n"
    reg.decode_as.set(None, 1, Direction.C2S)  # the window clears per-direction choices this way
    assert reg.context_for(1, Direction.C2S, detail=False).decode_as is None


def _text_confidence_reference(data: bytes) -> float:
    """The text decoder's confidence as first written (no shortcuts), to check the shortcuts against."""
    from inspector.decode._text import _CONTROLS, _PROBE, SHORT, _one_script, _split_edges

    if not data:
        return 0.5
    probe = data[:_PROBE]
    head, tail = _split_edges(probe) if len(data) <= _PROBE else (_split_edges(probe)[0], 0)
    body = probe[head : len(probe) - tail]
    bad = 0
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (len(data) > _PROBE and exc.start >= len(body) - 3):
            bad = body.decode("utf-8", "replace").count("\ufffd")
    controls = len(_CONTROLS.findall(body))
    if controls * 4 >= len(probe):
        return 0.0
    if len(data) <= _PROBE and data[-1] in b"\x00\x03\x04":
        controls -= 1  # a terminator
    noise = bad + controls
    words = not controls and bad == 1 and body.count(b" ") >= 2
    if len(data) < SHORT and ((noise and not words) or ((head or tail) and body) or not _one_script(body)):
        return 0.0
    if not noise:
        return 0.5
    if noise * 20 <= len(body):
        return 0.5 if not bad else 0.2
    return 0.05 if noise * 8 < len(body) else 0.0


@FUZZ
@given(prefix=PREFIXES, body=st.binary(max_size=600), text=st.text(max_size=200), long=st.booleans())
@example(prefix=b"", body=b"\x80", text="", long=False)
@example(prefix=b"", body=b"\x00\x01\x02a", text="", long=False)
@example(prefix=b"", body=b"\xef\xbf\xbd", text="", long=False)  # U+FFFD sent as text is not a bad byte
@example(prefix=b"", body=b"\xef\xbf\xbd\x80", text="", long=False)
def test_text_confidence_shortcuts_change_nothing(prefix: bytes, body: bytes, text: str, long: bool) -> None:
    data = prefix + text.encode("utf-8", "surrogatepass") + body
    if long:
        data = (data or b"x") * (5000 // len(data or b"x") + 1)
    assert REG["text"].confidence(data, DecodeContext()) == _text_confidence_reference(data)


OPCODE_SOUP = b"()]}.NKJXq\x85\x86\x87Rbsuaetl\x93\x8c\x81\x92cihgp\x94"


@FUZZ
@given(pickled_ops=st.lists(st.sampled_from(list(OPCODE_SOUP)), max_size=60), tail=st.binary(max_size=20))
def test_pickle_reader_survives_random_opcode_soup(pickled_ops: list[int], tail: bytes) -> None:
    data = b"\x80\x04" + bytes(pickled_ops) + tail + b"."
    view = REG.decode_with("pickle", data)
    _check(view, data, DecodeContext())


@FUZZ
@given(text=st.text(max_size=300))
def test_encoders_only_raise_encode_error(text: str) -> None:
    for name in REG:
        for ctx in (DecodeContext(), DecodeContext(struct_format="<Hb a b")):
            try:
                out = REG.encode(name, text, ctx)
            except EncodeError:
                continue
            assert isinstance(out, bytes)


# Plain values every format can carry
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
JSONISH = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
    max_leaves=25,
)
PLAIN = st.recursive(
    _scalars | st.binary(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=8) | st.integers(), kids, max_size=5)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=25,
)


def _concatenated(values: list[object]) -> str:
    """Concatenated JSON ("{}{}", "true1"): no separator, except where two numbers would read as one ("1" "0" is
    the single value 10 on the wire, for any decoder), which a sender must separate with whitespace."""
    out = ""
    for v in values:
        text = json.dumps(v)
        if out and out[-1].isdigit() and text[0].isdigit():
            out += " "
        out += text
    return out


@pytest.mark.slow
@FUZZ
@given(values=st.lists(JSONISH, min_size=1, max_size=3), ndjson=st.booleans())
@example(values=[1, 0], ndjson=False)
@example(values=[1.5, 2], ndjson=False)
@example(values=[True, 1, {}], ndjson=False)
def test_json_values_roundtrip(values: list[object], ndjson: bool) -> None:
    data = ("\n".join(json.dumps(v) for v in values) if ndjson else _concatenated(values)).encode()
    view = REG.decode_with("json", data)
    assert view.error is None and list(view.values) == values
    assert REG.encode("json", view.editable or "") == data


_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
MSGPACKABLE = st.recursive(
    _scalars | st.binary(max_size=20) | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=9)),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8) | _INT64 | st.binary(), kids),
    max_leaves=25,
)


@pytest.mark.slow
@FUZZ
@given(values=st.lists(MSGPACKABLE, min_size=1, max_size=3))
def test_msgpack_values_roundtrip(values: list[object]) -> None:
    data = b"".join(msgpack.packb(v) for v in values)
    view = REG.decode_with("msgpack", data)
    assert view.error is None
    assert view.can_encode
    assert REG.encode("msgpack", view.editable or "") == data


@pytest.mark.slow
@FUZZ
@given(value=PLAIN, protocol=st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL))
def test_pickle_plain_values_rebuild(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    view = REG.decode_with("pickle", data)
    assert view.error is None, view.error
    assert view.values == (value,)
    assert view.can_encode
    again = REG.decode_with("pickle", REG.encode("pickle", view.editable or ""))
    assert again.values == (value,)


def _same_simulation(data: bytes) -> bool:
    """The one-loop reader of plain pickles and the opcode-by-opcode reader end in the same state; returns
    whether the fast one took the pickle at all."""
    fast, slow = _Simulation(), _Simulation()
    try:
        slow_value, slow_capped = slow.run(data, fast=False)
    except Exception:
        slow_value = slow_capped = None
        slow.incomplete = "raised"
    if _run_plain(data) is None:
        return False
    value, capped = fast.run(data)
    assert render(value, 1 << 16)[0] == render(slow_value, 1 << 16)[0] and capped == slow_capped
    assert slow.incomplete is None and slow.stopped and fast.stopped
    assert (fast.ops, fast.protocol, fast.max_op_proto, fast.shared, fast.pos, fast.op_count) == (
        slow.ops, slow.protocol, slow.max_op_proto, slow.shared, slow.pos, slow.op_count)
    unlisted = _Simulation()
    unlisted.run(data, listing=False)
    assert unlisted.ops == [] and (unlisted.pos, unlisted.op_count) == (slow.pos, slow.op_count)
    assert not (slow.objects or slow.persistent or slow.modules or slow.extensions)
    assert not fast.small_tree or _is_plain(value)
    return True


def _has_costly_keys(value: object) -> bool:
    """Whether a dict key or set member of ``value`` is a big int or a tuple or frozenset: the fast reader leaves
    those to the full one, which hashes them within a budget."""
    if isinstance(value, dict):
        keys: list[object] = list(value)
        inner: list[object] = list(value.values())
    elif isinstance(value, set | frozenset):
        keys, inner = list(value), []
    elif isinstance(value, list | tuple):
        keys, inner = [], list(value)
    else:
        return False
    for k in keys:
        if isinstance(k, tuple | frozenset) or (type(k) is int and not -(1 << 60) < k < 1 << 60):
            return True
    return any(_has_costly_keys(v) for v in keys + inner)


SHAREABLE = st.recursive(
    _scalars | st.binary(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.booleans(), kids, max_size=5)
        | st.sets(st.integers() | st.text(max_size=4), max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@FUZZ
@given(value=SHAREABLE, protocol=st.integers(min_value=2, max_value=pickle.HIGHEST_PROTOCOL), twice=st.booleans())
def test_fast_plain_pickle_reader_matches_the_opcode_reader(value: object, protocol: int, twice: bool) -> None:
    if twice:
        value = [value, value, {"again": value}]  # memo references: BINGET, and "shared" when mutable
    data = pickle.dumps(value, protocol=protocol)
    took = _same_simulation(data)
    # below 4, sets (and bytes, below 3) are pickled as calls: the full reader's; so are keys whose hash is costly
    assert took or protocol < 4 or _has_costly_keys(value)
    for cut in {1, len(data) // 2, len(data) - 1}:  # cut short: the fast reader leaves it to the other one
        assert not _same_simulation(data[:cut])


@FUZZ
@given(pickled_ops=st.lists(st.sampled_from(list(OPCODE_SOUP)), max_size=60), tail=st.binary(max_size=20))
def test_fast_plain_pickle_reader_agrees_on_opcode_soup(pickled_ops: list[int], tail: bytes) -> None:
    _same_simulation(b"\x80\x04" + bytes(pickled_ops) + tail + b".")


def test_fast_plain_pickle_reader_takes_what_games_send_and_nothing_else() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    for value in ({"type": "pos", "x": 12345, "y": 7, "hp": 0.5}, [1, -2, 2**70, None, True, b"\x00"], cyclic,
                  {(1, 2): frozenset({3}), "s": {4}}, "é" * 300, ()):
        for protocol in range(4, pickle.HIGHEST_PROTOCOL + 1):
            assert _same_simulation(pickle.dumps(value, protocol=protocol)), (value, protocol)
    for protocol in (2, 3):  # pygame tutorials' default is often protocol 2 or 3
        assert _same_simulation(pickle.dumps({"type": "pos", "x": [1, 2.5], "name": "p1"}, protocol=protocol))
    import collections

    for other in (collections.OrderedDict(a=1), pickle.dumps(1, protocol=1), b"cos\nsystem\n(S'x'\ntR."):
        data = other if isinstance(other, bytes) else pickle.dumps(other, protocol=4)
        assert _run_plain(data) is None


@FUZZ
@given(
    records=st.lists(
        st.tuples(
            st.integers(0, 65535),
            st.floats(width=32, allow_nan=False),
            st.floats(width=32, allow_nan=False),
            st.binary(max_size=12),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_struct_records_roundtrip(records: list[tuple[int, float, float, bytes, int]]) -> None:
    ctx = DecodeContext(struct_format="<Hff12sB player_id x y name state")
    data = b"".join(struct.pack("<Hff12sB", *r) for r in records)
    view = REG.decode(data, ctx)
    assert view.decoder == "struct"
    assert REG.encode("struct", view.editable or "", ctx) == data
    first = view.values[0]
    assert isinstance(first, dict)
    assert first["x"] == records[0][1] or math.isinf(records[0][1])


def test_struct_padding_bytes_survive_a_round_trip() -> None:
    ctx = DecodeContext(struct_format="<3f2x5s")
    data = bytes(12) + b"\x00\x01" + bytes(5)
    view = REG.decode_with("struct", data, ctx)
    assert not view.can_encode or REG.encode("struct", view.editable or "", ctx) == data


# ---------------------------------------------------------------------------------------------------------
# A time budget per input (issue 16): hostile bytes must cost the pickle reader and the msgpack and JSON decoders
# time proportional to their size. The deadline is generous (2 s for inputs of at most a few hundred KB, which
# decode in well under 100 ms): it catches blow-ups (exponential hashing, quadratic trees), not noise.

TIMED = settings(max_examples=100, deadline=2000, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
LITE, FULL = DecodeContext(detail=False), DecodeContext()


def _decode_everything(data: bytes, names: tuple[str, ...]) -> None:
    for ctx in (LITE, FULL):
        for name in names:
            view = REG.decode_with(name, data, ctx)
            assert len(view.summary) <= SUMMARY_MAX and _nodes(view.fields) <= MAX_NODES + 1
            assert len(view.text) <= 8 * MAX_DUMP + 1000
        REG.decode(data, ctx)


DEEP_DECODERS = ("pickle", "msgpack", "json")


@pytest.mark.timeout(300)  # 100 inputs of at most 2 s each; a blow-up never returns
@TIMED
@given(prefix=PREFIXES, body=st.binary(max_size=2000))
def test_random_bytes_cost_the_deep_decoders_bounded_time(prefix: bytes, body: bytes) -> None:
    _decode_everything(prefix + body, DEEP_DECODERS)


@pytest.mark.timeout(300)  # 100 inputs of at most 2 s each; a blow-up never returns
@TIMED
@given(value=SHAREABLE, protocol=st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL), twice=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255), st.booleans()), max_size=8))
def test_mutated_pickles_cost_the_reader_bounded_time(value: object, protocol: int, twice: bool,
                                                      edits: list[tuple[int, int, bool]]) -> None:
    if twice:
        value = [value, value, {"again": value}]
    data = bytearray(pickle.dumps(value, protocol=protocol))
    for pos, byte, insert in edits:  # byte flips and insertions, anywhere
        i = pos % (len(data) + 1)
        if insert:
            data.insert(i, byte)
        elif i < len(data):
            data[i] = byte
    _decode_everything(bytes(data), ("pickle",))


def _memo_program(steps: list[tuple[str, int, int]]) -> bytes:
    """A protocol 4 pickle that builds one object per step from earlier ones (through the memo, mostly the most
    recent: sharing compounds), then returns a list of the last few. What ``pickle.dumps`` never writes: deep
    shared tuples as dict keys, set and frozenset members, self references, deep nesting."""
    out = bytearray(b"\x80\x04")
    count = 0

    def put() -> None:
        nonlocal count
        out.extend(b"\x94")  # MEMOIZE: memo[count] = top
        count += 1

    def ref(x: int) -> bytes:
        i = count - 1 - (x % 3) if x % 5 else x % count  # mostly one of the three most recent
        i = max(0, i)
        return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)

    for leaf in (b")", b"K\x07", b"\x8c\x01a", b"\x8a\x09" + (17 * ((1 << 61) - 1)).to_bytes(9, "little")):
        out += leaf
        put()
        out += b"0"  # POP
    for op, a, b in steps:
        if op == "tuple2":
            out += ref(a) + ref(b) + b"\x86"
        elif op == "tuple3":
            out += ref(a) + ref(b) + ref(a + b) + b"\x87"
        elif op == "list":
            out += b"](" + ref(a) + ref(b) + b"e"
        elif op == "self_list":
            itself = b"h" + bytes([count]) if count < 256 else b"j" + struct.pack("<I", count)
            out += b"]\x94(" + itself * (1 + a % 2000) + b"e"
            count += 1
            out += b"0"
            continue
        elif op == "dict_key":
            out += b"}" + ref(a) + ref(b) + b"s"
        elif op == "dict_keys":
            out += b"}(" + b"".join(ref(a + k) + ref(b) for k in range(1 + b % 50)) + b"u"
        elif op == "set":
            out += b"\x8f(" + ref(a) + ref(b) + b"\x90"
        elif op == "frozenset":
            out += b"(" + ref(a) + ref(b) + b"\x91"
        elif op == "set_call":  # set(x) through REDUCE: rebuilt from x when x is a list or tuple
            out += b"c__builtin__\nset\n" + ref(a) + b"\x85R"
        elif op == "nest":
            depth = 1 + a % 3000
            out += b"]" * depth + b"a" * (depth - 1)
        put()
        out += b"0"
    out += b"(" + b"".join(ref(k) for k in range(3)) + b"l."
    return bytes(out)


MEMO_STEPS = st.lists(
    st.tuples(st.sampled_from(["tuple2", "tuple2", "tuple2", "tuple3", "list", "self_list", "dict_key", "dict_keys",
                               "set", "frozenset", "set_call", "nest"]),
              st.integers(0, 10_000), st.integers(0, 10_000)),
    min_size=1, max_size=120,
)


@pytest.mark.timeout(300)  # 100 inputs of at most 2 s each; a blow-up never returns
@TIMED
@given(steps=MEMO_STEPS)
@example(steps=[("tuple2", 3, 3)] * 60 + [("dict_key", 3, 1), ("set", 3, 3), ("frozenset", 3, 3)])  # 2**60 leaves
@example(steps=[("self_list", 1999, 0)] * 3)
@example(steps=[("list", 3, 3)] + [("dict_keys", 1, 49)] * 30 + [("tuple2", 3, 3)] * 20 + [("set_call", 3, 0)] * 60)
def test_memo_reuse_and_deep_nesting_cost_the_pickle_reader_bounded_time(steps: list[tuple[str, int, int]]) -> None:
    _decode_everything(_memo_program(steps), ("pickle",))


_PAIRS = colliding_pairs(20_000)
_TIMESTAMPS = colliding_timestamps(20_000)


@pytest.mark.slow
@pytest.mark.timeout(300)  # 100 inputs of at most 2 s each; a blow-up never returns
@TIMED
@given(kind=st.sampled_from(["arrays", "maps", "array_keys", "timestamp_keys", "int_keys", "values"]),
       n=st.integers(1, 20_000), depth=st.integers(1, 100_000))
@example(kind="timestamp_keys", n=20_000, depth=1)  # 15 s of Timestamp.__eq__ before
@example(kind="array_keys", n=20_000, depth=1)
def test_structured_msgpack_costs_bounded_time(kind: str, n: int, depth: int) -> None:
    if kind == "arrays":
        data = b"\x91" * depth + b"\xc0"
    elif kind == "maps":
        data = b"\x81\xa1k" * depth + b"\xc0"
    elif kind == "array_keys":
        data = b"\xde" + struct.pack(">H", n) + b"".join(
            b"\x92\xcf" + struct.pack(">Q", a) + b"\xd3" + struct.pack(">q", b) + b"\xc0" for a, b in _PAIRS[:n])
    elif kind == "timestamp_keys":
        data = b"\xde" + struct.pack(">H", n) + b"".join(
            b"\xc7\x0c\xff" + struct.pack(">Iq", ns, seconds) + b"\xc0" for seconds, ns in _TIMESTAMPS[:n])
    elif kind == "int_keys":
        data = b"\xde" + struct.pack(">H", n) + b"".join(
            b"\xcf" + struct.pack(">Q", (k % 9) * ((1 << 61) - 1)) + b"\xc0" for k in range(n))  # 9 share hash 0
    else:
        data = b"\x90" * depth
    _decode_everything(data, ("msgpack",))


@pytest.mark.slow
@pytest.mark.timeout(300)  # 100 inputs of at most 2 s each; a blow-up never returns
@TIMED
@given(kind=st.sampled_from(["arrays", "objects", "values", "delimited", "indent", "number"]),
       depth=st.integers(1, 100_000))
def test_structured_json_costs_bounded_time(kind: str, depth: int) -> None:
    ctx_names: tuple[str, ...] = ("json",)
    if kind == "arrays":
        data = b"[" * depth + b"]" * depth
    elif kind == "objects":
        data = b'{"a":' * depth + b"1" + b"}" * depth
    elif kind == "values":
        data = b"[] " * depth
    elif kind == "delimited":
        data = b'{"a": 1}' + b"\n" * depth + b"{"
        for ctx in (DecodeContext(json_delimiter=b"\n"), DecodeContext(json_delimiter=b"\n", detail=False)):
            REG.decode_with("json", data, ctx)
    elif kind == "indent":
        d = 1 + depth % 900
        data = (b"[" * d + b"]" * d) * (1 + 200_000 // (2 * d))
    else:
        data = b"1" * (depth % 20_000 + 1)
    _decode_everything(data, ctx_names)

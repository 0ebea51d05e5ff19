"""Decoder registry and the built-in decoders (text, JSON, msgpack, struct, hex) on real-world samples."""

from __future__ import annotations

import importlib.metadata
import json
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

from inspector.decode import (
    EMPTY_CONTEXT,
    ENTRY_POINT_GROUP,
    MAX_DUMP,
    MAX_NODES,
    SUMMARY_MAX,
    DecodeContext,
    DecoderRegistry,
    EncodeError,
    Field,
    HexDecoder,
    View,
    builtin_decoders,
    parse_layout,
)
from proxy.model import Direction

ROOT = Path(__file__).resolve().parent.parent
WELCOME = "Hello from the exercise server! 🚀"
PLAYER = "<Hff12sB player_id x y name state"


@pytest.fixture
def reg() -> DecoderRegistry:
    return DecoderRegistry(builtin_decoders())


def count_fields(fields: tuple[Field, ...]) -> int:
    return sum(1 + count_fields(f.children) for f in fields)


def roundtrip(reg: DecoderRegistry, view: View, ctx: DecodeContext = EMPTY_CONTEXT) -> bytes:
    assert view.can_encode and view.editable is not None
    return reg.encode(view.decoder, view.editable, ctx)


# ---------------------------------------------------------------------------------------------------------
# A table of real-world samples: bytes, context, the decoder auto must pick, a substring of the summary.

JSON_BODY = json.dumps({"type": "state", "players": [{"id": 1, "pos": {"x": 3.5, "y": -2}}]}).encode()
SAMPLES = [
    ("text welcome", WELCOME.encode(), DecodeContext(), "text", '"Hello from the exercise server! 🚀"'),
    ("text reply", "Ping received! 📥".encode(), DecodeContext(), "text", "Ping received! 📥"),
    ("json ping", json.dumps({"type": "ping", "id": 3}).encode(), DecodeContext(), "json", '"type": "ping"'),
    ("json compact", b'{"type":"move","dx":1}', DecodeContext(), "json", '{"type":"move","dx":1}'),
    ("ndjson", b'{"a": 1}\n{"a": 2}\n', DecodeContext(), "json", "[2 values]"),
    ("json concatenated", b'{"a": 1}{"a": 2}[3]', DecodeContext(), "json", "[3 values]"),
    ("json length prefix", struct.pack("!I", len(JSON_BODY)) + JSON_BODY, DecodeContext(), "json", "[len "),
    (
        "msgpack stream",
        msgpack.packb({"cmd": "move", "x": 1}) + msgpack.packb({"cmd": "shoot", "angle": 0.5}),
        DecodeContext(),
        "msgpack",
        "[2 objects] {'cmd': 'move', 'x': 1}",
    ),
    ("msgpack array", msgpack.packb([1, "two", b"\x03"]), DecodeContext(), "msgpack", "[1, 'two', b'\\x03']"),
    (
        "struct record",
        struct.pack("<Hff12sB", 7, 1.5, -2.25, b"bob", 4),
        DecodeContext(struct_format=PLAYER),
        "struct",
        "player_id=7 x=1.5 y=-2.25 name='bob' state=4",
    ),
    ("binary", bytes(range(256)), DecodeContext(), "hex", "00 01 02 03"),
    ("empty", b"", DecodeContext(), "text", '""'),
]


@pytest.mark.parametrize(("label", "data", "ctx", "decoder", "summary"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_auto_picks_the_right_decoder(
    reg: DecoderRegistry, label: str, data: bytes, ctx: DecodeContext, decoder: str, summary: str
) -> None:
    view = reg.decode(data, ctx)
    assert view.error is None
    assert view.decoder == decoder, (label, reg.confidences(data, ctx))
    assert summary in view.summary
    assert len(view.summary) <= SUMMARY_MAX
    assert "\n" not in view.summary


@pytest.mark.parametrize(("label", "data", "ctx", "decoder", "summary"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_encode_of_decode_is_identity_where_claimed(
    reg: DecoderRegistry, label: str, data: bytes, ctx: DecodeContext, decoder: str, summary: str
) -> None:
    view = reg.decode(data, ctx)
    assert view.can_encode, label
    assert roundtrip(reg, view, ctx) == data


def test_every_decoder_can_be_forced_and_never_raises(reg: DecoderRegistry) -> None:
    data = b"\x80\x04not really a pickle."
    for name in reg:
        view = reg.decode(data, DecodeContext(decode_as=name))
        assert view.decoder == name
        if view.error:
            assert "00000000  80 04 6e 6f" in view.text  # the error view carries the hex dump
            assert view.summary.startswith("⚠")


# ---------------------------------------------------------------------------------------------------------
# text


def test_welcome_with_emoji_split_across_two_messages(reg: DecoderRegistry) -> None:
    whole = WELCOME.encode()
    first, second = whole[:-2], whole[-2:]
    assert first.endswith(b"\xf0\x9f")
    a = reg.decode(first)
    b = reg.decode(second)
    assert a.decoder == b.decoder == "text"
    assert a.error is None and b.error is None
    assert a.text.endswith("…\\xf0\\x9f")
    assert "Hello from the exercise server! " in a.summary
    assert any("incomplete UTF-8 sequence, continues in next message" in w for w in a.warnings)
    assert b.text.startswith("\\x9a\\x80…")
    assert any("previous message" in w for w in b.warnings)
    assert roundtrip(reg, a) + roundtrip(reg, b) == whole


def test_text_escapes_controls_and_invalid_bytes(reg: DecoderRegistry) -> None:
    data = b"a\\b\x00c\x1b[31m\rred\xff\n\tend"
    view = reg.decode_with("text", data)
    assert view.summary == '"a\\\\b\\x00c\\x1b[31m\\rred\\xff\\n\\tend"'
    assert "\n\tend" in view.text  # the detail pane keeps real newlines and tabs
    assert any("not valid UTF-8" in w for w in view.warnings)
    assert roundtrip(reg, view) == data


def test_text_line_fields_have_byte_ranges(reg: DecoderRegistry) -> None:
    data = "héllo\nworld\n".encode()
    view = reg.decode_with("text", data)
    assert [(f.name, f.start, f.end) for f in view.fields] == [("line 1", 0, 6), ("line 2", 7, 12)]


def test_text_encode_reads_escapes() -> None:
    reg = DecoderRegistry(builtin_decoders())
    assert reg.encode("text", "a\\x00\\u00e9\\\\n\\r") == b"a\x00\xc3\xa9\\n\r"


# ---------------------------------------------------------------------------------------------------------
# JSON


def test_json_tree_and_values(reg: DecoderRegistry) -> None:
    data = json.dumps({"type": "move", "pos": {"x": 3, "y": 4}, "tags": ["a", "b"]}).encode()
    view = reg.decode(data)
    assert view.values == ({"type": "move", "pos": {"x": 3, "y": 4}, "tags": ["a", "b"]},)
    (root,) = view.fields
    assert (root.start, root.end) == (0, len(data))
    assert [c.name for c in root.children] == ["type", "pos", "tags"]
    assert root.children[1].children[0].value_repr == "3"
    assert '"type": "move"' in view.text and "\n" in view.text  # pretty-printed


def test_json_value_byte_ranges_with_multibyte_text(reg: DecoderRegistry) -> None:
    data = '{"n": "é"}\n{"n": "ü"}'.encode()
    view = reg.decode(data)
    assert [(f.start, f.end) for f in view.fields] == [(0, 11), (12, 23)]


def test_json_user_delimiter(reg: DecoderRegistry) -> None:
    ctx = DecodeContext(json_delimiter=b"\x00")
    data = b'{"a": 1}\x00{"b": 2}\x00'
    view = reg.decode(data, ctx)
    assert view.decoder == "json" and view.values == ({"a": 1}, {"b": 2})
    assert roundtrip(reg, view, ctx) == data


def test_json_incomplete_tail_is_a_warning(reg: DecoderRegistry) -> None:
    view = reg.decode(b'{"a": 1}{"b": "unfini')
    assert view.decoder == "json" and view.values == ({"a": 1},)
    assert any("incomplete" in w for w in view.warnings)
    assert not view.can_encode


def test_json_garbage_falls_back_to_text(reg: DecoderRegistry) -> None:
    view = reg.decode(b"{not json at all}")
    assert view.decoder == "text"
    forced = reg.decode(b"{not json at all}", DecodeContext(decode_as="json"))
    assert forced.error is not None and forced.decoder == "json"


def test_json_length_prefix_field_and_reencode_recomputes_it(reg: DecoderRegistry) -> None:
    data = struct.pack("!I", len(JSON_BODY)) + JSON_BODY
    view = reg.decode(data)
    assert view.fields[0].name == "length prefix" and (view.fields[0].start, view.fields[0].end) == (0, 4)
    assert view.editable is not None
    edited = view.editable.replace('"state"', '"longer state"')
    out = reg.encode("json", edited)
    assert struct.unpack("!I", out[:4])[0] == len(out) - 4
    # The same header + body as fixed-size struct + hex, as a user would also look at it:
    hexview = reg.decode_with("hex", data)
    assert hexview.text.startswith(f"00000000  00 00 00 {len(JSON_BODY):02x} 7b 22")


def test_json_encode_rejects_invalid(reg: DecoderRegistry) -> None:
    with pytest.raises(EncodeError, match="not valid JSON"):
        reg.encode("json", '{"a": }')


# ---------------------------------------------------------------------------------------------------------
# msgpack


def test_msgpack_ext_timestamp_bin_str_and_non_string_keys(reg: DecoderRegistry) -> None:
    objs = [
        {1: "one", 2.5: b"bin", None: True, "s": "str"},
        msgpack.ExtType(5, b"\x01\x02"),
        msgpack.Timestamp(1_700_000_000, 123),
        [b"", "", -1, 2**63, 1.25],
    ]
    data = b"".join(msgpack.packb(o) for o in objs)
    view = reg.decode(data)
    assert view.decoder == "msgpack"
    assert list(view.values) == objs
    assert "2.5: b'bin'" in view.text and "'s': 'str'" in view.text  # bin and str stay distinct
    assert "ExtType(code=5, data=b'\\x01\\x02')" in view.text
    assert "Timestamp(seconds=1700000000, nanoseconds=123)" in view.text
    assert view.fields[0].start == 0
    assert view.fields[-1].end == len(data)
    assert roundtrip(reg, view) == data


def test_msgpack_array_keys_shown_as_tuples(reg: DecoderRegistry) -> None:
    data = b"\x81\x92\x01\x02\xa1x"  # {[1, 2]: "x"}
    view = reg.decode(data)
    assert view.decoder == "msgpack" and view.values == ({(1, 2): "x"},)
    assert roundtrip(reg, view) == data


def test_msgpack_incomplete_last_object_is_a_warning(reg: DecoderRegistry) -> None:
    data = msgpack.packb({"a": 1}) + msgpack.packb({"b": "long string"})[:-3]
    view = reg.decode(data)
    assert view.decoder == "msgpack" and view.values == ({"a": 1},)
    assert any("incomplete" in w for w in view.warnings)
    assert not view.can_encode


def test_msgpack_non_canonical_packing_is_flagged(reg: DecoderRegistry) -> None:
    data = msgpack.packb(1.5, use_single_float=True)
    view = reg.decode_with("msgpack", data)
    assert any("different bytes" in w for w in view.warnings)


def test_msgpack_encode_literal_forms(reg: DecoderRegistry) -> None:
    edited = "{'cmd': 'move', 'raw': b'\\x00'}\n[Ext(3, b'z'), Timestamp(seconds=1, nanoseconds=0), nan, -inf]"
    out = reg.encode("msgpack", edited)
    values = reg.decode_with("msgpack", out).values
    assert values[0] == {"cmd": "move", "raw": b"\x00"}
    assert values[1][:2] == [msgpack.ExtType(3, b"z"), msgpack.Timestamp(1, 0)]  # type: ignore[index]
    with pytest.raises(EncodeError, match="not a literal"):
        reg.encode("msgpack", "__import__('os').system('true')")
    with pytest.raises(EncodeError):
        reg.encode("msgpack", "{1: 2")


# ---------------------------------------------------------------------------------------------------------
# struct


def test_struct_record_fields_with_byte_ranges_and_nul_padding(reg: DecoderRegistry) -> None:
    data = struct.pack("<Hff12sB", 7, 1.5, -2.25, b"bob", 4)
    ctx = DecodeContext(struct_format=PLAYER)
    view = reg.decode(data, ctx)
    assert view.decoder == "struct"
    assert [(f.name, f.value_repr, f.start, f.end) for f in view.fields] == [
        ("player_id", "7", 0, 2),
        ("x", "1.5", 2, 6),
        ("y", "-2.25", 6, 10),
        ("name", "'bob'", 10, 22),
        ("state", "4", 22, 23),
    ]
    assert view.values == ({"player_id": 7, "x": 1.5, "y": -2.25, "name": b"bob", "state": 4},)
    assert view.editable is not None and "name = b'bob'" in view.editable
    assert roundtrip(reg, view, ctx) == data
    edited = view.editable.replace("state = 4", "state = 5").replace("name = b'bob'", "name = 'alice'")
    assert reg.encode("struct", edited, ctx) == struct.pack("<Hff12sB", 7, 1.5, -2.25, b"alice", 5)


def test_struct_several_records_repeat_counts_and_padding(reg: DecoderRegistry) -> None:
    ctx = DecodeContext(struct_format=">B3fx4s id pos tag")
    layout = parse_layout(ctx.struct_format or "")
    assert layout.size == 1 + 12 + 1 + 4
    data = struct.pack(">B3fx4s", 1, 1.0, 2.0, 3.0, b"ab") + struct.pack(">B3fx4s", 2, 0.5, 0.25, 0.125, b"cd")
    view = reg.decode(data, ctx)
    assert view.decoder == "struct" and "[2 records]" in view.summary
    rec1 = view.fields[1]
    assert (rec1.start, rec1.end) == (18, 36)
    pos = rec1.children[1]
    assert pos.name == "pos" and [(c.start, c.end) for c in pos.children] == [(19, 23), (23, 27), (27, 31)]
    assert rec1.children[2].start == 32  # after the pad byte
    assert view.values[1] == {"id": 2, "pos": [0.5, 0.25, 0.125], "tag": b"cd"}
    assert roundtrip(reg, view, ctx) == data


def test_struct_confidence_only_when_configured_and_sized(reg: DecoderRegistry) -> None:
    data = struct.pack("<Hff12sB", 7, 1.5, -2.25, b"bob", 4)
    sd = reg["struct"]
    assert sd.confidence(data, DecodeContext()) == 0.0
    assert sd.confidence(data, DecodeContext(struct_format=PLAYER)) > 0.9
    assert sd.confidence(data * 3, DecodeContext(struct_format=PLAYER)) > 0.5
    assert sd.confidence(data + b"x", DecodeContext(struct_format=PLAYER)) == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [("<Hq a b c", "3 names for 2 fields"), ("<Hz a", "unknown struct code"), ("<H 1a", "not an identifier"),
     ("<HH a a", "appears twice"), ("", "empty")],
)  # fmt: skip
def test_struct_bad_formats_are_reported(reg: DecoderRegistry, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_layout(spec)
    view = reg.decode(b"\x00\x01", DecodeContext(struct_format=spec, decode_as="struct"))
    assert view.error is not None


def test_struct_encode_errors(reg: DecoderRegistry) -> None:
    ctx = DecodeContext(struct_format="<Hb a b")
    with pytest.raises(EncodeError, match="no value for b"):
        reg.encode("struct", "a = 1", ctx)
    with pytest.raises(EncodeError, match="record 0"):
        reg.encode("struct", "a = 1\nb = 1000", ctx)
    with pytest.raises(EncodeError, match="no struct format"):
        reg.encode("struct", "a = 1", DecodeContext())


# ---------------------------------------------------------------------------------------------------------
# hex


def test_hex_dump_layout_and_encode_forms(reg: DecoderRegistry) -> None:
    data = b"Hello, hex world!\x00\xff"
    view = reg.decode_with("hex", data)
    assert view.text.splitlines()[0] == "00000000  48 65 6c 6c 6f 2c 20 68  65 78 20 77 6f 72 6c 64  |Hello, hex world|"
    assert view.text.splitlines()[1].startswith("00000010  21 00 ff")
    assert roundtrip(reg, view) == data
    assert reg.encode("hex", "48 65\n6c6c 6f") == b"Hello"
    with pytest.raises(EncodeError):
        reg.encode("hex", "4g")


def test_hex_confidence_is_lowest_but_always_available(reg: DecoderRegistry) -> None:
    for data in (b"", b"abc", b"\x00" * 10):
        scores = dict(reg.confidences(data))
        assert scores["hex"] > 0 and scores["hex"] == min(scores.values())


# ---------------------------------------------------------------------------------------------------------
# registry: decode as, plugins, failures


def test_decode_as_per_connection_and_direction(reg: DecoderRegistry) -> None:
    data = json.dumps({"a": 1}).encode()
    reg.set_decode_as("hex", conn_id=2)
    reg.set_decode_as("text", direction=Direction.S2C)
    reg.set_decode_as("msgpack", conn_id=2, direction=Direction.S2C)
    assert reg.decode(data, reg.context_for(1, Direction.C2S)).decoder == "json"
    assert reg.decode(data, reg.context_for(1, Direction.S2C)).decoder == "text"
    assert reg.decode(data, reg.context_for(2, Direction.C2S)).decoder == "hex"
    assert reg.decode(data, reg.context_for(2, Direction.S2C)).decoder == "msgpack"
    reg.set_decode_as("auto", conn_id=2)
    assert reg.decode(data, reg.context_for(2, Direction.C2S)).decoder == "json"
    reg.set_struct_format(PLAYER, conn_id=5)
    assert reg.context_for(5, Direction.C2S).struct_format == PLAYER
    assert reg.context_for(6, Direction.C2S).struct_format is None
    with pytest.raises(KeyError):
        reg.set_decode_as("nope")


class _Exploding:
    name = "boom"

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        if data == b"conf":
            raise RuntimeError("confidence bug")
        return 1.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        raise RuntimeError("decode bug")

    def encode(self, edited: str, ctx: DecodeContext) -> bytes:
        raise RuntimeError("encode bug")


def test_a_failing_decoder_gives_an_error_view_and_auto_moves_on(reg: DecoderRegistry) -> None:
    reg.register(_Exploding())
    view = reg.decode_with("boom", b"abc")
    assert view.error and "decode bug" in view.error and "61 62 63" in view.text
    assert reg.decode(b"abc").decoder == "text"  # most confident failed, the next one wins
    assert reg.decode(b"conf").decoder == "text"
    with pytest.raises(EncodeError, match="encode bug"):
        reg.encode("boom", "x")
    with pytest.raises(EncodeError, match="cannot encode"):
        DecoderRegistry([_NoEncode()]).encode("noenc", "x")


class _NoEncode:
    name = "noenc"

    def confidence(self, data: bytes, ctx: DecodeContext) -> float:
        return 0.0

    def decode(self, data: bytes, ctx: DecodeContext) -> View:
        return View("noenc", "")


def test_entry_point_plugins_load_and_broken_ones_are_reported(
    reg: DecoderRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sockscope_test_plugin_ok.py").write_text(
        textwrap.dedent(
            """
            from inspector.decode import View

            class Rot13:
                name = "rot13"
                def confidence(self, data, ctx):
                    return 0.99 if data.startswith(b"ROT:") else 0.0
                def decode(self, data, ctx):
                    import codecs
                    return View("rot13", codecs.decode(data[4:].decode(), "rot13"))
            """
        )
    )
    (tmp_path / "sockscope_test_plugin_broken.py").write_text("raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        importlib.metadata.EntryPoint("rot13", "sockscope_test_plugin_ok:Rot13", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("broken", "sockscope_test_plugin_broken:Thing", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("dup", "inspector.decode:JsonDecoder", ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("notadecoder", "json:dumps", ENTRY_POINT_GROUP),
    ]
    reg.load_entry_points(eps)
    assert "rot13" in reg
    assert reg.decode(b"ROT:uryyb").summary == "hello"
    errors = {e.entry_point.split(" ")[0]: e.error for e in reg.load_errors}
    assert set(errors) == {"broken", "dup", "notadecoder"}
    assert "missing dependency" in errors["broken"]
    assert "already registered" in errors["dup"]
    reg.load_entry_points()  # the real scan: whatever is installed, it does not raise


# ---------------------------------------------------------------------------------------------------------
# caps: big and deep messages do bounded work


def test_ten_megabyte_messages_are_capped(reg: DecoderRegistry) -> None:
    big_json = b'{"blob": "' + b"a" * (10 << 20) + b'"}'
    big_ndjson = b'{"i": 1}\n' * ((10 << 20) // 9)
    big_msgpack = msgpack.packb({"blob": b"\x00" * (10 << 20)})
    big_random = bytes(range(256)) * ((10 << 20) // 256)
    big_text = ("x" * 99 + "\n").encode() * ((10 << 20) // 100)
    for data in (big_json, big_ndjson, big_msgpack, big_random, big_text):
        for name in [*reg, "auto"]:
            view = reg.decode(data, DecodeContext(decode_as=name))
            assert len(view.summary) <= SUMMARY_MAX
            assert view.truncated or view.error is not None, (name, view.summary)
            assert len(view.text) <= 8 * MAX_DUMP + 1000, name
            assert count_fields(view.fields) <= MAX_NODES + 1
            assert not view.can_encode


def test_deeply_nested_values_are_bounded(reg: DecoderRegistry) -> None:
    deep_json = b"[" * 50_000 + b"]" * 50_000
    deep_msgpack = b"\x91" * 5_000 + b"\x00"
    wide = json.dumps(list(range(100_000))).encode()
    for data in (deep_json, deep_msgpack, wide):
        view = reg.decode(data)
        assert count_fields(view.fields) <= MAX_NODES + 1


# ---------------------------------------------------------------------------------------------------------
# house rules


def test_importing_decode_and_filters_does_not_import_qt() -> None:
    code = "import sys, inspector.decode, inspector.filters; print(sorted(m for m in sys.modules if 'PySide' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr


def test_inspector_never_loads_pickles_or_evaluates() -> None:
    banned = re.compile(r"pickle\.loads?\(|Unpickler|cPickle|(?<![\w.])eval\(|(?<![\w.])exec\(")
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted((ROOT / "inspector").rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if banned.search(line)
    ]
    assert hits == []


def test_hex_decoder_satisfies_the_protocols() -> None:
    from inspector.decode import Decoder, Encoder

    assert isinstance(HexDecoder(), Decoder) and isinstance(HexDecoder(), Encoder)


def test_with_deadline_copies_every_setting_and_set_deadline_changes_only_the_copy() -> None:
    from dataclasses import fields, replace

    from inspector.decode import set_deadline, with_deadline

    ctx = DecodeContext(direction=Direction.S2C, conn_id=7, struct_format="<H a", json_delimiter=b"|",
                        decode_as="json", detail=False, deadline_ns=1, framing="lines")
    assert {f.name for f in fields(DecodeContext)} == {"direction", "conn_id", "struct_format", "json_delimiter",
                                                      "decode_as", "detail", "deadline_ns", "framing"}  # its order
    own = with_deadline(ctx, 99)
    assert own == replace(ctx, deadline_ns=99) and own is not ctx
    set_deadline(own, 123)
    assert own.deadline_ns == 123 and ctx.deadline_ns == 1

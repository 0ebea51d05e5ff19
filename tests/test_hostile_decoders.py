"""Hostile inputs for the decoders and their users (issue 16): every decode is bounded by its input's size.

The corpus is ``tests/hostile/{pickle,msgpack,json,struct,text}/`` (built by ``tests/hostile_decoders_corpus.py``).
Work is shown bounded by deterministic measures where there is one (keys kept by identity, values visited, peak
memory, a deadline that is honoured within 256 steps); pytest-timeout is the backstop for the inputs whose cost
used to be exponential or quadratic (on the code before this change several never finish).

Assertions look at :func:`facts` of a view, never at the view: on a failure pytest would print the view, and
the repr of a hostile value is what these inputs make unbounded.
"""

from __future__ import annotations

import json
import pickle
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from inspector.decode import (
    MAX_DUMP,
    MAX_NODES,
    SUMMARY_MAX,
    DecodeContext,
    DecoderRegistry,
    Field,
    View,
    builtin_decoders,
    gave_up,
    parse_layout,
)
from inspector.decode._pickle import _Simulation
from inspector.interop.jsonl import JsonlExporter
from proxy.model import ConnectionOpened, Direction, Message
from tests import hostile_decoders_corpus as corpus

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent / "hostile"
REG = DecoderRegistry(builtin_decoders())
FILES = sorted(corpus.CORPUS)
PAST = 0
"""A deadline that has passed (``time.monotonic_ns()`` is far beyond it)."""
MAX_WORK = 50_000
"""``inspector.decode._struct.MAX_WORK`` (checked below)."""


def read(path: str) -> bytes:
    return (ROOT / path).read_bytes()


def nodes(fields: tuple[Field, ...]) -> int:
    return sum(1 + nodes(f.children) for f in fields)


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes allocated while ``fn`` runs (tracemalloc): a deterministic measure of its work."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class Facts(dict[str, object]):
    """A view's plain attributes (what a failing assertion may print)."""


def facts(view: View) -> Facts:
    assert isinstance(view, View)
    return Facts(decoder=view.decoder, error=view.error, summary=view.summary, warnings=list(view.warnings),
                 can_encode=view.can_encode, truncated=view.truncated, nodes=nodes(view.fields),
                 text=len(view.text), gave_up=gave_up(view), values=len(view.values))


def check_view(view: View) -> Facts:
    f = facts(view)
    assert len(f["summary"]) <= SUMMARY_MAX, f  # type: ignore[arg-type]
    assert f["nodes"] <= MAX_NODES + 1, f  # type: ignore[operator]
    assert f["text"] <= 8 * MAX_DUMP + 1000, f  # type: ignore[operator]
    return f


def kept_by_identity(f: Facts) -> bool:
    return any("kept by identity" in w for w in f["warnings"])  # type: ignore[attr-defined]


def contexts_for(path: str) -> list[DecodeContext]:
    if path.startswith("struct/"):
        return [DecodeContext(struct_format=read(path).decode(), decode_as="struct", detail=d) for d in (False, True)]
    return [DecodeContext(detail=d) for d in (False, True)]


# ---------------------------------------------------------------------------------------------------------
# the corpus


def test_corpus_files_are_what_their_generators_make() -> None:
    kinds = sorted({p.split("/", 1)[0] for p in FILES})  # tests/hostile/ also holds other areas' inputs
    assert kinds == ["json", "msgpack", "pickle", "struct", "text"]
    on_disk = sorted(str(p.relative_to(ROOT)) for k in kinds for p in (ROOT / k).iterdir() if p.name != "README.md")
    assert on_disk == FILES
    for path, (make, _) in corpus.CORPUS.items():
        assert read(path) == make(), f"{path} is stale: run python -m tests.hostile_decoders_corpus"
    for kind in kinds:
        assert (ROOT / kind / "README.md").read_text(encoding="utf-8") == corpus.readme(kind)


@pytest.mark.slow
@pytest.mark.timeout(20)
@pytest.mark.parametrize("path", FILES)
def test_every_hostile_input_decodes_within_its_budgets(path: str) -> None:
    """Auto and every decoder by name, summary-only and full: a view within the caps, never an exception, and
    a peak memory within a small multiple of the input (the struct layouts decode 64 bytes and 1 MB)."""
    data = read(path)
    messages = [bytes(64), bytes(2000) * 500] if path.startswith("struct/") else [data]
    for message in messages:
        for ctx in contexts_for(path):
            for name in ["auto", *REG]:
                f = check_view(REG.decode(message, ctx, None if name == "auto" else name))
                assert not f["gave_up"], f  # no deadline: only the decoders' own budgets
            # auto decodes twice (confidences, then the chosen decoders): 64x the input plus 8 MB is generous
            peak = peak_memory(lambda m=message, c=ctx: REG.decode(m, c))  # type: ignore[misc]
            assert peak < 64 * len(message) + (8 << 20), (path, peak)


# ---------------------------------------------------------------------------------------------------------
# 1. pickle: keys hashed within a budget, shared parts and cycles rendered within budgets

MEMO_KEYS = ["pickle/memo_tuple_d40_dict_key.pickle", "pickle/memo_tuple_d40_set_member.pickle",
             "pickle/memo_tuple_d40_frozenset_member.pickle", "pickle/memo_tuple_d40_reduce_set.pickle",
             "pickle/memo_tuple_d40_ordereddict_key.pickle"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", MEMO_KEYS)
def test_a_memo_reused_tuple_is_kept_by_identity_not_hashed(path: str) -> None:
    data = read(path)
    assert len(data) < 260
    for detail in (False, True):
        f = check_view(REG.decode(data, DecodeContext(detail=detail)))
        assert f["decoder"] == "pickle" and f["error"] is None and kept_by_identity(f), f
        assert "((((((((((((((((((((" in f["summary"][:40] and not f["can_encode"], f  # type: ignore[index]
    sim = _Simulation()
    sim.run(data)
    assert sim.keys.kept == 1 and sim.keys.left >= 0  # the hashing budget (16x the pickle) was never overrun


@pytest.mark.timeout(10)
def test_a_memo_reused_tuple_as_the_value_is_rendered_within_budget() -> None:
    data = read("pickle/memo_tuple_d40_value.pickle")
    f = check_view(REG.decode(data))
    assert f["decoder"] == "pickle" and f["error"] is None and not f["can_encode"], f  # no 2**40-node repr
    # rendered within 32x the pickle's size, plus the opcode listing (300 lines at most)
    assert f["truncated"] and f["text"] <= 32 * len(data) + 4096 + 300 * 90, f


@pytest.mark.timeout(5)
def test_a_list_holding_itself_14000_times_makes_a_tree_in_linear_time() -> None:
    data = read("pickle/self_list_14000.pickle")
    view = REG.decode(data)
    f = check_view(view)
    assert f["decoder"] == "pickle" and f["error"] is None and f["summary"].startswith("[<cycle>, <cycle>"), f  # type: ignore[attr-defined]
    value = view.fields[1]
    assert len(value.children) == MAX_NODES - 1 and value.children[0].value_repr == "<cycle>"


@pytest.mark.parametrize("path, kept", [("pickle/colliding_int_keys_5000.pickle", 5000 - 8),
                                        ("pickle/colliding_tuple_keys_2000.pickle", 2000 - 8)])
def test_keys_crafted_to_share_a_hash_are_kept_by_identity(path: str, kept: int) -> None:
    data = read(path)
    view = REG.decode(data)
    f = check_view(view)
    assert f["decoder"] == "pickle" and f["error"] is None and kept_by_identity(f), f
    (value,) = view.values
    assert isinstance(value, dict) and len(value) == kept + 8  # every key is there, none merged
    sim = _Simulation()
    sim.run(data)
    assert sim.keys.kept == kept  # at most 8 keys of one hash are hashed for real: no quadratic insertion


def test_a_string_shared_5000_times_is_never_repred_whole() -> None:
    """Its repr would be 150 MB: the exactness check counts each appearance of a string against a budget of 8x
    the pickle's size, so the value is rendered (within its own budget) instead."""
    data = read("pickle/shared_string_30k_x5000.pickle")
    f = check_view(REG.decode(data))
    assert f["decoder"] == "pickle" and f["error"] is None and not f["can_encode"], f
    assert peak_memory(lambda: REG.decode(data)) < 8 << 20
    assert peak_memory(lambda: REG.decode(data, DecodeContext(detail=False))) < 4 << 20


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", ["pickle/memo_list_rebuilt_by_set_x5000.pickle",
                                  "pickle/memo_pairs_rebuilt_by_ordereddict_x4000.pickle"])
def test_calls_rebuilt_from_a_memo_shared_argument_copy_it_within_budget(path: str) -> None:
    data = read(path)
    f = check_view(REG.decode(data))
    assert f["decoder"] == "pickle" and f["error"] is None, f
    assert any("shown as calls" in w for w in f["warnings"]), f  # type: ignore[attr-defined]
    sim = _Simulation()
    sim.run(data)
    assert sim.copy_left >= 0 and sim.not_rebuilt > 3900  # a few rebuilt, within twice the pickle's size


def test_pickle_memo_indexes_out_of_the_unpicklers_range_are_an_error() -> None:
    f = facts(REG.decode_with("pickle", read("pickle/colliding_memo_indexes.pickle")))
    assert "memo index" in (f["error"] or ""), f  # type: ignore[operator]


def test_the_protocol_0_probe_simulates_a_bounded_number_of_opcodes() -> None:
    data = read("pickle/protocol0_probe_4k.pickle")
    assert REG["pickle"].confidence(data, DecodeContext()) == 0.7
    assert REG.decode(data).decoder == "pickle"


# ---------------------------------------------------------------------------------------------------------
# 2. struct: layouts and decodes bounded


@pytest.mark.timeout(10)
@pytest.mark.parametrize("spec, message", [
    ("<" + "Q" * 100_000, "at most"),  # 138 s to parse before (offsets from calcsize of every prefix)
    (read("struct/fields_4097.layout").decode(), "more than 4096 fields"),
    (read("struct/zero_count_fields.layout").decode(), "holds no value"),
    (read("struct/huge_repeat_count.layout").decode(), "too large"),
], ids=["100000 Q", "4097 fields", "zero counts", "huge count"])
def test_absurd_struct_layouts_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_layout(spec)
    f = facts(REG.decode(bytes(64), DecodeContext(struct_format=spec, decode_as="struct")))
    assert message in (f["error"] or ""), f  # type: ignore[operator]


def test_the_struct_work_budget_is_the_decoders() -> None:
    from inspector.decode import _struct

    assert _struct.MAX_WORK == MAX_WORK


def test_a_layout_of_4096_fields_parses_in_linear_time() -> None:
    layout = parse_layout("<" + "Q" * 4096)
    assert layout.size == 8 * 4096 and layout.items[-1].offset == 8 * 4095


@pytest.mark.parametrize("spec", ["<" + "B" * 2000, "<" + "0s" * 4000 + "B", "<B"],
                         ids=["2000 fields", "4000 empty strings", "1 byte"])
def test_a_struct_decode_visits_a_bounded_number_of_values(spec: str) -> None:
    layout = parse_layout(spec)
    data = bytes(layout.size) * (1_000_000 // layout.size)
    for detail in (False, True):
        f = check_view(REG.decode(data, DecodeContext(struct_format=spec, decode_as="struct", detail=detail)))
        assert f["error"] is None and f["truncated"], f
        assert f["values"] * layout.n_values <= max(MAX_WORK, layout.n_values), f  # type: ignore[operator]
        assert any("only the first" in w for w in f["warnings"]), f  # type: ignore[attr-defined]
        assert f["summary"].startswith(f"[{len(data) // layout.size} records]"), f  # type: ignore[attr-defined]


def test_one_record_of_a_million_values_is_shown_cut() -> None:
    spec = read("struct/one_record_million_values.layout").decode()
    f = check_view(REG.decode(bytes(1_000_000), DecodeContext(struct_format=spec, decode_as="struct")))
    assert f["error"] is None and f["truncated"] and not f["can_encode"] and f["text"] < 10_000, f  # type: ignore[operator]
    assert f["summary"].startswith("field0=[0, 0, 0,") and f["summary"].endswith(", …]"), f  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------------------
# 3. every decoder: its own budgets, and the caller's deadline


@pytest.mark.parametrize("path", ["msgpack/colliding_timestamp_keys_2000.msgpack",
                                  "msgpack/colliding_array_keys_2000.msgpack"])
def test_msgpack_map_keys_crafted_to_share_a_hash_are_kept_by_identity(path: str) -> None:
    data = read(path)
    # Auto shows them as bytes (nothing in them is what a program sends: see test_decode_confidence) without
    # hashing a key; the user who asks for msgpack gets the guarded decode.
    assert facts(REG.decode(data))["decoder"] == "hex"
    for detail in (False, True):
        view = REG.decode(data, DecodeContext(detail=detail, decode_as="msgpack"))
        f = check_view(view)
        assert f["decoder"] == "msgpack" and f["error"] is None and kept_by_identity(f), f
        (value,) = view.values
        assert isinstance(value, dict) and len(value) == 2000
    bigger = corpus.msgpack_colliding_timestamp_keys(20_000)  # 100 s of Timestamp.__eq__ before
    assert facts(REG.decode(bigger, DecodeContext(decode_as="msgpack")))["decoder"] == "msgpack"


@pytest.mark.parametrize("path", ["msgpack/array32_claims_4g_items.msgpack", "msgpack/map32_claims_4g_pairs.msgpack",
                                  "msgpack/str32_claims_4g_bytes.msgpack", "msgpack/nested_arrays_20000.msgpack"])
def test_msgpack_lengths_and_nesting_are_bounded_by_the_message(path: str) -> None:
    data = read(path)
    f = facts(REG["msgpack"].decode(data, DecodeContext()))
    assert f["error"] is not None and not f["gave_up"], f
    assert peak_memory(lambda: REG["msgpack"].decode(data, DecodeContext())) < 16 * len(data) + (1 << 20)


def test_a_megabyte_of_empty_msgpack_arrays_is_bounded() -> None:
    data = b"\x90" * (1 << 20)
    assert facts(REG.decode(data, DecodeContext(detail=False)))["decoder"] == "hex"  # empty arrays are no evidence
    f = facts(REG.decode(data, DecodeContext(detail=False, decode_as="msgpack")))
    assert f["decoder"] == "msgpack" and f["values"] == 10_000 and f["truncated"], f


@pytest.mark.parametrize("path, error", [("json/nested_arrays_20000.json", "nested too deeply"),
                                         ("json/nested_objects_5000.json", "nested too deeply"),
                                         ("json/long_number_5000_digits.json", "cannot be read")])
def test_json_that_python_cannot_read_is_a_clear_error_not_an_exception(path: str, error: str) -> None:
    f = facts(REG["json"].decode(read(path), DecodeContext()))  # directly: the registry's guard is not needed
    assert error in (f["error"] or "") and f["summary"].startswith("⚠ json:"), f  # type: ignore[operator, attr-defined]


def test_a_megabyte_of_json_delimiters_is_skipped_without_a_list_of_pieces() -> None:
    data = b"\n" * (1 << 20)
    ctx = DecodeContext(json_delimiter=b"\n", decode_as="json")
    assert facts(REG.decode(data, ctx))["error"] == "no JSON value"
    assert peak_memory(lambda: REG.decode(data, ctx)) < 8 << 20  # the text itself is 1 MB (as str: 1 MB)
    spaced = b'{"a": 1}\n\n\n  \n' * 1000
    f = facts(REG.decode(spaced, ctx))
    assert f["error"] is None and f["values"] == 1000 and f["can_encode"], f


def test_indented_json_text_is_written_up_to_its_cap() -> None:
    data = read("json/indent_bomb.json")
    f = facts(REG.decode(data))
    assert f["decoder"] == "json" and f["truncated"] and f["text"] <= 4 * MAX_DUMP + 10, f  # type: ignore[operator]
    assert peak_memory(lambda: REG.decode(data)) < 16 << 20


LOOPING = {
    # (data, decoder): at least a few thousand steps for each decoder that loops in Python
    "pickle, plain values (fast reader)": (pickle.dumps(list(range(5000)), protocol=4), "pickle"),
    "pickle, objects (opcode walker)": (b"\x80\x02(" + b"cgame\nf\n)R" * 2000 + b"l.", "pickle"),
    "pickle, exactness walk": (b"\x80\x04" + corpus.memo_tuple(12) + b".", "pickle"),
    "msgpack, many objects": (msgpack.packb({"a": 1}) * 3000, "msgpack"),
    "json, many values": (b'{"a": 1} ' * 3000, "json"),
}


@pytest.mark.parametrize("name", list(LOOPING))
def test_a_passed_deadline_stops_every_looping_decoder_within_256_steps(name: str) -> None:
    data, decoder = LOOPING[name]
    ctx = DecodeContext(deadline_ns=PAST)
    if name == "pickle, exactness walk":
        ok = facts(REG.decode_with(decoder, data, DecodeContext(detail=False, deadline_ns=PAST)))
        assert ok["error"] is None, ok  # 62 opcodes: decoded; the walk of its 8,191-node tree is what stops
    view = REG.decode_with(decoder, data, ctx)
    f = facts(view)
    error = str(f["error"])
    assert f["gave_up"] and ("after 255 " in error or "after 256 " in error or "after 1024 nodes" in error), f
    assert data[:8].hex(" ") in view.text  # the hex dump is there
    auto = facts(REG.decode(data, ctx))
    assert auto["gave_up"] and auto["decoder"] == decoder, auto


def test_the_json_delimiter_loop_honours_the_deadline() -> None:
    data = b'{"a": 1}\n' * 3000
    f = facts(REG.decode(data, DecodeContext(json_delimiter=b"\n", deadline_ns=PAST)))
    assert f["gave_up"] and "after 255 values" in str(f["error"]), f


@pytest.mark.parametrize("data", [pickle.dumps({"type": "ping", "n": 1}, protocol=4), b"cos\nsystem\n(S'x'\ntR.",
                                  msgpack.packb({"type": "ping"}), b'{"type": "ping"}', b"hello"],
                         ids=["pickle", "pickle call", "msgpack", "json", "text"])
def test_a_small_message_is_decoded_whatever_the_deadline(data: bytes) -> None:
    """Fewer steps than a deadline check: a rule with no time left still sees what a ping is."""
    f = facts(REG.decode(data, DecodeContext(deadline_ns=PAST)))
    assert f["error"] is None and not f["gave_up"], f


def test_auto_gives_up_rather_than_try_the_next_decoder_past_the_deadline() -> None:
    data = b"\x80\x04\x95garbage that is not a pickle."  # pickle is the most confident, and fails
    assert not facts(REG.decode(data))["gave_up"]
    f = facts(REG.decode(data, DecodeContext(deadline_ns=PAST)))
    assert f["gave_up"] and "pickle decoder failed" in str(f["error"]), f


def test_a_length_prefixed_body_that_gave_up_says_so() -> None:
    body = pickle.dumps(list(range(5000)), protocol=4)
    f = facts(REG.decode(struct.pack(">I", len(body)) + body, DecodeContext(deadline_ns=PAST)))
    assert f["gave_up"] and f["decoder"] == "pickle" and "length prefix" in str(f["error"]), f


# ---------------------------------------------------------------------------------------------------------
# 5. the JSON-lines export reports what it gave up on and goes on


def records(*payloads: bytes) -> list[object]:
    out: list[object] = [ConnectionOpened(1, ("127.0.0.1", 5000), ("127.0.0.1", 6000), 0)]
    out += [Message(i + 1, 1, Direction.C2S, i, p, i, i) for i, p in enumerate(payloads)]
    return out


def test_jsonl_export_reports_a_message_it_gave_up_on_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    warned: list[str] = []
    big = pickle.dumps(list(range(5000)), protocol=4)
    with JsonlExporter(out, decode_budget_ns=0, warn=warned.append) as x:
        x.add_many(records(b'{"type": "ping"}', big, b"hello"))  # type: ignore[arg-type]
        assert x.gave_up == 1
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    msgs = [line for line in lines if line["type"] == "message"]
    assert [m["id"] for m in msgs] == [1, 2, 3]
    assert msgs[0]["decoded"]["values"] == [{"type": "ping"}] and msgs[2]["decoded"]["values"] == ["hello"]
    assert msgs[1]["decoded"]["error"].startswith("gave up: ") and bytes.fromhex(msgs[1]["hex"]) == big
    assert len(warned) == 1 and warned[0].startswith("jsonl: gave up decoding message #2 (conn #1 c2s, ")


@pytest.mark.timeout(20)
def test_jsonl_export_of_memo_bombs_is_bounded(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    payloads = [read(p) for p in [*MEMO_KEYS, "pickle/memo_tuple_d40_value.pickle", "pickle/self_list_14000.pickle",
                                  "pickle/shared_string_30k_x5000.pickle"]]
    with JsonlExporter(out, warn=pytest.fail) as x:
        x.add_many(records(*payloads, b"after"))  # type: ignore[arg-type]
    msgs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()][1:]
    assert len(msgs) == len(payloads) + 1 and msgs[-1]["decoded"]["values"] == ["after"]
    for m in msgs[:-1]:
        assert m["decoded"]["decoder"] == "pickle" and "values" not in m["decoded"]
        assert all(len(r) <= 10_001 for r in m["decoded"]["values_repr"])
    assert out.stat().st_size < 4 << 20


# ---------------------------------------------------------------------------------------------------------
# 4. the window: table rows and the detail pane decode with a deadline and say when they gave up


def window_over(*payloads: bytes) -> tuple[object, object, object]:
    from inspector.store import MessageStore
    from inspector.ui import none_guard
    from inspector.ui.decoding import Decoding
    from inspector.ui.detail import DetailPane
    from inspector.ui.message_model import MessageTableModel

    none_guard.install()  # as the window does: thousands of tree items are thousands of void Qt calls
    store = MessageStore()
    store.apply(records(*payloads))  # type: ignore[arg-type]
    decoding = Decoding(store, DecoderRegistry(builtin_decoders()))
    return decoding, MessageTableModel(store, decoding), DetailPane(store, decoding)


@pytest.mark.usefixtures("qapp")
def test_window_row_and_detail_pane_say_when_a_decode_gave_up() -> None:
    from inspector.ui.message_model import Column

    big = pickle.dumps(list(range(5000)), protocol=4)
    decoding, model, pane = window_over(b'{"type": "ping"}', big, b"hello")
    decoding.summary_budget_ns = decoding.view_budget_ns = 0  # type: ignore[attr-defined]  # any deadline passed
    rows = [model.data(model.index(i, Column.SUMMARY)) for i in range(3)]  # type: ignore[attr-defined]
    assert rows[0] == '{"type": "ping"}' and rows[2] == '"hello"'  # small messages decode whatever the deadline
    assert rows[1].startswith("⚠ gave up decoding after 0 ms (pickle): the deadline passed after 255 opcodes")
    assert rows[1].endswith("· 80 04 95 " + big[3:16].hex(" ") + " …")
    pane.show_row(1)  # type: ignore[attr-defined]
    assert pane.warnings.text().startswith("⚠ gave up decoding after 0 ms (pickle)")  # type: ignore[attr-defined]
    assert pane.hex.data == big and pane.hex.toPlainText().startswith("00000000  80 04 95")  # type: ignore[attr-defined]
    assert "80 04 95" in pane.text.toPlainText()  # type: ignore[attr-defined]  # the Text tab: the hex dump
    pane.show_row(0)  # type: ignore[attr-defined]
    assert pane.warnings.isHidden() and pane.view.values == ({"type": "ping"},)  # type: ignore[attr-defined]


@pytest.mark.timeout(20)
@pytest.mark.usefixtures("qapp")
def test_window_shows_memo_bombs_without_freezing() -> None:
    from inspector.ui.message_model import Column

    paths = [*MEMO_KEYS, "pickle/memo_tuple_d40_value.pickle", "pickle/self_list_14000.pickle",
             "pickle/colliding_tuple_keys_2000.pickle", "pickle/shared_string_30k_x5000.pickle"]
    _, model, pane = window_over(*(read(p) for p in paths))
    for row, path in enumerate(paths):
        # decoded (a loaded machine may make a summary give up: then the row says so), never frozen
        summary = model.data(model.index(row, Column.SUMMARY))  # type: ignore[attr-defined]
        assert not summary.startswith("⚠") or summary.startswith("⚠ gave up decoding after 50 ms (pickle)"), summary
        pane.show_row(row)  # type: ignore[attr-defined]
        view = pane.view  # type: ignore[attr-defined]
        assert view.decoder == "pickle" and (view.error is None or gave_up(view)), path


@pytest.mark.timeout(20)
def test_the_timelines_pairing_key_of_a_memo_bomb_is_bounded() -> None:
    """The timeline names a message type by a decoded field's value: a 2**40-node tuple must not be repr'd whole."""
    from inspector.decode import decode
    from inspector.timeline.pairing import key_text

    view = decode(read("pickle/memo_tuple_d40_value.pickle"), DecodeContext(decode_as="pickle", detail=False))
    assert view.error is None and view.values
    text = key_text(view.values[0])
    assert 0 < len(text) <= 81


@pytest.mark.parametrize("name", ["msgpack/colliding_array_keys_2000.msgpack",
                                  "msgpack/colliding_timestamp_keys_2000.msgpack"])
def test_msgpack_map_keys_admitted_in_python_stop_at_the_deadline(name: str) -> None:
    """Admitting a guarded key costs microseconds, all inside one call of the C unpacker: the deadline is checked
    there too, or a rule's 2 ms budget became 5-10 ms on these."""
    from inspector.decode import decode, gave_up

    view = decode(read(name), DecodeContext(detail=False, deadline_ns=1, decode_as="msgpack"))
    assert gave_up(view) and "map keys" in (view.error or ""), view.error

"""The filter language: grammar, semantics on messages and decoded fields, errors with columns, laziness."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import types

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.decode import DecoderRegistry, View, builtin_decoders
from inspector.filters import FIELD_NAMES, VALUE_NAMES, Filter, FilterError, parse_filter
from proxy.model import Direction, Message, MessageState, Origin

REG = DecoderRegistry(builtin_decoders())
REG.set_struct_format("<Hff12sB player_id x y name state", conn_id=9)


def msg(
    data: bytes,
    *,
    conn: int = 1,
    direction: Direction = Direction.C2S,
    origin: Origin = Origin.LIVE,
    state: MessageState = MessageState.FORWARDED,
    mid: int = 1,
) -> Message:
    return Message(mid, conn, direction, 0, data, 0, 0, origin=origin, state=state)


class _Game:
    def __init__(self) -> None:
        self.score = 7
        self.name = "arena"


def _game_pickle() -> bytes:
    mod = types.ModuleType("gamesrv")
    _Game.__module__, _Game.__qualname__ = "gamesrv", "Game"
    mod.Game = _Game  # type: ignore[attr-defined]
    sys.modules["gamesrv"] = mod
    try:
        return pickle.dumps(_Game(), protocol=4)
    finally:
        del sys.modules["gamesrv"]


PING = msg(json.dumps({"type": "ping", "id": 3, "pos": {"x": 5, "y": -1}, "items": ["a", "b"]}).encode())
PONG = msg(b'{"type": "pong"}', direction=Direction.S2C, conn=2, mid=2)
WELCOME = msg("Hello from the exercise server! 🚀".encode(), direction=Direction.S2C, mid=3)
MOVE = msg(msgpack.packb({"command": "move", "dx": 1, 5: "five", "raw": b"\x00\x01"}), mid=4)
GAME = msg(_game_pickle(), origin=Origin.INJECTED, state=MessageState.HELD, mid=5)
RECORD = msg(struct.pack("<Hff12sB", 7, 1.5, 2.0, b"bob", 4), conn=9, mid=6)
BIG = msg(b"ping " + b"x" * 200, origin=Origin.REPLAYED, state=MessageState.DROPPED, mid=7)
ALL = [PING, PONG, WELCOME, MOVE, GAME, RECORD, BIG]


def selected(text: str) -> list[int]:
    f = parse_filter(text)
    return [m.id for m in ALL if f.matches(m, REG.decode_message)]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", [1, 2, 3, 4, 5, 6, 7]),
        ("c2s", [1, 4, 5, 6, 7]),
        ("s2c", [2, 3]),
        ("dir == s2c", [2, 3]),
        ("dir != c2s", [2, 3]),
        ("conn == 2", [2]),
        ("conn != 1", [2, 6]),
        ("origin == injected", [5]),
        ("origin != live", [5, 7]),
        ("state == held", [5]),
        ("state == dropped or state == held", [5, 7]),
        ("size > 100", [7]),
        ("size <= 16", [2]),
        ("size >= 0x10 and size < 40", [2, 3, 4, 6]),
        ('bytes ~ "p[io]ng"', [1, 2, 7]),
        ('bytes ~ "^\\x80\\x04"', [5]),
        ('bytes contains "\\x00\\x01"', [4]),
        ('bytes !~ "ping"', [2, 3, 4, 5, 6]),
        ('text ~ "Hello from .* 🚀"', [3]),
        ('text contains "server"', [3]),
        ('json.type == "ping"', [1]),
        ("json.type == pong", [2]),
        ('json.type != "ping"', [2]),
        ("json.pos.x > 3", [1]),
        ("json.pos.y < 0 && json.pos.x >= 5", [1]),
        ('json.items[0] == "a"', [1]),
        ('json.items.1 == "b"', [1]),
        ("json.items[-1] ~ b", [1]),
        ('json.items contains "b"', [1]),
        ("json.pos", [1]),
        ("json.missing", []),
        ("not json.missing and json", [1, 2]),
        ("json", [1, 2]),
        ('msgpack.command == "move"', [4]),
        ('msgpack[5] == "five"', [4]),
        ('msgpack.raw == "\\x00\\x01"', [4]),
        ('pickle.class == "Game"', [5]),
        ('pickle.module == "gamesrv"', [5]),
        ("pickle.score == 7 and pickle.name ~ '^ar'", [5]),
        ("struct.state == 4", [6]),
        ('struct.name == "bob"', [6]),
        ("struct.x > 1.25", [6]),
        ("!(c2s || conn == 2)", [3]),
        ("not not s2c", [2, 3]),
        ("c2s and (json or msgpack) or state == held", [1, 4, 5]),
        ("c2s AND size > 100 OR conn == 2", [2, 7]),
        ("json.type == 'ping' or json.type == \"pong\"", [1, 2]),
        ("json.id == 3.0", [1]),
        ("json.id == true", []),
    ],
)
def test_filter_semantics(text: str, ids: list[int]) -> None:
    assert selected(text) == ids


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("size ==", 7, "expected a value after '=='"),
        ("json.type == and c2s", 13, "expected a value after '=='"),
        ("sise > 3", 0, "did you mean 'size'"),
        ("(c2s", 4, "expected ')'"),
        ("c2s and", 7, "expected a condition after 'and'"),
        ("c2s or or s2c", 7, "expected a field name"),
        ('json.type == "x', 13, "unterminated string"),
        ("size > 'a'", 7, "needs a number"),
        ("dir == up2", 7, "unknown dir 'up2'"),
        ("state == hled", 9, "unknown state"),
        ("c2s == 3", 0, "write 'dir == c2s'"),
        ('bytes ~ "("', 9, "bad regular expression"),
        ("bytes > 3", 6, "cannot be compared with '>'"),
        ("c2s s2c", 4, "expected 'and', 'or' or the end"),
        ("size > 3 $", 9, "unexpected character '$'"),
        ("json.", 5, "expected a field name after '.'"),
        ("json.items[", 11, "expected an index"),
        ("json.items[0", 12, "expected ']'"),
        ("()", 1, "expected a condition inside"),
        ("conn.x == 1", 0, "has no sub-fields"),
        ("text ~ 3", 7, "needs a quoted string"),
        ('json.a == "\\xZZ"', 11, "bad \\x escape"),
    ],
)
def test_filter_errors_say_what_was_expected_and_where(text: str, column: int, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert message in info.value.message, info.value
    assert info.value.column == column, info.value
    assert str(info.value).endswith(f"at column {column}")
    assert isinstance(info.value, ValueError)


def test_fields_needed_and_needs_decode() -> None:
    f = parse_filter('c2s and size > 3 and bytes ~ "x"')
    assert not f.needs_decode and f.fields_needed == frozenset()
    g = parse_filter('json.type == "ping" or msgpack.command == "move" or s2c')
    assert g.needs_decode and g.fields_needed == {"json", "msgpack"}


def test_message_predicates_never_decode() -> None:
    calls: list[int] = []

    def provider(m: Message) -> View | None:
        calls.append(m.id)
        return REG.decode_message(m)

    f = parse_filter('c2s and size > 3 and bytes contains "ping" or text ~ "Hello"')
    for m in ALL:
        f.matches(m, provider)
    assert calls == []
    assert f.predicate(provider) is f.predicate()  # the compiled closure itself: no wrapper per call


def test_decoded_fields_are_decoded_lazily_and_once_per_message() -> None:
    calls: list[int] = []

    def provider(m: Message) -> View | None:
        calls.append(m.id)
        return REG.decode_message(m)

    f = parse_filter('c2s and (json.type == "x" or json.id == 3 or json.pos.x > 1)')
    assert [m.id for m in ALL if f.matches(m, provider)] == [1]
    assert calls == [1, 4, 5, 6, 7]  # s2c messages short-circuit before any decode; each decoded once


def test_a_cached_view_provider_is_used_as_is() -> None:
    cache = {m.id: REG.decode_message(m) for m in ALL}
    f = parse_filter('json.type == "ping"')
    assert f.select(ALL, lambda m: cache.get(m.id)) == [PING]
    assert f.select(ALL, lambda m: None) == []


def test_engine_predicate_decodes_with_the_default_registry() -> None:
    pred = parse_filter('json.type == "ping" and c2s').to_engine_predicate()
    assert pred(PING) is True and pred(PONG) is False and pred(MOVE) is False
    plain = parse_filter("size > 100").to_engine_predicate()
    assert plain(BIG) and not plain(PING)


def test_string_literal_escapes() -> None:
    f = parse_filter(r'bytes == "a\"b\\c\n\t\x00\xff\u00e9"')
    assert f.matches(msg(b'a"b\\c\n\t\x00\xff\xc3\xa9'))
    assert parse_filter(r"bytes ~ '\d{3}'").matches(msg(b"abc123"))


def test_completion_names() -> None:
    for name in ("c2s", "conn", "dir", "origin", "state", "size", "bytes", "text", "json", "pickle.class"):
        assert name in FIELD_NAMES
    assert "held" in VALUE_NAMES["state"] and "injected" in VALUE_NAMES["origin"]


def test_plugin_namespaces_are_accepted_when_given() -> None:
    with pytest.raises(FilterError, match="unknown field 'proto'"):
        parse_filter("proto.kind == 1")
    assert parse_filter("proto.kind == 1", namespaces={"proto"}).fields_needed == {"proto"}


def test_million_messages_filter_is_closures_only() -> None:
    # Bounded work, not wall-clock: a message-only filter is one compiled predicate and touches no decoder.
    f = parse_filter('c2s and size > 100 and bytes contains "ab"')
    assert isinstance(f, Filter) and not f.needs_decode
    msgs = [msg(b"ab" * (i % 80), direction=Direction(i % 2)) for i in range(10_000)]
    assert len(f.select(msgs)) == sum(1 for i in range(10_000) if i % 2 == 0 and 2 * (i % 80) > 100)


# ---------------------------------------------------------------------------------------------------------
# fuzzing


FILTER_CHARS = " ()[].!=<>~&|\"'\\-0123456789xabcdefjsonzi_andortc2s"


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list(FILTER_CHARS)), max_size=40))
def test_parser_raises_only_filter_error(text: str) -> None:
    try:
        f = parse_filter(text)
    except FilterError as exc:
        assert 0 <= exc.column <= len(text)
        return
    for m in ALL:
        assert f.matches(m, REG.decode_message) in (True, False)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60))
def test_parser_survives_any_unicode(text: str) -> None:
    try:
        parse_filter(text)
    except FilterError:
        pass


ATOMS = st.sampled_from(
    ["c2s", "s2c", "conn == 1", "size > 10", 'bytes ~ "p.ng"', 'text contains "o"', 'json.type == "ping"',
     "json.pos.x >= 5", 'msgpack.command == "move"', 'pickle.class == "Game"', "struct.state != 3", "json",
     "state == held", "origin == injected", "json.items[1] ~ '^b'"]
)  # fmt: skip


def _expr(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms,
        lambda e: (
            st.tuples(e, st.sampled_from([" and ", " or ", " && ", " || "]), e).map("".join)
            | e.map(lambda x: f"not ({x})")
            | e.map(lambda x: f"({x})")
        ),
        max_leaves=8,
    )


@settings(max_examples=150, deadline=None)
@given(text=_expr(ATOMS))
def test_generated_filters_parse_and_agree_with_their_negation(text: str) -> None:
    f = parse_filter(text)
    n = parse_filter(f"not ({text})")
    for m in ALL:
        assert f.matches(m, REG.decode_message) != n.matches(m, REG.decode_message)


def test_text_regex_reads_bad_bytes_as_replacement_characters() -> None:
    bad = msg(b"ok \xff end")
    assert parse_filter('text ~ "ok . end"').matches(bad)  # one U+FFFD, one character
    assert parse_filter('text ~ "\\ufffd"').matches(bad)
    assert not parse_filter('bytes ~ "ok .. end"').matches(bad)  # bytes: one byte is one character


def test_regex_is_re2_with_its_syntax() -> None:
    assert parse_filter(r'text ~ "(?i)HELLO FROM"').matches(WELCOME)
    assert parse_filter(r'text ~ "\\x{1F680}"').matches(WELCOME)  # RE2's code point escape (\\ reaches the regex)
    assert parse_filter(r'text ~ "exercise server! .\z"').matches(WELCOME)
    with pytest.raises(FilterError, match=r"\\Z; write \\z"):
        parse_filter(r'text ~ "server! .\Z"')
    with pytest.raises(FilterError, match="lookahead"):
        parse_filter('bytes ~ "ping(?= )"')

"""The summary path's shortcuts give what the long way gives: summary views, nested contexts, JSON's one-call read
and whitespace, msgpack's reused reading.

Each shortcut (see the modules) is compared here with the way it replaces, on generated inputs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.decode import DecodeContext, View
from inspector.decode._api import MAX_PARSE, set_deadline, with_deadline
from inspector.decode._json import _DECODER, _WS, JsonDecoder, _incomplete, _unreadable
from inspector.decode._msgpack import MsgpackDecoder
from inspector.decode._payload import nested_context, summary_view
from proxy.model import Direction

# -- summary views ------------------------------------------------------------------------------------------------


@given(st.text(max_size=20), st.text(max_size=50), st.lists(st.integers(), max_size=3).map(tuple),
       st.lists(st.text(max_size=5), max_size=3).map(tuple), st.booleans())
@settings(max_examples=200, deadline=2000)
def test_a_summary_view_is_the_plain_views_twin(decoder: str, summary: str, values: tuple[Any, ...],
                                               warnings: tuple[str, ...], truncated: bool) -> None:
    fast = summary_view(decoder, summary, values, warnings, truncated)
    plain = View(decoder=decoder, summary=summary, warnings=warnings, truncated=truncated, values=values)
    assert type(fast) is View
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert fast.values == plain.values and fast.fields == () and fast.text == "" and fast.error is None
    assert fast.editable is None and fast.can_encode is False
    with pytest.raises(AttributeError):
        fast.summary = "changed"  # type: ignore[misc]  # frozen, as the dataclass made it


def test_summary_views_are_made_fast_while_view_has_the_fields_they_set() -> None:
    assert summary_view.__name__ == "fast"


# -- nested contexts ------------------------------------------------------------------------------------------------


def test_a_payloads_context_is_made_once_per_outer_context_and_follows_its_deadline() -> None:
    outer = DecodeContext(Direction.S2C, 7, "<H x", b"\n", "json", False, None, "len16be")
    inner = nested_context(outer)
    assert inner == DecodeContext(Direction.S2C, 7, "<H x", b"\n", None, False, None, None)
    assert nested_context(outer) is inner
    other = DecodeContext(Direction.C2S, 7, detail=False)
    assert nested_context(other) is not inner and nested_context(other).direction is Direction.C2S
    own = with_deadline(outer, None)  # the table's own context, whose deadline it sets in place per row
    first = nested_context(own)
    deadline = time.monotonic_ns() + 10**9
    set_deadline(own, deadline)
    assert nested_context(own) is first and first.deadline_ns == deadline
    set_deadline(own, None)
    assert nested_context(own).deadline_ns is None


# -- JSON ---------------------------------------------------------------------------------------------------------


def _old_split(text: str, truncated: bool) -> tuple[list[tuple[object, int, int]], list[str]] | str:
    """JsonDecoder._split without a delimiter as it was before its one-call read (main, 00198c9): its values and
    warnings, or its error."""
    warnings: list[str] = []
    out: list[tuple[object, int, int]] = []
    n = len(text)
    pos = 0
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            break
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if out and (truncated or _incomplete(exc, n)):
                warnings.append(f"incomplete JSON value at character {pos} (continues in next message?)")
                break
            if truncated and not out:
                return f"a JSON value larger than {MAX_PARSE} bytes is not parsed"
            return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        except (RecursionError, ValueError) as exc:
            return str(_unreadable(exc, pos))
        out.append((value, pos, end))
        pos = end
    if not out:
        return "no JSON value"
    return out, warnings


def _new_split(text: str, truncated: bool) -> tuple[list[tuple[object, int, int]], list[str]] | str:
    warnings: list[str] = []
    try:
        return JsonDecoder()._split(text, None, truncated, warnings), warnings
    except ValueError as e:
        return str(e)


_json_texts = st.one_of(
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                 max_leaves=12).map(json.dumps),
    st.text(alphabet='{}[]":,0123456789 \n\ttrue', max_size=30))


@given(st.lists(_json_texts, min_size=1, max_size=3), st.sampled_from(["", " ", "\n", "  \t"]),
       st.sampled_from(["", " ", "\n", "}", "x"]), st.booleans())
@settings(max_examples=400, deadline=2000)
def test_json_reads_one_or_more_values_as_the_loop_did(texts: list[str], sep: str, tail: str, cut: bool) -> None:
    text = sep.join(texts) + tail
    assert json.dumps(_new_split(text, cut)) == json.dumps(_old_split(text, cut))


def test_a_deeply_nested_json_value_is_the_same_clear_error() -> None:
    text = "[" * (sys.getrecursionlimit() + 100)
    assert "nested too deeply" in JsonDecoder().decode(text.encode(), DecodeContext(detail=False)).summary


def test_json_summaries_join_the_whitespace_regexes_find() -> None:
    """str.split's whitespace is re's \\s: every code point, on its own and in runs."""
    ws = re.compile(r"\s+")
    for c in map(chr, range(sys.maxunicode + 1)):
        s = f"a{c}b{c}{c}c "
        assert " ".join(s.split()) == ws.sub(" ", s).strip(), hex(ord(c))


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=2000)
def test_json_summaries_whitespace_on_any_text(s: str) -> None:
    assert " ".join(s.split()) == re.compile(r"\s+").sub(" ", s).strip()


# -- msgpack ------------------------------------------------------------------------------------------------------


_packable = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1) | st.floats()
    | st.text(max_size=10) | st.binary(max_size=6),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(0, 9), c, max_size=4),
    max_leaves=15)


@given(_packable)
@settings(max_examples=300, deadline=2000)
def test_msgpack_decodes_what_its_confidence_read_as_it_reads_it_anew(obj: Any) -> None:
    data = msgpack.packb(obj)
    ctx = DecodeContext(detail=False)
    dec = MsgpackDecoder()
    dec.confidence(data, ctx)
    first = dec.decode(data, ctx)  # the reading the confidence check made, if it made one
    second = dec.decode(data, ctx)  # read anew
    assert first == second
    assert repr(first.values) == repr(second.values)
    assert first.values == () or first.values[0] is not second.values[0] or not isinstance(first.values[0],
                                                                                           list | dict)


def test_msgpack_hands_its_reading_to_one_decode_only() -> None:
    data = msgpack.packb({"in": "move", "dx": 1, "dy": -1, "tick": 3})
    dec = MsgpackDecoder()
    assert dec.confidence(data, DecodeContext()) == 0.85
    a = dec.decode(data, DecodeContext(detail=False))
    b = dec.decode(data, DecodeContext(detail=False))
    assert a.values == b.values and a.values[0] is not b.values[0]
    assert dec.decode(data, DecodeContext()).summary == a.summary

"""Hostile hints files and game messages for the lab (tests/hostile/lab, a README there says what each attacks):
a hints file is either loaded or refused with one ``FILE:LINE: what`` line per mistake; a message is counted or
skipped (with the reason in the report's problems), never raised, and its cost is bounded (the tracker's work
counter, the path parser's step cap), with pytest-timeout as the backstop.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.lab import HintsError, analyse, load_hints
from inspector.lab.hints import MAX_PATH_CHARS, MAX_PATH_STEPS, parse_hints
from proxy.model import Direction, Message

CORPUS = Path(__file__).parent / "hostile" / "lab"
HINTS = sorted(CORPUS.glob("hints-*.toml"))
MESSAGES = sorted(CORPUS.glob("msg-*.bin"))
VALID = {"hints-quoted-keys-and-escapes.toml"}
LINE = re.compile(r"^.+?:\d+: \S.*$|^.+?: \S.*$")


def test_the_corpus_is_listed_in_its_readme() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert HINTS and MESSAGES
    for p in (*HINTS, *MESSAGES):
        assert f"| {p.name} |" in readme, p.name


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", HINTS, ids=lambda p: p.name)
def test_a_hostile_hints_file_is_refused_line_by_line_or_loaded(path: Path) -> None:
    if path.name in VALID:
        h = load_hints(path)
        assert h.given
        return
    with pytest.raises(HintsError) as e:
        load_hints(path)
    assert e.value.errors
    for line in e.value.errors:
        assert "\n" not in line and line.startswith(str(path)) and LINE.match(line), line
        assert len(line) < 400, line  # a 200 KB field name is not echoed back whole


def test_the_many_errors_file_names_each_line() -> None:
    with pytest.raises(HintsError) as e:
        load_hints(CORPUS / "hints-many-errors.toml")
    assert [int(x.split(":")[1]) for x in e.value.errors] == [2, 3, 6, 7]


def _frame_pair(data: bytes) -> list[Message]:
    """``data`` sent as an input and as a state, after a valid input and state so hints exist for both."""
    ok_in = b'{"t": "input", "seq": 1, "x": 0, "y": 0}'
    ok_state = b'{"t": "state", "ack": 1, "tick": 1, "x": 0, "y": 0}'
    head = struct.Struct(">I")
    out = [Message(1, 1, Direction.C2S, 0, head.pack(len(ok_in)) + ok_in, 0, 0),
           Message(2, 1, Direction.S2C, 0, head.pack(len(ok_state)) + ok_state, 1_000_000, 1_000_000)]
    out.append(Message(3, 1, Direction.C2S, 1, data, 2_000_000, 2_000_000))
    out.append(Message(4, 1, Direction.S2C, 1, data, 3_000_000, 3_000_000))
    return out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.name)
def test_a_hostile_message_is_counted_or_skipped_never_raised(path: Path) -> None:
    report = analyse(_frame_pair(path.read_bytes()))
    o = report.overall
    assert o.inputs in (1, 2) and o.states in (1, 2)
    if path.name == "msg-raw-str-keys.bin":
        assert o.inputs == 2  # a valid input: counted
    if path.name in ("msg-seq-negative.bin", "msg-seq-float.bin", "msg-seq-bool.bin", "msg-seq-string.bin",
                     "msg-seq-2-to-the-70.json.bin", "msg-seq-nan.json.bin"):
        assert o.inputs == 1 and any("c2s input: seq" in p for p, _ in report.problems), report.problems
    if path.name in ("msg-pos-inf.json.bin", "msg-pos-huge-int.bin"):
        assert any("pos (x, y)" in p for p, _ in report.problems), report.problems
    for what, _n in report.problems:
        assert "\n" not in what and len(what) < 300


def test_a_long_path_is_refused_at_a_cap_not_walked() -> None:
    with pytest.raises(HintsError) as e:
        parse_hints('[c2s.input]\nseq = "' + ".".join(["a"] * 100) + '"\n', "h.toml")
    assert f"longer than {MAX_PATH_STEPS} steps" in str(e.value)
    with pytest.raises(HintsError) as e:
        parse_hints('[c2s.input]\nseq = "' + ".".join(["a"] * 100_000) + '"\n', "h.toml")
    assert f"longer than {MAX_PATH_CHARS} characters" in str(e.value) and len(str(e.value)) < 200


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_is_hints_or_one_line_errors(text: str) -> None:
    try:
        parse_hints(text, "fuzz.toml")
    except HintsError as e:
        assert e.errors and all("\n" not in x and x.startswith("fuzz.toml") for x in e.errors)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                        st.sampled_from(["t", "seq", "ack", "x", "y", "pos", "tick", "time"]), kids, max_size=6),
                    max_leaves=20))
def test_any_decoded_value_is_handled(value: object) -> None:
    from inspector.lab import Hints, LabTracker

    tr = LabTracker(Hints())
    for i in range(3):
        tr.message(1, Direction.C2S, value, i, i)
        tr.message(1, Direction.S2C, value, i, i + 1)
    tr.finish()
    assert tr.work <= 12

"""The lab's schema hints (inspector/lab/hints.py): inference from field names on the example game's messages
(as it was and in the lab's wire format) and on differently named fields, the hints file with its line-numbered
one-line errors, and ``sockscope --lab-hints``.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from inspector.decode import default_registry
from inspector.lab import FieldRef, Hints, HintsError, MessageType, infer_roles, load_hints, parse_hints
from inspector.lab.hints import parse_path
from proxy.model import Direction, Message

C2S, S2C = Direction.C2S, Direction.S2C
GAME = Path(__file__).resolve().parent.parent / "docs" / "examples" / "game"


def decoded(value: Any, fmt: str = "msgpack") -> object:
    """``value`` as the window sees it: framed as the game frames it, decoded by sockscope's own decoders."""
    payload = {"msgpack": msgpack.packb, "json": lambda v: json.dumps(v).encode(),
               "pickle": lambda v: pickle.dumps(v, protocol=4)}[fmt](value)
    data = struct.pack(">I", len(payload)) + payload
    view = default_registry().decode_message(Message(1, 1, C2S, 0, data, 0, 0), detail=False)
    assert view.error is None and len(view.values) == 1, view
    return view.values[0]


def roles(d: Direction, value: Any, fmt: str = "msgpack") -> dict[str, str]:
    return {r: f.text for r, f in infer_roles(d, decoded(value, fmt)).items()}


@pytest.mark.parametrize("fmt", ["msgpack", "json", "pickle"])
def test_the_example_games_messages_as_they_were(fmt: str) -> None:
    """docs/examples/game before the lab: inputs carry seq; states carry tick and everyone's [id, x, y, last_seq],
    with no acknowledgement of this client's own inputs at the top: the lab can only infer the sequence and the
    tick, and the window shows the acknowledgement as missing (for the user to add to the game)."""
    assert roles(C2S, {"t": "input", "seq": 7, "dx": 1, "dy": 0}, fmt) == {"seq": "seq"}
    assert roles(S2C, {"t": "state", "tick": 90, "players": [[1, 104, 100, 7], [2, 30, 40, 3]]}, fmt) == \
        {"tick": "tick"}
    assert roles(S2C, {"t": "welcome", "id": 1}, fmt) == {}


@pytest.mark.parametrize("fmt", ["msgpack", "json", "pickle"])
def test_the_example_games_messages_in_the_labs_format(fmt: str) -> None:
    assert roles(C2S, {"t": "input", "seq": 7, "dx": 1, "dy": 0, "x": 104, "y": 100}, fmt) == \
        {"seq": "seq", "predicted": "x, y"}
    assert roles(S2C, {"t": "state", "tick": 90, "time": 3000, "ack": 7, "x": 104, "y": 100,
                       "players": [[1, 104, 100, 7]]}, fmt) == \
        {"ack": "ack", "tick": "tick", "time": "time", "pos": "x, y"}


def test_the_example_game_protocol_module_frames_are_what_the_lab_reads() -> None:
    """The game's own encoder (docs/examples/game/protocol.py), whichever version is checked out."""
    sys.path.insert(0, str(GAME))
    try:
        import protocol

        frame = protocol.encode({"t": "input", "seq": 3, "dx": 1, "dy": 0}, "msgpack")
    finally:
        sys.path.remove(str(GAME))
        sys.modules.pop("protocol", None)
    view = default_registry().decode_message(Message(1, 1, C2S, 0, frame, 0, 0), detail=False)
    h = Hints()
    mt = h.type_of(C2S, view.values[0])
    h.observe(mt, view.values[0])
    assert mt == MessageType(C2S, "input") and h.roles_for(mt)["seq"].source == "inferred"


class Snapshot:
    """A game's own class, pickled (read by sockscope's safe reader, never unpickled)."""

    def __init__(self) -> None:
        self.server_tick = 12
        self.last_processed_input = 40
        self.pos = (3.5, 4.0)


@pytest.mark.parametrize(("d", "value", "fmt", "want"), [
    (S2C, {"type": "snapshot", "serverTick": 5, "lastProcessedInput": 9, "position": {"x": 1, "y": 2}}, "json",
     {"tick": "serverTick", "ack": "lastProcessedInput", "pos": "position"}),
    (C2S, {"type": "cmd", "inputSeq": 3, "predicted": [1.5, 2]}, "json", {"seq": "inputSeq", "predicted": "predicted"}),
    (S2C, {"kind": "update", "frame": 7, "last_input": 3, "pos": [1, 2, 3]}, "msgpack",
     {"tick": "frame", "ack": "last_input", "pos": "pos"}),
    (S2C, {"op": "s", "last_seq": 3, "server_time": 1.25, "x": 1, "y": 2, "z": 3}, "msgpack",
     {"ack": "last_seq", "time": "server_time", "pos": "x, y, z"}),
    (C2S, {"cmd": "move", "input_seq": 3, "x": 1, "y": 2}, "msgpack", {"seq": "input_seq", "predicted": "x, y"}),
    (S2C, Snapshot(), "pickle", {"tick": "server_tick", "ack": "last_processed_input", "pos": "pos"}),
], ids=["camelCase", "predicted list", "frame and 3-D pos", "last_seq and xyz", "input_seq", "pickled object"])
def test_differently_named_fields(d: Direction, value: Any, fmt: str, want: dict[str, str]) -> None:
    assert roles(d, value, fmt) == want


@pytest.mark.parametrize(("d", "value"), [
    (S2C, {"t": "state", "seq": 3}),  # a server's own sequence is not an acknowledgement
    (C2S, {"t": "input", "ack": 3, "tick": 4}),  # the client may acknowledge snapshots: not the lab's ack
    (C2S, {"t": "input", "seq": "7"}),  # text, not a number
    (C2S, {"t": "input", "seq": 1.5}),
    (C2S, {"t": "input", "seq": True}),
    (S2C, {"t": "state", "ack": -1, "x": 1, "y": "2"}),
    (S2C, {"t": "state", "pos": [1]}),
    (S2C, [1, 2, 3]),
], ids=["s2c seq", "c2s ack", "text seq", "float seq", "bool seq", "bad ack and y", "1-D pos", "not a map"])
def test_names_that_do_not_fit_are_not_inferred(d: Direction, value: Any) -> None:
    assert roles(d, value, "json") == {}


def test_bytes_keys_are_read_like_text_keys() -> None:
    """A decoder (a plugin's, or msgpack with keys that are not UTF-8) may give bytes keys."""
    v = {b"t": b"input", b"seq": 3, b"x": 1, b"y": 2}
    h = Hints()
    mt = h.type_of(C2S, v)
    h.observe(mt, v)
    r = h.roles_for(mt)
    assert mt.name == "input" and r["seq"].field is not None and r["seq"].field.get(v) == 3
    assert r["predicted"].field is not None and r["predicted"].field.get(v) == (1, 2)


def test_inference_looks_at_the_first_messages_of_a_type_and_given_hints_win() -> None:
    h = Hints()
    mt = MessageType(S2C, "state")
    h.observe(mt, {"t": "state", "tick": 1})  # the first one has no ack yet (no input seen)
    h.observe(mt, {"t": "state", "tick": 2, "ack": 1})
    assert set(h.roles_for(mt)) == {"tick", "ack"}
    h.set(mt, "ack", FieldRef.parse("last"), "window")
    assert h.roles_for(mt)["ack"] == h.given[mt]["ack"] and h.roles_for(mt)["ack"].source == "window"
    h.set(mt, "tick", None)  # "(none)": no tick, and no inference of one
    assert "tick" not in h.roles_for(mt)
    h.forget(mt, "tick")
    assert h.roles_for(mt)["tick"].source == "inferred"
    # hints for the whole direction apply to every type of it that has none of its own
    h.set(MessageType(S2C), "time", FieldRef.parse("clock"), "file")
    assert h.roles_for(mt)["time"].field == FieldRef.parse("clock")
    for _ in range(10):
        h.observe(MessageType(S2C, "late"), {"t": "late"})
    h.observe(MessageType(S2C, "late"), {"t": "late", "ack": 3})  # past the first few: not looked at
    assert "ack" not in h.roles_for(MessageType(S2C, "late"))


def test_field_paths() -> None:
    assert parse_path("seq") == ("seq",)
    assert parse_path("pos.x") == ("pos", "x")
    assert parse_path("players[0][1]") == ("players", 0, 1)
    assert parse_path("players.0") == ("players", 0)
    assert parse_path('["a key"].b') == ("a key", "b")
    assert parse_path("json.seq") == ("seq",)  # as the filter bar writes it
    for bad in ("", ".seq", "a..b", "a b", "a[x]", "a[" + "9" * 40 + "]", ".".join(["a"] * 40)):
        with pytest.raises(ValueError):
            parse_path(bad)
    assert FieldRef.parse("x, y", point=True) == FieldRef.parse(["x", "y"], point=True)
    with pytest.raises(ValueError):
        FieldRef.parse(["x", "y"])  # a list only for positions


EXAMPLE = """\
# the lab spec's messages, said explicitly
type_field = "t"

[c2s.input]
seq = "seq"
predicted = ["x", "y"]

[s2c.state]
ack = "ack"
tick = "tick"
time = "time"
pos = ["x", "y"]

[s2c]
tick = "frame"
"""


def test_the_documented_hints_file_loads_and_round_trips() -> None:
    h = parse_hints(EXAMPLE, "lab.toml")
    assert h.type_fields == ("t",)
    state = MessageType(S2C, "state")
    assert {r: x.field.text for r, x in h.given[state].items() if x.field} == \
        {"ack": "ack", "tick": "tick", "time": "time", "pos": "x, y"}
    assert all(x.source == "file" for x in h.given[state].values())
    assert h.roles_for(MessageType(S2C, "other"))["tick"].field == FieldRef.parse("frame")
    again = parse_hints(h.to_toml(), "again.toml")
    assert again.given == h.given and again.type_fields == h.type_fields


def test_doc_example_in_docs_lab_md_is_valid() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "lab.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    assert blocks
    for b in blocks:
        parse_hints(b, "docs/lab.md")


def test_every_mistake_is_one_line_with_its_line_number() -> None:
    text = ('type_field = 3\n'           # 1
            '[c2s.input]\n'              # 2
            'sqe = "seq"\n'              # 3
            'ack = "ack"\n'              # 4
            '\n'                         # 5
            '[s2c.state]\n'              # 6
            'pos = ["a", "b", "c", "d"]\n'  # 7
            'tick = "a..b"\n'            # 8
            '[up]\n'                     # 9
            'x = 1\n')                   # 10
    with pytest.raises(HintsError) as e:
        parse_hints(text, "h.toml")
    errors = e.value.errors
    assert [x.split(":")[1] for x in errors] == ["1", "3", "4", "7", "8", "9"], errors
    assert all("\n" not in x and x.startswith("h.toml:") for x in errors)
    assert "unknown role 'sqe'" in errors[1] and "seq, ack" in errors[1]
    assert "belongs in [s2c...]" in errors[2]
    assert str(e.value) == "\n".join(errors)


def test_toml_syntax_errors_say_where() -> None:
    with pytest.raises(HintsError) as e:
        parse_hints('[c2s.input]\nseq = "seq\n', "bad.toml")
    assert len(e.value.errors) == 1 and e.value.errors[0].startswith("bad.toml:2: not valid TOML")


def test_load_hints_reads_a_file_and_says_why_it_cannot(tmp_path: Path) -> None:
    f = tmp_path / "h.toml"
    f.write_text(EXAMPLE, encoding="utf-8")
    assert load_hints(f).type_fields == ("t",)
    with pytest.raises(HintsError, match="cannot read"):
        load_hints(tmp_path / "missing.toml")
    f.write_bytes(b'[c2s.input]\nseq = "\xff"\n')
    with pytest.raises(HintsError, match=r"h\.toml:2: not UTF-8"):
        load_hints(f)


@pytest.mark.timeout(60)
def test_sockscope_lab_hints_flag_rejects_a_bad_file_before_opening_a_window(tmp_path: Path) -> None:
    f = tmp_path / "h.toml"
    f.write_text('[c2s.input]\nseq = "seq"\nack = "ack"\n', encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "inspector", "--lab-hints", str(f), "--target", "127.0.0.1:9"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"sockscope: error: {f}:3: [c2s.input]: ack is the server's acknowledgement: the last input of this client "
        "it has applied: it belongs in [s2c...]"]

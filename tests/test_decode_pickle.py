"""The safe pickle reader: game objects of unknown classes, plain values, and hostile pickles that must not run."""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inspector.decode import DecodeContext, DecoderRegistry, EncodeError, PickleObject, builtin_decoders

CTX = DecodeContext()


@pytest.fixture
def reg() -> DecoderRegistry:
    return DecoderRegistry(builtin_decoders())


# ---------------------------------------------------------------------------------------------------------
# A game object of a class that does not exist in the decoding process


@dataclass
class Player:
    name: str
    x: float
    y: float


@dataclass
class Game:
    players: list[Player] = field(default_factory=list)
    score: dict[str, int] = field(default_factory=dict)
    tick: int = 0


def pickled_from_absent_module(obj: object, protocol: int) -> bytes:
    """Pickle ``obj`` as if its classes lived in a module ``gamesrv`` that this process never imports."""
    mod = types.ModuleType("gamesrv")
    saved = {}
    for cls in (Player, Game):
        saved[cls] = cls.__module__
        cls.__module__ = "gamesrv"
        setattr(mod, cls.__name__, cls)
    sys.modules["gamesrv"] = mod
    try:
        return pickle.dumps(obj, protocol=protocol)
    finally:
        del sys.modules["gamesrv"]
        for cls, name in saved.items():
            cls.__module__ = name


GAME = Game([Player("bob", 1.5, 2.0), Player("alice", -3.0, 4.25)], {"bob": 3, "alice": 5}, tick=42)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_game_object_of_an_unknown_class_every_protocol(reg: DecoderRegistry, protocol: int) -> None:
    data = pickled_from_absent_module(GAME, protocol)
    assert "gamesrv" not in sys.modules
    view = reg.decode(data)
    assert view.decoder == "pickle", reg.confidences(data)
    assert view.error is None
    assert "gamesrv" not in sys.modules
    assert view.summary.startswith("Game(gamesrv) {'players': [Player(gamesrv) {'name': 'bob', 'x': 1.5")
    (game,) = view.values
    assert isinstance(game, PickleObject) and game.class_name == "Game" and game.module == "gamesrv"
    assert game.attribute("tick") == (True, 42)
    assert game.attribute("score") == (True, {"bob": 3, "alice": 5})
    found, players = game.attribute("players")
    assert found and isinstance(players, list) and players[1].attribute("name") == (True, "alice")
    assert any("gamesrv.Game" in w and "nothing imported" in w for w in view.warnings)
    assert not any(w.startswith("⚠") for w in view.warnings)
    assert not view.can_encode
    tree = {f.name: f for f in view.fields}
    assert [c.name for c in tree["value"].children] == ["players", "score", "tick"]
    assert "# opcodes" in view.text
    with pytest.raises(EncodeError, match="only plain values"):
        reg.encode("pickle", f"# pickle protocol {protocol}\n{view.text.splitlines()[1]}")


def test_game_object_from_raw_protocol0_opcodes(reg: DecoderRegistry) -> None:
    data = b"(igamesrv\nPlayer\n(dp0\nVname\np1\nVbob\np2\nsVhp\np3\nI10\nsb."
    pickletools.dis(data, out=io.StringIO())  # a valid pickle by the standard disassembler
    view = reg.decode(data)
    assert view.decoder == "pickle" and view.summary == "Player(gamesrv) {'name': 'bob', 'hp': 10}"


# ---------------------------------------------------------------------------------------------------------
# Plain values: rebuilt exactly and re-encoded with the same protocol

PLAIN = [
    {"type": "move", "dx": 1, "dy": -1},
    [None, True, False, 0, -1, 2**70, 1.5, float("inf"), "é🚀", b"\x00\xff", bytearray(b"ba")],
    ({"nested": [(1, 2), {3, 4}, frozenset({"a"})]}, ()),
    {"big": list(range(300)), "blob": b"x" * 300},
    collections.OrderedDict([("b", 1), ("a", 2)]),
    "just a string",
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("value", PLAIN, ids=range(len(PLAIN)))
def test_plain_values_rebuild_and_reencode_byte_for_byte(reg: DecoderRegistry, value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    view = reg.decode_with("pickle", data)
    assert view.error is None, view.error
    assert view.values == (value,)
    assert type(view.values[0]) is type(value)
    assert view.can_encode and view.editable is not None
    assert view.editable.startswith(f"# pickle protocol {protocol}\n")
    assert reg.encode("pickle", view.editable) == data


def test_edit_and_reencode_plain_value(reg: DecoderRegistry) -> None:
    data = pickle.dumps({"type": "move", "dx": 1}, protocol=2)
    view = reg.decode(data)
    assert view.editable is not None
    out = reg.encode("pickle", view.editable.replace("'dx': 1", "'dx': 5"))
    assert out == pickle.dumps({"type": "move", "dx": 5}, protocol=2)


def test_shared_references_are_kept_and_flagged(reg: DecoderRegistry) -> None:
    inner = [1, 2]
    view = reg.decode(pickle.dumps([inner, inner], protocol=4))
    (value,) = view.values
    assert isinstance(value, list) and value[0] is value[1]
    assert any("shared references" in w for w in view.warnings)


def test_cyclic_value_renders_and_refuses_encode(reg: DecoderRegistry) -> None:
    loop: list[object] = [1]
    loop.append(loop)
    view = reg.decode(pickle.dumps(loop, protocol=4))
    assert view.error is None and "<cycle>" in view.text and not view.can_encode


def test_memo_bomb_is_bounded(reg: DecoderRegistry) -> None:
    # Each level is a tuple of the previous level twice: a 2**60-node tree in ~250 bytes.
    data = bytearray(b"\x80\x04]q\x00")
    for i in range(60):
        data += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1])
    data += b"."
    view = reg.decode(bytes(data))
    assert view.decoder == "pickle" and view.error is None
    assert view.truncated and not view.can_encode
    assert len(view.summary) <= 200 and len(view.text) < 400_000


def test_opcode_cap_sets_truncated(reg: DecoderRegistry) -> None:
    data = pickle.dumps(list(range(100_000)), protocol=0)
    view = reg.decode_with("pickle", data)
    assert view.truncated and any("stopped after" in w for w in view.warnings)


# ---------------------------------------------------------------------------------------------------------
# Hostile pickles: nothing runs, nothing new is imported, the view names the callable


def _sh(canary: Path) -> bytes:
    return f"touch {canary}".encode()


def _str0(s: bytes) -> bytes:
    return b"S'" + s + b"'\n"


def _short_unicode(s: bytes) -> bytes:
    return b"\x8c" + bytes([len(s)]) + s


def hostile_pickles(canary: Path) -> Iterator[tuple[str, bytes, str]]:
    """(label, bytes, a string the summary or warnings must contain)."""
    cmd = _sh(canary)

    class Reduce:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (os.system, (cmd.decode(),))

    class PopenReduce:
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return (subprocess.Popen, (["touch", str(canary)],))

    for proto in (0, 2, 4, 5):
        yield f"os.system REDUCE p{proto}", pickle.dumps(Reduce(), protocol=proto), "would call os.system('touch"
        yield f"subprocess.Popen REDUCE p{proto}", pickle.dumps(PopenReduce(), protocol=proto), "subprocess.Popen"
    yield (
        "builtins.eval REDUCE",
        b"cbuiltins\neval\n(" + _str0(b"__import__('os').system('" + cmd + b"')") + b"tR.",
        ("would call builtins.eval("),
    )
    yield "builtins.exec REDUCE p2", b"\x80\x02cbuiltins\nexec\n" + _str0(b"import os") + b"\x85R.", "builtins.exec"
    yield "INST", b"(" + _str0(cmd) + b"ios\nsystem\n.", "os.system('touch"
    yield "OBJ", b"(cos\nsystem\n" + _str0(cmd) + b"o.", "os.system"
    yield "NEWOBJ", b"\x80\x02csubprocess\nPopen\n" + _str0(cmd) + b"\x85\x81.", "subprocess.Popen"
    yield (
        "NEWOBJ_EX",
        b"\x80\x04" + _short_unicode(b"subprocess") + _short_unicode(b"Popen") + b"\x93"
        + _short_unicode(cmd) + b"\x85}" + _short_unicode(b"shell") + b"\x88s\x92.",
        "subprocess.Popen",
    )  # fmt: skip
    yield (
        "STACK_GLOBAL",
        b"\x80\x04" + _short_unicode(b"os") + _short_unicode(b"system") + b"\x93" + _short_unicode(cmd) + b"\x85R.",
        "would call os.system",
    )
    yield "getattr chain", (
        b"\x80\x02cbuiltins\ngetattr\n" + b"cos\npath\n" + _short_unicode(b"exists") + b"\x86R"
        + _short_unicode(str(canary).encode()) + b"\x85R."
    ), "builtins.getattr"  # fmt: skip
    yield "PERSID", b"P" + cmd + b"\n.", "persistent id"
    yield "BINPERSID", b"\x80\x02" + _short_unicode(cmd) + b"Q.", "persistent id"
    yield "EXT1", b"\x80\x02\x82\x07)R.", "extension code 7"
    yield "EXT2", b"\x80\x02\x83\x07\x01)R.", "extension code 263"
    yield "EXT4", b"\x80\x02\x84" + struct.pack("<i", 70000) + b")R.", "extension code 70000"
    yield "import-only global", b"cgamesrv_evil\nThing\n.", "loading would import: gamesrv_evil"
    yield "truncated hostile", pickle.dumps(Reduce(), protocol=2)[:-1], "would call os.system"


def test_hostile_pickles_run_nothing_and_import_nothing(reg: DecoderRegistry, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    samples = list(hostile_pickles(canary))
    reg.decode(pickle.dumps({"warm": [1]}, protocol=4))  # first-use imports of the decoder itself
    before = set(sys.modules)
    for label, data, needle in samples:
        for view in (reg.decode(data), reg.decode(data, DecodeContext(decode_as="pickle"))):
            blob = view.summary + "\n" + "\n".join(view.warnings)
            assert needle in blob, (label, view.decoder, blob)
            assert not view.can_encode, label
        assert not canary.exists(), label
    assert set(sys.modules) - before == set()
    assert not canary.exists()


def test_hostile_summary_and_warning_text(reg: DecoderRegistry, tmp_path: Path) -> None:
    canary = tmp_path / "x"
    data = b"cos\nsystem\n(" + _str0(f"touch {canary}".encode()) + b"tR."
    view = reg.decode(data)
    assert view.decoder == "pickle"
    assert view.summary == f"⚠ would call os.system('touch {canary}')"
    assert any(w.startswith("⚠") and "Nothing was run" in w for w in view.warnings)
    assert view.text.startswith("# ⚠")
    assert not canary.exists()


def test_not_a_pickle(reg: DecoderRegistry) -> None:
    for data in (b"Hello.", b"\x80\x04garbage.", b"(((((((.", b"\x80\x02K\x01K\x02."):
        view = reg.decode_with("pickle", data)
        if data == b"\x80\x02K\x01K\x02.":
            assert view.error is None and view.values == (2,)
        elif view.error is None:  # a GET without its newline reads as a pickle cut short
            assert any("incomplete pickle" in w for w in view.warnings) and not view.can_encode
        else:
            assert "00000000" in view.text
    assert reg.decode(b"Hello.").decoder == "text"


def test_encode_rejects_objects_and_bad_protocol(reg: DecoderRegistry) -> None:
    with pytest.raises(EncodeError, match="only plain values"):
        reg.encode("pickle", "# pickle protocol 4\nGame(gamesrv) {'score': 3}")
    with pytest.raises(EncodeError, match="does not exist"):
        reg.encode("pickle", "# pickle protocol 9\n1")
    assert reg.encode("pickle", "{1, 2}") == pickle.dumps({1, 2})


def test_pickle_split_across_two_reads_shows_the_first_part(reg: DecoderRegistry) -> None:
    data = pickle.dumps({"type": "state", "players": ["bob", "alice"], "blob": b"x" * 40}, protocol=4)
    first = data[: len(data) // 2]
    view = reg.decode(first)
    assert view.decoder == "pickle" and view.error is None
    assert any("incomplete pickle" in w and "next message" in w for w in view.warnings)
    assert "'type', 'state'" in view.summary  # read, waiting for the SETITEMS in the next part
    assert not view.can_encode


@pytest.mark.parametrize("detail", [True, False])
def test_bytes_after_stop_are_named_in_both_views(reg: DecoderRegistry, detail: bool) -> None:
    """Two pickles in one read (the second is not shown) or garbage after one: the warning says how much."""
    data = pickle.dumps({"x": 1}, protocol=4) + pickle.dumps({"y": 2}, protocol=4)
    view = reg.decode_with("pickle", data, DecodeContext(detail=detail))
    extra = len(pickle.dumps({"y": 2}, protocol=4))
    assert f"{extra} bytes after STOP are not part of the pickle" in view.warnings
    assert view.values == ({"x": 1},)

"""Struct layouts found for the user (issue 20, item 4): ``inspector.layouts`` reads a program's own source with
``ast`` (never importing or running it) for the struct formats it packs and unpacks, with the field names the code
shows; lists the files that make a program; picks the layouts that fit a record size; and guesses a layout from
fixed-size records' bytes, marked as a guess.

Programs are real files written to ``tmp_path`` (and the corpus game ``tests/games/struct_records.py``); guesses
are checked byte for byte against records ``struct.pack`` made from random game-like values (seeded).
"""

from __future__ import annotations

import os
import random
import re
import struct
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from inspector.decode import DecodeContext, DecoderRegistry, builtin_decoders, parse_layout
from inspector.layouts import (
    GUESS_MAX_SIZE,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    Layout,
    SourceScan,
    guess_layout,
    layouts_for_size,
    layouts_from_source,
    program_sources,
)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent
HOSTILE = ROOT / "hostile" / "source"
REG = DecoderRegistry(builtin_decoders())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def by_fmt(layouts: Iterable[Layout]) -> dict[str, Layout]:
    out: dict[str, Layout] = {}
    for layout in layouts:
        assert layout.fmt not in out, f"{layout.fmt} twice"
        out[layout.fmt] = layout
    return out


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of ``path`` holding ``needle`` (once)."""
    lines = [i for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in text]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


# ------------------------------------------------------------------------------------------ from source

GAME = '''
import socket
import struct

FMT = "<Hff"  # player id, x, y
HEADER = struct.Struct("!BH")


class Player:
    STATE = "<Hff12sB"

    def __init__(self, pid, x, y, name):
        self.pid, self.x, self.y, self.name = pid, x, y, name
        self.state = 0

    def pack(self):
        return struct.pack(self.STATE, self.pid, self.x, self.y, self.name.encode(), self.state)


def send_move(sock, p, y):
    sock.sendall(struct.pack(FMT, p.pid, p.x, y))


def read_move(data):
    pid, x, y = struct.unpack(FMT, data)
    return pid, x, y


def read_header(data):
    kind, length = HEADER.unpack(data)
    return kind, length
'''


def test_formats_and_field_names_come_from_the_code(tmp_path: Path) -> None:
    game = write(tmp_path / "game.py", GAME)
    found = layouts_from_source([game])
    layouts = by_fmt(found)
    assert [x.fmt for x in found] == ["!BH", "<Hff12sB", "<Hff"]  # in the order they first appear
    move = layouts["<Hff"]
    assert move.names == ("pid", "x", "y")
    assert move.origin == f"game.py:{line_of(game, 'struct.pack(FMT')} struct.pack"
    assert not move.guessed and move.size == 10
    state = layouts["<Hff12sB"]
    assert state.names == ("pid", "x", "y", "name", "state")
    assert state.origin == f"game.py:{line_of(game, 'struct.pack(self.STATE')} struct.pack"
    header = layouts["!BH"]
    assert header.names == ("kind", "length")
    assert header.origin == f"game.py:{line_of(game, 'HEADER.unpack')} HEADER.unpack"


def test_the_corpus_games_struct_objects_and_their_names() -> None:
    """A real program of this repository: ``struct.Struct`` objects at module level, unpacked into names (one of
    them ``_kind``), packed from expressions (``100 - seq`` has no name)."""
    game = ROOT / "games" / "struct_records.py"
    layouts = by_fmt(layouts_from_source([game]))
    assert set(layouts) == {"<BBHff", "<HHffff16sI"}
    up = layouts["<BBHff"]
    assert up.names == ("kind", "buttons", "seq", "dx", "dy")
    assert up.origin == f"struct_records.py:{line_of(game, '= INPUT.unpack(')} INPUT.unpack"
    down = layouts["<HHffff16sI"]
    assert down.names == ("seq", "", "x", "y", "", "", "", "")
    assert down.spec() == "<HHffff16sI seq field1 x y field4 field5 field6 field7"


def test_imports_aliases_expressions_and_other_files_are_followed(tmp_path: Path) -> None:
    write(tmp_path / "protocol.py", '''
        MOVE = "<Hbb"
        HELLO = b"!I"
    ''')
    game = write(tmp_path / "game.py", '''
        import struct as st
        from struct import pack, unpack as up, Struct, calcsize

        import protocol
        from protocol import MOVE

        ENDIAN = "<"
        POS = ENDIAN + "ff"
        N = 3
        VEC = f"<{N}f"
        TAIL = "<" + "h" * 4


        def f(buf, x, y, computed, fmt, *rest):
            st.pack(POS, x, y)
            a, b, c = up(VEC, buf)
            pack(TAIL, *rest)
            calcsize(protocol.HELLO)
            for pid, hp in st.iter_unpack("<Hh", buf):
                pass
            st.pack_into("<BB", buf, 0, float(x), int(y))
            Struct(MOVE).unpack_from(buf, 4)
            first, *others = up("<HHH", buf)
            q, r = up("<Hff", buf)
            up("<H" + computed, buf)
            st.pack(fmt, 1)
            st.pack("<Hzz", 1)
    ''')
    layouts = by_fmt(layouts_from_source([game, tmp_path / "protocol.py"]))
    assert set(layouts) == {"<ff", "<3f", "<hhhh", "!I", "<Hh", "<BB", "<Hbb", "<HHH", "<Hff"}
    assert layouts["<ff"].names == ("x", "y")
    assert layouts["<3f"].names == ("a", "b", "c")
    assert layouts["<hhhh"].names == ("", "", "", "")  # *rest: nothing known
    assert layouts["!I"].origin == f"game.py:{line_of(game, 'calcsize(')} struct.calcsize"
    assert layouts["<Hh"].names == ("pid", "hp")
    assert layouts["<BB"].names == ("x", "y")
    assert layouts["<Hbb"].names == ("", "", "")
    assert layouts["<HHH"].names == ("first", "", "")  # a starred target: the names before it
    assert layouts["<Hff"].names == ("", "", "")  # two names for three values: not this layout's


def test_the_program_is_never_run(tmp_path: Path) -> None:
    src = HOSTILE / "would_run_if_imported.pysrc"
    program = tmp_path / "game.py"
    program.write_bytes(src.read_bytes())
    layouts = layouts_from_source([program])
    assert [(x.fmt, x.names) for x in layouts] == [("<HH", ("seq", "hp"))]
    assert not list(tmp_path.glob("*.ran")) and not list(HOSTILE.glob("*.ran"))


def test_spec_is_the_struct_decoders_layout_text() -> None:
    assert Layout("<I3f", ("id", "x", "y", "z"), "t").spec() == "<Ifff id x y z"
    assert Layout("<H2f12s", ("", "x", "", "name"), "t").spec() == "<Hff12s field0 x field2 name"
    assert Layout("!B64B", ("kind", "", *("",) * 63), "t").spec() == "!B64B kind field1"  # a long list: one field
    assert Layout("<HH", ("field1", ""), "t").spec() == "<HH field1 field1_"
    assert Layout("<2xHf", ("a", "b"), "t").spec() == "<2xHf a b"
    data = struct.pack("<I3f", 7, 1.5, -2.0, 0.25)
    view = REG.decode(data, DecodeContext(struct_format=Layout("<I3f", ("id", "x", "y", "z"), "t").spec()))
    assert view.decoder == "struct" and view.summary == "id=7 x=1.5 y=-2 z=0.25"


def test_layouts_for_size_takes_exact_fits_then_several_records_per_message() -> None:
    a = Layout("<Hff", ("", "", ""), "a")  # 10 bytes
    b = Layout("<B", ("",), "b")  # 1
    c = Layout("<Hffff", ("",) * 5, "c")  # 18
    d = Layout("<I", ("",), "d")  # 4
    e = Layout("<hff", ("",) * 3, "e")  # 10
    assert layouts_for_size([a, b, c, d, e], 10) == [a, e, b]
    assert layouts_for_size([a, b, c, d, e], 20) == [a, e, d, b]
    assert layouts_for_size([a, c], 7) == []
    assert layouts_for_size([a], 0) == []


# ------------------------------------------------------------------------------------------ the program's files


def test_program_sources_are_the_script_then_its_neighbours_and_package(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    script = write(proj / "run_game.py", "import game.net\n")
    write(proj / "game" / "__init__.py", "")
    net = write(proj / "game" / "net.py", "X = 1\n")
    write(proj / "game" / "sub" / "deep.py", "Y = 2\n")
    write(proj / ".venv" / "lib" / "dep.py", "Z = 3\n")
    write(proj / "__pycache__" / "cached.py", "")
    write(proj / "notes.txt", "not python\n")
    (proj / "big.py").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    names = lambda paths: [p.resolve().relative_to(proj.resolve()).as_posix() for p in paths]  # noqa: E731

    got = names(program_sources(["python3", "-u", "-W", "ignore", str(script), "--port", "5555"]))
    assert got[0] == "run_game.py"
    assert set(got) == {"run_game.py", "game/__init__.py", "game/net.py", "game/sub/deep.py"}
    inside = names(program_sources([sys.executable, "-Wignore::DeprecationWarning", str(net)]))
    assert inside[0] == "game/net.py" and "run_game.py" in inside  # a package's script: the whole project
    monkeypatch.chdir(proj)
    assert names(program_sources(["python", "-m", "game.net"]))[0] == "game/net.py"
    assert names(program_sources(["uv", "run", "run_game.py"]))[0] == "run_game.py"
    assert names(program_sources(["run_game.py"]))[0] == "run_game.py"
    assert program_sources(["python", "-c", "import struct"]) == []
    assert program_sources(["python", "missing.py"]) == []
    assert program_sources(["python"]) == [] and program_sources([]) == []


def test_program_sources_are_bounded(tmp_path: Path) -> None:
    script = write(tmp_path / "main.py", "")
    for i in range(MAX_FILES + 50):
        (tmp_path / f"m{i:03}.py").write_text("", encoding="utf-8")
    got = program_sources(["python", str(script)])
    assert len(got) == MAX_FILES and got[0] == script


def test_a_scan_runs_once_on_its_own_thread(tmp_path: Path) -> None:
    game = write(tmp_path / "game.py", GAME)
    scan = SourceScan(["python", str(game)]).start()
    layouts = scan.wait(30)
    assert scan.done() and {x.fmt for x in layouts} == {"!BH", "<Hff12sB", "<Hff"}
    assert scan.result() == layouts
    assert SourceScan(["python", "-c", "pass"]).start().wait(30) == []


# ------------------------------------------------------------------------------------------ hostile sources


@pytest.mark.parametrize("name", sorted(p.name for p in HOSTILE.glob("*.pysrc")))
def test_hostile_sources_are_read_or_skipped_quietly(name: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "game.py"  # a copy: a program that ran would write next to itself
    path.write_bytes((HOSTILE / name).read_bytes())
    layouts = layouts_from_source([path])
    out = capsys.readouterr()
    assert out.out == out.err == ""  # no traceback, no warning
    for layout in layouts:  # every layout is one the struct decoder takes as it is
        parsed = parse_layout(layout.spec())
        assert parsed.size == layout.size and len({i.name for i in parsed.items}) == len(parsed.items)
    expected = {
        "format_bombs.pysrc": [("<Hff", ("pid", "x", "y"))],
        "would_run_if_imported.pysrc": [("<HH", ("seq", "hp"))],
        "odd_names.pysrc": [("<HHH", ("x", "", "")), ("<fff", ("", "", "")), ("<BBBB", ("", "", "", "")),
                            ("<II", ("class", "private")), ("<hhh", ("e", "f", "g"))],
    }.get(name, [])  # the others do not parse
    assert [(x.fmt, x.names) for x in layouts] == expected
    assert not list(tmp_path.glob("*.ran"))


def test_big_and_many_files_are_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text('import struct\nstruct.pack("<Q", 1)\n' + "#" * MAX_FILE_BYTES, encoding="utf-8")
    files = [big]
    for i in range(MAX_FILES + 100):
        files.append(write(tmp_path / f"m{i}.py", f'import struct\nstruct.pack("<{i + 1}B")\n'))
    layouts = layouts_from_source(files)
    assert "<Q" not in {x.fmt for x in layouts}  # over the size bound
    assert len(layouts) == MAX_FILES - 1  # the big one counts among the files looked at
    # Past the total bound, files are skipped: 900 KB each, a unique layout at the end of each.
    chunk = "#" * (900 << 10) + "\n"
    heavy = [write(tmp_path / "heavy" / f"h{i}.py", chunk + f'import struct\nstruct.pack("<{i + 1}H")\n')
             for i in range(MAX_TOTAL_BYTES // (900 << 10) + 3)]
    fit, total = 0, 0
    for path in heavy:
        total += path.stat().st_size
        fit += total <= MAX_TOTAL_BYTES
    assert 0 < fit < len(heavy)
    assert [x.fmt for x in layouts_from_source(heavy)] == [f"<{i + 1}H" for i in range(fit)]


@pytest.mark.parametrize("make", [
    lambda: "x = " + "1 + " * 100_000 + "1\n",  # a left-deep tree 100,000 levels down
    lambda: "x = a" + ".b" * 100_000 + "\n",
    lambda: "import struct\n" + "struct.pack('<Hff', a, b, c)\n" * 30_000,  # 30,000 uses of one layout
], ids=["deep_sum", "deep_attributes", "many_uses"])
def test_deep_and_repetitive_sources_are_read_without_recursion(make: Callable[[], str], tmp_path: Path) -> None:
    path = write(tmp_path / "game.py", make())
    layouts = layouts_from_source([path])
    assert [x.fmt for x in layouts] in ([], ["<Hff"])


# ------------------------------------------------------------------------------------------ guesses

_CODE = re.compile(r"(\d*)([xcbB?hHiIlLqQnNefdsp])")


def kinds(fmt: str) -> list[tuple[str, int]]:
    """A layout's fields as (kind, bytes), ``int``/``float``/``str``: what a guess can know (not whether an int
    that is never negative is signed)."""
    out: list[tuple[str, int]] = []
    for digits, code in _CODE.findall(fmt[1:]):
        n = int(digits) if digits else 1
        if code == "s":
            out.append(("str", n))
        else:
            kind = "float" if code in "efd" else "int"
            out.extend([(kind, struct.calcsize("<" + code))] * n)
    return out


def _values(rng: random.Random) -> dict[str, Callable[[], object]]:
    names = [b"bob", b"alice", b"hero", b"player_7", b"Zo\xc3\xab", b"carol"]
    return {
        "B": lambda: rng.randint(0, 20), "b": lambda: rng.randint(-20, 20),  # kinds, buttons, flags
        "H": lambda: rng.randint(0, 5000), "h": lambda: rng.randint(-3000, 3000),
        "I": lambda: rng.randint(0, 10**6), "i": lambda: rng.randint(-(10**6), 10**6),
        "Q": lambda: rng.randint(0, 10**12),
        "f": lambda: rng.choice([rng.uniform(-500, 500), round(rng.uniform(-100, 100), 1), rng.random()]),
        "d": lambda: rng.choice([rng.uniform(1.6e9, 1.8e9), rng.uniform(-1e4, 1e4)]),
        "s": lambda: rng.choice(names),
    }


def records(fmt: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    values = _values(rng)
    codes = [code for digits, code in _CODE.findall(fmt[1:]) for _ in range(1 if code == "s" else int(digits or 1))]
    return [struct.pack(fmt, *(values[c]() for c in codes)) for _ in range(n)]


GUESSABLE = ["<Hff", "<BBHff", "<HHffff16sI", "<IIfff", ">Hff", "<hhh", "<dd", "<Qd", "<ffffffH", "<iiff",
             "<B12sHH", "!HHff", "<fffB", "<Hd"]


@pytest.mark.parametrize("fmt", GUESSABLE)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_guess_recovers_the_field_kinds_of_game_records(fmt: str, seed: int) -> None:
    recs = records(fmt, 20, seed)
    guess = guess_layout(recs)
    assert guess is not None
    assert guess.guessed and guess.origin == "guessed from 20 records" and guess.names == ("",) * len(guess.names)
    assert guess.size == len(recs[0])
    assert kinds(guess.fmt) == kinds(fmt), (guess.fmt, fmt)
    assert guess.fmt[0] == ("<" if fmt[0] == "<" else ">")
    for r in recs:  # byte for byte: what the guess reads is what was sent
        assert struct.pack(guess.fmt, *struct.unpack(guess.fmt, r)) == r


def test_signed_fields_are_guessed_signed_when_they_go_negative() -> None:
    guess = guess_layout(records("<hhh", 20, 5))
    assert guess is not None and guess.fmt == "<hhh"
    guess = guess_layout(records("<Hff", 20, 5))
    assert guess is not None and guess.fmt == "<Hff"


def test_the_corpus_games_records_are_guessed() -> None:
    """The records ``tests/games/struct_records.py`` sends in a 10-exchange game, exactly."""
    from tests.games.struct_records import INPUT, STATE

    ups = [INPUT.pack(1, seq % 4, seq, 0.25 * seq, -1.5) for seq in range(10)]
    x = y = 0.0
    downs = []
    for seq in range(10):
        x, y = x + 0.25 * seq, y - 1.5
        downs.append(STATE.pack(seq, 100 - seq, x, y, 0.5 * seq, 3.0, b"hero", (seq % 4) * 10))
    up, down = guess_layout(ups), guess_layout(downs)
    assert up is not None and kinds(up.fmt) == kinds("<BBHff"), up
    assert down is not None and kinds(down.fmt) == kinds("<HHffff16sI"), down
    assert up.origin == down.origin == "guessed from 10 records"


def test_no_guess_for_random_bytes_big_records_or_nothing() -> None:
    rng = random.Random(9)
    assert guess_layout([rng.randbytes(24) for _ in range(20)]) is None  # nothing explains them better than noise
    assert guess_layout([bytes(GUESS_MAX_SIZE + 1)] * 4) is None
    assert guess_layout([]) is None and guess_layout([b""]) is None


def test_a_guess_takes_the_most_common_size() -> None:
    recs = records("<Hff", 10, 3)
    guess = guess_layout([b"\x01\x02\x03", *recs, b"\x04" * 7])
    assert guess is not None and kinds(guess.fmt) == kinds("<Hff") and guess.origin == "guessed from 10 records"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_never_read(tmp_path: Path) -> None:
    """Reading a FIFO named like a program would wait forever for a writer."""
    fifo = tmp_path / "game.py"
    os.mkfifo(fifo)
    assert layouts_from_source([fifo]) == []
    assert program_sources(["python", str(fifo)]) == []
    assert program_sources(["python", str(write(tmp_path / "main.py", ""))]) == [tmp_path / "main.py"]

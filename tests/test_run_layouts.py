"""Struct layouts in the terminal (issue 20, items 4 and 6): ``sockscope run`` reads the program's source once and,
when a connection carries fixed-size records, offers the layouts that fit them in one line; a single one decodes
that direction's records in the terminal's summaries; without one, a guess from the records' bytes is offered and
marked as one (never used to decode). The terminal's summariser also follows each connection's framing
(``DecodeContext.framing``): a ``delim:`` terminator separates JSON values, a msgpack stream vouches for its
objects.

End-to-end tests run real programs through ``python -m inspector.run`` on 127.0.0.1; the printer tests feed a real
:class:`~proxy.printer.Printer` the records a proxy publishes.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

from inspector.layouts import SourceScan
from inspector.summary import make_summariser
from proxy.model import Clock, CloseReason, ConnectionClosed, Direction, FramingInferred, Message
from proxy.printer import Printer
from tests.conftest import IO_TIMEOUT
from tests.test_layouts import kinds
from tests.test_run import child_env, free_port

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60.0
N = 14

# Struct records both ways, of different sizes, in the styles learners write: a Struct object unpacked into
# names, a format constant packed and unpacked.
STRUCT_GAME = textwrap.dedent('''
    import socket
    import struct
    import sys
    import threading

    INPUT = struct.Struct("<BBHff")
    STATE_FMT = "<HHff8sI"


    def recv_exact(sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data


    def server(srv, n):
        conn, _ = srv.accept()
        with conn:
            for _ in range(n):
                kind, buttons, seq, dx, dy = INPUT.unpack(recv_exact(conn, INPUT.size))
                conn.sendall(struct.pack(STATE_FMT, seq, 100 - seq, dx * 2, dy, b"hero", buttons))


    port, n = int(sys.argv[1]), int(sys.argv[2])
    srv = socket.create_server(("127.0.0.1", port))
    t = threading.Thread(target=server, args=(srv, n))
    t.start()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    for seq in range(n):
        c.sendall(INPUT.pack(1, seq % 4, seq, 0.25 * seq, -1.5))
        seq_back, hp, x, y, name, score = struct.unpack(STATE_FMT, recv_exact(c, struct.calcsize(STATE_FMT)))
        assert seq_back == seq
    t.join(10)
    c.close()
    srv.close()
    print("done", flush=True)
''')

# The same game with formats built at run time from a function's argument: no layout the source shows.
COMPUTED_GAME = STRUCT_GAME.replace(
    'INPUT = struct.Struct("<BBHff")\nSTATE_FMT = "<HHff8sI"',
    'def codec(kinds):\n    return "<" + kinds\n\n\n'
    'INPUT = struct.Struct(codec("BBHff"))\nSTATE_FMT = codec("HHff8sI")')


def sockscope_run(tmp_path: Path, source: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp_path / "game.py"
    script.write_text(source, encoding="utf-8")
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "inspector.run", "--port", str(port), *extra, "--",
                           sys.executable, str(script), str(port), str(N)],
                          capture_output=True, text=True, encoding="utf-8", timeout=RUN_TIMEOUT, env=child_env(),
                          cwd=ROOT)
    return done, script


def line_no(script: Path, needle: str) -> int:
    (n,) = [i for i, t in enumerate(script.read_text(encoding="utf-8").splitlines(), 1) if needle in t]
    return n


@pytest.mark.timeout(90)
def test_run_decodes_fixed_records_with_the_layout_from_the_programs_source(tmp_path: Path) -> None:
    done, script = sockscope_run(tmp_path, STRUCT_GAME)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    log = done.stderr.splitlines()
    up = f"<BBHff kind buttons seq dx dy (game.py:{line_no(script, '= INPUT.unpack(')} INPUT.unpack)"
    down = (f"<HHff8sI seq_back hp x y name score (game.py:{line_no(script, '= struct.unpack(STATE_FMT')} "
            "struct.unpack)")
    assert any(x.endswith(f"#1 c2s 12-byte records decoded with the layout from the source: {up}") for x in log), log
    assert any(x.endswith(f"#1 s2c 24-byte records decoded with the layout from the source: {down}")
               for x in log), log
    c2s = [x for x in log if " c2s " in x and "    12 B" in x]
    s2c = [x for x in log if " s2c " in x and "    24 B" in x]
    assert len(c2s) == len(s2c) == N, log
    # Once the framing is inferred, every record is decoded with the source's names.
    assert any(x.endswith("struct kind=1 buttons=1 seq=13 dx=3.25 dy=-1.5") for x in c2s), c2s
    assert any(x.endswith("struct seq_back=13 hp=87 x=6.5 y=-1.5 name='hero' score=1") for x in s2c), s2c
    assert sum("struct " in x for x in c2s) >= N - 3 and sum("struct " in x for x in s2c) >= N - 3


@pytest.mark.timeout(90)
def test_run_offers_a_guess_when_the_source_shows_no_layout(tmp_path: Path) -> None:
    done, _ = sockscope_run(tmp_path, COMPUTED_GAME)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    log = done.stderr.splitlines()
    guesses = {}
    for x in log:
        m = re.search(r"#1 (c2s|s2c) (\d+)-byte records, guess: (\S+) \(guessed from 8 records, no layout in the "
                      r"program's source fits them; a guess, not used to decode\)$", x)
        if m:
            guesses[m.group(1)] = (int(m.group(2)), m.group(3))
    assert set(guesses) == {"c2s", "s2c"}, log
    assert guesses["c2s"][0] == 12 and kinds(guesses["c2s"][1]) == kinds("<BBHff"), guesses
    assert guesses["s2c"][0] == 24 and kinds(guesses["s2c"][1]) == kinds("<HHff8sI"), guesses
    assert not any("struct " in x for x in log)  # a guess is only offered


# ------------------------------------------------------------------------------------------ the printer


def printer_with(scan: SourceScan | None) -> tuple[Printer, io.StringIO]:
    out = io.StringIO()
    factory = make_summariser if scan is None else functools.partial(make_summariser, scan)
    return Printer(Clock(0, 0), out, summariser=factory), out


def framing(name: str, conn: int = 1, direction: Direction = Direction.C2S) -> FramingInferred:
    return FramingInferred(conn, direction, name, "test", 0, 0, 0)


def message(data: bytes, seq: int, conn: int = 1, direction: Direction = Direction.C2S) -> Message:
    return Message(seq + 1, conn, direction, seq, data, 0, 0)


def lines(p: Printer, out: io.StringIO) -> list[str]:
    assert p.terminal.flush(IO_TIMEOUT)
    return out.getvalue().splitlines()


def test_one_line_per_direction_and_size_when_connections_repeat(tmp_path: Path) -> None:
    """A connection per request: the offer is made once, and every connection's records are decoded with it."""
    script = tmp_path / "game.py"
    script.write_text(STRUCT_GAME, encoding="utf-8")
    scan = SourceScan([sys.executable, str(script)]).start()
    p, out = printer_with(scan)
    for conn in (1, 2, 3):
        p(framing("fixed:12", conn))
        p(message(b"\x01\x02\x03\x00" + bytes(8), conn * 10, conn))
        p(ConnectionClosed(conn, CloseReason.CLOSED, "done", 0, 12, 0, 1, 0))
    got = lines(p, out)
    offers = [x for x in got if "12-byte records decoded with the layout from the source" in x]
    assert len(offers) == 1 and " #1 c2s " in offers[0], got
    assert sum(x.endswith("struct kind=1 buttons=2 seq=3 dx=0 dy=0") for x in got) == 3, got


def test_several_fitting_layouts_are_offered_and_none_is_chosen(tmp_path: Path) -> None:
    script = tmp_path / "game.py"
    script.write_text('import struct\nA = "<Hff"\nB = "<hhhhh"\nstruct.pack(A, 1, 2, 3)\n'
                      'struct.pack(B, 1, 2, 3, 4, 5)\nstruct.pack("<BB", 1, 2)\n', encoding="utf-8")
    p, out = printer_with(SourceScan([sys.executable, str(script)]).start())
    p(framing("fixed:10"))
    p(message(struct.pack("<Hff", 3, 1.5, 2.5), 0))
    got = lines(p, out)
    offer = [x for x in got if "10-byte records fit" in x]
    assert len(offer) == 1 and offer[0].endswith(
        "#1 c2s 10-byte records fit 2 layouts from the source: <Hff (game.py:4 struct.pack); <hhhhh (game.py:5 "
        "struct.pack) (choose one in the window: sockscope run --window)"), got
    assert not any("struct " in x for x in got if "10 B" in x)


def test_sockscope_proxy_without_source_offers_a_guess_after_a_few_records() -> None:
    p, out = printer_with(None)
    p(framing("fixed:10", 4, Direction.S2C))
    for i in range(10):
        p(message(struct.pack("<Hff", 300 + 997 * i, 1.5 * i, -0.25 * i + 100.0), i, 4, Direction.S2C))
    got = lines(p, out)
    (guess,) = [x for x in got if "guess:" in x]
    assert guess.endswith("#4 s2c 10-byte records, guess: <Hff (guessed from 8 records, no source to read; a guess, "
                          "not used to decode)"), got
    assert got.index(guess) == 1 + [i for i, x in enumerate(got) if "    10 B" in x][7]  # after the 8th record


def test_a_guess_is_made_at_close_from_fewer_records() -> None:
    p, out = printer_with(None)
    p(framing("fixed:10"))
    for i in range(3):
        p(message(struct.pack("<Hff", 300 + 7 * i, 1.5 * i, 100.0 - i), i))
    p(ConnectionClosed(1, CloseReason.CLOSED, "done", 0, 30, 0, 3, 0))
    assert any(re.search(r"#1 c2s 10-byte records, guess: <\S+ \(guessed from 3 records", x) for x in lines(p, out))


def test_the_terminal_decodes_with_the_connections_framing() -> None:
    p, out = printer_with(None)
    p(framing("delim:EOT\\x00", 1, Direction.C2S))
    p(message(b'{"cmd": "move", "x": 3}EOT\x00', 0))
    p(framing("msgpack", 1, Direction.S2C))
    p(message(msgpack.packb([1, -1]), 1, 1, Direction.S2C))
    p(message(msgpack.packb([1, -1]), 2, 2, Direction.S2C))  # another connection: no framing known
    got = lines(p, out)
    assert any(x.endswith('json {"cmd": "move", "x": 3}') for x in got), got
    assert any(x.endswith("msgpack [1, -1]") and " #1 " in x for x in got), got
    assert not any(x.endswith("msgpack [1, -1]") and " #2 " in x for x in got), got

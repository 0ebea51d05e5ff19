"""The terminal printer of ``sockscope-proxy`` and ``sockscope run`` (issue 20, items 2 and 6).

What is checked: a line for every ``FramingInferred`` (what was inferred and why; for a stall or a contradiction
what happened and what the user can do); decoded summaries (pickle class and fields, msgpack and JSON maps) made
by a summariser that runs on the terminal's writer thread, never on the thread that publishes (the relay's),
within a per-message deadline and a share of the writer's time; a summariser that blocks costs the publisher
nothing (lines past the buffer are dropped and counted); without a summariser, text or hex as before; the
summariser reaches ``proxy/`` only through the ``sockscope.summarisers`` entry point.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import threading
import tomllib
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import msgpack
import pytest

from proxy import printer as printer_module
from proxy.model import Clock, Direction, FramingInferred, Message, Notice
from proxy.printer import (
    SUMMARISER_GROUP,
    SUMMARY_BURST_NS,
    SUMMARY_DEADLINE_NS,
    Printer,
    SummariserLoadError,
    Terminal,
    plugin_summariser,
)
from tests.conftest import IO_TIMEOUT

REPO = Path(__file__).resolve().parents[1]


class Point:
    """A class a game pickles (the safe reader shows it by name, never imports it)."""

    def __init__(self) -> None:
        self.name = "bob"
        self.x = 1.5
        self.hp = 3


def msg(data: bytes, seq: int = 0, conn: int = 1, direction: Direction = Direction.C2S) -> Message:
    return Message(seq + 1, conn, direction, seq, data, 0, 0)


def lines_of(buf: io.StringIO, p: Printer) -> list[str]:
    assert p.terminal.flush(IO_TIMEOUT)
    return buf.getvalue().splitlines()


def _inspector_summariser() -> Callable[[Message, int], str | None]:
    from inspector.summary import make_summariser

    s = make_summariser()
    assert s is not None
    return s


# ------------------------------------------------------------------------------------------ FramingInferred


def framing(cause: str, name: str, reason: str, direction: Direction = Direction.C2S) -> FramingInferred:
    return FramingInferred(3, direction, name, reason, 4, 100, 0, 0, 2, cause)


def test_every_framing_change_is_a_line_with_its_reason() -> None:
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=None)
    p(framing("inferred", "len16be", "2-byte big-endian length prefix: 2 of 2 messages fit (2 reads)"))
    p(framing("remembered", "lines", "as on earlier connections to this server, newline-terminated lines: 1 of 1 "
                                     "messages fit (1 read)", Direction.S2C))
    p(framing("user", "delim:EOT\\x00", "chosen by the user, from the next read on"))
    p(framing("resync", "lines", "a read fits lines exactly again: framed with it from the next message on"))
    p(framing("inferred", "raw", "no framing fits the first 3 reads: each read is a message (raw)"))
    out = lines_of(buf, p)
    assert len(out) == 5, out
    assert out[0].endswith("#3 c2s framing len16be (inferred): 2-byte big-endian length prefix: 2 of 2 messages "
                           "fit (2 reads)"), out[0]
    assert "#3 s2c framing lines (remembered from earlier connections): as on earlier" in out[1], out[1]
    assert "#3 c2s framing delim:EOT\\x00 (chosen by the user)" in out[2], out[2]
    assert "#3 c2s framing lines (fits again): a read fits lines exactly again" in out[3], out[3]
    assert "#3 c2s framing raw (inferred): no framing fits" in out[4] and "--framing c2s=" in out[4], out[4]


def test_a_framing_that_did_not_hold_says_what_happened_and_what_to_do() -> None:
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=None)
    what = ("146 bytes waited 250 ms for the rest of a lines frame, so they were forwarded as they are; this "
            "direction is passed on raw until a read fits lines exactly again")
    p(framing("stall", "raw", what))
    p(framing("contradiction", "auto", "bytes that cannot start a msgpack object; sockscope infers the framing "
                                       "again from the next read", Direction.S2C))
    p(framing("limit", "raw", "after 3 framings that did not hold, this direction is passed on raw from now on"))
    stall, contradiction, limit = lines_of(buf, p)
    assert "#3 c2s framing raw (stalled): 146 bytes waited 250 ms" in stall, stall
    assert "what you can do: " in stall and "--framing auto" in stall and "docs/framing.md" in stall, stall
    assert "#3 s2c framing auto (contradicted): bytes that cannot start a msgpack object" in contradiction
    assert "what you can do: " in contradiction and "--framing s2c=" in contradiction, contradiction
    assert "#3 c2s framing raw (given up)" in limit and "what you can do: " in limit, limit


# ------------------------------------------------------------------------------------------ decoded summaries


def test_decoded_summaries_name_the_pickle_class_and_show_maps() -> None:
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=_inspector_summariser)
    p(msg(pickle.dumps(Point(), protocol=4)))
    p(msg(msgpack.packb({"t": "state", "pos": [1, 2]}), 1, direction=Direction.S2C))
    p(msg(json.dumps({"type": "move", "x": 1}).encode() + b"\n", 2))
    p(msg(b"hello world", 3))
    p(msg(struct.pack("<Iff", 7, 1.0, 2.0), 4))
    pick, mp, js, text, binary = lines_of(buf, p)
    assert "pickle Point(" in pick and "'name': 'bob'" in pick and "'hp': 3" in pick, pick
    assert "msgpack {'t': 'state', 'pos': [1, 2]}" in mp, mp
    assert 'json {"type": "move", "x": 1}' in js, js
    assert text.endswith('"hello world"'), text  # plain text and unknown binary: as before, text or hex
    assert binary.endswith("07 00 00 00 00 00 80 3f 00 00 00 40"), binary


def test_without_a_summariser_messages_are_text_or_hex_as_before() -> None:
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=None)
    p(msg(msgpack.packb({"t": "state"})))
    p(msg(b"hello", 1))
    mp, text = lines_of(buf, p)
    assert mp.endswith("81 a1 74 a5 73 74 61 74 65"), mp
    assert text.endswith('"hello"'), text


def test_the_summariser_runs_on_the_writer_thread_with_a_deadline() -> None:
    """Never on the thread that publishes (in the proxy, the relay's); each call gets a deadline."""
    seen: list[tuple[str, int]] = []

    def summarise(m: Message, deadline_ns: int) -> str:
        seen.append((threading.current_thread().name, deadline_ns))
        return "json {}"

    now = [1_000_000_000]
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=lambda: summarise, now_ns=lambda: now[0])
    p(msg(b"{}"))
    assert lines_of(buf, p)[-1].endswith("json {}")
    [(thread, deadline)] = seen
    assert thread == "sockscope-terminal" and thread != threading.current_thread().name
    assert deadline == now[0] + SUMMARY_DEADLINE_NS


@pytest.mark.timeout(60)
def test_a_summariser_that_blocks_never_holds_the_publisher() -> None:
    """A decoder stuck on one message: publishing goes on at once; past the buffer lines are dropped and
    counted, and once it returns the terminal says how many."""
    release = threading.Event()
    entered = threading.Event()

    def stuck(m: Message, deadline_ns: int) -> str:
        entered.set()
        release.wait(IO_TIMEOUT)
        return "json {}"

    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=lambda: stuck)
    p.terminal.limit = 64 << 10
    p(msg(b"{}"))
    assert entered.wait(IO_TIMEOUT)
    for i in range(20_000):  # the test's timeout is the backstop: each call returns at once
        p(msg(b'{"n": %d}' % i, i + 1))
    assert p.terminal.dropped > 10_000
    release.set()
    out = lines_of(buf, p)
    assert any(line.startswith("… ") and "lines dropped" in line for line in out), out[-3:]


def test_decoding_takes_at_most_a_share_of_the_writers_time() -> None:
    """A flood of messages: the summariser is called while its time budget lasts, then messages are shown as text
    or hex (said once), so decoding never takes more than a share of the process's time from the relay."""
    now = [0]
    calls = []

    def slow(m: Message, deadline_ns: int) -> str:
        calls.append(m.seq)
        now[0] += 30_000_000  # each decode costs 30 ms of the (fake) clock
        return "json {}"

    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=lambda: slow, now_ns=lambda: now[0])
    for i in range(40):
        p(msg(b"{}", i))
    out = lines_of(buf, p)
    decoded = [x for x in out if x.endswith("json {}")]
    assert len(calls) == len(decoded) and SUMMARY_BURST_NS // 30_000_000 <= len(calls) < 20, len(calls)
    notes = [x for x in out if "faster than the terminal can decode" in x]
    assert len(notes) == 1, out
    assert sum(1 for x in out if x.endswith('"{}"')) == 40 - len(calls)  # the rest: text, as before


def test_a_summariser_that_raises_costs_one_line_and_the_message_is_shown_as_before() -> None:
    def broken(m: Message, deadline_ns: int) -> str:
        raise RuntimeError("boom")

    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=lambda: broken)
    p(msg(b"hello"))
    p(msg(b"again", 1))
    out = lines_of(buf, p)
    assert sum("boom" in x for x in out) == 1 and len(out) == 3, out
    assert next(x for x in out if "boom" not in x).endswith('"hello"') and out[-1].endswith('"again"'), out


def test_quiet_is_unchanged_and_loads_no_summariser() -> None:
    """``--quiet`` prints connection events and notices only, as before (a framing that did not hold is a notice
    as well), and loads no decoder."""
    loaded = []
    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, show_messages=False, summariser=lambda: loaded.append(1) or None)
    p(msg(b"{}"))
    p(framing("inferred", "len16be", "2-byte big-endian length prefix: 2 of 2 messages fit (2 reads)"))
    p(Notice("warning", "careful", 0))
    assert [x.split(" ", 1)[1] for x in lines_of(buf, p)] == ["warning: careful"]
    assert loaded == []


# ------------------------------------------------------------------------------------------ the entry point


def test_the_summariser_comes_through_an_entry_point_and_a_broken_one_is_named() -> None:
    good = EntryPoint("inspector", "inspector.summary:make_summariser", SUMMARISER_GROUP)
    broken = EntryPoint("broken", "sockscope_no_such_module:make", SUMMARISER_GROUP)
    s = plugin_summariser([broken, good])
    assert s is not None and s(msg(b'{"a": 1}'), 0) is not None
    assert plugin_summariser([]) is None
    with pytest.raises(SummariserLoadError, match="'broken = sockscope_no_such_module:make' failed to load: "
                                                  "ModuleNotFoundError"):
        plugin_summariser([broken])


def test_a_plugin_that_fails_to_load_is_one_line_and_messages_print_as_before() -> None:
    def factory() -> None:
        raise SummariserLoadError("the terminal summariser 'x = y:z' failed to load: ImportError: nope")

    buf = io.StringIO()
    p = Printer(Clock(0, 0), buf, summariser=factory)
    p(msg(b"hello"))
    out = lines_of(buf, p)
    assert out[0] == ("sockscope: the terminal summariser 'x = y:z' failed to load: ImportError: nope; messages are "
                      "shown as text or hex"), out
    assert out[1].endswith('"hello"')


def test_pyproject_registers_the_inspectors_summariser() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"][SUMMARISER_GROUP]
    assert eps == {"inspector": "inspector.summary:make_summariser"}
    assert printer_module.SUMMARISER_GROUP == "sockscope.summarisers"


def test_a_terminal_on_a_pipe_renders_deferred_lines_on_its_thread() -> None:
    r, w = os.pipe()
    stream = open(w, "w", encoding="utf-8", closefd=True)
    try:
        term = Terminal(stream)
        threads: list[str] = []
        term.line("first")
        term.defer(lambda: threads.append(threading.current_thread().name) or "second", 10)
        term.defer(lambda: None, 10)  # nothing to show
        term.defer(lambda: ["third", "fourth"], 10)
        assert term.close(IO_TIMEOUT)
    finally:
        stream.close()
    data = os.read(r, 65536).decode()
    os.close(r)
    assert data.splitlines() == ["first", "second", "third", "fourth"]
    assert threads == ["sockscope-terminal"]


def test_deferred_lines_wait_for_the_callers_to_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Making a message's line (decoding it) takes the interpreter's lock: it waits until the publisher (the relay)
    pauses, so a game's answer is not relayed behind it. With the pause set longer than the test, the line is made
    only when a flush asks for it."""
    monkeypatch.setattr(printer_module, "SETTLE_NS", 60_000_000_000)
    monkeypatch.setattr(printer_module, "SETTLE_MAX_NS", 60_000_000_000)
    buf = io.StringIO()
    term = Terminal(buf)
    made = threading.Event()
    term.line("plain lines go out at once")
    term.defer(lambda: made.set() or "made", 10)
    assert not made.wait(0.3)  # (a bounded check that nothing happened, not a synchronisation)
    assert term.flush(IO_TIMEOUT) and made.is_set()
    assert buf.getvalue().splitlines() == ["plain lines go out at once", "made"]
    assert term.close(IO_TIMEOUT)

"""Re-framing for the view (issue 20, item 3), Qt-free: ``inspector.reframe.cut`` and the store's derived rows.

What is checked: the reads the proxy passed on raw while it inferred a framing are cut into that framing's
messages (two length-prefixed frames in one read become two rows with the right payloads; a line sent in three
pieces one row); the reads stay stored as they came (rows, ids, bytes: what a session file or a replay takes); a
derived row has the id, time and state of the read that completed it and follows that read's updates; a filter sees
derived rows; a framing the user chose re-frames what came before as far as it fits; nothing is re-framed that
cannot be (held, edited, a gap); and the work is bounded by the bytes (``Cut.work``, ``REFRAME_MAX_BYTES``).
The records are those the proxy publishes (``proxy.model``); the window's end of it is tests/test_ui_framing.py.
"""

from __future__ import annotations

import struct

import pytest

from inspector.reframe import REFRAME_MAX_BYTES, REFRAME_MAX_PIECES, Piece, cut
from inspector.store import DERIVED_BASE, REFRAME_MAX_SOURCES, MessageStore
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    FramingInferred,
    Message,
    MessageState,
    MessageUpdated,
    Origin,
)

C2S, S2C = Direction.C2S, Direction.S2C


def len16(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def msg(i: int, seq: int, data: bytes, d: Direction = C2S, conn: int = 1,
        state: MessageState = MessageState.FORWARDED, origin: Origin = Origin.LIVE) -> Message:
    t = i * 1_000_000
    return Message(i, conn, d, seq, data, t, None if state is MessageState.HELD else t + 100, origin, state)


def inferred(framing: str, from_seq: int, since_seq: int = 0, d: Direction = C2S, conn: int = 1,
             cause: str = "inferred") -> FramingInferred:
    return FramingInferred(conn, d, framing, f"{framing}: {from_seq - since_seq} of them fit", from_seq, 0, 1,
                           since_seq, from_seq - since_seq, cause)


def opened(conn: int = 1) -> ConnectionOpened:
    return ConnectionOpened(conn, ("127.0.0.1", 40000 + conn), ("127.0.0.1", 5555), 0)


def view_payloads(s: MessageStore, d: Direction | None = None) -> list[bytes]:
    return [s.payload(h) for h in s.view if d is None or s.direction(h) is d]


# ------------------------------------------------------------------------------------------ cut


def test_two_length_prefixed_frames_in_one_read_are_two_pieces() -> None:
    a, b = len16(b'{"a":1}'), len16(b'{"b":22}')
    c = cut([a + b], "len16be", exact=True)
    assert c.reads == 1 and not c.why
    assert c.pieces == (Piece(0, 0, 0, len(a)), Piece(0, 0, len(a), len(a) + len(b)))
    assert c.work == len(a + b)


def test_a_line_over_three_reads_is_one_piece_and_whole_reads_are_found() -> None:
    reads = [b"hello\n", b"wor", b"ld", b"!\nbye\n"]
    c = cut(reads, "lines", exact=True)
    assert c.pieces == (Piece(0, 0, 0, 6), Piece(1, 3, 0, 2), Piece(3, 3, 2, 6))
    assert c.whole_reads([len(r) for r in reads]) == {0}


def test_exact_needs_a_boundary_at_the_end_and_otherwise_the_longest_prefix_is_cut() -> None:
    reads = [b"a\n", b"b\nc", b"d"]
    c = cut(reads, "lines", exact=True)
    assert (c.reads, c.pieces, c.why) == (0, (), "the bytes do not end on a lines message boundary")
    c = cut(reads, "lines", exact=False)
    assert c.reads == 1 and c.pieces == (Piece(0, 0, 0, 2),) and "boundary" in c.why


def test_a_framer_that_gives_up_ends_the_cut_and_names_and_raw_are_refused() -> None:
    reads = [b"[1]", b"[2]", b"}{not json"]
    c = cut(reads, "json", exact=False)
    assert c.reads == 2 and len(c.pieces) == 2
    c = cut(reads, "json", exact=True)
    assert c.reads == 0 and "json framing gave up" in c.why
    assert cut([b"x"], "raw", exact=False).why == "raw shows each read as it came"
    assert cut([b"x"], "len3", exact=False).why.startswith("unknown framing")


def test_the_work_is_bounded_by_the_bytes() -> None:
    reads = [b"x" * 1000 + b"\n"] * 200  # 200 KiB: more than a re-framing takes
    c = cut(reads, "lines", exact=False)
    assert c.work <= REFRAME_MAX_BYTES and c.reads == REFRAME_MAX_BYTES // 1001
    assert cut(reads, "lines", exact=True).why == f"more than {REFRAME_MAX_BYTES // 1024} KiB to re-frame"
    one_byte_reads = [b"a"] * 5000 + [b"\n"]  # a frame over thousands of reads: linear, not quadratic
    c = cut(one_byte_reads, "lines", exact=True)
    assert c.pieces == (Piece(0, 5000, 0, 1),) and c.work == 5001


HOSTILE = {
    # a read of 128 KiB of tiny messages: framing stops a slice after the messages' cap, not at the end
    "lines, all newlines": ([b"\n" * REFRAME_MAX_BYTES], "lines", True),
    "json, tiny numbers": ([b"1 " * (REFRAME_MAX_BYTES // 2)], "json", True),
    "msgpack, positive fixints": ([b"\x01" * REFRAME_MAX_BYTES], "msgpack", True),
    "len8, empty payloads": ([b"\x00" * REFRAME_MAX_BYTES], "len8", True),
    "fixed:1": ([b"x" * REFRAME_MAX_BYTES], "fixed:1", True),
    # framers that give up, or wait, cost what they look at once
    "json, nesting bomb": ([b"[" * REFRAME_MAX_BYTES], "json", False),
    "json, one long escaped string": ([b'"' + b"\\\\" * (REFRAME_MAX_BYTES // 2 - 1) + b'"'], "json", False),
    "a 64-byte terminator never seen": ([b"a" * REFRAME_MAX_BYTES], "delim:" + "b" * 64, False),
    "header16json without a length": ([b"\x00\x02{}" * (REFRAME_MAX_BYTES // 4)], "header16json", False),
    "len32 declaring 4 GB": ([b"\xff\xff\xff\xff" + b"x" * 1000], "len32be", False),
    "64 reads of 2 KiB of lines": ([b"x\n" * 1024] * 64, "lines", True),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_reads_are_cut_within_bounds(name: str) -> None:
    reads, framing, many = HOSTILE[name]
    c = cut(reads, framing, exact=False)
    assert c.work <= REFRAME_MAX_BYTES and len(c.pieces) <= REFRAME_MAX_PIECES
    if many:  # stopped at the messages' cap: at most a slice (4 KiB) past it was framed
        assert c.work <= 2 * REFRAME_MAX_PIECES + 4096, c.work
    # the store turns it into at most that many rows, and never a wrong one
    s = MessageStore()
    s.apply([opened()] + [msg(i + 1, i, data) for i, data in enumerate(reads)])
    s.apply([inferred(framing, len(reads), cause="user")])
    assert len(s.view) <= len(reads) + REFRAME_MAX_PIECES
    assert b"".join(s.payload(h) for h in s.view) == b"".join(reads)


# ------------------------------------------------------------------------------------------ the store


def test_inferred_framing_replaces_a_read_of_two_frames_by_two_rows_and_keeps_the_read() -> None:
    a, b, c = len16(b"first"), len16(b"second"), len16(b"third")
    s = MessageStore()
    r0 = s.apply([opened(), msg(1, 0, a + b), msg(2, 0, b"pong", S2C)])
    assert list(s.view) == [0, 1]
    r = s.apply([inferred("len16be", 1), msg(3, 1, c)])
    assert [f.framing for f in r.framings] == ["len16be"] and r0.first_new_visible == 0
    assert view_payloads(s) == [a, b, b"pong", c]
    assert len(s) == 3 and s.payload(0) == a + b and list(s.visible) == [0, 1, 2]  # the read, as it came
    h1, h2 = s.view[0], s.view[1]
    assert h1 >= DERIVED_BASE and s.is_derived(h1) and s.real_row(h2) == 0 and s.reframed(0)
    assert [s.display_id(h) for h in s.view] == ["1.1", "1.2", "2", "3"]
    m = s.message(h2)
    assert (m.id, m.seq, m.data, m.arrival_ns, m.direction) == (1, 0, b, 1_000_000, C2S)
    assert s.size(h2) == len(b) and s.conn_of(h2) == 1 and s.frames_ending_in(0) == [h1, h2]
    assert r.view_edits and r.view_edits[0].pos == 0 and r.view_edits[0].removed == (0,)
    assert r.view_edits[0].inserted == 2 and r.first_new_visible == 3 and r.view_count_before == 2
    assert s.visible_position(0) == 0 and s.visible_position(h2) == 1 and s.visible_position(2) == 3
    lane = s.connections[1].framing[C2S]
    assert (lane.framing, lane.cause, lane.reframed) == ("len16be", "inferred", 1)


def test_a_frame_over_several_reads_is_one_row_where_its_last_read_was() -> None:
    s = MessageStore()
    s.apply([opened(), opened(2), msg(1, 0, b"hel"), msg(2, 0, b"other", conn=2), msg(3, 1, b"lo\nwor"),
             msg(4, 2, b"ld\n")])
    r = s.apply([inferred("lines", 3)])
    assert view_payloads(s) == [b"other", b"hello\n", b"world\n"]
    assert [s.display_id(h) for h in s.view] == ["2", "3", "4"]
    assert s.visible_position(0) == 1  # a read that only began a message: where that message is
    # two edits against what a model showed: the first read out, then the second replaced by the message
    assert [(e.pos, e.removed, e.inserted) for e in r.view_edits] == [(0, (0,), 0), (1, (2,), 1), (2, (3,), 1)]


def test_reads_that_were_one_message_each_stay_as_they_are() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1, 0, b"a\n"), msg(2, 1, b"b\n")])
    r = s.apply([inferred("lines", 2)])
    assert not r.view_edits and s.view is s.visible and list(s.view) == [0, 1]


def test_a_derived_row_follows_the_state_of_its_read() -> None:
    a, b = len16(b"x"), len16(b"y")
    s = MessageStore()
    s.apply([opened(), msg(1, 0, a + b, state=MessageState.SCHEDULED), inferred("len16be", 1)])
    h = s.view[1]
    assert s.state(h) is MessageState.SCHEDULED
    r = s.apply([MessageUpdated(1, 1, C2S, MessageState.FORWARDED, 5, release_ns=9_000_000)])
    assert s.state(h) is MessageState.FORWARDED and s.added_delay_ns(h) == 8_000_000
    assert set(r.changed_rows) == {0, *s.view[:2]}


def test_filters_see_the_messages_and_a_refilter_keeps_the_view() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1, 0, len16(b"ping") + len16(b"pong")), inferred("len16be", 1), msg(2, 1, len16(b"ping"))])
    s.refilter(lambda r: s.payload(r).endswith(b"ong"))
    assert view_payloads(s) == [len16(b"pong")] and list(s.visible) == [0]  # the read ends in "pong" too
    s.refilter(None)
    assert view_payloads(s) == [len16(b"ping"), len16(b"pong"), len16(b"ping")] and list(s.visible) == [0, 1]
    steps = list(s.refilter_steps(lambda r: s.payload(r).endswith(b"ing"), chunk=1))
    assert steps[-1] == 1.0 and view_payloads(s) == [len16(b"ping"), len16(b"ping")]
    # a re-framing that arrives while a slice-wise refilter runs is not lost: the steps start again
    s2 = MessageStore()
    s2.apply([opened(), msg(1, 0, b"x"), msg(2, 1, b"a\nb\n"), msg(3, 2, b"c")])
    gen = s2.refilter_steps(lambda r: True, chunk=1)
    next(gen)
    s2.apply([inferred("lines", 2, since_seq=1)])
    list(gen)
    assert view_payloads(s2) == [b"x", b"a\n", b"b\n", b"c"]


def test_a_framing_the_user_chooses_reframes_what_came_since_as_far_as_it_fits() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1, 0, b"GET"), inferred("raw", 1), msg(2, 1, b" /a\nGET /b\n"), msg(3, 2, b"GET")])
    r = s.apply([inferred("lines", 3, since_seq=3, cause="user")])
    assert view_payloads(s) == [b"GET /a\n", b"GET /b\n", b"GET"]  # the last read does not end a line yet
    assert len(r.view_edits) == 2 and s.connections[1].framing[C2S].reframed == 2


def test_nothing_is_reframed_that_cannot_be() -> None:
    frames = len16(b"a") + len16(b"b")
    s = MessageStore()
    s.apply([opened(), msg(1, 0, frames, state=MessageState.HELD), inferred("len16be", 1)])
    lane = s.connections[1].framing[C2S]
    assert list(s.view) == [0] and "held" in lane.note  # a held read is released as the unit it is
    s = MessageStore()
    s.apply([opened(), msg(1, 1, frames), inferred("len16be", 2)])  # seq 0 was never seen (paused, attached late)
    assert list(s.view) == [0] and "not captured" in s.connections[1].framing[C2S].note
    s = MessageStore()
    s.apply([opened(), msg(1, 0, frames + b"\x00"), inferred("len16be", 1)])  # not what the proxy promised
    assert list(s.view) == [0] and "boundary" in s.connections[1].framing[C2S].note


def test_the_rest_of_a_stalled_frame_before_the_inferred_framing_is_left_as_it_came() -> None:
    """After a stall the proxy passes the rest of the stalled frame first; the framing starts after it."""
    s = MessageStore()
    s.apply([opened(), msg(1, 0, b"tail"), msg(2, 1, len16(b"a") + len16(b"b")), inferred("len16be", 2)])
    assert view_payloads(s) == [b"tail", len16(b"a"), len16(b"b")]


def test_tracking_is_bounded_and_dropped_with_the_connection() -> None:
    s = MessageStore()
    n = REFRAME_MAX_SOURCES + 10
    s.apply([opened()] + [msg(i + 1, i, b"x") for i in range(n)])
    assert len(s._runs[1 << 1]) == REFRAME_MAX_SOURCES + 1
    r = s.apply([inferred("lines", n, since_seq=0)])
    assert not r.view_edits and "more messages than the window keeps track of" in s.connections[1].framing[C2S].note
    s.apply([ConnectionClosed(1, CloseReason.CLOSED, "", 5, 0, 0, 0, 0)])
    assert not s._runs


def test_clear_forgets_the_view_too() -> None:
    s = MessageStore()
    s.apply([opened(), msg(1, 0, len16(b"a") + len16(b"b")), inferred("len16be", 1)])
    assert s.visible_count == 2 and s.view_total == 2 and len(s) == 1
    s.clear()
    assert s.visible_count == 0 and s.view is s.visible and len(s) == 0
    s.apply([msg(2, 1, len16(b"c"))])
    assert view_payloads(s) == [len16(b"c")]

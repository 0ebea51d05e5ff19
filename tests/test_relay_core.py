"""Playbook tests of the sans-IO relay core: events in, exact commands out. No sockets, no event loop."""

from __future__ import annotations

from proxy import commands as cmd
from proxy import events as ev
from proxy.framing import FramingSpec
from proxy.model import (
    CloseReason,
    ConnectionClosed,
    ConnectionOpened,
    DelayReason,
    Direction,
    FramingInferred,
    HalfClosed,
    Ids,
    Message,
    MessageState,
    MessageUpdated,
    Notice,
    Origin,
    Side,
    UpstreamConnected,
)
from proxy.relay import STALL_CONFIRM_NS, STALL_NS, Relay, Shared

C, S = Side.CLIENT, Side.SERVER


def make(framing: FramingSpec | None = None) -> Relay:
    return Relay(1, ("127.0.0.1", 50000), ("127.0.0.1", 5555), framing or FramingSpec(), Ids())


def records(out: list[cmd.Command]) -> list[object]:
    return [c.record for c in out if isinstance(c, cmd.Publish)]


def actions(out: list[cmd.Command]) -> list[cmd.Command]:
    return [c for c in out if not isinstance(c, cmd.Publish)]


def opened(framing: FramingSpec | None = None) -> Relay:
    r = make(framing)
    r.handle(ev.ClientAccepted(0))
    r.handle(ev.UpstreamOpened(1, ("127.0.0.1", 5555)))
    return r


def test_accept_opens_upstream_and_publishes() -> None:
    r = make()
    out = r.handle(ev.ClientAccepted(10))
    assert actions(out) == [cmd.OpenUpstream()]
    assert records(out) == [ConnectionOpened(1, ("127.0.0.1", 50000), ("127.0.0.1", 5555), 10)]
    out = r.handle(ev.UpstreamOpened(20, ("127.0.0.1", 5555)))
    assert records(out) == [UpstreamConnected(1, ("127.0.0.1", 5555), 20)]
    assert actions(out) == []


def test_fast_path_one_record_one_write_each_way() -> None:
    """The write comes before the record: the game's bytes never wait for what subscribers do with it."""
    r = opened()
    out = r.handle(ev.DataReceived(100, C, b"Ping received! \xf0\x9f\x93\xa5"))
    assert out == [
        cmd.SendData(S, b"Ping received! \xf0\x9f\x93\xa5"),
        cmd.Publish(Message(1, 1, Direction.C2S, 0, b"Ping received! \xf0\x9f\x93\xa5", 100, 100)),
    ]
    out = r.handle(ev.DataReceived(200, S, b"pong"))
    assert out == [cmd.SendData(C, b"pong"), cmd.Publish(Message(2, 1, Direction.S2C, 0, b"pong", 200, 200))]
    out = r.handle(ev.DataReceived(300, C, b"x"))
    assert records(out)[0].seq == 1  # type: ignore[attr-defined]


def test_data_before_upstream_waits_then_flows_in_order() -> None:
    r = make()
    r.handle(ev.ClientAccepted(0))
    out = r.handle(ev.DataReceived(5, C, b"early"))
    assert actions(out) == []
    (m,) = records(out)
    assert isinstance(m, Message) and m.state is MessageState.SCHEDULED
    out = r.handle(ev.UpstreamOpened(50, ("127.0.0.1", 5555)))
    assert actions(out) == [cmd.SendData(S, b"early")]
    upd = [x for x in records(out) if isinstance(x, MessageUpdated)]
    assert upd == [MessageUpdated(1, 1, Direction.C2S, MessageState.FORWARDED, 50, 50, None,
                                  ((DelayReason.QUEUE, 45),))]


def test_framing_splits_and_joins_reads() -> None:
    r = opened(FramingSpec("lines", "raw"))
    out = r.handle(ev.DataReceived(10, C, b"a\nb"))
    # "b" waits for the rest of its line, at most STALL_NS: the relay asks to be woken then
    assert actions(out) == [cmd.SendData(S, b"a\n"), cmd.RequestWakeup(10 + STALL_NS)]
    out = r.handle(ev.DataReceived(11, C, b"c\nd\n"))
    assert actions(out) == [cmd.SendData(S, b"bc\n"), cmd.SendData(S, b"d\n")]
    assert [m.seq for m in records(out)] == [1, 2]  # type: ignore[attr-defined]


def test_half_close_each_way_then_closed() -> None:
    r = opened()
    out = r.handle(ev.EofReceived(10, C))
    assert actions(out) == [cmd.HalfClose(S)]
    assert records(out) == [HalfClosed(1, C, 10)]
    # the other direction still flows after the client's FIN
    out = r.handle(ev.DataReceived(11, S, b"late reply"))
    assert actions(out) == [cmd.SendData(C, b"late reply")]
    out = r.handle(ev.EofReceived(12, S))
    assert actions(out) == [cmd.HalfClose(C), cmd.CloseConnection(reset=False)]
    closed = records(out)[-1]
    assert closed == ConnectionClosed(1, CloseReason.CLOSED, "both sides closed", 12, 0, 10, 0, 1)
    assert r.closed
    assert r.handle(ev.DataReceived(13, S, b"x")) == []


def test_server_half_close_first() -> None:
    r = opened()
    assert actions(r.handle(ev.EofReceived(10, S))) == [cmd.HalfClose(C)]
    assert actions(r.handle(ev.DataReceived(11, C, b"still talking"))) == [cmd.SendData(S, b"still talking")]
    assert actions(r.handle(ev.EofReceived(12, C))) == [cmd.HalfClose(S), cmd.CloseConnection(reset=False)]


def test_eof_mid_frame_passes_rest_on_with_warning() -> None:
    r = opened(FramingSpec("len32be", "raw"))
    assert actions(r.handle(ev.DataReceived(10, C, b"\x00\x00\x00\x05ab"))) == [cmd.RequestWakeup(10 + STALL_NS)]
    out = r.handle(ev.EofReceived(11, C))
    assert actions(out) == [cmd.SendData(S, b"\x00\x00\x00\x05ab"), cmd.HalfClose(S)]
    notes = [x for x in records(out) if isinstance(x, Notice)]
    assert notes and "ended inside a len32be frame" in notes[0].text


def test_peer_reset_is_passed_on_as_reset() -> None:
    r = opened()
    out = r.handle(ev.ConnectionLost(10, S, True, "Connection reset by peer"))
    assert actions(out) == [cmd.CloseConnection(reset=True)]
    (closed,) = records(out)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.SERVER_RESET


def test_client_reset() -> None:
    r = opened()
    out = r.handle(ev.ConnectionLost(10, C, True, "reset"))
    assert records(out)[-1].reason is CloseReason.CLIENT_RESET  # type: ignore[attr-defined]


def test_refused_upstream_resets_client_and_says_why() -> None:
    r = make()
    r.handle(ev.ClientAccepted(0))
    r.handle(ev.DataReceived(1, C, b"hello?"))
    out = r.handle(ev.UpstreamFailed(5, False, True, "Connection refused"))
    assert actions(out) == [cmd.CloseConnection(reset=True)]
    recs = records(out)
    assert isinstance(recs[0], Notice) and "127.0.0.1:5555" in recs[0].text and recs[0].level == "error"
    assert recs[1] == MessageUpdated(1, 1, Direction.C2S, MessageState.DISCARDED, 5)
    closed = recs[-1]
    assert isinstance(closed, ConnectionClosed)
    assert closed.reason is CloseReason.UPSTREAM_REFUSED and closed.discarded == 1


def test_upstream_timeout_reason() -> None:
    r = make()
    r.handle(ev.ClientAccepted(0))
    out = r.handle(ev.UpstreamFailed(5, True, False, "no answer within 5 s"))
    assert records(out)[-1].reason is CloseReason.UPSTREAM_TIMEOUT  # type: ignore[attr-defined]


def test_injected_data_goes_through_the_receive_path() -> None:
    r = opened()
    out = r.handle(ev.DataInjected(10, Direction.S2C, b"from sockscope"))
    assert out == [cmd.SendData(C, b"from sockscope"),
                   cmd.Publish(Message(1, 1, Direction.S2C, 0, b"from sockscope", 10, 10, Origin.INJECTED))]


def test_close_requested_fin_and_reset() -> None:
    r = opened()
    out = r.handle(ev.CloseRequested(10, False, "closed by the user"))
    assert actions(out) == [cmd.CloseConnection(reset=False)]
    assert records(out)[-1].reason is CloseReason.PROXY_CLOSED  # type: ignore[attr-defined]
    r = opened()
    out = r.handle(ev.CloseRequested(10, True))
    assert actions(out) == [cmd.CloseConnection(reset=True)]
    assert records(out)[-1].reason is CloseReason.PROXY_RESET  # type: ignore[attr-defined]


def test_shutdown_flushes_partial_frames_then_closes_cleanly() -> None:
    r = opened(FramingSpec("lines", "lines"))
    r.handle(ev.DataReceived(10, C, b"unterminated"))
    out = r.handle(ev.ShutdownRequested(20))
    assert actions(out) == [cmd.SendData(S, b"unterminated"), cmd.CloseConnection(reset=False)]
    assert records(out)[-1].reason is CloseReason.SHUTDOWN  # type: ignore[attr-defined]


def test_framing_fallback_warns_once() -> None:
    r = opened(FramingSpec("json", "raw"))
    out = r.handle(ev.DataReceived(10, C, b"not json"))
    assert actions(out) == [cmd.SendData(S, b"not json")]
    assert sum(isinstance(x, Notice) for x in records(out)) == 1
    out = r.handle(ev.DataReceived(11, C, b"still not"))
    assert not any(isinstance(x, Notice) for x in records(out))
    assert actions(out) == [cmd.SendData(S, b"still not")]


# ------------------------------------------------------------------------------------------------ issue 20


def framings(out: list[cmd.Command]) -> list[FramingInferred]:
    return [r for r in records(out) if isinstance(r, FramingInferred)]


def notices(out: list[cmd.Command]) -> list[Notice]:
    return [r for r in records(out) if isinstance(r, Notice)]


def sent(out: list[cmd.Command]) -> list[bytes]:
    return [c.data for c in out if isinstance(c, cmd.SendData)]


def len16(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


def stall(r: Relay, since: int) -> list[cmd.Command]:
    """The wake-ups of a stall whose oldest byte arrived at ``since``: the bound, then the second look."""
    out = r.handle(ev.WakeupFired(since + STALL_NS))
    return out + r.handle(ev.WakeupFired(since + STALL_NS + STALL_CONFIRM_NS))


def test_a_read_that_comes_with_the_bound_completes_the_frame_instead_of_a_stall() -> None:
    """uvloop runs due timers before it reads: the bound's wake-up may come before the bytes that complete the
    frame are handled. The stall is declared only at a second look, after the sockets were read."""
    r = opened(FramingSpec("len16be", "raw"))
    r.handle(ev.DataReceived(0, C, b"\x00\x05ab"))
    assert actions(r.handle(ev.WakeupFired(STALL_NS))) == [cmd.RequestWakeup(STALL_NS + STALL_CONFIRM_NS)]
    out = r.handle(ev.DataReceived(STALL_NS + 10, C, b"cde"))
    assert sent(out) == [b"\x00\x05abcde"]
    out = r.handle(ev.WakeupFired(STALL_NS + STALL_CONFIRM_NS))
    assert out == []


def test_auto_passes_reads_on_while_inferring_then_frames_from_the_next_read() -> None:
    r = opened(FramingSpec("auto", "raw"))
    out = r.handle(ev.DataReceived(10, C, b'{"a": 1}\n'))
    assert out == [cmd.SendData(S, b'{"a": 1}\n'),
                   cmd.Publish(Message(1, 1, Direction.C2S, 0, b'{"a": 1}\n', 10, 10))]  # no wake-up: nothing held
    out = r.handle(ev.DataReceived(20, C, b'{"b": 22}\n'))
    assert sent(out) == [b'{"b": 22}\n']
    assert framings(out) == [FramingInferred(1, Direction.C2S, "lines",
                                             "newline-terminated lines: 2 of 2 messages fit (2 reads)",
                                             from_seq=2, at_offset=19, time_ns=20, since_seq=0, messages=2,
                                             cause="inferred")]
    out = r.handle(ev.DataReceived(30, C, b'{"c": 3}\n{"d"'))
    assert sent(out) == [b'{"c": 3}\n'] and actions(out)[-1] == cmd.RequestWakeup(30 + STALL_NS)
    assert r.lanes[0].framing == "lines" and r.lanes[0].framer.name == "lines"


def test_auto_decided_raw_costs_nothing_more() -> None:
    r = opened(FramingSpec("auto", "auto"))
    for t, word in enumerate((b"hello", b"world", b"again")):
        out = r.handle(ev.DataReceived(t, C, word))
    (f,) = framings(out)
    assert f.framing == "raw" and f.cause == "inferred" and f.from_seq == 3
    lane = r.lanes[0]
    assert not lane.watch and lane.framer.name == "raw"  # the fast path: one attribute check per read
    out = r.handle(ev.DataReceived(9, C, b"more"))
    assert out == [cmd.SendData(S, b"more"), cmd.Publish(Message(4, 1, Direction.C2S, 3, b"more", 9, 9))]


def test_a_decided_framer_with_whole_frames_asks_for_no_wakeup() -> None:
    r = opened(FramingSpec("len16be", "raw"))
    out = r.handle(ev.DataReceived(10, C, len16(b"abc") + len16(b"de")))
    assert actions(out) == [cmd.SendData(S, len16(b"abc")), cmd.SendData(S, len16(b"de"))]


def test_a_stalled_explicit_frame_is_forwarded_as_it_is_then_raw_until_a_read_fits() -> None:
    r = opened(FramingSpec("lines", "raw"))
    out = r.handle(ev.DataReceived(10, C, len16(b"hello")))
    assert actions(out) == [cmd.RequestWakeup(10 + STALL_NS)]
    assert actions(r.handle(ev.WakeupFired(10 + STALL_NS - 1))) == [cmd.RequestWakeup(10 + STALL_NS)]
    # at the bound: one more look after the sockets were read (a read that completes the frame may be waiting)
    assert actions(r.handle(ev.WakeupFired(10 + STALL_NS))) == [cmd.RequestWakeup(10 + STALL_NS + STALL_CONFIRM_NS)]
    out = r.handle(ev.WakeupFired(10 + STALL_NS + STALL_CONFIRM_NS))
    assert sent(out) == [len16(b"hello")]
    (n,) = notices(out)
    assert n.level == "warning" and n.text == (
        "connection #1 c2s: 7 bytes waited 250 ms for the rest of a lines frame, so they were forwarded as they "
        "are; this direction is passed on raw until a read fits lines exactly again (not repeated on this "
        "connection)")
    (f,) = framings(out)
    assert (f.framing, f.cause, f.from_seq, f.at_offset) == ("raw", "stall", 1, 7)
    # raw now: nothing is held, so nothing can stall again
    out = r.handle(ev.DataReceived(10 + STALL_NS + STALL_CONFIRM_NS + 5, C, len16(b"again")))
    assert actions(out) == [cmd.SendData(S, len16(b"again"))] and not notices(out)
    # a read that ends on a line boundary: lines again from the next read
    out = r.handle(ev.DataReceived(10 + STALL_NS + STALL_CONFIRM_NS + 6, C, b"text\n"))
    assert sent(out) == [b"text\n"]
    (f,) = framings(out)
    assert (f.framing, f.cause, f.from_seq) == ("lines", "resync", 3)
    out = r.handle(ev.DataReceived(10 + STALL_NS + STALL_CONFIRM_NS + 7, C, b"a\nb"))
    assert sent(out) == [b"a\n"] and r.pending(Direction.C2S) == 1


def test_a_stalled_inferred_framing_goes_back_to_inference() -> None:
    r = opened(FramingSpec("auto", "raw"))
    r.handle(ev.DataReceived(1, C, b"hi\n"))
    r.handle(ev.DataReceived(2, C, b"ho\n"))  # decided: lines
    out = r.handle(ev.DataReceived(3, C, len16(b"binary now!")))
    assert actions(out) == [cmd.RequestWakeup(3 + STALL_NS)]
    out = stall(r, 3)
    assert sent(out) == [len16(b"binary now!")]
    assert "sockscope infers the framing again from the next read" in notices(out)[0].text
    (f,) = framings(out)
    assert (f.framing, f.cause, f.since_seq, f.from_seq) == ("auto", "stall", 3, 3)
    assert r.shared.framings.hint(r.target_addr, Direction.C2S) is None  # the target's memory forgot lines
    out = r.handle(ev.DataReceived(4 + STALL_NS, C, len16(b"more binary")))
    assert sent(out) == [len16(b"more binary")] and not framings(out)
    out = r.handle(ev.DataReceived(5 + STALL_NS, C, len16(b"and again")))
    (f,) = framings(out)
    assert (f.framing, f.cause, f.since_seq, f.from_seq, f.messages) == ("len16be", "inferred", 3, 5, 2)
    assert not notices(out)  # warned once per direction


def test_bytes_that_contradict_an_inferred_framing_send_it_back_to_inference() -> None:
    r = opened(FramingSpec("auto", "raw"))
    r.handle(ev.DataReceived(1, C, b'{"a": 1}'))
    r.handle(ev.DataReceived(2, C, b'{"b": 2}'))
    assert r.lanes[0].framing == "json"
    out = r.handle(ev.DataReceived(3, C, b"hello, not json"))
    assert sent(out) == [b"hello, not json"]
    assert "json framing gave up" in notices(out)[0].text
    (f,) = framings(out)
    assert (f.framing, f.cause) == ("auto", "contradiction")


def test_after_three_losses_a_direction_stays_raw() -> None:
    r = opened(FramingSpec("lines", "raw"))
    t = 0
    causes = []
    for _ in range(3):
        r.handle(ev.DataReceived(t, C, b"x\n"))  # a read that fits lines (resync after the first loss)
        out = r.handle(ev.DataReceived(t + 1, C, b"partial"))
        out += stall(r, t + 1)
        causes += [(f.framing, f.cause) for f in framings(out)]
        t += 2 * STALL_NS
    assert causes == [("raw", "stall"), ("raw", "stall"), ("raw", "limit")]
    assert "after 3 framings that did not hold" in framings(out)[0].reason
    assert r.lanes[0].framer.name == "raw" and not r.lanes[0].watch
    assert not framings(r.handle(ev.DataReceived(t, C, b"y\n")))  # never resyncs again


def test_paused_reading_does_not_count_as_a_stall() -> None:
    r = opened(FramingSpec("len16be", "raw"))
    r.handle(ev.DataReceived(10, C, b"\x00\x10abc"))
    r.handle(ev.ReadingPaused(20, C, True))  # backpressure: the rest cannot arrive while the shell does not read
    out = r.handle(ev.WakeupFired(10 + STALL_NS))
    assert actions(out) == [] and not notices(out)
    out = r.handle(ev.ReadingPaused(5 * STALL_NS, C, False))
    assert actions(out) == [cmd.RequestWakeup(6 * STALL_NS)]  # the wait starts again from the resume
    out = r.handle(ev.DataReceived(5 * STALL_NS + 1, C, b"d" * 13))
    assert sent(out) == [b"\x00\x10abc" + b"d" * 13]


def test_the_stall_bound_is_kept_when_a_queue_wakeup_comes_first() -> None:
    from proxy.conditions import Conditions, DirectionConditions

    r = opened(FramingSpec("lines", "raw"))
    r.handle(ev.ConditionsChanged(0, Conditions(DirectionConditions(latency_ms=10), DirectionConditions())))
    out = r.handle(ev.DataReceived(100, C, b"a\nb"))
    assert actions(out) == [cmd.RequestWakeup(100 + 10_000_000)]  # the line's release comes before the stall
    out = r.handle(ev.WakeupFired(100 + 10_000_000))
    assert actions(out) == [cmd.SendData(S, b"a\n"), cmd.RequestWakeup(100 + STALL_NS)]
    out = stall(r, 100)
    assert [n.text.split(":")[1] for n in notices(out)] == [" 1 bytes waited 250 ms for the rest of a lines frame, so "
                                                             "they were forwarded as they are; this direction is "
                                                             "passed on raw until a read fits lines exactly again "
                                                             "(not repeated on this connection)"]


def test_what_one_connection_inferred_is_where_the_next_starts() -> None:
    shared = Shared()
    first = Relay(1, ("127.0.0.1", 1), ("127.0.0.1", 5555), FramingSpec("auto", "auto"), Ids(), shared=shared)
    first.handle(ev.ClientAccepted(0))
    first.handle(ev.UpstreamOpened(1, ("127.0.0.1", 5555)))
    first.handle(ev.DataReceived(2, C, len16(b"hello there")))  # one message, then the connection ends
    first.handle(ev.EofReceived(3, C))
    second = Relay(2, ("127.0.0.1", 2), ("127.0.0.1", 5555), FramingSpec("auto", "auto"), Ids(), shared=shared)
    second.handle(ev.ClientAccepted(0))
    second.handle(ev.UpstreamOpened(1, ("127.0.0.1", 5555)))
    out = second.handle(ev.DataReceived(2, C, len16(b"again")))
    (f,) = framings(out)
    assert (f.framing, f.cause, f.messages) == ("len16be", "remembered", 1)
    assert f.reason.startswith("as on earlier connections to this server, 2-byte big-endian length prefix")
    third = Relay(3, ("127.0.0.1", 3), ("127.0.0.1", 5555), FramingSpec("auto", "auto"), Ids(), shared=shared)
    third.handle(ev.ClientAccepted(0))
    third.handle(ev.UpstreamOpened(1, ("127.0.0.1", 5555)))
    out = third.handle(ev.DataReceived(2, C, len16(b"a third")))
    assert [(f.framing, f.cause) for f in framings(out)] == [("len16be", "remembered")]


def test_the_user_chooses_a_framing_for_a_live_direction() -> None:
    r = opened(FramingSpec("lines", "raw"))
    r.handle(ev.DataReceived(10, C, b"a\nhalf"))
    out = r.handle(ev.FramingRequested(20, Direction.C2S, "len16be"))
    assert sent(out) == [b"half"]  # what waited goes on as it is, first
    (f,) = framings(out)
    assert (f.framing, f.cause, f.from_seq, f.at_offset) == ("len16be", "user", 2, 6)
    out = r.handle(ev.DataReceived(30, C, len16(b"xy") + len16(b"z")))
    assert sent(out) == [len16(b"xy"), len16(b"z")]
    assert r.shared.framings.hint(r.target_addr, Direction.C2S) is not None  # later auto connections start there
    out = r.handle(ev.FramingRequested(40, Direction.C2S, "auto"))
    assert [(f.framing, f.cause) for f in framings(out)] == [("auto", "user")] and r.lanes[0].auto


def test_a_slow_record_does_not_shift_the_framing_after_it() -> None:
    """fixed:7 knows how much of a stalled record is still to come: those bytes go on first, as they come, and
    the framing resumes exactly where the next record starts (not at any read whose size is a multiple of 7)."""
    r = opened(FramingSpec("fixed:7", "raw"))
    r.handle(ev.DataReceived(0, C, b"AAAAAAA" + b"BBB"))
    out = stall(r, 0)
    assert sent(out) == [b"BBB"]
    (f,) = framings(out)
    assert f.cause == "stall" and f.framing == "raw"
    out = r.handle(ev.DataReceived(STALL_NS + STALL_CONFIRM_NS + 1, C, b"BBBB" + b"CCCCCCC"))
    assert sent(out) == [b"BBBB", b"CCCCCCC"]  # the rest of B, then a read of whole records: fixed:7 again
    assert [(f.framing, f.cause) for f in framings(out)] == [("fixed:7", "resync")]
    out = r.handle(ev.DataReceived(STALL_NS + STALL_CONFIRM_NS + 2, C, b"DDDDDDDEEEEEEE"))
    assert sent(out) == [b"DDDDDDD", b"EEEEEEE"]


def test_a_length_prefixed_frame_that_stalled_is_passed_on_to_its_declared_end() -> None:
    r = opened(FramingSpec("auto", "raw"))
    for t in range(2):
        r.handle(ev.DataReceived(t, C, len16(b"message %d" % t)))
    assert r.lanes[0].framing == "len16be"
    r.handle(ev.DataReceived(10, C, len16(b"a slow one")[:5]))
    out = stall(r, 10)
    assert sent(out) == [len16(b"a slow one")[:5]] and framings(out)[0].framing == "auto"
    t = 10 + STALL_NS + STALL_CONFIRM_NS
    out = r.handle(ev.DataReceived(t, C, len16(b"a slow one")[5:] + len16(b"next")))
    assert sent(out) == [len16(b"a slow one")[5:], len16(b"next")]  # inference starts on the boundary
    out = r.handle(ev.DataReceived(t + 1, C, len16(b"and next")))
    assert [(f.framing, f.cause) for f in framings(out)] == [("len16be", "inferred")]

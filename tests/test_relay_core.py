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
from proxy.relay import STALL_NS, Relay

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
